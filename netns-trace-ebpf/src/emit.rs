//! Filling headers and pushing records into the ring buffer, counting what does not fit.
use aya_ebpf::{
    Global,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
};
use netns_trace_common::{EventHeader, EventKind, NetnsId};

use aya_log_ebpf::warn;

use crate::diag::probe_of;
use crate::maps::{EVENTS, LOST};

#[inline(always)]
pub fn header(kind: EventKind, size: usize, netns: NetnsId) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u16,
        size: size as u16,
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        netns,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// Counts a record lost to a full ring buffer. The first loss of each kind on each CPU is
/// also logged (a log per loss would flood exactly when the node is busiest).
#[inline(always)]
pub fn count_lost(kind: EventKind) {
    if let Some(slot) = LOST.get_ptr_mut(kind as u32) {
        let before = unsafe { *slot };
        unsafe { *slot = before + 1 };
        if before == 0 {
            warn!(
                &(),
                target: probe_of(kind),
                "ring buffer full: a record of kind {} was dropped on this CPU; further losses are only counted",
                kind as u32
            );
        }
    }
}

/// Unread bytes in EVENTS from which a record wakes the reader. Userspace sets it to an
/// eighth of the ring. Below it the reader is not woken: it drains the ring every few
/// milliseconds anyway, and a wakeup (an irq_work, so a self-IPI; a VM exit in a guest) costs
/// more than the rest of a probe: about 5 µs per record on this project's machines.
#[unsafe(no_mangle)]
static WAKEUP_AT_BYTES: Global<u64> = Global::new(512 * 1024);

/// Flags for submitting a record: wake the reader only once a batch is waiting.
#[inline(always)]
pub fn submit_flags() -> u64 {
    let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_AT_BYTES.load() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    flags as u64
}

/// Sends `record` whole; on a full ring buffer the loss is counted under `kind`.
#[inline(always)]
pub fn send<T: 'static>(kind: EventKind, record: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(record);
            entry.submit(submit_flags());
        }
        None => count_lost(kind),
    }
}
