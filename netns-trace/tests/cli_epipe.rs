//! `netns-trace report FILE | head`: every command that prints stops quietly when its reader
//! goes away (EPIPE): no panic, no error message, exit status 141 (128 + SIGPIPE, what a shell
//! shows for tools killed by SIGPIPE).
//!
//! Deterministic: stdout is a pipe whose read end is closed before the command starts, so the
//! very first write fails, however fast the command is.
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use netns_trace::collector::synthetic::{SyntheticConfig, generate};
use netns_trace::trace::{ClockBase, TraceEnd, TraceMeta, TraceWriter};

const EXIT_BROKEN_PIPE: i32 = 141;

fn bin() -> String {
    std::env::var("NETNS_TRACE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_netns-trace").to_string())
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The write end of a pipe nobody reads from.
fn widowed_pipe() -> Stdio {
    let mut fds = [0; 2];
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    unsafe { libc::close(fds[0]) };
    Stdio::from(unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

/// A trace with a few hundred namespaces: far more output than a pipe buffer holds anyway.
fn sample_trace(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("sample.trace");
    let meta = TraceMeta {
        hostname: "epipe-test".into(),
        clock: ClockBase::now(),
        probe_mode: "tracepoint".into(),
        ..Default::default()
    };
    let mut w = TraceWriter::create(&path, &meta, false).expect("create trace");
    let mut last = 0;
    for ev in generate(SyntheticConfig {
        namespaces: 300,
        leak_every: 7,
        ..Default::default()
    }) {
        last = ev.ts_ns;
        w.write_event(&ev).expect("write event");
    }
    w.finish(&TraceEnd {
        ended_at_ns: last,
        clean_shutdown: true,
        ..Default::default()
    })
    .expect("finish trace");
    path
}

fn run_into_closed_pipe(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(widowed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netns-trace");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} kept running with nobody reading its output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}

fn assert_quiet_epipe(args: &[&str], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{args:?} panicked on EPIPE: {stderr}"
    );
    assert!(
        !stderr.to_lowercase().contains("broken pipe") && !stderr.contains("netns-trace: "),
        "{args:?} complained about the closed pipe: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(EXIT_BROKEN_PIPE),
        "{args:?}: {}, stderr {stderr}",
        out.status
    );
}

#[test]
fn offline_commands_stop_quietly_when_the_reader_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample_trace(dir.path());
    let trace = trace.to_str().unwrap();
    for args in [
        vec!["report", trace],
        vec!["report", "--json", trace],
        vec!["export", trace, "--format", "jsonl", "-o", "-"],
        vec!["export", trace, "--format", "perfetto", "-o", "-"],
    ] {
        let out = run_into_closed_pipe(&args, Duration::from_secs(60));
        assert_quiet_epipe(&args, &out);
    }
}

#[test]
fn live_commands_stop_quietly_when_the_reader_leaves() {
    if !is_root() {
        eprintln!(
            "SKIP live_commands_stop_quietly_when_the_reader_leaves: scan, probes and watch need root"
        );
        return;
    }
    for args in [
        vec!["scan"],
        vec!["scan", "--json"],
        vec!["probes"],
        vec!["probes", "--json"],
    ] {
        let out = run_into_closed_pipe(&args, Duration::from_secs(120));
        assert_quiet_epipe(&args, &out);
    }
    // watch prints when something happens: make a namespace once it is attached, and it must
    // then stop by itself.
    let mut child = Command::new(bin())
        .args(["watch", "--json"])
        .stdout(widowed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let started = Instant::now();
    let out = loop {
        let st = Command::new("unshare")
            .args(["-n", "true"])
            .status()
            .expect("unshare");
        assert!(st.success());
        if child.try_wait().expect("try_wait").is_some() {
            break child.wait_with_output().unwrap();
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("watch kept running with nobody reading its output");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "watch panicked on EPIPE: {stderr}"
    );
    assert!(
        !stderr.to_lowercase().contains("broken pipe"),
        "watch complained: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(EXIT_BROKEN_PIPE),
        "watch: {}, stderr {stderr}",
        out.status
    );
}
