//! Perfetto export: a `perfetto.protos.Trace` of TrackDescriptor and TrackEvent packets.
//!
//! Layout (see docs/export.md):
//! - root track "network namespaces", with one child track per namespace carrying a lifetime
//!   slice (creation or trace start → teardown, free or trace end) plus instants for findings,
//!   the free and nsfs evictions;
//! - under each namespace, one track per member process (join → leave/exit), per pin
//!   (added → removed/evicted), per device (registered/seen → unregistered/moved/gone) and one
//!   "ARP / neighbours" track of instants;
//! - "mount syscalls" and "tracer" tracks under the root for events that belong to no single
//!   namespace.
//!
//! The whole stream is buffered: the trace is built in one pass over time-sorted events and
//! written afterwards, so track names can reflect what is only known later (a leak finding).

use crate::model::{
    ArpPacket, CgroupPath, CleanupRun, InterfacesRead, Ipv4AddrChange, Lost, MemberCgroup,
    MountSyscall, NeighUpdate, NetDev, NetnsCreated, NetnsObject, NsfsEvict, NsfsMount, PinChange,
    TaskNetns,
};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};

use super::protobuf::ProtoWriter;
use super::{ClockBase, Highlight, LEAKED_NETNS, rfc3339};
use crate::model::{
    AddrOp, Comm, CreatedBy, Direction, Event, EventBody, Interface, MountOp, NetDevOp, NsId, Pin,
    SnapNamespace, Snapshot, SnapshotPhase, TaskOp,
};

/// Field numbers and enum values from perfetto/protos/perfetto/trace/perfetto_trace.proto
/// (checked against the descriptor of the `perfetto` 0.59.1 Python package).
mod pb {
    pub const TRACE_PACKET: u32 = 1;

    pub mod packet {
        pub const CLOCK_SNAPSHOT: u32 = 6;
        pub const TIMESTAMP: u32 = 8;
        pub const TRUSTED_PACKET_SEQUENCE_ID: u32 = 10;
        pub const TRACK_EVENT: u32 = 11;
        pub const SEQUENCE_FLAGS: u32 = 13;
        pub const TIMESTAMP_CLOCK_ID: u32 = 58;
        pub const TRACK_DESCRIPTOR: u32 = 60;
        pub const FIRST_PACKET_ON_SEQUENCE: u32 = 87;
        pub const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
    }

    pub mod clock_snapshot {
        pub const CLOCKS: u32 = 1;
        pub const PRIMARY_TRACE_CLOCK: u32 = 2;
        pub const CLOCK_ID: u32 = 1;
        pub const CLOCK_TIMESTAMP: u32 = 2;
    }

    /// BuiltinClock values.
    pub const CLOCK_REALTIME: u64 = 1;
    pub const CLOCK_MONOTONIC: u64 = 3;

    pub mod track_descriptor {
        pub const UUID: u32 = 1;
        pub const NAME: u32 = 2;
        pub const PARENT_UUID: u32 = 5;
        pub const CHILD_ORDERING: u32 = 11;
        pub const SIBLING_ORDER_RANK: u32 = 12;
        pub const DESCRIPTION: u32 = 14;
        pub const SIBLING_MERGE_BEHAVIOR: u32 = 15;
        pub const CHILD_ORDERING_CHRONOLOGICAL: u64 = 2;
        pub const CHILD_ORDERING_EXPLICIT: u64 = 3;
        pub const SIBLING_MERGE_BEHAVIOR_NONE: u64 = 2;
    }

    pub mod track_event {
        pub const DEBUG_ANNOTATIONS: u32 = 4;
        pub const TYPE: u32 = 9;
        pub const TRACK_UUID: u32 = 11;
        pub const CATEGORIES: u32 = 22;
        pub const NAME: u32 = 23;
        pub const TYPE_SLICE_BEGIN: u64 = 1;
        pub const TYPE_SLICE_END: u64 = 2;
        pub const TYPE_INSTANT: u64 = 3;
    }

    pub mod debug_annotation {
        pub const BOOL_VALUE: u32 = 2;
        pub const UINT_VALUE: u32 = 3;
        pub const INT_VALUE: u32 = 4;
        pub const STRING_VALUE: u32 = 6;
        pub const NAME: u32 = 10;
    }
}

/// All our packets share one sequence; any non-zero id works, this one spells "ns".
const SEQUENCE_ID: u64 = 0x6e73;
/// Track uuids only need to be unique in the file; a recognisable base helps when merging.
const UUID_BASE: u64 = 0x6e65_746e_7300_0000;
const CATEGORY: &str = "netns";

/// What the export contained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub events: u64,
    pub namespaces: u64,
    pub tracks: u64,
    pub slices: u64,
    pub instants: u64,
    pub packets: u64,
}

/// Writes `events` (any order; they are sorted by timestamp) and `highlights` as a Perfetto
/// trace. Timestamps stay CLOCK_MONOTONIC.
pub fn write_perfetto<W: Write>(
    events: impl IntoIterator<Item = Event>,
    highlights: &[Highlight],
    out: W,
) -> io::Result<ExportStats> {
    write_perfetto_with_clock(events, highlights, None, out)
}

/// Like [`write_perfetto`], with the trace's clock base: the output then carries a REALTIME clock snapshot (the UI can show wall-clock time)
/// and slices get a `wall_time` annotation.
pub fn write_perfetto_with_clock<W: Write>(
    events: impl IntoIterator<Item = Event>,
    highlights: &[Highlight],
    clock: Option<ClockBase>,
    out: W,
) -> io::Result<ExportStats> {
    let mut events: Vec<Event> = events.into_iter().collect();
    // Stable, so records with equal timestamps keep their recorded order.
    events.sort_by_key(|e| e.ts_ns);
    let mut builder = Builder::new(clock);
    builder.cgroups = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::CgroupPath(CgroupPath { cgroup_id, path }) => {
                Some((*cgroup_id, path.clone()))
            }
            _ => None,
        })
        .collect();
    for event in &events {
        builder.apply(event);
    }
    for highlight in highlights {
        builder.highlight(highlight);
    }
    let mut stats = builder.finish();
    stats.events = events.len() as u64;
    builder.write(out, &mut stats)?;
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// Model

#[derive(Clone, Debug)]
enum ArgValue {
    Str(String),
    UInt(u64),
    Int(i64),
    Bool(bool),
}

#[derive(Clone, Debug)]
struct Arg {
    name: &'static str,
    value: ArgValue,
}

fn s(name: &'static str, value: impl ToString) -> Arg {
    Arg {
        name,
        value: ArgValue::Str(value.to_string()),
    }
}
fn u(name: &'static str, value: impl Into<u64>) -> Arg {
    Arg {
        name,
        value: ArgValue::UInt(value.into()),
    }
}
fn i(name: &'static str, value: i64) -> Arg {
    Arg {
        name,
        value: ArgValue::Int(value),
    }
}
fn b(name: &'static str, value: bool) -> Arg {
    Arg {
        name,
        value: ArgValue::Bool(value),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Begin,
    End,
    Instant,
}

#[derive(Debug)]
struct Emission {
    ts: u64,
    /// Order of creation: breaks timestamp ties so an end precedes a begin pushed after it.
    seq: u64,
    track: usize,
    mark: Mark,
    name: String,
    args: Vec<Arg>,
}

#[derive(Debug)]
struct TrackDef {
    uuid: u64,
    parent: Option<usize>,
    name: String,
    description: Option<String>,
    child_ordering: Option<u64>,
    rank: Option<i32>,
    /// Open slices, so every begin gets an end.
    open: Vec<String>,
}

#[derive(Debug, Clone)]
enum Origin {
    Created {
        pid: u32,
        tgid: u32,
        comm: String,
        source: CreatedBy,
        parent: NsId,
    },
    /// Listed by the start snapshot: it predates the trace.
    Snapshot,
    /// First referenced by some other event; its beginning was not seen.
    FirstSeen,
}

#[derive(Debug, Default)]
struct MemberTrack {
    track: usize,
    /// Thread ids inside the namespace; the process is a member while any is.
    tids: BTreeSet<u32>,
}

#[derive(Debug)]
struct Namespace {
    track: usize,
    id: NsId,
    origin: Origin,
    started_at: u64,
    teardown_at: Option<u64>,
    freed_at: Option<u64>,
    is_init: bool,
    leaked: bool,
    members: HashMap<u32, MemberTrack>,
    pins: HashMap<String, usize>,
    devices: HashMap<u32, usize>,
    arp_track: Option<usize>,
    /// Children added so far per group (members, pins, devices), for explicit ordering.
    group_counts: [i32; 3],
}

const GROUP_MEMBERS: usize = 0;
const GROUP_PINS: usize = 1;
const GROUP_DEVICES: usize = 2;
const RANK_ARP: i32 = 3 * 1_000_000;

impl Namespace {
    fn dead(&self) -> bool {
        self.teardown_at.is_some() || self.freed_at.is_some()
    }
}

struct Builder {
    clock: Option<ClockBase>,
    tracks: Vec<TrackDef>,
    emissions: Vec<Emission>,
    namespaces: Vec<Namespace>,
    by_cookie: HashMap<u64, usize>,
    /// Every namespace that carried an inum, oldest first (inums are reused).
    by_inum: HashMap<u32, Vec<usize>>,
    init_netns: Option<NsId>,
    root: usize,
    mounts_track: Option<usize>,
    tracer_track: Option<usize>,
    cgroups: HashMap<u64, String>,
    first_ts: Option<u64>,
    last_ts: u64,
}

fn comm_or_pid(comm: &Comm, tgid: u32) -> String {
    let comm = comm.as_str();
    if comm.is_empty() {
        format!("[{tgid}]")
    } else {
        format!("{comm}[{tgid}]")
    }
}

fn describe_pin(pin: &Pin) -> (String, String, Vec<Arg>) {
    match pin {
        Pin::BindMount {
            path,
            mnt_ns,
            holder_pid,
            holder_comm,
        } => (
            format!("bind:{mnt_ns}:{path}"),
            format!("pin: bind mount {path}"),
            vec![
                s("pin", "bind_mount"),
                s("path", path),
                u("mnt_ns", *mnt_ns),
                u("holder_pid", *holder_pid),
                s("holder_comm", holder_comm),
            ],
        ),
        Pin::Fd { pid, fd, comm } => (
            format!("fd:{pid}:{fd}"),
            format!("pin: fd {fd} of {}", comm_or_pid(comm, *pid)),
            vec![
                s("pin", "fd"),
                u("pid", *pid),
                u("fd", *fd),
                s("comm", comm),
            ],
        ),
        Pin::Socket { pid, fd, comm } => (
            format!("socket:{pid}:{fd}"),
            format!("pin: socket fd {fd} of {}", comm_or_pid(comm, *pid)),
            vec![
                s("pin", "socket"),
                u("pid", *pid),
                u("fd", *fd),
                s("comm", comm),
            ],
        ),
    }
}

fn interface_args(iface: &Interface) -> Vec<Arg> {
    let mut args = vec![
        s("name", &iface.name),
        u("ifindex", iface.ifindex),
        s("mac", iface.mac),
    ];
    if !iface.ipv4.is_empty() {
        let addrs: Vec<String> = iface.ipv4.iter().map(|(a, p)| format!("{a}/{p}")).collect();
        args.push(s("ipv4", addrs.join(", ")));
    }
    args
}

fn arp_op_name(op: u16) -> String {
    match op {
        1 => "request".to_string(),
        2 => "reply".to_string(),
        other => format!("op {other}"),
    }
}

fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Rx => "rx",
        Direction::Tx => "tx",
    }
}

impl Builder {
    fn new(clock: Option<ClockBase>) -> Self {
        let mut builder = Self {
            clock,
            tracks: Vec::new(),
            emissions: Vec::new(),
            namespaces: Vec::new(),
            by_cookie: HashMap::new(),
            by_inum: HashMap::new(),
            init_netns: None,
            root: 0,
            mounts_track: None,
            tracer_track: None,
            cgroups: HashMap::new(),
            first_ts: None,
            last_ts: 0,
        };
        builder.root = builder.add_track(None, "network namespaces".to_string(), None);
        builder.tracks[builder.root].child_ordering =
            Some(pb::track_descriptor::CHILD_ORDERING_CHRONOLOGICAL);
        builder
    }

    fn add_track(&mut self, parent: Option<usize>, name: String, rank: Option<i32>) -> usize {
        let index = self.tracks.len();
        self.tracks.push(TrackDef {
            uuid: UUID_BASE + index as u64,
            parent,
            name,
            description: None,
            child_ordering: None,
            rank,
            open: Vec::new(),
        });
        index
    }

    fn push(&mut self, ts: u64, track: usize, mark: Mark, name: String, args: Vec<Arg>) {
        match mark {
            Mark::Begin => self.tracks[track].open.push(name.clone()),
            Mark::End => {
                if self.tracks[track].open.pop().is_none() {
                    tracing::warn!(track = %self.tracks[track].name, "perfetto export: end without begin, skipped");
                    return;
                }
            }
            Mark::Instant => {}
        }
        let seq = self.emissions.len() as u64;
        self.emissions.push(Emission {
            ts,
            seq,
            track,
            mark,
            name,
            args,
        });
    }

    fn begin(&mut self, ts: u64, track: usize, name: impl Into<String>, args: Vec<Arg>) {
        self.push(ts, track, Mark::Begin, name.into(), args);
    }

    fn end(&mut self, ts: u64, track: usize, args: Vec<Arg>) {
        self.push(ts, track, Mark::End, String::new(), args);
    }

    fn instant(&mut self, ts: u64, track: usize, name: impl Into<String>, args: Vec<Arg>) {
        self.push(ts, track, Mark::Instant, name.into(), args);
    }

    fn is_open(&self, track: usize) -> bool {
        !self.tracks[track].open.is_empty()
    }

    fn wall_arg(&self, ts: u64) -> Option<Arg> {
        self.clock
            .map(|c| s("wall_time", rfc3339(c.to_realtime_ns(ts))))
    }

    fn with_wall(&self, ts: u64, mut args: Vec<Arg>) -> Vec<Arg> {
        args.extend(self.wall_arg(ts));
        args
    }

    // ---- namespace identity ----

    /// The namespace `id` refers to at this point of the trace. The cookie is the real key;
    /// inum-only references go to the newest namespace with that inum that is not freed.
    fn lookup(&mut self, id: NsId) -> Option<usize> {
        if id.is_none() {
            return None;
        }
        if id.cookie != 0 {
            if let Some(&ns) = self.by_cookie.get(&id.cookie) {
                return Some(ns);
            }
            // A namespace seen so far only by inum (a userspace read) gains its cookie.
            let candidate = self
                .by_inum
                .get(&id.inum)?
                .iter()
                .rev()
                .copied()
                .find(|&ns| {
                    let ns = &self.namespaces[ns];
                    ns.id.cookie == 0 && ns.freed_at.is_none()
                })?;
            self.namespaces[candidate].id.cookie = id.cookie;
            self.by_cookie.insert(id.cookie, candidate);
            return Some(candidate);
        }
        let candidates = self.by_inum.get(&id.inum)?;
        candidates
            .iter()
            .rev()
            .copied()
            .find(|&ns| !self.namespaces[ns].dead())
            .or_else(|| {
                candidates
                    .iter()
                    .rev()
                    .copied()
                    .find(|&ns| self.namespaces[ns].freed_at.is_none())
            })
    }

    fn create(&mut self, id: NsId, origin: Origin, ts: u64, open_lifetime: bool) -> usize {
        let track = self.add_track(Some(self.root), String::new(), None);
        self.tracks[track].child_ordering = Some(pb::track_descriptor::CHILD_ORDERING_EXPLICIT);
        let index = self.namespaces.len();
        self.namespaces.push(Namespace {
            track,
            id,
            origin: origin.clone(),
            started_at: ts,
            teardown_at: None,
            freed_at: None,
            is_init: self.init_netns.is_some_and(|init| same_ns(init, id)),
            leaked: false,
            members: HashMap::new(),
            pins: HashMap::new(),
            devices: HashMap::new(),
            arp_track: None,
            group_counts: [0; 3],
        });
        if id.cookie != 0 {
            self.by_cookie.insert(id.cookie, index);
        }
        self.by_inum.entry(id.inum).or_default().push(index);
        if open_lifetime {
            let mut args = vec![u("inum", id.inum), u("cookie", id.cookie)];
            match origin {
                Origin::Created {
                    pid,
                    tgid,
                    comm,
                    source,
                    parent,
                } => {
                    args.push(s("origin", "created"));
                    args.push(s("source", format!("{source:?}").to_lowercase()));
                    args.push(u("pid", pid));
                    args.push(u("tgid", tgid));
                    args.push(s("comm", comm));
                    args.push(s("parent", parent));
                }
                Origin::Snapshot => args.push(s("origin", "existed at trace start")),
                Origin::FirstSeen => args.push(s("origin", "first seen (creation not observed)")),
            }
            let args = self.with_wall(ts, args);
            self.begin(ts, track, format!("netns {}", id.inum), args);
        }
        index
    }

    /// The namespace `id` refers to, created (as first seen at `ts`) if unknown.
    fn resolve(&mut self, id: NsId, ts: u64) -> Option<usize> {
        if id.is_none() {
            return None;
        }
        Some(match self.lookup(id) {
            Some(ns) => ns,
            None => self.create(id, Origin::FirstSeen, ts, true),
        })
    }

    fn child_track(&mut self, ns: usize, group: usize, name: String) -> usize {
        let rank = group as i32 * 1_000_000 + self.namespaces[ns].group_counts[group].min(999_999);
        self.namespaces[ns].group_counts[group] += 1;
        let parent = self.namespaces[ns].track;
        self.add_track(Some(parent), name, Some(rank))
    }

    /// Ends every open child slice (members, pins, devices) of a namespace.
    fn close_children(&mut self, ns: usize, ts: u64, why: &'static str) {
        let namespace = &self.namespaces[ns];
        let mut tracks: Vec<usize> = namespace.members.values().map(|m| m.track).collect();
        tracks.extend(namespace.pins.values().copied());
        tracks.extend(namespace.devices.values().copied());
        tracks.sort_unstable();
        for member in self.namespaces[ns].members.values_mut() {
            member.tids.clear();
        }
        for track in tracks {
            while self.is_open(track) {
                self.end(ts, track, vec![s("ended_by", why)]);
            }
        }
    }

    /// The namespace stops being usable: its lifetime slice and all children end.
    fn end_lifetime(&mut self, ns: usize, ts: u64, why: &'static str) {
        self.close_children(ns, ts, why);
        let track = self.namespaces[ns].track;
        while self.is_open(track) {
            let args = self.with_wall(ts, vec![s("ended_by", why)]);
            self.end(ts, track, args);
        }
    }

    // ---- members ----

    fn member_track(&mut self, ns: usize, tgid: u32, comm: &Comm) -> usize {
        if let Some(member) = self.namespaces[ns].members.get(&tgid) {
            return member.track;
        }
        let track = self.child_track(
            ns,
            GROUP_MEMBERS,
            format!("member {}", comm_or_pid(comm, tgid)),
        );
        self.namespaces[ns].members.insert(
            tgid,
            MemberTrack {
                track,
                tids: BTreeSet::new(),
            },
        );
        track
    }

    // Positional because this export still keeps its own membership model; issue 16 moves it
    // onto the collector's, which removes these.
    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        ns: usize,
        ts: u64,
        pid: u32,
        tgid: u32,
        comm: &Comm,
        how: &'static str,
        mut args: Vec<Arg>,
    ) {
        let tgid = if tgid == 0 { pid } else { tgid };
        let track = self.member_track(ns, tgid, comm);
        if let Some(member) = self.namespaces[ns].members.get_mut(&tgid) {
            member.tids.insert(pid);
        }
        if !self.is_open(track) {
            let mut all = vec![
                s("joined_by", how),
                u("pid", pid),
                u("tgid", tgid),
                s("comm", comm),
            ];
            all.append(&mut args);
            let all = self.with_wall(ts, all);
            self.begin(ts, track, "member", all);
        }
    }

    // Positional because this export still keeps its own membership model; issue 16 moves it
    // onto the collector's, which removes these.
    #[allow(clippy::too_many_arguments)]
    fn leave(
        &mut self,
        ns: usize,
        ts: u64,
        pid: u32,
        tgid: u32,
        comm: &Comm,
        how: &'static str,
        whole_process: bool,
    ) {
        let tgid = if tgid == 0 { pid } else { tgid };
        let known = self.namespaces[ns]
            .members
            .get(&tgid)
            .is_some_and(|m| !m.tids.is_empty());
        let track = self.member_track(ns, tgid, comm);
        if !known {
            // It was a member before we could see it join (it predates the trace or the
            // namespace's first sighting): its span starts where our knowledge starts.
            let since = self.namespaces[ns].started_at.min(ts);
            let args = vec![
                s("joined_by", "before first sighting"),
                u("tgid", tgid),
                s("comm", comm),
            ];
            if !self.is_open(track) {
                self.begin(since, track, "member", args);
            }
            if let Some(member) = self.namespaces[ns].members.get_mut(&tgid) {
                // Other threads of the process are presumably still inside.
                member.tids.insert(tgid);
            }
        }
        let now_empty = match self.namespaces[ns].members.get_mut(&tgid) {
            Some(member) => {
                member.tids.remove(&pid);
                if whole_process {
                    member.tids.clear();
                }
                member.tids.is_empty()
            }
            None => true,
        };
        if now_empty && self.is_open(track) {
            let args = self.with_wall(ts, vec![s("left_by", how), u("pid", pid)]);
            self.end(ts, track, args);
        }
    }

    // Positional because this export still keeps its own membership model; issue 16 moves it
    // onto the collector's, which removes these.
    #[allow(clippy::too_many_arguments)]
    fn task(
        &mut self,
        event: &Event,
        op: TaskOp,
        netns: NsId,
        prev: NsId,
        thread: bool,
        group_dead: bool,
        cgroup_id: u64,
    ) {
        let ts = event.ts_ns;
        let mut args = vec![u("cgroup_id", cgroup_id), b("thread", thread)];
        if let Some(path) = self.cgroups.get(&cgroup_id) {
            args.push(s("cgroup", path));
        }
        let how = match op {
            TaskOp::Fork => "fork",
            TaskOp::Unshare => "unshare",
            TaskOp::Setns => "setns",
            TaskOp::Exit => "exit",
        };
        match op {
            TaskOp::Fork => {
                if let Some(ns) = self.resolve(netns, ts) {
                    self.join(ns, ts, event.pid, event.tgid, &event.comm, how, args);
                }
            }
            TaskOp::Unshare | TaskOp::Setns => {
                if same_ns(netns, prev) {
                    return; // only the mount namespace changed
                }
                // Leaving a namespace never seen otherwise (typically the host's) is not
                // worth a track of its own.
                if let Some(old) = self.lookup(prev) {
                    self.leave(old, ts, event.pid, event.tgid, &event.comm, how, false);
                }
                if let Some(new) = self.resolve(netns, ts) {
                    self.join(new, ts, event.pid, event.tgid, &event.comm, how, args);
                }
            }
            TaskOp::Exit => {
                if let Some(ns) = self.lookup(netns) {
                    self.leave(
                        ns,
                        ts,
                        event.pid,
                        event.tgid,
                        &event.comm,
                        how,
                        group_dead || !thread,
                    );
                }
            }
        }
    }

    // ---- pins ----

    fn open_pin(&mut self, ns: usize, ts: u64, key: String, name: String, args: Vec<Arg>) {
        let track = match self.namespaces[ns].pins.get(&key) {
            Some(&track) => track,
            None => {
                let track = self.child_track(ns, GROUP_PINS, name);
                self.namespaces[ns].pins.insert(key, track);
                track
            }
        };
        if !self.is_open(track) {
            let args = self.with_wall(ts, args);
            self.begin(ts, track, "pinned", args);
        }
    }

    fn close_pin(
        &mut self,
        ns: usize,
        ts: u64,
        key: String,
        name: String,
        args: Vec<Arg>,
        why: &'static str,
    ) {
        if !self.namespaces[ns].pins.contains_key(&key) {
            // Removed before we saw it added: it pinned the namespace since at least its start.
            let since = self.namespaces[ns].started_at.min(ts);
            let mut args = args;
            args.push(s("added", "before first sighting"));
            self.open_pin(ns, since, key.clone(), name, args);
        }
        let track = self.namespaces[ns].pins[&key];
        if self.is_open(track) {
            let args = self.with_wall(ts, vec![s("ended_by", why)]);
            self.end(ts, track, args);
        }
    }

    // ---- devices ----

    fn device_track(&mut self, ns: usize, ifindex: u32, name: &str) -> usize {
        if let Some(&track) = self.namespaces[ns].devices.get(&ifindex) {
            return track;
        }
        let track = self.child_track(ns, GROUP_DEVICES, format!("dev {name} (ifindex {ifindex})"));
        self.namespaces[ns].devices.insert(ifindex, track);
        track
    }

    fn open_device(
        &mut self,
        ns: usize,
        ts: u64,
        ifindex: u32,
        name: &str,
        how: &'static str,
        mut args: Vec<Arg>,
    ) {
        let track = self.device_track(ns, ifindex, name);
        if !self.is_open(track) {
            args.insert(0, s("seen_by", how));
            let args = self.with_wall(ts, args);
            self.begin(ts, track, format!("device {name}"), args);
        }
    }

    fn close_device(&mut self, ns: usize, ts: u64, ifindex: u32, why: &'static str) {
        if let Some(&track) = self.namespaces[ns].devices.get(&ifindex)
            && self.is_open(track)
        {
            let args = self.with_wall(ts, vec![s("ended_by", why)]);
            self.end(ts, track, args);
        }
    }

    /// A full interface list: opens what is new, closes what is gone.
    fn interfaces(&mut self, ns: usize, ts: u64, interfaces: &[Interface], how: &'static str) {
        let present: BTreeSet<u32> = interfaces.iter().map(|i| i.ifindex).collect();
        let mut gone: Vec<u32> = self.namespaces[ns]
            .devices
            .keys()
            .copied()
            .filter(|ifindex| !present.contains(ifindex))
            .collect();
        gone.sort_unstable();
        for ifindex in gone {
            self.close_device(ns, ts, ifindex, "absent from interface read");
        }
        for iface in interfaces {
            self.open_device(
                ns,
                ts,
                iface.ifindex,
                &iface.name,
                how,
                interface_args(iface),
            );
        }
    }

    fn arp_track(&mut self, ns: usize) -> usize {
        if let Some(track) = self.namespaces[ns].arp_track {
            return track;
        }
        let parent = self.namespaces[ns].track;
        let track = self.add_track(Some(parent), "ARP / neighbours".to_string(), Some(RANK_ARP));
        self.namespaces[ns].arp_track = Some(track);
        track
    }

    fn mounts_track(&mut self) -> usize {
        if let Some(track) = self.mounts_track {
            return track;
        }
        let track = self.add_track(Some(self.root), "mount syscalls".to_string(), None);
        self.mounts_track = Some(track);
        track
    }

    fn tracer_track(&mut self) -> usize {
        if let Some(track) = self.tracer_track {
            return track;
        }
        let track = self.add_track(Some(self.root), "tracer".to_string(), None);
        self.tracer_track = Some(track);
        track
    }

    fn snapshot(&mut self, ts: u64, snapshot: &Snapshot) {
        if !snapshot.init_netns.is_none() {
            self.init_netns = Some(snapshot.init_netns);
            for ns in &mut self.namespaces {
                if same_ns(ns.id, snapshot.init_netns) {
                    ns.is_init = true;
                }
            }
        }
        for snap in &snapshot.namespaces {
            if snap.netns.is_none() {
                continue;
            }
            match snapshot.phase {
                SnapshotPhase::Start => self.snapshot_start(ts, snap),
                SnapshotPhase::Final => {
                    if let Some(ns) = self.resolve(snap.netns, ts)
                        && snap.interfaces_error.is_none()
                    {
                        self.interfaces(ns, ts, &snap.interfaces, "final snapshot");
                    }
                }
            }
        }
    }

    fn snapshot_start(&mut self, ts: u64, snap: &SnapNamespace) {
        let ns = match self.lookup(snap.netns) {
            Some(ns) => ns,
            None => self.create(snap.netns, Origin::Snapshot, ts, true),
        };
        for member in &snap.members {
            let mut args = Vec::new();
            if !member.cgroup.is_empty() {
                args.push(s("cgroup", &member.cgroup));
            }
            self.join(
                ns,
                ts,
                member.pid,
                member.tgid,
                &member.comm,
                "start snapshot",
                args,
            );
        }
        for pin in &snap.pins {
            let (key, name, args) = describe_pin(pin);
            self.open_pin(ns, ts, key, name, args);
        }
        if snap.interfaces_error.is_none() {
            self.interfaces(ns, ts, &snap.interfaces, "start snapshot");
        }
    }

    fn apply(&mut self, event: &Event) {
        let ts = event.ts_ns;
        self.first_ts = Some(self.first_ts.map_or(ts, |first| first.min(ts)));
        self.last_ts = self.last_ts.max(ts);
        match &event.body {
            EventBody::NetnsCreated(NetnsCreated {
                netns,
                parent,
                net_ptr: _,
                source,
                clone_flags,
            }) => {
                if netns.is_none() {
                    return;
                }
                if netns.cookie != 0 && self.by_cookie.contains_key(&netns.cookie) {
                    return; // several hooks may report one creation; the first one opened it
                }
                let live_holder = self.by_inum.get(&netns.inum).and_then(|all| {
                    all.iter()
                        .rev()
                        .copied()
                        .find(|&ns| !self.namespaces[ns].dead())
                });
                if let Some(old) = live_holder {
                    let duplicate = netns.cookie == 0
                        && matches!(&self.namespaces[old].origin, Origin::Created { tgid, .. } if *tgid == event.tgid);
                    if duplicate {
                        return;
                    }
                    // A new namespace got this inum, so the old holder is gone even if we
                    // missed its end.
                    self.end_lifetime(old, ts, "inum reused by a new namespace");
                    self.namespaces[old].freed_at.get_or_insert(ts);
                }
                let origin = Origin::Created {
                    pid: event.pid,
                    tgid: event.tgid,
                    comm: event.comm.to_string(),
                    source: *source,
                    parent: *parent,
                };
                let ns = self.create(*netns, origin, ts, true);
                let track = self.namespaces[ns].track;
                self.instant(
                    ts,
                    track,
                    "created",
                    vec![u("clone_flags", *clone_flags), s("parent", parent)],
                );
            }
            EventBody::Task(TaskNetns {
                op,
                netns,
                prev,
                thread,
                group_dead,
                cgroup_id,
                ..
            }) => {
                self.task(event, *op, *netns, *prev, *thread, *group_dead, *cgroup_id);
            }
            EventBody::NetnsTeardown(NetnsObject { netns, hook, .. }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    self.end_lifetime(ns, ts, "teardown");
                    self.namespaces[ns].teardown_at.get_or_insert(ts);
                    let track = self.namespaces[ns].track;
                    let args =
                        self.with_wall(ts, vec![s("hook", format!("{hook:?}").to_lowercase())]);
                    self.instant(ts, track, "teardown", args);
                }
            }
            EventBody::NetnsFreed(NetnsObject { netns, hook, .. }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    self.end_lifetime(ns, ts, "freed");
                    self.namespaces[ns].freed_at.get_or_insert(ts);
                    let track = self.namespaces[ns].track;
                    let args =
                        self.with_wall(ts, vec![s("hook", format!("{hook:?}").to_lowercase())]);
                    self.instant(ts, track, "freed", args);
                }
            }
            EventBody::CleanupRun(CleanupRun {}) => {
                let track = self.tracer_track();
                self.instant(ts, track, "cleanup_net run", vec![]);
            }
            EventBody::MountSyscall(MountSyscall {
                op,
                netns,
                mnt_ns,
                ret,
                flags,
                source,
                target,
                ..
            }) => {
                let track = self.mounts_track();
                let op_name = match op {
                    MountOp::Mount => "mount",
                    MountOp::Umount => "umount",
                    MountOp::OpenTree => "open_tree",
                    MountOp::MoveMount => "move_mount",
                };
                let mut args = vec![
                    s("op", op_name),
                    s("source", source),
                    s("target", target),
                    i("ret", *ret),
                    u("flags", *flags),
                    u("mnt_ns", *mnt_ns),
                    u("pid", event.pid),
                    s("comm", event.comm),
                ];
                if !netns.is_none() {
                    args.push(s("caller_netns", netns));
                }
                let label = op.acted_on(source, target);
                let failed = if *ret < 0 { " (failed)" } else { "" };
                self.instant(ts, track, format!("{op_name} {label}{failed}"), args);
            }
            EventBody::NsfsMount(NsfsMount { netns, mnt_ns, .. }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    let args = vec![
                        s("pin", "nsfs_mount"),
                        u("mnt_ns", *mnt_ns),
                        u("pid", event.pid),
                        s("comm", event.comm),
                    ];
                    self.open_pin(
                        ns,
                        ts,
                        format!("nsfs:{mnt_ns}"),
                        format!("pin: nsfs mount in mnt:[{mnt_ns}]"),
                        args,
                    );
                }
            }
            EventBody::NsfsEvict(NsfsEvict { netns, .. }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    // The last nsfs inode is gone: no bind mount or nsfs fd can pin it any more.
                    let nsfs_pins: Vec<(String, usize)> = self.namespaces[ns]
                        .pins
                        .iter()
                        .filter(|(key, _)| !key.starts_with("socket:"))
                        .map(|(key, &track)| (key.clone(), track))
                        .collect();
                    for (_, track) in nsfs_pins {
                        if self.is_open(track) {
                            self.end(ts, track, vec![s("ended_by", "nsfs inode evicted")]);
                        }
                    }
                    let track = self.namespaces[ns].track;
                    self.instant(ts, track, "nsfs inode evicted", vec![]);
                }
            }
            EventBody::NetDev(NetDev {
                op,
                netns,
                ifindex,
                other,
                mac,
                name,
            }) => {
                let args = vec![s("name", name), u("ifindex", *ifindex), s("mac", mac)];
                match op {
                    NetDevOp::Register => {
                        if let Some(ns) = self.resolve(*netns, ts) {
                            self.open_device(ns, ts, *ifindex, name, "register", args);
                        }
                    }
                    NetDevOp::Unregister => {
                        if let Some(ns) = self.resolve(*netns, ts) {
                            self.close_device(ns, ts, *ifindex, "unregister");
                        }
                    }
                    NetDevOp::Move => {
                        // Moved into `netns` from `other`.
                        if let Some(from) = self.lookup(*other) {
                            self.close_device(from, ts, *ifindex, "moved to another namespace");
                        }
                        if let Some(ns) = self.resolve(*netns, ts) {
                            let mut args = args;
                            args.push(s("moved_from", other));
                            self.open_device(ns, ts, *ifindex, name, "moved in", args);
                        }
                    }
                }
            }
            EventBody::Ipv4Addr(Ipv4AddrChange {
                op,
                netns,
                ifindex,
                addr,
                prefix_len,
                label,
            }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    let track = self.device_track(ns, *ifindex, label);
                    let verb = match op {
                        AddrOp::Add => "add",
                        AddrOp::Del => "del",
                    };
                    let args = vec![
                        s("ip", format!("{addr}/{prefix_len}")),
                        u("ifindex", *ifindex),
                        s("label", label),
                    ];
                    self.instant(ts, track, format!("addr {verb} {addr}/{prefix_len}"), args);
                }
            }
            EventBody::Arp(ArpPacket {
                netns,
                dir,
                op,
                ifindex,
                sender_ip,
                sender_mac,
                target_ip,
                target_mac,
                ..
            }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    let track = self.arp_track(ns);
                    let name = format!(
                        "ARP {} {} {sender_ip} → {target_ip}",
                        arp_op_name(*op),
                        dir_name(*dir)
                    );
                    let mut args = vec![
                        s("op", arp_op_name(*op)),
                        s("dir", dir_name(*dir)),
                        u("ifindex", *ifindex),
                        s("sender_ip", sender_ip),
                        s("sender_mac", sender_mac),
                        s("target_ip", target_ip),
                        s("target_mac", target_mac),
                    ];
                    if event.pid != 0 {
                        args.push(u("pid", event.pid));
                        args.push(s("comm", event.comm));
                    }
                    self.instant(ts, track, name, args);
                }
            }
            EventBody::NeighUpdate(NeighUpdate {
                netns,
                ifindex,
                ip,
                mac,
                nud_state,
            }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    let track = self.arp_track(ns);
                    let args = vec![
                        s("ip", ip),
                        s("mac", mac),
                        u("ifindex", *ifindex),
                        u("nud_state", *nud_state),
                    ];
                    self.instant(ts, track, format!("neigh {ip} is {mac}"), args);
                }
            }
            EventBody::Lost(Lost { kind, count }) => {
                let track = self.tracer_track();
                self.instant(
                    ts,
                    track,
                    format!("lost {count} records"),
                    vec![u("kind", *kind), u("count", *count)],
                );
            }
            EventBody::PinAdded(PinChange { netns, pin }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    let (key, name, args) = describe_pin(pin);
                    self.open_pin(ns, ts, key, name, args);
                }
            }
            EventBody::PinRemoved(PinChange { netns, pin }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    let (key, name, args) = describe_pin(pin);
                    self.close_pin(ns, ts, key, name, args, "pin removed");
                }
            }
            EventBody::Interfaces(InterfacesRead { netns, interfaces }) => {
                if let Some(ns) = self.resolve(*netns, ts) {
                    self.interfaces(ns, ts, interfaces, "interface read");
                }
            }
            EventBody::CgroupPath(CgroupPath { .. }) => {} // folded into member annotations up front
            EventBody::MemberCgroup(MemberCgroup { .. }) | EventBody::CniResult(_) => {} // attribution only
            EventBody::CniExec(_) => {} // a sandbox's CNI track is later work (issue 13)
            EventBody::Snapshot(snapshot) => self.snapshot(ts, snapshot),
        }
    }

    fn highlight(&mut self, highlight: &Highlight) {
        if highlight.netns.is_none() {
            tracing::warn!(kind = %highlight.kind, "perfetto export: highlight without a namespace, skipped");
            return;
        }
        let ts = highlight.at_ns;
        self.first_ts = Some(self.first_ts.map_or(ts, |first| first.min(ts)));
        self.last_ts = self.last_ts.max(ts);
        let ns = match self.lookup(highlight.netns) {
            Some(ns) => ns,
            // Known only from the finding: a track without a lifetime slice.
            None => self.create(highlight.netns, Origin::FirstSeen, ts, false),
        };
        if highlight.kind == LEAKED_NETNS {
            self.namespaces[ns].leaked = true;
        }
        let track = self.namespaces[ns].track;
        let args = vec![
            s("kind", &highlight.kind),
            s("summary", &highlight.summary),
            s("netns", highlight.netns),
        ];
        let args = self.with_wall(ts, args);
        self.instant(ts, track, format!("finding: {}", highlight.kind), args);
    }

    /// Ends everything still open at the trace end and names the namespace tracks.
    fn finish(&mut self) -> ExportStats {
        let end = self.last_ts;
        for ns in 0..self.namespaces.len() {
            self.end_lifetime(ns, end, "trace end");
        }
        for track in 0..self.tracks.len() {
            while self.is_open(track) {
                self.end(end, track, vec![s("ended_by", "trace end")]);
            }
        }
        for ns in 0..self.namespaces.len() {
            let (name, description) = self.namespace_title(ns);
            let track = self.namespaces[ns].track;
            self.tracks[track].name = name;
            self.tracks[track].description = Some(description);
        }
        self.emissions.sort_by_key(|e| (e.ts, e.seq));
        ExportStats {
            namespaces: self.namespaces.len() as u64,
            tracks: self.tracks.len() as u64,
            slices: self
                .emissions
                .iter()
                .filter(|e| e.mark == Mark::Begin)
                .count() as u64,
            instants: self
                .emissions
                .iter()
                .filter(|e| e.mark == Mark::Instant)
                .count() as u64,
            ..ExportStats::default()
        }
    }

    fn namespace_title(&self, ns: usize) -> (String, String) {
        let namespace = &self.namespaces[ns];
        let mut name = format!("netns {}", namespace.id.inum);
        match &namespace.origin {
            Origin::Created {
                tgid, comm, pid, ..
            } => {
                let who = if *tgid != 0 { *tgid } else { *pid };
                name.push_str(&format!(
                    " (created by {})",
                    comm_or_pid(&Comm::from_str_lossy(comm), who)
                ));
            }
            Origin::Snapshot if namespace.is_init => name.push_str(" (init)"),
            Origin::Snapshot => name.push_str(" (existed at trace start)"),
            Origin::FirstSeen if namespace.is_init => name.push_str(" (init)"),
            Origin::FirstSeen => {}
        }
        if namespace.leaked {
            name.insert_str(0, "LEAKED: ");
        }
        let when = |ts: u64| match self.clock {
            Some(clock) => format!("{ts} ns ({})", rfc3339(clock.to_realtime_ns(ts))),
            None => format!("{ts} ns"),
        };
        let mut description = format!(
            "{}; first seen at {}",
            namespace.id,
            when(namespace.started_at)
        );
        if let Some(ts) = namespace.teardown_at {
            description.push_str(&format!("; teardown at {}", when(ts)));
        }
        if let Some(ts) = namespace.freed_at {
            description.push_str(&format!("; freed at {}", when(ts)));
        }
        (name, description)
    }

    // ---- encoding ----

    fn write<W: Write>(&self, out: W, stats: &mut ExportStats) -> io::Result<()> {
        let mut out = io::BufWriter::new(out);
        let mut packets = 0u64;
        let mut put = |out: &mut io::BufWriter<W>, packet: ProtoWriter| -> io::Result<()> {
            let mut framed = ProtoWriter::new();
            framed.bytes(pb::TRACE_PACKET, packet.as_bytes());
            packets += 1;
            out.write_all(framed.as_bytes())
        };

        // First packet: resets the sequence and makes CLOCK_MONOTONIC the trace clock, with
        // REALTIME alongside when known so the UI can show wall-clock time.
        let start = self.first_ts.unwrap_or(0);
        let mut first = ProtoWriter::new();
        first.uint(pb::packet::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE_ID);
        first.uint(
            pb::packet::SEQUENCE_FLAGS,
            pb::packet::SEQ_INCREMENTAL_STATE_CLEARED,
        );
        first.bool(pb::packet::FIRST_PACKET_ON_SEQUENCE, true);
        first.message(pb::packet::CLOCK_SNAPSHOT, |snap| {
            use pb::clock_snapshot::*;
            snap.message(CLOCKS, |c| {
                c.uint(CLOCK_ID, pb::CLOCK_MONOTONIC)
                    .uint(CLOCK_TIMESTAMP, start);
            });
            if let Some(clock) = self.clock {
                snap.message(CLOCKS, |c| {
                    c.uint(CLOCK_ID, pb::CLOCK_REALTIME)
                        .uint(CLOCK_TIMESTAMP, clock.to_realtime_ns(start));
                });
            }
            snap.uint(PRIMARY_TRACE_CLOCK, pb::CLOCK_MONOTONIC);
        });
        put(&mut out, first)?;

        for track in &self.tracks {
            let mut packet = ProtoWriter::new();
            packet.uint(pb::packet::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE_ID);
            packet.message(pb::packet::TRACK_DESCRIPTOR, |desc| {
                use pb::track_descriptor::*;
                desc.uint(UUID, track.uuid);
                if let Some(parent) = track.parent {
                    desc.uint(PARENT_UUID, self.tracks[parent].uuid);
                }
                desc.string(NAME, &track.name);
                if let Some(description) = &track.description {
                    desc.string(DESCRIPTION, description);
                }
                if let Some(ordering) = track.child_ordering {
                    desc.uint(CHILD_ORDERING, ordering);
                }
                if let Some(rank) = track.rank {
                    desc.int(SIBLING_ORDER_RANK, i64::from(rank));
                }
                // Namespace tracks with equal names (a reused inum) must stay apart.
                desc.uint(SIBLING_MERGE_BEHAVIOR, SIBLING_MERGE_BEHAVIOR_NONE);
            });
            put(&mut out, packet)?;
        }

        for emission in &self.emissions {
            let mut packet = ProtoWriter::new();
            packet.uint(pb::packet::TIMESTAMP, emission.ts);
            packet.uint(pb::packet::TIMESTAMP_CLOCK_ID, pb::CLOCK_MONOTONIC);
            packet.uint(pb::packet::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE_ID);
            packet.message(pb::packet::TRACK_EVENT, |event| {
                use pb::track_event::*;
                let kind = match emission.mark {
                    Mark::Begin => TYPE_SLICE_BEGIN,
                    Mark::End => TYPE_SLICE_END,
                    Mark::Instant => TYPE_INSTANT,
                };
                event.uint(TYPE, kind);
                event.uint(TRACK_UUID, self.tracks[emission.track].uuid);
                if emission.mark != Mark::End {
                    event.string(CATEGORIES, CATEGORY);
                    event.string(NAME, &emission.name);
                }
                for arg in &emission.args {
                    event.message(DEBUG_ANNOTATIONS, |ann| {
                        use pb::debug_annotation::*;
                        ann.string(NAME, arg.name);
                        match &arg.value {
                            ArgValue::Str(v) => ann.string(STRING_VALUE, v),
                            ArgValue::UInt(v) => ann.uint(UINT_VALUE, *v),
                            ArgValue::Int(v) => ann.int(INT_VALUE, *v),
                            ArgValue::Bool(v) => ann.bool(BOOL_VALUE, *v),
                        };
                    });
                }
            });
            put(&mut out, packet)?;
        }
        out.flush()?;
        stats.packets = packets;
        Ok(())
    }
}

/// Whether two ids name the same namespace: by cookie when both have one, else by inum.
fn same_ns(a: NsId, b: NsId) -> bool {
    if a.cookie != 0 && b.cookie != 0 {
        a.cookie == b.cookie
    } else {
        a.inum == b.inum
    }
}

#[cfg(test)]
mod tests;
