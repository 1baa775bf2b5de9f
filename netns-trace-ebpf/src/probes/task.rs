//! Task membership: which tasks live in which namespace, over time.
//!
//! Tasks in the initial namespace are not tracked (it never leaks, and fork/exit there is the
//! node's hottest path): one compare against `init_net_inum` filters them.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use netns_trace_common::{
    CreatedBy, EventKind, NetnsId, TaskNetns, TaskOp,
    kernel::{CLONE_NEWNET, CLONE_NEWNS},
    task_flags,
};

use aya_log_ebpf::info;

use crate::{
    diag::{ONCE_FIRST_HIT, debug_probes, first},
    emit::{header, send},
    kernel::{
        current_task, init_net_inum, is_self, net_id, off, read, task_mnt_ns, task_net, track_net,
    },
    maps::{NS_BEFORE, NsBefore},
    probes::netns::emit_created,
};

#[inline(always)]
fn is_thread(task: u64) -> bool {
    read::<u32>(task, off!(task_pid)) != read::<u32>(task, off!(task_tgid))
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit_task(
    op: TaskOp,
    netns: NetnsId,
    prev: NetnsId,
    flags: u32,
    ppid: u32,
    mnt_ns: u32,
    prev_mnt_ns: u32,
    pid: u32,
    tgid: u32,
) {
    let mut hdr = header(EventKind::Task, size_of::<TaskNetns>(), netns);
    hdr.pid = pid;
    hdr.tgid = tgid;
    send(
        EventKind::Task,
        TaskNetns {
            hdr,
            op: op as u32,
            flags,
            prev,
            cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            ppid,
            mnt_ns,
            prev_mnt_ns,
            _pad: 0,
        },
    );
}

/// tp_btf `sched_process_fork(struct task_struct *parent, struct task_struct *child)`,
/// 5.10 … 6.18. The child shares the parent's comm and cgroup at this point.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn task_fork(ctx: BtfTracePointContext) -> u32 {
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    if is_self(read::<u32>(parent, off!(task_tgid))) {
        return 0;
    }
    let child_net = task_net(child);
    let child_id = net_id(child_net);
    if child_id.inum == init_net_inum() {
        return 0;
    }
    if debug_probes() && first(ONCE_FIRST_HIT) {
        info!(
            &(),
            target: "task_membership",
            "first hit: sched_process_fork child pid {} in netns inum {} cookie {}",
            read::<u32>(child, off!(task_pid)),
            child_id.inum,
            child_id.cookie
        );
    }
    let parent_net = task_net(parent);
    let prev = if parent_net == child_net {
        child_id
    } else {
        net_id(parent_net)
    };
    let flags = if is_thread(child) {
        task_flags::THREAD
    } else {
        0
    };
    emit_task(
        TaskOp::Fork,
        child_id,
        prev,
        flags,
        read::<u32>(parent, off!(task_tgid)),
        task_mnt_ns(child),
        task_mnt_ns(parent),
        read::<u32>(child, off!(task_pid)),
        read::<u32>(child, off!(task_tgid)),
    );
    0
}

/// tp_btf `sched_process_exit(struct task_struct *p)` (6.17+: `, bool group_dead`).
/// Fires before exit_task_namespaces, so nsproxy is still valid.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn task_exit(ctx: BtfTracePointContext) -> u32 {
    let task: u64 = ctx.arg(0);
    if is_self((bpf_get_current_pid_tgid() >> 32) as u32) {
        return 0;
    }
    let net = task_net(task);
    let id = net_id(net);
    if net == 0 || id.inum == init_net_inum() {
        return 0;
    }
    // Keeps the pointer attributable for the free that may follow the last exit.
    track_net(net, &id);
    let pid_tgid = bpf_get_current_pid_tgid();
    let flags = if is_thread(task) {
        task_flags::THREAD
    } else {
        0
    };
    let mnt = task_mnt_ns(task);
    emit_task(
        TaskOp::Exit,
        id,
        id,
        flags,
        0,
        mnt,
        mnt,
        pid_tgid as u32,
        (pid_tgid >> 32) as u32,
    );
    0
}

#[inline(always)]
fn save_before() {
    if is_self((bpf_get_current_pid_tgid() >> 32) as u32) {
        return;
    }
    let task = current_task();
    let net = task_net(task);
    let before = NsBefore {
        net_ptr: net,
        netns: net_id(net),
        mnt_ns: task_mnt_ns(task),
        _pad: 0,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = NS_BEFORE.insert(&tid, &before, 0);
}

/// Compares the caller's namespaces with those saved at entry. Returns nothing: emits a
/// creation (unshare only) and a membership change when something changed.
#[inline(always)]
fn compare_after(op: TaskOp, ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(before) = (unsafe { NS_BEFORE.get(&tid) }).copied() else {
        return;
    };
    let _ = NS_BEFORE.remove(&tid);
    if ret != 0 {
        return;
    }
    let task = current_task();
    let net = task_net(task);
    let mnt = task_mnt_ns(task);
    if net == before.net_ptr && mnt == before.mnt_ns {
        return;
    }
    let id = net_id(net);
    if net != before.net_ptr {
        if op == TaskOp::Unshare {
            emit_created(net, before.net_ptr, CLONE_NEWNET, CreatedBy::Unshare);
        } else {
            track_net(net, &id);
        }
    }
    let flags = if is_thread(task) {
        task_flags::THREAD
    } else {
        0
    };
    emit_task(
        op,
        id,
        before.netns,
        flags,
        0,
        mnt,
        before.mnt_ns,
        tid,
        (pid_tgid >> 32) as u32,
    );
}

/// syscalls:sys_enter_unshare(unsigned long unshare_flags) — classic tracepoint; syscall
/// arguments start at offset 16 on every kernel.
#[tracepoint]
pub fn task_unshare_enter(ctx: TracePointContext) -> u32 {
    let flags: u64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    if flags & (CLONE_NEWNET | CLONE_NEWNS) != 0 {
        save_before();
    }
    0
}

/// syscalls:sys_exit_unshare(long ret).
#[tracepoint]
pub fn task_unshare_exit(ctx: TracePointContext) -> u32 {
    compare_after(
        TaskOp::Unshare,
        unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1),
    );
    0
}

/// syscalls:sys_enter_setns(int fd, int flags). Any setns may switch the netns (flags 0).
#[tracepoint]
pub fn task_setns_enter(_ctx: TracePointContext) -> u32 {
    save_before();
    0
}

/// syscalls:sys_exit_setns(long ret).
#[tracepoint]
pub fn task_setns_exit(ctx: TracePointContext) -> u32 {
    compare_after(
        TaskOp::Setns,
        unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1),
    );
    0
}
