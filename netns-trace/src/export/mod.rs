//! Exports of a recorded event stream for other tools.
//!
//! - [`perfetto`]: a Perfetto protobuf trace (open it at <https://ui.perfetto.dev>) with one
//!   track per namespace life and child tracks for its member processes, pins, devices and
//!   ARP, as the collector decided them (the same replay `report` does).
//! - [`jsonl`]: one JSON object per event, for log pipelines.
//!
//! Both take `Event`s as recorded (kernel records and userspace observations), so a live run,
//! a trace file and a test all export the same way. See docs/export.md for what they contain.

pub mod jsonl;
pub mod perfetto;
mod protobuf;

pub use crate::trace::ClockBase;

pub use jsonl::write_jsonl;
pub use perfetto::{ExportStats, PerfettoExport, PerfettoOptions, write_perfetto};

/// RFC 3339 UTC time with nanoseconds, e.g. `2025-06-01T12:00:00.123456789Z`.
pub(crate) fn rfc3339(wall_ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(wall_ns);
    humantime::format_rfc3339_nanos(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_has_nanoseconds() {
        assert_eq!(
            rfc3339(1_700_000_000_000_000_500),
            "2023-11-14T22:13:20.000000500Z"
        );
    }
}
