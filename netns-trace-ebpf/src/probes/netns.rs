//! Namespace creation, teardown and free.
use aya_ebpf::{
    EbpfContext as _,
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use netns_trace_common::{
    CreatedBy, EventKind, Hook, NetnsCreated, NetnsId, NetnsObject,
    kernel::{CLONE_NEWNET, MAX_ERRNO},
};

use aya_log_ebpf::error;

use crate::{
    diag::{ONCE_INUM_READ, first},
    emit::{header, send},
    kernel::{cleanup_net_addr, current_task, net_id, off, raw_arg, task_net, track_net},
    maps::{ENTRY_ARGS, NET_CACHE, TRACKED_NETS},
};

#[inline(always)]
pub fn emit_created(new_net: u64, parent_net: u64, clone_flags: u64, source: CreatedBy) {
    let id = net_id(new_net);
    // A live struct net always has an inode number: 0 means the BTF-resolved offset (or the
    // pointer) is wrong on this kernel, and every identity from it will be too.
    if new_net != 0 && id.inum == 0 && first(ONCE_INUM_READ) {
        error!(
            &(),
            target: "netns_created",
            "cannot read ns.inum of struct net {:x} at offset {}: namespace identities on this kernel are unreliable",
            new_net,
            off!(net_ns_inum)
        );
    }
    track_net(new_net, &id);
    send(
        EventKind::NetnsCreated,
        NetnsCreated {
            hdr: header(EventKind::NetnsCreated, size_of::<NetnsCreated>(), id),
            net_ptr: new_net,
            parent: net_id(parent_net),
            clone_flags,
            source: source as u32,
            _pad: 0,
        },
    );
}

#[inline(always)]
fn on_copy_net_ns_return(flags: u64, old_net: u64, ret: u64) {
    // Without CLONE_NEWNET copy_net_ns returns old_net with a reference taken; errors are
    // ERR_PTRs (the top MAX_ERRNO addresses).
    if flags & CLONE_NEWNET == 0 || ret == 0 || ret >= (0u64).wrapping_sub(MAX_ERRNO) {
        return;
    }
    emit_created(ret, old_net, flags, CreatedBy::CopyNetNs);
}

/// fexit `struct net *copy_net_ns(unsigned long flags, struct user_namespace *user_ns,
///                                struct net *old_net)` — same prototype 5.10 … 6.18.
/// The return value sits after the three arguments in the fexit context.
#[fexit(function = "copy_net_ns")]
pub fn netns_created_fexit(ctx: FExitContext) -> u32 {
    on_copy_net_ns_return(ctx.arg(0), ctx.arg(2), ctx.arg(3));
    0
}

/// kprobe fallback, entry half: remember flags and old_net for the kretprobe.
#[kprobe]
pub fn netns_created_kprobe(ctx: ProbeContext) -> u32 {
    let flags: u64 = ctx.arg(0).unwrap_or(0);
    if flags & CLONE_NEWNET != 0 {
        let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
        let _ = ENTRY_ARGS.insert(&tid, &[flags, ctx.arg(2).unwrap_or(0)], 0);
    }
    0
}

/// kretprobe fallback, return half.
#[kretprobe]
pub fn netns_created_kretprobe(ctx: RetProbeContext) -> u32 {
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    let Some(args) = (unsafe { ENTRY_ARGS.get(&tid) }).copied() else {
        return 0;
    };
    let _ = ENTRY_ARGS.remove(&tid);
    on_copy_net_ns_return(args[0], args[1], ctx.ret());
    0
}

/// tracepoint mode: tp_btf `task_newtask(struct task_struct *task, u64 clone_flags)`
/// (5.10 … 6.18; clone_flags was `unsigned long` before 6.12). Fires after copy_namespaces,
/// so the child's nsproxy already points at the new namespace.
#[btf_tracepoint(function = "task_newtask")]
pub fn netns_created_task_newtask(ctx: BtfTracePointContext) -> u32 {
    let task: u64 = ctx.arg(0);
    let flags: u64 = ctx.arg(1);
    if flags & CLONE_NEWNET != 0 {
        emit_created(
            task_net(task),
            task_net(current_task()),
            flags,
            CreatedBy::Clone,
        );
    }
    0
}

#[inline(always)]
fn emit_object(kind: EventKind, net: u64, id: NetnsId, hook: Hook) {
    send(
        kind,
        NetnsObject {
            hdr: header(kind, size_of::<NetnsObject>(), id),
            net_ptr: net,
            hook: hook as u32,
            _pad: 0,
        },
    );
}

/// Teardown begins: a per-net exit callback, reached through a function pointer so never
/// inlined (unlike __put_net). fentry `void netns_bpf_pernet_pre_exit(struct net *net)`,
/// 5.8 … 6.18.
#[fentry(function = "netns_bpf_pernet_pre_exit")]
pub fn netns_teardown_fentry(ctx: FEntryContext) -> u32 {
    let net: u64 = ctx.arg(0);
    emit_object(EventKind::NetnsTeardown, net, net_id(net), Hook::Fentry);
    0
}

/// kprobe fallback on the same callback (or `rtnetlink_net_exit(struct net *)`, every
/// version: the registry picks the target symbol).
#[kprobe]
pub fn netns_teardown_kprobe(ctx: ProbeContext) -> u32 {
    let net: u64 = ctx.arg(0).unwrap_or(0);
    emit_object(EventKind::NetnsTeardown, net, net_id(net), Hook::Kprobe);
    0
}

/// tracepoint mode: tp_btf `workqueue_execute_start(struct work_struct *work)`; the worker
/// function is `work->func` (offset 24 on every x86_64 kernel: data, entry{next,prev}).
/// Matches cleanup_net's address from /proc/kallsyms. Coarse: the batch's namespaces are
/// identified later by their frees.
#[btf_tracepoint(function = "workqueue_execute_start")]
pub fn netns_cleanup_run(ctx: BtfTracePointContext) -> u32 {
    let work: u64 = ctx.arg(0);
    let func: u64 = crate::kernel::read(work, 24);
    let cleanup = cleanup_net_addr();
    if cleanup != 0 && func == cleanup {
        emit_object(
            EventKind::CleanupRun,
            0,
            NetnsId::default(),
            Hook::Tracepoint,
        );
    }
    0
}

/// Memory freed: tp_btf `kmem_cache_free(unsigned long call_site, const void *ptr, <cache>)`,
/// where <cache> is `const char *name` (≤ 6.1, and tp_btf may not even read a non-struct
/// pointer argument) or `struct kmem_cache *s`. So the filter keys on `call_site`, a plain
/// integer everywhere: a struct net is freed from one place (net_free / net_passive_dec), so
/// once the first tracked free teaches us that address, every other free costs one compare.
/// This is hot. From 6.13 the free is deferred to the next cleanup_net run.
#[btf_tracepoint(function = "kmem_cache_free")]
pub fn netns_freed_kmem(ctx: BtfTracePointContext) -> u32 {
    let call_site = raw_arg(ctx.as_ptr(), 0);
    let ptr = raw_arg(ctx.as_ptr(), 1);
    let Some(learned) = NET_CACHE.get_ptr_mut(0) else {
        return 0;
    };
    let known = unsafe { *learned };
    if known != 0 && call_site != known {
        return 0;
    }
    let Some(id) = (unsafe { TRACKED_NETS.get(&ptr) }).copied() else {
        return 0;
    };
    if known == 0 {
        unsafe { *learned = call_site };
    }
    let _ = TRACKED_NETS.remove(&ptr);
    emit_object(EventKind::NetnsFreed, ptr, id, Hook::Tracepoint);
    0
}
