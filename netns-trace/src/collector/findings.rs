//! Findings: what the collector concluded, with the evidence, and how sure it is; and the
//! verdicts that raise them (a leaked namespace, a duplicate address, a stale ARP reply,
//! a CNI DEL that failed or that its namespace outlived).
//! Which state a namespace is in is decided by `Collector::evaluate` (mod.rs); a leak finding
//! is raised when that state becomes leaked or its suspicion runs out.
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;

use netns_trace_common::EventKind;
use serde::{Deserialize, Serialize};

use super::cni_calls::{CniCall, CniTarget};
use super::identity::SlotRef;
use super::losses::loss_reason;
use super::namespace::{
    CreatorRole, FailedUmount, InterfaceRecord, LastMember, Namespace, NsState, Origin, PinKind,
    PinRecord, ReplySeen,
};
use super::{Collector, NoticeKind};
use crate::model::{Comm, DadState, Direction, Ipv6Address, Ipv6Scope, Mac};

/// Who made a pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByTask {
    pub pid: u32,
    pub comm: Comm,
}

/// A pin as reported in a finding (and in the report's namespace list).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinEvidence {
    pub kind: PinKind,
    pub path: Option<String>,
    pub mount_ns: Option<u32>,
    pub pid: Option<u32>,
    pub fd: Option<u32>,
    pub by: Option<ByTask>,
    pub at_ns: u64,
}

impl From<&PinRecord> for PinEvidence {
    fn from(p: &PinRecord) -> Self {
        Self {
            kind: p.kind,
            path: p.path.clone(),
            mount_ns: p.mount_ns,
            pid: p.pid,
            fd: p.fd,
            by: p.by.map(|a| ByTask {
                pid: a.pid,
                comm: a.comm,
            }),
            at_ns: p.at_ns,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceEvidence {
    pub name: String,
    pub ifindex: u32,
    pub mac: Mac,
    /// `a.b.c.d/len`
    pub ipv4: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<Ipv6Address>,
}

impl From<&InterfaceRecord> for InterfaceEvidence {
    fn from(i: &InterfaceRecord) -> Self {
        Self {
            name: i.name.clone(),
            ifindex: i.ifindex,
            mac: i.mac,
            ipv4: i.ipv4.iter().map(|(a, l)| format!("{a}/{l}")).collect(),
            ipv6: i.ipv6.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateHolder {
    pub netns: String,
    pub ifname: String,
    pub ifindex: u32,
    pub mac: Mac,
    pub state: NsState,
    /// The holder's copy of an IPv6 address is tentative or failed duplicate address
    /// detection: the kernel does not use it there (the kernel itself saw a clash, or is
    /// checking). Absent for an address in service, and for IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dad: Option<DadState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleReason {
    /// Sent from a namespace already judged leaked.
    SentFromLeakedNetns,
    /// The sender MAC is not the MAC of the interface that currently owns the IP.
    MacMismatch,
}

/// Kind-specific evidence. Serialized flat into the finding with a `kind` tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FindingDetail {
    LeakedNetns {
        /// What holds it, as known at the verdict.
        pins: Vec<PinEvidence>,
        last_member: Option<LastMember>,
        /// umount attempts on a pin path that returned an error.
        failed_cleanups: Vec<FailedUmount>,
        interfaces: Vec<InterfaceEvidence>,
        /// The namespace predates the trace (or its creation was missed).
        history_unknown: bool,
        /// Set when the namespace was destroyed after the verdict.
        resolved_at_ns: Option<u64>,
        /// Who owned it (pod, container, sandbox, CNI network), as known now.
        #[serde(default)]
        owner: Option<Box<crate::attribution::Owner>>,
        /// The runtime's CNI calls for its sandbox (those a plugin chained are left out), as
        /// known now; absent when none was traced.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cni_calls: Vec<CniCall>,
    },
    /// A CNI DEL for a sandbox returned, whatever its status, and the sandbox's namespace
    /// lived on with interfaces or addresses: judged when that namespace is judged leaked.
    CniDelLeftNamespace {
        /// The sandbox (CNI_CONTAINERID).
        container_id: String,
        /// The DEL: its time, end (status), CNI_NETNS and what that named.
        del: Box<CniCall>,
        /// Whether CNI_NETNS still named the namespace when the DEL ran.
        netns_path_resolved: bool,
        /// What the namespace still had at the verdict.
        interfaces: Vec<InterfaceEvidence>,
        pins: Vec<PinEvidence>,
    },
    /// A CNI DEL (the runtime's, not one a plugin chained) exited non-zero or was killed.
    CniDelFailed {
        container_id: Option<String>,
        del: Box<CniCall>,
        /// The plugins it ran for this DEL (IPAM), with how each ended.
        chained: Vec<CniCall>,
        /// The sandbox's namespace when the DEL ended, when one is known.
        namespace: Option<NamespaceAtDel>,
    },
    DuplicateIp {
        /// IPv4, or a global or unique-local IPv6 address.
        ip: IpAddr,
        holders: Vec<DuplicateHolder>,
        /// One of the holders is (or later became) a leaked namespace.
        involves_leaked: bool,
    },
    /// A reply claiming an address for a MAC that is not (or no longer) its owner's: an ARP
    /// reply, or IPv6's, a neighbour advertisement (the address family of `sender_ip` says
    /// which). For an advertisement `sender_ip` is its target address, `sender_mac` its target
    /// link-layer address and `target_ip` its IPv6 destination.
    StaleArpReply {
        observed_at_ns: u64,
        /// The namespace the reply was seen in.
        observed_in: String,
        dir: Direction,
        ifindex: u32,
        sender_ip: IpAddr,
        sender_mac: Mac,
        target_ip: IpAddr,
        /// MAC of the current owner of `sender_ip`, when there is one.
        expected_mac: Option<Mac>,
        owner_netns: Option<String>,
        reason: StaleReason,
        /// Other MACs later replies from the same namespace claimed for `sender_ip` (the
        /// first few), and how many such replies there were: a flood stays one finding.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        other_macs: Vec<Mac>,
        #[serde(default, skip_serializing_if = "is_zero")]
        other_mac_replies: u64,
    },
}

/// The state of a sandbox's namespace when a CNI DEL for it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceAtDel {
    pub state: NsState,
    pub interfaces: Vec<InterfaceEvidence>,
    pub pins: Vec<PinEvidence>,
}

impl FindingDetail {
    pub fn kind_name(&self) -> &'static str {
        match self {
            FindingDetail::LeakedNetns { .. } => "leaked_netns",
            FindingDetail::DuplicateIp { .. } => "duplicate_ip",
            FindingDetail::StaleArpReply { .. } => "stale_arp_reply",
            FindingDetail::CniDelLeftNamespace { .. } => "cni_del_left_namespace",
            FindingDetail::CniDelFailed { .. } => "cni_del_failed",
        }
    }

    /// Record kinds whose loss could change this finding.
    pub(crate) fn sensitive_kinds(&self) -> &'static [u16] {
        match self {
            FindingDetail::LeakedNetns { .. } => &[
                EventKind::NetnsCreated as u16,
                EventKind::Task as u16,
                EventKind::NetnsTeardown as u16,
                EventKind::NetnsFreed as u16,
                EventKind::MountSyscall as u16,
                EventKind::NsfsMount as u16,
                EventKind::NsfsEvict as u16,
            ],
            FindingDetail::DuplicateIp { .. } => &[
                EventKind::NetDev as u16,
                EventKind::Ipv4Addr as u16,
                EventKind::NetnsTeardown as u16,
                EventKind::NetnsFreed as u16,
            ],
            FindingDetail::StaleArpReply { .. } => &[
                EventKind::Arp as u16,
                EventKind::Ndisc as u16,
                EventKind::NetDev as u16,
                EventKind::Ipv4Addr as u16,
                EventKind::Task as u16,
                EventKind::NetnsTeardown as u16,
            ],
            FindingDetail::CniDelLeftNamespace { .. } => &[
                EventKind::CniExec as u16,
                EventKind::CniExit as u16,
                EventKind::NetDev as u16,
                EventKind::Ipv4Addr as u16,
                EventKind::Task as u16,
                EventKind::NetnsTeardown as u16,
                EventKind::NetnsFreed as u16,
                EventKind::MountSyscall as u16,
                EventKind::NsfsMount as u16,
                EventKind::NsfsEvict as u16,
            ],
            FindingDetail::CniDelFailed { .. } => {
                &[EventKind::CniExec as u16, EventKind::CniExit as u16]
            }
        }
    }
}

/// The span of time a finding's evidence covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceWindow {
    pub from_ns: u64,
    pub to_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The namespace the finding is about (for duplicate_ip: the holder whose address arrived last).
    pub netns: String,
    pub summary: String,
    pub raised_at_ns: u64,
    pub uncertain: bool,
    pub uncertain_reason: Option<String>,
    pub window: EvidenceWindow,
    #[serde(flatten)]
    pub detail: FindingDetail,
}

impl Finding {
    pub fn kind(&self) -> &'static str {
        self.detail.kind_name()
    }

    pub(crate) fn add_uncertainty(&mut self, reason: &str) {
        self.uncertain = true;
        match &mut self.uncertain_reason {
            Some(r) if r.contains(reason) => {}
            Some(r) => {
                r.push_str("; ");
                r.push_str(reason);
            }
            None => self.uncertain_reason = Some(reason.to_string()),
        }
    }
}

/// Addresses that exist in many namespaces by design and are never duplicates: loopback and
/// unspecified ones, and IPv6 link-local (every veth has one) and multicast ones. The one
/// definition of which addresses `duplicate_ip` compares.
pub(crate) fn ip_is_shareable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback() || a.is_unspecified(),
        IpAddr::V6(a) => !Ipv6Scope::of(a).identifies_holder(),
    }
}

/// ` (pod UID container ID)` after a namespace id in a summary, or nothing.
pub(super) fn owner_part(owner: Option<&crate::attribution::Owner>) -> String {
    owner
        .and_then(|o| o.short())
        .map(|s| format!(" ({s})"))
        .unwrap_or_default()
}

/// Whether a namespace's addresses count against others. One that lost its last member and
/// that nothing known holds is on its way out (its teardown may only show at its free, one
/// cleanup_net run later on 6.13+ in tracepoint mode): it counts again once a pin is seen or
/// it is judged leaked.
fn claims_its_addresses(ns: &Namespace) -> bool {
    !ns.is_destroyed() && (ns.state != NsState::Draining || !ns.pins.is_empty())
}

fn duplicate_summary(ip: IpAddr, holders: &[DuplicateHolder]) -> String {
    let list: Vec<String> = holders
        .iter()
        .map(|h| match h.dad {
            None => format!("{} ({} {}, {})", h.netns, h.ifname, h.mac, h.state),
            Some(d) => format!("{} ({} {}, {}, {d})", h.netns, h.ifname, h.mac, h.state),
        })
        .collect();
    let unused = holders.iter().filter(|h| h.dad.is_some()).count();
    let dad = match unused {
        0 => String::new(),
        n => format!(" ({n} of them not in use: duplicate address detection pending or failed)"),
    };
    format!(
        "{ip} is assigned in {} live namespaces{dad}: {}",
        holders.len(),
        list.join(", ")
    )
}

/// The DAD state of `ip` on the interface, for an IPv6 address.
fn dad_of(iface: Option<&InterfaceRecord>, ip: IpAddr) -> Option<DadState> {
    let IpAddr::V6(a) = ip else { return None };
    iface?.ipv6.iter().find(|x| x.address == a)?.dad
}

/// What a reply claiming `ip` is called: IPv4's is an ARP reply, IPv6's a neighbour
/// advertisement.
pub(crate) fn reply_name(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "an ARP reply",
        IpAddr::V6(_) => "a neighbour advertisement",
    }
}

/// Stale-ARP findings (either family) kept in all; replies past that are only counted
/// ([`CollectorStats::stale_replies_unreported`](super::CollectorStats)).
pub(super) const MAX_STALE_FINDINGS: usize = 1024;
/// Further MACs listed in one stale-ARP finding.
const MAX_OTHER_MACS: usize = 16;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the duplicate-IP and stale-ARP verdicts already raised: each is raised once.
#[derive(Default)]
pub(super) struct RaisedOnce {
    /// An address and the namespaces holding it.
    duplicate_ips: FxHashSet<(IpAddr, Vec<SlotRef>)>,
    /// Stale replies by the namespace they were seen in and the address they claimed: one
    /// finding each, however many MACs a flood of replies names (a pod with NET_RAW can
    /// send one per packet).
    stale_replies: rustc_hash::FxHashMap<(SlotRef, IpAddr), usize>,
    /// The address and MAC of each raised stale reply: the same reply seen at its other end
    /// (sent from one namespace, received in another) is the same finding.
    stale_claims: FxHashSet<(IpAddr, Mac)>,
    /// Namespaces a `cni_del_left_namespace` was raised for.
    cni_del_left: FxHashSet<SlotRef>,
    /// Leak findings (by index) whose summary ends with the CNI story: its length.
    leak_cni_story: FxHashMap<usize, usize>,
}

/// Monotonic seconds, as summaries give times.
fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// ` (exit 0)`, ` (killed by signal 9)`, or ` (no end seen)`.
fn ended(call: &CniCall) -> String {
    match call.end {
        Some(e) => format!(" ({})", e.status),
        None => " (no end seen)".into(),
    }
}

/// Whether a call's CNI_NETNS named a live namespace when it ran.
fn path_resolved(call: &CniCall) -> bool {
    matches!(
        call.target,
        CniTarget::Member { .. } | CniTarget::Pin { .. }
    )
}

/// What a call's CNI_NETNS was and named, for a summary.
fn path_part(call: &CniCall) -> String {
    let Some(path) = call.netns_path.as_deref().filter(|p| !p.is_empty()) else {
        return ", no CNI_NETNS".into();
    };
    let named = match &call.target {
        CniTarget::Member { pid, .. } => format!("process {pid}'s namespace"),
        CniTarget::Pin { .. } => "the namespace pinned there".into(),
        CniTarget::ExitedProcess {
            pid, exited_at_ns, ..
        } => format!(
            "nothing: process {pid} had exited at {}",
            secs(*exited_at_ns)
        ),
        CniTarget::NoPath | CniTarget::Unresolved => "nothing known".into(),
    };
    format!(", CNI_NETNS {path} naming {named}")
}

fn holders_of(ns: &Namespace) -> String {
    if ns.pins.is_empty() {
        "nothing observed".into()
    } else {
        ns.pins
            .iter()
            .map(|p| p.describe())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Interfaces other than loopback, and addresses other than loopback ones: what a CNI DEL
/// should have taken away.
fn network_left(ns: &Namespace) -> Vec<&InterfaceRecord> {
    ns.interfaces
        .iter()
        .filter(|i| {
            i.name != "lo"
                || i.ipv4.iter().any(|(a, _)| !a.is_loopback())
                || i.ipv6.iter().any(|a| a.scope != Ipv6Scope::Host)
        })
        .collect()
}

fn describe_interfaces(ifaces: &[&InterfaceRecord]) -> String {
    ifaces
        .iter()
        .map(|i| {
            let mut s = i.name.clone();
            for (a, l) in &i.ipv4 {
                s.push_str(&format!(" {a}/{l}"));
            }
            for a in i.ipv6.iter().filter(|a| a.scope != Ipv6Scope::LinkLocal) {
                s.push_str(&format!(" {}/{}", a.address, a.prefix_len));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Collector {
    pub(super) fn raise_leak(&mut self, r: SlotRef, ts: u64) {
        let Some(ns) = self.reg.get(r) else { return };
        if ns.leak_finding.is_some() || ns.is_init {
            return;
        }
        let suspect = ns.state == NsState::LeakSuspect;
        let history_unknown = suspect && ns.origin != Origin::Traced;
        let unknown_pin = match ns.creator_role() {
            CreatorRole::Unknown { path } if suspect && !history_unknown => Some(path),
            _ => None,
        };
        let id = ns.id();
        let holders = if ns.pins.is_empty() {
            "no holder was observed (a socket or an fd opened before the trace?)".to_string()
        } else {
            ns.pins
                .iter()
                .map(|p| p.describe())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let summary = if history_unknown {
            format!(
                "{id}{} has no member process and still exists (history unknown); held by {holders}",
                owner_part(Some(&ns.owner))
            )
        } else {
            let last = ns
                .last_member
                .map(|m| {
                    let ago = ts.saturating_sub(m.exited_at_ns) / 1_000_000_000;
                    format!("last member {} ({}) left {ago}s ago", m.pid, m.comm)
                })
                .unwrap_or_else(|| "its last member left".into());
            let verdict = if unknown_pin.is_some() {
                "may be leaked"
            } else {
                "leaked"
            };
            format!(
                "{id}{} {verdict}: {last}; held by {holders}",
                owner_part(Some(&ns.owner))
            )
        };
        let mut f = Finding {
            netns: id,
            summary,
            raised_at_ns: ts,
            uncertain: false,
            uncertain_reason: None,
            window: EvidenceWindow {
                from_ns: ns.born_at_ns(),
                to_ns: ts,
            },
            detail: FindingDetail::LeakedNetns {
                pins: ns.pins.iter().map(PinEvidence::from).collect(),
                last_member: ns.last_member,
                failed_cleanups: ns.failed_umounts.clone(),
                interfaces: ns.interfaces.iter().map(InterfaceEvidence::from).collect(),
                history_unknown,
                resolved_at_ns: None,
                owner: (!ns.owner.is_empty()).then(|| Box::new(ns.owner.clone())),
                cni_calls: Vec::new(),
            },
        };
        if history_unknown {
            f.add_uncertainty("history unknown: memberless when first seen, so it may be a deliberate persistent namespace");
        }
        if let Some(path) = unknown_pin {
            f.add_uncertainty(&format!(
                "who made the bind mount at {path} was not seen (its mount call was lost or came before the trace), so whether its creator only set it up to persist or lived in it cannot be told"
            ));
        }
        let last_exit = ns.last_member.map(|m| m.exited_at_ns);
        let replies: Vec<ReplySeen> = ns
            .recent_replies
            .iter()
            .filter(|rep| rep.dir == Direction::Tx && last_exit.is_some_and(|e| rep.at_ns >= e))
            .copied()
            .collect();
        let was_leaked = ns.state == NsState::Leaked;
        let my_id = f.netns.clone();
        let i = self.push_finding(Some(r), f);
        if let Some(ns) = self.reg.get_mut(r) {
            ns.leak_finding = Some(i);
        }
        self.refresh_leak_cni(r);
        self.check_cni_del_left(r, ts);
        if !was_leaked {
            return;
        }
        for f in self.findings.iter_mut() {
            if let FindingDetail::DuplicateIp {
                ip,
                holders,
                involves_leaked,
            } = &mut f.detail
                && let Some(h) = holders.iter_mut().find(|h| h.netns == my_id)
            {
                h.state = NsState::Leaked;
                *involves_leaked = true;
                f.summary = duplicate_summary(*ip, holders);
            }
        }
        for rep in replies {
            self.check_stale(r, rep);
        }
    }

    pub(super) fn check_duplicate(&mut self, ip: IpAddr, r: SlotRef, ts: u64) {
        if ip_is_shareable(ip) {
            return;
        }
        let Some(v) = self.ip_index.get(ip) else {
            return;
        };
        let holds = |s: SlotRef| self.reg.get(s).is_some_and(claims_its_addresses);
        let mut slots: Vec<SlotRef> = v.iter().map(|x| x.0).filter(|s| holds(*s)).collect();
        slots.sort();
        slots.dedup();
        if slots.len() < 2 || !self.raised.duplicate_ips.insert((ip, slots.clone())) {
            return;
        }
        let mut holders = Vec::new();
        let mut from = ts;
        for &(s, ifindex) in v {
            let Some(ns) = self.reg.get(s).filter(|ns| claims_its_addresses(ns)) else {
                continue;
            };
            from = from.min(ns.born_at_ns());
            let iface = ns.interfaces.iter().find(|i| i.ifindex == ifindex);
            holders.push(DuplicateHolder {
                netns: ns.id(),
                ifname: iface.map(|i| i.name.clone()).unwrap_or_default(),
                ifindex,
                mac: iface.map(|i| i.mac).unwrap_or_default(),
                state: ns.state,
                dad: dad_of(iface, ip),
            });
        }
        let involves_leaked = holders.iter().any(|h| h.state == NsState::Leaked);
        let netns = self.reg.get(r).map(|ns| ns.id()).unwrap_or_default();
        let f = Finding {
            netns,
            summary: duplicate_summary(ip, &holders),
            raised_at_ns: ts,
            uncertain: false,
            uncertain_reason: None,
            window: EvidenceWindow {
                from_ns: from,
                to_ns: ts,
            },
            detail: FindingDetail::DuplicateIp {
                ip,
                holders,
                involves_leaked,
            },
        };
        self.push_finding(Some(r), f);
    }

    /// Its addresses may clash with others' now that it counts (see `claims_its_addresses`).
    pub(super) fn recheck_duplicates(&mut self, r: SlotRef, ts: u64) {
        for (ip, _) in self.ips_of(r) {
            self.check_duplicate(ip, r, ts);
        }
    }

    pub(super) fn check_stale(&mut self, r: SlotRef, rep: ReplySeen) {
        if rep.sender_ip.is_unspecified() {
            return;
        }
        let Some(ns) = self.reg.get(r) else { return };
        let from_leaked = rep.dir == Direction::Tx && ns.state == NsState::Leaked;
        // Common case without allocating: a single owner whose MAC matches.
        if !from_leaked
            && let Some(v) = self.ip_index.get(rep.sender_ip)
            && let [(s, ifindex)] = v.as_slice()
            && let Some(owner) = self.reg.get(*s)
            && !matches!(owner.state, NsState::Leaked | NsState::LeakSuspect)
            && owner
                .interfaces
                .iter()
                .any(|i| i.ifindex == *ifindex && i.mac == rep.sender_mac)
        {
            return;
        }
        let owners = self.owners_of(rep.sender_ip);
        let owner = owners
            .iter()
            .find(|(s, _)| *s != r)
            .or(owners.first())
            .copied();
        // A live namespace answering for its own address is not stale just because its
        // interfaces have not been read yet while a memberless one still lists the address:
        // only an owner that is itself alive can contradict a live replier.
        let replier_alive = rep.dir == Direction::Tx && ns.state == NsState::Alive;
        let owner_alive = owners
            .iter()
            .any(|(s, _)| self.reg.get(*s).is_some_and(|o| o.state == NsState::Alive));
        let reason = if from_leaked {
            StaleReason::SentFromLeakedNetns
        } else if replier_alive && !owner_alive {
            return;
        } else if !owners.is_empty() && !owners.iter().any(|(_, m)| *m == rep.sender_mac) {
            StaleReason::MacMismatch
        } else {
            return;
        };
        if let Some(&i) = self.raised.stale_replies.get(&(r, rep.sender_ip)) {
            if let Some(FindingDetail::StaleArpReply {
                sender_mac,
                other_macs,
                other_mac_replies,
                ..
            }) = self.findings.get_mut(i).map(|f| &mut f.detail)
                && *sender_mac != rep.sender_mac
            {
                *other_mac_replies += 1;
                if other_macs.len() < MAX_OTHER_MACS && !other_macs.contains(&rep.sender_mac) {
                    other_macs.push(rep.sender_mac);
                }
            }
            return;
        }
        if self
            .raised
            .stale_claims
            .contains(&(rep.sender_ip, rep.sender_mac))
        {
            return;
        }
        if self.raised.stale_replies.len() >= MAX_STALE_FINDINGS {
            self.stats.stale_replies_unreported += 1;
            return;
        }
        let observed_in = ns.id();
        let owner_id = owner.and_then(|(s, _)| self.reg.get(s)).map(|o| o.id());
        let expected = owner.map(|(_, m)| m);
        let verb = if rep.dir == Direction::Tx {
            "sent"
        } else {
            "received"
        };
        let mut summary = format!(
            "{observed_in} {verb} {} claiming {} is at {}",
            reply_name(rep.sender_ip),
            rep.sender_ip,
            rep.sender_mac
        );
        if from_leaked {
            summary.push_str(" from a leaked namespace");
        }
        if let (Some(o), Some(m)) = (&owner_id, expected) {
            summary.push_str(&format!("; {} belongs to {o} at {m}", rep.sender_ip));
        }
        let from = ns
            .last_member
            .map_or(ns.born_at_ns(), |m| m.exited_at_ns.min(rep.at_ns));
        let f = Finding {
            netns: observed_in.clone(),
            summary,
            raised_at_ns: rep.at_ns,
            uncertain: false,
            uncertain_reason: None,
            window: EvidenceWindow {
                from_ns: from,
                to_ns: rep.at_ns,
            },
            detail: FindingDetail::StaleArpReply {
                observed_at_ns: rep.at_ns,
                observed_in,
                dir: rep.dir,
                ifindex: rep.ifindex,
                sender_ip: rep.sender_ip,
                sender_mac: rep.sender_mac,
                target_ip: rep.target_ip,
                expected_mac: expected,
                owner_netns: owner_id,
                reason,
                other_macs: Vec::new(),
                other_mac_replies: 0,
            },
        };
        let i = self.push_finding(Some(r), f);
        self.raised.stale_replies.insert((r, rep.sender_ip), i);
        self.raised
            .stale_claims
            .insert((rep.sender_ip, rep.sender_mac));
    }

    fn push_finding(&mut self, r: Option<SlotRef>, mut f: Finding) -> usize {
        let lost = self.losses.overlapping(&f.detail, f.window);
        if !lost.is_empty() {
            f.add_uncertainty(&loss_reason(&lost));
        }
        let summary = f.summary.clone();
        let ts = f.raised_at_ns;
        self.findings.push(f);
        self.notify(ts, r, NoticeKind::Finding, |_| summary);
        self.findings.len() - 1
    }
}

// ---- CNI calls ----

impl Collector {
    /// The runtime's calls for the sandboxes of namespace `r` (not those a plugin chained).
    fn runtime_cni_calls(&self, r: SlotRef) -> Vec<&CniCall> {
        self.sandbox_cni_calls(r)
            .into_iter()
            .filter(|c| !self.is_chained(c))
            .collect()
    }

    /// `; CNI ADD at …, DEL at … after the last member left at …` for the leak summary of
    /// namespace `r`: the first ADD of its pod interface (the first one not for lo, else the
    /// first) and the last DEL of that interface.
    fn cni_story(&self, r: SlotRef, calls: &[&CniCall]) -> String {
        let Some(ns) = self.reg.get(r) else {
            return String::new();
        };
        let adds: Vec<&&CniCall> = calls.iter().filter(|c| c.verb == "ADD").collect();
        let add = adds
            .iter()
            .find(|c| c.if_name.as_deref() != Some("lo"))
            .or(adds.first());
        let ifname = add.and_then(|c| c.if_name.as_deref());
        let del = calls
            .iter()
            .rev()
            .filter(|c| c.verb == "DEL")
            .find(|c| ifname.is_none() || c.if_name.as_deref() == ifname)
            .or_else(|| calls.iter().rev().find(|c| c.verb == "DEL"));
        let mut parts = Vec::new();
        if let Some(add) = add {
            parts.push(format!("ADD at {}{}", secs(add.at_ns), ended(add)));
        }
        match del {
            Some(del) => {
                let when = match ns.last_member {
                    Some(m) if del.at_ns >= m.exited_at_ns => {
                        format!(" after the last member left at {}", secs(m.exited_at_ns))
                    }
                    Some(m) => format!(" before the last member left at {}", secs(m.exited_at_ns)),
                    None => String::new(),
                };
                parts.push(format!(
                    "DEL at {}{}{}{when}",
                    secs(del.at_ns),
                    ended(del),
                    path_part(del)
                ));
            }
            None => parts.push("no DEL".into()),
        }
        format!("; CNI {}", parts.join(", "))
    }

    /// Keeps the CNI calls of namespace `r`'s leak finding (its evidence and the end of its
    /// summary) current.
    pub(super) fn refresh_leak_cni(&mut self, r: SlotRef) {
        let Some(i) = self.reg.get(r).and_then(|ns| ns.leak_finding) else {
            return;
        };
        let calls = self.runtime_cni_calls(r);
        if calls.is_empty() {
            return;
        }
        let story = self.cni_story(r, &calls);
        let calls: Vec<CniCall> = calls.into_iter().cloned().collect();
        let old = self.raised.leak_cni_story.insert(i, story.len());
        let Some(f) = self.findings.get_mut(i) else {
            return;
        };
        if let FindingDetail::LeakedNetns { cni_calls, .. } = &mut f.detail {
            *cni_calls = calls;
        }
        let keep = f.summary.len() - old.unwrap_or(0);
        f.summary.truncate(keep);
        f.summary.push_str(&story);
    }

    /// `cni_del_left_namespace` for namespace `r`, once: it is judged leaked, still has
    /// interfaces or addresses, and the last ADD or DEL the runtime ran for its sandbox was a
    /// DEL that returned.
    pub(super) fn check_cni_del_left(&mut self, r: SlotRef, ts: u64) {
        let Some(ns) = self.reg.get(r) else { return };
        if ns.leak_finding.is_none() || ns.is_destroyed() || self.raised.cni_del_left.contains(&r) {
            return;
        }
        let left = network_left(ns);
        if left.is_empty() {
            return;
        }
        let calls = self.runtime_cni_calls(r);
        let Some(last) = calls
            .iter()
            .rev()
            .find(|c| c.verb == "ADD" || c.verb == "DEL")
        else {
            return;
        };
        if last.verb != "DEL" || last.end.is_none() {
            return;
        }
        // Of the DELs since the last ADD, the one for an interface it still has, else the last.
        let since_add: Vec<&&CniCall> = calls
            .iter()
            .rev()
            .take_while(|c| c.verb != "ADD")
            .filter(|c| c.verb == "DEL" && c.end.is_some())
            .collect();
        let del = since_add
            .iter()
            .find(|c| {
                c.if_name
                    .as_deref()
                    .is_some_and(|n| left.iter().any(|i| i.name == n))
            })
            .or(since_add.first())
            .map(|c| (**c).clone());
        let Some(del) = del else { return };
        let Some(end) = del.end else { return };
        let id = ns.id();
        let container_id = del.container_id.clone().unwrap_or_default();
        let resolved = path_resolved(&del);
        let summary = format!(
            "{id}{} outlived the CNI DEL of sandbox {container_id}: {} returned ({}) at {}{}{}; it still has {}, held by {}",
            owner_part(Some(&ns.owner)),
            del.plugin.comm,
            end.status,
            secs(end.at_ns),
            path_part(&del),
            if resolved {
                ""
            } else {
                " (the path no longer named it)"
            },
            describe_interfaces(&left),
            holders_of(ns),
        );
        let f = Finding {
            netns: id,
            summary,
            raised_at_ns: ts,
            uncertain: false,
            uncertain_reason: None,
            window: EvidenceWindow {
                from_ns: del.at_ns,
                to_ns: ts,
            },
            detail: FindingDetail::CniDelLeftNamespace {
                container_id,
                netns_path_resolved: resolved,
                interfaces: left.into_iter().map(InterfaceEvidence::from).collect(),
                pins: ns.pins.iter().map(PinEvidence::from).collect(),
                del: Box::new(del),
            },
        };
        self.raised.cni_del_left.insert(r);
        self.push_finding(Some(r), f);
    }

    /// `cni_del_failed` for the runtime's DEL `del` that ended with a non-zero status;
    /// `slot` is its sandbox's namespace, when one is known.
    pub(super) fn raise_cni_del_failed(
        &mut self,
        del: CniCall,
        chained: Vec<CniCall>,
        slot: Option<SlotRef>,
    ) {
        let Some(end) = del.end else { return };
        let ns = slot.and_then(|r| self.reg.get(r));
        let container_id = del.container_id.clone();
        let failed_chained: Vec<String> = chained
            .iter()
            .filter_map(|c| {
                let e = c.end?;
                (!e.status.succeeded()).then(|| format!("{} {}", c.plugin.comm, e.status))
            })
            .collect();
        let mut summary = format!(
            "CNI DEL of sandbox {} failed: {} ({}) at {}{}",
            container_id.as_deref().unwrap_or("<none>"),
            del.plugin.comm,
            end.status,
            secs(end.at_ns),
            path_part(&del),
        );
        if !failed_chained.is_empty() {
            summary.push_str(&format!("; it ran {}", failed_chained.join(", ")));
        }
        match ns {
            Some(ns) => {
                let left = network_left(ns);
                summary.push_str(&format!("; {} is {}", ns.id(), ns.state));
                if !left.is_empty() {
                    summary.push_str(&format!(" with {}", describe_interfaces(&left)));
                }
                summary.push_str(&format!(", held by {}", holders_of(ns)));
            }
            None => summary.push_str("; no namespace the trace knows was its sandbox's"),
        }
        let f = Finding {
            netns: ns.map(|ns| ns.id()).unwrap_or_default(),
            summary,
            raised_at_ns: end.at_ns,
            uncertain: false,
            uncertain_reason: None,
            window: EvidenceWindow {
                from_ns: del.at_ns,
                to_ns: end.at_ns,
            },
            detail: FindingDetail::CniDelFailed {
                container_id,
                namespace: ns.map(|ns| NamespaceAtDel {
                    state: ns.state,
                    interfaces: ns.interfaces.iter().map(InterfaceEvidence::from).collect(),
                    pins: ns.pins.iter().map(PinEvidence::from).collect(),
                }),
                chained,
                del: Box::new(del),
            },
        };
        self.push_finding(slot, f);
    }
}
