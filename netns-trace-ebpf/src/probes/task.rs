//! Task membership: which tasks live in which namespace, over time.
//!
//! Tasks in the initial namespace are not tracked (it never leaks, and fork/exit there is the
//! node's hottest path): one compare against `init_net_inum` filters them.
//!
//! Exec is a task concern too: CNI plugin runs are recognised at exec (see the end).
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_probe_read_kernel_buf,
        bpf_probe_read_user, bpf_probe_read_user_str_bytes,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::{BtfTracePointContext, TracePointContext},
};
use netns_trace_common::{
    CniExec, CniExit, CreatedBy, EventKind, NetnsId, TaskNetns, TaskOp, cld, cni_vars,
    kernel::{CLONE_NEWNET, CLONE_NEWNS},
    task_flags,
};

use aya_log_ebpf::info;

use crate::{
    diag::{ONCE_FIRST_HIT, debug_probes, first},
    emit::{count_lost, header, send, submit_flags},
    kernel::{
        current_task, init_net_inum, is_self, net_id, off, read, task_mnt_ns, task_net, track_net,
    },
    maps::{EVENTS, NS_BEFORE, NsBefore},
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

// ---- CNI plugin runs ----
//
// A CNI plugin is any program executed with CNI_COMMAND in its environment. It runs for
// milliseconds, so its environment is read here, at exec: sys_enter_execve(at) copies the
// wanted variables into a pending record, and sys_exit_execve(at) sends it only when the exec
// succeeded. An exec without CNI_COMMAND costs the environment scan only.

/// Environment entries looked at per exec. libcni appends the CNI_* variables at the end of
/// the runtime's environment, which holds far fewer entries than this.
const CNI_ENV_SCAN: u64 = 256;

/// The exec'ing task (its `task_struct` address, which survives de_thread when a thread other
/// than the leader execs) → the record read at entry, until the exec returns. LRU: an exec
/// that never returns (killed past the point of no return) must not keep its entry.
#[map]
static CNI_PENDING: LruHashMap<u64, CniExec> = LruHashMap::with_max_entries(512, 0);

/// Where the record is built: it is twice the size of the BPF stack.
#[map]
static CNI_SCRATCH: PerCpuArray<CniExec> = PerCpuArray::with_max_entries(1, 0);

/// Eight bytes of a variable name, as one little-endian word.
const fn word(name: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*name)
}

/// The low `n` bytes of a word.
const fn low(word: u64, n: u32) -> u64 {
    word & ((1u64 << (8 * n)) - 1)
}

/// Copies the NUL-terminated user string at `src` into `dst`. Returns the truncation bit
/// `bit` when the string did not fit, 0 otherwise (also when it could not be read: `dst` is
/// then empty).
#[inline(always)]
fn copy_user_str<const N: usize>(dst: &mut [u8; N], src: u64, bit: u32) -> u32 {
    dst[0] = 0;
    match unsafe { bpf_probe_read_user_str_bytes(src as *const u8, dst) } {
        // A full buffer was cut unless the string ends exactly there.
        Ok(text) if text.len() + 1 >= N => {
            let next: u8 =
                unsafe { bpf_probe_read_user((src + N as u64 - 1) as *const u8) }.unwrap_or(0);
            if next != 0 { bit } else { 0 }
        }
        _ => 0,
    }
}

/// Copies the value of the CNI variable at `entry` ("NAME=value") into the record when the
/// name is one of [`cni_vars::ENV`] not seen yet (the first occurrence wins, as for getenv).
/// `head` is the entry's first eight bytes.
#[inline(always)]
fn take_cni_var(rec: &mut CniExec, entry: u64, head: u64) {
    // Bytes 8..16 of the name, read as a string so a short entry is never read past its end.
    let mut rest = [0u8; 9];
    if unsafe { bpf_probe_read_user_str_bytes((entry + 8) as *const u8, &mut rest) }.is_err() {
        return;
    }
    let rest = u64::from_le_bytes([
        rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], rest[7],
    ]);
    let present = rec.present;
    let mut cut = 0;
    let bit = if head == word(b"CNI_COMM") && low(rest, 4) == low(word(b"AND=\0\0\0\0"), 4) {
        if present & cni_vars::VERB == 0 {
            cut = copy_user_str(&mut rec.verb, entry + 12, cni_vars::VERB);
        }
        cni_vars::VERB
    } else if head == word(b"CNI_CONT") && rest == word(b"AINERID=") {
        if present & cni_vars::CONTAINER_ID == 0 {
            cut = copy_user_str(&mut rec.container_id, entry + 16, cni_vars::CONTAINER_ID);
        }
        cni_vars::CONTAINER_ID
    } else if head == word(b"CNI_NETN") && low(rest, 2) == low(word(b"S=\0\0\0\0\0\0"), 2) {
        if present & cni_vars::NETNS == 0 {
            cut = copy_user_str(&mut rec.netns, entry + 10, cni_vars::NETNS);
        }
        cni_vars::NETNS
    } else if head == word(b"CNI_IFNA") && low(rest, 3) == low(word(b"ME=\0\0\0\0\0"), 3) {
        if present & cni_vars::IFNAME == 0 {
            cut = copy_user_str(&mut rec.ifname, entry + 11, cni_vars::IFNAME);
        }
        cni_vars::IFNAME
    } else if head == word(b"CNI_ARGS") && low(rest, 1) == u64::from(b'=') {
        if present & cni_vars::ARGS == 0 {
            cut = copy_user_str(&mut rec.args, entry + 9, cni_vars::ARGS);
        }
        cni_vars::ARGS
    } else {
        0
    };
    rec.truncated |= cut;
    rec.present = present | bit;
}

/// Reads the CNI variables of an exec's environment (`envp`, a user array of `char *`) and,
/// when CNI_COMMAND is among them, keeps the record until the exec returns.
#[inline(always)]
fn cni_exec_enter(filename: u64, envp: u64) {
    if envp == 0 {
        return;
    }
    let Some(rec) = CNI_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let rec = unsafe { &mut *rec };
    rec.present = 0;
    rec.truncated = 0;
    for i in 0..CNI_ENV_SCAN {
        let Ok(entry) = (unsafe { bpf_probe_read_user((envp + 8 * i) as *const u64) }) else {
            break;
        };
        if entry == 0 {
            break;
        }
        // Every wanted name is longer than eight bytes, so this read stays inside a wanted
        // entry; a shorter entry that ends at an unmapped page fails here and is no CNI one.
        let Ok(head) = (unsafe { bpf_probe_read_user(entry as *const u64) }) else {
            continue;
        };
        if low(head, 4) != low(word(b"CNI_\0\0\0\0"), 4) {
            continue;
        }
        take_cni_var(rec, entry, head);
        if rec.present == cni_vars::ENV {
            break;
        }
    }
    if rec.present & cni_vars::VERB == 0 {
        return;
    }
    rec.truncated |= copy_user_str(&mut rec.path, filename, cni_vars::PATH);
    // Checked at exit, with the task address: the tgid survives exec.
    rec.hdr.tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = CNI_PENDING.insert(&current_task(), &*rec, 0);
}

/// Sends the pending record of the current task if its exec succeeded (`ret == 0`).
#[inline(always)]
fn cni_exec_exit(ret: i64) {
    let task = current_task();
    let Some(saved) = CNI_PENDING.get_ptr(&task) else {
        return;
    };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if ret != 0 || unsafe { (*saved).hdr.tgid } != tgid {
        let _ = CNI_PENDING.remove(&task);
        return;
    }
    // Watched for its end even if the ring has no room for the start.
    let _ = CNI_PIDS.insert(&tgid, &CNI_RUNNING, 0);
    let Some(mut entry) = EVENTS.reserve::<CniExec>(0) else {
        let _ = CNI_PENDING.remove(&task);
        count_lost(EventKind::CniExec);
        return;
    };
    let dst = entry.as_mut_ptr();
    let bytes = unsafe { core::slice::from_raw_parts_mut(dst as *mut u8, size_of::<CniExec>()) };
    if unsafe { bpf_probe_read_kernel_buf(saved as *const u8, bytes) }.is_err() {
        entry.discard(0);
        let _ = CNI_PENDING.remove(&task);
        return;
    }
    let rec = unsafe { &mut *dst };
    rec.hdr = header(
        EventKind::CniExec,
        size_of::<CniExec>(),
        net_id(task_net(task)),
    );
    entry.submit(submit_flags());
    let _ = CNI_PENDING.remove(&task);
}

/// syscalls:sys_enter_execve(const char *filename, const char *const *argv,
/// const char *const *envp).
#[tracepoint]
pub fn cni_exec_enter_execve(ctx: TracePointContext) -> u32 {
    let filename: u64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    let envp: u64 = unsafe { ctx.read_at(32) }.unwrap_or(0);
    cni_exec_enter(filename, envp);
    0
}

/// syscalls:sys_enter_execveat(int fd, const char *filename, const char *const *argv,
/// const char *const *envp, int flags). The path is recorded as given (relative to `fd` when
/// it is relative).
#[tracepoint]
pub fn cni_exec_enter_execveat(ctx: TracePointContext) -> u32 {
    let filename: u64 = unsafe { ctx.read_at(24) }.unwrap_or(0);
    let envp: u64 = unsafe { ctx.read_at(40) }.unwrap_or(0);
    cni_exec_enter(filename, envp);
    0
}

/// syscalls:sys_exit_execve(long ret) and sys_exit_execveat(long ret): one program, attached
/// to both.
#[tracepoint]
pub fn cni_exec_exit_execve(ctx: TracePointContext) -> u32 {
    cni_exec_exit(unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1));
    0
}

// ---- CNI plugin ends ----
//
// A plugin's end is what its parent is told: the SIGCHLD (signal:signal_generate, generated
// when the last thread is gone, even for a parent that ignores it) carries how it ended and
// the status, as wait() returns them. The plugins are the tgids of successful CNI execs, kept
// in CNI_PIDS until then. A caller that sets SIGCHLD to SIG_IGN is sent none (it cannot read
// the status either): its plugins' entries are dropped when their main thread exits again
// under the same tgid, or by the LRU.

/// A plugin process whose main thread is running.
const CNI_RUNNING: u32 = 1;
/// A plugin process whose main thread has exited (the others may still run).
const CNI_LEADER_EXITED: u32 = 2;

/// Plugin processes (tgid) → CNI_RUNNING / CNI_LEADER_EXITED, from their exec until their
/// parent is told they ended. LRU: a plugin whose end is never reported must not keep its
/// entry.
#[map]
static CNI_PIDS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(4096, 0);

/// sched:sched_process_exit (classic; the current task is the one exiting). Marks a plugin
/// whose main thread exits; a main thread exiting under a tgid already marked is a later
/// process that reused it, so the stale entry goes.
#[tracepoint]
pub fn cni_leader_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if pid_tgid as u32 != tgid {
        return 0;
    }
    let Some(state) = CNI_PIDS.get_ptr_mut(&tgid) else {
        return 0;
    };
    if unsafe { *state } == CNI_RUNNING {
        unsafe { *state = CNI_LEADER_EXITED };
    } else {
        let _ = CNI_PIDS.remove(&tgid);
    }
    0
}

/// tp_btf `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
/// int group, int result)`, 5.10 … 6.18. A plugin's parent is told of its end from the
/// plugin's own last thread (exit_notify, or release_task when the main thread went first),
/// so the current tgid names the plugin. `info` is the UAPI siginfo: si_code at 8; for a
/// child, si_pid at 16 and si_status at 24.
#[btf_tracepoint(function = "signal_generate")]
pub fn cni_exit(ctx: BtfTracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(state) = CNI_PIDS.get_ptr(&tgid) else {
        return 0;
    };
    if unsafe { *state } != CNI_LEADER_EXITED {
        return 0;
    }
    let info: u64 = ctx.arg(1);
    let code = read::<i32>(info, 8);
    if !(cld::EXITED..=cld::DUMPED).contains(&code) {
        return 0;
    }
    let parent: u64 = ctx.arg(2);
    let hdr = header(EventKind::CniExit, size_of::<CniExit>(), NetnsId::default());
    send(
        EventKind::CniExit,
        CniExit {
            hdr,
            code,
            status: read::<i32>(info, 24),
            parent_tgid: read::<u32>(parent, off!(task_tgid)),
            _pad: 0,
        },
    );
    let _ = CNI_PIDS.remove(&tgid);
    0
}
