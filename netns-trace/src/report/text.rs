//! Text rendering of a [`Report`].
use std::io::Write;
use std::net::IpAddr;

use super::story::{Story, StoryEvent};
use super::{ClockBase, NamespaceView, Report, ReportError};
use crate::collector::cni_calls::{CniCall, CniTarget};
use crate::collector::cni_gc::{CniGcCandidate, CniGcReason};
use crate::collector::findings::{InterfaceEvidence, PinEvidence};
use crate::collector::{FindingDetail, NsState, PinKind};
use crate::collector::{Origin, VerdictReason};
use crate::model::terminal_safe as safe;
use crate::snapshot::{AgeEstimate, AgeSource};

fn secs(ns: u64) -> String {
    format!("{}.{:09}s", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// `T ns (RFC 3339)` for evidence lines.
fn at(clock: Option<ClockBase>, ns: u64) -> String {
    match clock {
        Some(c) => format!("{ns} ns ({})", c.rfc3339(ns)),
        None => format!("{ns} ns ({} monotonic)", secs(ns)),
    }
}

/// Compact time for the table: wall clock when known, else monotonic seconds.
fn short(clock: Option<ClockBase>, ns: u64) -> String {
    match clock {
        Some(c) => c.rfc3339(ns),
        None => format!("{:.3}s", ns as f64 / 1e9),
    }
}

fn duration(ns: u64) -> String {
    let d = std::time::Duration::from_millis(ns / 1_000_000);
    if d.is_zero() {
        format!("{}us", ns / 1000)
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// One CNI call on one line: verb, plugin, pid and parent, start and end, sandbox, interface,
/// CNI_NETNS and what it named, pod. Runtime- and pod-given text is escaped.
/// What a netns path named, for `PATH -> …`.
fn named(clock: Option<ClockBase>, target: &CniTarget) -> String {
    match target {
        CniTarget::Member { pid, netns } => format!("{netns} (member {pid})"),
        CniTarget::Pin { netns } => format!("{netns} (pinned)"),
        CniTarget::ExitedProcess {
            pid,
            netns,
            exited_at_ns,
        } => format!(
            "nothing: process {pid} had left {netns} by exiting at {}",
            at(clock, *exited_at_ns)
        ),
        CniTarget::NoPath | CniTarget::Unresolved => "nothing known".into(),
    }
}

/// One cached attachment of the CNI GC dry run: what it is, then why it is stale and what
/// holds its namespace.
fn cni_gc_entry(
    out: &mut impl Write,
    clock: Option<ClockBase>,
    g: &CniGcCandidate,
) -> Result<(), ReportError> {
    let mut line = format!(
        "{} sandbox {} {}",
        safe(&g.network),
        safe(&g.container_id),
        safe(&g.if_name)
    );
    match g.netns.path.as_deref() {
        Some(p) => line.push_str(&format!(
            ", netns {} -> {}",
            safe(p),
            named(clock, &g.netns.resolves_to)
        )),
        None => line.push_str(", no netns path cached"),
    }
    if let (Some(id), Some(state)) = (&g.netns.id, g.netns.state) {
        line.push_str(&format!(", namespace {id} ({state})"));
    }
    if !g.ips.is_empty() {
        let ips: Vec<String> = g
            .ips
            .iter()
            .map(|ip| format!("{}/{}", ip.address, ip.prefix_len))
            .collect();
        line.push_str(&format!(", IPs {}", ips.join(" ")));
    }
    if let (Some(n), Some(p)) = (&g.pod_namespace, &g.pod_name) {
        line.push_str(&format!(", pod {}/{}", safe(n), safe(p)));
    }
    writeln!(out, "{line}")?;
    let why: Vec<String> = g
        .reasons
        .iter()
        .map(|r| match r {
            CniGcReason::DelReturned { at_ns, status } => format!(
                "its DEL returned ({status}) at {} and the entry is still cached",
                at(clock, *at_ns)
            ),
            CniGcReason::NetnsPathDead => "its netns path names no live namespace".into(),
            CniGcReason::NetnsDestroyed { netns, .. } => {
                format!("its namespace {netns} is destroyed")
            }
            CniGcReason::NetnsLeaked { netns, state } => {
                format!("its namespace {netns} has no member and is {state}")
            }
        })
        .collect();
    writeln!(out, "    stale: {}", why.join("; "))?;
    for p in &g.pins {
        writeln!(out, "    held by {}", pin_line(p))?;
    }
    Ok(())
}

fn cni_call(clock: Option<ClockBase>, c: &CniCall) -> String {
    let mut s = format!(
        "{} {} (pid {}{}) at {}",
        safe(&c.verb),
        c.plugin.comm,
        c.plugin.tgid,
        c.parent
            .map(|p| format!(", parent {p}"))
            .unwrap_or_default(),
        at(clock, c.at_ns)
    );
    match c.end {
        Some(e) => s.push_str(&format!(", {} at {}", e.status, at(clock, e.at_ns))),
        None => s.push_str(", no end seen"),
    }
    if let Some(id) = &c.container_id {
        s.push_str(&format!(", sandbox {}", safe(id)));
    }
    if let Some(i) = &c.if_name {
        s.push_str(&format!(", {}", safe(i)));
    }
    if let Some(p) = c.netns_path.as_deref().filter(|p| !p.is_empty()) {
        let named = named(clock, &c.target);
        s.push_str(&format!(", CNI_NETNS {} -> {named}", safe(p)));
    }
    if let (Some(n), Some(p)) = (&c.pod_namespace, &c.pod_name) {
        s.push_str(&format!(", pod {}/{}", safe(n), safe(p)));
    }
    if !c.truncated.is_empty() {
        let cut: Vec<&str> = c.truncated.iter().map(|v| v.name()).collect();
        s.push_str(&format!(" [cut: {}]", cut.join(", ")));
    }
    s
}

fn interface_line(i: &InterfaceEvidence) -> String {
    let mut addrs = i.ipv4.clone();
    addrs.extend(i.ipv6.iter().map(|a| a.to_string()));
    format!(
        "{} (ifindex {}, {}) {}",
        safe(&i.name),
        i.ifindex,
        i.mac,
        addrs.join(" ")
    )
}

fn pin_line(p: &PinEvidence) -> String {
    let what = match p.kind {
        PinKind::BindMount => format!(
            "bind mount {}{}",
            p.path.as_deref().unwrap_or("<path unknown>"),
            p.mount_ns
                .map(|m| format!(" in mnt:[{m}]"))
                .unwrap_or_default()
        ),
        PinKind::Fd => format!(
            "nsfs fd {} of pid {}",
            p.fd.unwrap_or(0),
            p.pid.unwrap_or(0)
        ),
        PinKind::Socket => format!(
            "socket fd {} of pid {}",
            p.fd.unwrap_or(0),
            p.pid.unwrap_or(0)
        ),
    };
    let by =
        p.by.as_ref()
            .map(|b| format!(", made by {} ({})", b.pid, b.comm))
            .unwrap_or_default();
    format!("{}{by}", safe(&what))
}

/// The owner cell: pod UID and a 12-character container id (as `crictl ps` shows it), else
/// the sandbox or the cgroup.
fn owner_cell(ns: &NamespaceView) -> String {
    let Some(o) = &ns.owner else {
        return "-".into();
    };
    let short_id = |id: &str| id.chars().take(12).collect::<String>();
    let mut parts = Vec::new();
    if let Some(uid) = &o.pod_uid {
        parts.push(format!("pod {uid}"));
    }
    if let Some(id) = &o.container_id {
        parts.push(format!("ctr {}", short_id(id)));
    }
    if parts.is_empty() {
        if let Some(s) = &o.sandbox_id {
            parts.push(format!("sandbox {s}"));
        } else if let Some(c) = o
            .cgroup
            .as_ref()
            .filter(|c| !c.trim_end_matches('/').is_empty())
        {
            // The root cgroup names no owner.
            parts.push(c.clone());
        }
    }
    if let Some(n) = &o.cni_network {
        parts.push(format!("net {n}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// An estimated age, to the second, and what it was read from.
fn age_cell(a: &AgeEstimate) -> String {
    let d = std::time::Duration::from_secs(a.age_ns / 1_000_000_000);
    let from = match a.source {
        AgeSource::NsfsCtime => "nsfs ctime",
        AgeSource::OldestMemberStart => "oldest member",
    };
    if d.is_zero() {
        format!("<1s ({from})")
    } else {
        format!("{} ({from})", humantime::format_duration(d))
    }
}

fn row(ns: &NamespaceView, clock: Option<ClockBase>, end: u64, scan: bool) -> [String; 9] {
    let born = ns.created_at_ns.unwrap_or(ns.first_seen_ns);
    let (created, ended) = if scan {
        // A scan saw one moment: only evidence dates a namespace.
        match &ns.age {
            Some(a) => (format!("~{}", a.born_at), age_cell(a)),
            None => ("?".into(), "unknown".into()),
        }
    } else {
        let created = match ns.created_at_ns {
            Some(t) => short(clock, t),
            None => format!("<{}", short(clock, ns.first_seen_ns)),
        };
        let ended = match ns.destroyed_at_ns {
            Some(t) => format!(
                "{} (lived {})",
                short(clock, t),
                duration(t.saturating_sub(born))
            ),
            None => format!("alive for {}", duration(end.saturating_sub(born))),
        };
        (created, ended)
    };
    let creator = ns
        .created_by
        .as_ref()
        .map(|c| format!("{} {}", c.pid, c.comm))
        .unwrap_or_else(|| "?".into());
    let last = ns
        .last_member
        .map(|m| format!("{} {}", m.pid, m.comm))
        .unwrap_or_else(|| "-".into());
    let pins = if ns.pins.is_empty() {
        "-".into()
    } else {
        ns.pins
            .iter()
            .map(|p| match p.kind {
                PinKind::BindMount => p.path.clone().unwrap_or_else(|| "mount:?".into()),
                PinKind::Fd => format!("fd {}:{}", p.pid.unwrap_or(0), p.fd.unwrap_or(0)),
                PinKind::Socket => format!("sock {}:{}", p.pid.unwrap_or(0), p.fd.unwrap_or(0)),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let ips: Vec<String> = ns
        .interfaces
        .iter()
        .flat_map(|i| {
            let v4 = i.ipv4.iter().filter(|a| !a.starts_with("127.")).cloned();
            // Link-local and loopback IPv6 addresses name no pod: global and unique-local ones.
            let v6 = i
                .ipv6
                .iter()
                .filter(|a| a.scope.identifies_holder())
                .map(|a| format!("{}/{}", a.address, a.prefix_len));
            v4.chain(v6)
        })
        .collect();
    let ips = if ips.is_empty() {
        "-".into()
    } else {
        ips.join(",")
    };
    // Pin paths and owners come from pods: every cell is escaped.
    [
        ns.id.clone(),
        ns.state.to_string(),
        created,
        ended,
        creator,
        last,
        pins,
        ips,
        owner_cell(ns),
    ]
    .map(|cell| safe(&cell).into_owned())
}

pub(super) fn render(r: &Report, out: &mut impl Write) -> Result<(), ReportError> {
    let clock = r.trace.clock;
    let end = r.trace.ended_at_ns.unwrap_or(0);
    let scan = r.scanned_at.is_some();
    let (what, when_or_mode) = match &r.scanned_at {
        Some(when) => ("scan", format!("scanned at {when}")),
        None => ("report", format!("probe mode: {}", safe(&r.probe_mode))),
    };
    writeln!(out, "netns-trace {what} ({})", r.schema)?;
    writeln!(
        out,
        "host: {}  kernel: {}  {when_or_mode}",
        safe(&r.host.hostname),
        safe(&r.host.kernel),
    )?;
    if scan {
        // No trace: no trace span, no event count, no lost events.
    } else if let (Some(s), Some(e)) = (r.trace.started_at_ns, r.trace.ended_at_ns) {
        writeln!(
            out,
            "trace: {} .. {} ({}), {} events",
            at(clock, s),
            at(clock, e),
            duration(e.saturating_sub(s)),
            r.trace.events
        )?;
    }
    if r.lost_events.total > 0 {
        let kinds: Vec<String> = r
            .lost_events
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            out,
            "LOST EVENTS: {} ({}) — findings touching these are marked uncertain",
            r.lost_events.total,
            kinds.join(", ")
        )?;
    } else if !scan {
        writeln!(out, "lost events: 0")?;
    }
    if r.summary.packet_records_limited > 0 {
        const NAMED: usize = 8;
        let noisy: Vec<&str> = r
            .namespaces
            .iter()
            .filter(|n| n.arp.records_limited > 0)
            .map(|n| n.id.as_str())
            .collect();
        let more = noisy.len().saturating_sub(NAMED);
        let mut noisy: Vec<String> = noisy.iter().take(NAMED).map(|s| s.to_string()).collect();
        if more > 0 {
            noisy.push(format!("{more} more"));
        }
        writeln!(
            out,
            "packet records limited: {} ARP/neighbour records counted, not traced, from {} \
             (their traffic outran the budget; ARP evidence from them is a floor)",
            r.summary.packet_records_limited,
            if noisy.is_empty() {
                "namespaces not listed".to_string()
            } else {
                noisy.join(", ")
            }
        )?;
    }
    let states: Vec<String> = NsState::ALL
        .iter()
        .map(|s| format!("{s} {}", r.summary.by_state.get(s).copied().unwrap_or(0)))
        .collect();
    writeln!(
        out,
        "namespaces: {} listed; {}",
        r.summary.namespaces,
        states.join(", ")
    )?;
    let dropped: u64 = r.trace.dropped_destroyed.values().sum();
    if dropped > 0 {
        writeln!(
            out,
            "  ({dropped} older destroyed namespaces not listed: retention limit)"
        )?;
    }
    if let Some(f) = &r.trace.filters {
        let mut parts = Vec::new();
        if let Some(t) = f.since_ns {
            parts.push(format!("since {}", short(clock, t)));
        }
        if let Some(t) = f.until_ns {
            parts.push(format!("until {}", short(clock, t)));
        }
        if !f.state.is_empty() {
            let states: Vec<String> = f.state.iter().map(ToString::to_string).collect();
            parts.push(format!("state {}", states.join(" or ")));
        }
        if let Some(p) = &f.pod {
            parts.push(format!("pod {}", safe(p)));
        }
        if let Some(n) = &f.netns {
            parts.push(format!("netns {}", safe(n)));
        }
        writeln!(
            out,
            "filters: {} (they choose what is listed; verdicts are the whole trace's)",
            parts.join(", ")
        )?;
    }
    let fk: Vec<String> = r
        .summary
        .findings
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    writeln!(
        out,
        "findings: {}{}{}",
        r.findings.len(),
        if fk.is_empty() {
            String::new()
        } else {
            format!(" ({})", fk.join(", "))
        },
        if r.summary.uncertain_findings > 0 {
            format!(", {} uncertain", r.summary.uncertain_findings)
        } else {
            String::new()
        }
    )?;

    writeln!(out, "\nNAMESPACES")?;
    let (created_col, lived_col) = if scan {
        ("CREATED (ESTIMATED)", "AGE (ESTIMATED FROM)")
    } else {
        ("CREATED", "DESTROYED / LIVED")
    };
    let header = [
        "ID",
        "STATE",
        created_col,
        lived_col,
        "CREATOR",
        "LAST MEMBER",
        "PINS",
        "IPV4",
        "OWNER",
    ]
    .map(String::from);
    let rows: Vec<[String; 9]> = std::iter::once(header)
        .chain(r.namespaces.iter().map(|n| row(n, clock, end, scan)))
        .collect();
    let mut widths = [0usize; 9];
    for rw in &rows {
        for (w, cell) in widths.iter_mut().zip(rw) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for rw in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in rw.iter().zip(widths).enumerate() {
            if i + 1 == rw.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }

    if r.namespaces.iter().any(|n| !n.cni_calls.is_empty()) {
        writeln!(out, "\nCNI CALLS")?;
        for n in r.namespaces.iter().filter(|n| !n.cni_calls.is_empty()) {
            writeln!(out, "{}", n.id)?;
            for c in &n.cni_calls {
                writeln!(out, "    {}", cni_call(clock, c))?;
            }
        }
    }

    if !r.cni_gc.is_empty() {
        writeln!(
            out,
            "\nCNI GC WOULD CLEAN (advice only: netns-trace runs no plugin and deletes nothing)"
        )?;
        for g in &r.cni_gc {
            cni_gc_entry(out, clock, g)?;
        }
    }

    writeln!(out, "\nFINDINGS")?;
    if r.findings.is_empty() {
        writeln!(out, "none")?;
    }
    for (i, f) in r.findings.iter().enumerate() {
        writeln!(
            out,
            "[{}] {} {}{}",
            i + 1,
            f.kind(),
            f.netns,
            if f.uncertain { "  (UNCERTAIN)" } else { "" }
        )?;
        writeln!(out, "    {}", safe(&f.summary))?;
        writeln!(out, "    raised at {}", at(clock, f.raised_at_ns))?;
        if let Some(why) = &f.uncertain_reason {
            writeln!(out, "    uncertain: {}", safe(why))?;
        }
        match &f.detail {
            FindingDetail::LeakedNetns {
                pins,
                last_member,
                failed_cleanups,
                interfaces,
                history_unknown,
                resolved_at_ns,
                owner,
                cni_calls,
            } => {
                if let Some(o) = owner {
                    let field =
                        |name: &str, v: &Option<String>| v.as_ref().map(|v| format!("{name} {v}"));
                    let fields: Vec<String> = [
                        field("pod", &o.pod_uid),
                        o.pod_namespace
                            .as_ref()
                            .zip(o.pod_name.as_ref())
                            .map(|(n, p)| format!("name {n}/{p}")),
                        field("qos", &o.qos),
                        field("container", &o.container_id),
                        field("runtime", &o.runtime),
                        field("sandbox", &o.sandbox_id),
                        field("cni network", &o.cni_network),
                        field("cgroup", &o.cgroup),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    writeln!(out, "    owner: {}", safe(&fields.join(", ")))?;
                }
                if pins.is_empty() {
                    writeln!(out, "    held by: no pin observed")?;
                }
                for p in pins {
                    writeln!(
                        out,
                        "    held by: {}, seen {}",
                        pin_line(p),
                        at(clock, p.at_ns)
                    )?;
                }
                if let Some(m) = last_member {
                    writeln!(
                        out,
                        "    last member: {} ({}) left via {:?} at {}",
                        m.pid,
                        m.comm,
                        m.how,
                        at(clock, m.exited_at_ns)
                    )?;
                }
                for u in failed_cleanups {
                    writeln!(
                        out,
                        "    failed cleanup: umount {} by {} ({}) -> errno {} at {}",
                        safe(&u.path),
                        u.by.pid,
                        u.by.comm,
                        u.errno,
                        at(clock, u.at_ns)
                    )?;
                }
                for i in interfaces {
                    writeln!(out, "    interface: {}", interface_line(i))?;
                }
                for c in cni_calls {
                    writeln!(out, "    cni: {}", cni_call(clock, c))?;
                }
                if *history_unknown {
                    writeln!(out, "    history: unknown (existed before the trace)")?;
                }
                if let Some(t) = resolved_at_ns {
                    writeln!(out, "    resolved: destroyed at {}", at(clock, *t))?;
                }
            }
            FindingDetail::DuplicateIp {
                ip,
                holders,
                involves_leaked,
            } => {
                for h in holders {
                    writeln!(
                        out,
                        "    {ip} on {} {} (ifindex {}, {}) [{}{}]",
                        h.netns,
                        safe(&h.ifname),
                        h.ifindex,
                        h.mac,
                        h.state,
                        h.dad.map(|d| format!(", {d}")).unwrap_or_default()
                    )?;
                }
                if *involves_leaked {
                    writeln!(out, "    one holder is a leaked namespace")?;
                }
            }
            FindingDetail::StaleArpReply {
                observed_at_ns,
                observed_in,
                dir,
                ifindex,
                sender_ip,
                sender_mac,
                target_ip,
                expected_mac,
                owner_netns,
                reason,
                other_macs,
                other_mac_replies,
            } => {
                let what = match sender_ip {
                    IpAddr::V4(_) => "reply",
                    IpAddr::V6(_) => "advertisement",
                };
                writeln!(
                    out,
                    "    {what} {sender_ip} is-at {sender_mac} (to {target_ip}), {dir:?} on ifindex {ifindex} in {observed_in} at {}",
                    at(clock, *observed_at_ns)
                )?;
                if let (Some(m), Some(o)) = (expected_mac, owner_netns) {
                    writeln!(out, "    expected {m} (owner {o})")?;
                }
                writeln!(out, "    reason: {reason:?}")?;
                if *other_mac_replies > 0 {
                    let listed: Vec<String> = other_macs.iter().map(|m| m.to_string()).collect();
                    writeln!(
                        out,
                        "    {other_mac_replies} later replies claimed it for other MACs: {}{}",
                        listed.join(", "),
                        if *other_mac_replies > listed.len() as u64 {
                            ", …"
                        } else {
                            ""
                        }
                    )?;
                }
            }
            FindingDetail::CniDelLeftNamespace {
                container_id: _,
                del,
                netns_path_resolved,
                interfaces,
                pins,
            } => {
                writeln!(out, "    del: {}", cni_call(clock, del))?;
                writeln!(
                    out,
                    "    CNI_NETNS {} the namespace when the DEL ran",
                    if *netns_path_resolved {
                        "still named"
                    } else {
                        "no longer named"
                    }
                )?;
                for i in interfaces {
                    writeln!(out, "    left: {}", interface_line(i))?;
                }
                for p in pins {
                    writeln!(
                        out,
                        "    held by: {}, seen {}",
                        pin_line(p),
                        at(clock, p.at_ns)
                    )?;
                }
            }
            FindingDetail::CniDelFailed {
                container_id: _,
                del,
                chained,
                namespace,
            } => {
                writeln!(out, "    del: {}", cni_call(clock, del))?;
                for c in chained {
                    writeln!(out, "    ran: {}", cni_call(clock, c))?;
                }
                match namespace {
                    Some(ns) => {
                        writeln!(out, "    namespace: {}", ns.state)?;
                        for i in &ns.interfaces {
                            writeln!(out, "    interface: {}", interface_line(i))?;
                        }
                        for p in &ns.pins {
                            writeln!(
                                out,
                                "    held by: {}, seen {}",
                                pin_line(p),
                                at(clock, p.at_ns)
                            )?;
                        }
                    }
                    None => writeln!(out, "    namespace: none known")?,
                }
            }
        }
    }
    Ok(())
}

/// Why a namespace is in its state, in words, from the rule that decided it.
fn verdict_line(clock: Option<ClockBase>, state: NsState, reason: &VerdictReason) -> String {
    let why = match reason {
        VerdictReason::Destroyed { at_ns, was } => format!(
            "its teardown or free was seen at {}{}",
            at(clock, *at_ns),
            was.map(|w| format!(" (it was {w} before)"))
                .unwrap_or_default()
        ),
        VerdictReason::HostNamespace => "the host's initial namespace".into(),
        VerdictReason::HasMembers { live_tasks } => {
            format!("{live_tasks} task(s) live in it")
        }
        VerdictReason::SetUpByCreator { pinned_by_creator } => {
            if *pinned_by_creator {
                "only its creator was ever inside, and it pinned the namespace itself: it was setting it up (ip netns add, a runtime's pinning step)".into()
            } else {
                "nobody but its creator was ever inside, and the creator is not its workload".into()
            }
        }
        VerdictReason::HistoryUnknown { origin } => format!(
            "it had no member when first seen ({}): its history is not in the trace, so it may be a leak or pinned on purpose",
            match origin {
                Origin::Snapshot => "it existed before the trace",
                Origin::Inferred => "its creation was not seen",
                Origin::Traced => "traced",
            }
        ),
        VerdictReason::InGrace { since_ns, grace_ns } => format!(
            "its last member left at {}, less than the grace period ({}) before the end",
            at(clock, *since_ns),
            duration(*grace_ns)
        ),
        VerdictReason::TeardownPending {
            since_ns,
            cleanup_run_ns,
        } => format!(
            "memberless since {}, nothing observed holds it, and cleanup_net ran at {}: its free is still to come",
            at(clock, *since_ns),
            at(clock, *cleanup_run_ns)
        ),
        VerdictReason::PinMakerUnknown { since_ns, path } => format!(
            "memberless since {}, and who made its bind mount {} was not seen: pinned on purpose or leaked, the evidence cannot tell",
            at(clock, *since_ns),
            safe(path)
        ),
        VerdictReason::MemberlessPastGrace { since_ns, grace_ns } => format!(
            "a real member lived there; the last left at {}, more than the grace period ({}) before the end, and something still holds it",
            at(clock, *since_ns),
            duration(*grace_ns)
        ),
    };
    format!("{state}: {why}")
}

/// `report --netns` / `scan --netns`: one namespace's life in order, then its devices, its
/// visitors and its verdict. Pod-given text (names, paths, cgroups) is escaped.
pub(super) fn render_story(s: &Story, out: &mut impl Write) -> Result<(), ReportError> {
    let clock = s.clock;
    let n = &s.namespace;
    writeln!(out, "netns-trace story of {} ({})", n.id, n.state)?;
    match &n.owner {
        Some(o) => {
            let mut parts = Vec::new();
            if let (Some(ns), Some(name)) = (&o.pod_namespace, &o.pod_name) {
                parts.push(format!("pod {ns}/{name}"));
            }
            let field = |name: &str, v: &Option<String>| v.as_ref().map(|v| format!("{name} {v}"));
            parts.extend(
                [
                    field("pod uid", &o.pod_uid),
                    field("container", &o.container_id),
                    field("runtime", &o.runtime),
                    field("sandbox", &o.sandbox_id),
                    field("cni network", &o.cni_network),
                    // The root cgroup names no owner.
                    field(
                        "cgroup",
                        &o.cgroup
                            .clone()
                            .filter(|c| !c.trim_end_matches('/').is_empty()),
                    ),
                ]
                .into_iter()
                .flatten(),
            );
            writeln!(out, "owner: {}", safe(&parts.join(", ")))?;
        }
        None => writeln!(out, "owner: -")?,
    }
    if let Some(a) = &n.age {
        writeln!(out, "age: {} (estimated, born ~{})", age_cell(a), a.born_at)?;
    }

    writeln!(out, "\nTIMELINE")?;
    for e in &s.timeline {
        let what = match &e.event {
            StoryEvent::Created {
                pid,
                comm,
                source,
                parent,
                ..
            } => format!(
                "created by {pid} ({}){}{}",
                comm,
                source
                    .map(|s| format!(" through {}", serde_plain(&s)))
                    .unwrap_or_default(),
                parent.map(|p| format!(", from {p}")).unwrap_or_default()
            ),
            StoryEvent::FirstSeen { origin } => match origin {
                Origin::Snapshot => "already there when the trace started (history unknown)".into(),
                _ => "first seen (its creation was not traced)".into(),
            },
            StoryEvent::Joined {
                pid,
                comm,
                how,
                cgroup,
                before_trace,
                ..
            } => format!(
                "member {pid} ({}) {}{}",
                comm,
                if *before_trace {
                    "was already inside".to_string()
                } else {
                    format!("joined ({})", serde_plain(how))
                },
                cgroup
                    .as_deref()
                    .map(|c| format!(", cgroup {}", safe(c)))
                    .unwrap_or_default()
            ),
            StoryEvent::Left { pid, comm, how, .. } => {
                format!("member {pid} ({}) left ({})", comm, serde_plain(how))
            }
            StoryEvent::Pinned { pin } => format!("pinned: {}", pin_line(pin)),
            StoryEvent::Unpinned { pin, by } => format!(
                "unpinned: {}{}",
                pin_line(&PinEvidence {
                    by: None,
                    ..pin.clone()
                }),
                by.as_ref()
                    .map(|b| format!(", removed by {} ({})", b.pid, b.comm))
                    .unwrap_or_default()
            ),
            StoryEvent::CleanupFailed { cleanup: u } => format!(
                "cleanup failed: umount {} by {} ({}) -> errno {}",
                safe(&u.path),
                u.by.pid,
                u.by.comm,
                u.errno
            ),
            StoryEvent::Cni { call } => format!("cni: {}", cni_call(clock, call)),
            StoryEvent::Finding {
                kind,
                summary,
                uncertain,
            } => format!(
                "finding {kind}{}: {}",
                if *uncertain { " (uncertain)" } else { "" },
                safe(summary)
            ),
            StoryEvent::Destroyed => "destroyed (teardown)".into(),
            StoryEvent::Freed => "freed".into(),
        };
        writeln!(out, "  {}  {what}", short(clock, e.at_ns))?;
    }
    if s.members_dropped > 0 || s.removed_pins_dropped > 0 {
        writeln!(
            out,
            "  (older history not kept: {} member stays, {} removed pins)",
            s.members_dropped, s.removed_pins_dropped
        )?;
    }

    writeln!(out, "\nVISITS (setns stays under a second)")?;
    if s.visits.is_empty() {
        writeln!(out, "  none")?;
    }
    for v in &s.visits {
        writeln!(
            out,
            "  {} x{}, {} .. {}",
            v.comm,
            v.count,
            short(clock, v.first_at_ns),
            short(clock, v.last_at_ns)
        )?;
    }

    writeln!(out, "\nDEVICES AND ADDRESSES")?;
    if n.interfaces.is_empty() {
        writeln!(out, "  none seen")?;
    }
    for i in &n.interfaces {
        writeln!(out, "  {}", interface_line(i))?;
    }
    if n.pins.is_empty() {
        writeln!(out, "\nHELD BY\n  nothing observed")?;
    } else {
        writeln!(out, "\nHELD BY")?;
        for p in &n.pins {
            writeln!(out, "  {}", pin_line(p))?;
        }
    }

    writeln!(
        out,
        "\nVERDICT\n  {}",
        verdict_line(clock, s.verdict.state, &s.verdict.reason)
    )?;
    for f in &s.findings {
        if let Some(why) = &f.uncertain_reason {
            writeln!(out, "  {} is uncertain: {}", f.kind(), safe(why))?;
        }
    }
    Ok(())
}

/// A unit enum as its JSON name (`setns`, `unshare`, …).
fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_default()
}
