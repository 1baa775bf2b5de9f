//! Filling headers and pushing records into the ring buffer, counting what does not fit.
use aya_ebpf::{
    Global,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
};
use netns_trace_common::{
    EventHeader, EventKind, NetnsId, PACKET_BUDGET_BURST, PACKET_BUDGET_PER_SEC, PacketBudget,
};

use aya_log_ebpf::warn;

use crate::diag::probe_of;
use crate::maps::{EVENTS, LOST, PACKET_BUDGET_ALL, PACKET_BUDGETS};

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

/// Packet records all namespaces together may send at once, and per second (see
/// [`netns_trace_common::PACKET_RING_SHARE`]). Set by userspace from the ring's size.
#[unsafe(no_mangle)]
static PACKET_RECORDS_ALL: Global<u64> = Global::new(4 * 1024 * 1024 / 4 / 128);

/// Takes one token from `budget` (burst `burst` tokens, refilled at `per_sec`), or returns
/// false when it has none.
#[inline(always)]
fn take_token(budget: &mut PacketBudget, now: u64, burst: u64, per_sec: u64) -> bool {
    let cost = 1_000_000_000 / per_sec.max(1);
    let credit = budget
        .credit_ns
        .saturating_add(now.saturating_sub(budget.refilled_ns))
        .min(burst * cost);
    budget.refilled_ns = now;
    if credit >= cost {
        budget.credit_ns = credit - cost;
        true
    } else {
        budget.credit_ns = credit;
        false
    }
}

/// Whether `netns` may send one more packet record now: a token from its own bucket, then
/// one from everyone's. If not, it is counted against the namespace
/// (`PacketBudget::limited`) and the caller sends nothing. Not atomic (this target has no
/// 64-bit atomic add in core): CPUs racing on one bucket may spend a token twice or lose a
/// count, so the bound is loose by a few records and the count is a floor.
#[inline(always)]
pub fn packet_budget_allows(netns: &NetnsId) -> bool {
    let now = unsafe { bpf_ktime_get_ns() };
    if PACKET_BUDGETS.get_ptr_mut(netns).is_none() {
        // First record of this namespace: a full bucket.
        let full = PacketBudget {
            credit_ns: PACKET_BUDGET_BURST * (1_000_000_000 / PACKET_BUDGET_PER_SEC),
            refilled_ns: now,
            limited: 0,
        };
        let _ = PACKET_BUDGETS.insert(netns, &full, 0);
    }
    let Some(own) = PACKET_BUDGETS.get_ptr_mut(netns) else {
        // Not kept (the map refused it): nothing to count against.
        return true;
    };
    let own = unsafe { &mut *own };
    let all = PACKET_RECORDS_ALL.load();
    let allowed = take_token(own, now, PACKET_BUDGET_BURST, PACKET_BUDGET_PER_SEC)
        && PACKET_BUDGET_ALL
            .get_ptr_mut(0)
            .is_none_or(|global| take_token(unsafe { &mut *global }, now, all, all));
    if !allowed {
        own.limited += 1;
    }
    allowed
}
