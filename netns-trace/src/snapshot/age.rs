//! How old each namespace of a snapshot is, from the evidence /proc leaves (for `scan`, which
//! has no trace to say when a namespace was made).
//!
//! Two witnesses, both estimates:
//! - the ctime of the namespace's nsfs inode, read by fstat on a handle opened the safe way
//!   ([`netns_handle::open_ns_file`]: inside the holder's root, non-blocking, checked to be
//!   nsfs, closed at once). nsfs makes that inode when the namespace is first reached through
//!   /proc or a bind mount and keeps it while a mount or fd holds it, so for a pinned
//!   namespace it dates the pin: the namespace is at least that old;
//! - the start time of its oldest member (/proc/PID/stat, field 22), which dates the process,
//!   not its arrival in the namespace.
//!
//! The earlier of the two is reported, with which one it was.
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::netns_handle::open_ns_file;
use super::procfs::ProcFs;
use crate::model::{Pin, Snapshot};
use crate::trace::ClockBase;

/// Which evidence dated a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeSource {
    /// The ctime of its nsfs inode.
    NsfsCtime,
    /// The start time of its oldest member process.
    OldestMemberStart,
}

/// A namespace's age as evidence suggests. Always an estimate (`estimated` is true in JSON so
/// that readers do not take it for a traced creation time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgeEstimate {
    /// Its birth, CLOCK_MONOTONIC ns (saturates at 0 for evidence older than the boot).
    pub born_at_ns: u64,
    /// Its birth, wall clock (RFC 3339).
    pub born_at: String,
    /// Its age when it was looked at.
    pub age_ns: u64,
    pub source: AgeSource,
    pub estimated: bool,
}

/// The age of every namespace of `snap`, by inum, where some evidence could be read.
pub fn estimate_ages(
    proc: &ProcFs,
    snap: &Snapshot,
    clock: ClockBase,
) -> BTreeMap<u32, AgeEstimate> {
    let now_wall_ns = clock.realtime_ns;
    let boot_wall_ns = boot_wall_ns(proc, now_wall_ns);
    let ticks = clock_ticks();
    let mut out = BTreeMap::new();
    for ns in &snap.namespaces {
        // (wall-clock birth ns, source), earliest wins.
        let mut best: Option<(u64, AgeSource)> = None;
        let mut offer = |t: u64, s: AgeSource| {
            if t > 0 && t <= now_wall_ns && best.is_none_or(|(b, _)| t < b) {
                best = Some((t, s));
            }
        };
        let mut handles: Vec<PathBuf> = ns
            .members
            .iter()
            .map(|m| {
                proc.pid_path(m.tgid)
                    .join("task")
                    .join(m.pid.to_string())
                    .join("ns/net")
            })
            .collect();
        for pin in &ns.pins {
            match pin {
                Pin::BindMount {
                    path, holder_pid, ..
                } if *holder_pid != 0 => handles.push(
                    proc.pid_path(*holder_pid)
                        .join("root")
                        .join(path.trim_start_matches('/')),
                ),
                Pin::Fd { pid, fd, .. } => {
                    handles.push(proc.pid_path(*pid).join("fd").join(fd.to_string()))
                }
                _ => {}
            }
        }
        // One readable handle that leads to this namespace is enough: they share the inode.
        if let Some(t) = handles
            .iter()
            .find_map(|h| nsfs_ctime_wall_ns(h, ns.netns.inum))
        {
            offer(t, AgeSource::NsfsCtime);
        }
        if let (Some(boot), Some(hz)) = (boot_wall_ns, ticks) {
            for m in &ns.members {
                if let Some(start) = start_ticks(proc, m.tgid) {
                    offer(
                        boot.saturating_add(start.saturating_mul(1_000_000_000) / hz),
                        AgeSource::OldestMemberStart,
                    );
                }
            }
        }
        if let Some((born_wall, source)) = best {
            let age_ns = now_wall_ns - born_wall;
            let born_at_ns = clock.monotonic_ns.saturating_sub(age_ns);
            out.insert(
                ns.netns.inum,
                AgeEstimate {
                    born_at_ns,
                    born_at: humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(born_wall),
                    )
                    .to_string(),
                    age_ns,
                    source,
                    estimated: true,
                },
            );
        }
    }
    out
}

/// The ctime of the nsfs inode behind `handle`, if it is the namespace `inum`.
fn nsfs_ctime_wall_ns(handle: &Path, inum: u32) -> Option<u64> {
    let fd = open_ns_file(handle).ok()?;
    // SAFETY: fstat writes into the zeroed buffer we own; the fd is ours and closed on return.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 || st.st_ino != u64::from(inum) {
        return None;
    }
    let secs = u64::try_from(st.st_ctime).ok()?;
    let nanos = u64::try_from(st.st_ctime_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// When the machine booted, wall clock: now minus /proc/uptime.
fn boot_wall_ns(proc: &ProcFs, now_wall_ns: u64) -> Option<u64> {
    let text = std::fs::read_to_string(proc.root().join("uptime")).ok()?;
    let up: f64 = text.split_whitespace().next()?.parse().ok()?;
    (up.is_finite() && up >= 0.0).then(|| now_wall_ns.saturating_sub((up * 1e9) as u64))
}

fn clock_ticks() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0)
}

/// A process's start time, in clock ticks after boot (/proc/PID/stat field 22).
fn start_ticks(proc: &ProcFs, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc.pid_path(pid).join("stat")).ok()?;
    parse_start_ticks(&text)
}

/// Field 22 of /proc/PID/stat. The comm (field 2) may hold spaces and parentheses, so the
/// fields are counted from after its last `)`.
pub(crate) fn parse_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the comm come field 3 (state) onwards: field 22 is the 20th of them.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_after_a_hostile_comm() {
        let stat =
            "4242 (a) b ) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(987654));
        assert_eq!(parse_start_ticks("12 (x) S 1"), None);
        assert_eq!(parse_start_ticks("no paren"), None);
    }

    #[test]
    fn our_own_namespace_is_dated_no_later_than_our_start() {
        let proc = ProcFs::host();
        let snap =
            crate::snapshot::take_with(&proc, crate::model::SnapshotPhase::Start, &mut |_| {
                Err(crate::snapshot::SnapshotError::NoProcessInMountNs(0))
            })
            .unwrap();
        let clock = ClockBase::now();
        let ages = estimate_ages(&proc, &snap, clock);
        let me = proc.net_ns(std::process::id()).unwrap();
        let age = ages.get(&me).expect("our namespace has a member: us");
        assert!(age.estimated);
        let my_start = start_ticks(&proc, std::process::id()).unwrap();
        let boot = boot_wall_ns(&proc, clock.realtime_ns).unwrap();
        let my_start_wall = boot + my_start * 1_000_000_000 / clock_ticks().unwrap();
        // The earliest evidence: no later than our own start (allowing the tick rounding).
        assert!(
            clock.realtime_ns - age.age_ns <= my_start_wall + 20_000_000,
            "{age:?}"
        );
        assert!(age.born_at_ns <= clock.monotonic_ns);
    }
}
