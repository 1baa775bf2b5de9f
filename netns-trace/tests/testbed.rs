//! Tests of the scenario testbed itself: every scenario must leave the kernel in the state its
//! JSON claims, checked with independent evidence (procfs, mountinfo, iproute2, ARP on the
//! wire), and teardown must make its namespaces disappear. Needs root; run serially:
//! `cargo test -p netns-trace --test testbed -- --test-threads=1`.
mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use common::*;

/// Namespace destruction is asynchronous (cleanup_net on a workqueue) and holders disappear a
/// moment after their process is killed.
const GONE_WITHIN: Duration = Duration::from_secs(10);

fn assert_gone(inum: u64, cookie: Option<u64>, what: &str) {
    assert!(
        wait_until(GONE_WITHIN, || !netns_exists(inum, cookie)),
        "{what} net:[{inum}] (cookie {cookie:?}) still held after teardown by {:?}",
        netns_holders(inum)
    );
}

/// Waits until the namespace the scenario reported at `pointer` ("/pod_a" or "" for the top
/// level) is gone, keyed on inum and, when the kernel has it, cookie.
fn assert_gone_at(out: &Value, pointer: &str, what: &str) {
    let ns = out
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {out}"));
    let inum = ns["netns_inum"]
        .as_u64()
        .unwrap_or_else(|| panic!("no netns_inum at {pointer}"));
    assert_gone(inum, ns["netns_cookie"].as_u64(), what);
}

fn self_mount_root_at(mount_point: &str) -> Option<String> {
    nsfs_mounts(Path::new("/proc/self/mountinfo"))
        .into_iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
        .map(|m| m.root)
}

#[test]
fn help_explains_every_subcommand() {
    let out = std::process::Command::new(testbed_bin())
        .arg("--help")
        .output()
        .expect("run testbed --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "incident",
        "teardown",
        "fd-pin",
        "copied-mount",
        "new-mount-api",
        "runtime-style",
        "churn",
        "proc-churn",
    ] {
        assert!(help.contains(sub), "--help lacks {sub}:\n{help}");
    }
    let out = std::process::Command::new(testbed_bin())
        .args(["incident", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--clean-teardown") && help.contains("--keep") && help.contains("10.231"),
        "{help}"
    );
}

#[test]
fn incident_rejects_addresses_outside_the_testbed_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    for bad in [
        "192.168.1.10/24",
        "10.231.1.10/8",
        "10.231.1.0/24",
        "nonsense",
    ] {
        let err = try_testbed(&["incident", "--dir", &d, "--ip", bad]).expect_err(bad);
        assert!(err.contains("invalid argument"), "{bad}: {err}");
    }
    // Nothing was created for the rejected runs.
    assert!(try_testbed(&["teardown", "--dir", &d]).unwrap()["runs"] == 0);
}

#[test]
fn incident_leaks_pod_a_and_both_pods_answer_arp() {
    if !require_root() {
        return;
    }
    let s = Scenario::start("incident", &["--ip", "10.231.1.10/24"]);
    let out = &s.out;
    assert_eq!(out["leak_expected"], true);
    let pod_a_inum = s.u64_at("/pod_a/netns_inum");
    let pod_b_inum = s.u64_at("/pod_b/netns_inum");
    let node_inum = s.u64_at("/node/netns_inum");
    let client_inum = s.u64_at("/client/netns_inum");
    let all = [pod_a_inum, pod_b_inum, node_inum, client_inum];
    assert_eq!(
        all.iter().collect::<std::collections::HashSet<_>>().len(),
        4,
        "namespaces not distinct: {out}"
    );

    // The pin is an nsfs mount of pod A's namespace, and pod A's pause is dead.
    let pin_a = s.str_at("/pod_a/pin").to_string();
    assert!(
        Path::new(&pin_a)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("cni-")
    );
    assert_eq!(
        self_mount_root_at(&pin_a),
        Some(format!("net:[{pod_a_inum}]"))
    );
    assert!(
        !process_alive(s.u64_at("/pod_a/pause_pid")),
        "pod A's pause is still alive"
    );
    let pause_b = s.u64_at("/pod_b/pause_pid");
    assert!(process_alive(pause_b));
    assert_eq!(
        ns_inum(Path::new(&format!("/proc/{pause_b}/ns/net"))),
        Some(pod_b_inum)
    );
    // Nothing but the mount holds pod A's namespace.
    let holders = netns_holders(pod_a_inum);
    assert!(
        !holders.is_empty() && holders.iter().all(|h| h.starts_with("mount ")),
        "{holders:?}"
    );

    // iproute2 sees the same IP in both pods, with different MACs.
    let (mac_a, addrs_a) = link_mac_and_ipv4(Path::new(&pin_a), "eth0");
    let (mac_b, addrs_b) = link_mac_and_ipv4(Path::new(&format!("/proc/{pause_b}/ns/net")), "eth0");
    assert_eq!(addrs_a, vec!["10.231.1.10/24".to_string()]);
    assert_eq!(addrs_b, addrs_a);
    assert_eq!(mac_a, "02:00:0a:e7:01:0a");
    assert_eq!(mac_b, "02:01:0a:e7:01:0a");
    assert_eq!(out["pod_a"]["mac"], mac_a.as_str());
    assert_eq!(out["pod_b"]["mac"], mac_b.as_str());
    // The bridge in the node namespace has the three ports.
    let node_pin = Path::new(s.str_at("/node/pin"));
    let ports = ip_json_in(node_pin, &["link", "show", "master", s.str_at("/bridge")]);
    let mut names: Vec<&str> = ports
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["veth-a", "veth-b", "veth-c"]);

    // The testbed's own exchange saw both, and so does an ARP probe of ours.
    let mut claimed: Vec<&str> = out["arp"]["responder_macs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    claimed.sort();
    assert_eq!(claimed, [mac_a.as_str(), mac_b.as_str()]);
    assert_eq!(out["arp"]["stale_reply"], true);
    let seen = arp_reply_macs(
        Path::new(s.str_at("/client/pin")),
        "eth0",
        Ipv4Addr::new(10, 231, 1, 10),
        2,
    );
    assert!(
        seen.contains(&mac_a) && seen.contains(&mac_b),
        "ARP replies seen: {seen:?}"
    );
    assert_eq!(seen.len(), 4, "two replies per request expected: {seen:?}");

    let report = s.teardown();
    assert!(
        report["unmounted"].as_array().unwrap().len() >= 4,
        "{report}"
    );
    for role in ["/pod_a", "/pod_b", "/node", "/client"] {
        assert_gone_at(&s.out, role, role);
    }
    assert!(!Path::new(&pin_a).exists());
}

#[test]
fn incident_clean_teardown_leaves_no_leak() {
    if !require_root() {
        return;
    }
    let s = Scenario::start("incident", &["--ip", "10.231.2.20/24", "--clean-teardown"]);
    assert_eq!(s.out["leak_expected"], false);
    let pod_a_inum = s.u64_at("/pod_a/netns_inum");
    let pin_a = s.str_at("/pod_a/pin").to_string();
    assert_eq!(self_mount_root_at(&pin_a), None);
    assert!(!Path::new(&pin_a).exists());
    // Pod A's namespace is freed; its inode number may already serve a later namespace of
    // the same scenario, which itself proves the release (an inum is recycled only after free).
    match s.out["pod_a_inum_reused_by"].as_str() {
        None => assert_gone_at(&s.out, "/pod_a", "cleanly torn down pod A"),
        Some(role) => {
            assert_eq!(s.u64_at(&format!("/{role}/netns_inum")), pod_a_inum);
            if let (Some(a), Some(b)) = (
                s.out["pod_a"]["netns_cookie"].as_u64(),
                s.out[role]["netns_cookie"].as_u64(),
            ) {
                assert_ne!(a, b, "same inum, and the same cookie too?");
            }
        }
    }
    let mac_b = s.str_at("/pod_b/mac").to_string();
    assert_eq!(s.out["arp"]["responder_macs"], serde_json::json!([mac_b]));
    assert_eq!(s.out["arp"]["stale_reply"], false);
    let seen = arp_reply_macs(
        Path::new(s.str_at("/client/pin")),
        "eth0",
        Ipv4Addr::new(10, 231, 2, 20),
        2,
    );
    assert_eq!(seen, vec![mac_b.clone(), mac_b]);
    s.teardown();
    for role in ["/pod_b", "/node", "/client"] {
        assert_gone_at(&s.out, role, role);
    }
}

#[test]
fn incident_without_keep_cleans_up_after_itself() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = testbed(&[
        "incident",
        "--dir",
        &dir.path().to_string_lossy(),
        "--ip",
        "10.231.3.30/24",
        "--arp-count",
        "1",
    ]);
    assert_eq!(out["kept"], false);
    assert_eq!(out["arp"]["stale_reply"], true);
    for role in ["/pod_a", "/pod_b", "/node", "/client"] {
        assert_gone_at(&out, role, role);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "files left behind"
    );
}

#[test]
fn fd_pin_holds_namespace_after_member_exits() {
    if !require_root() {
        return;
    }
    let s = Scenario::start("fd-pin", &[]);
    let inum = s.u64_at("/netns_inum");
    let holder = s.u64_at("/holder_pid");
    let fd = s.u64_at("/holder_fd");
    assert!(!process_alive(s.u64_at("/member_pid")));
    assert!(process_alive(holder));
    assert_eq!(
        std::fs::read_link(format!("/proc/{holder}/fd/{fd}"))
            .unwrap()
            .to_string_lossy(),
        format!("net:[{inum}]")
    );
    // The holder lives outside the namespace it pins.
    assert_ne!(
        ns_inum(Path::new(&format!("/proc/{holder}/ns/net"))),
        Some(inum)
    );
    let holders = netns_holders(inum);
    assert_eq!(holders, vec![format!("fd /proc/{holder}/fd/{fd}")]);
    s.teardown();
    assert!(!process_alive(holder));
    assert_gone_at(&s.out, "", "fd-pinned");
}

#[test]
fn copied_mount_pins_namespace_from_a_private_mount_namespace() {
    if !require_root() {
        return;
    }
    let s = Scenario::start("copied-mount", &[]);
    let inum = s.u64_at("/netns_inum");
    let holder = s.u64_at("/holder_pid");
    let root = format!("net:[{inum}]");
    assert!(
        !nsfs_mounts(Path::new("/proc/self/mountinfo"))
            .iter()
            .any(|m| m.root == root)
    );
    let copies: Vec<_> = nsfs_mounts(Path::new(&format!("/proc/{holder}/mountinfo")))
        .into_iter()
        .filter(|m| m.root == root)
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].mount_point, s.str_at("/original_path"));
    let holder_mnt = ns_inum(Path::new(&format!("/proc/{holder}/ns/mnt"))).unwrap();
    assert_eq!(holder_mnt, s.u64_at("/holder_mnt_ns_inum"));
    assert_ne!(Some(holder_mnt), ns_inum(Path::new("/proc/self/ns/mnt")));
    assert!(netns_inum_exists(inum));
    s.teardown();
    assert_gone_at(&s.out, "", "copied-mount");
}

#[test]
fn new_mount_api_pins_namespace() {
    if !require_root() {
        return;
    }
    let s = Scenario::start("new-mount-api", &[]);
    let inum = s.u64_at("/netns_inum");
    let pin = s.str_at("/pin").to_string();
    assert_eq!(self_mount_root_at(&pin), Some(format!("net:[{inum}]")));
    assert_eq!(ns_inum(Path::new(&pin)), Some(inum));
    // The creating thread went back: no task of the testbed is left in it.
    let holders = netns_holders(inum);
    assert!(
        holders.iter().all(|h| h.starts_with("mount ")),
        "{holders:?}"
    );
    s.teardown();
    assert_gone_at(&s.out, "", "new-mount-api");
}

#[test]
fn runtime_style_member_joins_and_pin_outlives_it() {
    if !require_root() {
        return;
    }
    let s = Scenario::start("runtime-style", &[]);
    let inum = s.u64_at("/netns_inum");
    let member = s.u64_at("/member_pid");
    assert!(process_alive(member));
    assert_eq!(
        ns_inum(Path::new(&format!("/proc/{member}/ns/net"))),
        Some(inum)
    );
    assert_eq!(
        self_mount_root_at(s.str_at("/pin")),
        Some(format!("net:[{inum}]"))
    );
    s.teardown();
    assert_gone_at(&s.out, "", "runtime-style");

    let s = Scenario::start("runtime-style", &["--kill-member"]);
    let inum = s.u64_at("/netns_inum");
    assert!(!process_alive(s.u64_at("/member_pid")));
    let holders = netns_holders(inum);
    assert!(
        !holders.is_empty() && holders.iter().all(|h| h.starts_with("mount ")),
        "{holders:?}"
    );
    s.teardown();
    assert_gone_at(&s.out, "", "runtime-style --kill-member");
}

#[test]
fn teardown_is_idempotent() {
    if !require_root() {
        return;
    }
    let s = Scenario::start("fd-pin", &[]);
    let first = s.teardown();
    assert_eq!(first["runs"], 1);
    assert_eq!(first["killed"].as_array().unwrap().len(), 1);
    let second = s.teardown();
    assert_eq!(second["runs"], 0);
    assert!(second["killed"].as_array().unwrap().is_empty());
    // A directory that never existed is fine too.
    let third = testbed(&[
        "teardown",
        "--dir",
        &s.dir().join("nowhere").to_string_lossy(),
    ]);
    assert_eq!(third["runs"], 0);
}

#[test]
fn churn_creates_and_releases_namespaces() {
    if !require_root() {
        return;
    }
    let plain = testbed(&["churn", "--count", "50"]);
    assert_eq!(plain["count"], 50);
    assert!(plain["elapsed_ns"].as_u64().unwrap() > 0);

    let dir = tempfile::tempdir().unwrap();
    let full = testbed(&[
        "churn",
        "--count",
        "20",
        "--pin",
        "--join",
        "--dir",
        &dir.path().to_string_lossy(),
    ]);
    assert_eq!(full["count"], 20);
    assert_eq!(full["joins"], 20);
    // Every pin was unmounted and its file removed.
    let pin = full["pin_path"].as_str().unwrap();
    assert!(
        nsfs_mounts(Path::new("/proc/self/mountinfo"))
            .iter()
            .all(|m| m.mount_point != pin)
    );
    assert!(!Path::new(pin).exists());
    if let Some(count) = net_namespace_slab_count() {
        assert!(
            count > 0,
            "the host namespace alone is a live net_namespace object"
        );
    }
}

#[test]
fn proc_churn_runs_true() {
    let out = testbed(&["proc-churn", "--count", "20"]);
    assert_eq!(out["count"], 20);
    assert!(out["per_process_ns"].as_u64().unwrap() > 0);
    assert!(
        try_testbed(&[
            "proc-churn",
            "--count",
            "1",
            "--program",
            "/nonexistent/program"
        ])
        .is_err()
    );
}

use serde_json::Value;
