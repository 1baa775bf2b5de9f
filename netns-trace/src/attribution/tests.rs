//! Attribution through the collector and the report: events in, `owner` out.
use crate::collector::{Collector, CollectorConfig, FindingDetail, NsState};
use crate::model::{CgroupPath, MemberCgroup, NetnsCreated, PinChange, TaskNetns};
use crate::model::{
    Comm, Event, EventBody, NsId, Pin, SnapNamespace, Snapshot, SnapshotPhase, TaskOp,
};
use crate::report::{Report, ReportContext};

use super::{CniCacheEntry, Owner, read_cni_cache_dir};

const S: u64 = 1_000_000_000;
const INIT: NsId = NsId::new(1, 4026531840);
const POD: NsId = NsId::new(77, 4026532300);
const HOST_MNT: u32 = 4026531841;
const UID: &str = "5f8a9c2e-3b1d-4e7f-a6c8-9d0e1f2a3b4c";
const CID: &str = "3f9b2c7d1e4a5b6c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";
const PIN: &str = "/var/run/netns/cni-7c1e2d4b-9a0f-4b3e-8d61-2f5a6b7c8d9e";

fn kubelet_cgroup() -> String {
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope",
        UID.replace('-', "_")
    )
}

/// The fixture cache entries: cbr0 for container CID at PIN.
fn cni_entries() -> Vec<CniCacheEntry> {
    read_cni_cache_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/attribution/cni-results"),
    )
}

fn snapshot(phase: SnapshotPhase, namespaces: Vec<SnapNamespace>) -> Event {
    Event::observed(
        S,
        EventBody::Snapshot(Box::new(Snapshot {
            phase,
            namespaces,
            init_netns: INIT,
            init_mnt_ns: 0,
        })),
    )
}

fn task(ts: u64, pid: u32, op: TaskOp, netns: NsId, prev: NsId, cgroup_id: u64) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm: Comm::from_str_lossy("pause"),
        body: EventBody::Task(TaskNetns {
            op,
            netns,
            prev,
            thread: false,
            group_dead: op == TaskOp::Exit,
            cgroup_id,
            ppid: 1,
            mnt_ns: HOST_MNT,
            prev_mnt_ns: HOST_MNT,
        }),
    }
}

fn pin_added(ts: u64) -> Event {
    Event::observed(
        ts,
        EventBody::PinAdded(PinChange {
            netns: POD,
            pin: Pin::BindMount {
                path: PIN.into(),
                mnt_ns: HOST_MNT,
                holder_pid: 1,
                holder_comm: Comm::from_str_lossy("systemd"),
            },
        }),
    )
}

/// containerd's thread makes the namespace (and leaves it), as CRI does.
fn created(ts: u64) -> Event {
    Event {
        ts_ns: ts,
        pid: 300,
        tgid: 300,
        comm: Comm::from_str_lossy("containerd"),
        body: EventBody::NetnsCreated(NetnsCreated {
            netns: POD,
            parent: INIT,
            net_ptr: 0xffff_8880_0000_1000,
            source: crate::model::CreatedBy::Clone,
            clone_flags: 0x4000_0000,
        }),
    }
}

fn collector() -> Collector {
    Collector::new(CollectorConfig {
        grace_ns: 2 * S,
        keep_destroyed: 100,
        notices: false,
    })
}

/// The live story: the pause process joins (its cgroup read while it is alive), the pin
/// and the CNI cache appear, the pause is killed, the namespace leaks. The leak names the
/// pod and the container, and the report's owner has every source merged.
#[test]
fn a_leaked_sandbox_keeps_the_owner_its_pause_process_had() {
    let mut c = collector();
    c.handle(&snapshot(SnapshotPhase::Start, vec![]));
    c.handle(&created(2 * S));
    c.handle(&task(2 * S, 400, TaskOp::Setns, POD, INIT, 9001));
    c.handle(&Event {
        body: EventBody::MemberCgroup(MemberCgroup {
            netns: POD,
            path: kubelet_cgroup(),
        }),
        ..task(2 * S, 400, TaskOp::Setns, POD, INIT, 9001)
    });
    c.handle(&pin_added(2 * S + 1));
    for e in cni_entries() {
        c.handle(&Event::observed(3 * S, EventBody::CniResult(Box::new(e))));
    }
    c.handle(&task(10 * S, 400, TaskOp::Exit, POD, POD, 9001));
    c.finish(20 * S);

    let ns = c.namespaces().find(|n| n.inum == POD.inum).unwrap();
    assert_eq!(ns.state, NsState::Leaked);
    let o = &ns.owner;
    assert_eq!(o.pod_uid.as_deref(), Some(UID));
    assert_eq!(o.qos.as_deref(), Some("burstable"));
    assert_eq!(o.container_id.as_deref(), Some(CID));
    assert_eq!(o.runtime.as_deref(), Some("containerd"));
    assert_eq!(o.cgroup.as_deref(), Some(kubelet_cgroup().as_str()));
    assert_eq!(o.cni_network.as_deref(), Some("cbr0"));
    assert_eq!(
        o.sandbox_id.as_deref(),
        Some("7c1e2d4b-9a0f-4b3e-8d61-2f5a6b7c8d9e")
    );
    assert_eq!(o.pod_name.as_deref(), Some("web-7d4b9c-x2x8q"));

    let f = c
        .findings()
        .iter()
        .find(|f| f.kind() == "leaked_netns")
        .unwrap();
    assert!(
        f.summary.contains(&format!("pod {UID}"))
            && f.summary.contains(&format!("container {CID}")),
        "{}",
        f.summary
    );
    let FindingDetail::LeakedNetns { owner, .. } = &f.detail else {
        panic!()
    };
    assert_eq!(owner.as_deref(), Some(o));

    // The member span shows the cgroup too, and the report carries the owner.
    assert_eq!(
        ns.members[0].cgroup_path.as_deref(),
        Some(kubelet_cgroup().as_str())
    );
    let r = Report::build(&c, &ReportContext::default());
    let v = serde_json::to_value(&r).unwrap();
    let view = v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["inum"] == POD.inum)
        .unwrap();
    assert_eq!(view["owner"]["pod_uid"], UID);
    assert_eq!(view["owner"]["container_id"], CID);
    assert_eq!(view["owner"]["cni_network"], "cbr0");
    let init = v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["inum"] == INIT.inum)
        .unwrap();
    assert!(init["owner"].is_null(), "the host namespace has no owner");

    let mut text = Vec::new();
    r.render_text(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("OWNER"), "{text}");
    assert!(
        text.contains(&format!("pod {UID} ctr {}", &CID[..12])),
        "{text}"
    );
    assert!(
        text.contains(&format!("owner: pod {UID}, name default/web-7d4b9c-x2x8q")),
        "{text}"
    );
}

/// What `scan` sees: a memberless namespace behind a pin, and the CNI cache. The pin path
/// finds the cache entry, which names the pod and the sandbox container.
#[test]
fn scan_attributes_a_memberless_namespace_through_its_pin_and_the_cni_cache() {
    let mut c = collector();
    c.handle(&snapshot(
        SnapshotPhase::Start,
        vec![SnapNamespace {
            netns: POD,
            members: vec![],
            pins: vec![Pin::BindMount {
                path: PIN.trim_start_matches("/var").into(),
                mnt_ns: HOST_MNT,
                holder_pid: 1,
                holder_comm: Comm::from_str_lossy("systemd"),
            }],
            interfaces: vec![],
            interfaces_error: None,
        }],
    ));
    for e in cni_entries() {
        c.handle(&Event::observed(S, EventBody::CniResult(Box::new(e))));
    }
    c.finish(10 * S);
    let ns = c.namespaces().find(|n| n.inum == POD.inum).unwrap();
    assert_eq!(ns.state, NsState::LeakSuspect);
    assert_eq!(ns.owner.pod_uid.as_deref(), Some(UID));
    assert_eq!(ns.owner.container_id.as_deref(), Some(CID));
    assert_eq!(ns.owner.runtime.as_deref(), Some("containerd"));
    assert_eq!(ns.owner.cgroup, None, "no member, no cgroup");
    let f = &c.findings()[0];
    assert!(f.summary.contains(&format!("pod {UID}")), "{}", f.summary);
}

/// An owner learnt after the verdict (the CNI cache read at the end) updates the finding.
#[test]
fn a_late_owner_updates_the_raised_finding() {
    let mut c = collector();
    c.handle(&snapshot(SnapshotPhase::Start, vec![]));
    c.handle(&created(2 * S));
    c.handle(&task(2 * S, 400, TaskOp::Setns, POD, INIT, 0));
    c.handle(&pin_added(2 * S));
    c.handle(&task(5 * S, 400, TaskOp::Exit, POD, POD, 0));
    c.tick(10 * S);
    let before = c.findings()[0].summary.clone();
    assert!(
        before.starts_with(&format!("{POD} (sandbox 7c1e2d4b")),
        "{before}"
    );
    for e in cni_entries() {
        c.handle(&Event::observed(11 * S, EventBody::CniResult(Box::new(e))));
    }
    let after = &c.findings()[0].summary;
    assert!(
        after.starts_with(&format!(
            "{POD} (pod {UID} (default/web-7d4b9c-x2x8q) container {CID}) leaked:"
        )),
        "{after}"
    );
}

/// A cgroup id resolved after the join still attributes its member; a more telling member
/// replaces a host-service one, and a later app container does not replace the pause.
#[test]
fn cgroup_ids_resolve_late_and_the_first_pod_member_wins() {
    let mut c = collector();
    c.handle(&snapshot(SnapshotPhase::Start, vec![]));
    c.handle(&task(2 * S, 300, TaskOp::Setns, POD, INIT, 11));
    c.handle(&Event::observed(
        2 * S,
        EventBody::CgroupPath(CgroupPath {
            cgroup_id: 11,
            path: "/system.slice/containerd.service".into(),
        }),
    ));
    let owner = |c: &Collector| {
        c.namespaces()
            .find(|n| n.inum == POD.inum)
            .unwrap()
            .owner
            .clone()
    };
    assert_eq!(
        owner(&c).cgroup.as_deref(),
        Some("/system.slice/containerd.service")
    );
    c.handle(&Event::observed(
        2 * S,
        EventBody::CgroupPath(CgroupPath {
            cgroup_id: 12,
            path: kubelet_cgroup(),
        }),
    ));
    c.handle(&task(3 * S, 400, TaskOp::Setns, POD, INIT, 12));
    assert_eq!(owner(&c).container_id.as_deref(), Some(CID));
    c.handle(&Event {
        body: EventBody::MemberCgroup(MemberCgroup {
            netns: POD,
            path: kubelet_cgroup().replace(CID, &"e".repeat(64)),
        }),
        ..task(4 * S, 500, TaskOp::Setns, POD, INIT, 0)
    });
    assert_eq!(
        owner(&c).container_id.as_deref(),
        Some(CID),
        "the pause stays the owner"
    );
}

/// Both new records survive a trace write and read, and a replay gives the same owner.
#[test]
fn attribution_events_round_trip_through_a_trace() {
    use crate::trace::{ClockBase, TraceEnd, TraceMeta, TraceReader, TraceWriter};
    let mut events = vec![
        snapshot(SnapshotPhase::Start, vec![]),
        task(2 * S, 400, TaskOp::Setns, POD, INIT, 9001),
        Event {
            body: EventBody::MemberCgroup(MemberCgroup {
                netns: POD,
                path: kubelet_cgroup(),
            }),
            ..task(2 * S, 400, TaskOp::Setns, POD, INIT, 9001)
        },
        pin_added(2 * S),
    ];
    events.extend(
        cni_entries()
            .into_iter()
            .map(|e| Event::observed(3 * S, EventBody::CniResult(Box::new(e)))),
    );
    events.push(task(4 * S, 400, TaskOp::Exit, POD, POD, 9001));
    let meta = TraceMeta {
        hostname: "node".into(),
        kernel_release: "6.1.0".into(),
        boot_id: String::new(),
        clock: ClockBase {
            monotonic_ns: S,
            realtime_ns: 1_790_000_000 * S,
        },
        probe_mode: "tracepoint".into(),
        probes: vec![],
        netns_trace_version: "test".into(),
        started_at_ns: S,
        notes: vec![],
    };
    let mut w = TraceWriter::from_writer(Vec::new(), &meta).unwrap();
    for e in &events {
        w.write_event(e).unwrap();
    }
    let bytes = w
        .finish_into_inner(&TraceEnd {
            events_written: 0,
            lost: vec![],
            ended_at_ns: 5 * S,
            clean_shutdown: true,
        })
        .unwrap();
    let back: Vec<Event> = TraceReader::from_bytes(bytes).unwrap().collect();
    assert_eq!(back, events);

    let replay = |evs: &[Event]| {
        let mut c = collector();
        for e in evs {
            c.handle(e);
        }
        c.finish(10 * S);
        c.namespaces()
            .find(|n| n.inum == POD.inum)
            .unwrap()
            .owner
            .clone()
    };
    assert_eq!(replay(&back), replay(&events));
    assert_eq!(replay(&back).pod_uid.as_deref(), Some(UID));
}

/// The live flake's story (a pause that lived 11 ms, read 12 ms after it unshared): /proc
/// had nothing by then, but the cgroup id in its task record was looked up and reported as a
/// `CgroupPath` right after the join. The leak names the pod and container from it.
#[test]
fn a_member_gone_before_its_cgroup_was_read_is_attributed_through_its_cgroup_id() {
    let mut c = collector();
    c.handle(&snapshot(SnapshotPhase::Start, vec![]));
    c.handle(&created(2 * S));
    c.handle(&task(2 * S, 400, TaskOp::Unshare, POD, INIT, 2343));
    c.handle(&Event::observed(
        2 * S,
        EventBody::CgroupPath(CgroupPath {
            cgroup_id: 2343,
            path: kubelet_cgroup(),
        }),
    ));
    c.handle(&pin_added(2 * S + 1));
    c.handle(&task(2 * S + 11_000_000, 400, TaskOp::Exit, POD, POD, 2343));
    c.finish(20 * S);
    let ns = c.namespaces().find(|n| n.inum == POD.inum).unwrap();
    assert_eq!(ns.state, NsState::Leaked);
    assert_eq!(ns.owner.pod_uid.as_deref(), Some(UID));
    assert_eq!(ns.owner.qos.as_deref(), Some("burstable"));
    assert_eq!(ns.owner.container_id.as_deref(), Some(CID));
    assert_eq!(ns.owner.cgroup.as_deref(), Some(kubelet_cgroup().as_str()));
    assert_eq!(
        ns.members[0].cgroup_path.as_deref(),
        Some(kubelet_cgroup().as_str()),
        "the member's span shows the path its id resolved to"
    );
}

/// runc exec: the process joins from the runtime's cgroup and is moved into the container's
/// just after; the enricher reads it again and the later, more telling path wins. It stays
/// the owner after the process died.
#[test]
fn a_member_moved_into_its_container_after_joining_ends_up_the_owner() {
    let mut c = collector();
    c.handle(&snapshot(SnapshotPhase::Start, vec![]));
    c.handle(&created(2 * S));
    c.handle(&task(2 * S, 400, TaskOp::Setns, POD, INIT, 0));
    let read = |ts: u64, path: String| Event {
        body: EventBody::MemberCgroup(MemberCgroup { netns: POD, path }),
        ..task(ts, 400, TaskOp::Setns, POD, INIT, 0)
    };
    c.handle(&read(2 * S, "/system.slice/containerd.service".into()));
    c.handle(&pin_added(2 * S + 1));
    c.handle(&read(2 * S + S / 2, kubelet_cgroup()));
    c.handle(&task(5 * S, 400, TaskOp::Exit, POD, POD, 0));
    c.finish(20 * S);
    let ns = c.namespaces().find(|n| n.inum == POD.inum).unwrap();
    assert_eq!(ns.state, NsState::Leaked);
    assert_eq!(ns.owner.container_id.as_deref(), Some(CID));
    assert_eq!(ns.owner.cgroup.as_deref(), Some(kubelet_cgroup().as_str()));
    assert_eq!(
        ns.members[0].cgroup_path.as_deref(),
        Some(kubelet_cgroup().as_str())
    );
}

/// containerd writes a `cni-loopback` entry (`lo`) beside the pod network's (`eth0`); the
/// pod's network is the latter, whichever entry is read first.
#[test]
fn the_pod_network_wins_over_the_loopback_attachment_in_either_order() {
    let entry = |network: &str, if_name: &str| CniCacheEntry {
        container_id: CID.into(),
        if_name: if_name.into(),
        network_name: network.into(),
        config_name: None,
        netns_path: Some(PIN.into()),
        ips: vec![],
        pod_namespace: None,
        pod_name: None,
        pod_uid: None,
    };
    let (lo, eth0) = (entry("cni-loopback", "lo"), entry("cbr0", "eth0"));
    for order in [[&lo, &eth0], [&eth0, &lo]] {
        let mut owner = Owner::default();
        for e in order {
            owner.merge_cni(e);
        }
        assert_eq!(owner.cni_network.as_deref(), Some("cbr0"), "{order:?}");
    }
    let mut only_lo = Owner::default();
    only_lo.merge_cni(&lo);
    assert_eq!(only_lo.cni_network.as_deref(), Some("cni-loopback"));
}
