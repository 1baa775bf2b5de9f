//! Ring-buffer records. Layout rules: `#[repr(C)]`, fixed-width integers, explicit `_pad`
//! fields, sizes asserted below. Identity of a namespace is always the pair
//! (`cookie`, `inum`): inode numbers are reused, cookies are not (see KERNEL-NOTES).

// ---------------------------------------------------------------------------------------------
// The one table of event kinds, and the small enums that event fields carry.
//
// A kind's id is fixed forever and is the same number on the ring buffer
// ([`crate::EventHeader::kind`]) and in the trace format (the record tag); a retired id is
// never reused. Its name is the JSON `type`, the metrics label and the log name. Everything
// else (the userspace `EventBody`, the trace codec, the decoders) is generated from
// [`with_event_table!`], so a kind that is added here and not handled somewhere fails to
// compile.

/// Calls `$callback! { … }` with every row of the event table:
/// `id origin "name" Variant(PayloadType),` where `origin` is `kernel(Record)` (the eBPF
/// programs send it as the `#[repr(C)]` `Record` below) or `user` (an observation made in
/// userspace), and `PayloadType` is the userspace struct (in `netns_trace::model`) that
/// carries the fields.
#[macro_export]
macro_rules! with_event_table {
    ($callback:ident) => {
        $callback! {
            0x10 kernel(NetnsCreated) "netns_created" NetnsCreated(NetnsCreated),
            0x11 kernel(TaskNetns) "task" Task(TaskNetns),
            0x12 kernel(NetnsObject) "netns_teardown" NetnsTeardown(NetnsObject),
            0x13 kernel(NetnsObject) "netns_freed" NetnsFreed(NetnsObject),
            0x14 kernel(NetnsObject) "cleanup_run" CleanupRun(CleanupRun),
            0x15 kernel(MountSyscall) "mount_syscall" MountSyscall(MountSyscall),
            0x16 kernel(NsfsMount) "nsfs_mount" NsfsMount(NsfsMount),
            0x17 kernel(NetnsObject) "nsfs_evict" NsfsEvict(NsfsEvict),
            0x18 kernel(NetDev) "net_dev" NetDev(NetDev),
            0x19 kernel(Ipv4Addr) "ipv4_addr" Ipv4Addr(Ipv4AddrChange),
            0x1a kernel(Arp) "arp" Arp(ArpPacket),
            0x1b kernel(NeighUpdate) "neigh_update" NeighUpdate(NeighUpdate),
            0x1c user "lost" Lost(Lost),
            0x1d user "pin_added" PinAdded(PinChange),
            0x1e user "pin_removed" PinRemoved(PinChange),
            0x1f user "interfaces" Interfaces(InterfacesRead),
            0x20 user "cgroup_path" CgroupPath(CgroupPath),
            0x21 user "snapshot" Snapshot(Box<Snapshot>),
            0x22 user "member_cgroup" MemberCgroup(MemberCgroup),
            0x23 user "cni_result" CniResult(Box<CniCacheEntry>),
            0x24 kernel(CniExec) "cni_exec" CniExec(Box<CniExec>),
            0x25 kernel(CniExit) "cni_exit" CniExit(CniExit),
            0x26 user "cni_result_gone" CniResultGone(CniResultGone),
            0x27 user "packets_limited" PacketsLimited(PacketsLimited),
            0x28 kernel(Ndisc) "ndisc" Ndisc(NdiscPacket),
        }
    };
}

macro_rules! define_event_kind {
    ($($id:literal $origin:ident $(($record:ident))? $name:literal $variant:ident($($payload:tt)*),)*) => {
        /// What an event is: one row of [`with_event_table!`].
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "user", derive(num_enum::TryFromPrimitive, num_enum::IntoPrimitive))]
        pub enum EventKind {
            $($variant = $id,)*
        }

        impl EventKind {
            /// Every kind, in id order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The kind's name: JSON `type`, metrics label, log name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// Whether the eBPF programs send it (and so can lose it to a full ring buffer).
            pub const fn from_kernel(self) -> bool {
                match self {
                    $(EventKind::$variant => define_event_kind!(@kernel $origin),)*
                }
            }
        }
    };
    (@kernel kernel) => { true };
    (@kernel user) => { false };
}

with_event_table!(define_event_kind);

impl EventKind {
    /// Slots of the per-kind lost-record counters: every id is below it.
    pub const SLOTS: u32 = 64;

    /// The name of a raw kind id, `"unknown"` for one this build does not know.
    pub fn name_of(id: u16) -> &'static str {
        Self::ALL
            .iter()
            .find(|k| **k as u16 == id)
            .map_or("unknown", |k| k.name())
    }
}

const _: () = {
    let mut i = 0;
    while i < EventKind::ALL.len() {
        assert!((EventKind::ALL[i] as u32) < EventKind::SLOTS);
        i += 1;
    }
};

/// Declares an enum carried in event fields, on the ring buffer (as the record field's integer
/// type) and in the trace (one byte). Discriminants are fixed forever.
macro_rules! field_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)* }) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(
            feature = "user",
            derive(num_enum::TryFromPrimitive, num_enum::IntoPrimitive, serde::Serialize, serde::Deserialize),
            serde(rename_all = "snake_case")
        )]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }
    };
}

field_enum! {
    /// How a namespace came to be.
    pub enum CreatedBy {
        /// clone()/clone3() with CLONE_NEWNET, seen at task:task_newtask.
        Clone = 0,
        /// unshare(CLONE_NEWNET), seen by comparing the caller's netns around the syscall.
        Unshare = 1,
        /// fexit/kretprobe on copy_net_ns (covers both of the above in full mode).
        CopyNetNs = 2,
    }
}

field_enum! {
    /// What a task did to its namespaces.
    pub enum TaskOp {
        /// A task was created (fork/clone); the record's netns is the child's, `prev` the parent's.
        Fork = 0,
        /// unshare() changed the caller's netns or mount namespace.
        Unshare = 1,
        /// setns() changed the caller's netns or mount namespace.
        Setns = 2,
        /// The task exited; the record's netns is the namespace it leaves.
        Exit = 3,
    }
}

field_enum! {
    /// Which mechanism observed an event.
    pub enum Hook {
        Fentry = 0,
        Kprobe = 1,
        Tracepoint = 2,
        /// Observed by userspace (snapshot, mountinfo, netlink); never sent by the kernel.
        Userspace = 3,
    }
}

field_enum! {
    /// Which mount-family syscall returned.
    pub enum MountOp {
        Mount = 0,
        Umount = 1,
        OpenTree = 2,
        MoveMount = 3,
    }
}

impl MountOp {
    /// The path a mount-family syscall record names: umount2 and open_tree take one path, which
    /// the probes record as `source` (`target` stays empty); mount and move_mount attach at
    /// `target`.
    pub fn acted_on<'a>(self, source: &'a str, target: &'a str) -> &'a str {
        match self {
            Self::Umount | Self::OpenTree => source,
            Self::Mount | Self::MoveMount => target,
        }
    }
}

field_enum! {
    /// What happened to a network device.
    pub enum NetDevOp {
        Register = 0,
        Unregister = 1,
        /// Moved into the record's netns from `other`.
        Move = 2,
    }
}

field_enum! {
    /// An address was added or removed.
    pub enum AddrOp {
        Add = 0,
        Del = 1,
    }
}

field_enum! {
    /// A packet was received or sent.
    pub enum Direction {
        Rx = 0,
        Tx = 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Records

pub const COMM_LEN: usize = 16;
pub const IFNAMSIZ: usize = 16;
/// Bytes of a path argument copied from a mount-family syscall (NUL-terminated, truncated).
pub const PATH_LEN: usize = 256;

/// Identity of a network namespace as seen in the kernel.
/// `cookie` is `net->net_cookie` (0 when the kernel has none yet); `inum` is `net->ns.inum`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub cookie: u64,
    pub inum: u32,
    pub _pad: u32,
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// An [`EventKind`] id.
    pub kind: u16,
    /// Size of the whole record in bytes, header included.
    pub size: u16,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, nanoseconds since boot (suspend excluded).
    pub ts_ns: u64,
    /// Thread id of the task that caused the event (kernel `pid`).
    pub pid: u32,
    /// Process id (kernel `tgid`).
    pub tgid: u32,
    /// The namespace the record is about (not always the caller's: see each record).
    pub netns: NetnsId,
    pub comm: [u8; COMM_LEN],
}

/// A new network namespace. `hdr.netns` is the new namespace; `hdr.pid` its creator.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetnsCreated {
    pub hdr: EventHeader,
    /// Kernel address of the `struct net`, used only to match teardown and free.
    pub net_ptr: u64,
    /// The creator's namespace before the new one was made.
    pub parent: NetnsId,
    pub clone_flags: u64,
    /// A [`CreatedBy`].
    pub source: u32,
    pub _pad: u32,
}

/// Bits of [`TaskNetns::flags`].
pub mod task_flags {
    /// The task is a thread, not a thread-group leader.
    pub const THREAD: u32 = 1;
    /// EXIT only: the whole thread group is gone.
    pub const GROUP_DEAD: u32 = 2;
}

/// A task entered or left a namespace. `hdr.pid`/`tgid`/`comm` are the task's own (the
/// child's for FORK).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskNetns {
    pub hdr: EventHeader,
    /// A [`TaskOp`].
    pub op: u32,
    /// Bits of [`task_flags`].
    pub flags: u32,
    /// The namespace before the change (FORK: the parent's; EXIT: same as `hdr.netns`).
    pub prev: NetnsId,
    /// cgroup v2 id of the task (`bpf_get_current_cgroup_id`), 0 when unknown.
    pub cgroup_id: u64,
    /// FORK: the parent's tgid. Otherwise 0.
    pub ppid: u32,
    /// Mount namespace inum after the change.
    pub mnt_ns: u32,
    /// Mount namespace inum before the change.
    pub prev_mnt_ns: u32,
    pub _pad: u32,
}

/// NETNS_TEARDOWN, NETNS_FREED, NSFS_EVICT and CLEANUP_RUN: something happened to a
/// `struct net` (or, for CLEANUP_RUN, the cleanup_net worker started; `hdr.netns` is zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetnsObject {
    pub hdr: EventHeader,
    pub net_ptr: u64,
    /// A [`Hook`].
    pub hook: u32,
    pub _pad: u32,
}

/// A mount-family syscall returned. `hdr.netns` is the caller's netns. Paths are copied at
/// syscall entry, NUL-terminated and truncated to [`PATH_LEN`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MountSyscall {
    pub hdr: EventHeader,
    /// A [`MountOp`].
    pub op: u32,
    /// The caller's mount namespace inum.
    pub mnt_ns: u32,
    /// The syscall's return value (negative errno on failure; a fd for open_tree).
    pub ret: i64,
    /// MS_* flags for mount, MNT_* for umount, OPEN_TREE_* / MOVE_MOUNT_* otherwise.
    pub flags: u64,
    /// open_tree: dfd; move_mount: from_dfd. Otherwise -100 (AT_FDCWD).
    pub from_dfd: i32,
    /// move_mount: to_dfd. Otherwise -100.
    pub to_dfd: i32,
    /// mount: source; open_tree/move_mount: from path; umount: target.
    pub source: [u8; PATH_LEN],
    /// mount: target; move_mount: to path.
    pub target: [u8; PATH_LEN],
}

/// Full mode: an nsfs file for a netns was grafted onto the mount tree (bind mount or
/// move_mount). `hdr.netns` is the pinned namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NsfsMount {
    pub hdr: EventHeader,
    pub net_ptr: u64,
    /// The caller's mount namespace inum.
    pub mnt_ns: u32,
    /// A [`Hook`].
    pub hook: u32,
}

/// A network device changed. `hdr.netns` is the device's namespace (the destination for MOVE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetDev {
    pub hdr: EventHeader,
    /// A [`NetDevOp`].
    pub op: u32,
    pub ifindex: u32,
    /// MOVE: the namespace the device left.
    pub other: NetnsId,
    pub mac: [u8; 8],
    pub name: [u8; IFNAMSIZ],
}

/// An IPv4 address was added to or removed from a device in `hdr.netns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Ipv4Addr {
    pub hdr: EventHeader,
    /// An [`AddrOp`].
    pub op: u32,
    pub ifindex: u32,
    /// Network byte order, as on the wire.
    pub addr: [u8; 4],
    pub prefix_len: u8,
    pub _pad: [u8; 3],
    pub label: [u8; IFNAMSIZ],
}

/// An ARP packet received or sent on a device in `hdr.netns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Arp {
    pub hdr: EventHeader,
    pub ifindex: u32,
    /// ARP opcode, host order: 1 request, 2 reply.
    pub op: u16,
    /// A [`Direction`].
    pub dir: u8,
    /// A [`Hook`].
    pub hook: u8,
    pub sender_ip: [u8; 4],
    pub target_ip: [u8; 4],
    pub sender_mac: [u8; 6],
    pub target_mac: [u8; 6],
}

/// ICMPv6 types of the Neighbour Discovery messages the probes record (RFC 4861).
pub mod ndisc {
    /// Neighbour Solicitation.
    pub const SOLICITATION: u8 = 135;
    /// Neighbour Advertisement.
    pub const ADVERTISEMENT: u8 = 136;
    /// ND option: Source Link-Layer Address (in a solicitation).
    pub const OPT_SOURCE_LLA: u8 = 1;
    /// ND option: Target Link-Layer Address (in an advertisement).
    pub const OPT_TARGET_LLA: u8 = 2;
    /// Bits of an advertisement's flags byte, as on the wire.
    pub const NA_ROUTER: u8 = 0x80;
    pub const NA_SOLICITED: u8 = 0x40;
    pub const NA_OVERRIDE: u8 = 0x20;
}

/// A Neighbour Solicitation or Advertisement (ICMPv6 135/136) received or sent on a device in
/// `hdr.netns`: IPv6's ARP request and reply. Addresses are network order, as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Ndisc {
    pub hdr: EventHeader,
    pub ifindex: u32,
    /// [`ndisc::SOLICITATION`] or [`ndisc::ADVERTISEMENT`].
    pub icmp_type: u8,
    /// A [`Direction`].
    pub dir: u8,
    /// A [`Hook`].
    pub hook: u8,
    /// Advertisements: the flags byte ([`ndisc::NA_ROUTER`], [`ndisc::NA_SOLICITED`],
    /// [`ndisc::NA_OVERRIDE`]); 0 for a solicitation.
    pub na_flags: u8,
    /// The target address: the one a solicitation asks about, or an advertisement claims.
    pub target: [u8; 16],
    /// The IPv6 source address (`::` for a duplicate address detection probe).
    pub src: [u8; 16],
    /// The IPv6 destination address (a solicited-node multicast address, or unicast).
    pub dst: [u8; 16],
    /// The link-layer address the option carried: the sender's in a solicitation (source
    /// LLA), the claimed one in an advertisement (target LLA). Zero when `lla_option` is 0.
    pub lla: [u8; 6],
    /// The option `lla` came from ([`ndisc::OPT_SOURCE_LLA`] or [`ndisc::OPT_TARGET_LLA`]),
    /// 0 when the packet's first two options held none for its type (an advertisement
    /// answering a unicast solicitation carries none).
    pub lla_option: u8,
    pub _pad: u8,
}

/// An IPv4 neighbour entry changed (neigh:neigh_update). `hdr.netns` is the device's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NeighUpdate {
    pub hdr: EventHeader,
    pub ifindex: u32,
    /// The NUD_* state requested.
    pub nud_state: u32,
    pub ip: [u8; 4],
    pub mac: [u8; 6],
    pub _pad: [u8; 6],
}

/// Bits of the PACKET_FAMILIES switch: which packet families the shared `net_dev_xmit` and
/// `netif_receive_skb` programs record.
pub mod packet_families {
    /// ARP (the `arp` probe).
    pub const ARP: u32 = 1;
    /// IPv6 Neighbour Discovery (the `ndisc` probe).
    pub const NDISC: u32 = 2;
}

/// Packet records (ARP, ND, neighbour updates) a namespace may send: a token bucket per
/// namespace, refilled at this rate up to [`PACKET_BUDGET_BURST`]. A pod controls its packets:
/// past its budget its records are counted ([`PacketBudget::limited`]), not sent, so a flood
/// cannot fill the ring that lifecycle records share. A node's own ARP (a bridge with a few
/// hundred pods refreshing their neighbours) stays far below it.
pub const PACKET_BUDGET_PER_SEC: u64 = 256;
/// Records a namespace may send at once before its rate applies.
pub const PACKET_BUDGET_BURST: u64 = 256;
/// Namespaces whose budget is kept (an LRU map: an evicted one starts full again).
pub const PACKET_BUDGET_NAMESPACES: u32 = 4096;
/// All namespaces together (a pod can make many with user namespaces) may fill at most this
/// share of the ring with packet records, at once and per second: the global bucket's burst
/// and rate are `ring bytes / PACKET_RING_SHARE / record size`, set by userspace at load.
pub const PACKET_RING_SHARE: u32 = 4;

/// One namespace's packet-record budget (the PACKET_BUDGETS map's value, keyed by
/// [`NetnsId`]). Updated without locks: CPUs racing on one namespace may each spend the same
/// token or lose a count, which loosens the bound and makes `limited` a floor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketBudget {
    /// Tokens left, in nanoseconds of refill (one record costs `1e9 / PACKET_BUDGET_PER_SEC`).
    pub credit_ns: u64,
    /// When `credit_ns` was last brought up to date (CLOCK_MONOTONIC).
    pub refilled_ns: u64,
    /// Records this namespace's packets caused that were counted here instead of sent.
    pub limited: u64,
}

/// Bytes kept of each CNI variable's value, NUL included: values are cut to fit, and the cut
/// is flagged in [`CniExec::truncated`].
pub const CNI_VERB_LEN: usize = 16;
pub const CNI_CONTAINER_ID_LEN: usize = 128;
pub const CNI_NETNS_LEN: usize = 128;
pub const CNI_IFNAME_LEN: usize = 16;
pub const CNI_ARGS_LEN: usize = 512;

/// Bits of [`CniExec::present`] and [`CniExec::truncated`], one per value.
pub mod cni_vars {
    /// CNI_COMMAND (always present: it is what makes an exec a CNI call).
    pub const VERB: u32 = 1;
    pub const CONTAINER_ID: u32 = 2;
    pub const NETNS: u32 = 4;
    pub const IFNAME: u32 = 8;
    pub const ARGS: u32 = 16;
    /// The executed path (truncation only: it is always present).
    pub const PATH: u32 = 32;
    /// Every variable the kernel looks for in the environment.
    pub const ENV: u32 = VERB | CONTAINER_ID | NETNS | IFNAME | ARGS;
    pub const ALL: u32 = ENV | PATH;
}

/// A CNI plugin started: an execve/execveat that succeeded and whose environment held
/// CNI_COMMAND. `hdr` is the plugin after exec (its comm is the plugin's); `hdr.netns` is the
/// namespace it runs in, the caller's. Values are NUL-terminated and cut to their sizes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CniExec {
    pub hdr: EventHeader,
    /// Bits of [`cni_vars`]: the variables the environment held.
    pub present: u32,
    /// Bits of [`cni_vars`]: the values (or the path) cut to fit.
    pub truncated: u32,
    /// CNI_COMMAND: ADD, DEL, CHECK, GC, STATUS, VERSION.
    pub verb: [u8; CNI_VERB_LEN],
    /// CNI_CONTAINERID.
    pub container_id: [u8; CNI_CONTAINER_ID_LEN],
    /// CNI_NETNS.
    pub netns: [u8; CNI_NETNS_LEN],
    /// CNI_IFNAME.
    pub ifname: [u8; CNI_IFNAME_LEN],
    /// CNI_ARGS.
    pub args: [u8; CNI_ARGS_LEN],
    /// The file executed, as execve/execveat was given it.
    pub path: [u8; PATH_LEN],
}

/// How a child ended, as its parent is told (the `si_code` of the SIGCHLD, UAPI values).
pub mod cld {
    /// It exited; the status is its exit code.
    pub const EXITED: i32 = 1;
    /// A signal killed it; the status is the signal.
    pub const KILLED: i32 = 2;
    /// A signal killed it and it dumped core; the status is the signal.
    pub const DUMPED: i32 = 3;
}

/// A CNI plugin ended: the process a [`CniExec`] started is gone (every thread) and its
/// parent is being told (the SIGCHLD it is sent, whether or not it ignores it). `hdr` is the
/// plugin's last thread (`hdr.tgid` is the exec's); `hdr.netns` is zero: the plugin's
/// namespaces are released by then.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CniExit {
    pub hdr: EventHeader,
    /// A CLD_* value of [`cld`].
    pub code: i32,
    /// [`cld::EXITED`]: the exit code (0–255); otherwise the signal that killed it.
    pub status: i32,
    /// The tgid of the process told: its parent (the runtime that waits for it, or whoever
    /// adopted it).
    pub parent_tgid: u32,
    pub _pad: u32,
}

const _: () = {
    assert!(core::mem::size_of::<NetnsId>() == 16);
    assert!(core::mem::size_of::<EventHeader>() == 56);
    assert!(core::mem::size_of::<NetnsCreated>() == 96);
    assert!(core::mem::size_of::<TaskNetns>() == 104);
    assert!(core::mem::size_of::<NetnsObject>() == 72);
    assert!(core::mem::size_of::<MountSyscall>() == 600);
    assert!(core::mem::size_of::<NsfsMount>() == 72);
    assert!(core::mem::size_of::<NetDev>() == 104);
    assert!(core::mem::size_of::<Ipv4Addr>() == 88);
    assert!(core::mem::size_of::<Arp>() == 88);
    assert!(core::mem::size_of::<NeighUpdate>() == 80);
    assert!(core::mem::size_of::<Ndisc>() == 120);
    assert!(core::mem::size_of::<CniExec>() == 1120);
    assert!(core::mem::size_of::<CniExit>() == 72);
    assert!(core::mem::size_of::<PacketBudget>() == 24);
};
