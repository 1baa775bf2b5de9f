//! Streams a child's output (a guest console or a host `cargo test`) to a log file and to
//! stdout with a label, parses libtest and init-script verdicts as they pass, and enforces a
//! timeout. Shared by the guest and host runs so both produce the same per-binary results.
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Result, XtaskError};
use crate::initramfs::{
    MARK_BOOTED, MARK_FILE_BEGIN, MARK_FILE_END, MARK_RESULT, MARK_SETUP_FAILED, MARK_TEST_START,
    MARK_TEST_VERDICT,
};
use crate::util::{create_dir_all, describe};

/// Console text after which a guest is dead or not worth waiting for.
const KERNEL_FATAL_MARKERS: &[&str] = &[
    "Kernel panic",
    "BUG:",
    "soft lockup",
    "hard LOCKUP",
    "rcu_sched detected stall",
];

/// One test executable's outcome.
#[derive(Debug, Clone, Default)]
pub struct BinaryResult {
    pub name: String,
    /// From the init script's verdict line (guest) or libtest's summary (host).
    pub passed_overall: Option<bool>,
    pub exit_code: Option<i32>,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub filtered_out: u64,
}

/// What the console said, parsed line by line.
#[derive(Debug, Default)]
pub struct ConsoleParser {
    pub binaries: Vec<BinaryResult>,
    pub setup_failures: Vec<String>,
    /// The guest's final NETNS_TRACE_VM_RESULT, if it got that far.
    pub final_result: Option<bool>,
    /// The guest's /init started.
    pub booted: bool,
    /// Files the guest shipped (collect runs), each verified against its size and SHA-256.
    pub files: Vec<CollectedFile>,
    /// Files that arrived damaged or incomplete, one line each.
    pub file_errors: Vec<String>,
    incoming: Option<IncomingFile>,
}

/// A file received over the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A file between its BEGIN and END lines.
#[derive(Debug)]
struct IncomingFile {
    name: String,
    size: Option<usize>,
    sha256: String,
    base64: String,
}

impl ConsoleParser {
    /// True between a file's BEGIN and END lines: its base64 lines are not worth echoing.
    pub fn receiving_file(&self) -> bool {
        self.incoming.is_some()
    }

    pub fn feed(&mut self, line: &str) {
        if let Some(incoming) = self.incoming.as_mut() {
            if let Some(rest) = after(line, MARK_FILE_END) {
                self.end_file(rest);
            } else if line.contains(MARK_FILE_BEGIN) || line.contains(MARK_RESULT) {
                let name = incoming.name.clone();
                self.file_errors
                    .push(format!("{name}: no end line before the next marker"));
                self.incoming = None;
                self.feed(line);
            } else {
                incoming.base64.push_str(line.trim());
            }
            return;
        }
        if let Some(rest) = after(line, MARK_FILE_BEGIN) {
            let field = |key: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            };
            self.incoming = Some(IncomingFile {
                name: field("name").unwrap_or_default().to_string(),
                size: field("size").and_then(|v| v.parse().ok()),
                sha256: field("sha256").unwrap_or_default().to_ascii_lowercase(),
                base64: String::new(),
            });
        } else if line.contains(MARK_BOOTED) {
            self.booted = true;
        } else if let Some(rest) = after(line, MARK_TEST_START) {
            self.start(rest.trim());
        } else if let Some(rest) = after(line, MARK_TEST_VERDICT) {
            self.verdict(rest);
        } else if let Some(rest) = after(line, MARK_SETUP_FAILED) {
            self.setup_failures.push(rest.trim().to_string());
        } else if let Some(rest) = after(line, MARK_RESULT) {
            self.final_result = Some(rest.trim() == "PASS");
        } else if let Some(rest) = line.trim_start().strip_prefix("Running ") {
            // cargo test on the host: "Running tests/vm_harness.rs (target/…/vm_harness-…)".
            self.start(&cargo_target_label(rest));
        } else if let Some(rest) = line.trim_start().strip_prefix("Doc-tests ") {
            self.start(&format!("doc-tests {}", rest.trim()));
        } else if let Some(rest) = after(line, "test result:") {
            self.summary(rest);
        }
    }

    /// "name=N" after a file's base64: decode, check size and SHA-256, keep or complain.
    fn end_file(&mut self, rest: &str) {
        let Some(incoming) = self.incoming.take() else {
            return;
        };
        let name = incoming.name;
        let end_name = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix("name="))
            .unwrap_or_default();
        let checked = (|| {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(format!("unusable file name {name:?}"));
            }
            if end_name != name {
                return Err(format!("ends as {end_name:?}"));
            }
            let bytes = decode_base64(&incoming.base64)?;
            if incoming.size != Some(bytes.len()) {
                return Err(format!(
                    "{} bytes arrived, {:?} were sent",
                    bytes.len(),
                    incoming.size
                ));
            }
            let sha256 = sha256_hex(&bytes)?;
            if sha256 != incoming.sha256 {
                return Err(format!(
                    "SHA-256 {sha256} differs from the guest's {}",
                    incoming.sha256
                ));
            }
            Ok(bytes)
        })();
        match checked {
            Ok(bytes) => self.files.push(CollectedFile { name, bytes }),
            Err(why) => self.file_errors.push(format!("{name}: {why}")),
        }
    }

    fn start(&mut self, name: &str) {
        self.binaries.push(BinaryResult {
            name: name.to_string(),
            ..BinaryResult::default()
        });
    }

    fn current(&mut self) -> &mut BinaryResult {
        if self.binaries.is_empty() {
            self.start("(unknown)");
        }
        let last = self.binaries.len() - 1;
        &mut self.binaries[last]
    }

    /// "name=vm_harness verdict=PASS exit=0"
    fn verdict(&mut self, rest: &str) {
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        let name = field("name").unwrap_or("(unknown)").to_string();
        let passed = field("verdict") == Some("PASS");
        let exit_code = field("exit").and_then(|v| v.parse().ok());
        if self.binaries.last().is_none_or(|b| b.name != name) {
            self.start(&name);
        }
        let current = self.current();
        current.passed_overall = Some(passed);
        current.exit_code = exit_code;
    }

    /// " ok. 3 passed; 0 failed; 1 ignored; 0 measured; 2 filtered out; finished in 0.1s"
    fn summary(&mut self, rest: &str) {
        let ok = rest.trim_start().starts_with("ok");
        let current = self.current();
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let count_of = |label: &str| -> Option<u64> {
                let at = words.iter().position(|w| *w == label)?;
                words.get(at.checked_sub(1)?)?.parse().ok()
            };
            if let Some(n) = count_of("passed") {
                current.passed += n;
            }
            if let Some(n) = count_of("failed") {
                current.failed += n;
            }
            if let Some(n) = count_of("ignored") {
                current.ignored += n;
            }
            if let Some(n) = count_of("filtered") {
                current.filtered_out += n;
            }
        }
        // The host has no init-script verdict line; libtest's summary is the verdict there.
        if current.passed_overall != Some(false) {
            current.passed_overall = Some(ok);
        }
    }
}

/// Standard base64 (RFC 4648, `=` padding), as busybox `base64` writes it; whitespace is ignored.
fn decode_base64(text: &str) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut padding = 0usize;
    for (at, c) in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace())
        .enumerate()
    {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return Err(format!("byte {c:#04x} at base64 offset {at} is not base64")),
        };
        if padding > 0 {
            return Err(format!("base64 data after padding at offset {at}"));
        }
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if padding > 2 {
        return Err("too much base64 padding".into());
    }
    Ok(out)
}

/// SHA-256 as lowercase hex, by the host's coreutils `sha256sum` (xtask keeps its
/// dependencies to what the workspace already has).
fn sha256_hex(bytes: &[u8]) -> std::result::Result<String, String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("sha256sum has no stdin")?;
    let data = bytes.to_vec();
    // Written from a thread so a full stdout pipe cannot stall the write.
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("sha256sum: {e}"))?;
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(hex) if out.status.success() && hex.len() == 64 => Ok(hex.to_ascii_lowercase()),
        _ => Err(format!("sha256sum failed ({})", out.status)),
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

/// "tests/vm_harness.rs (target/…)" → "vm_harness"; "unittests src/lib.rs (…)" → "unittests src/lib.rs".
pub(crate) fn cargo_target_label(rest: &str) -> String {
    let source = rest.split(" (").next().unwrap_or(rest).trim();
    match source.strip_prefix("tests/") {
        Some(file) => file.trim_end_matches(".rs").to_string(),
        None => source.to_string(),
    }
}

/// How the streamed process ended.
#[derive(Debug)]
pub struct StreamOutcome {
    pub exit: Option<ExitStatus>,
    pub timed_out: bool,
    /// The console line that made us kill a guest (panic, BUG, lockup).
    pub fatal_line: Option<String>,
    /// The guest's /init had not started by the boot deadline; it was killed.
    pub boot_stalled: bool,
    pub parser: ConsoleParser,
}

/// How to watch a streamed process.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub timeout: Duration,
    /// Stop a guest at a kernel panic, BUG or lockup line.
    pub kernel_fatal: bool,
    /// Kill the process if the guest's /init has not said it booted by then.
    pub boot_deadline: Option<Duration>,
}

/// Runs `cmd` with stdout and stderr merged into one pipe, so lines keep their order.
pub fn stream(
    cmd: &mut Command,
    label: &str,
    log_path: &Path,
    watch: Watch,
) -> Result<StreamOutcome> {
    let Watch {
        timeout,
        kernel_fatal: watch_kernel,
        boot_deadline,
    } = watch;
    if let Some(dir) = log_path.parent() {
        create_dir_all(dir)?;
    }
    let mut log = std::fs::File::create(log_path).map_err(XtaskError::io(log_path))?;
    let _ = writeln!(log, "# {}", describe(cmd));
    let (reader, writer) = std::io::pipe().map_err(XtaskError::io("pipe"))?;
    let writer_for_stderr = writer.try_clone().map_err(XtaskError::io("pipe"))?;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr)
        .spawn()
        .map_err(|source| XtaskError::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
    // The Command keeps its copies of the pipe's write end until told otherwise; drop them so
    // the reader sees EOF when the child (and whatever it spawned) is gone.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader_thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    if lines_tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let deadline = started + timeout;
    let mut parser = ConsoleParser::default();
    let mut timed_out = false;
    let mut fatal_line = None;
    let mut boot_stalled = false;
    let mut stdout = std::io::stdout();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            // Drain what is left in the pipe without blocking on a stray holder of the write end.
            while let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
                handle_line(&line, label, &mut log, &mut stdout, &mut parser);
            }
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            let _ = child.kill();
            break;
        }
        if let Some(boot_deadline) = boot_deadline
            && !parser.booted
            && now >= started + boot_deadline
        {
            boot_stalled = true;
            let _ = writeln!(
                stdout,
                "[{label}] guest did not reach /init within {}s; stopping it",
                boot_deadline.as_secs()
            );
            let _ = child.kill();
            break;
        }
        match lines_rx.recv_timeout((deadline - now).min(Duration::from_millis(500))) {
            Ok(line) => {
                handle_line(&line, label, &mut log, &mut stdout, &mut parser);
                if watch_kernel
                    && let Some(marker) = KERNEL_FATAL_MARKERS.iter().find(|m| line.contains(*m))
                {
                    let _ = writeln!(stdout, "[{label}] guest hit `{marker}`; stopping it");
                    fatal_line = Some(line.clone());
                    // Let the oops text reach the log, then stop the guest.
                    let grace = Instant::now() + Duration::from_secs(2);
                    while let Ok(more) =
                        lines_rx.recv_timeout(grace.saturating_duration_since(Instant::now()))
                    {
                        handle_line(&more, label, &mut log, &mut stdout, &mut parser);
                    }
                    let _ = child.kill();
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                break;
            }
        }
    }
    let exit = child.wait().ok();
    drop(lines_rx);
    // Not joined: a leftover grandchild may still hold the pipe open. The thread ends on its
    // next line or at EOF.
    drop(reader_thread);
    if timed_out {
        let _ = writeln!(log, "# killed after the {}s timeout", timeout.as_secs());
    }
    Ok(StreamOutcome {
        exit,
        timed_out,
        fatal_line,
        boot_stalled,
        parser,
    })
}

fn handle_line(
    line: &str,
    label: &str,
    log: &mut std::fs::File,
    stdout: &mut std::io::Stdout,
    parser: &mut ConsoleParser,
) {
    let _ = writeln!(log, "{line}");
    // A shipped file's base64 lines go to the log only.
    if !parser.receiving_file() || line.contains(MARK_FILE_END) {
        let _ = writeln!(stdout, "[{label}] {line}");
    }
    parser.feed(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_console_is_parsed() {
        let mut parser = ConsoleParser::default();
        for line in [
            "[    1.2] random kernel line",
            "NETNS_TRACE_VM_TEST_START: vm_harness",
            "running 2 tests",
            "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 3 filtered out; finished in 0.20s",
            "NETNS_TRACE_VM_TEST: name=vm_harness verdict=PASS exit=0",
            "NETNS_TRACE_VM_TEST_START: probes_e2e",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s",
            "NETNS_TRACE_VM_TEST: name=probes_e2e verdict=FAIL exit=101",
            "NETNS_TRACE_VM_RESULT: FAIL",
        ] {
            parser.feed(line);
        }
        assert_eq!(parser.binaries.len(), 2);
        let harness = &parser.binaries[0];
        assert_eq!(
            (
                harness.passed,
                harness.failed,
                harness.ignored,
                harness.filtered_out
            ),
            (2, 0, 1, 3)
        );
        assert_eq!(harness.passed_overall, Some(true));
        let e2e = &parser.binaries[1];
        assert_eq!(
            (e2e.passed, e2e.failed, e2e.exit_code, e2e.passed_overall),
            (1, 1, Some(101), Some(false))
        );
        assert_eq!(parser.final_result, Some(false));
    }

    #[test]
    fn host_cargo_output_is_parsed() {
        let mut parser = ConsoleParser::default();
        for line in [
            "     Running unittests src/lib.rs (target/release/deps/netns_trace-0123)",
            "test result: ok. 40 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.3s",
            "     Running tests/vm_harness.rs (target/release/deps/vm_harness-4567)",
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s",
        ] {
            parser.feed(line);
        }
        let names: Vec<&str> = parser.binaries.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["unittests src/lib.rs", "vm_harness"]);
        assert_eq!(parser.binaries[0].passed, 40);
        assert_eq!(parser.binaries[1].passed_overall, Some(true));
    }

    fn ship(parser: &mut ConsoleParser, name: &str, bytes: &[u8], damage: impl Fn(&mut String)) {
        let sha = sha256_hex(bytes).unwrap();
        parser.feed(&format!(
            "{MARK_FILE_BEGIN} name={name} size={} sha256={sha}",
            bytes.len()
        ));
        // busybox base64's layout, produced here by the host's coreutils.
        let mut child = Command::new("base64")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let mut text = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        damage(&mut text);
        for line in text.lines() {
            parser.feed(line);
        }
        parser.feed(&format!("{MARK_FILE_END} name={name}"));
    }

    #[test]
    fn files_arrive_intact_or_are_rejected() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut parser = ConsoleParser::default();
        ship(&mut parser, "a.nstrace", &bytes, |_| {});
        ship(&mut parser, "short.bin", &bytes[..1], |_| {});
        ship(&mut parser, "flipped.bin", &bytes, |t| {
            let first = t.as_bytes()[10];
            let other = if first == b'A' { "B" } else { "A" };
            t.replace_range(10..11, other);
        });
        ship(&mut parser, "interleaved.bin", &bytes, |t| {
            t.insert_str(100, "[   12.5] veth: link up");
        });
        parser.feed(&format!("{MARK_FILE_BEGIN} name=cut.bin size=3 sha256=00"));
        parser.feed("AAAA");
        parser.feed("NETNS_TRACE_VM_RESULT: PASS");
        assert_eq!(
            parser.final_result,
            Some(true),
            "the result line still counts"
        );
        let names: Vec<&str> = parser.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.nstrace", "short.bin"]);
        assert_eq!(parser.files[0].bytes, bytes);
        assert_eq!(parser.files[1].bytes, &bytes[..1]);
        assert_eq!(parser.file_errors.len(), 3, "{:?}", parser.file_errors);
        assert!(parser.file_errors[0].starts_with("flipped.bin: SHA-256"));
        assert!(parser.file_errors[1].starts_with("interleaved.bin: byte"));
        assert!(parser.file_errors[2].starts_with("cut.bin: no end line"));
    }

    #[test]
    fn base64_decodes_like_rfc_4648() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64("Zm9v\nYmFy").unwrap(), b"foobar");
        assert!(decode_base64("Zm9v!").is_err());
        assert!(decode_base64("Zg==Zg").is_err());
    }

    fn shell(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn kernel_panic_stops_the_process_early() {
        let log =
            std::env::temp_dir().join(format!("xtask-console-panic-{}.log", std::process::id()));
        let watch = Watch {
            timeout: Duration::from_secs(60),
            kernel_fatal: true,
            boot_deadline: None,
        };
        let started = Instant::now();
        let outcome = stream(
            &mut shell("echo booting; echo '[ 1.0] Kernel panic - not syncing: x'; sleep 30"),
            "t",
            &log,
            watch,
        )
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not stopped at the panic"
        );
        assert!(
            outcome
                .fatal_line
                .as_deref()
                .is_some_and(|l| l.contains("Kernel panic"))
        );
        assert!(!outcome.timed_out);
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("booting") && logged.contains("Kernel panic"));
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn timeout_and_boot_deadline_kill_the_process() {
        let log =
            std::env::temp_dir().join(format!("xtask-console-timeout-{}.log", std::process::id()));
        let watch = Watch {
            timeout: Duration::from_secs(1),
            kernel_fatal: false,
            boot_deadline: None,
        };
        let outcome = stream(&mut shell("sleep 30"), "t", &log, watch).unwrap();
        assert!(outcome.timed_out);

        let watch = Watch {
            timeout: Duration::from_secs(60),
            kernel_fatal: true,
            boot_deadline: Some(Duration::from_secs(1)),
        };
        let outcome = stream(&mut shell("echo SeaBIOS; sleep 30"), "t", &log, watch).unwrap();
        assert!(outcome.boot_stalled && !outcome.timed_out);

        let watch = Watch {
            timeout: Duration::from_secs(60),
            kernel_fatal: true,
            boot_deadline: Some(Duration::from_secs(1)),
        };
        let outcome = stream(
            &mut shell(
                "echo 'NETNS_TRACE_VM_BOOTED: x'; sleep 2; echo 'NETNS_TRACE_VM_RESULT: PASS'",
            ),
            "t",
            &log,
            watch,
        )
        .unwrap();
        assert!(!outcome.boot_stalled && outcome.exit.is_some_and(|s| s.success()));
        assert_eq!(outcome.parser.final_result, Some(true));
        let _ = std::fs::remove_file(log);
    }
}
