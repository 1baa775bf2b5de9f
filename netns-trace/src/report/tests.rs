use crate::model::{ArpPacket, Ipv4AddrChange, Lost, NetDev, NetnsCreated, PinChange, TaskNetns};
use netns_trace_common::EventKind;
use std::net::Ipv4Addr;

use super::*;
use crate::collector::synthetic::{self, SyntheticConfig};
use crate::collector::{Collector, CollectorConfig};
use crate::model::{AddrOp, Comm, Event, EventBody, Hook, Mac, NetDevOp, Pin, TaskOp};

const S: u64 = 1_000_000_000;

fn leaky_collector() -> Collector {
    let cfg = SyntheticConfig {
        namespaces: 30,
        seed: 5,
        concurrency: 4,
        leak_every: 10,
        ..Default::default()
    };
    let mut c = Collector::new(CollectorConfig {
        notices: false,
        ..Default::default()
    });
    let mut last = 0;
    for e in synthetic::generate(cfg) {
        last = e.ts_ns;
        c.handle(&e);
    }
    c.tick(last + 60 * S);
    // A duplicate of a leaked namespace's address, in a fresh namespace, plus a stale reply.
    let leaked = c
        .namespaces()
        .find(|n| n.state == NsState::Leaked)
        .map(|n| n.ns_id())
        .unwrap();
    let leaked_ip = c
        .namespaces()
        .find(|n| n.ns_id() == leaked)
        .unwrap()
        .ipv4()
        .next()
        .unwrap()
        .0;
    let fresh = NsId::new(99_999, 4026599999);
    let t = last + 100 * S;
    let evs = [
        Event::observed(
            t,
            EventBody::NetnsCreated(NetnsCreated {
                netns: fresh,
                parent: synthetic::SYNTH_INIT,
                net_ptr: 1,
                source: CreatedBy::Unshare,
                clone_flags: 0,
            }),
        ),
        Event::observed(
            t + 1,
            EventBody::Task(TaskNetns {
                op: TaskOp::Fork,
                netns: fresh,
                prev: fresh,
                thread: false,
                group_dead: false,
                cgroup_id: 0,
                ppid: 1,
                mnt_ns: 1,
                prev_mnt_ns: 1,
            }),
        ),
        Event::observed(
            t + 2,
            EventBody::NetDev(NetDev {
                op: NetDevOp::Register,
                netns: fresh,
                ifindex: 2,
                other: NsId::default(),
                mac: Mac([2, 0, 0, 0, 0, 0xbb]),
                name: "eth0".into(),
            }),
        ),
        Event::observed(
            t + 3,
            EventBody::Ipv4Addr(Ipv4AddrChange {
                op: AddrOp::Add,
                netns: fresh,
                ifindex: 2,
                addr: leaked_ip,
                prefix_len: 24,
                label: "eth0".into(),
            }),
        ),
        Event::observed(
            t + 4,
            EventBody::Arp(ArpPacket {
                netns: leaked,
                dir: crate::model::Direction::Tx,
                op: 2,
                ifindex: 2,
                sender_ip: leaked_ip,
                sender_mac: Mac([9; 6]),
                target_ip: Ipv4Addr::new(10, 0, 0, 1),
                target_mac: Mac::default(),
                hook: Hook::Tracepoint,
            }),
        ),
        Event::observed(
            t + 5,
            EventBody::PinAdded(PinChange {
                netns: fresh,
                pin: Pin::Fd {
                    pid: 4,
                    fd: 7,
                    comm: crate::model::Comm::from_str_lossy("dockerd"),
                },
            }),
        ),
        Event::observed(
            t + 6,
            EventBody::Lost(Lost {
                kind: EventKind::Arp as u16,
                count: 2,
            }),
        ),
    ];
    for e in &evs {
        c.handle(e);
    }
    c.finish(t + 10);
    c
}

fn ctx() -> ReportContext {
    ReportContext {
        hostname: "node-1".into(),
        kernel: "6.18.0".into(),
        probe_mode: "tracepoint".into(),
        clock: Some(ClockBase {
            monotonic_ns: 0,
            realtime_ns: 1_700_000_000 * S,
        }),
        filters: ReportFilters::default(),
        ..Default::default()
    }
}

#[test]
fn json_round_trips_and_carries_the_schema() {
    let c = leaky_collector();
    let r = Report::build(&c, &ctx());
    let mut buf = Vec::new();
    r.write_json(&mut buf, true).unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.contains("\"schema\": \"netns-trace/report/v1\""));
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);

    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["host"]["kernel"], "6.18.0");
    assert_eq!(v["lost_events"]["by_kind"]["arp"], 2);
    assert_eq!(v["summary"]["by_state"]["leaked"], 3);
    assert_eq!(v["summary"]["by_state"]["destroyed"], 27);
    let ns0 = &v["namespaces"][1];
    for key in [
        "id",
        "inum",
        "cookie",
        "state",
        "created_at_ns",
        "created_by",
        "destroyed_at_ns",
        "freed_at_ns",
        "last_member_exit_at_ns",
        "members",
        "pins",
        "interfaces",
        "owner",
    ] {
        assert!(ns0.get(key).is_some(), "namespace lacks {key}: {ns0}");
    }
    // The synthetic pods' members resolve their cgroup ids to /kubepods/podN paths.
    let owner = &ns0["owner"];
    for key in [
        "pod_uid",
        "qos",
        "container_id",
        "runtime",
        "cgroup",
        "cni_network",
        "sandbox_id",
    ] {
        assert!(owner.get(key).is_some(), "owner lacks {key}: {owner}");
    }
    assert!(
        owner["cgroup"]
            .as_str()
            .is_some_and(|c| c.starts_with("/kubepods/pod")),
        "{owner}"
    );
    assert_eq!(ns0["created_by"]["comm"], "pinns");
    assert!(
        ns0["interfaces"][1]["ipv4"][0]
            .as_str()
            .unwrap()
            .ends_with("/24")
    );
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"leaked_netns")
            && kinds.contains(&"duplicate_ip")
            && kinds.contains(&"stale_arp_reply"),
        "{kinds:?}"
    );
    let stale = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "stale_arp_reply")
        .unwrap();
    assert_eq!(stale["uncertain"], true, "the ARP loss overlaps its window");
    assert!(stale["sender_mac"].as_str().unwrap().contains(':'));
    assert!(
        v["trace"]["started_at"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T")
    );
}

#[test]
fn filters_select_namespaces_and_their_findings() {
    let c = leaky_collector();
    let mut cx = ctx();
    cx.filters.state = vec![NsState::Leaked];
    let r = Report::build(&c, &cx);
    assert_eq!(r.namespaces.len(), 3);
    assert!(r.namespaces.iter().all(|n| n.state == NsState::Leaked));
    assert!(
        r.findings.iter().any(|f| f.kind() == "duplicate_ip"),
        "a holder is listed"
    );

    let one = r.namespaces[0].id.clone();
    cx.filters = ReportFilters {
        netns: Some(one.clone()),
        ..Default::default()
    };
    let r = Report::build(&c, &cx);
    assert_eq!(r.namespaces.len(), 1);
    assert!(
        r.findings
            .iter()
            .all(|f| f.netns == one || f.kind() == "duplicate_ip")
    );
    // By bare inode number.
    cx.filters = ReportFilters {
        netns: Some(r.namespaces[0].inum.to_string()),
        ..Default::default()
    };
    assert!(!Report::build(&c, &cx).namespaces.is_empty());

    cx.filters = ReportFilters {
        until_ns: Some(0),
        ..Default::default()
    };
    assert!(
        Report::build(&c, &cx).namespaces.is_empty(),
        "nothing was born before t=0"
    );
}

#[test]
fn text_rendering_shows_table_and_evidence() {
    let c = leaky_collector();
    let r = Report::build(&c, &ctx());
    let mut buf = Vec::new();
    r.render_text(&mut buf).unwrap();
    let t = String::from_utf8(buf).unwrap();
    assert!(t.contains("NAMESPACES") && t.contains("FINDINGS"), "{t}");
    assert!(t.contains("LOST EVENTS: 2 (arp 2)"), "{t}");
    assert!(t.contains("leaked 3"), "{t}");
    assert!(t.contains("held by: bind mount /run/netns/pod-"), "{t}");
    assert!(t.contains("last member: "), "{t}");
    assert!(t.contains("(UNCERTAIN)"), "{t}");
    assert!(t.contains("2023-11-14T"), "wall clock shown: {t}");
    // Without a clock base, monotonic seconds.
    let mut cx = ctx();
    cx.clock = None;
    let mut buf = Vec::new();
    Report::build(&c, &cx).render_text(&mut buf).unwrap();
    assert!(String::from_utf8(buf).unwrap().contains(" monotonic)"));
}

/// A pod names its process, its pin path and its interface; a trace names its host. None of
/// them may forge a line or reach the terminal as a control sequence.
#[test]
fn names_from_pods_and_traces_cannot_forge_lines_or_escape_sequences() {
    let id = NsId::new(900, 4026532300);
    let init = synthetic::SYNTH_INIT;
    let evil_path = "/run/netns/x\nFINDING forged_leak net:[1]\x1b[2J";
    let evil_comm = "p\x1b]0;owned\x07\n";
    let hdr = |ts: u64, body: EventBody| Event {
        ts_ns: ts,
        pid: 600,
        tgid: 600,
        comm: Comm::from_str_lossy(evil_comm),
        body,
    };
    let mut c = Collector::new(CollectorConfig::default());
    let task = |op, netns, prev| {
        EventBody::Task(TaskNetns {
            op,
            netns,
            prev,
            thread: false,
            group_dead: op == TaskOp::Exit,
            cgroup_id: 0,
            ppid: 1,
            mnt_ns: 1,
            prev_mnt_ns: 1,
        })
    };
    for e in [
        hdr(
            S,
            EventBody::NetnsCreated(NetnsCreated {
                netns: id,
                parent: init,
                net_ptr: 1,
                source: CreatedBy::Unshare,
                clone_flags: 0,
            }),
        ),
        hdr(S + 1, task(TaskOp::Unshare, id, init)),
        Event::observed(
            S + 2,
            EventBody::PinAdded(PinChange {
                netns: id,
                pin: Pin::BindMount {
                    path: evil_path.into(),
                    mnt_ns: 1,
                    holder_pid: 0,
                    holder_comm: Comm::default(),
                },
            }),
        ),
        hdr(
            S + 3,
            EventBody::NetDev(NetDev {
                op: NetDevOp::Register,
                netns: id,
                ifindex: 2,
                other: NsId::default(),
                mac: Mac([2, 0, 0, 0, 0, 1]),
                name: "eth\n\x1b[31m".into(),
            }),
        ),
        hdr(2 * S, task(TaskOp::Exit, id, id)),
        // The runtime's cache entry for it: every string in it is the pod's or the runtime's.
        Event::observed(
            3 * S,
            EventBody::CniResult(Box::new(crate::attribution::CniCacheEntry {
                container_id: "ctr\n[2] forged\x1b[2J".into(),
                if_name: "eth\x1b[31m".into(),
                network_name: "net\r\x07".into(),
                config_name: None,
                netns_path: Some(evil_path.into()),
                ips: vec![],
                pod_namespace: Some("ns\n".into()),
                pod_name: Some("pod\x1b]0;x\x07".into()),
                pod_uid: None,
            })),
        ),
    ] {
        c.handle(&e);
    }
    c.tick(1000 * S);
    assert!(!c.findings().is_empty(), "the setup must leak");
    let mut cx = ctx();
    cx.hostname = "node\n[1] leaked_netns net:[7]".into();
    let mut buf = Vec::new();
    Report::build(&c, &cx).render_text(&mut buf).unwrap();
    let t = String::from_utf8(buf).unwrap();
    for line in t.lines() {
        assert!(
            !line.starts_with("FINDING forged") && !line.starts_with("[1] leaked_netns net:[7]"),
            "forged line: {line:?}\n{t}"
        );
        assert!(
            !line.chars().any(|c| c.is_control()),
            "control character in {line:?}"
        );
    }
    assert!(
        t.contains("/run/netns/x\\nFINDING forged_leak net:[1]\\x1b[2J"),
        "{t}"
    );
    assert!(t.contains("p\\x1b]0;owned\\x07\\n"), "{t}");
    assert!(t.contains("host: node\\n[1] leaked_netns"), "{t}");
    // The CNI GC dry run lists the cached attachment of the leaked namespace, escaped.
    assert!(
        t.contains(
            "\nCNI GC WOULD CLEAN (advice only: netns-trace runs no plugin and deletes nothing)\n"
        ),
        "{t}"
    );
    assert!(
        t.contains("net\\r\\x07 sandbox ctr\\n[2] forged\\x1b[2J eth\\x1b[31m, netns /run/netns/x\\nFINDING"),
        "{t}"
    );
    assert!(t.contains("pod ns\\n/pod\\x1b]0;x\\x07"), "{t}");
    assert!(t.contains("    stale: its namespace net:["), "{t}");
}

/// A member in the root cgroup (every process outside a container on a cgroup v1/hybrid
/// host's unified hierarchy) names no owner: `-` in the table and null in JSON, not `/`.
#[test]
fn the_root_cgroup_is_no_owner() {
    use crate::model::{Member, SnapNamespace, Snapshot, SnapshotPhase};
    let init = NsId::new(1, 4026531840);
    let other = NsId::new(7, 4026532100);
    let member = |cgroup: &str| Member {
        pid: 300,
        tgid: 300,
        comm: Comm::from_str_lossy("sleep"),
        cgroup: cgroup.into(),
    };
    for (cgroup, owned) in [("/", false), ("/system.slice/x.service", true)] {
        let mut c = Collector::new(CollectorConfig {
            notices: false,
            ..Default::default()
        });
        c.handle(&Event::observed(
            S,
            EventBody::Snapshot(Box::new(Snapshot {
                phase: SnapshotPhase::Start,
                namespaces: vec![SnapNamespace {
                    netns: other,
                    members: vec![member(cgroup)],
                    pins: vec![],
                    interfaces: vec![],
                    interfaces_error: None,
                }],
                init_netns: init,
                init_mnt_ns: 0,
            })),
        ));
        c.finish(2 * S);
        let r = Report::build(&c, &ctx());
        let view = r.namespaces.iter().find(|n| n.inum == other.inum).unwrap();
        assert_eq!(view.owner.is_some(), owned, "{cgroup}: {:?}", view.owner);
        let mut buf = Vec::new();
        r.render_text(&mut buf).unwrap();
        let t = String::from_utf8(buf).unwrap();
        let row = t.lines().find(|l| l.starts_with(&view.id)).unwrap();
        if owned {
            assert!(row.ends_with(cgroup), "{row}");
        } else {
            assert!(row.ends_with("  -"), "{row}");
        }
    }
}
