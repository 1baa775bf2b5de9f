//! One namespace's story (`report FILE --netns ID`, `scan --netns ID`): its life in order,
//! built from the collector's model like every other output, and the rule that decided its
//! verdict (`Collector::verdict_at`).
use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::{ClockBase, NamespaceView, ReportContext, ReportError, view};
use crate::collector::cni_calls::CniCall;
use crate::collector::namespace::normalize_path;
use crate::collector::{
    Collector, FailedUmount, Finding, FindingDetail, JoinHow, LeaveHow, Namespace, NsState, Origin,
    PinEvidence, VerdictReason,
};
use crate::model::{Comm, CreatedBy, NsId, terminal_safe as safe};

pub const STORY_SCHEMA: &str = "netns-trace/story/v1";

/// Why an ID names no single namespace. Lines name the candidates, escaped for a terminal.
#[derive(Debug, thiserror::Error)]
pub enum StoryError {
    #[error(
        "no namespace matches {}; an ID is a namespace id (net:[INUM]#COOKIE), an inode number, a cookie, a pin path or a pod name (NAME or NAMESPACE/NAME). Namespaces here:\n{}",
        safe(.id),
        .candidates.join("\n")
    )]
    Unknown { id: String, candidates: Vec<String> },
    #[error(
        "{} matches {} namespaces; give one of these ids:\n{}",
        safe(.id),
        .matches.len(),
        .matches.join("\n")
    )]
    Ambiguous { id: String, matches: Vec<String> },
}

/// Candidates listed when an ID matches nothing.
const MAX_CANDIDATES: usize = 30;

/// How a namespace is named in an error: id, state, pod, pin paths (escaped).
fn candidate(ns: &Namespace) -> String {
    let mut s = format!("  {} ({})", ns.id(), ns.state);
    if let (Some(n), Some(p)) = (&ns.owner.pod_namespace, &ns.owner.pod_name) {
        s.push_str(&format!(" pod {}/{}", safe(n), safe(p)));
    }
    for p in ns.pins.iter().filter_map(|p| p.path.as_deref()) {
        s.push_str(&format!(" {}", safe(p)));
    }
    s
}

/// Whether `id` names `ns`: its id, `net:[INUM]` or the bare inode number, its cookie, a pin
/// path it has or had, or its pod's name (`NAME` or `NAMESPACE/NAME`).
fn names(ns: &Namespace, id: &str) -> bool {
    if ns.id() == id {
        return true;
    }
    let bare = id
        .strip_prefix("net:[")
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(id);
    if bare.parse::<u32>().is_ok_and(|n| n == ns.inum) {
        return true;
    }
    if ns.cookie != 0 && id.parse::<u64>().is_ok_and(|c| c == ns.cookie) {
        return true;
    }
    if id.starts_with('/') {
        let want = normalize_path(id);
        let has = |p: Option<&str>| p.is_some_and(|p| normalize_path(p) == want);
        if ns.pins.iter().any(|p| has(p.path.as_deref()))
            || ns.removed_pins.iter().any(|r| has(r.pin.path.as_deref()))
        {
            return true;
        }
    }
    match (&ns.owner.pod_namespace, &ns.owner.pod_name) {
        (Some(n), Some(p)) => p == id || format!("{n}/{p}") == id,
        (None, Some(p)) => p == id,
        _ => false,
    }
}

/// The one namespace `id` names, or an error that lists the candidates.
pub fn resolve<'a>(c: &'a Collector, id: &str) -> Result<&'a Namespace, StoryError> {
    let mut found: Vec<&Namespace> = c.namespaces().filter(|ns| names(ns, id)).collect();
    found.sort_by_key(|ns| (ns.born_at_ns(), ns.inum, ns.incarnation));
    match found.len() {
        1 => Ok(found[0]),
        0 => {
            let mut all: Vec<&Namespace> = c.namespaces().filter(|n| !n.is_init).collect();
            all.sort_by_key(|ns| std::cmp::Reverse(ns.born_at_ns()));
            let mut candidates: Vec<String> = all
                .iter()
                .take(MAX_CANDIDATES)
                .map(|n| candidate(n))
                .collect();
            if all.len() > MAX_CANDIDATES {
                candidates.push(format!(
                    "  … and {} older (see `report`)",
                    all.len() - MAX_CANDIDATES
                ));
            }
            if candidates.is_empty() {
                candidates.push("  (none)".into());
            }
            Err(StoryError::Unknown {
                id: id.to_string(),
                candidates,
            })
        }
        _ => Err(StoryError::Ambiguous {
            id: id.to_string(),
            matches: found.iter().map(|n| candidate(n)).collect(),
        }),
    }
}

/// One step of the story.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum StoryEvent {
    Created {
        pid: u32,
        tgid: u32,
        comm: Comm,
        source: Option<CreatedBy>,
        parent: Option<NsId>,
    },
    /// Its creation was not traced: first seen then (`origin`: snapshot or inferred).
    FirstSeen {
        origin: Origin,
    },
    /// A member's stay began (`before_trace`: it was already inside when the trace started).
    Joined {
        pid: u32,
        tgid: u32,
        comm: Comm,
        how: JoinHow,
        cgroup: Option<String>,
        before_trace: bool,
    },
    Left {
        pid: u32,
        tgid: u32,
        comm: Comm,
        how: LeaveHow,
    },
    Pinned {
        pin: PinEvidence,
    },
    Unpinned {
        pin: PinEvidence,
        /// Who removed it, when a successful umount named its caller.
        by: Option<crate::collector::ByTask>,
    },
    CleanupFailed {
        cleanup: FailedUmount,
    },
    Cni {
        call: CniCall,
    },
    Finding {
        kind: String,
        summary: String,
        uncertain: bool,
    },
    Destroyed,
    Freed,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoryEntry {
    pub at_ns: u64,
    #[serde(flatten)]
    pub event: StoryEvent,
}

/// Short setns stays (under a second: `ip -n`, CNI plugins, tracers peeking in), by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VisitSummary {
    pub comm: Comm,
    pub count: u32,
    pub first_at_ns: u64,
    pub last_at_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub state: NsState,
    pub reason: VerdictReason,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Story {
    pub schema: String,
    /// Every fact the report lists for it (members, pins, interfaces, owner, CNI calls).
    pub namespace: NamespaceView,
    /// Its life in time order.
    pub timeline: Vec<StoryEntry>,
    pub visits: Vec<VisitSummary>,
    /// Member stays dropped from the history (bounded), and removed pins dropped likewise.
    pub members_dropped: u32,
    pub removed_pins_dropped: u32,
    pub verdict: Verdict,
    /// The findings about it, in the order raised.
    pub findings: Vec<Finding>,
    pub clock: Option<ClockBase>,
}

impl Story {
    pub fn build(c: &Collector, ns: &Namespace, ctx: &ReportContext) -> Story {
        let cni_calls = c.sandbox_cni_calls_by_namespace();
        let mut namespace = view(c, ns, &cni_calls);
        namespace.age = ctx.ages.get(&ns.inum).cloned();
        let stats = c.stats();
        let end = stats.ended_at_ns.or(stats.last_ts_ns).unwrap_or(0);
        let (state, reason) = c.verdict_at(ns, end.max(ns.state_since_ns));
        let id = ns.id();
        let findings: Vec<Finding> = c
            .findings()
            .iter()
            .filter(|f| {
                f.netns == id
                    || matches!(&f.detail, FindingDetail::DuplicateIp { holders, .. }
                        if holders.iter().any(|h| h.netns == id))
            })
            .cloned()
            .collect();

        let mut t: Vec<StoryEntry> = Vec::new();
        let mut push = |at_ns: u64, event: StoryEvent| t.push(StoryEntry { at_ns, event });
        match (ns.created_at_ns, ns.created_by) {
            (Some(at), Some(by)) => push(
                at,
                StoryEvent::Created {
                    pid: by.pid,
                    tgid: by.tgid,
                    comm: by.comm,
                    source: ns.source,
                    parent: ns.parent,
                },
            ),
            _ => push(
                ns.first_seen_ns,
                StoryEvent::FirstSeen { origin: ns.origin },
            ),
        }
        let mut visits: BTreeMap<String, VisitSummary> = BTreeMap::new();
        for (span, mv) in ns.members.iter().zip(&namespace.members) {
            if span.was_visit() {
                let at = span.joined_at_ns.unwrap_or(ns.first_seen_ns);
                let v = visits
                    .entry(span.comm.as_str().to_string())
                    .or_insert(VisitSummary {
                        comm: span.comm,
                        count: 0,
                        first_at_ns: at,
                        last_at_ns: at,
                    });
                v.count += 1;
                v.first_at_ns = v.first_at_ns.min(at);
                v.last_at_ns = v.last_at_ns.max(at);
                continue;
            }
            push(
                span.joined_at_ns.unwrap_or(ns.first_seen_ns),
                StoryEvent::Joined {
                    pid: span.pid,
                    tgid: span.tgid,
                    comm: span.comm,
                    how: span.joined_how,
                    cgroup: mv.cgroup.clone(),
                    before_trace: span.joined_at_ns.is_none(),
                },
            );
            if let (Some(at), Some(how)) = (span.left_at_ns, span.left_how) {
                push(
                    at,
                    StoryEvent::Left {
                        pid: span.pid,
                        tgid: span.tgid,
                        comm: span.comm,
                        how,
                    },
                );
            }
        }
        for p in &ns.pins {
            push(p.at_ns, StoryEvent::Pinned { pin: p.into() });
        }
        for r in &ns.removed_pins {
            push(
                r.pin.at_ns,
                StoryEvent::Pinned {
                    pin: (&r.pin).into(),
                },
            );
            push(
                r.removed_at_ns,
                StoryEvent::Unpinned {
                    pin: (&r.pin).into(),
                    by: r.by.map(|a| crate::collector::ByTask {
                        pid: a.pid,
                        comm: a.comm,
                    }),
                },
            );
        }
        for u in &ns.failed_umounts {
            push(u.at_ns, StoryEvent::CleanupFailed { cleanup: u.clone() });
        }
        for call in &namespace.cni_calls {
            push(call.at_ns, StoryEvent::Cni { call: call.clone() });
        }
        for f in &findings {
            push(
                f.raised_at_ns,
                StoryEvent::Finding {
                    kind: f.kind().to_string(),
                    summary: f.summary.clone(),
                    uncertain: f.uncertain,
                },
            );
        }
        if let Some(at) = ns.destroyed_at_ns() {
            push(at, StoryEvent::Destroyed);
        }
        if let Some(at) = ns.freed_at_ns.filter(|&f| Some(f) != ns.destroyed_at_ns()) {
            push(at, StoryEvent::Freed);
        }
        // Stable: at one instant, the order above (creation first, destruction last).
        t.sort_by_key(|e| e.at_ns);
        let mut visits: Vec<VisitSummary> = visits.into_values().collect();
        visits.sort_by_key(|v| v.first_at_ns);
        Story {
            schema: STORY_SCHEMA.to_string(),
            members_dropped: ns.members_dropped,
            removed_pins_dropped: ns.removed_pins_dropped,
            namespace,
            timeline: t,
            visits,
            verdict: Verdict { state, reason },
            findings,
            clock: ctx.clock,
        }
    }

    pub fn write_json(&self, out: &mut impl Write) -> Result<(), ReportError> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)?;
        Ok(())
    }

    pub fn render_text(&self, out: &mut impl Write) -> Result<(), ReportError> {
        super::text::render_story(self, out)
    }
}
