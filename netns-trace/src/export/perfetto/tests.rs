//! Decodes the written bytes with a minimal protobuf reader and checks the structure the UI
//! relies on. (tests/export.rs checks the same file with Perfetto's own Python classes.)

use crate::model::{
    ArpPacket, CgroupPath, Lost, NetDev, NetnsCreated, NetnsObject, PinChange, TaskNetns,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use super::layout::SEQUENCE_ID;
use super::*;
use crate::collector::CollectorConfig;
use crate::export::ClockBase;
use crate::model::*;

#[derive(Debug, Clone)]
enum Value {
    Varint(u64),
    Bytes(Vec<u8>),
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

fn decode(bytes: &[u8]) -> Vec<(u32, Value)> {
    let mut pos = 0;
    let mut fields = Vec::new();
    while pos < bytes.len() {
        let tag = read_varint(bytes, &mut pos);
        let field = (tag >> 3) as u32;
        match tag & 7 {
            0 => fields.push((field, Value::Varint(read_varint(bytes, &mut pos)))),
            2 => {
                let len = read_varint(bytes, &mut pos) as usize;
                fields.push((field, Value::Bytes(bytes[pos..pos + len].to_vec())));
                pos += len;
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    fields
}

fn varint(fields: &[(u32, Value)], field: u32) -> Option<u64> {
    fields.iter().find_map(|(f, v)| match v {
        Value::Varint(x) if *f == field => Some(*x),
        _ => None,
    })
}

fn bytes(fields: &[(u32, Value)], field: u32) -> Option<Vec<u8>> {
    fields.iter().find_map(|(f, v)| match v {
        Value::Bytes(x) if *f == field => Some(x.clone()),
        _ => None,
    })
}

fn string(fields: &[(u32, Value)], field: u32) -> Option<String> {
    bytes(fields, field).map(|b| String::from_utf8(b).unwrap())
}

/// (ts, track uuid, type, name, annotations)
type DecodedEvent = (u64, u64, u64, String, HashMap<String, String>);

#[derive(Debug)]
struct Decoded {
    /// uuid → (name, parent uuid)
    tracks: BTreeMap<u64, (String, Option<u64>)>,
    /// uuid → description, where there is one
    descriptions: BTreeMap<u64, String>,
    /// (ts, track uuid, type, name, annotations)
    events: Vec<DecodedEvent>,
    first_packet: Vec<(u32, Value)>,
}

impl Decoded {
    fn track_named(&self, prefix: &str) -> u64 {
        let found: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, (name, _))| name.starts_with(prefix))
            .map(|(uuid, _)| *uuid)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "tracks starting with {prefix:?}: {:?}",
            self.tracks
        );
        found[0]
    }
    fn children(&self, parent: u64) -> Vec<&str> {
        self.tracks
            .values()
            .filter(|(_, p)| *p == Some(parent))
            .map(|(name, _)| name.as_str())
            .collect()
    }
    fn on(&self, track: u64) -> Vec<&DecodedEvent> {
        self.events.iter().filter(|e| e.1 == track).collect()
    }
    /// The namespace track of the collector's namespace `id`.
    fn namespace_track(&self, id: &str) -> u64 {
        let found: Vec<u64> = self
            .descriptions
            .iter()
            .filter(|(_, d)| d.starts_with(&format!("{id};")))
            .map(|(uuid, _)| *uuid)
            .collect();
        assert_eq!(found.len(), 1, "tracks of {id}: {:?}", self.descriptions);
        found[0]
    }
}

fn export(events: Vec<Event>, options: &PerfettoOptions) -> (Decoded, ExportStats) {
    let mut out = Vec::new();
    let stats = write_perfetto(events, options, &mut out).unwrap();
    let mut decoded = Decoded {
        tracks: BTreeMap::new(),
        descriptions: BTreeMap::new(),
        events: Vec::new(),
        first_packet: Vec::new(),
    };
    let packets = decode(&out);
    assert_eq!(packets.len() as u64, stats.packets);
    for (index, (field, packet)) in packets.into_iter().enumerate() {
        assert_eq!(field, 1, "Trace.packet");
        let Value::Bytes(packet) = packet else {
            panic!("packet is not a message")
        };
        let packet = decode(&packet);
        assert_eq!(
            varint(&packet, 10),
            Some(SEQUENCE_ID),
            "one trusted sequence"
        );
        if index == 0 {
            decoded.first_packet = packet.clone();
        }
        if let Some(desc) = bytes(&packet, 60) {
            let desc = decode(&desc);
            let uuid = varint(&desc, 1).unwrap();
            let previous = decoded
                .tracks
                .insert(uuid, (string(&desc, 2).unwrap(), varint(&desc, 5)));
            assert!(previous.is_none(), "duplicate uuid {uuid}");
            if let Some(description) = string(&desc, 14) {
                decoded.descriptions.insert(uuid, description);
            }
        }
        if let Some(event) = bytes(&packet, 11) {
            assert_eq!(varint(&packet, 58), Some(3), "CLOCK_MONOTONIC");
            let event = decode(&event);
            let mut annotations = HashMap::new();
            for (field, value) in &event {
                if let (4, Value::Bytes(ann)) = (*field, value) {
                    let ann = decode(ann);
                    let value = string(&ann, 6)
                        .or_else(|| varint(&ann, 3).map(|v| v.to_string()))
                        .or_else(|| varint(&ann, 4).map(|v| (v as i64).to_string()))
                        .or_else(|| varint(&ann, 2).map(|v| (v != 0).to_string()))
                        .unwrap();
                    annotations.insert(string(&ann, 10).unwrap(), value);
                }
            }
            decoded.events.push((
                varint(&packet, 8).unwrap(),
                varint(&event, 11).unwrap(),
                varint(&event, 9).unwrap(),
                string(&event, 23).unwrap_or_default(),
                annotations,
            ));
        }
    }
    // Structure the UI needs: declared tracks, parents declared, balanced slices in order.
    let mut depth: HashMap<u64, i64> = HashMap::new();
    let mut last_ts = 0;
    for (ts, track, kind, _, _) in &decoded.events {
        assert!(
            decoded.tracks.contains_key(track),
            "event on undeclared track {track}"
        );
        assert!(*ts >= last_ts, "events sorted by time");
        last_ts = *ts;
        match kind {
            1 => *depth.entry(*track).or_default() += 1,
            2 => {
                let d = depth.entry(*track).or_default();
                *d -= 1;
                assert!(*d >= 0, "end without begin on {}", decoded.tracks[track].0);
            }
            3 => {}
            other => panic!("unexpected event type {other}"),
        }
    }
    assert!(depth.values().all(|d| *d == 0), "unbalanced: {depth:?}");
    for (name, parent) in decoded.tracks.values() {
        if let Some(parent) = parent {
            assert!(
                decoded.tracks.contains_key(parent),
                "{name} has an undeclared parent"
            );
        }
    }
    (decoded, stats)
}

const A: NsId = NsId::new(101, 4026532301);
const B: NsId = NsId::new(102, 4026532302);
const INIT: NsId = NsId::new(1, 4026531840);

fn by(ts: u64, pid: u32, comm: &str, body: EventBody) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm: Comm::from_str_lossy(comm),
        body,
    }
}

fn created(ts: u64, pid: u32, comm: &str, netns: NsId) -> Event {
    by(
        ts,
        pid,
        comm,
        EventBody::NetnsCreated(NetnsCreated {
            netns,
            parent: INIT,
            net_ptr: 0xffff_0000 + u64::from(netns.inum),
            source: CreatedBy::Unshare,
            clone_flags: 0x4000_0000,
        }),
    )
}

fn task(ts: u64, pid: u32, comm: &str, op: TaskOp, netns: NsId, prev: NsId) -> Event {
    by(
        ts,
        pid,
        comm,
        EventBody::Task(TaskNetns {
            op,
            netns,
            prev,
            thread: false,
            group_dead: op == TaskOp::Exit,
            cgroup_id: 77,
            ppid: 1,
            mnt_ns: 4026531841,
            prev_mnt_ns: 4026531841,
        }),
    )
}

fn bind_pin(path: &str) -> Pin {
    Pin::BindMount {
        path: path.into(),
        mnt_ns: 4026531841,
        holder_pid: 1,
        holder_comm: Comm::from_str_lossy("systemd"),
    }
}

#[test]
fn namespaces_get_named_tracks_with_lifetimes_and_children() {
    let events = vec![
        created(1_000, 50, "unshare", A),
        task(1_000, 50, "unshare", TaskOp::Unshare, A, INIT),
        Event::observed(
            1_500,
            EventBody::CgroupPath(CgroupPath {
                cgroup_id: 77,
                path: "/system.slice/x.scope".into(),
            }),
        ),
        Event::observed(
            2_000,
            EventBody::PinAdded(PinChange {
                netns: A,
                pin: bind_pin("/run/netns/a"),
            }),
        ),
        task(3_000, 50, "unshare", TaskOp::Exit, A, A),
        by(
            3_500,
            0,
            "",
            EventBody::Arp(ArpPacket {
                netns: A,
                dir: Direction::Tx,
                op: 1,
                ifindex: 2,
                sender_ip: Ipv4Addr::new(10, 0, 0, 1),
                sender_mac: Mac([2, 0, 0, 0, 0, 1]),
                target_ip: Ipv4Addr::new(10, 0, 0, 2),
                target_mac: Mac::default(),
                hook: Hook::Tracepoint,
            }),
        ),
        by(
            3_600,
            0,
            "",
            EventBody::Ndisc(NdiscPacket {
                netns: A,
                dir: Direction::Rx,
                hook: Hook::Tracepoint,
                icmp_type: 136,
                ifindex: 2,
                target: "fd00::2".parse().unwrap(),
                src: "fd00::2".parse().unwrap(),
                dst: "fd00::1".parse().unwrap(),
                lla: Mac([2, 0, 0, 0, 0, 2]),
                lla_option: 2,
                na_flags: 0x60,
            }),
        ),
        created(4_000, 60, "ip", B),
        // B gets a pin and a member that leaves: the collector judges it leaked.
        Event::observed(
            4_050,
            EventBody::PinAdded(PinChange {
                netns: B,
                pin: bind_pin("/run/netns/b"),
            }),
        ),
        task(4_100, 61, "sleep", TaskOp::Fork, B, B),
        task(4_200, 61, "sleep", TaskOp::Exit, B, B),
        Event::observed(
            4_500,
            EventBody::PinRemoved(PinChange {
                netns: A,
                pin: bind_pin("/run/netns/a"),
            }),
        ),
        by(
            5_000,
            0,
            "",
            EventBody::NetnsTeardown(NetnsObject {
                netns: A,
                net_ptr: 0,
                hook: Hook::Tracepoint,
            }),
        ),
        by(
            5_100,
            0,
            "",
            EventBody::NetnsFreed(NetnsObject {
                netns: A,
                net_ptr: 0,
                hook: Hook::Tracepoint,
            }),
        ),
        Event::observed(9_000, EventBody::Lost(Lost { kind: 2, count: 3 })),
    ];
    // Long enough for A to be torn down before its grace runs out, short enough for B's.
    let options = PerfettoOptions {
        collector: CollectorConfig {
            grace_ns: 3_000,
            ..Default::default()
        },
        clock: Some(ClockBase {
            monotonic_ns: 0,
            realtime_ns: 1_700_000_000_000_000_000,
        }),
        ended_at_ns: None,
    };
    let (decoded, stats) = export(events.clone(), &options);
    assert_export_agrees_with_report(events, options.collector.clone());
    assert_eq!(stats.namespaces, 2);
    assert_eq!(stats.events, 15);
    assert_eq!(stats.findings, 1);

    let root = decoded.track_named("network namespaces");
    let a = decoded.track_named("netns 4026532301 (created by unshare[50])");
    let b = decoded.track_named("LEAKED: netns 4026532302 (created by ip[60])");
    assert_eq!(decoded.tracks[&a].1, Some(root));
    assert_eq!(decoded.tracks[&b].1, Some(root));
    let mut children = decoded.children(a);
    children.sort();
    assert_eq!(
        children,
        [
            "ARP / neighbours",
            "member unshare[50]",
            "pin: bind mount /run/netns/a"
        ]
    );

    // A's lifetime: creation to teardown, with the wall clock on the begin, and the
    // collector's states inside it.
    let lifetime: Vec<_> = decoded.on(a).into_iter().filter(|e| e.2 != 3).collect();
    assert_eq!(
        (lifetime[0].0, lifetime[0].2, lifetime[0].3.as_str()),
        (1_000, 1, "netns 4026532301")
    );
    assert_eq!(lifetime[0].4["comm"], "unshare");
    assert_eq!(lifetime[0].4["wall_time"], "2023-11-14T22:13:20.000001000Z");
    let end = lifetime.last().unwrap();
    assert_eq!((end.0, end.2), (5_000, 2));
    assert_eq!(end.4["ended_by"], "teardown");
    let states: Vec<_> = lifetime[1..]
        .iter()
        .filter(|e| e.2 == 1)
        .map(|e| (e.0, e.3.as_str()))
        .collect();
    assert_eq!(states, [(1_000, "alive"), (3_000, "draining")]);

    // Member: unshare → exit, with the cgroup path resolved from a later CgroupPath event.
    let member = decoded.track_named("member unshare[50]");
    let spans: Vec<_> = decoded.on(member).iter().map(|e| (e.0, e.2)).collect();
    assert_eq!(spans, [(1_000, 1), (3_000, 2)]);
    assert_eq!(decoded.on(member)[0].4["cgroup"], "/system.slice/x.scope");

    let pin = decoded.track_named("pin: bind mount /run/netns/a");
    let spans: Vec<_> = decoded.on(pin).iter().map(|e| (e.0, e.2)).collect();
    assert_eq!(spans, [(2_000, 1), (4_500, 2)]);
    assert_eq!(decoded.on(pin)[0].4["path"], "/run/netns/a");

    let arp = decoded.on(decoded.track_named("ARP / neighbours"));
    assert_eq!(arp.len(), 2);
    assert_eq!(arp[0].3, "ARP request tx 10.0.0.1 → 10.0.0.2");
    assert_eq!(arp[0].4["sender_mac"], "02:00:00:00:00:01");
    assert_eq!(arp[1].3, "ND advertisement rx fd00::2 → fd00::1");
    assert_eq!(arp[1].4["lla"], "02:00:00:00:00:02");
    assert_eq!(arp[1].4["na_flags"], "96");

    // B never ends: its lifetime closes at the trace end, and the collector's finding (due
    // when the grace after its member's exit ran out) is an instant.
    let b_events = decoded.on(b);
    assert_eq!(b_events.last().unwrap().0, 9_000);
    let finding = b_events
        .iter()
        .find(|e| e.3 == "finding: leaked_netns")
        .unwrap();
    assert_eq!((finding.0, finding.2), (7_200, 3));
    assert!(
        finding.4["summary"].contains("leaked: last member 61 (sleep)"),
        "{:?}",
        finding.4
    );
    // The 3 records lost at the end may have been about B: the collector says so.
    assert_eq!(finding.4["uncertain"], "true");
    assert!(
        finding.4["why_uncertain"].starts_with("events lost while the evidence was gathered"),
        "{:?}",
        finding.4
    );
    let b_states: Vec<_> = b_events
        .iter()
        .filter(|e| e.2 == 1)
        .map(|e| e.3.as_str())
        .collect();
    assert_eq!(
        b_states,
        [
            "netns 4026532302",
            "persistent",
            "alive",
            "draining",
            "leaked"
        ]
    );

    let tracer = decoded.track_named("tracer");
    assert_eq!(decoded.on(tracer)[0].3, "lost 3 records");

    // First packet: clock snapshot making MONOTONIC the trace clock, REALTIME alongside.
    let first = &decoded.first_packet;
    assert_eq!(varint(first, 13), Some(1), "SEQ_INCREMENTAL_STATE_CLEARED");
    let snapshot = decode(&bytes(first, 6).unwrap());
    assert_eq!(varint(&snapshot, 2), Some(3));
    let clocks: Vec<(u64, u64)> = snapshot
        .iter()
        .filter_map(|(f, v)| match v {
            Value::Bytes(c) if *f == 1 => {
                let c = decode(c);
                Some((varint(&c, 1).unwrap(), varint(&c, 2).unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(clocks, [(3, 1_000), (1, 1_700_000_000_000_001_000)]);
}

#[test]
fn reused_inums_become_separate_tracks() {
    let first = NsId::new(201, 4026532400);
    let second = NsId::new(202, 4026532400);
    let events = vec![
        created(100, 1, "a", first),
        by(
            200,
            0,
            "",
            EventBody::NetnsFreed(NetnsObject {
                netns: first,
                net_ptr: 0,
                hook: Hook::Tracepoint,
            }),
        ),
        created(300, 2, "b", second),
        // Inum-only userspace observation: belongs to the live one.
        Event::observed(
            400,
            EventBody::PinAdded(PinChange {
                netns: NsId::new(0, 4026532400),
                pin: bind_pin("/run/netns/b"),
            }),
        ),
    ];
    let (decoded, stats) = export(events.clone(), &PerfettoOptions::default());
    assert_export_agrees_with_report(events, CollectorConfig::default());
    assert_eq!(stats.namespaces, 2);
    let first_track = decoded.track_named("netns 4026532400 (created by a[1])");
    let second_track = decoded.track_named("netns 4026532400 (created by b[2])");
    assert!(decoded.children(first_track).is_empty());
    assert_eq!(
        decoded.children(second_track),
        ["pin: bind mount /run/netns/b"]
    );
}

#[test]
fn snapshot_namespaces_start_at_the_snapshot_and_members_left_unseen_start_there_too() {
    let snapshot = Snapshot {
        phase: SnapshotPhase::Start,
        init_netns: INIT,
        init_mnt_ns: 0,
        namespaces: vec![
            SnapNamespace {
                netns: INIT,
                members: vec![],
                pins: vec![],
                interfaces: vec![],
                interfaces_error: None,
            },
            SnapNamespace {
                netns: A,
                members: vec![Member {
                    pid: 70,
                    tgid: 70,
                    comm: Comm::from_str_lossy("pause"),
                    cgroup: "/kubepods/p".into(),
                }],
                pins: vec![bind_pin("/run/netns/cni-1")],
                interfaces: vec![Interface {
                    name: "eth0".into(),
                    ifindex: 3,
                    mac: Mac([2, 0, 0, 0, 0, 9]),
                    ipv4: vec![(Ipv4Addr::new(10, 1, 0, 5), 24)],
                    ipv6: vec![
                        crate::model::Ipv6Address::new(
                            "fd00:1::5".parse().unwrap(),
                            64,
                            None,
                            true,
                        ),
                        crate::model::Ipv6Address::new(
                            "fe80::9".parse().unwrap(),
                            64,
                            Some(crate::model::DadState::Tentative),
                            false,
                        ),
                    ],
                }],
                interfaces_error: None,
            },
        ],
    };
    let events = vec![
        Event::observed(10, EventBody::Snapshot(Box::new(snapshot))),
        // A process nobody saw join leaves.
        task(50, 80, "sleep", TaskOp::Exit, A, A),
        by(
            60,
            0,
            "",
            EventBody::NetDev(NetDev {
                op: NetDevOp::Move,
                netns: INIT,
                ifindex: 3,
                other: A,
                mac: Mac([2, 0, 0, 0, 0, 9]),
                name: "eth0".into(),
            }),
        ),
    ];
    let (decoded, _) = export(events.clone(), &PerfettoOptions::default());
    assert_export_agrees_with_report(events, CollectorConfig::default());
    decoded.track_named("netns 4026531840 (init)");
    let a = decoded.track_named("netns 4026532301 (existed at trace start)");
    assert_eq!(decoded.on(a)[0].0, 10);

    let sleeper = decoded.on(decoded.track_named("member sleep[80]"));
    assert_eq!(
        sleeper.iter().map(|e| (e.0, e.2)).collect::<Vec<_>>(),
        [(10, 1), (50, 2)]
    );
    let pause = decoded.on(decoded.track_named("member pause[70]"));
    assert_eq!(pause[0].4["cgroup"], "/kubepods/p");

    // eth0 lived in A from the snapshot until it moved to init at 60.
    let devices: Vec<u64> = decoded
        .tracks
        .iter()
        .filter(|(_, (name, _))| name == "dev eth0 (ifindex 3)")
        .map(|(uuid, _)| *uuid)
        .collect();
    assert_eq!(devices.len(), 2);
    let spans: HashSet<Vec<(u64, u64)>> = devices
        .iter()
        .map(|d| decoded.on(*d).iter().map(|e| (e.0, e.2)).collect())
        .collect();
    assert!(spans.contains(&vec![(10, 1), (60, 2)]), "{spans:?}");
    assert!(spans.contains(&vec![(60, 1), (60, 2)]), "{spans:?}");
    let in_a = decoded.on(devices
        .iter()
        .copied()
        .find(|d| decoded.tracks[d].1 == Some(a))
        .unwrap());
    assert_eq!(in_a[0].4["ipv4"], "10.1.0.5/24");
    assert_eq!(
        in_a[0].4["ipv6"],
        "fd00:1::5/64 nodad, fe80::9/64 tentative"
    );
}

#[test]
fn empty_input_is_still_a_valid_trace() {
    let (decoded, stats) = export(vec![], &PerfettoOptions::default());
    assert_eq!(stats.namespaces, 0);
    assert_eq!(decoded.tracks.len(), 1);
    assert!(decoded.events.is_empty());
}

/// What the report says about `events` is what the timeline shows: one namespace track per
/// namespace it lists, with its members and pins, and its findings.
fn assert_export_agrees_with_report(events: Vec<Event>, collector: CollectorConfig) {
    let mut replayed = crate::collector::Collector::new(CollectorConfig {
        notices: false,
        ..collector.clone()
    });
    let end = events.iter().map(|e| e.ts_ns).max().unwrap_or(0);
    for event in &events {
        replayed.handle(event);
    }
    replayed.finish(end);
    let report = crate::report::Report::build(&replayed, &Default::default());
    let options = PerfettoOptions {
        collector,
        ..Default::default()
    };
    let (decoded, stats) = export(events, &options);
    assert_eq!(stats.namespaces, report.namespaces.len() as u64);
    assert_eq!(stats.findings, report.findings.len() as u64);
    for ns in &report.namespaces {
        let track = decoded.namespace_track(&ns.id);
        let children = decoded.children(track);
        // One track per process, named by its thread group id.
        let mut members: Vec<String> = Vec::new();
        for m in &ns.members {
            let tgid = format!("[{}]", m.tgid);
            if !members.contains(&tgid) {
                members.push(tgid);
            }
        }
        let shown: Vec<String> = children
            .iter()
            .filter(|c| c.starts_with("member "))
            .filter_map(|c| c.rfind('[').map(|at| c[at..].to_string()))
            .collect();
        assert_eq!(shown, members, "members of {}", ns.id);
        for pin in &ns.pins {
            let path = pin.path.as_deref().unwrap_or_default();
            assert!(
                children
                    .iter()
                    .any(|c| *c == format!("pin: bind mount {path}")),
                "{} pinned at {path}: {children:?}",
                ns.id
            );
        }
        let findings = report.findings.iter().filter(|f| f.netns == ns.id).count();
        let instants = decoded
            .on(track)
            .iter()
            .filter(|e| e.3.starts_with("finding: "))
            .count();
        assert_eq!(instants, findings, "findings of {}", ns.id);
    }
}

#[test]
fn export_and_report_agree_on_which_life_an_event_belongs_to() {
    let torn_down = NsId::new(301, 4026532500);
    let next = NsId::new(302, 4026532500);
    let unseen = NsId::new(303, 4026532600);
    let events = vec![
        created(100, 1, "a", torn_down),
        by(
            200,
            0,
            "",
            EventBody::NetnsTeardown(NetnsObject {
                netns: torn_down,
                net_ptr: 0,
                hook: Hook::Fentry,
            }),
        ),
        // An observation that lags behind: the inum already names the next life, whose
        // creation record comes after. The old export's own lookup put the pin on the
        // torn-down namespace (not freed yet); the collector puts it on the next life.
        Event::observed(
            300,
            EventBody::PinAdded(PinChange {
                netns: NsId::new(0, 4026532500),
                pin: bind_pin("/run/netns/next"),
            }),
        ),
        created(350, 2, "b", next),
        by(
            400,
            0,
            "",
            EventBody::NetnsFreed(NetnsObject {
                netns: torn_down,
                net_ptr: 0,
                hook: Hook::Fentry,
            }),
        ),
        // An unshare whose creation record was lost: the collector knows who created it, the
        // old export showed a namespace of unknown origin.
        task(500, 80, "unshare", TaskOp::Unshare, unseen, INIT),
    ];
    let (decoded, _) = export(events.clone(), &PerfettoOptions::default());
    let first = decoded.track_named("netns 4026532500 (created by a[1])");
    let second = decoded.track_named("netns 4026532500 (created by b[2])");
    assert!(decoded.children(first).is_empty());
    assert_eq!(
        decoded.children(second),
        ["pin: bind mount /run/netns/next"]
    );
    decoded.track_named("netns 4026532600 (created by unshare[80])");
    assert_export_agrees_with_report(events, CollectorConfig::default());
}

#[test]
fn each_cni_call_is_marked_on_the_track_of_the_namespace_its_path_named() {
    let cni = |ts: u64, pid: u32, comm: &str, verb: &str, path: &str| {
        let mut e = by(
            ts,
            pid,
            comm,
            EventBody::CniExec(Box::new(CniExec {
                netns: INIT,
                verb: verb.into(),
                container_id: Some("c0ffee".into()),
                netns_path: Some(path.into()),
                if_name: Some("eth0".into()),
                cni_args: Some("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web".into()),
                path: format!("/usr/lib/cni/{comm}"),
                truncated: CniTruncated::default(),
            })),
        );
        e.tgid = pid;
        e
    };
    let exit = |ts: u64, pid: u32, wait_status: i32| {
        by(
            ts,
            pid,
            "bridge",
            EventBody::CniExit(CniExit {
                wait_status,
                parent: 90,
            }),
        )
    };
    let events = vec![
        created(1_000, 50, "unshare", A),
        task(1_000, 50, "unshare", TaskOp::Unshare, A, INIT),
        cni(2_000, 70, "bridge", "ADD", "/proc/50/ns/net"),
        exit(2_500, 70, 0),
        task(3_000, 50, "unshare", TaskOp::Exit, A, A),
        // The DEL after the pause died: still A's (the namespace its pid was last in).
        cni(4_000, 71, "bridge", "DEL", "/proc/50/ns/net"),
        exit(4_500, 71, 1 << 8),
        // A path naming nothing known goes outside the namespaces.
        cni(5_000, 72, "bridge", "DEL", "/run/netns/unknown"),
    ];
    let (d, _) = export(events, &PerfettoOptions::default());
    let track = d.namespace_track("net:[4026532301]#101");
    let marks: Vec<(u64, &str)> = d
        .on(track)
        .iter()
        .filter(|e| e.3.starts_with("CNI"))
        .map(|e| (e.0, e.3.as_str()))
        .collect();
    assert_eq!(
        marks,
        vec![
            (2_000, "CNI ADD bridge"),
            (2_500, "CNI ADD bridge: exit 0"),
            (4_000, "CNI DEL bridge"),
            (4_500, "CNI DEL bridge: exit 1"),
        ]
    );
    let end = d
        .on(track)
        .into_iter()
        .find(|e| e.0 == 4_500 && e.3.starts_with("CNI"))
        .unwrap();
    assert_eq!(end.4["netns_path"], "/proc/50/ns/net");
    assert_eq!(end.4["started_at_ns"], "4000");
    assert_eq!(end.4["pod"], "shop/web");
    assert!(
        end.4["target"].starts_with("nothing: process 50 had left"),
        "{:?}",
        end.4
    );
    let outside = d.track_named("outside tracked namespaces");
    assert!(
        d.on(outside)
            .iter()
            .any(|e| e.3 == "CNI DEL bridge" && e.0 == 5_000),
        "{:?}",
        d.on(outside)
    );
}
