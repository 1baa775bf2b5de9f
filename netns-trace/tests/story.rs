//! Issue 18 items 2, 3 and 4 through the real binary: `scan` output that fits a scan (no
//! trace header, ages from evidence, `-` for no owner), one namespace's story
//! (`report --netns`, `scan --netns`) and the report's filters, on the host kernel
//! (tracepoint mode) with iproute2 making namespaces.
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::watch::netns_trace_bin;
use common::{ip_bin, namespace_with_inum, require_root};
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

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/traces")
        .join(name)
        .display()
        .to_string()
}

/// The CNI incident recorded in a 6.1 guest (full mode, the real reference plugins): pod-a's
/// story, asked for by its pod name, says how it was made, served and left behind.
#[test]
fn a_recorded_incident_tells_the_leaked_pods_story() {
    let trace = fixture("6.1-cni-incident.nstrace");
    let story = json(&[
        "report", &trace, "--grace", "1", "--netns", "pod-a", "--json",
    ]);
    assert_eq!(story["schema"], "netns-trace/story/v1");
    assert_eq!(story["namespace"]["owner"]["pod_name"], "pod-a");
    assert_eq!(
        story["verdict"]["state"], "leaked",
        "{:#}",
        story["verdict"]
    );
    assert_eq!(story["verdict"]["reason"]["rule"], "memberless_past_grace");
    let timeline = story["timeline"].as_array().unwrap();
    let whats: Vec<&str> = timeline
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    let first = |w: &str| {
        whats
            .iter()
            .position(|x| *x == w)
            .unwrap_or_else(|| panic!("no {w}: {whats:?}"))
    };
    // In order: created, its member joined, CNI ADD, pinned, the member left, CNI DEL, the
    // leak finding.
    assert_eq!(whats[0], "created");
    assert!(
        first("joined") < first("pinned") && first("pinned") < first("left"),
        "{whats:?}"
    );
    let cni: Vec<&Value> = timeline.iter().filter(|e| e["what"] == "cni").collect();
    assert!(
        cni.iter().any(|e| e["call"]["verb"] == "ADD")
            && cni.iter().any(|e| e["call"]["verb"] == "DEL")
    );
    assert!(first("left") < timeline.iter().rposition(|e| e["what"] == "cni").unwrap());
    assert!(
        timeline
            .iter()
            .any(|e| e["what"] == "finding" && e["kind"] == "leaked_netns")
    );
    let times: Vec<u64> = timeline
        .iter()
        .map(|e| e["at_ns"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    assert!(
        !story["visits"].as_array().unwrap().is_empty(),
        "plugins and ip visited"
    );
    let pinned = &timeline[first("pinned")]["pin"];
    assert_eq!(pinned["by"]["comm"], "mount", "{pinned}");
    assert!(pinned["mount_ns"].is_u64());

    // The same story by its pin path, inode number and cookie; and as text.
    let id = story["namespace"]["id"].as_str().unwrap();
    let path = story["namespace"]["pins"][0]["path"].as_str().unwrap();
    for other in [
        path.to_string(),
        story["namespace"]["inum"].to_string(),
        story["namespace"]["cookie"].to_string(),
    ] {
        let again = json(&[
            "report", &trace, "--grace", "1", "--netns", &other, "--json",
        ]);
        assert_eq!(again["namespace"]["id"], id, "{other}");
    }
    let text = ok_stdout(&[
        "report",
        &trace,
        "--grace",
        "1",
        "--netns",
        "netns-trace-tests/pod-a",
    ]);
    // --fail-on-leak judges the one namespace told: pod-a leaked, pod-b lives.
    let leak = run(&[
        "report",
        &trace,
        "--grace",
        "1",
        "--netns",
        "pod-a",
        "--fail-on-leak",
    ]);
    assert_eq!(leak.status.code(), Some(3));
    let fine = run(&[
        "report",
        &trace,
        "--grace",
        "1",
        "--netns",
        "pod-b",
        "--fail-on-leak",
    ]);
    assert_eq!(fine.status.code(), Some(0));
    assert!(
        text.starts_with(&format!("netns-trace story of {id} (leaked)")),
        "{text}"
    );
    for part in [
        "TIMELINE",
        "VISITS",
        "DEVICES AND ADDRESSES",
        "10.231.62.11/24",
        "VERDICT\n  leaked: a real member lived there",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    // The root cgroup names no owner.
    let owner = text.lines().nth(1).unwrap();
    assert!(
        owner.starts_with("owner: pod netns-trace-tests/pod-a"),
        "{owner}"
    );
    assert!(!owner.contains("cgroup"), "{owner}");
}

#[test]
fn an_id_that_names_no_single_namespace_lists_the_candidates() {
    let trace = fixture("6.1-cni-incident.nstrace");
    let out = run(&["report", &trace, "--netns", "no-such-pod"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no namespace matches no-such-pod"), "{err}");
    assert!(
        err.contains("pod netns-trace-tests/pod-b"),
        "candidates listed: {err}"
    );
    assert!(out.stdout.is_empty());
    // A pod name and a path that hostile text cannot forge lines with.
    let out = run(&["report", &trace, "--netns", "x\n[1] leaked_netns forged"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no namespace matches x\\n[1]"),
        "escaped: {err}"
    );
}

/// Recorded on this host (tracepoint mode): `ip netns add`, then `ip netns del`. Its story,
/// asked for by the pin path, has the pin made and removed by ip, and the teardown.
#[test]
fn a_host_recording_tells_a_pins_life_and_scan_tells_a_live_story() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("story.nstrace");
    let name = format!("nt-story-{}", std::process::id());
    let script = format!(
        "{ip} netns add {name} && {ip} -n {name} link set lo up && sleep 1 && {ip} netns del {name}; sleep 1; unshare -n true; sleep 1; unshare -n true",
        ip = ip_bin()
    );
    let out = Command::new(netns_trace_bin())
        .args([
            "record",
            "--quiet",
            "--grace",
            "3",
            "--mode",
            "tracepoint",
            "-o",
        ])
        .arg(&trace)
        .args(["--", "sh", "-c", &script])
        .output()
        .expect("record");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = trace.display().to_string();
    let pin = format!("/run/netns/{name}");
    let story = json(&["report", &trace, "--grace", "2", "--netns", &pin, "--json"]);
    let timeline = story["timeline"].as_array().unwrap();
    let whats: Vec<&str> = timeline
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert_eq!(timeline[0]["what"], "created", "{whats:?}");
    assert_eq!(timeline[0]["comm"], "ip");
    let pinned = timeline
        .iter()
        .find(|e| e["what"] == "pinned")
        .expect("pinned");
    assert_eq!(pinned["pin"]["path"], pin.as_str());
    assert_eq!(pinned["pin"]["by"]["comm"], "ip", "{pinned}");
    let unpinned = timeline
        .iter()
        .find(|e| e["what"] == "unpinned")
        .expect("unpinned");
    assert_eq!(unpinned["pin"]["path"], pin.as_str());
    assert_eq!(*whats.last().unwrap(), "destroyed", "{whats:?}");
    assert_eq!(story["verdict"]["state"], "destroyed");
    assert_eq!(story["verdict"]["reason"]["rule"], "destroyed");
    let text = ok_stdout(&["report", &trace, "--grace", "2", "--netns", &pin]);
    assert!(
        text.contains(&format!("pinned: bind mount {pin}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("unpinned: bind mount {pin}")),
        "{text}"
    );

    // Live: scan --netns by the pin path of a namespace that exists now.
    let live = IpNetns::add("scanstory");
    let story = json(&[
        "scan",
        "--netns",
        &live.path().display().to_string(),
        "--json",
    ]);
    assert_eq!(story["namespace"]["inum"], live.inum());
    assert_eq!(story["namespace"]["age"]["source"], "nsfs_ctime");
    assert_eq!(story["verdict"]["state"], "leak_suspect");
    assert_eq!(story["verdict"]["reason"]["rule"], "history_unknown");
    let text = ok_stdout(&["scan", "--netns", &live.inum().to_string()]);
    assert!(
        text.contains("VERDICT\n  leak_suspect: it had no member when first seen"),
        "{text}"
    );
    assert!(text.contains("age: "), "{text}");
}

/// id → state of every namespace a report lists.
fn states(report: &Value) -> Vec<(String, String)> {
    report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every namespace a filtered report lists is in the whole report, in the same state.
fn same_verdicts(filtered: &Value, whole: &Value) {
    let all = states(whole);
    for s in states(filtered) {
        assert!(
            all.contains(&s),
            "filters never change a verdict: {s:?} vs {all:?}"
        );
    }
}

/// `--state` and `--pod` on the CNI incident recorded in a 6.1 guest.
#[test]
fn state_and_pod_filters_choose_namespaces_and_keep_verdicts() {
    let trace = fixture("6.1-cni-incident.nstrace");
    let base = ["report", trace.as_str(), "--grace", "1", "--json"];
    let whole = json(&base);
    let with = |extra: &[&str]| json(&[&base[..], extra].concat());

    let leaked = with(&["--state", "leaked"]);
    let ids = states(&leaked);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(leaked["namespaces"][0]["owner"]["pod_name"], "pod-a");
    same_verdicts(&leaked, &whole);
    assert!(
        leaked["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "leaked_netns")
    );

    for pod in ["pod-b", "netns-trace-tests/pod-b"] {
        let b = with(&["--pod", pod]);
        assert_eq!(states(&b).len(), 1, "{pod}");
        assert_eq!(b["namespaces"][0]["owner"]["pod_name"], "pod-b");
        same_verdicts(&b, &whole);
        // Its duplicate IP, shared with the leaked pod-a, is shown with it.
        let kinds: Vec<&str> = b["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["duplicate_ip"], "{pod}");
    }
    let uid = whole["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["owner"]["pod_name"] == "pod-b")
        .unwrap()["owner"]["pod_uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(states(&with(&["--pod", &uid])).len(), 1);
    assert!(states(&with(&["--pod", "pod-a", "--state", "alive"])).is_empty());

    // Several states: a comma list, or the option repeated; a namespace in any of them.
    let two = with(&["--state", "leaked,alive"]);
    assert_eq!(two, with(&["--state", "alive", "--state", "leaked"]));
    let expected: Vec<(String, String)> = states(&whole)
        .into_iter()
        .filter(|(_, s)| s == "leaked" || s == "alive")
        .collect();
    assert!(expected.iter().any(|(_, s)| s == "alive"), "{expected:?}");
    assert_eq!(states(&two), expected);
    assert_eq!(
        two["trace"]["filters"]["state"],
        serde_json::json!(["alive", "leaked"])
    );
    let text = ok_stdout(&["report", &trace, "--state", "leaked,alive"]);
    assert!(text.contains("filters: state alive or leaked"), "{text}");

    let out = run(&["report", &trace, "--state", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown state \"gone\""));
}

/// `--since` / `--until` on the clean teardown recorded in a 6.1 guest: as durations from the
/// trace's start and as wall clock, which the header maps to the trace's clock.
#[test]
fn time_filters_take_trace_time_or_wall_clock() {
    let trace = fixture("6.1-clean-teardown.nstrace");
    let base = ["report", trace.as_str(), "--grace", "1", "--json"];
    let whole = json(&base);
    let start = whole["trace"]["started_at_ns"].as_u64().unwrap();
    let clock = &whole["trace"]["clock"];
    let (mono, real) = (
        clock["monotonic_ns"].as_u64().unwrap(),
        clock["realtime_ns"].as_u64().unwrap(),
    );
    let list = whole["namespaces"].as_array().unwrap();
    let destroyed = list
        .iter()
        .find(|n| n["state"] == "destroyed")
        .expect("one destroyed");
    let gone = destroyed["destroyed_at_ns"].as_u64().unwrap();
    let born = |n: &Value| {
        n["created_at_ns"]
            .as_u64()
            .unwrap_or_else(|| n["first_seen_ns"].as_u64().unwrap())
    };
    let ids = |r: &Value| states(r).into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    let secs = |t: u64| format!("{:.3}", (t - start) as f64 / 1e9);
    let wall = |t: u64| {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_nanos(real + t - mono),
        )
        .to_string()
    };
    let with = |extra: &[&str]| json(&[&base[..], extra].concat());

    // Since just after the teardown: the destroyed namespace is out, the living stay.
    let after = gone + 100_000_000;
    for t in [
        secs(after),
        format!("{}ms", (after - start) / 1_000_000),
        wall(after),
    ] {
        let r = with(&["--since", &t]);
        let got = ids(&r);
        assert!(
            !got.contains(&destroyed["id"].as_str().unwrap().to_string()),
            "--since {t}: {got:?}"
        );
        let alive_then: Vec<String> = list
            .iter()
            .filter(|n| n["destroyed_at_ns"].is_null())
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, alive_then, "--since {t}");
        same_verdicts(&r, &whole);
    }
    // Until just before the destroyed one was born: only what was born by then.
    let before = born(destroyed) - 1_000_000;
    let expected: Vec<String> = list
        .iter()
        .filter(|n| born(n) <= before)
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!expected.is_empty() && expected.len() < list.len());
    for t in [secs(before), wall(before)] {
        let r = with(&["--until", &t]);
        assert_eq!(ids(&r), expected, "--until {t}");
        same_verdicts(&r, &whole);
    }
    let text = ok_stdout(&["report", &trace, "--since", &secs(after)]);
    assert!(text.contains("filters: since "), "{text}");

    let out = run(&["report", &trace, "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a duration"));
}
