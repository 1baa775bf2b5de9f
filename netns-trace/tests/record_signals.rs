//! `record` under signals, on the running kernel: Ctrl-C (SIGINT) and SIGTERM finish the file
//! cleanly; SIGKILL at random moments leaves a file that replays up to its last whole frame,
//! with the damage reported and no panic.
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::require_root;
use common::watch::{netns_trace_bin, spawn_until_ready};
use serde_json::Value;

/// Starts `record -o FILE` and returns once it says it is recording (probes attached, start
/// snapshot on disk).
fn start_record(file: &Path) -> Child {
    let mut cmd = Command::new(netns_trace_bin());
    cmd.args(["record", "-o"]).arg(file).stdout(Stdio::null());
    spawn_until_ready(&mut cmd, "record", "recording to")
}

/// Something for the probes to see: short-lived processes in fresh namespaces.
fn churn_a_little(rounds: usize) {
    for _ in 0..rounds {
        let st = Command::new("unshare")
            .args(["-n", "true"])
            .status()
            .expect("unshare");
        assert!(st.success());
    }
}

/// `report FILE --json`: must never panic; returns its exit code and the JSON when it printed one.
fn report(file: &Path) -> (Option<i32>, Option<Value>, String) {
    let out = Command::new(netns_trace_bin())
        .arg("report")
        .arg(file)
        .arg("--json")
        .output()
        .expect("run report");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "report panicked on {}: {stderr}",
        file.display()
    );
    assert_ne!(out.status.code(), Some(101), "report panicked: {stderr}");
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).ok(),
        stderr,
    )
}

#[test]
fn sigint_and_sigterm_finish_the_trace_cleanly() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, signal) in [("SIGINT", libc::SIGINT), ("SIGTERM", libc::SIGTERM)] {
        let file = dir.path().join(format!("{name}.nstrace"));
        let mut child = start_record(&file);
        churn_a_little(5);
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        assert!(status.success(), "record exits 0 on {name}: {status}");
        let (code, json, stderr) = report(&file);
        assert_eq!(code, Some(0), "report of a cleanly stopped trace: {stderr}");
        let json = json.expect("report --json prints JSON");
        let damage = &json["trace"]["damage"];
        assert_eq!(damage["intact"], true, "{name}: {damage}");
        assert_eq!(
            damage["clean_shutdown"], true,
            "{name}: the end record was written: {damage}"
        );
        assert_eq!(damage["unreadable_bytes"], 0, "{name}: {damage}");
        let namespaces = json["namespaces"].as_array().unwrap();
        assert!(
            !namespaces.is_empty(),
            "{name}: the start snapshot's namespaces are in the trace"
        );
    }
}

#[test]
fn sigkill_at_random_moments_leaves_a_replayable_trace() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A small xorshift seeded from the clock; the delays are printed, so a failure can be
    // reproduced by hand.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..5 {
        let file = dir.path().join(format!("killed-{round}.nstrace"));
        let mut child = start_record(&file);
        // Keep the recorder busy so the kill can land mid-frame.
        let busy = std::thread::spawn(|| churn_a_little(30));
        let delay = Duration::from_millis(100 + next() % 2_500);
        eprintln!("round {round}: SIGKILL after {delay:?}");
        std::thread::sleep(delay);
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        busy.join().unwrap();

        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let (code, json, stderr) = report(&file);
        // record announces itself once the header and start snapshot are flushed, so the
        // file always holds whole frames.
        assert!(
            len > 0,
            "round {round}: the header and start snapshot were on disk before the kill"
        );
        assert!(
            matches!(code, Some(0) | Some(3)),
            "round {round} ({len} bytes, killed after {delay:?}): report failed: {stderr}"
        );
        let json = json.expect("report --json prints JSON");
        let damage = &json["trace"]["damage"];
        assert_eq!(
            damage["clean_shutdown"], false,
            "round {round}: a SIGKILLed recorder wrote no end record: {damage}"
        );
        assert!(
            damage["unreadable_bytes"].as_u64().unwrap() <= len,
            "{damage}"
        );
        assert!(
            !json["namespaces"].as_array().unwrap().is_empty(),
            "round {round}: everything before the cut is recovered, the start snapshot at least"
        );
    }
}
