//! Constants from the kernel UAPI that both sides need.

/// `CLONE_NEWNET` from `<linux/sched.h>`.
pub const CLONE_NEWNET: u64 = 0x4000_0000;
/// `CLONE_NEWNS` from `<linux/sched.h>`.
pub const CLONE_NEWNS: u64 = 0x0002_0000;
/// `CLONE_THREAD` from `<linux/sched.h>`.
pub const CLONE_THREAD: u64 = 0x0001_0000;
/// `NSFS_MAGIC` from `<linux/magic.h>`: superblock magic of the nsfs pseudo filesystem.
pub const NSFS_MAGIC: u64 = 0x6e73_6673;
/// `ETH_P_ARP`, host order.
pub const ETH_P_ARP: u16 = 0x0806;
/// `ETH_P_IPV6`, host order.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// `IPPROTO_ICMPV6`: the IPv6 next-header value of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// `AF_INET`.
pub const AF_INET: u32 = 2;
/// Longest errno the kernel returns as an `ERR_PTR`.
pub const MAX_ERRNO: u64 = 4095;
