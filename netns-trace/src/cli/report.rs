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
    Ok(ExitCode::SUCCESS)
}

/// Whether the report holds a leak (a leaked namespace, or a suspect from before the trace).
pub fn has_leak(r: &Report) -> bool {
    r.namespaces
        .iter()
        .any(|n| matches!(n.state, NsState::Leaked | NsState::LeakSuspect))
}
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
report says how many bytes could not be read. `report` writes nothing anywhere."
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
    /// Only namespaces alive at or after this many seconds into the trace.
    #[arg(long, value_name = "SECS")]
    pub since: Option<f64>,
    /// Only namespaces created at or before this many seconds into the trace.
    #[arg(long, value_name = "SECS")]
    pub until: Option<f64>,
    /// Only namespaces in this state (alive, draining, persistent, leaked, leak_suspect, destroyed).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
}

/// Replays a whole trace into a collector. Ticks follow event time the way the live loop
/// ticks every 500 ms, so grace periods expire at the same points.
pub fn replay(reader: &mut TraceReader, cfg: CollectorConfig) -> (Collector, u64) {
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
    });
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
    let mut reader = TraceReader::open(&args.file)?;
    let cfg = CollectorConfig {
        grace_ns: super::secs_to_ns(args.grace)?,
        notices: false,
        ..Default::default()
    };
    let (collector, end) = replay(&mut reader, cfg);
    let meta = reader.meta().clone();
    let damage = reader.damage().clone();
    let start = meta.started_at_ns;
    let state = args.state.as_deref().map(parse_state).transpose()?;
    if let Some(id) = &args.netns {
        let ctx = ReportContext {
            clock: Some(meta.clock),
            ..Default::default()
        };
        return write_story(&collector, id, &ctx, args.json);
    }
    let filters = ReportFilters {
        netns: None,
        since_ns: args
            .since
            .map(super::secs_to_ns)
            .transpose()?
            .map(|s| start + s),
        until_ns: args
            .until
            .map(super::secs_to_ns)
            .transpose()?
            .map(|s| start + s),
        state,
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
