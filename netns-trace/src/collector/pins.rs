//! Pins: what holds a namespace (bind mounts, nsfs fds, sockets), as observed or as grafted,
//! added and removed, and the index from a pin path to the namespaces pinned there.
//!
//! Who made a bind mount decides what the creator was to the namespace: a mount-family
//! syscall pairs with the full-mode graft its thread made, or with a pin observed at its
//! target shortly before or after, and names that pin's maker.
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

use super::identity::{IfUnknown, Intent, SlotRef};
use super::namespace::{
    Actor, FailedUmount, MAX_FAILED_UMOUNTS, PinKind, PinRecord, RemovedPin, normalize_path,
};
use super::{Collector, NoticeKind};
use crate::model::{MountOp, MountSyscall, NsId, NsfsEvict, NsfsMount, Pin, PinChange};

/// Normalized bind-mount pin path → namespaces pinned there.
#[derive(Default)]
pub(super) struct PinPaths(FxHashMap<String, Vec<SlotRef>>);

impl PinPaths {
    /// The namespaces pinned at `path` (normalized).
    pub(super) fn get(&self, path: &str) -> Option<&Vec<SlotRef>> {
        self.0.get(path)
    }

    pub(super) fn add(&mut self, path: String, r: SlotRef) {
        let v = self.0.entry(path).or_default();
        if !v.contains(&r) {
            v.push(r);
        }
    }

    pub(super) fn remove(&mut self, path: &str, r: SlotRef) {
        if let Some(v) = self.0.get_mut(path) {
            v.retain(|x| *x != r);
            if v.is_empty() {
                self.0.remove(path);
            }
        }
    }
}

/// mount(2) flags.
const MS_BIND: u64 = 4096;
const MS_MOVE: u64 = 8192;
/// How long a mount syscall stays pairable with an nsfs graft or a pin observation.
const MOUNT_PAIRING_NS: u64 = 10_000_000_000;
/// Bind and move mount calls remembered for pairing.
const RECENT_MOUNTS: usize = 64;

/// A successful bind or move mount call, kept to name the maker of a pin seen at its target.
struct RecentMount {
    tid: u32,
    ts: u64,
    target: String,
    /// The caller's mount namespace (0: unknown).
    mnt_ns: u32,
    by: Actor,
    paired: bool,
}

/// A full-mode graft whose path its thread's mount call has not named yet.
struct PendingNsfs {
    ns: SlotRef,
    mnt_ns: u32,
}

/// Mount calls and grafts waiting to be paired.
#[derive(Default)]
pub(super) struct MountLog {
    /// Oldest first.
    recent: VecDeque<RecentMount>,
    /// By thread id.
    pending_nsfs: FxHashMap<u32, PendingNsfs>,
}

impl MountLog {
    /// Who made the mount at `path` in mount namespace `mnt_ns` shortly before `ts`: the
    /// latest such call, now paired. A call in another mount namespace made another mount
    /// (a pod can mount at the path of a runtime's pin inside its own).
    pub(super) fn maker_of(&mut self, path: &str, mnt_ns: Option<u32>, ts: u64) -> Option<Actor> {
        let want = normalize_path(path);
        let m = self.recent.iter_mut().rev().find(|m| {
            normalize_path(&m.target) == want
                && (m.mnt_ns == 0 || mnt_ns.is_none_or(|n| n == m.mnt_ns))
                && ts.saturating_sub(m.ts) <= MOUNT_PAIRING_NS
        })?;
        m.paired = true;
        Some(m.by)
    }

    fn remember(&mut self, m: RecentMount) {
        if self.recent.len() >= RECENT_MOUNTS {
            self.recent.pop_front();
        }
        self.recent.push_back(m);
    }
}

impl Collector {
    pub(super) fn on_pin_added(&mut self, ts: u64, e: &PinChange) {
        let (netns, pin) = (e.netns, &e.pin);
        let Some(mut r) = self.place(netns, Intent::Join, IfUnknown::Infer, ts) else {
            return;
        };
        if self.reg.get(r).is_some_and(|ns| ns.is_destroyed()) {
            // Observations read /proc as it is now while events lag behind: a pin seen on a
            // namespace whose end is already traced belongs to the next life of its inode
            // number, whose creation we have not met yet.
            let next = NsId::new(0, netns.inum);
            let Some(n) = self.place(next, Intent::Join, IfUnknown::Infer, ts) else {
                return;
            };
            r = n;
        }
        let mut rec = Self::pin_record(pin, ts);
        if let Some(path) = rec.path.clone() {
            rec.by = self.mounts.maker_of(&path, rec.mount_ns, ts);
        }
        self.add_pin(r, rec, ts);
    }

    pub(super) fn on_pin_removed(&mut self, ts: u64, e: &PinChange) {
        let Some(r) = self.place(e.netns, Intent::Attach, IfUnknown::Skip, ts) else {
            return;
        };
        let rec = Self::pin_record(&e.pin, ts);
        self.remove_pins(r, ts, None, |p| p.same_holder(&rec));
    }

    pub(super) fn on_nsfs_evict(&mut self, ts: u64, e: &NsfsEvict) {
        let Some(r) = self
            .reg
            .find_ptr(e.net_ptr)
            .or_else(|| self.place(e.netns, Intent::Attach, IfUnknown::Skip, ts))
        else {
            return;
        };
        // The last nsfs inode went: no bind mount or open nsfs fd holds it any more.
        self.remove_pins(r, ts, None, |p| {
            matches!(p.kind, PinKind::BindMount | PinKind::Fd)
        });
    }

    pub(super) fn pin_record(pin: &Pin, ts: u64) -> PinRecord {
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

    pub(super) fn add_pin(&mut self, r: SlotRef, mut pin: PinRecord, ts: u64) {
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
            self.pin_paths.add(normalize_path(path).to_string(), r);
            self.note_pin_path(r, path, pin.mount_ns, ts);
        }
        self.notify(ts, Some(r), NoticeKind::PinAdded, |_| {
            format!("pinned by {}", pin.describe())
        });
        self.recheck_duplicates(r, ts);
        // Who made it can change what the creator was to the namespace.
        self.reevaluate(r, ts);
    }

    fn remove_pins(
        &mut self,
        r: SlotRef,
        ts: u64,
        by: Option<Actor>,
        mut matches: impl FnMut(&PinRecord) -> bool,
    ) {
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
        for p in &removed {
            ns.remember_removed_pin(RemovedPin {
                pin: p.clone(),
                removed_at_ns: ts,
                by,
            });
        }
        let still: Vec<String> = ns
            .pins
            .iter()
            .filter_map(|p| p.path.as_deref().map(|s| normalize_path(s).to_string()))
            .collect();
        for p in removed {
            if let Some(path) = &p.path {
                let key = normalize_path(path).to_string();
                if !still.contains(&key) {
                    self.pin_paths.remove(&key, r);
                }
            }
            self.notify(ts, Some(r), NoticeKind::PinRemoved, |_| {
                format!("no longer pinned by {}", p.describe())
            });
        }
    }

    // ---- mount calls and grafts: who made a pin ----

    pub(super) fn on_nsfs_mount(&mut self, ts: u64, by: Actor, e: &NsfsMount) {
        let &NsfsMount {
            netns,
            mnt_ns,
            net_ptr,
            ..
        } = e;
        let r = match self
            .reg
            .find(netns, Intent::Join)
            .or_else(|| self.reg.find_ptr(net_ptr))
        {
            Some(r) => r,
            None => match self.place(netns, Intent::Join, IfUnknown::Infer, ts) {
                Some(r) => r,
                None => return,
            },
        };
        // The syscall record usually follows the graft (it is emitted at syscall exit), but a
        // decoder may deliver it first. Only a call that ended after the graft began can be
        // the graft's own: an earlier one of the same thread is another mount (`ip netns add`
        // on a cold node bind-mounts /run/netns onto itself just before).
        let preceding =
            self.mounts.recent.iter_mut().rev().find(|m| {
                m.tid == by.pid && !m.paired && m.ts >= ts && m.ts - ts <= MOUNT_PAIRING_NS
            });
        let path = preceding.map(|m| {
            m.paired = true;
            m.target.clone()
        });
        if path.is_none() {
            self.mounts
                .pending_nsfs
                .insert(by.pid, PendingNsfs { ns: r, mnt_ns });
        }
        let pin = PinRecord {
            kind: PinKind::BindMount,
            path,
            mount_ns: (mnt_ns != 0).then_some(mnt_ns),
            pid: Some(by.tgid),
            holder_comm: Some(by.comm),
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
        let mount_ns = ns.pins[at].mount_ns;
        self.pin_paths.add(key.to_string(), p.ns);
        self.note_pin_path(p.ns, target, mount_ns, ts);
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

    pub(super) fn on_mount_syscall(&mut self, ts: u64, by: Actor, e: &MountSyscall) {
        let &MountSyscall {
            op,
            mnt_ns,
            ret,
            flags,
            ..
        } = e;
        let target = op.acted_on(&e.source, &e.target);
        match op {
            MountOp::Mount | MountOp::MoveMount if ret >= 0 => {
                if let Some(p) = self.mounts.pending_nsfs.remove(&by.pid) {
                    self.name_graft(p, target, by, ts);
                    return;
                }
                if op == MountOp::MoveMount || flags & (MS_BIND | MS_MOVE) != 0 {
                    if self.name_observed_pin_maker(target, mnt_ns, by, ts) {
                        return;
                    }
                    self.mounts.remember(RecentMount {
                        tid: by.pid,
                        ts,
                        target: target.to_string(),
                        mnt_ns,
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
                let refused = ret == -i64::from(libc::EPERM) || ret == -i64::from(libc::EACCES);
                for r in slots {
                    if ret < 0 {
                        let Some(ns) = self.reg.get_mut(r) else {
                            continue;
                        };
                        if !ns.pins.iter().any(here) {
                            continue;
                        }
                        // EPERM/EACCES: a caller without the right to unmount. Any process
                        // can make such calls, and recording them would let it push the
                        // runtime's real failure (EBUSY) out of the evidence: only the
                        // namespace's creator or the maker of the mount is a cleanup that
                        // was refused; anyone else's attempts are counted, not kept.
                        if refused
                            && !ns.is_creator(&by)
                            && !ns
                                .pins
                                .iter()
                                .any(|p| here(p) && p.by.is_some_and(|m| m.tgid == by.tgid))
                        {
                            ns.refused_umounts_ignored =
                                ns.refused_umounts_ignored.saturating_add(1);
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
                        self.remove_pins(r, ts, Some(by), here);
                    }
                }
            }
            _ => {}
        }
    }
}
