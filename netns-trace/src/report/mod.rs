//! The report: the collector's state as `netns-trace/report/v1` JSON or as text.
//!
//! The JSON shape is a contract, documented in docs/report-schema.md. Build with
//! [`Report::build`], write with [`Report::write_json`] or [`Report::render_text`].
mod story;
mod text;

pub use story::{STORY_SCHEMA, Story, StoryError, resolve as resolve_namespace};

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::attribution::Owner;
use crate::collector::cni_calls::CniCall;
use crate::collector::cni_gc::CniGcCandidate;
use crate::collector::{
    ArpCounters, Collector, FailedUmount, Finding, FindingDetail, InterfaceEvidence, JoinHow,
    LastMember, LeaveHow, Namespace, NsState, Origin, PinEvidence,
};
use crate::model::{Comm, CreatedBy, NsId};
use crate::snapshot::AgeEstimate;

pub const SCHEMA: &str = "netns-trace/report/v1";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Pairs CLOCK_MONOTONIC with CLOCK_REALTIME so event timestamps can be shown as wall time.
pub use crate::trace::ClockBase;

/// Which namespaces (and so which findings) the report includes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFilters {
    /// A namespace id (`net:[INUM]#COOKIE`), or just `net:[INUM]` / the bare inode number to
    /// match every life of that inode number.
    pub netns: Option<String>,
    /// Only namespaces alive at some point in `[since_ns, until_ns]` (monotonic ns).
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
    /// Only namespaces in one of these states (none: any state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<NsState>,
    /// A pod: its name, `NAMESPACE/NAME` or UID, as the namespace's owner names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl ReportFilters {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn admits(&self, ns: &Namespace, end_ns: u64) -> bool {
        if let Some(want) = &self.netns {
            let id = ns.id();
            let by_inum = want
                .trim_start_matches("net:[")
                .trim_end_matches(']')
                .parse::<u32>()
                .ok();
            if id != *want && by_inum != Some(ns.inum) {
                return false;
            }
        }
        if !self.state.is_empty() && !self.state.contains(&ns.state) {
            return false;
        }
        if let Some(pod) = &self.pod {
            let o = &ns.owner;
            let qualified = o
                .pod_namespace
                .as_ref()
                .zip(o.pod_name.as_ref())
                .map(|(n, p)| format!("{n}/{p}"));
            if o.pod_name.as_ref() != Some(pod)
                && o.pod_uid.as_ref() != Some(pod)
                && qualified.as_ref() != Some(pod)
            {
                return false;
            }
        }
        let (born, gone) = (
            ns.born_at_ns(),
            ns.destroyed_at_ns().unwrap_or(end_ns.max(ns.born_at_ns())),
        );
        if self.since_ns.is_some_and(|s| gone < s) || self.until_ns.is_some_and(|u| born > u) {
            return false;
        }
        true
    }
}

/// What the report builder needs to know besides the collector.
#[derive(Clone, Debug, Default)]
pub struct ReportContext {
    pub hostname: String,
    pub kernel: String,
    /// `full`, `tracepoint`, … as the loader named it (or as recorded in the trace).
    pub probe_mode: String,
    pub clock: Option<ClockBase>,
    pub filters: ReportFilters,
    /// Set for `scan`: the monotonic time the node was looked at. A scan has no trace, so
    /// the text shows no trace header, and namespace ages come from `ages`.
    pub scanned_at_ns: Option<u64>,
    /// Evidence-based ages by inum (`scan`: see snapshot/age.rs).
    pub ages: BTreeMap<u32, AgeEstimate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    pub kernel: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostEvents {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceInfo {
    pub started_at_ns: Option<u64>,
    pub ended_at_ns: Option<u64>,
    /// Wall-clock equivalents when a clock base was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockBase>,
    pub events: u64,
    pub grace_ns: u64,
    /// Destroyed namespaces dropped by the retention limit (not listed below), by prior state.
    pub dropped_destroyed: BTreeMap<NsState, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<ReportFilters>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatorView {
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
    /// cgroup path (from the snapshot or a resolved cgroup id), else `cgroup_id:N`, else null.
    pub cgroup: Option<String>,
    pub joined_at_ns: Option<u64>,
    pub left_at_ns: Option<u64>,
    pub joined_how: JoinHow,
    pub left_how: Option<LeaveHow>,
    /// False for the creator's own stay before it first left.
    pub counts_as_member: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamespaceView {
    pub id: String,
    pub inum: u32,
    pub cookie: u64,
    pub state: NsState,
    pub origin: Origin,
    pub created_at_ns: Option<u64>,
    pub created_by: Option<CreatorView>,
    pub creation_source: Option<CreatedBy>,
    pub parent: Option<NsId>,
    pub first_seen_ns: u64,
    pub destroyed_at_ns: Option<u64>,
    pub freed_at_ns: Option<u64>,
    pub last_member_exit_at_ns: Option<u64>,
    pub last_member: Option<LastMember>,
    pub members: Vec<MemberView>,
    pub members_dropped: u32,
    pub pins: Vec<PinEvidence>,
    pub failed_cleanups: Vec<FailedUmount>,
    /// umount calls on its pins refused (EPERM/EACCES) to processes that neither created it
    /// nor made the mount: not cleanups, only counted. Absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_umounts_ignored: u64,
    pub interfaces: Vec<InterfaceEvidence>,
    pub arp: ArpCounters,
    /// Who owns it (pod, container, sandbox, CNI network); null when nothing is known, and
    /// for the host's initial namespace. Unknown fields inside are null.
    pub owner: Option<Owner>,
    /// The CNI calls of its sandbox (every call of the sandboxes whose calls named it), oldest
    /// first; absent when none was traced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cni_calls: Vec<CniCall>,
    /// `scan` only: how old it is, estimated from evidence, with which evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<AgeEstimate>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Namespaces listed (after filters).
    pub namespaces: u64,
    pub by_state: BTreeMap<NsState, u64>,
    pub findings: BTreeMap<String, u64>,
    pub uncertain_findings: u64,
    /// Stale ARP replies past the collector's cap on such findings: counted, not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_arp_replies_unreported: u64,
    /// ARP and neighbour records counted in the kernel, not traced: namespaces whose packets
    /// outran their budget (each one's count is its `arp.records_limited`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub packet_records_limited: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub host: HostInfo,
    pub probe_mode: String,
    pub lost_events: LostEvents,
    pub trace: TraceInfo,
    pub summary: Summary,
    pub namespaces: Vec<NamespaceView>,
    pub findings: Vec<Finding>,
    /// The CNI GC dry run: cached attachments a runtime's CNI GC would call stale (advice
    /// only; netns-trace runs no plugin and deletes nothing).
    #[serde(default)]
    pub cni_gc: Vec<CniGcCandidate>,
    /// `scan` only: when the node was looked at (wall clock). Absent for a trace's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanned_at: Option<String>,
}

impl Report {
    pub fn build(c: &Collector, ctx: &ReportContext) -> Report {
        let stats = c.stats();
        let end = stats.ended_at_ns.or(stats.last_ts_ns).unwrap_or(0);
        let mut list: Vec<&Namespace> = c
            .namespaces()
            .filter(|ns| ctx.filters.admits(ns, end))
            .collect();
        list.sort_by_key(|ns| (ns.born_at_ns(), ns.inum, ns.incarnation));
        let cni_calls = c.sandbox_cni_calls_by_namespace();
        let namespaces: Vec<NamespaceView> = list
            .iter()
            .map(|ns| NamespaceView {
                age: ctx.ages.get(&ns.inum).cloned(),
                ..view(c, ns, &cni_calls)
            })
            .collect();
        let ids: std::collections::HashSet<&str> =
            namespaces.iter().map(|n| n.id.as_str()).collect();
        let findings: Vec<Finding> = c
            .findings()
            .iter()
            .filter(|f| {
                ctx.filters.is_empty()
                    || ids.contains(f.netns.as_str())
                    || matches!(&f.detail, FindingDetail::DuplicateIp { holders, .. } if holders.iter().any(|h| ids.contains(h.netns.as_str())))
            })
            .cloned()
            .collect();
        // With filters, the attachments of the namespaces listed.
        let cni_gc: Vec<CniGcCandidate> = c
            .cni_gc()
            .into_iter()
            .filter(|g| {
                ctx.filters.is_empty() || g.netns.id.as_deref().is_some_and(|id| ids.contains(id))
            })
            .collect();

        let mut summary = Summary {
            namespaces: namespaces.len() as u64,
            stale_arp_replies_unreported: stats.stale_replies_unreported,
            packet_records_limited: stats.packet_records_limited,
            ..Default::default()
        };
        for s in NsState::ALL {
            summary.by_state.insert(s, 0);
        }
        for n in &namespaces {
            *summary.by_state.entry(n.state).or_default() += 1;
        }
        if ctx.filters.is_empty() {
            *summary.by_state.entry(NsState::Destroyed).or_default() +=
                stats.dropped_destroyed.values().sum::<u64>();
        }
        for f in &findings {
            *summary.findings.entry(f.kind().to_string()).or_default() += 1;
            summary.uncertain_findings += f.uncertain as u64;
        }

        let lost = c.lost_events();
        let lost_events = LostEvents {
            total: lost.values().sum(),
            by_kind: lost.iter().fold(BTreeMap::new(), |mut m, (k, n)| {
                *m.entry(netns_trace_common::EventKind::name_of(*k).to_string())
                    .or_default() += n;
                m
            }),
        };
        let wall = |t: Option<u64>| ctx.clock.zip(t).map(|(c, t)| c.rfc3339(t));
        let trace = TraceInfo {
            started_at_ns: stats.first_ts_ns,
            ended_at_ns: stats.ended_at_ns.or(stats.last_ts_ns),
            started_at: wall(stats.first_ts_ns),
            ended_at: wall(stats.ended_at_ns.or(stats.last_ts_ns)),
            clock: ctx.clock,
            events: stats.events,
            grace_ns: c.config().grace_ns,
            dropped_destroyed: stats.dropped_destroyed.clone(),
            filters: (!ctx.filters.is_empty()).then(|| ctx.filters.clone()),
        };
        Report {
            schema: SCHEMA.to_string(),
            host: HostInfo {
                hostname: ctx.hostname.clone(),
                kernel: ctx.kernel.clone(),
            },
            probe_mode: ctx.probe_mode.clone(),
            lost_events,
            trace,
            summary,
            namespaces,
            findings,
            cni_gc,
            scanned_at: ctx.scanned_at_ns.map(|t| {
                ctx.clock
                    .map_or_else(|| format!("{t} ns"), |c| c.rfc3339(t))
            }),
        }
    }

    pub fn write_json(&self, out: &mut impl Write, pretty: bool) -> Result<(), ReportError> {
        if pretty {
            serde_json::to_writer_pretty(&mut *out, self)?;
        } else {
            serde_json::to_writer(&mut *out, self)?;
        }
        writeln!(out)?;
        Ok(())
    }

    /// Human-readable rendering: summary, namespace table, findings with evidence.
    pub fn render_text(&self, out: &mut impl Write) -> Result<(), ReportError> {
        text::render(self, out)
    }
}

fn view(
    c: &Collector,
    ns: &Namespace,
    cni_calls: &rustc_hash::FxHashMap<String, Vec<&CniCall>>,
) -> NamespaceView {
    let id = ns.id();
    NamespaceView {
        cni_calls: cni_calls
            .get(&id)
            .map(|calls| calls.iter().map(|c| (*c).clone()).collect())
            .unwrap_or_default(),
        id,
        inum: ns.inum,
        cookie: ns.cookie,
        state: ns.state,
        origin: ns.origin,
        created_at_ns: ns.created_at_ns,
        created_by: ns.created_by.map(|a| CreatorView {
            pid: a.pid,
            tgid: a.tgid,
            comm: a.comm,
        }),
        creation_source: ns.source,
        parent: ns.parent,
        first_seen_ns: ns.first_seen_ns,
        destroyed_at_ns: ns.teardown_at_ns.or(ns.vanished_at_ns).or(ns.freed_at_ns),
        freed_at_ns: ns.freed_at_ns,
        last_member_exit_at_ns: ns.last_member.map(|m| m.exited_at_ns),
        last_member: ns.last_member,
        members: ns
            .members
            .iter()
            .map(|m| MemberView {
                pid: m.pid,
                tgid: m.tgid,
                comm: m.comm,
                cgroup: m
                    .cgroup_path
                    .as_deref()
                    .map(str::to_string)
                    .or_else(|| c.cgroup_path(m.cgroup_id).map(str::to_string))
                    .or_else(|| (m.cgroup_id != 0).then(|| format!("cgroup_id:{}", m.cgroup_id))),
                joined_at_ns: m.joined_at_ns,
                left_at_ns: m.left_at_ns,
                joined_how: m.joined_how,
                left_how: m.left_how,
                counts_as_member: m.counts_as_member,
            })
            .collect(),
        members_dropped: ns.members_dropped,
        pins: ns.pins.iter().map(PinEvidence::from).collect(),
        failed_cleanups: ns.failed_umounts.clone(),
        refused_umounts_ignored: u64::from(ns.refused_umounts_ignored),
        interfaces: ns.interfaces.iter().map(InterfaceEvidence::from).collect(),
        arp: ns.arp,
        owner: (!ns.is_init && !ns.owner.says_nothing()).then(|| ns.owner.clone()),
        age: None,
    }
}

#[cfg(test)]
mod tests;
