//! ARP packets, IPv6 Neighbour Discovery (solicitations and advertisements) and IPv4
//! neighbour updates.
//!
//! The tracepoint packet hooks see every packet of the node, so the first thing each does is
//! one read of `skb->protocol`: anything that is neither ARP nor IPv6 returns after that read
//! and two compares. An IPv6 packet then costs the family switch (an inlined array lookup)
//! and the reads that reach its next-header byte (on transmit the skb's head and network
//! header offset, on receive its data pointer, then the byte); only ICMPv6 costs one more
//! read (the type), and only a solicitation or an advertisement more than that.
//! Only ND sent without extension headers is seen there (the next header must be ICMPv6
//! itself), which is how Linux sends it; full mode's ndisc hooks see the rest.
//!
//! The same two tracepoint programs feed both the `arp` and the `ndisc` probes: each family is
//! recorded only while its probe runs on them (`PACKET_FAMILIES`, set by the loader), so a
//! probe attached elsewhere (fentry) or disabled never gets a second copy from here.
use aya_ebpf::{
    EbpfContext as _,
    macros::{btf_tracepoint, fentry, kprobe},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext},
};
use netns_trace_common::{
    Arp, Direction, EventKind, Hook, Ndisc, NeighUpdate,
    kernel::{AF_INET, ETH_P_ARP, ETH_P_IPV6, IPPROTO_ICMPV6},
    ndisc, packet_families,
};

use crate::{
    emit::{header, packet_budget_allows, send},
    kernel::{dev_ifindex, dev_net, net_id, off, raw_arg, read, read_bytes, read_ptr},
    maps::PACKET_FAMILIES,
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

/// The families ([`packet_families`] bits) the tracepoint programs record now.
#[inline(always)]
fn families() -> u32 {
    PACKET_FAMILIES.get(0).copied().unwrap_or(0)
}

/// The fixed part of a solicitation or advertisement: the ICMPv6 header (type, code,
/// checksum, then the advertisement's flags and reserved bytes) and the target address.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct NdHead {
    icmp_type: u8,
    code: u8,
    cksum: [u8; 2],
    flags: u8,
    reserved: [u8; 3],
    target: [u8; 16],
}

const ND_HEAD_LEN: u32 = 24;
const IPV6_HEADER_LEN: u64 = 40;

/// The link-layer address option `want` among the first two options (`opts`, `len` bytes of
/// them on the packet), as (option type, MAC). Ethernet's is one 8-byte unit.
#[inline(always)]
fn lla_option(opts: &[u8; 16], len: u32, want: u8) -> (u8, [u8; 6]) {
    let mut mac = [0u8; 6];
    if len >= 8 && opts[1] == 1 {
        if opts[0] == want {
            mac.copy_from_slice(&opts[2..8]);
            return (want, mac);
        }
        if len >= 16 && opts[8] == want && opts[9] == 1 {
            mac.copy_from_slice(&opts[10..16]);
            return (want, mac);
        }
    }
    (0, mac)
}

/// Records the solicitation or advertisement at `icmp` (`icmp_len` bytes of ICMPv6 on the
/// packet), whose IPv6 source and destination addresses are at `src` and `dst`.
#[inline(always)]
fn emit_ndisc(icmp: u64, icmp_len: u32, src: u64, dst: u64, dev: u64, dir: Direction, hook: Hook) {
    if icmp == 0 || dev == 0 || icmp_len < ND_HEAD_LEN {
        return;
    }
    let mut head = NdHead::default();
    // SAFETY of the cast: NdHead is plain bytes.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(&mut head as *mut NdHead as *mut u8, size_of::<NdHead>())
    };
    read_bytes(icmp, 0, bytes);
    let want = match head.icmp_type {
        ndisc::SOLICITATION => ndisc::OPT_SOURCE_LLA,
        ndisc::ADVERTISEMENT => ndisc::OPT_TARGET_LLA,
        _ => return,
    };
    let netns = net_id(dev_net(dev));
    if !packet_budget_allows(&netns) {
        return;
    }
    let opts_len = icmp_len - ND_HEAD_LEN;
    let mut opts = [0u8; 16];
    if opts_len >= 16 {
        read_bytes(icmp + ND_HEAD_LEN as u64, 0, &mut opts);
    } else if opts_len >= 8 {
        read_bytes(icmp + ND_HEAD_LEN as u64, 0, &mut opts[..8]);
    }
    let (lla_option, lla) = lla_option(&opts, opts_len, want);
    let mut rec = Ndisc {
        hdr: header(EventKind::Ndisc, size_of::<Ndisc>(), netns),
        ifindex: dev_ifindex(dev),
        icmp_type: head.icmp_type,
        dir: dir as u8,
        hook: hook as u8,
        na_flags: if want == ndisc::OPT_TARGET_LLA {
            head.flags & (ndisc::NA_ROUTER | ndisc::NA_SOLICITED | ndisc::NA_OVERRIDE)
        } else {
            0
        },
        target: head.target,
        lla,
        lla_option,
        ..Default::default()
    };
    read_bytes(src, 0, &mut rec.src);
    read_bytes(dst, 0, &mut rec.dst);
    send(EventKind::Ndisc, rec);
}

/// An IPv6 packet at `ip6` (its fixed header) in a tracepoint: ND when its next header is
/// ICMPv6 (no extension headers) and the type is 135 or 136. The next-header byte is read
/// first, alone, so other IPv6 traffic stops after that read.
#[inline(always)]
fn tp_ndisc(ip6: u64, dev: u64, dir: Direction) {
    if ip6 == 0 || read::<u8>(ip6, 6) != IPPROTO_ICMPV6 {
        return;
    }
    let icmp = ip6 + IPV6_HEADER_LEN;
    let icmp_type = read::<u8>(icmp, 0);
    if icmp_type != ndisc::SOLICITATION && icmp_type != ndisc::ADVERTISEMENT {
        return;
    }
    let payload_len = u16::from_be(read::<u16>(ip6, 4)) as u32;
    emit_ndisc(
        icmp,
        payload_len,
        ip6 + 8,
        ip6 + 24,
        dev,
        dir,
        Hook::Tracepoint,
    );
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
/// unsigned int skb_len)`, 5.10 … 6.18: ARP, then IPv6 ND.
#[btf_tracepoint(function = "net_dev_xmit")]
pub fn packet_tx_tp(ctx: BtfTracePointContext) -> u32 {
    let skb: u64 = ctx.arg(0);
    let protocol = read::<u16>(skb, off!(skb_protocol));
    if protocol == ETH_P_ARP.to_be() {
        if families() & packet_families::ARP != 0 {
            emit_arp(
                network_header(skb),
                ctx.arg(2),
                Direction::Tx,
                Hook::Tracepoint,
            );
        }
    } else if protocol == ETH_P_IPV6.to_be() && families() & packet_families::NDISC != 0 {
        tp_ndisc(network_header(skb), ctx.arg(2), Direction::Tx);
    }
    0
}

/// tp_btf `netif_receive_skb(struct sk_buff *skb)`: after eth_type_trans, `data` is the ARP
/// or IPv6 header (network_header is reset only later in __netif_receive_skb_core).
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn packet_rx_tp(ctx: BtfTracePointContext) -> u32 {
    let skb: u64 = ctx.arg(0);
    let protocol = read::<u16>(skb, off!(skb_protocol));
    if protocol == ETH_P_ARP.to_be() {
        if families() & packet_families::ARP != 0 {
            emit_arp(
                read_ptr(skb, off!(skb_data)),
                read_ptr(skb, off!(skb_dev)),
                Direction::Rx,
                Hook::Tracepoint,
            );
        }
    } else if protocol == ETH_P_IPV6.to_be() && families() & packet_families::NDISC != 0 {
        tp_ndisc(
            read_ptr(skb, off!(skb_data)),
            read_ptr(skb, off!(skb_dev)),
            Direction::Rx,
        );
    }
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

/// `static void ndisc_send_skb(struct sk_buff *skb, const struct in6_addr *daddr,
/// const struct in6_addr *saddr)`, 5.10 … 6.18: every ND message the stack sends. At entry
/// `data` is the ICMPv6 header (the IPv6 header is pushed inside), `len` the ICMPv6 length.
#[inline(always)]
fn ndisc_tx(skb: u64, daddr: u64, saddr: u64, hook: Hook) {
    emit_ndisc(
        read_ptr(skb, off!(skb_data)),
        read::<u32>(skb, off!(skb_len)),
        saddr,
        daddr,
        read_ptr(skb, off!(skb_dev)),
        Direction::Tx,
        hook,
    );
}

/// `int ndisc_rcv(struct sk_buff *skb)` (an `enum skb_drop_reason` from 6.0), 5.10 … 6.18:
/// every ND message icmpv6_rcv accepted, extension headers or not. The ICMPv6 header is the
/// transport header; the IPv6 header the network header, whose payload length covers any
/// extension headers before it.
#[inline(always)]
fn ndisc_rx(skb: u64, hook: Hook) {
    let head = read_ptr(skb, off!(skb_head));
    let nh = read::<u16>(skb, off!(skb_network_header));
    let th = read::<u16>(skb, off!(skb_transport_header));
    if head == 0 || nh == 0xffff || th == 0xffff || th < nh + IPV6_HEADER_LEN as u16 {
        return;
    }
    let ip6 = head + nh as u64;
    let payload_len = u16::from_be(read::<u16>(ip6, 4)) as u32;
    let before_icmp = (th - nh) as u32 - IPV6_HEADER_LEN as u32;
    if payload_len < before_icmp {
        return;
    }
    emit_ndisc(
        head + th as u64,
        payload_len - before_icmp,
        ip6 + 8,
        ip6 + 24,
        read_ptr(skb, off!(skb_dev)),
        Direction::Rx,
        hook,
    );
}

#[fentry(function = "ndisc_send_skb")]
pub fn ndisc_tx_fentry(ctx: FEntryContext) -> u32 {
    ndisc_tx(ctx.arg(0), ctx.arg(1), ctx.arg(2), Hook::Fentry);
    0
}

#[kprobe]
pub fn ndisc_tx_kprobe(ctx: ProbeContext) -> u32 {
    ndisc_tx(
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
        Hook::Kprobe,
    );
    0
}

#[fentry(function = "ndisc_rcv")]
pub fn ndisc_rx_fentry(ctx: FEntryContext) -> u32 {
    ndisc_rx(ctx.arg(0), Hook::Fentry);
    0
}

#[kprobe]
pub fn ndisc_rx_kprobe(ctx: ProbeContext) -> u32 {
    ndisc_rx(ctx.arg(0).unwrap_or(0), Hook::Kprobe);
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
