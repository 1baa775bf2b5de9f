//! `netns-trace record`: a trace file for offline analysis.
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{ProbeArgs, record_command};
use crate::collector::{Collector, CollectorConfig};
use crate::live::pipeline::{self, LiveOptions, LiveSink, LiveStatus};
use crate::model::{Event, EventBody};
use crate::probes::ProbeStatus;
use crate::trace::{LostCount, ProbeRecord, TraceEnd, TraceMeta, TraceWriter};

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Takes a snapshot of every namespace, attaches the probes and streams every \
event into FILE until Ctrl-C, SIGTERM, --duration or --until-idle; a final snapshot records \
the interfaces and addresses of what is still alive. Copy the file off the node and run \
`netns-trace report` on it anywhere.\n\n\
With `-- CMD [ARGS...]` it records around a command, the way `perf record -- CMD` does: \
CMD starts once the probes are attached, the recording stops --grace seconds after CMD \
exits (so the teardowns it set off are caught), and CMD's exit status is netns-trace's. \
Ctrl-C reaches CMD as it would without netns-trace and the recording waits for CMD to exit; \
SIGTERM is passed on to CMD; a second one of either stops at once.\n\n\
  netns-trace record -o deploy.nstrace --grace 60 -- kubectl rollout restart deploy/web\n\n\
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
    /// Grace period used for the live counters on the status line, and how long recording
    /// goes on after CMD exits.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub grace: f64,
    /// Stop once this many seconds pass without a namespace being created, destroyed,
    /// pinned or unpinned.
    #[arg(long, value_name = "SECS")]
    pub until_idle: Option<f64>,
    /// A command to record around (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
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
    /// `-- CMD`, started once the start snapshot is on disk.
    command: Option<record_command::PendingCommand>,
    /// `--until-idle`: when the last namespace event came.
    idle: Option<(record_command::IdleClock, Instant)>,
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
            // --until-idle counts from here: loading the probes and the start snapshot (seconds
            // on a busy node) are not time without a namespace event.
            if let Some((clock, started)) = &self.idle {
                clock.touch(started.elapsed());
            }
            if let Some(cmd) = self.command.take() {
                cmd.start()?;
            }
        }
        if let Some((clock, started)) = &self.idle
            && record_command::is_namespace_event(ev)
        {
            clock.touch(started.elapsed());
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
    let started = Instant::now();
    let (command, watch) = match args.command.is_empty() {
        true => (None, None),
        false => {
            let (pending, watch) = record_command::prepare(args.command.clone());
            (Some(pending), Some(watch))
        }
    };
    let idle = args
        .until_idle
        .map(super::secs_to_ns)
        .transpose()?
        .map(|ns| {
            (
                record_command::IdleClock::default(),
                Duration::from_nanos(ns),
            )
        });
    let mut sink = RecordSink {
        trace: TraceSink::new(args.output.clone(), args.force)?,
        live_line: !args.quiet && std::io::stderr().is_terminal(),
        last_log: Instant::now(),
        announced: None,
        command,
        idle: idle.as_ref().map(|(clock, _)| (clock.clone(), started)),
    };
    let rule = record_command::StopRule {
        command: watch.map(|w| (w, Duration::from_nanos(opts.collector.grace_ns))),
        until_idle: idle,
        duration,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut command_status = None;
    // The stop signals are installed inside the runtime, before the pipeline starts.
    let outcome = rt.block_on(async {
        let stop = record_command::stop(rule, started);
        pipeline::run(&opts, &mut sink, async {
            command_status = stop.await;
        })
        .await
    })?;
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
    Ok(match command_status {
        Some(status) => ExitCode::from(record_command::exit_code(&status)),
        None => ExitCode::SUCCESS,
    })
}
