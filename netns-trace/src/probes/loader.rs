//! Loads the eBPF object, hands it the BTF-resolved offsets, and walks each probe's chain
//! until one link attaches. Programs of links that are not chosen are never attached, and
//! everything is released when [`Tracer`] drops (aya closes the fds: nothing is pinned).
use std::collections::BTreeSet;
use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, FEntry, FExit, KProbe, ProgramError, TracePoint, kprobe::KProbeError,
    },
};
use netns_trace_common::{
    EventKind, NetnsId, PacketBudget,
    offsets::{GLOBAL_NAME, KernelOffsets, MISSING, Offset},
};

/// EVENTS' size in the object (netns-trace-ebpf/src/maps.rs) when --ring-size leaves it.
const DEFAULT_RING_BYTES: u32 = 4 * 1024 * 1024;
/// The probes wake the reader only once this much is unread (netns-trace-ebpf/src/emit.rs);
/// below it the reader polls (live::pipeline::POLL_INTERVAL).
const WAKEUP_GLOBAL: &str = "WAKEUP_AT_BYTES";
/// Packet records all namespaces together may send at once and per second
/// (netns-trace-ebpf/src/emit.rs), from the ring's size.
const PACKET_RECORDS_GLOBAL: &str = "PACKET_RECORDS_ALL";
use serde::Serialize;

use super::btf::{KernelBtf, MemberError, Resolved, VMLINUX_BTF, kallsyms_address};
use super::registry::{Attach, Link, Mechanism, PROBES, ProbeSpec, Requires};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Privileges(String),
    #[error(transparent)]
    Btf(#[from] super::btf::BtfError),
    #[error("cannot load the eBPF object: {0}")]
    Object(String),
    #[error("no probe could be attached on this kernel; run `netns-trace probes` to see why")]
    NothingAttached,
    #[error("unknown probe name(s) in --disable-probe: {0} (see `netns-trace probes`)")]
    UnknownProbe(String),
}

/// Which mechanisms may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ModeRequest {
    /// Best available per probe: fentry/fexit, then kprobes, then tracepoints.
    #[default]
    Auto,
    /// Only tracepoints (what locked-down kernels allow).
    Tracepoint,
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub mode: ModeRequest,
    pub disabled: Vec<String>,
    /// Ring buffer size in bytes (power of two, ≥ page size).
    pub ring_size: u32,
    /// Let the probes log their first hit (`--debug-probes`), to check the diagnostics path.
    pub debug_probes: bool,
}

/// Outcome of one probe on this kernel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProbeStatus {
    pub name: &'static str,
    pub purpose: &'static str,
    /// "attached", "unavailable" or "disabled".
    pub status: &'static str,
    pub mechanism: Option<Mechanism>,
    /// The hooks attached, e.g. ["fexit:copy_net_ns"].
    pub targets: Vec<String>,
    /// Why better links (or all of them) did not work.
    pub detail: Vec<String>,
}

impl ProbeStatus {
    pub fn is_attached(&self) -> bool {
        self.status == "attached"
    }
}

/// "full" when any probe runs on fentry/kprobe, else "tracepoint".
pub fn probe_mode(statuses: &[ProbeStatus]) -> &'static str {
    if statuses
        .iter()
        .any(|s| matches!(s.mechanism, Some(Mechanism::Fentry | Mechanism::Kprobe)))
    {
        "full"
    } else {
        "tracepoint"
    }
}

pub struct Tracer {
    pub ebpf: Ebpf,
    /// Taken by the reader (live::source) before anything consumes events.
    pub ring: Option<RingBuf<MapData>>,
    pub lost: PerCpuArray<MapData, u64>,
    /// Each namespace's packet-record budget (PACKET_BUDGETS), read for what it limited.
    pub packet_budgets: BpfHashMap<MapData, NetnsId, PacketBudget>,
    pub statuses: Vec<ProbeStatus>,
    pub offsets: KernelOffsets,
    /// Members this kernel lacks, by name.
    pub missing_offsets: Vec<(Offset, MemberError)>,
    /// The programs' diagnostics (aya-log), taken by whoever polls them (live::pipeline).
    pub logger: Option<super::diag::ProbeLogger>,
}

impl Tracer {
    pub fn mode(&self) -> &'static str {
        probe_mode(&self.statuses)
    }

    pub fn attached(&self, name: &str) -> Option<&ProbeStatus> {
        self.statuses
            .iter()
            .find(|s| s.name == name && s.is_attached())
    }

    /// Cumulative lost records per kind, summed over CPUs.
    pub fn lost_counts(&self) -> Vec<(u16, u64)> {
        (0..EventKind::SLOTS)
            .filter_map(|k| {
                let values = self.lost.get(&k, 0).ok()?;
                let total: u64 = values.iter().sum();
                (total > 0).then_some((k as u16, total))
            })
            .collect()
    }

    /// Cumulative packet records each namespace had counted instead of sent (those with any).
    /// A namespace evicted from the LRU map and seen again starts from zero.
    pub fn packets_limited(&self) -> Vec<(NetnsId, u64)> {
        self.packet_budgets
            .iter()
            .filter_map(|entry| entry.ok())
            .filter(|(_, budget)| budget.limited > 0)
            .map(|(netns, budget)| (netns, budget.limited))
            .collect()
    }
}

/// Packet records all namespaces together may send at once and per second: a
/// [`netns_trace_common::PACKET_RING_SHARE`] share of a ring of `ring_bytes` (each record
/// takes its size and the ring's 8-byte header; counted at the largest packet record, ND's,
/// so that no mix of ARP, ND and neighbour records exceeds the share).
pub fn packet_records_all(ring_bytes: u32) -> u64 {
    use netns_trace_common::{Arp, Ndisc, NeighUpdate};
    let largest = size_of::<Arp>()
        .max(size_of::<Ndisc>())
        .max(size_of::<NeighUpdate>());
    let record = (largest + 8) as u64;
    (u64::from(ring_bytes / netns_trace_common::PACKET_RING_SHARE) / record).max(1)
}

/// Capabilities needed to load and attach: CAP_BPF and CAP_PERFMON (5.8+), or CAP_SYS_ADMIN.
pub fn check_privileges() -> Result<(), LoadError> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |c: u32| eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let mut lacking = Vec::new();
    if !has(CAP_BPF) {
        lacking.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        lacking.push("CAP_PERFMON");
    }
    Err(LoadError::Privileges(format!(
        "netns-trace needs root, or CAP_BPF and CAP_PERFMON, to load its probes; this process lacks {} (run it with sudo)",
        lacking.join(" and ")
    )))
}

/// The init namespace's inode (its tasks are not membership-tracked): pid 1's, or ours where
/// pid 1 is hidden from us (netns-trace runs with the host network).
pub fn init_net_inum() -> u32 {
    use std::os::unix::fs::MetadataExt;
    ["/proc/1/ns/net", "/proc/self/ns/net"]
        .iter()
        .find_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.ino() as u32)
        .unwrap_or(0)
}

/// Resolves what the programs need on the running kernel: offsets, symbols, init netns.
pub fn resolve_kernel(btf: &KernelBtf) -> Resolved {
    let mut resolved = btf.resolve();
    resolved.offsets.cleanup_net_addr = kallsyms_address("cleanup_net");
    resolved.offsets.init_net_inum = init_net_inum();
    resolved.offsets.self_tgid = std::process::id();
    resolved
}

fn link_precondition(link: &Link, resolved: &Resolved, btf: &KernelBtf) -> Result<(), String> {
    for &need in link.needs {
        if resolved.offsets.get(need) == MISSING {
            let why = resolved
                .missing
                .get(&need)
                .map_or_else(|| "unresolved".into(), MemberError::to_string);
            return Err(format!("needs {need}: {why}"));
        }
    }
    if link.requires == Requires::CleanupNetSymbol && resolved.offsets.cleanup_net_addr == 0 {
        return Err("cleanup_net is not visible in /proc/kallsyms".into());
    }
    for a in link.attaches {
        match *a {
            Attach::Fentry { function, .. } | Attach::Fexit { function, .. }
                if !btf.has_function(function) =>
            {
                return Err(format!(
                    "{function} is not in this kernel's BTF (inlined or renamed)"
                ));
            }
            Attach::BtfTracepoint { event, .. } | Attach::PacketTracepoint { event, .. }
                if !btf.has_btf_tracepoint(event) =>
            {
                return Err(format!("tracepoint {event} is not in this kernel's BTF"));
            }
            _ => {}
        }
    }
    Ok(())
}

enum AttachedLink {
    Fentry(&'static str, aya::programs::fentry::FEntryLinkId),
    Fexit(&'static str, aya::programs::fexit::FExitLinkId),
    Kprobe(&'static str, aya::programs::kprobe::KProbeLinkId),
    BtfTp(&'static str, aya::programs::tp_btf::BtfTracePointLinkId),
    Tp(&'static str, aya::programs::trace_point::TracePointLinkId),
    /// A packet tracepoint program this link attached, recording `family`.
    PacketTp(
        &'static str,
        aya::programs::tp_btf::BtfTracePointLinkId,
        u32,
    ),
    /// A packet tracepoint program another probe had attached, now recording `family` too.
    PacketFamily(u32),
}

/// Name of the packet-family switch map (netns-trace-ebpf/src/maps.rs).
const PACKET_FAMILIES_MAP: &str = "PACKET_FAMILIES";

/// The packet tracepoint programs attached so far (each once, whichever probes share it) and
/// the families they record, mirrored in the PACKET_FAMILIES map.
#[derive(Default)]
struct PacketPrograms {
    attached: BTreeSet<&'static str>,
    families: u32,
}

impl PacketPrograms {
    /// Records `families` from now on.
    fn set(&mut self, ebpf: &mut Ebpf, families: u32) -> Result<(), String> {
        let map = ebpf
            .map_mut(PACKET_FAMILIES_MAP)
            .ok_or_else(|| format!("{PACKET_FAMILIES_MAP} map missing"))?;
        let mut switch = aya::maps::Array::<_, u32>::try_from(map).map_err(|e| e.to_string())?;
        switch.set(0, families, 0).map_err(|e| e.to_string())?;
        self.families = families;
        Ok(())
    }
}

/// Why a program of a link could not be loaded or attached. The Display is the one-line
/// reason `probes` shows, with aya's error shortened; the error itself stays the source.
#[derive(Debug, thiserror::Error)]
enum AttachError {
    #[error("program {0} missing from the object")]
    NotInObject(&'static str),
    #[error("{}", Brief(.0))]
    ProgramType(#[source] ProgramError),
    #[error("cannot switch packet families: {0}")]
    Switch(String),
    #[error("load {program}: {}", Brief(.source))]
    Load {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    /// `target` as the kernel names it: `fentry:copy_net_ns`, `syscalls:sys_enter_mount`.
    #[error("attach {target}: {}", Brief(.source))]
    Attach {
        target: String,
        #[source]
        source: ProgramError,
    },
}

/// Kernel refusals that read better in words than as aya's paths and errnos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("this kernel has no kprobe support (CONFIG_KPROBES off)")]
    NoKprobes,
    #[error("the kernel refused to load it (EPERM: lockdown or a missing capability)")]
    NotPermitted,
}

impl Refusal {
    fn of(e: &ProgramError) -> Option<Self> {
        match e {
            // aya learns the kprobe PMU's type from /sys/bus/event_source/devices/kprobe/type.
            ProgramError::KProbeError(KProbeError::FileError { filename, .. })
                if filename.ends_with("devices/kprobe/type") =>
            {
                Some(Refusal::NoKprobes)
            }
            ProgramError::LoadError { io_error, .. }
                if io_error.raw_os_error() == Some(libc::EPERM) =>
            {
                Some(Refusal::NotPermitted)
            }
            _ => None,
        }
    }
}

/// aya's error as one short line: a known refusal in words, else the error and its sources.
struct Brief<'a>(&'a ProgramError);

impl std::fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Refusal::of(self.0) {
            Some(refusal) => write!(f, "{refusal}"),
            None => f.write_str(&chain(self.0)),
        }
    }
}

fn attach_one(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    packets: &mut PacketPrograms,
    a: &Attach,
) -> Result<AttachedLink, AttachError> {
    if let Attach::PacketTracepoint {
        program,
        event,
        family,
    } = *a
    {
        return attach_packet(ebpf, btf, packets, program, event, family);
    }
    let name = a.program();
    let prog = ebpf
        .program_mut(name)
        .ok_or(AttachError::NotInObject(name))?;
    let load = |program| move |source| AttachError::Load { program, source };
    let attach = |target: String| move |source| AttachError::Attach { target, source };
    match *a {
        Attach::Fentry { program, function } => {
            let p: &mut FEntry = prog.try_into().map_err(AttachError::ProgramType)?;
            if p.fd().is_err() {
                p.load(function, btf).map_err(load(program))?;
            }
            p.attach()
                .map(|id| AttachedLink::Fentry(program, id))
                .map_err(attach(format!("fentry:{function}")))
        }
        Attach::Fexit { program, function } => {
            let p: &mut FExit = prog.try_into().map_err(AttachError::ProgramType)?;
            if p.fd().is_err() {
                p.load(function, btf).map_err(load(program))?;
            }
            p.attach()
                .map(|id| AttachedLink::Fexit(program, id))
                .map_err(attach(format!("fexit:{function}")))
        }
        Attach::Kprobe { program, function } | Attach::Kretprobe { program, function } => {
            let p: &mut KProbe = prog.try_into().map_err(AttachError::ProgramType)?;
            if p.fd().is_err() {
                p.load().map_err(load(program))?;
            }
            p.attach(function, 0)
                .map(|id| AttachedLink::Kprobe(program, id))
                .map_err(attach(a.target()))
        }
        Attach::BtfTracepoint { program, event } => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(AttachError::ProgramType)?;
            if p.fd().is_err() {
                p.load(event, btf).map_err(load(program))?;
            }
            p.attach()
                .map(|id| AttachedLink::BtfTp(program, id))
                .map_err(attach(format!("tp_btf:{event}")))
        }
        Attach::Tracepoint {
            program,
            category,
            name,
        } => {
            let p: &mut TracePoint = prog.try_into().map_err(AttachError::ProgramType)?;
            if p.fd().is_err() {
                p.load().map_err(load(program))?;
            }
            p.attach(category, name)
                .map(|id| AttachedLink::Tp(program, id))
                .map_err(attach(format!("{category}:{name}")))
        }
        Attach::PacketTracepoint { .. } => unreachable!("handled above"),
    }
}

/// Attaches a shared packet tracepoint program, once, and turns its `family` on: the switch
/// is set before the program runs for it, so no packet of the family is missed once attached.
fn attach_packet(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    packets: &mut PacketPrograms,
    program: &'static str,
    event: &'static str,
    family: u32,
) -> Result<AttachedLink, AttachError> {
    let before = packets.families;
    packets
        .set(ebpf, before | family)
        .map_err(AttachError::Switch)?;
    if packets.attached.contains(program) {
        return Ok(AttachedLink::PacketFamily(family));
    }
    let attached = (|| {
        let prog = ebpf
            .program_mut(program)
            .ok_or(AttachError::NotInObject(program))?;
        let p: &mut BtfTracePoint = prog.try_into().map_err(AttachError::ProgramType)?;
        if p.fd().is_err() {
            p.load(event, btf)
                .map_err(|source| AttachError::Load { program, source })?;
        }
        p.attach().map_err(|source| AttachError::Attach {
            target: format!("tp_btf:{event}"),
            source,
        })
    })();
    match attached {
        Ok(id) => {
            packets.attached.insert(program);
            Ok(AttachedLink::PacketTp(program, id, family))
        }
        Err(e) => {
            let _ = packets.set(ebpf, before);
            Err(e)
        }
    }
}

/// An error with its sources, shortened: the kernel's errno is usually two levels down, and
/// aya nests the verifier log in there too.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        // aya often repeats its source in its own message.
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    let mut s = parts.join(": ");
    if s.len() > 300 {
        // Cut on a character boundary: a kernel or aya message may not be ASCII.
        let cut = (0..=300)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn detach(ebpf: &mut Ebpf, packets: &mut PacketPrograms, link: AttachedLink) {
    let _ = match link {
        AttachedLink::Fentry(p, id) => ebpf
            .program_mut(p)
            .and_then(|p| <&mut FEntry>::try_from(p).ok())
            .map(|p| p.detach(id)),
        AttachedLink::Fexit(p, id) => ebpf
            .program_mut(p)
            .and_then(|p| <&mut FExit>::try_from(p).ok())
            .map(|p| p.detach(id)),
        AttachedLink::Kprobe(p, id) => ebpf
            .program_mut(p)
            .and_then(|p| <&mut KProbe>::try_from(p).ok())
            .map(|p| p.detach(id)),
        AttachedLink::BtfTp(p, id) => ebpf
            .program_mut(p)
            .and_then(|p| <&mut BtfTracePoint>::try_from(p).ok())
            .map(|p| p.detach(id)),
        AttachedLink::Tp(p, id) => ebpf
            .program_mut(p)
            .and_then(|p| <&mut TracePoint>::try_from(p).ok())
            .map(|p| p.detach(id)),
        AttachedLink::PacketTp(p, id, family) => {
            let _ = packets.set(ebpf, packets.families & !family);
            packets.attached.remove(p);
            ebpf.program_mut(p)
                .and_then(|p| <&mut BtfTracePoint>::try_from(p).ok())
                .map(|p| p.detach(id))
        }
        AttachedLink::PacketFamily(family) => {
            let _ = packets.set(ebpf, packets.families & !family);
            None
        }
    };
}

fn try_link(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    packets: &mut PacketPrograms,
    link: &Link,
) -> Result<Vec<String>, AttachError> {
    let mut done = Vec::new();
    for a in link.attaches {
        match attach_one(ebpf, btf, packets, a) {
            Ok(l) => done.push(l),
            Err(e) => {
                for l in done {
                    detach(ebpf, packets, l);
                }
                return Err(e);
            }
        }
    }
    Ok(link.attaches.iter().map(|a| a.target()).collect())
}

fn attach_probe(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    packets: &mut PacketPrograms,
    kbtf: &KernelBtf,
    resolved: &Resolved,
    spec: &ProbeSpec,
    opts: &LoadOptions,
) -> ProbeStatus {
    let mut detail = Vec::new();
    for link in spec.chain {
        let label = format!(
            "{}[{}]",
            link.mechanism.as_str(),
            link.attaches
                .iter()
                .map(|a| a.target())
                .collect::<Vec<_>>()
                .join(",")
        );
        if opts.mode == ModeRequest::Tracepoint && link.mechanism != Mechanism::Tracepoint {
            detail.push(format!("{label}: skipped (--mode tracepoint)"));
            continue;
        }
        if let Err(why) = link_precondition(link, resolved, kbtf) {
            detail.push(format!("{label}: {why}"));
            continue;
        }
        match try_link(ebpf, btf, packets, link) {
            Ok(targets) => {
                return ProbeStatus {
                    name: spec.name,
                    purpose: spec.purpose,
                    status: "attached",
                    mechanism: Some(link.mechanism),
                    targets,
                    detail,
                };
            }
            Err(why) => detail.push(format!("{label}: {why}")),
        }
    }
    ProbeStatus {
        name: spec.name,
        purpose: spec.purpose,
        status: "unavailable",
        mechanism: None,
        targets: vec![],
        detail,
    }
}

pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netns-trace"));

/// Loads and attaches everything this kernel allows. The ring buffer reader is taken out of
/// the object before any program attaches, so no early record is missed.
pub fn load(opts: &LoadOptions) -> Result<Tracer, LoadError> {
    check_privileges()?;
    let known: BTreeSet<&str> = PROBES.iter().map(|p| p.name).collect();
    let unknown: Vec<&str> = opts
        .disabled
        .iter()
        .map(String::as_str)
        .filter(|d| !known.contains(d))
        .collect();
    if !unknown.is_empty() {
        return Err(LoadError::UnknownProbe(unknown.join(", ")));
    }
    let kbtf = KernelBtf::load(Path::new(VMLINUX_BTF))?;
    let resolved = resolve_kernel(&kbtf);
    let aya_btf =
        aya::Btf::from_sys_fs().map_err(|e| LoadError::Object(format!("aya BTF: {e}")))?;

    // 6.18 charges BPF memory to memcg; raising RLIMIT_MEMLOCK may fail without
    // CAP_SYS_RESOURCE, which is fine there and worth a note elsewhere.
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; relying on memcg accounting");
    }

    let debug_probes = u32::from(opts.debug_probes);
    let ring_bytes = if opts.ring_size != 0 {
        opts.ring_size
    } else {
        DEFAULT_RING_BYTES
    };
    let wakeup_at = u64::from(ring_bytes / 8);
    let packet_records_all = packet_records_all(ring_bytes);
    let mut loader = EbpfLoader::new();
    loader
        .btf(Some(&aya_btf))
        .override_global(GLOBAL_NAME, &resolved.offsets, true)
        .override_global(super::diag::DEBUG_GLOBAL, &debug_probes, true)
        .override_global(WAKEUP_GLOBAL, &wakeup_at, true)
        .override_global(PACKET_RECORDS_GLOBAL, &packet_records_all, true);
    if opts.ring_size != 0 {
        loader.map_max_entries("EVENTS", opts.ring_size);
    }
    let object = super::diag::sanitize_btf_names(EBPF_OBJECT);
    let mut ebpf = loader
        .load(object.bytes())
        .map_err(|e| LoadError::Object(chain(&e)))?;

    let ring = RingBuf::try_from(
        ebpf.take_map("EVENTS")
            .ok_or_else(|| LoadError::Object("EVENTS map missing".into()))?,
    )
    .map_err(|e| LoadError::Object(e.to_string()))?;
    let lost = PerCpuArray::try_from(
        ebpf.take_map("LOST")
            .ok_or_else(|| LoadError::Object("LOST map missing".into()))?,
    )
    .map_err(|e| LoadError::Object(e.to_string()))?;
    let packet_budgets = BpfHashMap::try_from(
        ebpf.take_map("PACKET_BUDGETS")
            .ok_or_else(|| LoadError::Object("PACKET_BUDGETS map missing".into()))?,
    )
    .map_err(|e| LoadError::Object(e.to_string()))?;
    let logger = super::diag::ProbeLogger::init(&mut ebpf);

    let mut statuses = Vec::new();
    let mut packets = PacketPrograms::default();
    for spec in PROBES {
        if opts.disabled.iter().any(|d| d == spec.name) {
            statuses.push(ProbeStatus {
                name: spec.name,
                purpose: spec.purpose,
                status: "disabled",
                mechanism: None,
                targets: vec![],
                detail: vec!["--disable-probe".into()],
            });
            continue;
        }
        let status = attach_probe(
            &mut ebpf,
            &aya_btf,
            &mut packets,
            &kbtf,
            &resolved,
            spec,
            opts,
        );
        if !status.is_attached() {
            tracing::info!(
                probe = spec.name,
                "unavailable on this kernel: {}",
                status.detail.join("; ")
            );
        }
        statuses.push(status);
    }
    if !statuses.iter().any(ProbeStatus::is_attached) {
        return Err(LoadError::NothingAttached);
    }
    let mut missing_offsets: Vec<_> = resolved.missing.into_iter().collect();
    // By name, the order `probes --json` has always listed them in.
    missing_offsets.sort_by_key(|(member, _)| member.name());
    Ok(Tracer {
        ebpf,
        ring: Some(ring),
        lost,
        packet_budgets,
        statuses,
        offsets: resolved.offsets,
        missing_offsets,
        logger,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kprobe_file_error(filename: &str) -> ProgramError {
        ProgramError::KProbeError(KProbeError::FileError {
            filename: filename.into(),
            io_error: std::io::Error::from_raw_os_error(libc::ENOENT),
        })
    }

    #[test]
    fn a_missing_kprobe_pmu_reads_as_no_kprobe_support() {
        let e = AttachError::Attach {
            target: "kprobe:copy_net_ns".into(),
            source: kprobe_file_error("/sys/bus/event_source/devices/kprobe/type"),
        };
        assert_eq!(
            e.to_string(),
            "attach kprobe:copy_net_ns: this kernel has no kprobe support (CONFIG_KPROBES off)"
        );
        // Any other file aya fails to read is shown as aya says it, with the errno.
        let source = kprobe_file_error("/sys/bus/event_source/devices/kprobe/format/retprobe");
        assert_eq!(Refusal::of(&source), None);
        let e = AttachError::Attach {
            target: "kretprobe:copy_net_ns".into(),
            source,
        };
        assert_eq!(
            e.to_string(),
            "attach kretprobe:copy_net_ns: `/sys/bus/event_source/devices/kprobe/format/retprobe`: \
             No such file or directory (os error 2)"
        );
    }
}
