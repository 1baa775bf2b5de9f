//! `cargo xtask test` (the whole suite, what CI runs) and `cargo xtask run` (the tool itself).
//! Both bootstrap first, so each works on a fresh machine.
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bootstrap::{BootstrapArgs, run_bootstrap};

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

/// Integration tests proven in all three guests. The scenario tests (incident, testbed,
/// reliability, snapshot_host) run on the host in this suite; in the guests they are being
/// brought up (`cargo xtask vm-test --kernel all` runs everything).
const GUEST_TESTS: &[&str] = &["vm_harness", "btf_offsets", "probes_e2e", "export"];

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

fn stage(name: &str, cmd: &mut Command, results: &mut Vec<(String, bool, f64)>) {
    println!("\n=== xtask test: {name}");
    println!("    {cmd:?}");
    let t0 = Instant::now();
    let ok = match cmd.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("cannot run {cmd:?}: {e}");
            false
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "=== xtask test: {name}: {} in {secs:.0} s",
        if ok { "PASSED" } else { "FAILED" }
    );
    results.push((name.to_string(), ok, secs));
}

pub fn test(args: TestArgs) -> Result<bool> {
    let t0 = Instant::now();
    if unsafe { libc::geteuid() } != 0 {
        bail!("the suite loads BPF programs and makes namespaces: run it as root");
    }
    run_bootstrap(&BootstrapArgs { check: false }).context("bootstrap")?;
    let mut results = Vec::new();

    // Unit tests, then every integration test on the host kernel (tracepoint mode here),
    // one at a time: they share kernel state.
    stage(
        "unit and host integration tests (tracepoint mode)",
        cargo()
            .args(["test", "--workspace", "--exclude", "netns-trace-ebpf", "--release", "--", "--test-threads=1"])
            .env("NETNS_TRACE_EXPECT_MODE", host_mode()),
        &mut results,
    );

    if !args.no_vm {
        let me = std::env::current_exe()?;
        for kernel in ["5.10", "6.1", "6.12"] {
            let mut cmd = Command::new(&me);
            cmd.current_dir(root()).args(["vm-test", "--kernel", kernel]);
            for t in GUEST_TESTS {
                cmd.args(["--test", t]);
            }
            stage(&format!("guest {kernel} (full mode)"), &mut cmd, &mut results);
        }
    }

    if args.fuzz_seconds > 0 {
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
            stage(
                &format!("fuzz {t} ({} s)", args.fuzz_seconds),
                Command::new("cargo")
                    .current_dir(root().join("fuzz"))
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .args([
                        "+nightly",
                        "fuzz",
                        "run",
                        &t,
                        "--",
                        &format!("-max_total_time={}", args.fuzz_seconds),
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
    for (name, ok, secs) in &results {
        println!(
            "  {:<6} {name} ({secs:.0} s)",
            if *ok { "PASS" } else { "FAIL" }
        );
    }
    let passed = results.iter().filter(|r| r.1).count();
    println!("stages: {passed} passed, {} failed", results.len() - passed);
    Ok(passed == results.len())
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
    let st = cargo()
        .args(["build", "--release", "-p", "netns-trace", "--bins"])
        .status()?;
    if !st.success() {
        bail!("build failed");
    }
    let st = Command::new(root().join("target/release/netns-trace"))
        .args(&args.args)
        .status()?;
    Ok(st.success())
}
