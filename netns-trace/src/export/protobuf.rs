//! A minimal protobuf encoder: just enough wire format (varints and length-delimited fields)
//! to write Perfetto traces without protoc, a build script or generated code.

/// Wire type of varint-encoded scalars (int32/64, uint32/64, bool, enum).
const WIRE_VARINT: u32 = 0;
/// Wire type of strings, bytes and embedded messages.
const WIRE_LEN: u32 = 2;

/// Appends `value` as a base-128 varint (least significant group first).
pub fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One message being encoded. Nested messages are encoded into their own writer first so
/// their length is known before the bytes are copied in.
#[derive(Default, Debug)]
pub struct ProtoWriter {
    buf: Vec<u8>,
}

impl ProtoWriter {
    pub fn new() -> Self {
        Self::default()
    }

    fn tag(&mut self, field: u32, wire_type: u32) {
        encode_varint(u64::from(field << 3 | wire_type), &mut self.buf);
    }

    /// uint32/uint64/enum field.
    pub fn uint(&mut self, field: u32, value: u64) -> &mut Self {
        self.tag(field, WIRE_VARINT);
        encode_varint(value, &mut self.buf);
        self
    }

    /// int32/int64 field: negative values take ten bytes, as protobuf specifies (not zigzag).
    pub fn int(&mut self, field: u32, value: i64) -> &mut Self {
        self.uint(field, value as u64)
    }

    pub fn bool(&mut self, field: u32, value: bool) -> &mut Self {
        self.uint(field, u64::from(value))
    }

    pub fn bytes(&mut self, field: u32, value: &[u8]) -> &mut Self {
        self.tag(field, WIRE_LEN);
        encode_varint(value.len() as u64, &mut self.buf);
        self.buf.extend_from_slice(value);
        self
    }

    pub fn string(&mut self, field: u32, value: &str) -> &mut Self {
        self.bytes(field, value.as_bytes())
    }

    /// An embedded message, built by `fill`.
    pub fn message(&mut self, field: u32, fill: impl FnOnce(&mut ProtoWriter)) -> &mut Self {
        let mut nested = ProtoWriter::new();
        fill(&mut nested);
        self.bytes(field, &nested.buf)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    #[cfg(test)]
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(value, &mut out);
        out
    }

    #[test]
    fn varints_match_the_protobuf_spec() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(1), [0x01]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        // The example from the protobuf encoding guide.
        assert_eq!(varint(150), [0x96, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(
            varint(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn scalar_fields_carry_tag_and_wire_type() {
        let mut w = ProtoWriter::new();
        w.uint(1, 150);
        assert_eq!(w.as_bytes(), [0x08, 0x96, 0x01]);

        let mut w = ProtoWriter::new();
        w.bool(2, true).string(3, "hi");
        assert_eq!(w.as_bytes(), [0x10, 0x01, 0x1a, 0x02, b'h', b'i']);

        // Field numbers above 15 need a two-byte tag: (58 << 3) | 0 = 464.
        let mut w = ProtoWriter::new();
        w.uint(58, 3);
        assert_eq!(w.as_bytes(), [0xd0, 0x03, 0x03]);

        // int64 -1 is ten bytes of two's complement.
        let mut w = ProtoWriter::new();
        w.int(4, -1);
        assert_eq!(w.as_bytes().len(), 11);
        assert_eq!(w.as_bytes()[0], 0x20);
    }

    #[test]
    fn nested_messages_are_length_prefixed() {
        let mut w = ProtoWriter::new();
        w.message(1, |m| {
            m.uint(1, 150).message(2, |inner| {
                inner.string(1, "abc");
            });
        });
        // outer tag 0x0a, length 10: [08 96 01] [12 05 [0a 03 "abc"]]
        assert_eq!(
            w.into_bytes(),
            [
                0x0a, 0x0a, 0x08, 0x96, 0x01, 0x12, 0x05, 0x0a, 0x03, b'a', b'b', b'c'
            ]
        );
    }

    #[test]
    fn long_nested_messages_use_multi_byte_lengths() {
        let payload = "x".repeat(200);
        let mut w = ProtoWriter::new();
        w.message(1, |m| {
            m.string(1, &payload);
        });
        let bytes = w.into_bytes();
        // inner = tag(1) + varint(200)=2 bytes + 200 = 203 = varint [0xcb, 0x01]
        assert_eq!(&bytes[..3], [0x0a, 0xcb, 0x01]);
        assert_eq!(&bytes[3..6], [0x0a, 0xc8, 0x01]);
        assert_eq!(bytes.len(), 3 + 203);
    }
}
