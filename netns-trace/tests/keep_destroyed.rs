//! `watch --keep-destroyed N` bounds the destroyed namespaces it keeps in memory and
//! summarises the rest as a count, in the JSON summary and on the closing stderr line.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::testbed_bin;
use serde_json::Value;

fn bin() -> String {
    std::env::var("NETNS_TRACE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_netns-trace").to_string())
}

const KEEP: u64 = 5;
const CHURNED: usize = 40;

#[test]
fn destroyed_namespaces_beyond_the_bound_are_only_counted() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP destroyed_namespaces_beyond_the_bound_are_only_counted: needs root");
        return;
    }
    let mut child = Command::new(bin())
        .args([
            "watch",
            "--json",
            "--grace",
            "1",
            "--keep-destroyed",
            &KEEP.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let guard = KillOnDrop(child.id());
    let stdout_lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let stdout = child.stdout.take().unwrap();
    let out_reader = {
        let lines = Arc::clone(&stdout_lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    lines.lock().unwrap().push(v);
                }
            }
        })
    };
    let stderr_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().unwrap();
    let err_reader = {
        let lines = Arc::clone(&stderr_lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[watch] {line}");
                lines.lock().unwrap().push(line);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stderr_lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("watching"))
    {
        assert!(
            Instant::now() < deadline,
            "watch did not start within 120 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "watch exited during start-up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Churn well past the bound; the kernel frees namespaces in batches (cleanup_net, and from
    // 6.13 the free of a batch waits for the next run), so keep churning a little until
    // CHURNED destructions have been reported.
    let destroyed_notices = || {
        stdout_lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "notice" && v["notice"]["kind"] == "state_changed")
            .filter(|v| {
                v["notice"]["text"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("-> destroyed"))
            })
            .count()
    };
    let testbed = |count: usize| {
        let out = Command::new(testbed_bin())
            .args(["churn", "--count", &count.to_string()])
            .output()
            .expect("run testbed churn");
        assert!(
            out.status.success(),
            "testbed churn failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    testbed(CHURNED);
    let deadline = Instant::now() + Duration::from_secs(90);
    while destroyed_notices() < CHURNED {
        assert!(
            Instant::now() < deadline,
            "only {} destructions reported after churning {CHURNED}",
            destroyed_notices()
        );
        testbed(5);
        std::thread::sleep(Duration::from_secs(1));
    }

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    drop(guard);
    out_reader.join().unwrap();
    err_reader.join().unwrap();
    assert!(status.success(), "watch exited with {status}");

    let lines = stdout_lines.lock().unwrap();
    let destroyed = destroyed_notices_in(&lines);
    let summary = lines
        .iter()
        .rev()
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line"));
    assert_eq!(summary["keep_destroyed"].as_u64(), Some(KEEP), "{summary}");
    let kept = summary["destroyed_kept"]
        .as_u64()
        .unwrap_or_else(|| panic!("no destroyed_kept in {summary}"));
    let dropped = summary["destroyed_dropped"]
        .as_u64()
        .unwrap_or_else(|| panic!("no destroyed_dropped in {summary}"));
    assert_eq!(
        kept, KEEP,
        "the retained set is full and never larger: {summary}"
    );
    assert_eq!(
        kept + dropped,
        destroyed as u64,
        "every destruction is either kept or counted: {summary}"
    );
    assert!(dropped >= (CHURNED as u64) - KEEP, "{summary}");

    let stderr = stderr_lines.lock().unwrap();
    let closing = stderr
        .iter()
        .rev()
        .find(|l| l.contains("events,"))
        .unwrap_or_else(|| panic!("no closing line: {stderr:?}"));
    assert!(
        closing.contains(&format!("{kept} destroyed kept"))
            && closing.contains(&format!("{dropped} older destroyed only counted")),
        "closing line summarises the bound: {closing}"
    );
}

fn destroyed_notices_in(lines: &[Value]) -> usize {
    lines
        .iter()
        .filter(|v| v["type"] == "notice" && v["notice"]["kind"] == "state_changed")
        .filter(|v| {
            v["notice"]["text"]
                .as_str()
                .is_some_and(|t| t.ends_with("-> destroyed"))
        })
        .count()
}

/// SIGKILLs the tracer if the test fails before stopping it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
}
