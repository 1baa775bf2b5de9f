//! Pod and container attribution end to end: the incident scenario's pause process lives in
//! a cgroup named the way kubelet and containerd name them (a real cgroup v2 hierarchy made
//! here), and a CNI result cache entry names its sandbox. `watch`, the replayed trace and
//! `scan` must all name the pod UID and the container ID of the leaked namespace.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::watch::{Watch, findings, netns_trace_bin};
use common::{Scenario, require_root};
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

fn namespace(report: &Value, inum: u64) -> &Value {
    report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["inum"] == inum)
        .unwrap_or_else(|| panic!("net:[{inum}] not in the report"))
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
    let container_id = format!("{}{}", random_uuid(), random_uuid()).replace('-', "");
    assert_eq!(container_id.len(), 64);
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
    let owner = &namespace(&scan, pod_a)["owner"];
    assert_eq!(owner["pod_uid"], pod_uid.as_str(), "scan: {owner}");
    assert_eq!(
        owner["container_id"],
        container_id.as_str(),
        "scan: {owner}"
    );
    assert_eq!(owner["cni_network"], "attrib-net", "scan: {owner}");
    assert_eq!(owner["sandbox_id"], sandbox_uuid.as_str(), "scan: {owner}");
    // scan has no history, so no verdict: the namespace is a leak suspect with an owner.
    assert_eq!(namespace(&scan, pod_a)["state"], "leak_suspect");

    // watch: the leak names the pod and the container from the pause's cgroup.
    let lines = watch.stop();
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
        "{summary}"
    );
    assert_eq!(leak["owner"]["pod_uid"], pod_uid.as_str(), "{leak}");
    assert_eq!(
        leak["owner"]["container_id"],
        container_id.as_str(),
        "{leak}"
    );
    assert_eq!(leak["owner"]["qos"], "besteffort", "{leak}");
    assert_eq!(leak["owner"]["runtime"], "containerd", "{leak}");
    assert!(
        leak["owner"]["cgroup"]
            .as_str()
            .is_some_and(|c| c.ends_with(&cgroup_suffix)),
        "{leak}"
    );

    // The recorded trace replays elsewhere with the same owner: nothing is read from this node.
    let empty_cni = tempfile::tempdir().unwrap();
    let report = run_json(
        &["report", trace_arg, "--json", "--grace", "2"],
        empty_cni.path(),
    );
    let owner = &namespace(&report, pod_a)["owner"];
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
