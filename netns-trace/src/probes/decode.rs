//! Ring-buffer records → model events. Records are validated (kind, size) before use; a
//! malformed record is an error the caller counts, never a panic.
use std::net::Ipv4Addr as Ip;

use netns_trace_common as abi;
use netns_trace_common::{EventHeader, kind};

use crate::model::{
    AddrOp, Comm, CreatedBy, Direction, Event, EventBody, Hook, Mac, MountOp, NetDevOp, NsId,
    TaskOp,
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

fn hook(h: u32) -> Hook {
    match h {
        abi::hook::FENTRY => Hook::Fentry,
        abi::hook::KPROBE => Hook::Kprobe,
        _ => Hook::Tracepoint,
    }
}

/// Decodes one record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let hdr: EventHeader = read(bytes)?;
    let want = |size: usize| -> Result<(), DecodeError> {
        if hdr.size as usize != size || bytes.len() < size {
            Err(DecodeError::Size {
                kind: hdr.kind,
                claimed: hdr.size as usize,
                got: bytes.len(),
            })
        } else {
            Ok(())
        }
    };
    let bad = |value: u64| DecodeError::BadValue {
        kind: hdr.kind,
        value,
    };
    let body = match hdr.kind {
        kind::NETNS_CREATED => {
            want(size_of::<abi::NetnsCreated>())?;
            let r: abi::NetnsCreated = read(bytes)?;
            let source = match r.source {
                abi::created_by::CLONE => CreatedBy::Clone,
                abi::created_by::UNSHARE => CreatedBy::Unshare,
                abi::created_by::COPY_NET_NS => CreatedBy::CopyNetNs,
                v => return Err(bad(v as u64)),
            };
            EventBody::NetnsCreated {
                netns: ns(hdr.netns),
                parent: ns(r.parent),
                net_ptr: r.net_ptr,
                source,
                clone_flags: r.clone_flags,
            }
        }
        kind::TASK_NETNS => {
            want(size_of::<abi::TaskNetns>())?;
            let r: abi::TaskNetns = read(bytes)?;
            let op = match r.op {
                abi::task_op::FORK => TaskOp::Fork,
                abi::task_op::UNSHARE => TaskOp::Unshare,
                abi::task_op::SETNS => TaskOp::Setns,
                abi::task_op::EXIT => TaskOp::Exit,
                v => return Err(bad(v as u64)),
            };
            EventBody::Task {
                op,
                netns: ns(hdr.netns),
                prev: ns(r.prev),
                thread: r.flags & abi::task_flags::THREAD != 0,
                group_dead: r.flags & abi::task_flags::GROUP_DEAD != 0,
                cgroup_id: r.cgroup_id,
                ppid: r.ppid,
                mnt_ns: r.mnt_ns,
                prev_mnt_ns: r.prev_mnt_ns,
            }
        }
        kind::NETNS_TEARDOWN | kind::NETNS_FREED | kind::NSFS_EVICT | kind::CLEANUP_RUN => {
            want(size_of::<abi::NetnsObject>())?;
            let r: abi::NetnsObject = read(bytes)?;
            let netns = ns(hdr.netns);
            match hdr.kind {
                kind::NETNS_TEARDOWN => EventBody::NetnsTeardown {
                    netns,
                    net_ptr: r.net_ptr,
                    hook: hook(r.hook),
                },
                kind::NETNS_FREED => EventBody::NetnsFreed {
                    netns,
                    net_ptr: r.net_ptr,
                    hook: hook(r.hook),
                },
                kind::NSFS_EVICT => EventBody::NsfsEvict {
                    netns,
                    net_ptr: r.net_ptr,
                },
                _ => EventBody::CleanupRun,
            }
        }
        kind::MOUNT_SYSCALL => {
            want(size_of::<abi::MountSyscall>())?;
            let r: abi::MountSyscall = read(bytes)?;
            let op = match r.op {
                abi::mount_op::MOUNT => MountOp::Mount,
                abi::mount_op::UMOUNT => MountOp::Umount,
                abi::mount_op::OPEN_TREE => MountOp::OpenTree,
                abi::mount_op::MOVE_MOUNT => MountOp::MoveMount,
                v => return Err(bad(v as u64)),
            };
            EventBody::MountSyscall {
                op,
                netns: ns(hdr.netns),
                mnt_ns: r.mnt_ns,
                ret: r.ret,
                flags: r.flags,
                from_dfd: r.from_dfd,
                to_dfd: r.to_dfd,
                source: cstr(&r.source),
                target: cstr(&r.target),
            }
        }
        kind::NSFS_MOUNT => {
            want(size_of::<abi::NsfsMount>())?;
            let r: abi::NsfsMount = read(bytes)?;
            EventBody::NsfsMount {
                netns: ns(hdr.netns),
                mnt_ns: r.mnt_ns,
                net_ptr: r.net_ptr,
                hook: hook(r.hook),
            }
        }
        kind::NETDEV => {
            want(size_of::<abi::NetDev>())?;
            let r: abi::NetDev = read(bytes)?;
            let op = match r.op {
                abi::netdev_op::REGISTER => NetDevOp::Register,
                abi::netdev_op::UNREGISTER => NetDevOp::Unregister,
                abi::netdev_op::MOVE => NetDevOp::Move,
                v => return Err(bad(v as u64)),
            };
            EventBody::NetDev {
                op,
                netns: ns(hdr.netns),
                ifindex: r.ifindex,
                other: ns(r.other),
                mac: mac(&r.mac),
                name: cstr(&r.name),
            }
        }
        kind::IPV4_ADDR => {
            want(size_of::<abi::Ipv4Addr>())?;
            let r: abi::Ipv4Addr = read(bytes)?;
            let op = match r.op {
                abi::addr_op::ADD => AddrOp::Add,
                abi::addr_op::DEL => AddrOp::Del,
                v => return Err(bad(v as u64)),
            };
            EventBody::Ipv4Addr {
                op,
                netns: ns(hdr.netns),
                ifindex: r.ifindex,
                addr: Ip::from(r.addr),
                prefix_len: r.prefix_len,
                label: cstr(&r.label),
            }
        }
        kind::ARP => {
            want(size_of::<abi::Arp>())?;
            let r: abi::Arp = read(bytes)?;
            let dir = match r.dir {
                abi::arp_dir::RX => Direction::Rx,
                abi::arp_dir::TX => Direction::Tx,
                v => return Err(bad(v as u64)),
            };
            EventBody::Arp {
                netns: ns(hdr.netns),
                dir,
                op: r.op,
                ifindex: r.ifindex,
                sender_ip: Ip::from(r.sender_ip),
                sender_mac: Mac(r.sender_mac),
                target_ip: Ip::from(r.target_ip),
                target_mac: Mac(r.target_mac),
                hook: hook(r.hook as u32),
            }
        }
        kind::NEIGH_UPDATE => {
            want(size_of::<abi::NeighUpdate>())?;
            let r: abi::NeighUpdate = read(bytes)?;
            EventBody::NeighUpdate {
                netns: ns(hdr.netns),
                ifindex: r.ifindex,
                ip: Ip::from(r.ip),
                mac: Mac(r.mac),
                nud_state: r.nud_state,
            }
        }
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(Event {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tgid: hdr.tgid,
        comm: Comm(hdr.comm),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            hdr: header(kind::NETNS_CREATED, size_of::<abi::NetnsCreated>()),
            net_ptr: 0xffff_8880_0000_1000,
            parent: abi::NetnsId {
                cookie: 1,
                inum: 4026531840,
                _pad: 0,
            },
            clone_flags: abi::kernel::CLONE_NEWNET,
            source: abi::created_by::UNSHARE,
            _pad: 0,
        };
        let ev = decode(&as_bytes(&rec)).unwrap();
        assert_eq!(ev.ts_ns, 42);
        assert_eq!(ev.comm.as_str(), "pause");
        assert_eq!(
            ev.body,
            EventBody::NetnsCreated {
                netns: NsId::new(9, 4026532000),
                parent: NsId::new(1, 4026531840),
                net_ptr: 0xffff_8880_0000_1000,
                source: CreatedBy::Unshare,
                clone_flags: abi::kernel::CLONE_NEWNET,
            }
        );
    }

    #[test]
    fn decodes_an_arp_reply() {
        let rec = abi::Arp {
            hdr: header(kind::ARP, size_of::<abi::Arp>()),
            ifindex: 3,
            op: 2,
            dir: abi::arp_dir::TX,
            hook: abi::hook::TRACEPOINT as u8,
            sender_ip: [10, 231, 1, 10],
            target_ip: [10, 231, 1, 99],
            sender_mac: [2, 0, 10, 231, 1, 10],
            target_mac: [2, 0, 0, 0, 0, 99],
        };
        let ev = decode(&as_bytes(&rec)).unwrap();
        match ev.body {
            EventBody::Arp {
                op,
                dir,
                sender_ip,
                sender_mac,
                ..
            } => {
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
        hdr.kind = kind::ARP; // claims ARP but carries only a header
        assert!(matches!(
            decode(&as_bytes(&hdr)),
            Err(DecodeError::Size { .. })
        ));
        let mut rec = abi::TaskNetns {
            hdr: header(kind::TASK_NETNS, size_of::<abi::TaskNetns>()),
            ..Default::default()
        };
        rec.op = 77;
        assert_eq!(
            decode(&as_bytes(&rec)),
            Err(DecodeError::BadValue {
                kind: kind::TASK_NETNS,
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
