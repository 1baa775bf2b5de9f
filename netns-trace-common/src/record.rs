//! Ring-buffer records. Layout rules: `#[repr(C)]`, fixed-width integers, explicit `_pad`
//! fields, sizes asserted below. Identity of a namespace is always the pair
//! (`cookie`, `inum`): inode numbers are reused, cookies are not (see KERNEL-NOTES).

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
    /// An [`EventKind`](crate::EventKind) id.
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
    /// A [`CreatedBy`](crate::CreatedBy).
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
    /// A [`TaskOp`](crate::TaskOp).
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
    /// A [`Hook`](crate::Hook).
    pub hook: u32,
    pub _pad: u32,
}

/// A mount-family syscall returned. `hdr.netns` is the caller's netns. Paths are copied at
/// syscall entry, NUL-terminated and truncated to [`PATH_LEN`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MountSyscall {
    pub hdr: EventHeader,
    /// A [`MountOp`](crate::MountOp).
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
    /// A [`Hook`](crate::Hook).
    pub hook: u32,
}

/// A network device changed. `hdr.netns` is the device's namespace (the destination for MOVE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetDev {
    pub hdr: EventHeader,
    /// A [`NetDevOp`](crate::NetDevOp).
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
    /// An [`AddrOp`](crate::AddrOp).
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
    /// A [`Direction`](crate::Direction).
    pub dir: u8,
    /// A [`Hook`](crate::Hook).
    pub hook: u8,
    pub sender_ip: [u8; 4],
    pub target_ip: [u8; 4],
    pub sender_mac: [u8; 6],
    pub target_mac: [u8; 6],
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
};
