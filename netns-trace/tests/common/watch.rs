//! `netns-trace watch --json` run in the background by a test.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::names_netns;

pub fn netns_trace_bin() -> String {
    std::env::var("NETNS_TRACE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_netns-trace").to_string())
}

/// Spawns `cmd` with stderr piped and echoed as `[tag] line`, and returns once a stderr line
/// contains `ready` (the tool says it is attached); panics after 120 s.
pub fn spawn_until_ready(cmd: &mut Command, tag: &str, ready: &str) -> Child {
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn netns-trace {tag}: {e}"));
    let stderr = child.stderr.take().unwrap();
    let label = tag.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{label}] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.contains(ready) => return child,
            Ok(_) => continue,
            Err(_) => panic!("netns-trace {tag} did not start within 120 s"),
        }
    }
}

pub struct Watch {
    child: Option<Child>,
}

impl Watch {
    /// Starts `watch --json ARGS` and returns once its probes are attached.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// [`Watch::start`] with these environment variables set for it.
    pub fn start_with_env(args: &[&str], envs: &[(&str, &Path)]) -> Self {
        let mut cmd = Command::new(netns_trace_bin());
        cmd.args(["watch", "--json"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped());
        let child = spawn_until_ready(&mut cmd, "watch", "watching");
        Self { child: Some(child) }
    }

    /// SIGTERM, then every JSON line it printed.
    pub fn stop(mut self) -> Vec<Value> {
        let child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().expect("wait for watch");
        assert!(out.status.success(), "watch exited with {}", out.status);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("bad JSON line {l}: {e}"))
            })
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
    }
}

/// The `{"type":"finding"}` objects of a watch run.
pub fn findings(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|v| v["type"] == "finding")
        .map(|v| v["finding"].clone())
        .collect()
}

/// The leaked_netns findings about the namespace with this inode number and cookie.
pub fn leak_findings_for(findings: &[Value], inum: u64, cookie: Option<u64>) -> Vec<Value> {
    findings
        .iter()
        .filter(|f| {
            f["kind"] == "leaked_netns"
                && f["netns"]
                    .as_str()
                    .is_some_and(|id| names_netns(id, inum, cookie))
        })
        .cloned()
        .collect()
}

/// The `{"type":"notice"}` objects of a watch run that are about the namespace with this inode
/// number and cookie (see [`names_netns`]).
pub fn notices_about(lines: &[Value], inum: u64, cookie: Option<u64>) -> Vec<Value> {
    lines
        .iter()
        .filter(|v| v["type"] == "notice")
        .map(|v| v["notice"].clone())
        .filter(|n| {
            n["netns"]
                .as_str()
                .is_some_and(|id| names_netns(id, inum, cookie))
        })
        .collect()
}

/// The raw events of a `watch --raw` run.
pub fn events(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|v| v["type"] == "event")
        .map(|v| v["event"].clone())
        .collect()
}

/// `netns-trace ARGS` printing JSON (report, scan); exit 0, or 3 for "leak found".
pub fn netns_trace_json(args: &[&str]) -> Value {
    netns_trace_json_with_env(args, &[])
}

/// [`netns_trace_json`] with these environment variables set for it.
pub fn netns_trace_json_with_env(args: &[&str], envs: &[(&str, &Path)]) -> Value {
    let out = Command::new(netns_trace_bin())
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run netns-trace");
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "netns-trace {args:?} exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("netns-trace {args:?} printed bad JSON: {e}"))
}

pub fn report_of(trace: &Path, grace: &str) -> Value {
    let report = netns_trace_json(&[
        "report",
        trace.to_str().unwrap(),
        "--json",
        "--grace",
        grace,
    ]);
    assert_eq!(report["schema"], "netns-trace/report/v1");
    report
}
