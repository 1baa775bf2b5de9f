use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Identity of a network namespace. Inode numbers are reused by the kernel, so `cookie`
/// (`net->net_cookie`) is the real key whenever it is non-zero; `inum` is what operators see
/// in `/proc/PID/ns/net` and `lsns`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct NsId {
    pub cookie: u64,
    pub inum: u32,
}

impl NsId {
    pub const fn new(cookie: u64, inum: u32) -> Self {
        Self { cookie, inum }
    }
    pub const fn is_none(&self) -> bool {
        self.cookie == 0 && self.inum == 0
    }
}

impl fmt::Display for NsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cookie != 0 {
            write!(f, "net:[{}]#{}", self.inum, self.cookie)
        } else {
            write!(f, "net:[{}]", self.inum)
        }
    }
}

/// A task's command name (kernel `comm`, at most 15 bytes). Serialized as a string.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Comm(pub [u8; 16]);

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Comm::from_str_lossy(&s))
    }
}

impl Comm {
    pub fn from_str_lossy(s: &str) -> Self {
        let mut b = [0u8; 16];
        let n = s.len().min(15);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        Self(b)
    }
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.0[..end])
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// A MAC address. Serialized as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            let p = parts
                .next()
                .ok_or_else(|| format!("{s:?} is not a MAC address"))?;
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{s:?} is not a MAC address"));
        }
        Ok(Mac(m))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 6]>::deserialize(d).map(Mac)
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Which probe mechanism observed an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    Fentry,
    Kprobe,
    Tracepoint,
    /// Observed by userspace (snapshot, mountinfo, netlink).
    Userspace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreatedBy {
    Clone,
    Unshare,
    CopyNetNs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOp {
    Fork,
    Unshare,
    Setns,
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountOp {
    Mount,
    Umount,
    OpenTree,
    MoveMount,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetDevOp {
    Register,
    Unregister,
    Move,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddrOp {
    Add,
    Del,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Rx,
    Tx,
}

/// Something that holds a reference on a namespace and keeps it alive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pin {
    /// An nsfs bind mount (`mount --bind /proc/PID/ns/net PATH`, `ip netns add`, or
    /// open_tree + move_mount), in mount namespace `mnt_ns`. `holder_pid` is a process living in
    /// that mount namespace when it was seen (0 if none), which is what keeps a copied mount alive.
    BindMount {
        path: String,
        mnt_ns: u32,
        holder_pid: u32,
        holder_comm: Comm,
    },
    /// An open fd on the namespace's nsfs file.
    Fd { pid: u32, fd: u32, comm: Comm },
    /// A socket whose `sk_net` is the namespace.
    Socket { pid: u32, fd: u32, comm: Comm },
}

/// A network interface as read from rtnetlink (or assembled from device/address events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub mac: Mac,
    /// `(address, prefix length)`.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

/// A process that is a member of a namespace (seen in a snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
    /// The cgroup path from /proc/PID/cgroup (v2 line, or the v1 net_cls/pids/memory one).
    pub cgroup: String,
}

/// One namespace as a snapshot found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapNamespace {
    pub netns: NsId,
    pub members: Vec<Member>,
    pub pins: Vec<Pin>,
    pub interfaces: Vec<Interface>,
    /// Set when interfaces could not be read (no handle, permission), with the reason.
    pub interfaces_error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotPhase {
    /// Taken before the probes attach: the state the trace starts from.
    Start,
    /// Taken when recording stops: interfaces and addresses of what is still alive.
    Final,
}

/// Userspace's view of every namespace at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub phase: SnapshotPhase,
    pub namespaces: Vec<SnapNamespace>,
    /// The host's initial namespace (pid 1's), never reported as leaked.
    pub init_netns: NsId,
}

/// What happened. Kernel records and userspace observations alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    NetnsCreated {
        netns: NsId,
        parent: NsId,
        net_ptr: u64,
        source: CreatedBy,
        clone_flags: u64,
    },
    /// A task entered (`netns`) and/or left (`prev`) a namespace. For Exit both are the same.
    Task {
        op: TaskOp,
        netns: NsId,
        prev: NsId,
        thread: bool,
        group_dead: bool,
        cgroup_id: u64,
        ppid: u32,
        mnt_ns: u32,
        prev_mnt_ns: u32,
    },
    /// The kernel started destroying the namespace (per-net exit callbacks).
    NetnsTeardown {
        netns: NsId,
        net_ptr: u64,
        hook: Hook,
    },
    /// `struct net` memory went back to the slab.
    NetnsFreed {
        netns: NsId,
        net_ptr: u64,
        hook: Hook,
    },
    /// The cleanup_net worker started a batch (tracepoint mode's coarse teardown signal).
    CleanupRun,
    MountSyscall {
        op: MountOp,
        netns: NsId,
        mnt_ns: u32,
        ret: i64,
        flags: u64,
        from_dfd: i32,
        to_dfd: i32,
        source: String,
        target: String,
    },
    /// Full mode: an nsfs netns file was grafted into mount namespace `mnt_ns`.
    NsfsMount {
        netns: NsId,
        mnt_ns: u32,
        net_ptr: u64,
        hook: Hook,
    },
    /// Full mode: the last nsfs inode for the namespace was evicted (the pin truly let go).
    NsfsEvict {
        netns: NsId,
        net_ptr: u64,
    },
    NetDev {
        op: NetDevOp,
        netns: NsId,
        ifindex: u32,
        other: NsId,
        mac: Mac,
        name: String,
    },
    Ipv4Addr {
        op: AddrOp,
        netns: NsId,
        ifindex: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
        label: String,
    },
    Arp {
        netns: NsId,
        dir: Direction,
        op: u16,
        ifindex: u32,
        sender_ip: Ipv4Addr,
        sender_mac: Mac,
        target_ip: Ipv4Addr,
        target_mac: Mac,
        hook: Hook,
    },
    NeighUpdate {
        netns: NsId,
        ifindex: u32,
        ip: Ipv4Addr,
        mac: Mac,
        nud_state: u32,
    },

    // ---- userspace observations ----
    /// `count` more records of kernel type `kind` (netns-trace-common `kind::*`) were dropped
    /// because the ring buffer was full. Cumulative loss is the sum of these.
    Lost {
        kind: u16,
        count: u64,
    },
    /// A pin was found (mountinfo, /proc/PID/fd) that was not known before.
    PinAdded {
        netns: NsId,
        pin: Pin,
    },
    /// A known pin is gone.
    PinRemoved {
        netns: NsId,
        pin: Pin,
    },
    /// A fresh read of a namespace's interfaces and IPv4 addresses.
    Interfaces {
        netns: NsId,
        interfaces: Vec<Interface>,
    },
    /// The cgroup path behind a cgroup id, resolved while the task was alive.
    CgroupPath {
        cgroup_id: u64,
        path: String,
    },
    /// The cgroup (from /proc/PID/cgroup, read while the task was alive) of the task in the
    /// event header, which had just become a member of `netns`.
    MemberCgroup {
        netns: NsId,
        path: String,
    },
    /// One entry of the CNI result cache (/var/lib/cni/results), read at snapshot time and
    /// when a pin or device appeared.
    CniResult(Box<crate::attribution::CniCacheEntry>),
    Snapshot(Box<Snapshot>),
}

/// One event. `ts_ns` is CLOCK_MONOTONIC (what `bpf_ktime_get_ns` returns); `pid`/`tgid`/
/// `comm` are the task that caused it (0 / empty for userspace observations).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub ts_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    /// A userspace observation at `ts_ns`.
    pub fn observed(ts_ns: u64, body: EventBody) -> Self {
        Self {
            ts_ns,
            pid: 0,
            tgid: 0,
            comm: Comm::default(),
            body,
        }
    }
}
