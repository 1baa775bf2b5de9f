//! Tracks, slices and instants, and their encoding as a `perfetto.protos.Trace`: the part of
//! the export that knows Perfetto (track uuids, ordering, begin/end pairing, field numbers) and
//! nothing about namespaces.

use std::io::{self, Write};

use crate::export::ClockBase;
use crate::export::protobuf::ProtoWriter;

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
pub(super) const SEQUENCE_ID: u64 = 0x6e73;
/// Track uuids only need to be unique in the file; a recognisable base helps when merging.
const UUID_BASE: u64 = 0x6e65_746e_7300_0000;
const CATEGORY: &str = "netns";

#[derive(Clone, Debug)]
pub(super) enum ArgValue {
    Str(String),
    UInt(u64),
    Int(i64),
    Bool(bool),
}

/// One debug annotation.
#[derive(Clone, Debug)]
pub(super) struct Arg {
    name: &'static str,
    value: ArgValue,
}

pub(super) fn s(name: &'static str, value: impl ToString) -> Arg {
    Arg {
        name,
        value: ArgValue::Str(value.to_string()),
    }
}
pub(super) fn u(name: &'static str, value: impl Into<u64>) -> Arg {
    Arg {
        name,
        value: ArgValue::UInt(value.into()),
    }
}
pub(super) fn i(name: &'static str, value: i64) -> Arg {
    Arg {
        name,
        value: ArgValue::Int(value),
    }
}
pub(super) fn b(name: &'static str, value: bool) -> Arg {
    Arg {
        name,
        value: ArgValue::Bool(value),
    }
}

/// Index of a track in its [`Layout`].
pub(super) type TrackId = usize;

/// Where a track sits among its siblings.
#[derive(Clone, Copy, Debug)]
pub(super) enum Order {
    /// The parent orders its children.
    Inherited,
    /// Its children by their first event (the namespace list).
    ChildrenByTime,
    /// Its children by their rank (a namespace's members, pins, devices).
    ChildrenByRank,
}

#[derive(Debug)]
struct TrackDef {
    parent: Option<TrackId>,
    name: String,
    description: Option<String>,
    order: Order,
    rank: Option<i32>,
}

/// A span of time on a track. Slices on one track either follow each other or nest (a deeper
/// one inside a shallower one); [`Layout::write`] enforces that.
#[derive(Debug)]
pub(super) struct Slice {
    pub begin: u64,
    pub end: u64,
    /// 0 for a track's own slices, 1 for slices inside them.
    pub depth: u8,
    pub name: String,
    pub begin_args: Vec<Arg>,
    pub end_args: Vec<Arg>,
}

#[derive(Debug)]
struct Instant {
    ts: u64,
    name: String,
    args: Vec<Arg>,
}

/// What the written trace holds.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Written {
    pub tracks: u64,
    pub slices: u64,
    pub instants: u64,
    pub packets: u64,
}

/// The trace before encoding.
#[derive(Debug, Default)]
pub(super) struct Layout {
    tracks: Vec<TrackDef>,
    slices: Vec<(TrackId, Slice)>,
    instants: Vec<(TrackId, Instant)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Begin,
    End,
    Instant,
}

/// One TrackEvent, before encoding.
struct Emission<'a> {
    ts: u64,
    track: TrackId,
    mark: Mark,
    name: &'a str,
    args: &'a [Arg],
}

impl Layout {
    pub fn track(
        &mut self,
        parent: Option<TrackId>,
        name: String,
        order: Order,
        rank: Option<i32>,
    ) -> TrackId {
        self.tracks.push(TrackDef {
            parent,
            name,
            description: None,
            order,
            rank,
        });
        self.tracks.len() - 1
    }

    pub fn describe(&mut self, track: TrackId, description: String) {
        self.tracks[track].description = Some(description);
    }

    pub fn slice(&mut self, track: TrackId, slice: Slice) {
        self.slices.push((track, slice));
    }

    pub fn instant(&mut self, track: TrackId, ts: u64, name: String, args: Vec<Arg>) {
        self.instants.push((track, Instant { ts, name, args }));
    }

    /// Every TrackEvent in time order. Per track, slices become properly nested begin/end
    /// pairs: sorted by begin (outer first), each clamped inside the slice it starts in, so
    /// that reordered input cannot unbalance a track.
    fn emissions(&self) -> Vec<Emission<'_>> {
        let mut by_track: Vec<Vec<&Slice>> = vec![Vec::new(); self.tracks.len()];
        for (track, slice) in &self.slices {
            by_track[*track].push(slice);
        }
        let mut out = Vec::with_capacity(2 * self.slices.len() + self.instants.len());
        for (track, slices) in by_track.iter_mut().enumerate() {
            slices.sort_by_key(|s| (s.begin, s.depth));
            // (end, depth, end args) of the slices still open, innermost last.
            let mut open: Vec<(u64, u8, &[Arg])> = Vec::new();
            for slice in slices.iter() {
                while let Some(&(end, depth, args)) = open.last() {
                    if end > slice.begin || (end == slice.begin && depth < slice.depth) {
                        break;
                    }
                    open.pop();
                    out.push(Emission {
                        ts: end,
                        track,
                        mark: Mark::End,
                        name: "",
                        args,
                    });
                }
                let end = match open.last() {
                    Some(&(outer_end, _, _)) => slice.end.clamp(slice.begin, outer_end),
                    None => slice.end.max(slice.begin),
                };
                out.push(Emission {
                    ts: slice.begin,
                    track,
                    mark: Mark::Begin,
                    name: &slice.name,
                    args: &slice.begin_args,
                });
                open.push((end, slice.depth, &slice.end_args));
            }
            while let Some((end, _, args)) = open.pop() {
                out.push(Emission {
                    ts: end,
                    track,
                    mark: Mark::End,
                    name: "",
                    args,
                });
            }
        }
        out.extend(self.instants.iter().map(|(track, instant)| Emission {
            ts: instant.ts,
            track: *track,
            mark: Mark::Instant,
            name: &instant.name,
            args: &instant.args,
        }));
        // Stable: per track, marks stay in the order built above.
        out.sort_by_key(|e| e.ts);
        out
    }

    /// Encodes the trace. `first_ts` anchors the clock snapshot.
    pub fn write<W: Write>(
        &self,
        clock: Option<ClockBase>,
        first_ts: u64,
        out: W,
    ) -> io::Result<Written> {
        let emissions = self.emissions();
        let mut written = Written {
            tracks: self.tracks.len() as u64,
            slices: emissions.iter().filter(|e| e.mark == Mark::Begin).count() as u64,
            instants: emissions.iter().filter(|e| e.mark == Mark::Instant).count() as u64,
            packets: 0,
        };
        let mut out = io::BufWriter::new(out);
        let mut put = |out: &mut io::BufWriter<W>, packet: ProtoWriter| -> io::Result<()> {
            let mut framed = ProtoWriter::new();
            framed.bytes(pb::TRACE_PACKET, packet.as_bytes());
            written.packets += 1;
            out.write_all(framed.as_bytes())
        };

        // First packet: resets the sequence and makes CLOCK_MONOTONIC the trace clock, with
        // REALTIME alongside when known so the UI can show wall-clock time.
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
                    .uint(CLOCK_TIMESTAMP, first_ts);
            });
            if let Some(clock) = clock {
                snap.message(CLOCKS, |c| {
                    c.uint(CLOCK_ID, pb::CLOCK_REALTIME)
                        .uint(CLOCK_TIMESTAMP, clock.to_realtime_ns(first_ts));
                });
            }
            snap.uint(PRIMARY_TRACE_CLOCK, pb::CLOCK_MONOTONIC);
        });
        put(&mut out, first)?;

        let uuid = |track: TrackId| UUID_BASE + track as u64;
        for (index, track) in self.tracks.iter().enumerate() {
            let mut packet = ProtoWriter::new();
            packet.uint(pb::packet::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE_ID);
            packet.message(pb::packet::TRACK_DESCRIPTOR, |desc| {
                use pb::track_descriptor::*;
                desc.uint(UUID, uuid(index));
                if let Some(parent) = track.parent {
                    desc.uint(PARENT_UUID, uuid(parent));
                }
                desc.string(NAME, &track.name);
                if let Some(description) = &track.description {
                    desc.string(DESCRIPTION, description);
                }
                match track.order {
                    Order::Inherited => {}
                    Order::ChildrenByTime => {
                        desc.uint(CHILD_ORDERING, CHILD_ORDERING_CHRONOLOGICAL);
                    }
                    Order::ChildrenByRank => {
                        desc.uint(CHILD_ORDERING, CHILD_ORDERING_EXPLICIT);
                    }
                }
                if let Some(rank) = track.rank {
                    desc.int(SIBLING_ORDER_RANK, i64::from(rank));
                }
                // Namespace tracks with equal names (a reused inum) must stay apart.
                desc.uint(SIBLING_MERGE_BEHAVIOR, SIBLING_MERGE_BEHAVIOR_NONE);
            });
            put(&mut out, packet)?;
        }

        for emission in &emissions {
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
                event.uint(TRACK_UUID, uuid(emission.track));
                if emission.mark != Mark::End {
                    event.string(CATEGORIES, CATEGORY);
                    event.string(NAME, emission.name);
                }
                for arg in emission.args {
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
        Ok(written)
    }
}
