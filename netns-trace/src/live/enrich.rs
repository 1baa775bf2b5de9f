//! Userspace observations that complete the kernel's story, emitted as events.
//!
//! The kernel tells us a mount syscall succeeded, a task left its last namespace, or a
//! namespace saw traffic; it does not tell us (in tracepoint mode) which nsfs mounts exist
//! afterwards, who holds fds on a namespace, or what interfaces it has. The enricher looks,
//! and reports what it saw as `PinAdded` / `PinRemoved` / `Interfaces` events. Those go into
//! the trace like any other event, so replay needs no access to the node.
//!
//! All reads go through [`Observer`]; the real one (snapshot module) never holds a namespace
//! beyond the read itself.
use crate::model::{
    ArpPacket, CgroupPath, CniExec, CniResultGone, InterfacesRead, MemberCgroup, MountSyscall,
    NdiscPacket, NeighUpdate, NetDev, NetnsCreated, NetnsObject, NsfsMount, PinChange, TaskNetns,
};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::attribution::{
    CniCacheEntry, NodeMountNs, SandboxKind, owner_from_cgroup, sandbox_from_pin_path,
};
use crate::collector::namespace::normalize_path;
use crate::model::{
    Comm, Event, EventBody, Interface, MountOp, NetDevOp, NsId, Pin, Snapshot, TaskOp,
};

/// How the enricher looks at the system.
pub trait Observer {
    /// nsfs net bind mounts visible in mount namespace `mnt_ns`: (net inum, pin).
    fn mount_ns_pins(&mut self, mnt_ns: u32) -> Result<Vec<(u32, Pin)>, String>;
    /// Open fds on net namespace files, across all processes: (net inum, pin).
    fn fd_pins(&mut self) -> Vec<(u32, Pin)>;
    /// Interfaces of the namespace reachable through `handle`, and its identity.
    fn interfaces(&mut self, handle: &std::path::Path) -> Result<(NsId, Vec<Interface>), String>;
    /// The cgroup path of task `pid` (/proc/PID/cgroup), None when it is gone.
    fn member_cgroup(&mut self, pid: u32) -> Option<String>;
    /// The path of the cgroup v2 cgroup with this id (the id task records carry), None when
    /// it no longer exists or cannot be looked up.
    fn cgroup_path_of_id(&mut self, cgroup_id: u64) -> Option<String>;
    /// The CNI result cache's entries as they are now.
    fn cni_results(&mut self) -> Vec<CniCacheEntry>;
}

/// After a pin or device appears, or a CNI plugin returns, the CNI result cache is re-read on
/// every tick for this long: the runtime writes an entry only once the CNI ADD has returned,
/// and removes it once the DEL has.
const CNI_SETTLE_NS: u64 = 5_000_000_000;

/// CNI DELs of attachments whose cache entry was not seen read the cache at most this often.
const CNI_DEL_READ_GAP_NS: u64 = 10_000_000;

/// A namespace that lost its last member is looked at (fd holders, interfaces through its
/// pin) once this long has passed, unless its teardown came first. Most namespaces die with
/// their last member: this keeps a /proc-wide fd scan off every exit. The look is stamped at
/// that moment and comes before any later event is judged (see [`Enricher::settle`]).
const EMPTIED_SETTLE_NS: u64 = 200_000_000;

/// A member whose cgroup named no pod or container when it joined is read again on ticks for
/// this long (while it lives and its namespace has no such member): a runtime may move a
/// process into the container's cgroup only after it joined the namespace (`runc exec` writes
/// the pid into cgroup.procs once nsexec has set its namespaces). Forks inside such a
/// namespace are read too during this window after its first member joined.
const CGROUP_SETTLE_NS: u64 = 10_000_000_000;

/// At most this many members wait to be read again (each tick reads them all).
const MAX_UNSETTLED_MEMBERS: usize = 1024;

/// Cgroup ids already looked up, kept up to this many (then forgotten and looked up again).
const MAX_RESOLVED_CGROUP_IDS: usize = 4096;

/// At most this many running CNI plugins are remembered (a node runs a few at a time).
const MAX_RUNNING_CNI_CALLS: usize = 1024;

/// Mount flags that make mount(2) attach something new (bind or move).
const MS_BIND: u64 = 4096;
const MS_MOVE: u64 = 8192;

/// A member whose cgroup is to be read again: the task, its namespace, and when it joined.
#[derive(Clone, Copy, Debug)]
struct UnsettledMember {
    pid: u32,
    comm: Comm,
    netns: NsId,
    joined_at: u64,
}

#[derive(Default)]
pub struct Enricher<O: Observer> {
    obs: O,
    /// Pins last seen per mount namespace.
    mount_pins: HashMap<u32, Vec<(u32, Pin)>>,
    /// Fd pins last seen.
    fd_pins: Vec<(u32, Pin)>,
    /// Live tasks per namespace, for handles to read interfaces through.
    tasks: HashMap<NsId, HashSet<u32>>,
    /// Latest identity for an inum (mountinfo and /proc only show inums).
    by_inum: HashMap<u32, NsId>,
    /// Namespaces with activity since their interfaces were last read.
    dirty: HashSet<NsId>,
    /// Last interfaces reported per namespace (only changes are emitted).
    reported: HashMap<NsId, Vec<Interface>>,
    /// Cgroup last reported per member process (tgid), with the namespace it joined.
    member_cgroups: HashMap<u32, (NsId, String)>,
    /// Members (by tgid) whose cgroup did not name a pod or container yet: re-read on ticks.
    unsettled_members: HashMap<u32, UnsettledMember>,
    /// Namespaces whose members' cgroups named no pod or container so far, and when the first
    /// such cgroup was read (forks inside are read during [`CGROUP_SETTLE_NS`] after it).
    unattributed: HashMap<NsId, u64>,
    /// Namespaces a member's cgroup attributed: their members need no further reads.
    attributed: HashSet<NsId>,
    /// Cgroup ids from task records already looked up (and reported when they said something).
    resolved_cgroup_ids: HashSet<u64>,
    /// CNI cache entries last reported, by (network, container id, interface).
    cni: HashMap<(String, String, String), CniCacheEntry>,
    /// Running CNI plugins (by tgid) whose CNI_NETNS named a namespace the enricher knows:
    /// read again once the plugin ends.
    cni_running: HashMap<u32, NsId>,
    /// Re-read the CNI cache on ticks until this time (a pin or a device appeared).
    cni_until: Option<u64>,
    /// When a DEL last made the enricher read the CNI cache.
    cni_del_read_at: Option<u64>,
    /// Namespaces whose last member left, and when; looked at once settled if still alive.
    emptied: HashMap<NsId, u64>,
    /// The latest event time seen.
    last_ts: u64,
    init: NsId,
    /// Which mount namespace's pins a CNI_NETNS path names (from the starting snapshot).
    node_mnt: NodeMountNs,
}

impl<O: Observer> Enricher<O> {
    pub fn new(obs: O) -> Self {
        Self {
            obs,
            mount_pins: HashMap::new(),
            fd_pins: Vec::new(),
            tasks: HashMap::new(),
            by_inum: HashMap::new(),
            dirty: HashSet::new(),
            reported: HashMap::new(),
            member_cgroups: HashMap::new(),
            unsettled_members: HashMap::new(),
            unattributed: HashMap::new(),
            attributed: HashSet::new(),
            resolved_cgroup_ids: HashSet::new(),
            cni: HashMap::new(),
            cni_running: HashMap::new(),
            cni_until: None,
            cni_del_read_at: None,
            emptied: HashMap::new(),
            last_ts: 0,
            init: NsId::default(),
            node_mnt: NodeMountNs::default(),
        }
    }

    /// Seeds state from the starting snapshot so that later changes are diffs against it.
    pub fn seed(&mut self, snap: &Snapshot) {
        self.init = snap.init_netns;
        self.node_mnt = NodeMountNs::new(snap.init_mnt_ns);
        for ns in &snap.namespaces {
            self.by_inum.insert(ns.netns.inum, ns.netns);
            for m in &ns.members {
                self.tasks.entry(ns.netns).or_default().insert(m.pid);
            }
            for p in &ns.pins {
                match p {
                    Pin::BindMount { mnt_ns, .. } => self
                        .mount_pins
                        .entry(*mnt_ns)
                        .or_default()
                        .push((ns.netns.inum, p.clone())),
                    Pin::Fd { .. } => self.fd_pins.push((ns.netns.inum, p.clone())),
                    Pin::Socket { .. } => {}
                }
            }
            self.reported.insert(ns.netns, ns.interfaces.clone());
        }
    }

    fn id_of(&self, inum: u32) -> NsId {
        self.by_inum
            .get(&inum)
            .copied()
            .unwrap_or(NsId::new(0, inum))
    }

    fn learn(&mut self, id: NsId) {
        if id.inum != 0 {
            let e = self.by_inum.entry(id.inum).or_insert(id);
            if id.cookie != 0 {
                *e = id;
            }
        }
    }

    /// Re-reads a mount namespace's nsfs pins and reports the difference.
    fn rescan_mount_ns(&mut self, mnt_ns: u32, ts: u64, out: &mut Vec<Event>) {
        self.rescan_mount_ns_after(mnt_ns, None, ts, out);
    }

    /// [`rescan_mount_ns`](Self::rescan_mount_ns) after a successful umount of `unmounted`
    /// there, which the collector took as the end of every pin at that path in that mount
    /// namespace: a pin still at the path (a lower mount of a stack, or one mounted since an
    /// earlier read) is reported again.
    fn rescan_mount_ns_after(
        &mut self,
        mnt_ns: u32,
        unmounted: Option<&str>,
        ts: u64,
        out: &mut Vec<Event>,
    ) {
        // An error means the mount namespace is gone (its last process exited): its copies
        // went with it.
        let now = self.obs.mount_ns_pins(mnt_ns).unwrap_or_default();
        let mut before = self.mount_pins.remove(&mnt_ns).unwrap_or_default();
        if let Some(gone) = unmounted.map(normalize_path) {
            before.retain(
                |(_, p)| !matches!(p, Pin::BindMount { path, .. } if normalize_path(path) == gone),
            );
        }
        let key = |(i, p): &(u32, Pin)| match p {
            Pin::BindMount { path, .. } => (*i, path.clone()),
            _ => (*i, String::new()),
        };
        let before_keys: HashSet<_> = before.iter().map(key).collect();
        let now_keys: HashSet<_> = now.iter().map(key).collect();
        for entry in &before {
            if !now_keys.contains(&key(entry)) {
                out.push(Event::observed(
                    ts,
                    EventBody::PinRemoved(PinChange {
                        netns: self.id_of(entry.0),
                        pin: entry.1.clone(),
                    }),
                ));
            }
        }
        for entry in &now {
            if !before_keys.contains(&key(entry)) {
                out.push(Event::observed(
                    ts,
                    EventBody::PinAdded(PinChange {
                        netns: self.id_of(entry.0),
                        pin: entry.1.clone(),
                    }),
                ));
            }
        }
        if !now.is_empty() {
            self.mount_pins.insert(mnt_ns, now);
        }
    }

    fn rescan_fds(&mut self, ts: u64, out: &mut Vec<Event>) {
        let now = self.obs.fd_pins();
        // Sets, not Vec::contains: a node can have thousands of fd holders.
        let before: HashSet<&(u32, Pin)> = self.fd_pins.iter().collect();
        let after: HashSet<&(u32, Pin)> = now.iter().collect();
        for entry in self.fd_pins.iter().filter(|e| !after.contains(e)) {
            out.push(Event::observed(
                ts,
                EventBody::PinRemoved(PinChange {
                    netns: self.id_of(entry.0),
                    pin: entry.1.clone(),
                }),
            ));
        }
        for entry in now.iter().filter(|e| !before.contains(e)) {
            out.push(Event::observed(
                ts,
                EventBody::PinAdded(PinChange {
                    netns: self.id_of(entry.0),
                    pin: entry.1.clone(),
                }),
            ));
        }
        self.fd_pins = now;
    }

    /// Ways into a namespace, best first: a live member, a bind mount (through a process of
    /// the mount namespace that holds it), an fd holder.
    fn handles(&self, id: NsId) -> Vec<PathBuf> {
        let mut h: Vec<PathBuf> = Vec::new();
        if let Some(tids) = self.tasks.get(&id) {
            h.extend(
                tids.iter()
                    .take(2)
                    .map(|t| PathBuf::from(format!("/proc/{t}/ns/net"))),
            );
        }
        for pins in self.mount_pins.values() {
            for (inum, p) in pins {
                if let (
                    true,
                    Pin::BindMount {
                        path, holder_pid, ..
                    },
                ) = (*inum == id.inum, p)
                {
                    h.push(PathBuf::from(format!("/proc/{holder_pid}/root{path}")));
                }
            }
        }
        for (inum, p) in &self.fd_pins {
            if let (true, Pin::Fd { pid, fd, .. }) = (*inum == id.inum, p) {
                h.push(PathBuf::from(format!("/proc/{pid}/fd/{fd}")));
            }
        }
        h
    }

    fn read_interfaces(&mut self, id: NsId, ts: u64, out: &mut Vec<Event>) {
        for handle in self.handles(id) {
            match self.obs.interfaces(&handle) {
                // The handle may now lead elsewhere (a pid reused, a path remounted).
                Ok((seen, ifaces)) if seen.inum == id.inum => {
                    if self.reported.get(&id) != Some(&ifaces) {
                        self.reported.insert(id, ifaces.clone());
                        out.push(Event::observed(
                            ts,
                            EventBody::Interfaces(InterfacesRead {
                                netns: id,
                                interfaces: ifaces,
                            }),
                        ));
                    }
                    return;
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!("reading interfaces of {id} via {}: {e}", handle.display())
                }
            }
        }
    }

    /// Reacts to one event; returns the observations it led to.
    pub fn on_event(&mut self, ev: &Event) -> Vec<Event> {
        let mut out = Vec::new();
        let ts = ev.ts_ns;
        self.last_ts = self.last_ts.max(ts);
        match &ev.body {
            EventBody::NetnsCreated(NetnsCreated { netns, .. }) => {
                self.learn(*netns);
                self.dirty.insert(*netns);
            }
            EventBody::Task(TaskNetns {
                op,
                netns,
                prev,
                mnt_ns,
                prev_mnt_ns,
                thread,
                cgroup_id,
                ..
            }) => {
                self.learn(*netns);
                let tid = ev.pid;
                // A process entering a namespace (setns, unshare, clone into a new one). Children
                // forked inside a namespace inherit their parent's cgroup: read only while the
                // namespace is not attributed yet (the runtime may have moved the child since),
                // which keeps the per-fork cost off the event path.
                let enters = match op {
                    TaskOp::Unshare | TaskOp::Setns => true,
                    TaskOp::Fork => netns != prev || self.unattributed_within_window(*netns, ts),
                    TaskOp::Exit => false,
                };
                if enters && !*thread && *netns != self.init && !netns.is_none() {
                    self.resolve_cgroup_id(*cgroup_id, ts, &mut out);
                    self.record_member_cgroup(ev, *netns, &mut out);
                }
                match op {
                    TaskOp::Fork => {
                        self.tasks.entry(*netns).or_default().insert(tid);
                        self.emptied.remove(netns);
                    }
                    TaskOp::Unshare | TaskOp::Setns => {
                        if let Some(s) = self.tasks.get_mut(prev) {
                            s.remove(&tid);
                        }
                        self.tasks.entry(*netns).or_default().insert(tid);
                        self.dirty.insert(*netns);
                        self.emptied.remove(netns);
                    }
                    TaskOp::Exit => {
                        let emptied = match self.tasks.get_mut(netns) {
                            Some(s) => s.remove(&tid) && s.is_empty(),
                            None => true,
                        };
                        // A mount namespace dies with its last process, and its nsfs copies with
                        // it: re-check any whose representative just exited.
                        let held: Vec<u32> = self
                            .mount_pins
                            .iter()
                            .filter(|(_, pins)| pins.iter().any(|(_, p)| matches!(p, Pin::BindMount { holder_pid, .. } if *holder_pid == ev.tgid)))
                            .map(|(m, _)| *m)
                            .collect();
                        for m in held {
                            self.rescan_mount_ns(m, ts, &mut out);
                        }
                        if self
                            .fd_pins
                            .iter()
                            .any(|(_, p)| matches!(p, Pin::Fd { pid, .. } if *pid == ev.tgid))
                        {
                            self.rescan_fds(ts, &mut out);
                        }
                        if ev.pid == ev.tgid {
                            self.member_cgroups.remove(&ev.tgid);
                            self.unsettled_members.remove(&ev.tgid);
                        }
                        if emptied && *netns != self.init {
                            self.tasks.remove(netns);
                            // Memberless: whatever still holds it is what we must name, and its
                            // interfaces can only be read through that pin from now on. Left to
                            // a tick, since usually its teardown follows at once.
                            self.emptied.entry(*netns).or_insert(ts);
                        }
                    }
                }
                if *mnt_ns != 0 && mnt_ns != prev_mnt_ns && *op != TaskOp::Exit {
                    // A new mount namespace starts as a copy of its parent's, nsfs mounts included.
                    self.rescan_mount_ns(*mnt_ns, ts, &mut out);
                }
            }
            EventBody::MountSyscall(MountSyscall {
                op,
                mnt_ns,
                ret,
                flags,
                source,
                target,
                ..
            }) if *ret >= 0 => {
                let relevant = match op {
                    MountOp::Mount => flags & (MS_BIND | MS_MOVE) != 0,
                    MountOp::Umount | MountOp::MoveMount => true,
                    MountOp::OpenTree => false,
                };
                let unmounted = (*op == MountOp::Umount).then(|| op.acted_on(source, target));
                if relevant {
                    self.rescan_mount_ns_after(*mnt_ns, unmounted, ts, &mut out);
                }
            }
            EventBody::Snapshot(_) => self.read_cni(ts, &mut out),
            EventBody::CniExec(exec) => {
                if self.cache_entry_may_vanish(ts, exec) {
                    self.read_cni(ts, &mut out);
                }
                self.cni_call_started(ev.tgid, exec);
            }
            // The runtime writes an ADD's cache entry, or removes a DEL's, once the plugin
            // it ran has returned; and the plugin may have made or removed interfaces in the
            // namespace it was given (a DEL that cleaned up), which no kernel event says in
            // tracepoint mode: read it again on the next tick.
            EventBody::CniExit(_) => {
                self.cni_soon(ts);
                if let Some(netns) = self.cni_running.remove(&ev.tgid)
                    && netns != self.init
                {
                    self.dirty.insert(netns);
                }
            }
            EventBody::PinAdded(PinChange { .. }) => self.cni_soon(ts),
            EventBody::NetDev(NetDev {
                op: NetDevOp::Register | NetDevOp::Move,
                netns,
                ..
            }) if *netns != self.init => self.cni_soon(ts),
            EventBody::NsfsMount(NsfsMount { netns, mnt_ns, .. }) => {
                self.cni_soon(ts);
                self.learn(*netns);
                self.rescan_mount_ns(*mnt_ns, ts, &mut out);
            }
            EventBody::Arp(ArpPacket { netns, .. })
            | EventBody::Ndisc(NdiscPacket { netns, .. })
            | EventBody::NeighUpdate(NeighUpdate { netns, .. })
                if *netns != self.init =>
            {
                self.dirty.insert(*netns);
            }
            EventBody::NetnsTeardown(NetnsObject { netns, .. })
            | EventBody::NetnsFreed(NetnsObject { netns, .. }) => {
                self.dirty.remove(netns);
                self.tasks.remove(netns);
                self.reported.remove(netns);
                self.emptied.remove(netns);
                self.unattributed.remove(netns);
                self.attributed.remove(netns);
                self.unsettled_members.retain(|_, m| m.netns != *netns);
                self.cni_running.retain(|_, n| n != netns);
                // Its inode number is free for the next namespace: /proc showing it from now on
                // means that one, whose identity we may not know yet.
                if self.by_inum.get(&netns.inum) == Some(netns) {
                    self.by_inum.remove(&netns.inum);
                }
            }
            _ => {}
        }
        out
    }

    /// Reads the cgroup of a task that just became a member of `netns`, while it is alive,
    /// and reports it (once per process, namespace and path). A cgroup that names no pod or
    /// container leaves the member to be read again on ticks (see [`CGROUP_SETTLE_NS`]).
    fn record_member_cgroup(&mut self, ev: &Event, netns: NsId, out: &mut Vec<Event>) {
        let Some(path) = self.obs.member_cgroup(ev.pid) else {
            return;
        };
        let member = UnsettledMember {
            pid: ev.pid,
            comm: ev.comm,
            netns,
            joined_at: ev.ts_ns,
        };
        if self.note_member_path(member, ev.tgid, ev.ts_ns, &path) {
            out.push(Event {
                ts_ns: ev.ts_ns,
                pid: ev.pid,
                tgid: ev.tgid,
                comm: ev.comm,
                body: EventBody::MemberCgroup(MemberCgroup { netns, path }),
            });
        }
    }

    /// Books member `tgid`'s cgroup `path`, read at `ts`: whether it is new (to be reported).
    /// A path that names no pod or container keeps the member to be read again, until
    /// [`CGROUP_SETTLE_NS`] after it joined.
    fn note_member_path(
        &mut self,
        member: UnsettledMember,
        tgid: u32,
        ts: u64,
        path: &str,
    ) -> bool {
        let netns = member.netns;
        if owner_from_cgroup(path).cgroup_rank() > 0 {
            self.attributed.insert(netns);
            self.unattributed.remove(&netns);
            self.unsettled_members.remove(&tgid);
        } else if !self.attributed.contains(&netns) {
            self.unattributed.entry(netns).or_insert(ts);
            let known = self.unsettled_members.contains_key(&tgid);
            if !known
                && ts.saturating_sub(member.joined_at) < CGROUP_SETTLE_NS
                && self.unsettled_members.len() < MAX_UNSETTLED_MEMBERS
            {
                self.unsettled_members.insert(tgid, member);
            }
        }
        if self
            .member_cgroups
            .get(&tgid)
            .is_some_and(|(n, p)| *n == netns && p == path)
        {
            return false;
        }
        self.member_cgroups.insert(tgid, (netns, path.to_string()));
        true
    }

    /// Whether the first cgroup read in `netns`, which named no pod or container (nor has any
    /// since), is less than [`CGROUP_SETTLE_NS`] old.
    fn unattributed_within_window(&self, netns: NsId, ts: u64) -> bool {
        self.unattributed
            .get(&netns)
            .is_some_and(|since| ts.saturating_sub(*since) < CGROUP_SETTLE_NS)
    }

    /// Looks up the cgroup v2 path of the id a task record carries (the task's cgroup at the
    /// kernel event, which stays readable after the task died) and reports it when it names a
    /// pod or container. Each id is looked up once.
    fn resolve_cgroup_id(&mut self, cgroup_id: u64, ts: u64, out: &mut Vec<Event>) {
        if cgroup_id == 0 || self.resolved_cgroup_ids.contains(&cgroup_id) {
            return;
        }
        if self.resolved_cgroup_ids.len() >= MAX_RESOLVED_CGROUP_IDS {
            self.resolved_cgroup_ids.clear();
        }
        self.resolved_cgroup_ids.insert(cgroup_id);
        if let Some(path) = self.obs.cgroup_path_of_id(cgroup_id)
            && owner_from_cgroup(&path).cgroup_rank() > 0
        {
            out.push(Event::observed(
                ts,
                EventBody::CgroupPath(CgroupPath { cgroup_id, path }),
            ));
        }
    }

    /// Reads again the members whose cgroup named nothing yet, and reports the ones that
    /// changed. Members that died, namespaces attributed meanwhile and members past the
    /// settle window are dropped.
    fn reread_unsettled_members(&mut self, ts: u64, out: &mut Vec<Event>) {
        let due: Vec<(u32, UnsettledMember)> = self
            .unsettled_members
            .iter()
            .map(|(t, m)| (*t, *m))
            .collect();
        for (tgid, m) in due {
            if self.attributed.contains(&m.netns)
                || ts.saturating_sub(m.joined_at) >= CGROUP_SETTLE_NS
            {
                self.unsettled_members.remove(&tgid);
                continue;
            }
            let Some(path) = self.obs.member_cgroup(m.pid) else {
                self.unsettled_members.remove(&tgid);
                continue;
            };
            if self.note_member_path(m, tgid, ts, &path) {
                out.push(Event {
                    ts_ns: ts,
                    pid: m.pid,
                    tgid,
                    comm: m.comm,
                    body: EventBody::MemberCgroup(MemberCgroup {
                        netns: m.netns,
                        path,
                    }),
                });
            }
        }
    }

    /// Remembers which namespace a CNI plugin's CNI_NETNS names, when the enricher knows it: a
    /// `/proc/PID/ns/net` of a live member, or a bind mount it has seen where runtimes pin
    /// ([`NodeMountNs`]).
    fn cni_call_started(&mut self, tgid: u32, exec: &CniExec) {
        let Some(path) = exec.netns_path.as_deref().filter(|p| !p.is_empty()) else {
            return;
        };
        let proc_pid = sandbox_from_pin_path(path).and_then(|s| match s.kind {
            SandboxKind::Process { pid } => Some(pid),
            _ => None,
        });
        let netns = match proc_pid {
            Some(pid) => self
                .tasks
                .iter()
                .find(|(_, tids)| tids.contains(&pid))
                .map(|(id, _)| *id),
            None => {
                let want = normalize_path(path);
                self.mount_pins
                    .iter()
                    .filter(|(mnt, _)| self.node_mnt.vouches_for(Some(**mnt)))
                    .flat_map(|(_, pins)| pins)
                    .find(|(_, p)| matches!(p, Pin::BindMount { path, .. } if normalize_path(path) == want))
                    .map(|(inum, _)| self.id_of(*inum))
            }
        };
        let Some(netns) = netns else {
            return;
        };
        if self.cni_running.len() >= MAX_RUNNING_CNI_CALLS {
            // Ends lost (or never sent) would otherwise keep them forever.
            self.cni_running.clear();
        }
        self.cni_running.insert(tgid, netns);
    }

    /// A DEL is the last moment its attachment's cache entry surely exists: libcni removes it
    /// once the DEL returned, and a pod that lived shorter than a tick would otherwise never be
    /// attributed through it. Read now unless the entry was seen already, at most once per
    /// [`CNI_DEL_READ_GAP_NS`] (anything can exec a file with CNI_COMMAND=DEL in its env).
    fn cache_entry_may_vanish(&mut self, ts: u64, exec: &CniExec) -> bool {
        if exec.verb != "DEL" {
            return false;
        }
        let (Some(container), Some(if_name)) = (&exec.container_id, &exec.if_name) else {
            return false;
        };
        let seen = self
            .cni
            .keys()
            .any(|(_, c, i)| c == container && i == if_name);
        if seen
            || self
                .cni_del_read_at
                .is_some_and(|at| ts < at.saturating_add(CNI_DEL_READ_GAP_NS))
        {
            return false;
        }
        self.cni_del_read_at = Some(ts);
        true
    }

    fn cni_soon(&mut self, ts: u64) {
        self.cni_until = Some(ts.saturating_add(CNI_SETTLE_NS));
    }

    /// Re-reads the CNI result cache and reports new or changed entries, and the ones gone.
    fn read_cni(&mut self, ts: u64, out: &mut Vec<Event>) {
        let mut present = HashSet::new();
        for e in self.obs.cni_results() {
            let key = (
                e.network_name.clone(),
                e.container_id.clone(),
                e.if_name.clone(),
            );
            if self.cni.get(&key) != Some(&e) {
                self.cni.insert(key.clone(), e.clone());
                out.push(Event::observed(ts, EventBody::CniResult(Box::new(e))));
            }
            present.insert(key);
        }
        // Entries the runtime deleted (libcni does when a DEL succeeds) are reported gone and
        // forgotten, so this follows the cache's size rather than every attachment the node
        // ever made.
        let mut gone: Vec<(String, String, String)> = self
            .cni
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        gone.sort();
        for key in gone {
            self.cni.remove(&key);
            let (network_name, container_id, if_name) = key;
            out.push(Event::observed(
                ts,
                EventBody::CniResultGone(CniResultGone {
                    network_name,
                    container_id,
                    if_name,
                }),
            ));
        }
    }

    /// Looks at the namespaces that have stayed memberless for [`EMPTIED_SETTLE_NS`] by `ts`:
    /// one fd scan names the holders of them all, and their interfaces are read through what
    /// holds them. Call it before anything stamped `ts` reaches the collector: a loop that lags
    /// (a loaded or emulated CPU) can hold events past the grace period, and the collector
    /// must see the holders before it judges the namespace. The observations are stamped when
    /// the first of them settled (no earlier than the last event seen), so a recorded trace
    /// replays in the same order.
    pub fn settle(&mut self, ts: u64) -> Vec<Event> {
        let mut out = Vec::new();
        let Some(first) = self.emptied.values().map(|at| at + EMPTIED_SETTLE_NS).min() else {
            return out;
        };
        if first > ts {
            return out;
        }
        let at = first.max(self.last_ts).min(ts);
        let settled: Vec<NsId> = self
            .emptied
            .iter()
            .filter(|(_, emptied_at)| **emptied_at + EMPTIED_SETTLE_NS <= ts)
            .map(|(id, _)| *id)
            .collect();
        self.rescan_fds(at, &mut out);
        for id in settled {
            self.emptied.remove(&id);
            self.dirty.remove(&id);
            self.read_interfaces(id, at, &mut out);
        }
        out
    }

    /// Periodic work: re-read interfaces of namespaces that saw activity, and the CNI cache
    /// while a pin or device is recent.
    pub fn tick(&mut self, ts: u64) -> Vec<Event> {
        let mut out = self.settle(ts);
        if !self.unsettled_members.is_empty() {
            self.reread_unsettled_members(ts, &mut out);
        }
        match self.cni_until {
            Some(until) if ts <= until => self.read_cni(ts, &mut out),
            Some(_) => {
                self.cni_until = None;
                self.read_cni(ts, &mut out);
            }
            None => {}
        }
        let dirty: Vec<NsId> = self.dirty.drain().collect();
        for id in dirty {
            self.read_interfaces(id, ts, &mut out);
        }
        out
    }

    /// Every namespace the enricher can still reach, for a final interface read.
    pub fn refresh_all(&mut self, ts: u64) -> Vec<Event> {
        let mut ids: HashSet<NsId> = self.tasks.keys().copied().collect();
        for pins in self.mount_pins.values() {
            ids.extend(pins.iter().map(|(i, _)| self.id_of(*i)));
        }
        let mut out = Vec::new();
        if !self.emptied.is_empty() {
            // Emptied too recently for a tick to have scanned: the last look must still name
            // whoever holds an fd on them.
            self.rescan_fds(ts, &mut out);
            ids.extend(self.emptied.drain().map(|(id, _)| id));
        }
        for id in ids {
            if id != self.init {
                self.read_interfaces(id, ts, &mut out);
            }
        }
        self.read_cni(ts, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Comm, Mac};
    use std::net::Ipv4Addr;
    use std::path::Path;

    #[derive(Default)]
    struct Fake {
        mounts: HashMap<u32, Vec<(u32, Pin)>>,
        fds: Vec<(u32, Pin)>,
        ifaces: HashMap<PathBuf, (NsId, Vec<Interface>)>,
        reads: Vec<PathBuf>,
        cgroups: HashMap<u32, String>,
        cgroup_ids: HashMap<u64, String>,
        cgroup_reads: u32,
        cni: Vec<CniCacheEntry>,
        cni_reads: u32,
        fd_scans: u32,
    }

    impl Observer for &mut Fake {
        fn mount_ns_pins(&mut self, mnt_ns: u32) -> Result<Vec<(u32, Pin)>, String> {
            self.mounts
                .get(&mnt_ns)
                .cloned()
                .ok_or_else(|| "gone".into())
        }
        fn fd_pins(&mut self) -> Vec<(u32, Pin)> {
            self.fd_scans += 1;
            self.fds.clone()
        }
        fn interfaces(
            &mut self,
            handle: &std::path::Path,
        ) -> Result<(NsId, Vec<Interface>), String> {
            self.reads.push(handle.to_path_buf());
            self.ifaces
                .get(handle)
                .cloned()
                .ok_or_else(|| "no such handle".into())
        }
        fn member_cgroup(&mut self, pid: u32) -> Option<String> {
            self.cgroup_reads += 1;
            self.cgroups.get(&pid).cloned()
        }
        fn cgroup_path_of_id(&mut self, cgroup_id: u64) -> Option<String> {
            self.cgroup_ids.get(&cgroup_id).cloned()
        }
        fn cni_results(&mut self) -> Vec<CniCacheEntry> {
            self.cni_reads += 1;
            self.cni.clone()
        }
    }

    fn bind(path: &str, mnt_ns: u32, holder: u32) -> Pin {
        Pin::BindMount {
            path: path.into(),
            mnt_ns,
            holder_pid: holder,
            holder_comm: Comm::from_str_lossy("containerd"),
        }
    }

    fn task(op: TaskOp, pid: u32, netns: NsId, prev: NsId, mnt: u32, prev_mnt: u32) -> Event {
        Event {
            ts_ns: 10,
            pid,
            tgid: pid,
            comm: Comm::from_str_lossy("pause"),
            body: EventBody::Task(TaskNetns {
                op,
                netns,
                prev,
                thread: false,
                group_dead: true,
                cgroup_id: 0,
                ppid: 1,
                mnt_ns: mnt,
                prev_mnt_ns: prev_mnt,
            }),
        }
    }

    fn mount(op: MountOp, mnt_ns: u32, ret: i64, flags: u64) -> Event {
        Event::observed(
            5,
            EventBody::MountSyscall(MountSyscall {
                op,
                netns: NsId::new(1, 1),
                mnt_ns,
                ret,
                flags,
                from_dfd: -100,
                to_dfd: -100,
                source: "/proc/9/ns/net".into(),
                target: "/run/netns/cni-1".into(),
            }),
        )
    }

    const HOST_MNT: u32 = 4026531841;

    #[test]
    fn a_bind_mount_becomes_a_pin_and_its_umount_removes_it() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        let mut e = Enricher::new(&mut fake);
        e.on_event(&Event::observed(
            1,
            EventBody::NetnsCreated(NetnsCreated {
                netns: pod,
                parent: NsId::new(1, 1),
                net_ptr: 1,
                source: crate::model::CreatedBy::Unshare,
                clone_flags: 0,
            }),
        ));
        e.obs.mounts.insert(
            HOST_MNT,
            vec![(pod.inum, bind("/run/netns/cni-1", HOST_MNT, 1))],
        );
        let out = e.on_event(&mount(MountOp::Mount, HOST_MNT, 0, MS_BIND));
        assert_eq!(out.len(), 1);
        assert!(
            matches!(&out[0].body, EventBody::PinAdded(PinChange { netns, pin: Pin::BindMount { path, .. } }) if *netns == pod && path == "/run/netns/cni-1"),
            "{out:?}"
        );
        // A failed mount changes nothing and is not even looked at.
        assert!(
            e.on_event(&mount(MountOp::Mount, HOST_MNT, -16, MS_BIND))
                .is_empty()
        );
        e.obs.mounts.insert(HOST_MNT, vec![]);
        let out = e.on_event(&mount(MountOp::Umount, HOST_MNT, 0, 2));
        assert!(
            matches!(&out[..], [Event { body: EventBody::PinRemoved(PinChange { netns, .. }), .. }] if *netns == pod),
            "{out:?}"
        );
    }

    /// A umount removes the top mount of a stack at its path; the collector retires every pin
    /// there in that mount namespace, so the one still mounted below is reported again.
    #[test]
    fn a_umount_of_a_stacked_path_reports_the_mount_left_below_again() {
        let mut fake = Fake::default();
        let (lower, upper) = (NsId::new(77, 4026532300), NsId::new(78, 4026532301));
        let mut e = Enricher::new(&mut fake);
        e.learn(lower);
        e.learn(upper);
        let path = "/run/netns/cni-1";
        e.obs.mounts.insert(
            HOST_MNT,
            vec![
                (lower.inum, bind(path, HOST_MNT, 1)),
                (upper.inum, bind(path, HOST_MNT, 1)),
            ],
        );
        assert_eq!(
            e.on_event(&mount(MountOp::Mount, HOST_MNT, 0, MS_BIND))
                .len(),
            2
        );
        e.obs
            .mounts
            .insert(HOST_MNT, vec![(lower.inum, bind(path, HOST_MNT, 1))]);
        let mut umount = mount(MountOp::Umount, HOST_MNT, 0, 0);
        if let EventBody::MountSyscall(m) = &mut umount.body {
            m.source = format!("/var{path}");
            m.target.clear();
        }
        let out = e.on_event(&umount);
        let seen: Vec<(&str, NsId)> = out
            .iter()
            .map(|ev| match &ev.body {
                EventBody::PinAdded(p) => ("added", p.netns),
                EventBody::PinRemoved(p) => ("removed", p.netns),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seen, [("added", lower)], "{out:?}");
    }

    #[test]
    fn a_new_mount_namespace_reveals_copies_and_loses_them_when_its_holder_exits() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        let host_net = NsId::new(1, 4026531840);
        let mut e = Enricher::new(&mut fake);
        e.learn(pod);
        let agent_mnt = 4026532999;
        e.obs.mounts.insert(
            agent_mnt,
            vec![(pod.inum, bind("/run/netns/cni-1", agent_mnt, 500))],
        );
        let out = e.on_event(&task(
            TaskOp::Unshare,
            500,
            host_net,
            host_net,
            agent_mnt,
            HOST_MNT,
        ));
        assert!(
            matches!(&out[..], [Event { body: EventBody::PinAdded(PinChange { pin: Pin::BindMount { mnt_ns, .. }, .. }), .. }] if *mnt_ns == agent_mnt),
            "{out:?}"
        );
        e.obs.mounts.remove(&agent_mnt);
        let out = e.on_event(&task(
            TaskOp::Exit,
            500,
            host_net,
            host_net,
            agent_mnt,
            agent_mnt,
        ));
        assert!(
            out.iter()
                .any(|ev| matches!(&ev.body, EventBody::PinRemoved(PinChange { netns, .. }) if *netns == pod)),
            "{out:?}"
        );
    }

    #[test]
    fn the_last_member_leaving_triggers_fd_scan_and_interface_read_through_the_pin() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        let iface = Interface {
            name: "eth0".into(),
            ifindex: 2,
            mac: Mac([2, 0, 10, 231, 1, 10]),
            ipv4: vec![(Ipv4Addr::new(10, 231, 1, 10), 24)],
            ipv6: Vec::new(),
        };
        fake.ifaces.insert(
            PathBuf::from("/proc/1/root/run/netns/cni-1"),
            (pod, vec![iface.clone()]),
        );
        fake.fds = vec![(
            pod.inum,
            Pin::Fd {
                pid: 700,
                fd: 5,
                comm: Comm::from_str_lossy("docker-proxy"),
            },
        )];
        let mut e = Enricher::new(&mut fake);
        e.learn(pod);
        e.obs.mounts.insert(
            HOST_MNT,
            vec![(pod.inum, bind("/run/netns/cni-1", HOST_MNT, 1))],
        );
        e.on_event(&mount(MountOp::Mount, HOST_MNT, 0, MS_BIND));
        e.on_event(&task(
            TaskOp::Setns,
            42,
            pod,
            NsId::new(1, 4026531840),
            HOST_MNT,
            HOST_MNT,
        ));
        // The exit itself costs no scan: the namespace usually dies right after.
        let exit = task(TaskOp::Exit, 42, pod, pod, HOST_MNT, HOST_MNT);
        assert!(e.on_event(&exit).is_empty());
        let mut out = e.tick(exit.ts_ns + EMPTIED_SETTLE_NS / 2);
        assert_eq!(e.obs.fd_scans, 0, "too early to scan");
        out.extend(e.tick(exit.ts_ns + EMPTIED_SETTLE_NS));
        assert_eq!(e.obs.fd_scans, 1);
        assert!(
            out.iter().any(|ev| matches!(
                &ev.body,
                EventBody::PinAdded(PinChange {
                    pin: Pin::Fd {
                        pid: 700,
                        fd: 5,
                        ..
                    },
                    ..
                })
            )),
            "{out:?}"
        );
        let ifaces = out.iter().find_map(|ev| match &ev.body {
            EventBody::Interfaces(InterfacesRead { netns, interfaces }) if *netns == pod => {
                Some(interfaces.clone())
            }
            _ => None,
        });
        assert_eq!(ifaces, Some(vec![iface]));
        // The member is gone, so the only way in is through the pin.
        assert!(!e.obs.reads.is_empty());
        assert!(
            e.obs
                .reads
                .iter()
                .all(|r| r == Path::new("/proc/1/root/run/netns/cni-1")),
            "{:?}",
            e.obs.reads
        );
        // Unchanged interfaces are not reported twice.
        e.dirty.insert(pod);
        assert!(e.tick(20).is_empty());
    }

    #[test]
    fn a_late_event_finds_the_fd_holders_already_looked_up_at_the_settle_time() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        fake.fds = vec![(
            pod.inum,
            Pin::Fd {
                pid: 700,
                fd: 5,
                comm: Comm::from_str_lossy("docker-proxy"),
            },
        )];
        let mut e = Enricher::new(&mut fake);
        e.learn(pod);
        e.on_event(&task(
            TaskOp::Setns,
            42,
            pod,
            NsId::new(1, 4026531840),
            HOST_MNT,
            HOST_MNT,
        ));
        let exit = task(TaskOp::Exit, 42, pod, pod, HOST_MNT, HOST_MNT);
        e.on_event(&exit);
        assert!(e.settle(exit.ts_ns + EMPTIED_SETTLE_NS - 1).is_empty());
        // The loop lagged: the next event is stamped long after the grace period.
        let late = exit.ts_ns + 30 * EMPTIED_SETTLE_NS;
        let out = e.settle(late);
        let added = out
            .iter()
            .find(|ev| matches!(&ev.body, EventBody::PinAdded(PinChange { netns, pin: Pin::Fd { pid: 700, .. } }) if *netns == pod))
            .unwrap_or_else(|| panic!("{out:?}"));
        assert_eq!(
            added.ts_ns,
            exit.ts_ns + EMPTIED_SETTLE_NS,
            "stamped when it settled"
        );
        assert!(out.iter().all(|ev| ev.ts_ns < late));
        assert!(e.settle(late).is_empty(), "looked at once");
        assert_eq!(e.obs.fd_scans, 1);
    }

    #[test]
    fn the_final_refresh_scans_a_namespace_emptied_just_before_stop() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        fake.fds = vec![(
            pod.inum,
            Pin::Fd {
                pid: 700,
                fd: 5,
                comm: Comm::from_str_lossy("docker-proxy"),
            },
        )];
        let mut e = Enricher::new(&mut fake);
        e.learn(pod);
        e.on_event(&task(
            TaskOp::Setns,
            42,
            pod,
            NsId::new(1, 4026531840),
            HOST_MNT,
            HOST_MNT,
        ));
        let exit = task(TaskOp::Exit, 42, pod, pod, HOST_MNT, HOST_MNT);
        e.on_event(&exit);
        // Stop comes before the settle delay has passed.
        let out = e.refresh_all(exit.ts_ns + 1);
        assert_eq!(e.obs.fd_scans, 1);
        assert!(out.iter().any(|ev| matches!(&ev.body, EventBody::PinAdded(PinChange { netns, pin: Pin::Fd { pid: 700, fd: 5, .. } }) if *netns == pod)), "{out:?}");
        assert!(e.emptied.is_empty());
    }

    #[test]
    fn a_namespace_torn_down_after_its_last_member_is_never_scanned() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        let mut e = Enricher::new(&mut fake);
        e.on_event(&task(
            TaskOp::Setns,
            42,
            pod,
            NsId::new(1, 4026531840),
            HOST_MNT,
            HOST_MNT,
        ));
        e.on_event(&task(TaskOp::Exit, 42, pod, pod, HOST_MNT, HOST_MNT));
        e.on_event(&Event::observed(
            11,
            EventBody::NetnsFreed(NetnsObject {
                netns: pod,
                net_ptr: 1,
                hook: crate::model::Hook::Tracepoint,
            }),
        ));
        assert!(e.tick(10 + EMPTIED_SETTLE_NS * 2).is_empty());
        assert!(e.obs.reads.is_empty(), "{:?}", e.obs.reads);
        assert_eq!(e.obs.fd_scans, 0);
    }

    #[test]
    fn a_handle_leading_to_another_namespace_is_not_trusted() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        fake.ifaces.insert(
            PathBuf::from("/proc/42/ns/net"),
            (NsId::new(99, 4026532999), vec![]),
        );
        let mut e = Enricher::new(&mut fake);
        e.on_event(&task(TaskOp::Fork, 42, pod, pod, HOST_MNT, HOST_MNT));
        e.dirty.insert(pod);
        assert!(
            e.tick(20).is_empty(),
            "pid 42 was reused by a process elsewhere"
        );
    }

    fn cni_entry(container: &str, netns_path: &str) -> CniCacheEntry {
        CniCacheEntry {
            container_id: container.into(),
            if_name: "eth0".into(),
            network_name: "cbr0".into(),
            config_name: Some("cbr0".into()),
            netns_path: Some(netns_path.into()),
            ips: vec![],
            pod_namespace: None,
            pod_name: None,
            pod_uid: None,
        }
    }

    #[test]
    fn a_joining_process_has_its_cgroup_recorded_once_and_threads_not_at_all() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        let host = NsId::new(1, 4026531840);
        let cg = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1_2.slice/cri-containerd-ab.scope";
        fake.cgroups.insert(42, cg.into());
        let mut e = Enricher::new(&mut fake);
        e.init = host;
        let out = e.on_event(&task(TaskOp::Setns, 42, pod, host, HOST_MNT, HOST_MNT));
        assert!(
            matches!(&out[..], [Event { pid: 42, tgid: 42, body: EventBody::MemberCgroup(MemberCgroup { netns, path }), .. }] if *netns == pod && path == cg),
            "{out:?}"
        );
        // Same process, same namespace, same cgroup: nothing new.
        assert!(
            e.on_event(&task(TaskOp::Setns, 42, pod, host, HOST_MNT, HOST_MNT))
                .is_empty()
        );
        // A thread of it is not read.
        let mut thread = task(TaskOp::Fork, 43, pod, pod, HOST_MNT, HOST_MNT);
        thread.tgid = 42;
        if let EventBody::Task(TaskNetns { thread: t, .. }) = &mut thread.body {
            *t = true;
        }
        e.obs.cgroups.insert(43, "/elsewhere".into());
        assert!(e.on_event(&thread).is_empty());
        // The host namespace's members are never read.
        e.obs.cgroups.insert(50, "/system.slice/x.service".into());
        assert!(
            e.on_event(&task(TaskOp::Fork, 50, host, host, HOST_MNT, HOST_MNT))
                .is_empty()
        );
        // A task that is already gone when looked at leaves nothing.
        assert!(
            e.on_event(&task(TaskOp::Fork, 60, pod, pod, HOST_MNT, HOST_MNT))
                .is_empty()
        );
    }

    fn member_cgroups_in(out: &[Event]) -> Vec<(u32, String)> {
        out.iter()
            .filter_map(|e| match &e.body {
                EventBody::MemberCgroup(MemberCgroup { path, .. }) => Some((e.tgid, path.clone())),
                _ => None,
            })
            .collect()
    }

    /// runc exec (and a runtime that places its init late): the process joins the namespace
    /// from the runtime's cgroup and is moved into the container's a moment later. Ticks read
    /// it again until its cgroup names the container, then stop.
    #[test]
    fn a_member_moved_into_its_container_cgroup_after_joining_is_read_again() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        let host = NsId::new(1, 4026531840);
        let runtime_cg = "/system.slice/containerd.service";
        let ctr_cg = format!(
            "/kubepods/besteffort/pod0b7c3e21-9d4f-4a6b-8c2e-1f3a5b7d9e0c/{}",
            "c".repeat(64)
        );
        fake.cgroups.insert(42, runtime_cg.into());
        let mut e = Enricher::new(&mut fake);
        e.init = host;
        let join = task(TaskOp::Setns, 42, pod, host, HOST_MNT, HOST_MNT);
        assert_eq!(
            member_cgroups_in(&e.on_event(&join)),
            vec![(42, runtime_cg.to_string())]
        );
        // Not moved yet: read again, nothing new to say.
        assert!(e.tick(join.ts_ns + 500_000_000).is_empty());
        assert_eq!(e.obs.cgroup_reads, 2);
        // The runtime wrote its pid into the container's cgroup.
        e.obs.cgroups.insert(42, ctr_cg.clone());
        let out = e.tick(join.ts_ns + 1_000_000_000);
        assert_eq!(member_cgroups_in(&out), vec![(42, ctr_cg.clone())]);
        assert!(
            matches!(&out[0], Event { pid: 42, comm, body: EventBody::MemberCgroup(MemberCgroup { netns, .. }), .. } if *netns == pod && comm.as_str() == "pause"),
            "{out:?}"
        );
        // Attributed: no more reads, not of it and not of forks inside the namespace.
        let reads = e.obs.cgroup_reads;
        assert!(e.tick(join.ts_ns + 1_500_000_000).is_empty());
        e.obs.cgroups.insert(43, ctr_cg.clone());
        assert!(
            e.on_event(&task(TaskOp::Fork, 43, pod, pod, HOST_MNT, HOST_MNT))
                .is_empty()
        );
        assert_eq!(e.obs.cgroup_reads, reads);
    }

    /// The re-reads are bounded: a member whose cgroup never names a container is read until
    /// the settle window ends, one that exits is dropped at once, and forks inside such a
    /// namespace are read only during the window.
    #[test]
    fn re_reads_end_with_the_window_or_the_member() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        let host = NsId::new(1, 4026531840);
        fake.cgroups.insert(42, "/".into());
        fake.cgroups.insert(50, "/".into());
        let mut e = Enricher::new(&mut fake);
        e.init = host;
        let join = task(TaskOp::Setns, 42, pod, host, HOST_MNT, HOST_MNT);
        e.on_event(&join);
        e.on_event(&task(TaskOp::Setns, 50, pod, host, HOST_MNT, HOST_MNT));
        assert_eq!(e.unsettled_members.len(), 2);
        // A fork inside, within the window: read (its parent's runtime may have moved it).
        let mut fork = task(TaskOp::Fork, 44, pod, pod, HOST_MNT, HOST_MNT);
        e.obs.cgroups.insert(44, "/".into());
        e.on_event(&fork);
        assert!(e.unsettled_members.contains_key(&44));
        // 50 exits: dropped without another read.
        e.on_event(&task(TaskOp::Exit, 50, pod, pod, HOST_MNT, HOST_MNT));
        assert!(!e.unsettled_members.contains_key(&50));
        // 44 died unseen: its next read fails and drops it.
        e.obs.cgroups.remove(&44);
        e.tick(join.ts_ns + 500_000_000);
        assert_eq!(
            e.unsettled_members.keys().copied().collect::<Vec<_>>(),
            vec![42]
        );
        // Past the window: 42 is dropped, and a fork inside is no longer read.
        e.tick(join.ts_ns + CGROUP_SETTLE_NS);
        assert!(e.unsettled_members.is_empty());
        let reads = e.obs.cgroup_reads;
        fork.pid = 45;
        fork.tgid = 45;
        fork.ts_ns = join.ts_ns + CGROUP_SETTLE_NS;
        e.on_event(&fork);
        e.tick(join.ts_ns + CGROUP_SETTLE_NS + 500_000_000);
        assert_eq!(e.obs.cgroup_reads, reads);
    }

    /// The cgroup id in a task record is looked up once, and reported when its path names a
    /// pod or container: that holds even when the member is gone by the time it is read.
    #[test]
    fn a_task_records_cgroup_id_is_resolved_once_even_after_the_member_died() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        let host = NsId::new(1, 4026531840);
        let ctr_cg = format!("/libpod_parent/libpod-{}", "d".repeat(64));
        fake.cgroup_ids.insert(9001, ctr_cg.clone());
        fake.cgroup_ids.insert(1, "/".into());
        let mut e = Enricher::new(&mut fake);
        e.init = host;
        let with_id = |pid: u32, id: u64| {
            let mut ev = task(TaskOp::Setns, pid, pod, host, HOST_MNT, HOST_MNT);
            if let EventBody::Task(TaskNetns { cgroup_id, .. }) = &mut ev.body {
                *cgroup_id = id;
            }
            ev
        };
        // pid 42 exited before this was read: /proc has nothing, the id still resolves.
        let out = e.on_event(&with_id(42, 9001));
        assert!(
            matches!(&out[..], [Event { body: EventBody::CgroupPath(CgroupPath { cgroup_id: 9001, path }), .. }] if *path == ctr_cg),
            "{out:?}"
        );
        assert!(e.on_event(&with_id(43, 9001)).is_empty(), "looked up once");
        assert!(
            e.on_event(&with_id(44, 1)).is_empty(),
            "the root cgroup names nothing"
        );
    }

    #[test]
    fn the_cni_cache_is_read_at_the_snapshot_and_again_after_a_pin_appears() {
        let mut fake = Fake::default();
        let pod = NsId::new(77, 4026532300);
        fake.cni = vec![cni_entry("aaa", "/run/netns/cni-1")];
        let mut e = Enricher::new(&mut fake);
        let snap = Snapshot {
            phase: crate::model::SnapshotPhase::Start,
            namespaces: vec![],
            init_netns: NsId::new(1, 1),
            init_mnt_ns: 0,
        };
        let out = e.on_event(&Event::observed(1, EventBody::Snapshot(Box::new(snap))));
        assert!(
            matches!(&out[..], [Event { body: EventBody::CniResult(c), .. }] if c.container_id == "aaa"),
            "{out:?}"
        );
        // Nothing recent: ticks do not touch the cache.
        assert!(e.tick(2).is_empty());
        assert_eq!(e.obs.cni_reads, 1);
        // A pin appears; the runtime writes the cache entry a little later.
        e.on_event(&Event::observed(
            10,
            EventBody::PinAdded(PinChange {
                netns: pod,
                pin: bind("/run/netns/cni-2", HOST_MNT, 1),
            }),
        ));
        assert!(
            e.tick(20).is_empty(),
            "unchanged entries are not reported again"
        );
        e.obs.cni.push(cni_entry("bbb", "/run/netns/cni-2"));
        let out = e.tick(1_000_000_000);
        assert!(
            matches!(&out[..], [Event { body: EventBody::CniResult(c), .. }] if c.container_id == "bbb"),
            "{out:?}"
        );
        // After the settle window the cache is left alone again.
        e.tick(20_000_000_000);
        let reads = e.obs.cni_reads;
        e.tick(21_000_000_000);
        assert_eq!(e.obs.cni_reads, reads);
    }

    /// A CNI DEL that cleaned up removed eth0, which no kernel event tells in tracepoint mode:
    /// the plugin's end marks the namespace its CNI_NETNS named (a member's /proc/PID/ns/net,
    /// or a bind mount) to be read again, so what the collector judges is not the list from
    /// before the DEL.
    #[test]
    fn the_namespace_a_cni_plugin_was_given_is_read_again_when_it_ends() {
        let pod = NsId::new(77, 4026532300);
        let other = NsId::new(78, 4026532301);
        let eth0 = Interface {
            name: "eth0".into(),
            ifindex: 2,
            mac: Mac([2, 0, 0, 0, 0, 7]),
            ipv4: vec![(Ipv4Addr::new(10, 0, 0, 7), 24)],
            ipv6: Vec::new(),
        };
        let mut fake = Fake::default();
        fake.ifaces
            .insert(PathBuf::from("/proc/700/ns/net"), (pod, vec![eth0.clone()]));
        fake.ifaces
            .insert(PathBuf::from("/proc/800/ns/net"), (other, vec![]));
        let mut e = Enricher::new(&mut fake);
        e.init = NsId::new(1, 4026531840);
        for (pid, ns) in [(700, pod), (800, other)] {
            e.on_event(&task(TaskOp::Setns, pid, ns, e.init, HOST_MNT, HOST_MNT));
        }
        e.tick(10);
        assert_eq!(e.reported.get(&pod), Some(&vec![eth0.clone()]));

        let plugin = |ts: u64, tgid: u32, body: EventBody| Event {
            ts_ns: ts,
            pid: tgid,
            tgid,
            comm: Comm::from_str_lossy("bridge"),
            body,
        };
        let exec = |netns_path: &str| {
            EventBody::CniExec(Box::new(CniExec {
                netns: NsId::new(1, 4026531840),
                verb: "DEL".into(),
                container_id: Some("aaa".into()),
                netns_path: Some(netns_path.into()),
                if_name: Some("eth0".into()),
                cni_args: None,
                path: "/usr/lib/cni/bridge".into(),
                truncated: Default::default(),
            }))
        };
        let exit = || {
            EventBody::CniExit(crate::model::CniExit {
                wait_status: 0,
                parent: 1,
            })
        };
        // The DEL runs and removes eth0.
        e.on_event(&plugin(20, 900, exec("/proc/700/ns/net")));
        e.obs
            .ifaces
            .insert(PathBuf::from("/proc/700/ns/net"), (pod, vec![]));
        assert!(
            e.tick(30)
                .iter()
                .all(|ev| !matches!(ev.body, EventBody::Interfaces(_))),
            "not read while the plugin runs"
        );
        e.on_event(&plugin(40, 900, exit()));
        let reads_before = e.obs.reads.len();
        let out = e.tick(50);
        assert!(
            out.iter().any(|ev| matches!(&ev.body, EventBody::Interfaces(InterfacesRead { netns, interfaces }) if *netns == pod && interfaces.is_empty())),
            "{out:?}"
        );
        assert!(
            e.obs.reads[reads_before..]
                .iter()
                .all(|r| r == Path::new("/proc/700/ns/net")),
            "only the namespace the plugin was given: {:?}",
            &e.obs.reads[reads_before..]
        );

        // A plugin given a path nothing known names (a dead /proc/PID/ns/net) marks nothing.
        e.on_event(&plugin(60, 901, exec("/proc/4242/ns/net")));
        e.on_event(&plugin(70, 901, exit()));
        let reads_before = e.obs.reads.len();
        e.tick(80);
        assert_eq!(e.obs.reads.len(), reads_before);
        assert!(e.cni_running.is_empty());
    }

    /// libcni removes an attachment's cache entry once its DEL returned 0: the plugin's end
    /// makes the enricher look, and the entry is reported gone, once.
    #[test]
    fn a_cni_cache_entry_removed_after_a_del_is_reported_gone() {
        let mut fake = Fake {
            cni: vec![
                cni_entry("aaa", "/run/netns/cni-1"),
                cni_entry("bbb", "/run/netns/cni-2"),
            ],
            ..Default::default()
        };
        let mut e = Enricher::new(&mut fake);
        e.read_cni(1, &mut Vec::new());
        assert_eq!(e.cni.len(), 2);
        // The DEL of aaa's bridge plugin ends; the runtime then removes the entry.
        e.on_event(&Event {
            ts_ns: 10,
            pid: 500,
            tgid: 500,
            comm: Comm::from_str_lossy("bridge"),
            body: EventBody::CniExit(crate::model::CniExit {
                wait_status: 0,
                parent: 1,
            }),
        });
        e.obs.cni.retain(|c| c.container_id != "aaa");
        let out = e.tick(20);
        assert!(
            matches!(&out[..], [Event { ts_ns: 20, body: EventBody::CniResultGone(CniResultGone { network_name, container_id, if_name }), .. }]
                if network_name == "cbr0" && container_id == "aaa" && if_name == "eth0"),
            "{out:?}"
        );
        assert!(e.tick(30).is_empty(), "reported once");
        assert_eq!(e.cni.len(), 1);
    }

    /// A pod shorter-lived than a tick: its entry is read when its DEL starts (libcni removes
    /// it only once the DEL returned), not when a later tick would find it gone already. A DEL
    /// of an entry already seen reads nothing, and forced reads are spaced.
    #[test]
    fn the_cni_cache_is_read_when_a_del_starts_for_an_entry_not_seen_yet() {
        let mut fake = Fake::default();
        let mut e = Enricher::new(&mut fake);
        let del = |ts: u64, container: &str| Event {
            ts_ns: ts,
            pid: 900,
            tgid: 900,
            comm: Comm::from_str_lossy("bridge"),
            body: EventBody::CniExec(Box::new(CniExec {
                netns: NsId::new(1, 4026531840),
                verb: "DEL".into(),
                container_id: Some(container.into()),
                netns_path: Some("/run/netns/cni-1".into()),
                if_name: Some("eth0".into()),
                cni_args: None,
                path: "/usr/lib/cni/bridge".into(),
                truncated: Default::default(),
            })),
        };
        e.obs.cni.push(cni_entry("aaa", "/run/netns/cni-1"));
        let out = e.on_event(&del(100_000_000, "aaa"));
        assert!(
            matches!(&out[..], [Event { ts_ns: 100_000_000, body: EventBody::CniResult(c), .. }] if c.container_id == "aaa"),
            "{out:?}"
        );
        assert_eq!(e.obs.cni_reads, 1);
        // Seen: its next DEL (a retry) reads nothing.
        assert!(e.on_event(&del(200_000_000, "aaa")).is_empty());
        // Not seen, but too soon after the last forced read; then late enough.
        e.obs.cni.push(cni_entry("bbb", "/run/netns/cni-2"));
        assert!(e.on_event(&del(105_000_000, "bbb")).is_empty());
        assert_eq!(e.obs.cni_reads, 1);
        let out = e.on_event(&del(110_000_000, "bbb"));
        assert!(
            matches!(&out[..], [Event { body: EventBody::CniResult(c), .. }] if c.container_id == "bbb"),
            "{out:?}"
        );
        // An ADD never reads: its entry is written only once the plugin returned.
        let mut add = del(300_000_000, "ccc");
        if let EventBody::CniExec(exec) = &mut add.body {
            exec.verb = "ADD".into();
        }
        assert!(e.on_event(&add).is_empty());
        assert_eq!(e.obs.cni_reads, 2);
    }

    /// Issue 14 item 3: what the enricher remembers per namespace and per CNI cache entry goes
    /// with the namespace and the entry, so a node's churn does not grow it without end.
    #[test]
    fn memory_of_dead_namespaces_and_deleted_cache_entries_is_dropped() {
        let mut fake = Fake {
            cni: vec![cni_entry("aaa", "/run/netns/cni-1")],
            ..Default::default()
        };
        let pods: Vec<NsId> = (0..50)
            .map(|i| NsId::new(100 + i, 4026533000 + i as u32))
            .collect();
        for (i, pod) in pods.iter().enumerate() {
            fake.ifaces.insert(
                PathBuf::from(format!("/proc/{}/ns/net", 1000 + i)),
                (
                    *pod,
                    vec![Interface {
                        name: "eth0".into(),
                        ifindex: 2,
                        mac: Mac([2, 0, 0, 0, 0, i as u8]),
                        ipv4: vec![(Ipv4Addr::new(10, 0, 0, i as u8), 24)],
                        ipv6: Vec::new(),
                    }],
                ),
            );
        }
        let mut e = Enricher::new(&mut fake);
        e.init = NsId::new(1, 4026531840);
        e.read_cni(1, &mut Vec::new());
        assert_eq!(e.cni.len(), 1);
        for (i, pod) in pods.iter().enumerate() {
            e.on_event(&task(
                TaskOp::Setns,
                1000 + i as u32,
                *pod,
                e.init,
                HOST_MNT,
                HOST_MNT,
            ));
            e.tick(10 + i as u64);
        }
        assert_eq!(
            e.reported.len(),
            pods.len(),
            "each pod's interfaces were read"
        );
        for pod in &pods {
            e.on_event(&Event::observed(
                100,
                EventBody::NetnsFreed(NetnsObject {
                    netns: *pod,
                    net_ptr: 1,
                    hook: crate::model::Hook::Tracepoint,
                }),
            ));
        }
        assert!(e.reported.is_empty(), "{:?}", e.reported.keys());
        e.obs.cni.clear();
        e.read_cni(200, &mut Vec::new());
        assert!(e.cni.is_empty(), "the runtime deleted its entry");
    }
}
