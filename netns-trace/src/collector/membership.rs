//! Membership: tasks joining and leaving (fork, unshare, setns, exit), the member spans and
//! last member that the verdict reads, and the cgroup paths that name members' owners.
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

use super::identity::{IfUnknown, Intent, Registry, SlotRef};
use super::namespace::{Actor, JoinHow, LastMember, LeaveHow, MemberSpan, Origin};
use super::{Collector, NoticeKind};
use crate::model::{CgroupPath, Comm, CreatedBy, NsId, TaskNetns, TaskOp};

/// cgroup paths remembered (see `Cgroups::order`).
const MAX_CGROUP_PATHS: usize = 65_536;

/// `Cgroups::waiters` is not rebuilt below this many entries.
const MIN_CGROUP_WAITERS_REBUILD: usize = 4_096;

/// Where a traced thread is a member.
#[derive(Clone, Copy)]
pub(super) struct TaskLoc {
    pub(super) ns: SlotRef,
    pub(super) tgid: u32,
}

/// A span still in its namespace whose cgroup path is unknown, and whose `cgroup_id` a
/// `CgroupPath` for `cgroup_id` would resolve.
fn waits_for_cgroup(m: &MemberSpan, cgroup_id: u64) -> bool {
    cgroup_id != 0 && m.cgroup_id == cgroup_id && m.left_at_ns.is_none() && m.cgroup_path.is_none()
}

/// cgroup ids resolved to paths, and the namespaces whose members wait for one.
pub(super) struct Cgroups {
    paths: FxHashMap<u64, Box<str>>,
    /// Resolution order, oldest first: past `MAX_CGROUP_PATHS` the oldest is forgotten.
    order: VecDeque<u64>,
    /// By cgroup id, the namespaces that may have a member waiting for that id's path (see
    /// `waits_for_cgroup`): a superset, checked on use, so that a `CgroupPath` does not scan
    /// every namespace.
    waiters: FxHashMap<u64, Vec<SlotRef>>,
    waiter_entries: usize,
    /// Entry count past which `waiters` is rebuilt, dropping ids never resolved.
    waiters_rebuild_at: usize,
}

impl Default for Cgroups {
    fn default() -> Self {
        Self {
            paths: FxHashMap::default(),
            order: VecDeque::new(),
            waiters: FxHashMap::default(),
            waiter_entries: 0,
            waiters_rebuild_at: MIN_CGROUP_WAITERS_REBUILD,
        }
    }
}

impl Cgroups {
    pub(super) fn path(&self, cgroup_id: u64) -> Option<&str> {
        self.paths.get(&cgroup_id).map(|p| &**p)
    }

    fn remember(&mut self, cgroup_id: u64, path: &str) {
        if self.paths.insert(cgroup_id, path.into()).is_none() {
            self.order.push_back(cgroup_id);
            if self.order.len() > MAX_CGROUP_PATHS
                && let Some(old) = self.order.pop_front()
            {
                self.paths.remove(&old);
            }
        }
    }

    /// Namespace `r` got a member span waiting for `cgroup_id`'s path.
    fn add_waiter(&mut self, cgroup_id: u64, r: SlotRef, reg: &Registry) {
        let candidates = self.waiters.entry(cgroup_id).or_default();
        if !candidates.contains(&r) {
            candidates.push(r);
            self.waiter_entries += 1;
        }
        if self.waiter_entries > self.waiters_rebuild_at {
            self.rebuild_waiters(reg);
        }
    }

    /// Rebuilds `waiters` from the spans, dropping what no longer waits (ids never
    /// resolved, namespaces gone). Amortized: the next rebuild waits for twice the entries.
    fn rebuild_waiters(&mut self, reg: &Registry) {
        self.waiters.clear();
        let mut entries = 0;
        for (r, ns) in reg.iter() {
            for m in ns
                .members
                .iter()
                .filter(|m| waits_for_cgroup(m, m.cgroup_id))
            {
                let candidates = self.waiters.entry(m.cgroup_id).or_default();
                if !candidates.contains(&r) {
                    candidates.push(r);
                    entries += 1;
                }
            }
        }
        self.waiter_entries = entries;
        self.waiters_rebuild_at = (2 * entries).max(MIN_CGROUP_WAITERS_REBUILD);
    }

    /// A span that left or got its path never waits again.
    fn prune_waiters(&mut self, cgroup_id: u64, reg: &Registry) {
        if let Some(candidates) = self.waiters.get_mut(&cgroup_id) {
            let before = candidates.len();
            candidates.retain(|&r| {
                reg.get(r)
                    .is_some_and(|ns| ns.members.iter().any(|m| waits_for_cgroup(m, cgroup_id)))
            });
            self.waiter_entries -= before - candidates.len();
            if candidates.is_empty() {
                self.waiters.remove(&cgroup_id);
            }
        }
    }
}

impl Collector {
    pub(super) fn on_task(&mut self, ts: u64, task: Actor, e: &TaskNetns) {
        let &TaskNetns {
            op,
            netns,
            prev,
            cgroup_id,
            ppid,
            ..
        } = e;
        let tid = task.pid;
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
                        let parent = Actor {
                            pid: ppid,
                            tgid: ppid,
                            comm: task.comm,
                        };
                        self.infer_creation(r, ts, parent, CreatedBy::Clone, prev);
                        r
                    }
                    None => match self.place(netns, Intent::Join, IfUnknown::Infer, ts) {
                        Some(r) => r,
                        None => return,
                    },
                };
                self.join(r, task, cgroup_id, JoinHow::Fork, ts);
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
                        && let Some(r) = self.place(netns, Intent::Join, IfUnknown::Skip, ts)
                    {
                        self.join(r, task, cgroup_id, JoinHow::Inferred, ts);
                    }
                    return;
                }
                if !self.leave(tid, ts, leave_how, None) && !self.is_init(prev) {
                    self.unseen_member_left(prev, task, ts, leave_how);
                }
                if self.is_init(netns) {
                    return;
                }
                let r = match self.reg.find(netns, Intent::Join) {
                    Some(r) => r,
                    // unshare(CLONE_NEWNET) always makes a fresh namespace: its record was lost.
                    None if op == TaskOp::Unshare => {
                        let r = self.new_life(netns, Origin::Traced, ts);
                        self.infer_creation(r, ts, task, CreatedBy::Unshare, prev);
                        r
                    }
                    None => match self.place(netns, Intent::Join, IfUnknown::Infer, ts) {
                        Some(r) => r,
                        None => return,
                    },
                };
                self.join(r, task, cgroup_id, join_how, ts);
            }
            TaskOp::Exit => {
                if !self.leave(tid, ts, LeaveHow::Exit, Some(task.comm)) && !self.is_init(netns) {
                    self.unseen_member_left(netns, task, ts, LeaveHow::Exit);
                }
            }
        }
    }

    /// `task` joined namespace `r`, in cgroup `cgroup_id` (0 when unknown).
    pub(super) fn join(&mut self, r: SlotRef, task: Actor, cgroup_id: u64, how: JoinHow, now: u64) {
        let Actor {
            pid: tid,
            tgid,
            comm,
        } = task;
        // A join seen as it happened has its time; a snapshot's or an inferred member was
        // already inside.
        let joined_at = match how {
            JoinHow::Fork | JoinHow::Unshare | JoinHow::Setns => Some(now),
            JoinHow::Snapshot | JoinHow::Inferred => None,
        };
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
            self.cgroups.add_waiter(cgroup_id, r, &self.reg);
        }
        if new_span && let Some(path) = self.cgroups.paths.get(&cgroup_id).cloned() {
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
    fn unseen_member_left(&mut self, netns: NsId, task: Actor, ts: u64, how: LeaveHow) {
        let Actor {
            pid: tid,
            tgid,
            comm,
        } = task;
        let Some(r) = self.place(netns, Intent::Attach, IfUnknown::Skip, ts) else {
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

    pub(super) fn on_cgroup_path(&mut self, ts: u64, e: &CgroupPath) {
        let (cgroup_id, path) = (e.cgroup_id, e.path.as_str());
        if cgroup_id != 0
            && let Some(candidates) = self.cgroups.waiters.get(&cgroup_id)
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
            self.cgroups.prune_waiters(cgroup_id, &self.reg);
        }
        self.cgroups.remember(cgroup_id, path);
    }
}
