//! Prometheus/OpenMetrics metrics for `watch --metrics-addr`.
//!
//! Everything is read from the collector the live pipeline already maintains, through the
//! same [`LiveSink`](crate::live::pipeline::LiveSink) hooks `watch` prints from: event counts
//! from `event`, namespace states, leaked namespaces, findings and losses from `notices`
//! (which hands over the collector whenever something about a namespace changed). No state is
//! kept here besides the exported series and the high-water marks of append-only collector
//! lists.
//!
//! Cardinality is bounded: only namespaces in the `leaked` state get a series of their own
//! (with pod labels); every other metric is labelled by a closed set (state, finding kind,
//! event type, record kind, probe name).
//!
//! Series (all prefixed `netns_trace_`):
//! - `namespaces{state}` gauge: tracked namespaces per state (dropped destroyed ones count
//!   as destroyed, as in the report).
//! - `leaked_namespace{netns,inum,pin,pod_uid,pod_namespace,pod_name,container_id,runtime,
//!   sandbox_id}` gauge, 1 while the namespace is leaked; the series disappears when it is
//!   destroyed.
//! - `findings_total{kind}` counter.
//! - `events_total{type}` counter: every event the collector saw, kernel or observed.
//! - `lost_events_total{kind}` counter: ring-buffer records dropped, per record kind.
//! - `probe_mode_info{mode,version}` and `probe_info{probe,status,mechanism}` gauges, 1.
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashSet;

use crate::collector::{Collector, Namespace, Notice, NoticeKind, NsState, PinKind};
use crate::model::{Event, EventBody};
use crate::probes::ProbeStatus;

/// The finding kinds the collector raises (`Finding::kind`), pre-created at 0 so that
/// `increase()` and alerts work from the first scrape.
const FINDING_KINDS: [&str; 3] = ["leaked_netns", "duplicate_ip", "stale_arp_reply"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe: &'static str,
    status: &'static str,
    mechanism: &'static str,
}

/// One leaked namespace, with who owned it (see [`crate::attribution::Owner`]). Unknown
/// values are empty strings, which Prometheus treats as an absent label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeakedLabels {
    /// `net:[INUM]#COOKIE`, as in reports and findings.
    pub netns: String,
    pub inum: String,
    /// The first bind-mount pin path, e.g. /run/netns/cni-…
    pub pin: String,
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub container_id: String,
    /// containerd, crio, docker or podman.
    pub runtime: String,
    /// The sandbox a pin path names (containerd's cni-<uuid>, CRI-O's <uuid>).
    pub sandbox_id: String,
}

impl LeakedLabels {
    fn of(ns: &Namespace) -> Self {
        let pin = ns
            .pins
            .iter()
            .filter(|p| p.kind == PinKind::BindMount)
            .find_map(|p| p.path.clone())
            .unwrap_or_default();
        let o = &ns.owner;
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            netns: ns.id(),
            inum: ns.inum.to_string(),
            pin,
            pod_uid: text(&o.pod_uid),
            pod_namespace: text(&o.pod_namespace),
            pod_name: text(&o.pod_name),
            container_id: text(&o.container_id),
            runtime: text(&o.runtime),
            sandbox_id: text(&o.sandbox_id),
        }
    }
}

/// The exported series, updated from the live pipeline's hooks.
pub struct Metrics {
    namespaces: Family<StateLabels, Gauge>,
    leaked: Family<LeakedLabels, Gauge>,
    findings: Family<KindLabels, Counter>,
    events: Family<TypeLabels, Counter>,
    lost: Family<KindLabels, Counter>,
    mode: Family<ModeLabels, Gauge>,
    probes: Family<ProbeLabels, Gauge>,
    /// Leaked series currently exported, to remove the ones that stop being leaked.
    leaked_now: FxHashSet<LeakedLabels>,
    /// Findings already counted (the collector's list only grows).
    findings_counted: usize,
    /// Lost records already counted, per kind (the collector's totals only grow).
    lost_counted: BTreeMap<u16, u64>,
    /// Notices came that the series do not reflect yet.
    stale: bool,
    refreshed_at: Option<std::time::Instant>,
}

/// The most often the collector-derived series are recomputed while notices pour in.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Metrics {
    /// The metrics and the registry that encodes them (hand that to [`server::serve`]).
    pub fn new() -> (Self, Arc<Registry>) {
        let mut registry = Registry::with_prefix("netns_trace");
        let m = Self {
            namespaces: Family::default(),
            leaked: Family::default(),
            findings: Family::default(),
            events: Family::default(),
            lost: Family::default(),
            mode: Family::default(),
            probes: Family::default(),
            leaked_now: FxHashSet::default(),
            findings_counted: 0,
            lost_counted: BTreeMap::new(),
            stale: false,
            refreshed_at: None,
        };
        registry.register(
            "namespaces",
            "Network namespaces tracked, by state",
            m.namespaces.clone(),
        );
        registry.register(
            "leaked_namespace",
            "1 for each namespace in the leaked state: had members, all gone past the grace period, still alive",
            m.leaked.clone(),
        );
        registry.register("findings", "Findings raised, by kind", m.findings.clone());
        registry.register(
            "events",
            "Events processed (kernel records and userspace observations), by type",
            m.events.clone(),
        );
        registry.register(
            "lost_events",
            "Kernel records dropped because the ring buffer was full, by record kind",
            m.lost.clone(),
        );
        registry.register(
            "probe_mode_info",
            "The probe mode this run attached in",
            m.mode.clone(),
        );
        registry.register(
            "probe_info",
            "How each probe attached on this kernel",
            m.probes.clone(),
        );
        for state in NsState::ALL {
            m.namespaces
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(0);
        }
        for kind in FINDING_KINDS {
            m.findings.get_or_create(&KindLabels { kind }).inc_by(0);
        }
        for kind in netns_trace_common::EventKind::ALL {
            if kind.from_kernel() {
                m.lost
                    .get_or_create(&KindLabels { kind: kind.name() })
                    .inc_by(0);
            }
        }
        (m, Arc::new(registry))
    }

    /// The probe table, once probes are attached.
    pub fn started(&mut self, mode: &'static str, probes: &[ProbeStatus]) {
        self.mode.clear();
        self.mode
            .get_or_create(&ModeLabels {
                mode,
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        self.probes.clear();
        for p in probes {
            let mechanism = p.mechanism.map(|m| m.as_str()).unwrap_or("none");
            self.probes
                .get_or_create(&ProbeLabels {
                    probe: p.name,
                    status: p.status,
                    mechanism,
                })
                .set(1);
        }
    }

    /// Every event the collector sees.
    pub fn event(&mut self, ev: &Event) {
        self.events
            .get_or_create(&TypeLabels {
                r#type: event_type(&ev.body),
            })
            .inc();
    }

    /// Lifecycle notices the collector produced, with the collector itself.
    pub fn notices(&mut self, collector: &Collector, notices: &[Notice]) {
        // Only these can change a namespace's state, the set of tracked namespaces, the leaked
        // set's labels, the findings or the losses; membership and pin notices are followed by
        // a StateChanged when they matter.
        let relevant = notices.iter().any(|n| {
            matches!(
                n.kind,
                NoticeKind::Created
                    | NoticeKind::Seen
                    | NoticeKind::StateChanged
                    | NoticeKind::Finding
                    | NoticeKind::EventsLost
                    | NoticeKind::PinAdded
                    | NoticeKind::PinRemoved
            )
        });
        if relevant {
            self.stale = true;
            // Each refresh walks every tracked namespace: at most a few per second under churn.
            if self
                .refreshed_at
                .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
            {
                self.refresh(collector);
            }
        }
    }

    /// The live loop's once-a-second call: what the last notices changed is brought in even
    /// when nothing happened since.
    pub fn refresh_if_stale(&mut self, collector: &Collector) {
        if self.stale {
            self.refresh(collector);
        }
    }

    /// Brings every collector-derived series up to date.
    pub fn refresh(&mut self, collector: &Collector) {
        self.stale = false;
        self.refreshed_at = Some(std::time::Instant::now());
        for (state, n) in collector.state_counts() {
            self.namespaces
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(n as i64);
        }

        let leaked: FxHashSet<LeakedLabels> = collector
            .namespaces()
            .filter(|ns| ns.state == NsState::Leaked)
            .map(LeakedLabels::of)
            .collect();
        for gone in self.leaked_now.difference(&leaked) {
            self.leaked.remove(gone);
        }
        for labels in leaked.difference(&self.leaked_now) {
            self.leaked.get_or_create(labels).set(1);
        }
        self.leaked_now = leaked;

        let findings = collector.findings();
        for f in &findings[self.findings_counted.min(findings.len())..] {
            self.findings
                .get_or_create(&KindLabels { kind: f.kind() })
                .inc();
        }
        self.findings_counted = findings.len();

        for (&kind, &total) in collector.lost_events() {
            let counted = self.lost_counted.entry(kind).or_insert(0);
            if total > *counted {
                self.lost
                    .get_or_create(&KindLabels {
                        kind: netns_trace_common::EventKind::name_of(kind),
                    })
                    .inc_by(total - *counted);
                *counted = total;
            }
        }
    }
}

/// The `type` an event has in JSON (`Event`'s serde tag).
pub fn event_type(body: &EventBody) -> &'static str {
    body.kind().name()
}

/// The registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("encode metrics into a String");
    out
}

#[cfg(test)]
mod tests;
