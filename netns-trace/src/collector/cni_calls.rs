//! CNI plugin runs ([`CniExec`] events, ended by [`CniExit`]), remembered per sandbox
//! (CNI_CONTAINERID) and per namespace, each with the namespace its CNI_NETNS named at that
//! moment: a `/proc/PID/ns/net` path through the membership of PID, a bind-mount path through
//! the pins. A `/proc/PID/...` path whose process had already exited is kept as such: the call
//! came after the sandbox's process died.
use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::Collector;
use super::identity::SlotRef;
use super::namespace::{Actor, LeaveHow, normalize_path};
use crate::attribution::{SandboxKind, sandbox_from_pin_path};
use crate::model::{CniExec, CniExit, CniTruncated, Event, NsId};

/// CNI calls remembered (a node makes a handful per pod); older ones are dropped and counted.
const MAX_CNI_CALLS: usize = 16_384;

/// One CNI plugin run, as its exec showed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CniCall {
    pub at_ns: u64,
    /// The plugin's process; its comm is the plugin's name.
    pub plugin: Actor,
    /// The file executed.
    pub path: String,
    /// CNI_COMMAND.
    pub verb: String,
    /// CNI_CONTAINERID: the sandbox.
    pub container_id: Option<String>,
    pub if_name: Option<String>,
    /// CNI_NETNS as given.
    pub netns_path: Option<String>,
    /// What CNI_NETNS named when the plugin started.
    pub target: CniTarget,
    /// K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID from CNI_ARGS.
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    /// The namespace the plugin ran in.
    pub caller_netns: NsId,
    /// Values the kernel cut to fit its record.
    pub truncated: CniTruncated,
    /// The tgid told of its end: the runtime, or the plugin that chained it (known once it
    /// ended).
    pub parent: Option<u32>,
    /// When and how it ended; `None` while it runs, or when its end was not seen.
    pub end: Option<CniEnd>,
}

/// The end of a CNI plugin run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniEnd {
    pub at_ns: u64,
    pub status: CniStatus,
}

/// How a CNI plugin run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum CniStatus {
    /// It exited with this code (0: the call succeeded).
    Exited { code: i32 },
    /// A signal killed it.
    Killed { signal: i32, core_dumped: bool },
}

impl CniStatus {
    fn of(e: &CniExit) -> Self {
        match (e.exit_code(), e.signal()) {
            (Some(code), _) => CniStatus::Exited { code },
            (None, Some(signal)) => CniStatus::Killed {
                signal,
                core_dumped: e.core_dumped(),
            },
            // The decoder builds wait statuses of those two shapes only.
            (None, None) => CniStatus::Exited {
                code: e.wait_status,
            },
        }
    }

    pub fn succeeded(self) -> bool {
        self == CniStatus::Exited { code: 0 }
    }
}

impl std::fmt::Display for CniStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            CniStatus::Exited { code } => write!(f, "exit {code}"),
            CniStatus::Killed {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by signal {signal}")?;
                if core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// The namespace a CNI_NETNS path named when the call started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CniTarget {
    /// No CNI_NETNS, or an empty one (VERSION, GC and STATUS take none).
    NoPath,
    /// `/proc/PID/ns/net` of a live member of `netns`.
    Member { pid: u32, netns: NsId },
    /// A bind mount of `netns` at the path.
    Pin { netns: NsId },
    /// `/proc/PID/ns/net` of a process that had already exited: `netns` is the namespace it
    /// was last a member of, which it left at `exited_at_ns`.
    ExitedProcess {
        pid: u32,
        netns: NsId,
        exited_at_ns: u64,
    },
    /// A path naming nothing the collector knows: a process or a pin it never saw (outside
    /// every traced namespace, or from before a trace without a snapshot), or a path cut to
    /// fit the record.
    Unresolved,
}

impl CniTarget {
    /// The namespace the call was about, when the path named one.
    pub fn netns(&self) -> Option<NsId> {
        match self {
            CniTarget::Member { netns, .. }
            | CniTarget::Pin { netns }
            | CniTarget::ExitedProcess { netns, .. } => Some(*netns),
            CniTarget::NoPath | CniTarget::Unresolved => None,
        }
    }
}

struct Entry {
    call: CniCall,
    /// The namespace `call.target` names, as the collector tracks it.
    slot: Option<SlotRef>,
}

/// The calls, oldest first, with indexes by sandbox and by namespace. An index holds sequence
/// numbers: the call at `calls[seq - first]`.
#[derive(Default)]
pub(super) struct CniCalls {
    calls: VecDeque<Entry>,
    first: u64,
    by_sandbox: FxHashMap<String, Vec<u64>>,
    by_netns: FxHashMap<SlotRef, Vec<u64>>,
    /// The calls still running, by the plugin's tgid.
    running: FxHashMap<u32, Vec<u64>>,
    dropped: u64,
}

impl CniCalls {
    fn push(&mut self, call: CniCall, slot: Option<SlotRef>) {
        if self.calls.len() >= MAX_CNI_CALLS {
            self.drop_oldest();
        }
        let seq = self.first + self.calls.len() as u64;
        if let Some(id) = &call.container_id {
            self.by_sandbox.entry(id.clone()).or_default().push(seq);
        }
        if let Some(r) = slot {
            self.by_netns.entry(r).or_default().push(seq);
        }
        self.running.entry(call.plugin.tgid).or_default().push(seq);
        self.calls.push_back(Entry { call, slot });
    }

    fn drop_oldest(&mut self) {
        let Some(old) = self.calls.pop_front() else {
            return;
        };
        let seq = self.first;
        self.first += 1;
        self.dropped += 1;
        // The oldest call is the first of each index it is in.
        fn unindex<K: std::hash::Hash + Eq>(index: &mut FxHashMap<K, Vec<u64>>, key: K, seq: u64) {
            if let Some(seqs) = index.get_mut(&key) {
                seqs.retain(|s| *s != seq);
                if seqs.is_empty() {
                    index.remove(&key);
                }
            }
        }
        if let Some(id) = old.call.container_id {
            unindex(&mut self.by_sandbox, id, seq);
        }
        if let Some(r) = old.slot {
            unindex(&mut self.by_netns, r, seq);
        }
        if old.call.end.is_none() {
            unindex(&mut self.running, old.call.plugin.tgid, seq);
        }
    }

    /// Ends every running call of process `tgid`: a plugin that exec'd another with its
    /// environment (a wrapper) made two calls of one process.
    fn end(&mut self, tgid: u32, end: CniEnd, parent: u32) -> Vec<u64> {
        let seqs = self.running.remove(&tgid).unwrap_or_default();
        for &seq in &seqs {
            let Some(i) = seq
                .checked_sub(self.first)
                .and_then(|i| usize::try_from(i).ok())
            else {
                continue;
            };
            if let Some(e) = self.calls.get_mut(i) {
                e.call.end = Some(end);
                e.call.parent = Some(parent);
            }
        }
        seqs
    }

    fn entry(&self, seq: u64) -> Option<&Entry> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.calls.get(i)
    }

    fn get(&self, seq: u64) -> Option<&CniCall> {
        self.entry(seq).map(|e| &e.call)
    }

    fn indexed<'a>(&'a self, seqs: Option<&'a Vec<u64>>) -> impl Iterator<Item = &'a CniCall> {
        seqs.into_iter().flatten().filter_map(|seq| self.get(*seq))
    }
}

impl Collector {
    /// Every CNI call remembered, oldest first.
    pub fn cni_calls(&self) -> impl DoubleEndedIterator<Item = &CniCall> + '_ {
        self.cni_calls.calls.iter().map(|e| &e.call)
    }

    /// The CNI calls for the sandbox with this CNI_CONTAINERID, oldest first.
    pub fn cni_calls_for_sandbox<'a>(
        &'a self,
        container_id: &str,
    ) -> impl Iterator<Item = &'a CniCall> + 'a {
        self.cni_calls
            .indexed(self.cni_calls.by_sandbox.get(container_id))
    }

    /// The CNI calls whose CNI_NETNS named the namespace with this id ([`super::Namespace::id`]),
    /// oldest first.
    pub fn cni_calls_for_namespace<'a>(
        &'a self,
        id: &str,
    ) -> impl Iterator<Item = &'a CniCall> + 'a {
        let slot = self
            .reg
            .iter()
            .find(|(_, ns)| ns.id() == id)
            .map(|(r, _)| r);
        self.cni_calls
            .indexed(slot.and_then(|r| self.cni_calls.by_netns.get(&r)))
    }

    /// The CNI calls of the sandboxes whose calls named the namespace with this id, oldest
    /// first: what the runtime did for its pod, including a DEL whose CNI_NETNS no longer
    /// named anything.
    pub fn sandbox_cni_calls_for_namespace(&self, id: &str) -> Vec<&CniCall> {
        match self.reg.iter().find(|(_, ns)| ns.id() == id) {
            Some((r, _)) => self.sandbox_cni_calls(r),
            None => Vec::new(),
        }
    }

    /// [`Collector::sandbox_cni_calls_for_namespace`] of every namespace some call named, by
    /// namespace id: one pass for a report.
    pub fn sandbox_cni_calls_by_namespace(&self) -> FxHashMap<String, Vec<&CniCall>> {
        self.cni_calls
            .by_netns
            .keys()
            .filter_map(|r| Some((self.reg.get(*r)?.id(), self.sandbox_cni_calls(*r))))
            .collect()
    }

    /// The sandboxes (CNI_CONTAINERID) whose calls named namespace `r`.
    pub(super) fn cni_sandboxes(&self, r: SlotRef) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .cni_calls
            .indexed(self.cni_calls.by_netns.get(&r))
            .filter_map(|c| c.container_id.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every call of the sandboxes of namespace `r`, oldest first.
    pub(super) fn sandbox_cni_calls(&self, r: SlotRef) -> Vec<&CniCall> {
        let mut seqs: Vec<u64> = self
            .cni_sandboxes(r)
            .into_iter()
            .filter_map(|id| self.cni_calls.by_sandbox.get(id))
            .flatten()
            .copied()
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs.into_iter()
            .filter_map(|seq| self.cni_calls.get(seq))
            .collect()
    }

    /// Whether a plugin made `call` for a plugin it chained (an IPAM plugin run by bridge):
    /// its parent is a call of the same sandbox that was running when it started. The others
    /// are the runtime's.
    pub fn is_chained(&self, call: &CniCall) -> bool {
        let (Some(parent), Some(id)) = (call.parent, call.container_id.as_deref()) else {
            return false;
        };
        self.cni_calls_for_sandbox(id).any(|p| {
            p.plugin.tgid == parent
                && p.at_ns <= call.at_ns
                && p.end.is_none_or(|e| e.at_ns >= call.at_ns)
        })
    }

    /// The runtime's calls (not those a plugin chained) for the attachment
    /// (CNI_CONTAINERID, CNI_IFNAME), oldest first, each with the namespace its CNI_NETNS named.
    pub(super) fn attachment_calls(
        &self,
        container_id: &str,
        if_name: &str,
    ) -> Vec<(&CniCall, Option<SlotRef>)> {
        self.cni_calls
            .by_sandbox
            .get(container_id)
            .into_iter()
            .flatten()
            .filter_map(|seq| self.cni_calls.entry(*seq))
            .filter(|e| e.call.if_name.as_deref() == Some(if_name) && !self.is_chained(&e.call))
            .map(|e| (&e.call, e.slot))
            .collect()
    }

    /// CNI calls dropped to keep memory bounded (the oldest go first).
    pub fn cni_calls_dropped(&self) -> u64 {
        self.cni_calls.dropped
    }

    pub(super) fn on_cni_exec(&mut self, ev: &Event, e: &CniExec) {
        let (target, slot) = match e.netns_path.as_deref() {
            None | Some("") => (CniTarget::NoPath, None),
            Some(path) => self.resolve_netns_path(path),
        };
        let call = CniCall {
            at_ns: ev.ts_ns,
            plugin: Actor {
                pid: ev.pid,
                tgid: ev.tgid,
                comm: ev.comm,
            },
            path: e.path.clone(),
            verb: e.verb.clone(),
            container_id: e.container_id.clone(),
            if_name: e.if_name.clone(),
            netns_path: e.netns_path.clone(),
            target,
            pod_namespace: e.cni_arg("K8S_POD_NAMESPACE").map(str::to_string),
            pod_name: e.cni_arg("K8S_POD_NAME").map(str::to_string),
            pod_uid: e.cni_arg("K8S_POD_UID").map(str::to_string),
            caller_netns: e.netns,
            truncated: e.truncated,
            parent: None,
            end: None,
        };
        if let Some(r) = slot {
            self.note_cni_call(r, &call, ev.ts_ns);
        }
        self.cni_calls.push(call, slot);
    }

    pub(super) fn on_cni_exit(&mut self, ev: &Event, e: &CniExit) {
        let end = CniEnd {
            at_ns: ev.ts_ns,
            status: CniStatus::of(e),
        };
        let ended = self.cni_calls.end(ev.tgid, end, e.parent);
        let mut failure_raised = false;
        for seq in ended {
            let Some(entry) = self.cni_calls.entry(seq) else {
                continue;
            };
            let call = entry.call.clone();
            if call.verb != "DEL" || self.is_chained(&call) {
                continue;
            }
            let slot = entry
                .slot
                .or_else(|| self.sandbox_slot(call.container_id.as_deref()?));
            if !end.status.succeeded() && !failure_raised {
                failure_raised = true;
                let chained: Vec<CniCall> = call
                    .container_id
                    .as_deref()
                    .into_iter()
                    .flat_map(|id| self.cni_calls_for_sandbox(id))
                    .filter(|c| {
                        c.parent == Some(call.plugin.tgid)
                            && (call.at_ns..=end.at_ns).contains(&c.at_ns)
                    })
                    .cloned()
                    .collect();
                self.raise_cni_del_failed(call, chained, slot);
            }
            if let Some(r) = slot {
                self.refresh_leak_cni(r);
                self.check_cni_del_left(r, ev.ts_ns);
            }
        }
    }

    /// The namespace the latest call of sandbox `id` named.
    fn sandbox_slot(&self, id: &str) -> Option<SlotRef> {
        self.cni_calls
            .by_sandbox
            .get(id)?
            .iter()
            .rev()
            .find_map(|seq| self.cni_calls.entry(*seq)?.slot)
    }

    /// What a CNI_NETNS path names now.
    pub(super) fn resolve_netns_path(&self, path: &str) -> (CniTarget, Option<SlotRef>) {
        let proc_pid = sandbox_from_pin_path(path).and_then(|s| match s.kind {
            SandboxKind::Process { pid } => Some(pid),
            _ => None,
        });
        match proc_pid {
            Some(pid) => self.resolve_process(pid),
            None => self.resolve_pin(path),
        }
    }

    /// `/proc/PID/ns/net`: the namespace process PID is a member of, or, when it has exited,
    /// the one it was last a member of.
    fn resolve_process(&self, pid: u32) -> (CniTarget, Option<SlotRef>) {
        // Its main thread, or any thread of it while the main thread is gone.
        let live = self
            .tasks
            .get(&pid)
            .filter(|t| t.tgid == pid)
            .or_else(|| self.tasks.values().find(|t| t.tgid == pid));
        if let Some(loc) = live
            && let Some(ns) = self.reg.get(loc.ns)
        {
            let netns = ns.ns_id();
            return (CniTarget::Member { pid, netns }, Some(loc.ns));
        }
        // The latest stay of a process with that pid that ended with its exit.
        let exited = self
            .reg
            .iter()
            .flat_map(|(r, ns)| {
                ns.members
                    .iter()
                    .filter(move |m| m.tgid == pid && m.left_how == Some(LeaveHow::Exit))
                    .filter_map(move |m| Some((m.left_at_ns?, r, ns.ns_id())))
            })
            .max_by_key(|(at, ..)| *at);
        match exited {
            Some((exited_at_ns, r, netns)) => (
                CniTarget::ExitedProcess {
                    pid,
                    netns,
                    exited_at_ns,
                },
                Some(r),
            ),
            None => (CniTarget::Unresolved, None),
        }
    }

    /// A bind-mount path: the live namespace pinned there where runtimes pin
    /// ([`crate::attribution::NodeMountNs`]; a pod's own mount at the same path is not what
    /// the runtime's CNI call meant), the latest pin when mounts are stacked on one path.
    fn resolve_pin(&self, path: &str) -> (CniTarget, Option<SlotRef>) {
        let key = normalize_path(path);
        let pinned = self
            .pin_paths
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let ns = self.reg.get(*r).filter(|ns| !ns.is_destroyed())?;
                let at = self.vouched_pin_at(ns, key)?;
                Some((at, *r, ns.ns_id()))
            })
            .max_by_key(|(at, ..)| *at);
        match pinned {
            Some((_, r, netns)) => (CniTarget::Pin { netns }, Some(r)),
            None => (CniTarget::Unresolved, None),
        }
    }
}

#[cfg(test)]
mod tests;
