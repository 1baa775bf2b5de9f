//! Failure behaviour of the tracer itself: privileges, unloading, disabled probes, loss.
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn bin() -> String {
    std::env::var("NETNS_TRACE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_netns-trace").to_string())
}

/// Our programs' names as the kernel stores them (BPF_OBJ_NAME_LEN - 1 = 15 bytes).
const OUR_PROGRAMS: &[&str] = &[
    "task_fork",
    "task_exit",
    "netns_created_t",
    "netns_freed_kme",
    "mount_exit",
    "arp_tx_tp",
    "neigh_update_tp",
];

/// IDs of our programs loaded right now (by any process).
fn ours_loaded() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| OUR_PROGRAMS.contains(&n)))
        .map(|p| p.id())
        .collect()
}

/// Starts `watch` and returns it with the IDs of our programs that were loaded before it
/// started (so the rest are its own, in a suite that runs one tracer at a time). Programs are told
/// apart by ID, not name: a tracer that exited a moment ago may still be listed (tracing
/// programs are freed after an RCU-tasks grace period), and another tracer may be running.
fn start_watch(extra: &[&str]) -> (std::process::Child, BTreeSet<u32>) {
    let before = ours_loaded();
    let mut child = Command::new(bin())
        .args(["watch", "--json", "--raw"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    // Ready when our programs show up in the kernel.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new: BTreeSet<u32> = ours_loaded().difference(&before).copied().collect();
        if new.len() >= 3 {
            return (child, before);
        }
        assert!(
            Instant::now() < deadline,
            "watch did not load its programs within 60 s"
        );
        if let Ok(Some(st)) = child.try_wait() {
            panic!("watch exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_privileges_says_what_is_missing_and_exits_1() {
    if !is_root() {
        eprintln!(
            "SKIP without_privileges_says_what_is_missing_and_exits_1: needs root to drop to an unprivileged user"
        );
        return;
    }
    let out = Command::new(bin())
        .args(["probes"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "names the capabilities: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
}

/// Issue 14 item 8: where other processes' namespaces are refused (the runtime's default
/// AppArmor profile does this to a container, as does a missing CAP_SYS_PTRACE), `scan` used
/// to report an empty, healthy node. It must say it is blind and exit 1.
#[test]
fn a_tracer_that_cannot_see_other_processes_says_so_and_exits_1() {
    if !is_root() {
        eprintln!(
            "SKIP a_tracer_that_cannot_see_other_processes_says_so_and_exits_1: needs root to drop to an unprivileged user"
        );
        return;
    }
    let out = Command::new(bin())
        .args(["scan", "--json"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("blind"), "{err}");
    assert!(out.stdout.is_empty(), "no report from a blind scan");
}

#[test]
fn programs_are_released_after_sigkill_and_after_sigterm() {
    if !is_root() {
        eprintln!("SKIP programs_are_released_after_sigkill_and_after_sigterm: needs root");
        return;
    }
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let (mut child, before) = start_watch(&[]);
        // Let every program attach, so the kill lands on a fully loaded tracer.
        std::thread::sleep(Duration::from_secs(1));
        let its_programs: BTreeSet<u32> = ours_loaded().difference(&before).copied().collect();
        unsafe { libc::kill(child.id() as i32, signal) };
        let _ = child.wait();
        // Program release is asynchronous (RCU, and RCU-tasks for tracing programs, which
        // can take seconds on a loaded machine); give the kernel time.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left: Vec<u32> = ours_loaded().intersection(&its_programs).copied().collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "programs {left:?} still loaded 30 s after signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn disabled_probes_are_listed_and_unknown_names_rejected() {
    if !is_root() {
        eprintln!("SKIP disabled_probes_are_listed_and_unknown_names_rejected: needs root");
        return;
    }
    let out = Command::new(bin())
        .args(["probes", "--json", "--disable-probe", "arp"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arp = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "arp")
        .unwrap();
    assert_eq!(arp["status"], "disabled");
    assert!(
        v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["status"] == "attached"),
        "others still attach"
    );

    let out = Command::new(bin())
        .args(["probes", "--disable-probe", "no_such_probe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_probe"));
}

#[test]
fn a_tiny_ring_under_a_fork_storm_counts_and_reports_lost_events() {
    if !is_root() {
        eprintln!("SKIP a_tiny_ring_under_a_fork_storm_counts_and_reports_lost_events: needs root");
        return;
    }
    let (child, _) = start_watch(&["--ring-size", "4096"]);
    // Forks outside the initial namespace are tracked: storm inside a fresh one, in bursts of
    // 200 concurrent processes so the ring overflows even on a slow (emulated) CPU.
    let st = Command::new("unshare")
        .args(["-n", "busybox", "sh", "-c", "for r in 1 2 3 4 5 6 7 8 9 10; do for i in $(seq 200); do /bin/true & done; wait; done"])
        .status()
        .expect("fork storm");
    assert!(st.success());
    std::thread::sleep(Duration::from_secs(1));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lost: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "event" && v["event"]["type"] == "lost")
        .map(|v| v["event"]["count"].as_u64().unwrap())
        .sum();
    assert!(
        lost > 0,
        "a 4 KiB ring cannot hold bursts of 400 task records; the loss must be reported"
    );
    // The probe logs the first loss of a kind on a CPU itself (aya-log has a ring of its own),
    // so the operator reads why records are missing, and which probe dropped them.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ring buffer full"))
        .collect();
    assert!(
        !logged.is_empty(),
        "the first loss is logged by the probe: {stderr}"
    );
    assert!(
        logged.iter().all(|l| l.contains("probe=")),
        "each names its probe: {logged:?}"
    );
    // Task records are a handful of kinds; allow 32 per CPU.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        (logged.len() as u64) < lost && logged.len() <= 32 * cpus,
        "only the first loss per kind and CPU is logged, not every one ({lost} lost): {} lines",
        logged.len()
    );
}
