//! `netns-trace report`: replay a trace through the same collector `watch` uses.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::collector::{Collector, CollectorConfig, NsState};
use crate::report::{Report, ReportContext, ReportFilters, Story};

/// A state name as the JSON spells it (alive, leaked, leak_suspect, …).
pub fn parse_state(s: &str) -> anyhow::Result<NsState> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| anyhow::anyhow!("unknown state {s:?}; one of alive, draining, persistent, leaked, leak_suspect, destroyed"))
}

/// Prints one namespace's story (`--netns ID`), or fails naming the candidates.
pub fn write_story(
    c: &Collector,
    id: &str,
    ctx: &ReportContext,
    json: bool,
    fail_on_leak: bool,
) -> anyhow::Result<ExitCode> {
    let ns = crate::report::resolve_namespace(c, id)?;
    let story = Story::build(c, ns, ctx);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        story.write_json(&mut out)?;
    } else {
        story.render_text(&mut out)?;
    }
    out.flush()?;
    if fail_on_leak && matches!(story.verdict.state, NsState::Leaked | NsState::LeakSuspect) {
        return Ok(ExitCode::from(super::EXIT_LEAK));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the report holds a leak (a leaked namespace, or a suspect from before the trace).
pub fn has_leak(r: &Report) -> bool {
    r.namespaces
        .iter()
        .any(|n| matches!(n.state, NsState::Leaked | NsState::LeakSuspect))
}
use super::progress::{Progress, ProgressArgs};
use crate::trace::TraceReader;

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Reads a trace written by `netns-trace record` (on any machine: no BPF, no \
root needed), replays it through the collector and prints a summary, a table of namespaces \
and the findings with their evidence, and a CNI GC dry run: the cached CNI attachments a \
runtime's CNI GC would call stale (a DEL of theirs returned, their netns path names nothing, \
their namespace is destroyed or leaked), with the evidence. That is advice only: netns-trace \
never runs a CNI plugin and never deletes anything.\n\n\
A damaged trace (recorder killed, disk full, corrupted copy) replays up to the damage; the \
report says how many bytes could not be read. `report` writes nothing anywhere.\n\n\
Examples:\n  \
netns-trace report deploy.nstrace                        # everything\n  \
netns-trace report deploy.nstrace --netns web-7d9f-abcde # one pod's namespace, as a story\n  \
netns-trace report deploy.nstrace --netns /run/netns/cni-1a2b… --json\n  \
netns-trace report deploy.nstrace --state leaked,leak_suspect --since 2m --until 5m\n  \
netns-trace report deploy.nstrace --pod kube-system/coredns-5d78c9869d-x2x8q \\\n      \
--since 2026-12-07T20:56:22Z\n\n\
Filters (--since, --until, --state, --pod) choose which namespaces, and so which findings, \
are listed; every verdict is still that of the whole trace.\n\n\
Reading a trace of more than a million events shows how far it has got on stderr when \
stderr is a terminal (see --progress)."
)]
pub struct ReportArgs {
    /// The trace file.
    pub file: PathBuf,
    /// The netns-trace/report/v1 JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seconds a namespace may stay memberless but alive before it counts as leaked.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub grace: f64,
    /// Exit with status 3 if a namespace leaked.
    #[arg(long)]
    pub fail_on_leak: bool,
    /// Tell one namespace's story instead of the whole report: created by whom, in which
    /// pod; members coming and going (short visits summarised); pins made and removed, by
    /// whom, in which mount namespace; devices and addresses; CNI calls; the verdict and why.
    /// ID is its id (net:[INUM]#COOKIE), inode number, cookie, a pin path (/run/netns/NAME)
    /// or its pod's name (NAME or NAMESPACE/NAME). An ID that names none or several lists
    /// the candidates. Example: `netns-trace report deploy.nstrace --netns web-7d9f-abcde`.
    #[arg(long, value_name = "ID")]
    pub netns: Option<String>,
    /// Only namespaces alive at or after this time: a duration from the trace's start
    /// (`90`, `90s`, `2m30s`) or wall clock in RFC 3339 (`2026-12-07T20:56:22Z`), which the
    /// trace's header maps to its own clock. Filters choose what is shown; verdicts are
    /// always those of the whole trace.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only namespaces created (or first seen) at or before this time; same forms as --since.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only namespaces in this state (alive, draining, persistent, leaked, leak_suspect,
    /// destroyed). Several: a comma list or the option repeated, e.g.
    /// `--state leaked,leak_suspect`.
    #[arg(long, value_name = "STATE", value_delimiter = ',')]
    pub state: Vec<String>,
    /// Only namespaces of this pod: its name, NAMESPACE/NAME, or its UID.
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,
    #[command(flatten)]
    pub progress: ProgressArgs,
}

/// A time given on the command line, as the trace's monotonic ns: a duration from the
/// trace's start (`90`, `1.5`, `90s`, `2m30s`), or wall clock in RFC 3339, mapped through the
/// clock pairing recorded in the trace's header.
pub fn trace_time(s: &str, start_ns: u64, clock: crate::trace::ClockBase) -> anyhow::Result<u64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(start_ns.saturating_add(super::secs_to_ns(secs)?));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(start_ns.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)));
    }
    let wall = humantime::parse_rfc3339_weak(s).map_err(|_| {
        anyhow::anyhow!(
            "{s:?} is neither a duration from the trace's start (90s, 2m30s) nor an RFC 3339 time (2026-12-07T20:56:22Z)"
        )
    })?;
    let wall_ns = wall
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    if clock.realtime_ns == 0 {
        anyhow::bail!(
            "this trace's header has no wall clock, so {s:?} cannot be placed in it; give a duration from its start"
        );
    }
    let mono = i128::from(clock.monotonic_ns) + i128::from(wall_ns) - i128::from(clock.realtime_ns);
    Ok(mono.clamp(0, i128::from(u64::MAX)) as u64)
}

/// Replays a whole trace into a collector. Ticks follow event time the way the live loop
/// ticks every 500 ms, so grace periods expire at the same points. `progress` hears of each
/// event and is finished (its line erased) before this returns.
pub fn replay(
    reader: &mut TraceReader,
    cfg: CollectorConfig,
    progress: &mut Progress,
) -> (Collector, u64) {
    const TICK_NS: u64 = 500_000_000;
    let mut c = Collector::new(cfg);
    let mut next_tick = 0u64;
    let mut last_ts = reader.meta().started_at_ns;
    reader.for_each_event(|ev| {
        if ev.ts_ns >= next_tick {
            if next_tick != 0 {
                c.tick(ev.ts_ns);
            }
            next_tick = ev.ts_ns + TICK_NS;
        }
        last_ts = last_ts.max(ev.ts_ns);
        c.handle(ev);
        progress.event();
    });
    progress.finish();
    let end = trace_end(reader, last_ts);
    c.finish(end);
    (c, end)
}

/// Where a replayed trace ends: the recorder's end frame, else `last_ts` (the latest event,
/// or the start when there is none).
pub fn trace_end(reader: &TraceReader, last_ts: u64) -> u64 {
    reader
        .end()
        .map(|e| e.ended_at_ns)
        .filter(|&e| e != 0)
        .unwrap_or(last_ts)
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let (mut reader, mut progress) = super::progress::open(&args.file, args.progress.progress)?;
    let cfg = CollectorConfig {
        grace_ns: super::secs_to_ns(args.grace)?,
        notices: false,
        ..Default::default()
    };
    let (collector, end) = replay(&mut reader, cfg, &mut progress);
    let meta = reader.meta().clone();
    let damage = reader.damage().clone();
    let start = meta.started_at_ns;
    let state = args
        .state
        .iter()
        .map(|s| parse_state(s))
        .collect::<anyhow::Result<Vec<_>>>()
        .map(|mut v| {
            v.sort();
            v.dedup();
            v
        })?;
    if let Some(id) = &args.netns {
        let ctx = ReportContext {
            clock: Some(meta.clock),
            ..Default::default()
        };
        return write_story(&collector, id, &ctx, args.json, args.fail_on_leak);
    }
    let filters = ReportFilters {
        netns: None,
        since_ns: args
            .since
            .as_deref()
            .map(|t| trace_time(t, start, meta.clock))
            .transpose()?,
        until_ns: args
            .until
            .as_deref()
            .map(|t| trace_time(t, start, meta.clock))
            .transpose()?,
        state,
        pod: args.pod.clone(),
    };
    let ctx = ReportContext {
        hostname: meta.hostname.clone(),
        kernel: meta.kernel_release.clone(),
        probe_mode: meta.probe_mode.clone(),
        clock: Some(meta.clock),
        filters,
        ..Default::default()
    };
    let _ = end;
    let report = Report::build(&collector, &ctx);
    // Buffered: the pretty JSON is many small writes, and stdout's line buffering would scan
    // and copy each one.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        // The trace's own health rides along: how much was unreadable, and whether the
        // recorder shut down cleanly.
        let mut doc = serde_json::to_value(&report)?;
        doc["trace"]["damage"] = serde_json::json!({
            "intact": damage.is_intact(),
            "unreadable_bytes": damage.skipped_bytes(),
            "clean_shutdown": reader.end().is_some_and(|e| e.clean_shutdown),
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        if !damage.is_intact() {
            writeln!(
                out,
                "warning: the trace is damaged: {} bytes could not be read; everything before the damage is included",
                damage.skipped_bytes()
            )?;
        }
        report.render_text(&mut out)?;
    }
    out.flush()?;
    if args.fail_on_leak && has_leak(&report) {
        return Ok(ExitCode::from(super::EXIT_LEAK));
    }
    Ok(ExitCode::SUCCESS)
}
