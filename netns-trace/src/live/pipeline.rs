//! The live loop shared by `watch` and `record`:
//! start snapshot → probes attach → kernel events + enricher observations → collector,
//! until stopped → drain, final observations → collector.finish.
//!
//! Every event the collector sees also goes to the sink (the trace writer for `record`),
//! in the same order, so replaying the trace reproduces the live analysis exactly.
use std::future::Future;
use std::time::{Duration, Instant};

use crate::collector::{Collector, CollectorConfig, Notice};
use crate::live::enrich::Enricher;
use crate::live::source::LiveSource;
use crate::model::{Event, EventBody, SnapshotPhase};
use crate::probes::{LoadOptions, ProbeStatus, Tracer, diag::ProbeLogs};
use crate::snapshot::{self, ProcObserver};
use crate::trace::monotonic_now_ns as monotonic_ns;

/// How often the ring is read when the probes have not woken the reader: the most a record
/// waits before the collector sees it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Where live output goes.
pub trait LiveSink {
    /// Called with the probe table once probes are attached, before any event.
    fn started(
        &mut self,
        _mode: &'static str,
        _probes: &[ProbeStatus],
        _start_ns: u64,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// Every event, kernel or observed, in processing order.
    fn event(&mut self, ev: &Event) -> anyhow::Result<()>;
    /// Lifecycle lines and findings the collector produced.
    fn notices(&mut self, _collector: &Collector, _notices: &[Notice]) -> anyhow::Result<()> {
        Ok(())
    }
    /// About once a second, with the collector as it stands.
    fn status(&mut self, _collector: &Collector, _s: &LiveStatus) -> anyhow::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub load: LoadOptions,
    pub collector: CollectorConfig,
    /// Take a final snapshot (interfaces and addresses of what is still alive) at the end.
    pub final_snapshot: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LiveStatus {
    pub elapsed: Duration,
    pub events: u64,
    pub namespaces_seen: u64,
    pub alive: u64,
    pub leaked: u64,
    pub lost: u64,
}

pub struct LiveOutcome {
    pub collector: Collector,
    pub mode: &'static str,
    pub probes: Vec<ProbeStatus>,
    pub started_ns: u64,
    pub ended_ns: u64,
    pub events: u64,
    pub malformed: u64,
}

struct Loop<'a, S: LiveSink> {
    collector: Collector,
    enricher: Enricher<ProcObserver>,
    sink: &'a mut S,
    events: u64,
}

impl<S: LiveSink> Loop<'_, S> {
    /// One event through sink and collector, then whatever the enricher learns from it.
    fn feed(&mut self, ev: Event) -> anyhow::Result<()> {
        let mut queue = vec![ev];
        while let Some(ev) = queue.pop() {
            // What the enricher had to look at before this moment goes in first.
            let due = self.enricher.settle(ev.ts_ns);
            if !due.is_empty() {
                queue.push(ev);
                queue.extend(due.into_iter().rev());
                continue;
            }
            self.sink.event(&ev)?;
            self.events += 1;
            let notices = self.collector.handle(&ev).to_vec();
            if !notices.is_empty() {
                self.sink.notices(&self.collector, &notices)?;
            }
            let mut derived = self.enricher.on_event(&ev);
            derived.reverse(); // keep their order when popped
            queue.extend(derived);
        }
        Ok(())
    }

    fn tick(&mut self, now: u64) -> anyhow::Result<()> {
        for ev in self.enricher.tick(now) {
            self.feed(ev)?;
        }
        let notices = self.collector.tick(now);
        if !notices.is_empty() {
            self.sink.notices(&self.collector, &notices)?;
        }
        Ok(())
    }
}

/// Runs until `stop` completes. Probes are attached after the start snapshot is taken.
pub async fn run<S: LiveSink>(
    opts: &LiveOptions,
    sink: &mut S,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<LiveOutcome> {
    crate::probes::loader::check_privileges()?;
    let snap_ns = monotonic_ns();
    let start = snapshot::take(SnapshotPhase::Start)?;
    let mut tracer: Tracer = crate::probes::load(&opts.load)?;
    let mut source = LiveSource::new(&mut tracer)?;
    let mut probe_logs = ProbeLogs::new(tracer.logger.take());
    let mode = tracer.mode();
    sink.started(mode, &tracer.statuses, snap_ns)?;

    let mut enricher = Enricher::new(ProcObserver);
    enricher.seed(&start);
    let mut lp = Loop {
        collector: Collector::new(opts.collector.clone()),
        enricher,
        sink,
        events: 0,
    };
    lp.feed(Event::observed(
        snap_ns,
        EventBody::Snapshot(Box::new(start)),
    ))?;

    let t0 = Instant::now();
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_status = Instant::now();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            // Woken by the kernel only once a batch is waiting (see emit.rs): below that,
            // records are picked up here.
            _ = poll.tick() => source.drain(&mut batch),
            r = source.next_batch(&mut batch) => r?,
            _ = probe_logs.pump() => continue,
            _ = tick.tick() => {
                // Judge deadlines only up to `now`, and only after every record stamped before
                // it is in: under load (slow interface reads, an emulated CPU) the ring can lag
                // by seconds, and a teardown still in it must not let a grace period expire.
                let now = monotonic_ns();
                source.drain(&mut batch);
                batch.extend(source.counted_events(&tracer, now));
                for ev in batch.drain(..) {
                    lp.feed(ev)?;
                }
                lp.tick(now)?;
                if last_status.elapsed() >= Duration::from_secs(1) {
                    last_status = Instant::now();
                    let s = status(&lp.collector, t0.elapsed(), lp.events);
                    lp.sink.status(&lp.collector, &s)?;
                }
                continue;
            }
            _ = &mut stop => break,
        }
        for ev in batch.drain(..) {
            lp.feed(ev)?;
        }
    }

    // Stop: what is still in the ring, the last losses, then the closing observations.
    probe_logs.flush();
    source.drain(&mut batch);
    let now = monotonic_ns();
    batch.extend(source.counted_events(&tracer, now));
    for ev in batch.drain(..) {
        lp.feed(ev)?;
    }
    let now = monotonic_ns();
    for ev in lp.enricher.refresh_all(now) {
        lp.feed(ev)?;
    }
    if opts.final_snapshot {
        match snapshot::take(SnapshotPhase::Final) {
            Ok(fin) => lp.feed(Event::observed(
                monotonic_ns(),
                EventBody::Snapshot(Box::new(fin)),
            ))?,
            Err(e) => tracing::warn!("final snapshot failed: {e}"),
        }
    }
    let ended = monotonic_ns();
    let notices = lp.collector.finish(ended);
    if !notices.is_empty() {
        lp.sink.notices(&lp.collector, &notices)?;
    }
    Ok(LiveOutcome {
        collector: lp.collector,
        mode,
        probes: tracer.statuses.clone(),
        started_ns: snap_ns,
        ended_ns: ended,
        events: lp.events,
        malformed: source.malformed,
    })
}

pub fn status(c: &Collector, elapsed: Duration, events: u64) -> LiveStatus {
    use crate::collector::NsState;
    let counts = c.state_counts();
    let n = |s: NsState| counts.get(&s).copied().unwrap_or(0);
    LiveStatus {
        elapsed,
        events,
        namespaces_seen: counts.values().sum(),
        alive: n(NsState::Alive),
        leaked: n(NsState::Leaked),
        lost: c.lost_events().values().sum(),
    }
}
