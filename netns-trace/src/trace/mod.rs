//! The on-disk trace format: record on one node, copy the file off, replay it elsewhere.
//!
//! A trace is a header (magic, format version, CRC-protected [`TraceMeta`]) followed by
//! self-delimiting, CRC32C-checked frames: event batches (compact per-frame-interned records,
//! lz4-compressed when that pays) and one end-of-trace frame ([`TraceEnd`]). The
//! [`TraceReader`] replays whatever survived a crash or a bad copy and reports the rest in
//! [`TraceDamage`]. docs/trace-format.md describes the bytes.

pub mod codec;
pub mod error;
pub mod format;
pub mod meta;
pub mod reader;
pub mod wire;
pub mod writer;

#[cfg(test)]
mod tests;

pub use error::TraceError;
pub use format::FORMAT_VERSION;
pub use meta::{ClockBase, LostCount, ProbeRecord, TraceEnd, TraceMeta, monotonic_now_ns};
pub use reader::{CorruptRegion, TraceDamage, TraceReader};
pub use writer::{Compression, TraceWriter, WriterOptions};
