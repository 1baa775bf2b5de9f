//! The event model: what happened, independent of any kernel's struct layout.
//!
//! Kernel records (netns-trace-common) are decoded into [`event::Event`]; userspace adds its
//! own observations (snapshots, pins seen in mountinfo, interface reads, lost-event counts) as
//! events too. The trace file stores this stream and the collector consumes it, so a live run
//! and an offline replay see exactly the same input.

pub mod event;
pub mod terminal;

pub use event::*;
pub use terminal::terminal_safe;
