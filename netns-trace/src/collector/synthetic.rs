//! A deterministic synthetic event stream: N pod-like namespaces, each created CRI-O style
//! (a short-lived creator unshares, bind-mounts the namespace and exits), joined by a pause
//! process and a few workload processes with threads, given a veth with a unique IPv4 address,
//! chatting ARP, then torn down (umount, teardown, free). Optionally every k-th one leaks:
//! its members die but the bind mount is never removed.
//!
//! Lifetimes overlap (`concurrency` alive at once) and events are merged in timestamp order,
//! streaming, so memory stays proportional to concurrency. Used by tests and benches.
use crate::model::{
    ArpPacket, CgroupPath, Ipv4AddrChange, MountSyscall, NetDev, NetnsCreated, NetnsObject,
    PinChange, TaskNetns,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::Ipv4Addr;

use rustc_hash::FxHashMap;

use crate::model::{
    AddrOp, Comm, CreatedBy, Direction, Event, EventBody, Hook, Interface, Mac, MountOp, NetDevOp,
    NsId, Pin, Snapshot, SnapshotPhase, TaskOp,
};

/// The init namespace used by synthetic streams.
pub const SYNTH_INIT: NsId = NsId::new(1, 4026531840);
/// The host mount namespace used by synthetic streams.
pub const SYNTH_HOST_MNT: u32 = 4026531841;
const MS_BIND: u64 = 4096;

#[derive(Clone, Debug)]
pub struct SyntheticConfig {
    pub namespaces: usize,
    pub seed: u64,
    /// Namespaces alive at the same time, roughly.
    pub concurrency: usize,
    /// Workload processes per namespace besides pause: 0..=this.
    pub max_processes: u32,
    /// Threads per workload process: 1..=this.
    pub max_threads: u32,
    /// ARP packets per namespace.
    pub arp_per_ns: u32,
    /// Every k-th namespace leaks (0: none do).
    pub leak_every: usize,
    /// Mean namespace lifetime.
    pub mean_lifetime_ns: u64,
    pub start_ns: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            namespaces: 1000,
            seed: 1,
            concurrency: 64,
            max_processes: 3,
            max_threads: 4,
            arp_per_ns: 6,
            leak_every: 0,
            mean_lifetime_ns: 2_000_000_000,
            start_ns: 1_000_000_000,
        }
    }
}

/// splitmix64: tiny, deterministic, good enough for shaping test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// The namespace identity the stream gives namespace number `i`.
pub fn synthetic_netns(cfg: &SyntheticConfig, i: usize) -> NsId {
    if synthetic_leaks(cfg, i) {
        // A leaked namespace keeps its inode number for good.
        return NsId::new(1_000 + i as u64, 4026600000 + i as u32);
    }
    // Inode numbers are reused (as the kernel does), but only well after the previous holder
    // is gone: the pool is four times the concurrency and lifetimes are at most 1.5x the mean.
    let pool = (cfg.concurrency.max(1) * 4) as u32;
    NsId::new(1_000 + i as u64, 4026532000 + (i as u32 % pool))
}

/// Whether namespace `i` is one the stream leaks.
pub fn synthetic_leaks(cfg: &SyntheticConfig, i: usize) -> bool {
    cfg.leak_every > 0 && i % cfg.leak_every == cfg.leak_every - 1
}

/// The IPv4 address of namespace `i`'s eth0.
pub fn synthetic_ip(i: usize) -> Ipv4Addr {
    let n = i as u32 + 2;
    Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

pub fn synthetic_mac(i: usize) -> Mac {
    let n = i as u32;
    Mac([
        0x02,
        0x42,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ])
}

pub struct SyntheticStream {
    cfg: SyntheticConfig,
    rng: Rng,
    next_ns: usize,
    snapshot_sent: bool,
    scripts: FxHashMap<usize, VecDeque<Event>>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    next_pid: u32,
}

/// Starts a stream.
pub fn generate(cfg: SyntheticConfig) -> SyntheticStream {
    let rng = Rng(cfg.seed);
    SyntheticStream {
        cfg,
        rng,
        next_ns: 0,
        snapshot_sent: false,
        scripts: FxHashMap::default(),
        heap: BinaryHeap::new(),
        next_pid: 10_000,
    }
}

fn ev(ts: u64, pid: u32, tgid: u32, comm: Comm, body: EventBody) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid,
        comm,
        body,
    }
}

impl SyntheticStream {
    fn start_of(&self, i: usize) -> u64 {
        let spacing = self.cfg.mean_lifetime_ns / self.cfg.concurrency.max(1) as u64;
        self.cfg.start_ns + 1_000_000 + i as u64 * spacing.max(1)
    }

    fn pid(&mut self) -> u32 {
        self.next_pid = if self.next_pid >= 4_000_000 {
            10_000
        } else {
            self.next_pid + 1
        };
        self.next_pid
    }

    fn script(&mut self, i: usize) -> VecDeque<Event> {
        let t0 = self.start_of(i);
        let id = synthetic_netns(&self.cfg, i);
        let leaks = synthetic_leaks(&self.cfg, i);
        let lifetime = self.cfg.mean_lifetime_ns / 2 + self.rng.below(self.cfg.mean_lifetime_ns);
        let mut out: Vec<Event> = Vec::with_capacity(48);
        let creator = self.pid();
        let pinns = Comm::from_str_lossy("pinns");
        let path = format!("/run/netns/pod-{i}");
        let task = |op, netns, prev| {
            EventBody::Task(TaskNetns {
                op,
                netns,
                prev,
                thread: false,
                group_dead: true,
                cgroup_id: 0,
                ppid: 1,
                mnt_ns: SYNTH_HOST_MNT,
                prev_mnt_ns: SYNTH_HOST_MNT,
            })
        };
        out.push(ev(
            t0,
            creator,
            creator,
            pinns,
            EventBody::NetnsCreated(NetnsCreated {
                netns: id,
                parent: SYNTH_INIT,
                net_ptr: 0xffff_8880_0000_0000 + ((i as u64) << 12),
                source: CreatedBy::Unshare,
                clone_flags: 0x4000_0000,
            }),
        ));
        out.push(ev(
            t0 + 1_000,
            creator,
            creator,
            pinns,
            task(TaskOp::Unshare, id, SYNTH_INIT),
        ));
        out.push(ev(
            t0 + 2_000,
            creator,
            creator,
            pinns,
            EventBody::MountSyscall(MountSyscall {
                op: MountOp::Mount,
                netns: id,
                mnt_ns: SYNTH_HOST_MNT,
                ret: 0,
                flags: MS_BIND,
                from_dfd: -100,
                to_dfd: -100,
                source: "/proc/self/ns/net".into(),
                target: path.clone(),
            }),
        ));
        let bind = Pin::BindMount {
            path: path.clone(),
            mnt_ns: SYNTH_HOST_MNT,
            holder_pid: 1,
            holder_comm: Comm::from_str_lossy("systemd"),
        };
        out.push(Event::observed(
            t0 + 3_000,
            EventBody::PinAdded(PinChange {
                netns: id,
                pin: bind.clone(),
            }),
        ));
        out.push(ev(
            t0 + 4_000,
            creator,
            creator,
            pinns,
            task(TaskOp::Exit, id, id),
        ));

        let mac = synthetic_mac(i);
        let ip = synthetic_ip(i);
        let dev = |op, ifindex, mac, name: &str| {
            EventBody::NetDev(NetDev {
                op,
                netns: id,
                ifindex,
                other: NsId::default(),
                mac,
                name: name.into(),
            })
        };
        out.push(ev(
            t0 + 10_000,
            creator,
            creator,
            pinns,
            dev(NetDevOp::Register, 1, Mac::default(), "lo"),
        ));
        out.push(ev(
            t0 + 11_000,
            1,
            1,
            Comm::from_str_lossy("cni"),
            dev(NetDevOp::Register, 2, mac, "eth0"),
        ));
        out.push(ev(
            t0 + 12_000,
            1,
            1,
            Comm::from_str_lossy("cni"),
            EventBody::Ipv4Addr(Ipv4AddrChange {
                op: AddrOp::Add,
                netns: id,
                ifindex: 2,
                addr: ip,
                prefix_len: 24,
                label: "eth0".into(),
            }),
        ));

        let cgroup_id = 50_000 + i as u64;
        out.push(Event::observed(
            t0 + 15_000,
            EventBody::CgroupPath(CgroupPath {
                cgroup_id,
                path: format!("/kubepods/pod{i}"),
            }),
        ));
        let pause = self.pid();
        let pause_comm = Comm::from_str_lossy("pause");
        let with_cg = |b: EventBody| match b {
            EventBody::Task(TaskNetns {
                op,
                netns,
                prev,
                thread,
                group_dead,
                ppid,
                mnt_ns,
                prev_mnt_ns,
                ..
            }) => EventBody::Task(TaskNetns {
                op,
                netns,
                prev,
                thread,
                group_dead,
                cgroup_id,
                ppid,
                mnt_ns,
                prev_mnt_ns,
            }),
            other => other,
        };
        out.push(ev(
            t0 + 20_000,
            pause,
            pause,
            pause_comm,
            with_cg(task(TaskOp::Setns, id, SYNTH_INIT)),
        ));
        // (tid, tgid, comm) of everything that must exit.
        let mut members: Vec<(u32, u32, Comm)> = vec![(pause, pause, pause_comm)];
        let procs = self.rng.below(self.cfg.max_processes as u64 + 1) as u32;
        for p in 0..procs {
            let tgid = self.pid();
            let comm = Comm::from_str_lossy(&format!("app{p}"));
            let t = t0 + 30_000 + p as u64 * 5_000;
            out.push(ev(t, tgid, tgid, comm, with_cg(task(TaskOp::Fork, id, id))));
            members.push((tgid, tgid, comm));
            let threads = 1 + self.rng.below(self.cfg.max_threads.max(1) as u64) as u32;
            for th in 1..threads {
                let tid = self.pid();
                let mut b = with_cg(task(TaskOp::Fork, id, id));
                if let EventBody::Task(TaskNetns {
                    thread, group_dead, ..
                }) = &mut b
                {
                    *thread = true;
                    *group_dead = false;
                }
                out.push(ev(t + th as u64 * 100, tid, tgid, comm, b));
                members.push((tid, tgid, comm));
            }
        }

        let peer = Ipv4Addr::new(10, 255, 255, 254);
        for a in 0..self.cfg.arp_per_ns {
            let t = t0 + 100_000 + a as u64 * (lifetime / (self.cfg.arp_per_ns as u64 + 2)).max(1);
            let (op, dir, sender_ip, sender_mac, target_ip) = match a % 3 {
                0 => (1, Direction::Tx, ip, mac, peer),
                1 => (2, Direction::Rx, peer, Mac([2, 0, 0, 0, 0, 1]), ip),
                _ => (2, Direction::Tx, ip, mac, peer),
            };
            out.push(Event::observed(
                t,
                EventBody::Arp(ArpPacket {
                    netns: id,
                    dir,
                    op,
                    ifindex: 2,
                    sender_ip,
                    sender_mac,
                    target_ip,
                    target_mac: Mac::default(),
                    hook: Hook::Tracepoint,
                }),
            ));
        }

        let end = t0 + lifetime;
        // Workload first, pause last (as the kubelet kills a pod).
        for (k, (tid, tgid, comm)) in members.iter().rev().enumerate() {
            let mut b = task(TaskOp::Exit, id, id);
            if let EventBody::Task(TaskNetns {
                thread, group_dead, ..
            }) = &mut b
            {
                *thread = tid != tgid;
                *group_dead = tid == tgid;
            }
            out.push(ev(end + k as u64 * 1_000, *tid, *tgid, *comm, b));
        }
        if !leaks {
            let t = end + 5_000_000;
            let kubelet = Comm::from_str_lossy("crio");
            out.push(ev(
                t,
                900,
                900,
                kubelet,
                // As the probe records umount2: its one path in `source`.
                EventBody::MountSyscall(MountSyscall {
                    op: MountOp::Umount,
                    netns: SYNTH_INIT,
                    mnt_ns: SYNTH_HOST_MNT,
                    ret: 0,
                    flags: 2,
                    from_dfd: -100,
                    to_dfd: -100,
                    source: path.clone(),
                    target: String::new(),
                }),
            ));
            out.push(Event::observed(
                t + 1_000,
                EventBody::PinRemoved(PinChange {
                    netns: id,
                    pin: bind,
                }),
            ));
            let ptr = 0xffff_8880_0000_0000 + ((i as u64) << 12);
            out.push(Event::observed(
                t + 2_000_000,
                EventBody::NetnsTeardown(NetnsObject {
                    netns: id,
                    net_ptr: ptr,
                    hook: Hook::Fentry,
                }),
            ));
            out.push(Event::observed(
                t + 2_100_000,
                EventBody::NetnsFreed(NetnsObject {
                    netns: id,
                    net_ptr: ptr,
                    hook: Hook::Fentry,
                }),
            ));
        }
        out.sort_by_key(|e| e.ts_ns);
        out.into()
    }
}

impl Iterator for SyntheticStream {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if !self.snapshot_sent {
            self.snapshot_sent = true;
            let init_ifaces = vec![Interface {
                name: "lo".into(),
                ifindex: 1,
                mac: Mac::default(),
                ipv4: vec![(Ipv4Addr::LOCALHOST, 8)],
                ipv6: Vec::new(),
            }];
            let snap = Snapshot {
                phase: SnapshotPhase::Start,
                namespaces: vec![crate::model::SnapNamespace {
                    netns: SYNTH_INIT,
                    members: vec![],
                    pins: vec![],
                    interfaces: init_ifaces,
                    interfaces_error: None,
                }],
                init_netns: SYNTH_INIT,
                init_mnt_ns: SYNTH_HOST_MNT,
            };
            return Some(Event::observed(
                self.cfg.start_ns,
                EventBody::Snapshot(Box::new(snap)),
            ));
        }
        loop {
            let pending_start =
                (self.next_ns < self.cfg.namespaces).then(|| self.start_of(self.next_ns));
            let top = self.heap.peek().map(|Reverse((ts, _))| *ts);
            match (top, pending_start) {
                (top, Some(start)) if top.is_none_or(|t| start <= t) => {
                    let i = self.next_ns;
                    self.next_ns += 1;
                    let script = self.script(i);
                    if let Some(first) = script.front() {
                        self.heap.push(Reverse((first.ts_ns, i)));
                        self.scripts.insert(i, script);
                    }
                }
                (Some(_), _) => {
                    let Reverse((_, i)) = self.heap.pop()?;
                    let script = self.scripts.get_mut(&i)?;
                    let ev = script.pop_front()?;
                    match script.front() {
                        Some(next) => self.heap.push(Reverse((next.ts_ns, i))),
                        None => {
                            self.scripts.remove(&i);
                        }
                    }
                    return Some(ev);
                }
                (None, _) => return None,
            }
        }
    }
}
