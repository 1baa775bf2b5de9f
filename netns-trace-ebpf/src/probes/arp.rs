//! ARP packets and IPv4 neighbour updates.
//!
//! The packet hooks see every packet of the node, so the first thing each does is one read
//! of `skb->protocol`; anything that is not ARP returns there.
use aya_ebpf::{
    EbpfContext as _,
    macros::{btf_tracepoint, fentry, kprobe},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext},
};
use netns_trace_common::{
    Arp, Direction, EventKind, Hook, NeighUpdate,
    kernel::{AF_INET, ETH_P_ARP},
};

use crate::{
    emit::{header, packet_budget_allows, send},
    kernel::{dev_ifindex, dev_net, net_id, off, raw_arg, read, read_bytes, read_ptr},
};

/// The 28-byte Ethernet/IPv4 ARP payload.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ArpPacket {
    htype: [u8; 2],
    ptype: [u8; 2],
    hlen: u8,
    plen: u8,
    op: [u8; 2],
    sha: [u8; 6],
    sip: [u8; 4],
    tha: [u8; 6],
    tip: [u8; 4],
}

#[inline(always)]
fn is_arp(skb: u64) -> bool {
    read::<u16>(skb, off!(skb_protocol)) == ETH_P_ARP.to_be()
}

/// `skb->head + skb->network_header`: set on both paths by the time our hooks run.
#[inline(always)]
fn network_header(skb: u64) -> u64 {
    let head = read_ptr(skb, off!(skb_head));
    let nh = read::<u16>(skb, off!(skb_network_header));
    if head == 0 || nh == 0xffff {
        0
    } else {
        head + nh as u64
    }
}

#[inline(always)]
fn emit_arp(pkt_addr: u64, dev: u64, dir: Direction, hook: Hook) {
    if pkt_addr == 0 || dev == 0 {
        return;
    }
    let mut pkt = ArpPacket::default();
    // SAFETY of the cast: ArpPacket is plain bytes.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(
            &mut pkt as *mut ArpPacket as *mut u8,
            size_of::<ArpPacket>(),
        )
    };
    read_bytes(pkt_addr, 0, bytes);
    if pkt.hlen != 6 || pkt.plen != 4 {
        return;
    }
    let netns = net_id(dev_net(dev));
    if !packet_budget_allows(&netns) {
        return;
    }
    send(
        EventKind::Arp,
        Arp {
            hdr: header(EventKind::Arp, size_of::<Arp>(), netns),
            ifindex: dev_ifindex(dev),
            op: u16::from_be_bytes(pkt.op),
            dir: dir as u8,
            hook: hook as u8,
            sender_ip: pkt.sip,
            target_ip: pkt.tip,
            sender_mac: pkt.sha,
            target_mac: pkt.tha,
        },
    );
}

/// tp_btf `net_dev_xmit(struct sk_buff *skb, int rc, struct net_device *dev,
/// unsigned int skb_len)`, 5.10 … 6.18.
#[btf_tracepoint(function = "net_dev_xmit")]
pub fn arp_tx_tp(ctx: BtfTracePointContext) -> u32 {
    let skb: u64 = ctx.arg(0);
    if !is_arp(skb) {
        return 0;
    }
    emit_arp(
        network_header(skb),
        ctx.arg(2),
        Direction::Tx,
        Hook::Tracepoint,
    );
    0
}

/// tp_btf `netif_receive_skb(struct sk_buff *skb)`: after eth_type_trans, `data` is the ARP
/// header (network_header is reset only later in __netif_receive_skb_core).
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn arp_rx_tp(ctx: BtfTracePointContext) -> u32 {
    let skb: u64 = ctx.arg(0);
    if !is_arp(skb) {
        return 0;
    }
    let data = read_ptr(skb, off!(skb_data));
    emit_arp(
        data,
        read_ptr(skb, off!(skb_dev)),
        Direction::Rx,
        Hook::Tracepoint,
    );
    0
}

/// fentry `void arp_xmit(struct sk_buff *skb)`: every ARP the stack sends, replies included
/// (arp_send misses replies built by arp_process).
#[fentry(function = "arp_xmit")]
pub fn arp_tx_fentry(ctx: FEntryContext) -> u32 {
    let skb: u64 = ctx.arg(0);
    emit_arp(
        network_header(skb),
        read_ptr(skb, off!(skb_dev)),
        Direction::Tx,
        Hook::Fentry,
    );
    0
}

#[kprobe]
pub fn arp_tx_kprobe(ctx: ProbeContext) -> u32 {
    let skb: u64 = ctx.arg(0).unwrap_or(0);
    emit_arp(
        network_header(skb),
        read_ptr(skb, off!(skb_dev)),
        Direction::Tx,
        Hook::Kprobe,
    );
    0
}

/// fentry `static int arp_process(struct net *net, struct sock *sk, struct sk_buff *skb)`,
/// stable 5.10 … 6.18; `data` is the ARP header.
#[fentry(function = "arp_process")]
pub fn arp_rx_fentry(ctx: FEntryContext) -> u32 {
    let skb: u64 = ctx.arg(2);
    emit_arp(
        read_ptr(skb, off!(skb_data)),
        read_ptr(skb, off!(skb_dev)),
        Direction::Rx,
        Hook::Fentry,
    );
    0
}

#[kprobe]
pub fn arp_rx_kprobe(ctx: ProbeContext) -> u32 {
    let skb: u64 = ctx.arg(2).unwrap_or(0);
    emit_arp(
        read_ptr(skb, off!(skb_data)),
        read_ptr(skb, off!(skb_dev)),
        Direction::Rx,
        Hook::Kprobe,
    );
    0
}

/// tp_btf `neigh_update(struct neighbour *n, const u8 *lladdr, u8 new, u32 flags,
/// u32 nlmsg_pid)`, 5.3+. IPv4 tables only.
#[btf_tracepoint(function = "neigh_update")]
pub fn neigh_update_tp(ctx: BtfTracePointContext) -> u32 {
    let n = raw_arg(ctx.as_ptr(), 0);
    let lladdr = raw_arg(ctx.as_ptr(), 1);
    let new_state = raw_arg(ctx.as_ptr(), 2);
    let tbl = read_ptr(n, off!(neigh_tbl));
    if read::<u32>(tbl, off!(neigh_table_family)) != AF_INET {
        return 0;
    }
    let dev = read_ptr(n, off!(neigh_dev));
    let netns = net_id(dev_net(dev));
    // A pod's packets drive its neighbour table: the same budget as its ARP records.
    if !packet_budget_allows(&netns) {
        return 0;
    }
    let mut rec = NeighUpdate {
        hdr: header(EventKind::NeighUpdate, size_of::<NeighUpdate>(), netns),
        ifindex: dev_ifindex(dev),
        nud_state: new_state as u8 as u32,
        ..Default::default()
    };
    read_bytes(n, off!(neigh_primary_key), &mut rec.ip);
    if lladdr != 0 {
        read_bytes(lladdr, 0, &mut rec.mac);
    }
    send(EventKind::NeighUpdate, rec);
    0
}
