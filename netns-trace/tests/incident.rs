//! The production incident, end to end on the running kernel: a pod's pause process dies
//! before CNI DEL, its bind mount keeps the namespace (veth, IP, MAC) alive, a new pod gets
//! the same IP, and ARP for it gets two answers. netns-trace must say all of that, live and
//! from a recorded trace, identically; and must stay quiet when the pod is torn down properly.
mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::watch::{Watch, findings, netns_trace_bin, netns_trace_json};
use common::{Scenario, require_root};
use serde_json::Value;

fn kinds_for(findings: &[Value], netns_inum: u64) -> BTreeSet<String> {
    findings
        .iter()
        .filter(|f| {
            f["netns"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("net:[{netns_inum}]")))
        })
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_incident_is_reported_live_from_a_trace_and_by_scan() {
    if !require_root() {
        return;
    }
    let trace = tempfile::Builder::new()
        .suffix(".trace")
        .tempfile()
        .unwrap()
        .into_temp_path();
    std::fs::remove_file(&trace).unwrap();
    let trace_arg = trace.to_str().unwrap();
    let watch = Watch::start(&["--grace", "2", "--record", trace_arg]);
    let sc = Scenario::start("incident", &["--ip", "10.231.41.10/24"]);
    let pod_a = sc.out["pod_a"]["netns_inum"].as_u64().unwrap();
    let pod_b = sc.out["pod_b"]["netns_inum"].as_u64().unwrap();
    let pin = sc.out["pod_a"]["pin"].as_str().unwrap().to_string();
    assert!(
        sc.out["arp"]["stale_reply"].as_bool().unwrap(),
        "the testbed saw two ARP answers"
    );
    // Past the grace period, then a little more for the verdict tick.
    std::thread::sleep(Duration::from_secs(5));

    // scan: no history, but the pin, the memberless namespace and the duplicate IP are there.
    let scan = netns_trace_json(&["scan", "--json"]);
    assert_eq!(scan["schema"], "netns-trace/report/v1");
    let ns_a = scan["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["inum"] == pod_a)
        .expect("scan lists pod A");
    assert_eq!(ns_a["state"], "leak_suspect");
    assert!(
        ns_a["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["path"] == pin.as_str()),
        "{ns_a}"
    );
    let scan_findings = scan["findings"].as_array().unwrap();
    assert!(
        scan_findings
            .iter()
            .any(|f| f["kind"] == "duplicate_ip" && f["ip"] == "10.231.41.10"),
        "{scan_findings:?}"
    );
    let out = Command::new(netns_trace_bin())
        .args(["scan", "--fail-on-leak"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "scan --fail-on-leak exits 3 on a leak suspect"
    );

    let lines = watch.stop();
    let live = findings(&lines);

    // Live: the leak names the bind mount, the pause process and pod A's address.
    let leak = live
        .iter()
        .find(|f| {
            f["kind"] == "leaked_netns"
                && f["netns"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("net:[{pod_a}]"))
        })
        .unwrap_or_else(|| panic!("no leaked_netns for pod A (net:[{pod_a}]) in {live:#?}"));
    assert!(
        leak["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["path"] == pin.as_str()),
        "{leak}"
    );
    assert!(
        leak["interfaces"].to_string().contains("10.231.41.10"),
        "pod A's address in the evidence: {leak}"
    );
    assert!(
        live.iter()
            .any(|f| f["kind"] == "duplicate_ip" && f["ip"] == "10.231.41.10"),
        "duplicate_ip for the reused address"
    );
    let in_a = |f: &Value, field: &str| {
        f[field]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("net:[{pod_a}]")))
    };
    assert!(
        live.iter().any(|f| f["kind"] == "stale_arp_reply"
            && f["sender_ip"] == "10.231.41.10"
            && in_a(f, "observed_in")),
        "no stale_arp_reply from pod A: {live:#?}"
    );
    assert!(
        !live.iter().any(|f| f["kind"] == "stale_arp_reply"
            && f["observed_in"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("net:[{pod_b}]")))),
        "pod B, the live owner, is never accused: {live:#?}"
    );
    assert!(
        !kinds_for(&live, pod_b).contains("leaked_netns"),
        "pod B is alive, not leaked"
    );

    // Offline: the recorded trace replays to the same findings.
    let report = netns_trace_json(&["report", trace_arg, "--json", "--grace", "2"]);
    let key = |f: &Value| {
        (
            f["kind"].as_str().unwrap().to_string(),
            f["netns"].as_str().unwrap().to_string(),
        )
    };
    let live_keys: BTreeSet<_> = live.iter().map(key).collect();
    let replay_keys: BTreeSet<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    assert_eq!(live_keys, replay_keys, "live and replayed findings differ");
    let report_a = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["inum"] == pod_a)
        .unwrap();
    assert_eq!(report_a["state"], "leaked");

    let out = Command::new(netns_trace_bin())
        .args(["report", trace_arg, "--grace", "2", "--fail-on-leak"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    drop(sc);
}

#[test]
fn a_properly_torn_down_pod_is_not_reported() {
    if !require_root() {
        return;
    }
    let watch = Watch::start(&["--grace", "2"]);
    let sc = Scenario::start("incident", &["--ip", "10.231.42.10/24", "--clean-teardown"]);
    let pod_a = sc.out["pod_a"]["netns_inum"].as_u64().unwrap();
    let pod_a_cookie = sc.out["pod_a"]["netns_cookie"].as_u64();
    std::thread::sleep(Duration::from_secs(5));
    let lines = watch.stop();
    let live = findings(&lines);
    let leaked_a = live.iter().any(|f| {
        f["kind"] == "leaked_netns"
            && match pod_a_cookie {
                Some(c) => f["netns"] == format!("net:[{pod_a}]#{c}"),
                None => f["netns"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("net:[{pod_a}]")),
            }
    });
    assert!(!leaked_a, "pod A was torn down properly: {live:#?}");
    assert!(
        !live
            .iter()
            .any(|f| f["kind"] == "duplicate_ip" && f["ip"] == "10.231.42.10"),
        "no duplicate once A is gone"
    );
    drop(sc);
}
