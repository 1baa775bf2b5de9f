//! Issue 18 items 2, 3 and 4 through the real binary: `scan` output that fits a scan (no
//! trace header, ages from evidence, `-` for no owner), one namespace's story
//! (`report --netns`, `scan --netns`) and the report's filters, on the host kernel
//! (tracepoint mode) with iproute2 making namespaces.
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::watch::netns_trace_bin;
use common::{ip_bin, require_root};
use serde_json::Value;

/// `ip netns add NAME` now, `ip netns del NAME` when dropped.
struct IpNetns {
    name: String,
}

impl IpNetns {
    fn add(tag: &str) -> Self {
        let name = format!("nt-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        Self { name }
    }

    fn path(&self) -> std::path::PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    fn inum(&self) -> u64 {
        common::ns_inum(&self.path()).expect("the pin exists")
    }
}

impl Drop for IpNetns {
    fn drop(&mut self) {
        let _ = Command::new(ip_bin())
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new(ip_bin()).args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?}: {st}");
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(netns_trace_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run netns-trace");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn ok_stdout(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "netns-trace {args:?}: {}", out.status);
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok_stdout(args)).expect("JSON")
}

fn namespace_with_inum(report: &Value, inum: u64) -> Option<&Value> {
    report["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["inum"] == inum)
}

#[test]
fn scan_dates_namespaces_from_evidence_and_prints_no_trace_header() {
    if !require_root() {
        return;
    }
    let ns = IpNetns::add("age");
    // A namespace whose one member sits in the root cgroup: no owner.
    let mut member = Command::new("unshare")
        .args(["-n", "sleep", "60"])
        .spawn()
        .expect("unshare -n sleep");
    std::thread::sleep(Duration::from_secs(2));
    let inum = ns.inum();
    let member_inum = common::ns_inum(
        &Path::new("/proc")
            .join(member.id().to_string())
            .join("ns/net"),
    )
    .expect("the member's namespace");

    let doc = json(&["scan", "--json"]);
    assert!(doc["scanned_at"].is_string(), "{}", doc["scanned_at"]);
    let view = namespace_with_inum(&doc, inum).expect("the pinned namespace is listed");
    let age = &view["age"];
    // `ip netns add` bind-mounted it: the nsfs inode has lived since then, and that is the
    // oldest evidence (ip, its only member, has exited).
    assert_eq!(age["source"], "nsfs_ctime", "{view:#}");
    assert_eq!(age["estimated"], true);
    let age_ns = age["age_ns"].as_u64().unwrap();
    assert!(
        (2_000_000_000..120_000_000_000).contains(&age_ns),
        "added 2 s before the scan: {age_ns} ns"
    );
    assert_eq!(view["owner"]["sandbox_id"], ns.name.as_str(), "{view:#}");
    let lone = namespace_with_inum(&doc, member_inum).expect("the member's namespace is listed");
    // Its one member started (sleep) before anything looked at its nsfs inode.
    assert_eq!(lone["age"]["source"], "oldest_member_start", "{lone:#}");
    assert_eq!(lone["age"]["estimated"], true, "{lone:#}");
    assert!(
        lone["age"]["age_ns"].as_u64().unwrap() >= 1_500_000_000,
        "{lone:#}"
    );

    let text = ok_stdout(&["scan"]);
    assert!(text.starts_with("netns-trace scan"), "{text}");
    assert!(
        !text.contains("\ntrace:"),
        "no trace header in a scan: {text}"
    );
    assert!(!text.contains("alive for"), "{text}");
    assert!(text.contains("AGE (ESTIMATED FROM)"), "{text}");
    let id = view["id"].as_str().unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("no row for {id}: {text}"));
    assert!(row.contains("(nsfs ctime)"), "{row}");
    assert!(row.contains(&format!("sandbox {}", ns.name)), "{row}");
    let _ = member.kill();
    let _ = member.wait();
}
