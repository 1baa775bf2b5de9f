//! Collector behaviour on hand-built event sequences.
use crate::model::{
    ArpPacket, CgroupPath, Ipv4AddrChange, Lost, MountSyscall, NdiscPacket, NetDev, NetnsCreated,
    NetnsObject, NsfsEvict, NsfsMount, PacketsLimited, PinChange, TaskNetns,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netns_trace_common::EventKind;

use super::synthetic::{self, SyntheticConfig};
use super::*;
use crate::model::{
    AddrOp, Comm, CreatedBy, DadState, Direction, Event, EventBody, Hook, Ipv6Address, Mac, Member,
    MountOp, NetDevOp, NsId, Pin, SnapNamespace, TaskOp,
};

use super::test_events::*;

fn created(ts: u64, pid: u32, tgid: u32, c: &str, id: NsId) -> Event {
    ev(
        ts,
        pid,
        tgid,
        c,
        EventBody::NetnsCreated(NetnsCreated {
            netns: id,
            parent: INIT,
            net_ptr: 0xffff_0000 + id.inum as u64,
            source: CreatedBy::Unshare,
            clone_flags: 0x4000_0000,
        }),
    )
}

fn bind_mount(ts: u64, pid: u32, c: &str, target: &str) -> Event {
    bind_mount_syscall(ts, pid, c, "/proc/self/ns/net", target)
}

/// umount2(`path`, MNT_DETACH) as the probe records it: its one path in `source`.
fn umount(ts: u64, pid: u32, c: &str, path: &str, ret: i64) -> Event {
    ev(
        ts,
        pid,
        pid,
        c,
        EventBody::MountSyscall(MountSyscall {
            op: MountOp::Umount,
            netns: INIT,
            mnt_ns: HOST_MNT,
            ret,
            flags: 2,
            from_dfd: -100,
            to_dfd: -100,
            source: path.into(),
            target: String::new(),
        }),
    )
}

fn bind_pin(path: &str) -> Pin {
    Pin::BindMount {
        path: path.into(),
        mnt_ns: HOST_MNT,
        holder_pid: 1,
        holder_comm: comm("systemd"),
    }
}

fn pin_added(ts: u64, id: NsId, path: &str) -> Event {
    Event::observed(
        ts,
        EventBody::PinAdded(PinChange {
            netns: id,
            pin: bind_pin(path),
        }),
    )
}

fn teardown(ts: u64, id: NsId) -> Event {
    Event::observed(
        ts,
        EventBody::NetnsTeardown(NetnsObject {
            netns: id,
            net_ptr: 0xffff_0000 + id.inum as u64,
            hook: Hook::Fentry,
        }),
    )
}

fn freed(ts: u64, id: NsId) -> Event {
    Event::observed(
        ts,
        EventBody::NetnsFreed(NetnsObject {
            netns: id,
            net_ptr: 0xffff_0000 + id.inum as u64,
            hook: Hook::Fentry,
        }),
    )
}

fn veth(ts: u64, id: NsId, ifindex: u32, mac: Mac, ip: Ipv4Addr) -> [Event; 2] {
    [
        ev(
            ts,
            1,
            1,
            "cni",
            EventBody::NetDev(NetDev {
                op: NetDevOp::Register,
                netns: id,
                ifindex,
                other: NsId::default(),
                mac,
                name: "eth0".into(),
            }),
        ),
        ev(
            ts + 1,
            1,
            1,
            "cni",
            EventBody::Ipv4Addr(Ipv4AddrChange {
                op: AddrOp::Add,
                netns: id,
                ifindex,
                addr: ip,
                prefix_len: 24,
                label: "eth0".into(),
            }),
        ),
    ]
}

fn arp_reply(ts: u64, id: NsId, dir: Direction, ip: Ipv4Addr, mac: Mac) -> Event {
    Event::observed(
        ts,
        EventBody::Arp(ArpPacket {
            netns: id,
            dir,
            op: 2,
            ifindex: 2,
            sender_ip: ip,
            sender_mac: mac,
            target_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: Mac::default(),
            hook: Hook::Tracepoint,
        }),
    )
}

fn feed(c: &mut Collector, evs: impl IntoIterator<Item = Event>) {
    for e in evs {
        c.handle(&e);
    }
}

fn state_of(c: &Collector, id: NsId) -> NsState {
    c.namespaces()
        .find(|n| n.ns_id() == id)
        .unwrap_or_else(|| panic!("{id} not tracked"))
        .state
}

fn kinds(c: &Collector) -> Vec<&'static str> {
    c.findings().iter().map(|f| f.kind()).collect()
}

/// CRI-O style: pinns unshares, bind-mounts, exits; pause joins later with setns.
fn crio_pod(c: &mut Collector, t: u64, id: NsId, path: &str, pause: u32) {
    feed(
        c,
        [
            created(t, 700, 700, "pinns", id),
            ev(
                t + 1,
                700,
                700,
                "pinns",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            bind_mount(t + 2, 700, "pinns", path),
            pin_added(t + 3, id, path),
            ev(t + 4, 700, 700, "pinns", task_body(TaskOp::Exit, id, id)),
        ],
    );
    assert_eq!(
        state_of(c, id),
        NsState::Persistent,
        "only the creator was inside so far"
    );
    c.handle(&ev(
        t + S,
        pause,
        pause,
        "pause",
        task_body(TaskOp::Setns, id, INIT),
    ));
}

#[test]
fn alive_while_a_member_lives() {
    let mut c = collector();
    let id = NsId::new(77, 4026532100);
    feed(
        &mut c,
        [
            created(2 * S, 100, 100, "unshare", id),
            ev(
                2 * S + 1,
                100,
                100,
                "unshare",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            ev(
                2 * S + 2,
                101,
                101,
                "unshare",
                task_body(TaskOp::Fork, id, id),
            ),
        ],
    );
    c.tick(200 * S);
    assert_eq!(state_of(&c, id), NsState::Alive);
    let ns = c.namespace("net:[4026532100]#77").unwrap();
    assert_eq!(ns.created_by.unwrap().comm.as_str(), "unshare");
    assert_eq!(ns.live_tasks, 2);
    assert!(ns.had_real_member, "the forked child is a real member");
    assert!(c.findings().is_empty());
}

#[test]
fn ip_netns_add_is_persistent_not_leaked() {
    let mut c = collector();
    let id = NsId::new(5, 4026532200);
    feed(
        &mut c,
        [
            created(2 * S, 300, 300, "ip", id),
            ev(
                2 * S + 1,
                300,
                300,
                "ip",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            bind_mount(2 * S + 2, 300, "ip", "/run/netns/foo"),
            pin_added(2 * S + 3, id, "/run/netns/foo"),
            ev(2 * S + 4, 300, 300, "ip", task_body(TaskOp::Exit, id, id)),
        ],
    );
    c.finish(1000 * S);
    assert_eq!(state_of(&c, id), NsState::Persistent);
    assert!(c.findings().is_empty(), "{:?}", c.findings());
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    assert_eq!(
        ns.pins[0].by.unwrap().comm.as_str(),
        "ip",
        "the mount syscall names who pinned it"
    );
}

#[test]
fn containerd_style_leaks_only_after_pause_dies_and_grace_passes() {
    let mut c = collector();
    let id = NsId::new(900, 4026532300);
    let path = "/var/run/netns/cni-1234";
    feed(
        &mut c,
        [
            // A locked thread (tid 501) of containerd (tgid 500) unshares, bind-mounts, switches back.
            created(2 * S, 501, 500, "containerd", id),
            ev(
                2 * S + 1,
                501,
                500,
                "containerd",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            bind_mount(2 * S + 2, 501, "containerd", path),
            // mountinfo shows the resolved path.
            pin_added(2 * S + 3, id, "/run/netns/cni-1234"),
            ev(
                2 * S + 4,
                501,
                500,
                "containerd",
                task_body(TaskOp::Setns, INIT, id),
            ),
        ],
    );
    assert_eq!(state_of(&c, id), NsState::Persistent);
    c.handle(&ev(
        3 * S,
        600,
        600,
        "pause",
        task_body(TaskOp::Setns, id, INIT),
    ));
    assert_eq!(state_of(&c, id), NsState::Alive);
    c.tick(100 * S);
    assert_eq!(state_of(&c, id), NsState::Alive);
    assert!(c.findings().is_empty());

    c.handle(&ev(
        200 * S,
        600,
        600,
        "pause",
        task_body(TaskOp::Exit, id, id),
    ));
    assert_eq!(state_of(&c, id), NsState::Draining);
    c.tick(200 * S + GRACE - 1);
    assert_eq!(state_of(&c, id), NsState::Draining);
    let notices = c.tick(200 * S + GRACE);
    assert_eq!(state_of(&c, id), NsState::Leaked);
    assert!(notices.iter().any(|n| n.kind == NoticeKind::Finding));
    assert_eq!(kinds(&c), ["leaked_netns"]);
    let f = &c.findings()[0];
    assert!(!f.uncertain, "{:?}", f.uncertain_reason);
    let FindingDetail::LeakedNetns {
        pins, last_member, ..
    } = &f.detail
    else {
        panic!()
    };
    assert_eq!(pins[0].path.as_deref(), Some("/run/netns/cni-1234"));
    assert_eq!(pins[0].by.as_ref().map(|b| b.pid), Some(501));
    let lm = last_member.unwrap();
    assert_eq!(
        (lm.pid, lm.comm.as_str().as_ref(), lm.exited_at_ns),
        (600, "pause", 200 * S)
    );
    assert!(f.summary.contains("/run/netns/cni-1234"), "{}", f.summary);
}

/// Seen in a 6.1 guest: the testbed's setns thread had returned to its caller, but its kernel
/// exit came 3 ms after the pause process died. The pause is still the last member.
#[test]
fn a_visitor_still_inside_when_the_last_member_dies_does_not_replace_it() {
    let mut c = collector();
    let id = NsId::new(0, 4026532500);
    feed(
        &mut c,
        [
            created(10 * S, 600, 600, "pause", id),
            ev(
                10 * S + 1,
                600,
                600,
                "pause",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            bind_mount(10 * S + 2, 600, "pause", "/run/netns/cni-9"),
            pin_added(10 * S + 3, id, "/run/netns/cni-9"),
            ev(11 * S, 70, 70, "ip", task_body(TaskOp::Setns, id, INIT)),
            ev(
                11 * S + 5_000_000,
                70,
                70,
                "ip",
                task_body(TaskOp::Exit, id, id),
            ),
            ev(
                12 * S,
                253,
                239,
                "testbed",
                task_body(TaskOp::Setns, id, INIT),
            ),
            ev(
                12 * S + 2_000_000,
                600,
                600,
                "pause",
                task_body(TaskOp::Exit, id, id),
            ),
            ev(
                12 * S + 5_000_000,
                253,
                239,
                "testbed",
                task_body(TaskOp::Exit, id, id),
            ),
        ],
    );
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    let lm = ns.last_member.unwrap();
    assert_eq!((lm.tgid, lm.exited_at_ns), (600, 12 * S + 2_000_000));
    // A later short visit leaves it alone too.
    feed(
        &mut c,
        [
            ev(
                13 * S,
                254,
                239,
                "testbed",
                task_body(TaskOp::Setns, id, INIT),
            ),
            ev(
                13 * S + 1_000,
                254,
                239,
                "testbed",
                task_body(TaskOp::Exit, id, id),
            ),
        ],
    );
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    assert_eq!(ns.last_member.unwrap().tgid, 600);
}

/// Seen on the host under load: other processes' interface reads (each a short setns visit)
/// filled the member history and pushed the pause, the one real member, out of it.
#[test]
fn visits_cannot_push_the_real_members_out_of_the_history() {
    let mut c = collector();
    let id = NsId::new(0, 4026532501);
    crio_pod(&mut c, 10 * S, id, "/run/netns/cni-7", 600);
    c.handle(&ev(
        20 * S,
        600,
        600,
        "pause",
        task_body(TaskOp::Exit, id, id),
    ));
    for i in 0..3 * MAX_MEMBER_SPANS as u64 {
        let (t, tid) = (21 * S + i * S / 10, 5000 + i as u32);
        c.handle(&ev(
            t,
            tid,
            4000,
            "netns-read",
            task_body(TaskOp::Setns, id, INIT),
        ));
        c.handle(&ev(
            t + 200_000,
            tid,
            4000,
            "netns-read",
            task_body(TaskOp::Exit, id, id),
        ));
    }
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    assert_eq!(ns.members.len(), MAX_MEMBER_SPANS);
    let tgids: Vec<u32> = ns.members.iter().map(|m| m.tgid).collect();
    assert!(
        tgids.contains(&600) && tgids.contains(&700),
        "creator and pause kept: {tgids:?}"
    );
    assert_eq!(
        ns.members_dropped as usize,
        3 * MAX_MEMBER_SPANS + 2 - MAX_MEMBER_SPANS
    );
    assert_eq!(ns.last_member.unwrap().tgid, 600);
}

#[test]
fn crio_style_pod_leaks_after_pause_dies() {
    let mut c = collector();
    let id = NsId::new(901, 4026532301);
    crio_pod(&mut c, 2 * S, id, "/var/run/netns/abc", 610);
    assert_eq!(state_of(&c, id), NsState::Alive);
    c.handle(&ev(
        50 * S,
        610,
        610,
        "pause",
        task_body(TaskOp::Exit, id, id),
    ));
    c.finish(50 * S + GRACE + 1);
    assert_eq!(state_of(&c, id), NsState::Leaked);
    assert_eq!(kinds(&c), ["leaked_netns"]);
}

#[test]
fn normal_teardown_is_destroyed_without_findings() {
    let mut c = collector();
    let id = NsId::new(902, 4026532302);
    crio_pod(&mut c, 2 * S, id, "/var/run/netns/ok", 620);
    feed(
        &mut c,
        [
            ev(10 * S, 620, 620, "pause", task_body(TaskOp::Exit, id, id)),
            umount(11 * S, 900, "crio", "/var/run/netns/ok", 0),
            teardown(11 * S + 10, id),
            freed(11 * S + 20, id),
        ],
    );
    c.finish(500 * S);
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    assert_eq!(ns.state, NsState::Destroyed);
    assert!(ns.pins.is_empty(), "the successful umount removed the pin");
    assert_eq!(
        (ns.teardown_at_ns, ns.freed_at_ns),
        (Some(11 * S + 10), Some(11 * S + 20))
    );
    assert_eq!(ns.state_before_destroy, Some(NsState::Draining));
    assert!(c.findings().is_empty());
}

#[test]
fn leak_suspect_from_the_start_snapshot() {
    let id = NsId::new(0, 4026532400);
    let mut c = Collector::new(CollectorConfig {
        grace_ns: GRACE,
        ..Default::default()
    });
    c.handle(&start_snapshot(vec![
        SnapNamespace {
            netns: id,
            members: vec![],
            pins: vec![bind_pin("/run/netns/old")],
            interfaces: vec![],
            interfaces_error: None,
        },
        SnapNamespace {
            netns: NsId::new(0, 4026532401),
            members: vec![Member {
                pid: 42,
                tgid: 42,
                comm: comm("nginx"),
                cgroup: "/kubepods/x".into(),
            }],
            pins: vec![],
            interfaces: vec![],
            interfaces_error: None,
        },
    ]));
    assert_eq!(state_of(&c, id), NsState::LeakSuspect);
    assert_eq!(state_of(&c, NsId::new(0, 4026532401)), NsState::Alive);
    assert_eq!(state_of(&c, INIT), NsState::Alive);
    c.finish(S + GRACE);
    assert_eq!(kinds(&c), ["leaked_netns"]);
    let f = &c.findings()[0];
    assert!(
        f.uncertain
            && f.uncertain_reason
                .as_deref()
                .unwrap()
                .contains("history unknown")
    );
    let FindingDetail::LeakedNetns {
        history_unknown,
        pins,
        ..
    } = &f.detail
    else {
        panic!()
    };
    assert!(*history_unknown);
    assert_eq!(pins.len(), 1);
    // The member seen in the snapshot is a real member: when it exits the namespace drains.
    c.handle(&ev(
        S + GRACE + 5,
        42,
        42,
        "nginx",
        task_body(
            TaskOp::Exit,
            NsId::new(0, 4026532401),
            NsId::new(0, 4026532401),
        ),
    ));
    assert_eq!(state_of(&c, NsId::new(0, 4026532401)), NsState::Draining);
}

#[test]
fn init_namespace_is_never_leaked() {
    let mut c = collector();
    // Containerd's thread going back to the host namespace must not count as init membership.
    c.handle(&ev(
        2 * S,
        501,
        500,
        "containerd",
        task_body(TaskOp::Setns, INIT, NsId::new(3, 99)),
    ));
    c.finish(10_000 * S);
    assert_eq!(state_of(&c, INIT), NsState::Alive);
    assert!(c.findings().is_empty());
}

#[test]
fn reused_inum_makes_two_namespaces() {
    let mut c = collector();
    let a = NsId::new(0, 4026532500);
    feed(
        &mut c,
        [
            created(2 * S, 100, 100, "unshare", a),
            ev(
                2 * S + 1,
                100,
                100,
                "unshare",
                task_body(TaskOp::Unshare, a, INIT),
            ),
            ev(3 * S, 100, 100, "unshare", task_body(TaskOp::Exit, a, a)),
            teardown(3 * S + 5, a),
            created(4 * S, 200, 200, "unshare", a),
            ev(
                4 * S + 1,
                200,
                200,
                "unshare",
                task_body(TaskOp::Unshare, a, INIT),
            ),
        ],
    );
    let mut lives: Vec<&Namespace> = c.namespaces().filter(|n| n.inum == a.inum).collect();
    lives.sort_by_key(|n| n.born_at_ns());
    assert_eq!(lives.len(), 2);
    assert_eq!(lives[0].state, NsState::Destroyed);
    assert_eq!(lives[1].state, NsState::Alive);
    assert_eq!(
        (lives[0].id(), lives[1].id()),
        (
            "net:[4026532500]".to_string(),
            "net:[4026532500]~2".to_string()
        )
    );
    assert_eq!(lives[1].created_by.unwrap().pid, 200);
    // The late free of the first life attaches to... the latest holder of the inum is alive,
    // so a free identified only by inum and pointer goes by pointer first.
}

/// Seen in a 6.12 guest: pod A dies, its inode number goes to pod B at once, and a /proc scan
/// finds the testbed's fd on pod B before pod B's creation event is processed. The enricher
/// can only name it by what it knew of that inum: pod A.
#[test]
fn a_pin_observed_on_a_destroyed_namespace_goes_to_the_next_life_of_its_inum() {
    let mut c = collector();
    let a = NsId::new(18, 4026532166);
    let b = NsId::new(4118, 4026532166);
    feed(
        &mut c,
        [
            created(2 * S, 100, 100, "pause", a),
            ev(
                2 * S + 1,
                100,
                100,
                "pause",
                task_body(TaskOp::Unshare, a, INIT),
            ),
            ev(3 * S, 100, 100, "pause", task_body(TaskOp::Exit, a, a)),
            teardown(3 * S + 5, a),
            Event::observed(
                3 * S + 10,
                EventBody::PinAdded(PinChange {
                    netns: a,
                    pin: Pin::Fd {
                        pid: 879,
                        fd: 3,
                        comm: Comm::from_str_lossy("testbed"),
                    },
                }),
            ),
            created(3 * S + 7, 300, 300, "pause", b),
        ],
    );
    let a_ns = c.namespace("net:[4026532166]#18").expect("pod A");
    assert_eq!(a_ns.state, NsState::Destroyed);
    assert!(
        a_ns.pins.is_empty(),
        "a destroyed namespace gains no pin: {:?}",
        a_ns.pins
    );
    let b_ns = c
        .namespace("net:[4026532166]#4118")
        .expect("pod B, merged with the placeholder");
    assert_eq!(b_ns.pins.len(), 1, "{:?}", b_ns.pins);
    assert_eq!(b_ns.pins[0].pid, Some(879));
    assert_eq!(c.namespaces().filter(|n| n.inum == a.inum).count(), 2);
}

#[test]
fn cookie_revealed_later_upgrades_the_key() {
    let mut c = collector();
    let lazy = NsId::new(0, 4026532600);
    feed(
        &mut c,
        [
            created(2 * S, 100, 100, "unshare", lazy),
            ev(
                2 * S + 1,
                100,
                100,
                "unshare",
                task_body(TaskOp::Unshare, NsId::new(4242, 4026532600), INIT),
            ),
        ],
    );
    assert_eq!(c.namespaces().filter(|n| n.inum == lazy.inum).count(), 1);
    let ns = c.namespace("net:[4026532600]#4242").expect("upgraded");
    assert_eq!(ns.live_tasks, 1);
    // Later cookie-less events still attach to it.
    c.handle(&ev(
        3 * S,
        101,
        101,
        "x",
        task_body(TaskOp::Fork, lazy, lazy),
    ));
    assert_eq!(c.namespace("net:[4026532600]#4242").unwrap().live_tasks, 2);
}

#[test]
fn lost_events_make_findings_uncertain() {
    let mut c = collector();
    let id = NsId::new(903, 4026532700);
    crio_pod(&mut c, 2 * S, id, "/run/netns/lossy", 630);
    c.handle(&Event::observed(
        5 * S,
        EventBody::Lost(Lost {
            kind: EventKind::Arp as u16,
            count: 3,
        }),
    ));
    c.handle(&ev(
        10 * S,
        630,
        630,
        "pause",
        task_body(TaskOp::Exit, id, id),
    ));
    c.handle(&Event::observed(
        12 * S,
        EventBody::Lost(Lost {
            kind: EventKind::Task as u16,
            count: 7,
        }),
    ));
    c.finish(10 * S + GRACE);
    assert_eq!(c.lost_events().get(&(EventKind::Task as u16)), Some(&7));
    let f = &c.findings()[0];
    assert!(f.uncertain);
    let reason = f.uncertain_reason.as_deref().unwrap();
    assert!(reason.contains("7 task"), "{reason}");
    assert!(
        !reason.contains("arp"),
        "ARP losses do not bear on a leak: {reason}"
    );

    // A loss reported after the verdict but covering its window also counts.
    let mut c = collector();
    crio_pod(&mut c, 2 * S, id, "/run/netns/lossy", 630);
    c.handle(&ev(
        10 * S,
        630,
        630,
        "pause",
        task_body(TaskOp::Exit, id, id),
    ));
    c.tick(10 * S + GRACE);
    assert!(!c.findings()[0].uncertain);
    c.handle(&Event::observed(
        10 * S + GRACE + 1,
        EventBody::Lost(Lost {
            kind: EventKind::NetnsTeardown as u16,
            count: 1,
        }),
    ));
    assert!(
        c.findings()[0]
            .uncertain_reason
            .as_deref()
            .unwrap()
            .contains("netns_teardown")
    );
}

#[test]
fn failed_umount_is_reported_as_a_failed_cleanup() {
    let mut c = collector();
    let id = NsId::new(904, 4026532800);
    crio_pod(&mut c, 2 * S, id, "/run/netns/busy", 640);
    feed(
        &mut c,
        [
            ev(10 * S, 640, 640, "pause", task_body(TaskOp::Exit, id, id)),
            umount(11 * S, 900, "crio", "/var/run/netns/busy", -16),
        ],
    );
    c.finish(10 * S + GRACE);
    let FindingDetail::LeakedNetns {
        failed_cleanups,
        pins,
        ..
    } = &c.findings()[0].detail
    else {
        panic!()
    };
    assert_eq!(failed_cleanups.len(), 1);
    assert_eq!(
        (
            failed_cleanups[0].errno,
            failed_cleanups[0].by.comm.as_str().as_ref()
        ),
        (16, "crio")
    );
    assert_eq!(pins.len(), 1, "a failed umount leaves the pin");
}

/// Issue 14 item 4: any process may call umount on a pin path and fail with EPERM; those
/// calls are no cleanup, and enough of them used to push the runtime's EBUSY out.
#[test]
fn refused_umounts_by_anyone_do_not_crowd_out_the_runtimes_failed_cleanup() {
    let id = NsId::new(906, 4026532810);
    let mut c = crio_pod_left_busy_then_refused(id, 641, 100);
    c.finish(10 * S + GRACE);
    assert_eq!(failed_cleanups_of_leak(&c), [(16, "crio".to_string())]);
}

/// Issue 14 item 4: refused umounts (EPERM/EACCES) by processes that neither created the
/// namespace nor made its mount are counted on the namespace, never kept as failed cleanups;
/// the same refusal to the mount's maker is one. A flood of the former leaves the runtime's
/// EBUSY in place.
#[test]
fn refused_umounts_are_cleanups_only_from_the_maker_and_the_rest_are_counted() {
    let id = NsId::new(907, 4026532811);
    let mut c = crio_pod_left_busy_then_refused(id, 642, 1000);
    // pinns (700) made the mount: its refused umount is a cleanup that failed.
    c.handle(&umount(13 * S, 700, "pinns", "/run/netns/busy", -1));
    c.finish(10 * S + GRACE);
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    assert_eq!(ns.refused_umounts_ignored, 1000);
    assert_eq!(
        failed_cleanups_of_leak(&c),
        [(16, "crio".to_string()), (1, "pinns".to_string())]
    );
}

/// A CRI-O pod (pinned at /run/netns/busy by pinns, pid 700) whose pause `pause_pid` exited,
/// whose runtime's umount failed EBUSY, and then `refused` umounts by an unrelated process
/// refused EPERM and EACCES in turn.
fn crio_pod_left_busy_then_refused(id: NsId, pause_pid: u32, refused: u64) -> Collector {
    let mut c = collector();
    crio_pod(&mut c, 2 * S, id, "/run/netns/busy", pause_pid);
    c.handle(&ev(
        10 * S,
        pause_pid,
        pause_pid,
        "pause",
        task_body(TaskOp::Exit, id, id),
    ));
    c.handle(&umount(11 * S, 900, "crio", "/var/run/netns/busy", -16));
    for i in 0..refused {
        let errno = if i % 2 == 0 { -1 } else { -13 };
        c.handle(&umount(
            12 * S + i,
            6666,
            "mallory",
            "/run/netns/busy",
            errno,
        ));
    }
    c
}

/// (errno, comm) of each failed cleanup named by the first finding, a leak.
fn failed_cleanups_of_leak(c: &Collector) -> Vec<(i64, String)> {
    let FindingDetail::LeakedNetns {
        failed_cleanups, ..
    } = &c.findings()[0].detail
    else {
        panic!("{:#?}", c.findings())
    };
    failed_cleanups
        .iter()
        .map(|f| (f.errno, f.by.comm.as_str().to_string()))
        .collect()
}

#[test]
fn full_mode_nsfs_graft_is_named_by_the_following_syscall() {
    let mut c = collector();
    let id = NsId::new(905, 4026532900);
    feed(
        &mut c,
        [
            created(2 * S, 300, 300, "ip", id),
            ev(
                2 * S + 1,
                300,
                300,
                "ip",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            ev(
                2 * S + 2,
                300,
                300,
                "ip",
                EventBody::NsfsMount(NsfsMount {
                    netns: id,
                    mnt_ns: HOST_MNT,
                    net_ptr: 0,
                    hook: Hook::Fentry,
                }),
            ),
            bind_mount(2 * S + 3, 300, "ip", "/run/netns/full"),
            // The enricher's observation of the same mount merges into it.
            pin_added(2 * S + 4, id, "/run/netns/full"),
        ],
    );
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    assert_eq!(ns.pins.len(), 1, "{:?}", ns.pins);
    assert_eq!(ns.pins[0].path.as_deref(), Some("/run/netns/full"));
    assert_eq!(ns.pins[0].by.unwrap().pid, 300);
    c.handle(&Event::observed(
        3 * S,
        EventBody::NsfsEvict(NsfsEvict {
            netns: id,
            net_ptr: 0,
        }),
    ));
    assert!(
        c.namespaces()
            .find(|n| n.ns_id() == id)
            .unwrap()
            .pins
            .is_empty()
    );
}

/// Seen live on the 6.18 host (tracepoint mode): pod A is unmounted and its pause killed; its
/// free, the only sign of its end there, waits for the next cleanup_net run. Pod B gets the
/// same IP meanwhile. A memberless namespace that nothing is known to hold is on its way out,
/// not a second owner of the IP, until a pin shows up.
#[test]
fn a_draining_namespace_without_pins_does_not_claim_its_ip() {
    let mut c = collector();
    let ip = Ipv4Addr::new(10, 244, 1, 8);
    let (mac_a, mac_b) = (Mac([2, 0, 0, 0, 0, 0xa]), Mac([2, 0, 0, 0, 0, 0xb]));
    let a = NsId::new(1101, 4026533101);
    let b = NsId::new(1102, 4026533102);
    crio_pod(&mut c, 2 * S, a, "/var/run/netns/pod-a", 7101);
    feed(&mut c, veth(3 * S, a, 2, mac_a, ip));
    c.handle(&Event::observed(
        59 * S,
        EventBody::PinRemoved(PinChange {
            netns: a,
            pin: Pin::BindMount {
                path: "/var/run/netns/pod-a".into(),
                mnt_ns: HOST_MNT,
                holder_pid: 1,
                holder_comm: comm("init"),
            },
        }),
    ));
    c.handle(&ev(
        60 * S,
        7101,
        7101,
        "pause",
        task_body(TaskOp::Exit, a, a),
    ));
    assert_eq!(state_of(&c, a), NsState::Draining);
    crio_pod(&mut c, 61 * S, b, "/var/run/netns/pod-b", 7102);
    feed(&mut c, veth(62 * S, b, 2, mac_b, ip));
    assert!(kinds(&c).is_empty(), "{:#?}", c.findings());
    // An fd holder turns up after all: pod A does hold the IP.
    c.handle(&Event::observed(
        63 * S,
        EventBody::PinAdded(PinChange {
            netns: a,
            pin: Pin::Fd {
                pid: 4242,
                fd: 7,
                comm: comm("debugger"),
            },
        }),
    ));
    assert_eq!(kinds(&c), ["duplicate_ip"], "{:#?}", c.findings());
}

/// An interface read (what the snapshot and the live enricher report) of eth0 with `v6`.
fn eth0_read(ts: u64, id: NsId, mac: Mac, v6: &[Ipv6Address]) -> Event {
    Event::observed(
        ts,
        EventBody::Interfaces(crate::model::InterfacesRead {
            netns: id,
            interfaces: vec![crate::model::Interface {
                name: "eth0".into(),
                ifindex: 2,
                mac,
                ipv4: vec![],
                ipv6: v6.to_vec(),
            }],
        }),
    )
}

fn v6(a: &str, dad: Option<DadState>) -> Ipv6Address {
    Ipv6Address::new(a.parse().unwrap(), 64, dad, true)
}

/// Two live pods: `a_addrs` in pod A, `b_addrs` in pod B; the findings.
fn two_pods_with_ipv6(a_addrs: &[Ipv6Address], b_addrs: &[Ipv6Address]) -> Collector {
    let mut c = collector();
    let (a, b) = (NsId::new(1001, 4026533001), NsId::new(1002, 4026533002));
    crio_pod(&mut c, 2 * S, a, "/var/run/netns/pod-a", 7001);
    c.handle(&eth0_read(3 * S, a, Mac([2, 0, 0, 0, 0, 0xa]), a_addrs));
    crio_pod(&mut c, 4 * S, b, "/var/run/netns/pod-b", 7002);
    c.handle(&eth0_read(5 * S, b, Mac([2, 0, 0, 0, 0, 0xb]), b_addrs));
    c
}

#[test]
fn the_same_unique_local_or_global_ipv6_address_in_two_namespaces_is_a_duplicate() {
    for addr in ["fd00:244::7", "2001:db8::7"] {
        let c = two_pods_with_ipv6(&[v6(addr, None)], &[v6(addr, None)]);
        assert_eq!(kinds(&c), ["duplicate_ip"], "{addr}: {:#?}", c.findings());
        let f = &c.findings()[0];
        let FindingDetail::DuplicateIp { ip, holders, .. } = &f.detail else {
            unreachable!()
        };
        assert_eq!(ip.to_string(), addr);
        assert_eq!(holders.len(), 2);
        assert!(holders.iter().all(|h| h.dad.is_none()), "{holders:?}");
        assert!(
            f.summary
                .starts_with(&format!("{addr} is assigned in 2 live namespaces: "))
        );
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["ip"], addr);
        assert!(json["holders"][0].get("dad").is_none(), "{json}");
    }
}

#[test]
fn link_local_loopback_and_multicast_ipv6_addresses_are_never_duplicates() {
    let shared = [
        v6("fe80::1", None),
        v6("fe80::200:ff:fe00:a", None),
        v6("::1", None),
        v6("ff02::1", None),
    ];
    let c = two_pods_with_ipv6(&shared, &shared);
    assert!(kinds(&c).is_empty(), "{:#?}", c.findings());
    // Different addresses are no duplicate either.
    let c = two_pods_with_ipv6(&[v6("fd00::7", None)], &[v6("fd00::8", None)]);
    assert!(kinds(&c).is_empty(), "{:#?}", c.findings());
}

#[test]
fn a_tentative_or_dad_failed_copy_is_reported_as_such() {
    for dad in [DadState::Tentative, DadState::Failed] {
        let c = two_pods_with_ipv6(&[v6("fd00::7", None)], &[v6("fd00::7", Some(dad))]);
        assert_eq!(kinds(&c), ["duplicate_ip"], "{:#?}", c.findings());
        let f = &c.findings()[0];
        let FindingDetail::DuplicateIp { holders, .. } = &f.detail else {
            unreachable!()
        };
        let states: Vec<Option<DadState>> = holders.iter().map(|h| h.dad).collect();
        assert_eq!(states, [None, Some(dad)], "{holders:?}");
        assert!(
            f.summary.contains("1 of them not in use") && f.summary.contains(&format!(", {dad})")),
            "{}",
            f.summary
        );
        let json = serde_json::to_value(f).unwrap();
        let expected = match dad {
            DadState::Tentative => "tentative",
            DadState::Failed => "failed",
        };
        assert_eq!(json["holders"][1]["dad"], expected, "{json}");
    }
}

#[test]
fn an_ipv6_address_read_again_without_it_leaves_the_index() {
    let mut c = two_pods_with_ipv6(&[v6("fd00::7", None)], &[]);
    let b = NsId::new(1002, 4026533002);
    // Pod A's address is gone (a re-read without it); B then gets it: no duplicate.
    c.handle(&eth0_read(
        6 * S,
        NsId::new(1001, 4026533001),
        Mac([2, 0, 0, 0, 0, 0xa]),
        &[],
    ));
    c.handle(&eth0_read(
        7 * S,
        b,
        Mac([2, 0, 0, 0, 0, 0xb]),
        &[v6("fd00::7", None)],
    ));
    assert!(kinds(&c).is_empty(), "{:#?}", c.findings());
}

#[test]
fn incident_leak_duplicate_ip_and_stale_arp() {
    let mut c = collector();
    let ip = Ipv4Addr::new(10, 244, 1, 7);
    let (mac_a, mac_b) = (Mac([2, 0, 0, 0, 0, 0xa]), Mac([2, 0, 0, 0, 0, 0xb]));
    let a = NsId::new(1001, 4026533001);
    let b = NsId::new(1002, 4026533002);
    // Pod A: pause in a new namespace, bind-mount pin, veth with IP X and MAC A.
    crio_pod(&mut c, 2 * S, a, "/var/run/netns/pod-a", 7001);
    feed(&mut c, veth(3 * S, a, 2, mac_a, ip));
    // Pause is killed; nobody unmounts.
    c.handle(&ev(
        60 * S,
        7001,
        7001,
        "pause",
        task_body(TaskOp::Exit, a, a),
    ));
    c.tick(60 * S + GRACE);
    assert_eq!(state_of(&c, a), NsState::Leaked);
    // Pod B gets the same IP with MAC B.
    crio_pod(&mut c, 100 * S, b, "/var/run/netns/pod-b", 7002);
    feed(&mut c, veth(101 * S, b, 2, mac_b, ip));
    // The leaked namespace still answers ARP for X with MAC A.
    c.handle(&arp_reply(102 * S, a, Direction::Tx, ip, mac_a));
    // Seen from the wire side too: deduplicated into the same finding.
    c.handle(&arp_reply(102 * S + 5, b, Direction::Rx, ip, mac_a));
    c.finish(103 * S);

    let mut k = kinds(&c);
    k.sort();
    assert_eq!(
        k,
        ["duplicate_ip", "leaked_netns", "stale_arp_reply"],
        "{:#?}",
        c.findings()
    );
    for f in c.findings() {
        match &f.detail {
            FindingDetail::LeakedNetns {
                pins, interfaces, ..
            } => {
                assert_eq!(f.netns, "net:[4026533001]#1001");
                assert_eq!(pins[0].path.as_deref(), Some("/var/run/netns/pod-a"));
                assert_eq!(pins[0].by.as_ref().unwrap().comm.as_str(), "pinns");
                assert_eq!(interfaces[0].ipv4, ["10.244.1.7/24"]);
            }
            FindingDetail::DuplicateIp {
                ip: dip,
                holders,
                involves_leaked,
            } => {
                assert_eq!(*dip, ip);
                assert_eq!(holders.len(), 2);
                assert!(*involves_leaked);
                assert!(
                    holders
                        .iter()
                        .any(|h| h.mac == mac_a && h.state == NsState::Leaked)
                );
                assert!(holders.iter().any(|h| h.mac == mac_b));
            }
            FindingDetail::StaleArpReply {
                sender_mac,
                expected_mac,
                reason,
                owner_netns,
                ..
            } => {
                assert_eq!(*sender_mac, mac_a);
                assert_eq!(*expected_mac, Some(mac_b));
                assert_eq!(*reason, StaleReason::SentFromLeakedNetns);
                assert_eq!(owner_netns.as_deref(), Some("net:[4026533002]#1002"));
            }
            other => panic!("no CNI call was traced: {other:?}"),
        }
        assert!(!f.uncertain, "{f:?}");
    }
}

/// A Neighbour Discovery record as the packet tracepoints make it (fields as the host's
/// 6.18 recorded them for a kernel's own resolution over a veth: a solicitation to the
/// target's solicited-node group with the sender's MAC in option 1, the advertisement back to
/// the solicitor with the target's MAC in option 2 and flags solicited|override).
#[allow(clippy::too_many_arguments)]
fn ndisc(
    ts: u64,
    id: NsId,
    dir: Direction,
    icmp_type: u8,
    target: Ipv6Addr,
    (src, dst): (Ipv6Addr, Ipv6Addr),
    lla: Option<Mac>,
    na_flags: u8,
) -> Event {
    let lla_option = match (lla, icmp_type) {
        (None, _) => 0,
        (Some(_), 135) => 1,
        (Some(_), _) => 2,
    };
    Event::observed(
        ts,
        EventBody::Ndisc(NdiscPacket {
            netns: id,
            dir,
            hook: Hook::Tracepoint,
            icmp_type,
            ifindex: 2,
            target,
            src,
            dst,
            lla: lla.unwrap_or_default(),
            lla_option,
            na_flags,
        }),
    )
}

/// The dual-stack incident's IPv6 half: pod A is leaked with fd00:231:62::b, pod B has it
/// now; the client solicits it and both advertise. Pod A's advertisement is a stale reply
/// (one finding, though seen sent in A and received by the client); pod B's is not.
#[test]
fn a_neighbour_advertisement_from_a_leaked_namespace_is_a_stale_reply() {
    let mut c = collector();
    let ip: Ipv6Addr = "fd00:231:62::b".parse().unwrap();
    let client_ip: Ipv6Addr = "fd00:231:62::a".parse().unwrap();
    let group: Ipv6Addr = "ff02::1:ff00:b".parse().unwrap();
    let (mac_a, mac_b, mac_c) = (
        Mac([2, 0, 0, 0, 0, 0xa]),
        Mac([2, 0, 0, 0, 0, 0xb]),
        Mac([2, 0, 0, 0, 0, 0xc]),
    );
    let (a, b, client) = (
        NsId::new(1001, 4026533001),
        NsId::new(1002, 4026533002),
        NsId::new(1003, 4026533003),
    );
    crio_pod(&mut c, 2 * S, client, "/var/run/netns/client", 7003);
    c.handle(&eth0_read(
        2 * S + 10,
        client,
        mac_c,
        &[v6("fd00:231:62::a", None)],
    ));
    crio_pod(&mut c, 3 * S, a, "/var/run/netns/pod-a", 7001);
    c.handle(&eth0_read(
        3 * S + 10,
        a,
        mac_a,
        &[v6("fd00:231:62::b", None)],
    ));
    c.handle(&ev(
        60 * S,
        7001,
        7001,
        "pause",
        task_body(TaskOp::Exit, a, a),
    ));
    c.tick(60 * S + GRACE);
    assert_eq!(state_of(&c, a), NsState::Leaked);
    crio_pod(&mut c, 100 * S, b, "/var/run/netns/pod-b", 7002);
    c.handle(&eth0_read(101 * S, b, mac_b, &[v6("fd00:231:62::b", None)]));
    let before = c.findings().len();

    let t = 102 * S;
    let solicit = (client_ip, group);
    let answer = (ip, client_ip);
    feed(
        &mut c,
        [
            ndisc(t, client, Direction::Tx, 135, ip, solicit, Some(mac_c), 0),
            ndisc(t + 1, a, Direction::Rx, 135, ip, solicit, Some(mac_c), 0),
            ndisc(t + 2, b, Direction::Rx, 135, ip, solicit, Some(mac_c), 0),
            ndisc(t + 3, a, Direction::Tx, 136, ip, answer, Some(mac_a), 0x60),
            ndisc(t + 4, b, Direction::Tx, 136, ip, answer, Some(mac_b), 0x60),
            ndisc(
                t + 5,
                client,
                Direction::Rx,
                136,
                ip,
                answer,
                Some(mac_a),
                0x60,
            ),
            ndisc(
                t + 6,
                client,
                Direction::Rx,
                136,
                ip,
                answer,
                Some(mac_b),
                0x60,
            ),
            // Pod A answering a unicast solicitation later: no option, so no claim to judge.
            ndisc(t + 7, a, Direction::Tx, 136, ip, answer, None, 0x40),
        ],
    );
    let new: Vec<&Finding> = c.findings()[before..].iter().collect();
    assert_eq!(new.len(), 1, "{new:#?}");
    let f = new[0];
    assert_eq!(f.kind(), "stale_arp_reply");
    assert_eq!(f.netns, "net:[4026533001]#1001");
    assert!(
        f.summary.contains("sent a neighbour advertisement claiming fd00:231:62::b is at 02:00:00:00:00:0a from a leaked namespace")
            && f.summary.contains("belongs to net:[4026533002]#1002 at 02:00:00:00:00:0b"),
        "{}",
        f.summary
    );
    let FindingDetail::StaleArpReply {
        dir,
        sender_ip,
        sender_mac,
        target_ip,
        expected_mac,
        reason,
        ..
    } = &f.detail
    else {
        unreachable!()
    };
    assert_eq!(*dir, Direction::Tx);
    assert_eq!(*sender_ip, IpAddr::V6(ip));
    assert_eq!(*sender_mac, mac_a);
    assert_eq!(*target_ip, IpAddr::V6(client_ip));
    assert_eq!(*expected_mac, Some(mac_b));
    assert_eq!(*reason, StaleReason::SentFromLeakedNetns);
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["sender_ip"], "fd00:231:62::b", "{json}");
    assert_eq!(json["target_ip"], "fd00:231:62::a", "{json}");

    let counters = |id: NsId| c.namespaces().find(|n| n.ns_id() == id).unwrap().arp;
    let (ca, cc) = (counters(a), counters(client));
    assert_eq!(
        (ca.solicitations_rx, ca.advertisements_tx, ca.requests_rx),
        (1, 2, 0)
    );
    assert_eq!((cc.solicitations_tx, cc.advertisements_rx), (1, 2));
}

#[test]
fn a_neighbour_advertisement_for_a_live_namespaces_own_address_is_no_finding() {
    let mut c = collector();
    let ip: Ipv6Addr = "fd00:231:62::b".parse().unwrap();
    let mac_b = Mac([2, 0, 0, 0, 0, 0xb]);
    let b = NsId::new(1002, 4026533002);
    crio_pod(&mut c, 2 * S, b, "/var/run/netns/pod-b", 7002);
    c.handle(&eth0_read(3 * S, b, mac_b, &[v6("fd00:231:62::b", None)]));
    let answer = (ip, "fd00:231:62::a".parse().unwrap());
    c.handle(&ndisc(
        4 * S,
        b,
        Direction::Tx,
        136,
        ip,
        answer,
        Some(mac_b),
        0x60,
    ));
    assert!(c.findings().is_empty(), "{:#?}", c.findings());
    // Another MAC claiming it, received in B: a mismatch against the live owner.
    let other = Mac([2, 0, 0, 0, 0, 0xd]);
    c.handle(&ndisc(
        5 * S,
        b,
        Direction::Rx,
        136,
        ip,
        answer,
        Some(other),
        0x20,
    ));
    assert_eq!(kinds(&c), ["stale_arp_reply"]);
    let FindingDetail::StaleArpReply { reason, .. } = &c.findings()[0].detail else {
        unreachable!()
    };
    assert_eq!(*reason, StaleReason::MacMismatch);
    assert!(
        c.findings()[0]
            .summary
            .contains("received a neighbour advertisement")
    );
}

#[test]
fn stale_reply_before_the_verdict_is_found_when_the_leak_is() {
    let mut c = collector();
    let ip = Ipv4Addr::new(10, 244, 1, 8);
    let a = NsId::new(1101, 4026533101);
    crio_pod(&mut c, 2 * S, a, "/run/netns/pod-a", 7101);
    feed(&mut c, veth(3 * S, a, 2, Mac([2, 0, 0, 0, 1, 0xa]), ip));
    c.handle(&ev(
        60 * S,
        7101,
        7101,
        "pause",
        task_body(TaskOp::Exit, a, a),
    ));
    // While draining, the reply matches the namespace's own interface: nothing yet.
    c.handle(&arp_reply(
        61 * S,
        a,
        Direction::Tx,
        ip,
        Mac([2, 0, 0, 0, 1, 0xa]),
    ));
    assert!(c.findings().is_empty());
    c.finish(60 * S + GRACE);
    let mut k = kinds(&c);
    k.sort();
    assert_eq!(k, ["leaked_netns", "stale_arp_reply"]);
}

#[test]
fn mac_mismatch_against_the_live_owner() {
    let mut c = collector();
    let ip = Ipv4Addr::new(10, 244, 2, 9);
    let b = NsId::new(1201, 4026533201);
    crio_pod(&mut c, 2 * S, b, "/run/netns/pod-b", 7201);
    feed(&mut c, veth(3 * S, b, 2, Mac([2, 0, 0, 0, 2, 0xb]), ip));
    c.handle(&arp_reply(
        4 * S,
        b,
        Direction::Rx,
        ip,
        Mac([2, 0, 0, 0, 2, 0xc]),
    ));
    assert_eq!(kinds(&c), ["stale_arp_reply"]);
    let FindingDetail::StaleArpReply { reason, .. } = &c.findings()[0].detail else {
        panic!()
    };
    assert_eq!(*reason, StaleReason::MacMismatch);
    // A matching reply raises nothing more.
    c.handle(&arp_reply(
        5 * S,
        b,
        Direction::Rx,
        ip,
        Mac([2, 0, 0, 0, 2, 0xb]),
    ));
    assert_eq!(c.findings().len(), 1);
}

#[test]
fn churn_of_200_namespaces_all_destroyed_no_findings() {
    let cfg = SyntheticConfig {
        namespaces: 200,
        seed: 7,
        concurrency: 16,
        ..Default::default()
    };
    let mut c = Collector::new(CollectorConfig {
        grace_ns: GRACE,
        ..Default::default()
    });
    let mut last = 0;
    for e in synthetic::generate(cfg) {
        last = e.ts_ns;
        c.handle(&e);
    }
    c.finish(last + 100 * S);
    let counts = c.state_counts();
    assert_eq!(counts[&NsState::Destroyed], 200, "{counts:?}");
    assert_eq!(counts[&NsState::Alive], 1, "only init");
    assert!(
        c.findings().is_empty(),
        "{:#?}",
        &c.findings()[..c.findings().len().min(3)]
    );
    assert_eq!(c.stats().unattributed_events, 0);
}

#[test]
fn synthetic_leaks_are_found_and_stream_is_deterministic() {
    let cfg = SyntheticConfig {
        namespaces: 100,
        seed: 3,
        concurrency: 8,
        leak_every: 10,
        ..Default::default()
    };
    let a: Vec<Event> = synthetic::generate(cfg.clone()).collect();
    let b: Vec<Event> = synthetic::generate(cfg.clone()).collect();
    assert_eq!(a, b);
    assert!(
        a.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns),
        "merged in time order"
    );
    let mut c = Collector::new(CollectorConfig {
        grace_ns: GRACE,
        notices: false,
        ..Default::default()
    });
    for e in &a {
        assert!(c.handle(e).is_empty(), "notices are off");
    }
    c.finish(a.last().unwrap().ts_ns + GRACE + 1);
    assert_eq!(c.state_counts()[&NsState::Leaked], 10);
    assert_eq!(
        c.findings()
            .iter()
            .filter(|f| f.kind() == "leaked_netns")
            .count(),
        10
    );
    // Their ARP replies carried their own MACs, sent before the last member left: not stale.
    assert!(c.findings().iter().all(|f| f.kind() == "leaked_netns"));
}

#[test]
fn destroyed_retention_drops_oldest_and_counts_them() {
    let cfg = SyntheticConfig {
        namespaces: 50,
        seed: 9,
        concurrency: 4,
        ..Default::default()
    };
    let mut c = Collector::new(CollectorConfig {
        grace_ns: GRACE,
        keep_destroyed: 5,
        notices: false,
    });
    for e in synthetic::generate(cfg) {
        c.handle(&e);
    }
    assert_eq!(
        c.namespaces()
            .filter(|n| n.state == NsState::Destroyed)
            .count(),
        5
    );
    assert_eq!(c.stats().dropped_destroyed.values().sum::<u64>(), 45);
    assert_eq!(c.state_counts()[&NsState::Destroyed], 50);
}

#[test]
fn memory_per_live_namespace_stays_under_2_kib() {
    // Long lifetimes so that everything is still alive at the end.
    let cfg = SyntheticConfig {
        namespaces: 500,
        seed: 11,
        concurrency: 100_000,
        mean_lifetime_ns: 100_000 * S,
        ..Default::default()
    };
    let mut c = Collector::new(CollectorConfig {
        grace_ns: GRACE,
        notices: false,
        ..Default::default()
    });
    let mut n = 0;
    for e in synthetic::generate(cfg) {
        if e.ts_ns > 1_000 * S {
            break;
        }
        n += 1;
        c.handle(&e);
    }
    assert!(n > 5_000);
    let live: Vec<&Namespace> = c
        .namespaces()
        .filter(|ns| !ns.is_init && ns.state == NsState::Alive)
        .collect();
    assert!(live.len() >= 400, "{}", live.len());
    let avg = live.iter().map(|ns| ns.approx_bytes()).sum::<usize>() / live.len();
    assert!(avg <= 2048, "average {avg} bytes per namespace");
}

#[test]
fn notices_describe_the_lifecycle_and_serialize() {
    let mut c = collector();
    let id = NsId::new(1301, 4026533301);
    let n = c.handle(&created(2 * S, 300, 300, "ip", id)).to_vec();
    assert_eq!(n[0].kind, NoticeKind::Created);
    assert_eq!(n[0].netns, "net:[4026533301]#1301");
    assert!(n[0].text.contains("ip"), "{}", n[0].text);
    let json = serde_json::to_string(&n[0]).unwrap();
    assert!(json.contains("\"kind\":\"created\""), "{json}");
    let back: Notice = serde_json::from_str(&json).unwrap();
    assert_eq!(back, n[0]);
}

/// Replay speed on the synthetic stream. Run with
/// `cargo test --release -p netns-trace --lib collector::tests::replay_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn replay_throughput() {
    let cfg = SyntheticConfig {
        namespaces: 100_000,
        seed: 1,
        concurrency: 256,
        leak_every: 1000,
        ..Default::default()
    };
    let events: Vec<Event> = synthetic::generate(cfg).collect();
    let mut c = Collector::new(CollectorConfig {
        notices: false,
        ..Default::default()
    });
    let t = std::time::Instant::now();
    for e in &events {
        c.handle(e);
    }
    c.finish(events.last().unwrap().ts_ns + GRACE);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} events in {secs:.3}s: {:.2} M events/s; findings {}",
        events.len(),
        events.len() as f64 / secs / 1e6,
        c.findings().len()
    );
    assert_eq!(c.state_counts()[&NsState::Leaked], 100);
}

/// `unshare -n pause` whose namespace a CNI bind-mounts from outside: the creator itself was
/// the pod, so its death leaves a leak (unlike `ip netns add`, which pins its own namespace).
#[test]
fn a_creator_pinned_by_someone_else_is_a_real_member() {
    use crate::model::{Comm, CreatedBy, Event, EventBody, NsId, Pin, TaskOp};
    let host = NsId::new(1, 4026531833);
    let pod = NsId::new(500, 4026532500);
    let ev = |ts: u64, pid: u32, comm: &str, body: EventBody| Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm: Comm::from_str_lossy(comm),
        body,
    };
    let mut c = Collector::new(CollectorConfig {
        grace_ns: 1_000,
        ..Default::default()
    });
    c.handle(&ev(
        10,
        40,
        "pause",
        EventBody::NetnsCreated(NetnsCreated {
            netns: pod,
            parent: host,
            net_ptr: 0xffff1,
            source: CreatedBy::Unshare,
            clone_flags: 0x4000_0000,
        }),
    ));
    c.handle(&ev(
        10,
        40,
        "pause",
        EventBody::Task(TaskNetns {
            op: TaskOp::Unshare,
            netns: pod,
            prev: host,
            thread: false,
            group_dead: false,
            cgroup_id: 0,
            ppid: 0,
            mnt_ns: 1,
            prev_mnt_ns: 1,
        }),
    ));
    c.handle(&ev(
        20,
        41,
        "cni",
        EventBody::MountSyscall(MountSyscall {
            op: crate::model::MountOp::Mount,
            netns: host,
            mnt_ns: 1,
            ret: 0,
            flags: 4096,
            from_dfd: -100,
            to_dfd: -100,
            source: "/proc/40/ns/net".into(),
            target: "/run/netns/cni-x".into(),
        }),
    ));
    c.handle(&Event::observed(
        21,
        EventBody::PinAdded(PinChange {
            netns: pod,
            pin: Pin::BindMount {
                path: "/run/netns/cni-x".into(),
                mnt_ns: 1,
                holder_pid: 1,
                holder_comm: Comm::from_str_lossy("init"),
            },
        }),
    ));
    c.handle(&ev(
        30,
        40,
        "pause",
        EventBody::Task(TaskNetns {
            op: TaskOp::Exit,
            netns: pod,
            prev: pod,
            thread: false,
            group_dead: true,
            cgroup_id: 0,
            ppid: 0,
            mnt_ns: 1,
            prev_mnt_ns: 1,
        }),
    ));
    c.tick(5_000);
    let ns = c.namespaces().find(|n| n.inum == pod.inum).unwrap();
    assert_eq!(ns.state, NsState::Leaked, "{ns:?}");
    assert!(
        c.findings()
            .iter()
            .any(|f| f.kind() == "leaked_netns" && f.netns == ns.id())
    );
}

#[test]
fn a_cgroup_path_resolved_after_the_join_attributes_the_waiting_members_only() {
    let mut c = collector();
    let with_cgroup = |op, netns, cgroup_id| match task_body(op, netns, INIT) {
        EventBody::Task(TaskNetns {
            op,
            netns,
            prev,
            thread,
            group_dead,
            ppid,
            mnt_ns,
            prev_mnt_ns,
            ..
        }) => EventBody::Task(TaskNetns {
            op,
            netns,
            prev,
            thread,
            group_dead,
            cgroup_id,
            ppid,
            mnt_ns,
            prev_mnt_ns,
        }),
        _ => unreachable!(),
    };
    // Enough namespaces with never-resolved cgroup ids to make the waiter index rebuild.
    let pods: Vec<NsId> = (0..5_000u32)
        .map(|i| NsId::new(10_000 + u64::from(i), 4026600000 + i))
        .collect();
    for (i, &pod) in pods.iter().enumerate() {
        let pid = 1_000 + i as u32;
        c.handle(&created(2 * S, pid, pid, "unshare", pod));
        c.handle(&ev(
            2 * S,
            pid,
            pid,
            "pause",
            with_cgroup(TaskOp::Unshare, pod, 70_000 + i as u64),
        ));
    }
    // A member that left before its cgroup was resolved is not attributed.
    c.handle(&ev(
        3 * S,
        1_001,
        1_001,
        "pause",
        task_body(TaskOp::Exit, pods[1], pods[1]),
    ));
    let uid = "0f3a2b1c-1111-2222-3333-444455556666";
    for i in [0u64, 1, 4_999] {
        c.handle(&Event::observed(
            4 * S,
            EventBody::CgroupPath(CgroupPath {
                cgroup_id: 70_000 + i,
                path: format!("/kubepods/besteffort/pod{uid}/crio-{i:064x}"),
            }),
        ));
    }
    let pod_uid = |id: NsId| {
        c.namespaces()
            .find(|n| n.inum == id.inum)
            .unwrap()
            .owner
            .pod_uid
            .clone()
    };
    assert_eq!(pod_uid(pods[0]).as_deref(), Some(uid));
    assert_eq!(pod_uid(pods[1]), None);
    assert_eq!(pod_uid(pods[2]), None);
    assert_eq!(pod_uid(pods[4_999]).as_deref(), Some(uid));
}

/// `ip netns add` on a cold node: its bind mount of /run/netns onto itself prompts a mountinfo
/// read that already shows the namespace's own mount, before that mount's syscall record
/// arrives. The record must still name `ip` as the maker: persistent, never leaked.
#[test]
fn ip_netns_add_on_a_cold_node_is_persistent_when_the_pin_is_seen_before_its_mount_call() {
    let mut c = collector();
    let id = NsId::new(6, 4026532201);
    feed(
        &mut c,
        [
            bind_mount(2 * S, 300, "ip", "/run/netns"),
            // The read prompted by the /run/netns self-bind, made after `ip` had gone on:
            // mountinfo names the namespace by inode number only.
            pin_added(2 * S, NsId::new(0, id.inum), "/run/netns/cold"),
            created(2 * S + 1, 300, 300, "ip", id),
            ev(
                2 * S + 2,
                300,
                300,
                "ip",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            bind_mount(2 * S + 3, 300, "ip", "/run/netns/cold"),
            ev(2 * S + 4, 300, 300, "ip", task_body(TaskOp::Exit, id, id)),
        ],
    );
    c.finish(1000 * S);
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    assert_eq!(ns.pins[0].by.map(|b| b.pid), Some(300), "{:?}", ns.pins);
    assert_eq!(ns.state, NsState::Persistent);
    assert!(c.findings().is_empty(), "{:?}", c.findings());
}

/// The pause pinned by a CNI plugin's bind mount, seen before the plugin's mount record:
/// the late record still names the plugin, so the pause lived there and its death leaks.
#[test]
fn a_pin_seen_before_a_plugins_mount_call_still_leaks_when_the_pause_dies() {
    let mut c = collector();
    let id = NsId::new(7, 4026532202);
    feed(
        &mut c,
        [
            created(2 * S, 40, 40, "pause", id),
            ev(
                2 * S + 1,
                40,
                40,
                "pause",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            pin_added(3 * S, id, "/run/netns/cni-x"),
            bind_mount(3 * S + 1, 41, "cni", "/run/netns/cni-x"),
            ev(4 * S, 40, 40, "pause", task_body(TaskOp::Exit, id, id)),
        ],
    );
    c.tick(4 * S + GRACE + 1);
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    assert_eq!(ns.pins[0].by.map(|b| b.pid), Some(41));
    assert_eq!(ns.state, NsState::Leaked);
    let leak = c
        .findings()
        .iter()
        .find(|f| f.kind() == "leaked_netns")
        .unwrap();
    assert!(!leak.uncertain, "{leak:?}");
}

/// A pin whose mount call never shows (lost, or made before the trace) leaves the creator's
/// role open: the verdict says it cannot tell instead of calling it a leak.
#[test]
fn a_pin_whose_maker_is_unknown_gives_an_uncertain_verdict_not_a_leak() {
    let mut c = collector();
    let id = NsId::new(8, 4026532203);
    feed(
        &mut c,
        [
            created(2 * S, 300, 300, "ip", id),
            ev(
                2 * S + 1,
                300,
                300,
                "ip",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            pin_added(2 * S + 2, id, "/run/netns/unknown"),
            ev(2 * S + 3, 300, 300, "ip", task_body(TaskOp::Exit, id, id)),
        ],
    );
    c.tick(2 * S + GRACE / 2);
    assert_eq!(state_of(&c, id), NsState::Draining);
    c.tick(2 * S + GRACE + 4);
    assert_eq!(state_of(&c, id), NsState::LeakSuspect);
    let leak = c
        .findings()
        .iter()
        .find(|f| f.kind() == "leaked_netns")
        .unwrap();
    assert!(leak.uncertain, "{leak:?}");
    let why = leak.uncertain_reason.as_deref().unwrap();
    assert!(
        why.contains("/run/netns/unknown") && why.contains("cannot be told"),
        "{why}"
    );
    assert!(leak.summary.contains("may be leaked"), "{}", leak.summary);
    if let FindingDetail::LeakedNetns {
        history_unknown, ..
    } = &leak.detail
    {
        assert!(!history_unknown, "its history was traced");
    }
}

/// containerd's and podman's pinning thread: a thread of the runtime unshares, pins
/// /proc/PID/task/TID/ns/net and switches back; the pause joins later. The thread's pin makes
/// the runtime the setter-up, so only the pause's death starts the leak clock.
#[test]
fn a_runtime_threads_own_pin_sets_the_namespace_up_and_the_pause_lives_there() {
    let mut c = collector();
    let id = NsId::new(9, 4026532204);
    let path = "/var/run/netns/cni-thread";
    feed(
        &mut c,
        [
            created(2 * S, 701, 700, "containerd", id),
            ev(2 * S + 1, 701, 700, "containerd", {
                let mut b = task_body(TaskOp::Unshare, id, INIT);
                if let EventBody::Task(TaskNetns { thread, .. }) = &mut b {
                    *thread = true;
                }
                b
            }),
            ev(
                2 * S + 2,
                701,
                700,
                "containerd",
                EventBody::MountSyscall(MountSyscall {
                    op: MountOp::Mount,
                    netns: id,
                    mnt_ns: HOST_MNT,
                    ret: 0,
                    flags: 4096,
                    from_dfd: -100,
                    to_dfd: -100,
                    source: "/proc/700/task/701/ns/net".into(),
                    target: path.into(),
                }),
            ),
            pin_added(2 * S + 3, id, path),
            ev(2 * S + 4, 701, 700, "containerd", {
                let mut b = task_body(TaskOp::Setns, INIT, id);
                if let EventBody::Task(TaskNetns { thread, .. }) = &mut b {
                    *thread = true;
                }
                b
            }),
        ],
    );
    c.tick(2 * S + 2 * GRACE);
    assert_eq!(
        state_of(&c, id),
        NsState::Persistent,
        "set up, nobody lived there yet"
    );
    feed(
        &mut c,
        [
            ev(
                3 * GRACE,
                800,
                800,
                "pause",
                task_body(TaskOp::Setns, id, INIT),
            ),
            ev(
                4 * GRACE,
                800,
                800,
                "pause",
                task_body(TaskOp::Exit, id, id),
            ),
        ],
    );
    c.tick(5 * GRACE + 1);
    assert_eq!(state_of(&c, id), NsState::Leaked);
}

/// Full mode, `ip netns add` on a cold node (seen in the 5.10, 6.1 and 6.12 guests): the graft
/// of the namespace's mount must not take the path of `ip`'s earlier bind of /run/netns onto
/// itself; the namespace's own mount call names it.
#[test]
fn a_graft_is_not_named_by_an_earlier_mount_call_of_the_same_thread() {
    let mut c = collector();
    let id = NsId::new(10, 4026532205);
    let path = "/run/netns/cold-full";
    feed(
        &mut c,
        [
            bind_mount(2 * S, 300, "ip", "/run/netns"),
            created(2 * S + 10, 300, 300, "ip", id),
            ev(
                2 * S + 11,
                300,
                300,
                "ip",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            ev(
                2 * S + 12,
                300,
                300,
                "ip",
                EventBody::NsfsMount(NsfsMount {
                    netns: id,
                    mnt_ns: HOST_MNT,
                    net_ptr: 0,
                    hook: Hook::Fentry,
                }),
            ),
            pin_added(2 * S + 12, NsId::new(0, id.inum), path),
            bind_mount(2 * S + 13, 300, "ip", path),
            ev(2 * S + 14, 300, 300, "ip", task_body(TaskOp::Exit, id, id)),
        ],
    );
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    let paths: Vec<_> = ns
        .pins
        .iter()
        .map(|p| (p.path.as_deref(), p.by.map(|b| b.pid)))
        .collect();
    assert_eq!(paths, [(Some(path), Some(300))]);
    c.finish(1000 * S);
    assert_eq!(state_of(&c, id), NsState::Persistent);
    assert!(c.findings().is_empty(), "{:?}", c.findings());
}

/// Recorded in the 6.1 guest (full mode) from the copied-mount scenario, whose leak still named
/// the host's bind mount after it had been unmounted. The tracer lagged behind the kernel, so
/// every mountinfo read came after the umount and never saw the host's mount: only the graft
/// (`nsfs_mount`) and the mount syscall named it. The umount record carries umount2's one path
/// in `source`, as the probe writes it.
const COPIED_MOUNT_UMOUNTED_ON_THE_HOST: &str = r#"
{"comm":"netns-trace-tes","ifindex":1,"mac":"00:00:00:00:00:00","name":"lo","netns":{"cookie":3,"inum":4026532114},"op":"register","other":{"cookie":0,"inum":0},"pid":124,"tgid":123,"ts_ns":27571238550,"type":"net_dev"}
{"clone_flags":1073741824,"comm":"netns-trace-tes","net_ptr":18446619544485515904,"netns":{"cookie":3,"inum":4026532114},"parent":{"cookie":1,"inum":4026531840},"pid":124,"source":"copy_net_ns","tgid":123,"ts_ns":27571711790,"type":"netns_created"}
{"cgroup_id":1,"comm":"netns-trace-tes","group_dead":false,"mnt_ns":4026531841,"netns":{"cookie":3,"inum":4026532114},"op":"unshare","pid":124,"ppid":0,"prev":{"cookie":1,"inum":4026531840},"prev_mnt_ns":4026531841,"tgid":123,"thread":true,"ts_ns":27572724860,"type":"task"}
{"comm":"netns-trace-tes","net_ptr":18446619544485515904,"netns":{"cookie":3,"inum":4026532114},"pid":124,"tgid":123,"ts_ns":27579088660,"type":"nsfs_evict"}
{"comm":"netns-trace-tes","hook":"fentry","mnt_ns":4026531841,"net_ptr":18446619544485515904,"netns":{"cookie":3,"inum":4026532114},"pid":124,"tgid":123,"ts_ns":27580582790,"type":"nsfs_mount"}
{"comm":"netns-trace-tes","flags":4096,"from_dfd":-100,"mnt_ns":4026531841,"netns":{"cookie":3,"inum":4026532114},"op":"mount","pid":124,"ret":0,"source":"/proc/self/task/124/ns/net","target":"/tmp/netns-trace-testbed-sIhfGy/copied-netns","tgid":123,"to_dfd":-100,"ts_ns":27580963620,"type":"mount_syscall"}
{"cgroup_id":1,"comm":"netns-trace-tes","group_dead":false,"mnt_ns":4026531841,"netns":{"cookie":1,"inum":4026531840},"op":"setns","pid":124,"ppid":0,"prev":{"cookie":3,"inum":4026532114},"prev_mnt_ns":4026531841,"tgid":123,"thread":true,"ts_ns":27581783930,"type":"task"}
{"comm":"netns-trace-tes","net_ptr":18446744071820036544,"netns":{"cookie":1,"inum":4026531840},"pid":124,"tgid":123,"ts_ns":27582188600,"type":"nsfs_evict"}
{"cgroup_id":1,"comm":"mnt-ns-holder","group_dead":false,"mnt_ns":4026532165,"netns":{"cookie":1,"inum":4026531840},"op":"unshare","pid":125,"ppid":0,"prev":{"cookie":1,"inum":4026531840},"prev_mnt_ns":4026531841,"tgid":125,"thread":false,"ts_ns":27589165850,"type":"task"}
{"comm":"","netns":{"cookie":3,"inum":4026532114},"pid":0,"pin":{"holder_comm":"mnt-ns-holder","holder_pid":125,"kind":"bind_mount","mnt_ns":4026532165,"path":"/tmp/netns-trace-testbed-sIhfGy/copied-netns"},"tgid":0,"ts_ns":27589165850,"type":"pin_added"}
{"comm":"mnt-ns-holder","flags":278528,"from_dfd":-100,"mnt_ns":4026532165,"netns":{"cookie":1,"inum":4026531840},"op":"mount","pid":125,"ret":0,"source":"","target":"/","tgid":125,"to_dfd":-100,"ts_ns":27589267650,"type":"mount_syscall"}
{"cgroup_id":1,"comm":"netns-trace-tes","group_dead":false,"mnt_ns":4026531841,"netns":{"cookie":3,"inum":4026532114},"op":"setns","pid":126,"ppid":0,"prev":{"cookie":1,"inum":4026531840},"prev_mnt_ns":4026531841,"tgid":123,"thread":true,"ts_ns":27595833410,"type":"task"}
{"comm":"netns-trace-tes","flags":2,"from_dfd":-100,"mnt_ns":4026531841,"netns":{"cookie":1,"inum":4026531840},"op":"umount","pid":123,"ret":0,"source":"/tmp/netns-trace-testbed-sIhfGy/copied-netns","target":"","tgid":123,"to_dfd":-100,"ts_ns":27597269040,"type":"mount_syscall"}
{"cgroup_id":1,"comm":"netns-trace-tes","group_dead":false,"mnt_ns":4026531841,"netns":{"cookie":3,"inum":4026532114},"op":"exit","pid":126,"ppid":0,"prev":{"cookie":3,"inum":4026532114},"prev_mnt_ns":4026531841,"tgid":123,"thread":true,"ts_ns":27604461770,"type":"task"}
{"cgroup_id":1,"comm":"zz_loop_copied_","group_dead":false,"mnt_ns":4026531841,"netns":{"cookie":3,"inum":4026532114},"op":"setns","pid":127,"ppid":0,"prev":{"cookie":1,"inum":4026531840},"prev_mnt_ns":4026531841,"tgid":127,"thread":false,"ts_ns":27608779110,"type":"task"}
{"comm":"zz_loop_copied_","netns":{"cookie":3,"inum":4026532114},"path":"/","pid":127,"tgid":127,"ts_ns":27608779110,"type":"member_cgroup"}
{"comm":"","interfaces":[{"ifindex":1,"ipv4":[],"mac":"00:00:00:00:00:00","name":"lo"}],"netns":{"cookie":3,"inum":4026532114},"pid":0,"tgid":0,"ts_ns":28036721700,"type":"interfaces"}
{"cgroup_id":1,"comm":"sleep","group_dead":false,"mnt_ns":4026531841,"netns":{"cookie":3,"inum":4026532114},"op":"exit","pid":127,"ppid":0,"prev":{"cookie":3,"inum":4026532114},"prev_mnt_ns":4026531841,"tgid":127,"thread":false,"ts_ns":29626007170,"type":"task"}
"#;

#[test]
fn a_graft_unmounted_before_mountinfo_was_read_is_retired_by_the_umount_record() {
    let events: Vec<Event> = COPIED_MOUNT_UMOUNTED_ON_THE_HOST
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mut c = collector();
    feed(&mut c, events.iter().cloned());
    c.finish(events.last().unwrap().ts_ns + GRACE);
    let copied = NsId::new(3, 4026532114);
    let holder_mnt_ns = 4026532165;
    let [leak] = c.findings() else {
        panic!("{:#?}", c.findings())
    };
    let ns = c.namespaces().find(|n| n.ns_id() == copied).unwrap();
    assert_eq!(leak.netns, ns.id(), "{leak:#?}");
    let FindingDetail::LeakedNetns { pins, .. } = &leak.detail else {
        panic!("{leak:#?}")
    };
    let places: Vec<_> = pins
        .iter()
        .map(|p| (p.path.as_deref(), p.mount_ns))
        .collect();
    assert_eq!(
        places,
        [(
            Some("/tmp/netns-trace-testbed-sIhfGy/copied-netns"),
            Some(holder_mnt_ns)
        )],
        "only the copy in the holder's mount namespace is left: {pins:#?}"
    );
}

/// containerd 3667: the pin was copied into an agent's mount namespace and unmounted on the
/// host. Unmounting the same path on the host again (EINVAL, nothing is mounted there) or
/// unmounting a second host mount there is not about the copy.
#[test]
fn a_umount_on_the_host_leaves_the_copy_in_another_mount_namespace_alone() {
    let mut c = collector();
    let id = NsId::new(906, 4026533000);
    let path = "/run/netns/copied";
    let agent_mnt = HOST_MNT + 500;
    crio_pod(&mut c, 2 * S, id, path, 650);
    c.handle(&Event::observed(
        3 * S,
        EventBody::PinAdded(PinChange {
            netns: id,
            pin: Pin::BindMount {
                path: path.into(),
                mnt_ns: agent_mnt,
                holder_pid: 660,
                holder_comm: comm("agent"),
            },
        }),
    ));
    feed(
        &mut c,
        [
            umount(4 * S, 900, "crio", path, 0),
            umount(5 * S, 900, "crio", path, -22),
            ev(10 * S, 650, 650, "pause", task_body(TaskOp::Exit, id, id)),
        ],
    );
    c.finish(10 * S + GRACE);
    let [leak] = c.findings() else {
        panic!("{:#?}", c.findings())
    };
    let FindingDetail::LeakedNetns {
        pins,
        failed_cleanups,
        ..
    } = &leak.detail
    else {
        panic!("{leak:#?}")
    };
    let places: Vec<_> = pins
        .iter()
        .map(|p| (p.path.as_deref(), p.mount_ns))
        .collect();
    assert_eq!(places, [(Some(path), Some(agent_mnt))], "{pins:#?}");
    assert!(failed_cleanups.is_empty(), "{failed_cleanups:#?}");
}

/// Full mode, `ip netns add` on a cold node, as the 5.10 guest delivered it: the enricher's
/// read (prompted by the /run/netns self-bind) shows the pin first, then the graft, then the
/// mount call. One pin results, made by `ip`, not a maker-less copy beside the graft's.
#[test]
fn a_graft_whose_mount_the_enricher_saw_first_folds_into_that_pin() {
    let mut c = collector();
    let id = NsId::new(11, 4026532206);
    let path = "/run/netns/cold-510";
    feed(
        &mut c,
        [
            bind_mount(2 * S, 135, "ip", "/run/netns"),
            pin_added(2 * S + 1, NsId::new(0, id.inum), path),
            created(2 * S + 5, 135, 135, "ip", id),
            ev(
                2 * S + 6,
                135,
                135,
                "ip",
                task_body(TaskOp::Unshare, id, INIT),
            ),
            ev(
                2 * S + 7,
                135,
                135,
                "ip",
                EventBody::NsfsMount(NsfsMount {
                    netns: id,
                    mnt_ns: HOST_MNT,
                    net_ptr: 0,
                    hook: Hook::Fentry,
                }),
            ),
            bind_mount(2 * S + 8, 135, "ip", path),
            ev(2 * S + 9, 135, 135, "ip", task_body(TaskOp::Exit, id, id)),
        ],
    );
    let ns = c.namespaces().find(|n| n.ns_id() == id).unwrap();
    let pins: Vec<_> = ns
        .pins
        .iter()
        .map(|p| (p.path.as_deref(), p.by.map(|b| b.pid)))
        .collect();
    assert_eq!(pins, [(Some(path), Some(135))]);
    c.finish(1000 * S);
    assert_eq!(state_of(&c, id), NsState::Persistent);
    assert!(c.findings().is_empty(), "{:?}", c.findings());
}

/// Issue 14 item 1: a pod with NET_RAW answering for a neighbour's address with a new random
/// MAC in every reply made one finding (and one output line) per reply. It is one finding
/// per namespace and address, counting the replies and listing the first few MACs.
#[test]
fn an_arp_reply_flood_with_random_macs_is_one_finding_that_counts_them() {
    let mut c = collector();
    let ip = Ipv4Addr::new(10, 244, 2, 9);
    let owner = NsId::new(1201, 4026533201);
    let spoofer = NsId::new(1301, 4026533301);
    crio_pod(&mut c, 2 * S, owner, "/run/netns/pod-b", 7201);
    crio_pod(&mut c, 2 * S, spoofer, "/run/netns/pod-x", 7301);
    feed(&mut c, veth(3 * S, owner, 2, Mac([2, 0, 0, 0, 2, 0xb]), ip));
    let mut lines = 0;
    for i in 0..5000u32 {
        let b = i.to_be_bytes();
        let mac = Mac([0x0a, 0xbc, b[0], b[1], b[2], b[3]]);
        lines += c
            .handle(&arp_reply(
                4 * S + u64::from(i),
                spoofer,
                Direction::Tx,
                ip,
                mac,
            ))
            .len();
    }
    assert_eq!(kinds(&c), ["stale_arp_reply"]);
    assert_eq!(lines, 1, "one notice for the flood");
    let FindingDetail::StaleArpReply {
        other_macs,
        other_mac_replies,
        observed_in,
        ..
    } = &c.findings()[0].detail
    else {
        panic!()
    };
    assert_eq!(*other_mac_replies, 4999);
    assert_eq!(other_macs.len(), 16);
    assert_eq!(observed_in, "net:[4026533301]#1301");
}

/// Issue 14 item 1, the kernel half: past its budget, a namespace's packet records are
/// counted in the kernel and reported as `packets_limited`. The counts add up per namespace
/// and in total, the first one per namespace is a notice, and no verdict changes.
#[test]
fn packet_records_limited_in_the_kernel_are_counted_per_namespace_with_one_notice_each() {
    let mut c = collector();
    let flooder = NsId::new(1401, 4026533401);
    let peer = NsId::new(1402, 4026533402);
    crio_pod(&mut c, 2 * S, flooder, "/run/netns/pod-f", 7401);
    crio_pod(&mut c, 2 * S, peer, "/run/netns/pod-p", 7402);
    let limited = |ts: u64, netns: NsId, count: u64| {
        Event::observed(
            ts,
            EventBody::PacketsLimited(PacketsLimited { netns, count }),
        )
    };
    let mut notices = Vec::new();
    for e in [
        limited(3 * S, flooder, 30_000),
        limited(3 * S, peer, 29_000),
        limited(4 * S, flooder, 500),
        limited(5 * S, NsId::new(1499, 4026533499), 7),
    ] {
        notices.extend(c.handle(&e).iter().map(|n| (n.kind, n.netns.clone())));
    }
    assert_eq!(
        notices,
        [
            (
                NoticeKind::PacketsLimited,
                "net:[4026533401]#1401".to_string()
            ),
            (
                NoticeKind::PacketsLimited,
                "net:[4026533402]#1402".to_string()
            ),
        ],
        "one notice per known namespace; an unknown one is counted in the total only"
    );
    assert_eq!(c.stats().packet_records_limited, 59_507);
    let mut counts: Vec<(u32, u64)> = c
        .namespaces()
        .filter(|ns| ns.arp.records_limited > 0)
        .map(|ns| (ns.inum, ns.arp.records_limited))
        .collect();
    counts.sort();
    assert_eq!(counts, [(4026533401, 30_500), (4026533402, 29_000)]);
    assert!(c.findings().is_empty());
}

/// Issue 14 item 1: replies claiming ever new addresses are bounded by a global cap, past
/// which they are counted, not kept.
#[test]
fn stale_arp_findings_stop_at_their_cap_and_the_rest_are_counted() {
    let mut c = collector();
    let spoofer = NsId::new(1301, 4026533301);
    crio_pod(&mut c, 2 * S, spoofer, "/run/netns/pod-x", 7301);
    let cap = super::findings::MAX_STALE_FINDINGS as u32;
    // Owners for cap + 10 addresses, each then claimed with a wrong MAC.
    for i in 0..cap + 10 {
        let owner = NsId::new(20_000 + u64::from(i), 4026540000 + i);
        let ip = Ipv4Addr::from(0x0a00_0000 + i + 1);
        crio_pod(
            &mut c,
            2 * S,
            owner,
            &format!("/run/netns/o-{i}"),
            100_000 + i,
        );
        feed(&mut c, veth(3 * S, owner, 2, Mac([2, 0, 0, 0, 0, 1]), ip));
        c.handle(&arp_reply(
            4 * S,
            spoofer,
            Direction::Tx,
            ip,
            Mac([2, 0, 0, 0, 0, 2]),
        ));
    }
    let stale = kinds(&c)
        .iter()
        .filter(|k| **k == "stale_arp_reply")
        .count();
    assert_eq!(stale, cap as usize);
    assert_eq!(c.stats().stale_replies_unreported, 10);
}
