//! Devices and IPv4 addresses (full mode; tracepoint mode reads them from snapshots).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use netns_trace_common::{AddrOp, EventKind, Ipv4Addr, NetDev, NetDevOp, NetnsId};

use crate::{
    emit::{header, send},
    kernel::{dev_ifindex, dev_mac, dev_name, dev_net, net_id, off, read, read_bytes, read_ptr},
    maps::ENTRY_ARGS,
};

#[inline(always)]
fn emit_dev(op: NetDevOp, dev: u64, netns: NetnsId, other: NetnsId) {
    let mut rec = NetDev {
        hdr: header(EventKind::NetDev, size_of::<NetDev>(), netns),
        op: op as u32,
        ifindex: dev_ifindex(dev),
        other,
        ..Default::default()
    };
    let mut mac = [0u8; 6];
    dev_mac(dev, &mut mac);
    rec.mac[..6].copy_from_slice(&mac);
    dev_name(dev, &mut rec.name);
    send(EventKind::NetDev, rec);
}

#[inline(always)]
fn on_registered(dev: u64, ret: i64) {
    if ret == 0 && dev != 0 {
        emit_dev(
            NetDevOp::Register,
            dev,
            net_id(dev_net(dev)),
            NetnsId::default(),
        );
    }
}

/// fexit `int register_netdevice(struct net_device *dev)`, stable 5.10 … 6.18. On exit
/// the ifindex is assigned. veth_newlink calls it for both ends.
#[fexit(function = "register_netdevice")]
pub fn netdev_register_fexit(ctx: FExitContext) -> u32 {
    let ret: i64 = ctx.arg(1);
    on_registered(ctx.arg(0), ret as i32 as i64);
    0
}

#[kprobe]
pub fn netdev_register_kprobe(ctx: ProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = ENTRY_ARGS.insert(&tid, &[ctx.arg(0).unwrap_or(0), 0], 0);
    0
}

#[kretprobe]
pub fn netdev_register_kretprobe(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(args) = (unsafe { ENTRY_ARGS.get(&tid) }).copied() else {
        return 0;
    };
    let _ = ENTRY_ARGS.remove(&tid);
    let ret: i64 = ctx.ret();
    on_registered(args[0], ret as i32 as i64);
    0
}

/// fentry `void unregister_netdevice_queue(struct net_device *dev, struct list_head *head)`:
/// per device, exported (so out of line), used by dellink and by netns teardown.
#[fentry(function = "unregister_netdevice_queue")]
pub fn netdev_unregister_fentry(ctx: FEntryContext) -> u32 {
    let dev: u64 = ctx.arg(0);
    emit_dev(
        NetDevOp::Unregister,
        dev,
        net_id(dev_net(dev)),
        NetnsId::default(),
    );
    0
}

#[kprobe]
pub fn netdev_unregister_kprobe(ctx: ProbeContext) -> u32 {
    let dev: u64 = ctx.arg(0).unwrap_or(0);
    emit_dev(
        NetDevOp::Unregister,
        dev,
        net_id(dev_net(dev)),
        NetnsId::default(),
    );
    0
}

/// fentry `int __dev_change_net_namespace(struct net_device *dev, struct net *net,
/// const char *pat, int new_ifindex)` (5.13+; 6.18 adds `struct netlink_ext_ack *`).
/// Seen at entry, where the device still belongs to its old namespace.
#[fentry(function = "__dev_change_net_namespace")]
pub fn netdev_move_fentry(ctx: FEntryContext) -> u32 {
    let dev: u64 = ctx.arg(0);
    let net: u64 = ctx.arg(1);
    emit_dev(NetDevOp::Move, dev, net_id(net), net_id(dev_net(dev)));
    0
}

#[kprobe]
pub fn netdev_move_kprobe(ctx: ProbeContext) -> u32 {
    let dev: u64 = ctx.arg(0).unwrap_or(0);
    let net: u64 = ctx.arg(1).unwrap_or(0);
    emit_dev(NetDevOp::Move, dev, net_id(net), net_id(dev_net(dev)));
    0
}

#[inline(always)]
fn emit_addr(op: AddrOp, ifa: u64) {
    if ifa == 0 {
        return;
    }
    let in_dev = read_ptr(ifa, off!(ifa_dev));
    let dev = read_ptr(in_dev, off!(in_device_dev));
    let mut rec = Ipv4Addr {
        hdr: header(
            EventKind::Ipv4Addr,
            size_of::<Ipv4Addr>(),
            net_id(dev_net(dev)),
        ),
        op: op as u32,
        ifindex: dev_ifindex(dev),
        prefix_len: read::<u8>(ifa, off!(ifa_prefixlen)),
        ..Default::default()
    };
    read_bytes(ifa, off!(ifa_local), &mut rec.addr);
    read_bytes(ifa, off!(ifa_label), &mut rec.label);
    send(EventKind::Ipv4Addr, rec);
}

/// fentry `static int __inet_insert_ifa(struct in_ifaddr *ifa, struct nlmsghdr *nlh,
/// u32 portid, struct netlink_ext_ack *extack)` (5.10 … 6.18). Static: on builds where it
/// is inlined the chain falls through to "unavailable" and snapshots supply addresses.
#[fentry(function = "__inet_insert_ifa")]
pub fn ipv4_add_fentry(ctx: FEntryContext) -> u32 {
    emit_addr(AddrOp::Add, ctx.arg(0));
    0
}

#[kprobe]
pub fn ipv4_add_kprobe(ctx: ProbeContext) -> u32 {
    emit_addr(AddrOp::Add, ctx.arg(0).unwrap_or(0));
    0
}

/// fentry `static void __inet_del_ifa(struct in_device *in_dev, struct in_ifaddr __rcu
/// **ifap, int destroy, struct nlmsghdr *nlh, u32 portid)`; the address is `*ifap`.
#[fentry(function = "__inet_del_ifa")]
pub fn ipv4_del_fentry(ctx: FEntryContext) -> u32 {
    let ifap: u64 = ctx.arg(1);
    emit_addr(AddrOp::Del, read_ptr(ifap, 0));
    0
}

#[kprobe]
pub fn ipv4_del_kprobe(ctx: ProbeContext) -> u32 {
    let ifap: u64 = ctx.arg(1).unwrap_or(0);
    emit_addr(AddrOp::Del, read_ptr(ifap, 0));
    0
}
