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
//!
//! This file holds [`Collector`], its public API, the dispatch of each event to the part that
//! handles it, the deadlines, and `evaluate`, the one place a namespace's state is decided.
//! The handlers, by concern:
//! - identity.rs: which namespace an event is about (cookie, inum reuse), starting a life;
//! - lifecycle.rs: creation, teardown and free, what a destruction settles;
//! - membership.rs: tasks joining and leaving, member spans, cgroup paths;
//! - pins.rs: pins added and removed, mount calls and nsfs grafts (who made a pin);
//! - addresses.rs: devices, IPv4 addresses and the address index, ARP;
//! - owners.rs: pod, container, sandbox and CNI network of a namespace;
//! - cni_calls.rs: CNI plugin runs and the namespace each named;
//! - cni_gc.rs: the CNI GC dry run (which cached attachments are stale);
//! - snapshot.rs: the Start and Final snapshots;
//! - findings.rs: the finding types and the verdicts that raise them;
//! - losses.rs: lost records and the findings they make uncertain.

mod addresses;
pub mod cni_calls;
pub mod cni_gc;
pub mod findings;
mod identity;
mod lifecycle;
mod losses;
mod membership;
pub mod namespace;
mod owners;
mod pins;
mod snapshot;
// A generated event stream for unit tests, `dev synth` and benches; not in what ships.
#[cfg(any(test, feature = "dev"))]
pub mod synthetic;
#[cfg(test)]
mod test_events;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use addresses::IpIndex;
pub use findings::*;
use identity::Registry;
pub(crate) use identity::SlotRef;
use lifecycle::NetnsEnd;
use losses::LossLog;
use membership::{Cgroups, TaskLoc};
pub use namespace::*;
use pins::{MountLog, PinPaths};

use crate::attribution::{CniCacheEntry, NodeMountNs};
use crate::model::{CleanupRun, Event, EventBody, NeighUpdate, NsId};

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
    /// A namespace's packets outran its budget: some of its ARP records were not traced.
    PacketsLimited,
}

/// A lifecycle line for `watch`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Notice {
    pub ts_ns: u64,
    /// Namespace id (empty for notices not about one namespace).
    pub netns: String,
    pub kind: NoticeKind,
    pub text: String,
    /// The life it is about, for outputs that follow lives ([`Collector::life`]): `netns`
    /// changes when the cookie is learnt, this does not. Not serialized.
    #[serde(skip)]
    pub(crate) life: Option<SlotRef>,
    /// The state a `StateChanged` moved to (its text is for people). Not serialized.
    #[serde(skip)]
    pub(crate) new_state: Option<NsState>,
}

/// Notices are equal when they say the same thing: `life` and `new_state` are handles into
/// the collector that made them, and do not survive serialization.
impl PartialEq for Notice {
    fn eq(&self, other: &Self) -> bool {
        (self.ts_ns, &self.netns, self.kind, &self.text)
            == (other.ts_ns, &other.netns, other.kind, &other.text)
    }
}

impl Eq for Notice {}

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
    /// Stale ARP replies not made findings because [`findings::MAX_STALE_FINDINGS`] were
    /// already raised.
    pub stale_replies_unreported: u64,
    /// Packet records counted in the kernel instead of sent (every namespace's budget).
    pub packet_records_limited: u64,
    /// A teardown hook (fentry/kprobe) delivered at least one event.
    pub teardown_hook_seen: bool,
    /// Events about namespaces the collector did not know and could not place.
    pub unattributed_events: u64,
}

/// The task an event names: the one that caused it.
fn task_of(ev: &Event) -> Actor {
    Actor {
        pid: ev.pid,
        tgid: ev.tgid,
        comm: ev.comm,
    }
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
    /// By thread id, the namespace each traced thread is a member of.
    tasks: FxHashMap<u32, TaskLoc>,
    cgroups: Cgroups,
    /// The CNI result cache as last observed (entries reported gone are removed), oldest
    /// first.
    cni: Vec<CniCacheEntry>,
    cni_calls: cni_calls::CniCalls,
    /// Live (not destroyed) holders of each IPv4 address: (namespace, ifindex).
    ip_index: IpIndex,
    /// Normalized bind-mount pin path → namespaces pinned there.
    pin_paths: PinPaths,
    mounts: MountLog,
    deadlines: BinaryHeap<Reverse<Deadline>>,
    destroyed: VecDeque<SlotRef>,
    findings: Vec<Finding>,
    raised: RaisedOnce,
    losses: LossLog,
    init: Option<NsId>,
    /// Which pins speak for the sandbox their path names (from the snapshots).
    node_mnt: NodeMountNs,
    stats: CollectorStats,
    out: Vec<Notice>,
}

impl Collector {
    pub fn new(cfg: CollectorConfig) -> Self {
        Self {
            cfg,
            reg: Registry::default(),
            tasks: FxHashMap::default(),
            cgroups: Cgroups::default(),
            cni: Vec::new(),
            cni_calls: Default::default(),
            ip_index: IpIndex::default(),
            pin_paths: PinPaths::default(),
            mounts: MountLog::default(),
            deadlines: BinaryHeap::new(),
            destroyed: VecDeque::new(),
            findings: Vec::new(),
            raised: RaisedOnce::default(),
            losses: LossLog::default(),
            init: None,
            node_mnt: NodeMountNs::default(),
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

    /// The life a [`Notice`] names; None once the retention limit dropped it.
    pub(crate) fn life(&self, r: SlotRef) -> Option<&Namespace> {
        self.reg.get(r)
    }

    /// The life the collector attaches a follow-up event about `id` to (teardown, an ARP
    /// packet, an address): asked after it handled the event, this is where it put it.
    pub(crate) fn life_of(&self, id: NsId) -> Option<SlotRef> {
        self.reg.peek(id)
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
        self.cgroups.path(cgroup_id)
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
            EventBody::NetnsCreated(e) => self.on_created(ts, task_of(ev), e),
            EventBody::Task(e) => self.on_task(ts, task_of(ev), e),
            EventBody::NetnsTeardown(e) => self.on_end(ts, e, NetnsEnd::Teardown),
            EventBody::NetnsFreed(e) => self.on_end(ts, e, NetnsEnd::Freed),
            EventBody::CleanupRun(CleanupRun {}) => self.on_cleanup_run(ts),
            EventBody::MountSyscall(e) => self.on_mount_syscall(ts, task_of(ev), e),
            EventBody::NsfsMount(e) => self.on_nsfs_mount(ts, task_of(ev), e),
            EventBody::NsfsEvict(e) => self.on_nsfs_evict(ts, e),
            EventBody::NetDev(e) => self.on_netdev(ts, e),
            EventBody::Ipv4Addr(e) => self.on_ipv4(ts, e),
            EventBody::Arp(e) => self.on_arp(ts, e),
            EventBody::Ndisc(e) => self.on_ndisc(ts, e),
            EventBody::NeighUpdate(NeighUpdate { .. }) => {}
            EventBody::PacketsLimited(e) => self.on_packets_limited(ts, e),
            EventBody::Lost(e) => self.on_lost(ts, e),
            EventBody::PinAdded(e) => self.on_pin_added(ts, e),
            EventBody::PinRemoved(e) => self.on_pin_removed(ts, e),
            EventBody::Interfaces(e) => self.on_interfaces(ts, e),
            EventBody::CgroupPath(e) => self.on_cgroup_path(ts, e),
            EventBody::MemberCgroup(e) => self.on_member_cgroup(ts, task_of(ev), e),
            EventBody::CniResult(entry) => self.on_cni_result(entry),
            EventBody::CniResultGone(e) => self.on_cni_result_gone(e),
            EventBody::CniExec(e) => self.on_cni_exec(ev, e),
            EventBody::CniExit(e) => self.on_cni_exit(ev, e),
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
            life: r,
            new_state: None,
        });
    }

    // ---- state ----

    fn evaluate(&self, ns: &Namespace, now: u64) -> NsState {
        self.verdict_at(ns, now).0
    }

    /// A namespace's state as of `now`, and the fact that decided it: the one rule set behind
    /// every state (`evaluate`) and every explanation (`report --netns`).
    pub fn verdict_at(&self, ns: &Namespace, now: u64) -> (NsState, VerdictReason) {
        if let Some(at_ns) = ns.destroyed_at_ns() {
            return (
                NsState::Destroyed,
                VerdictReason::Destroyed {
                    at_ns,
                    was: ns.state_before_destroy,
                },
            );
        }
        if ns.is_init {
            return (NsState::Alive, VerdictReason::HostNamespace);
        }
        if ns.live_tasks > 0 {
            return (
                NsState::Alive,
                VerdictReason::HasMembers {
                    live_tasks: ns.live_tasks,
                },
            );
        }
        // Only the creator was ever inside: whether its departure starts the leak clock
        // depends on what it was to the namespace (see `CreatorRole`).
        let mut maker_unknown = None;
        let lived_in = ns.had_real_member
            || (ns.creator_tgid != 0
                && ns.last_member.is_some()
                && match ns.creator_role() {
                    CreatorRole::SetUp => false,
                    CreatorRole::LivedThere => true,
                    CreatorRole::Unknown { path } => {
                        maker_unknown = Some(path);
                        true
                    }
                });
        // Without a traced history (or a snapshot's member list) memberlessness is unproven.
        if ns.origin == Origin::Inferred || !lived_in {
            return if ns.origin == Origin::Traced {
                (
                    NsState::Persistent,
                    VerdictReason::SetUpByCreator {
                        pinned_by_creator: ns.pinned_by_creator,
                    },
                )
            } else {
                (
                    NsState::LeakSuspect,
                    VerdictReason::HistoryUnknown { origin: ns.origin },
                )
            };
        }
        let since_ns = ns.last_member.map_or(ns.first_seen_ns, |m| m.exited_at_ns);
        let grace_ns = self.cfg.grace_ns;
        if now >= since_ns.saturating_add(grace_ns) {
            // Tracepoint mode on 6.13+ sees a namespace's end only as its free, which waits for
            // the *next* cleanup_net run. Nothing observed holds it and a cleanup ran after its
            // last member left: its teardown is pending, not a leak.
            let cleanup_run = self
                .stats
                .last_cleanup_run_ns
                .filter(|&run| run >= since_ns);
            if let Some(run_ns) =
                cleanup_run.filter(|_| ns.pins.is_empty() && !self.stats.teardown_hook_seen)
            {
                (
                    NsState::Draining,
                    VerdictReason::TeardownPending {
                        since_ns,
                        cleanup_run_ns: run_ns,
                    },
                )
            } else if let Some(path) = maker_unknown {
                // Persistent by design or leaked: the evidence cannot tell, and says so.
                (
                    NsState::LeakSuspect,
                    VerdictReason::PinMakerUnknown { since_ns, path },
                )
            } else {
                (
                    NsState::Leaked,
                    VerdictReason::MemberlessPastGrace { since_ns, grace_ns },
                )
            }
        } else {
            (
                NsState::Draining,
                VerdictReason::InGrace { since_ns, grace_ns },
            )
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
        if self.cfg.notices
            && let Some(n) = self.out.last_mut()
        {
            n.new_state = Some(new);
        }
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
}
