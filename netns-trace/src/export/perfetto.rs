//! Perfetto export: a `perfetto.protos.Trace` of TrackDescriptor and TrackEvent packets, drawn
//! from the collector's model.
//!
//! The events go through a [`Collector`] in the order given, as `report` feeds them, and the
//! timeline shows what the collector decided after each one: which namespace life an event
//! belongs to, when a life began and ended, its states, its members, pins and devices, and
//! its findings. So the timeline and the report cannot disagree. The event itself is read only
//! for what is the event (an ARP packet, a mount syscall): see `event_view`.
//!
//! Layout (see docs/export.md):
//! - root track "network namespaces", with one child track per namespace life carrying a
//!   lifetime slice (creation or first sighting → teardown, free, inum reuse or trace end),
//!   the collector's states nested inside it, and instants for creation, teardown, free,
//!   failed cleanups, nsfs evictions and findings;
//! - under each namespace, one track per member process, per pin, per device (with address
//!   instants) and one "ARP / neighbours" track of instants;
//! - "mount syscalls" and "tracer" tracks under the root for events that belong to no single
//!   namespace, and "outside tracked namespaces" for packets and addresses in a namespace the
//!   collector does not know.

mod event_view;
mod layout;

use std::collections::HashMap;
use std::io::{self, Write};

use event_view::{Anchor, EventView, RawMark};
use layout::{Arg, Layout, Order, Slice, TrackId, b, s, u};

use super::{ClockBase, rfc3339};
use crate::collector::cni_calls::{CniCall, CniTarget};
use crate::collector::namespace::normalize_path;
use crate::collector::{
    Collector, CollectorConfig, FindingDetail, InterfaceRecord, JoinHow, LeaveHow, MemberSpan,
    Namespace, Notice, NoticeKind, NsState, Origin, PinKind, PinRecord, SlotRef,
};
use crate::model::{Comm, Event};

/// What the export contained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub events: u64,
    /// Namespace lives, one track each.
    pub namespaces: u64,
    /// The collector's findings, one instant each.
    pub findings: u64,
    pub tracks: u64,
    pub slices: u64,
    pub instants: u64,
    pub packets: u64,
}

/// How to export.
#[derive(Clone, Debug, Default)]
pub struct PerfettoOptions {
    /// What `report` would run the collector with (grace period, retention). Notices are on
    /// whatever this says: the export follows them.
    pub collector: CollectorConfig,
    /// The trace's clock base: the output then carries a REALTIME clock snapshot (the UI can
    /// show wall-clock time) and slices get a `wall_time` annotation.
    pub clock: Option<ClockBase>,
    /// When the trace ended (the recorder's end frame): grace periods run until then, and what
    /// is still open ends there. The last event's time when None.
    pub ended_at_ns: Option<u64>,
}

/// Writes `events` (in recording order, as `report` replays them) as a Perfetto trace.
/// Timestamps stay CLOCK_MONOTONIC.
pub fn write_perfetto<W: Write>(
    events: impl IntoIterator<Item = Event>,
    options: &PerfettoOptions,
    out: W,
) -> io::Result<ExportStats> {
    let mut export = PerfettoExport::new(options);
    for event in events {
        export.event(&event);
    }
    export.finish(options.ended_at_ns, out)
}

/// A Perfetto export fed one event at a time, so a trace is never held in memory whole
/// (only what the collector keeps and the timeline drew); the trace's end, which its last
/// frame gives, is needed only at [`PerfettoExport::finish`].
pub struct PerfettoExport {
    collector: Collector,
    timeline: Timeline,
    clock: Option<ClockBase>,
}

impl PerfettoExport {
    pub fn new(options: &PerfettoOptions) -> Self {
        Self {
            collector: Collector::new(CollectorConfig {
                notices: true,
                ..options.collector.clone()
            }),
            timeline: Timeline::default(),
            clock: options.clock,
        }
    }

    pub fn event(&mut self, event: &Event) {
        // Copied out: the timeline reads the collector while it looks at them.
        let notices = self.collector.handle(event).to_vec();
        self.timeline.saw(event.ts_ns);
        self.timeline.observe(
            &self.collector,
            &EventView::of(event),
            event.ts_ns,
            &notices,
        );
    }

    /// Ends every open slice at `ended_at_ns` (the last event's time when None) and writes.
    pub fn finish<W: Write>(mut self, ended_at_ns: Option<u64>, out: W) -> io::Result<ExportStats> {
        let end = ended_at_ns.or(self.timeline.last_ts).unwrap_or(0);
        let notices = self.collector.finish(end);
        let end = self.collector.stats().ended_at_ns.unwrap_or(end);
        self.timeline
            .observe(&self.collector, &EventView::none(), end, &notices);
        self.timeline.settle(&self.collector, end);
        self.timeline.write(&self.collector, self.clock, end, out)
    }
}

// ---------------------------------------------------------------------------------------------
// What the collector decided, as it decided it

/// One process's stay, as the collector's [`MemberSpan`] first and last showed it.
#[derive(Debug)]
struct MemberSlice {
    first: MemberSpan,
    last: MemberSpan,
}

/// What does not change in a span: which one it is.
type SpanKey = (u32, u32, Option<u64>, u8);

fn span_key(span: &MemberSpan) -> SpanKey {
    (
        span.pid,
        span.tgid,
        span.joined_at_ns,
        span.joined_how as u8,
    )
}

/// A pin from when the collector recorded it until it let go of it.
#[derive(Debug)]
struct PinSlice {
    last: PinRecord,
    end: Option<(u64, &'static str)>,
}

/// A device while the collector lists it in the namespace.
#[derive(Debug)]
struct DeviceSlice {
    first: InterfaceRecord,
    begin: u64,
    seen_by: &'static str,
    open_args: Vec<Arg>,
    end: Option<(u64, &'static str)>,
}

/// One namespace life as the export followed it through the collector.
#[derive(Debug)]
struct Life {
    handle: SlotRef,
    /// The collector's record as last refreshed (the collector may drop destroyed ones).
    record: Namespace,
    /// (since, state) from the collector's state changes.
    states: Vec<(u64, NsState)>,
    /// When the collector judged it destroyed, in case the record is dropped before a refresh.
    destroyed_at: Option<u64>,
    creation_marked: bool,
    members: Vec<MemberSlice>,
    member_index: HashMap<SpanKey, Vec<usize>>,
    pins: Vec<PinSlice>,
    open_pins: Vec<usize>,
    devices: Vec<DeviceSlice>,
    open_devices: HashMap<u32, usize>,
    /// The collector's interface list as last seen.
    interfaces: Vec<InterfaceRecord>,
}

/// Whether `new` is the pin recorded as `old` (a graft gains its path, a pin its maker).
fn same_pin(old: &PinRecord, new: &PinRecord) -> bool {
    old.kind == new.kind
        && old.at_ns == new.at_ns
        && match new.kind {
            PinKind::BindMount => {
                fn path(p: &PinRecord) -> Option<&str> {
                    p.path.as_deref().map(normalize_path)
                }
                (old.path.is_none() || path(old) == path(new))
                    && (old.mount_ns.is_none() || old.mount_ns == new.mount_ns)
            }
            PinKind::Fd | PinKind::Socket => old.pid == new.pid && old.fd == new.fd,
        }
}

impl Life {
    fn new(handle: SlotRef, ns: &Namespace) -> Self {
        Self {
            handle,
            record: ns.clone(),
            states: Vec::new(),
            destroyed_at: None,
            creation_marked: false,
            members: Vec::new(),
            member_index: HashMap::new(),
            pins: Vec::new(),
            open_pins: Vec::new(),
            devices: Vec::new(),
            open_devices: HashMap::new(),
            interfaces: Vec::new(),
        }
    }

    /// Brings members, pins and devices in line with the collector's record at `now`.
    fn follow(&mut self, ns: &Namespace, now: u64, view: &EventView) {
        if self.states.is_empty() {
            // The first state is set without a notice.
            self.states.push((ns.first_seen_ns, ns.state));
        }
        self.follow_members(ns);
        self.follow_pins(ns, now, view.closed_by);
        self.follow_devices(ns, now, view);
    }

    fn follow_members(&mut self, ns: &Namespace) {
        let mut matched: Vec<usize> = Vec::new();
        for span in &ns.members {
            let slots = self.member_index.entry(span_key(span)).or_default();
            // Under one key, the newest slice this pass has not matched that can be this span.
            let found = slots.iter().rev().copied().find(|i| {
                let last = &self.members[*i].last;
                !matched.contains(i)
                    && (last.left_at_ns.is_none() || last.left_at_ns == span.left_at_ns)
            });
            let index = match found {
                Some(i) => {
                    if self.members[i].last != *span {
                        self.members[i].last = span.clone();
                    }
                    i
                }
                None => {
                    self.members.push(MemberSlice {
                        first: span.clone(),
                        last: span.clone(),
                    });
                    slots.push(self.members.len() - 1);
                    self.members.len() - 1
                }
            };
            matched.push(index);
        }
    }

    fn follow_pins(&mut self, ns: &Namespace, now: u64, closed_by: &'static str) {
        let mut unmatched = std::mem::take(&mut self.open_pins);
        let mut open = Vec::with_capacity(ns.pins.len());
        for pin in &ns.pins {
            match unmatched
                .iter()
                .position(|&i| same_pin(&self.pins[i].last, pin))
            {
                Some(k) => {
                    let i = unmatched.remove(k);
                    if self.pins[i].last != *pin {
                        self.pins[i].last = pin.clone();
                    }
                    open.push(i);
                }
                None => {
                    self.pins.push(PinSlice {
                        last: pin.clone(),
                        end: None,
                    });
                    open.push(self.pins.len() - 1);
                }
            }
        }
        for i in unmatched {
            self.pins[i].end = Some((now, closed_by));
        }
        self.open_pins = open;
    }

    fn follow_devices(&mut self, ns: &Namespace, now: u64, view: &EventView) {
        if ns.interfaces == self.interfaces {
            return;
        }
        let mut gone: Vec<u32> = self
            .open_devices
            .keys()
            .copied()
            .filter(|ifindex| !ns.interfaces.iter().any(|i| i.ifindex == *ifindex))
            .collect();
        gone.sort_unstable();
        for ifindex in gone {
            if let Some(i) = self.open_devices.remove(&ifindex) {
                self.devices[i].end = Some((now, view.closed_by));
            }
        }
        for iface in &ns.interfaces {
            if !self.open_devices.contains_key(&iface.ifindex) {
                self.devices.push(DeviceSlice {
                    first: iface.clone(),
                    begin: now,
                    seen_by: view.opened_by,
                    open_args: view.open_args.clone(),
                    end: None,
                });
                self.open_devices
                    .insert(iface.ifindex, self.devices.len() - 1);
            }
        }
        self.interfaces = ns.interfaces.clone();
    }

    /// Where its timeline starts: creation, or first sighting if that came first (a creation
    /// record that arrived late).
    fn begin(&self) -> u64 {
        self.record.first_seen_ns.min(self.record.born_at_ns())
    }

    /// Where its timeline ends, and why.
    fn end(&self, trace_end: u64) -> (u64, &'static str) {
        let rec = &self.record;
        let (at, why) = if let Some(at) = rec.teardown_at_ns {
            (at, "teardown")
        } else if let Some(at) = rec.freed_at_ns {
            (at, "freed")
        } else if let Some(at) = rec.vanished_at_ns {
            (at, "inum reused by a new namespace")
        } else if let Some(at) = self.destroyed_at {
            (at, "destroyed")
        } else {
            (trace_end, "trace end")
        };
        (at.max(self.begin()), why)
    }
}

/// Where an instant goes, once tracks exist.
#[derive(Debug)]
enum Place {
    Life(usize),
    Neighbours(usize),
    Device {
        life: usize,
        ifindex: u32,
        label: String,
    },
    Mounts,
    Tracer,
    /// A packet or address in a namespace the collector does not know.
    Unattributed,
}

#[derive(Debug, Default)]
struct Timeline {
    lives: Vec<Life>,
    by_handle: HashMap<SlotRef, usize>,
    /// The life of each of the collector's findings, in its order.
    findings: Vec<Option<usize>>,
    instants: Vec<(Place, u64, String, Vec<Arg>)>,
    events: u64,
    first_ts: Option<u64>,
    last_ts: Option<u64>,
}

impl Timeline {
    fn saw(&mut self, ts: u64) {
        self.events += 1;
        self.first_ts = Some(self.first_ts.map_or(ts, |t| t.min(ts)));
        self.last_ts = Some(self.last_ts.map_or(ts, |t| t.max(ts)));
    }

    /// The timeline's life for the collector's `handle`, started on first sight.
    fn life(&mut self, c: &Collector, handle: SlotRef) -> Option<usize> {
        if let Some(&life) = self.by_handle.get(&handle) {
            return Some(life);
        }
        let ns = c.life(handle)?;
        self.lives.push(Life::new(handle, ns));
        self.by_handle.insert(handle, self.lives.len() - 1);
        Some(self.lives.len() - 1)
    }

    /// After the collector handled an event (`view`, at `ts`) and said `notices`.
    fn observe(&mut self, c: &Collector, view: &EventView, ts: u64, notices: &[Notice]) {
        let mut touched: Vec<usize> = Vec::new();
        let mut named: Vec<Option<usize>> = Vec::with_capacity(notices.len());
        for notice in notices {
            let life = notice.life.and_then(|r| self.life(c, r));
            touched.extend(life);
            named.push(life);
        }
        for &id in &view.names {
            touched.extend(c.life_of(id).and_then(|r| self.life(c, r)));
        }
        touched.sort_unstable();
        touched.dedup();
        for &life in &touched {
            let notified = named.contains(&Some(life));
            if let Some(ns) = c.life(self.lives[life].handle) {
                self.lives[life].follow(ns, ts, view);
                if notified {
                    self.lives[life].record = ns.clone();
                }
            }
        }
        for (notice, life) in notices.iter().zip(named) {
            if notice.kind == NoticeKind::Finding {
                self.findings.push(life);
            }
            if let Some(life) = life {
                self.note(life, notice, view);
            }
        }
        if let Some(mark) = &view.mark {
            match mark.at {
                Anchor::CniStart | Anchor::CniEnd { .. } => self.place_cni(c, mark, ts),
                _ => self.place(c, mark, ts),
            }
        }
    }

    /// What a notice adds beyond the record: instants, and the states in their order.
    fn note(&mut self, life: usize, notice: &Notice, view: &EventView) {
        let at = notice.ts_ns;
        let this = &mut self.lives[life];
        match notice.kind {
            NoticeKind::Created if !this.creation_marked => {
                this.creation_marked = true;
                let rec = &this.record;
                let mut args = Vec::new();
                if let Some(source) = rec.source {
                    args.push(s("source", format!("{source:?}").to_lowercase()));
                }
                if let Some(parent) = rec.parent {
                    args.push(s("parent", parent));
                }
                args.extend(view.detail.iter().cloned());
                self.instants
                    .push((Place::Life(life), at, "created".into(), args));
            }
            NoticeKind::Teardown | NoticeKind::Freed => {
                let name = if notice.kind == NoticeKind::Teardown {
                    "teardown"
                } else {
                    "freed"
                };
                let args = view.detail.clone();
                self.instants
                    .push((Place::Life(life), at, name.into(), args));
            }
            NoticeKind::StateChanged => {
                if let Some(state) = notice.new_state {
                    this.states.push((at, state));
                    if state == NsState::Destroyed {
                        this.destroyed_at.get_or_insert(at);
                    }
                }
            }
            NoticeKind::CleanupFailed => {
                let args = vec![s("what", &notice.text)];
                self.instants
                    .push((Place::Life(life), at, "cleanup failed".into(), args));
            }
            _ => {}
        }
    }

    /// Puts an event's own mark where the collector put the event.
    /// The marks of CNI calls: at a call's start and at its end, on the track of the
    /// namespace its CNI_NETNS named (the unattributed track when it named none).
    fn place_cni(&mut self, c: &Collector, mark: &RawMark, ts: u64) {
        let calls: Vec<&CniCall> = match mark.at {
            Anchor::CniStart => c.cni_calls().next_back().into_iter().collect(),
            Anchor::CniEnd { tgid } => c
                .cni_calls()
                .rev()
                .filter(|k| k.plugin.tgid == tgid && k.end.is_some_and(|e| e.at_ns == ts))
                .collect(),
            _ => return,
        };
        for call in calls {
            let mut args = vec![
                s("verb", &call.verb),
                s("plugin", &call.path),
                u("pid", call.plugin.tgid),
                s("container_id", call.container_id.as_deref().unwrap_or("")),
                s("if_name", call.if_name.as_deref().unwrap_or("")),
                s("netns_path", call.netns_path.as_deref().unwrap_or("")),
                s("target", cni_target(&call.target)),
            ];
            if let (Some(n), Some(p)) = (&call.pod_namespace, &call.pod_name) {
                args.push(s("pod", format!("{n}/{p}")));
            }
            let name = match (&mark.at, call.end) {
                (Anchor::CniEnd { .. }, Some(end)) => {
                    args.push(s("status", end.status));
                    args.push(u("started_at_ns", call.at_ns));
                    if let Some(p) = call.parent {
                        args.push(u("parent", p));
                    }
                    format!("CNI {} {}: {}", call.verb, call.plugin.comm, end.status)
                }
                _ => mark.name.clone(),
            };
            let at = call
                .target
                .netns()
                .map_or(Anchor::Tracer, Anchor::Namespace);
            let mark = RawMark { at, name, args };
            match mark.at {
                Anchor::Namespace(_) => self.place(c, &mark, ts),
                _ => self
                    .instants
                    .push((Place::Unattributed, ts, mark.name, mark.args)),
            }
        }
    }

    fn place(&mut self, c: &Collector, mark: &RawMark, ts: u64) {
        let mut args = mark.args.clone();
        let netns = match &mark.at {
            Anchor::Namespace(id) | Anchor::Neighbours(id) => Some(*id),
            Anchor::Device { netns, .. } => Some(*netns),
            Anchor::Mounts | Anchor::Tracer | Anchor::CniStart | Anchor::CniEnd { .. } => None,
        };
        let life = netns.and_then(|id| c.life_of(id).and_then(|r| self.life(c, r)));
        let place = match (&mark.at, life) {
            (Anchor::Mounts, _) => Place::Mounts,
            (Anchor::Tracer | Anchor::CniStart | Anchor::CniEnd { .. }, _) => Place::Tracer,
            (Anchor::Namespace(_), Some(life)) => Place::Life(life),
            (Anchor::Neighbours(_), Some(life)) => Place::Neighbours(life),
            (Anchor::Device { ifindex, label, .. }, Some(life)) => Place::Device {
                life,
                ifindex: *ifindex,
                label: label.clone(),
            },
            (_, None) => {
                args.extend(netns.map(|id| s("netns", id)));
                Place::Unattributed
            }
        };
        self.instants.push((place, ts, mark.name.clone(), args));
    }

    /// At the trace end: what changed without a notice (a member seen only leaving, a cgroup
    /// path resolved late) is read from the records one last time.
    fn settle(&mut self, c: &Collector, end: u64) {
        let view = EventView::none();
        for life in &mut self.lives {
            if let Some(ns) = c.life(life.handle) {
                life.follow(ns, end, &view);
                life.record = ns.clone();
            }
        }
    }

    // ---- layout ----

    fn write<W: Write>(
        self,
        c: &Collector,
        clock: Option<ClockBase>,
        end: u64,
        out: W,
    ) -> io::Result<ExportStats> {
        let wall = |ts: u64| wall(clock, ts);
        let mut layout = Layout::default();
        let root = layout.track(
            None,
            "network namespaces".into(),
            Order::ChildrenByTime,
            None,
        );
        let findings = c.findings();
        let mut leaked = vec![false; self.lives.len()];
        for (finding, life) in findings.iter().zip(&self.findings) {
            if let (FindingDetail::LeakedNetns { .. }, Some(life)) = (&finding.detail, life) {
                leaked[*life] = true;
            }
        }
        let mut tracks: Vec<LifeTracks> = self
            .lives
            .iter()
            .zip(&leaked)
            .map(|(life, leaked)| lay_out(&mut layout, root, c, life, *leaked, end, clock))
            .collect();

        for (finding, life) in findings.iter().zip(&self.findings) {
            let Some(life) = life else { continue };
            let mut args = vec![
                s("kind", finding.kind()),
                s("summary", &finding.summary),
                s("netns", &finding.netns),
                b("uncertain", finding.uncertain),
            ];
            args.extend(
                finding
                    .uncertain_reason
                    .as_ref()
                    .map(|r| s("why_uncertain", r)),
            );
            args.extend(wall(finding.raised_at_ns));
            let name = format!("finding: {}", finding.kind());
            layout.instant(tracks[*life].own, finding.raised_at_ns, name, args);
        }

        let mut root_tracks: HashMap<&'static str, TrackId> = HashMap::new();
        let mut root_track = |layout: &mut Layout, name: &'static str| {
            *root_tracks
                .entry(name)
                .or_insert_with(|| layout.track(Some(root), name.into(), Order::Inherited, None))
        };
        for (place, ts, name, mut args) in self.instants {
            let track = match place {
                Place::Life(life) => {
                    args.extend(wall(ts));
                    tracks[life].own
                }
                Place::Neighbours(life) => tracks[life].neighbours(&mut layout),
                Place::Device {
                    life,
                    ifindex,
                    label,
                } => tracks[life].device(&mut layout, ifindex, &label),
                Place::Mounts => root_track(&mut layout, "mount syscalls"),
                Place::Tracer => root_track(&mut layout, "tracer"),
                Place::Unattributed => root_track(&mut layout, "outside tracked namespaces"),
            };
            layout.instant(track, ts, name, args);
        }

        let written = layout.write(clock, self.first_ts.unwrap_or(0), out)?;
        Ok(ExportStats {
            events: self.events,
            namespaces: self.lives.len() as u64,
            findings: self.findings.iter().flatten().count() as u64,
            tracks: written.tracks,
            slices: written.slices,
            instants: written.instants,
            packets: written.packets,
        })
    }
}

/// Children of a namespace track, in groups ordered by rank.
const GROUP_MEMBERS: i32 = 0;
const GROUP_PINS: i32 = 1;
const GROUP_DEVICES: i32 = 2;
const RANK_NEIGHBOURS: i32 = 3 * 1_000_000;

/// A life's tracks.
struct LifeTracks {
    own: TrackId,
    neighbours: Option<TrackId>,
    devices: HashMap<u32, TrackId>,
    /// Children so far per group, for their ranks.
    counts: [i32; 3],
}

impl LifeTracks {
    fn child(&mut self, layout: &mut Layout, group: i32, name: String) -> TrackId {
        let count = &mut self.counts[group as usize];
        let rank = group * 1_000_000 + (*count).min(999_999);
        *count += 1;
        layout.track(Some(self.own), name, Order::Inherited, Some(rank))
    }

    fn device(&mut self, layout: &mut Layout, ifindex: u32, name: &str) -> TrackId {
        if let Some(&track) = self.devices.get(&ifindex) {
            return track;
        }
        let track = self.child(
            layout,
            GROUP_DEVICES,
            format!("dev {name} (ifindex {ifindex})"),
        );
        self.devices.insert(ifindex, track);
        track
    }

    fn neighbours(&mut self, layout: &mut Layout) -> TrackId {
        let own = self.own;
        *self.neighbours.get_or_insert_with(|| {
            layout.track(
                Some(own),
                "ARP / neighbours".into(),
                Order::Inherited,
                Some(RANK_NEIGHBOURS),
            )
        })
    }
}

fn comm_or_pid(comm: &Comm, tgid: u32) -> String {
    let comm = comm.as_str();
    if comm.is_empty() {
        format!("[{tgid}]")
    } else {
        format!("{comm}[{tgid}]")
    }
}

/// One life's track, lifetime and states, and its member, pin and device tracks.
fn lay_out(
    layout: &mut Layout,
    root: TrackId,
    c: &Collector,
    life: &Life,
    leaked: bool,
    trace_end: u64,
    clock: Option<ClockBase>,
) -> LifeTracks {
    let wall = |ts: u64| wall(clock, ts);
    let rec = &life.record;
    let (name, description) = title(rec, leaked, clock);
    let own = layout.track(Some(root), name, Order::ChildrenByRank, None);
    layout.describe(own, description);
    let mut tracks = LifeTracks {
        own,
        neighbours: None,
        devices: HashMap::new(),
        counts: [0; 3],
    };
    let begin = life.begin();
    let (end, why) = life.end(trace_end);
    let within = |ts: u64| ts.clamp(begin, end);
    // A child's end: its own, or the life's when the life ended first.
    let child_end = |own: Option<(u64, &'static str)>, key: &'static str| match own {
        Some((at, how)) if at <= end => (at, s(key, how)),
        _ => (end, s("ended_by", why)),
    };
    // A member, pin or device slice: from `from` to its end, annotated with how it ended.
    let child_slice = |from: u64,
                       own_end: Option<(u64, &'static str)>,
                       key: &'static str,
                       name: String,
                       begin_args: Vec<Arg>,
                       more_end_args: Vec<Arg>| {
        let (until, how) = child_end(own_end, key);
        let mut end_args = vec![how];
        end_args.extend(more_end_args);
        end_args.extend(wall(until));
        Slice {
            begin: from,
            end: until.max(from),
            depth: 0,
            name,
            begin_args,
            end_args,
        }
    };

    let mut args = vec![u("inum", rec.inum), u("cookie", rec.cookie)];
    match (rec.origin, rec.created_by) {
        (Origin::Traced, Some(by)) => {
            args.push(s("origin", "created"));
            if let Some(source) = rec.source {
                args.push(s("source", format!("{source:?}").to_lowercase()));
            }
            args.extend([u("pid", by.pid), u("tgid", by.tgid), s("comm", by.comm)]);
            args.extend(rec.parent.map(|p| s("parent", p)));
        }
        (Origin::Snapshot, _) => args.push(s("origin", "existed at trace start")),
        _ => args.push(s("origin", "first seen (creation not observed)")),
    }
    args.extend(wall(begin));
    let mut end_args = vec![s("ended_by", why)];
    end_args.extend(wall(end));
    layout.slice(
        own,
        Slice {
            begin,
            end,
            depth: 0,
            name: format!("netns {}", rec.inum),
            begin_args: args,
            end_args,
        },
    );

    // States, nested in the lifetime: the last one set at any instant holds from there.
    let mut states: Vec<(u64, NsState)> = Vec::new();
    for &(at, state) in &life.states {
        let at = within(at);
        match states.last_mut() {
            Some(last) if last.0 == at => last.1 = state,
            Some(last) if last.1 == state => {}
            _ => states.push((at, state)),
        }
    }
    for (k, &(at, state)) in states.iter().enumerate() {
        if state == NsState::Destroyed {
            continue;
        }
        let until = states.get(k + 1).map_or(end, |next| next.0);
        layout.slice(
            own,
            Slice {
                begin: at,
                end: until,
                depth: 1,
                name: state.as_str().into(),
                begin_args: vec![s("state", state)],
                end_args: vec![],
            },
        );
    }

    let mut member_tracks: HashMap<u32, TrackId> = HashMap::new();
    for slice in &life.members {
        let (first, last) = (&slice.first, &slice.last);
        let track = *member_tracks.entry(first.tgid).or_insert_with(|| {
            let name = format!("member {}", comm_or_pid(&first.comm, first.tgid));
            tracks.child(layout, GROUP_MEMBERS, name)
        });
        let joined_by = match first.joined_how {
            JoinHow::Fork => "fork",
            JoinHow::Unshare => "unshare",
            JoinHow::Setns => "setns",
            JoinHow::Snapshot => "snapshot",
            JoinHow::Inferred => "before first sighting",
        };
        let from = within(first.joined_at_ns.unwrap_or(begin));
        let mut args = vec![
            s("joined_by", joined_by),
            u("pid", first.pid),
            u("tgid", first.tgid),
            s("comm", first.comm),
        ];
        if last.cgroup_id != 0 {
            args.push(u("cgroup_id", last.cgroup_id));
        }
        let cgroup = last
            .cgroup_path
            .as_deref()
            .or_else(|| c.cgroup_path(last.cgroup_id));
        args.extend(cgroup.map(|path| s("cgroup", path)));
        args.push(b("counts_as_member", last.counts_as_member));
        args.extend(wall(from));
        let left_by = match last.left_how {
            Some(LeaveHow::Exit) => Some("exit"),
            Some(LeaveHow::Setns) => Some("setns"),
            Some(LeaveHow::Unshare) => Some("unshare"),
            Some(LeaveHow::Destroyed) | None => None,
        };
        let renamed = (last.comm != first.comm).then(|| s("comm", last.comm));
        layout.slice(
            track,
            child_slice(
                from,
                last.left_at_ns.zip(left_by),
                "left_by",
                "member".into(),
                args,
                renamed.into_iter().collect(),
            ),
        );
    }

    let mut pin_tracks: HashMap<String, TrackId> = HashMap::new();
    for slice in &life.pins {
        let (key, name, mut args) = describe_pin(&slice.last);
        let track = *pin_tracks
            .entry(key)
            .or_insert_with(|| tracks.child(layout, GROUP_PINS, name));
        let from = within(slice.last.at_ns);
        args.extend(wall(from));
        layout.slice(
            track,
            child_slice(from, slice.end, "ended_by", "pinned".into(), args, vec![]),
        );
    }

    for slice in &life.devices {
        let iface = &slice.first;
        let track = tracks.device(layout, iface.ifindex, &iface.name);
        let from = within(slice.begin);
        let mut args = vec![
            s("seen_by", slice.seen_by),
            s("name", &iface.name),
            u("ifindex", iface.ifindex),
            s("mac", iface.mac),
        ];
        if !iface.ipv4.is_empty() {
            let addrs: Vec<String> = iface.ipv4.iter().map(|(a, p)| format!("{a}/{p}")).collect();
            args.push(s("ipv4", addrs.join(", ")));
        }
        if !iface.ipv6.is_empty() {
            let addrs: Vec<String> = iface.ipv6.iter().map(|a| a.to_string()).collect();
            args.push(s("ipv6", addrs.join(", ")));
        }
        args.extend(slice.open_args.iter().cloned());
        args.extend(wall(from));
        let name = format!("device {}", iface.name);
        layout.slice(
            track,
            child_slice(from, slice.end, "ended_by", name, args, vec![]),
        );
    }
    tracks
}

/// A namespace track's name and description.
fn title(rec: &Namespace, leaked: bool, clock: Option<ClockBase>) -> (String, String) {
    let when = |ts: u64| match clock {
        Some(clock) => format!("{ts} ns ({})", rfc3339(clock.to_realtime_ns(ts))),
        None => format!("{ts} ns"),
    };
    let mut name = format!("netns {}", rec.inum);
    match (rec.origin, rec.created_by) {
        (Origin::Traced, Some(by)) => {
            let who = if by.tgid != 0 { by.tgid } else { by.pid };
            name.push_str(&format!(" (created by {})", comm_or_pid(&by.comm, who)));
        }
        _ if rec.is_init => name.push_str(" (init)"),
        (Origin::Snapshot, _) => name.push_str(" (existed at trace start)"),
        _ => {}
    }
    if leaked {
        name.insert_str(0, "LEAKED: ");
    }
    let mut description = format!("{}; first seen at {}", rec.id(), when(rec.first_seen_ns));
    for (what, at) in [
        (
            "created",
            rec.created_at_ns.filter(|&t| t != rec.first_seen_ns),
        ),
        ("teardown", rec.teardown_at_ns),
        ("freed", rec.freed_at_ns),
        ("inum reused", rec.vanished_at_ns),
    ] {
        if let Some(at) = at {
            description.push_str(&format!("; {what} at {}", when(at)));
        }
    }
    description.push_str(&format!("; state {}", rec.state));
    if let Some(owner) = rec.owner.short() {
        description.push_str(&format!("; owner {owner}"));
    }
    (name, description)
}

/// The `wall_time` annotation for `ts`, when the clock base is known.
fn wall(clock: Option<ClockBase>, ts: u64) -> Option<Arg> {
    clock.map(|c| s("wall_time", rfc3339(c.to_realtime_ns(ts))))
}

/// A pin's track key, track name and annotations.
fn describe_pin(pin: &PinRecord) -> (String, String, Vec<Arg>) {
    let pid = pin.pid.unwrap_or(0);
    let fd = pin.fd.unwrap_or(0);
    let holder = comm_or_pid(&pin.holder_comm.unwrap_or_default(), pid);
    let mnt_ns = pin.mount_ns.unwrap_or(0);
    let (key, name, mut args) = match (pin.kind, pin.path.as_deref()) {
        (PinKind::BindMount, Some(path)) => (
            format!("bind:{mnt_ns}:{}", normalize_path(path)),
            format!("pin: bind mount {path}"),
            vec![s("pin", "bind_mount"), s("path", path)],
        ),
        // A graft whose path no mount call named.
        (PinKind::BindMount, None) => (
            format!("nsfs:{mnt_ns}"),
            format!("pin: nsfs mount in mnt:[{mnt_ns}]"),
            vec![s("pin", "nsfs_mount")],
        ),
        (PinKind::Fd, _) => (
            format!("fd:{pid}:{fd}"),
            format!("pin: fd {fd} of {holder}"),
            vec![s("pin", "fd"), u("pid", pid), u("fd", fd)],
        ),
        (PinKind::Socket, _) => (
            format!("socket:{pid}:{fd}"),
            format!("pin: socket fd {fd} of {holder}"),
            vec![s("pin", "socket"), u("pid", pid), u("fd", fd)],
        ),
    };
    args.extend(pin.mount_ns.map(|m| u("mnt_ns", m)));
    if pin.kind == PinKind::BindMount {
        args.extend(pin.pid.map(|p| u("holder_pid", p)));
        args.extend(pin.holder_comm.map(|c| s("holder_comm", c)));
    } else {
        args.extend(pin.holder_comm.map(|c| s("comm", c)));
    }
    if let Some(by) = pin.by {
        args.push(s("made_by", comm_or_pid(&by.comm, by.pid)));
    }
    (key, name, args)
}

#[cfg(test)]
mod tests;

/// What a CNI call's CNI_NETNS named, for a mark's argument.
fn cni_target(target: &CniTarget) -> String {
    match target {
        CniTarget::NoPath => "no path".into(),
        CniTarget::Member { pid, netns } => format!("{netns} (member {pid})"),
        CniTarget::Pin { netns } => format!("{netns} (pinned)"),
        CniTarget::ExitedProcess {
            pid,
            netns,
            exited_at_ns,
        } => format!("nothing: process {pid} had left {netns} by exiting at {exited_at_ns} ns"),
        CniTarget::Unresolved => "nothing known".into(),
    }
}
