//! Pod and container attribution end to end: the incident scenario's pause process lives in
//! a cgroup named the way kubelet and containerd name them (a real cgroup v2 hierarchy made
//! here), and a CNI result cache entry names its sandbox. `watch`, the replayed trace and
//! `scan` must all name the pod UID and the container ID of the leaked namespace.
//!
//! On a cgroup v1 or hybrid host, a member joins a pinned namespace first and is moved into a
//! v1 cgroup named the way podman names its containers (`/libpod_parent/libpod-<id>`) a moment
//! later, as runc does for `runc exec`: `scan` while it lives, and `watch` and the replayed
//! trace after it was killed, must name its container.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::watch::{Watch, findings, netns_trace_bin};
use common::{Scenario, listed_namespace, require_root};
use serde_json::{Value, json};

/// Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
/// hybrid host), from our own mountinfo.
fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mount_point = pre.split(' ').nth(4)?;
        (post.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(mount_point))
    })
}

/// A cgroup v1 hierarchy with the pids controller (where runtimes always place containers),
/// from our own mountinfo; None on a pure cgroup v2 host.
fn cgroup_v1_pids_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mount_point = pre.split(' ').nth(4)?;
        let mut fields = post.split(' ');
        let (fstype, super_options) = (fields.next()?, fields.nth(1)?);
        (fstype == "cgroup" && super_options.split(',').any(|o| o == "pids"))
            .then(|| PathBuf::from(mount_point))
    })
}

/// A random 64-hex container id, as runtimes make them.
fn random_container_id() -> String {
    let id = format!("{}{}", random_uuid(), random_uuid()).replace('-', "");
    assert_eq!(id.len(), 64);
    id
}

fn random_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("kernel uuid")
        .trim()
        .to_string()
}

/// Directories this test made under the cgroup v2 root, removed leaf first on drop (also
/// when an assertion fails). Ones that existed before are left alone.
struct CgroupGuard {
    made: Vec<PathBuf>,
}

impl CgroupGuard {
    fn create(root: &Path, relative: &[String]) -> (CgroupGuard, PathBuf) {
        let mut guard = CgroupGuard { made: Vec::new() };
        let mut path = root.to_path_buf();
        for part in relative {
            path.push(part);
            if !path.exists() {
                std::fs::create_dir(&path)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
                guard.made.push(path.clone());
            }
        }
        (guard, path)
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            // The killed pause may take a moment to leave its cgroup.
            for _ in 0..50 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
            if dir.exists() {
                eprintln!("could not remove cgroup {}", dir.display());
            }
        }
    }
}

fn run_json(args: &[&str], cni_dir: &Path) -> Value {
    let out = Command::new(netns_trace_bin())
        .args(args)
        .env("NETNS_TRACE_CNI_CACHE_DIR", cni_dir)
        .output()
        .expect("run netns-trace");
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?} JSON: {e}"))
}

/// The recorded events about namespace `inum` or process `pid` (JSON lines from `export`),
/// printed when an owner is not what it should be.
fn trace_story(trace: &str, inum: u64, pid: u64) -> String {
    let out = Command::new(netns_trace_bin())
        .args(["export", trace, "--format", "jsonl", "-o", "-"])
        .output()
        .expect("run netns-trace export");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                return false;
            };
            v["type"] != "snapshot" && v.to_string().contains(&format!("\"inum\":{inum}"))
                || v["pid"] == pid
                || v["tgid"] == pid
        })
        .collect();
    format!(
        "recorded events of net:[{inum}] and pid {pid}:\n{}",
        lines.join("\n")
    )
}

#[test]
fn the_leaked_namespace_names_its_pod_and_container() {
    if !require_root() {
        return;
    }
    let Some(root) = cgroup2_root() else {
        eprintln!("skipped: no cgroup2 hierarchy is mounted");
        return;
    };
    let pod_uid = random_uuid();
    let container_id = random_container_id();
    let relative = [
        "kubepods.slice".to_string(),
        "kubepods-besteffort.slice".to_string(),
        format!("kubepods-besteffort-pod{}.slice", pod_uid.replace('-', "_")),
        format!("cri-containerd-{container_id}.scope"),
    ];
    let (_cgroups, scope) = CgroupGuard::create(&root, &relative);
    let cgroup_suffix = format!("/{}", relative.join("/"));

    // The CNI cache directory exists (empty) from the start, as on a node.
    let cni_dir = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this single-test binary starts; `watch` inherits it.
    unsafe { std::env::set_var("NETNS_TRACE_CNI_CACHE_DIR", cni_dir.path()) };

    let trace = tempfile::Builder::new()
        .suffix(".trace")
        .tempfile()
        .unwrap()
        .into_temp_path();
    std::fs::remove_file(&trace).unwrap();
    let trace_arg = trace.to_str().unwrap();
    let watch = Watch::start(&["--grace", "2", "--record", trace_arg]);
    let sc = Scenario::start(
        "incident",
        &[
            "--ip",
            "10.231.43.10/24",
            "--cgroup",
            scope.to_str().unwrap(),
        ],
    );
    let pod_a = sc.out["pod_a"]["netns_inum"].as_u64().unwrap();
    let pin = sc.out["pod_a"]["pin"].as_str().unwrap().to_string();
    let sandbox_uuid = Path::new(&pin)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("cni-")
        .to_string();

    // The runtime writes the cache entry once CNI ADD has returned (libcni's cniCacheV1).
    let entry = json!({
        "kind": "cniCacheV1",
        "containerId": container_id,
        "config": "eyJjbmlWZXJzaW9uIjoiMS4wLjAiLCJuYW1lIjoiYXR0cmliLW5ldCIsInR5cGUiOiJicmlkZ2UifQ==",
        "ifName": "eth0",
        "networkName": "attrib-net",
        "netns": pin,
        "cniArgs": [["K8S_POD_NAMESPACE", "default"], ["K8S_POD_NAME", "web-0"], ["K8S_POD_UID", pod_uid]],
        "result": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "02:00:0a:e7:2b:0a", "sandbox": pin}],
                   "ips": [{"address": "10.231.43.10/24", "interface": 0}]}
    });
    std::fs::write(
        cni_dir
            .path()
            .join(format!("attrib-net-{container_id}-eth0")),
        entry.to_string(),
    )
    .unwrap();

    // Past the grace period, then a little more for the verdict tick.
    std::thread::sleep(Duration::from_secs(5));

    // scan: the memberless namespace is found through its pin and the CNI cache.
    let scan = run_json(&["scan", "--json"], cni_dir.path());
    let owner = &listed_namespace(&scan, pod_a)["owner"];
    assert_eq!(owner["pod_uid"], pod_uid.as_str(), "scan: {owner}");
    assert_eq!(
        owner["container_id"],
        container_id.as_str(),
        "scan: {owner}"
    );
    assert_eq!(owner["cni_network"], "attrib-net", "scan: {owner}");
    assert_eq!(owner["sandbox_id"], sandbox_uuid.as_str(), "scan: {owner}");
    // scan has no history, so no verdict: the namespace is a leak suspect with an owner.
    assert_eq!(listed_namespace(&scan, pod_a)["state"], "leak_suspect");

    // watch: the leak names the pod and the container from the pause's cgroup.
    let lines = watch.stop();
    let pause_pid = sc.out["pod_a"]["pause_pid"].as_u64().unwrap();
    let story = trace_story(trace_arg, pod_a, pause_pid);
    let live = findings(&lines);
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
    let summary = leak["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("pod {pod_uid}"))
            && summary.contains(&format!("container {container_id}")),
        "{summary}\n{story}"
    );
    assert_eq!(
        leak["owner"]["pod_uid"],
        pod_uid.as_str(),
        "{leak}\n{story}"
    );
    assert_eq!(
        leak["owner"]["container_id"],
        container_id.as_str(),
        "{leak}\n{story}"
    );
    assert_eq!(leak["owner"]["qos"], "besteffort", "{leak}\n{story}");
    assert_eq!(leak["owner"]["runtime"], "containerd", "{leak}\n{story}");
    assert!(
        leak["owner"]["cgroup"]
            .as_str()
            .is_some_and(|c| c.ends_with(&cgroup_suffix)),
        "{leak}\n{story}"
    );

    // The recorded trace replays elsewhere with the same owner: nothing is read from this node.
    let empty_cni = tempfile::tempdir().unwrap();
    let report = run_json(
        &["report", trace_arg, "--json", "--grace", "2"],
        empty_cni.path(),
    );
    let owner = &listed_namespace(&report, pod_a)["owner"];
    assert_eq!(owner["pod_uid"], pod_uid.as_str(), "report: {owner}");
    assert_eq!(
        owner["container_id"],
        container_id.as_str(),
        "report: {owner}"
    );
    assert_eq!(
        owner["cni_network"], "attrib-net",
        "the cache read at stop is in the trace: {owner}"
    );
    assert_eq!(owner["pod_name"], "web-0", "report: {owner}");
    let replayed = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "leaked_netns" && f["netns"] == leak["netns"])
        .expect("the replay raises the same leak");
    assert!(
        replayed["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("container {container_id}")),
        "{replayed}"
    );
    let out = Command::new(netns_trace_bin())
        .args(["report", trace_arg, "--grace", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("pod {pod_uid} ctr {}", &container_id[..12])),
        "text table names the owner:\n{text}"
    );
    drop(sc);
}

#[test]
fn a_member_moved_into_a_v1_libpod_cgroup_after_joining_is_named_by_its_container() {
    if !require_root() {
        return;
    }
    let Some(root) = cgroup_v1_pids_root() else {
        eprintln!("skipped: no cgroup v1 pids hierarchy is mounted (a pure cgroup v2 host)");
        return;
    };
    let container_id = random_container_id();
    let relative = [
        "libpod_parent".to_string(),
        format!("libpod-{container_id}"),
    ];
    let (_cgroups, container_cgroup) = CgroupGuard::create(&root, &relative);
    let cgroup_path = format!("/{}", relative.join("/"));
    let cni_dir = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test starts; `watch` inherits it.
    unsafe { std::env::set_var("NETNS_TRACE_CNI_CACHE_DIR", cni_dir.path()) };

    let trace = tempfile::Builder::new()
        .suffix(".trace")
        .tempfile()
        .unwrap()
        .into_temp_path();
    std::fs::remove_file(&trace).unwrap();
    let trace_arg = trace.to_str().unwrap();
    let watch = Watch::start(&["--grace", "2", "--record", trace_arg]);
    // A pinned namespace and a member that joined it with setns, still in our cgroups.
    let sc = Scenario::start("runtime-style", &[]);
    let inum = sc.u64_at("/netns_inum");
    let member = sc.u64_at("/member_pid");
    // The runtime moves it into the container's cgroup a moment after it joined: long after
    // the tracer read the cgroup it joined from.
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(container_cgroup.join("cgroup.procs"), member.to_string())
        .unwrap_or_else(|e| panic!("move {member} into {}: {e}", container_cgroup.display()));
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{member}/cgroup")).unwrap();
    assert!(
        proc_cgroup
            .lines()
            .any(|l| l.ends_with(&format!(":{cgroup_path}")) && l.contains(":pids")),
        "the kernel shows the member in {cgroup_path}:\n{proc_cgroup}"
    );

    // The container runs for a while (the tracer reads members that named nothing yet again
    // on its 500 ms ticks), then scan: the live member's cgroup names the container.
    std::thread::sleep(Duration::from_secs(2));
    let scan = run_json(&["scan", "--json"], cni_dir.path());
    let owner = &listed_namespace(&scan, inum)["owner"];
    assert_eq!(
        owner["container_id"],
        container_id.as_str(),
        "scan: {owner}"
    );
    assert_eq!(owner["runtime"], "podman", "scan: {owner}");
    assert_eq!(owner["cgroup"], cgroup_path.as_str(), "scan: {owner}");

    // The container's process is SIGKILLed; the pin keeps its namespace alive.
    assert_eq!(unsafe { libc::kill(member as i32, libc::SIGKILL) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{member}/cgroup")).exists()
        && std::fs::read_to_string(format!("/proc/{member}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(std::time::Instant::now() < deadline, "{member} did not die");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Past the grace period, then a little more for the verdict tick.
    std::thread::sleep(Duration::from_secs(4));

    let lines = watch.stop();
    let story = trace_story(trace_arg, inum, member);
    let live = findings(&lines);
    let leak = live
        .iter()
        .find(|f| {
            f["kind"] == "leaked_netns"
                && f["netns"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("net:[{inum}]"))
        })
        .unwrap_or_else(|| panic!("no leaked_netns for net:[{inum}] in {live:#?}\n{story}"));
    assert_eq!(
        leak["owner"]["container_id"],
        container_id.as_str(),
        "{leak}\n{story}"
    );
    assert_eq!(leak["owner"]["runtime"], "podman", "{leak}\n{story}");
    assert_eq!(
        leak["owner"]["cgroup"],
        cgroup_path.as_str(),
        "{leak}\n{story}"
    );
    assert!(
        leak["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("container {container_id}")),
        "{leak}"
    );

    // The replayed trace names it too: the re-read is in the trace.
    let report = run_json(
        &["report", trace_arg, "--json", "--grace", "2"],
        cni_dir.path(),
    );
    let owner = &listed_namespace(&report, inum)["owner"];
    assert_eq!(
        owner["container_id"],
        container_id.as_str(),
        "report: {owner}"
    );
    assert_eq!(owner["cgroup"], cgroup_path.as_str(), "report: {owner}");
    drop(sc);
}
