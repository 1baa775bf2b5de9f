//! Reading kernel structs at offsets userspace resolved from BTF.
//!
//! `OFFSETS` lives in .rodata and is rewritten before load, so the verifier sees each member
//! offset as a constant. Reads go through `bpf_probe_read_kernel`: a bad pointer yields an
//! error, never a fault. Every reader returns a plain integer (0 on failure) because Option
//! chains through several reads upset the verifier ("R7 !read_ok", see KERNEL-NOTES).
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use netns_trace_common::{
    NetnsId,
    kernel::{CLONE_NEWNET, NSFS_MAGIC},
    offsets::{KernelOffsets, MISSING},
};

#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets::UNRESOLVED;

/// One member offset, read so that LLVM cannot fold the compile-time placeholder.
macro_rules! off {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::OFFSETS.$field) }
    };
}
pub(crate) use off;

#[inline(always)]
pub fn read<T: Default>(base: u64, offset: u32) -> T {
    if base == 0 || offset == MISSING {
        return T::default();
    }
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.unwrap_or_default()
}

#[inline(always)]
pub fn read_ptr(base: u64, offset: u32) -> u64 {
    read::<u64>(base, offset)
}

#[inline(always)]
pub fn read_bytes(base: u64, offset: u32, dst: &mut [u8]) {
    if base == 0 || offset == MISSING {
        return;
    }
    let _ = unsafe { bpf_probe_read_kernel_buf((base + offset as u64) as *const u8, dst) };
}

/// Argument `n` of a tp_btf/fentry program read as a plain integer. Up to 6.1 the verifier
/// refuses typed context access to pointer arguments that are not structs (`const void *`,
/// `const u8 *`: "arg#1 type is not a struct"); reading the argument array with
/// bpf_probe_read_kernel yields the same value as an untyped scalar on every kernel.
#[inline(always)]
pub fn raw_arg(ctx: *mut core::ffi::c_void, n: usize) -> u64 {
    unsafe { bpf_probe_read_kernel((ctx as *const u64).wrapping_add(n)) }.unwrap_or(0)
}

#[inline(always)]
pub fn current_task() -> u64 {
    unsafe { bpf_get_current_task() }
}

/// `task->nsproxy->net_ns`, or 0 (exiting tasks have no nsproxy).
#[inline(always)]
pub fn task_net(task: u64) -> u64 {
    let nsproxy = read_ptr(task, off!(task_nsproxy));
    read_ptr(nsproxy, off!(nsproxy_net_ns))
}

/// `task->nsproxy->mnt_ns->ns.inum`, or 0.
#[inline(always)]
pub fn task_mnt_ns(task: u64) -> u32 {
    let nsproxy = read_ptr(task, off!(task_nsproxy));
    let mnt_ns = read_ptr(nsproxy, off!(nsproxy_mnt_ns));
    read::<u32>(mnt_ns, off!(mnt_ns_inum))
}

/// Identity of a `struct net`.
#[inline(always)]
pub fn net_id(net: u64) -> NetnsId {
    NetnsId {
        cookie: read::<u64>(net, off!(net_cookie)),
        inum: read::<u32>(net, off!(net_ns_inum)),
        _pad: 0,
    }
}

#[inline(always)]
pub fn init_net_inum() -> u32 {
    off!(init_net_inum)
}

/// True for tasks of netns-trace itself.
#[inline(always)]
pub fn is_self(tgid: u32) -> bool {
    tgid == off!(self_tgid)
}

#[inline(always)]
pub fn cleanup_net_addr() -> u64 {
    off!(cleanup_net_addr)
}

/// `dev->nd_net.net`.
#[inline(always)]
pub fn dev_net(dev: u64) -> u64 {
    read_ptr(dev, off!(netdev_nd_net))
}

#[inline(always)]
pub fn dev_ifindex(dev: u64) -> u32 {
    read::<u32>(dev, off!(netdev_ifindex))
}

#[inline(always)]
pub fn dev_name(dev: u64, name: &mut [u8; 16]) {
    read_bytes(dev, off!(netdev_name), name);
}

/// The device's MAC: `dev_addr` is a pointer from 5.15 on, an inline array before.
#[inline(always)]
pub fn dev_mac(dev: u64, mac: &mut [u8; 6]) {
    if off!(netdev_dev_addr_is_ptr) != 0 {
        let addr = read_ptr(dev, off!(netdev_dev_addr));
        read_bytes(addr, 0, mac);
    } else {
        read_bytes(dev, off!(netdev_dev_addr), mac);
    }
}

/// If `dentry` is an nsfs dentry of a network namespace, its `struct net *`; else 0.
/// Chain: dentry->d_sb->s_magic == NSFS_MAGIC, dentry->d_inode->i_private = ns_common,
/// type check through ns->ops->type (≤ 6.17) or ns->ns_type (6.18), then container_of.
#[inline(always)]
pub fn nsfs_dentry_net(dentry: u64) -> u64 {
    let sb = read_ptr(dentry, off!(dentry_d_sb));
    let magic = read::<u64>(sb, off!(sb_s_magic));
    if magic != NSFS_MAGIC {
        return 0;
    }
    let inode = read_ptr(dentry, off!(dentry_d_inode));
    ns_common_net(read_ptr(inode, off!(inode_i_private)))
}

/// If `ns` (a `struct ns_common *`) belongs to a network namespace, its `struct net *`.
#[inline(always)]
pub fn ns_common_net(ns: u64) -> u64 {
    if ns == 0 {
        return 0;
    }
    let ns_type: u32 = if off!(ns_common_ns_type) != MISSING {
        read::<u32>(ns, off!(ns_common_ns_type))
    } else {
        let ops = read_ptr(ns, off!(ns_common_ops));
        read::<u32>(ops, off!(proc_ns_ops_type))
    };
    if ns_type as u64 != CLONE_NEWNET {
        return 0;
    }
    let net_ns = off!(net_ns);
    if net_ns == MISSING {
        return 0;
    }
    ns - net_ns as u64
}

/// Remembers `net` so a later free of the pointer can be attributed.
#[inline(always)]
pub fn track_net(net: u64, id: &NetnsId) {
    if net != 0 {
        let _ = crate::maps::TRACKED_NETS.insert(&net, id, 0);
    }
}
