//! Issue 18 item 5: `report` (and `export`) on a long trace shows how far reading has got,
//! on stderr only, when stderr is a terminal (`--progress auto|always|never`). Through the
//! real binary, on a trace recorded on the host kernel (tracepoint mode) while a process in
//! its own network namespace forks and execs; the trace of more than a million events is
//! that recording's event frames repeated (real records, written once by the recorder,
//! read again), which is what a long recording of the same churn would hold.
mod common;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::require_root;
use common::watch::netns_trace_bin;
use serde_json::Value;

/// What every progress line starts with.
const LINE: &str = "netns-trace: reading the trace: ";

/// The recordings, made once for all the tests of this file.
struct Traces {
    _dir: tempfile::TempDir,
    /// As recorded.
    small: PathBuf,
    small_events: u64,
    /// Its event frames repeated past a million events, then its end frame.
    large: PathBuf,
    large_events: u64,
}

fn run(args: &[&str], stderr: Stdio) -> Output {
    let out = Command::new(netns_trace_bin())
        .args(args)
        .stdin(Stdio::null())
        .stderr(stderr)
        .output()
        .expect("run netns-trace");
    assert!(out.status.success(), "netns-trace {args:?}: {}", out.status);
    out
}

fn events_in(trace: &Path) -> u64 {
    let out = run(
        &[
            "report",
            trace.to_str().unwrap(),
            "--json",
            "--progress",
            "never",
        ],
        Stdio::piped(),
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        doc["trace"]["damage"]["intact"], true,
        "{trace:?}: {:#}",
        doc["trace"]
    );
    doc["trace"]["events"].as_u64().unwrap()
}

/// Writes `src`'s header, then its event frames `copies` times, then its end frame
/// (docs/trace-format.md: a 20-byte file header with the metadata length at offset 12, then
/// frames of a 20-byte header, kind at offset 4 and payload length at offset 8).
fn repeat_event_frames(src: &Path, dst: &Path, copies: usize) {
    let b = std::fs::read(src).unwrap();
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let mut pos = 20 + u32_at(12);
    let head = &b[..pos];
    let (mut events, mut end) = (Vec::new(), Vec::new());
    while pos < b.len() {
        assert_eq!(&b[pos..pos + 4], b"\xf7NSF", "a frame at {pos}");
        let len = 20 + u32_at(pos + 8);
        let frame = &b[pos..pos + len];
        match b[pos + 4] {
            1 => events.extend_from_slice(frame),
            2 => end.extend_from_slice(frame),
            k => panic!("frame kind {k}"),
        }
        pos += len;
    }
    assert!(!end.is_empty(), "the recorder ended the trace in order");
    let mut out = head.to_vec();
    for _ in 0..copies {
        out.extend_from_slice(&events);
    }
    out.extend_from_slice(&end);
    std::fs::write(dst, out).unwrap();
}

fn traces() -> &'static Traces {
    static TRACES: OnceLock<Traces> = OnceLock::new();
    TRACES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("churn.nstrace");
        // A process in its own namespace running 2,000 programs: forks, execs and exits.
        let out = Command::new(netns_trace_bin())
            .args([
                "record",
                "--quiet",
                "--grace",
                "1",
                "--mode",
                "tracepoint",
                "-o",
            ])
            .arg(&small)
            .args([
                "--",
                "unshare",
                "-n",
                "sh",
                "-c",
                "i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("record");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let small_events = events_in(&small);
        assert!(small_events >= 2000, "{small_events} events recorded");
        let large = dir.path().join("churn-x.nstrace");
        let copies = (1_000_000 / small_events + 1) as usize;
        repeat_event_frames(&small, &large, copies);
        let large_events = events_in(&large);
        assert!(large_events > 1_000_000, "{large_events}");
        Traces {
            _dir: dir,
            small,
            small_events,
            large,
            large_events,
        }
    })
}

/// Runs `args` with stderr on the slave side of a new pseudo-terminal; returns the output
/// (stdout captured through a pipe) and everything that reached the terminal.
fn run_on_a_terminal(args: &[&str]) -> (Output, String) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills two fds; the name, termios and winsize arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut master = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last slave fd is closed (the child exited, ours is dropped below).
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(seen).expect("utf-8 on the terminal")
    });
    let mut cmd = Command::new(netns_trace_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave));
    let out = cmd.output().expect("run netns-trace");
    // `cmd` holds the parent's copy of the slave: close it so the reader sees the end.
    drop(cmd);
    assert!(out.status.success(), "netns-trace {args:?}: {}", out.status);
    (out, reader.join().unwrap())
}

/// The progress text on stderr: lines redrawn with '\r', then blanked out.
fn assert_progress_then_erased(stderr: &str, total_events: u64) {
    assert!(stderr.starts_with(&format!("\r{LINE}")), "{stderr:?}");
    let drawn: Vec<&str> = stderr.split('\r').filter(|l| l.starts_with(LINE)).collect();
    for l in &drawn {
        assert!(!l.contains('\n'), "one line, redrawn in place: {l:?}");
        assert!(
            l.contains("% (") && l.contains(" of "),
            "bytes of the file's size: {l:?}"
        );
        assert!(l.trim_end().ends_with(" M events/s"), "{l:?}");
        let events: u64 = l
            .split(", ")
            .find_map(|p| p.strip_suffix(" events"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no event count in {l:?}"));
        assert!(events >= 1 && events <= total_events, "{l:?}");
    }
    // Erased at the end: blanks as wide as the widest line, the cursor back at its start.
    let last = stderr.rsplit('\r').nth(1).unwrap();
    assert!(
        last.len() >= LINE.len() && last.chars().all(|c| c == ' '),
        "{stderr:?}"
    );
    assert!(stderr.ends_with('\r'), "{stderr:?}");
}

#[test]
fn always_draws_on_stderr_and_leaves_stdout_as_never_does() {
    if !require_root() {
        return;
    }
    let t = traces();
    let trace = t.small.to_str().unwrap();
    for extra in [&[][..], &["--json"][..], &["--state", "alive,draining"][..]] {
        let with = |mode: &str| {
            let args = [&["report", trace, "--progress", mode][..], extra].concat();
            run(&args, Stdio::piped())
        };
        let always = with("always");
        let never = with("never");
        assert_eq!(always.stdout, never.stdout, "{extra:?}: stdout is the same");
        assert!(!always.stdout.is_empty());
        assert!(
            !String::from_utf8_lossy(&always.stdout).contains(LINE),
            "never on stdout"
        );
        assert_progress_then_erased(&String::from_utf8(always.stderr).unwrap(), t.small_events);
        assert!(
            never.stderr.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&never.stderr)
        );
    }
    // export reads the same way: JSON lines on stdout, the same with or without progress.
    let export = |mode: &str| {
        run(
            &[
                "export",
                trace,
                "--format",
                "jsonl",
                "-o",
                "-",
                "--progress",
                mode,
            ],
            Stdio::piped(),
        )
    };
    let (always, never) = (export("always"), export("never"));
    assert_eq!(always.stdout, never.stdout);
    let stderr = String::from_utf8(always.stderr).unwrap();
    let summary = format!(
        "netns-trace: wrote {} events as JSON lines\n",
        t.small_events
    );
    let progress = stderr
        .strip_suffix(&summary)
        .unwrap_or_else(|| panic!("the summary after the erased line: {stderr:?}"));
    assert_progress_then_erased(progress, t.small_events);
}

#[test]
fn auto_stays_quiet_when_stderr_is_not_a_terminal() {
    if !require_root() {
        return;
    }
    let t = traces();
    // Past the million events, but stderr is a pipe (auto is the default).
    let large = t.large.to_str().unwrap();
    let auto = run(&["report", large], Stdio::piped());
    assert!(
        auto.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&auto.stderr)
    );
    let never = run(&["report", large, "--progress", "never"], Stdio::piped());
    assert_eq!(auto.stdout, never.stdout);
    let text = String::from_utf8(auto.stdout).unwrap();
    assert!(
        text.contains(&format!(", {} events\n", t.large_events)),
        "{text}"
    );
}

#[test]
fn auto_on_a_terminal_shows_progress_only_past_a_million_events() {
    if !require_root() {
        return;
    }
    let t = traces();
    let small = t.small.to_str().unwrap();
    let (_, seen) = run_on_a_terminal(&["report", small]);
    assert_eq!(seen, "", "{} events: no progress", t.small_events);

    let large = t.large.to_str().unwrap();
    for extra in [&[][..], &["--json"][..]] {
        let (auto, seen) = run_on_a_terminal(&[&["report", large][..], extra].concat());
        assert_progress_then_erased(&seen, t.large_events);
        // It starts at the millionth event.
        let first = seen.split('\r').nth(1).unwrap();
        assert!(first.contains(", 1000000 events, "), "{first:?}");
        let never = run(
            &[&["report", large, "--progress", "never"][..], extra].concat(),
            Stdio::piped(),
        );
        assert_eq!(auto.stdout, never.stdout, "{extra:?}");
    }
    // --progress never on a terminal: nothing.
    let (_, seen) = run_on_a_terminal(&["report", large, "--progress", "never"]);
    assert_eq!(seen, "");
}
