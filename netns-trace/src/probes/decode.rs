//! Ring-buffer records → model events. Records are validated (kind, size) before use; a
//! malformed record is an error the caller counts, never a panic.
use netns_trace_common as abi;
use netns_trace_common::{EventHeader, EventKind};
use num_enum::TryFromPrimitive;

use crate::model::*;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the header")]
    Short(usize),
    #[error("record kind {kind} claims {claimed} bytes but {got} arrived")]
    Size {
        kind: u16,
        claimed: usize,
        got: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record kind {kind} has an invalid field value {value}")]
    BadValue { kind: u16, value: u64 },
}

/// A payload built from the `#[repr(C)]` record the eBPF programs send for it. The impls sit
/// beside each payload in model/event.rs; the event table says which record a kind arrives as.
pub trait FromRecord: Sized {
    type Record: Copy;
    fn from_record(hdr: &EventHeader, record: &Self::Record) -> Result<Self, BadValue>;
}

/// A payload the event table boxes (a large, rare one, so that `EventBody` stays small).
impl<P: FromRecord> FromRecord for Box<P> {
    type Record = P::Record;
    fn from_record(hdr: &EventHeader, record: &Self::Record) -> Result<Self, BadValue> {
        P::from_record(hdr, record).map(Box::new)
    }
}

/// A record field holding a value its type does not have.
#[derive(Debug, PartialEq, Eq)]
pub struct BadValue(pub u64);

/// A field enum from the integer a record carries.
pub fn field<E: TryFromPrimitive<Primitive = u8>>(value: impl Into<u64>) -> Result<E, BadValue> {
    let value = value.into();
    u8::try_from(value)
        .ok()
        .and_then(|v| E::try_from_primitive(v).ok())
        .ok_or(BadValue(value))
}

/// The namespace a record names.
pub fn ns(id: abi::NetnsId) -> NsId {
    NsId::new(id.cookie, id.inum)
}

/// A NUL-terminated (or full) byte array as text; invalid UTF-8 is replaced, never trusted.
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; T is a #[repr(C)] plain-integer record, valid for any bytes;
    // read_unaligned because ring-buffer memory is only 8-byte aligned.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// `P` from a whole record, when the header's size and the bytes that arrived are its
/// record's.
fn payload<P: FromRecord>(hdr: &EventHeader, bytes: &[u8]) -> Result<P, DecodeError> {
    let size = size_of::<P::Record>();
    if hdr.size as usize != size || bytes.len() < size {
        return Err(DecodeError::Size {
            kind: hdr.kind,
            claimed: hdr.size as usize,
            got: bytes.len(),
        });
    }
    let record: P::Record = read(bytes)?;
    P::from_record(hdr, &record).map_err(|BadValue(value)| DecodeError::BadValue {
        kind: hdr.kind,
        value,
    })
}

macro_rules! decode_by_table {
    ($($id:literal $origin:ident $(($record:ident))? $name:literal $variant:ident($($payload:tt)*),)*) => {
        /// One ring-buffer record as an event.
        pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
            let hdr: EventHeader = read(bytes)?;
            let unknown = DecodeError::UnknownKind(hdr.kind);
            let kind = u8::try_from(hdr.kind)
                .ok()
                .and_then(|k| EventKind::try_from(k).ok())
                .ok_or(unknown.clone())?;
            let body = match kind {
                $(EventKind::$variant => decode_by_table!(@body hdr, bytes, unknown, $variant, ($($payload)*) $(, $record)?),)*
            };
            Ok(Event {
                ts_ns: hdr.ts_ns,
                pid: hdr.pid,
                tgid: hdr.tgid,
                comm: Comm(hdr.comm),
                body,
            })
        }
    };
    // A kernel kind: its payload from its record.
    (@body $hdr:ident, $bytes:ident, $unknown:ident, $variant:ident, ($payload:ty), $record:ident) => {{
        const _: fn() = || {
            let _: fn(&<$payload as FromRecord>::Record) -> &abi::$record = |r| r;
        };
        EventBody::$variant(payload::<$payload>(&$hdr, $bytes)?)
    }};
    // Userspace observations never come from the kernel.
    (@body $hdr:ident, $bytes:ident, $unknown:ident, $variant:ident, ($($payload:tt)*)) => {
        return Err($unknown)
    };
}

netns_trace_common::with_event_table!(decode_by_table);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CreatedBy, Direction};

    fn as_bytes<T>(v: &T) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
    }

    fn header(kind: u16, size: usize) -> EventHeader {
        EventHeader {
            kind,
            size: size as u16,
            ts_ns: 42,
            pid: 7,
            tgid: 6,
            netns: abi::NetnsId {
                cookie: 9,
                inum: 4026532000,
                _pad: 0,
            },
            comm: *b"pause\0\0\0\0\0\0\0\0\0\0\0",
            ..Default::default()
        }
    }

    #[test]
    fn decodes_a_creation() {
        let rec = abi::NetnsCreated {
            hdr: header(
                EventKind::NetnsCreated as u16,
                size_of::<abi::NetnsCreated>(),
            ),
            net_ptr: 0xffff_8880_0000_1000,
            parent: abi::NetnsId {
                cookie: 1,
                inum: 4026531840,
                _pad: 0,
            },
            clone_flags: abi::kernel::CLONE_NEWNET,
            source: abi::CreatedBy::Unshare as u32,
            _pad: 0,
        };
        let ev = decode(&as_bytes(&rec)).unwrap();
        assert_eq!(ev.ts_ns, 42);
        assert_eq!(ev.comm.as_str(), "pause");
        assert_eq!(
            ev.body,
            EventBody::NetnsCreated(NetnsCreated {
                netns: NsId::new(9, 4026532000),
                parent: NsId::new(1, 4026531840),
                net_ptr: 0xffff_8880_0000_1000,
                source: CreatedBy::Unshare,
                clone_flags: abi::kernel::CLONE_NEWNET,
            })
        );
    }

    #[test]
    fn decodes_an_arp_reply() {
        let rec = abi::Arp {
            hdr: header(EventKind::Arp as u16, size_of::<abi::Arp>()),
            ifindex: 3,
            op: 2,
            dir: abi::Direction::Tx as u8,
            hook: abi::Hook::Tracepoint as u8,
            sender_ip: [10, 231, 1, 10],
            target_ip: [10, 231, 1, 99],
            sender_mac: [2, 0, 10, 231, 1, 10],
            target_mac: [2, 0, 0, 0, 0, 99],
        };
        let ev = decode(&as_bytes(&rec)).unwrap();
        match ev.body {
            EventBody::Arp(ArpPacket {
                op,
                dir,
                sender_ip,
                sender_mac,
                ..
            }) => {
                assert_eq!((op, dir), (2, Direction::Tx));
                assert_eq!(sender_ip, std::net::Ipv4Addr::new(10, 231, 1, 10));
                assert_eq!(sender_mac.to_string(), "02:00:0a:e7:01:0a");
            }
            other => panic!("{other:?}"),
        }
    }

    /// The advertisement pod B sent on the host (6.18, tracepoint) in answer to pod A's
    /// solicitation, as its record carried it.
    #[test]
    fn decodes_a_neighbour_advertisement_and_rejects_other_icmpv6_types() {
        let addr = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut rec = abi::Ndisc {
            hdr: header(EventKind::Ndisc as u16, size_of::<abi::Ndisc>()),
            ifindex: 132,
            icmp_type: abi::ndisc::ADVERTISEMENT,
            dir: abi::Direction::Tx as u8,
            hook: abi::Hook::Tracepoint as u8,
            na_flags: abi::ndisc::NA_SOLICITED | abi::ndisc::NA_OVERRIDE,
            target: addr("fd00:17:2::2"),
            src: addr("fd00:17:2::2"),
            dst: addr("fd00:17:2::1"),
            lla: [0x16, 0x53, 0x70, 0xa6, 0x9e, 0x71],
            lla_option: abi::ndisc::OPT_TARGET_LLA,
            _pad: 0,
        };
        let ev = decode(&as_bytes(&rec)).unwrap();
        let EventBody::Ndisc(nd) = ev.body else {
            panic!("{:?}", ev.body)
        };
        assert_eq!(
            (nd.icmp_type, nd.dir, nd.na_flags),
            (136, Direction::Tx, 0x60)
        );
        assert_eq!(nd.target.to_string(), "fd00:17:2::2");
        assert_eq!(nd.dst.to_string(), "fd00:17:2::1");
        assert_eq!(
            nd.claimed_mac().map(|m| m.to_string()).as_deref(),
            Some("16:53:70:a6:9e:71")
        );
        // An advertisement answering a unicast solicitation carries no option: no claim.
        rec.lla_option = 0;
        rec.lla = [0; 6];
        let EventBody::Ndisc(nd) = decode(&as_bytes(&rec)).unwrap().body else {
            unreachable!()
        };
        assert_eq!(nd.claimed_mac(), None);
        // The probes send only 135 and 136, and option 1 or 2.
        rec.icmp_type = 128;
        assert_eq!(
            decode(&as_bytes(&rec)),
            Err(DecodeError::BadValue {
                kind: EventKind::Ndisc as u16,
                value: 128
            })
        );
        rec.icmp_type = abi::ndisc::SOLICITATION;
        rec.lla_option = 3;
        assert!(matches!(
            decode(&as_bytes(&rec)),
            Err(DecodeError::BadValue { value: 3, .. })
        ));
    }

    #[test]
    fn rejects_malformed_records_without_panicking() {
        assert_eq!(decode(&[0u8; 3]), Err(DecodeError::Short(3)));
        let mut hdr = header(999, size_of::<EventHeader>());
        assert_eq!(decode(&as_bytes(&hdr)), Err(DecodeError::UnknownKind(999)));
        hdr.kind = EventKind::Arp as u16; // claims ARP but carries only a header
        assert!(matches!(
            decode(&as_bytes(&hdr)),
            Err(DecodeError::Size { .. })
        ));
        let mut rec = abi::TaskNetns {
            hdr: header(EventKind::Task as u16, size_of::<abi::TaskNetns>()),
            ..Default::default()
        };
        rec.op = 77;
        assert_eq!(
            decode(&as_bytes(&rec)),
            Err(DecodeError::BadValue {
                kind: EventKind::Task as u16,
                value: 77
            })
        );
        // Every prefix of a valid record is rejected, never misread.
        let full = as_bytes(&rec);
        for n in 0..full.len() {
            assert!(decode(&full[..n]).is_err());
        }
    }

    #[test]
    fn every_kind_is_decoded_from_its_own_record_only() {
        for &kind in EventKind::ALL {
            let hdr = header(kind as u16, size_of::<EventHeader>());
            let got = decode(&as_bytes(&hdr));
            if kind.from_kernel() {
                // A kernel kind wants its whole record: a bare header is the wrong size.
                assert!(
                    matches!(got, Err(DecodeError::Size { .. })),
                    "{kind:?}: {got:?}"
                );
            } else {
                assert_eq!(got, Err(DecodeError::UnknownKind(kind as u16)), "{kind:?}");
            }
        }
    }
}
