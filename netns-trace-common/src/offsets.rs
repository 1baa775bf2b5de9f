//! Kernel struct member offsets, resolved by userspace from BTF and handed to the eBPF
//! programs as one read-only global (Rust eBPF has no CO-RE relocations). The verifier sees
//! them as constants. [`MISSING`] marks a member this kernel does not have; userspace never
//! loads a program that needs a missing one.

/// Marks a member that is absent (or of an unexpected type) on this kernel.
pub const MISSING: u32 = u32::MAX;

/// Name of the global in the eBPF object.
pub const GLOBAL_NAME: &str = "OFFSETS";

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// Address of `cleanup_net` from /proc/kallsyms (0 when unreadable).
    pub cleanup_net_addr: u64,
    /// Inode number of the initial netns; tasks living there are not membership-tracked.
    pub init_net_inum: u32,
    // task_struct
    pub task_nsproxy: u32,
    pub task_pid: u32,
    pub task_tgid: u32,
    // nsproxy
    pub nsproxy_net_ns: u32,
    pub nsproxy_mnt_ns: u32,
    // struct net
    /// Offset of `struct ns_common ns` in `struct net` (for container_of from an nsfs inode).
    pub net_ns: u32,
    /// `net->ns.inum`.
    pub net_ns_inum: u32,
    /// `net->net_cookie` (u64 on 5.12+, atomic64_t before: same offset of the counter).
    pub net_cookie: u32,
    // mnt_namespace
    pub mnt_ns_inum: u32,
    // mounts and nsfs
    /// `struct mount` → `mnt` (struct vfsmount).
    pub mount_mnt: u32,
    pub vfsmount_mnt_root: u32,
    pub dentry_d_sb: u32,
    pub dentry_d_inode: u32,
    pub sb_s_magic: u32,
    pub inode_i_private: u32,
    /// `ns_common.ops` (≤ 6.17) → `proc_ns_operations.type`.
    pub ns_common_ops: u32,
    pub proc_ns_ops_type: u32,
    /// `ns_common.ns_type` (6.18+).
    pub ns_common_ns_type: u32,
    pub path_dentry: u32,
    // net_device
    pub netdev_ifindex: u32,
    pub netdev_name: u32,
    pub netdev_dev_addr: u32,
    /// 1 when `dev_addr` is a pointer (5.15+), 0 when an inline array.
    pub netdev_dev_addr_is_ptr: u32,
    /// `dev->nd_net.net`.
    pub netdev_nd_net: u32,
    // sk_buff
    pub skb_protocol: u32,
    pub skb_head: u32,
    pub skb_data: u32,
    pub skb_network_header: u32,
    pub skb_dev: u32,
    // in_ifaddr / in_device
    pub ifa_local: u32,
    pub ifa_prefixlen: u32,
    pub ifa_dev: u32,
    pub ifa_label: u32,
    pub in_device_dev: u32,
    // neighbour
    pub neigh_primary_key: u32,
    pub neigh_dev: u32,
    pub neigh_tbl: u32,
    pub neigh_table_family: u32,
    /// The tracer's own process id: its tasks (the threads that briefly enter namespaces to
    /// read interfaces) are not traced, or reading would look like joining.
    pub self_tgid: u32,
}

impl KernelOffsets {
    /// Every member marked missing: what the eBPF object is compiled with.
    pub const UNRESOLVED: Self = Self {
        cleanup_net_addr: 0,
        init_net_inum: 0,
        task_nsproxy: MISSING,
        task_pid: MISSING,
        task_tgid: MISSING,
        nsproxy_net_ns: MISSING,
        nsproxy_mnt_ns: MISSING,
        net_ns: MISSING,
        net_ns_inum: MISSING,
        net_cookie: MISSING,
        mnt_ns_inum: MISSING,
        mount_mnt: MISSING,
        vfsmount_mnt_root: MISSING,
        dentry_d_sb: MISSING,
        dentry_d_inode: MISSING,
        sb_s_magic: MISSING,
        inode_i_private: MISSING,
        ns_common_ops: MISSING,
        proc_ns_ops_type: MISSING,
        ns_common_ns_type: MISSING,
        path_dentry: MISSING,
        netdev_ifindex: MISSING,
        netdev_name: MISSING,
        netdev_dev_addr: MISSING,
        netdev_dev_addr_is_ptr: 0,
        netdev_nd_net: MISSING,
        skb_protocol: MISSING,
        skb_head: MISSING,
        skb_data: MISSING,
        skb_network_header: MISSING,
        skb_dev: MISSING,
        ifa_local: MISSING,
        ifa_prefixlen: MISSING,
        ifa_dev: MISSING,
        ifa_label: MISSING,
        in_device_dev: MISSING,
        neigh_primary_key: MISSING,
        neigh_dev: MISSING,
        neigh_tbl: MISSING,
        neigh_table_family: MISSING,
        self_tgid: 0,
    };
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 168);
