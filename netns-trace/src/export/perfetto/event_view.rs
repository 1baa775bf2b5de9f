//! What the export reads from an event itself, beside what the collector made of it: the
//! namespaces it names (whose lives are brought up to date after the collector handled it),
//! labels for what it opens and closes, and the marks that are the event itself (an ARP
//! packet, a mount syscall). This is the export's only look inside [`EventBody`].

use super::layout::{Arg, i, s, u};
use crate::model::{
    AddrOp, ArpPacket, CleanupRun, CniExit, Direction, Event, EventBody, InterfacesRead,
    Ipv4AddrChange, Lost, MountOp, MountSyscall, NeighUpdate, NetDev, NetDevOp, NetnsCreated,
    NetnsObject, NsId, NsfsEvict, NsfsMount, PinChange, SnapshotPhase, TaskNetns, TaskOp,
};

/// Where a mark of the event's own goes.
#[derive(Clone, Debug)]
pub(super) enum Anchor {
    /// The namespace's own track.
    Namespace(NsId),
    /// Its "ARP / neighbours" track.
    Neighbours(NsId),
    /// A device's track; `label` names it when the device was never seen.
    Device {
        netns: NsId,
        ifindex: u32,
        label: String,
    },
    /// The "mount syscalls" track.
    Mounts,
    /// The "tracer" track.
    Tracer,
    /// The track of the namespace the CNI call this event started (the collector's latest)
    /// named.
    CniStart,
    /// The tracks of the namespaces named by the CNI calls of process `tgid` this event ended.
    CniEnd { tgid: u32 },
}

#[derive(Clone, Debug)]
pub(super) struct RawMark {
    pub at: Anchor,
    pub name: String,
    pub args: Vec<Arg>,
}

#[derive(Debug)]
pub(super) struct EventView {
    /// The namespaces the event names.
    pub names: Vec<NsId>,
    /// Why a pin or device this event brought appeared ("register", "start snapshot").
    pub opened_by: &'static str,
    /// Why a pin or device this event took away ended ("unregister", "umount").
    pub closed_by: &'static str,
    /// Annotations for a device this event brought (where a moved device came from).
    pub open_args: Vec<Arg>,
    /// Annotations for the creation, teardown or free the collector saw in it.
    pub detail: Vec<Arg>,
    /// A mark that is the event itself.
    pub mark: Option<RawMark>,
}

impl EventView {
    /// For notices without an event ([`Collector::finish`](crate::collector::Collector::finish)).
    pub fn none() -> Self {
        Self {
            names: Vec::new(),
            opened_by: "observed",
            closed_by: "gone",
            open_args: Vec::new(),
            detail: Vec::new(),
            mark: None,
        }
    }

    pub fn of(event: &Event) -> Self {
        let mut view = Self::none();
        let mark = |at: Anchor, name: String, args: Vec<Arg>| Some(RawMark { at, name, args });
        match &event.body {
            EventBody::NetnsCreated(NetnsCreated {
                netns, clone_flags, ..
            }) => {
                view.names.push(*netns);
                view.detail.push(u("clone_flags", *clone_flags));
            }
            EventBody::Task(TaskNetns {
                op, netns, prev, ..
            }) => {
                view.names.extend([*netns, *prev]);
                let how = match op {
                    TaskOp::Fork => "fork",
                    TaskOp::Unshare => "unshare",
                    TaskOp::Setns => "setns",
                    TaskOp::Exit => "exit",
                };
                view.detail.push(s("inferred_from", how));
            }
            EventBody::NetnsTeardown(NetnsObject { netns, hook, .. })
            | EventBody::NetnsFreed(NetnsObject { netns, hook, .. }) => {
                view.names.push(*netns);
                view.detail
                    .push(s("hook", format!("{hook:?}").to_lowercase()));
            }
            EventBody::CleanupRun(CleanupRun {}) => {
                view.mark = mark(Anchor::Tracer, "cleanup_net run".into(), vec![]);
            }
            EventBody::MountSyscall(MountSyscall {
                op,
                netns,
                mnt_ns,
                ret,
                flags,
                source,
                target,
                ..
            }) => {
                let op_name = match op {
                    MountOp::Mount => "mount",
                    MountOp::Umount => "umount",
                    MountOp::OpenTree => "open_tree",
                    MountOp::MoveMount => "move_mount",
                };
                // A mount call can fold a graft into the pin observed at its target.
                view.closed_by = if *op == MountOp::Umount {
                    "umount"
                } else {
                    "folded into the observed mount"
                };
                let mut args = vec![
                    s("op", op_name),
                    s("source", source),
                    s("target", target),
                    i("ret", *ret),
                    u("flags", *flags),
                    u("mnt_ns", *mnt_ns),
                    u("pid", event.pid),
                    s("comm", event.comm),
                ];
                if !netns.is_none() {
                    args.push(s("caller_netns", netns));
                }
                let label = op.acted_on(source, target);
                let failed = if *ret < 0 { " (failed)" } else { "" };
                view.mark = mark(Anchor::Mounts, format!("{op_name} {label}{failed}"), args);
            }
            EventBody::NsfsMount(NsfsMount { netns, .. }) => view.names.push(*netns),
            EventBody::NsfsEvict(NsfsEvict { netns, .. }) => {
                view.names.push(*netns);
                view.closed_by = "nsfs inode evicted";
                view.mark = mark(
                    Anchor::Namespace(*netns),
                    "nsfs inode evicted".into(),
                    vec![],
                );
            }
            EventBody::NetDev(NetDev {
                op, netns, other, ..
            }) => {
                view.names.push(*netns);
                match op {
                    NetDevOp::Register => view.opened_by = "register",
                    NetDevOp::Unregister => view.closed_by = "unregister",
                    NetDevOp::Move => {
                        view.names.push(*other);
                        view.opened_by = "moved in";
                        view.closed_by = "moved to another namespace";
                        view.open_args.push(s("moved_from", other));
                    }
                }
            }
            EventBody::Ipv4Addr(Ipv4AddrChange {
                op,
                netns,
                ifindex,
                addr,
                prefix_len,
                label,
            }) => {
                view.names.push(*netns);
                view.opened_by = "address added";
                let verb = match op {
                    AddrOp::Add => "add",
                    AddrOp::Del => "del",
                };
                let args = vec![
                    s("ip", format!("{addr}/{prefix_len}")),
                    u("ifindex", *ifindex),
                    s("label", label),
                ];
                let at = Anchor::Device {
                    netns: *netns,
                    ifindex: *ifindex,
                    label: label.clone(),
                };
                view.mark = mark(at, format!("addr {verb} {addr}/{prefix_len}"), args);
            }
            EventBody::Arp(ArpPacket {
                netns,
                dir,
                op,
                ifindex,
                sender_ip,
                sender_mac,
                target_ip,
                target_mac,
                ..
            }) => {
                let op_name = match op {
                    1 => "request".to_string(),
                    2 => "reply".to_string(),
                    other => format!("op {other}"),
                };
                let dir = match dir {
                    Direction::Rx => "rx",
                    Direction::Tx => "tx",
                };
                let name = format!("ARP {op_name} {dir} {sender_ip} → {target_ip}");
                let mut args = vec![
                    s("op", op_name),
                    s("dir", dir),
                    u("ifindex", *ifindex),
                    s("sender_ip", sender_ip),
                    s("sender_mac", sender_mac),
                    s("target_ip", target_ip),
                    s("target_mac", target_mac),
                ];
                if event.pid != 0 {
                    args.push(u("pid", event.pid));
                    args.push(s("comm", event.comm));
                }
                view.mark = mark(Anchor::Neighbours(*netns), name, args);
            }
            EventBody::Ndisc(nd) => {
                let what = if nd.is_advertisement() {
                    "advertisement"
                } else {
                    "solicitation"
                };
                let dir = match nd.dir {
                    Direction::Rx => "rx",
                    Direction::Tx => "tx",
                };
                let name = format!("ND {what} {dir} {} → {}", nd.target, nd.dst);
                let mut args = vec![
                    s("type", what),
                    s("dir", dir),
                    u("ifindex", nd.ifindex),
                    s("target", nd.target),
                    s("src", nd.src),
                    s("dst", nd.dst),
                ];
                if nd.lla_option != 0 {
                    args.push(s("lla", nd.lla));
                }
                if nd.is_advertisement() {
                    args.push(u("na_flags", nd.na_flags));
                }
                if event.pid != 0 {
                    args.push(u("pid", event.pid));
                    args.push(s("comm", event.comm));
                }
                view.mark = mark(Anchor::Neighbours(nd.netns), name, args);
            }
            EventBody::NeighUpdate(NeighUpdate {
                netns,
                ifindex,
                ip,
                mac,
                nud_state,
            }) => {
                let args = vec![
                    s("ip", ip),
                    s("mac", mac),
                    u("ifindex", *ifindex),
                    u("nud_state", *nud_state),
                ];
                view.mark = mark(
                    Anchor::Neighbours(*netns),
                    format!("neigh {ip} is {mac}"),
                    args,
                );
            }
            EventBody::Lost(Lost { kind, count }) => {
                let args = vec![u("kind", *kind), u("count", *count)];
                view.mark = mark(Anchor::Tracer, format!("lost {count} records"), args);
            }
            EventBody::PinAdded(PinChange { netns, .. }) => view.names.push(*netns),
            EventBody::PinRemoved(PinChange { netns, .. }) => {
                view.names.push(*netns);
                view.closed_by = "pin removed";
            }
            EventBody::Interfaces(InterfacesRead { netns, .. }) => {
                view.names.push(*netns);
                view.opened_by = "interface read";
                view.closed_by = "absent from interface read";
            }
            EventBody::Snapshot(snapshot) => {
                view.names.push(snapshot.init_netns);
                view.names
                    .extend(snapshot.namespaces.iter().map(|n| n.netns));
                (view.opened_by, view.closed_by) = match snapshot.phase {
                    SnapshotPhase::Start => ("start snapshot", "absent from start snapshot"),
                    SnapshotPhase::Final => ("final snapshot", "absent from final snapshot"),
                };
            }
            // A CNI call's mark goes where the collector placed the call.
            EventBody::CniExec(exec) => {
                view.mark = mark(
                    Anchor::CniStart,
                    format!("CNI {} {}", exec.verb, event.comm),
                    vec![],
                );
            }
            EventBody::CniExit(CniExit { .. }) => {
                view.mark = mark(Anchor::CniEnd { tgid: event.tgid }, String::new(), vec![]);
            }
            // The rest carry nothing the export draws from the event itself (attribution): the
            // collector folds them into members and owners. A new kind is drawn by adding an
            // arm here; it needs none to be exported.
            _ => {}
        }
        view.names.retain(|id| !id.is_none());
        view
    }
}
