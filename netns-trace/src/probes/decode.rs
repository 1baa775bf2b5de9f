//! Ring-buffer records → model events. Records are validated (kind, size) before use; a
//! malformed record is an error the caller counts, never a panic.
use std::net::Ipv4Addr as Ip;

use netns_trace_common as abi;
use netns_trace_common::{EventHeader, EventKind};
use num_enum::TryFromPrimitive;

use crate::model::{
    ArpPacket, CleanupRun, Comm, Event, EventBody, Ipv4AddrChange, Mac, MountSyscall, NeighUpdate,
    NetDev, NetnsCreated, NetnsObject, NsId, NsfsEvict, NsfsMount, TaskNetns,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; T is a #[repr(C)] plain-integer record, valid for any bytes;
    // read_unaligned because ring-buffer memory is only 8-byte aligned.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

fn ns(id: abi::NetnsId) -> NsId {
    NsId::new(id.cookie, id.inum)
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn mac(b: &[u8]) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[..6]);
    Mac(m)
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let hdr: EventHeader = read(bytes)?;
    let kind = EventKind::try_from(hdr.kind as u8)
        .ok()
        .filter(|k| u16::from(*k as u8) == hdr.kind && k.from_kernel())
        .ok_or(DecodeError::UnknownKind(hdr.kind))?;
    let record = Record { hdr, bytes };
    let netns = ns(hdr.netns);
    let body = match kind {
        EventKind::NetnsCreated => {
            let r: abi::NetnsCreated = record.read()?;
            EventBody::NetnsCreated(NetnsCreated {
                netns,
                parent: ns(r.parent),
                net_ptr: r.net_ptr,
                source: record.field(r.source)?,
                clone_flags: r.clone_flags,
            })
        }
        EventKind::Task => {
            let r: abi::TaskNetns = record.read()?;
            EventBody::Task(TaskNetns {
                op: record.field(r.op)?,
                netns,
                prev: ns(r.prev),
                thread: r.flags & abi::task_flags::THREAD != 0,
                group_dead: r.flags & abi::task_flags::GROUP_DEAD != 0,
                cgroup_id: r.cgroup_id,
                ppid: r.ppid,
                mnt_ns: r.mnt_ns,
                prev_mnt_ns: r.prev_mnt_ns,
            })
        }
        EventKind::NetnsTeardown | EventKind::NetnsFreed => {
            let r: abi::NetnsObject = record.read()?;
            let object = NetnsObject {
                netns,
                net_ptr: r.net_ptr,
                hook: record.field(r.hook)?,
            };
            if kind == EventKind::NetnsTeardown {
                EventBody::NetnsTeardown(object)
            } else {
                EventBody::NetnsFreed(object)
            }
        }
        EventKind::NsfsEvict => {
            let r: abi::NetnsObject = record.read()?;
            EventBody::NsfsEvict(NsfsEvict {
                netns,
                net_ptr: r.net_ptr,
            })
        }
        EventKind::CleanupRun => {
            let _: abi::NetnsObject = record.read()?;
            EventBody::CleanupRun(CleanupRun {})
        }
        EventKind::MountSyscall => {
            let r: abi::MountSyscall = record.read()?;
            EventBody::MountSyscall(MountSyscall {
                op: record.field(r.op)?,
                netns,
                mnt_ns: r.mnt_ns,
                ret: r.ret,
                flags: r.flags,
                from_dfd: r.from_dfd,
                to_dfd: r.to_dfd,
                source: cstr(&r.source),
                target: cstr(&r.target),
            })
        }
        EventKind::NsfsMount => {
            let r: abi::NsfsMount = record.read()?;
            EventBody::NsfsMount(NsfsMount {
                netns,
                mnt_ns: r.mnt_ns,
                net_ptr: r.net_ptr,
                hook: record.field(r.hook)?,
            })
        }
        EventKind::NetDev => {
            let r: abi::NetDev = record.read()?;
            EventBody::NetDev(NetDev {
                op: record.field(r.op)?,
                netns,
                ifindex: r.ifindex,
                other: ns(r.other),
                mac: mac(&r.mac),
                name: cstr(&r.name),
            })
        }
        EventKind::Ipv4Addr => {
            let r: abi::Ipv4Addr = record.read()?;
            EventBody::Ipv4Addr(Ipv4AddrChange {
                op: record.field(r.op)?,
                netns,
                ifindex: r.ifindex,
                addr: Ip::from(r.addr),
                prefix_len: r.prefix_len,
                label: cstr(&r.label),
            })
        }
        EventKind::Arp => {
            let r: abi::Arp = record.read()?;
            EventBody::Arp(ArpPacket {
                netns,
                dir: record.field(r.dir)?,
                op: r.op,
                ifindex: r.ifindex,
                sender_ip: Ip::from(r.sender_ip),
                sender_mac: Mac(r.sender_mac),
                target_ip: Ip::from(r.target_ip),
                target_mac: Mac(r.target_mac),
                hook: record.field(r.hook)?,
            })
        }
        EventKind::NeighUpdate => {
            let r: abi::NeighUpdate = record.read()?;
            EventBody::NeighUpdate(NeighUpdate {
                netns,
                ifindex: r.ifindex,
                ip: Ip::from(r.ip),
                mac: Mac(r.mac),
                nud_state: r.nud_state,
            })
        }
        // Userspace observations never come from the kernel.
        EventKind::Lost
        | EventKind::PinAdded
        | EventKind::PinRemoved
        | EventKind::Interfaces
        | EventKind::CgroupPath
        | EventKind::Snapshot
        | EventKind::MemberCgroup
        | EventKind::CniResult => return Err(DecodeError::UnknownKind(hdr.kind)),
    };
    Ok(Event {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tgid: hdr.tgid,
        comm: Comm(hdr.comm),
        body,
    })
}

/// One ring-buffer record: its header, and all of its bytes.
struct Record<'a> {
    hdr: EventHeader,
    bytes: &'a [u8],
}

impl Record<'_> {
    /// The whole record as `T`, when the header's size and the bytes that arrived are `T`'s.
    fn read<T: Copy>(&self) -> Result<T, DecodeError> {
        let size = size_of::<T>();
        if self.hdr.size as usize != size || self.bytes.len() < size {
            return Err(DecodeError::Size {
                kind: self.hdr.kind,
                claimed: self.hdr.size as usize,
                got: self.bytes.len(),
            });
        }
        read(self.bytes)
    }

    /// A field enum from the integer the record carries.
    fn field<E, V>(&self, value: V) -> Result<E, DecodeError>
    where
        E: TryFromPrimitive<Primitive = u8>,
        V: Copy + Into<u64>,
    {
        u8::try_from(value.into())
            .ok()
            .and_then(|v| E::try_from_primitive(v).ok())
            .ok_or(DecodeError::BadValue {
                kind: self.hdr.kind,
                value: value.into(),
            })
    }
}

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
                assert_eq!(sender_ip, Ip::new(10, 231, 1, 10));
                assert_eq!(sender_mac.to_string(), "02:00:0a:e7:01:0a");
            }
            other => panic!("{other:?}"),
        }
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
}
