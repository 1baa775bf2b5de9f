//! Byte-level constants and primitives shared by the writer and the reader.
//!
//! docs/trace-format.md is the prose version of this file; keep the two in step.

/// First 8 bytes of every trace file.
pub const FILE_MAGIC: [u8; 8] = *b"NSTRACE\0";
/// The format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;
/// magic (8) + version (2) + header flags (2) + metadata length (4) + metadata crc32c (4).
pub const FILE_HEADER_LEN: usize = 20;
/// The metadata block is small JSON; anything larger is corruption, not metadata.
pub const MAX_META_LEN: u32 = 1 << 20;

/// Frame magic. Non-ASCII first byte so it rarely shows up inside strings; the CRC, not the
/// magic, is what makes a resync candidate trustworthy.
pub const FRAME_MAGIC: [u8; 4] = [0xF7, b'N', b'S', b'F'];
/// magic (4) + kind (1) + flags (1) + reserved (2) + payload len (4) + uncompressed len (4)
/// + crc32c (4).
pub const FRAME_HEADER_LEN: usize = 20;
/// Bytes of the frame header covered by the CRC (everything before the CRC field).
pub const FRAME_CRC_COVERED: usize = 16;
/// Upper bound for both the stored and the uncompressed payload. A writer never produces
/// more (a single event larger than this is refused); a reader treats more as corruption,
/// which also bounds what hostile input can make it allocate.
pub const MAX_FRAME_PAYLOAD: u32 = 32 << 20;

pub const FRAME_KIND_EVENTS: u8 = 1;
pub const FRAME_KIND_END: u8 = 2;
pub const FRAME_FLAG_LZ4: u8 = 1;
pub const KNOWN_FRAME_FLAGS: u8 = FRAME_FLAG_LZ4;

/// A parsed (not yet validated against its payload) frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub flags: u8,
    pub payload_len: u32,
    pub uncompressed_len: u32,
    pub crc: u32,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&FRAME_MAGIC);
        h[4] = self.kind;
        h[5] = self.flags;
        // h[6..8]: reserved, written as zero, ignored by readers.
        h[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        h[12..16].copy_from_slice(&self.uncompressed_len.to_le_bytes());
        h[16..20].copy_from_slice(&self.crc.to_le_bytes());
        h
    }

    /// Parses a header whose first 4 bytes are already known to be [`FRAME_MAGIC`].
    pub fn parse(h: &[u8; FRAME_HEADER_LEN]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Self {
            kind: h[4],
            flags: h[5],
            payload_len: u32_at(8),
            uncompressed_len: u32_at(12),
            crc: u32_at(16),
        }
    }

    /// Why this header cannot describe a frame this build can read, judged before the payload
    /// is even looked at.
    pub fn implausible(&self) -> Option<String> {
        if self.payload_len > MAX_FRAME_PAYLOAD {
            return Some(format!(
                "payload length {} exceeds the {MAX_FRAME_PAYLOAD} limit",
                self.payload_len
            ));
        }
        if self.uncompressed_len > MAX_FRAME_PAYLOAD {
            return Some(format!(
                "uncompressed length {} exceeds the {MAX_FRAME_PAYLOAD} limit",
                self.uncompressed_len
            ));
        }
        if self.flags & FRAME_FLAG_LZ4 == 0 && self.payload_len != self.uncompressed_len {
            return Some(format!(
                "uncompressed frame with payload length {} but uncompressed length {}",
                self.payload_len, self.uncompressed_len
            ));
        }
        None
    }
}

/// CRC32C over the first [`FRAME_CRC_COVERED`] header bytes followed by the stored payload.
pub fn frame_crc(header: &[u8; FRAME_HEADER_LEN], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..FRAME_CRC_COVERED]), payload)
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Where a decode went wrong. Static strings keep the hot path allocation-free; the reader
/// adds offsets when it reports.
pub type DecodeError = &'static str;

/// A bounds-checked cursor over a byte slice. Every read returns an error instead of
/// panicking when the input runs out.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// A cursor at `pos` (clamped to the end).
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Self {
            buf,
            pos: pos.min(buf.len()),
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or("unexpected end of record")?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or("unexpected end of record")?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Most varints in a trace (table indexes, small deltas, lengths) are one byte: that case
    /// stays inline and branch-light; longer ones take the loop out of line.
    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_multi_byte()
    }

    /// Reads straight from the slice: no per-byte bounds check or `Result`.
    #[inline(never)]
    fn varint_multi_byte(&mut self) -> Result<u64, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(10).enumerate() {
            let chunk = u64::from(b & 0x7f);
            if i == 9 && chunk > 1 {
                return Err("varint overflows 64 bits");
            }
            v |= chunk << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        if rest.len() < 10 {
            Err("unexpected end of record")
        } else {
            Err("varint longer than 10 bytes")
        }
    }

    #[inline(always)]
    pub fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| "value does not fit 32 bits")
    }

    #[inline(always)]
    pub fn zigzag(&mut self) -> Result<i64, DecodeError> {
        self.varint().map(unzigzag)
    }

    #[inline]
    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        self.array::<8>().map(u64::from_le_bytes)
    }

    /// A collection length, refused when it cannot possibly fit in what is left (each element
    /// takes at least one byte), so hostile counts never drive allocations.
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > self.remaining() as u64 {
            return Err("element count exceeds the record");
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edges() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut c = Cursor::new(&b);
            assert_eq!(c.varint().unwrap(), v);
            assert!(c.is_empty());
        }
        // 11 continuation bytes and an overflowing 10th byte are errors, not panics.
        assert!(Cursor::new(&[0xff; 11]).varint().is_err());
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(Cursor::new(&over).varint().is_err());
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -123456789] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
