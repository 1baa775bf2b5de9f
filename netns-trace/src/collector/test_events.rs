//! Event builders and constants shared by the collector's unit tests (tests.rs,
//! cni_calls/tests.rs, cni_gc/tests.rs): one definition of a task record, a start snapshot
//! and a collector set up as `watch` runs it.
use super::{Collector, CollectorConfig};
use crate::model::{
    Comm, Event, EventBody, MountOp, MountSyscall, NsId, Pin, PinChange, SnapNamespace, Snapshot,
    SnapshotPhase, TaskNetns, TaskOp,
};

pub(super) const S: u64 = 1_000_000_000;
pub(super) const MS: u64 = 1_000_000;
pub(super) const GRACE: u64 = 30 * S;
pub(super) const INIT: NsId = NsId::new(1, 4026531840);
pub(super) const HOST_MNT: u32 = 4026531841;

pub(super) fn comm(s: &str) -> Comm {
    Comm::from_str_lossy(s)
}

/// A kernel record of thread `pid` of process `tgid`.
pub(super) fn ev(ts: u64, pid: u32, tgid: u32, c: &str, body: EventBody) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid,
        comm: comm(c),
        body,
    }
}

/// A kernel record of a single-threaded process.
pub(super) fn by_process(ts: u64, pid: u32, c: &str, body: EventBody) -> Event {
    ev(ts, pid, pid, c, body)
}

/// A task record (fork, unshare, setns, exit) in the host's mount namespace.
pub(super) fn task_body(op: TaskOp, netns: NsId, prev: NsId) -> EventBody {
    EventBody::Task(TaskNetns {
        op,
        netns,
        prev,
        thread: false,
        group_dead: op == TaskOp::Exit,
        cgroup_id: 0,
        ppid: 1,
        mnt_ns: HOST_MNT,
        prev_mnt_ns: HOST_MNT,
    })
}

pub(super) fn start_snapshot(namespaces: Vec<SnapNamespace>) -> Event {
    Event::observed(
        S,
        EventBody::Snapshot(Box::new(Snapshot {
            phase: SnapshotPhase::Start,
            namespaces,
            init_netns: INIT,
            init_mnt_ns: HOST_MNT,
        })),
    )
}

/// A collector with notices on and a Start snapshot naming the init namespace.
pub(super) fn collector() -> Collector {
    let mut c = Collector::new(CollectorConfig {
        grace_ns: GRACE,
        keep_destroyed: 10_000,
        notices: true,
    });
    c.handle(&start_snapshot(vec![]));
    c
}

/// A bind mount at `path` in the host's mount namespace, held by systemd.
pub(super) fn bind_mount_pin(path: &str) -> Pin {
    Pin::BindMount {
        path: path.into(),
        mnt_ns: HOST_MNT,
        holder_pid: 1,
        holder_comm: comm("systemd"),
    }
}

/// `mount --bind SOURCE TARGET` by process `pid`, from the host's namespaces, as the probe
/// records it.
pub(super) fn bind_mount_syscall(ts: u64, pid: u32, c: &str, source: &str, target: &str) -> Event {
    ev(
        ts,
        pid,
        pid,
        c,
        EventBody::MountSyscall(MountSyscall {
            op: MountOp::Mount,
            netns: INIT,
            mnt_ns: HOST_MNT,
            ret: 0,
            flags: 4096,
            from_dfd: -100,
            to_dfd: -100,
            source: source.into(),
            target: target.into(),
        }),
    )
}

/// `mount --bind /proc/MEMBER/ns/net PATH` (pid 90) pinning `netns`, confirmed from
/// mountinfo.
pub(super) fn pin(c: &mut Collector, ts: u64, netns: NsId, member: u32, path: &str) {
    c.handle(&bind_mount_syscall(
        ts,
        90,
        "mount",
        &format!("/proc/{member}/ns/net"),
        path,
    ));
    c.handle(&Event::observed(
        ts,
        EventBody::PinAdded(PinChange {
            netns,
            pin: bind_mount_pin(path),
        }),
    ));
}
