//! Exports of a recorded event stream for other tools.
//!
//! - [`perfetto`]: a Perfetto protobuf trace (open it at <https://ui.perfetto.dev>) with one
//!   track per namespace and child tracks for its member processes, pins, devices and ARP.
//! - [`jsonl`]: one JSON object per event, for log pipelines.
//!
//! Both take `Event`s as recorded (kernel records and userspace observations), so a live run,
//! a trace file and a test all export the same way. See docs/export.md for what they contain.

pub mod jsonl;
pub mod perfetto;
mod protobuf;

use crate::model::NsId;
pub use crate::trace::ClockBase;

pub use jsonl::write_jsonl;
pub use perfetto::{ExportStats, write_perfetto, write_perfetto_with_clock};

/// [`Highlight::kind`] of a leaked namespace; its Perfetto track is named `LEAKED: ...`.
pub const LEAKED_NETNS: &str = "leaked_netns";

/// Something to draw attention to in an export (typically a collector finding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Highlight {
    pub netns: NsId,
    /// e.g. [`LEAKED_NETNS`], "duplicate_ip", "stale_arp_reply".
    pub kind: String,
    /// One line a human can act on.
    pub summary: String,
    /// CLOCK_MONOTONIC, like event timestamps.
    pub at_ns: u64,
}

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
