//! Boots a guest kernel with its initramfs in QEMU and turns the console into a verdict.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::console::{StreamOutcome, Watch, stream};
use crate::error::Result;

const GUEST_MEMORY_MB: u32 = 2048;
const GUEST_CPUS: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// NETNS_TRACE_VM_ACCEL (`kvm` or `tcg`) when set; else KVM when /dev/kvm opens
    /// read-write, TCG (software emulation, several times slower) otherwise.
    pub fn detect() -> Accel {
        match std::env::var("NETNS_TRACE_VM_ACCEL").as_deref() {
            Ok("tcg") => return Accel::Tcg,
            Ok("kvm") => return Accel::Kvm,
            Ok(other) => {
                eprintln!(
                    "warning: NETNS_TRACE_VM_ACCEL={other:?} is neither kvm nor tcg; detecting"
                )
            }
            Err(_) => {}
        }
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

/// A guest under KVM reaches /init in seconds. One that has not by then is on a KVM that
/// cannot run stock kernels (nested setups such as kvm-pvm hang in early boot, and `-cpu host`
/// can abort on MSRs the outer hypervisor refuses).
const KVM_BOOT_DEADLINE: Duration = Duration::from_secs(60);

/// Boots, streams the console to `log_path` and stdout, and returns the parsed outcome plus
/// the accelerator that actually ran it: when KVM cannot boot the guest, it is retried under
/// TCG (the KVM attempt's console is kept next to the log as `<kernel>.kvm-attempt.log`).
pub fn run(boot: &Boot) -> Result<(StreamOutcome, GuestVerdict, Accel)> {
    let watch = |boot_deadline| Watch {
        timeout: boot.timeout,
        kernel_fatal: true,
        boot_deadline,
    };
    if boot.accel == Accel::Kvm {
        let outcome = stream(
            &mut command(boot),
            &boot.label,
            &boot.log_path,
            watch(Some(KVM_BOOT_DEADLINE)),
        )?;
        if outcome.parser.booted || outcome.timed_out {
            let verdict = judge(&outcome, boot.timeout);
            return Ok((outcome, verdict, Accel::Kvm));
        }
        let reason = if outcome.boot_stalled {
            format!("no /init after {}s", KVM_BOOT_DEADLINE.as_secs())
        } else {
            format!(
                "qemu exited: {}",
                outcome.exit.map(|s| s.to_string()).unwrap_or_default()
            )
        };
        println!(
            "[{}] KVM could not boot the guest ({reason}); retrying under TCG",
            boot.label
        );
        let kvm_log = boot.log_path.with_extension("kvm-attempt.log");
        let _ = std::fs::rename(&boot.log_path, &kvm_log);
    }
    let tcg = Boot {
        accel: Accel::Tcg,
        ..boot.clone()
    };
    let outcome = stream(&mut command(&tcg), &tcg.label, &tcg.log_path, watch(None))?;
    let verdict = judge(&outcome, boot.timeout);
    Ok((outcome, verdict, Accel::Tcg))
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
