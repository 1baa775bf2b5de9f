//! Reading a trace, tolerating whatever a crash, a full disk or a bad copy did to it.
//!
//! The reader never panics on input. It reads frames in order; anything that is not a valid
//! frame (wrong magic, implausible lengths, CRC mismatch, cut short) starts a damaged region,
//! and it scans forward for the next frame magic whose frame validates. A damaged region that
//! runs to the end of the file is the "unreadable tail" (the usual SIGKILL / full-disk case).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use super::codec::{FrameDecoder, PayloadError, PayloadStats};
use super::error::TraceError;
use super::format::{
    FILE_HEADER_LEN, FILE_MAGIC, FORMAT_VERSION, FRAME_HEADER_LEN, FRAME_KIND_END,
    FRAME_KIND_EVENTS, FRAME_MAGIC, FrameHeader, KNOWN_FRAME_FLAGS, MAX_META_LEN, frame_crc,
};
use super::meta::{TraceEnd, TraceMeta};
use crate::model::Event;

/// A stretch of the file that was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRegion {
    /// File offset where the damage starts.
    pub offset: u64,
    /// Bytes skipped from there to the next valid frame.
    pub len: u64,
    pub reason: String,
}

/// Everything the reader had to skip or could not find, for the replay to report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceDamage {
    /// The header's metadata block did not validate; [`TraceReader::meta`] is then the
    /// default (empty) metadata.
    pub meta_error: Option<String>,
    /// Damaged regions in the middle of the file, each followed by a valid frame: the first
    /// [`MAX_LISTED_REGIONS`]; the rest are only counted in `unlisted_regions`.
    pub corrupt: Vec<CorruptRegion>,
    /// Damaged regions past the listed ones, and their bytes.
    pub unlisted_regions: u64,
    pub unlisted_bytes: u64,
    /// Bytes at the end of the file after the last valid frame that form no valid frame.
    pub tail_unreadable_bytes: u64,
    /// Why the tail did not read (e.g. a frame cut short).
    pub tail_reason: Option<String>,
    /// An end-of-trace frame was read: the recorder shut down in order. See
    /// [`TraceReader::end`] for its stats.
    pub end_seen: bool,
    /// Records with a tag this build does not know (a newer writer's); skipped.
    pub unknown_records: u64,
    /// CRC-valid frames of a kind this build does not know; skipped.
    pub unknown_frames: u64,
    /// Events in valid frames whose body did not decode; skipped.
    pub undecodable_events: u64,
    /// An I/O error that ended reading early.
    pub read_error: Option<String>,
}

impl TraceDamage {
    /// True when nothing was skipped or lost and the trace ended with its end frame.
    pub fn is_intact(&self) -> bool {
        self.meta_error.is_none()
            && self.corrupt.is_empty()
            && self.unlisted_regions == 0
            && self.tail_unreadable_bytes == 0
            && self.end_seen
            && self.unknown_records == 0
            && self.unknown_frames == 0
            && self.undecodable_events == 0
            && self.read_error.is_none()
    }

    /// Bytes skipped in the middle of the file plus the unreadable tail.
    pub fn skipped_bytes(&self) -> u64 {
        self.corrupt.iter().map(|r| r.len).sum::<u64>()
            + self.unlisted_bytes
            + self.tail_unreadable_bytes
    }
}

const READ_CHUNK: usize = 1 << 20;

/// Damaged regions listed one by one in [`TraceDamage::corrupt`] (and warned about).
pub const MAX_LISTED_REGIONS: usize = 256;

/// A sliding window over the input: all of it for in-memory traces, chunks for files.
/// `buf[pos..end]` is what has been read and not consumed; `buf` beyond `end` is spare room
/// (kept allocated and initialised, so short reads cost no re-zeroing).
struct Input {
    source: Option<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// File offset of `buf[pos]`.
    offset: u64,
    eof: bool,
    error: Option<std::io::Error>,
}

impl Input {
    fn in_memory(bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        Self {
            source: None,
            buf: bytes,
            pos: 0,
            end,
            offset: 0,
            eof: true,
            error: None,
        }
    }

    fn streaming(source: Box<dyn Read + Send>) -> Self {
        Self {
            source: Some(source),
            buf: Vec::new(),
            pos: 0,
            end: 0,
            offset: 0,
            eof: false,
            error: None,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Makes at least `want` bytes available unless the input ends first; returns how many
    /// are available.
    fn fill(&mut self, want: usize) -> usize {
        while self.end - self.pos < want && !self.eof {
            let Some(source) = self.source.as_mut() else {
                self.eof = true;
                break;
            };
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            let room = want.max(READ_CHUNK);
            if self.buf.len() < room {
                self.buf.resize(room, 0);
            }
            match source.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n.min(self.buf.len() - self.end),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.eof = true;
                    self.error = Some(e);
                }
            }
        }
        self.end - self.pos
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.pos);
        self.pos += n;
        self.offset += n as u64;
    }
}

/// Reads a trace file frame by frame. Iterate it (or call [`next_event`](Self::next_event))
/// for the events in file order; look at [`damage`](Self::damage) afterwards.
pub struct TraceReader {
    input: Input,
    meta: TraceMeta,
    version: u16,
    damage: TraceDamage,
    end: Option<TraceEnd>,
    decoder: FrameDecoder,
    /// The current frame's payload is `payload[..payload_len]`; the buffer only grows, so a
    /// frame costs no re-zeroing.
    payload: Vec<u8>,
    payload_len: usize,
    /// The event frame being decoded: its file offset and length.
    frame: Option<(u64, u64)>,
    frame_stats: PayloadStats,
    /// Start and reason of the damaged region being skipped, if any.
    bad_since: Option<(u64, String)>,
    done: bool,
    events_read: u64,
}

fn find_magic(window: &[u8]) -> Option<usize> {
    window
        .windows(FRAME_MAGIC.len())
        .position(|w| w == FRAME_MAGIC)
}

impl TraceReader {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| TraceError::File {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(file)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, TraceError> {
        Self::start(Input::in_memory(bytes))
    }

    /// Reads from any byte stream, a chunk at a time.
    pub fn from_reader(source: impl Read + Send + 'static) -> Result<Self, TraceError> {
        Self::start(Input::streaming(Box::new(source)))
    }

    fn start(mut input: Input) -> Result<Self, TraceError> {
        let avail = input.fill(FILE_HEADER_LEN);
        let head = input.available();
        if avail < FILE_MAGIC.len() || head[..FILE_MAGIC.len()] != FILE_MAGIC {
            if let Some(e) = input.error.take() {
                return Err(TraceError::Io(e));
            }
            return Err(TraceError::NotATrace);
        }
        if avail < 10 {
            return Err(TraceError::TruncatedHeader { len: avail });
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        if version != FORMAT_VERSION {
            return Err(TraceError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if avail < FILE_HEADER_LEN {
            return Err(TraceError::TruncatedHeader { len: avail });
        }
        // head[10..12]: header flags; none defined yet, ignored.
        let meta_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        let meta_crc = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
        input.consume(FILE_HEADER_LEN);

        let mut reader = Self {
            input,
            meta: TraceMeta::default(),
            version,
            damage: TraceDamage::default(),
            end: None,
            decoder: FrameDecoder::default(),
            payload: Vec::new(),
            payload_len: 0,
            frame: None,
            frame_stats: PayloadStats::default(),
            bad_since: None,
            done: false,
            events_read: 0,
        };
        let meta_error = if meta_len > MAX_META_LEN {
            Some(format!(
                "metadata length {meta_len} exceeds the {MAX_META_LEN} limit"
            ))
        } else if reader.input.fill(meta_len as usize) < meta_len as usize {
            Some(format!("metadata block cut short (needs {meta_len} bytes)"))
        } else {
            let block = &reader.input.available()[..meta_len as usize];
            if crc32c::crc32c(block) != meta_crc {
                Some("metadata block CRC mismatch".to_owned())
            } else {
                // The block is intact, so frames start right after it even if it does not parse.
                let parsed = serde_json::from_slice::<TraceMeta>(block);
                reader.input.consume(meta_len as usize);
                match parsed {
                    Ok(meta) => {
                        reader.meta = meta;
                        None
                    }
                    Err(e) => Some(format!("metadata does not parse: {e}")),
                }
            }
        };
        if let Some(reason) = meta_error {
            tracing::warn!("trace metadata unreadable ({reason}); replaying events without it");
            if reader.bad_since.is_none() && reader.input.offset == FILE_HEADER_LEN as u64 {
                // Where the frames start is unknown: the resync scan finds the first one.
                reader.bad_since = Some((
                    reader.input.offset,
                    format!("unreadable metadata block: {reason}"),
                ));
            }
            reader.damage.meta_error = Some(reason);
        }
        Ok(reader)
    }

    pub fn meta(&self) -> &TraceMeta {
        &self.meta
    }

    /// The file's format version (always [`FORMAT_VERSION`] for a reader that opened).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Damage found so far; complete once the events are drained.
    pub fn damage(&self) -> &TraceDamage {
        &self.damage
    }

    /// The end-of-trace frame's contents, once read.
    pub fn end(&self) -> Option<&TraceEnd> {
        self.end.as_ref()
    }

    pub fn events_read(&self) -> u64 {
        self.events_read
    }

    /// The next event in file order, or `None` at the end of the readable data.
    pub fn next_event(&mut self) -> Option<Event> {
        self.advance(|ev| ev)
    }

    /// Calls `f` with each remaining event in file order: the same events as
    /// [`next_event`](Self::next_event), lent instead of moved out (an `Event` is over a
    /// hundred bytes, and replay copies nothing it only looks at).
    pub fn for_each_event(&mut self, mut f: impl FnMut(&Event)) {
        while self.advance(|ev| f(&ev)).is_some() {}
    }

    /// Decodes the next event and hands it to `take` where it was decoded; `None` at the end
    /// of the readable data.
    #[inline(always)]
    fn advance<R>(&mut self, take: impl FnOnce(Event) -> R) -> Option<R> {
        loop {
            if let Some((at, frame_len)) = self.frame {
                let payload = &self.payload[..self.payload_len];
                match self.decoder.next_event(payload, &mut self.frame_stats) {
                    Ok(Some(ev)) => {
                        self.events_read += 1;
                        return Some(take(ev));
                    }
                    Ok(None) => self.end_frame(at, frame_len, None),
                    Err(e) => self.end_frame(at, frame_len, Some(e)),
                }
                continue;
            }
            if self.done {
                return None;
            }
            self.read_next_frame();
        }
    }

    /// The event frame at `at` is decoded (up to `broken`, if its payload breaks): its
    /// skipped records count as damage.
    #[inline(never)]
    fn end_frame(&mut self, at: u64, frame_len: u64, broken: Option<PayloadError>) {
        self.frame = None;
        let stats = std::mem::take(&mut self.frame_stats);
        self.damage.unknown_records += stats.unknown_records;
        self.damage.undecodable_events += stats.bad_events;
        if let Some((offset, reason)) = stats.first_bad_event {
            tracing::warn!(
                "trace: frame at offset {at}: skipped {} undecodable event(s), first at payload offset {offset}: {reason}",
                stats.bad_events
            );
        }
        if let Some(e) = broken {
            self.record_skipped(
                at,
                frame_len,
                format!(
                    "frame payload breaks at record offset {} ({}); events before it kept",
                    e.record_offset, e.reason
                ),
            );
        }
    }

    fn mark_bad(&mut self, offset: u64, reason: impl FnOnce() -> String) {
        if self.bad_since.is_none() {
            self.bad_since = Some((offset, reason()));
        }
    }

    /// Moves past the byte at the current offset to the next frame-magic candidate (or EOF).
    fn skip_to_next_magic(&mut self) {
        self.input.consume(1);
        loop {
            let window = self.input.available();
            if let Some(i) = find_magic(window) {
                self.input.consume(i);
                return;
            }
            let len = window.len();
            if self.input.eof {
                self.input.consume(len);
                return;
            }
            // Keep a possible partial magic at the end of the window.
            let keep = len.min(FRAME_MAGIC.len() - 1);
            self.input.consume(len - keep);
            self.input.fill(keep + 1);
        }
    }

    fn record_skipped(&mut self, offset: u64, len: u64, reason: String) {
        // A crafted file can be damage from end to end: list and warn about so many regions,
        // count the rest.
        if self.damage.corrupt.len() >= MAX_LISTED_REGIONS {
            if self.damage.unlisted_regions == 0 {
                tracing::warn!(
                    "trace: more than {MAX_LISTED_REGIONS} damaged regions; the rest are only counted"
                );
            }
            self.damage.unlisted_regions += 1;
            self.damage.unlisted_bytes += len;
            return;
        }
        tracing::warn!("trace: skipping {len} bytes at offset {offset}: {reason}");
        self.damage.corrupt.push(CorruptRegion {
            offset,
            len,
            reason,
        });
    }

    /// A valid frame starts at `offset`: the damaged region before it, if any, is complete.
    fn close_bad_region(&mut self, offset: u64) {
        if let Some((start, reason)) = self.bad_since.take() {
            self.record_skipped(start, offset - start, reason);
        }
    }

    fn finish_at_eof(&mut self) {
        if let Some((start, reason)) = self.bad_since.take() {
            let len = self.input.offset - start;
            tracing::warn!("trace: last {len} bytes (from offset {start}) unreadable: {reason}");
            self.damage.tail_unreadable_bytes = len;
            self.damage.tail_reason = Some(reason);
        }
        if let Some(e) = self.input.error.take() {
            tracing::warn!("trace: read error at offset {}: {e}", self.input.offset);
            self.damage.read_error = Some(e.to_string());
        }
        self.done = true;
    }

    /// Reads frames until an event frame starts, or the input ends. Once per frame: kept out
    /// of line so that `next_event`, called per event, stays small (no large stack frame).
    #[inline(never)]
    fn read_next_frame(&mut self) {
        while self.frame.is_none() {
            let avail = self.input.fill(FRAME_HEADER_LEN);
            let at = self.input.offset;
            if avail == 0 {
                self.finish_at_eof();
                return;
            }
            let window = self.input.available();
            let magic_len = avail.min(FRAME_MAGIC.len());
            if window[..magic_len] != FRAME_MAGIC[..magic_len] {
                self.mark_bad(at, || "no frame magic".to_owned());
                self.skip_to_next_magic();
                continue;
            }
            if avail < FRAME_HEADER_LEN {
                self.mark_bad(at, || {
                    format!("frame header cut short ({avail} of {FRAME_HEADER_LEN} bytes)")
                });
                self.skip_to_next_magic();
                continue;
            }
            let mut raw_header = [0u8; FRAME_HEADER_LEN];
            raw_header.copy_from_slice(&window[..FRAME_HEADER_LEN]);
            let header = FrameHeader::parse(&raw_header);
            if let Some(why) = header.implausible() {
                self.mark_bad(at, || why);
                self.skip_to_next_magic();
                continue;
            }
            let total = FRAME_HEADER_LEN + header.payload_len as usize;
            let have = self.input.fill(total);
            if have < total {
                self.mark_bad(at, || format!("frame cut short ({have} of {total} bytes)"));
                self.skip_to_next_magic();
                continue;
            }
            let stored = &self.input.available()[FRAME_HEADER_LEN..total];
            if frame_crc(&raw_header, stored) != header.crc {
                self.mark_bad(at, || "frame CRC mismatch".to_owned());
                self.skip_to_next_magic();
                continue;
            }
            self.close_bad_region(at);
            let frame_len = total as u64;
            if header.kind != FRAME_KIND_EVENTS && header.kind != FRAME_KIND_END {
                tracing::warn!(
                    "trace: skipping frame of unknown kind {} at offset {at}",
                    header.kind
                );
                self.damage.unknown_frames += 1;
                self.input.consume(total);
                continue;
            }
            if header.flags & !KNOWN_FRAME_FLAGS != 0 {
                self.input.consume(total);
                self.record_skipped(
                    at,
                    frame_len,
                    format!("unsupported frame flags {:#04x}", header.flags),
                );
                continue;
            }
            // Bounded by MAX_FRAME_PAYLOAD (`implausible` above).
            let payload_len = header.uncompressed_len as usize;
            if self.payload.len() < payload_len {
                self.payload.resize(payload_len, 0);
            }
            self.payload_len = payload_len;
            let payload = &mut self.payload[..payload_len];
            if header.flags & super::format::FRAME_FLAG_LZ4 != 0 {
                let stored = &self.input.available()[FRAME_HEADER_LEN..total];
                match lz4_flex::block::decompress_into(stored, payload) {
                    Ok(n) if n == payload_len => {}
                    Ok(n) => {
                        self.input.consume(total);
                        self.record_skipped(
                            at,
                            frame_len,
                            format!(
                                "lz4 payload decompressed to {n} bytes, header says {}",
                                header.uncompressed_len
                            ),
                        );
                        continue;
                    }
                    Err(e) => {
                        self.input.consume(total);
                        self.record_skipped(
                            at,
                            frame_len,
                            format!("lz4 payload does not decompress: {e}"),
                        );
                        continue;
                    }
                }
            } else {
                // `implausible` checked that an uncompressed frame stores exactly this much.
                payload.copy_from_slice(&self.input.available()[FRAME_HEADER_LEN..total]);
            }
            self.input.consume(total);
            if header.kind == FRAME_KIND_END {
                match serde_json::from_slice::<TraceEnd>(&self.payload[..payload_len]) {
                    Ok(end) => {
                        self.end = Some(end);
                        self.damage.end_seen = true;
                    }
                    Err(e) => {
                        self.record_skipped(at, frame_len, format!("end frame does not parse: {e}"))
                    }
                }
                continue;
            }
            self.decoder.start_frame();
            self.frame = Some((at, frame_len));
        }
    }
}

impl Iterator for TraceReader {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.next_event()
    }
}
