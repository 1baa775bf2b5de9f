//! Owners: who a namespace belongs to (pod, container, sandbox, CNI network), from members'
//! cgroups (read while they were alive), pin paths and the CNI result cache, kept current in a
//! raised leak finding.
use super::cni_calls::CniCall;
use super::findings::owner_part;
use super::identity::{Intent, SlotRef};
use super::namespace::{Actor, Namespace, PinKind, normalize_path};
use super::{Collector, FindingDetail};
use crate::attribution::{
    CniCacheEntry, find_by_netns_path, owner_from_cgroup, sandbox_from_pin_path,
};
use crate::model::{CniResultGone, MemberCgroup};

/// CNI result cache entries remembered (a node has one per pod interface).
const MAX_CNI_ENTRIES: usize = 4_096;

impl Collector {
    /// A member's cgroup, read while it was alive: the cgroup path of its span, and the
    /// namespace's owner when the path says more than what is known.
    pub(super) fn on_member_cgroup(&mut self, ts: u64, member: Actor, e: &MemberCgroup) {
        let path = e.path.as_str();
        let Some(r) = self.reg.find(e.netns, Intent::Attach) else {
            self.stats.unattributed_events += 1;
            return;
        };
        if let Some(span) = self.reg.get_mut(r).and_then(|ns| {
            ns.members
                .iter_mut()
                .rev()
                .find(|s| s.tgid == member.tgid || s.pid == member.pid)
        }) {
            span.cgroup_path = Some(path.into());
        }
        self.note_member_cgroup(r, path, ts);
    }

    pub(super) fn note_member_cgroup(&mut self, r: SlotRef, path: &str, ts: u64) {
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

    /// When the latest pin of `ns` at `key` (a normalized path) that speaks for the sandbox
    /// its path names ([`NodeMountNs`]) was made; None when it has none there.
    pub(super) fn vouched_pin_at(&self, ns: &Namespace, key: &str) -> Option<u64> {
        ns.pins
            .iter()
            .filter(|p| {
                p.kind == PinKind::BindMount
                    && p.path.as_deref().map(normalize_path) == Some(key)
                    && self.node_mnt.vouches_for(p.mount_ns)
            })
            .map(|p| p.at_ns)
            .max()
    }

    /// A pin path in mount namespace `mnt_ns` names the sandbox (and, through the CNI cache,
    /// its pod and network), when that is where runtimes pin
    /// ([`crate::attribution::NodeMountNs`]).
    pub(super) fn note_pin_path(&mut self, r: SlotRef, path: &str, mnt_ns: Option<u32>, ts: u64) {
        if !self.node_mnt.vouches_for(mnt_ns) {
            return;
        }
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
    pub(super) fn on_cni_result(&mut self, e: &CniCacheEntry) {
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
                    let key = normalize_path(path);
                    if let Some(slots) = self.pin_paths.get(key) {
                        targets.extend(slots.iter().copied().filter(|r| {
                            self.reg
                                .get(*r)
                                .is_some_and(|ns| self.vouched_pin_at(ns, key).is_some())
                        }));
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

    /// A CNI cache entry is gone (a DEL succeeded, or the runtime removed it): forgotten, so
    /// the cache as last observed is what the CNI GC dry run judges. What it told of owners
    /// stays.
    pub(super) fn on_cni_result_gone(&mut self, e: &CniResultGone) {
        self.cni.retain(|x| {
            (&x.network_name, &x.container_id, &x.if_name)
                != (&e.network_name, &e.container_id, &e.if_name)
        });
    }

    /// A CNI call that named namespace `r` says whose it is: the sandbox (CNI_CONTAINERID)
    /// and the pod (K8S_POD_* of CNI_ARGS), where nothing said more before.
    pub(super) fn note_cni_call(&mut self, r: SlotRef, call: &CniCall, ts: u64) {
        let Some(id) = call.container_id.as_deref() else {
            return;
        };
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        if ns.is_init {
            return;
        }
        let mut changed = ns.owner.merge_cni_call(
            id,
            call.pod_namespace.as_deref(),
            call.pod_name.as_deref(),
            call.pod_uid.as_deref(),
        );
        if let Some(e) = self.cni.iter().rev().find(|e| e.container_id == id) {
            changed |= ns.owner.merge_cni(e);
        }
        if changed {
            self.owner_changed(r, ts);
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
}
