//! The CNI GC dry run from the event sequences a runtime's pods produce in tracepoint mode
//! (pause unshares, runtime pins or passes /proc/PID/ns/net, plugins run, libcni writes the
//! cache entry after the ADD and removes it after a DEL that succeeded), and from a `scan`
//! (one snapshot, then the cache).
use super::*;
use crate::collector::CollectorConfig;
use crate::collector::test_events::{
    GRACE, INIT, MS, S, bind_mount_pin, by_process as ev, collector, pin,
    start_snapshot as snapshot, task_body as task,
};
use crate::model::{
    CniExec, CniExit, CniResultGone, CniTruncated, Comm, CreatedBy, Event, EventBody, Hook,
    NetnsCreated, NetnsObject, NsId, PinChange, SnapNamespace, TaskOp,
};

const NODE: NsId = NsId::new(20, 4026532020);
const POD: NsId = NsId::new(21, 4026532021);
const PIN: &str = "/run/netns/cni-5b0e8a2c-3f64-4d0b-9a51-0c1e7d2f9b44";
const SANDBOX: &str = "aaaa0001";
const PAUSE: u32 = 100;

/// The pause (`unshare --net sleep infinity`, pid [`PAUSE`]) making [`POD`].
fn pause_starts(c: &mut Collector, ts: u64) {
    c.handle(&ev(
        ts,
        PAUSE,
        "unshare",
        EventBody::NetnsCreated(NetnsCreated {
            netns: POD,
            parent: INIT,
            net_ptr: 0xffff_0021,
            source: CreatedBy::Unshare,
            clone_flags: 0x4000_0000,
        }),
    ));
    c.handle(&ev(ts, PAUSE, "unshare", task(TaskOp::Unshare, POD, INIT)));
}

fn pause_dies(c: &mut Collector, ts: u64) {
    c.handle(&ev(ts, PAUSE, "sleep", task(TaskOp::Exit, POD, POD)));
}

fn unpin(c: &mut Collector, ts: u64, path: &str) {
    c.handle(&Event::observed(
        ts,
        EventBody::PinRemoved(PinChange {
            netns: POD,
            pin: bind_mount_pin(path),
        }),
    ));
}

fn teardown(c: &mut Collector, ts: u64) {
    c.handle(&Event::observed(
        ts,
        EventBody::NetnsTeardown(NetnsObject {
            netns: POD,
            net_ptr: 0xffff_0021,
            hook: Hook::Fentry,
        }),
    ));
}

/// The runtime runs `bridge` (pid `pid`) with `verb` for eth0 of [`SANDBOX`]; it exits
/// with `code` 10 ms later.
fn bridge(c: &mut Collector, ts: u64, pid: u32, verb: &str, netns_path: &str, code: i32) {
    c.handle(&ev(
        ts,
        pid,
        "bridge",
        EventBody::CniExec(Box::new(CniExec {
            netns: NODE,
            verb: verb.into(),
            container_id: Some(SANDBOX.into()),
            netns_path: Some(netns_path.into()),
            if_name: Some("eth0".into()),
            cni_args: Some(format!(
                "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;K8S_POD_UID=uid-{SANDBOX}"
            )),
            path: "/opt/cni/bin/bridge".into(),
            truncated: CniTruncated::default(),
        })),
    ));
    c.handle(&ev(
        ts + 10 * MS,
        pid,
        "bridge",
        EventBody::CniExit(CniExit {
            wait_status: code << 8,
            parent: 1,
        }),
    ));
}

fn entry(netns_path: Option<&str>) -> CniCacheEntry {
    CniCacheEntry {
        container_id: SANDBOX.into(),
        if_name: "eth0".into(),
        network_name: "cbr0".into(),
        config_name: Some("cbr0".into()),
        netns_path: netns_path.map(str::to_string),
        ips: vec![CniIp {
            address: "10.244.1.17".parse().unwrap(),
            prefix_len: 24,
            gateway: Some("10.244.1.1".parse().unwrap()),
        }],
        pod_namespace: Some("shop".into()),
        pod_name: Some("web".into()),
        pod_uid: Some(format!("uid-{SANDBOX}")),
    }
}

/// libcni writes the entry once the ADD returned.
fn cached(c: &mut Collector, ts: u64, netns_path: Option<&str>) {
    c.handle(&Event::observed(
        ts,
        EventBody::CniResult(Box::new(entry(netns_path))),
    ));
}

/// ... and removes it once a DEL succeeded.
fn uncached(c: &mut Collector, ts: u64) {
    c.handle(&Event::observed(
        ts,
        EventBody::CniResultGone(CniResultGone {
            network_name: "cbr0".into(),
            container_id: SANDBOX.into(),
            if_name: "eth0".into(),
        }),
    ));
}

fn id(c: &Collector) -> String {
    c.namespaces().find(|n| n.ns_id() == POD).unwrap().id()
}

/// A pod as containerd runs it, up to its ADD: pause, pin, ADD through the pin, cache entry.
fn containerd_pod(c: &mut Collector) {
    pause_starts(c, 2 * S);
    pin(c, 2 * S + MS, POD, PAUSE, PIN);
    bridge(c, 3 * S, 110, "ADD", PIN, 0);
    cached(c, 3 * S + 20 * MS, Some(PIN));
}

#[test]
fn a_running_pod_and_a_clean_teardown_leave_nothing_to_collect() {
    let mut c = collector();
    containerd_pod(&mut c);
    c.tick(100 * S);
    assert_eq!(c.cni_gc(), vec![], "the pod runs");

    // StopPodSandbox: the pause dies, DEL through the pin succeeds and libcni removes the entry,
    // then the pin goes and the namespace with it.
    pause_dies(&mut c, 101 * S);
    bridge(&mut c, 101 * S + 100 * MS, 120, "DEL", PIN, 0);
    uncached(&mut c, 101 * S + 120 * MS);
    unpin(&mut c, 101 * S + 200 * MS, PIN);
    teardown(&mut c, 101 * S + 300 * MS);
    c.finish(200 * S);
    assert_eq!(c.cni_gc(), vec![]);
}

#[test]
fn an_entry_whose_del_returned_is_stale_del_returned() {
    let mut c = collector();
    containerd_pod(&mut c);
    // The DEL fails: libcni keeps the entry. The pod is still running.
    bridge(&mut c, 10 * S, 120, "DEL", PIN, 1);
    let gc = c.cni_gc();
    assert_eq!(gc.len(), 1, "{gc:#?}");
    let g = &gc[0];
    assert_eq!(
        g.reasons,
        vec![CniGcReason::DelReturned {
            at_ns: 10 * S + 10 * MS,
            status: CniStatus::Exited { code: 1 },
        }]
    );
    assert_eq!(
        (
            g.container_id.as_str(),
            g.if_name.as_str(),
            g.network.as_str()
        ),
        (SANDBOX, "eth0", "cbr0")
    );
    assert_eq!(g.netns.path.as_deref(), Some(PIN));
    assert_eq!(g.netns.resolves_to, CniTarget::Pin { netns: POD });
    assert_eq!(g.netns.id.as_deref(), Some(id(&c).as_str()));
    assert_eq!(g.netns.state, Some(NsState::Alive));
    assert_eq!(g.pins.len(), 1);
    assert_eq!(g.pins[0].path.as_deref(), Some(PIN));
    assert_eq!(g.ips, entry(None).ips);
    assert_eq!(g.pod_name.as_deref(), Some("web"));
    assert_eq!(g.add.as_ref().map(|a| a.at_ns), Some(3 * S));
    assert_eq!(g.del.as_ref().map(|d| d.at_ns), Some(10 * S));

    // A later ADD of the same attachment makes it current again.
    bridge(&mut c, 11 * S, 130, "ADD", PIN, 0);
    cached(&mut c, 11 * S + 20 * MS, Some(PIN));
    assert_eq!(c.cni_gc(), vec![]);

    // Retried, the DEL succeeds and the entry goes: nothing is left to collect.
    bridge(&mut c, 12 * S, 140, "DEL", PIN, 0);
    assert_eq!(c.cni_gc().len(), 1, "cached until libcni removes it");
    uncached(&mut c, 12 * S + 20 * MS);
    assert_eq!(c.cni_gc(), vec![]);
}

#[test]
fn an_entry_whose_path_names_nothing_is_stale_netns_path_dead() {
    // `scan`: a snapshot of a node where nothing is pinned at the cached path, and no such
    // process lives.
    let mut c = collector();
    cached(&mut c, S, Some(PIN));
    c.handle(&Event::observed(
        S,
        EventBody::CniResult(Box::new(CniCacheEntry {
            container_id: "bbbb0002".into(),
            netns_path: Some("/proc/4242/ns/net".into()),
            ..entry(None)
        })),
    ));
    // Without a path there is nothing to judge it by.
    c.handle(&Event::observed(
        S,
        EventBody::CniResult(Box::new(CniCacheEntry {
            container_id: "cccc0003".into(),
            ..entry(None)
        })),
    ));
    c.finish(2 * S);
    let gc = c.cni_gc();
    // (container id, path, what it names, namespace, reasons) of each entry listed.
    type Listed<'a> = (
        &'a str,
        &'a Option<String>,
        &'a CniTarget,
        &'a Option<String>,
        &'a [CniGcReason],
    );
    let listed: Vec<Listed> = gc
        .iter()
        .map(|g| {
            (
                g.container_id.as_str(),
                &g.netns.path,
                &g.netns.resolves_to,
                &g.netns.id,
                g.reasons.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                SANDBOX,
                &Some(PIN.to_string()),
                &CniTarget::Unresolved,
                &None,
                &[CniGcReason::NetnsPathDead][..]
            ),
            (
                "bbbb0002",
                &Some("/proc/4242/ns/net".to_string()),
                &CniTarget::Unresolved,
                &None,
                &[CniGcReason::NetnsPathDead][..]
            ),
        ]
    );
}

#[test]
fn an_entry_whose_namespace_is_gone_is_stale_netns_destroyed() {
    // The runtime lost the sandbox: no DEL ran, the pin was removed and the namespace died,
    // and the entry stays. The traced ADD names the namespace the path no longer does.
    let mut c = collector();
    containerd_pod(&mut c);
    pause_dies(&mut c, 10 * S);
    unpin(&mut c, 10 * S + MS, PIN);
    teardown(&mut c, 10 * S + 2 * MS);
    let ns = id(&c);
    let gc = c.cni_gc();
    assert_eq!(gc.len(), 1, "{gc:#?}");
    let g = &gc[0];
    assert_eq!(
        g.reasons,
        vec![
            CniGcReason::NetnsPathDead,
            CniGcReason::NetnsDestroyed {
                netns: ns.clone(),
                at_ns: Some(10 * S + 2 * MS)
            }
        ]
    );
    assert_eq!(g.netns.resolves_to, CniTarget::Unresolved);
    assert_eq!(g.netns.id.as_deref(), Some(ns.as_str()));
    assert_eq!(g.netns.state, Some(NsState::Destroyed));
    assert_eq!(g.pins, vec![], "a destroyed namespace has no pins");
    assert!(g.del.is_none());
}

#[test]
fn an_entry_whose_namespace_leaked_is_stale_netns_leaked() {
    let mut c = collector();
    containerd_pod(&mut c);
    // The pause dies; the runtime runs no DEL; the pin keeps the namespace.
    pause_dies(&mut c, 10 * S);
    c.tick(10 * S + GRACE / 2);
    assert_eq!(c.cni_gc(), vec![], "draining: not judged yet");
    c.tick(10 * S + GRACE + S);
    let ns = id(&c);
    let gc = c.cni_gc();
    assert_eq!(gc.len(), 1, "{gc:#?}");
    let g = &gc[0];
    assert_eq!(
        g.reasons,
        vec![CniGcReason::NetnsLeaked {
            netns: ns.clone(),
            state: NsState::Leaked
        }]
    );
    assert_eq!(g.netns.resolves_to, CniTarget::Pin { netns: POD });
    assert_eq!(g.pins.len(), 1);
}

#[test]
fn the_incident_entry_is_stale_for_every_reason_it_shows() {
    // CNI_NETNS is the pause's /proc/PID/ns/net; an extra bind mount pins the namespace; the
    // pause dies; the DEL on the dead path fails (had it succeeded, libcni would have removed
    // the entry); the grace period passes.
    let proc_path = format!("/proc/{PAUSE}/ns/net");
    let mut c = collector();
    pause_starts(&mut c, 2 * S);
    bridge(&mut c, 3 * S, 110, "ADD", &proc_path, 0);
    cached(&mut c, 3 * S + 20 * MS, Some(&proc_path));
    pin(&mut c, 4 * S, POD, PAUSE, "/run/netns/debug-aaaa0001");
    pause_dies(&mut c, 10 * S);
    bridge(&mut c, 11 * S, 120, "DEL", &proc_path, 1);
    c.tick(10 * S + GRACE + S);
    let ns = id(&c);
    let gc = c.cni_gc();
    assert_eq!(gc.len(), 1, "{gc:#?}");
    let g = &gc[0];
    assert_eq!(
        g.reasons,
        vec![
            CniGcReason::DelReturned {
                at_ns: 11 * S + 10 * MS,
                status: CniStatus::Exited { code: 1 }
            },
            CniGcReason::NetnsPathDead,
            CniGcReason::NetnsLeaked {
                netns: ns,
                state: NsState::Leaked
            },
        ]
    );
    assert_eq!(
        g.netns.resolves_to,
        CniTarget::ExitedProcess {
            pid: PAUSE,
            netns: POD,
            exited_at_ns: 10 * S
        }
    );
    assert_eq!(
        g.pins.iter().map(|p| p.path.as_deref()).collect::<Vec<_>>(),
        vec![Some("/run/netns/debug-aaaa0001")]
    );
}

#[test]
fn scan_judges_a_memberless_pinned_namespace_from_the_cache_alone() {
    // `scan`: one snapshot, then the cache. A pinned namespace without members is a leak
    // suspect; a pinned one with its pause is alive.
    const LIVE: NsId = NsId::new(22, 4026532022);
    let live_pin = "/run/netns/cni-live";
    let mut c = Collector::new(CollectorConfig {
        notices: false,
        ..Default::default()
    });
    c.handle(&snapshot(vec![
        SnapNamespace {
            netns: POD,
            members: vec![],
            pins: vec![bind_mount_pin(PIN)],
            interfaces: vec![],
            interfaces_error: None,
        },
        SnapNamespace {
            netns: LIVE,
            members: vec![crate::model::Member {
                pid: 300,
                tgid: 300,
                comm: Comm::from_str_lossy("pause"),
                cgroup: String::new(),
            }],
            pins: vec![bind_mount_pin(live_pin)],
            interfaces: vec![],
            interfaces_error: None,
        },
    ]));
    // The cache names the pin under /var/run, as containerd writes it.
    cached(&mut c, S, Some(&format!("/var{PIN}")));
    c.handle(&Event::observed(
        S,
        EventBody::CniResult(Box::new(CniCacheEntry {
            container_id: "live0002".into(),
            netns_path: Some(live_pin.into()),
            ..entry(None)
        })),
    ));
    c.finish(S);
    let gc = c.cni_gc();
    assert_eq!(gc.len(), 1, "{gc:#?}");
    let g = &gc[0];
    assert_eq!(g.container_id, SANDBOX);
    assert_eq!(
        g.reasons,
        vec![CniGcReason::NetnsLeaked {
            netns: id(&c),
            state: NsState::LeakSuspect
        }]
    );
    assert_eq!(g.netns.resolves_to, CniTarget::Pin { netns: POD });
}
