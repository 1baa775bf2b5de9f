//! `netns-trace watch`: live lifecycle lines and findings.
use std::io::Write;
use std::process::ExitCode;

use super::{ProbeArgs, shutdown_signal};
use crate::collector::{Collector, CollectorConfig, Notice};
use crate::live::pipeline::{self, LiveOptions, LiveSink};
use crate::model::Event;
use crate::probes::ProbeStatus;
use crate::trace::ClockBase;

#[derive(Debug, clap::Args)]
#[command(long_about = "Attaches the probes and prints each namespace's life as it happens: \
creation, members joining and leaving, pins added and removed, teardown, and findings \
(leaked namespaces, duplicate IPs, stale ARP replies) the moment the evidence is complete.\n\n\
A namespace whose members all left but which stays alive is reported as leaked after the \
grace period (--grace).")]
pub struct WatchArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// One JSON object per line: {"type":"notice",...} and {"type":"finding",...}.
    #[arg(long)]
    pub json: bool,
    /// Also print every raw event (kernel records and userspace observations).
    #[arg(long)]
    pub raw: bool,
    /// Seconds a namespace may stay memberless but alive before it counts as leaked.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub grace: f64,
    /// Destroyed namespaces kept in memory; older ones are only counted.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub keep_destroyed: usize,
    /// Also record every event to this trace file (as `record` would), so what you watched
    /// can be replayed with `report`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
}

struct WatchSink {
    json: bool,
    raw: bool,
    clock: ClockBase,
    findings_printed: usize,
    out: std::io::StdoutLock<'static>,
    trace: Option<super::record::TraceSink>,
}

impl WatchSink {
    fn time(&self, ts: u64) -> String {
        self.clock.rfc3339(ts)
    }
}

impl LiveSink for WatchSink {
    fn started(&mut self, mode: &'static str, probes: &[ProbeStatus], start: u64) -> anyhow::Result<()> {
        if let Some(t) = self.trace.as_mut() {
            t.create(mode, probes, start)?;
        }
        let missing: Vec<&str> = probes.iter().filter(|p| !p.is_attached()).map(|p| p.name).collect();
        eprintln!(
            "netns-trace: watching in {mode} mode{}; Ctrl-C to stop",
            if missing.is_empty() { String::new() } else { format!(" (unavailable here: {})", missing.join(", ")) }
        );
        Ok(())
    }

    fn event(&mut self, ev: &Event) -> anyhow::Result<()> {
        if let Some(t) = self.trace.as_mut() {
            t.write(ev)?;
        }
        if self.raw {
            if self.json {
                writeln!(self.out, "{}", serde_json::json!({"type": "event", "event": ev}))?;
            } else {
                writeln!(self.out, "{} event {:?}", self.time(ev.ts_ns), ev)?;
            }
        }
        Ok(())
    }

    fn notices(&mut self, collector: &Collector, notices: &[Notice]) -> anyhow::Result<()> {
        for n in notices {
            if self.json {
                writeln!(self.out, "{}", serde_json::json!({"type": "notice", "time": self.time(n.ts_ns), "notice": n}))?;
            } else {
                writeln!(self.out, "{} {:<32} {:<14} {}", self.time(n.ts_ns), n.netns, format!("{:?}", n.kind).to_lowercase(), n.text)?;
            }
        }
        let findings = collector.findings();
        for f in &findings[self.findings_printed.min(findings.len())..] {
            if self.json {
                writeln!(self.out, "{}", serde_json::json!({"type": "finding", "finding": f}))?;
            } else {
                writeln!(self.out, "FINDING {}", f.summary)?;
            }
        }
        self.findings_printed = findings.len();
        self.out.flush()?;
        Ok(())
    }
}

pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let opts = LiveOptions {
        load: args.probe.load_options(),
        collector: CollectorConfig { grace_ns: super::secs_to_ns(args.grace)?, keep_destroyed: args.keep_destroyed, notices: true },
        final_snapshot: false,
    };
    let trace = args.record.as_ref().map(|p| super::record::TraceSink::new(p.clone(), false)).transpose()?;
    let mut sink = WatchSink { json: args.json, raw: args.raw, clock: ClockBase::now(), findings_printed: 0, out: std::io::stdout().lock(), trace };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = rt.block_on(pipeline::run(&opts, &mut sink, shutdown_signal(None)))?;
    if let Some(t) = sink.trace.take() {
        t.finish(&outcome)?;
    }
    let s = pipeline::status(&outcome.collector, std::time::Duration::ZERO, outcome.events);
    eprintln!(
        "netns-trace: {} events, {} namespaces ({} alive, {} leaked), {} findings, {} lost events",
        outcome.events,
        s.namespaces_seen,
        s.alive,
        s.leaked,
        outcome.collector.findings().len(),
        s.lost
    );
    Ok(ExitCode::SUCCESS)
}
