use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use netns_trace_common::{self as abi, EventHeader};

use crate::attribution::CniCacheEntry;
use crate::probes::decode::{BadValue, FromRecord, cstr, field, ns};
use crate::trace::wire::{DecodeError, KernelAddress, MntNsRef, Reader, Wire, WireAs, Writer};

/// Identity of a network namespace. Inode numbers are reused by the kernel, so `cookie`
/// (`net->net_cookie`) is the real key whenever it is non-zero; `inum` is what operators see
/// in `/proc/PID/ns/net` and `lsns`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct NsId {
    pub cookie: u64,
    pub inum: u32,
}

impl NsId {
    pub const fn new(cookie: u64, inum: u32) -> Self {
        Self { cookie, inum }
    }
    pub const fn is_none(&self) -> bool {
        self.cookie == 0 && self.inum == 0
    }
}

impl fmt::Display for NsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cookie != 0 {
            write!(f, "net:[{}]#{}", self.inum, self.cookie)
        } else {
            write!(f, "net:[{}]", self.inum)
        }
    }
}

/// A task's command name (kernel `comm`, at most 15 bytes). Serialized as a string.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Comm(pub [u8; 16]);

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Comm::from_str_lossy(&s))
    }
}

impl Comm {
    pub fn from_str_lossy(s: &str) -> Self {
        let mut b = [0u8; 16];
        let n = s.len().min(15);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        Self(b)
    }
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.0[..end])
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Terminal-safe: a task names itself (prctl), so control characters are escaped.
impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::terminal_safe(&self.as_str()))
    }
}

/// A MAC address. Serialized as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            let p = parts
                .next()
                .ok_or_else(|| format!("{s:?} is not a MAC address"))?;
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{s:?} is not a MAC address"));
        }
        Ok(Mac(m))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 6]>::deserialize(d).map(Mac)
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// The field enums are declared once, with their discriminants, beside the kind table in
// netns-trace-common: the eBPF programs, the decoders, the trace codec and serde all use them.
pub use netns_trace_common::{
    AddrOp, CreatedBy, Direction, EventKind, Hook, MountOp, NetDevOp, TaskOp,
};

/// Something that holds a reference on a namespace and keeps it alive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pin {
    /// An nsfs bind mount (`mount --bind /proc/PID/ns/net PATH`, `ip netns add`, or
    /// open_tree + move_mount), in mount namespace `mnt_ns`. `holder_pid` is a process living in
    /// that mount namespace when it was seen (0 if none), which is what keeps a copied mount alive.
    BindMount {
        path: String,
        mnt_ns: u32,
        holder_pid: u32,
        holder_comm: Comm,
    },
    /// An open fd on the namespace's nsfs file.
    Fd { pid: u32, fd: u32, comm: Comm },
    /// A socket whose `sk_net` is the namespace.
    Socket { pid: u32, fd: u32, comm: Comm },
}

/// A network interface as read from rtnetlink (or assembled from device/address events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub mac: Mac,
    /// `(address, prefix length)`.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// Absent in traces written before IPv6 addresses were read (docs/trace-format.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<Ipv6Address>,
}

/// What an IPv6 address's prefix makes it. Only global and unique-local addresses identify
/// one holder; the others exist, by design, in many namespaces at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ipv6Scope {
    /// `::1` and `::`.
    Host,
    /// fe80::/10: every IPv6-enabled interface has one, derived from its MAC.
    LinkLocal,
    /// ff00::/8.
    Multicast,
    /// fc00::/7 (RFC 4193).
    UniqueLocal,
    /// Everything else.
    Global,
}

impl Ipv6Scope {
    pub fn of(a: Ipv6Addr) -> Self {
        let first = a.segments()[0];
        if a.is_loopback() || a.is_unspecified() {
            Self::Host
        } else if first & 0xffc0 == 0xfe80 {
            Self::LinkLocal
        } else if a.is_multicast() {
            Self::Multicast
        } else if first & 0xfe00 == 0xfc00 {
            Self::UniqueLocal
        } else {
            Self::Global
        }
    }

    /// Whether the same address in two namespaces is a conflict.
    pub fn identifies_holder(self) -> bool {
        matches!(self, Self::UniqueLocal | Self::Global)
    }
}

/// Where an address's duplicate address detection (RFC 4862) stands, when it is not simply
/// in service: the kernel's IFA_F_TENTATIVE and IFA_F_DADFAILED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DadState {
    /// Detection is running; the address is not used yet.
    Tentative,
    /// Detection found another holder on the link; the kernel does not use the address.
    Failed,
}

impl fmt::Display for DadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DadState::Tentative => "tentative",
            DadState::Failed => "dadfailed",
        })
    }
}

/// An IPv6 address of an interface (RTM_NEWADDR, AF_INET6), with the address flags that
/// tell whether the kernel uses it. The scope is the address's own ([`Ipv6Scope::of`]), set
/// by [`Ipv6Address::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ipv6Address {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub scope: Ipv6Scope,
    /// IFA_F_TENTATIVE or IFA_F_DADFAILED, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dad: Option<DadState>,
    /// IFA_F_NODAD: added without duplicate address detection (what CNI plugins do).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nodad: bool,
}

impl Ipv6Address {
    pub fn new(address: Ipv6Addr, prefix_len: u8, dad: Option<DadState>, nodad: bool) -> Self {
        Self {
            address,
            prefix_len,
            scope: Ipv6Scope::of(address),
            dad,
            nodad,
        }
    }
}

/// `addr/len`, then iproute2's words for the flags (`nodad`, `tentative`, `dadfailed`).
impl fmt::Display for Ipv6Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)?;
        if self.nodad {
            f.write_str(" nodad")?;
        }
        if let Some(d) = self.dad {
            write!(f, " {d}")?;
        }
        Ok(())
    }
}

/// A process that is a member of a namespace (seen in a snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
    /// The cgroup path from /proc/PID/cgroup (v2 line, or the v1 net_cls/pids/memory one).
    pub cgroup: String,
}

/// One namespace as a snapshot found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapNamespace {
    pub netns: NsId,
    pub members: Vec<Member>,
    pub pins: Vec<Pin>,
    pub interfaces: Vec<Interface>,
    /// Set when interfaces could not be read (no handle, permission), with the reason.
    pub interfaces_error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotPhase {
    /// Taken before the probes attach: the state the trace starts from.
    Start,
    /// Taken when recording stops: interfaces and addresses of what is still alive.
    Final,
}

/// Userspace's view of every namespace at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub phase: SnapshotPhase,
    pub namespaces: Vec<SnapNamespace>,
    /// The host's initial namespace (pid 1's), never reported as leaked.
    pub init_netns: NsId,
    /// The node's mount namespace (pid 1's, or kthreadd's where pid 1 is hidden), where
    /// runtimes put their pins ([`crate::attribution::NodeMountNs`]); 0 when unknown (traces
    /// written before it was recorded, or neither process readable).
    #[serde(default)]
    pub init_mnt_ns: u32,
}

/// Declares an event payload: a named struct whose fields are written to the trace in
/// declaration order, each by its type's [`Wire`] encoding or, after `as`, by a named codec
/// ([`KernelAddress`]: 8 fixed bytes; [`MntNsRef`]: a mount-namespace inum in the frame's
/// namespace table).
macro_rules! payload {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* pub $field:ident: $ty:ty $(as $codec:ty)?,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl Wire for $name {
            // A payload without fields reads and writes nothing.
            #[allow(unused_variables)]
            #[inline(always)]
            fn put(&self, w: &mut Writer<'_>) {
                $(payload!(@put w, self.$field, $ty $(, $codec)?);)*
            }
            #[allow(unused_variables)]
            #[inline(always)]
            fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
                Ok(Self { $($field: payload!(@get r, $ty $(, $codec)?),)* })
            }
        }
    };
    (@put $w:ident, $value:expr, $ty:ty) => { Wire::put(&$value, $w) };
    (@put $w:ident, $value:expr, $ty:ty, $codec:ty) => { <$codec as WireAs<$ty>>::put(&$value, $w) };
    (@get $r:ident, $ty:ty) => { <$ty as Wire>::get($r)? };
    (@get $r:ident, $ty:ty, $codec:ty) => { <$codec as WireAs<$ty>>::get($r)? };
}

macro_rules! define_event_body {
    ($($id:literal $origin:ident $(($record:ident))? $name:literal $variant:ident($($payload:tt)*),)*) => {
        /// What happened. Kernel records and userspace observations alike; one variant per row
        /// of the event table ([`netns_trace_common::with_event_table`]).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum EventBody {
            $(#[serde(rename = $name)] $variant($($payload)*),)*
        }

        impl EventBody {
            pub fn kind(&self) -> EventKind {
                match self {
                    $(EventBody::$variant(_) => EventKind::$variant,)*
                }
            }

            /// Writes the fields (not the kind) in the trace encoding.
            #[inline]
            pub(crate) fn put(&self, w: &mut Writer<'_>) {
                match self {
                    $(EventBody::$variant(e) => e.put(w),)*
                }
            }

            /// Reads the fields of an event of `kind`. Inlined into the frame decoder, so the
            /// payload is built in place rather than returned and copied.
            #[inline(always)]
            pub(crate) fn get(kind: EventKind, r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
                Ok(match kind {
                    $(EventKind::$variant => EventBody::$variant(Wire::get(r)?),)*
                })
            }
        }
    };
}

netns_trace_common::with_event_table!(define_event_body);

payload! {
    /// A new network namespace. The event's task is its creator.
    pub struct NetnsCreated {
        pub netns: NsId,
        /// The creator's namespace before the new one was made.
        pub parent: NsId,
        /// Kernel address of the `struct net`, used only to match teardown and free.
        pub net_ptr: u64 as KernelAddress,
        pub source: CreatedBy,
        pub clone_flags: u64,
    }
}

impl FromRecord for NetnsCreated {
    type Record = abi::NetnsCreated;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            netns: ns(hdr.netns),
            parent: ns(r.parent),
            net_ptr: r.net_ptr,
            source: field(r.source)?,
            clone_flags: r.clone_flags,
        })
    }
}

/// A task entered (`netns`) and/or left (`prev`) a namespace. For Exit both are the same.
/// (Its trace encoding packs `op`, `thread` and `group_dead` into one byte: see trace/wire.rs.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskNetns {
    pub op: TaskOp,
    pub netns: NsId,
    pub prev: NsId,
    pub thread: bool,
    pub group_dead: bool,
    pub cgroup_id: u64,
    pub ppid: u32,
    pub mnt_ns: u32,
    pub prev_mnt_ns: u32,
}

impl FromRecord for TaskNetns {
    type Record = abi::TaskNetns;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            op: field(r.op)?,
            netns: ns(hdr.netns),
            prev: ns(r.prev),
            thread: r.flags & abi::task_flags::THREAD != 0,
            group_dead: r.flags & abi::task_flags::GROUP_DEAD != 0,
            cgroup_id: r.cgroup_id,
            ppid: r.ppid,
            mnt_ns: r.mnt_ns,
            prev_mnt_ns: r.prev_mnt_ns,
        })
    }
}

payload! {
    /// Something happened to a `struct net`: `NetnsTeardown`, the kernel started destroying
    /// it (per-net exit callbacks); `NetnsFreed`, its memory went back to the slab.
    pub struct NetnsObject {
        pub netns: NsId,
        pub net_ptr: u64 as KernelAddress,
        pub hook: Hook,
    }
}

impl FromRecord for NetnsObject {
    type Record = abi::NetnsObject;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            netns: ns(hdr.netns),
            net_ptr: r.net_ptr,
            hook: field(r.hook)?,
        })
    }
}

payload! {
    /// The cleanup_net worker started a batch (tracepoint mode's coarse teardown signal).
    pub struct CleanupRun {}
}

impl FromRecord for CleanupRun {
    type Record = abi::NetnsObject;
    fn from_record(_: &EventHeader, _: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {})
    }
}

payload! {
    /// A mount-family syscall returned. `netns` is the caller's.
    pub struct MountSyscall {
        pub op: MountOp,
        pub netns: NsId,
        pub mnt_ns: u32 as MntNsRef,
        pub ret: i64,
        pub flags: u64,
        pub from_dfd: i32,
        pub to_dfd: i32,
        pub source: String,
        pub target: String,
    }
}

impl FromRecord for MountSyscall {
    type Record = abi::MountSyscall;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            op: field(r.op)?,
            netns: ns(hdr.netns),
            mnt_ns: r.mnt_ns,
            ret: r.ret,
            flags: r.flags,
            from_dfd: r.from_dfd,
            to_dfd: r.to_dfd,
            source: cstr(&r.source),
            target: cstr(&r.target),
        })
    }
}

payload! {
    /// Full mode: an nsfs netns file was grafted into mount namespace `mnt_ns`.
    pub struct NsfsMount {
        pub netns: NsId,
        pub mnt_ns: u32 as MntNsRef,
        pub net_ptr: u64 as KernelAddress,
        pub hook: Hook,
    }
}

impl FromRecord for NsfsMount {
    type Record = abi::NsfsMount;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            netns: ns(hdr.netns),
            mnt_ns: r.mnt_ns,
            net_ptr: r.net_ptr,
            hook: field(r.hook)?,
        })
    }
}

payload! {
    /// Full mode: the last nsfs inode for the namespace was evicted (the pin truly let go).
    pub struct NsfsEvict {
        pub netns: NsId,
        pub net_ptr: u64 as KernelAddress,
    }
}

impl FromRecord for NsfsEvict {
    type Record = abi::NetnsObject;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            netns: ns(hdr.netns),
            net_ptr: r.net_ptr,
        })
    }
}

payload! {
    /// A network device was registered, unregistered or moved (into `netns`, from `other`).
    pub struct NetDev {
        pub op: NetDevOp,
        pub netns: NsId,
        pub ifindex: u32,
        pub other: NsId,
        pub mac: Mac,
        pub name: String,
    }
}

impl FromRecord for NetDev {
    type Record = abi::NetDev;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&r.mac[..6]);
        Ok(Self {
            op: field(r.op)?,
            netns: ns(hdr.netns),
            ifindex: r.ifindex,
            other: ns(r.other),
            mac: Mac(mac),
            name: cstr(&r.name),
        })
    }
}

payload! {
    /// An IPv4 address was added to or removed from a device in `netns`.
    pub struct Ipv4AddrChange {
        pub op: AddrOp,
        pub netns: NsId,
        pub ifindex: u32,
        pub addr: Ipv4Addr,
        pub prefix_len: u8,
        pub label: String,
    }
}

impl FromRecord for Ipv4AddrChange {
    type Record = abi::Ipv4Addr;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            op: field(r.op)?,
            netns: ns(hdr.netns),
            ifindex: r.ifindex,
            addr: Ipv4Addr::from(r.addr),
            prefix_len: r.prefix_len,
            label: cstr(&r.label),
        })
    }
}

/// An ARP packet received or sent on a device in `netns`. (Its trace encoding packs `dir` and
/// `hook` into one byte: see trace/wire.rs.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArpPacket {
    pub netns: NsId,
    pub dir: Direction,
    /// ARP opcode: 1 request, 2 reply.
    pub op: u16,
    pub ifindex: u32,
    pub sender_ip: Ipv4Addr,
    pub sender_mac: Mac,
    pub target_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub hook: Hook,
}

impl FromRecord for ArpPacket {
    type Record = abi::Arp;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            netns: ns(hdr.netns),
            dir: field(r.dir)?,
            op: r.op,
            ifindex: r.ifindex,
            sender_ip: Ipv4Addr::from(r.sender_ip),
            sender_mac: Mac(r.sender_mac),
            target_ip: Ipv4Addr::from(r.target_ip),
            target_mac: Mac(r.target_mac),
            hook: field(r.hook)?,
        })
    }
}

payload! {
    /// A Neighbour Solicitation or Advertisement (ICMPv6 135/136) received or sent on a
    /// device in `netns`: IPv6's ARP request and reply.
    pub struct NdiscPacket {
        pub netns: NsId,
        pub dir: Direction,
        pub hook: Hook,
        /// 135 solicitation, 136 advertisement.
        pub icmp_type: u8,
        pub ifindex: u32,
        /// The address a solicitation asks about, or an advertisement claims.
        pub target: Ipv6Addr,
        /// The IPv6 source (`::` for a duplicate address detection probe).
        pub src: Ipv6Addr,
        /// The IPv6 destination.
        pub dst: Ipv6Addr,
        /// The link-layer address option's MAC (the sender's in a solicitation, the claimed
        /// one in an advertisement); all zero when `lla_option` is 0.
        pub lla: Mac,
        /// The ND option it came from: 1 source, 2 target; 0 when the packet carried none.
        pub lla_option: u8,
        /// Advertisements: router 0x80, solicited 0x40, override 0x20.
        pub na_flags: u8,
    }
}

impl NdiscPacket {
    pub fn is_advertisement(&self) -> bool {
        self.icmp_type == abi::ndisc::ADVERTISEMENT
    }

    /// The MAC the packet claims for `target` (an advertisement with its target link-layer
    /// address option), if any.
    pub fn claimed_mac(&self) -> Option<Mac> {
        (self.is_advertisement() && self.lla_option == abi::ndisc::OPT_TARGET_LLA)
            .then_some(self.lla)
    }
}

impl FromRecord for NdiscPacket {
    type Record = abi::Ndisc;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        if r.icmp_type != abi::ndisc::SOLICITATION && r.icmp_type != abi::ndisc::ADVERTISEMENT {
            return Err(BadValue(r.icmp_type.into()));
        }
        if r.lla_option > abi::ndisc::OPT_TARGET_LLA {
            return Err(BadValue(r.lla_option.into()));
        }
        Ok(Self {
            netns: ns(hdr.netns),
            dir: field(r.dir)?,
            hook: field(r.hook)?,
            icmp_type: r.icmp_type,
            ifindex: r.ifindex,
            target: Ipv6Addr::from(r.target),
            src: Ipv6Addr::from(r.src),
            dst: Ipv6Addr::from(r.dst),
            lla: Mac(r.lla),
            lla_option: r.lla_option,
            na_flags: r.na_flags,
        })
    }
}

payload! {
    /// An IPv4 neighbour entry changed (neigh:neigh_update) on a device in `netns`.
    pub struct NeighUpdate {
        pub netns: NsId,
        pub ifindex: u32,
        pub ip: Ipv4Addr,
        pub mac: Mac,
        /// The NUD_* state requested.
        pub nud_state: u32,
    }
}

impl FromRecord for NeighUpdate {
    type Record = abi::NeighUpdate;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        Ok(Self {
            netns: ns(hdr.netns),
            ifindex: r.ifindex,
            ip: Ipv4Addr::from(r.ip),
            mac: Mac(r.mac),
            nud_state: r.nud_state,
        })
    }
}

payload! {
    /// A CNI plugin started: an execve/execveat that succeeded with CNI_COMMAND in its
    /// environment. The event's task is the plugin (its comm is the plugin's); `netns` is the
    /// namespace it runs in, its caller's. Each value is as the kernel copied it at exec, cut
    /// at the record's size when `truncated` says so; `None` when the variable was not set.
    pub struct CniExec {
        pub netns: NsId,
        /// CNI_COMMAND: ADD, DEL, CHECK, GC, STATUS, VERSION.
        pub verb: String,
        /// CNI_CONTAINERID: the sandbox.
        pub container_id: Option<String>,
        /// CNI_NETNS: the path of the namespace the call is about.
        pub netns_path: Option<String>,
        /// CNI_IFNAME.
        pub if_name: Option<String>,
        /// CNI_ARGS, `K=V;K=V` (see [`CniExec::cni_arg`]).
        pub cni_args: Option<String>,
        /// The file executed, as execve/execveat was given it.
        pub path: String,
        pub truncated: CniTruncated,
    }
}

impl CniExec {
    /// The value of `key` in CNI_ARGS (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`),
    /// unless CNI_ARGS was cut before that pair ended.
    pub fn cni_arg(&self, key: &str) -> Option<&str> {
        let args = self.cni_args.as_deref()?;
        let mut pairs = args.split(';').peekable();
        while let Some(pair) = pairs.next() {
            let last = pairs.peek().is_none();
            if last && self.truncated.contains(CniValue::CniArgs) {
                return None;
            }
            if let Some((k, v)) = pair.split_once('=')
                && k == key
            {
                return Some(v);
            }
        }
        None
    }
}

impl FromRecord for CniExec {
    type Record = abi::CniExec;
    fn from_record(hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        use abi::cni_vars::*;
        if r.present & VERB == 0 || r.present & !ENV != 0 {
            return Err(BadValue(u64::from(r.present)));
        }
        if r.truncated & !ALL != 0 {
            return Err(BadValue(u64::from(r.truncated)));
        }
        let var = |bit: u32, bytes: &[u8]| (r.present & bit != 0).then(|| cstr(bytes));
        Ok(Self {
            netns: ns(hdr.netns),
            verb: cstr(&r.verb),
            container_id: var(CONTAINER_ID, &r.container_id),
            netns_path: var(NETNS, &r.netns),
            if_name: var(IFNAME, &r.ifname),
            cni_args: var(ARGS, &r.args),
            path: cstr(&r.path),
            truncated: CniTruncated(r.truncated as u8),
        })
    }
}

payload! {
    /// A CNI plugin ended: the process a [`CniExec`] started (the event's tgid) is gone, every
    /// thread of it, and `parent` is being told.
    pub struct CniExit {
        /// How it ended, as wait(2) returns it: the exit code shifted left by 8, or the
        /// killing signal (with 0x80 when it dumped core). See [`CniExit::exit_code`] and
        /// [`CniExit::signal`].
        pub wait_status: i32,
        /// The tgid of the process told of the end: the plugin's parent (the runtime, or a
        /// plugin that chained it), or whoever adopted it.
        pub parent: u32,
    }
}

impl CniExit {
    /// The exit code, when it exited (rather than being killed).
    pub fn exit_code(&self) -> Option<i32> {
        (self.wait_status & 0x7f == 0).then_some((self.wait_status >> 8) & 0xff)
    }

    /// The signal that killed it, when one did.
    pub fn signal(&self) -> Option<i32> {
        let sig = self.wait_status & 0x7f;
        (sig != 0 && sig != 0x7f).then_some(sig)
    }

    pub fn core_dumped(&self) -> bool {
        self.signal().is_some() && self.wait_status & 0x80 != 0
    }

    /// It exited with code 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code() == Some(0)
    }
}

impl FromRecord for CniExit {
    type Record = abi::CniExit;
    fn from_record(_hdr: &EventHeader, r: &Self::Record) -> Result<Self, BadValue> {
        use abi::cld;
        let bad = || BadValue(u64::from(r.code as u32) << 32 | u64::from(r.status as u32));
        let wait_status = match r.code {
            cld::EXITED if (0..=0xff).contains(&r.status) => r.status << 8,
            cld::KILLED if (1..0x7f).contains(&r.status) => r.status,
            cld::DUMPED if (1..0x7f).contains(&r.status) => r.status | 0x80,
            _ => return Err(bad()),
        };
        Ok(Self {
            wait_status,
            parent: r.parent_tgid,
        })
    }
}

/// A value of a [`CniExec`] that can be cut to fit the kernel record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CniValue {
    Verb,
    ContainerId,
    NetnsPath,
    IfName,
    CniArgs,
    Path,
}

impl CniValue {
    pub const ALL: [CniValue; 6] = [
        CniValue::Verb,
        CniValue::ContainerId,
        CniValue::NetnsPath,
        CniValue::IfName,
        CniValue::CniArgs,
        CniValue::Path,
    ];

    /// Its bit in the record ([`abi::cni_vars`]).
    const fn bit(self) -> u32 {
        use abi::cni_vars::*;
        match self {
            CniValue::Verb => VERB,
            CniValue::ContainerId => CONTAINER_ID,
            CniValue::NetnsPath => NETNS,
            CniValue::IfName => IFNAME,
            CniValue::CniArgs => ARGS,
            CniValue::Path => PATH,
        }
    }

    /// The [`CniExec`] field it is.
    pub const fn name(self) -> &'static str {
        match self {
            CniValue::Verb => "verb",
            CniValue::ContainerId => "container_id",
            CniValue::NetnsPath => "netns_path",
            CniValue::IfName => "if_name",
            CniValue::CniArgs => "cni_args",
            CniValue::Path => "path",
        }
    }
}

/// The values of a [`CniExec`] the kernel cut to fit: the record's bits of
/// [`abi::cni_vars`], one byte in the trace, a list of field names in JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CniTruncated(u8);

impl CniTruncated {
    pub fn contains(self, value: CniValue) -> bool {
        u32::from(self.0) & value.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = CniValue> {
        CniValue::ALL.into_iter().filter(move |v| self.contains(*v))
    }
}

impl FromIterator<CniValue> for CniTruncated {
    fn from_iter<I: IntoIterator<Item = CniValue>>(values: I) -> Self {
        Self(values.into_iter().fold(0, |bits, v| bits | v.bit() as u8))
    }
}

impl Serialize for CniTruncated {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(CniValue::name))
    }
}

impl<'de> Deserialize<'de> for CniTruncated {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        names
            .iter()
            .map(|n| {
                CniValue::ALL
                    .into_iter()
                    .find(|v| v.name() == n)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown CNI value {n:?}")))
            })
            .collect()
    }
}

/// One byte: the record's bits.
impl Wire for CniTruncated {
    fn put(&self, w: &mut Writer<'_>) {
        w.byte(self.0);
    }
    fn get(r: &mut Reader<'_, '_>) -> Result<Self, DecodeError> {
        let bits = r.byte()?;
        if u32::from(bits) & !abi::cni_vars::ALL != 0 {
            return Err("unknown CNI truncation bit");
        }
        Ok(Self(bits))
    }
}

payload! {
    /// `count` more records of kind id `kind` (an [`EventKind`]) were dropped because the
    /// ring buffer was full. Cumulative loss is the sum of these.
    pub struct Lost {
        pub kind: u16,
        pub count: u64,
    }
}

payload! {
    /// `count` more packet records (ARP, neighbour updates) that `netns`'s traffic caused were
    /// counted in the kernel instead of sent: it used up its budget (`PACKET_BUDGET_PER_SEC`,
    /// netns-trace-common). Cumulative for the namespace is the sum of these.
    pub struct PacketsLimited {
        pub netns: NsId,
        pub count: u64,
    }
}

payload! {
    /// A pin was found (mountinfo, /proc/PID/fd) that was not known before (`PinAdded`), or a
    /// known pin is gone (`PinRemoved`).
    pub struct PinChange {
        pub netns: NsId,
        pub pin: Pin,
    }
}

/// A fresh read of a namespace's interfaces and their IPv4 and IPv6 addresses. Its encoding
/// is hand-written (trace/wire.rs): the IPv6 addresses follow the version-1 body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfacesRead {
    pub netns: NsId,
    pub interfaces: Vec<Interface>,
}

payload! {
    /// The cgroup path behind a cgroup id, resolved while the task was alive.
    pub struct CgroupPath {
        pub cgroup_id: u64,
        pub path: String,
    }
}

payload! {
    /// The cgroup (from /proc/PID/cgroup, read while the task was alive) of the task in the
    /// event header, which had just become a member of `netns`.
    pub struct MemberCgroup {
        pub netns: NsId,
        pub path: String,
    }
}

payload! {
    /// A CNI result cache entry reported before (a `cni_result`) is no longer in the cache:
    /// libcni removes it when a DEL of that attachment succeeds.
    pub struct CniResultGone {
        pub network_name: String,
        pub container_id: String,
        pub if_name: String,
    }
}

/// One event. `ts_ns` is CLOCK_MONOTONIC (what `bpf_ktime_get_ns` returns); `pid`/`tgid`/
/// `comm` are the task that caused it (0 / empty for userspace observations).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub ts_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
    #[serde(flatten)]
    pub body: EventBody,
}

// Replay hands each decoded event on by value: up to 128 bytes a move is a few register
// copies, beyond that a memcpy call per event. Large, rare payloads are boxed in the table.
const _: () = assert!(size_of::<Event>() <= 128);

impl Event {
    /// A userspace observation at `ts_ns`.
    pub fn observed(ts_ns: u64, body: EventBody) -> Self {
        Self {
            ts_ns,
            pid: 0,
            tgid: 0,
            comm: Comm::default(),
            body,
        }
    }
}

#[cfg(test)]
mod tests;
