//! Findings: what the collector concluded, with the evidence, and how sure it is.
use std::net::Ipv4Addr;

use netns_trace_common::EventKind;
use serde::{Deserialize, Serialize};

use super::namespace::{FailedUmount, InterfaceRecord, LastMember, NsState, PinKind, PinRecord};
use crate::model::{Comm, Direction, Mac};

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
}

impl From<&InterfaceRecord> for InterfaceEvidence {
    fn from(i: &InterfaceRecord) -> Self {
        Self {
            name: i.name.clone(),
            ifindex: i.ifindex,
            mac: i.mac,
            ipv4: i.ipv4.iter().map(|(a, l)| format!("{a}/{l}")).collect(),
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
    },
    DuplicateIp {
        ip: Ipv4Addr,
        holders: Vec<DuplicateHolder>,
        /// One of the holders is (or later became) a leaked namespace.
        involves_leaked: bool,
    },
    StaleArpReply {
        observed_at_ns: u64,
        /// The namespace the reply was seen in.
        observed_in: String,
        dir: Direction,
        ifindex: u32,
        sender_ip: Ipv4Addr,
        sender_mac: Mac,
        target_ip: Ipv4Addr,
        /// MAC of the current owner of `sender_ip`, when there is one.
        expected_mac: Option<Mac>,
        owner_netns: Option<String>,
        reason: StaleReason,
    },
}

impl FindingDetail {
    pub fn kind_name(&self) -> &'static str {
        match self {
            FindingDetail::LeakedNetns { .. } => "leaked_netns",
            FindingDetail::DuplicateIp { .. } => "duplicate_ip",
            FindingDetail::StaleArpReply { .. } => "stale_arp_reply",
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
                EventKind::NetDev as u16,
                EventKind::Ipv4Addr as u16,
                EventKind::Task as u16,
                EventKind::NetnsTeardown as u16,
            ],
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

/// Loopback and unspecified addresses exist in every namespace and are never duplicates.
pub(crate) fn ip_is_shareable(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}
