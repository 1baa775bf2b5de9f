//! Round trips, crash and corruption recovery, refusal rules, and size measurements.

use crate::model::{
    ArpPacket, CgroupPath, CleanupRun, InterfacesRead, Ipv4AddrChange, Lost, MemberCgroup,
    MountSyscall, NdiscPacket, NeighUpdate, NetDev, NetnsCreated, NetnsObject, NsfsEvict,
    NsfsMount, PinChange, TaskNetns,
};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;

use super::codec::FrameEncoder;
use super::format::{FRAME_KIND_EVENTS, FrameHeader, frame_crc};
use super::*;
use crate::model::*;
use crate::output::OutputError;

/// splitmix64: deterministic, no dependency.
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn comm(s: &str) -> Comm {
    Comm::from_str_lossy(s)
}

fn ns(i: u64) -> NsId {
    NsId::new(i, 4_026_532_000 + i as u32)
}

fn meta() -> TraceMeta {
    TraceMeta {
        hostname: "node-7".into(),
        kernel_release: "6.18.0-test".into(),
        boot_id: "0b4a6f7e-0000-4000-8000-000000000001".into(),
        clock: ClockBase {
            monotonic_ns: 5_000_000_000,
            realtime_ns: 1_790_000_000_000_000_000,
        },
        probe_mode: "tracepoint".into(),
        probes: vec![ProbeRecord {
            name: "netns_created".into(),
            purpose: "namespace creation".into(),
            mechanism: "tracepoint".into(),
            target: "syscalls:sys_exit_unshare".into(),
            status: "attached".into(),
            detail: String::new(),
        }],
        netns_trace_version: "0.1.0".into(),
        started_at_ns: 5_000_000_000,
        notes: vec!["test trace".into()],
    }
}

fn end() -> TraceEnd {
    TraceEnd {
        events_written: 0,
        lost: vec![LostCount { kind: 10, count: 3 }],
        ended_at_ns: 9_000_000_000,
        clean_shutdown: true,
    }
}

/// One event of every `EventBody` variant (and every `Pin` kind), with awkward values:
/// maximal integers, negative returns, non-NUL-terminated comms, empty strings.
pub(crate) fn every_variant() -> Vec<Event> {
    let mut raw_comm = [b'x'; 16];
    raw_comm[3] = 0; // bytes after a NUL must survive too
    let pins = vec![
        Pin::BindMount {
            path: "/run/netns/blue".into(),
            mnt_ns: 4_026_531_841,
            holder_pid: 1,
            holder_comm: comm("systemd"),
        },
        Pin::Fd {
            pid: 4242,
            fd: 7,
            comm: comm("ip"),
        },
        Pin::Socket {
            pid: u32::MAX,
            fd: 0,
            comm: Comm::default(),
        },
    ];
    let ifaces = vec![
        Interface {
            name: "lo".into(),
            ifindex: 1,
            mac: Mac::default(),
            ipv4: vec![(Ipv4Addr::LOCALHOST, 8)],
            ipv6: Vec::new(),
        },
        Interface {
            name: "veth0".into(),
            ifindex: 12,
            mac: Mac([2, 0, 0, 0, 0, 1]),
            ipv4: vec![
                (Ipv4Addr::new(10, 0, 0, 1), 24),
                (Ipv4Addr::new(10, 0, 1, 1), 32),
            ],
            ipv6: Vec::new(),
        },
    ];
    // The same with IPv6 addresses: the trailer after the version-1 body.
    let v6 = |a: &str, len, dad, nodad| Ipv6Address::new(a.parse().unwrap(), len, dad, nodad);
    let mut ifaces6 = ifaces.clone();
    ifaces6[0].ipv6 = vec![v6("::1", 128, None, false)];
    ifaces6[1].ipv6 = vec![
        v6("fe80::1", 64, None, false),
        v6("fd00::1", 64, None, true),
        v6("2001:db8::1", 64, Some(DadState::Tentative), false),
        v6("2001:db8::2", 64, Some(DadState::Failed), false),
    ];
    let bodies = vec![
        EventBody::NetnsCreated(NetnsCreated {
            netns: ns(2),
            parent: ns(1),
            net_ptr: 0xffff_8880_1234_5000,
            source: CreatedBy::Unshare,
            clone_flags: 0x4000_0000,
        }),
        EventBody::NetnsCreated(NetnsCreated {
            netns: ns(3),
            parent: ns(1),
            net_ptr: u64::MAX,
            source: CreatedBy::Clone,
            clone_flags: u64::MAX,
        }),
        EventBody::NetnsCreated(NetnsCreated {
            netns: ns(4),
            parent: NsId::default(),
            net_ptr: 0,
            source: CreatedBy::CopyNetNs,
            clone_flags: 0,
        }),
        EventBody::Task(TaskNetns {
            op: TaskOp::Fork,
            netns: ns(2),
            prev: ns(2),
            thread: false,
            group_dead: false,
            cgroup_id: 5123,
            ppid: 1,
            mnt_ns: 4_026_531_841,
            prev_mnt_ns: 4_026_531_841,
        }),
        EventBody::Task(TaskNetns {
            op: TaskOp::Unshare,
            netns: ns(3),
            prev: ns(1),
            thread: true,
            group_dead: false,
            cgroup_id: u64::MAX,
            ppid: u32::MAX,
            mnt_ns: u32::MAX,
            prev_mnt_ns: 0,
        }),
        EventBody::Task(TaskNetns {
            op: TaskOp::Setns,
            netns: ns(1),
            prev: ns(3),
            thread: false,
            group_dead: true,
            cgroup_id: 0,
            ppid: 0,
            mnt_ns: 1,
            prev_mnt_ns: 2,
        }),
        EventBody::Task(TaskNetns {
            op: TaskOp::Exit,
            netns: ns(3),
            prev: ns(3),
            thread: true,
            group_dead: true,
            cgroup_id: 1,
            ppid: 2,
            mnt_ns: 3,
            prev_mnt_ns: 3,
        }),
        EventBody::NetnsTeardown(NetnsObject {
            netns: ns(3),
            net_ptr: 0xffff_8880_0000_0000,
            hook: Hook::Kprobe,
        }),
        EventBody::NetnsFreed(NetnsObject {
            netns: ns(3),
            net_ptr: 0xffff_8880_0000_0000,
            hook: Hook::Fentry,
        }),
        EventBody::NetnsTeardown(NetnsObject {
            netns: ns(4),
            net_ptr: 1,
            hook: Hook::Tracepoint,
        }),
        EventBody::NetnsFreed(NetnsObject {
            netns: ns(4),
            net_ptr: 1,
            hook: Hook::Userspace,
        }),
        EventBody::CleanupRun(CleanupRun {}),
        EventBody::MountSyscall(MountSyscall {
            op: MountOp::Mount,
            netns: ns(1),
            mnt_ns: 4_026_531_841,
            ret: 0,
            flags: 4096,
            from_dfd: -100,
            to_dfd: -100,
            source: "/proc/4242/ns/net".into(),
            target: "/run/netns/blue".into(),
        }),
        EventBody::MountSyscall(MountSyscall {
            op: MountOp::Umount,
            netns: ns(1),
            mnt_ns: 4_026_531_841,
            ret: -22,
            flags: 2,
            from_dfd: i32::MIN,
            to_dfd: i32::MAX,
            source: String::new(),
            target: "/run/netns/blue".into(),
        }),
        EventBody::MountSyscall(MountSyscall {
            op: MountOp::OpenTree,
            netns: ns(1),
            mnt_ns: 1,
            ret: i64::MIN,
            flags: u64::MAX,
            from_dfd: 3,
            to_dfd: 0,
            source: "ünïcødé ✓".into(),
            target: String::new(),
        }),
        EventBody::MountSyscall(MountSyscall {
            op: MountOp::MoveMount,
            netns: ns(2),
            mnt_ns: 2,
            ret: i64::MAX,
            flags: 0,
            from_dfd: 5,
            to_dfd: -100,
            source: String::new(),
            target: "/var/run/netns/x".into(),
        }),
        EventBody::NsfsMount(NsfsMount {
            netns: ns(2),
            mnt_ns: 4_026_531_841,
            net_ptr: 0xffff_8880_1234_5000,
            hook: Hook::Fentry,
        }),
        EventBody::NsfsEvict(NsfsEvict {
            netns: ns(2),
            net_ptr: 0xffff_8880_1234_5000,
        }),
        EventBody::NetDev(NetDev {
            op: NetDevOp::Register,
            netns: ns(2),
            ifindex: 12,
            other: NsId::default(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            name: "veth0".into(),
        }),
        EventBody::NetDev(NetDev {
            op: NetDevOp::Unregister,
            netns: ns(2),
            ifindex: u32::MAX,
            other: ns(1),
            mac: Mac([0xff; 6]),
            name: String::new(),
        }),
        EventBody::NetDev(NetDev {
            op: NetDevOp::Move,
            netns: ns(2),
            ifindex: 3,
            other: ns(1),
            mac: Mac::default(),
            name: "eth0".into(),
        }),
        EventBody::Ipv4Addr(Ipv4AddrChange {
            op: AddrOp::Add,
            netns: ns(2),
            ifindex: 12,
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 24,
            label: "veth0".into(),
        }),
        EventBody::Ipv4Addr(Ipv4AddrChange {
            op: AddrOp::Del,
            netns: ns(2),
            ifindex: 12,
            addr: Ipv4Addr::BROADCAST,
            prefix_len: 255,
            label: String::new(),
        }),
        EventBody::Arp(ArpPacket {
            netns: ns(2),
            dir: Direction::Rx,
            op: 1,
            ifindex: 12,
            sender_ip: Ipv4Addr::new(10, 0, 0, 2),
            sender_mac: Mac([2, 0, 0, 0, 0, 2]),
            target_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: Mac::default(),
            hook: Hook::Tracepoint,
        }),
        EventBody::Arp(ArpPacket {
            netns: ns(2),
            dir: Direction::Tx,
            op: u16::MAX,
            ifindex: 0,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            sender_mac: Mac([0xff; 6]),
            target_ip: Ipv4Addr::BROADCAST,
            target_mac: Mac([1; 6]),
            hook: Hook::Userspace,
        }),
        EventBody::Ndisc(NdiscPacket {
            netns: ns(2),
            dir: Direction::Rx,
            hook: Hook::Fentry,
            icmp_type: 136,
            ifindex: u32::MAX,
            target: "fd00:231:62::b".parse().unwrap(),
            src: "fe80::1".parse().unwrap(),
            dst: std::net::Ipv6Addr::UNSPECIFIED,
            lla: Mac([0xff; 6]),
            lla_option: 2,
            na_flags: 0xe0,
        }),
        EventBody::NeighUpdate(NeighUpdate {
            netns: ns(2),
            ifindex: 12,
            ip: Ipv4Addr::new(10, 0, 0, 2),
            mac: Mac([2, 0, 0, 0, 0, 2]),
            nud_state: 0x80,
        }),
        EventBody::Lost(Lost { kind: 10, count: 1 }),
        EventBody::Lost(Lost {
            kind: u16::MAX,
            count: u64::MAX,
        }),
        EventBody::PinAdded(PinChange {
            netns: ns(2),
            pin: pins[0].clone(),
        }),
        EventBody::PinAdded(PinChange {
            netns: ns(2),
            pin: pins[1].clone(),
        }),
        EventBody::PinRemoved(PinChange {
            netns: ns(2),
            pin: pins[2].clone(),
        }),
        EventBody::Interfaces(InterfacesRead {
            netns: ns(2),
            interfaces: ifaces.clone(),
        }),
        EventBody::Interfaces(InterfacesRead {
            netns: ns(5),
            interfaces: vec![],
        }),
        EventBody::Interfaces(InterfacesRead {
            netns: ns(3),
            interfaces: ifaces6.clone(),
        }),
        EventBody::CgroupPath(CgroupPath {
            cgroup_id: 5123,
            path: "/system.slice/containerd.service".into(),
        }),
        EventBody::MemberCgroup(MemberCgroup {
            netns: ns(2),
            path: "/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope".into(),
        }),
        EventBody::CniResult(Box::new(crate::attribution::CniCacheEntry {
            container_id: "3f9b".into(),
            if_name: "eth0".into(),
            network_name: "cbr0".into(),
            config_name: None,
            netns_path: Some("/var/run/netns/cni-1".into()),
            ips: vec![
                crate::attribution::CniIp {
                    address: "10.244.1.17".parse().unwrap(),
                    prefix_len: 24,
                    gateway: Some("10.244.1.1".parse().unwrap()),
                },
                crate::attribution::CniIp {
                    address: "fd00::17".parse().unwrap(),
                    prefix_len: 128,
                    gateway: None,
                },
            ],
            pod_namespace: Some("default".into()),
            pod_name: Some(String::new()),
            pod_uid: None,
        })),
        EventBody::CniResultGone(crate::model::CniResultGone {
            network_name: "cbr0".into(),
            container_id: "3f9b".into(),
            if_name: "eth0".into(),
        }),
        EventBody::CniExec(Box::new(CniExec {
            netns: ns(1),
            verb: "ADD".into(),
            container_id: Some("3f9b".into()),
            netns_path: Some("/var/run/netns/cni-1".into()),
            if_name: Some("eth0".into()),
            cni_args: Some("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web".into()),
            path: "/opt/cni/bin/bridge".into(),
            truncated: CniTruncated::default(),
        })),
        EventBody::CniExec(Box::new(CniExec {
            netns: ns(2),
            verb: "VERSION".into(),
            container_id: None,
            netns_path: Some(String::new()),
            if_name: None,
            cni_args: Some("IgnoreUnknown=1;K8S_POD_NAM".into()),
            path: "host-local".into(),
            truncated: [CniValue::CniArgs, CniValue::Path].into_iter().collect(),
        })),
        EventBody::CniExit(CniExit {
            wait_status: 1 << 8,
            parent: 4242,
        }),
        EventBody::CniExit(CniExit {
            wait_status: 9 | 0x80,
            parent: u32::MAX,
        }),
        EventBody::Snapshot(Box::new(Snapshot {
            phase: SnapshotPhase::Start,
            init_netns: ns(1),
            init_mnt_ns: 4026531841,
            namespaces: vec![
                SnapNamespace {
                    netns: ns(2),
                    members: vec![
                        Member {
                            pid: 4242,
                            tgid: 4242,
                            comm: comm("sleep"),
                            cgroup: "/user.slice".into(),
                        },
                        Member {
                            pid: 4243,
                            tgid: 4242,
                            comm: Comm(raw_comm),
                            cgroup: "/user.slice".into(),
                        },
                    ],
                    pins: pins.clone(),
                    interfaces: ifaces,
                    interfaces_error: None,
                },
                SnapNamespace {
                    netns: ns(6),
                    members: vec![],
                    pins: vec![],
                    interfaces: vec![],
                    interfaces_error: Some("EPERM".into()),
                },
                SnapNamespace {
                    netns: ns(3),
                    members: vec![],
                    pins: vec![],
                    interfaces: ifaces6,
                    interfaces_error: None,
                },
            ],
        })),
        EventBody::Snapshot(Box::new(Snapshot {
            phase: SnapshotPhase::Final,
            init_netns: NsId::default(),
            init_mnt_ns: 0,
            namespaces: vec![],
        })),
    ];
    let comms = [
        comm("ip"),
        Comm(raw_comm),
        Comm::default(),
        comm("containerd-shim"),
        comm("x"),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let i = i as u64;
            // Timestamps that go backwards and jump (events from different CPUs).
            let ts_ns = match i % 4 {
                0 => 1_000_000_000 + i * 1000,
                1 => 1_000_000_000 + i * 1000 - 5000,
                2 => u64::MAX - i,
                _ => i,
            };
            Event {
                ts_ns,
                pid: (i as u32) * 1000,
                tgid: if i.is_multiple_of(3) {
                    i as u32 * 1000
                } else {
                    7
                },
                comm: comms[i as usize % comms.len()],
                body,
            }
        })
        .collect()
}

/// A plausible busy container host: mostly task fork/exit, then ARP, then mounts, and a
/// sprinkle of namespace and device lifecycle.
pub(crate) fn realistic_mix(n: usize, seed: u64) -> Vec<Event> {
    const COMMS: &[&str] = &[
        "bash",
        "sh",
        "runc",
        "runc:[2:INIT]",
        "containerd-shim",
        "ip",
        "sleep",
        "python3",
        "nginx",
        "kubelet",
        "curl",
        "cat",
        "grep",
        "systemd",
        "dockerd",
        "java",
        "node",
        "coredns",
        "pause",
        "iptables",
    ];
    let mut rng = Prng::new(seed);
    let mut ts = 10_000_000_000u64;
    let mut next_pid = 20_000u32;
    let mut live: Vec<(u32, u32, usize, u64)> = Vec::new(); // pid, tgid, comm, netns index
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        ts += 1_000 + rng.below(2_000_000);
        let nsi = 1 + rng.below(60);
        let netns = ns(nsi);
        let mnt = 4_026_531_841 + nsi as u32 * 3;
        let roll = rng.below(100);
        let (pid, tgid, c) =
            if let Some(&(p, t, c, _)) = live.get(rng.below(live.len() as u64 + 1) as usize) {
                (p, t, c)
            } else {
                (
                    1_000 + rng.below(500) as u32,
                    1_000,
                    rng.below(COMMS.len() as u64) as usize,
                )
            };
        let body = if roll < 35 {
            next_pid += 1 + rng.below(3) as u32;
            let thread = rng.below(10) == 0;
            let child_tgid = if thread { tgid } else { next_pid };
            live.push((
                next_pid,
                child_tgid,
                rng.below(COMMS.len() as u64) as usize,
                nsi,
            ));
            EventBody::Task(TaskNetns {
                op: TaskOp::Fork,
                netns,
                prev: netns,
                thread,
                group_dead: false,
                cgroup_id: 5_000 + nsi * 7,
                ppid: pid,
                mnt_ns: mnt,
                prev_mnt_ns: mnt,
            })
        } else if roll < 65 && !live.is_empty() {
            let (p, t, c, nsi) = live.swap_remove(rng.below(live.len() as u64) as usize);
            let netns = ns(nsi);
            events.push(Event {
                ts_ns: ts,
                pid: p,
                tgid: t,
                comm: comm(COMMS[c]),
                body: EventBody::Task(TaskNetns {
                    op: TaskOp::Exit,
                    netns,
                    prev: netns,
                    thread: p != t,
                    group_dead: p == t,
                    cgroup_id: 5_000 + nsi * 7,
                    ppid: pid,
                    mnt_ns: mnt,
                    prev_mnt_ns: mnt,
                }),
            });
            continue;
        } else if roll < 88 {
            let a = rng.below(200) as u8;
            let b = rng.below(200) as u8;
            EventBody::Arp(ArpPacket {
                netns,
                dir: if rng.below(2) == 0 {
                    Direction::Rx
                } else {
                    Direction::Tx
                },
                op: 1 + rng.below(2) as u16,
                ifindex: 2 + rng.below(4) as u32,
                sender_ip: Ipv4Addr::new(10, nsi as u8, 0, a),
                sender_mac: Mac([2, 0x42, nsi as u8, 0, 0, a]),
                target_ip: Ipv4Addr::new(10, nsi as u8, 0, b),
                target_mac: if rng.below(2) == 0 {
                    Mac::default()
                } else {
                    Mac([2, 0x42, nsi as u8, 0, 0, b])
                },
                hook: Hook::Tracepoint,
            })
        } else if roll < 97 {
            let name = format!("cni-{:08x}", nsi * 0x1f2e_3d4c % 0xffff_ffff);
            EventBody::MountSyscall(MountSyscall {
                op: if rng.below(3) == 0 {
                    MountOp::Umount
                } else {
                    MountOp::Mount
                },
                netns,
                mnt_ns: mnt,
                ret: if rng.below(20) == 0 { -16 } else { 0 },
                flags: 4096,
                from_dfd: -100,
                to_dfd: -100,
                source: format!("/proc/{pid}/ns/net"),
                target: format!("/run/netns/{name}"),
            })
        } else {
            match rng.below(4) {
                0 => EventBody::NetnsCreated(NetnsCreated {
                    netns: ns(60 + rng.below(1000)),
                    parent: ns(1),
                    net_ptr: 0xffff_8880_0000_0000 + rng.below(1 << 30) * 64,
                    source: CreatedBy::Unshare,
                    clone_flags: 0x4000_0000,
                }),
                1 => EventBody::NetDev(NetDev {
                    op: NetDevOp::Register,
                    netns,
                    ifindex: 2 + rng.below(4) as u32,
                    other: NsId::default(),
                    mac: Mac([2, 0x42, nsi as u8, 0, 0, 1]),
                    name: "eth0".into(),
                }),
                2 => EventBody::CleanupRun(CleanupRun {}),
                _ => EventBody::NetnsTeardown(NetnsObject {
                    netns,
                    net_ptr: 0xffff_8880_0000_0000 + nsi * 4096,
                    hook: Hook::Tracepoint,
                }),
            }
        };
        events.push(Event {
            ts_ns: ts,
            pid,
            tgid,
            comm: comm(COMMS[c]),
            body,
        });
    }
    events
}

/// Compares event lists without dumping thousands of events on failure.
#[track_caller]
fn assert_same_events(got: &[Event], expected: &[Event], context: &str) {
    if got != expected {
        let first = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{context}: got {} events, expected {}; first difference at index {first}: got {:?}, expected {:?}",
            got.len(),
            expected.len(),
            got.get(first),
            expected.get(first)
        );
    }
}

fn write_all(events: &[Event], options: WriterOptions) -> Vec<u8> {
    let mut w = TraceWriter::from_writer_with(Vec::new(), &meta(), options).unwrap();
    for ev in events {
        w.write_event(ev).unwrap();
    }
    w.finish_into_inner(&end()).unwrap()
}

fn read_all(bytes: Vec<u8>) -> (Vec<Event>, TraceReader) {
    let mut r = TraceReader::from_bytes(bytes).unwrap();
    let events: Vec<Event> = r.by_ref().collect();
    (events, r)
}

/// A trace with a flush every few events, and where each frame lies: (start, end, events
/// before it).
struct Layout {
    bytes: Vec<u8>,
    /// `(frame start offset, frame end offset, index of its first event, events in it)`.
    frames: Vec<(usize, usize, usize, usize)>,
    /// Offset of the end frame.
    end_frame: usize,
}

fn layout(events: &[Event], per_frame: usize, compression: Compression) -> Layout {
    let options = WriterOptions {
        compression,
        ..Default::default()
    };
    let mut w = TraceWriter::from_writer_with(Vec::new(), &meta(), options).unwrap();
    let mut frames = Vec::new();
    let mut start = w.bytes_written() as usize;
    for (i, chunk) in events.chunks(per_frame).enumerate() {
        for ev in chunk {
            w.write_event(ev).unwrap();
        }
        w.flush().unwrap();
        let endo = w.bytes_written() as usize;
        frames.push((start, endo, i * per_frame, chunk.len()));
        start = endo;
    }
    let bytes = w.finish_into_inner(&end()).unwrap();
    Layout {
        bytes,
        frames,
        end_frame: start,
    }
}

#[test]
fn every_variant_round_trips_with_and_without_compression() {
    let events = every_variant();
    for compression in [Compression::Never, Compression::Auto, Compression::Always] {
        for max_frame_events in [1, 3, 8192] {
            let options = WriterOptions {
                compression,
                max_frame_events,
                ..Default::default()
            };
            let (back, r) = read_all(write_all(&events, options));
            assert_same_events(
                &back,
                &events,
                &format!("{compression:?} / {max_frame_events} per frame"),
            );
            assert!(r.damage().is_intact(), "{:?}", r.damage());
            assert_eq!(r.meta(), &meta());
            let e = r.end().unwrap();
            assert_eq!(e.events_written, events.len() as u64);
            assert_eq!(e.lost, end().lost);
            assert!(e.clean_shutdown);
        }
    }
}

#[test]
fn realistic_mix_round_trips_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mix.nstrace");
    let events = realistic_mix(50_000, 7);
    let mut w = TraceWriter::create(&path, &meta(), false).unwrap();
    for ev in &events {
        w.write_event(ev).unwrap();
    }
    assert_eq!(
        w.events_written() + u64::from(w.events_pending()),
        events.len() as u64
    );
    w.finish(&end()).unwrap();
    let r = TraceReader::open(&path).unwrap();
    let back: Vec<Event> = r.collect();
    assert_same_events(&back, &events, "file");
    // The chunked file input and the in-memory input agree.
    let (mem, r) = read_all(std::fs::read(&path).unwrap());
    assert_same_events(&mem, &events, "in memory");
    assert!(r.damage().is_intact());
}

#[test]
fn truncation_at_every_frame_boundary_keeps_all_earlier_frames() {
    let events = realistic_mix(400, 11);
    for compression in [Compression::Never, Compression::Always] {
        let lay = layout(&events, 13, compression);
        for &(start, _, first, _) in &lay.frames {
            let (got, r) = read_all(lay.bytes[..start].to_vec());
            assert_same_events(&got, &events[..first], &format!("cut at {start}"));
            assert_eq!(r.damage().tail_unreadable_bytes, 0);
            assert!(!r.damage().end_seen);
            assert!(r.damage().corrupt.is_empty());
        }
        // Cut right before the end frame: every event, but no clean end.
        let (got, r) = read_all(lay.bytes[..lay.end_frame].to_vec());
        assert_same_events(&got, &events, "all");
        assert!(!r.damage().end_seen && r.end().is_none());
    }
}

#[test]
fn truncation_at_random_offsets_recovers_every_whole_frame() {
    let events = realistic_mix(600, 12);
    let lay = layout(&events, 17, Compression::Auto);
    let header_end = lay.frames[0].0;
    let mut rng = Prng::new(99);
    for _ in 0..1500 {
        let cut = rng.below(lay.bytes.len() as u64) as usize;
        let result = TraceReader::from_bytes(lay.bytes[..cut].to_vec());
        if cut < 20 {
            // Not even a whole fixed header: a clear error, not a panic.
            assert!(
                matches!(
                    result,
                    Err(TraceError::NotATrace | TraceError::TruncatedHeader { .. })
                ),
                "cut {cut}"
            );
            continue;
        }
        let mut r = result.unwrap();
        let got: Vec<Event> = r.by_ref().collect();
        let whole: Vec<_> = lay.frames.iter().filter(|f| f.1 <= cut).collect();
        let expected_events = whole.last().map_or(0, |f| f.2 + f.3);
        assert_same_events(&got, &events[..expected_events], &format!("cut at {cut}"));
        let last_end = whole.last().map_or(header_end, |f| f.1);
        let d = r.damage();
        if cut < header_end {
            assert!(d.meta_error.is_some());
        } else {
            assert_eq!(
                d.tail_unreadable_bytes as usize,
                cut - last_end,
                "cut {cut}"
            );
            assert!(d.corrupt.is_empty());
        }
    }
}

#[test]
fn flipped_bytes_lose_only_their_own_frame() {
    let events = realistic_mix(500, 13);
    for compression in [Compression::Never, Compression::Always] {
        let lay = layout(&events, 20, compression);
        let mut rng = Prng::new(5 + compression as u64);
        for trial in 0..300 {
            let mut bytes = lay.bytes.clone();
            // 1 to 3 flips, each in a distinct frame.
            let mut hit: Vec<usize> = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let f = rng.below(lay.frames.len() as u64) as usize;
                if hit.contains(&f) {
                    continue;
                }
                let (s, e, _, _) = lay.frames[f];
                let at = s + rng.below((e - s) as u64) as usize;
                bytes[at] ^= 1 + rng.below(255) as u8;
                hit.push(f);
            }
            let (got, r) = read_all(bytes);
            let expected: Vec<Event> = lay
                .frames
                .iter()
                .enumerate()
                .filter(|(i, _)| !hit.contains(i))
                .flat_map(|(_, f)| events[f.2..f.2 + f.3].iter().cloned())
                .collect();
            assert_same_events(
                &got,
                &expected,
                &format!("trial {trial}, frames hit {hit:?}"),
            );
            let d = r.damage();
            assert!(d.end_seen, "the end frame was not touched");
            // Adjacent damaged frames merge into one region.
            assert!(!d.corrupt.is_empty() && d.corrupt.len() <= hit.len());
            for region in &d.corrupt {
                assert!(
                    hit.iter().any(|&f| lay.frames[f].0 as u64 == region.offset),
                    "{region:?}"
                );
            }
        }
    }
}

#[test]
fn damaged_metadata_still_replays_events() {
    let events = realistic_mix(100, 14);
    let mut bytes = write_all(&events, WriterOptions::default());
    bytes[25] ^= 0x40; // inside the metadata JSON
    let (got, r) = read_all(bytes.clone());
    assert_same_events(&got, &events, "all");
    assert!(r.damage().meta_error.as_deref().unwrap().contains("CRC"));
    assert_eq!(r.meta(), &TraceMeta::default());
    // A wild metadata length: frames are still found by scanning.
    bytes[25] ^= 0x40;
    bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let (got, r) = read_all(bytes);
    assert_same_events(&got, &events, "all");
    assert!(r.damage().meta_error.is_some());
    assert!(r.damage().end_seen);
}

#[test]
fn garbage_between_and_after_frames_is_skipped() {
    let events = realistic_mix(200, 15);
    let lay = layout(&events, 50, Compression::Never);
    let (s1, _, _, _) = lay.frames[1];
    let mut bytes = lay.bytes[..s1].to_vec();
    let garbage: Vec<u8> = (0..999u32)
        .map(|i| (i * 7 + 3) as u8)
        .chain(format::FRAME_MAGIC)
        .collect();
    bytes.extend_from_slice(&garbage);
    bytes.extend_from_slice(&lay.bytes[s1..]);
    bytes.extend_from_slice(b"trailing junk");
    let (got, r) = read_all(bytes);
    assert_same_events(&got, &events, "all");
    let d = r.damage();
    assert_eq!(d.corrupt.len(), 1);
    assert_eq!(d.corrupt[0].offset, s1 as u64);
    assert_eq!(d.corrupt[0].len, garbage.len() as u64);
    assert_eq!(d.tail_unreadable_bytes, 13);
    assert!(d.end_seen);
}

/// Issue 14 item 6: a file that is damage between every frame lists a bounded number of
/// regions and counts the rest, and still gives every event.
#[test]
fn damage_everywhere_is_listed_up_to_a_bound_and_counted_beyond() {
    let events = realistic_mix(1200, 17);
    let lay = layout(&events, 2, Compression::Never);
    assert!(lay.frames.len() > reader::MAX_LISTED_REGIONS + 50);
    let mut bytes = lay.bytes[..lay.frames[0].0].to_vec();
    let junk = b"junk between frames";
    for (i, &(start, ..)) in lay.frames.iter().enumerate() {
        let end = lay.frames.get(i + 1).map_or(lay.bytes.len(), |f| f.0);
        bytes.extend_from_slice(&lay.bytes[start..end]);
        if i + 1 < lay.frames.len() {
            bytes.extend_from_slice(junk);
        }
    }
    let (got, r) = read_all(bytes);
    assert_same_events(&got, &events, "all");
    let d = r.damage();
    let regions = lay.frames.len() as u64 - 1;
    assert_eq!(d.corrupt.len(), reader::MAX_LISTED_REGIONS);
    assert_eq!(
        d.unlisted_regions,
        regions - reader::MAX_LISTED_REGIONS as u64
    );
    assert_eq!(d.skipped_bytes(), regions * junk.len() as u64);
    assert!(!d.is_intact());
}

/// Returns at most 7 bytes per read, so frames straddle every refill of the reader's window.
struct Trickle(std::io::Cursor<Vec<u8>>);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(7);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn streamed_input_matches_in_memory_input_even_when_damaged() {
    let events = realistic_mix(300, 16);
    let lay = layout(&events, 40, Compression::Auto);
    let mut bytes = lay.bytes.clone();
    bytes[lay.frames[2].0 + 30] ^= 0x10;
    bytes.truncate(bytes.len() - 5);
    let (mem, mr) = read_all(bytes.clone());
    let mut sr = TraceReader::from_reader(Trickle(std::io::Cursor::new(bytes))).unwrap();
    let streamed: Vec<Event> = sr.by_ref().collect();
    assert_same_events(&streamed, &mem, "streamed");
    assert_eq!(sr.damage(), mr.damage());
    assert_eq!(mr.damage().corrupt.len(), 1);
    assert!(mr.damage().tail_unreadable_bytes > 0 && !mr.damage().end_seen);
}

#[test]
fn lent_events_match_iterated_events_even_when_damaged() {
    let events = realistic_mix(300, 16);
    let lay = layout(&events, 40, Compression::Auto);
    let mut bytes = lay.bytes.clone();
    bytes[lay.frames[2].0 + 30] ^= 0x10;
    bytes.truncate(bytes.len() - 5);
    let (iterated, ir) = read_all(bytes.clone());
    let mut lr = TraceReader::from_reader(Trickle(std::io::Cursor::new(bytes))).unwrap();
    let mut lent = Vec::new();
    lr.for_each_event(|ev| lent.push(ev.clone()));
    assert_same_events(&lent, &iterated, "lent");
    assert_eq!(lr.events_read(), ir.events_read());
    assert_eq!(lr.damage(), ir.damage());
    assert!(lr.next_event().is_none());
}

#[test]
fn future_version_is_refused_clearly() {
    let mut bytes = write_all(&every_variant(), WriterOptions::default());
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    match TraceReader::from_bytes(bytes) {
        Err(TraceError::UnsupportedVersion {
            found: 2,
            supported: 1,
        }) => {}
        other => panic!(
            "expected UnsupportedVersion, got {:?}",
            other.map(|r| r.damage().clone())
        ),
    }
}

#[test]
fn not_a_trace_is_refused_clearly() {
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.resize(64, 0);
    for input in [
        Vec::new(),
        b"NST".to_vec(),
        elf,
        b"NSTRACE".to_vec(),
        vec![0u8; 4096],
    ] {
        assert!(
            matches!(
                TraceReader::from_bytes(input.clone()),
                Err(TraceError::NotATrace)
            ),
            "{input:?}"
        );
    }
    // A real binary from disk, through the file path.
    let exe = std::env::current_exe().unwrap();
    assert!(matches!(
        TraceReader::open(&exe),
        Err(TraceError::NotATrace)
    ));
    // Magic but nothing more: cut short, not "not a trace".
    assert!(matches!(
        TraceReader::from_bytes(b"NSTRACE\0\x01".to_vec()),
        Err(TraceError::TruncatedHeader { len: 9 })
    ));
}

#[test]
fn unknown_frame_kinds_and_record_tags_are_skipped() {
    let events = every_variant();
    let lay = layout(&events, 10, Compression::Never);
    let insert_at = lay.frames[1].0;
    let frame = |kind: u8, payload: &[u8]| {
        let mut h = FrameHeader {
            kind,
            flags: 0,
            payload_len: payload.len() as u32,
            uncompressed_len: payload.len() as u32,
            crc: 0,
        };
        h.crc = frame_crc(&h.encode(), payload);
        let mut f = h.encode().to_vec();
        f.extend_from_slice(payload);
        f
    };
    // A frame kind from the future, then an events frame with a future definition record
    // (tag 0x0f), a future event (tag 0x7f, ts delta +5), and one known event after them.
    let mut enc = FrameEncoder::default();
    enc.push(
        &Event::observed(100, EventBody::CleanupRun(CleanupRun {})),
        usize::MAX,
    )
    .unwrap();
    let mut payload = vec![0x0f, 2, 0xaa, 0xbb, 0x7f, 3, 10, 0xcc, 0xdd];
    let known = enc.buf.clone();
    payload.extend_from_slice(&known);
    let mut bytes = lay.bytes[..insert_at].to_vec();
    bytes.extend(frame(9, b"whatever a newer writer puts here"));
    bytes.extend(frame(FRAME_KIND_EVENTS, &payload));
    bytes.extend_from_slice(&lay.bytes[insert_at..]);
    let (got, r) = read_all(bytes);
    let mut expected = events[..10].to_vec();
    // Deltas chain through the unknown event: 5 + 100.
    expected.push(Event::observed(105, EventBody::CleanupRun(CleanupRun {})));
    expected.extend_from_slice(&events[10..]);
    assert_same_events(&got, &expected, "with unknown records");
    let d = r.damage();
    assert_eq!((d.unknown_frames, d.unknown_records), (1, 2));
    assert!(d.corrupt.is_empty() && d.end_seen);
}

#[test]
fn an_event_too_big_for_the_frame_leaves_the_frame_intact() {
    let events = every_variant();
    let mut enc = FrameEncoder::default();
    enc.push(&events[0], usize::MAX).unwrap();
    let before = enc.buf.clone();
    // A mount event with new strings, refused by a tight limit, must not leave its string
    // definitions behind (the interner is rolled back too).
    let mount = events
        .iter()
        .find(|e| matches!(e.body, EventBody::MountSyscall(MountSyscall { .. })))
        .unwrap();
    assert!(enc.push(mount, before.len() + 5).is_err());
    assert_eq!(enc.buf, before);
    enc.push(mount, usize::MAX).unwrap();
    let mut out = std::collections::VecDeque::new();
    let mut stats = codec::PayloadStats::default();
    codec::FrameDecoder::default()
        .decode(&enc.buf, &mut out, &mut stats)
        .unwrap();
    assert_eq!(Vec::from(out), vec![events[0].clone(), mount.clone()]);
}

#[test]
fn dropping_the_writer_flushes_pending_events_without_an_end_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dropped.nstrace");
    let events = realistic_mix(50, 17);
    {
        let mut w = TraceWriter::create(&path, &meta(), false).unwrap();
        for ev in &events {
            w.write_event(ev).unwrap();
        }
    }
    let mut r = TraceReader::open(&path).unwrap();
    assert_eq!(r.by_ref().collect::<Vec<_>>(), events);
    assert!(!r.damage().end_seen && r.damage().tail_unreadable_bytes == 0);
}

#[test]
fn create_refuses_symlinks_and_existing_files_and_sets_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("victim");
    std::fs::write(&target, b"precious").unwrap();
    let link = dir.path().join("link.nstrace");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for overwrite in [false, true] {
        assert!(matches!(
            TraceWriter::create(&link, &meta(), overwrite),
            Err(TraceError::Output(OutputError::Symlink { .. }))
        ));
    }
    // A dangling symlink too (O_CREAT would otherwise create its target).
    let dangling = dir.path().join("dangling.nstrace");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    assert!(matches!(
        TraceWriter::create(&dangling, &meta(), true),
        Err(TraceError::Output(OutputError::Symlink { .. }))
    ));
    assert!(!dir.path().join("nowhere").exists());
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");

    assert!(matches!(
        TraceWriter::create(&target, &meta(), false),
        Err(TraceError::Output(OutputError::AlreadyExists { .. }))
    ));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");

    // Overwrite replaces the content and tightens an existing file's mode.
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    TraceWriter::create(&target, &meta(), true)
        .unwrap()
        .finish(&end())
        .unwrap();
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(TraceReader::open(&target).unwrap().next().is_none());

    let fresh = dir.path().join("fresh.nstrace");
    TraceWriter::create(&fresh, &meta(), false)
        .unwrap()
        .finish(&end())
        .unwrap();
    assert_eq!(
        std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A FIFO is refused at once rather than blocking the recorder.
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(TraceWriter::create(&fifo, &meta(), true).is_err());
}

/// Size on disk per event for the realistic mix; printed for docs/trace-format.md.
#[test]
fn bytes_per_event_on_a_realistic_mix() {
    let events = realistic_mix(200_000, 21);
    let header_only = write_all(&[], WriterOptions::default()).len();
    for compression in [Compression::Never, Compression::Auto, Compression::Always] {
        // 100 events per frame: a quiet node where the once-a-second flush ends most frames.
        for (max_frame_bytes, max_frame_events) in
            [(64 * 1024, 100), (4 * 1024, 8192), (64 * 1024, 8192)]
        {
            let bytes = write_all(
                &events,
                WriterOptions {
                    compression,
                    max_frame_bytes,
                    max_frame_events,
                },
            );
            let per_event = (bytes.len() - header_only) as f64 / events.len() as f64;
            println!(
                "trace size: {compression:?}, frames of <= {} KiB / <= {max_frame_events} events: {per_event:.2} bytes/event ({} events, {} bytes)",
                max_frame_bytes / 1024,
                events.len(),
                bytes.len()
            );
            assert!(
                per_event <= 64.0,
                "{compression:?}: {per_event} bytes/event"
            );
        }
    }
    // The same mix as postcard-encoded model events, for comparison.
    let postcard_total: usize = events
        .iter()
        .map(|e| {
            postcard::to_allocvec(&PostcardEvent::from(e))
                .unwrap()
                .len()
        })
        .sum();
    println!(
        "for comparison, plain postcard: {:.2} bytes/event",
        postcard_total as f64 / events.len() as f64
    );
}

/// The model's `EventBody` is internally tagged (postcard cannot read that back), so the
/// comparison serializes the hot variants' fields as postcard would.
#[derive(serde::Serialize)]
enum PostcardEvent<'a> {
    Other(u64, u32, u32, &'a Comm),
    Task(
        u64,
        u32,
        u32,
        &'a Comm,
        TaskOp,
        NsId,
        NsId,
        bool,
        bool,
        u64,
        u32,
        u32,
        u32,
    ),
    Arp(
        u64,
        u32,
        u32,
        &'a Comm,
        NsId,
        Direction,
        u16,
        u32,
        Ipv4Addr,
        Mac,
        Ipv4Addr,
        Mac,
        Hook,
    ),
    Mount(
        u64,
        u32,
        u32,
        &'a Comm,
        MountOp,
        NsId,
        u32,
        i64,
        u64,
        i32,
        i32,
        &'a str,
        &'a str,
    ),
}

impl<'a> From<&'a Event> for PostcardEvent<'a> {
    fn from(e: &'a Event) -> Self {
        match &e.body {
            EventBody::Task(TaskNetns {
                op,
                netns,
                prev,
                thread,
                group_dead,
                cgroup_id,
                ppid,
                mnt_ns,
                prev_mnt_ns,
            }) => PostcardEvent::Task(
                e.ts_ns,
                e.pid,
                e.tgid,
                &e.comm,
                *op,
                *netns,
                *prev,
                *thread,
                *group_dead,
                *cgroup_id,
                *ppid,
                *mnt_ns,
                *prev_mnt_ns,
            ),
            EventBody::Arp(ArpPacket {
                netns,
                dir,
                op,
                ifindex,
                sender_ip,
                sender_mac,
                target_ip,
                target_mac,
                hook,
            }) => PostcardEvent::Arp(
                e.ts_ns,
                e.pid,
                e.tgid,
                &e.comm,
                *netns,
                *dir,
                *op,
                *ifindex,
                *sender_ip,
                *sender_mac,
                *target_ip,
                *target_mac,
                *hook,
            ),
            EventBody::MountSyscall(MountSyscall {
                op,
                netns,
                mnt_ns,
                ret,
                flags,
                from_dfd,
                to_dfd,
                source,
                target,
            }) => PostcardEvent::Mount(
                e.ts_ns, e.pid, e.tgid, &e.comm, *op, *netns, *mnt_ns, *ret, *flags, *from_dfd,
                *to_dfd, source, target,
            ),
            _ => PostcardEvent::Other(e.ts_ns, e.pid, e.tgid, &e.comm),
        }
    }
}

/// Decode throughput; meaningful only in release:
/// `cargo test -p netns-trace --release --lib trace::tests::decode_throughput -- --ignored --nocapture`
#[test]
#[ignore = "timing measurement, run in release with --ignored --nocapture"]
fn decode_throughput() {
    let events = realistic_mix(1_000_000, 22);
    for compression in [Compression::Never, Compression::Auto, Compression::Always] {
        let bytes = write_all(
            &events,
            WriterOptions {
                compression,
                ..Default::default()
            },
        );
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let mut r = TraceReader::from_bytes(bytes.clone()).unwrap();
            let mut n = 0u64;
            while let Some(ev) = r.next_event() {
                std::hint::black_box(&ev);
                n += 1;
            }
            assert_eq!(n, events.len() as u64);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "decode {compression:?}: {:.2} M events/s",
            events.len() as f64 / best / 1e6
        );
        let t = std::time::Instant::now();
        let _ = write_all(
            &events,
            WriterOptions {
                compression,
                ..Default::default()
            },
        );
        println!(
            "encode {compression:?}: {:.2} M events/s",
            events.len() as f64 / t.elapsed().as_secs_f64() / 1e6
        );
    }
}

/// Writes the small seed traces for the fuzzer (see fuzz/README.md):
/// `NETNS_TRACE_WRITE_SEED_DIR=$PWD/fuzz/corpus/trace_reader cargo test -p netns-trace --lib trace::tests::write_fuzz_seed`
#[test]
fn write_fuzz_seed() {
    for (name, compression) in [
        ("seed-every-variant", Compression::Never),
        ("seed-every-variant-lz4", Compression::Always),
    ] {
        let options = WriterOptions {
            compression,
            max_frame_events: 16,
            ..Default::default()
        };
        let bytes = write_all(&every_variant(), options);
        // A seed must itself be a clean trace.
        let (got, r) = read_all(bytes.clone());
        assert_same_events(&got, &every_variant(), "seed");
        assert!(r.damage().is_intact());
        if let Ok(dir) = std::env::var("NETNS_TRACE_WRITE_SEED_DIR") {
            let path = std::path::Path::new(&dir).join(name);
            std::fs::write(&path, &bytes).unwrap();
            println!("wrote {} bytes to {}", bytes.len(), path.display());
        }
    }
}

/// Found by `cargo fuzz run trace_payload` in CI: a tgid delta that overflows pid + delta
/// panicked (arithmetic overflow) instead of rejecting the event.
#[test]
fn a_tgid_delta_that_overflows_is_rejected_not_a_panic() {
    let payload: [u8; 44] = [
        0x03, 0x00, 0x01, 0x00, 0x13, 0x13, 0xcb, 0x13, 0x13, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, //
        0xff, 0xff, 0x01, 0xbf, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1e, 0x00, 0x00, 0x2a,
        0x01, //
        0xbf, 0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
    ];
    let mut events = std::collections::VecDeque::new();
    let mut stats = codec::PayloadStats::default();
    let _ = codec::FrameDecoder::default().decode(&payload, &mut events, &mut stats);
}

/// The IPv6 addresses of an interface read come after the version-1 body, which is written
/// byte for byte as before they existed: the record's length is the only earlier byte that
/// differs. Older readers skip the trailer; this one reads it.
#[test]
fn the_ipv6_trailer_follows_an_unchanged_version_1_body() {
    let event = |ipv6| {
        Event::observed(
            7,
            EventBody::Interfaces(InterfacesRead {
                netns: ns(2),
                interfaces: vec![Interface {
                    name: "eth0".into(),
                    ifindex: 2,
                    mac: Mac([2, 0, 0, 0, 0, 1]),
                    ipv4: vec![(Ipv4Addr::new(10, 0, 0, 1), 24)],
                    ipv6,
                }],
            }),
        )
    };
    let addr = Ipv6Address::new("fd00::1".parse().unwrap(), 64, None, true);
    let (plain, with) = (event(vec![]), event(vec![addr]));
    let encode = |e: &Event| {
        let mut enc = FrameEncoder::default();
        enc.push(e, usize::MAX).unwrap();
        enc.buf.clone()
    };
    let decode = |buf: &[u8]| {
        let mut out = std::collections::VecDeque::new();
        let mut stats = codec::PayloadStats::default();
        codec::FrameDecoder::default()
            .decode(buf, &mut out, &mut stats)
            .unwrap();
        (Vec::from(out), stats.bad_events)
    };
    let (a, b) = (encode(&plain), encode(&with));
    let n = a.len();
    let differ: Vec<usize> = (0..n).filter(|&i| a[i] != b[i]).collect();
    assert_eq!(differ.len(), 1, "{a:?}\n{b:?}");
    // One interface, one address: count, address count, 16 bytes, prefix, flags (nodad).
    assert_eq!(usize::from(b[differ[0]] - a[differ[0]]), b.len() - n);
    assert_eq!(b[n..n + 2], [1, 1]);
    assert_eq!(b[n + 18..], [64, 4]);
    assert_eq!(decode(&a), (vec![plain], 0));
    assert_eq!(decode(&b), (vec![with], 0));
    // A trailer for another number of interfaces is a bad event, not a misread one.
    let mut bad = b.clone();
    bad[n] = 2;
    assert_eq!(decode(&bad), (vec![], 1));
}

/// The node's mount namespace follows a snapshot's IPv6 trailer, which is then written even
/// when no interface has an IPv6 address; a snapshot without it (older traces) reads as 0.
#[test]
fn the_node_mount_namespace_follows_the_snapshots_ipv6_trailer() {
    let snapshot = |init_mnt_ns, ipv6: Vec<Ipv6Address>| {
        Event::observed(
            7,
            EventBody::Snapshot(Box::new(Snapshot {
                phase: SnapshotPhase::Start,
                init_netns: ns(1),
                init_mnt_ns,
                namespaces: vec![SnapNamespace {
                    netns: ns(2),
                    members: vec![],
                    pins: vec![],
                    interfaces: vec![Interface {
                        name: "eth0".into(),
                        ifindex: 2,
                        mac: Mac([2, 0, 0, 0, 0, 1]),
                        ipv4: vec![(Ipv4Addr::new(10, 0, 0, 1), 24)],
                        ipv6,
                    }],
                    interfaces_error: None,
                }],
            })),
        )
    };
    let addr = Ipv6Address::new("fd00::1".parse().unwrap(), 64, None, true);
    for e in [
        snapshot(0, vec![]),
        snapshot(0, vec![addr]),
        snapshot(4026531841, vec![]),
        snapshot(4026531841, vec![addr]),
    ] {
        let mut enc = FrameEncoder::default();
        enc.push(&e, usize::MAX).unwrap();
        let mut out = std::collections::VecDeque::new();
        let mut stats = codec::PayloadStats::default();
        codec::FrameDecoder::default()
            .decode(&enc.buf, &mut out, &mut stats)
            .unwrap();
        assert_eq!((Vec::from(out), stats.bad_events), (vec![e], 0));
    }
}
