//! Ring-buffer records. Layout rules: `#[repr(C)]`, fixed-width integers, explicit `_pad`
//! fields, sizes asserted below. Identity of a namespace is always the pair
//! (`cookie`, `inum`): inode numbers are reused, cookies are not (see KERNEL-NOTES).

/// Record type ids. Fixed forever; never reuse a retired number.
pub mod kind {
    pub const NETNS_CREATED: u16 = 1;
    pub const TASK_NETNS: u16 = 2;
    pub const NETNS_TEARDOWN: u16 = 3;
    pub const NETNS_FREED: u16 = 4;
    pub const MOUNT_SYSCALL: u16 = 5;
    pub const NSFS_MOUNT: u16 = 6;
    pub const NSFS_EVICT: u16 = 7;
    pub const NETDEV: u16 = 8;
    pub const IPV4_ADDR: u16 = 9;
    pub const ARP: u16 = 10;
    pub const NEIGH_UPDATE: u16 = 11;
    pub const CLEANUP_RUN: u16 = 12;
    /// One past the highest id; sizes the per-type lost-event counters.
    pub const SLOTS: u32 = 16;

    /// Human name of a record type, for logs and lost-event reports.
    pub const fn name(kind: u16) -> &'static str {
        match kind {
            NETNS_CREATED => "netns_created",
            TASK_NETNS => "task_netns",
            NETNS_TEARDOWN => "netns_teardown",
            NETNS_FREED => "netns_freed",
            MOUNT_SYSCALL => "mount_syscall",
            NSFS_MOUNT => "nsfs_mount",
            NSFS_EVICT => "nsfs_evict",
            NETDEV => "netdev",
            IPV4_ADDR => "ipv4_addr",
            ARP => "arp",
            NEIGH_UPDATE => "neigh_update",
            CLEANUP_RUN => "cleanup_run",
            _ => "unknown",
        }
    }
}

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
    /// One of [`kind`].
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

/// How a namespace came to be. Values of [`NetnsCreated::source`].
pub mod created_by {
    /// clone()/clone3() with CLONE_NEWNET, seen at task:task_newtask.
    pub const CLONE: u32 = 1;
    /// unshare(CLONE_NEWNET), seen by comparing the caller's netns around the syscall.
    pub const UNSHARE: u32 = 2;
    /// fexit/kretprobe on copy_net_ns (covers both of the above in full mode).
    pub const COPY_NET_NS: u32 = 3;
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
    /// One of [`created_by`].
    pub source: u32,
    pub _pad: u32,
}

/// Values of [`TaskNetns::op`].
pub mod task_op {
    /// A task was created (fork/clone); `hdr.netns` is the child's, `prev` the parent's.
    pub const FORK: u32 = 1;
    /// unshare() changed the caller's netns or mount namespace.
    pub const UNSHARE: u32 = 2;
    /// setns() changed the caller's netns or mount namespace.
    pub const SETNS: u32 = 3;
    /// The task exited; `hdr.netns` is the namespace it leaves.
    pub const EXIT: u32 = 4;
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
    /// One of [`task_op`].
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

/// Which hook produced a lifecycle record: values of [`NetnsObject::hook`].
pub mod hook {
    pub const FENTRY: u32 = 1;
    pub const KPROBE: u32 = 2;
    pub const TRACEPOINT: u32 = 3;
}

/// NETNS_TEARDOWN, NETNS_FREED, NSFS_EVICT and CLEANUP_RUN: something happened to a
/// `struct net` (or, for CLEANUP_RUN, the cleanup_net worker started; `hdr.netns` is zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetnsObject {
    pub hdr: EventHeader,
    pub net_ptr: u64,
    /// One of [`hook`].
    pub hook: u32,
    pub _pad: u32,
}

/// Values of [`MountSyscall::op`].
pub mod mount_op {
    pub const MOUNT: u32 = 1;
    pub const UMOUNT: u32 = 2;
    pub const OPEN_TREE: u32 = 3;
    pub const MOVE_MOUNT: u32 = 4;
}

/// A mount-family syscall returned. `hdr.netns` is the caller's netns. Paths are copied at
/// syscall entry, NUL-terminated and truncated to [`PATH_LEN`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MountSyscall {
    pub hdr: EventHeader,
    /// One of [`mount_op`].
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
    /// One of [`hook`].
    pub hook: u32,
}

/// Values of [`NetDev::op`].
pub mod netdev_op {
    pub const REGISTER: u32 = 1;
    pub const UNREGISTER: u32 = 2;
    /// Moved to `hdr.netns` from `other`.
    pub const MOVE: u32 = 3;
}

/// A network device changed. `hdr.netns` is the device's namespace (the destination for MOVE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetDev {
    pub hdr: EventHeader,
    /// One of [`netdev_op`].
    pub op: u32,
    pub ifindex: u32,
    /// MOVE: the namespace the device left.
    pub other: NetnsId,
    pub mac: [u8; 8],
    pub name: [u8; IFNAMSIZ],
}

/// Values of [`Ipv4Addr::op`].
pub mod addr_op {
    pub const ADD: u32 = 1;
    pub const DEL: u32 = 2;
}

/// An IPv4 address was added to or removed from a device in `hdr.netns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Ipv4Addr {
    pub hdr: EventHeader,
    /// One of [`addr_op`].
    pub op: u32,
    pub ifindex: u32,
    /// Network byte order, as on the wire.
    pub addr: [u8; 4],
    pub prefix_len: u8,
    pub _pad: [u8; 3],
    pub label: [u8; IFNAMSIZ],
}

/// Values of [`Arp::dir`].
pub mod arp_dir {
    pub const RX: u8 = 1;
    pub const TX: u8 = 2;
}

/// An ARP packet received or sent on a device in `hdr.netns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Arp {
    pub hdr: EventHeader,
    pub ifindex: u32,
    /// ARP opcode, host order: 1 request, 2 reply.
    pub op: u16,
    /// One of [`arp_dir`].
    pub dir: u8,
    /// One of [`hook`] (as u8).
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
