//! Exports a realistic event sequence and has Perfetto's own protobuf classes check the file
//! (tests/export_perfetto.py). Skips only when python3 or the `perfetto` package is missing.

use netns_trace::model::{
    ArpPacket, CgroupPath, CleanupRun, InterfacesRead, Ipv4AddrChange, Lost, MountSyscall,
    NeighUpdate, NetDev, NetnsCreated, NetnsObject, NsfsEvict, NsfsMount, PinChange, TaskNetns,
};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use netns_trace::collector::CollectorConfig;
use netns_trace::export::{ClockBase, PerfettoOptions, write_jsonl, write_perfetto};
use netns_trace::model::*;

const INIT: NsId = NsId::new(1, 4026531840);
const WEB: NsId = NsId::new(4101, 4026532301);
const BATCH: NsId = NsId::new(4102, 4026532302);
const HOST_MNT: u32 = 4026531841;
const MS: u64 = 1_000_000;

fn task_event(ts: u64, pid: u32, tgid: u32, comm: &str, body: EventBody) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid,
        comm: Comm::from_str_lossy(comm),
        body,
    }
}

fn task(op: TaskOp, netns: NsId, prev: NsId, thread: bool) -> EventBody {
    EventBody::Task(TaskNetns {
        op,
        netns,
        prev,
        thread,
        group_dead: op == TaskOp::Exit && !thread,
        cgroup_id: 9001,
        ppid: 1,
        mnt_ns: HOST_MNT,
        prev_mnt_ns: HOST_MNT,
    })
}

fn mac(last: u8) -> Mac {
    Mac([0x02, 0x42, 0x0a, 0x00, 0x00, last])
}

fn pin(path: &str) -> Pin {
    Pin::BindMount {
        path: path.into(),
        mnt_ns: HOST_MNT,
        holder_pid: 1,
        holder_comm: Comm::from_str_lossy("systemd"),
    }
}

fn arp(
    ts: u64,
    netns: NsId,
    dir: Direction,
    op: u16,
    sender: (Ipv4Addr, Mac),
    target: (Ipv4Addr, Mac),
) -> Event {
    Event::observed(
        ts,
        EventBody::Arp(ArpPacket {
            netns,
            dir,
            op,
            ifindex: 2,
            sender_ip: sender.0,
            sender_mac: sender.1,
            target_ip: target.0,
            target_mac: target.1,
            hook: Hook::Tracepoint,
        }),
    )
}

/// Grace period of the export: batch's pause died at 2,100 ms, it is leaked from 2,200 ms.
const GRACE: u64 = 100 * MS;

/// Two pods: "web" runs and is torn down cleanly; "batch" is left pinned by a bind mount
/// after its pause process died, and still answers ARP for its address.
fn scenario() -> Vec<Event> {
    let web_ip = Ipv4Addr::new(10, 88, 0, 2);
    let batch_ip = Ipv4Addr::new(10, 88, 0, 3);
    let gw = (Ipv4Addr::new(10, 88, 0, 1), mac(1));
    let start = Snapshot {
        phase: SnapshotPhase::Start,
        init_netns: INIT,
        init_mnt_ns: 0,
        namespaces: vec![SnapNamespace {
            netns: INIT,
            members: vec![Member {
                pid: 1,
                tgid: 1,
                comm: Comm::from_str_lossy("systemd"),
                cgroup: "/init.scope".into(),
            }],
            pins: vec![],
            interfaces: vec![Interface {
                name: "lo".into(),
                ifindex: 1,
                mac: Mac::default(),
                ipv4: vec![(Ipv4Addr::LOCALHOST, 8)],
                ipv6: Vec::new(),
            }],
            interfaces_error: None,
        }],
    };
    let created = |ts, pid, comm: &str, netns| {
        task_event(
            ts,
            pid,
            pid,
            comm,
            EventBody::NetnsCreated(NetnsCreated {
                netns,
                parent: INIT,
                net_ptr: 0xffff_8881_0000_0000 + u64::from(netns.inum),
                source: CreatedBy::Unshare,
                clone_flags: 0x4000_0000,
            }),
        )
    };
    let pinned = |ts, pid, comm: &str, netns: NsId, path: &str| {
        vec![
            task_event(
                ts,
                pid,
                pid,
                comm,
                EventBody::MountSyscall(MountSyscall {
                    op: MountOp::Mount,
                    netns,
                    mnt_ns: HOST_MNT,
                    ret: 0,
                    flags: 0x1000,
                    from_dfd: -100,
                    to_dfd: -100,
                    source: format!("/proc/{pid}/ns/net"),
                    target: path.into(),
                }),
            ),
            task_event(
                ts,
                pid,
                pid,
                comm,
                EventBody::NsfsMount(NsfsMount {
                    netns,
                    mnt_ns: HOST_MNT,
                    net_ptr: 0,
                    hook: Hook::Tracepoint,
                }),
            ),
            Event::observed(
                ts + MS,
                EventBody::PinAdded(PinChange {
                    netns,
                    pin: pin(path),
                }),
            ),
        ]
    };
    let veth = |ts, netns, name: &str, last| {
        vec![
            task_event(
                ts,
                0,
                0,
                "kworker/0:1",
                EventBody::NetDev(NetDev {
                    op: NetDevOp::Move,
                    netns,
                    ifindex: 2,
                    other: INIT,
                    mac: mac(last),
                    name: name.into(),
                }),
            ),
            Event::observed(
                ts + MS,
                EventBody::Ipv4Addr(Ipv4AddrChange {
                    op: AddrOp::Add,
                    netns,
                    ifindex: 2,
                    addr: Ipv4Addr::new(10, 88, 0, last),
                    prefix_len: 16,
                    label: name.into(),
                }),
            ),
        ]
    };

    let mut events = vec![
        Event::observed(1_000 * MS, EventBody::Snapshot(Box::new(start))),
        Event::observed(
            1_001 * MS,
            EventBody::CgroupPath(CgroupPath {
                cgroup_id: 9001,
                path: "/kubepods/pod-web".into(),
            }),
        ),
        // web: containerd unshares on a locked thread, pins, switches back; pause joins.
        created(1_010 * MS, 700, "containerd", WEB),
        task_event(
            1_010 * MS,
            712,
            700,
            "containerd",
            task(TaskOp::Unshare, WEB, INIT, true),
        ),
    ];
    events.extend(pinned(
        1_011 * MS,
        712,
        "containerd",
        WEB,
        "/var/run/netns/cni-web",
    ));
    events.push(task_event(
        1_013 * MS,
        712,
        700,
        "containerd",
        task(TaskOp::Setns, INIT, WEB, true),
    ));
    events.push(task_event(
        1_020 * MS,
        800,
        800,
        "pause",
        task(TaskOp::Setns, WEB, INIT, false),
    ));
    events.push(task_event(
        1_021 * MS,
        801,
        801,
        "nginx",
        task(TaskOp::Fork, WEB, WEB, false),
    ));
    events.extend(veth(1_030 * MS, WEB, "eth0", 2));
    events.push(arp(
        1_040 * MS,
        WEB,
        Direction::Tx,
        1,
        (web_ip, mac(2)),
        (gw.0, Mac::default()),
    ));
    events.push(arp(1_041 * MS, WEB, Direction::Rx, 2, gw, (web_ip, mac(2))));
    events.push(Event::observed(
        1_042 * MS,
        EventBody::NeighUpdate(NeighUpdate {
            netns: WEB,
            ifindex: 2,
            ip: gw.0,
            mac: gw.1,
            nud_state: 2,
        }),
    ));

    // batch: pinns unshares, pins and exits; the pod's pause joins, lives a second, dies, and
    // nobody removes the pin.
    events.push(created(1_050 * MS, 900, "pinns", BATCH));
    events.push(task_event(
        1_050 * MS,
        900,
        900,
        "pinns",
        task(TaskOp::Unshare, BATCH, INIT, false),
    ));
    events.extend(pinned(
        1_051 * MS,
        900,
        "pinns",
        BATCH,
        "/var/run/netns/cni-batch",
    ));
    events.push(task_event(
        1_053 * MS,
        900,
        900,
        "pinns",
        task(TaskOp::Exit, BATCH, BATCH, false),
    ));
    events.push(task_event(
        1_055 * MS,
        910,
        910,
        "pause",
        task(TaskOp::Setns, BATCH, INIT, false),
    ));
    events.extend(veth(1_060 * MS, BATCH, "eth0", 3));
    events.push(Event::observed(
        1_070 * MS,
        EventBody::Interfaces(InterfacesRead {
            netns: BATCH,
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    ifindex: 1,
                    mac: Mac::default(),
                    ipv4: vec![(Ipv4Addr::LOCALHOST, 8)],
                    ipv6: Vec::new(),
                },
                Interface {
                    name: "eth0".into(),
                    ifindex: 2,
                    mac: mac(3),
                    ipv4: vec![(batch_ip, 16)],
                    ipv6: Vec::new(),
                },
            ],
        }),
    ));
    events.push(Event::observed(
        1_075 * MS,
        EventBody::Lost(Lost { kind: 9, count: 4 }),
    ));

    // web is torn down: members exit, the pin is unmounted, the namespace is destroyed.
    events.push(task_event(
        1_100 * MS,
        801,
        801,
        "nginx",
        task(TaskOp::Exit, WEB, WEB, false),
    ));
    events.push(task_event(
        1_101 * MS,
        800,
        800,
        "pause",
        task(TaskOp::Exit, WEB, WEB, false),
    ));
    events.push(task_event(
        1_102 * MS,
        700,
        700,
        "containerd",
        EventBody::MountSyscall(MountSyscall {
            op: MountOp::Umount,
            netns: INIT,
            mnt_ns: HOST_MNT,
            ret: 0,
            flags: 2,
            from_dfd: -100,
            to_dfd: -100,
            source: "/var/run/netns/cni-web".into(),
            target: String::new(),
        }),
    ));
    events.push(Event::observed(
        1_103 * MS,
        EventBody::PinRemoved(PinChange {
            netns: WEB,
            pin: pin("/var/run/netns/cni-web"),
        }),
    ));
    events.push(Event::observed(
        1_104 * MS,
        EventBody::NsfsEvict(NsfsEvict {
            netns: WEB,
            net_ptr: 0,
        }),
    ));
    events.push(Event::observed(
        1_105 * MS,
        EventBody::CleanupRun(CleanupRun {}),
    ));
    events.push(task_event(
        1_105 * MS,
        0,
        0,
        "kworker/u4:2",
        EventBody::NetnsTeardown(NetnsObject {
            netns: WEB,
            net_ptr: 0,
            hook: Hook::Tracepoint,
        }),
    ));
    events.push(task_event(
        1_106 * MS,
        0,
        0,
        "kworker/u4:2",
        EventBody::NetnsFreed(NetnsObject {
            netns: WEB,
            net_ptr: 0,
            hook: Hook::Tracepoint,
        }),
    ));

    events.push(task_event(
        2_100 * MS,
        910,
        910,
        "pause",
        task(TaskOp::Exit, BATCH, BATCH, false),
    ));

    // The leaked namespace still answers ARP for the address a new pod reuses.
    events.push(arp(
        2_300 * MS,
        BATCH,
        Direction::Rx,
        1,
        gw,
        (batch_ip, Mac::default()),
    ));
    events.push(arp(
        2_300 * MS,
        BATCH,
        Direction::Tx,
        2,
        (batch_ip, mac(3)),
        gw,
    ));
    events.push(Event::observed(
        2_400 * MS,
        EventBody::Snapshot(Box::new(Snapshot {
            phase: SnapshotPhase::Final,
            init_netns: INIT,
            init_mnt_ns: 0,
            namespaces: vec![],
        })),
    ));

    events
}

#[test]
fn perfetto_export_passes_perfettos_own_reader() {
    let dir = tempfile::tempdir().unwrap();
    let file = match std::env::var_os("NETNS_TRACE_KEEP_EXPORT") {
        // For looking at the result in ui.perfetto.dev.
        Some(path) => std::path::PathBuf::from(path),
        None => dir.path().join("trace.perfetto-trace"),
    };
    let options = PerfettoOptions {
        collector: CollectorConfig {
            grace_ns: GRACE,
            ..Default::default()
        },
        clock: Some(ClockBase {
            monotonic_ns: 1_000 * MS,
            realtime_ns: 1_750_000_000_000_000_000,
        }),
        ended_at_ns: None,
    };
    let stats =
        write_perfetto(scenario(), &options, std::fs::File::create(&file).unwrap()).unwrap();
    assert_eq!(stats.namespaces, 3, "init, web, batch: {stats:?}");
    // batch leaked, and its ARP reply afterwards is stale.
    assert_eq!(stats.findings, 2, "{stats:?}");
    assert!(stats.slices >= 10 && stats.instants >= 5, "{stats:?}");

    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export_perfetto.py");
    let output = match Command::new("python3")
        .arg(&checker)
        .arg(&file)
        .args(["--namespaces", "3", "--leaked", "1", "--min-arp", "4"])
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: python3 not found ({err})");
            return;
        }
        Err(err) => panic!("running {}: {err}", checker.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(77) {
        eprintln!("SKIPPED: {}", stderr.trim());
        return;
    }
    assert!(
        output.status.success(),
        "checker failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
}

#[test]
fn jsonl_export_writes_one_parseable_line_per_event() {
    let events = scenario();
    let count = events.len() as u64;
    let mut out = Vec::new();
    assert_eq!(
        write_jsonl(
            events,
            Some(ClockBase {
                monotonic_ns: 1_000 * MS,
                realtime_ns: 1_750_000_000_000_000_000
            }),
            &mut out
        )
        .unwrap(),
        count
    );
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count() as u64, count);
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            value["type"].is_string() && value["ts_ns"].is_u64(),
            "{line}"
        );
        assert!(
            value["time"].as_str().unwrap().starts_with("2025-06-15T"),
            "{line}"
        );
    }
    // The example in docs/export.md.
    let batch_created = text
        .lines()
        .find(|l| l.contains("netns_created") && l.contains("pinns"))
        .unwrap();
    assert_eq!(
        batch_created,
        r#"{"clone_flags":1073741824,"comm":"pinns","net_ptr":18446612690391531982,"netns":{"cookie":4102,"inum":4026532302},"parent":{"cookie":1,"inum":4026531840},"pid":900,"source":"unshare","tgid":900,"time":"2025-06-15T15:06:40.050000000Z","ts_ns":1050000000,"type":"netns_created"}"#
    );
}
