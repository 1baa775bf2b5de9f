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

mod addresses;
pub mod findings;
mod identity;
mod lifecycle;
mod losses;
mod membership;
pub mod namespace;
mod owners;
mod pins;
pub mod synthetic;
#[cfg(test)]
mod tests;

use crate::model::{CleanupRun, NeighUpdate};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::Ipv4Addr;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use addresses::IpIndex;
pub use findings::*;
use identity::{Intent, Registry, SlotRef};
use lifecycle::NetnsEnd;
use losses::{LossLog, loss_reason};
use membership::{Cgroups, TaskLoc};
pub use namespace::*;
use pins::{MountLog, PinPaths};

use crate::attribution::CniCacheEntry;
use crate::model::{Direction, Event, EventBody, Mac, NsId, Snapshot, SnapshotPhase};

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
    /// The CNI result cache as last observed, oldest first.
    cni: Vec<CniCacheEntry>,
    /// Live (not destroyed) holders of each IPv4 address: (namespace, ifindex).
    ip_index: IpIndex,
    /// Normalized bind-mount pin path → namespaces pinned there.
    pin_paths: PinPaths,
    mounts: MountLog,
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
            cgroups: Cgroups::default(),
            cni: Vec::new(),
            ip_index: IpIndex::default(),
            pin_paths: PinPaths::default(),
            mounts: MountLog::default(),
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
            EventBody::NeighUpdate(NeighUpdate { .. }) => {}
            EventBody::Lost(e) => self.on_lost(ts, e),
            EventBody::PinAdded(e) => self.on_pin_added(ts, e),
            EventBody::PinRemoved(e) => self.on_pin_removed(ts, e),
            EventBody::Interfaces(e) => self.on_interfaces(ts, e),
            EventBody::CgroupPath(e) => self.on_cgroup_path(ts, e),
            EventBody::MemberCgroup(e) => self.on_member_cgroup(ts, task_of(ev), e),
            EventBody::CniResult(entry) => self.on_cni_result(entry),
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
                    let member = Actor {
                        pid: m.pid,
                        tgid: m.tgid,
                        comm: m.comm,
                    };
                    self.join(r, member, 0, JoinHow::Snapshot, ts);
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
