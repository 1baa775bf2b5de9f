//! Lost records: the kernel side's ring buffer overflowed. Each loss report covers the time
//! since the previous one of its kind; a finding whose evidence window it overlaps, and whose
//! verdict a record of that kind could have changed, is marked uncertain.
use std::collections::BTreeMap;

use netns_trace_common::EventKind;

use super::findings::{EvidenceWindow, FindingDetail};
use super::{Collector, NoticeKind};
use crate::model::Lost;

/// One `Lost` report: `count` records of `kind` dropped somewhere in `(from_ns, to_ns]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LossInterval {
    pub kind: u16,
    pub from_ns: u64,
    pub to_ns: u64,
    pub count: u64,
}

/// Loss reports kept for overlap checks; coalesced per kind past this many.
const MAX_LOSS_INTERVALS: usize = 1024;

#[derive(Default)]
pub(crate) struct LossLog {
    intervals: Vec<LossInterval>,
    last_report: BTreeMap<u16, u64>,
    pub totals: BTreeMap<u16, u64>,
}

impl LossLog {
    /// Records a loss report at `ts` (losses happened since the previous report of that kind).
    pub fn record(&mut self, kind: u16, count: u64, ts: u64) -> LossInterval {
        let from = self.last_report.insert(kind, ts).unwrap_or(0);
        *self.totals.entry(kind).or_insert(0) += count;
        let iv = LossInterval {
            kind,
            from_ns: from,
            to_ns: ts,
            count,
        };
        self.intervals.push(iv);
        if self.intervals.len() > MAX_LOSS_INTERVALS {
            self.coalesce();
        }
        iv
    }

    /// Merges all intervals of a kind into one covering span: wider, so never less cautious.
    fn coalesce(&mut self) {
        let mut merged: BTreeMap<u16, LossInterval> = BTreeMap::new();
        for iv in self.intervals.drain(..) {
            merged
                .entry(iv.kind)
                .and_modify(|m| {
                    m.from_ns = m.from_ns.min(iv.from_ns);
                    m.to_ns = m.to_ns.max(iv.to_ns);
                    m.count += iv.count;
                })
                .or_insert(iv);
        }
        self.intervals = merged.into_values().collect();
    }

    /// Lost kinds (name, count) that could have hidden evidence for `detail` in `window`.
    pub fn overlapping(
        &self,
        detail: &FindingDetail,
        window: EvidenceWindow,
    ) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for iv in &self.intervals {
            if iv.affects(detail, window) {
                *out.entry(EventKind::name_of(iv.kind)).or_insert(0) += iv.count;
            }
        }
        out
    }

    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.totals.values().sum()
    }
}

impl LossInterval {
    pub fn affects(&self, detail: &FindingDetail, window: EvidenceWindow) -> bool {
        let relevant = detail.sensitive_kinds().contains(&self.kind)
            || EventKind::name_of(self.kind) == "unknown";
        relevant && self.from_ns <= window.to_ns && self.to_ns >= window.from_ns
    }
}

/// The sentence put in `uncertain_reason` for overlapping losses.
pub(crate) fn loss_reason(lost: &BTreeMap<&'static str, u64>) -> String {
    let parts: Vec<String> = lost.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "events lost while the evidence was gathered: {}",
        parts.join(", ")
    )
}

impl Collector {
    pub(super) fn on_lost(&mut self, ts: u64, e: &Lost) {
        let &Lost { kind, count } = e;
        if count == 0 {
            return;
        }
        let iv = self.losses.record(kind, count, ts);
        let reason = loss_reason(&BTreeMap::from([(
            netns_trace_common::EventKind::name_of(kind),
            count,
        )]));
        for f in self.findings.iter_mut() {
            if iv.affects(&f.detail, f.window) {
                f.add_uncertainty(&reason);
            }
        }
        self.notify(ts, None, NoticeKind::EventsLost, |_| {
            format!(
                "{count} {} records lost (ring buffer full)",
                netns_trace_common::EventKind::name_of(kind)
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked() -> FindingDetail {
        FindingDetail::LeakedNetns {
            pins: vec![],
            last_member: None,
            failed_cleanups: vec![],
            interfaces: vec![],
            history_unknown: false,
            resolved_at_ns: None,
            owner: None,
            cni_calls: vec![],
        }
    }

    #[test]
    fn loss_intervals_run_from_the_previous_report() {
        let mut log = LossLog::default();
        log.record(EventKind::Task as u16, 3, 100);
        log.record(EventKind::Task as u16, 2, 500);
        let w = EvidenceWindow {
            from_ns: 200,
            to_ns: 300,
        };
        // The second report covers (100, 500], which overlaps the window.
        assert_eq!(log.overlapping(&leaked(), w).get("task"), Some(&2));
        // ARP losses do not matter to a leak verdict.
        log.record(EventKind::Arp as u16, 9, 250);
        assert_eq!(log.overlapping(&leaked(), w).len(), 1);
        assert_eq!(log.total(), 14);
    }

    #[test]
    fn coalescing_keeps_coverage() {
        let mut log = LossLog::default();
        for i in 0..(MAX_LOSS_INTERVALS as u64 + 10) {
            log.record(EventKind::Task as u16, 1, 1000 + i * 10);
        }
        assert!(log.intervals.len() <= MAX_LOSS_INTERVALS);
        let w = EvidenceWindow {
            from_ns: 1005,
            to_ns: 1006,
        };
        assert!(!log.overlapping(&leaked(), w).is_empty());
    }
}
