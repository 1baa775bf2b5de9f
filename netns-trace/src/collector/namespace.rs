//! One network namespace's life as the collector rebuilt it.
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::attribution::Owner;
use crate::model::{Comm, CreatedBy, Direction, Ipv6Address, Mac, NsId};

/// Where a namespace's verdict stands. See docs/report-schema.md for the exact rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NsState {
    /// Has member tasks (or is the host's initial namespace).
    Alive,
    /// Lost its last real member less than the grace period ago.
    Draining,
    /// Never had a member other than its creator (e.g. `ip netns add`).
    Persistent,
    /// Had real members, all gone for longer than the grace period, still not destroyed.
    Leaked,
    /// Memberless when first seen (Start snapshot or mid-trace without history).
    LeakSuspect,
    /// Teardown or free was seen (or its inode number went to a newer namespace).
    Destroyed,
}

impl NsState {
    pub const ALL: [NsState; 6] = [
        NsState::Alive,
        NsState::Draining,
        NsState::Persistent,
        NsState::Leaked,
        NsState::LeakSuspect,
        NsState::Destroyed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            NsState::Alive => "alive",
            NsState::Draining => "draining",
            NsState::Persistent => "persistent",
            NsState::Leaked => "leaked",
            NsState::LeakSuspect => "leak_suspect",
            NsState::Destroyed => "destroyed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for NsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fact that decided a namespace's state (see `Collector::verdict_at`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum VerdictReason {
    /// Its teardown or free was seen (or its inode number went to a newer namespace).
    Destroyed { at_ns: u64, was: Option<NsState> },
    /// The host's initial namespace.
    HostNamespace,
    /// Tasks live in it.
    HasMembers { live_tasks: u32 },
    /// Only its creator was inside, setting it up (it pinned it itself), or nobody was.
    SetUpByCreator { pinned_by_creator: bool },
    /// Memberless when first seen: its history is not in the trace.
    HistoryUnknown { origin: Origin },
    /// Its last member left at `since_ns`; the grace period has not run out.
    InGrace { since_ns: u64, grace_ns: u64 },
    /// Memberless past the grace period with nothing observed holding it, and a cleanup_net
    /// run after its last member left: its free is still to come.
    TeardownPending { since_ns: u64, cleanup_run_ns: u64 },
    /// Memberless past the grace period, but who made the bind mount at `path` was not seen:
    /// persistent by design or leaked, the evidence cannot tell.
    PinMakerUnknown { since_ns: u64, path: String },
    /// A real member lived there; all left at `since_ns`, longer than the grace period ago,
    /// and it is not destroyed.
    MemberlessPastGrace { since_ns: u64, grace_ns: u64 },
}

/// How the collector first learnt of a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Its creation was traced.
    Traced,
    /// It existed when the trace started (Start snapshot); its history is unknown.
    Snapshot,
    /// First seen mid-trace without a creation event (lost, or created before the trace).
    Inferred,
}

/// A task that did something, identified as the kernel named it at the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinHow {
    Fork,
    Unshare,
    Setns,
    /// Listed as a member by a snapshot.
    Snapshot,
    /// Seen leaving without having been seen joining (lost events, or joined before the trace).
    Inferred,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveHow {
    Exit,
    Setns,
    Unshare,
    /// The namespace was destroyed while the task was still counted as a member.
    Destroyed,
}

/// One process's stay in a namespace. Threads of one process share a span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberSpan {
    /// The first thread seen joining (usually the process's main thread).
    pub pid: u32,
    pub tgid: u32,
    /// The name at join; updated to the name at exit (after any exec).
    pub comm: Comm,
    /// cgroup id at join (resolved through `CgroupPath` events); 0 when unknown.
    pub cgroup_id: u64,
    /// cgroup path when a snapshot gave it directly.
    pub cgroup_path: Option<Box<str>>,
    /// None when the task was already a member before the trace.
    pub joined_at_ns: Option<u64>,
    pub left_at_ns: Option<u64>,
    pub joined_how: JoinHow,
    pub left_how: Option<LeaveHow>,
    /// False for the namespace's creator before it first left (that stay is not membership).
    pub counts_as_member: bool,
    #[serde(skip)]
    pub(crate) live_threads: u32,
}

impl MemberSpan {
    /// A finished setns stay shorter than VISIT_NS.
    pub(crate) fn was_visit(&self) -> bool {
        self.joined_how == JoinHow::Setns
            && matches!((self.joined_at_ns, self.left_at_ns), (Some(j), Some(l)) if l.saturating_sub(j) < VISIT_NS)
    }
}

/// Who was the last member to leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastMember {
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
    pub exited_at_ns: u64,
    pub how: LeaveHow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinKind {
    BindMount,
    Fd,
    Socket,
}

/// Something holding a reference on the namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PinRecord {
    pub kind: PinKind,
    /// Mount point (bind mounts); None until known (full mode learns it from the syscall).
    pub path: Option<String>,
    /// Mount namespace inode of a bind mount; None when unknown.
    pub mount_ns: Option<u32>,
    /// Holder process: the fd/socket owner, or a process living in the mount namespace.
    pub pid: Option<u32>,
    pub holder_comm: Option<Comm>,
    pub fd: Option<u32>,
    /// The task whose mount syscall made the pin, when known.
    pub by: Option<Actor>,
    pub at_ns: u64,
}

impl PinRecord {
    /// Same holder, ignoring who made it and when.
    pub(crate) fn same_holder(&self, other: &PinRecord) -> bool {
        if self.kind != other.kind {
            return false;
        }
        match self.kind {
            PinKind::BindMount => {
                let path_eq = match (&self.path, &other.path) {
                    (Some(a), Some(b)) => normalize_path(a) == normalize_path(b),
                    _ => false,
                };
                let mnt_eq = match (self.mount_ns, other.mount_ns) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                path_eq && mnt_eq
            }
            PinKind::Fd | PinKind::Socket => self.pid == other.pid && self.fd == other.fd,
        }
    }

    pub fn describe(&self) -> String {
        match self.kind {
            PinKind::BindMount => {
                let path = self.path.as_deref().unwrap_or("<path unknown>");
                let mut s = format!("bind mount {path}");
                if let Some(m) = self.mount_ns {
                    s.push_str(&format!(" in mnt:[{m}]"));
                }
                if let Some(by) = &self.by {
                    s.push_str(&format!(" made by {} ({})", by.pid, by.comm));
                }
                s
            }
            PinKind::Fd | PinKind::Socket => {
                let what = if self.kind == PinKind::Fd {
                    "nsfs fd"
                } else {
                    "socket"
                };
                let pid = self
                    .pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into());
                let fd = self.fd.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
                let comm = self
                    .holder_comm
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                format!("{what} {fd} of pid {pid}{comm}")
            }
        }
    }
}

/// A pin that went away: what it was, when, and who removed it when that was seen (a
/// successful umount names its caller; a mountinfo re-read or the nsfs inode's eviction
/// names nobody).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemovedPin {
    pub pin: PinRecord,
    pub removed_at_ns: u64,
    pub by: Option<Actor>,
}

/// Removed pins kept per namespace (the newest; older ones are counted in
/// `removed_pins_dropped`).
pub(crate) const MAX_REMOVED_PINS: usize = 8;

/// `/var/run` is a symlink to `/run` on every distribution this runs on; mount syscalls see the
/// path as typed, mountinfo sees the resolved one.
pub(crate) fn normalize_path(p: &str) -> &str {
    p.strip_prefix("/var")
        .filter(|rest| rest.starts_with("/run/"))
        .unwrap_or(p)
        .trim_end_matches('/')
}

/// A cleanup attempt that failed: `umount(path)` returned an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUmount {
    pub path: String,
    pub errno: i64,
    pub at_ns: u64,
    pub by: Actor,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRecord {
    pub name: String,
    pub ifindex: u32,
    pub mac: Mac,
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<Ipv6Address>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArpCounters {
    pub requests_tx: u32,
    pub requests_rx: u32,
    pub replies_tx: u32,
    pub replies_rx: u32,
    /// IPv6's counterparts (Neighbour Discovery, ICMPv6 135 and 136).
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub solicitations_tx: u32,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub solicitations_rx: u32,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub advertisements_tx: u32,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub advertisements_rx: u32,
    /// ARP and neighbour-update records its traffic caused past its budget in the kernel:
    /// counted there, never traced.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records_limited: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

/// A reply that claims an address for a MAC, seen in a namespace: an ARP reply (IPv4) or a
/// neighbour advertisement with its target link-layer address (IPv6; `sender_ip` is its
/// target address, `target_ip` its IPv6 destination). The last few are kept so a later leak
/// verdict can re-check what the namespace said after its last member left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplySeen {
    pub at_ns: u64,
    pub dir: Direction,
    pub ifindex: u32,
    /// The address claimed.
    pub sender_ip: IpAddr,
    /// The MAC claimed for it.
    pub sender_mac: Mac,
    /// Whom the reply went to.
    pub target_ip: IpAddr,
}

/// Replies (ARP and ND) remembered per namespace.
pub(crate) const RECENT_REPLIES: usize = 4;
/// Member spans kept per namespace; older finished spans are dropped (visits first) and counted.
pub(crate) const MAX_MEMBER_SPANS: usize = 12;
/// A task that setns-joins and leaves again within this is a visitor (`ip -n`, a CNI
/// plugin configuring the namespace), not a member whose departure can make a leak.
pub(crate) const VISIT_NS: u64 = 1_000_000_000;
/// Failed cleanup attempts kept per namespace.
pub(crate) const MAX_FAILED_UMOUNTS: usize = 4;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Namespace {
    pub inum: u32,
    pub cookie: u64,
    /// 1 for the first namespace seen with this inode number in this trace, 2 for the next…
    pub incarnation: u32,
    pub net_ptr: u64,
    pub origin: Origin,
    pub is_init: bool,
    pub first_seen_ns: u64,
    pub created_at_ns: Option<u64>,
    pub created_by: Option<Actor>,
    pub source: Option<CreatedBy>,
    pub parent: Option<NsId>,
    pub members: Vec<MemberSpan>,
    /// Finished spans dropped to bound memory.
    pub members_dropped: u32,
    pub live_tasks: u32,
    /// A task other than the creator (before it left) has been a member.
    pub had_real_member: bool,
    pub last_member: Option<LastMember>,
    pub pins: Vec<PinRecord>,
    /// Pins that went away, oldest first (at most MAX_REMOVED_PINS).
    pub removed_pins: Vec<RemovedPin>,
    pub removed_pins_dropped: u32,
    pub failed_umounts: Vec<FailedUmount>,
    /// umount calls on its pins refused (EPERM/EACCES) to a process that neither created it
    /// nor made the mount: no cleanup, so counted instead of kept in `failed_umounts`.
    pub refused_umounts_ignored: u32,
    pub interfaces: Vec<InterfaceRecord>,
    pub arp: ArpCounters,
    pub recent_replies: Vec<ReplySeen>,
    pub teardown_at_ns: Option<u64>,
    pub freed_at_ns: Option<u64>,
    /// Its inode number went to a newer namespace before teardown/free was seen.
    pub vanished_at_ns: Option<u64>,
    pub state: NsState,
    pub state_since_ns: u64,
    /// The state it was in when destruction was seen.
    pub state_before_destroy: Option<NsState>,
    /// Pod, container, sandbox and CNI network, from members' cgroups (recorded while they
    /// were alive), pin paths and the CNI result cache. Empty when nothing is known.
    pub owner: Owner,
    #[serde(skip)]
    pub(crate) creator_tgid: u32,
    #[serde(skip)]
    pub(crate) creator_tid: u32,
    #[serde(skip)]
    pub(crate) creator_left: bool,
    /// Its creator bind-mounted it itself (sticky: the fact outlives that mount).
    #[serde(skip)]
    pub(crate) pinned_by_creator: bool,
    /// Bumped on every membership change; stale grace deadlines carry an older epoch.
    #[serde(skip)]
    pub(crate) epoch: u32,
    #[serde(skip)]
    pub(crate) leak_finding: Option<usize>,
}

/// What a namespace's creator was to it, judged from who made its bind mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CreatorRole {
    /// It pinned the namespace itself (`ip netns add`, CRI-O's pinns, containerd's and
    /// podman's pinning thread): it was setting the namespace up, not living in it.
    SetUp,
    /// Someone else pinned it (a CNI plugin bind-mounting the pause's /proc/PID/ns/net), or
    /// nothing is bind-mounted: the creator was its workload.
    LivedThere,
    /// A bind mount whose maker was not seen (its mount call was lost or happened before the
    /// trace): either reading could be true. Holds the mount's path.
    Unknown { path: String },
}

impl Namespace {
    /// Whether `by` is this namespace's creator (its thread group, or the creating thread).
    pub(crate) fn is_creator(&self, by: &Actor) -> bool {
        (self.creator_tgid != 0 && by.tgid == self.creator_tgid)
            || self.created_by.is_some_and(|c| c.pid == by.pid)
    }

    /// Records that a bind mount's maker became known.
    pub(crate) fn note_pin_maker(&mut self, by: &Actor) {
        if self.is_creator(by) {
            self.pinned_by_creator = true;
        }
    }

    /// The creator's role, from the makers of its bind mounts. A copy of a mount (propagated
    /// to, or cloned into, another mount namespace) sits at the same path as the original and
    /// has no maker of its own: it counts as unknown only when no mount at that path has one.
    pub(crate) fn creator_role(&self) -> CreatorRole {
        if self.pinned_by_creator {
            return CreatorRole::SetUp;
        }
        let binds = || self.pins.iter().filter(|p| p.kind == PinKind::BindMount);
        let known_at = |path: &str| {
            binds().any(|p| p.by.is_some() && p.path.as_deref().map(normalize_path) == Some(path))
        };
        for pin in binds().filter(|p| p.by.is_none()) {
            match pin.path.as_deref().map(normalize_path) {
                Some(path) if known_at(path) => {}
                path => {
                    return CreatorRole::Unknown {
                        path: path.unwrap_or("<path unknown>").to_string(),
                    };
                }
            }
        }
        CreatorRole::LivedThere
    }

    pub(crate) fn new(id: NsId, incarnation: u32, origin: Origin, ts: u64) -> Self {
        Self {
            inum: id.inum,
            cookie: id.cookie,
            incarnation,
            net_ptr: 0,
            origin,
            is_init: false,
            first_seen_ns: ts,
            created_at_ns: None,
            created_by: None,
            source: None,
            parent: None,
            members: Vec::new(),
            members_dropped: 0,
            live_tasks: 0,
            had_real_member: false,
            last_member: None,
            pins: Vec::new(),
            removed_pins: Vec::new(),
            removed_pins_dropped: 0,
            failed_umounts: Vec::new(),
            refused_umounts_ignored: 0,
            interfaces: Vec::new(),
            arp: ArpCounters::default(),
            recent_replies: Vec::new(),
            teardown_at_ns: None,
            freed_at_ns: None,
            vanished_at_ns: None,
            state: NsState::LeakSuspect,
            state_since_ns: ts,
            state_before_destroy: None,
            owner: Owner::default(),
            creator_tgid: 0,
            pinned_by_creator: false,
            creator_tid: 0,
            creator_left: false,
            epoch: 0,
            leak_finding: None,
        }
    }

    /// Stable human/JSON id: `net:[INUM]#COOKIE`, or `net:[INUM]` / `net:[INUM]~N` (N-th
    /// incarnation of that inode number in this trace) while the cookie is unknown.
    pub fn id(&self) -> String {
        if self.cookie != 0 {
            format!("net:[{}]#{}", self.inum, self.cookie)
        } else if self.incarnation <= 1 {
            format!("net:[{}]", self.inum)
        } else {
            format!("net:[{}]~{}", self.inum, self.incarnation)
        }
    }

    pub fn ns_id(&self) -> NsId {
        NsId::new(self.cookie, self.inum)
    }

    pub fn is_destroyed(&self) -> bool {
        self.teardown_at_ns.is_some() || self.freed_at_ns.is_some() || self.vanished_at_ns.is_some()
    }

    /// When the namespace stopped existing, as far as the trace knows.
    pub fn destroyed_at_ns(&self) -> Option<u64> {
        self.teardown_at_ns
            .or(self.freed_at_ns)
            .or(self.vanished_at_ns)
    }

    /// When it was created, or first seen when creation was not traced.
    pub fn born_at_ns(&self) -> u64 {
        self.created_at_ns.unwrap_or(self.first_seen_ns)
    }

    pub fn ipv4(&self) -> impl Iterator<Item = (Ipv4Addr, u8, &InterfaceRecord)> + '_ {
        self.interfaces
            .iter()
            .flat_map(|i| i.ipv4.iter().map(move |(a, l)| (*a, *l, i)))
    }

    /// The addresses the IP index holds for this namespace, with their interface: every IPv4
    /// one, and the IPv6 ones that can be duplicates (see `findings::ip_is_shareable`).
    pub fn indexed_addresses(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        self.interfaces.iter().flat_map(|i| {
            let v4 = i.ipv4.iter().map(|(a, _)| IpAddr::V4(*a));
            let v6 = i
                .ipv6
                .iter()
                .map(|a| IpAddr::V6(a.address))
                .filter(|a| !super::findings::ip_is_shareable(*a));
            v4.chain(v6).map(move |a| (a, i.ifindex))
        })
    }

    pub(crate) fn open_span_mut(&mut self, tgid: u32) -> Option<&mut MemberSpan> {
        self.members
            .iter_mut()
            .rev()
            .find(|s| s.tgid == tgid && s.left_at_ns.is_none())
    }

    /// The member that stayed (was not a visit) and left last.
    pub(crate) fn latest_stay(&self) -> Option<LastMember> {
        self.members
            .iter()
            .filter(|s| !s.was_visit())
            .filter_map(|s| Some((s, s.left_at_ns?, s.left_how?)))
            .max_by_key(|(_, left, _)| *left)
            .map(|(s, left, how)| LastMember {
                pid: s.pid,
                tgid: s.tgid,
                comm: s.comm,
                exited_at_ns: left,
                how,
            })
    }

    /// Adds a span, dropping the oldest finished one when the history is full: the oldest
    /// finished visit if there is one, so that tools peeking in (`ip -n`, CNI status checks,
    /// another tracer's interface reads) cannot push the real members out of the story.
    pub(crate) fn push_span(&mut self, span: MemberSpan) {
        if self.members.len() >= MAX_MEMBER_SPANS
            && let Some(pos) = self
                .members
                .iter()
                .position(MemberSpan::was_visit)
                .or_else(|| self.members.iter().position(|s| s.left_at_ns.is_some()))
        {
            self.members.remove(pos);
            self.members_dropped += 1;
        }
        self.members.push(span);
    }

    /// Keeps a removed pin in the history, dropping the oldest when it is full.
    pub(crate) fn remember_removed_pin(&mut self, r: RemovedPin) {
        if self.removed_pins.len() >= MAX_REMOVED_PINS {
            self.removed_pins.remove(0);
            self.removed_pins_dropped += 1;
        }
        self.removed_pins.push(r);
    }

    pub(crate) fn remember_reply(&mut self, r: ReplySeen) {
        if self.recent_replies.len() >= RECENT_REPLIES {
            // The oldest makes room in place (remove(0) + push cost a memmove call per reply).
            self.recent_replies.rotate_left(1);
            if let Some(last) = self.recent_replies.last_mut() {
                *last = r;
            }
            return;
        }
        self.recent_replies.push(r);
    }

    /// Approximate heap + inline bytes this record uses (for the memory budget test).
    pub fn approx_bytes(&self) -> usize {
        let spans = self.members.capacity() * size_of::<MemberSpan>()
            + self
                .members
                .iter()
                .map(|s| s.cgroup_path.as_ref().map_or(0, |p| p.len()))
                .sum::<usize>();
        let pins = self.pins.capacity() * size_of::<PinRecord>()
            + self
                .pins
                .iter()
                .map(|p| p.path.as_ref().map_or(0, |s| s.capacity()))
                .sum::<usize>();
        let ifaces = self.interfaces.capacity() * size_of::<InterfaceRecord>()
            + self
                .interfaces
                .iter()
                .map(|i| {
                    i.name.capacity()
                        + i.ipv4.capacity() * 8
                        + i.ipv6.capacity() * size_of::<Ipv6Address>()
                })
                .sum::<usize>();
        let removed = self.removed_pins.capacity() * size_of::<RemovedPin>()
            + self
                .removed_pins
                .iter()
                .map(|p| p.pin.path.as_ref().map_or(0, |s| s.capacity()))
                .sum::<usize>();
        size_of::<Self>()
            + spans
            + pins
            + removed
            + ifaces
            + self.failed_umounts.capacity() * size_of::<FailedUmount>()
            + self.recent_replies.capacity() * size_of::<ReplySeen>()
    }
}
