//! Pins: what holds a namespace (bind mounts, nsfs fds, sockets), as observed or as grafted,
//! added and removed, and the index from a pin path to the namespaces pinned there.
use rustc_hash::FxHashMap;

use super::identity::{IfUnknown, Intent, SlotRef};
use super::namespace::{PinKind, PinRecord, normalize_path};
use super::{Collector, NoticeKind};
use crate::model::{NsId, NsfsEvict, Pin, PinChange};

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
            rec.by = self.recent_mount_for_path(&path, ts);
        }
        self.add_pin(r, rec, ts);
    }

    pub(super) fn on_pin_removed(&mut self, ts: u64, e: &PinChange) {
        let Some(r) = self.place(e.netns, Intent::Attach, IfUnknown::Skip, ts) else {
            return;
        };
        let rec = Self::pin_record(&e.pin, ts);
        self.remove_pins(r, ts, |p| p.same_holder(&rec));
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
        self.remove_pins(r, ts, |p| {
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
            self.note_pin_path(r, path, ts);
        }
        self.notify(ts, Some(r), NoticeKind::PinAdded, |_| {
            format!("pinned by {}", pin.describe())
        });
        self.recheck_duplicates(r, ts);
        // Who made it can change what the creator was to the namespace.
        self.reevaluate(r, ts);
    }

    pub(super) fn remove_pins(
        &mut self,
        r: SlotRef,
        ts: u64,
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
}
