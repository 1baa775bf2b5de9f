//! How each field type is written into an event record, and read back.
//!
//! An event body is its payload's fields in declaration order (model/event.rs declares them
//! with `payload!`), each in the encoding of its type below. Comms, namespace ids and strings
//! go through per-frame intern tables: the record holds an index, and a definition record
//! precedes the first use in each frame. docs/trace-format.md describes the bytes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

pub use super::format::DecodeError;
use super::format::{Cursor, zigzag};
use crate::attribution::{CniCacheEntry, CniIp};
use crate::model::{
    AddrOp, ArpPacket, Comm, CreatedBy, DadState, Direction, Hook, Interface, InterfacesRead,
    Ipv6Address, Mac, Member, MountOp, NetDevOp, NsId, Pin, SnapNamespace, Snapshot, SnapshotPhase,
    TaskNetns, TaskOp,
};

pub const TAG_DEF_COMM: u8 = 0x01;
pub const TAG_DEF_NSID: u8 = 0x02;
pub const TAG_DEF_STR: u8 = 0x03;

/// A type with a trace encoding.
pub trait Wire: Sized {
    fn put(&self, w: &mut Writer<'_>);
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError>;
}

/// A named encoding of a `T` other than `T`'s own, chosen per field with `as` in `payload!`.
pub trait WireAs<T> {
    fn put(value: &T, w: &mut Writer<'_>);
    fn get(r: &mut Reader<'_, '_>) -> Result<T, DecodeError>;
}

/// A kernel address: 8 little-endian bytes (a varint would take 9 or 10).
pub struct KernelAddress;

impl WireAs<u64> for KernelAddress {
    #[inline(always)]
    fn put(value: &u64, w: &mut Writer<'_>) {
        w.body.put_u64_le(*value);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<u64, DecodeError> {
        r.c.u64_le()
    }
}

/// A mount namespace inum, through the frame's namespace-id table (cookie 0).
pub struct MntNsRef;

impl WireAs<u32> for MntNsRef {
    #[inline(always)]
    fn put(value: &u32, w: &mut Writer<'_>) {
        w.inum(*value);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<u32, DecodeError> {
        r.inum()
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Per-frame intern tables on the writing side. A first use appends a definition record to
/// the frame before the event that refers to it.
#[derive(Default)]
pub(super) struct Interner {
    comms: HashMap<Comm, u32>,
    nsids: HashMap<NsId, u32>,
    strings: HashMap<Box<str>, u32>,
}

impl Interner {
    pub(super) fn clear(&mut self) {
        self.comms.clear();
        self.nsids.clear();
        self.strings.clear();
    }

    pub(super) fn sizes(&self) -> [usize; 3] {
        [self.comms.len(), self.nsids.len(), self.strings.len()]
    }

    /// Forgets entries defined after `sizes` was taken (their definitions are being cut from
    /// the frame). Rare: only for an event too large for any frame.
    pub(super) fn roll_back(&mut self, sizes: [usize; 3]) {
        self.comms.retain(|_, id| (*id as usize) < sizes[0]);
        self.nsids.retain(|_, id| (*id as usize) < sizes[1]);
        self.strings.retain(|_, id| (*id as usize) < sizes[2]);
    }
}

/// Writes one event body into `body`; definitions it needs go to `defs` (the frame, ahead of
/// the event).
pub struct Writer<'a> {
    body: &'a mut Vec<u8>,
    defs: &'a mut Vec<u8>,
    interner: &'a mut Interner,
}

impl<'a> Writer<'a> {
    pub(super) fn new(
        body: &'a mut Vec<u8>,
        defs: &'a mut Vec<u8>,
        interner: &'a mut Interner,
    ) -> Self {
        Self {
            body,
            defs,
            interner,
        }
    }

    #[inline(always)]
    pub fn byte(&mut self, b: u8) {
        self.body.put_u8(b);
    }

    #[inline(always)]
    pub fn varint(&mut self, v: u64) {
        super::format::put_varint(self.body, v);
    }

    #[inline(always)]
    pub fn raw(&mut self, bytes: &[u8]) {
        self.body.put_slice(bytes);
    }

    pub fn comm(&mut self, c: Comm) {
        let next = self.interner.comms.len() as u32;
        let defs = &mut *self.defs;
        let id = *self.interner.comms.entry(c).or_insert_with(|| {
            // Trailing NULs only: the 16 bytes round-trip exactly.
            let used = c.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            defs.put_u8(TAG_DEF_COMM);
            super::format::put_varint(defs, used as u64);
            defs.put_slice(&c.0[..used]);
            next
        });
        self.varint(u64::from(id));
    }

    pub fn nsid(&mut self, ns: NsId) {
        let next = self.interner.nsids.len() as u32;
        let defs = &mut *self.defs;
        let id = *self.interner.nsids.entry(ns).or_insert_with(|| {
            let mut def = Vec::with_capacity(15);
            super::format::put_varint(&mut def, ns.cookie);
            super::format::put_varint(&mut def, u64::from(ns.inum));
            defs.put_u8(TAG_DEF_NSID);
            super::format::put_varint(defs, def.len() as u64);
            defs.put_slice(&def);
            next
        });
        self.varint(u64::from(id));
    }

    /// Mount-namespace inums share the namespace-id table (cookie 0).
    pub fn inum(&mut self, inum: u32) {
        self.nsid(NsId::new(0, inum));
    }

    pub fn str(&mut self, s: &str) {
        let id = match self.interner.strings.get(s) {
            Some(&id) => id,
            None => {
                let id = self.interner.strings.len() as u32;
                self.interner.strings.insert(s.into(), id);
                self.defs.put_u8(TAG_DEF_STR);
                super::format::put_varint(self.defs, s.len() as u64);
                self.defs.put_slice(s.as_bytes());
                id
            }
        };
        self.varint(u64::from(id));
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reading-side per-frame tables. Strings are ranges into the payload, validated as UTF-8 at
/// definition.
pub(super) struct Tables<'a> {
    pub payload: &'a [u8],
    pub comms: &'a [Comm],
    pub nsids: &'a [NsId],
    pub strings: &'a [(u32, u32)],
}

/// Reads one event body.
pub struct Reader<'a, 'b> {
    c: &'b mut Cursor<'a>,
    t: &'b Tables<'a>,
}

// Table lookups are a varint and a bounds check: inlined into each payload's `get`, they stay
// cheaper than the call.
impl<'a, 'b> Reader<'a, 'b> {
    pub(super) fn new(c: &'b mut Cursor<'a>, t: &'b Tables<'a>) -> Self {
        Self { c, t }
    }

    #[inline(always)]
    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        self.c.u8()
    }

    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        self.c.varint()
    }

    /// A collection length that cannot exceed what is left of the record.
    #[inline(always)]
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        self.c.count()
    }

    #[inline(always)]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.c.array::<N>()
    }

    #[inline(always)]
    pub fn comm(&mut self) -> Result<Comm, DecodeError> {
        let i = self.c.varint()?;
        self.t
            .comms
            .get(i as usize)
            .copied()
            .ok_or("comm reference to an undefined entry")
    }

    #[inline(always)]
    pub fn nsid(&mut self) -> Result<NsId, DecodeError> {
        let i = self.c.varint()?;
        self.t
            .nsids
            .get(i as usize)
            .copied()
            .ok_or("namespace reference to an undefined entry")
    }

    #[inline(always)]
    pub fn inum(&mut self) -> Result<u32, DecodeError> {
        self.nsid().map(|ns| ns.inum)
    }

    pub fn str(&mut self) -> Result<String, DecodeError> {
        let i = self.c.varint()?;
        let &(start, len) = self
            .t
            .strings
            .get(i as usize)
            .ok_or("string reference to an undefined entry")?;
        let bytes = &self.t.payload[start as usize..(start + len) as usize];
        // Validated as UTF-8 when defined.
        Ok(std::str::from_utf8(bytes)
            .map_err(|_| "string is not UTF-8")?
            .to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Encodings of field types

/// One raw byte.
impl Wire for u8 {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.byte(*self);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.byte()
    }
}

/// Unsigned integers wider than a byte: LEB128 varints.
macro_rules! varint_wire {
    ($($ty:ty: $range_error:literal),*) => {$(
        impl Wire for $ty {
            #[inline(always)]
            fn put(&self, w: &mut Writer<'_>) {
                w.varint(u64::from(*self));
            }
            #[inline(always)]
            fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
                <$ty>::try_from(r.varint()?).map_err(|_| $range_error)
            }
        }
    )*};
}
varint_wire!(u16: "value does not fit 16 bits", u32: "value does not fit 32 bits");

impl Wire for u64 {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.varint(*self);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.varint()
    }
}

/// Signed integers: zigzag varints.
impl Wire for i64 {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.varint(zigzag(*self));
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.c.zigzag()
    }
}

impl Wire for i32 {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.varint(zigzag(i64::from(*self)));
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        i32::try_from(r.c.zigzag()?).map_err(|_| "value does not fit 32 bits")
    }
}

impl Wire for String {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.str(self);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.str()
    }
}

impl Wire for NsId {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.nsid(*self);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.nsid()
    }
}

impl Wire for Comm {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.comm(*self);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.comm()
    }
}

/// 6 raw bytes.
impl Wire for Mac {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.raw(&self.0);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.array::<6>().map(Mac)
    }
}

/// 4 raw bytes, network order.
impl Wire for Ipv4Addr {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.raw(&self.octets());
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.array::<4>().map(Ipv4Addr::from)
    }
}

/// 16 raw bytes, network order.
impl Wire for Ipv6Addr {
    #[inline(always)]
    fn put(&self, w: &mut Writer<'_>) {
        w.raw(&self.octets());
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        r.array::<16>().map(Ipv6Addr::from)
    }
}

/// A family byte, `4` + 4 bytes or `6` + 16 bytes.
impl Wire for IpAddr {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            IpAddr::V4(a) => {
                w.byte(4);
                w.raw(&a.octets());
            }
            IpAddr::V6(a) => {
                w.byte(6);
                w.raw(&a.octets());
            }
        }
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        Option::<IpAddr>::get(r)?.ok_or("unknown address family")
    }
}

/// `None` is one zero byte. For strings, `Some` is a `1` byte and the value; for addresses,
/// the value's own non-zero family byte is the marker.
impl Wire for Option<String> {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            None => w.byte(0),
            Some(s) => {
                w.byte(1);
                w.str(s);
            }
        }
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        match r.byte()? {
            0 => Ok(None),
            1 => Ok(Some(r.str()?)),
            _ => Err("bad option marker"),
        }
    }
}

impl Wire for Option<IpAddr> {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            None => w.byte(0),
            Some(ip) => ip.put(w),
        }
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        Ok(match r.byte()? {
            0 => None,
            4 => Some(IpAddr::from(r.array::<4>()?)),
            6 => Some(IpAddr::from(r.array::<16>()?)),
            _ => return Err("unknown address family"),
        })
    }
}

/// The most a decoded collection reserves before its elements are read.
const PREALLOC_BYTES: usize = 64 << 10;

/// A count, then the elements.
impl<T: Wire> Wire for Vec<T> {
    fn put(&self, w: &mut Writer<'_>) {
        w.varint(self.len() as u64);
        for item in self {
            item.put(w);
        }
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        let n = r.count()?;
        // The count is only bounded by the bytes left (one per element at least), and an
        // element in memory can be a hundred times its encoding: reserve no more than
        // PREALLOC_BYTES up front, and let a count that the bytes really hold grow the rest.
        let mut out = Vec::with_capacity(n.min(PREALLOC_BYTES / size_of::<T>().max(1)));
        for _ in 0..n {
            out.push(T::get(r)?);
        }
        Ok(out)
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    fn put(&self, w: &mut Writer<'_>) {
        self.0.put(w);
        self.1.put(w);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        Ok((A::get(r)?, B::get(r)?))
    }
}

impl<T: Wire> Wire for Box<T> {
    fn put(&self, w: &mut Writer<'_>) {
        (**self).put(w);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        T::get(r).map(Box::new)
    }
}

/// The field enums of netns-trace-common: one byte, their fixed discriminant.
macro_rules! byte_enum_wire {
    ($($ty:ty),*) => {$(
        impl Wire for $ty {
            #[inline(always)]
            fn put(&self, w: &mut Writer<'_>) {
                w.byte(u8::from(*self));
            }
            #[inline(always)]
            fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
                <$ty>::try_from(r.byte()?).map_err(|_| concat!("unknown ", stringify!($ty), " value"))
            }
        }
    )*};
}
byte_enum_wire!(
    CreatedBy, TaskOp, Hook, MountOp, NetDevOp, AddrOp, Direction
);

// ---------------------------------------------------------------------------------------------
// Payloads whose encoding packs or orders fields differently from their declaration (format
// version 1 as written since the first release).

const TASK_THREAD: u8 = 0x10;
const TASK_GROUP_DEAD: u8 = 0x20;

/// One byte: op in the low nibble, `thread` and `group_dead` as bits 4 and 5.
impl Wire for TaskNetns {
    #[inline]
    fn put(&self, w: &mut Writer<'_>) {
        let mut bits = u8::from(self.op);
        if self.thread {
            bits |= TASK_THREAD;
        }
        if self.group_dead {
            bits |= TASK_GROUP_DEAD;
        }
        w.byte(bits);
        self.netns.put(w);
        self.prev.put(w);
        self.cgroup_id.put(w);
        self.ppid.put(w);
        w.inum(self.mnt_ns);
        w.inum(self.prev_mnt_ns);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        let bits = r.byte()?;
        if bits & !(0x0f | TASK_THREAD | TASK_GROUP_DEAD) != 0 {
            return Err("unknown task flag bits");
        }
        Ok(Self {
            op: TaskOp::try_from(bits & 0x0f).map_err(|_| "unknown TaskOp value")?,
            thread: bits & TASK_THREAD != 0,
            group_dead: bits & TASK_GROUP_DEAD != 0,
            netns: r.nsid()?,
            prev: r.nsid()?,
            cgroup_id: u64::get(r)?,
            ppid: u32::get(r)?,
            mnt_ns: r.inum()?,
            prev_mnt_ns: r.inum()?,
        })
    }
}

/// One byte: direction in bit 0, hook in bits 1-2; then op, netns and the addresses.
impl Wire for ArpPacket {
    #[inline]
    fn put(&self, w: &mut Writer<'_>) {
        w.byte(u8::from(self.dir) | (u8::from(self.hook) << 1));
        self.op.put(w);
        self.netns.put(w);
        self.ifindex.put(w);
        self.sender_ip.put(w);
        self.sender_mac.put(w);
        self.target_ip.put(w);
        self.target_mac.put(w);
    }
    #[inline(always)]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        let bits = r.byte()?;
        if bits & !0x07 != 0 {
            return Err("unknown arp flag bits");
        }
        Ok(Self {
            dir: Direction::try_from(bits & 1).map_err(|_| "unknown Direction value")?,
            hook: Hook::try_from(bits >> 1).map_err(|_| "unknown Hook value")?,
            op: u16::get(r)?,
            netns: r.nsid()?,
            ifindex: u32::get(r)?,
            sender_ip: Ipv4Addr::get(r)?,
            sender_mac: Mac::get(r)?,
            target_ip: Ipv4Addr::get(r)?,
            target_mac: Mac::get(r)?,
        })
    }
}

/// A kind byte (0 bind mount, 1 fd, 2 socket), then its fields.
impl Wire for Pin {
    #[inline]
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            Pin::BindMount {
                path,
                mnt_ns,
                holder_pid,
                holder_comm,
            } => {
                w.byte(0);
                w.str(path);
                w.inum(*mnt_ns);
                holder_pid.put(w);
                w.comm(*holder_comm);
            }
            Pin::Fd { pid, fd, comm } | Pin::Socket { pid, fd, comm } => {
                w.byte(if matches!(self, Pin::Fd { .. }) { 1 } else { 2 });
                pid.put(w);
                fd.put(w);
                w.comm(*comm);
            }
        }
    }
    #[inline]
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        Ok(match r.byte()? {
            0 => Pin::BindMount {
                path: r.str()?,
                mnt_ns: r.inum()?,
                holder_pid: u32::get(r)?,
                holder_comm: r.comm()?,
            },
            1 => Pin::Fd {
                pid: u32::get(r)?,
                fd: u32::get(r)?,
                comm: r.comm()?,
            },
            2 => Pin::Socket {
                pid: u32::get(r)?,
                fd: u32::get(r)?,
                comm: r.comm()?,
            },
            _ => return Err("unknown pin kind"),
        })
    }
}

/// The version-1 fields only. The IPv6 addresses, added later, cannot go inside an interface
/// (old readers would misread the rest of the list): the events that carry interfaces append
/// them after their body ([`put_ipv6_trailer`]).
impl Wire for Interface {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.name);
        self.ifindex.put(w);
        self.mac.put(w);
        self.ipv4.put(w);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        Ok(Self {
            name: r.str()?,
            ifindex: u32::get(r)?,
            mac: Mac::get(r)?,
            ipv4: Vec::get(r)?,
            ipv6: Vec::new(),
        })
    }
}

const IPV6_TENTATIVE: u8 = 1;
const IPV6_DADFAILED: u8 = 2;
const IPV6_NODAD: u8 = 4;

/// 16 address bytes, the prefix length, then a flags byte: bit 0 tentative, bit 1 DAD failed,
/// bit 2 nodad. The scope is the address's own, not stored.
impl Wire for Ipv6Address {
    fn put(&self, w: &mut Writer<'_>) {
        w.raw(&self.address.octets());
        w.byte(self.prefix_len);
        let mut bits = match self.dad {
            None => 0,
            Some(DadState::Tentative) => IPV6_TENTATIVE,
            Some(DadState::Failed) => IPV6_DADFAILED,
        };
        if self.nodad {
            bits |= IPV6_NODAD;
        }
        w.byte(bits);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        let address = Ipv6Addr::from(r.array::<16>()?);
        let prefix_len = r.byte()?;
        let bits = r.byte()?;
        let dad = match bits & (IPV6_TENTATIVE | IPV6_DADFAILED) {
            0 => None,
            IPV6_TENTATIVE => Some(DadState::Tentative),
            IPV6_DADFAILED => Some(DadState::Failed),
            _ => return Err("ipv6 address both tentative and dad-failed"),
        };
        if bits & !(IPV6_TENTATIVE | IPV6_DADFAILED | IPV6_NODAD) != 0 {
            return Err("unknown ipv6 address flag bits");
        }
        Ok(Ipv6Address::new(
            address,
            prefix_len,
            dad,
            bits & IPV6_NODAD != 0,
        ))
    }
}

/// Appended after the version-1 body of an event carrying interfaces, only when one of them
/// has an IPv6 address: the number of interfaces, then each one's IPv6 addresses, in the
/// order the body listed the interfaces.
fn put_ipv6_trailer<'i>(
    w: &mut Writer<'_>,
    interfaces: impl Iterator<Item = &'i Interface> + Clone,
) {
    if interfaces.clone().all(|i| i.ipv6.is_empty()) {
        return;
    }
    put_ipv6_trailer_always(w, interfaces);
}

/// The IPv6 trailer even when no interface has an address (a trailer follows it).
fn put_ipv6_trailer_always<'i>(
    w: &mut Writer<'_>,
    interfaces: impl Iterator<Item = &'i Interface> + Clone,
) {
    w.varint(interfaces.clone().count() as u64);
    for i in interfaces {
        i.ipv6.put(w);
    }
}

/// Reads what [`put_ipv6_trailer`] wrote into `interfaces` (in body order); a body without
/// it (older traces, or no IPv6 address) leaves them without IPv6 addresses.
fn get_ipv6_trailer<'i>(
    r: &mut Reader<'_, '_>,
    count: usize,
    interfaces: impl Iterator<Item = &'i mut Interface>,
) -> Result<(), DecodeError> {
    if r.c.is_empty() {
        return Ok(());
    }
    if r.varint()? != count as u64 {
        return Err("ipv6 addresses for a different number of interfaces");
    }
    for i in interfaces {
        i.ipv6 = Vec::get(r)?;
    }
    Ok(())
}

/// The version-1 body (ns netns, the interfaces), then the IPv6 trailer.
impl Wire for InterfacesRead {
    fn put(&self, w: &mut Writer<'_>) {
        self.netns.put(w);
        self.interfaces.put(w);
        put_ipv6_trailer(w, self.interfaces.iter());
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        let netns = r.nsid()?;
        let mut interfaces: Vec<Interface> = Vec::get(r)?;
        get_ipv6_trailer(r, interfaces.len(), interfaces.iter_mut())?;
        Ok(Self { netns, interfaces })
    }
}

/// The optional strings come together, before the addresses.
impl Wire for CniCacheEntry {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.container_id);
        w.str(&self.if_name);
        w.str(&self.network_name);
        for opt in [
            &self.config_name,
            &self.netns_path,
            &self.pod_namespace,
            &self.pod_name,
            &self.pod_uid,
        ] {
            opt.put(w);
        }
        self.ips.put(w);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        let container_id = r.str()?;
        let if_name = r.str()?;
        let network_name = r.str()?;
        let config_name = Option::get(r)?;
        let netns_path = Option::get(r)?;
        let pod_namespace = Option::get(r)?;
        let pod_name = Option::get(r)?;
        let pod_uid = Option::get(r)?;
        let ips = Vec::get(r)?;
        Ok(Self {
            container_id,
            if_name,
            network_name,
            config_name,
            netns_path,
            ips,
            pod_namespace,
            pod_name,
            pod_uid,
        })
    }
}

impl Wire for CniIp {
    fn put(&self, w: &mut Writer<'_>) {
        self.address.put(w);
        self.prefix_len.put(w);
        self.gateway.put(w);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        Ok(Self {
            address: Option::<IpAddr>::get(r)?.ok_or("CNI address missing")?,
            prefix_len: u8::get(r)?,
            gateway: Option::get(r)?,
        })
    }
}

impl Wire for Member {
    fn put(&self, w: &mut Writer<'_>) {
        self.pid.put(w);
        self.tgid.put(w);
        w.comm(self.comm);
        w.str(&self.cgroup);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        Ok(Self {
            pid: u32::get(r)?,
            tgid: u32::get(r)?,
            comm: r.comm()?,
            cgroup: r.str()?,
        })
    }
}

impl Wire for SnapNamespace {
    fn put(&self, w: &mut Writer<'_>) {
        self.netns.put(w);
        self.members.put(w);
        self.pins.put(w);
        self.interfaces.put(w);
        self.interfaces_error.put(w);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        Ok(Self {
            netns: r.nsid()?,
            members: Vec::get(r)?,
            pins: Vec::get(r)?,
            interfaces: Vec::get(r)?,
            interfaces_error: Option::get(r)?,
        })
    }
}

/// Phase byte (0 start, 1 final), the init namespace, then the namespaces, the IPv6 trailer
/// and, when known, the node's mount namespace (a trailer after the IPv6 one).
impl Wire for Snapshot {
    fn put(&self, w: &mut Writer<'_>) {
        w.byte(match self.phase {
            SnapshotPhase::Start => 0,
            SnapshotPhase::Final => 1,
        });
        self.init_netns.put(w);
        self.namespaces.put(w);
        let interfaces = self.namespaces.iter().flat_map(|n| &n.interfaces);
        if self.init_mnt_ns == 0 {
            put_ipv6_trailer(w, interfaces);
            return;
        }
        // The mount namespace trailer follows the IPv6 one, which is then written even
        // without an address, so a reader knows where one ends and the other begins.
        put_ipv6_trailer_always(w, interfaces);
        w.inum(self.init_mnt_ns);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        let phase = match r.byte()? {
            0 => SnapshotPhase::Start,
            1 => SnapshotPhase::Final,
            _ => return Err("unknown snapshot phase"),
        };
        let init_netns = r.nsid()?;
        let mut namespaces: Vec<SnapNamespace> = Vec::get(r)?;
        let count = namespaces.iter().map(|n| n.interfaces.len()).sum();
        get_ipv6_trailer(
            r,
            count,
            namespaces.iter_mut().flat_map(|n| n.interfaces.iter_mut()),
        )?;
        let init_mnt_ns = if r.c.is_empty() { 0 } else { r.inum()? };
        Ok(Self {
            phase,
            init_netns,
            namespaces,
            init_mnt_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::format::Cursor;

    /// Issue 14 item 6: a hostile count in a big frame made one frame reserve count ×
    /// size_of::<T>() bytes (a 32 MiB frame: gigabytes) before its first element failed.
    #[test]
    fn a_hostile_count_reserves_no_more_than_the_elements_read() {
        const N: usize = 1 << 20;
        let mut payload = Vec::with_capacity(N + 8);
        let mut n = N as u64;
        while n >= 0x80 {
            payload.push((n as u8) | 0x80);
            n >>= 7;
        }
        payload.push(n as u8);
        // Then no valid element: each string index is a varint that never ends.
        payload.resize(payload.len() + N, 0xff);
        let tables = Tables {
            payload: &payload,
            comms: &[],
            nsids: &[],
            strings: &[],
        };
        let (result, largest) = crate::test_alloc::largest_allocation_during(|| {
            let mut c = Cursor::new(&payload);
            Vec::<(String, String)>::get(&mut Reader::new(&mut c, &tables))
        });
        assert!(result.is_err());
        assert!(
            largest <= PREALLOC_BYTES,
            "one allocation of {largest} bytes for a count of {N} (each element {} bytes)",
            size_of::<(String, String)>()
        );
    }
}
