//! Kernel struct member offsets, resolved by userspace from BTF and handed to the eBPF
//! programs as one read-only global (Rust eBPF has no CO-RE relocations). The verifier sees
//! them as constants. [`MISSING`] marks a member this kernel does not have; userspace never
//! loads a program that needs a missing one.
//!
//! One table below declares every field of [`KernelOffsets`] in ABI order. A row
//! `field => Variant` is a kernel struct member: a `u32` that starts [`MISSING`] and is named
//! in userspace by [`Offset::Variant`]. A row `field: type = value` is any other value handed
//! to the programs (a symbol address, a flag, a pid). The eBPF side reads the struct fields.

/// Marks a member that is absent (or of an unexpected type) on this kernel.
pub const MISSING: u32 = u32::MAX;

/// Name of the global in the eBPF object.
pub const GLOBAL_NAME: &str = "OFFSETS";

/// Builds [`KernelOffsets`], its [`KernelOffsets::UNRESOLVED`] value and the [`Offset`] enum
/// from one table: rows are munched in order so the struct keeps the table's field order.
macro_rules! kernel_offsets {
    (@rows [] [$($fields:tt)*] [$($unresolved:tt)*] [$($members:tt)*]) => {
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct KernelOffsets {
            $($fields)*
        }

        impl KernelOffsets {
            /// Every member marked missing: what the eBPF object is compiled with.
            pub const UNRESOLVED: Self = Self {
                $($unresolved)*
            };
        }

        kernel_offsets!(@members $($members)*);
    };
    (@rows [$(#[$doc:meta])* $field:ident => $variant:ident, $($rest:tt)*]
        [$($fields:tt)*] [$($unresolved:tt)*] [$($members:tt)*]) => {
        kernel_offsets!(@rows [$($rest)*]
            [$($fields)* $(#[$doc])* pub $field: u32,]
            [$($unresolved)* $field: MISSING,]
            [$($members)* $(#[$doc])* $variant $field,]);
    };
    (@rows [$(#[$doc:meta])* $field:ident: $ty:ty = $value:expr, $($rest:tt)*]
        [$($fields:tt)*] [$($unresolved:tt)*] [$($members:tt)*]) => {
        kernel_offsets!(@rows [$($rest)*]
            [$($fields)* $(#[$doc])* pub $field: $ty,]
            [$($unresolved)* $field: $value,]
            [$($members)*]);
    };
    (@members $($(#[$doc:meta])* $variant:ident $field:ident,)*) => {
        /// A kernel struct member the programs read: one per `u32` member of
        /// [`KernelOffsets`], named like its field.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Offset {
            $($(#[$doc])* $variant,)*
        }

        impl Offset {
            /// Every member, in the struct's order.
            pub const ALL: &'static [Offset] = &[$(Offset::$variant,)*];

            /// The field's name in [`KernelOffsets`] (what `netns-trace probes` prints).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Offset::$variant => stringify!($field),)*
                }
            }
        }

        impl KernelOffsets {
            /// The resolved offset of `member`, or [`MISSING`].
            pub const fn get(&self, member: Offset) -> u32 {
                match member {
                    $(Offset::$variant => self.$field,)*
                }
            }

            pub fn set(&mut self, member: Offset, offset: u32) {
                match member {
                    $(Offset::$variant => self.$field = offset,)*
                }
            }
        }
    };
    ($($rows:tt)*) => {
        kernel_offsets!(@rows [$($rows)*] [] [] []);
    };
}

kernel_offsets! {
    /// Address of `cleanup_net` from /proc/kallsyms (0 when unreadable).
    cleanup_net_addr: u64 = 0,
    /// Inode number of the initial netns; tasks living there are not membership-tracked.
    init_net_inum: u32 = 0,
    // task_struct
    task_nsproxy => TaskNsproxy,
    task_pid => TaskPid,
    task_tgid => TaskTgid,
    // nsproxy
    nsproxy_net_ns => NsproxyNetNs,
    nsproxy_mnt_ns => NsproxyMntNs,
    // struct net
    /// Offset of `struct ns_common ns` in `struct net` (for container_of from an nsfs inode).
    net_ns => NetNs,
    /// `net->ns.inum`.
    net_ns_inum => NetNsInum,
    /// `net->net_cookie` (u64 on 5.12+, atomic64_t before: same offset of the counter).
    net_cookie => NetCookie,
    // mnt_namespace
    mnt_ns_inum => MntNsInum,
    // mounts and nsfs
    /// `struct mount` → `mnt` (struct vfsmount).
    mount_mnt => MountMnt,
    vfsmount_mnt_root => VfsmountMntRoot,
    dentry_d_sb => DentryDSb,
    dentry_d_inode => DentryDInode,
    sb_s_magic => SbSMagic,
    inode_i_private => InodeIPrivate,
    /// `ns_common.ops` (≤ 6.17) → `proc_ns_operations.type`.
    ns_common_ops => NsCommonOps,
    proc_ns_ops_type => ProcNsOpsType,
    /// `ns_common.ns_type` (6.18+).
    ns_common_ns_type => NsCommonNsType,
    path_dentry => PathDentry,
    // net_device
    netdev_ifindex => NetdevIfindex,
    netdev_name => NetdevName,
    netdev_dev_addr => NetdevDevAddr,
    /// 1 when `dev_addr` is a pointer (5.15+), 0 when an inline array.
    netdev_dev_addr_is_ptr: u32 = 0,
    /// `dev->nd_net.net`.
    netdev_nd_net => NetdevNdNet,
    // sk_buff
    skb_protocol => SkbProtocol,
    skb_head => SkbHead,
    skb_data => SkbData,
    skb_network_header => SkbNetworkHeader,
    skb_transport_header => SkbTransportHeader,
    /// `skb->len`: bytes from `data` to the end of the packet.
    skb_len => SkbLen,
    skb_dev => SkbDev,
    // in_ifaddr / in_device
    ifa_local => IfaLocal,
    ifa_prefixlen => IfaPrefixlen,
    ifa_dev => IfaDev,
    ifa_label => IfaLabel,
    in_device_dev => InDeviceDev,
    // neighbour
    neigh_primary_key => NeighPrimaryKey,
    neigh_dev => NeighDev,
    neigh_tbl => NeighTbl,
    neigh_table_family => NeighTableFamily,
    /// The tracer's own process id: its tasks (the threads that briefly enter namespaces to
    /// read interfaces) are not traced, or reading would look like joining.
    self_tgid: u32 = 0,
}

impl core::fmt::Display for Offset {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 176);
