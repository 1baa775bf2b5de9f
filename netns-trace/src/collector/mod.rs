//! The collector: rebuilds each namespace's life from the event stream and derives findings.
//!
//! It is pure: it never reads the clock or /proc. Time comes only from event timestamps
//! (`ts_ns`, CLOCK_MONOTONIC) and from explicit [`Collector::tick`] / [`Collector::finish`]
//! calls, so live `watch` and offline replay of a trace give the same answers.
//!
//! Rules (see docs/report-schema.md for the user-facing version):
//! - Membership is per thread (`Event::pid`); a process's threads share one [`MemberSpan`].
//! - The creator's own stay (before it first leaves) is not membership, so `ip netns add`
//!   and CRI-O's pinns make `persistent` namespaces, not leaks.
//! - A namespace that had real members, lost them all, and is still not destroyed
//!   `grace_ns` after the last one left is `leaked`.
//! - Findings are raised once; losses overlapping their evidence window make them uncertain.

pub mod cni_calls;
pub mod findings;
mod identity;
pub mod namespace;
pub mod synthetic;
#[cfg(test)]
mod tests;

use crate::model::{
    ArpPacket, CgroupPath, CleanupRun, InterfacesRead, Ipv4AddrChange, Lost, MemberCgroup,
    MountSyscall, NeighUpdate, NetDev, NetnsCreated, NetnsObject, NsfsEvict, NsfsMount, PinChange,
    TaskNetns,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::Ipv4Addr;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

pub use findings::*;
use identity::{Intent, Registry, SlotRef};
pub use namespace::*;

use crate::attribution::{
    CniCacheEntry, find_by_netns_path, owner_from_cgroup, sandbox_from_pin_path,
};
use crate::model::{
    AddrOp, Comm, CreatedBy, Direction, Event, EventBody, Interface, Mac, MountOp, NetDevOp, NsId,
    Pin, Snapshot, SnapshotPhase, TaskOp,
};

/// init_net's inode number on 6.18 (fixed); older kernels allocate it at boot and the Start
/// snapshot names it.
const INIT_NET_INUM_FIXED: u32 = 0xEFFF_FFF9;
const MS_BIND: u64 = 4096;
const MS_MOVE: u64 = 8192;
/// A NetnsCreated may arrive a little after another CPU's first event about the namespace.
const REORDER_WINDOW_NS: u64 = 1_000_000_000;

/// How long a mount syscall stays pairable with an nsfs graft or a pin observation.
const MOUNT_PAIRING_NS: u64 = 10_000_000_000;
const RECENT_MOUNTS: usize = 64;
const MAX_CGROUP_PATHS: usize = 65_536;
/// `cgroup_waiters` is not rebuilt below this many entries.
const MIN_CGROUP_WAITERS_REBUILD: usize = 4_096;
/// CNI result cache entries remembered (a node has one per pod interface).
const MAX_CNI_ENTRIES: usize = 4_096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorConfig {
    /// How long a namespace may stay memberless (but not destroyed) before it is leaked.
    pub grace_ns: u64,
    /// Destroyed namespaces kept for the report; older ones are dropped and only counted.
    pub keep_destroyed: usize,
    /// Build [`Notice`]s (for `watch`). Replay into a report turns this off for speed.
    pub notices: bool,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            grace_ns: 30_000_000_000,
            keep_destroyed: 10_000,
            notices: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Created,
    /// First seen without a creation event.
    Seen,
    MemberJoined,
    MemberLeft,
    PinAdded,
    PinRemoved,
    CleanupFailed,
    Teardown,
    Freed,
    StateChanged,
    Finding,
    EventsLost,
}

/// A lifecycle line for `watch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub ts_ns: u64,
    /// Namespace id (empty for notices not about one namespace).
    pub netns: String,
    pub kind: NoticeKind,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorStats {
    pub events: u64,
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
    /// Set by [`Collector::finish`].
    pub ended_at_ns: Option<u64>,
    pub start_snapshot_at_ns: Option<u64>,
    pub final_snapshot_at_ns: Option<u64>,
    /// Namespace lives seen in total (tracked + dropped).
    pub namespaces_seen: u64,
    pub namespaces_tracked: u64,
    /// Destroyed namespaces dropped by the retention limit, by the state they had before.
    pub dropped_destroyed: BTreeMap<NsState, u64>,
    pub cleanup_runs: u64,
    pub last_cleanup_run_ns: Option<u64>,
    /// A teardown hook (fentry/kprobe) delivered at least one event.
    pub teardown_hook_seen: bool,
    /// Events about namespaces the collector did not know and could not place.
    pub unattributed_events: u64,
}

#[derive(Clone, Copy)]
struct TaskLoc {
    ns: SlotRef,
    tgid: u32,
}

struct RecentMount {
    tid: u32,
    ts: u64,
    target: String,
    by: Actor,
    paired: bool,
}

struct PendingNsfs {
    ns: SlotRef,
    mnt_ns: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DeadlineKind {
    /// Grace period after the last member left.
    Grace,
    /// Grace period for a namespace first seen memberless.
    Suspect,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at_ns: u64,
    ns: SlotRef,
    epoch: u32,
    kind: DeadlineKind,
}

pub struct Collector {
    cfg: CollectorConfig,
    reg: Registry,
    tasks: FxHashMap<u32, TaskLoc>,
    cgroups: FxHashMap<u64, Box<str>>,
    cgroup_order: VecDeque<u64>,
    /// By cgroup id, the namespaces that may have a member waiting for that id's path (see
    /// `waits_for_cgroup`): a superset, checked on use, so that a `CgroupPath` does not scan
    /// every namespace.
    cgroup_waiters: FxHashMap<u64, Vec<SlotRef>>,
    cgroup_waiter_entries: usize,
    /// Entry count past which `cgroup_waiters` is rebuilt, dropping ids never resolved.
    cgroup_waiters_rebuild_at: usize,
    /// The CNI result cache as last observed, oldest first.
    cni: Vec<CniCacheEntry>,
    cni_calls: cni_calls::CniCalls,
    /// Live (not destroyed) holders of each IPv4 address: (namespace, ifindex).
    ip_index: FxHashMap<Ipv4Addr, Vec<(SlotRef, u32)>>,
    /// Normalized bind-mount pin path → namespaces pinned there.
    pin_paths: FxHashMap<String, Vec<SlotRef>>,
    recent_mounts: VecDeque<RecentMount>,
    pending_nsfs: FxHashMap<u32, PendingNsfs>,
    deadlines: BinaryHeap<Reverse<Deadline>>,
    destroyed: VecDeque<SlotRef>,
    findings: Vec<Finding>,
    dup_keys: FxHashSet<(Ipv4Addr, Vec<SlotRef>)>,
    stale_keys: FxHashSet<(Ipv4Addr, Mac)>,
    losses: LossLog,
    init: Option<NsId>,
    stats: CollectorStats,
    out: Vec<Notice>,
}

impl Collector {
    pub fn new(cfg: CollectorConfig) -> Self {
        Self {
            cfg,
            reg: Registry::default(),
            tasks: FxHashMap::default(),
            cgroups: FxHashMap::default(),
            cgroup_order: VecDeque::new(),
            cgroup_waiters: FxHashMap::default(),
            cgroup_waiter_entries: 0,
            cgroup_waiters_rebuild_at: MIN_CGROUP_WAITERS_REBUILD,
            cni: Vec::new(),
            cni_calls: Default::default(),
            ip_index: FxHashMap::default(),
            pin_paths: FxHashMap::default(),
            recent_mounts: VecDeque::new(),
            pending_nsfs: FxHashMap::default(),
            deadlines: BinaryHeap::new(),
            destroyed: VecDeque::new(),
            findings: Vec::new(),
            dup_keys: FxHashSet::default(),
            stale_keys: FxHashSet::default(),
            losses: LossLog::default(),
            init: None,
            stats: CollectorStats::default(),
            out: Vec::new(),
        }
    }

    pub fn config(&self) -> &CollectorConfig {
        &self.cfg
    }

    /// Every tracked namespace (live, and destroyed within the retention limit), unordered.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> + '_ {
        self.reg.iter().map(|(_, ns)| ns)
    }

    /// The namespace with this id ([`Namespace::id`]).
    pub fn namespace(&self, id: &str) -> Option<&Namespace> {
        self.namespaces().find(|ns| ns.id() == id)
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Records dropped by the kernel side, per record kind (`EventKind` id).
    pub fn lost_events(&self) -> &BTreeMap<u16, u64> {
        &self.losses.totals
    }

    pub fn stats(&self) -> CollectorStats {
        let mut s = self.stats.clone();
        s.namespaces_tracked = self.reg.len() as u64;
        s
    }

    /// The host's initial namespace, once a snapshot named it.
    pub fn init_netns(&self) -> Option<NsId> {
        self.init
    }

    pub fn cgroup_path(&self, cgroup_id: u64) -> Option<&str> {
        self.cgroups.get(&cgroup_id).map(|p| &**p)
    }

    /// Namespaces per state, counting dropped destroyed ones as destroyed.
    pub fn state_counts(&self) -> BTreeMap<NsState, u64> {
        let mut m: BTreeMap<NsState, u64> = NsState::ALL.iter().map(|s| (*s, 0)).collect();
        for ns in self.namespaces() {
            *m.entry(ns.state).or_default() += 1;
        }
        *m.entry(NsState::Destroyed).or_default() +=
            self.stats.dropped_destroyed.values().sum::<u64>();
        m
    }

    /// Feeds one event. Returns the lifecycle notices it caused (empty when notices are off).
    pub fn handle(&mut self, ev: &Event) -> &[Notice] {
        self.out.clear();
        let ts = ev.ts_ns;
        self.stats.events += 1;
        self.stats.first_ts_ns.get_or_insert(ts);
        self.stats.last_ts_ns = Some(self.stats.last_ts_ns.map_or(ts, |t| t.max(ts)));
        self.advance(ts);
        match &ev.body {
            EventBody::NetnsCreated(NetnsCreated {
                netns,
                parent,
                net_ptr,
                source,
                ..
            }) => self.on_created(ev, *netns, *parent, *net_ptr, *source),
            EventBody::Task(TaskNetns {
                op,
                netns,
                prev,
                cgroup_id,
                ppid,
                ..
            }) => self.on_task(ev, *op, *netns, *prev, *cgroup_id, *ppid),
            EventBody::NetnsTeardown(NetnsObject { netns, net_ptr, .. }) => {
                self.on_end(ts, *netns, *net_ptr, false)
            }
            EventBody::NetnsFreed(NetnsObject { netns, net_ptr, .. }) => {
                self.on_end(ts, *netns, *net_ptr, true)
            }
            EventBody::CleanupRun(CleanupRun {}) => {
                self.stats.cleanup_runs += 1;
                self.stats.last_cleanup_run_ns = Some(ts);
            }
            EventBody::MountSyscall(MountSyscall {
                op,
                mnt_ns,
                ret,
                flags,
                source,
                target,
                ..
            }) => {
                self.on_mount_syscall(ev, *op, *mnt_ns, *ret, *flags, op.acted_on(source, target))
            }
            EventBody::NsfsMount(NsfsMount {
                netns,
                mnt_ns,
                net_ptr,
                ..
            }) => self.on_nsfs_mount(ev, *netns, *mnt_ns, *net_ptr),
            EventBody::NsfsEvict(NsfsEvict { netns, net_ptr }) => {
                self.on_nsfs_evict(ts, *netns, *net_ptr)
            }
            EventBody::NetDev(NetDev {
                op,
                netns,
                ifindex,
                other,
                mac,
                name,
            }) => self.on_netdev(ts, *op, *netns, *ifindex, *other, *mac, name),
            EventBody::Ipv4Addr(Ipv4AddrChange {
                op,
                netns,
                ifindex,
                addr,
                prefix_len,
                label,
            }) => self.on_ipv4(ts, *op, *netns, *ifindex, *addr, *prefix_len, label),
            EventBody::Arp(ArpPacket {
                netns,
                dir,
                op,
                ifindex,
                sender_ip,
                sender_mac,
                target_ip,
                ..
            }) => {
                let reply = ArpReplySeen {
                    at_ns: ts,
                    dir: *dir,
                    ifindex: *ifindex,
                    sender_ip: *sender_ip,
                    sender_mac: *sender_mac,
                    target_ip: *target_ip,
                };
                self.on_arp(*netns, *op, reply)
            }
            EventBody::NeighUpdate(NeighUpdate { .. }) => {}
            EventBody::Lost(Lost { kind, count }) => self.on_lost(ts, *kind, *count),
            EventBody::PinAdded(PinChange { netns, pin }) => self.on_pin_added(ts, *netns, pin),
            EventBody::PinRemoved(PinChange { netns, pin }) => self.on_pin_removed(ts, *netns, pin),
            EventBody::Interfaces(InterfacesRead { netns, interfaces }) => {
                self.on_interfaces(ts, *netns, interfaces)
            }
            EventBody::CgroupPath(CgroupPath { cgroup_id, path }) => {
                self.on_cgroup_path(ts, *cgroup_id, path)
            }
            EventBody::MemberCgroup(MemberCgroup { netns, path }) => {
                self.on_member_cgroup(ev, *netns, path)
            }
            EventBody::CniResult(entry) => self.on_cni_result(entry),
            EventBody::CniExec(e) => self.on_cni_exec(ev, e),
            EventBody::Snapshot(snap) => self.on_snapshot(ts, snap),
        }
        &self.out
    }

    /// Evaluates grace deadlines up to `now_ns` (call periodically when events are sparse).
    pub fn tick(&mut self, now_ns: u64) -> Vec<Notice> {
        self.out.clear();
        self.advance(now_ns);
        std::mem::take(&mut self.out)
    }

    /// The trace ended at `end_ns`: evaluates every deadline up to then.
    pub fn finish(&mut self, end_ns: u64) -> Vec<Notice> {
        self.out.clear();
        let end = self.stats.last_ts_ns.map_or(end_ns, |t| t.max(end_ns));
        self.advance(end);
        self.stats.ended_at_ns = Some(end);
        std::mem::take(&mut self.out)
    }

    // ---- time ----

    /// Runs the deadlines due by `now`. Per event: the usual nothing-due case stays inline.
    #[inline(always)]
    fn advance(&mut self, now: u64) {
        if self
            .deadlines
            .peek()
            .is_some_and(|Reverse(d)| d.at_ns <= now)
        {
            self.run_deadlines(now);
        }
    }

    #[inline(never)]
    fn run_deadlines(&mut self, now: u64) {
        while let Some(Reverse(d)) = self.deadlines.peek().copied() {
            if d.at_ns > now {
                break;
            }
            self.deadlines.pop();
            let Some(ns) = self.reg.get(d.ns) else {
                continue;
            };
            if ns.epoch != d.epoch {
                continue;
            }
            match d.kind {
                DeadlineKind::Grace => self.reevaluate(d.ns, d.at_ns),
                DeadlineKind::Suspect => {
                    if ns.state == NsState::LeakSuspect {
                        self.raise_leak(d.ns, d.at_ns);
                    }
                }
            }
        }
    }

    fn schedule(&mut self, r: SlotRef, at_ns: u64, kind: DeadlineKind) {
        if let Some(ns) = self.reg.get(r) {
            self.deadlines.push(Reverse(Deadline {
                at_ns,
                ns: r,
                epoch: ns.epoch,
                kind,
            }));
        }
    }

    // ---- notices ----

    fn notify(
        &mut self,
        ts: u64,
        r: Option<SlotRef>,
        kind: NoticeKind,
        text: impl FnOnce(&Self) -> String,
    ) {
        if !self.cfg.notices {
            return;
        }
        let netns = r
            .and_then(|r| self.reg.get(r))
            .map(|ns| ns.id())
            .unwrap_or_default();
        let text = text(self);
        self.out.push(Notice {
            ts_ns: ts,
            netns,
            kind,
            text,
        });
    }

    // ---- identity ----

    fn is_init(&self, id: NsId) -> bool {
        if id.inum == INIT_NET_INUM_FIXED {
            return true;
        }
        match self.init {
            Some(init) if init.cookie != 0 && id.cookie != 0 => init.cookie == id.cookie,
            Some(init) => init.inum == id.inum,
            None => false,
        }
    }

    /// Starts a new namespace life, retiring a still-live holder of the same inum (the kernel
    /// reuses inums only after the old namespace is gone, so its end was missed).
    fn new_life(&mut self, id: NsId, origin: Origin, ts: u64) -> SlotRef {
        if id.inum != 0
            && let Some(old) = self.reg.live_holder_of_inum(id.inum)
        {
            if let Some(ns) = self.reg.get_mut(old) {
                ns.vanished_at_ns = Some(ts);
            }
            self.reevaluate(old, ts);
        }
        let r = self.reg.insert(id, origin, ts);
        self.stats.namespaces_seen += 1;
        let is_init = self.is_init(id);
        if let Some(ns) = self.reg.get_mut(r) {
            ns.is_init = is_init;
        }
        // The first state is set without a "changed" notice.
        if let Some(ns) = self.reg.get(r) {
            let first = self.evaluate(ns, ts);
            if let Some(ns) = self.reg.get_mut(r) {
                ns.state = first;
            }
            if first == NsState::LeakSuspect {
                self.schedule(
                    r,
                    ts.saturating_add(self.cfg.grace_ns),
                    DeadlineKind::Suspect,
                );
            }
        }
        if origin != Origin::Traced {
            self.notify(ts, Some(r), NoticeKind::Seen, |c| {
                let how = if origin == Origin::Snapshot {
                    "existed before the trace"
                } else {
                    "first seen mid-trace"
                };
                format!("{} {how}", c.reg.get(r).map(|n| n.id()).unwrap_or_default())
            });
        }
        r
    }

    /// The namespace an event is about, creating an `Inferred` life when `create` is set.
    fn place(&mut self, id: NsId, intent: Intent, create: bool, ts: u64) -> Option<SlotRef> {
        if id.is_none() {
            return None;
        }
        if let Some(r) = self.reg.find(id, intent) {
            return Some(r);
        }
        if create {
            let r = self.new_life(id, Origin::Inferred, ts);
            self.reevaluate(r, ts);
            Some(r)
        } else {
            self.stats.unattributed_events += 1;
            None
        }
    }

    // ---- state ----

    fn evaluate(&self, ns: &Namespace, now: u64) -> NsState {
        if ns.is_destroyed() {
            return NsState::Destroyed;
        }
        if ns.is_init || ns.live_tasks > 0 {
            return NsState::Alive;
        }
        // Only the creator was ever inside: whether its departure starts the leak clock
        // depends on what it was to the namespace (see `CreatorRole`).
        let mut maker_unknown = false;
        let lived_in = ns.had_real_member
            || (ns.creator_tgid != 0
                && ns.last_member.is_some()
                && match ns.creator_role() {
                    CreatorRole::SetUp => false,
                    CreatorRole::LivedThere => true,
                    CreatorRole::Unknown { .. } => {
                        maker_unknown = true;
                        true
                    }
                });
        // Without a traced history (or a snapshot's member list) memberlessness is unproven.
        if ns.origin == Origin::Inferred || !lived_in {
            return if ns.origin == Origin::Traced {
                NsState::Persistent
            } else {
                NsState::LeakSuspect
            };
        }
        let since = ns.last_member.map_or(ns.first_seen_ns, |m| m.exited_at_ns);
        if now >= since.saturating_add(self.cfg.grace_ns) {
            // Tracepoint mode on 6.13+ sees a namespace's end only as its free, which waits for
            // the *next* cleanup_net run. Nothing observed holds it and a cleanup ran after its
            // last member left: its teardown is pending, not a leak.
            let teardown_pending = ns.pins.is_empty()
                && !self.stats.teardown_hook_seen
                && self
                    .stats
                    .last_cleanup_run_ns
                    .is_some_and(|run| run >= since);
            if teardown_pending {
                NsState::Draining
            } else if maker_unknown {
                // Persistent by design or leaked: the evidence cannot tell, and says so.
                NsState::LeakSuspect
            } else {
                NsState::Leaked
            }
        } else {
            NsState::Draining
        }
    }

    fn reevaluate(&mut self, r: SlotRef, ts: u64) {
        let Some(ns) = self.reg.get(r) else { return };
        let old = ns.state;
        let new = self.evaluate(ns, ts);
        if old == new {
            return;
        }
        let grace_from = ns.last_member.map_or(ns.first_seen_ns, |m| m.exited_at_ns);
        let ns = self.reg.get_mut(r).expect("checked above");
        ns.state = new;
        ns.state_since_ns = ts;
        if new == NsState::Destroyed {
            ns.state_before_destroy = Some(old);
        }
        self.notify(ts, Some(r), NoticeKind::StateChanged, |_| {
            format!("state {old} -> {new}")
        });
        match new {
            NsState::Draining => self.schedule(
                r,
                grace_from.saturating_add(self.cfg.grace_ns),
                DeadlineKind::Grace,
            ),
            // A traced namespace is only suspect once its grace period ran out (its pin's
            // maker unknown): its uncertain finding is due now.
            NsState::LeakSuspect => {
                let traced = self
                    .reg
                    .get(r)
                    .is_some_and(|ns| ns.origin == Origin::Traced);
                let at = if traced {
                    ts
                } else {
                    ts.saturating_add(self.cfg.grace_ns)
                };
                self.schedule(r, at, DeadlineKind::Suspect)
            }
            NsState::Leaked => self.raise_leak(r, ts),
            NsState::Destroyed => self.on_destroyed(r, ts),
            NsState::Alive | NsState::Persistent => {}
        }
        if new != NsState::Destroyed {
            self.recheck_duplicates(r, ts);
        }
    }

    /// Its addresses may clash with others' now that it counts (see `claims_its_addresses`).
    fn recheck_duplicates(&mut self, r: SlotRef, ts: u64) {
        for (ip, _) in self.ips_of(r) {
            self.check_duplicate(ip, r, ts);
        }
    }

    fn on_destroyed(&mut self, r: SlotRef, ts: u64) {
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        // Members cannot outlive their namespace: exits were lost.
        for span in ns.members.iter_mut().filter(|s| s.left_at_ns.is_none()) {
            span.left_at_ns = Some(ts);
            span.left_how = Some(LeaveHow::Destroyed);
            span.live_threads = 0;
        }
        ns.live_tasks = 0;
        if let Some(i) = ns.leak_finding
            && let Some(FindingDetail::LeakedNetns { resolved_at_ns, .. }) =
                self.findings.get_mut(i).map(|f| &mut f.detail)
        {
            resolved_at_ns.get_or_insert(ts);
        }
        let ips: Vec<(Ipv4Addr, u32)> = ns.ipv4().map(|(a, _, i)| (a, i.ifindex)).collect();
        let paths: Vec<String> = ns
            .pins
            .iter()
            .filter_map(|p| p.path.as_deref().map(|s| normalize_path(s).to_string()))
            .collect();
        for (ip, ifindex) in ips {
            self.unindex_ip(ip, r, ifindex);
        }
        for p in paths {
            self.unindex_path(&p, r);
        }
        self.destroyed.push_back(r);
        while self.destroyed.len() > self.cfg.keep_destroyed {
            let Some(old) = self.destroyed.pop_front() else {
                break;
            };
            if let Some(ns) = self.reg.remove(old) {
                let prior = ns.state_before_destroy.unwrap_or(NsState::Destroyed);
                *self.stats.dropped_destroyed.entry(prior).or_default() += 1;
            }
        }
    }

    // ---- creation and membership ----

    fn on_created(&mut self, ev: &Event, id: NsId, parent: NsId, net_ptr: u64, source: CreatedBy) {
        let ts = ev.ts_ns;
        if id.is_none() {
            tracing::warn!("netns creation without an identity at {ts}; skipped");
            self.stats.unattributed_events += 1;
            return;
        }
        let by_cookie = self.reg.find_cookie(id.cookie);
        let r = match by_cookie.or_else(|| self.reg.holder_of_inum(id.inum)) {
            // Same namespace, first seen through a reordered event from another CPU.
            Some(r) if self.is_placeholder(r, id, ts, by_cookie.is_some()) => {
                self.reg.set_cookie(r, id.cookie);
                if let Some(ns) = self.reg.get_mut(r) {
                    ns.origin = Origin::Traced;
                }
                r
            }
            _ => self.new_life(id, Origin::Traced, ts),
        };
        self.reg.set_ptr(r, net_ptr);
        let creator = Actor {
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm,
        };
        if let Some(ns) = self.reg.get_mut(r) {
            ns.created_at_ns = Some(ts);
            ns.created_by = Some(creator);
            ns.source = Some(source);
            ns.parent = (!parent.is_none()).then_some(parent);
            ns.creator_tid = ev.pid;
            ns.creator_tgid = ev.tgid;
            // clone(CLONE_NEWNET) puts the child in, never the caller.
            ns.creator_left = source == CreatedBy::Clone;
        }
        self.notify(ts, Some(r), NoticeKind::Created, |_| {
            let how = match source {
                CreatedBy::Clone => "clone",
                CreatedBy::Unshare => "unshare",
                CreatedBy::CopyNetNs => "copy_net_ns",
            };
            format!("created by {} ({}) via {how}", creator.pid, creator.comm)
        });
        self.reevaluate(r, ts);
    }

    fn is_placeholder(&self, r: SlotRef, id: NsId, ts: u64, cookie_matched: bool) -> bool {
        let Some(ns) = self.reg.get(r) else {
            return false;
        };
        if cookie_matched {
            return true;
        }
        ns.created_at_ns.is_none()
            && ns.origin == Origin::Inferred
            && !ns.is_destroyed()
            && (ns.cookie == 0 || id.cookie == 0 || ns.cookie == id.cookie)
            && ns.first_seen_ns.saturating_add(REORDER_WINDOW_NS) >= ts
    }

    fn on_task(
        &mut self,
        ev: &Event,
        op: TaskOp,
        netns: NsId,
        prev: NsId,
        cgroup_id: u64,
        ppid: u32,
    ) {
        let ts = ev.ts_ns;
        let (tid, tgid, comm) = (ev.pid, ev.tgid, ev.comm);
        match op {
            TaskOp::Fork => {
                if self.is_init(netns) {
                    return;
                }
                let r = match self.reg.find(netns, Intent::Join) {
                    Some(r) => r,
                    // clone(CLONE_NEWNET) whose creation record was lost: the parent made it.
                    None if !prev.is_none() && prev != netns => {
                        let r = self.new_life(netns, Origin::Traced, ts);
                        self.fill_creation(
                            r,
                            ts,
                            Actor {
                                pid: ppid,
                                tgid: ppid,
                                comm,
                            },
                            CreatedBy::Clone,
                            prev,
                            true,
                        );
                        r
                    }
                    None => match self.place(netns, Intent::Join, true, ts) {
                        Some(r) => r,
                        None => return,
                    },
                };
                self.join(r, tid, tgid, comm, cgroup_id, Some(ts), JoinHow::Fork, ts);
            }
            TaskOp::Unshare | TaskOp::Setns => {
                let (join_how, leave_how) = if op == TaskOp::Unshare {
                    (JoinHow::Unshare, LeaveHow::Unshare)
                } else {
                    (JoinHow::Setns, LeaveHow::Setns)
                };
                if netns == prev {
                    // Only the mount namespace changed; still tells us the task is a member.
                    if !self.tasks.contains_key(&tid)
                        && !self.is_init(netns)
                        && let Some(r) = self.place(netns, Intent::Join, false, ts)
                    {
                        self.join(r, tid, tgid, comm, cgroup_id, None, JoinHow::Inferred, ts);
                    }
                    return;
                }
                if !self.leave(tid, ts, leave_how, None) && !self.is_init(prev) {
                    self.unseen_member_left(prev, tid, tgid, comm, ts, leave_how);
                }
                if self.is_init(netns) {
                    return;
                }
                let r = match self.reg.find(netns, Intent::Join) {
                    Some(r) => r,
                    // unshare(CLONE_NEWNET) always makes a fresh namespace: its record was lost.
                    None if op == TaskOp::Unshare => {
                        let r = self.new_life(netns, Origin::Traced, ts);
                        self.fill_creation(
                            r,
                            ts,
                            Actor {
                                pid: tid,
                                tgid,
                                comm,
                            },
                            CreatedBy::Unshare,
                            prev,
                            false,
                        );
                        r
                    }
                    None => match self.place(netns, Intent::Join, true, ts) {
                        Some(r) => r,
                        None => return,
                    },
                };
                self.join(r, tid, tgid, comm, cgroup_id, Some(ts), join_how, ts);
            }
            TaskOp::Exit => {
                if !self.leave(tid, ts, LeaveHow::Exit, Some(comm)) && !self.is_init(netns) {
                    self.unseen_member_left(netns, tid, tgid, comm, ts, LeaveHow::Exit);
                }
            }
        }
    }

    fn fill_creation(
        &mut self,
        r: SlotRef,
        ts: u64,
        by: Actor,
        source: CreatedBy,
        parent: NsId,
        creator_outside: bool,
    ) {
        if let Some(ns) = self.reg.get_mut(r) {
            ns.created_at_ns = Some(ts);
            ns.created_by = Some(by);
            ns.source = Some(source);
            ns.parent = (!parent.is_none()).then_some(parent);
            ns.creator_tid = by.pid;
            ns.creator_tgid = by.tgid;
            ns.creator_left = creator_outside;
        }
        self.notify(ts, Some(r), NoticeKind::Created, |_| {
            format!(
                "created by {} ({}) (creation inferred from membership)",
                by.pid, by.comm
            )
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        r: SlotRef,
        tid: u32,
        tgid: u32,
        comm: Comm,
        cgroup_id: u64,
        joined_at: Option<u64>,
        how: JoinHow,
        now: u64,
    ) {
        if let Some(loc) = self.tasks.get(&tid) {
            if loc.ns == r {
                return;
            }
            // We missed it leaving its previous namespace.
            self.leave(tid, now, LeaveHow::Setns, None);
        }
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        if ns.is_init || ns.is_destroyed() {
            return;
        }
        let counts = !(ns.creator_tgid != 0 && tgid == ns.creator_tgid && !ns.creator_left);
        ns.live_tasks += 1;
        ns.epoch = ns.epoch.wrapping_add(1);
        // A setns visitor (`ip -n`, `ip netns exec`, a CNI plugin's ns.Do) only counts once it
        // has stayed VISIT_NS: see `leave`.
        if counts && how != JoinHow::Setns {
            ns.had_real_member = true;
        }
        let new_span = match ns.open_span_mut(tgid) {
            Some(span) => {
                span.live_threads += 1;
                span.counts_as_member |= counts;
                false
            }
            None => {
                ns.push_span(MemberSpan {
                    pid: tid,
                    tgid,
                    comm,
                    cgroup_id,
                    cgroup_path: None,
                    joined_at_ns: joined_at,
                    left_at_ns: None,
                    joined_how: how,
                    left_how: None,
                    counts_as_member: counts,
                    live_threads: 1,
                });
                true
            }
        };
        self.tasks.insert(tid, TaskLoc { ns: r, tgid });
        if new_span && cgroup_id != 0 {
            self.add_cgroup_waiter(cgroup_id, r);
        }
        if new_span && let Some(path) = self.cgroups.get(&cgroup_id).cloned() {
            self.note_member_cgroup(r, &path, now);
        }
        if new_span {
            self.notify(now, Some(r), NoticeKind::MemberJoined, |_| {
                let role = if counts { "" } else { " (creator)" };
                format!(
                    "{tid} ({comm}){role} joined via {}",
                    format!("{how:?}").to_lowercase()
                )
            });
        }
        self.reevaluate(r, now);
    }

    /// Removes `tid` from the namespace it is in. False when it was not known to be anywhere.
    fn leave(&mut self, tid: u32, now: u64, how: LeaveHow, exit_comm: Option<Comm>) -> bool {
        let Some(loc) = self.tasks.remove(&tid) else {
            return false;
        };
        let Some(ns) = self.reg.get_mut(loc.ns) else {
            return true;
        };
        ns.live_tasks = ns.live_tasks.saturating_sub(1);
        ns.epoch = ns.epoch.wrapping_add(1);
        if tid == ns.creator_tid {
            ns.creator_left = true;
        }
        let mut who = (tid, loc.tgid, exit_comm.unwrap_or_default());
        let mut closed = false;
        let mut visit = false;
        if let Some(span) = ns.open_span_mut(loc.tgid) {
            if let Some(c) = exit_comm {
                span.comm = c;
            }
            span.live_threads = span.live_threads.saturating_sub(1);
            who = (span.pid, span.tgid, span.comm);
            if span.live_threads == 0 {
                span.left_at_ns = Some(now);
                span.left_how = Some(how);
                closed = true;
                visit = span.was_visit();
                if visit {
                    span.counts_as_member = false;
                } else if span.counts_as_member {
                    ns.had_real_member = true;
                }
            }
        }
        if ns.live_tasks == 0 {
            let this = LastMember {
                pid: who.0,
                tgid: who.1,
                comm: who.2,
                exited_at_ns: now,
                how,
            };
            // A visit does not move the leak clock. The last member is whoever stayed and left
            // last, even if a visitor was still inside then: a thread's exit can trail the
            // setns-and-return of the code that ran it by milliseconds.
            ns.last_member = if visit {
                [ns.latest_stay(), ns.last_member]
                    .into_iter()
                    .flatten()
                    .max_by_key(|m| m.exited_at_ns)
                    .or(Some(this))
            } else {
                Some(this)
            };
        }
        if closed {
            self.notify(now, Some(loc.ns), NoticeKind::MemberLeft, |_| {
                format!(
                    "{} ({}) left via {}",
                    who.0,
                    who.2,
                    format!("{how:?}").to_lowercase()
                )
            });
        }
        self.reevaluate(loc.ns, now);
        true
    }

    /// A task we never saw join left `netns` (joined before the trace, or the join was lost).
    fn unseen_member_left(
        &mut self,
        netns: NsId,
        tid: u32,
        tgid: u32,
        comm: Comm,
        ts: u64,
        how: LeaveHow,
    ) {
        let Some(r) = self.place(netns, Intent::Attach, false, ts) else {
            return;
        };
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        if ns.is_init || ns.is_destroyed() || ns.open_span_mut(tgid).is_some() {
            // Another thread of a known member process: nothing changes.
            return;
        }
        let counts = !(ns.creator_tgid != 0 && tgid == ns.creator_tgid && !ns.creator_left);
        ns.push_span(MemberSpan {
            pid: tid,
            tgid,
            comm,
            cgroup_id: 0,
            cgroup_path: None,
            joined_at_ns: None,
            left_at_ns: Some(ts),
            joined_how: JoinHow::Inferred,
            left_how: Some(how),
            counts_as_member: counts,
            live_threads: 0,
        });
        ns.had_real_member |= counts;
        if ns.live_tasks == 0 {
            ns.epoch = ns.epoch.wrapping_add(1);
            ns.last_member = Some(LastMember {
                pid: tid,
                tgid,
                comm,
                exited_at_ns: ts,
                how,
            });
        }
        self.reevaluate(r, ts);
    }

    // ---- teardown ----

    fn on_end(&mut self, ts: u64, netns: NsId, net_ptr: u64, freed: bool) {
        let by_ptr = self.reg.find_ptr(net_ptr).filter(|r| {
            self.reg
                .get(*r)
                .is_some_and(|ns| netns.is_none() || ns.inum == netns.inum || netns.inum == 0)
        });
        let Some(r) = by_ptr.or_else(|| self.place(netns, Intent::Attach, !netns.is_none(), ts))
        else {
            return;
        };
        if !freed {
            self.stats.teardown_hook_seen = true;
            if self.reg.get(r).is_some_and(|ns| ns.net_ptr == 0) {
                self.reg.set_ptr(r, net_ptr);
            }
        }
        if netns.cookie != 0 {
            self.reg.set_cookie(r, netns.cookie);
        }
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        let first = if freed {
            ns.freed_at_ns.is_none()
        } else {
            ns.teardown_at_ns.is_none()
        };
        if freed {
            ns.freed_at_ns.get_or_insert(ts);
        } else {
            ns.teardown_at_ns.get_or_insert(ts);
        }
        if freed {
            self.reg.forget_ptr(net_ptr, r);
        }
        if first {
            let kind = if freed {
                NoticeKind::Freed
            } else {
                NoticeKind::Teardown
            };
            self.notify(ts, Some(r), kind, |_| {
                if freed {
                    "struct net freed".into()
                } else {
                    "teardown started".into()
                }
            });
        }
        self.reevaluate(r, ts);
    }

    // ---- pins ----

    fn recent_mount_for_path(&mut self, path: &str, ts: u64) -> Option<Actor> {
        let want = normalize_path(path);
        let m = self.recent_mounts.iter_mut().rev().find(|m| {
            normalize_path(&m.target) == want && ts.saturating_sub(m.ts) <= MOUNT_PAIRING_NS
        })?;
        m.paired = true;
        Some(m.by)
    }

    fn add_pin(&mut self, r: SlotRef, mut pin: PinRecord, ts: u64) {
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        if let Some(by) = &pin.by {
            ns.note_pin_maker(by);
        }
        if let Some(existing) = ns.pins.iter_mut().find(|p| p.same_holder(&pin)) {
            existing.pid = existing.pid.or(pin.pid);
            existing.holder_comm = existing.holder_comm.or(pin.holder_comm);
            existing.by = existing.by.or(pin.by);
            existing.mount_ns = existing.mount_ns.or(pin.mount_ns);
            return;
        }
        // A graft seen in full mode whose path is not known yet: the observation names it.
        if pin.kind == PinKind::BindMount
            && let Some(pathless) = ns.pins.iter_mut().find(|p| {
                p.kind == PinKind::BindMount
                    && p.path.is_none()
                    && (p.mount_ns == pin.mount_ns || pin.mount_ns.is_none())
            })
        {
            pathless.path = pin.path.clone();
            pathless.pid = pathless.pid.or(pin.pid);
            pathless.holder_comm = pathless.holder_comm.or(pin.holder_comm);
            // The notice names the pin as it now stands, maker included.
            pin = pathless.clone();
        } else {
            ns.pins.push(pin.clone());
        }
        if let Some(path) = &pin.path {
            self.index_path(normalize_path(path).to_string(), r);
            self.note_pin_path(r, path, ts);
        }
        self.notify(ts, Some(r), NoticeKind::PinAdded, |_| {
            format!("pinned by {}", pin.describe())
        });
        self.recheck_duplicates(r, ts);
        // Who made it can change what the creator was to the namespace.
        self.reevaluate(r, ts);
    }

    fn index_path(&mut self, path: String, r: SlotRef) {
        let v = self.pin_paths.entry(path).or_default();
        if !v.contains(&r) {
            v.push(r);
        }
    }

    fn unindex_path(&mut self, path: &str, r: SlotRef) {
        if let Some(v) = self.pin_paths.get_mut(path) {
            v.retain(|x| *x != r);
            if v.is_empty() {
                self.pin_paths.remove(path);
            }
        }
    }

    fn remove_pins(&mut self, r: SlotRef, ts: u64, mut matches: impl FnMut(&PinRecord) -> bool) {
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        let mut removed = Vec::new();
        ns.pins.retain(|p| {
            let m = matches(p);
            if m {
                removed.push(p.clone());
            }
            !m
        });
        let still: Vec<String> = ns
            .pins
            .iter()
            .filter_map(|p| p.path.as_deref().map(|s| normalize_path(s).to_string()))
            .collect();
        for p in removed {
            if let Some(path) = &p.path {
                let key = normalize_path(path).to_string();
                if !still.contains(&key) {
                    self.unindex_path(&key, r);
                }
            }
            self.notify(ts, Some(r), NoticeKind::PinRemoved, |_| {
                format!("no longer pinned by {}", p.describe())
            });
        }
    }

    fn pin_record(pin: &Pin, ts: u64) -> PinRecord {
        match pin {
            Pin::BindMount {
                path,
                mnt_ns,
                holder_pid,
                holder_comm,
            } => PinRecord {
                kind: PinKind::BindMount,
                path: Some(path.clone()),
                mount_ns: (*mnt_ns != 0).then_some(*mnt_ns),
                pid: (*holder_pid != 0).then_some(*holder_pid),
                holder_comm: (*holder_pid != 0).then_some(*holder_comm),
                fd: None,
                by: None,
                at_ns: ts,
            },
            Pin::Fd { pid, fd, comm } | Pin::Socket { pid, fd, comm } => PinRecord {
                kind: if matches!(pin, Pin::Fd { .. }) {
                    PinKind::Fd
                } else {
                    PinKind::Socket
                },
                path: None,
                mount_ns: None,
                pid: Some(*pid),
                holder_comm: Some(*comm),
                fd: Some(*fd),
                by: None,
                at_ns: ts,
            },
        }
    }

    fn on_pin_added(&mut self, ts: u64, netns: NsId, pin: &Pin) {
        let Some(mut r) = self.place(netns, Intent::Join, true, ts) else {
            return;
        };
        if self.reg.get(r).is_some_and(|ns| ns.is_destroyed()) {
            // Observations read /proc as it is now while events lag behind: a pin seen on a
            // namespace whose end is already traced belongs to the next life of its inode
            // number, whose creation we have not met yet.
            let next = NsId::new(0, netns.inum);
            let Some(n) = self.place(next, Intent::Join, true, ts) else {
                return;
            };
            r = n;
        }
        let mut rec = Self::pin_record(pin, ts);
        if let Some(path) = rec.path.clone() {
            rec.by = self.recent_mount_for_path(&path, ts);
        }
        self.add_pin(r, rec, ts);
    }

    fn on_pin_removed(&mut self, ts: u64, netns: NsId, pin: &Pin) {
        let Some(r) = self.place(netns, Intent::Attach, false, ts) else {
            return;
        };
        let rec = Self::pin_record(pin, ts);
        self.remove_pins(r, ts, |p| p.same_holder(&rec));
    }

    fn on_nsfs_mount(&mut self, ev: &Event, netns: NsId, mnt_ns: u32, net_ptr: u64) {
        let ts = ev.ts_ns;
        let r = match self
            .reg
            .find(netns, Intent::Join)
            .or_else(|| self.reg.find_ptr(net_ptr))
        {
            Some(r) => r,
            None => match self.place(netns, Intent::Join, true, ts) {
                Some(r) => r,
                None => return,
            },
        };
        let by = Actor {
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm,
        };
        // The syscall record usually follows the graft (it is emitted at syscall exit), but a
        // decoder may deliver it first. Only a call that ended after the graft began can be
        // the graft's own: an earlier one of the same thread is another mount (`ip netns add`
        // on a cold node bind-mounts /run/netns onto itself just before).
        let preceding =
            self.recent_mounts.iter_mut().rev().find(|m| {
                m.tid == ev.pid && !m.paired && m.ts >= ts && m.ts - ts <= MOUNT_PAIRING_NS
            });
        let path = preceding.map(|m| {
            m.paired = true;
            m.target.clone()
        });
        if path.is_none() {
            self.pending_nsfs
                .insert(ev.pid, PendingNsfs { ns: r, mnt_ns });
        }
        let pin = PinRecord {
            kind: PinKind::BindMount,
            path,
            mount_ns: (mnt_ns != 0).then_some(mnt_ns),
            pid: Some(ev.tgid),
            holder_comm: Some(ev.comm),
            fd: None,
            by: Some(by),
            at_ns: ts,
        };
        self.add_pin(r, pin, ts);
    }

    /// Names the full-mode graft that this thread's mount call made. The enricher may have
    /// seen the same mount first (its read prompted by an earlier event): the graft then folds
    /// into that pin, which gains its maker, instead of standing beside it as a second one.
    fn name_graft(&mut self, p: PendingNsfs, target: &str, by: Actor, ts: u64) {
        let Some(ns) = self.reg.get_mut(p.ns) else {
            return;
        };
        let mnt = (p.mnt_ns != 0).then_some(p.mnt_ns);
        let key = normalize_path(target);
        let Some(graft) = ns
            .pins
            .iter()
            .position(|x| x.kind == PinKind::BindMount && x.path.is_none() && x.mount_ns == mnt)
        else {
            return;
        };
        let observed = ns.pins.iter().position(|x| {
            x.kind == PinKind::BindMount
                && x.path.as_deref().map(normalize_path) == Some(key)
                && (x.mount_ns.is_none() || mnt.is_none() || x.mount_ns == mnt)
        });
        let at = match observed {
            Some(i) => {
                let removed = ns.pins.remove(graft);
                let i = if graft < i { i - 1 } else { i };
                let pin = &mut ns.pins[i];
                pin.by = pin.by.or(Some(by));
                pin.mount_ns = pin.mount_ns.or(removed.mount_ns);
                i
            }
            None => {
                let pin = &mut ns.pins[graft];
                pin.path = Some(target.to_string());
                pin.by = Some(by);
                graft
            }
        };
        ns.note_pin_maker(&by);
        let described = ns.pins[at].describe();
        self.index_path(key.to_string(), p.ns);
        self.note_pin_path(p.ns, target, ts);
        self.notify(ts, Some(p.ns), NoticeKind::PinAdded, |_| {
            format!("pinned by {described}")
        });
        self.reevaluate(p.ns, ts);
    }

    /// A mountinfo read prompted by an earlier event can see a pin before its own mount call's
    /// record arrives (`ip netns add` on a cold node: the read after its bind mount of
    /// /run/netns onto itself already shows the namespace's mount). The call names the maker
    /// of a pin at its target, in its mount namespace, observed without one shortly before.
    fn name_observed_pin_maker(&mut self, target: &str, mnt_ns: u32, by: Actor, ts: u64) -> bool {
        let key = normalize_path(target);
        let Some(slots) = self.pin_paths.get(key).cloned() else {
            return false;
        };
        let mnt = (mnt_ns != 0).then_some(mnt_ns);
        let mut named = Vec::new();
        for r in slots {
            let Some(ns) = self.reg.get_mut(r) else {
                continue;
            };
            let Some(pin) = ns.pins.iter_mut().find(|p| {
                p.kind == PinKind::BindMount
                    && p.by.is_none()
                    && p.path.as_deref().map(normalize_path) == Some(key)
                    && (p.mount_ns.is_none() || mnt.is_none() || p.mount_ns == mnt)
                    && p.at_ns <= ts
                    && ts - p.at_ns <= MOUNT_PAIRING_NS
            }) else {
                continue;
            };
            pin.by = Some(by);
            let described = pin.describe();
            ns.note_pin_maker(&by);
            named.push((r, described));
        }
        for (r, described) in &named {
            self.notify(ts, Some(*r), NoticeKind::PinAdded, |_| {
                format!("pinned by {described}")
            });
            self.reevaluate(*r, ts);
        }
        !named.is_empty()
    }

    fn on_nsfs_evict(&mut self, ts: u64, netns: NsId, net_ptr: u64) {
        let Some(r) = self
            .reg
            .find_ptr(net_ptr)
            .or_else(|| self.place(netns, Intent::Attach, false, ts))
        else {
            return;
        };
        // The last nsfs inode went: no bind mount or open nsfs fd holds it any more.
        self.remove_pins(r, ts, |p| {
            matches!(p.kind, PinKind::BindMount | PinKind::Fd)
        });
    }

    /// `target` is the path the syscall acted on ([`MountOp::acted_on`]).
    fn on_mount_syscall(
        &mut self,
        ev: &Event,
        op: MountOp,
        mnt_ns: u32,
        ret: i64,
        flags: u64,
        target: &str,
    ) {
        let ts = ev.ts_ns;
        let by = Actor {
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm,
        };
        match op {
            MountOp::Mount | MountOp::MoveMount if ret >= 0 => {
                if let Some(p) = self.pending_nsfs.remove(&ev.pid) {
                    self.name_graft(p, target, by, ts);
                    return;
                }
                if op == MountOp::MoveMount || flags & (MS_BIND | MS_MOVE) != 0 {
                    if self.name_observed_pin_maker(target, mnt_ns, by, ts) {
                        return;
                    }
                    if self.recent_mounts.len() >= RECENT_MOUNTS {
                        self.recent_mounts.pop_front();
                    }
                    self.recent_mounts.push_back(RecentMount {
                        tid: ev.pid,
                        ts,
                        target: target.to_string(),
                        by,
                        paired: false,
                    });
                }
            }
            MountOp::Umount => {
                let key = normalize_path(target).to_string();
                let Some(slots) = self.pin_paths.get(&key).cloned() else {
                    return;
                };
                let mnt = (mnt_ns != 0).then_some(mnt_ns);
                // umount acts in the caller's mount namespace: a copy of the mount in another
                // one (same path) is neither retired nor the cleanup that failed.
                let here = |p: &PinRecord| {
                    p.kind == PinKind::BindMount
                        && p.path.as_deref().map(normalize_path) == Some(key.as_str())
                        && (p.mount_ns.is_none() || mnt.is_none() || p.mount_ns == mnt)
                };
                for r in slots {
                    if ret < 0 {
                        let Some(ns) = self.reg.get_mut(r) else {
                            continue;
                        };
                        if !ns.pins.iter().any(here) {
                            continue;
                        }
                        if ns.failed_umounts.len() >= MAX_FAILED_UMOUNTS {
                            ns.failed_umounts.remove(0);
                        }
                        ns.failed_umounts.push(FailedUmount {
                            path: target.to_string(),
                            errno: -ret,
                            at_ns: ts,
                            by,
                        });
                        self.notify(ts, Some(r), NoticeKind::CleanupFailed, |_| {
                            format!(
                                "umount {target} by {} ({}) failed: errno {}",
                                by.pid, by.comm, -ret
                            )
                        });
                    } else {
                        self.remove_pins(r, ts, here);
                    }
                }
            }
            _ => {}
        }
    }

    // ---- devices and addresses ----

    fn ips_of(&self, r: SlotRef) -> Vec<(Ipv4Addr, u32)> {
        self.reg
            .get(r)
            .map(|ns| ns.ipv4().map(|(a, _, i)| (a, i.ifindex)).collect())
            .unwrap_or_default()
    }

    /// Brings the IP index in line with the namespace after its interfaces changed.
    fn reindex(&mut self, r: SlotRef, before: Vec<(Ipv4Addr, u32)>, ts: u64) {
        let after = self.ips_of(r);
        for x in before.iter().filter(|x| !after.contains(x)) {
            self.unindex_ip(x.0, r, x.1);
        }
        if self.reg.get(r).is_none_or(|ns| ns.is_destroyed()) {
            return;
        }
        for x in after.iter().filter(|x| !before.contains(x)) {
            let v = self.ip_index.entry(x.0).or_default();
            if !v.contains(&(r, x.1)) {
                v.push((r, x.1));
            }
            self.check_duplicate(x.0, r, ts);
        }
    }

    fn unindex_ip(&mut self, ip: Ipv4Addr, r: SlotRef, ifindex: u32) {
        if let Some(v) = self.ip_index.get_mut(&ip) {
            v.retain(|x| *x != (r, ifindex));
            if v.is_empty() {
                self.ip_index.remove(&ip);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_netdev(
        &mut self,
        ts: u64,
        op: NetDevOp,
        netns: NsId,
        ifindex: u32,
        other: NsId,
        mac: Mac,
        name: &str,
    ) {
        match op {
            NetDevOp::Register => {
                let Some(r) = self.place(netns, Intent::Attach, false, ts) else {
                    return;
                };
                let before = self.ips_of(r);
                if let Some(ns) = self.reg.get_mut(r) {
                    match ns.interfaces.iter_mut().find(|i| i.ifindex == ifindex) {
                        Some(i) => {
                            i.name = name.to_string();
                            i.mac = mac;
                        }
                        None => ns.interfaces.push(InterfaceRecord {
                            name: name.to_string(),
                            ifindex,
                            mac,
                            ipv4: Vec::new(),
                        }),
                    }
                }
                self.reindex(r, before, ts);
            }
            NetDevOp::Unregister => {
                let Some(r) = self.place(netns, Intent::Attach, false, ts) else {
                    return;
                };
                let before = self.ips_of(r);
                if let Some(ns) = self.reg.get_mut(r) {
                    ns.interfaces.retain(|i| i.ifindex != ifindex);
                }
                self.reindex(r, before, ts);
            }
            NetDevOp::Move => {
                // `other` is where the device was; addresses do not survive a move.
                if let Some(from) = self.place(other, Intent::Attach, false, ts) {
                    let before = self.ips_of(from);
                    if let Some(ns) = self.reg.get_mut(from) {
                        ns.interfaces.retain(|i| i.ifindex != ifindex);
                    }
                    self.reindex(from, before, ts);
                }
                if let Some(to) = self.place(netns, Intent::Attach, false, ts)
                    && let Some(ns) = self.reg.get_mut(to)
                {
                    ns.interfaces.retain(|i| i.ifindex != ifindex);
                    ns.interfaces.push(InterfaceRecord {
                        name: name.to_string(),
                        ifindex,
                        mac,
                        ipv4: Vec::new(),
                    });
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ipv4(
        &mut self,
        ts: u64,
        op: AddrOp,
        netns: NsId,
        ifindex: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
        label: &str,
    ) {
        let Some(r) = self.place(netns, Intent::Attach, false, ts) else {
            return;
        };
        let before = self.ips_of(r);
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        match op {
            AddrOp::Add => {
                let iface = match ns.interfaces.iter().position(|i| i.ifindex == ifindex) {
                    Some(p) => &mut ns.interfaces[p],
                    None => {
                        // Address before (or without) the device record: the label names it.
                        let name = label.split(':').next().unwrap_or_default().to_string();
                        ns.interfaces.push(InterfaceRecord {
                            name,
                            ifindex,
                            mac: Mac::default(),
                            ipv4: Vec::new(),
                        });
                        ns.interfaces.last_mut().expect("just pushed")
                    }
                };
                if !iface.ipv4.iter().any(|(a, _)| *a == addr) {
                    iface.ipv4.push((addr, prefix_len));
                }
            }
            AddrOp::Del => {
                for i in ns.interfaces.iter_mut().filter(|i| i.ifindex == ifindex) {
                    i.ipv4.retain(|(a, _)| *a != addr);
                }
            }
        }
        self.reindex(r, before, ts);
    }

    fn on_interfaces(&mut self, ts: u64, netns: NsId, interfaces: &[Interface]) {
        let Some(r) = self.place(
            netns,
            Intent::Attach,
            !self.is_init(netns) || self.init.is_none(),
            ts,
        ) else {
            return;
        };
        self.set_interfaces(r, interfaces, ts);
    }

    fn set_interfaces(&mut self, r: SlotRef, interfaces: &[Interface], ts: u64) {
        let before = self.ips_of(r);
        if let Some(ns) = self.reg.get_mut(r) {
            ns.interfaces = interfaces
                .iter()
                .map(|i| InterfaceRecord {
                    name: i.name.clone(),
                    ifindex: i.ifindex,
                    mac: i.mac,
                    ipv4: i.ipv4.clone(),
                })
                .collect();
        }
        self.reindex(r, before, ts);
    }

    fn on_cgroup_path(&mut self, ts: u64, cgroup_id: u64, path: &str) {
        if cgroup_id != 0
            && let Some(candidates) = self.cgroup_waiters.get(&cgroup_id)
        {
            // Members that joined with this id before it was resolved, in registry order (the
            // order a scan of every namespace would find them in).
            let mut waiting: Vec<SlotRef> = candidates
                .iter()
                .copied()
                .filter(|&r| {
                    self.reg.get(r).is_some_and(|ns| {
                        !ns.is_init && ns.members.iter().any(|m| waits_for_cgroup(m, cgroup_id))
                    })
                })
                .collect();
            waiting.sort_unstable_by_key(|r| r.slot);
            for r in waiting {
                if let Some(ns) = self.reg.get_mut(r) {
                    for m in ns
                        .members
                        .iter_mut()
                        .filter(|m| waits_for_cgroup(m, cgroup_id))
                    {
                        m.cgroup_path = Some(path.into());
                    }
                }
                self.note_member_cgroup(r, path, ts);
            }
            // A span that left or got its path never waits again.
            if let Some(candidates) = self.cgroup_waiters.get_mut(&cgroup_id) {
                let before = candidates.len();
                candidates.retain(|&r| {
                    self.reg
                        .get(r)
                        .is_some_and(|ns| ns.members.iter().any(|m| waits_for_cgroup(m, cgroup_id)))
                });
                self.cgroup_waiter_entries -= before - candidates.len();
                if candidates.is_empty() {
                    self.cgroup_waiters.remove(&cgroup_id);
                }
            }
        }
        if self.cgroups.insert(cgroup_id, path.into()).is_none() {
            self.cgroup_order.push_back(cgroup_id);
            if self.cgroup_order.len() > MAX_CGROUP_PATHS
                && let Some(old) = self.cgroup_order.pop_front()
            {
                self.cgroups.remove(&old);
            }
        }
    }

    /// Namespace `r` got a member span waiting for `cgroup_id`'s path.
    fn add_cgroup_waiter(&mut self, cgroup_id: u64, r: SlotRef) {
        let candidates = self.cgroup_waiters.entry(cgroup_id).or_default();
        if !candidates.contains(&r) {
            candidates.push(r);
            self.cgroup_waiter_entries += 1;
        }
        if self.cgroup_waiter_entries > self.cgroup_waiters_rebuild_at {
            self.rebuild_cgroup_waiters();
        }
    }

    /// Rebuilds `cgroup_waiters` from the spans, dropping what no longer waits (ids never
    /// resolved, namespaces gone). Amortized: the next rebuild waits for twice the entries.
    fn rebuild_cgroup_waiters(&mut self) {
        self.cgroup_waiters.clear();
        let mut entries = 0;
        for (r, ns) in self.reg.iter() {
            for m in ns
                .members
                .iter()
                .filter(|m| waits_for_cgroup(m, m.cgroup_id))
            {
                let candidates = self.cgroup_waiters.entry(m.cgroup_id).or_default();
                if !candidates.contains(&r) {
                    candidates.push(r);
                    entries += 1;
                }
            }
        }
        self.cgroup_waiter_entries = entries;
        self.cgroup_waiters_rebuild_at = (2 * entries).max(MIN_CGROUP_WAITERS_REBUILD);
    }

    // ---- attribution ----

    /// A member's cgroup, read while it was alive: the cgroup path of its span, and the
    /// namespace's owner when the path says more than what is known.
    fn on_member_cgroup(&mut self, ev: &Event, netns: NsId, path: &str) {
        let ts = ev.ts_ns;
        let Some(r) = self.reg.find(netns, Intent::Attach) else {
            self.stats.unattributed_events += 1;
            return;
        };
        if let Some(span) = self.reg.get_mut(r).and_then(|ns| {
            ns.members
                .iter_mut()
                .rev()
                .find(|s| s.tgid == ev.tgid || s.pid == ev.pid)
        }) {
            span.cgroup_path = Some(path.into());
        }
        self.note_member_cgroup(r, path, ts);
    }

    fn note_member_cgroup(&mut self, r: SlotRef, path: &str, ts: u64) {
        // The path the owner was read from cannot say more than it did (`merge_cgroup` would
        // refuse it): skip parsing it again, as every further member of a pod would.
        if self
            .reg
            .get(r)
            .is_some_and(|ns| ns.owner.cgroup.as_deref() == Some(path))
        {
            return;
        }
        let from = owner_from_cgroup(path);
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        if ns.is_init || !ns.owner.merge_cgroup(&from) {
            return;
        }
        if let Some(id) = ns.owner.container_id.clone()
            && let Some(e) = self.cni.iter().rev().find(|e| e.container_id == id)
        {
            ns.owner.merge_cni(e);
        }
        self.owner_changed(r, ts);
    }

    /// A pin path names the sandbox (and, through the CNI cache, its pod and network).
    fn note_pin_path(&mut self, r: SlotRef, path: &str, ts: u64) {
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        if ns.is_init {
            return;
        }
        let mut changed = false;
        if let Some(sandbox) = sandbox_from_pin_path(path) {
            changed |= ns.owner.merge_sandbox(&sandbox);
        }
        if let Some(e) = find_by_netns_path(&self.cni, path) {
            changed |= ns.owner.merge_cni(e);
        }
        if changed {
            self.owner_changed(r, ts);
        }
    }

    /// A CNI cache entry: remembered, and given to the namespace its netns path or its
    /// container id points at.
    fn on_cni_result(&mut self, e: &CniCacheEntry) {
        let ts = self.stats.last_ts_ns.unwrap_or(0);
        self.cni.retain(|x| {
            (&x.network_name, &x.container_id, &x.if_name)
                != (&e.network_name, &e.container_id, &e.if_name)
        });
        if self.cni.len() >= MAX_CNI_ENTRIES {
            self.cni.remove(0);
        }
        self.cni.push(e.clone());

        let mut targets: Vec<SlotRef> = Vec::new();
        if let Some(path) = e.netns_path.as_deref() {
            let proc_pid =
                crate::attribution::sandbox_from_pin_path(path).and_then(|s| match s.kind {
                    crate::attribution::SandboxKind::Process { pid } => Some(pid),
                    _ => None,
                });
            match proc_pid {
                // `/proc/PID/ns/net` (docker, podman): the namespace that process was in.
                Some(pid) => targets.extend(
                    self.reg
                        .iter()
                        .filter(|(_, ns)| {
                            !ns.is_destroyed() && ns.members.iter().any(|m| m.tgid == pid)
                        })
                        .map(|(r, _)| r),
                ),
                None => {
                    if let Some(slots) = self.pin_paths.get(normalize_path(path)) {
                        targets.extend(slots.iter().copied());
                    }
                }
            }
        }
        targets.extend(
            self.reg
                .iter()
                .filter(|(_, ns)| ns.owner.container_id.as_deref() == Some(&e.container_id))
                .map(|(r, _)| r),
        );
        targets.sort();
        targets.dedup();
        for r in targets {
            if let Some(ns) = self.reg.get_mut(r)
                && !ns.is_init
                && ns.owner.merge_cni(e)
            {
                self.owner_changed(r, ts);
            }
        }
    }

    /// Keeps a raised leak finding's owner (and the owner in its summary) current.
    fn owner_changed(&mut self, r: SlotRef, _ts: u64) {
        let Some(ns) = self.reg.get(r) else {
            return;
        };
        let Some(i) = ns.leak_finding else {
            return;
        };
        let (id, owner) = (ns.id(), ns.owner.clone());
        let Some(f) = self.findings.get_mut(i) else {
            return;
        };
        if let FindingDetail::LeakedNetns { owner: o, .. } = &mut f.detail {
            let old = owner_part(o.as_deref());
            let new = owner_part(Some(&owner));
            if f.summary.starts_with(&format!("{id}{old}")) {
                f.summary = format!("{id}{new}{}", &f.summary[id.len() + old.len()..]);
            }
            *o = Some(Box::new(owner));
        }
    }

    // ---- snapshots ----

    fn on_snapshot(&mut self, ts: u64, snap: &Snapshot) {
        let start = snap.phase == SnapshotPhase::Start;
        if start {
            self.stats.start_snapshot_at_ns = Some(ts);
        } else {
            self.stats.final_snapshot_at_ns = Some(ts);
        }
        if !snap.init_netns.is_none() {
            self.init = Some(snap.init_netns);
            let r = match self.reg.find(snap.init_netns, Intent::Attach) {
                Some(r) => r,
                None => self.new_life(snap.init_netns, Origin::Snapshot, ts),
            };
            if let Some(ns) = self.reg.get_mut(r) {
                ns.is_init = true;
            }
            self.reevaluate(r, ts);
        }
        for sn in &snap.namespaces {
            if sn.netns.is_none() {
                continue;
            }
            let origin = if start {
                Origin::Snapshot
            } else {
                Origin::Inferred
            };
            let r = match self.reg.find(sn.netns, Intent::Join) {
                Some(r) => r,
                None => self.new_life(sn.netns, origin, ts),
            };
            if sn.interfaces_error.is_none() {
                self.set_interfaces(r, &sn.interfaces, ts);
            }
            for pin in &sn.pins {
                self.add_pin(r, Self::pin_record(pin, ts), ts);
            }
            let Some(ns) = self.reg.get(r) else { continue };
            if ns.is_init {
                continue;
            }
            let was_memberless = ns.live_tasks == 0;
            if start || was_memberless {
                for m in &sn.members {
                    self.join(r, m.pid, m.tgid, m.comm, 0, None, JoinHow::Snapshot, ts);
                    if let Some(span) = self.reg.get_mut(r).and_then(|ns| ns.open_span_mut(m.tgid))
                        && !m.cgroup.is_empty()
                    {
                        span.cgroup_path = Some(m.cgroup.as_str().into());
                        self.note_member_cgroup(r, &m.cgroup, ts);
                    }
                }
            }
            if !start
                && was_memberless
                && !sn.members.is_empty()
                && let Some(i) = self.reg.get(r).and_then(|ns| ns.leak_finding)
            {
                let names: Vec<String> = sn
                    .members
                    .iter()
                    .take(3)
                    .map(|m| format!("{} ({})", m.pid, m.comm))
                    .collect();
                self.findings[i].add_uncertainty(&format!(
                    "the final snapshot found members: {}",
                    names.join(", ")
                ));
            }
            self.reevaluate(r, ts);
        }
    }

    // ---- findings ----

    fn push_finding(&mut self, r: Option<SlotRef>, mut f: Finding) -> usize {
        let lost = self.losses.overlapping(&f.detail, f.window);
        if !lost.is_empty() {
            f.add_uncertainty(&loss_reason(&lost));
        }
        let summary = f.summary.clone();
        let ts = f.raised_at_ns;
        self.findings.push(f);
        self.notify(ts, r, NoticeKind::Finding, |_| summary);
        self.findings.len() - 1
    }

    fn raise_leak(&mut self, r: SlotRef, ts: u64) {
        let Some(ns) = self.reg.get(r) else { return };
        if ns.leak_finding.is_some() || ns.is_init {
            return;
        }
        let suspect = ns.state == NsState::LeakSuspect;
        let history_unknown = suspect && ns.origin != Origin::Traced;
        let unknown_pin = match ns.creator_role() {
            CreatorRole::Unknown { path } if suspect && !history_unknown => Some(path),
            _ => None,
        };
        let id = ns.id();
        let holders = if ns.pins.is_empty() {
            "no holder was observed (a socket or an fd opened before the trace?)".to_string()
        } else {
            ns.pins
                .iter()
                .map(|p| p.describe())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let summary = if history_unknown {
            format!(
                "{id}{} has no member process and still exists (history unknown); held by {holders}",
                owner_part(Some(&ns.owner))
            )
        } else {
            let last = ns
                .last_member
                .map(|m| {
                    let ago = ts.saturating_sub(m.exited_at_ns) / 1_000_000_000;
                    format!("last member {} ({}) left {ago}s ago", m.pid, m.comm)
                })
                .unwrap_or_else(|| "its last member left".into());
            let verdict = if unknown_pin.is_some() {
                "may be leaked"
            } else {
                "leaked"
            };
            format!(
                "{id}{} {verdict}: {last}; held by {holders}",
                owner_part(Some(&ns.owner))
            )
        };
        let mut f = Finding {
            netns: id,
            summary,
            raised_at_ns: ts,
            uncertain: false,
            uncertain_reason: None,
            window: EvidenceWindow {
                from_ns: ns.born_at_ns(),
                to_ns: ts,
            },
            detail: FindingDetail::LeakedNetns {
                pins: ns.pins.iter().map(PinEvidence::from).collect(),
                last_member: ns.last_member,
                failed_cleanups: ns.failed_umounts.clone(),
                interfaces: ns.interfaces.iter().map(InterfaceEvidence::from).collect(),
                history_unknown,
                resolved_at_ns: None,
                owner: (!ns.owner.is_empty()).then(|| Box::new(ns.owner.clone())),
            },
        };
        if history_unknown {
            f.add_uncertainty("history unknown: memberless when first seen, so it may be a deliberate persistent namespace");
        }
        if let Some(path) = unknown_pin {
            f.add_uncertainty(&format!(
                "who made the bind mount at {path} was not seen (its mount call was lost or came before the trace), so whether its creator only set it up to persist or lived in it cannot be told"
            ));
        }
        let last_exit = ns.last_member.map(|m| m.exited_at_ns);
        let replies: Vec<ArpReplySeen> = ns
            .recent_replies
            .iter()
            .filter(|rep| rep.dir == Direction::Tx && last_exit.is_some_and(|e| rep.at_ns >= e))
            .copied()
            .collect();
        let was_leaked = ns.state == NsState::Leaked;
        let my_id = f.netns.clone();
        let i = self.push_finding(Some(r), f);
        if let Some(ns) = self.reg.get_mut(r) {
            ns.leak_finding = Some(i);
        }
        if !was_leaked {
            return;
        }
        for f in self.findings.iter_mut() {
            if let FindingDetail::DuplicateIp {
                ip,
                holders,
                involves_leaked,
            } = &mut f.detail
                && let Some(h) = holders.iter_mut().find(|h| h.netns == my_id)
            {
                h.state = NsState::Leaked;
                *involves_leaked = true;
                f.summary = duplicate_summary(*ip, holders);
            }
        }
        for rep in replies {
            self.check_stale(r, rep);
        }
    }

    fn check_duplicate(&mut self, ip: Ipv4Addr, r: SlotRef, ts: u64) {
        if ip_is_shareable(ip) {
            return;
        }
        let Some(v) = self.ip_index.get(&ip) else {
            return;
        };
        let holds = |s: SlotRef| self.reg.get(s).is_some_and(claims_its_addresses);
        let mut slots: Vec<SlotRef> = v.iter().map(|x| x.0).filter(|s| holds(*s)).collect();
        slots.sort();
        slots.dedup();
        if slots.len() < 2 || !self.dup_keys.insert((ip, slots.clone())) {
            return;
        }
        let mut holders = Vec::new();
        let mut from = ts;
        for &(s, ifindex) in v {
            let Some(ns) = self.reg.get(s).filter(|ns| claims_its_addresses(ns)) else {
                continue;
            };
            from = from.min(ns.born_at_ns());
            let iface = ns.interfaces.iter().find(|i| i.ifindex == ifindex);
            holders.push(DuplicateHolder {
                netns: ns.id(),
                ifname: iface.map(|i| i.name.clone()).unwrap_or_default(),
                ifindex,
                mac: iface.map(|i| i.mac).unwrap_or_default(),
                state: ns.state,
            });
        }
        let involves_leaked = holders.iter().any(|h| h.state == NsState::Leaked);
        let netns = self.reg.get(r).map(|ns| ns.id()).unwrap_or_default();
        let f = Finding {
            netns,
            summary: duplicate_summary(ip, &holders),
            raised_at_ns: ts,
            uncertain: false,
            uncertain_reason: None,
            window: EvidenceWindow {
                from_ns: from,
                to_ns: ts,
            },
            detail: FindingDetail::DuplicateIp {
                ip,
                holders,
                involves_leaked,
            },
        };
        self.push_finding(Some(r), f);
    }

    fn on_arp(&mut self, netns: NsId, op: u16, rep: ArpReplySeen) {
        let Some(r) = self.place(netns, Intent::Attach, false, rep.at_ns) else {
            return;
        };
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        let c = &mut ns.arp;
        match (op, rep.dir) {
            (1, Direction::Tx) => c.requests_tx += 1,
            (1, Direction::Rx) => c.requests_rx += 1,
            (2, Direction::Tx) => c.replies_tx += 1,
            (2, Direction::Rx) => c.replies_rx += 1,
            _ => {}
        }
        if op == 2 {
            ns.remember_reply(rep);
            self.check_stale(r, rep);
        }
    }

    /// Live, non-leaked holders of `ip` with their MACs; members-holding ones first.
    fn owners_of(&self, ip: Ipv4Addr) -> Vec<(SlotRef, Mac)> {
        let Some(v) = self.ip_index.get(&ip) else {
            return Vec::new();
        };
        let mut owners: Vec<(SlotRef, Mac, bool)> = v
            .iter()
            .filter_map(|&(s, ifindex)| {
                let ns = self.reg.get(s)?;
                if ns.is_destroyed() || matches!(ns.state, NsState::Leaked | NsState::LeakSuspect) {
                    return None;
                }
                let mac = ns.interfaces.iter().find(|i| i.ifindex == ifindex)?.mac;
                Some((
                    s,
                    mac,
                    ns.state == NsState::Alive || ns.state == NsState::Persistent,
                ))
            })
            .collect();
        if owners.iter().any(|o| o.2) {
            owners.retain(|o| o.2);
        }
        owners.into_iter().map(|(s, m, _)| (s, m)).collect()
    }

    fn check_stale(&mut self, r: SlotRef, rep: ArpReplySeen) {
        if rep.sender_ip.is_unspecified() {
            return;
        }
        let Some(ns) = self.reg.get(r) else { return };
        let from_leaked = rep.dir == Direction::Tx && ns.state == NsState::Leaked;
        // Common case without allocating: a single owner whose MAC matches.
        if !from_leaked
            && let Some(v) = self.ip_index.get(&rep.sender_ip)
            && let [(s, ifindex)] = v.as_slice()
            && let Some(owner) = self.reg.get(*s)
            && !matches!(owner.state, NsState::Leaked | NsState::LeakSuspect)
            && owner
                .interfaces
                .iter()
                .any(|i| i.ifindex == *ifindex && i.mac == rep.sender_mac)
        {
            return;
        }
        let owners = self.owners_of(rep.sender_ip);
        let owner = owners
            .iter()
            .find(|(s, _)| *s != r)
            .or(owners.first())
            .copied();
        // A live namespace answering for its own address is not stale just because its
        // interfaces have not been read yet while a memberless one still lists the address:
        // only an owner that is itself alive can contradict a live replier.
        let replier_alive = rep.dir == Direction::Tx && ns.state == NsState::Alive;
        let owner_alive = owners
            .iter()
            .any(|(s, _)| self.reg.get(*s).is_some_and(|o| o.state == NsState::Alive));
        let reason = if from_leaked {
            StaleReason::SentFromLeakedNetns
        } else if replier_alive && !owner_alive {
            return;
        } else if !owners.is_empty() && !owners.iter().any(|(_, m)| *m == rep.sender_mac) {
            StaleReason::MacMismatch
        } else {
            return;
        };
        if !self.stale_keys.insert((rep.sender_ip, rep.sender_mac)) {
            return;
        }
        let observed_in = ns.id();
        let owner_id = owner.and_then(|(s, _)| self.reg.get(s)).map(|o| o.id());
        let expected = owner.map(|(_, m)| m);
        let verb = if rep.dir == Direction::Tx {
            "sent"
        } else {
            "received"
        };
        let mut summary = format!(
            "{observed_in} {verb} an ARP reply claiming {} is at {}",
            rep.sender_ip, rep.sender_mac
        );
        if from_leaked {
            summary.push_str(" from a leaked namespace");
        }
        if let (Some(o), Some(m)) = (&owner_id, expected) {
            summary.push_str(&format!("; {} belongs to {o} at {m}", rep.sender_ip));
        }
        let from = ns
            .last_member
            .map_or(ns.born_at_ns(), |m| m.exited_at_ns.min(rep.at_ns));
        let f = Finding {
            netns: observed_in.clone(),
            summary,
            raised_at_ns: rep.at_ns,
            uncertain: false,
            uncertain_reason: None,
            window: EvidenceWindow {
                from_ns: from,
                to_ns: rep.at_ns,
            },
            detail: FindingDetail::StaleArpReply {
                observed_at_ns: rep.at_ns,
                observed_in,
                dir: rep.dir,
                ifindex: rep.ifindex,
                sender_ip: rep.sender_ip,
                sender_mac: rep.sender_mac,
                target_ip: rep.target_ip,
                expected_mac: expected,
                owner_netns: owner_id,
                reason,
            },
        };
        self.push_finding(Some(r), f);
    }

    fn on_lost(&mut self, ts: u64, kind: u16, count: u64) {
        if count == 0 {
            return;
        }
        let iv = self.losses.record(kind, count, ts);
        let reason = loss_reason(&BTreeMap::from([(
            netns_trace_common::EventKind::name_of(kind),
            count,
        )]));
        for f in self.findings.iter_mut() {
            if iv.affects(&f.detail, f.window) {
                f.add_uncertainty(&reason);
            }
        }
        self.notify(ts, None, NoticeKind::EventsLost, |_| {
            format!(
                "{count} {} records lost (ring buffer full)",
                netns_trace_common::EventKind::name_of(kind)
            )
        });
    }
}

/// A span still in its namespace whose cgroup path is unknown, and whose `cgroup_id` a
/// `CgroupPath` for `cgroup_id` would resolve.
fn waits_for_cgroup(m: &MemberSpan, cgroup_id: u64) -> bool {
    cgroup_id != 0 && m.cgroup_id == cgroup_id && m.left_at_ns.is_none() && m.cgroup_path.is_none()
}

/// ` (pod UID container ID)` after a namespace id in a summary, or nothing.
fn owner_part(owner: Option<&crate::attribution::Owner>) -> String {
    owner
        .and_then(|o| o.short())
        .map(|s| format!(" ({s})"))
        .unwrap_or_default()
}

/// Whether a namespace's addresses count against others. One that lost its last member and
/// that nothing known holds is on its way out (its teardown may only show at its free, one
/// cleanup_net run later on 6.13+ in tracepoint mode): it counts again once a pin is seen or
/// it is judged leaked.
fn claims_its_addresses(ns: &Namespace) -> bool {
    !ns.is_destroyed() && (ns.state != NsState::Draining || !ns.pins.is_empty())
}

fn duplicate_summary(ip: Ipv4Addr, holders: &[DuplicateHolder]) -> String {
    let list: Vec<String> = holders
        .iter()
        .map(|h| format!("{} ({} {}, {})", h.netns, h.ifname, h.mac, h.state))
        .collect();
    format!(
        "{ip} is assigned in {} live namespaces: {}",
        holders.len(),
        list.join(", ")
    )
}
