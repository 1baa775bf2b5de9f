//! Mounts that pin a namespace: nsfs bind mounts, their removal, and nsfs inode eviction.
//!
//! Every mode records the mount-family syscalls (paths, flags, result); userspace confirms
//! what they did from mountinfo. Full mode also sees the graft itself, with the exact
//! namespace pinned, and the eviction that really lets the namespace go.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_buf, bpf_probe_read_user_str_bytes},
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
};
use netns_trace_common::{EventKind, Hook, MountOp, MountSyscall, NetnsObject, NsfsMount};

use aya_log_ebpf::error;

use crate::{
    diag::{ONCE_MOUNT_COPY, first},
    emit::{count_lost, header},
    kernel::{
        current_task, net_id, ns_common_net, nsfs_dentry_net, off, read_ptr, task_mnt_ns, task_net,
    },
    maps::{EVENTS, MOUNT_SCRATCH, PENDING_MOUNTS},
};

const AT_FDCWD: i32 = -100;

/// Saves a syscall's arguments until it returns.
#[inline(always)]
fn save_args(op: MountOp, source: u64, target: u64, flags: u64, from_dfd: i32, to_dfd: i32) {
    let Some(scratch) = MOUNT_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let rec = unsafe { &mut *scratch };
    rec.op = op as u32;
    rec.flags = flags;
    rec.from_dfd = from_dfd;
    rec.to_dfd = to_dfd;
    rec.source[0] = 0;
    rec.target[0] = 0;
    if source != 0 {
        let _ = unsafe { bpf_probe_read_user_str_bytes(source as *const u8, &mut rec.source) };
    }
    if target != 0 {
        let _ = unsafe { bpf_probe_read_user_str_bytes(target as *const u8, &mut rec.target) };
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = PENDING_MOUNTS.insert(&tid, &*rec, 0);
}

/// Emits the saved arguments with the result.
#[inline(always)]
fn finish(ret: i64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(saved) = PENDING_MOUNTS.get_ptr(&tid) else {
        return;
    };
    let Some(mut entry) = EVENTS.reserve::<MountSyscall>(0) else {
        let _ = PENDING_MOUNTS.remove(&tid);
        count_lost(EventKind::MountSyscall);
        return;
    };
    let dst = entry.as_mut_ptr();
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(dst as *mut u8, size_of::<MountSyscall>()) };
    if unsafe { bpf_probe_read_kernel_buf(saved as *const u8, bytes) }.is_err() {
        if first(ONCE_MOUNT_COPY) {
            error!(&(), target: "mount_syscalls", "copying saved mount arguments from the map failed; this mount record was dropped");
        }
        entry.discard(0);
        let _ = PENDING_MOUNTS.remove(&tid);
        return;
    }
    let task = current_task();
    let rec = unsafe { &mut *dst };
    rec.hdr = header(
        EventKind::MountSyscall,
        size_of::<MountSyscall>(),
        net_id(task_net(task)),
    );
    rec.mnt_ns = task_mnt_ns(task);
    rec.ret = ret;
    entry.submit(crate::emit::submit_flags());
    let _ = PENDING_MOUNTS.remove(&tid);
}

#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    unsafe { ctx.read_at::<u64>(16 + 8 * n) }.unwrap_or(0)
}

#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1)
}

/// syscalls:sys_enter_mount(char *dev_name, char *dir_name, char *type, unsigned long flags,
/// void *data).
#[tracepoint]
pub fn mount_enter(ctx: TracePointContext) -> u32 {
    save_args(
        MountOp::Mount,
        arg(&ctx, 0),
        arg(&ctx, 1),
        arg(&ctx, 3),
        AT_FDCWD,
        AT_FDCWD,
    );
    0
}

/// syscalls:sys_enter_umount(char *name, int flags) (umount2 on x86_64). Its one path is
/// recorded as `source`, like open_tree's; `target` stays empty.
#[tracepoint]
pub fn umount_enter(ctx: TracePointContext) -> u32 {
    save_args(
        MountOp::Umount,
        arg(&ctx, 0),
        0,
        arg(&ctx, 1),
        AT_FDCWD,
        AT_FDCWD,
    );
    0
}

/// syscalls:sys_enter_open_tree(int dfd, const char *filename, unsigned flags), 5.2+.
#[tracepoint]
pub fn open_tree_enter(ctx: TracePointContext) -> u32 {
    save_args(
        MountOp::OpenTree,
        arg(&ctx, 1),
        0,
        arg(&ctx, 2),
        arg(&ctx, 0) as i32,
        AT_FDCWD,
    );
    0
}

/// syscalls:sys_enter_move_mount(int from_dfd, const char *from_path, int to_dfd,
/// const char *to_path, unsigned int flags), 5.2+.
#[tracepoint]
pub fn move_mount_enter(ctx: TracePointContext) -> u32 {
    save_args(
        MountOp::MoveMount,
        arg(&ctx, 1),
        arg(&ctx, 3),
        arg(&ctx, 4),
        arg(&ctx, 0) as i32,
        arg(&ctx, 2) as i32,
    );
    0
}

/// syscalls:sys_exit_{mount,umount,open_tree,move_mount}(long ret): one program, attached
/// to each exit tracepoint.
#[tracepoint]
pub fn mount_exit(ctx: TracePointContext) -> u32 {
    finish(ret(&ctx));
    0
}

#[inline(always)]
fn emit_nsfs_mount(net: u64, hook: Hook) {
    if net == 0 {
        return;
    }
    let mnt_ns = task_mnt_ns(current_task());
    crate::emit::send(
        EventKind::NsfsMount,
        NsfsMount {
            hdr: header(EventKind::NsfsMount, size_of::<NsfsMount>(), net_id(net)),
            net_ptr: net,
            mnt_ns,
            hook: hook as u32,
        },
    );
}

/// The net pinned by a `struct mount *` being grafted, or 0.
#[inline(always)]
fn mount_net(mount: u64) -> u64 {
    // &mount->mnt is a struct vfsmount; its mnt_root is the nsfs dentry.
    let vfsmount = mount + off!(mount_mnt) as u64;
    nsfs_dentry_net(read_ptr(vfsmount, off!(vfsmount_mnt_root)))
}

/// fentry `int graft_tree(struct mount *mnt, struct mount *p, struct mountpoint *mp)`:
/// out of line on every version; reached by mount(MS_BIND) (do_loopback).
#[fentry(function = "graft_tree")]
pub fn nsfs_mount_graft_fentry(ctx: FEntryContext) -> u32 {
    emit_nsfs_mount(mount_net(ctx.arg(0)), Hook::Fentry);
    0
}

#[kprobe]
pub fn nsfs_mount_graft_kprobe(ctx: ProbeContext) -> u32 {
    emit_nsfs_mount(mount_net(ctx.arg(0).unwrap_or(0)), Hook::Kprobe);
    0
}

/// fentry `int security_move_mount(const struct path *from_path, const struct path *to_path)`
/// (5.2+): the new mount API (open_tree + move_mount) never reaches graft_tree.
#[fentry(function = "security_move_mount")]
pub fn nsfs_mount_move_fentry(ctx: FEntryContext) -> u32 {
    let from_path: u64 = ctx.arg(0);
    emit_nsfs_mount(
        nsfs_dentry_net(read_ptr(from_path, off!(path_dentry))),
        Hook::Fentry,
    );
    0
}

#[kprobe]
pub fn nsfs_mount_move_kprobe(ctx: ProbeContext) -> u32 {
    let from_path: u64 = ctx.arg(0).unwrap_or(0);
    emit_nsfs_mount(
        nsfs_dentry_net(read_ptr(from_path, off!(path_dentry))),
        Hook::Kprobe,
    );
    0
}

#[inline(always)]
fn on_evict(inode: u64, hook: Hook) {
    let net = ns_common_net(read_ptr(inode, off!(inode_i_private)));
    if net == 0 {
        return;
    }
    crate::emit::send(
        EventKind::NsfsEvict,
        NetnsObject {
            hdr: header(EventKind::NsfsEvict, size_of::<NetnsObject>(), net_id(net)),
            net_ptr: net,
            hook: hook as u32,
            _pad: 0,
        },
    );
}

/// fentry `static void nsfs_evict(struct inode *inode)`: the super_operations evict_inode
/// callback, so never inlined. The namespace reference held by the nsfs inode drops here.
#[fentry(function = "nsfs_evict")]
pub fn nsfs_evict_fentry(ctx: FEntryContext) -> u32 {
    on_evict(ctx.arg(0), Hook::Fentry);
    0
}

#[kprobe]
pub fn nsfs_evict_kprobe(ctx: ProbeContext) -> u32 {
    on_evict(ctx.arg(0).unwrap_or(0), Hook::Kprobe);
    0
}
