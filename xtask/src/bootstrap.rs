//! `cargo xtask bootstrap`: installs what a fresh Debian 12 machine (as root) lacks to build
//! and test netns-trace. Every step checks first, so running it again changes nothing.
use std::process::Command;

use crate::error::{Result, XtaskError};
use crate::util::{describe, output, output_if_ok, run};

/// bpf-linker 0.11+ needs a system LLVM 21–23, which Debian 12 lacks; 0.10 uses rustc's LLVM.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// Debian packages needed by the build, the VM tests and the benchmarks.
const REQUIRED_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "bpftrace",
    "iproute2",
    "cpio",
    "zstd",
    "xz-utils",
    "kmod",
    // `cargo xtask bench` measures the packet path with it.
    "iperf3",
    // tests/metrics.rs runs a real Prometheus server scraping `watch --metrics-addr`.
    "prometheus",
    // tests/podman.rs runs containers as a node does: podman 4.3 with runc (crun refuses a
    // hybrid cgroup host) and netavark for `--network bridge`. podman already pulls conmon;
    // netavark is only a recommendation of its network stack, so it is named here.
    "podman",
    "runc",
    "netavark",
    // tests/cni_plugins.rs runs the CNI reference plugins (bridge, host-local, loopback) from
    // /usr/lib/cni, on the host and, copied into the initramfs, in the guests.
    "containernetworking-plugins",
];

/// Installed only where the archive has it (Debian 12 ships it; some derivatives do not).
const OPTIONAL_PACKAGES: &[&str] = &["bpftool"];

const TRACEFS_MOUNT_POINT: &str = "/sys/kernel/tracing";

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// Only report what is missing; install nothing.
    #[arg(long)]
    pub check: bool,
}

fn step(name: &str, state: &str) {
    println!("bootstrap: {name:<34} {state}");
}

pub fn run_bootstrap(args: &BootstrapArgs) -> Result<()> {
    nightly_toolchain(args.check)?;
    rust_src(args.check)?;
    bpf_linker(args.check)?;
    debian_packages(args.check)?;
    cargo_fuzz(args.check)?;
    python_packages(args.check)?;
    tracefs(args.check)?;
    println!("bootstrap: done");
    Ok(())
}

fn rustup() -> Command {
    let mut cmd = Command::new("rustup");
    // `cargo xtask` runs under the pinned stable toolchain; do not let that leak into rustup.
    cmd.env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

fn nightly_toolchain(check: bool) -> Result<()> {
    let list = output(rustup().args(["toolchain", "list"]))?;
    if list
        .lines()
        .any(|l| l.starts_with("nightly-") || l.starts_with("nightly "))
    {
        step("rust nightly toolchain", "already present");
        return Ok(());
    }
    if check {
        step("rust nightly toolchain", "MISSING");
        return Ok(());
    }
    step("rust nightly toolchain", "installing");
    run(rustup().args(["toolchain", "install", "nightly", "--profile", "minimal"]))
}

fn rust_src(check: bool) -> Result<()> {
    let installed =
        output_if_ok(rustup().args(["component", "list", "--toolchain", "nightly", "--installed"]))
            .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        step("rust-src (nightly)", "already present");
        return Ok(());
    }
    if check {
        step("rust-src (nightly)", "MISSING");
        return Ok(());
    }
    step("rust-src (nightly)", "installing");
    run(rustup().args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker(check: bool) -> Result<()> {
    let name = format!("bpf-linker {BPF_LINKER_VERSION}");
    let version = output_if_ok(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION) {
        step(&name, "already present");
        return Ok(());
    }
    if check {
        step(
            &name,
            if version.is_empty() {
                "MISSING"
            } else {
                "WRONG VERSION"
            },
        );
        return Ok(());
    }
    step(&name, "installing (about 70 s)");
    let mut cmd = Command::new("cargo");
    cmd.env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "+nightly",
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
        ]);
    run(&mut cmd)
}

/// cargo-fuzz drives the bounded fuzz runs of `cargo xtask test`.
fn cargo_fuzz(check: bool) -> Result<()> {
    let name = "cargo-fuzz";
    if output_if_ok(
        Command::new("cargo")
            .env_remove("RUSTUP_TOOLCHAIN")
            .args(["fuzz", "--version"]),
    )
    .is_some()
    {
        step(name, "already present");
        return Ok(());
    }
    if check {
        step(name, "MISSING");
        return Ok(());
    }
    step(name, "installing (about 2 min)");
    run(Command::new("cargo")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .args(["install", "cargo-fuzz", "--locked"]))
}

/// The Perfetto export is checked against Perfetto's own protobuf schema (tests/export_perfetto.py);
/// deploy/kubernetes is validated against the Kubernetes schemas (tests/kubernetes_manifest.rs).
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("perfetto", "0.59.1"),
    ("protobuf", "7.36.2"),
    ("kubernetes-validate", "1.37.0"),
];

fn python_packages(check: bool) -> Result<()> {
    for (pkg, version) in PYTHON_PACKAGES {
        let name = format!("python: {pkg}=={version}");
        let shown = output_if_ok(Command::new("python3").args(["-m", "pip", "show", pkg]))
            .unwrap_or_default();
        if shown
            .lines()
            .any(|l| l.trim() == format!("Version: {version}"))
        {
            step(&name, "already present");
            continue;
        }
        if check {
            step(&name, "MISSING");
            continue;
        }
        step(&name, "installing");
        run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            &format!("{pkg}=={version}"),
        ]))?;
    }
    Ok(())
}

fn package_installed(package: &str) -> bool {
    output_if_ok(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.contains("install ok installed"))
}

/// Whether the configured archive offers the package (`Candidate:` other than `(none)`).
fn package_available(package: &str) -> bool {
    output_if_ok(Command::new("apt-cache").args(["policy", package])).is_some_and(|policy| {
        policy
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .is_some_and(|candidate| candidate.trim() != "(none)")
    })
}

fn debian_packages(check: bool) -> Result<()> {
    let mut missing = Vec::new();
    for package in REQUIRED_PACKAGES.iter().chain(OPTIONAL_PACKAGES) {
        if package_installed(package) {
            step(&format!("apt: {package}"), "already present");
        } else {
            missing.push(*package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if check {
        for package in &missing {
            step(&format!("apt: {package}"), "MISSING");
        }
        return Ok(());
    }
    step("apt-get update", "running (packages missing)");
    run(Command::new("apt-get").args(["update", "-q"]))?;
    let mut to_install = Vec::new();
    for package in missing {
        if OPTIONAL_PACKAGES.contains(&package) && !package_available(package) {
            step(&format!("apt: {package}"), "not in the archive, skipped");
            continue;
        }
        step(&format!("apt: {package}"), "installing");
        to_install.push(package);
    }
    if to_install.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&to_install);
    run(&mut cmd)
}

fn tracefs_mounted() -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(XtaskError::io("/proc/self/mounts"))?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let _source = fields.next();
        fields.next() == Some(TRACEFS_MOUNT_POINT) && fields.next() == Some("tracefs")
    }))
}

fn tracefs(check: bool) -> Result<()> {
    let name = format!("tracefs at {TRACEFS_MOUNT_POINT}");
    if tracefs_mounted()? {
        step(&name, "already present");
        return Ok(());
    }
    if check {
        step(&name, "NOT MOUNTED");
        return Ok(());
    }
    step(&name, "mounting");
    let mut cmd = Command::new("mount");
    cmd.args(["-t", "tracefs", "nodev", TRACEFS_MOUNT_POINT]);
    run(&mut cmd).map_err(|e| XtaskError::NotFound(format!("{}: {e}", describe(&cmd))))
}
