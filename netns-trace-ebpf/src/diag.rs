//! Probe-side diagnostics through aya-log (userspace turns them into `tracing` lines with the
//! probe's name, see netns-trace/src/probes/diag.rs).
//!
//! Every site here is rare by construction, never once per packet or per fork:
//! - a full ring buffer logs the first loss of each record kind per CPU (the per-CPU lost
//!   counter going 0 → 1); later losses are only counted (LOST);
//! - a read that should never fail (a namespace's inode number at its BTF offset, a map value
//!   copy) logs once per load;
//! - `--debug-probes` makes task_membership log its first hit outside the initial netns, so
//!   tests (and users wondering whether anything fires) can see the log path end to end.
use aya_ebpf::{Global, macros::map, maps::Array};
use netns_trace_common::EventKind;

/// One slot per once-per-load diagnostic; nonzero once it has been logged. Not atomic (5.10
/// has no BPF_XCHG): at worst each CPU logs it once.
#[map]
static DIAG_ONCE: Array<u32> = Array::with_max_entries(ONCE_SLOTS, 0);

pub const ONCE_INUM_READ: u32 = 0;
pub const ONCE_MOUNT_COPY: u32 = 1;
pub const ONCE_FIRST_HIT: u32 = 2;
const ONCE_SLOTS: u32 = 4;

/// Set to 1 by userspace (`--debug-probes`) before load.
#[unsafe(no_mangle)]
static DEBUG_PROBES: Global<u32> = Global::new(0);

#[inline(always)]
pub fn debug_probes() -> bool {
    DEBUG_PROBES.load() != 0
}

/// True the first time `slot` is asked for (per CPU at worst), false afterwards.
#[inline(always)]
pub fn first(slot: u32) -> bool {
    let Some(flag) = DIAG_ONCE.get_ptr_mut(slot) else {
        return false;
    };
    unsafe {
        if *flag != 0 {
            return false;
        }
        *flag = 1;
    }
    true
}

/// The registry's probe that normally emits records of `kind` (the log line's `probe`).
#[inline(always)]
pub const fn probe_of(k: EventKind) -> &'static str {
    match k {
        EventKind::Task => "task_membership",
        EventKind::MountSyscall => "mount_syscalls",
        EventKind::CleanupRun => "netns_teardown",
        _ => k.name(),
    }
}
