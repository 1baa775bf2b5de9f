//! Maps shared by all programs. Sizes are defaults; userspace may resize EVENTS (--ring-size).
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use netns_trace_common::{
    EventKind, MountSyscall, NetnsId, PACKET_BUDGET_NAMESPACES, PacketBudget,
};

/// The one event pipe to userspace.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Per-CPU count of records dropped because EVENTS was full, indexed by record kind.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(EventKind::SLOTS, 0);

/// Each namespace's packet-record budget (see [`PacketBudget`]). LRU: bounded however many
/// namespaces send packets.
#[map]
pub static PACKET_BUDGETS: LruHashMap<NetnsId, PacketBudget> =
    LruHashMap::with_max_entries(PACKET_BUDGET_NAMESPACES, 0);

/// The budget of all namespaces together (one slot), see [`PACKET_RING_SHARE`].
///
/// [`PACKET_RING_SHARE`]: netns_trace_common::PACKET_RING_SHARE
#[map]
pub static PACKET_BUDGET_ALL: Array<PacketBudget> = Array::with_max_entries(1, 0);

/// Which packet families (bits of [`netns_trace_common::packet_families`]) the shared packet
/// tracepoint programs record: set by the loader for each probe whose tracepoint link it
/// attaches, so a family whose probe runs on fentry/kprobe (or is disabled) is not recorded
/// twice. Read only after a packet's protocol matched.
#[map]
pub static PACKET_FAMILIES: Array<u32> = Array::with_max_entries(1, 0);

/// `struct net *` → identity, for every namespace we have seen, so that a free (which only
/// has the pointer) can be attributed. LRU: a missed free must not leak map space.
#[map]
pub static TRACKED_NETS: LruHashMap<u64, NetnsId> = LruHashMap::with_max_entries(65536, 0);

/// The `kmem_cache_free` call site seen on the first free of a tracked net: afterwards only
/// frees from that call site pay for a hash lookup.
#[map]
pub static NET_CACHE: Array<u64> = Array::with_max_entries(1, 0);

/// State saved at syscall entry (unshare/setns), keyed by thread id.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NsBefore {
    pub net_ptr: u64,
    pub netns: NetnsId,
    pub mnt_ns: u32,
    pub _pad: u32,
}

#[map]
pub static NS_BEFORE: HashMap<u32, NsBefore> = HashMap::with_max_entries(16384, 0);

/// Mount-family syscall arguments saved at entry, keyed by thread id.
#[map]
pub static PENDING_MOUNTS: HashMap<u32, MountSyscall> = HashMap::with_max_entries(4096, 0);

/// Scratch space for records too large for the 512-byte BPF stack.
#[map]
pub static MOUNT_SCRATCH: PerCpuArray<MountSyscall> = PerCpuArray::with_max_entries(1, 0);

/// kprobe fallbacks: the entry argument a kretprobe needs, keyed by thread id.
#[map]
pub static ENTRY_ARGS: HashMap<u32, [u64; 2]> = HashMap::with_max_entries(16384, 0);
