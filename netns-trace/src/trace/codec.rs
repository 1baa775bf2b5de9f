//! Event records inside an event-batch frame payload.
//!
//! A payload is a sequence of records `[tag u8][body len varint][body]`. Tags below
//! [`FIRST_EVENT_TAG`] define per-frame intern-table entries (comm, namespace id, string);
//! the rest are events whose body starts with the common header
//! `ts delta (zigzag) | pid | tgid - pid (zigzag) | comm ref`. Tables and the timestamp base
//! reset at every frame, so each frame decodes on its own (which is what makes resync work).
//!
//! The encoding follows the model types only, never a kernel struct layout.

use std::collections::VecDeque;

use netns_trace_common::EventKind;

use super::format::{Cursor, DecodeError, put_varint, zigzag};
use super::wire::{Interner, Reader, TAG_DEF_COMM, TAG_DEF_NSID, TAG_DEF_STR, Tables, Writer};
use crate::model::{Comm, Event, EventBody, NsId};

/// Tags below this define intern-table entries; the rest are [`EventKind`] ids.
pub const FIRST_EVENT_TAG: u8 = 0x10;

// ---------------------------------------------------------------------------------------------
// Encoding

/// Builds one event-batch payload.
#[derive(Default)]
pub struct FrameEncoder {
    /// The payload so far.
    pub buf: Vec<u8>,
    body: Vec<u8>,
    interner: Interner,
    prev_ts: u64,
    events: u32,
}

impl FrameEncoder {
    pub fn events(&self) -> u32 {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Starts a new frame: empty payload, empty tables, timestamp base 0.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.interner.clear();
        self.prev_ts = 0;
        self.events = 0;
    }

    /// Appends one event (and any table definitions it needs) and returns the number of
    /// payload bytes it added; or, when that would take the payload past `limit`, leaves the
    /// frame exactly as it was and returns what the event alone would have needed.
    pub fn push(&mut self, ev: &Event, limit: usize) -> Result<usize, usize> {
        let start = self.buf.len();
        let saved = (self.prev_ts, self.interner.sizes());
        self.encode(ev);
        let added = self.buf.len() - start;
        if self.buf.len() > limit {
            self.buf.truncate(start);
            self.prev_ts = saved.0;
            self.interner.roll_back(saved.1);
            return Err(added);
        }
        self.events += 1;
        Ok(added)
    }

    fn encode(&mut self, ev: &Event) {
        let Self {
            buf,
            body,
            interner,
            prev_ts,
            ..
        } = self;
        body.clear();
        put_varint(body, zigzag(ev.ts_ns.wrapping_sub(*prev_ts) as i64));
        *prev_ts = ev.ts_ns;
        let mut w = Writer::new(body, buf, interner);
        w.varint(u64::from(ev.pid));
        w.varint(zigzag(i64::from(ev.tgid) - i64::from(ev.pid)));
        w.comm(ev.comm);
        ev.body.put(&mut w);
        buf.push(ev.body.kind() as u8);
        put_varint(buf, body.len() as u64);
        buf.extend_from_slice(body);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// What went wrong in a frame whose CRC was fine (so: a writer bug or a format this build
/// half-understands), with the payload offset of the offending record.
#[derive(Debug)]
pub struct PayloadError {
    pub record_offset: usize,
    pub reason: DecodeError,
}

/// Outcome counters of decoding one payload.
#[derive(Debug, Default)]
pub struct PayloadStats {
    /// Records with a tag this build does not know (skipped, as the versioning rules allow).
    pub unknown_records: u64,
    /// Event records with a known tag whose body did not decode; skipped one by one.
    pub bad_events: u64,
    pub first_bad_event: Option<(usize, DecodeError)>,
}

/// Reading-side per-frame tables. Strings are kept as ranges into the payload, validated once
/// at definition, so hot events never allocate for them.
#[derive(Default)]
pub struct FrameDecoder {
    comms: Vec<Comm>,
    nsids: Vec<NsId>,
    strings: Vec<(u32, u32)>,
    /// Payload offset of the next record.
    pos: usize,
    prev_ts: u64,
}

impl FrameDecoder {
    /// Decodes a whole event-batch payload into `out`. A bad event body is skipped (counted in
    /// the stats); a broken record framing or timestamp chain stops the frame with an error,
    /// keeping what was decoded before it.
    pub fn decode(
        &mut self,
        payload: &[u8],
        out: &mut VecDeque<Event>,
        stats: &mut PayloadStats,
    ) -> Result<(), PayloadError> {
        self.start_frame();
        while let Some(ev) = self.next_event(payload, stats)? {
            out.push_back(ev);
        }
        Ok(())
    }

    /// Starts a new payload: empty tables, timestamp base 0, at its first record.
    pub fn start_frame(&mut self) {
        self.comms.clear();
        self.nsids.clear();
        self.strings.clear();
        self.pos = 0;
        self.prev_ts = 0;
    }

    /// The next event of `payload` (the same payload since [`start_frame`](Self::start_frame)),
    /// or `None` at its end. Events one at a time, so the reader hands each on without
    /// staging the frame's events in a queue. Errors as in [`decode`](Self::decode); after an
    /// error the rest of the payload is unusable.
    pub fn next_event(
        &mut self,
        payload: &[u8],
        stats: &mut PayloadStats,
    ) -> Result<Option<Event>, PayloadError> {
        let mut cur = Cursor::at(payload, self.pos);
        while !cur.is_empty() {
            let record_offset = cur.position();
            let fail = |reason| PayloadError {
                record_offset,
                reason,
            };
            let tag = cur.u8().map_err(fail)?;
            let len = cur.varint().map_err(fail)?;
            let len = usize::try_from(len).map_err(|_| fail("record length overflow"))?;
            let body_start = cur.position();
            let body = cur
                .bytes(len)
                .map_err(|_| fail("record runs past the end of the frame"))?;
            self.pos = cur.position();
            let mut b = Cursor::new(body);
            match tag {
                TAG_DEF_COMM => {
                    if body.len() > 16 {
                        return Err(fail("comm definition longer than 16 bytes"));
                    }
                    let mut c = [0u8; 16];
                    c[..body.len()].copy_from_slice(body);
                    self.comms.push(Comm(c));
                }
                TAG_DEF_NSID => {
                    let cookie = b.varint().map_err(fail)?;
                    let inum = b.varint_u32().map_err(fail)?;
                    self.nsids.push(NsId::new(cookie, inum));
                }
                TAG_DEF_STR => {
                    if std::str::from_utf8(body).is_err() {
                        return Err(fail("string definition is not UTF-8"));
                    }
                    // Payloads are bounded by MAX_FRAME_PAYLOAD, so offsets fit u32.
                    self.strings.push((body_start as u32, len as u32));
                }
                t if t < FIRST_EVENT_TAG => stats.unknown_records += 1,
                _ => {
                    // The timestamp delta comes first in every event body, known tag or not;
                    // losing it would shift every later timestamp of the frame.
                    let delta = b.zigzag().map_err(fail)?;
                    let ts = self.prev_ts.wrapping_add(delta as u64);
                    self.prev_ts = ts;
                    let tables = Tables {
                        payload,
                        comms: &self.comms,
                        nsids: &self.nsids,
                        strings: &self.strings,
                    };
                    match decode_event(tag, ts, &mut b, &tables) {
                        Ok(Some(ev)) => return Ok(Some(ev)),
                        Ok(None) => stats.unknown_records += 1,
                        Err(reason) => {
                            stats.bad_events += 1;
                            stats.first_bad_event.get_or_insert((record_offset, reason));
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Decodes the rest of an event body (after the timestamp delta). `Ok(None)` for a tag this
/// build does not know. Trailing bytes after the known fields are ignored: that is where a
/// later revision of format version 1 may append fields.
#[inline(always)]
fn decode_event<'a>(
    tag: u8,
    ts_ns: u64,
    c: &mut Cursor<'a>,
    t: &Tables<'a>,
) -> Result<Option<Event>, DecodeError> {
    let Ok(kind) = EventKind::try_from(tag) else {
        return Ok(None);
    };
    let mut r = Reader::new(c, t);
    let pid = u32::try_from(r.varint()?).map_err(|_| "value does not fit 32 bits")?;
    // tgid is stored as a delta from pid; a corrupt delta must not overflow the sum.
    let tgid = i64::from(pid)
        .checked_add(super::format::unzigzag(r.varint()?))
        .and_then(|v| u32::try_from(v).ok())
        .ok_or("tgid out of range")?;
    let comm = r.comm()?;
    let body = EventBody::get(kind, &mut r)?;
    Ok(Some(Event {
        ts_ns,
        pid,
        tgid,
        comm,
        body,
    }))
}
