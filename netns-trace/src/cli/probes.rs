//! `netns-trace probes`: what attaches on this kernel, and why not.
use std::io::Write;
use std::process::ExitCode;

use super::ProbeArgs;

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Loads netns-trace's probes the way `watch` and `record` would, prints \
how each attached (fentry, kprobe or tracepoint) or why it could not, then unloads them.\n\n\
Use it first on a new kernel: a probe marked unavailable means that part of the story is \
missing (for example, tracepoint-only kernels do not see devices as they are created; \
snapshots fill that in)."
)]
pub struct ProbesArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ProbesArgs) -> anyhow::Result<ExitCode> {
    let tracer = crate::probes::load(&args.probe.load_options())?;
    // writeln! rather than println!: a closed pipe is an error to return, not a panic.
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let out = serde_json::json!({
            "mode": tracer.mode(),
            "probes": tracer.statuses,
            "missing_offsets": tracer.missing_offsets.iter().map(|(member, why)| serde_json::json!({"field": member.name(), "reason": why.to_string()})).collect::<Vec<_>>(),
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        writeln!(stdout, "probe mode: {}", tracer.mode())?;
        writeln!(
            stdout,
            "{:<16} {:<12} {:<11} TARGETS / REASON",
            "PROBE", "STATUS", "MECHANISM"
        )?;
        for s in &tracer.statuses {
            let mech = s.mechanism.map(|m| m.as_str()).unwrap_or("-");
            let what = if s.is_attached() {
                s.targets.join(", ")
            } else {
                s.detail.last().cloned().unwrap_or_default()
            };
            writeln!(
                stdout,
                "{:<16} {:<12} {:<11} {}",
                s.name, s.status, mech, what
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
