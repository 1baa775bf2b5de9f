//! netns-trace: trace the lifecycle of Linux network namespaces and find the ones that leaked.
//!
//! Where things live:
//! - [`probes`]: the probe registry, BTF offset resolution, loading/attaching, ring-buffer decode.
//! - [`model`]: the event model shared by live tracing, the trace file and the collector.
//! - [`snapshot`]: userspace reads of /proc, mountinfo and rtnetlink (never pinning anything).
//! - [`collector`]: rebuilds each namespace's life from events and derives findings.
//! - [`report`]: renders the collector's state as text or `netns-trace/report/v1` JSON.
//! - [`trace`]: the on-disk trace format (writer and crash-tolerant reader).
//! - [`export`]: Perfetto and JSON-lines exports.
//! - [`output`]: creating the files the tool writes, safely in directories others can write.
//! - [`metrics`]: Prometheus/OpenMetrics series for `watch --metrics-addr`.
//! - [`cli`]: the command line.

pub mod attribution;
pub mod cli;
pub mod collector;
pub mod export;
pub mod live;
pub mod metrics;
pub mod model;
pub mod output;
pub mod probes;
pub mod report;
pub mod snapshot;
pub mod trace;

#[cfg(test)]
mod test_alloc;
