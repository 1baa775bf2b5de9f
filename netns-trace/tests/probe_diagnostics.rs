//! Probe-side diagnostics (aya-log) reach the tracer's stderr as tracing lines naming the probe.
//! Runs on the host (tracepoint mode) and in the 5.10 / 6.1 / 6.12 guests (full mode), where
//! it also proves the verifier accepts the programs with their log call sites.
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn bin() -> String {
    std::env::var("NETNS_TRACE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_netns-trace").to_string())
}

/// Without terminal colour codes (tracing may colour even when stderr is a pipe).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `field value` pairs after `key` in a log message: "child pid 12 in netns inum 4026532 …".
fn number_after(line: &str, key: &str) -> u64 {
    let rest = line
        .split(key)
        .nth(1)
        .unwrap_or_else(|| panic!("no {key:?} in {line:?}"));
    rest.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {line:?}"))
}

/// Runs `watch --json --raw ARGS` with RUST_LOG=info, makes a fresh namespace fork a child,
/// stops the tracer, and returns (stdout JSON lines, stderr lines).
fn watch_around_a_fork(args: &[&str]) -> (Vec<serde_json::Value>, Vec<String>) {
    let mut child = Command::new(bin())
        .args(["watch", "--json", "--raw"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let line = strip_ansi(&line);
            eprintln!("[watch] {line}");
            let _ = tx.send(line.clone());
            lines.push(line);
        }
        lines
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.contains("watching") => break,
            Ok(_) => continue,
            Err(_) => {
                let _ = child.kill();
                panic!("watch did not start within 120 s");
            }
        }
    }
    // A shell in a fresh namespace forks /bin/true: one sched_process_fork outside the init
    // namespace, whatever else the machine is doing.
    let st = Command::new("unshare")
        .args(["-n", "sh", "-c", "/bin/true & wait"])
        .status()
        .expect("run unshare");
    assert!(st.success(), "unshare -n sh failed: {st}");
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait for watch");
    assert!(out.status.success(), "watch exited with {}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (stdout, reader.join().unwrap())
}

#[test]
fn debug_probes_log_the_first_hit_through_aya_log_with_the_probe_name() {
    if !is_root() {
        eprintln!(
            "SKIP debug_probes_log_the_first_hit_through_aya_log_with_the_probe_name: needs root"
        );
        return;
    }
    let init_inum = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let (events, stderr) = watch_around_a_fork(&["--debug-probes"]);
    let hits: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("first hit: sched_process_fork"))
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        !hits.is_empty(),
        "no first-hit line from the probe on stderr"
    );
    // Once per load (at worst once per CPU: the flag is not atomic on 5.10), never per fork.
    assert!(hits.len() <= cpus, "logged {} times: {hits:?}", hits.len());
    let line = hits[0];
    assert!(line.contains("INFO"), "logged at info level: {line}");
    assert!(
        line.contains("probe=task_membership"),
        "names the probe: {line}"
    );
    let pid = number_after(line, "child pid");
    let inum = number_after(line, "netns inum");
    assert!(pid > 0, "{line}");
    assert_ne!(
        inum, init_inum,
        "the probe skips the initial namespace: {line}"
    );
    // The logged values are the kernel's: the same fork arrives as a record with them.
    let fork = events
        .iter()
        .filter(|v| v["type"] == "event")
        .map(|v| &v["event"])
        .find(|e| e.to_string().contains("\"fork\"") && e["pid"].as_u64() == Some(pid));
    let fork =
        fork.unwrap_or_else(|| panic!("no fork record for pid {pid} among {} lines", events.len()));
    assert!(
        fork.to_string().contains(&inum.to_string()),
        "fork record {fork} is in netns {inum}"
    );
}

#[test]
fn without_the_knob_probes_stay_silent() {
    if !is_root() {
        eprintln!("SKIP without_the_knob_probes_stay_silent: needs root");
        return;
    }
    let (_, stderr) = watch_around_a_fork(&[]);
    assert!(
        !stderr.iter().any(|l| l.contains("first hit")),
        "first-hit logging is off by default: {stderr:?}"
    );
}
