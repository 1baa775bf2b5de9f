//! Writing a trace: header + metadata once, then self-delimiting frames.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::codec::FrameEncoder;
use super::error::TraceError;
use super::format::{
    FILE_MAGIC, FORMAT_VERSION, FRAME_FLAG_LZ4, FRAME_HEADER_LEN, FRAME_KIND_END,
    FRAME_KIND_EVENTS, FrameHeader, MAX_FRAME_PAYLOAD, frame_crc,
};
use super::meta::{TraceEnd, TraceMeta};
use crate::model::Event;

/// Whether frame payloads are lz4-compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Store payloads as they are.
    Never,
    /// Compress a frame only when that saves at least an eighth of it: lz4 decompression is
    /// cheap but not free, and small or already-dense frames barely shrink.
    Auto,
    /// Compress every frame that gets any smaller.
    Always,
}

#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    pub compression: Compression,
    /// A frame is written once its uncompressed payload reaches this many bytes.
    pub max_frame_bytes: usize,
    /// ... or holds this many events, whichever comes first.
    pub max_frame_events: u32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Auto,
            max_frame_bytes: 64 * 1024,
            max_frame_events: 8192,
        }
    }
}

/// Writes a trace file. Events are buffered into a frame that goes out when it is full, on
/// [`flush`](Self::flush), and on [`finish`](Self::finish). If a write fails the events of that
/// frame are lost, the error is returned, and the writer stays usable; whatever part of the
/// frame reached the file is skipped by readers, which resync on the next frame.
pub struct TraceWriter<W: Write = File> {
    /// `None` only after `finish`, so `Drop` knows there is nothing left to do.
    sink: Option<W>,
    /// A second handle on the file (when writing to one) for fsync at `finish`.
    sync_file: Option<File>,
    options: WriterOptions,
    encoder: FrameEncoder,
    frame: Vec<u8>,
    bytes_written: u64,
    events_written: u64,
}

impl TraceWriter<File> {
    /// Creates the trace file at `path` with mode 0600. A symlink at `path` is always refused
    /// (O_NOFOLLOW); an existing file is refused unless `overwrite` (O_EXCL otherwise); a FIFO
    /// or device is refused even with `overwrite`.
    pub fn create(path: &Path, meta: &TraceMeta, overwrite: bool) -> Result<Self, TraceError> {
        Self::create_with(path, meta, overwrite, WriterOptions::default())
    }

    pub fn create_with(
        path: &Path,
        meta: &TraceMeta,
        overwrite: bool,
        options: WriterOptions,
    ) -> Result<Self, TraceError> {
        let file = crate::output::create_private(path, overwrite)?;
        let file_err = |source| TraceError::File {
            path: path.to_owned(),
            source,
        };
        let sync_file = file.try_clone().map_err(file_err)?;
        let mut w = Self::from_writer_with(file, meta, options)?;
        w.sync_file = Some(sync_file);
        Ok(w)
    }
}

impl<W: Write> TraceWriter<W> {
    /// A writer into any byte sink (tests, in-memory traces). Writes the header at once.
    pub fn from_writer(sink: W, meta: &TraceMeta) -> Result<Self, TraceError> {
        Self::from_writer_with(sink, meta, WriterOptions::default())
    }

    pub fn from_writer_with(
        mut sink: W,
        meta: &TraceMeta,
        options: WriterOptions,
    ) -> Result<Self, TraceError> {
        let meta_json = serde_json::to_vec(meta)?;
        let mut header = Vec::with_capacity(20 + meta_json.len());
        header.extend_from_slice(&FILE_MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes()); // header flags, none defined
        header.extend_from_slice(&(meta_json.len() as u32).to_le_bytes());
        header.extend_from_slice(&crc32c::crc32c(&meta_json).to_le_bytes());
        header.extend_from_slice(&meta_json);
        sink.write_all(&header)?;
        sink.flush()?;
        let options = WriterOptions {
            max_frame_bytes: options.max_frame_bytes.clamp(1, MAX_FRAME_PAYLOAD as usize),
            max_frame_events: options.max_frame_events.max(1),
            ..options
        };
        Ok(Self {
            sink: Some(sink),
            sync_file: None,
            options,
            encoder: FrameEncoder::default(),
            frame: Vec::new(),
            bytes_written: header.len() as u64,
            events_written: 0,
        })
    }

    /// Buffers one event; writes the current frame when it is full.
    pub fn write_event(&mut self, ev: &Event) -> Result<(), TraceError> {
        let limit = MAX_FRAME_PAYLOAD as usize;
        if self.encoder.push(ev, limit).is_err() {
            // Too big to join this frame: ship the frame, then try an empty one.
            if !self.encoder.is_empty() {
                self.write_frame()?;
            }
            if let Err(bytes) = self.encoder.push(ev, limit) {
                return Err(TraceError::EventTooLarge {
                    bytes,
                    limit: MAX_FRAME_PAYLOAD,
                });
            }
        }
        if self.encoder.buf.len() >= self.options.max_frame_bytes
            || self.encoder.events() >= self.options.max_frame_events
        {
            self.write_frame()?;
        }
        Ok(())
    }

    /// Writes the pending frame, if any, and flushes the sink (no fsync): after this returns,
    /// a SIGKILL of the recorder loses none of the events written so far.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        if !self.encoder.is_empty() {
            self.write_frame()?;
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.flush()?;
        }
        Ok(())
    }

    /// Bytes handed to the sink so far (header and whole frames).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Events in frames handed to the sink so far (not counting the pending frame).
    pub fn events_written(&self) -> u64 {
        self.events_written
    }

    /// Events accepted but still waiting in the pending frame.
    pub fn events_pending(&self) -> u32 {
        self.encoder.events()
    }

    /// Writes the pending frame and the end-of-trace frame, flushes, and fsyncs a file.
    pub fn finish(self, end: &TraceEnd) -> Result<(), TraceError> {
        self.finish_into_inner(end).map(drop)
    }

    /// [`finish`](Self::finish), handing back the sink (an in-memory trace's bytes).
    pub fn finish_into_inner(mut self, end: &TraceEnd) -> Result<W, TraceError> {
        self.flush()?;
        let end = TraceEnd {
            events_written: self.events_written,
            ..end.clone()
        };
        let payload = serde_json::to_vec(&end)?;
        self.emit_frame(FRAME_KIND_END, &payload, false)?;
        let mut sink = self.sink.take().expect("sink is present until finish");
        sink.flush()?;
        if let Some(file) = &self.sync_file {
            file.sync_all()?;
        }
        Ok(sink)
    }

    fn write_frame(&mut self) -> Result<(), TraceError> {
        let events = u64::from(self.encoder.events());
        let payload = std::mem::take(&mut self.encoder.buf);
        let compress = self.options.compression != Compression::Never;
        let result = self.emit_frame(FRAME_KIND_EVENTS, &payload, compress);
        self.encoder.buf = payload;
        self.encoder.reset();
        result?;
        self.events_written += events;
        Ok(())
    }

    /// Assembles one frame (compressing it if asked and worth it) and writes it in one call.
    fn emit_frame(&mut self, kind: u8, payload: &[u8], compress: bool) -> Result<(), TraceError> {
        self.frame.clear();
        self.frame.resize(FRAME_HEADER_LEN, 0);
        let mut flags = 0;
        if compress && !payload.is_empty() {
            let max = lz4_flex::block::get_maximum_output_size(payload.len());
            self.frame.resize(FRAME_HEADER_LEN + max, 0);
            let n = lz4_flex::block::compress_into(payload, &mut self.frame[FRAME_HEADER_LEN..])
                .map_err(|e| std::io::Error::other(format!("lz4: {e}")))?;
            let worth = match self.options.compression {
                Compression::Always => n < payload.len(),
                _ => n <= payload.len() - payload.len() / 8,
            };
            if worth {
                self.frame.truncate(FRAME_HEADER_LEN + n);
                flags |= FRAME_FLAG_LZ4;
            } else {
                self.frame.truncate(FRAME_HEADER_LEN);
            }
        }
        if flags & FRAME_FLAG_LZ4 == 0 {
            self.frame.extend_from_slice(payload);
        }
        let stored_len = self.frame.len() - FRAME_HEADER_LEN;
        let mut header = FrameHeader {
            kind,
            flags,
            payload_len: stored_len as u32,
            uncompressed_len: payload.len() as u32,
            crc: 0,
        };
        header.crc = frame_crc(&header.encode(), &self.frame[FRAME_HEADER_LEN..]);
        self.frame[..FRAME_HEADER_LEN].copy_from_slice(&header.encode());
        let sink = self.sink.as_mut().expect("sink is present until finish");
        sink.write_all(&self.frame)?;
        self.bytes_written += self.frame.len() as u64;
        Ok(())
    }
}

impl<W: Write> Drop for TraceWriter<W> {
    /// A writer dropped without `finish` (an error path, a panic) still writes its pending
    /// events; the missing end frame tells readers the shutdown was not clean.
    fn drop(&mut self) {
        if self.sink.is_some()
            && let Err(e) = self.flush()
        {
            tracing::warn!(
                "trace writer dropped without finish; flushing pending events failed: {e}"
            );
        }
    }
}
