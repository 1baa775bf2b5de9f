//! A CNI GC dry run: the attachments in libcni's result cache that a runtime's garbage
//! collection would call stale, with the evidence. Advice only: nothing here (nor anywhere in
//! netns-trace) runs a plugin or deletes anything.
//!
//! libcni's `GCNetworkList` issues a DEL for every attachment `(containerId, ifName)` of the
//! network in /var/lib/cni/results that is not among the runtime's valid attachments, then
//! sends the GC verb to the plugins. The runtime's list of valid sandboxes is not something
//! the node shows, so the rule here judges validity from what the collector saw. A cached
//! attachment is stale when at least one of these holds:
//!
//! - `del_returned`: the runtime ran a DEL for it (CNI_CONTAINERID and CNI_IFNAME, not a
//!   DEL a plugin chained) that returned, whatever its status, after its last ADD, and the
//!   entry is still cached (libcni removes it when a DEL succeeds): the runtime gave it up;
//! - `netns_path_dead`: its cached netns path names no live namespace now: no namespace is
//!   pinned at that path, or `/proc/PID/ns/net` names a process that has exited (or one that
//!   was never seen);
//! - `netns_destroyed`: the namespace it was attached to (the one its path names, else the one
//!   its traced ADD named) is destroyed;
//! - `netns_leaked`: that namespace has no member process and is judged `leaked` or
//!   `leak_suspect` (see docs/report-schema.md "States").
//!
//! A namespace that still has members, or that is `draining` or `persistent` (a teardown in
//! progress, a namespace pinned before its first process), is not judged.
use serde::{Deserialize, Serialize};

use super::Collector;
use super::cni_calls::{CniCall, CniStatus, CniTarget};
use super::findings::PinEvidence;
use super::identity::SlotRef;
use super::namespace::NsState;
use crate::attribution::{CniCacheEntry, CniIp};

/// One cached attachment a runtime's CNI GC would call stale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CniGcCandidate {
    /// CNI_CONTAINERID: the sandbox.
    pub container_id: String,
    pub if_name: String,
    /// The cache entry's `networkName`.
    pub network: String,
    pub netns: CniGcNetns,
    /// What holds the attachment's namespace now (empty when none is known or it is gone).
    pub pins: Vec<PinEvidence>,
    /// The addresses of the cached ADD result.
    pub ips: Vec<CniIp>,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    /// The runtime's last traced ADD of the attachment, when one was traced.
    pub add: Option<CniCall>,
    /// The runtime's last traced DEL of it after that ADD, when one returned.
    pub del: Option<CniCall>,
    /// Why it is stale; never empty.
    pub reasons: Vec<CniGcReason>,
}

/// The namespace of a cached attachment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CniGcNetns {
    /// The netns path cached with it (libcni's `netns`, else the result's interface sandbox).
    pub path: Option<String>,
    /// What that path names now (`no_path` when none was cached).
    pub resolves_to: CniTarget,
    /// The namespace it was attached to: the one the path names now, else the one the traced
    /// ADD named; null when neither is known.
    pub id: Option<String>,
    pub state: Option<NsState>,
}

/// Why a cached attachment is stale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum CniGcReason {
    /// The runtime's DEL of it returned at `at_ns` and the entry is still cached.
    DelReturned { at_ns: u64, status: CniStatus },
    /// Its netns path names no live namespace now.
    NetnsPathDead,
    /// Its namespace was destroyed at `at_ns` (null when the time is unknown).
    NetnsDestroyed { netns: String, at_ns: Option<u64> },
    /// Its namespace has no member and is judged `state` (`leaked` or `leak_suspect`).
    NetnsLeaked { netns: String, state: NsState },
}

impl Collector {
    /// The CNI GC dry run over the result cache as last observed: the stale attachments,
    /// ordered by network, container id and interface.
    pub fn cni_gc(&self) -> Vec<CniGcCandidate> {
        let mut out: Vec<CniGcCandidate> = self
            .cni
            .iter()
            .filter_map(|e| self.cni_gc_judge(e))
            .collect();
        out.sort_by(|a, b| {
            (&a.network, &a.container_id, &a.if_name).cmp(&(
                &b.network,
                &b.container_id,
                &b.if_name,
            ))
        });
        out
    }

    /// The one rule (module docs): `Some` with its reasons when entry `e` is stale.
    fn cni_gc_judge(&self, e: &CniCacheEntry) -> Option<CniGcCandidate> {
        let path = e.netns_path.as_deref().filter(|p| !p.is_empty());
        let (resolves_to, now) = match path {
            Some(p) => self.resolve_netns_path(p),
            None => (CniTarget::NoPath, None),
        };
        let calls = self.attachment_calls(&e.container_id, &e.if_name);
        let add = calls.iter().rev().find(|(c, _)| c.verb == "ADD");
        let del = calls
            .iter()
            .rev()
            .take_while(|(c, _)| c.verb != "ADD")
            .find(|(c, _)| c.verb == "DEL" && c.end.is_some());
        let slot: Option<SlotRef> = now.or_else(|| add.and_then(|(_, s)| *s));
        let ns = slot.and_then(|r| self.reg.get(r));

        let mut reasons = Vec::new();
        if let Some((c, _)) = del
            && let Some(end) = c.end
        {
            reasons.push(CniGcReason::DelReturned {
                at_ns: end.at_ns,
                status: end.status,
            });
        }
        if matches!(
            resolves_to,
            CniTarget::Unresolved | CniTarget::ExitedProcess { .. }
        ) {
            reasons.push(CniGcReason::NetnsPathDead);
        }
        if let Some(ns) = ns {
            if ns.is_destroyed() {
                reasons.push(CniGcReason::NetnsDestroyed {
                    netns: ns.id(),
                    at_ns: ns.destroyed_at_ns(),
                });
            } else if matches!(ns.state, NsState::Leaked | NsState::LeakSuspect) {
                reasons.push(CniGcReason::NetnsLeaked {
                    netns: ns.id(),
                    state: ns.state,
                });
            }
        }
        if reasons.is_empty() {
            return None;
        }
        Some(CniGcCandidate {
            container_id: e.container_id.clone(),
            if_name: e.if_name.clone(),
            network: e.network_name.clone(),
            netns: CniGcNetns {
                path: path.map(str::to_string),
                resolves_to,
                id: ns.map(|ns| ns.id()),
                state: ns.map(|ns| ns.state),
            },
            pins: ns
                .filter(|ns| !ns.is_destroyed())
                .map(|ns| ns.pins.iter().map(PinEvidence::from).collect())
                .unwrap_or_default(),
            ips: e.ips.clone(),
            pod_namespace: e.pod_namespace.clone(),
            pod_name: e.pod_name.clone(),
            pod_uid: e.pod_uid.clone(),
            add: add.map(|(c, _)| (*c).clone()),
            del: del.map(|(c, _)| (*c).clone()),
            reasons,
        })
    }
}

#[cfg(test)]
mod tests;
