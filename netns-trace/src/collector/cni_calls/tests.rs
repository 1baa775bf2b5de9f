//! CNI calls from the event sequence a runtime's pods produce in tracepoint mode: the pause
//! unshares its namespace, the runtime pins it (or passes /proc/PID/ns/net), runs the plugins,
//! which exec their IPAM plugin with the same environment, and tears down.
use super::*;
use crate::collector::test_events::{
    HOST_MNT, INIT, MS, S, bind_mount_pin, by_process as ev, collector, pin, task_body as task,
};
use crate::collector::{CollectorConfig, FindingDetail};
use crate::model::{
    Comm, CreatedBy, EventBody, NetnsCreated, PinChange, Snapshot, SnapshotPhase, TaskOp,
};

const NODE: NsId = NsId::new(20, 4026532020);
const POD_A: NsId = NsId::new(21, 4026532021);
const POD_B: NsId = NsId::new(22, 4026532022);
const PIN_A: &str = "/var/run/netns/cni-5b0e8a2c-3f64-4d0b-9a51-0c1e7d2f9b44";
const SANDBOX_A: &str = "aaaa0001";
const SANDBOX_B: &str = "bbbb0002";

/// `unshare --net sleep infinity` as pid `pid`: the creation, then the caller's move into it.
fn unshare(c: &mut Collector, ts: u64, pid: u32, id: NsId) {
    c.handle(&ev(
        ts,
        pid,
        "unshare",
        EventBody::NetnsCreated(NetnsCreated {
            netns: id,
            parent: INIT,
            net_ptr: 0xffff_0000 + u64::from(id.inum),
            source: CreatedBy::Unshare,
            clone_flags: 0x4000_0000,
        }),
    ));
    c.handle(&ev(ts, pid, "unshare", task(TaskOp::Unshare, id, INIT)));
}

fn exit(c: &mut Collector, ts: u64, pid: u32, id: NsId) {
    c.handle(&ev(ts, pid, "sleep", task(TaskOp::Exit, id, id)));
}

/// The plugin `plugin` starting as pid `pid` with this CNI environment, from the node's
/// namespace.
fn cni(ts: u64, pid: u32, plugin: &str, verb: &str, sandbox: &str, netns_path: &str) -> Event {
    ev(
        ts,
        pid,
        plugin,
        EventBody::CniExec(Box::new(CniExec {
            netns: NODE,
            verb: verb.into(),
            container_id: Some(sandbox.into()),
            netns_path: Some(netns_path.into()),
            if_name: Some("eth0".into()),
            cni_args: Some(format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-{sandbox};\
                 K8S_POD_INFRA_CONTAINER_ID={sandbox};K8S_POD_UID=uid-{sandbox}"
            )),
            path: format!("/opt/cni/bin/{plugin}"),
            truncated: CniTruncated::default(),
        })),
    )
}

/// (plugin comm, verb, target) of each call.
fn summary<'a>(calls: impl Iterator<Item = &'a CniCall>) -> Vec<(String, String, CniTarget)> {
    calls
        .map(|c| (c.plugin.comm.to_string(), c.verb.clone(), c.target.clone()))
        .collect()
}

fn call(plugin: &str, verb: &str, target: CniTarget) -> (String, String, CniTarget) {
    (plugin.into(), verb.into(), target)
}

fn id_of(c: &Collector, ns: NsId) -> String {
    c.namespaces()
        .find(|n| n.ns_id() == ns)
        .unwrap_or_else(|| panic!("no {ns}"))
        .id()
}

#[test]
fn each_call_names_the_namespace_its_path_named_at_that_moment() {
    let mut c = collector();
    unshare(&mut c, 2 * S, 50, NODE);

    // Pod A as containerd runs it: pinned, CNI_NETNS is the pin.
    unshare(&mut c, 3 * S, 100, POD_A);
    pin(
        &mut c,
        3 * S + MS,
        POD_A,
        100,
        "/run/netns/cni-5b0e8a2c-3f64-4d0b-9a51-0c1e7d2f9b44",
    );
    c.handle(&cni(4 * S, 110, "loopback", "ADD", SANDBOX_A, PIN_A));
    c.handle(&cni(
        4 * S + 10 * MS,
        111,
        "bridge",
        "ADD",
        SANDBOX_A,
        PIN_A,
    ));
    c.handle(&cni(
        4 * S + 20 * MS,
        112,
        "host-local",
        "ADD",
        SANDBOX_A,
        PIN_A,
    ));

    // Pod B given its pause's /proc/PID/ns/net.
    unshare(&mut c, 5 * S, 200, POD_B);
    let proc_b = "/proc/200/ns/net";
    c.handle(&cni(6 * S, 210, "bridge", "ADD", SANDBOX_B, proc_b));
    c.handle(&cni(
        6 * S + 10 * MS,
        211,
        "host-local",
        "ADD",
        SANDBOX_B,
        proc_b,
    ));

    // Pod A stops: pause killed, DEL through the pin, pin removed; a DEL retried after that
    // names nothing any more.
    exit(&mut c, 7 * S, 100, POD_A);
    c.handle(&cni(7 * S + MS, 120, "bridge", "DEL", SANDBOX_A, PIN_A));
    c.handle(&Event::observed(
        8 * S,
        EventBody::PinRemoved(PinChange {
            netns: POD_A,
            pin: bind_mount_pin("/run/netns/cni-5b0e8a2c-3f64-4d0b-9a51-0c1e7d2f9b44"),
        }),
    ));
    c.handle(&cni(9 * S, 121, "bridge", "DEL", SANDBOX_A, PIN_A));

    // Pod B's pause dies first; its DEL still names /proc/200/ns/net.
    exit(&mut c, 10 * S, 200, POD_B);
    c.handle(&cni(11 * S, 220, "bridge", "DEL", SANDBOX_B, proc_b));
    c.handle(&cni(
        11 * S + 10 * MS,
        221,
        "host-local",
        "DEL",
        SANDBOX_B,
        proc_b,
    ));

    // A VERSION query takes no namespace.
    let mut version = cni(12 * S, 300, "bridge", "VERSION", "", "");
    if let EventBody::CniExec(e) = &mut version.body {
        e.container_id = None;
        e.netns_path = None;
    }
    c.handle(&version);

    let pinned = CniTarget::Pin { netns: POD_A };
    assert_eq!(
        summary(c.cni_calls_for_sandbox(SANDBOX_A)),
        vec![
            call("loopback", "ADD", pinned.clone()),
            call("bridge", "ADD", pinned.clone()),
            call("host-local", "ADD", pinned.clone()),
            call("bridge", "DEL", pinned.clone()),
            call("bridge", "DEL", CniTarget::Unresolved),
        ]
    );
    let member = CniTarget::Member {
        pid: 200,
        netns: POD_B,
    };
    let exited = CniTarget::ExitedProcess {
        pid: 200,
        netns: POD_B,
        exited_at_ns: 10 * S,
    };
    assert_eq!(
        summary(c.cni_calls_for_sandbox(SANDBOX_B)),
        vec![
            call("bridge", "ADD", member.clone()),
            call("host-local", "ADD", member.clone()),
            call("bridge", "DEL", exited.clone()),
            call("host-local", "DEL", exited.clone()),
        ]
    );
    // By namespace: what named it, whichever sandbox the call was for.
    assert_eq!(
        summary(c.cni_calls_for_namespace(&id_of(&c, POD_A))),
        summary(c.cni_calls_for_sandbox(SANDBOX_A).take(4))
    );
    assert_eq!(
        summary(c.cni_calls_for_namespace(&id_of(&c, POD_B))),
        summary(c.cni_calls_for_sandbox(SANDBOX_B))
    );
    assert_eq!(c.cni_calls_for_namespace(&id_of(&c, NODE)).count(), 0);

    let all: Vec<&CniCall> = c.cni_calls().collect();
    assert_eq!(all.len(), 10);
    let last = all[9];
    assert_eq!(
        (last.verb.as_str(), &last.target),
        ("VERSION", &CniTarget::NoPath)
    );
    let delegated = all[2];
    assert_eq!(
        (
            delegated.plugin.pid,
            delegated.path.as_str(),
            delegated.at_ns
        ),
        (112, "/opt/cni/bin/host-local", 4 * S + 20 * MS)
    );
    assert_eq!(delegated.caller_netns, NODE);
    assert_eq!(
        (
            delegated.pod_namespace.as_deref(),
            delegated.pod_name.as_deref(),
            delegated.pod_uid.as_deref(),
        ),
        (Some("shop"), Some("web-aaaa0001"), Some("uid-aaaa0001"))
    );
    assert_eq!(c.cni_calls_dropped(), 0);
}

#[test]
fn a_process_path_names_the_live_process_over_an_earlier_one_with_its_pid() {
    let mut c = collector();
    unshare(&mut c, 2 * S, 50, NODE);
    // pid 300 lived in POD_A and exited; the pid was then given to POD_B's pause.
    unshare(&mut c, 3 * S, 300, POD_A);
    exit(&mut c, 4 * S, 300, POD_A);
    unshare(&mut c, 5 * S, 300, POD_B);
    c.handle(&cni(
        6 * S,
        310,
        "bridge",
        "ADD",
        SANDBOX_B,
        "/proc/300/ns/net",
    ));
    // An empty CNI_NETNS is no path.
    c.handle(&cni(6 * S + MS, 311, "bridge", "CHECK", SANDBOX_B, ""));
    // A process the trace never saw in any namespace.
    c.handle(&cni(
        7 * S,
        312,
        "bridge",
        "DEL",
        SANDBOX_B,
        "/proc/4242/ns/net",
    ));
    assert_eq!(
        summary(c.cni_calls_for_sandbox(SANDBOX_B)),
        vec![
            call(
                "bridge",
                "ADD",
                CniTarget::Member {
                    pid: 300,
                    netns: POD_B
                }
            ),
            call("bridge", "CHECK", CniTarget::NoPath),
            call("bridge", "DEL", CniTarget::Unresolved),
        ]
    );
}

#[test]
fn the_oldest_calls_are_dropped_past_the_bound_and_leave_the_indexes() {
    let mut c = collector();
    unshare(&mut c, 2 * S, 100, POD_A);
    let extra = 3;
    for i in 0..(MAX_CNI_CALLS + extra) as u64 {
        // The first `extra` calls are the only ones for SANDBOX_A.
        let sandbox = if i < extra as u64 {
            SANDBOX_A
        } else {
            SANDBOX_B
        };
        c.handle(&cni(
            3 * S + i,
            1000,
            "bridge",
            "CHECK",
            sandbox,
            "/proc/100/ns/net",
        ));
    }
    assert_eq!(c.cni_calls_dropped(), extra as u64);
    assert_eq!(c.cni_calls().count(), MAX_CNI_CALLS);
    assert_eq!(c.cni_calls_for_sandbox(SANDBOX_A).count(), 0);
    assert!(!c.cni_calls.by_sandbox.contains_key(SANDBOX_A));
    assert_eq!(c.cni_calls_for_sandbox(SANDBOX_B).count(), MAX_CNI_CALLS);
    let in_a: Vec<u64> = c
        .cni_calls_for_namespace(&id_of(&c, POD_A))
        .map(|call| call.at_ns)
        .collect();
    assert_eq!(in_a.len(), MAX_CNI_CALLS);
    assert_eq!(in_a[0], 3 * S + extra as u64, "the oldest left are first");
}

/// The plugin `pid` (its last thread `tid`) ending with `wait_status`, its parent `parent`
/// being told.
fn cni_exit(ts: u64, pid: u32, tid: u32, wait_status: i32, parent: u32) -> Event {
    Event {
        ts_ns: ts,
        pid: tid,
        tgid: pid,
        comm: Comm::from_str_lossy("bridge"),
        body: EventBody::CniExit(CniExit {
            wait_status,
            parent,
        }),
    }
}

/// (pid, parent, end) of each call.
fn ends<'a>(calls: impl Iterator<Item = &'a CniCall>) -> Vec<(u32, Option<u32>, Option<CniEnd>)> {
    calls.map(|c| (c.plugin.tgid, c.parent, c.end)).collect()
}

fn exited(at_ns: u64, code: i32) -> Option<CniEnd> {
    Some(CniEnd {
        at_ns,
        status: CniStatus::Exited { code },
    })
}

#[test]
fn each_call_ends_with_the_status_its_parent_was_told() {
    let mut c = collector();
    unshare(&mut c, 2 * S, 100, POD_A);
    pin(&mut c, 2 * S + MS, POD_A, 100, PIN_A);
    // The runtime (pid 90) runs bridge, which runs host-local; host-local ends first.
    c.handle(&cni(3 * S, 111, "bridge", "ADD", SANDBOX_A, PIN_A));
    c.handle(&cni(3 * S + MS, 112, "host-local", "ADD", SANDBOX_A, PIN_A));
    c.handle(&cni_exit(3 * S + 2 * MS, 112, 115, 0, 111));
    c.handle(&cni_exit(3 * S + 3 * MS, 111, 111, 0, 90));
    // A DEL that fails, and one a signal kills (with a core dump).
    c.handle(&cni(4 * S, 120, "bridge", "DEL", SANDBOX_A, PIN_A));
    c.handle(&cni_exit(4 * S + MS, 120, 121, 1 << 8, 90));
    c.handle(&cni(5 * S, 130, "bridge", "DEL", SANDBOX_A, PIN_A));
    c.handle(&cni_exit(5 * S + MS, 130, 130, 6 | 0x80, 90));
    // A wrapper: one process exec'd the plugin after itself, both with the CNI environment;
    // its one end ends both.
    c.handle(&cni(6 * S, 140, "wrapper", "DEL", SANDBOX_A, PIN_A));
    c.handle(&cni(6 * S + MS, 140, "bridge", "DEL", SANDBOX_A, PIN_A));
    c.handle(&cni_exit(6 * S + 2 * MS, 140, 140, 0, 90));
    // An end for a process with no running call (its start was lost) changes nothing, and a
    // later call of a reused pid is ended by its own end only.
    c.handle(&cni_exit(7 * S, 111, 111, 2 << 8, 90));
    c.handle(&cni(8 * S, 111, "bridge", "CHECK", SANDBOX_A, PIN_A));
    // Still running at the end of the trace.
    c.handle(&cni(9 * S, 150, "bridge", "CHECK", SANDBOX_A, PIN_A));
    c.handle(&cni_exit(9 * S + MS, 111, 111, 0, 91));

    assert_eq!(
        ends(c.cni_calls_for_sandbox(SANDBOX_A)),
        vec![
            (111, Some(90), exited(3 * S + 3 * MS, 0)),
            (112, Some(111), exited(3 * S + 2 * MS, 0)),
            (120, Some(90), exited(4 * S + MS, 1)),
            (
                130,
                Some(90),
                Some(CniEnd {
                    at_ns: 5 * S + MS,
                    status: CniStatus::Killed {
                        signal: 6,
                        core_dumped: true
                    }
                })
            ),
            (140, Some(90), exited(6 * S + 2 * MS, 0)),
            (140, Some(90), exited(6 * S + 2 * MS, 0)),
            (111, Some(91), exited(9 * S + MS, 0)),
            (150, None, None),
        ]
    );
    let statuses: Vec<String> = c
        .cni_calls()
        .filter_map(|call| call.end.map(|e| e.status.to_string()))
        .collect();
    assert_eq!(
        statuses[2..4],
        [
            "exit 1".to_string(),
            "killed by signal 6 (core dumped)".into()
        ]
    );
    assert!(
        c.cni_calls()
            .next()
            .unwrap()
            .end
            .unwrap()
            .status
            .succeeded()
    );
    assert!(
        !c.cni_calls()
            .nth(2)
            .unwrap()
            .end
            .unwrap()
            .status
            .succeeded()
    );
    // The JSON names how it ended.
    assert_eq!(
        serde_json::to_value(c.cni_calls().nth(3).unwrap().end).unwrap(),
        serde_json::json!({"at_ns": 5 * S + MS, "status": {"how": "killed", "signal": 6, "core_dumped": true}})
    );
}

#[test]
fn a_namespace_has_its_sandboxes_calls_and_its_owner_from_them() {
    let mut c = collector();
    unshare(&mut c, 2 * S, 100, POD_A);
    pin(&mut c, 2 * S + MS, POD_A, 100, PIN_A);
    c.handle(&cni(3 * S, 111, "bridge", "ADD", SANDBOX_A, PIN_A));
    c.handle(&cni(3 * S + MS, 112, "host-local", "ADD", SANDBOX_A, PIN_A));
    c.handle(&cni_exit(3 * S + 2 * MS, 112, 112, 0, 111));
    c.handle(&cni_exit(3 * S + 3 * MS, 111, 111, 0, 90));
    // The pin goes first; the DEL's path then names nothing, yet it is the sandbox's.
    c.handle(&Event::observed(
        4 * S,
        EventBody::PinRemoved(PinChange {
            netns: POD_A,
            pin: bind_mount_pin(PIN_A),
        }),
    ));
    c.handle(&cni(5 * S, 120, "bridge", "DEL", SANDBOX_A, PIN_A));
    c.handle(&cni_exit(5 * S + MS, 120, 120, 0, 90));
    // Another sandbox's call is not this namespace's.
    c.handle(&cni(
        6 * S,
        130,
        "bridge",
        "ADD",
        SANDBOX_B,
        "/proc/4242/ns/net",
    ));

    let id = id_of(&c, POD_A);
    let calls = c.sandbox_cni_calls_for_namespace(&id);
    assert_eq!(
        calls
            .iter()
            .map(|k| (k.plugin.tgid, k.verb.as_str(), c.is_chained(k)))
            .collect::<Vec<_>>(),
        vec![(111, "ADD", false), (112, "ADD", true), (120, "DEL", false)]
    );
    assert_eq!(calls[2].target, CniTarget::Unresolved);
    let ns = c.namespaces().find(|n| n.id() == id).unwrap();
    assert_eq!(ns.owner.container_id.as_deref(), Some(SANDBOX_A));
    assert_eq!(
        (
            ns.owner.pod_namespace.as_deref(),
            ns.owner.pod_name.as_deref(),
            ns.owner.pod_uid.as_deref()
        ),
        (Some("shop"), Some("web-aaaa0001"), Some("uid-aaaa0001"))
    );
}

fn interfaces(ts: u64, id: NsId, ip: Option<&str>) -> Event {
    let mut ifaces = vec![crate::model::Interface {
        name: "lo".into(),
        ifindex: 1,
        mac: Default::default(),
        ipv4: vec![(std::net::Ipv4Addr::LOCALHOST, 8)],
        ipv6: Vec::new(),
    }];
    if let Some(ip) = ip {
        ifaces.push(crate::model::Interface {
            name: "eth0".into(),
            ifindex: 2,
            mac: crate::model::Mac([2, 0, 0, 0, 0, 1]),
            ipv4: vec![(ip.parse().unwrap(), 24)],
            ipv6: Vec::new(),
        });
    }
    Event::observed(
        ts,
        EventBody::Interfaces(crate::model::InterfacesRead {
            netns: id,
            interfaces: ifaces,
        }),
    )
}

/// A pod's ADD through `path` as a runtime runs it: bridge, which chains host-local.
fn add(c: &mut Collector, ts: u64, pid: u32, sandbox: &str, path: &str) {
    c.handle(&cni(ts, pid, "bridge", "ADD", sandbox, path));
    c.handle(&cni(ts + MS, pid + 1, "host-local", "ADD", sandbox, path));
    c.handle(&cni_exit(ts + 2 * MS, pid + 1, pid + 1, 0, pid));
    c.handle(&cni_exit(ts + 3 * MS, pid, pid, 0, 90));
}

/// The same for DEL, each plugin ending with its own status.
fn run_del(c: &mut Collector, ts: u64, pid: u32, sandbox: &str, path: &str, host_local: i32) {
    c.handle(&cni(ts, pid, "bridge", "DEL", sandbox, path));
    c.handle(&cni(ts + MS, pid + 1, "host-local", "DEL", sandbox, path));
    c.handle(&cni_exit(ts + 2 * MS, pid + 1, pid + 1, host_local, pid));
    c.handle(&cni_exit(ts + 3 * MS, pid, pid, host_local, 90));
}

fn kinds(c: &Collector) -> Vec<&'static str> {
    c.findings().iter().map(|f| f.kind()).collect()
}

#[test]
fn a_del_after_the_pause_died_that_its_pinned_namespace_outlived_is_cited_in_one_leak() {
    let mut c = Collector::new(CollectorConfig {
        grace_ns: 2 * S,
        ..Default::default()
    });
    c.handle(&Event::observed(
        S,
        EventBody::Snapshot(Box::new(Snapshot {
            phase: SnapshotPhase::Start,
            namespaces: vec![],
            init_netns: INIT,
            init_mnt_ns: HOST_MNT,
        })),
    ));
    // Pod A: the pause (100) given as /proc/100/ns/net; a plugin's debugging bind mount.
    unshare(&mut c, 2 * S, 100, POD_A);
    add(&mut c, 3 * S, 110, SANDBOX_A, "/proc/100/ns/net");
    c.handle(&interfaces(3 * S + 10 * MS, POD_A, Some("10.231.62.11")));
    pin(&mut c, 4 * S, POD_A, 100, "/run/netns-debug/aaaa0001");
    // The pause dies; DEL gets the dead path, returns 0, and eth0 stays.
    exit(&mut c, 5 * S, 100, POD_A);
    run_del(
        &mut c,
        5 * S + 100 * MS,
        120,
        SANDBOX_A,
        "/proc/100/ns/net",
        0,
    );
    assert!(kinds(&c).is_empty(), "{:#?}", c.findings());
    c.tick(8 * S);
    assert_eq!(
        kinds(&c),
        vec!["leaked_netns", "cni_del_left_namespace"],
        "{:#?}",
        c.findings()
    );
    let leak = &c.findings()[0];
    assert!(
        leak.summary.ends_with(
            "; CNI ADD at 3.000s (exit 0), DEL at 5.100s (exit 0), CNI_NETNS /proc/100/ns/net \
             naming nothing: process 100 had exited at 5.000s after the last member left at 5.000s"
        ),
        "{}",
        leak.summary
    );
    let FindingDetail::LeakedNetns { cni_calls, .. } = &leak.detail else {
        panic!()
    };
    assert_eq!(
        cni_calls
            .iter()
            .map(|k| (k.verb.as_str(), k.plugin.tgid))
            .collect::<Vec<_>>(),
        vec![("ADD", 110), ("DEL", 120)],
        "the runtime's calls, not host-local's"
    );
    let left = &c.findings()[1];
    assert_eq!(left.netns, leak.netns);
    let FindingDetail::CniDelLeftNamespace {
        container_id,
        del,
        netns_path_resolved,
        interfaces,
        pins,
    } = &left.detail
    else {
        panic!()
    };
    assert_eq!(container_id, SANDBOX_A);
    assert_eq!((del.at_ns, del.plugin.tgid), (5 * S + 100 * MS, 120));
    assert_eq!(
        del.end,
        Some(CniEnd {
            at_ns: 5 * S + 103 * MS,
            status: CniStatus::Exited { code: 0 }
        })
    );
    assert_eq!(del.netns_path.as_deref(), Some("/proc/100/ns/net"));
    assert!(!netns_path_resolved);
    assert_eq!(interfaces[0].ipv4, vec!["10.231.62.11/24".to_string()]);
    assert_eq!(pins[0].path.as_deref(), Some("/run/netns-debug/aaaa0001"));
    // A DEL retried later replaces the story in the leak.
    run_del(&mut c, 9 * S, 130, SANDBOX_A, "/proc/100/ns/net", 0);
    assert!(
        c.findings()[0]
            .summary
            .ends_with("after the last member left at 5.000s")
            && c.findings()[0].summary.contains("DEL at 9.000s"),
        "{}",
        c.findings()[0].summary
    );
    assert_eq!(c.findings().len(), 2, "raised once");
}

#[test]
fn a_failed_del_is_a_finding_with_its_namespace_and_a_clean_pod_gives_none() {
    let mut c = collector();
    // Pod A: pinned as containerd does; a clean stop: DEL through the pin, eth0 goes, then
    // the pin, then the namespace.
    unshare(&mut c, 2 * S, 100, POD_A);
    pin(&mut c, 2 * S + MS, POD_A, 100, PIN_A);
    add(&mut c, 3 * S, 110, SANDBOX_A, PIN_A);
    c.handle(&interfaces(3 * S + 10 * MS, POD_A, Some("10.0.0.2")));
    exit(&mut c, 4 * S, 100, POD_A);
    run_del(&mut c, 4 * S + MS, 120, SANDBOX_A, PIN_A, 0);
    c.handle(&interfaces(4 * S + 10 * MS, POD_A, None));
    assert!(kinds(&c).is_empty(), "{:#?}", c.findings());

    // Pod B: its DEL fails (host-local exits 1, so bridge does).
    unshare(&mut c, 5 * S, 200, POD_B);
    add(&mut c, 5 * S + MS, 210, SANDBOX_B, "/proc/200/ns/net");
    c.handle(&interfaces(5 * S + 10 * MS, POD_B, Some("10.0.0.3")));
    run_del(&mut c, 6 * S, 220, SANDBOX_B, "/proc/200/ns/net", 1 << 8);
    assert_eq!(
        kinds(&c),
        vec!["cni_del_failed"],
        "one, for the runtime's DEL"
    );
    let f = &c.findings()[0];
    assert_eq!(f.netns, id_of(&c, POD_B));
    assert_eq!(
        f.summary,
        format!(
            "CNI DEL of sandbox {SANDBOX_B} failed: bridge (exit 1) at 6.003s, CNI_NETNS \
             /proc/200/ns/net naming process 200's namespace; it ran host-local exit 1; {} is alive \
             with eth0 10.0.0.3/24, held by nothing observed",
            id_of(&c, POD_B)
        )
    );
    let FindingDetail::CniDelFailed {
        container_id,
        del,
        chained,
        namespace,
    } = &f.detail
    else {
        panic!()
    };
    assert_eq!(container_id.as_deref(), Some(SANDBOX_B));
    assert_eq!(del.plugin.tgid, 220);
    assert_eq!(
        chained
            .iter()
            .map(|k| (k.plugin.tgid, k.end.map(|e| e.status)))
            .collect::<Vec<_>>(),
        vec![(221, Some(CniStatus::Exited { code: 1 }))]
    );
    let ns = namespace.as_ref().unwrap();
    assert_eq!(ns.state, crate::collector::NsState::Alive);
    assert_eq!(ns.interfaces.len(), 2);
}

/// Issue 14 item 4: a pod with a mount namespace of its own pins its namespace at the path of
/// another pod's pin (`/run/netns/cni-<victim>`). The path names the victim's sandbox only
/// where the runtime pinned it, the node's mount namespace: the pod's copy is still a pin of
/// its namespace, in its mount namespace, but gets no sandbox, pod or network from the path,
/// whether the CNI cache entry was read before or after it, and the runtime's CNI call
/// through that path still names the victim.
#[test]
fn a_pods_own_mount_at_a_victims_pin_path_takes_nothing_of_the_victims_identity() {
    const POD_MNT: u32 = HOST_MNT + 77;
    let victim_uuid = "5b0e8a2c-3f64-4d0b-9a51-0c1e7d2f9b44";
    let entry = |if_name: &str, network: &str| {
        Event::observed(
            5 * S,
            EventBody::CniResult(Box::new(crate::attribution::CniCacheEntry {
                container_id: SANDBOX_A.into(),
                if_name: if_name.into(),
                network_name: network.into(),
                config_name: Some(network.into()),
                netns_path: Some(PIN_A.into()),
                ips: vec![],
                pod_namespace: Some("shop".into()),
                pod_name: Some(format!("web-{SANDBOX_A}")),
                pod_uid: Some(format!("uid-{SANDBOX_A}")),
            })),
        )
    };
    let mut c = collector();
    unshare(&mut c, 2 * S, 50, NODE);
    // The victim as containerd runs it: pinned in the node's mount namespace, then ADD, and
    // the runtime writes the cache entry.
    unshare(&mut c, 3 * S, 100, POD_A);
    pin(&mut c, 3 * S + MS, POD_A, 100, PIN_A);
    c.handle(&cni(4 * S, 110, "bridge", "ADD", SANDBOX_A, PIN_A));
    c.handle(&entry("eth0", "pod-net"));

    // The hostile pod (its pause 200) runs a shell (210) in a mount namespace of its own, which
    // bind-mounts its namespace over the copy of the victim's pin. The enricher's mountinfo
    // read (prompted by an earlier event) shows the mount before the call's own record comes,
    // within the pairing window of the victim's mount at the same path in the node's.
    unshare(&mut c, 6 * S, 200, POD_B);
    c.handle(&Event::observed(
        7 * S,
        EventBody::PinAdded(PinChange {
            netns: POD_B,
            pin: crate::model::Pin::BindMount {
                path: PIN_A.trim_start_matches("/var").into(),
                mnt_ns: POD_MNT,
                holder_pid: 210,
                holder_comm: Comm::from_str_lossy("sh"),
            },
        }),
    ));
    c.handle(&ev(
        7 * S + MS,
        210,
        "mount",
        EventBody::MountSyscall(crate::model::MountSyscall {
            op: crate::model::MountOp::Mount,
            netns: POD_B,
            mnt_ns: POD_MNT,
            ret: 0,
            flags: 4096,
            from_dfd: -100,
            to_dfd: -100,
            source: "/proc/self/ns/net".into(),
            target: PIN_A.into(),
        }),
    ));
    // The cache entry of the victim's loopback attachment, read after the hostile pin.
    c.handle(&entry("lo", "cni-loopback"));
    // The runtime's DEL through the victim's path.
    c.handle(&cni(8 * S, 120, "bridge", "DEL", SANDBOX_A, PIN_A));

    let ns = |id: NsId| c.namespaces().find(|n| n.ns_id() == id).unwrap();
    let victim = &ns(POD_A).owner;
    assert_eq!(
        (
            victim.sandbox_id.as_deref(),
            victim.pod_name.as_deref(),
            victim.cni_network.as_deref()
        ),
        (Some(victim_uuid), Some("web-aaaa0001"), Some("pod-net")),
        "{victim:#?}"
    );
    let hostile = ns(POD_B);
    assert!(hostile.owner.is_empty(), "{:#?}", hostile.owner);
    let pins: Vec<_> = hostile
        .pins
        .iter()
        .map(|p| (p.path.as_deref(), p.mount_ns, p.by.map(|b| b.pid)))
        .collect();
    assert_eq!(
        pins,
        [(
            Some(PIN_A.trim_start_matches("/var")),
            Some(POD_MNT),
            Some(210)
        )],
        "still a pin, in its mount namespace, made by the pod's own mount call"
    );
    let pinned = CniTarget::Pin { netns: POD_A };
    assert_eq!(
        summary(c.cni_calls_for_sandbox(SANDBOX_A)),
        vec![
            call("bridge", "ADD", pinned.clone()),
            call("bridge", "DEL", pinned.clone()),
        ]
    );
    assert_eq!(c.cni_calls_for_namespace(&id_of(&c, POD_B)).count(), 0);
}
