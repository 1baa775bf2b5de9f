//! Boots a guest kernel with its initramfs in QEMU and turns the console into a verdict.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::console::{StreamOutcome, stream};
use crate::error::Result;

const GUEST_MEMORY_MB: u32 = 2048;
const GUEST_CPUS: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when /dev/kvm opens read-write, TCG (software emulation, several times slower)
    /// otherwise.
    pub fn detect() -> Accel {
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm");
        if kvm.is_ok() { Accel::Kvm } else { Accel::Tcg }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM (/dev/kvm opened)",
            Accel::Tcg => "TCG software emulation (/dev/kvm cannot be opened; expect slow guests)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Boot {
    /// Prefix for console lines, e.g. "6.1".
    pub label: String,
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub log_path: PathBuf,
    pub timeout: Duration,
    pub accel: Accel,
}

/// Why a guest run passed or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestVerdict {
    Pass,
    Fail(String),
}

pub fn command(boot: &Boot) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-m",
        &GUEST_MEMORY_MB.to_string(),
        "-smp",
        &GUEST_CPUS.to_string(),
    ])
    // Guests never get a network card: test traffic stays in the guest's own namespaces.
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(&boot.vmlinuz)
    .arg("-initrd")
    .arg(&boot.initrd)
    .args(["-append", "console=ttyS0 panic=-1 quiet"]);
    if boot.accel == Accel::Kvm {
        cmd.args(["-enable-kvm", "-cpu", "host"]);
    }
    cmd
}

/// Boots, streams the console to `log_path` and stdout, and returns the parsed outcome.
pub fn run(boot: &Boot) -> Result<(StreamOutcome, GuestVerdict)> {
    let outcome = stream(
        &mut command(boot),
        &boot.label,
        &boot.log_path,
        boot.timeout,
        true,
    )?;
    let verdict = judge(&outcome, boot.timeout);
    Ok((outcome, verdict))
}

fn judge(outcome: &StreamOutcome, timeout: Duration) -> GuestVerdict {
    if outcome.timed_out {
        return GuestVerdict::Fail(format!(
            "timed out after {}s; guest killed",
            timeout.as_secs()
        ));
    }
    if let Some(line) = &outcome.fatal_line {
        return GuestVerdict::Fail(format!("kernel failure: {}", line.trim()));
    }
    let parser = &outcome.parser;
    if !parser.setup_failures.is_empty() {
        return GuestVerdict::Fail(format!(
            "guest setup failed: {}",
            parser.setup_failures.join("; ")
        ));
    }
    match parser.final_result {
        None => GuestVerdict::Fail(format!(
            "guest stopped without a verdict (qemu exit: {})",
            outcome
                .exit
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into())
        )),
        Some(false) => GuestVerdict::Fail("tests failed".into()),
        Some(true) if parser.binaries.is_empty() => {
            GuestVerdict::Fail("no test executables ran".into())
        }
        Some(true) => GuestVerdict::Pass,
    }
}
