//! Event records inside an event-batch frame payload.
//!
//! A payload is a sequence of records `[tag u8][body len varint][body]`. Tags below
//! [`FIRST_EVENT_TAG`] define per-frame intern-table entries (comm, namespace id, string);
//! the rest are events whose body starts with the common header
//! `ts delta (zigzag) | pid | tgid - pid (zigzag) | comm ref`. Tables and the timestamp base
//! reset at every frame, so each frame decodes on its own (which is what makes resync work).
//!
//! The encoding follows the model types only, never a kernel struct layout.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use super::format::{Cursor, DecodeError, put_varint, zigzag};
use crate::attribution::{CniCacheEntry, CniIp};
use crate::model::{
    AddrOp, Comm, CreatedBy, Direction, Event, EventBody, Hook, Interface, Mac, Member, MountOp,
    NetDevOp, NsId, Pin, SnapNamespace, Snapshot, SnapshotPhase, TaskOp,
};

pub const TAG_DEF_COMM: u8 = 0x01;
pub const TAG_DEF_NSID: u8 = 0x02;
pub const TAG_DEF_STR: u8 = 0x03;
pub const FIRST_EVENT_TAG: u8 = 0x10;

const TAG_NETNS_CREATED: u8 = 0x10;
const TAG_TASK: u8 = 0x11;
const TAG_NETNS_TEARDOWN: u8 = 0x12;
const TAG_NETNS_FREED: u8 = 0x13;
const TAG_CLEANUP_RUN: u8 = 0x14;
const TAG_MOUNT_SYSCALL: u8 = 0x15;
const TAG_NSFS_MOUNT: u8 = 0x16;
const TAG_NSFS_EVICT: u8 = 0x17;
const TAG_NET_DEV: u8 = 0x18;
const TAG_IPV4_ADDR: u8 = 0x19;
const TAG_ARP: u8 = 0x1a;
const TAG_NEIGH_UPDATE: u8 = 0x1b;
const TAG_LOST: u8 = 0x1c;
const TAG_PIN_ADDED: u8 = 0x1d;
const TAG_PIN_REMOVED: u8 = 0x1e;
const TAG_INTERFACES: u8 = 0x1f;
const TAG_CGROUP_PATH: u8 = 0x20;
const TAG_SNAPSHOT: u8 = 0x21;
const TAG_MEMBER_CGROUP: u8 = 0x22;
const TAG_CNI_RESULT: u8 = 0x23;
/// The highest event tag this build decodes; later ones are skipped as unknown.
const LAST_EVENT_TAG: u8 = TAG_CNI_RESULT;

// ---------------------------------------------------------------------------------------------
// Encoding

/// Per-frame intern tables on the writing side. A first use appends a definition record to
/// `defs` (the frame buffer) before the event that refers to it.
#[derive(Default)]
struct Interner {
    comms: HashMap<Comm, u32>,
    nsids: HashMap<NsId, u32>,
    strings: HashMap<Box<str>, u32>,
}

impl Interner {
    fn clear(&mut self) {
        self.comms.clear();
        self.nsids.clear();
        self.strings.clear();
    }

    fn sizes(&self) -> [usize; 3] {
        [self.comms.len(), self.nsids.len(), self.strings.len()]
    }

    /// Forgets entries defined after `sizes` was taken (their definitions are being cut from
    /// the frame). Rare: only for an event too large for any frame.
    fn roll_back(&mut self, sizes: [usize; 3]) {
        self.comms.retain(|_, id| (*id as usize) < sizes[0]);
        self.nsids.retain(|_, id| (*id as usize) < sizes[1]);
        self.strings.retain(|_, id| (*id as usize) < sizes[2]);
    }

    fn comm(&mut self, defs: &mut Vec<u8>, c: Comm) -> u64 {
        let next = self.comms.len() as u32;
        let id = *self.comms.entry(c).or_insert_with(|| {
            // Trailing NULs only: the 16 bytes round-trip exactly.
            let used = c.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            defs.push(TAG_DEF_COMM);
            put_varint(defs, used as u64);
            defs.extend_from_slice(&c.0[..used]);
            next
        });
        u64::from(id)
    }

    fn nsid(&mut self, defs: &mut Vec<u8>, ns: NsId) -> u64 {
        let next = self.nsids.len() as u32;
        let id = *self.nsids.entry(ns).or_insert_with(|| {
            let mut body = Vec::with_capacity(15);
            put_varint(&mut body, ns.cookie);
            put_varint(&mut body, u64::from(ns.inum));
            defs.push(TAG_DEF_NSID);
            put_varint(defs, body.len() as u64);
            defs.extend_from_slice(&body);
            next
        });
        u64::from(id)
    }

    /// Mount-namespace inums share the namespace-id table (cookie 0).
    fn inum(&mut self, defs: &mut Vec<u8>, inum: u32) -> u64 {
        self.nsid(defs, NsId::new(0, inum))
    }

    fn string(&mut self, defs: &mut Vec<u8>, s: &str) -> u64 {
        if let Some(&id) = self.strings.get(s) {
            return u64::from(id);
        }
        let id = self.strings.len() as u32;
        self.strings.insert(s.into(), id);
        defs.push(TAG_DEF_STR);
        put_varint(defs, s.len() as u64);
        defs.extend_from_slice(s.as_bytes());
        u64::from(id)
    }
}

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
        put_varint(body, u64::from(ev.pid));
        put_varint(body, zigzag(i64::from(ev.tgid) - i64::from(ev.pid)));
        let comm = interner.comm(buf, ev.comm);
        put_varint(body, comm);
        let tag = encode_body(body, buf, interner, &ev.body);
        buf.push(tag);
        put_varint(buf, body.len() as u64);
        buf.extend_from_slice(body);
    }
}

fn hook_code(h: Hook) -> u8 {
    match h {
        Hook::Fentry => 0,
        Hook::Kprobe => 1,
        Hook::Tracepoint => 2,
        Hook::Userspace => 3,
    }
}

fn put_mac(out: &mut Vec<u8>, m: Mac) {
    out.extend_from_slice(&m.0);
}

fn put_ip(out: &mut Vec<u8>, ip: Ipv4Addr) {
    out.extend_from_slice(&ip.octets());
}

fn encode_body(b: &mut Vec<u8>, defs: &mut Vec<u8>, t: &mut Interner, body: &EventBody) -> u8 {
    match body {
        EventBody::NetnsCreated {
            netns,
            parent,
            net_ptr,
            source,
            clone_flags,
        } => {
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, t.nsid(defs, *parent));
            b.extend_from_slice(&net_ptr.to_le_bytes());
            b.push(match source {
                CreatedBy::Clone => 0,
                CreatedBy::Unshare => 1,
                CreatedBy::CopyNetNs => 2,
            });
            put_varint(b, *clone_flags);
            TAG_NETNS_CREATED
        }
        EventBody::Task {
            op,
            netns,
            prev,
            thread,
            group_dead,
            cgroup_id,
            ppid,
            mnt_ns,
            prev_mnt_ns,
        } => {
            let op = match op {
                TaskOp::Fork => 0,
                TaskOp::Unshare => 1,
                TaskOp::Setns => 2,
                TaskOp::Exit => 3,
            };
            b.push(op | (u8::from(*thread) << 4) | (u8::from(*group_dead) << 5));
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, t.nsid(defs, *prev));
            put_varint(b, *cgroup_id);
            put_varint(b, u64::from(*ppid));
            put_varint(b, t.inum(defs, *mnt_ns));
            put_varint(b, t.inum(defs, *prev_mnt_ns));
            TAG_TASK
        }
        EventBody::NetnsTeardown {
            netns,
            net_ptr,
            hook,
        }
        | EventBody::NetnsFreed {
            netns,
            net_ptr,
            hook,
        } => {
            put_varint(b, t.nsid(defs, *netns));
            b.extend_from_slice(&net_ptr.to_le_bytes());
            b.push(hook_code(*hook));
            if matches!(body, EventBody::NetnsTeardown { .. }) {
                TAG_NETNS_TEARDOWN
            } else {
                TAG_NETNS_FREED
            }
        }
        EventBody::CleanupRun => TAG_CLEANUP_RUN,
        EventBody::MountSyscall {
            op,
            netns,
            mnt_ns,
            ret,
            flags,
            from_dfd,
            to_dfd,
            source,
            target,
        } => {
            b.push(match op {
                MountOp::Mount => 0,
                MountOp::Umount => 1,
                MountOp::OpenTree => 2,
                MountOp::MoveMount => 3,
            });
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, t.inum(defs, *mnt_ns));
            put_varint(b, zigzag(*ret));
            put_varint(b, *flags);
            put_varint(b, zigzag(i64::from(*from_dfd)));
            put_varint(b, zigzag(i64::from(*to_dfd)));
            put_varint(b, t.string(defs, source));
            put_varint(b, t.string(defs, target));
            TAG_MOUNT_SYSCALL
        }
        EventBody::NsfsMount {
            netns,
            mnt_ns,
            net_ptr,
            hook,
        } => {
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, t.inum(defs, *mnt_ns));
            b.extend_from_slice(&net_ptr.to_le_bytes());
            b.push(hook_code(*hook));
            TAG_NSFS_MOUNT
        }
        EventBody::NsfsEvict { netns, net_ptr } => {
            put_varint(b, t.nsid(defs, *netns));
            b.extend_from_slice(&net_ptr.to_le_bytes());
            TAG_NSFS_EVICT
        }
        EventBody::NetDev {
            op,
            netns,
            ifindex,
            other,
            mac,
            name,
        } => {
            b.push(match op {
                NetDevOp::Register => 0,
                NetDevOp::Unregister => 1,
                NetDevOp::Move => 2,
            });
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, u64::from(*ifindex));
            put_varint(b, t.nsid(defs, *other));
            put_mac(b, *mac);
            put_varint(b, t.string(defs, name));
            TAG_NET_DEV
        }
        EventBody::Ipv4Addr {
            op,
            netns,
            ifindex,
            addr,
            prefix_len,
            label,
        } => {
            b.push(match op {
                AddrOp::Add => 0,
                AddrOp::Del => 1,
            });
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, u64::from(*ifindex));
            put_ip(b, *addr);
            b.push(*prefix_len);
            put_varint(b, t.string(defs, label));
            TAG_IPV4_ADDR
        }
        EventBody::Arp {
            netns,
            dir,
            op,
            ifindex,
            sender_ip,
            sender_mac,
            target_ip,
            target_mac,
            hook,
        } => {
            let dir = match dir {
                Direction::Rx => 0,
                Direction::Tx => 1,
            };
            b.push(dir | (hook_code(*hook) << 1));
            put_varint(b, u64::from(*op));
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, u64::from(*ifindex));
            put_ip(b, *sender_ip);
            put_mac(b, *sender_mac);
            put_ip(b, *target_ip);
            put_mac(b, *target_mac);
            TAG_ARP
        }
        EventBody::NeighUpdate {
            netns,
            ifindex,
            ip,
            mac,
            nud_state,
        } => {
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, u64::from(*ifindex));
            put_ip(b, *ip);
            put_mac(b, *mac);
            put_varint(b, u64::from(*nud_state));
            TAG_NEIGH_UPDATE
        }
        EventBody::Lost { kind, count } => {
            put_varint(b, u64::from(*kind));
            put_varint(b, *count);
            TAG_LOST
        }
        EventBody::PinAdded { netns, pin } | EventBody::PinRemoved { netns, pin } => {
            put_varint(b, t.nsid(defs, *netns));
            put_pin(b, defs, t, pin);
            if matches!(body, EventBody::PinAdded { .. }) {
                TAG_PIN_ADDED
            } else {
                TAG_PIN_REMOVED
            }
        }
        EventBody::Interfaces { netns, interfaces } => {
            put_varint(b, t.nsid(defs, *netns));
            put_interfaces(b, defs, t, interfaces);
            TAG_INTERFACES
        }
        EventBody::CgroupPath { cgroup_id, path } => {
            put_varint(b, *cgroup_id);
            put_varint(b, t.string(defs, path));
            TAG_CGROUP_PATH
        }
        EventBody::MemberCgroup { netns, path } => {
            put_varint(b, t.nsid(defs, *netns));
            put_varint(b, t.string(defs, path));
            TAG_MEMBER_CGROUP
        }
        EventBody::CniResult(e) => {
            put_varint(b, t.string(defs, &e.container_id));
            put_varint(b, t.string(defs, &e.if_name));
            put_varint(b, t.string(defs, &e.network_name));
            for opt in [
                &e.config_name,
                &e.netns_path,
                &e.pod_namespace,
                &e.pod_name,
                &e.pod_uid,
            ] {
                put_opt_str(b, defs, t, opt.as_deref());
            }
            put_varint(b, e.ips.len() as u64);
            for ip in &e.ips {
                put_ip_any(b, Some(ip.address));
                b.push(ip.prefix_len);
                put_ip_any(b, ip.gateway);
            }
            TAG_CNI_RESULT
        }
        EventBody::Snapshot(snap) => {
            b.push(match snap.phase {
                SnapshotPhase::Start => 0,
                SnapshotPhase::Final => 1,
            });
            put_varint(b, t.nsid(defs, snap.init_netns));
            put_varint(b, snap.namespaces.len() as u64);
            for ns in &snap.namespaces {
                put_varint(b, t.nsid(defs, ns.netns));
                put_varint(b, ns.members.len() as u64);
                for m in &ns.members {
                    put_varint(b, u64::from(m.pid));
                    put_varint(b, u64::from(m.tgid));
                    put_varint(b, t.comm(defs, m.comm));
                    put_varint(b, t.string(defs, &m.cgroup));
                }
                put_varint(b, ns.pins.len() as u64);
                for p in &ns.pins {
                    put_pin(b, defs, t, p);
                }
                put_interfaces(b, defs, t, &ns.interfaces);
                match &ns.interfaces_error {
                    None => b.push(0),
                    Some(e) => {
                        b.push(1);
                        put_varint(b, t.string(defs, e));
                    }
                }
            }
            TAG_SNAPSHOT
        }
    }
}

fn put_opt_str(b: &mut Vec<u8>, defs: &mut Vec<u8>, t: &mut Interner, s: Option<&str>) {
    match s {
        None => b.push(0),
        Some(s) => {
            b.push(1);
            put_varint(b, t.string(defs, s));
        }
    }
}

/// `0` (none), `4` + 4 bytes, or `6` + 16 bytes.
fn put_ip_any(b: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        None => b.push(0),
        Some(IpAddr::V4(a)) => {
            b.push(4);
            b.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            b.push(6);
            b.extend_from_slice(&a.octets());
        }
    }
}

fn put_pin(b: &mut Vec<u8>, defs: &mut Vec<u8>, t: &mut Interner, pin: &Pin) {
    match pin {
        Pin::BindMount {
            path,
            mnt_ns,
            holder_pid,
            holder_comm,
        } => {
            b.push(0);
            put_varint(b, t.string(defs, path));
            put_varint(b, t.inum(defs, *mnt_ns));
            put_varint(b, u64::from(*holder_pid));
            put_varint(b, t.comm(defs, *holder_comm));
        }
        Pin::Fd { pid, fd, comm } | Pin::Socket { pid, fd, comm } => {
            b.push(if matches!(pin, Pin::Fd { .. }) { 1 } else { 2 });
            put_varint(b, u64::from(*pid));
            put_varint(b, u64::from(*fd));
            put_varint(b, t.comm(defs, *comm));
        }
    }
}

fn put_interfaces(b: &mut Vec<u8>, defs: &mut Vec<u8>, t: &mut Interner, ifs: &[Interface]) {
    put_varint(b, ifs.len() as u64);
    for i in ifs {
        put_varint(b, t.string(defs, &i.name));
        put_varint(b, u64::from(i.ifindex));
        put_mac(b, i.mac);
        put_varint(b, i.ipv4.len() as u64);
        for (ip, prefix) in &i.ipv4 {
            put_ip(b, *ip);
            b.push(*prefix);
        }
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

struct Tables<'a> {
    payload: &'a [u8],
    comms: &'a [Comm],
    nsids: &'a [NsId],
    strings: &'a [(u32, u32)],
}

// Table lookups are a varint and a bounds check: inlined into `decode_event`, they stay
// cheaper than the call.
impl Tables<'_> {
    #[inline(always)]
    fn comm(&self, c: &mut Cursor<'_>) -> Result<Comm, DecodeError> {
        let i = c.varint()?;
        self.comms
            .get(i as usize)
            .copied()
            .ok_or("comm reference to an undefined entry")
    }

    #[inline(always)]
    fn nsid(&self, c: &mut Cursor<'_>) -> Result<NsId, DecodeError> {
        let i = c.varint()?;
        self.nsids
            .get(i as usize)
            .copied()
            .ok_or("namespace reference to an undefined entry")
    }

    #[inline(always)]
    fn inum(&self, c: &mut Cursor<'_>) -> Result<u32, DecodeError> {
        self.nsid(c).map(|ns| ns.inum)
    }

    fn str(&self, c: &mut Cursor<'_>) -> Result<String, DecodeError> {
        let i = c.varint()?;
        let &(start, len) = self
            .strings
            .get(i as usize)
            .ok_or("string reference to an undefined entry")?;
        let bytes = &self.payload[start as usize..(start + len) as usize];
        // Validated as UTF-8 when defined.
        Ok(std::str::from_utf8(bytes)
            .map_err(|_| "string is not UTF-8")?
            .to_owned())
    }
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

fn hook_from(code: u8) -> Result<Hook, DecodeError> {
    Ok(match code {
        0 => Hook::Fentry,
        1 => Hook::Kprobe,
        2 => Hook::Tracepoint,
        3 => Hook::Userspace,
        _ => return Err("unknown hook code"),
    })
}

fn ip(c: &mut Cursor<'_>) -> Result<Ipv4Addr, DecodeError> {
    c.array::<4>().map(Ipv4Addr::from)
}

fn mac(c: &mut Cursor<'_>) -> Result<Mac, DecodeError> {
    c.array::<6>().map(Mac)
}

/// Decodes the rest of an event body (after the timestamp delta). `Ok(None)` for a tag this
/// build does not know. Trailing bytes after the known fields are ignored: that is where a
/// later revision of format version 1 may append fields.
fn decode_event(
    tag: u8,
    ts_ns: u64,
    c: &mut Cursor<'_>,
    t: &Tables<'_>,
) -> Result<Option<Event>, DecodeError> {
    if tag > LAST_EVENT_TAG {
        return Ok(None);
    }
    let pid = c.varint_u32()?;
    // tgid is stored as a delta from pid; a corrupt delta must not overflow the sum.
    let tgid = i64::from(pid)
        .checked_add(c.zigzag()?)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or("tgid out of range")?;
    let comm = t.comm(c)?;
    let body = match tag {
        TAG_NETNS_CREATED => EventBody::NetnsCreated {
            netns: t.nsid(c)?,
            parent: t.nsid(c)?,
            net_ptr: c.u64_le()?,
            source: match c.u8()? {
                0 => CreatedBy::Clone,
                1 => CreatedBy::Unshare,
                2 => CreatedBy::CopyNetNs,
                _ => return Err("unknown created-by code"),
            },
            clone_flags: c.varint()?,
        },
        TAG_TASK => {
            let bits = c.u8()?;
            if bits & !0x33 != 0 {
                return Err("unknown task flag bits");
            }
            EventBody::Task {
                op: match bits & 0x0f {
                    0 => TaskOp::Fork,
                    1 => TaskOp::Unshare,
                    2 => TaskOp::Setns,
                    3 => TaskOp::Exit,
                    _ => return Err("unknown task op"),
                },
                thread: bits & 0x10 != 0,
                group_dead: bits & 0x20 != 0,
                netns: t.nsid(c)?,
                prev: t.nsid(c)?,
                cgroup_id: c.varint()?,
                ppid: c.varint_u32()?,
                mnt_ns: t.inum(c)?,
                prev_mnt_ns: t.inum(c)?,
            }
        }
        TAG_NETNS_TEARDOWN | TAG_NETNS_FREED => {
            let netns = t.nsid(c)?;
            let net_ptr = c.u64_le()?;
            let hook = hook_from(c.u8()?)?;
            if tag == TAG_NETNS_TEARDOWN {
                EventBody::NetnsTeardown {
                    netns,
                    net_ptr,
                    hook,
                }
            } else {
                EventBody::NetnsFreed {
                    netns,
                    net_ptr,
                    hook,
                }
            }
        }
        TAG_CLEANUP_RUN => EventBody::CleanupRun,
        TAG_MOUNT_SYSCALL => EventBody::MountSyscall {
            op: match c.u8()? {
                0 => MountOp::Mount,
                1 => MountOp::Umount,
                2 => MountOp::OpenTree,
                3 => MountOp::MoveMount,
                _ => return Err("unknown mount op"),
            },
            netns: t.nsid(c)?,
            mnt_ns: t.inum(c)?,
            ret: c.zigzag()?,
            flags: c.varint()?,
            from_dfd: i32::try_from(c.zigzag()?).map_err(|_| "dfd out of range")?,
            to_dfd: i32::try_from(c.zigzag()?).map_err(|_| "dfd out of range")?,
            source: t.str(c)?,
            target: t.str(c)?,
        },
        TAG_NSFS_MOUNT => EventBody::NsfsMount {
            netns: t.nsid(c)?,
            mnt_ns: t.inum(c)?,
            net_ptr: c.u64_le()?,
            hook: hook_from(c.u8()?)?,
        },
        TAG_NSFS_EVICT => EventBody::NsfsEvict {
            netns: t.nsid(c)?,
            net_ptr: c.u64_le()?,
        },
        TAG_NET_DEV => EventBody::NetDev {
            op: match c.u8()? {
                0 => NetDevOp::Register,
                1 => NetDevOp::Unregister,
                2 => NetDevOp::Move,
                _ => return Err("unknown netdev op"),
            },
            netns: t.nsid(c)?,
            ifindex: c.varint_u32()?,
            other: t.nsid(c)?,
            mac: mac(c)?,
            name: t.str(c)?,
        },
        TAG_IPV4_ADDR => EventBody::Ipv4Addr {
            op: match c.u8()? {
                0 => AddrOp::Add,
                1 => AddrOp::Del,
                _ => return Err("unknown address op"),
            },
            netns: t.nsid(c)?,
            ifindex: c.varint_u32()?,
            addr: ip(c)?,
            prefix_len: c.u8()?,
            label: t.str(c)?,
        },
        TAG_ARP => {
            let bits = c.u8()?;
            if bits & !0x07 != 0 {
                return Err("unknown arp flag bits");
            }
            EventBody::Arp {
                dir: if bits & 1 == 0 {
                    Direction::Rx
                } else {
                    Direction::Tx
                },
                hook: hook_from(bits >> 1)?,
                op: u16::try_from(c.varint()?).map_err(|_| "arp op out of range")?,
                netns: t.nsid(c)?,
                ifindex: c.varint_u32()?,
                sender_ip: ip(c)?,
                sender_mac: mac(c)?,
                target_ip: ip(c)?,
                target_mac: mac(c)?,
            }
        }
        TAG_NEIGH_UPDATE => EventBody::NeighUpdate {
            netns: t.nsid(c)?,
            ifindex: c.varint_u32()?,
            ip: ip(c)?,
            mac: mac(c)?,
            nud_state: c.varint_u32()?,
        },
        TAG_LOST => EventBody::Lost {
            kind: u16::try_from(c.varint()?).map_err(|_| "lost kind out of range")?,
            count: c.varint()?,
        },
        TAG_PIN_ADDED => EventBody::PinAdded {
            netns: t.nsid(c)?,
            pin: pin(c, t)?,
        },
        TAG_PIN_REMOVED => EventBody::PinRemoved {
            netns: t.nsid(c)?,
            pin: pin(c, t)?,
        },
        TAG_INTERFACES => EventBody::Interfaces {
            netns: t.nsid(c)?,
            interfaces: interfaces(c, t)?,
        },
        TAG_CGROUP_PATH => EventBody::CgroupPath {
            cgroup_id: c.varint()?,
            path: t.str(c)?,
        },
        TAG_MEMBER_CGROUP => EventBody::MemberCgroup {
            netns: t.nsid(c)?,
            path: t.str(c)?,
        },
        TAG_CNI_RESULT => {
            let container_id = t.str(c)?;
            let if_name = t.str(c)?;
            let network_name = t.str(c)?;
            let config_name = opt_str(c, t)?;
            let netns_path = opt_str(c, t)?;
            let pod_namespace = opt_str(c, t)?;
            let pod_name = opt_str(c, t)?;
            let pod_uid = opt_str(c, t)?;
            let n = c.count()?;
            let mut ips = Vec::with_capacity(n);
            for _ in 0..n {
                let address = ip_any(c)?.ok_or("CNI address missing")?;
                let prefix_len = c.u8()?;
                let gateway = ip_any(c)?;
                ips.push(CniIp {
                    address,
                    prefix_len,
                    gateway,
                });
            }
            EventBody::CniResult(Box::new(CniCacheEntry {
                container_id,
                if_name,
                network_name,
                config_name,
                netns_path,
                ips,
                pod_namespace,
                pod_name,
                pod_uid,
            }))
        }
        TAG_SNAPSHOT => {
            let phase = match c.u8()? {
                0 => SnapshotPhase::Start,
                1 => SnapshotPhase::Final,
                _ => return Err("unknown snapshot phase"),
            };
            let init_netns = t.nsid(c)?;
            let n = c.count()?;
            let mut namespaces = Vec::with_capacity(n);
            for _ in 0..n {
                let netns = t.nsid(c)?;
                let nm = c.count()?;
                let mut members = Vec::with_capacity(nm);
                for _ in 0..nm {
                    members.push(Member {
                        pid: c.varint_u32()?,
                        tgid: c.varint_u32()?,
                        comm: t.comm(c)?,
                        cgroup: t.str(c)?,
                    });
                }
                let np = c.count()?;
                let mut pins = Vec::with_capacity(np);
                for _ in 0..np {
                    pins.push(pin(c, t)?);
                }
                let interfaces = interfaces(c, t)?;
                let interfaces_error = match c.u8()? {
                    0 => None,
                    1 => Some(t.str(c)?),
                    _ => return Err("bad option marker"),
                };
                namespaces.push(SnapNamespace {
                    netns,
                    members,
                    pins,
                    interfaces,
                    interfaces_error,
                });
            }
            EventBody::Snapshot(Box::new(Snapshot {
                phase,
                namespaces,
                init_netns,
            }))
        }
        _ => return Ok(None),
    };
    Ok(Some(Event {
        ts_ns,
        pid,
        tgid,
        comm,
        body,
    }))
}

fn opt_str(c: &mut Cursor<'_>, t: &Tables<'_>) -> Result<Option<String>, DecodeError> {
    match c.u8()? {
        0 => Ok(None),
        1 => Ok(Some(t.str(c)?)),
        _ => Err("bad option marker"),
    }
}

fn ip_any(c: &mut Cursor<'_>) -> Result<Option<IpAddr>, DecodeError> {
    Ok(match c.u8()? {
        0 => None,
        4 => Some(IpAddr::from(c.array::<4>()?)),
        6 => Some(IpAddr::from(c.array::<16>()?)),
        _ => return Err("unknown address family"),
    })
}

fn pin(c: &mut Cursor<'_>, t: &Tables<'_>) -> Result<Pin, DecodeError> {
    Ok(match c.u8()? {
        0 => Pin::BindMount {
            path: t.str(c)?,
            mnt_ns: t.inum(c)?,
            holder_pid: c.varint_u32()?,
            holder_comm: t.comm(c)?,
        },
        1 => Pin::Fd {
            pid: c.varint_u32()?,
            fd: c.varint_u32()?,
            comm: t.comm(c)?,
        },
        2 => Pin::Socket {
            pid: c.varint_u32()?,
            fd: c.varint_u32()?,
            comm: t.comm(c)?,
        },
        _ => return Err("unknown pin kind"),
    })
}

fn interfaces(c: &mut Cursor<'_>, t: &Tables<'_>) -> Result<Vec<Interface>, DecodeError> {
    let n = c.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = t.str(c)?;
        let ifindex = c.varint_u32()?;
        let mac = mac(c)?;
        let na = c.count()?;
        let mut ipv4 = Vec::with_capacity(na);
        for _ in 0..na {
            ipv4.push((ip(c)?, c.u8()?));
        }
        out.push(Interface {
            name,
            ifindex,
            mac,
            ipv4,
        });
    }
    Ok(out)
}
