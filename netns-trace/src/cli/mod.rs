//! The command line: one module per subcommand.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Test and benchmark tooling: only in builds with the `dev` feature, never in what ships.
#[cfg(feature = "dev")]
mod dev;
mod export;
mod probes;
mod progress;
mod record;
mod record_command;
mod report;
mod scan;
mod watch;

pub use crate::probes::ModeRequest;

/// Exit status when a leak is found and --fail-on-leak was given.
pub const EXIT_LEAK: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "netns-trace",
    version,
    about = "Trace the lifecycle of Linux network namespaces and find the ones that leaked",
    long_about = "netns-trace follows every network namespace on a node: who created it, which \
processes came and went, what pins it (bind mounts, open fds), its devices and IPs, and when \
it died. It reports namespaces whose processes all died but which stay alive, naming the pin \
and the consequences (duplicate IPs, stale ARP replies).\n\n\
Quick start (as root):\n  netns-trace scan                 # what is pinned right now, no BPF needed\n  \
netns-trace watch                # live lifecycle and findings\n  \
netns-trace record -o node.trace # record around a deployment, Ctrl-C to stop\n  \
netns-trace report node.trace    # analyse it anywhere, offline\n  \
netns-trace report node.trace --netns POD  # one namespace's story",
    after_help = "Set RUST_LOG=debug for diagnostics; logs on stderr are coloured only on a terminal (NO_COLOR=1 turns that off). Exit status: 0 ok, 1 error, 3 leak found (with --fail-on-leak)."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command that loads probes.
#[derive(Debug, clap::Args, Clone)]
pub struct ProbeArgs {
    /// Probe mechanisms to use: `auto` picks fentry/fexit, then kprobes, then tracepoints per
    /// probe; `tracepoint` uses tracepoints only, as on locked-down kernels.
    #[arg(long, value_enum, default_value_t = ModeRequest::Auto)]
    pub mode: ModeRequest,
    /// Do not attach this probe (repeatable). Names as listed by `netns-trace probes`.
    #[arg(long = "disable-probe", value_name = "NAME")]
    pub disable_probe: Vec<String>,
    /// Ring buffer size in bytes (a power of two). Larger survives bigger bursts.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_parser = parse_ring_size)]
    pub ring_size: u32,
    /// (testing) One probe logs its first hit through the diagnostics path (needs -v).
    #[arg(long, hide = true)]
    pub debug_probes: bool,
}

impl ProbeArgs {
    pub fn load_options(&self) -> crate::probes::LoadOptions {
        crate::probes::LoadOptions {
            mode: self.mode,
            disabled: self.disable_probe.clone(),
            ring_size: self.ring_size,
            debug_probes: self.debug_probes,
        }
    }
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{s} is not a number of bytes"))?;
    if !v.is_power_of_two() || v < 4096 {
        return Err(format!("{v} must be a power of two of at least 4096"));
    }
    Ok(v)
}

// `about` rather than doc comments: clap turns a one-line doc comment into the short help and
// clears the long help, which would hide the `long_about` each command's arguments declare.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(about = "List every probe and how it attached on this kernel (or why it could not)")]
    Probes(probes::ProbesArgs),
    #[command(about = "Trace live: lifecycle lines and findings as they happen, until Ctrl-C")]
    Watch(watch::WatchArgs),
    #[command(about = "Record a trace file around a deployment, for offline `report`")]
    Record(record::RecordArgs),
    #[command(
        about = "Analyse a recorded trace: namespaces, states and findings (no BPF, no root)"
    )]
    Report(report::ReportArgs),
    #[command(
        about = "What is pinned right now: memberless namespaces, their pins, duplicate IPs, stale CNI cache entries (no BPF)"
    )]
    Scan(scan::ScanArgs),
    #[command(about = "Turn a trace into a Perfetto timeline or JSON lines")]
    Export(export::ExportArgs),
    /// Development and benchmark tools (synthetic traces, collector-only replay).
    #[cfg(feature = "dev")]
    #[command(hide = true)]
    Dev(dev::DevArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Probes(a) => probes::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Record(a) => record::run(a),
        Command::Report(a) => report::run(a),
        Command::Scan(a) => scan::run(a),
        Command::Export(a) => export::run(a),
        #[cfg(feature = "dev")]
        Command::Dev(a) => dev::run(a),
    };
    match result {
        Ok(code) => code,
        // `netns-trace report … | head`: the reader left; stop quietly, as SIGPIPE would.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("netns-trace: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status when stdout's reader went away (128 + SIGPIPE, what a shell shows for
/// tools killed by SIGPIPE).
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// True when the error comes from writing to a pipe whose reader has gone (EPIPE).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    let json_epipe = |e: &(dyn std::error::Error + 'static)| {
        e.downcast_ref::<serde_json::Error>()
            .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    };
    e.chain().any(|c| {
        json_epipe(c)
            || c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                // io::Error::other(serde_json::Error) hides the JSON error from source().
                io.kind() == BrokenPipe || io.get_ref().is_some_and(|inner| json_epipe(inner))
            })
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,netlink_packet_route=error",
        1 => "info,netlink_packet_route=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: logs piped to a file or journald stay plain text. NO_COLOR
    // (no-color.org) turns it off on a terminal too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

/// Completes on Ctrl-C, SIGTERM, or after `limit`. The handlers are installed by this call,
/// not at the first poll: the pipeline first polls it once the probes are attached and the
/// start snapshot is fed, and a signal before that would kill the process (no end frame, no
/// summary). Call it inside the runtime, before the pipeline starts.
pub fn shutdown_signal(limit: Option<std::time::Duration>) -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let wait = |kind: SignalKind, name: &'static str| {
        let installed = signal(kind);
        async move {
            match installed {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!("cannot watch for {name}: {e}");
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let interrupt = wait(SignalKind::interrupt(), "SIGINT");
    let terminate = wait(SignalKind::terminate(), "SIGTERM");
    async move {
        let sleep = async {
            match limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
            _ = sleep => {}
        }
    }
}

pub fn secs_to_ns(secs: f64) -> anyhow::Result<u64> {
    if !secs.is_finite() || secs < 0.0 {
        anyhow::bail!("{secs} is not a valid number of seconds");
    }
    Ok((secs * 1e9) as u64)
}

pub fn human_bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}
