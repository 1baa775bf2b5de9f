//! `cargo xtask test` (the whole suite, what CI runs) and `cargo xtask run` (the tool itself).
//! Both bootstrap first, so each works on a fresh machine.
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bootstrap::{BootstrapArgs, run_bootstrap};
use crate::build::{self, DEV_FEATURE, Flavour, TESTBED_ENV};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip the QEMU guests (host tests, unit tests and fuzzing only).
    #[arg(long)]
    pub no_vm: bool,
    /// Seconds per fuzz target (0 skips fuzzing).
    #[arg(long, default_value_t = 60)]
    pub fuzz_seconds: u64,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Arguments for netns-trace (e.g. `-- watch --json`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Integration tests proven in all three guests (full mode); `cargo xtask vm-test --kernel all`
/// runs every test file.
const GUEST_TESTS: &[&str] = &[
    "vm_harness",
    "btf_offsets",
    "probes_e2e",
    "export",
    "incident",
    "recorded_traces",
    "scenarios",
    "probe_diagnostics",
    "iproute2_netns",
    "cni_plugins",
];

/// Tests whose kernel side the all-guest tests already cover, run in one guest only to keep CI
/// short: pod attribution (cgroup v2 + CNI cache) and the metrics endpoint.
const ONE_GUEST_TESTS: (&str, &[&str]) = ("6.1", &["attribution", "metrics"]);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root());
    c
}

#[cfg(test)]
mod tests {
    use super::FailedTests;

    #[test]
    fn failed_tests_are_named_with_their_binary_on_the_host_and_in_guests() {
        let mut f = FailedTests::default();
        for line in [
            "     Running tests/attribution.rs (target/release/deps/attribution-0123)",
            "test the_leaked_namespace_names_its_pod_and_container ... FAILED",
            "test passes ... ok",
            "[6.1] NETNS_TRACE_VM_TEST_START: scenarios",
            "[6.1] test a_copy_in_another_mount_namespace_is_named_as_the_pin ... FAILED",
            "[6.1] test a_copy_in_another_mount_namespace_is_named_as_the_pin ... FAILED",
        ] {
            f.feed(line);
        }
        assert_eq!(
            f.failed,
            [
                "attribution::the_leaked_namespace_names_its_pod_and_container",
                "scenarios::a_copy_in_another_mount_namespace_is_named_as_the_pin",
            ]
        );
    }
}

/// One stage's outcome; `evidence` holds the lines that say why it failed, so the summary at
/// the very end of the output (all a CI log tail may show) names the failing tests.
struct StageResult {
    name: String,
    ok: bool,
    secs: f64,
    evidence: Vec<String>,
    /// `binary::test` for every libtest `... FAILED` line, in order.
    failed_tests: Vec<String>,
}

/// Follows a stage's output to name each failed test with its test binary: cargo's
/// "Running tests/x.rs (…)" on the host, the guest's test-start marker in QEMU.
#[derive(Default)]
struct FailedTests {
    binary: String,
    failed: Vec<String>,
}

impl FailedTests {
    fn feed(&mut self, line: &str) {
        // Guest console lines arrive as "[6.1] <line>".
        let line = line.trim();
        let line = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        if let Some(rest) = line.strip_prefix("Running ") {
            self.binary = crate::console::cargo_target_label(rest);
        } else if let Some(rest) = line.split_once(crate::initramfs::MARK_TEST_START) {
            self.binary = rest.1.trim().to_string();
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            let name = format!("{}::{name}", self.binary);
            if !self.failed.contains(&name) && self.failed.len() < 200 {
                self.failed.push(name);
            }
        }
    }
}

/// Lines worth repeating in the summary: failing test names, panic sites and their messages,
/// compiler errors, guest verdicts.
fn is_evidence(line: &str) -> bool {
    line.starts_with("---- ")
        || line.contains("panicked at")
        || line.starts_with("error")
        || line.contains(" FAILED")
        || line.starts_with("failures:")
        || line.contains("FAIL ")
}

fn stage(name: &str, cmd: &mut Command, results: &mut Vec<StageResult>) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};

    println!("\n=== xtask test: {name}");
    println!("    {cmd:?}");
    let t0 = Instant::now();
    let evidence = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed_tests = Arc::new(Mutex::new(FailedTests::default()));
    let ok = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(mut child) => {
            // Echo both streams as they come, keeping the lines that explain a failure.
            let mut pumps = Vec::new();
            let out = child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
            let err = child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
            for (stream, to_stderr) in [(out, false), (err, true)] {
                let Some(stream) = stream else { continue };
                let evidence = Arc::clone(&evidence);
                let failed_tests = Arc::clone(&failed_tests);
                pumps.push(std::thread::spawn(move || {
                    let mut after_panic = 0usize;
                    for line in BufReader::new(stream).split(b'\n') {
                        let Ok(line) = line else { break };
                        let text = String::from_utf8_lossy(&line).into_owned();
                        if to_stderr {
                            let _ = writeln!(std::io::stderr(), "{text}");
                        } else {
                            let _ = writeln!(std::io::stdout(), "{text}");
                        }
                        failed_tests
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .feed(&text);
                        let keep = is_evidence(&text) || after_panic > 0;
                        after_panic = if text.contains("panicked at") {
                            3
                        } else {
                            after_panic.saturating_sub(1)
                        };
                        if keep {
                            let mut ev = evidence.lock().unwrap_or_else(|p| p.into_inner());
                            if ev.len() < 200 {
                                ev.push(text);
                            }
                        }
                    }
                }));
            }
            let status = child.wait();
            for p in pumps {
                let _ = p.join();
            }
            matches!(status, Ok(s) if s.success())
        }
        Err(e) => {
            evidence
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("cannot run {cmd:?}: {e}"));
            false
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "=== xtask test: {name}: {} in {secs:.0} s",
        if ok { "PASSED" } else { "FAILED" }
    );
    let evidence = std::mem::take(&mut *evidence.lock().unwrap_or_else(|p| p.into_inner()));
    let failed_tests = std::mem::take(
        &mut failed_tests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed,
    );
    results.push(StageResult {
        name: name.to_string(),
        ok,
        secs,
        evidence,
        failed_tests,
    });
}

pub fn test(args: TestArgs) -> Result<bool> {
    let t0 = Instant::now();
    if unsafe { libc::geteuid() } != 0 {
        bail!("the suite loads BPF programs and makes namespaces: run it as root");
    }
    run_bootstrap(&BootstrapArgs { check: false }).context("bootstrap")?;
    let mut results = Vec::new();

    // The lint gate. The eBPF crate is left to its own build: it targets bpfel with nightly
    // (aya-build), which host clippy cannot check.
    stage(
        "rustfmt",
        cargo().args(["fmt", "--all", "--", "--check"]),
        &mut results,
    );
    // Twice: the shipped feature set, and with netns-trace's `dev` feature (what tests and
    // benches build), so code on either side of the gate is checked.
    for (name, features) in [
        ("clippy", None),
        ("clippy (dev feature)", Some(DEV_FEATURE)),
    ] {
        let mut cmd = cargo();
        cmd.args([
            "clippy",
            "--workspace",
            "--exclude",
            "netns-trace-ebpf",
            "--all-targets",
        ]);
        if let Some(features) = features {
            cmd.args(["--features", features]);
        }
        cmd.args(["--", "-D", "warnings"]);
        stage(name, &mut cmd, &mut results);
    }

    // Unit tests, then every integration test on the host kernel (tracepoint mode here),
    // one at a time: they share kernel state. --no-fail-fast: one red test binary must not
    // hide the verdicts of the binaries after it. The testbed is another package's binary,
    // which cargo does not build for netns-trace's tests: it is built first and named in
    // NETNS_TRACE_TESTBED_BIN.
    let mut host_tests = cargo();
    host_tests
        .args([
            "test",
            "--no-fail-fast",
            "--workspace",
            "--exclude",
            "netns-trace-ebpf",
            "--release",
            "--features",
            DEV_FEATURE,
            "--",
            "--test-threads=1",
        ])
        .env("NETNS_TRACE_EXPECT_MODE", host_mode());
    match build::release_testbed() {
        Ok(testbed) => {
            host_tests.env(TESTBED_ENV, testbed);
        }
        // The tests that need it then fail and say the variable is unset.
        Err(e) => results.push(StageResult {
            name: "testbed build".into(),
            ok: false,
            secs: 0.0,
            evidence: vec![e.to_string()],
            failed_tests: Vec::new(),
        }),
    }
    stage(
        "unit and host integration tests (tracepoint mode)",
        &mut host_tests,
        &mut results,
    );

    // The fuzz targets (nightly, sanitizers: ~6 min of compiling) build during the guests at
    // the lowest priority, in the CPU time the emulated guests leave idle.
    let mut fuzz_build = (args.fuzz_seconds > 0 && !args.no_vm).then(spawn_fuzz_build);

    if !args.no_vm {
        let me = std::env::current_exe()?;
        for kernel in ["5.10", "6.1", "6.12"] {
            let mut cmd = Command::new(&me);
            cmd.current_dir(root())
                .args(["vm-test", "--kernel", kernel]);
            let extra = if kernel == ONE_GUEST_TESTS.0 {
                ONE_GUEST_TESTS.1
            } else {
                &[]
            };
            for t in GUEST_TESTS.iter().chain(extra) {
                cmd.args(["--test", t]);
            }
            stage(
                &format!("guest {kernel} (full mode)"),
                &mut cmd,
                &mut results,
            );
        }
    }

    if args.fuzz_seconds > 0 {
        if let Some(Ok(child)) = fuzz_build.as_mut() {
            println!("\n=== xtask test: waiting for the background fuzz build");
            let _ = child.wait();
        }
        // A no-op after a good background build; otherwise the build again, with its errors.
        stage(
            "fuzz build",
            fuzz_cargo().args(["fuzz", "build"]),
            &mut results,
        );
        let targets = std::fs::read_dir(root().join("fuzz/fuzz_targets"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.path()
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .collect::<Vec<_>>();
        for t in targets {
            let corpus = root().join("fuzz/corpus").join(&t);
            std::fs::create_dir_all(&corpus)?;
            let seconds = fuzz_budget(&t, args.fuzz_seconds);
            stage(
                &format!("fuzz {t} ({seconds} s)"),
                fuzz_cargo().args([
                    "fuzz",
                    "run",
                    &t,
                    "--",
                    &format!("-max_total_time={seconds}"),
                    "-rss_limit_mb=4096",
                ]),
                &mut results,
            );
        }
    }

    println!(
        "\n=== xtask test summary ({:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    for r in &results {
        println!(
            "  {:<6} {} ({:.0} s)",
            if r.ok { "PASS" } else { "FAIL" },
            r.name,
            r.secs
        );
        for t in &r.failed_tests {
            println!("           failed: {t}");
        }
    }
    // Why each failed stage failed, last, where a truncated CI log still shows it.
    for r in results.iter().filter(|r| !r.ok) {
        println!("\n--- why \"{}\" failed:", r.name);
        for line in &r.evidence {
            println!("  | {line}");
        }
    }
    let passed = results.iter().filter(|r| r.ok).count();
    println!("stages: {passed} passed, {} failed", results.len() - passed);
    Ok(passed == results.len())
}

/// `cargo +nightly` in fuzz/ (cargo-fuzz needs nightly; rustup's override must not win).
fn fuzz_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root().join("fuzz"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .arg("+nightly");
    c
}

/// `nice -n 19 cargo +nightly fuzz build` in the background, output to
/// target/fuzz-build.log. Same options as `fuzz run`, so the runs reuse its artifacts.
fn spawn_fuzz_build() -> std::io::Result<std::process::Child> {
    let log_path = crate::util::target_dir().join("fuzz-build.log");
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(&log_path)?;
    let mut c = Command::new("nice");
    c.current_dir(root().join("fuzz"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["-n", "19", "cargo", "+nightly", "fuzz", "build"])
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = c.spawn();
    if child.is_ok() {
        println!(
            "\n=== xtask test: fuzz targets building in the background (log {})",
            log_path.display()
        );
    }
    child
}

/// Seconds for one fuzz target. The line parsers (mountinfo, /proc/PID/cgroup, CNI cache) are
/// small and shallow (a few hundred branches each), so 30 s of CI time per run covers them and
/// keeps the suite's fuzzing near 4 min; the trace reader and decoder get the full budget.
/// Longer runs are for local use: `cargo +nightly fuzz run <target>`.
fn fuzz_budget(target: &str, seconds: u64) -> u64 {
    match target {
        "mountinfo" | "proc_cgroup" | "cni_cache" => seconds.min(30),
        _ => seconds,
    }
}

/// What the host's own kernel allows; the tests assert the mode the loader reports.
fn host_mode() -> &'static str {
    // This project's machines refuse fentry and have no kprobes; elsewhere the host may well
    // run in full mode, and the tests accept what `netns-trace probes` reports there when told.
    match std::env::var("NETNS_TRACE_EXPECT_MODE") {
        Ok(m) if m == "full" => "full",
        _ => "tracepoint",
    }
}

pub fn run(args: RunArgs) -> Result<bool> {
    run_bootstrap(&BootstrapArgs { check: false }).context("bootstrap")?;
    let netns_trace = build::release_netns_trace(Flavour::Shipped)?;
    let st = Command::new(netns_trace).args(&args.args).status()?;
    Ok(st.success())
}
