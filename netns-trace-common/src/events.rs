//! The one table of event kinds, and the small enums that event fields carry.
//!
//! A kind's id is fixed forever and is the same number on the ring buffer
//! ([`crate::EventHeader::kind`]) and in the trace format (the record tag); a retired id is
//! never reused. Its name is the JSON `type`, the metrics label and the log name. Everything
//! else (the userspace `EventBody`, the trace codec, the decoders) is generated from
//! [`with_event_table!`], so a kind that is added here and not handled somewhere fails to
//! compile.

/// Calls `$callback! { … }` with every row of the event table:
/// `id origin "name" Variant(PayloadType),` where `origin` is `kernel` (a ring-buffer record
/// of the eBPF programs) or `user` (an observation made in userspace), and `PayloadType` is
/// the name of the userspace struct (in `netns_trace::model`) that carries the fields.
#[macro_export]
macro_rules! with_event_table {
    ($callback:ident) => {
        $callback! {
            0x10 kernel "netns_created" NetnsCreated(NetnsCreated),
            0x11 kernel "task" Task(TaskNetns),
            0x12 kernel "netns_teardown" NetnsTeardown(NetnsObject),
            0x13 kernel "netns_freed" NetnsFreed(NetnsObject),
            0x14 kernel "cleanup_run" CleanupRun(CleanupRun),
            0x15 kernel "mount_syscall" MountSyscall(MountSyscall),
            0x16 kernel "nsfs_mount" NsfsMount(NsfsMount),
            0x17 kernel "nsfs_evict" NsfsEvict(NsfsEvict),
            0x18 kernel "net_dev" NetDev(NetDev),
            0x19 kernel "ipv4_addr" Ipv4Addr(Ipv4AddrChange),
            0x1a kernel "arp" Arp(ArpPacket),
            0x1b kernel "neigh_update" NeighUpdate(NeighUpdate),
            0x1c user "lost" Lost(Lost),
            0x1d user "pin_added" PinAdded(PinChange),
            0x1e user "pin_removed" PinRemoved(PinChange),
            0x1f user "interfaces" Interfaces(InterfacesRead),
            0x20 user "cgroup_path" CgroupPath(CgroupPath),
            0x21 user "snapshot" Snapshot(Box<Snapshot>),
            0x22 user "member_cgroup" MemberCgroup(MemberCgroup),
            0x23 user "cni_result" CniResult(Box<CniCacheEntry>),
        }
    };
}

macro_rules! define_event_kind {
    ($($id:literal $origin:ident $name:literal $variant:ident($($payload:tt)*),)*) => {
        /// What an event is. See the module documentation.
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
