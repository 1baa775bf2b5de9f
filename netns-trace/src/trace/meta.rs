//! What a trace file says about where and how it was recorded (the header's metadata block)
//! and how it ended (the end-of-trace frame). Both are stored as JSON so fields can be added
//! without a format-version bump: unknown fields are ignored, missing ones take defaults.

use serde::{Deserialize, Serialize};

/// One probe as the recorder set it up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeRecord {
    pub name: String,
    pub purpose: String,
    /// e.g. "fentry", "kprobe", "tracepoint", "tp_btf".
    pub mechanism: String,
    /// The kernel function or tracepoint it hooks.
    pub target: String,
    /// "attached", "unavailable" or "disabled".
    pub status: String,
    /// Why it is unavailable or disabled, or anything else worth showing.
    pub detail: String,
}

/// CLOCK_MONOTONIC and CLOCK_REALTIME read together, so monotonic event timestamps can be
/// shown as wall-clock time on any machine the trace is replayed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClockBase {
    pub monotonic_ns: u64,
    pub realtime_ns: u64,
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; the clocks used here
    // always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// CLOCK_MONOTONIC now, the clock `bpf_ktime_get_ns` and event `ts_ns` use.
pub fn monotonic_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

impl ClockBase {
    /// Reads realtime between two monotonic reads and pairs it with their midpoint, which
    /// keeps the pairing error at half the (sub-microsecond) gap.
    pub fn now() -> Self {
        let before = clock_ns(libc::CLOCK_MONOTONIC);
        let realtime_ns = clock_ns(libc::CLOCK_REALTIME);
        let after = clock_ns(libc::CLOCK_MONOTONIC);
        Self {
            monotonic_ns: before + (after.saturating_sub(before)) / 2,
            realtime_ns,
        }
    }

    /// Wall-clock nanoseconds since the Unix epoch for a monotonic timestamp of the same boot.
    /// RFC 3339 (UTC, millisecond precision) for a monotonic timestamp.
    pub fn rfc3339(&self, monotonic_ns: u64) -> String {
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_nanos(self.to_realtime_ns(monotonic_ns));
        humantime::format_rfc3339_millis(t).to_string()
    }

    pub fn to_realtime_ns(&self, monotonic_ns: u64) -> u64 {
        let wall =
            i128::from(self.realtime_ns) + i128::from(monotonic_ns) - i128::from(self.monotonic_ns);
        wall.clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// The header's metadata block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceMeta {
    pub hostname: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// /proc/sys/kernel/random/boot_id: monotonic timestamps only compare within one boot.
    pub boot_id: String,
    pub clock: ClockBase,
    /// "full" or "tracepoint".
    pub probe_mode: String,
    pub probes: Vec<ProbeRecord>,
    pub netns_trace_version: String,
    /// CLOCK_MONOTONIC when recording started (same clock as event timestamps).
    pub started_at_ns: u64,
    pub notes: Vec<String>,
}

fn read_proc_line(path: &str) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().to_owned(),
        Err(e) => {
            tracing::warn!("trace metadata: cannot read {path}: {e}");
            String::new()
        }
    }
}

impl TraceMeta {
    /// Metadata for a recording starting now on this host: hostname, kernel release and boot
    /// id from /proc, a fresh clock base, this build's version.
    pub fn for_this_host(probe_mode: &str, probes: Vec<ProbeRecord>) -> Self {
        let clock = ClockBase::now();
        Self {
            hostname: read_proc_line("/proc/sys/kernel/hostname"),
            kernel_release: read_proc_line("/proc/sys/kernel/osrelease"),
            boot_id: read_proc_line("/proc/sys/kernel/random/boot_id"),
            clock,
            probe_mode: probe_mode.to_owned(),
            probes,
            netns_trace_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_ns: clock.monotonic_ns,
            notes: Vec::new(),
        }
    }
}

/// Records of one kernel kind (`EventKind` id) dropped by the ring buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LostCount {
    pub kind: u16,
    pub count: u64,
}

/// What the end-of-trace frame carries. Its presence is what tells a reader the recorder shut
/// down in order rather than being killed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceEnd {
    /// Events in the file. [`super::TraceWriter::finish`] fills this from its own count; the
    /// value passed in is ignored.
    pub events_written: u64,
    pub lost: Vec<LostCount>,
    /// CLOCK_MONOTONIC when recording stopped.
    pub ended_at_ns: u64,
    /// False when the recorder stopped because of an error (the file is still whole).
    pub clean_shutdown: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_base_maps_monotonic_to_wall_time() {
        let base = ClockBase {
            monotonic_ns: 1_000,
            realtime_ns: 1_700_000_000_000_000_000,
        };
        assert_eq!(base.to_realtime_ns(1_500), 1_700_000_000_000_000_500);
        assert_eq!(base.to_realtime_ns(0), 1_699_999_999_999_999_000);
        let now = ClockBase::now();
        assert!(now.monotonic_ns > 0 && now.realtime_ns > now.monotonic_ns);
    }

    #[test]
    fn meta_tolerates_unknown_and_missing_fields() {
        let m: TraceMeta =
            serde_json::from_str(r#"{"hostname":"n1","added_later":[1,2]}"#).unwrap();
        assert_eq!(m.hostname, "n1");
        assert!(m.probes.is_empty());
    }
}
