//! `netns-trace watch`: live lifecycle lines and findings.
use std::io::Write;
use std::process::ExitCode;

use super::{ProbeArgs, shutdown_signal};
use crate::collector::{Collector, CollectorConfig, Notice, NoticeKind, NsState};
use crate::live::pipeline::{self, LiveOptions, LiveSink};
use crate::metrics::Metrics;
use crate::model::Event;
use crate::probes::ProbeStatus;
use crate::trace::ClockBase;

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Attaches the probes and prints each namespace's life as it happens: \
creation, members joining and leaving, pins added and removed, teardown, and findings \
(leaked namespaces, duplicate IPs, stale ARP replies) the moment the evidence is complete.\n\n\
A namespace whose members all left but which stays alive is reported as leaked after the \
grace period (--grace)."
)]
pub struct WatchArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// One JSON object per line: {"type":"notice",...}, {"type":"finding",...},
    /// {"type":"lost_events",...} (running totals per record kind, whenever records are lost)
    /// and a closing {"type":"summary",...}.
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
    /// Serve Prometheus/OpenMetrics metrics at http://ADDR/metrics (e.g. 0.0.0.0:9469):
    /// namespaces by state, each leaked namespace with its pod labels, findings, events and
    /// lost events, and the probe mode.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

struct WatchSink {
    json: bool,
    raw: bool,
    clock: ClockBase,
    findings_printed: usize,
    out: std::io::StdoutLock<'static>,
    trace: Option<super::record::TraceSink>,
    metrics: Option<Metrics>,
}

impl WatchSink {
    fn time(&self, ts: u64) -> String {
        self.clock.rfc3339(ts)
    }
}

impl LiveSink for WatchSink {
    fn started(
        &mut self,
        mode: &'static str,
        probes: &[ProbeStatus],
        start: u64,
    ) -> anyhow::Result<()> {
        if let Some(t) = self.trace.as_mut() {
            t.create(mode, probes, start)?;
        }
        if let Some(m) = self.metrics.as_mut() {
            m.started(mode, probes);
        }
        let missing: Vec<&str> = probes
            .iter()
            .filter(|p| !p.is_attached())
            .map(|p| p.name)
            .collect();
        eprintln!(
            "netns-trace: watching in {mode} mode{}; Ctrl-C to stop",
            if missing.is_empty() {
                String::new()
            } else {
                format!(" (unavailable here: {})", missing.join(", "))
            }
        );
        Ok(())
    }

    fn event(&mut self, ev: &Event) -> anyhow::Result<()> {
        if let Some(t) = self.trace.as_mut() {
            t.write(ev)?;
        }
        if let Some(m) = self.metrics.as_mut() {
            m.event(ev);
        }
        if self.raw {
            if self.json {
                writeln!(
                    self.out,
                    "{}",
                    serde_json::json!({"type": "event", "event": ev})
                )?;
            } else {
                writeln!(self.out, "{} event {:?}", self.time(ev.ts_ns), ev)?;
            }
        }
        Ok(())
    }

    fn status(
        &mut self,
        collector: &Collector,
        _s: &crate::live::pipeline::LiveStatus,
    ) -> anyhow::Result<()> {
        if let Some(m) = self.metrics.as_mut() {
            m.refresh_if_stale(collector);
        }
        Ok(())
    }

    fn notices(&mut self, collector: &Collector, notices: &[Notice]) -> anyhow::Result<()> {
        if let Some(m) = self.metrics.as_mut() {
            m.notices(collector, notices);
        }
        for n in notices {
            if self.json {
                writeln!(
                    self.out,
                    "{}",
                    serde_json::json!({"type": "notice", "time": self.time(n.ts_ns), "notice": n})
                )?;
                if n.kind == NoticeKind::EventsLost {
                    // The notice's text is for people; log pipelines get the numbers.
                    let totals = lost_totals(collector);
                    writeln!(
                        self.out,
                        "{}",
                        serde_json::json!({"type": "lost_events", "time": self.time(n.ts_ns), "total": totals.values().sum::<u64>(), "by_kind": totals})
                    )?;
                }
            } else {
                writeln!(
                    self.out,
                    "{} {:<32} {:<14} {}",
                    self.time(n.ts_ns),
                    n.netns,
                    format!("{:?}", n.kind).to_lowercase(),
                    crate::model::terminal_safe(&n.text)
                )?;
            }
        }
        let findings = collector.findings();
        for f in &findings[self.findings_printed.min(findings.len())..] {
            if self.json {
                writeln!(
                    self.out,
                    "{}",
                    serde_json::json!({"type": "finding", "finding": f})
                )?;
            } else {
                writeln!(
                    self.out,
                    "FINDING {}",
                    crate::model::terminal_safe(&f.summary)
                )?;
            }
        }
        self.findings_printed = findings.len();
        self.out.flush()?;
        Ok(())
    }
}

/// Lost records so far, by record kind name.
fn lost_totals(collector: &Collector) -> std::collections::BTreeMap<&'static str, u64> {
    collector
        .lost_events()
        .iter()
        .map(|(&k, &n)| (netns_trace_common::EventKind::name_of(k), n))
        .collect()
}

pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let opts = LiveOptions {
        load: args.probe.load_options(),
        collector: CollectorConfig {
            grace_ns: super::secs_to_ns(args.grace)?,
            keep_destroyed: args.keep_destroyed,
            notices: true,
        },
        final_snapshot: false,
    };
    let trace = args
        .record
        .as_ref()
        .map(|p| super::record::TraceSink::new(p.clone(), false))
        .transpose()?;
    let (metrics, registry) = match args.metrics_addr {
        Some(_) => {
            let (m, r) = Metrics::new();
            (Some(m), Some(r))
        }
        None => (None, None),
    };
    let mut sink = WatchSink {
        json: args.json,
        raw: args.raw,
        clock: ClockBase::now(),
        findings_printed: 0,
        out: std::io::stdout().lock(),
        trace,
        metrics,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async {
        // Bound before the probes load, so a taken port fails fast; served from this runtime
        // while the pipeline waits for events.
        if let (Some(addr), Some(registry)) = (args.metrics_addr, registry) {
            let (bound, _task) = crate::metrics::server::serve(addr, registry).await?;
            eprintln!("netns-trace: metrics at http://{bound}/metrics");
        }
        pipeline::run(&opts, &mut sink, shutdown_signal(None)).await
    })?;
    if let Some(t) = sink.trace.take() {
        t.finish(&outcome)?;
    }
    let s = pipeline::status(
        &outcome.collector,
        std::time::Duration::ZERO,
        outcome.events,
    );
    // Destroyed namespaces beyond --keep-destroyed were dropped from memory: say how many.
    let destroyed_kept = outcome
        .collector
        .namespaces()
        .filter(|n| n.state == NsState::Destroyed)
        .count() as u64;
    let destroyed_dropped: u64 = outcome.collector.stats().dropped_destroyed.values().sum();
    if args.json {
        let totals = lost_totals(&outcome.collector);
        writeln!(
            sink.out,
            "{}",
            serde_json::json!({
                "type": "summary",
                "mode": outcome.mode,
                "events": outcome.events,
                "namespaces": s.namespaces_seen,
                "alive": s.alive,
                "leaked": s.leaked,
                "findings": outcome.collector.findings().len(),
                "lost_events": {"total": s.lost, "by_kind": totals},
                "keep_destroyed": args.keep_destroyed,
                "destroyed_kept": destroyed_kept,
                "destroyed_dropped": destroyed_dropped,
            })
        )?;
        sink.out.flush()?;
    }
    eprintln!(
        "netns-trace: {} events, {} namespaces ({} alive, {} leaked, {} destroyed kept, {} older destroyed only counted: --keep-destroyed {}), {} findings, {} lost events",
        outcome.events,
        s.namespaces_seen,
        s.alive,
        s.leaked,
        destroyed_kept,
        destroyed_dropped,
        args.keep_destroyed,
        outcome.collector.findings().len(),
        s.lost
    );
    Ok(ExitCode::SUCCESS)
}
