//! `netns-trace record`: a trace file for offline analysis.
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{ProbeArgs, shutdown_signal};
use crate::collector::{Collector, CollectorConfig};
use crate::live::pipeline::{self, LiveOptions, LiveSink, LiveStatus};
use crate::model::{Event, EventBody};
use crate::probes::ProbeStatus;
use crate::trace::{LostCount, ProbeRecord, TraceEnd, TraceMeta, TraceWriter};

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Takes a snapshot of every namespace, attaches the probes and streams every \
event into FILE until Ctrl-C, SIGTERM or --duration; a final snapshot records the interfaces \
and addresses of what is still alive. Copy the file off the node and run `netns-trace report` \
on it anywhere.\n\n\
The file is written with mode 0600 and flushed every second: if the recorder is killed, \
everything up to the last second replays."
)]
pub struct RecordArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// The trace file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Overwrite FILE if it exists (a symlink is never followed).
    #[arg(long)]
    pub force: bool,
    /// No live status line; periodic log lines instead.
    #[arg(short, long)]
    pub quiet: bool,
    /// Grace period used for the live counters on the status line.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub grace: f64,
}

/// The trace-writing half of `record`, shared with `watch --record`.
pub struct TraceSink {
    path: PathBuf,
    force: bool,
    writer: Option<TraceWriter>,
    last_flush: Instant,
}

impl TraceSink {
    /// Refuses an existing output before anything loads: losing a trace to a typo is worse.
    pub fn new(path: PathBuf, force: bool) -> anyhow::Result<Self> {
        if !force && std::fs::symlink_metadata(&path).is_ok() {
            anyhow::bail!(
                "{} already exists; pass --force to overwrite it",
                path.display()
            );
        }
        Ok(Self {
            path,
            force,
            writer: None,
            last_flush: Instant::now(),
        })
    }

    pub fn create(
        &mut self,
        mode: &'static str,
        probes: &[ProbeStatus],
        start_ns: u64,
    ) -> anyhow::Result<()> {
        let records = probes
            .iter()
            .map(|p| ProbeRecord {
                name: p.name.into(),
                purpose: p.purpose.into(),
                mechanism: p
                    .mechanism
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
                target: p.targets.join(","),
                status: p.status.into(),
                detail: p.detail.join("; "),
            })
            .collect();
        let mut meta = TraceMeta::for_this_host(mode, records);
        meta.started_at_ns = start_ns;
        self.writer = Some(TraceWriter::create(&self.path, &meta, self.force)?);
        Ok(())
    }

    fn writer(&mut self) -> anyhow::Result<&mut TraceWriter> {
        self.writer
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("internal: trace written before it was created"))
    }

    /// Writes one event; flushes at least once a second so a SIGKILL loses at most that, and
    /// at once after a snapshot: the baseline every later event is read against.
    pub fn write(&mut self, ev: &Event) -> anyhow::Result<()> {
        let due = self.last_flush.elapsed() >= Duration::from_secs(1)
            || matches!(ev.body, EventBody::Snapshot(_));
        let w = self.writer()?;
        w.write_event(ev)?;
        if due {
            w.flush()?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<u64> {
        let w = self.writer()?;
        w.flush()?;
        let bytes = w.bytes_written();
        self.last_flush = Instant::now();
        Ok(bytes)
    }

    /// Writes the end frame (counts, losses, clean shutdown) and syncs. Returns (events, bytes).
    pub fn finish(mut self, outcome: &pipeline::LiveOutcome) -> anyhow::Result<(u64, u64, u64)> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| anyhow::anyhow!("internal: no trace to finish"))?;
        let events = writer.events_written();
        let lost: Vec<LostCount> = outcome
            .collector
            .lost_events()
            .iter()
            .map(|(&kind, &count)| LostCount { kind, count })
            .collect();
        let lost_total = lost.iter().map(|l| l.count).sum();
        writer.finish(&TraceEnd {
            events_written: events,
            lost,
            ended_at_ns: outcome.ended_ns,
            clean_shutdown: true,
        })?;
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok((events, bytes, lost_total))
    }
}

struct RecordSink {
    trace: TraceSink,
    live_line: bool,
    last_log: Instant,
    /// "recording to …" is printed once the start snapshot is on disk: from then on, a
    /// SIGKILL leaves a trace that replays.
    announced: Option<&'static str>,
}

impl LiveSink for RecordSink {
    fn started(
        &mut self,
        mode: &'static str,
        probes: &[ProbeStatus],
        start_ns: u64,
    ) -> anyhow::Result<()> {
        self.trace.create(mode, probes, start_ns)?;
        self.announced = Some(mode);
        Ok(())
    }

    fn event(&mut self, ev: &Event) -> anyhow::Result<()> {
        self.trace.write(ev)?;
        if matches!(ev.body, EventBody::Snapshot(_))
            && let Some(mode) = self.announced.take()
        {
            eprintln!(
                "netns-trace: recording to {} in {mode} mode; Ctrl-C or SIGTERM to stop",
                self.trace.path.display()
            );
        }
        Ok(())
    }

    fn status(&mut self, _collector: &Collector, s: &LiveStatus) -> anyhow::Result<()> {
        // Also bounds what a SIGKILL can lose when events are sparse.
        let bytes = self.trace.flush()?;
        let line = format!(
            "{:>6.0}s  events {}  namespaces {} (alive {}, leaked {})  lost {}  written {}",
            s.elapsed.as_secs_f64(),
            s.events,
            s.namespaces_seen,
            s.alive,
            s.leaked,
            s.lost,
            super::human_bytes(bytes)
        );
        if self.live_line {
            let mut err = std::io::stderr().lock();
            write!(err, "\r\x1b[2K{line}")?;
            err.flush()?;
        } else if self.last_log.elapsed() >= Duration::from_secs(10) {
            self.last_log = Instant::now();
            eprintln!("netns-trace: {line}");
        }
        Ok(())
    }
}

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let duration = args
        .duration
        .map(super::secs_to_ns)
        .transpose()?
        .map(Duration::from_nanos);
    let opts = LiveOptions {
        load: args.probe.load_options(),
        collector: CollectorConfig {
            grace_ns: super::secs_to_ns(args.grace)?,
            notices: false,
            ..Default::default()
        },
        final_snapshot: true,
    };
    let mut sink = RecordSink {
        trace: TraceSink::new(args.output.clone(), args.force)?,
        live_line: !args.quiet && std::io::stderr().is_terminal(),
        last_log: Instant::now(),
        announced: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The stop signals are installed inside the runtime, before the pipeline starts.
    let outcome =
        rt.block_on(async { pipeline::run(&opts, &mut sink, shutdown_signal(duration)).await })?;
    if sink.live_line {
        eprintln!();
    }
    let (events, bytes, lost) = sink.trace.finish(&outcome)?;
    let s = pipeline::status(&outcome.collector, Duration::ZERO, outcome.events);
    eprintln!(
        "netns-trace: wrote {events} events ({}) to {}; {} namespaces, {} leaked so far, {} lost events. Analyse with: netns-trace report {}",
        super::human_bytes(bytes),
        args.output.display(),
        s.namespaces_seen,
        s.leaked,
        lost,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
