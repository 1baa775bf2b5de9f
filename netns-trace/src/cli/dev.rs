//! `netns-trace dev …` (hidden): tools for benchmarks and development, not for users.
//!
//! - `dev synth` writes a deterministic synthetic trace in the real trace format, from the
//!   collector's synthetic stream (pod-like namespaces: creation, bind-mount pin, members
//!   joining and leaving, devices, addresses, ARP, teardown, free).
//! - `dev replay` replays a trace through the collector alone (no report), and prints the
//!   replay rate and the collector's size as one JSON line. `cargo xtask bench` uses both.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::collector::CollectorConfig;
use crate::collector::synthetic::{self, SyntheticConfig};
use crate::trace::{TraceEnd, TraceMeta, TraceWriter};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    #[command(subcommand)]
    pub command: DevCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DevCommand {
    /// Write a synthetic trace of about EVENTS events over NAMESPACES namespaces.
    Synth(SynthArgs),
    /// Replay a trace through the collector only; print events/s and what it tracks as JSON.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// The trace file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Events wanted, approximately: threads per process and ARP packets per namespace are
    /// scaled to reach it. The exact count is printed.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 10_000)]
    pub namespaces: usize,
    /// Namespaces alive at the same time, roughly.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Every k-th namespace leaks (its bind mount is never removed); 0: none.
    #[arg(long, default_value_t = 1000)]
    pub leak_every: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The trace file.
    pub file: PathBuf,
    /// Destroyed namespaces the collector keeps (the report's default).
    #[arg(long)]
    pub keep_destroyed: Option<usize>,
}

pub fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DevCommand::Synth(a) => synth(a),
        DevCommand::Replay(a) => replay(a),
    }
}

/// Events per namespace a config produces, measured on a sample of it.
fn events_per_namespace(cfg: &SyntheticConfig) -> f64 {
    let sample = SyntheticConfig {
        namespaces: cfg.namespaces.clamp(1, 2_000),
        ..cfg.clone()
    };
    // Minus the one start snapshot.
    let n = synthetic::generate(sample.clone())
        .count()
        .saturating_sub(1);
    n as f64 / sample.namespaces as f64
}

/// Shapes the default pod mix to about `events / namespaces` events per namespace: half of
/// what is missing goes to extra threads (a fork and an exit each), the rest to ARP.
fn shape(args: &SynthArgs) -> SyntheticConfig {
    let mut cfg = SyntheticConfig {
        namespaces: args.namespaces,
        seed: args.seed,
        concurrency: args.concurrency.max(1),
        leak_every: args.leak_every,
        arp_per_ns: 0,
        ..Default::default()
    };
    let wanted = args.events as f64 / args.namespaces.max(1) as f64;
    let base = events_per_namespace(&cfg);
    if wanted > base {
        // Each extra unit of max_threads adds about max_processes/2 threads on average.
        let per_thread_unit = cfg.max_processes as f64 / 2.0 * 2.0 / 2.0;
        let extra_units = ((wanted - base) / 2.0 / per_thread_unit.max(0.5)).floor();
        cfg.max_threads += extra_units.min(1_000.0) as u32;
        let with_threads = events_per_namespace(&cfg);
        cfg.arp_per_ns = (wanted - with_threads).max(0.0).round().min(100_000.0) as u32;
    }
    cfg
}

fn synth(args: SynthArgs) -> anyhow::Result<ExitCode> {
    if args.namespaces == 0 {
        anyhow::bail!("--namespaces must be at least 1");
    }
    let cfg = shape(&args);
    let mut meta = TraceMeta::for_this_host("synthetic", Vec::new());
    meta.started_at_ns = cfg.start_ns;
    meta.notes.push(format!(
        "synthetic: seed {} namespaces {} concurrency {} max_processes {} max_threads {} arp_per_ns {} leak_every {}",
        cfg.seed, cfg.namespaces, cfg.concurrency, cfg.max_processes, cfg.max_threads, cfg.arp_per_ns, cfg.leak_every
    ));
    let started = Instant::now();
    let mut writer = TraceWriter::create(&args.output, &meta, args.force)?;
    let mut events = 0u64;
    let mut last_ts = cfg.start_ns;
    for ev in synthetic::generate(cfg.clone()) {
        last_ts = last_ts.max(ev.ts_ns);
        writer.write_event(&ev)?;
        events += 1;
    }
    writer.finish(&TraceEnd {
        ended_at_ns: last_ts + 1,
        clean_shutdown: true,
        ..Default::default()
    })?;
    let bytes = std::fs::metadata(&args.output)?.len();
    let line = serde_json::json!({
        "events": events,
        "namespaces": cfg.namespaces,
        "bytes": bytes,
        "bytes_per_event": bytes as f64 / events.max(1) as f64,
        "max_threads": cfg.max_threads,
        "arp_per_ns": cfg.arp_per_ns,
        "secs": started.elapsed().as_secs_f64(),
    });
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(ExitCode::SUCCESS)
}

/// Peak resident set of this process (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmHWM:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// User plus system CPU time of this process: on a shared machine, the rate per CPU second
/// is steadier than per wall second.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills one rusage through a valid pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (mut reader, mut progress) =
        super::progress::open(&args.file, super::progress::ProgressMode::Never)?;
    let mut cfg = CollectorConfig {
        notices: false,
        ..Default::default()
    };
    if let Some(k) = args.keep_destroyed {
        cfg.keep_destroyed = k;
    }
    let started = Instant::now();
    let cpu_before = cpu_secs();
    let (collector, _end) = super::report::replay(&mut reader, cfg, &mut progress);
    let cpu = cpu_secs() - cpu_before;
    let secs = started.elapsed().as_secs_f64();
    let events = reader.events_read();
    let tracked = collector.namespaces().count();
    // What the recorder counted at shutdown, or what the collector saw reported in-stream.
    let lost_at_end: u64 = reader
        .end()
        .map(|e| e.lost.iter().map(|l| l.count).sum())
        .unwrap_or(0);
    let lost_seen: u64 = collector.lost_events().values().sum();
    let line = serde_json::json!({
        "events": events,
        "secs": secs,
        "events_per_sec": events as f64 / secs.max(1e-9),
        "cpu_secs": cpu,
        "events_per_cpu_sec": events as f64 / cpu.max(1e-9),
        "namespaces_tracked": tracked,
        "findings": collector.findings().len(),
        "lost_events": lost_at_end.max(lost_seen),
        "peak_rss_kib": peak_rss_kib(),
        "intact": reader.damage().is_intact(),
    });
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(ExitCode::SUCCESS)
}
