//! `record -- CMD` and `record --until-idle` (issue 18 item 1), through the real binary on
//! the host kernel, with iproute2 making and removing a namespace as a deployment would.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::watch::{netns_trace_bin, report_of, spawn_until_ready};
use common::{ip_bin, namespace_with_inum, require_root};

#[test]
fn record_around_a_command_catches_its_teardown_and_exits_with_its_status() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("cmd.nstrace");
    let inum_file = dir.path().join("inum");
    let name = format!("nt-cmd-{}", std::process::id());
    // What a deployment does to the node: a namespace made and removed, more pod churn (two
    // short-lived namespaces: 6.13+ and 6.12.y free a torn-down namespace only on the next
    // cleanup_net run, which is what tracepoint mode sees as its end), then an exit status.
    let script = format!(
        "{ip} netns add {name} && stat -L -c %i /run/netns/{name} > {inum} && {ip} netns del {name}; \
         sleep 1; unshare -n true; sleep 1; unshare -n true; exit 7",
        ip = ip_bin(),
        inum = inum_file.display()
    );
    let started = Instant::now();
    let out = Command::new(netns_trace_bin())
        .args(["record", "--quiet", "--grace", "5", "-o"])
        .arg(&trace)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::inherit())
        .output()
        .expect("run record -- sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(7), "CMD's exit status is ours");
    assert!(stderr.contains("started sh -c"), "{stderr}");
    // The command ran after the probes attached, so the namespace is in the trace, from its
    // creation by ip to its teardown within the grace period.
    let inum: u64 = std::fs::read_to_string(&inum_file)
        .expect("the command ran")
        .trim()
        .parse()
        .unwrap();
    let report = report_of(&trace, "2");
    let ns = namespace_with_inum(&report, inum)
        .unwrap_or_else(|| panic!("net:[{inum}] missing from {report:#}"));
    assert_eq!(ns["state"], "destroyed", "{ns:#}");
    assert_eq!(ns["created_by"]["comm"], "ip", "{ns:#}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "stopped after the command and its grace period"
    );
    assert!(Path::new(&trace).exists());
}

#[test]
fn record_until_idle_stops_by_itself_after_the_last_namespace_event() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("idle.nstrace");
    let mut cmd = Command::new(netns_trace_bin());
    cmd.args(["record", "--quiet", "--until-idle", "3", "-o"])
        .arg(&trace);
    let mut child = spawn_until_ready(&mut cmd, "record", "recording to");
    let name = format!("nt-idle-{}", std::process::id());
    let ip = |args: &[&str]| {
        assert!(
            Command::new(ip_bin())
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    };
    ip(&["netns", "add", &name]);
    let inum = common::ns_inum(&Path::new("/run/netns").join(&name)).unwrap();
    ip(&["netns", "del", &name]);
    // Nothing else happens: it must end on its own.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "record --until-idle 3 still running after 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let report = report_of(&trace, "2");
    assert!(
        namespace_with_inum(&report, inum).is_some(),
        "net:[{inum}] missing from {report:#}"
    );
}

/// The idle time counts from the moment the recording runs ("recording to …"), not from the
/// start of the program: loading the probes takes seconds on a busy node, and must not end a
/// recording before it saw anything.
#[test]
fn record_until_idle_counts_from_the_start_of_the_recording() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("idle-start.nstrace");
    let mut cmd = Command::new(netns_trace_bin());
    cmd.args(["record", "--quiet", "--until-idle", "2", "-o"])
        .arg(&trace);
    let mut child = spawn_until_ready(&mut cmd, "record", "recording to");
    let recording = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        recording.elapsed() >= Duration::from_secs(2),
        "stopped {:?} after it started recording",
        recording.elapsed()
    );
}

/// `record -- CMD` run as a shell runs a foreground job: in a process group of its own. The
/// signal a Ctrl-C makes goes to the whole group (`sig_group`), so CMD hears it itself; a
/// SIGTERM to netns-trace alone is passed on to CMD. Either way the recording waits for CMD,
/// ends in order after the grace period and exits with CMD's status.
fn stop_the_command_by(signal: libc::c_int, sig_group: bool, cmd_status: i32) {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("signal.nstrace");
    let name = if signal == libc::SIGINT {
        "INT"
    } else {
        "TERM"
    };
    let script = format!("trap 'exit {cmd_status}' {name}; while :; do sleep 0.2; done");
    let mut cmd = Command::new(netns_trace_bin());
    cmd.args(["record", "--quiet", "--grace", "1", "-o"])
        .arg(&trace)
        .args(["--", "sh", "-c", &script])
        .process_group(0);
    let mut child = spawn_until_ready(&mut cmd, "record", "started sh -c");
    // The shell has set its trap once it runs its loop.
    std::thread::sleep(Duration::from_secs(1));
    let pid = child.id() as i32;
    // SAFETY: kill(2) on our own child, or on the process group it leads.
    assert_eq!(
        unsafe { libc::kill(if sig_group { -pid } else { pid }, signal) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "record still running 60 s after {name}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status.code(),
        Some(cmd_status),
        "CMD's exit status is ours: {status}"
    );
    let report = report_of(&trace, "2");
    assert_eq!(
        report["trace"]["damage"]["clean_shutdown"], true,
        "{:#}",
        report["trace"]
    );
}

#[test]
fn ctrl_c_reaches_the_command_and_the_recording_ends_after_it() {
    if !require_root() {
        return;
    }
    stop_the_command_by(libc::SIGINT, true, 9);
}

#[test]
fn sigterm_to_netns_trace_is_passed_on_to_the_command() {
    if !require_root() {
        return;
    }
    stop_the_command_by(libc::SIGTERM, false, 11);
}
