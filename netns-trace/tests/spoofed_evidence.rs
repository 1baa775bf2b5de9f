//! Issue 14 item 4: a hostile pod cannot borrow another pod's identity or bury its cleanup
//! evidence.
//!
//! The victim is a pod namespace as containerd leaves it: a pause (`unshare --net sleep
//! infinity`) pinned at /run/netns/cni-<uuid> in the node's mount namespace, with the CNI
//! result cache entry libcni writes for that path naming the pod; the runtime's umount of the
//! pin fails with EBUSY (an fd opened through it), and the pause is killed: a leak.
//!
//! The hostile pod has a mount namespace of its own (`unshare --mount --propagation private`,
//! as root, like a pod that may mount). Inside it, it unmounts its copy of the victim's pin and
//! bind-mounts a network namespace of its own at the same path, whose members then exit, so its
//! namespace is leaked too, held by that mount. A process of the pod without the right to
//! unmount (uid 65534) then calls umount on the path many times (EPERM), in the pod's mount
//! namespace and in the node's.
//!
//! `watch` (live findings and /metrics) and `report` of the trace it recorded must give the
//! victim's pod, sandbox and network to the victim only, list the hostile mount as a pin in
//! the pod's mount namespace with no identity, keep the victim's EBUSY as its one failed
//! cleanup, and count the refused calls instead. Expected values come from the system: the
//! namespaces' inode numbers by stat, the mount namespaces from /proc/PID/ns/mnt.
//!
//! Needs root.
mod common;

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::watch::{Watch, findings, report_of};
use common::{listed_namespace, ns_inum, process_alive, require_root, wait_until};
use serde_json::json;

/// umount calls the hostile pod makes in each mount namespace: more than any bound on kept
/// failed cleanups.
const REFUSED_CALLS: usize = 300;
/// The pod that runs the flood: `nobody`.
const NOBODY: libc::uid_t = 65534;

fn uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("kernel uuid")
        .trim()
        .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET /metrics` (HTTP/1.0: the server closes the connection).
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The labels of the `netns_trace_leaked_namespace` series of namespace `inum`, if any.
fn leaked_series(metrics: &str, inum: u64) -> Option<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("netns_trace_leaked_namespace{"))
        .find(|l| l.contains(&format!("inum=\"{inum}\"")))
        .map(str::to_string)
}

/// The value of label `name` in one series line.
fn label<'a>(series: &'a str, name: &str) -> &'a str {
    let start = series
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {series}"))
        + name.len()
        + 2;
    let len = series[start..].find('"').unwrap();
    &series[start..start + len]
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything the test made, undone on drop (also when an assertion fails).
struct Made {
    children: Vec<Child>,
    pin: PathBuf,
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.pin).status();
        let _ = fs::remove_file(&self.pin);
    }
}

/// `count` umount(2) calls on `path` by a process with uid and gid `NOBODY`, in the mount
/// namespace of process `mnt_of` (None: ours, the node's). Each must fail with EPERM.
fn refused_umounts(path: &Path, mnt_of: Option<u32>, count: usize) {
    let target = CString::new(path.to_str().unwrap()).unwrap();
    let mnt = mnt_of.map(|pid| {
        File::open(format!("/proc/{pid}/ns/mnt")).unwrap_or_else(|e| panic!("mnt ns of {pid}: {e}"))
    });
    let mnt_fd = mnt.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let mut cmd = Command::new("true");
    // SAFETY: only async-signal-safe calls between fork and exec; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            if let Some(fd) = mnt_fd {
                check(libc::setns(fd, libc::CLONE_NEWNS))?;
            }
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(NOBODY, NOBODY, NOBODY))?;
            check(libc::setresuid(NOBODY, NOBODY, NOBODY))?;
            for _ in 0..count {
                if libc::umount2(target.as_ptr(), 0) == 0 {
                    // Unmounted: not what a caller without the right gets.
                    return Err(std::io::Error::from_raw_os_error(libc::ENOTRECOVERABLE));
                }
                let errno = std::io::Error::last_os_error();
                if errno.raw_os_error() != Some(libc::EPERM) {
                    return Err(errno);
                }
            }
            Ok(())
        });
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{count} refused umounts of {}: {e}", path.display()));
    assert!(status.success(), "{status}");
}

/// `report TRACE --netns INUM`: one namespace's story, for failure messages.
fn story(trace: &Path, inum: u64) -> String {
    let out = Command::new(common::watch::netns_trace_bin())
        .arg("report")
        .arg(trace)
        .args(["--grace", "2", "--netns", &inum.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node's mount namespace: pid 1's, or kthreadd's where pid 1 is hidden (as on some
/// sandboxed build hosts).
fn node_mount_ns() -> u64 {
    ns_inum(Path::new("/proc/1/ns/mnt"))
        .or_else(|| {
            fs::read_to_string("/proc/2/comm")
                .is_ok_and(|c| c.trim() == "kthreadd")
                .then(|| ns_inum(Path::new("/proc/2/ns/mnt")))
                .flatten()
        })
        .expect("neither pid 1's nor kthreadd's mount namespace can be read")
}

#[test]
fn a_hostile_pod_gets_no_identity_from_a_victims_pin_path_and_cannot_bury_its_cleanup() {
    if !require_root() {
        return;
    }
    let sandbox = uuid();
    let pin = PathBuf::from(format!("/run/netns/cni-{sandbox}"));
    let pod_name = format!("victim-{}", &sandbox[..8]);
    let pod_uid = uuid();
    let container_id = format!("{}{}", uuid(), uuid()).replace('-', "");
    fs::create_dir_all("/run/netns").unwrap();
    let cni_dir = tempfile::tempdir().unwrap();
    let trace = tempfile::Builder::new()
        .suffix(".trace")
        .tempfile()
        .unwrap()
        .into_temp_path();
    fs::remove_file(&trace).unwrap();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let watch = Watch::start_with_env(
        &[
            "--grace",
            "2",
            "--record",
            trace.to_str().unwrap(),
            "--metrics-addr",
            &metrics_addr.to_string(),
        ],
        &[("NETNS_TRACE_CNI_CACHE_DIR", cni_dir.path())],
    );
    let mut made = Made {
        children: Vec::new(),
        pin: pin.clone(),
    };

    // The victim: its pause, pinned in the node's mount namespace, and its cache entry.
    let pause = Command::new("unshare")
        .args(["--net", "sleep", "infinity"])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare --net sleep infinity");
    let pause_pid = pause.id();
    made.children.push(pause);
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(format!("/proc/{pause_pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        }),
        "the pause did not start"
    );
    File::create(&pin).unwrap();
    run(Command::new("mount")
        .arg("--bind")
        .arg(format!("/proc/{pause_pid}/ns/net"))
        .arg(&pin));
    let victim = ns_inum(&pin).unwrap();
    assert_eq!(
        Some(victim),
        ns_inum(Path::new(&format!("/proc/{pause_pid}/ns/net")))
    );
    let entry = json!({
        "kind": "cniCacheV1",
        "containerId": container_id,
        "config": "eyJjbmlWZXJzaW9uIjoiMS4wLjAiLCJuYW1lIjoicG9kLW5ldCIsInR5cGUiOiJicmlkZ2UifQ==",
        "ifName": "eth0",
        "networkName": "pod-net",
        "netns": pin,
        "cniArgs": [["K8S_POD_NAMESPACE", "shop"], ["K8S_POD_NAME", pod_name], ["K8S_POD_UID", pod_uid]],
        "result": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": pin}], "ips": []}
    });
    fs::write(
        cni_dir.path().join(format!("pod-net-{container_id}-eth0")),
        entry.to_string(),
    )
    .unwrap();

    // The hostile pod: a mount namespace of its own, its own namespace at the victim's path.
    let p = pin.to_str().unwrap();
    let hostile_pod = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "umount {p} && unshare --net sh -c 'mount --bind /proc/self/ns/net {p}' \
             && exec sleep infinity"
        ))
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare --mount");
    let holder = hostile_pod.id();
    made.children.push(hostile_pod);
    let in_pod = PathBuf::from(format!("/proc/{holder}/root{p}"));
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(format!("/proc/{holder}/comm")).is_ok_and(|c| c.trim() == "sleep")
                && ns_inum(&in_pod).is_some_and(|i| i != victim)
        }),
        "the hostile pod did not mount its namespace at {p}"
    );
    let hostile = ns_inum(&in_pod).unwrap();
    let pod_mnt = ns_inum(Path::new(&format!("/proc/{holder}/ns/mnt"))).unwrap();
    let node_mnt = node_mount_ns();
    assert_eq!(
        ns_inum(Path::new("/proc/self/ns/mnt")),
        Some(node_mnt),
        "the test runs as the runtime does, in the node's mount namespace"
    );
    assert_ne!(pod_mnt, node_mnt);
    assert_eq!(
        ns_inum(&pin),
        Some(victim),
        "the node's pin is the victim's"
    );

    // The runtime's cleanup fails: the pin is busy (an fd opened through it).
    {
        let busy = File::open(&pin).unwrap();
        let target = CString::new(p).unwrap();
        let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        assert_eq!((rc, errno), (-1, Some(libc::EBUSY)));
        drop(busy);
    }
    // The hostile pod's refused calls, in its mount namespace and in the node's.
    refused_umounts(&pin, Some(holder), REFUSED_CALLS);
    refused_umounts(&pin, None, REFUSED_CALLS);

    // The victim's pause dies: both namespaces are memberless, held by their mounts.
    unsafe { libc::kill(pause_pid as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        u64::from(pause_pid)
    )));
    // Past the grace period, then a little more for the verdict tick.
    std::thread::sleep(Duration::from_secs(5));

    let metrics = scrape(metrics_addr);
    let lines = watch.stop();

    // /metrics: each leak is a series; only the victim's names the pod.
    let victim_series = leaked_series(&metrics, victim)
        .unwrap_or_else(|| panic!("no leaked series for the victim net:[{victim}]:\n{metrics}"));
    assert_eq!(
        label(&victim_series, "pod_name"),
        pod_name,
        "{victim_series}"
    );
    assert_eq!(
        label(&victim_series, "sandbox_id"),
        sandbox,
        "{victim_series}"
    );
    let hostile_series = leaked_series(&metrics, hostile)
        .unwrap_or_else(|| panic!("no leaked series for the hostile net:[{hostile}]:\n{metrics}"));
    for name in [
        "pod_name",
        "pod_uid",
        "pod_namespace",
        "container_id",
        "sandbox_id",
    ] {
        assert_eq!(label(&hostile_series, name), "", "{name}: {hostile_series}");
    }

    // watch's findings: the hostile leak carries nothing of the victim's.
    let live = findings(&lines);
    let leak_of = |inum: u64| {
        live.iter()
            .find(|f| {
                f["kind"] == "leaked_netns"
                    && f["netns"]
                        .as_str()
                        .is_some_and(|id| id.starts_with(&format!("net:[{inum}]")))
            })
            .unwrap_or_else(|| panic!("no leaked_netns for net:[{inum}] in {live:#?}"))
    };
    let hostile_leak = leak_of(hostile).to_string();
    for victims in [
        pod_name.as_str(),
        sandbox.as_str(),
        pod_uid.as_str(),
        &container_id,
    ] {
        // Its pin path contains the sandbox id; the path is evidence, the owner is not.
        let without_path = hostile_leak.replace(p, "");
        assert!(
            !without_path.contains(victims),
            "the hostile leak names {victims}: {hostile_leak}"
        );
    }
    assert_eq!(leak_of(victim)["owner"]["pod_name"], pod_name.as_str());

    // report of the recorded trace (the cache entry is in it; nothing is read from the node).
    let report = report_of(&trace, "2");
    let v = listed_namespace(&report, victim);
    assert_eq!(v["state"], "leaked", "{v:#}");
    assert_eq!(v["owner"]["pod_name"], pod_name.as_str(), "{v:#}");
    assert_eq!(v["owner"]["sandbox_id"], sandbox.as_str(), "{v:#}");
    assert_eq!(v["owner"]["cni_network"], "pod-net", "{v:#}");
    let cleanups: Vec<(i64, u64)> = v["failed_cleanups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["errno"].as_i64().unwrap(),
                f["by"]["tgid"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cleanups,
        [(i64::from(libc::EBUSY), u64::from(std::process::id()))],
        "the runtime's EBUSY is the one failed cleanup: {v:#}"
    );
    assert_eq!(v["refused_umounts_ignored"], REFUSED_CALLS, "{v:#}");
    assert!(
        v["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["mount_ns"] == node_mnt),
        "the victim's pin is in the node's mount namespace: {v:#}"
    );

    let h = listed_namespace(&report, hostile);
    assert_eq!(h["state"], "leaked", "{h:#}");
    // Its members' cgroup may be named (the test's own); nothing else is known of it.
    for name in [
        "pod_name",
        "pod_namespace",
        "pod_uid",
        "container_id",
        "sandbox_id",
        "cni_network",
        "runtime",
    ] {
        assert!(h["owner"][name].is_null(), "no {name} from the path: {h:#}");
    }
    let pins: Vec<(&str, u64)> = h["pins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "bind_mount")
        .map(|p| (p["path"].as_str().unwrap(), p["mount_ns"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        pins,
        [(p, pod_mnt)],
        "a pin in the pod's mount namespace: {h:#}\n{}",
        story(&trace, hostile)
    );
    assert_eq!(h["failed_cleanups"], json!([]), "{h:#}");
    assert_eq!(h["refused_umounts_ignored"], REFUSED_CALLS, "{h:#}");
    drop(made);
}
