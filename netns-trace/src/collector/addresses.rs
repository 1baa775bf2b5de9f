//! Devices, IPv4 and IPv6 addresses and ARP: each namespace's interfaces as events and reads
//! leave them, the index of who holds each address (which duplicate-IP and stale-ARP verdicts read),
//! and the ARP replies a namespace sent or received.
use rustc_hash::FxHashMap;
use std::net::IpAddr;

use super::identity::{IfUnknown, Intent, SlotRef};
use super::namespace::{InterfaceRecord, NsState, ReplySeen};
use super::{Collector, NoticeKind};
use crate::model::{
    AddrOp, ArpPacket, Direction, Interface, InterfacesRead, Ipv4AddrChange, Mac, NdiscPacket,
    NetDev, NetDevOp, PacketsLimited,
};
use netns_trace_common::{PACKET_BUDGET_BURST, PACKET_BUDGET_PER_SEC};

/// Live (not destroyed) holders of each address (`Namespace::indexed_addresses`):
/// (namespace, ifindex).
#[derive(Default)]
pub(super) struct IpIndex(FxHashMap<IpAddr, Vec<(SlotRef, u32)>>);

impl IpIndex {
    pub(super) fn get(&self, ip: IpAddr) -> Option<&Vec<(SlotRef, u32)>> {
        self.0.get(&ip)
    }

    fn add(&mut self, ip: IpAddr, r: SlotRef, ifindex: u32) {
        let v = self.0.entry(ip).or_default();
        if !v.contains(&(r, ifindex)) {
            v.push((r, ifindex));
        }
    }

    pub(super) fn remove(&mut self, ip: IpAddr, r: SlotRef, ifindex: u32) {
        if let Some(v) = self.0.get_mut(&ip) {
            v.retain(|x| *x != (r, ifindex));
            if v.is_empty() {
                self.0.remove(&ip);
            }
        }
    }
}

impl Collector {
    pub(super) fn on_netdev(&mut self, ts: u64, e: &NetDev) {
        let &NetDev {
            op,
            netns,
            ifindex,
            other,
            mac,
            ref name,
        } = e;
        match op {
            NetDevOp::Register => {
                let Some(r) = self.place(netns, Intent::Attach, IfUnknown::Skip, ts) else {
                    return;
                };
                let before = self.ips_of(r);
                if let Some(ns) = self.reg.get_mut(r) {
                    match ns.interfaces.iter_mut().find(|i| i.ifindex == ifindex) {
                        Some(i) => {
                            i.name = name.to_string();
                            i.mac = mac;
                        }
                        None => ns.interfaces.push(InterfaceRecord {
                            name: name.to_string(),
                            ifindex,
                            mac,
                            ipv4: Vec::new(),
                            ipv6: Vec::new(),
                        }),
                    }
                }
                self.reindex(r, before, ts);
            }
            NetDevOp::Unregister => {
                let Some(r) = self.place(netns, Intent::Attach, IfUnknown::Skip, ts) else {
                    return;
                };
                let before = self.ips_of(r);
                if let Some(ns) = self.reg.get_mut(r) {
                    ns.interfaces.retain(|i| i.ifindex != ifindex);
                }
                self.reindex(r, before, ts);
            }
            NetDevOp::Move => {
                // `other` is where the device was; addresses do not survive a move.
                if let Some(from) = self.place(other, Intent::Attach, IfUnknown::Skip, ts) {
                    let before = self.ips_of(from);
                    if let Some(ns) = self.reg.get_mut(from) {
                        ns.interfaces.retain(|i| i.ifindex != ifindex);
                    }
                    self.reindex(from, before, ts);
                }
                if let Some(to) = self.place(netns, Intent::Attach, IfUnknown::Skip, ts)
                    && let Some(ns) = self.reg.get_mut(to)
                {
                    ns.interfaces.retain(|i| i.ifindex != ifindex);
                    ns.interfaces.push(InterfaceRecord {
                        name: name.to_string(),
                        ifindex,
                        mac,
                        ipv4: Vec::new(),
                        ipv6: Vec::new(),
                    });
                }
            }
        }
    }

    pub(super) fn on_ipv4(&mut self, ts: u64, e: &Ipv4AddrChange) {
        let &Ipv4AddrChange {
            op,
            netns,
            ifindex,
            addr,
            prefix_len,
            ref label,
        } = e;
        let Some(r) = self.place(netns, Intent::Attach, IfUnknown::Skip, ts) else {
            return;
        };
        let before = self.ips_of(r);
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        match op {
            AddrOp::Add => {
                let iface = match ns.interfaces.iter().position(|i| i.ifindex == ifindex) {
                    Some(p) => &mut ns.interfaces[p],
                    None => {
                        // Address before (or without) the device record: the label names it.
                        let name = label.split(':').next().unwrap_or_default().to_string();
                        ns.interfaces.push(InterfaceRecord {
                            name,
                            ifindex,
                            mac: Mac::default(),
                            ipv4: Vec::new(),
                            ipv6: Vec::new(),
                        });
                        ns.interfaces.last_mut().expect("just pushed")
                    }
                };
                if !iface.ipv4.iter().any(|(a, _)| *a == addr) {
                    iface.ipv4.push((addr, prefix_len));
                }
            }
            AddrOp::Del => {
                for i in ns.interfaces.iter_mut().filter(|i| i.ifindex == ifindex) {
                    i.ipv4.retain(|(a, _)| *a != addr);
                }
            }
        }
        self.reindex(r, before, ts);
    }

    pub(super) fn on_interfaces(&mut self, ts: u64, e: &InterfacesRead) {
        let netns = e.netns;
        let if_unknown = if !self.is_init(netns) || self.init.is_none() {
            IfUnknown::Infer
        } else {
            IfUnknown::Skip
        };
        let Some(r) = self.place(netns, Intent::Attach, if_unknown, ts) else {
            return;
        };
        self.set_interfaces(r, &e.interfaces, ts);
    }

    pub(super) fn set_interfaces(&mut self, r: SlotRef, interfaces: &[Interface], ts: u64) {
        let before = self.ips_of(r);
        if let Some(ns) = self.reg.get_mut(r) {
            ns.interfaces = interfaces
                .iter()
                .map(|i| InterfaceRecord {
                    name: i.name.clone(),
                    ifindex: i.ifindex,
                    mac: i.mac,
                    ipv4: i.ipv4.clone(),
                    ipv6: i.ipv6.clone(),
                })
                .collect();
        }
        self.reindex(r, before, ts);
    }

    pub(super) fn ips_of(&self, r: SlotRef) -> Vec<(IpAddr, u32)> {
        self.reg
            .get(r)
            .map(|ns| ns.indexed_addresses().collect())
            .unwrap_or_default()
    }

    /// Brings the IP index in line with the namespace after its interfaces changed.
    fn reindex(&mut self, r: SlotRef, before: Vec<(IpAddr, u32)>, ts: u64) {
        let after = self.ips_of(r);
        for x in before.iter().filter(|x| !after.contains(x)) {
            self.ip_index.remove(x.0, r, x.1);
        }
        if self.reg.get(r).is_none_or(|ns| ns.is_destroyed()) {
            return;
        }
        for x in after.iter().filter(|x| !before.contains(x)) {
            self.ip_index.add(x.0, r, x.1);
            self.check_duplicate(x.0, r, ts);
        }
    }

    /// The kernel counted packet records of `netns` instead of sending them. Stale-ARP
    /// evidence from it is then a floor (more replies may have gone by), never wrong: no
    /// verdict is made uncertain by it. The first time per namespace is a notice.
    pub(super) fn on_packets_limited(&mut self, ts: u64, e: &PacketsLimited) {
        let &PacketsLimited { netns, count } = e;
        if count == 0 {
            return;
        }
        self.stats.packet_records_limited += count;
        let Some(r) = self.place(netns, Intent::Attach, IfUnknown::Skip, ts) else {
            return;
        };
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        let first = ns.arp.records_limited == 0;
        ns.arp.records_limited += count;
        if first {
            self.notify(ts, Some(r), NoticeKind::PacketsLimited, |_| {
                format!(
                    "its packets outran the tracer's budget ({PACKET_BUDGET_BURST} records, then \
                     {PACKET_BUDGET_PER_SEC}/s): {count} ARP/neighbour records counted, not traced"
                )
            });
        }
    }

    pub(super) fn on_arp(&mut self, ts: u64, e: &ArpPacket) {
        let &ArpPacket { netns, op, .. } = e;
        let rep = ReplySeen {
            at_ns: ts,
            dir: e.dir,
            ifindex: e.ifindex,
            sender_ip: IpAddr::V4(e.sender_ip),
            sender_mac: e.sender_mac,
            target_ip: IpAddr::V4(e.target_ip),
        };
        let Some(r) = self.place(netns, Intent::Attach, IfUnknown::Skip, ts) else {
            return;
        };
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        let c = &mut ns.arp;
        match (op, rep.dir) {
            (1, Direction::Tx) => c.requests_tx += 1,
            (1, Direction::Rx) => c.requests_rx += 1,
            (2, Direction::Tx) => c.replies_tx += 1,
            (2, Direction::Rx) => c.replies_rx += 1,
            _ => {}
        }
        if op == 2 {
            ns.remember_reply(rep);
            self.check_stale(r, rep);
        }
    }

    /// A Neighbour Solicitation or Advertisement: IPv6's ARP request and reply.
    pub(super) fn on_ndisc(&mut self, ts: u64, e: &NdiscPacket) {
        let Some(r) = self.place(e.netns, Intent::Attach, IfUnknown::Skip, ts) else {
            return;
        };
        let Some(ns) = self.reg.get_mut(r) else {
            return;
        };
        let c = &mut ns.arp;
        let counter = match (e.is_advertisement(), e.dir) {
            (false, Direction::Tx) => &mut c.solicitations_tx,
            (false, Direction::Rx) => &mut c.solicitations_rx,
            (true, Direction::Tx) => &mut c.advertisements_tx,
            (true, Direction::Rx) => &mut c.advertisements_rx,
        };
        *counter = counter.saturating_add(1);
        // An advertisement that names a MAC for its target is IPv6's ARP reply; one without
        // the option (answering a unicast solicitation) claims nothing this record shows.
        if let Some(mac) = e.claimed_mac() {
            let rep = ReplySeen {
                at_ns: ts,
                dir: e.dir,
                ifindex: e.ifindex,
                sender_ip: IpAddr::V6(e.target),
                sender_mac: mac,
                target_ip: IpAddr::V6(e.dst),
            };
            ns.remember_reply(rep);
            self.check_stale(r, rep);
        }
    }

    /// Live, non-leaked holders of `ip` with their MACs; members-holding ones first.
    pub(super) fn owners_of(&self, ip: IpAddr) -> Vec<(SlotRef, Mac)> {
        let Some(v) = self.ip_index.get(ip) else {
            return Vec::new();
        };
        let mut owners: Vec<(SlotRef, Mac, bool)> = v
            .iter()
            .filter_map(|&(s, ifindex)| {
                let ns = self.reg.get(s)?;
                if ns.is_destroyed() || matches!(ns.state, NsState::Leaked | NsState::LeakSuspect) {
                    return None;
                }
                let mac = ns.interfaces.iter().find(|i| i.ifindex == ifindex)?.mac;
                Some((
                    s,
                    mac,
                    ns.state == NsState::Alive || ns.state == NsState::Persistent,
                ))
            })
            .collect();
        if owners.iter().any(|o| o.2) {
            owners.retain(|o| o.2);
        }
        owners.into_iter().map(|(s, m, _)| (s, m)).collect()
    }
}
