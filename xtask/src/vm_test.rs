//! `cargo xtask vm-test`: runs netns-trace's integration tests inside real Debian kernels
//! (5.10, 6.1, 6.12) under QEMU, and on the host, one after another, then prints a table.
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::build::{self, DEV_FEATURE, PACKAGE, TESTBED_BIN, TESTBED_ENV, executables};
use crate::console::{BinaryResult, Watch, stream};
use crate::error::{Result, XtaskError};
use crate::initramfs::{self, Payload};
use crate::kernels::{self, KERNELS, KernelSpec};
use crate::qemu::{self, Accel, Boot, GuestVerdict};
use crate::util::{create_dir_all, workspace_root};

/// A guest's whole suite under TCG takes 8–14 min on this project's 2-core machines (5.10
/// slowest: 830 s in the run that raised it from 15 min); the limit only ends a guest that
/// hangs, so it keeps a wide margin over the slowest healthy run (and three hung guests still
/// end within CI's 90 minutes).
const DEFAULT_TIMEOUT: &str = "20m";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask vm-test                               # 5.10, 6.1, 6.12 guests, then the host
  cargo xtask vm-test --kernel 6.1 --test vm_harness          # one test executable, one guest
  cargo xtask vm-test --kernel 6.12 -- veth_pair_in_a_fresh_namespace --exact
  cargo xtask vm-test --kernel host --test probes_e2e

Kernels are downloaded once into $NETNS_TRACE_VM_CACHE (default target/vm-cache); console
logs go to target/vm-logs/<kernel>.log. See docs/vm-tests.md.")]
pub struct VmTestArgs {
    /// Where to run: a guest kernel (5.10, 6.1, 6.12), `host`, or `all` (every guest, then the host).
    #[arg(long, default_value = "all", value_parser = parse_selection)]
    pub kernel: Selection,
    /// Run the remaining kernels after one fails (default: stop at the first failure).
    #[arg(long)]
    pub keep_going: bool,
    /// Look for a newer kernel package even when one is cached.
    #[arg(long)]
    pub refresh_kernels: bool,
    /// Only download and extract the selected kernels (warms the cache); build and run nothing.
    #[arg(long)]
    pub fetch_only: bool,
    /// Per-kernel time limit (e.g. 900, 900s, 15m); the guest is killed when it runs out.
    #[arg(long, env = "NETNS_TRACE_VM_TIMEOUT", default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Only run this integration-test executable (tests/<NAME>.rs); repeat for more.
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
    /// Bring back the files guest tests leave in $NETNS_TRACE_COLLECT_DIR (recorded traces):
    /// each is shipped over the console with its size and SHA-256 and written here as
    /// <kernel>-<name>. A damaged transfer fails that guest.
    #[arg(long, value_name = "DIR")]
    pub collect_traces: Option<PathBuf>,
    /// Arguments for every test executable (a name filter, --exact, --ignored, …).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// Where this run's logs and initramfs trees go: under CARGO_TARGET_DIR when it is set, so
/// runs with different target dirs (parallel sessions) do not overwrite each other's guests.
fn run_dir() -> PathBuf {
    crate::util::target_dir()
}

/// What `--kernel` selected.
#[derive(Debug, Clone, Copy)]
pub enum Selection {
    Guest(&'static KernelSpec),
    Host,
    All,
}

fn parse_selection(value: &str) -> std::result::Result<Selection, String> {
    match value {
        "all" => Ok(Selection::All),
        "host" => Ok(Selection::Host),
        name => kernels::spec(name).map(Selection::Guest).ok_or_else(|| {
            let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
            format!(
                "unknown kernel `{name}`; expected one of {}, host, all",
                names.join(", ")
            )
        }),
    }
}

/// "900", "900s", "15m", "1h".
fn parse_timeout(value: &str) -> std::result::Result<Duration, String> {
    let value = value.trim();
    let (number, unit_secs) = match value.char_indices().last() {
        Some((at, 's')) => (&value[..at], 1),
        Some((at, 'm')) => (&value[..at], 60),
        Some((at, 'h')) => (&value[..at], 3600),
        _ => (value, 1),
    };
    let number: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a duration like 900, 900s or 15m"))?;
    if number == 0 {
        return Err("the timeout must be positive".into());
    }
    Ok(Duration::from_secs(number * unit_secs))
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Guest(&'static KernelSpec),
    Host,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Guest(spec) => f.write_str(spec.name),
            Target::Host => f.write_str("host"),
        }
    }
}

/// One row group of the final table.
struct TargetSummary {
    target: Target,
    /// None when skipped after an earlier failure.
    verdict: Option<GuestVerdict>,
    detail: String,
    binaries: Vec<BinaryResult>,
    wall: Duration,
}

/// Runs the selection; Ok(true) when everything passed.
pub fn run_vm_test(args: &VmTestArgs) -> Result<bool> {
    let root = workspace_root();
    let targets: Vec<Target> = match args.kernel {
        Selection::Guest(spec) => vec![Target::Guest(spec)],
        Selection::Host => vec![Target::Host],
        Selection::All => KERNELS
            .iter()
            .map(Target::Guest)
            .chain([Target::Host])
            .collect(),
    };
    let logs = run_dir().join("vm-logs");
    create_dir_all(&logs)?;
    let cache = kernels::cache_dir(&root);
    if args.fetch_only {
        for target in &targets {
            if let Target::Guest(spec) = target {
                let kernel = kernels::prepare(spec, &cache, args.refresh_kernels)?;
                println!(
                    "[{}] ready: {} in {}",
                    spec.name,
                    kernel.release,
                    kernel.vmlinuz.display()
                );
            }
        }
        return Ok(true);
    }

    let build_started = Instant::now();
    let payload = build_payload(&root, &args.tests)?;
    println!(
        "vm-test: built {} binaries and {} test executables in {:.1}s",
        payload.bins.len(),
        payload.tests.len(),
        build_started.elapsed().as_secs_f64()
    );

    let mut accel = Accel::detect();
    if targets.iter().any(|t| matches!(t, Target::Guest(_))) {
        println!("vm-test: accelerator: {}", accel.describe());
    }
    let mut summaries = Vec::new();
    let mut stop = false;
    for target in targets {
        if stop {
            summaries.push(TargetSummary {
                target,
                verdict: None,
                detail: "skipped (earlier failure; --keep-going runs it)".into(),
                binaries: Vec::new(),
                wall: Duration::ZERO,
            });
            continue;
        }
        let started = Instant::now();
        let result = match target {
            Target::Guest(spec) => run_guest(spec, &cache, &payload, args, &mut accel, &logs),
            Target::Host => run_host(&root, &payload, args, &logs),
        };
        let summary = match result {
            Ok((verdict, detail, binaries)) => TargetSummary {
                target,
                verdict: Some(verdict),
                detail,
                binaries,
                wall: started.elapsed(),
            },
            Err(e) => TargetSummary {
                target,
                verdict: Some(GuestVerdict::Fail(e.to_string())),
                detail: String::new(),
                binaries: Vec::new(),
                wall: started.elapsed(),
            },
        };
        if summary.verdict != Some(GuestVerdict::Pass) && !args.keep_going {
            stop = true;
        }
        summaries.push(summary);
    }
    print_table(&summaries);
    Ok(summaries
        .iter()
        .all(|s| s.verdict == Some(GuestVerdict::Pass)))
}

/// The guest tests that record the fixtures: (test executable, name filter). Each leaves its
/// trace and sidecar in $NETNS_TRACE_COLLECT_DIR. libtest runs the tests that match any of
/// its filters, and every executable gets them all, so each filter must match tests of its
/// own executable only.
const FIXTURE_TESTS: [(&str, &str); 2] = [
    // The round-trip tests only (incident, clean-teardown): the fixture checks there need
    // the fixtures being made.
    ("recorded_traces", "recorded_then_reported"),
    // The incident with Debian's CNI reference plugins (cni-incident).
    (
        "cni_plugins",
        "the_cni_incident_gives_the_leak_the_duplicate_ip_and_the_stale_arp_reply",
    ),
];
/// Where the fixtures are committed.
const FIXTURE_DIR: &str = "netns-trace/tests/data/traces";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Boots each guest, runs the round-trip tests of tests/recorded_traces.rs there (the incident scenario, leaking and \
clean, under `netns-trace record` in full mode) and the CNI incident of tests/cni_plugins.rs (the \
reference plugins, under `netns-trace watch --record`), ships the traces back over the console and \
replaces netns-trace/tests/data/traces/<kernel>-*. A kernel whose guest fails keeps its old \
fixtures. See docs/vm-tests.md.")]
pub struct RecordFixturesArgs {
    /// Only these guest kernels (default: every one).
    #[arg(long = "kernel", value_name = "NAME", value_parser = parse_guest)]
    pub kernels: Vec<&'static KernelSpec>,
    /// Per-kernel time limit (e.g. 900, 900s, 15m).
    #[arg(long, env = "NETNS_TRACE_VM_TIMEOUT", default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_guest(value: &str) -> std::result::Result<&'static KernelSpec, String> {
    match parse_selection(value)? {
        Selection::Guest(spec) => Ok(spec),
        _ => Err(format!("`{value}` is not a guest kernel")),
    }
}

/// `cargo xtask record-fixtures`: Ok(true) when every selected kernel produced its fixtures.
pub fn run_record_fixtures(args: &RecordFixturesArgs) -> Result<bool> {
    let root = workspace_root();
    let kernels: Vec<&'static KernelSpec> = if args.kernels.is_empty() {
        KERNELS.iter().collect()
    } else {
        args.kernels.clone()
    };
    let fixtures = root.join(FIXTURE_DIR);
    create_dir_all(&fixtures)?;
    let mut all_ok = true;
    for spec in kernels {
        // Each guest's files land in a staging dir first; fixtures change only on a pass.
        let staging = run_dir().join("vm-collect").join(spec.name);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(XtaskError::io(&staging))?;
        }
        let vm_args = VmTestArgs {
            kernel: Selection::Guest(spec),
            keep_going: false,
            refresh_kernels: false,
            fetch_only: false,
            timeout: args.timeout,
            tests: FIXTURE_TESTS.iter().map(|(t, _)| t.to_string()).collect(),
            collect_traces: Some(staging.clone()),
            test_args: FIXTURE_TESTS.iter().map(|(_, f)| f.to_string()).collect(),
        };
        if !run_vm_test(&vm_args)? {
            println!(
                "record-fixtures: {} failed; its fixtures are unchanged",
                spec.name
            );
            all_ok = false;
            continue;
        }
        let mut collected: Vec<PathBuf> = std::fs::read_dir(&staging)
            .map_err(XtaskError::io(&staging))?
            .flatten()
            .map(|e| e.path())
            .collect();
        collected.sort();
        if !collected
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "nstrace"))
        {
            println!(
                "record-fixtures: {} shipped no trace; its fixtures are unchanged",
                spec.name
            );
            all_ok = false;
            continue;
        }
        let prefix = format!("{}-", spec.name);
        for old in std::fs::read_dir(&fixtures)
            .map_err(XtaskError::io(&fixtures))?
            .flatten()
        {
            if old.file_name().to_string_lossy().starts_with(&prefix) {
                std::fs::remove_file(old.path()).map_err(XtaskError::io(old.path()))?;
            }
        }
        for file in collected {
            let dest = fixtures.join(file.file_name().unwrap_or_default());
            std::fs::copy(&file, &dest).map_err(XtaskError::io(&file))?;
            let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
            println!("record-fixtures: {} ({size} bytes)", dest.display());
        }
    }
    Ok(all_ok)
}

type TargetResult = (GuestVerdict, String, Vec<BinaryResult>);

fn run_guest(
    spec: &KernelSpec,
    cache: &Path,
    payload: &Payload,
    args: &VmTestArgs,
    accel: &mut Accel,
    logs: &Path,
) -> Result<TargetResult> {
    let kernel = kernels::prepare(spec, cache, args.refresh_kernels)?;
    let work_dir = run_dir().join("vm-initramfs");
    create_dir_all(&work_dir)?;
    let initrd = if args.collect_traces.is_some() {
        initramfs::build_collecting(&work_dir, &kernel, payload, &args.test_args)?
    } else {
        initramfs::build(&work_dir, &kernel, payload, &args.test_args)?
    };
    let size_mib = std::fs::metadata(&initrd)
        .map(|m| m.len() as f64 / 1048576.0)
        .unwrap_or(0.0);
    println!(
        "[{}] initramfs {} ({size_mib:.1} MiB); booting {}",
        spec.name,
        initrd.display(),
        kernel.release
    );
    let boot = Boot {
        label: spec.name.to_string(),
        vmlinuz: kernel.vmlinuz.clone(),
        initrd,
        log_path: logs.join(format!("{}.log", spec.name)),
        timeout: args.timeout,
        accel: *accel,
    };
    let (outcome, verdict, used) = qemu::run(&boot)?;
    if used != *accel {
        println!("vm-test: KVM cannot boot these guests here; the remaining guests run under TCG");
        *accel = used;
    }
    let accel_name = if used == Accel::Kvm { "KVM" } else { "TCG" };
    let mut verdict = verdict;
    if let Some(dir) = &args.collect_traces {
        let parser = &outcome.parser;
        for file in &parser.files {
            let path = dir.join(format!("{}-{}", spec.name, file.name));
            create_dir_all(dir)?;
            std::fs::write(&path, &file.bytes).map_err(XtaskError::io(&path))?;
            println!(
                "[{}] collected {} ({} bytes)",
                spec.name,
                path.display(),
                file.bytes.len()
            );
        }
        if !parser.file_errors.is_empty() && verdict == GuestVerdict::Pass {
            verdict = GuestVerdict::Fail(format!(
                "collected files arrived damaged: {}",
                parser.file_errors.join("; ")
            ));
        }
    }
    Ok((
        verdict,
        format!(
            "{} ({accel_name}), log {}",
            kernel.release,
            boot.log_path.display()
        ),
        outcome.parser.binaries,
    ))
}

fn run_host(
    root: &Path,
    payload: &Payload,
    args: &VmTestArgs,
    logs: &Path,
) -> Result<TargetResult> {
    let mut cmd = build::cargo();
    cmd.current_dir(root).args([
        "test",
        "--release",
        "-p",
        PACKAGE,
        "--features",
        DEV_FEATURE,
    ]);
    for test in &args.tests {
        cmd.args(["--test", test]);
    }
    cmd.args(["--", "--test-threads=1"])
        .args(&args.test_args)
        .env("NETNS_TRACE_EXPECT_MODE", "tracepoint")
        .env("RUST_BACKTRACE", "1")
        .env_remove("NETNS_TRACE_IN_VM")
        .env_remove("NETNS_TRACE_KERNEL");
    let bin = |name: &str| {
        payload
            .bins
            .iter()
            .find(|b| b.file_name().is_some_and(|n| n == name))
    };
    if let Some(main) = bin(&payload.main_bin) {
        cmd.env("NETNS_TRACE_BIN", main);
    }
    if let Some(testbed) = bin(TESTBED_BIN) {
        cmd.env(TESTBED_ENV, testbed);
    }
    let log_path = logs.join("host.log");
    let watch = Watch {
        timeout: args.timeout,
        kernel_fatal: false,
        boot_deadline: None,
    };
    let outcome = stream(&mut cmd, "host", &log_path, watch)?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let verdict = if outcome.timed_out {
        GuestVerdict::Fail(format!("timed out after {}s", args.timeout.as_secs()))
    } else if outcome.exit.is_some_and(|s| s.success()) {
        GuestVerdict::Pass
    } else {
        GuestVerdict::Fail(format!(
            "cargo test failed ({})",
            outcome.exit.map(|s| s.to_string()).unwrap_or_default()
        ))
    };
    Ok((
        verdict,
        format!(
            "{} (tracepoint mode), log {}",
            release.trim(),
            log_path.display()
        ),
        outcome.parser.binaries,
    ))
}

/// Builds the package's binaries, the testbed and the integration-test executables (release,
/// with the `dev` feature in both builds so cargo compiles netns-trace once) and collects
/// their paths from cargo's JSON messages, wherever CARGO_TARGET_DIR puts them.
fn build_payload(root: &Path, only_tests: &[String]) -> Result<Payload> {
    let bin_args = [
        "build",
        "--release",
        "-p",
        PACKAGE,
        "--bins",
        "--features",
        DEV_FEATURE,
    ];
    println!("vm-test: cargo {}", bin_args.join(" "));
    let mut bins = executables(&bin_args, "bin")?;
    bins.push((TESTBED_BIN.to_string(), build::release_testbed()?));
    // With --test, build only those (cargo names any unknown one).
    let mut test_args = vec![
        "test",
        "--release",
        "-p",
        PACKAGE,
        "--features",
        DEV_FEATURE,
        "--no-run",
    ];
    for name in only_tests {
        test_args.extend(["--test", name.as_str()]);
    }
    println!("vm-test: cargo {}", test_args.join(" "));
    let mut tests = executables(&test_args, "test")?;
    for wanted in only_tests {
        if !tests.iter().any(|(name, _)| name == wanted) {
            let known: Vec<&str> = tests.iter().map(|(name, _)| name.as_str()).collect();
            return Err(XtaskError::NotFound(format!(
                "no test executable `{wanted}`; {PACKAGE} has {}",
                known.join(", ")
            )));
        }
    }
    if !only_tests.is_empty() {
        tests.retain(|(name, _)| only_tests.contains(name));
    }
    if bins.is_empty() || tests.is_empty() {
        return Err(XtaskError::NotFound(format!(
            "cargo built {} binaries and {} test executables for {PACKAGE}",
            bins.len(),
            tests.len()
        )));
    }
    let main_bin = if bins.iter().any(|(name, _)| name == PACKAGE) {
        PACKAGE.to_string()
    } else {
        bins[0].0.clone()
    };
    Ok(Payload {
        bins: bins.into_iter().map(|(_, path)| path).collect(),
        main_bin,
        tests,
        data_dirs: vec![root.join(PACKAGE).join("tests/data")],
    })
}

fn print_table(summaries: &[TargetSummary]) {
    println!();
    println!(
        "{:<7} {:<26} {:<7} {:>6} {:>6} {:>7} {:>8}",
        "kernel", "test binary", "result", "passed", "failed", "ignored", "filtered"
    );
    println!("{}", "-".repeat(73));
    for summary in summaries {
        for binary in &summary.binaries {
            let result = match binary.passed_overall {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "no end",
            };
            println!(
                "{:<7} {:<26} {:<7} {:>6} {:>6} {:>7} {:>8}",
                summary.target.to_string(),
                binary.name,
                result,
                binary.passed,
                binary.failed,
                binary.ignored,
                binary.filtered_out
            );
        }
        let verdict = match &summary.verdict {
            Some(GuestVerdict::Pass) => "PASS".to_string(),
            Some(GuestVerdict::Fail(reason)) => format!("FAIL: {reason}"),
            None => "SKIPPED".to_string(),
        };
        println!(
            "{:<7} => {verdict} in {:.1}s  {}",
            summary.target.to_string(),
            summary.wall.as_secs_f64(),
            summary.detail
        );
        println!("{}", "-".repeat(73));
    }
    let all_pass = summaries
        .iter()
        .all(|s| s.verdict == Some(GuestVerdict::Pass));
    println!("vm-test: {}", if all_pass { "PASS" } else { "FAIL" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_timeout("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("0").is_err());
    }

    #[test]
    fn kernel_selection_parses() {
        assert!(
            matches!(parse_selection("6.1"), Ok(Selection::Guest(spec)) if spec.suite == "bookworm")
        );
        assert!(matches!(parse_selection("all"), Ok(Selection::All)));
        assert!(matches!(parse_selection("host"), Ok(Selection::Host)));
        assert!(parse_selection("4.19").is_err());
    }
}
