//! A namespace's creation and end: the creation record (or a creation inferred from
//! membership), teardown and free, and what its destruction settles.
use std::net::IpAddr;

use super::identity::{IfUnknown, Intent, SlotRef};
use super::namespace::{Actor, LeaveHow, NsState, Origin, normalize_path};
use super::{Collector, FindingDetail, NoticeKind};
use crate::model::{CreatedBy, NetnsCreated, NetnsObject, NsId};

/// A NetnsCreated may arrive a little after another CPU's first event about the namespace.
const REORDER_WINDOW_NS: u64 = 1_000_000_000;

/// Which end of a `struct net` an event reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum NetnsEnd {
    /// The kernel started destroying it (per-net exit callbacks).
    Teardown,
    /// Its memory went back to the slab.
    Freed,
}

impl Collector {
    pub(super) fn on_created(&mut self, ts: u64, creator: Actor, e: &NetnsCreated) {
        let &NetnsCreated {
            netns: id,
            parent,
            net_ptr,
            source,
            ..
        } = e;
        if id.is_none() {
            tracing::warn!("netns creation without an identity at {ts}; skipped");
            self.stats.unattributed_events += 1;
            return;
        }
        // Same namespace, first seen through a reordered event from another CPU: its cookie
        // says so, or an inferred life of its inum met just before.
        let placeholder = match self.reg.find_cookie(id.cookie) {
            Some(r) => self.reg.get(r).is_some().then_some(r),
            None => self
                .reg
                .holder_of_inum(id.inum)
                .filter(|&r| self.is_placeholder(r, id, ts)),
        };
        let r = match placeholder {
            Some(r) => {
                self.reg.set_cookie(r, id.cookie);
                if let Some(ns) = self.reg.get_mut(r) {
                    ns.origin = Origin::Traced;
                }
                r
            }
            _ => self.new_life(id, Origin::Traced, ts),
        };
        self.reg.set_ptr(r, net_ptr);
        self.record_creation(r, ts, creator, source, parent);
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

    /// Whether `r`, the holder of `id`'s inum, is an inferred life that `id`'s creation record
    /// arrived late for.
    fn is_placeholder(&self, r: SlotRef, id: NsId, ts: u64) -> bool {
        let Some(ns) = self.reg.get(r) else {
            return false;
        };
        ns.created_at_ns.is_none()
            && ns.origin == Origin::Inferred
            && !ns.is_destroyed()
            && (ns.cookie == 0 || id.cookie == 0 || ns.cookie == id.cookie)
            && ns.first_seen_ns.saturating_add(REORDER_WINDOW_NS) >= ts
    }

    fn record_creation(&mut self, r: SlotRef, ts: u64, by: Actor, source: CreatedBy, parent: NsId) {
        if let Some(ns) = self.reg.get_mut(r) {
            ns.created_at_ns = Some(ts);
            ns.created_by = Some(by);
            ns.source = Some(source);
            ns.parent = (!parent.is_none()).then_some(parent);
            ns.creator_tid = by.pid;
            ns.creator_tgid = by.tgid;
            // clone(CLONE_NEWNET) puts the child in, never the caller.
            ns.creator_left = source == CreatedBy::Clone;
        }
    }

    /// A creation known only from membership (its record was lost).
    pub(super) fn infer_creation(
        &mut self,
        r: SlotRef,
        ts: u64,
        by: Actor,
        source: CreatedBy,
        parent: NsId,
    ) {
        self.record_creation(r, ts, by, source, parent);
        self.notify(ts, Some(r), NoticeKind::Created, |_| {
            format!(
                "created by {} ({}) (creation inferred from membership)",
                by.pid, by.comm
            )
        });
    }

    pub(super) fn on_end(&mut self, ts: u64, e: &NetnsObject, end: NetnsEnd) {
        let &NetnsObject { netns, net_ptr, .. } = e;
        let by_ptr = self.reg.find_ptr(net_ptr).filter(|r| {
            self.reg
                .get(*r)
                .is_some_and(|ns| netns.is_none() || ns.inum == netns.inum || netns.inum == 0)
        });
        let Some(r) = by_ptr.or_else(|| self.place(netns, Intent::Attach, IfUnknown::Infer, ts))
        else {
            return;
        };
        if end == NetnsEnd::Teardown {
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
        let at = match end {
            NetnsEnd::Teardown => &mut ns.teardown_at_ns,
            NetnsEnd::Freed => &mut ns.freed_at_ns,
        };
        let first = at.is_none();
        at.get_or_insert(ts);
        if end == NetnsEnd::Freed {
            self.reg.forget_ptr(net_ptr, r);
        }
        if first {
            let (kind, text) = match end {
                NetnsEnd::Teardown => (NoticeKind::Teardown, "teardown started"),
                NetnsEnd::Freed => (NoticeKind::Freed, "struct net freed"),
            };
            self.notify(ts, Some(r), kind, |_| text.into());
        }
        self.reevaluate(r, ts);
    }

    pub(super) fn on_cleanup_run(&mut self, ts: u64) {
        self.stats.cleanup_runs += 1;
        self.stats.last_cleanup_run_ns = Some(ts);
    }

    pub(super) fn on_destroyed(&mut self, r: SlotRef, ts: u64) {
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
        let ips: Vec<(IpAddr, u32)> = ns.indexed_addresses().collect();
        let paths: Vec<String> = ns
            .pins
            .iter()
            .filter_map(|p| p.path.as_deref().map(|s| normalize_path(s).to_string()))
            .collect();
        for (ip, ifindex) in ips {
            self.ip_index.remove(ip, r, ifindex);
        }
        for p in paths {
            self.pin_paths.remove(&p, r);
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
}
