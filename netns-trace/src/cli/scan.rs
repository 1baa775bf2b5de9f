//! `netns-trace scan`: the state of the node right now, without BPF.
use std::io::Write;
use std::process::ExitCode;

use crate::collector::{Collector, CollectorConfig};
use crate::model::{Event, EventBody, SnapshotPhase};
use crate::report::{Report, ReportContext};

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Walks every process's namespaces, every open nsfs fd and the mountinfo of \
every mount namespace (copies of a bind mount live in other mount namespaces), reads each \
namespace's interfaces, and reports:\n\
  - namespaces with no member process that something still pins (leak suspects), naming the pin;\n\
  - IPv4 addresses configured in more than one namespace;\n\
  - a CNI GC dry run: the attachments in the CNI result cache (/var/lib/cni/results) that a \
runtime's CNI GC would call stale (their netns path names nothing, or their namespace is \
memberless and leaked), with the evidence. Advice only: netns-trace never runs a CNI plugin \
and never deletes anything.\n\n\
No BPF is loaded, so it works on any kernel; history (who created a namespace, when its last \
process died) needs `watch` or `record`. This is the automated form of the usual \
`ip netns` / `lsns` / `nsenter` loops. A scan has no trace, so each namespace's age is \
estimated from evidence (the ctime of its nsfs inode, which dates a pin, or its oldest \
member's start time) and says which.\n\n\
Examples:\n  \
netns-trace scan                              # every namespace, its age, pins and findings\n  \
netns-trace scan --netns /run/netns/cni-1a2b… # one namespace's story as far as a scan can tell\n  \
netns-trace scan --json --fail-on-leak        # for scripts: exit status 3 on a leak suspect"
)]
pub struct ScanArgs {
    /// The netns-trace/report/v1 JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 if a namespace is a leak suspect.
    #[arg(long)]
    pub fail_on_leak: bool,
    /// One namespace only, as a story: its members, pins, devices, CNI cache entries' calls
    /// and verdict, with its estimated age. ID is its id, inode number, cookie, a pin path or
    /// its pod's name. Example: `netns-trace scan --netns /run/netns/cni-1234`.
    #[arg(long, value_name = "ID")]
    pub netns: Option<String>,
}

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let now = crate::trace::monotonic_now_ns();
    let clock = crate::trace::ClockBase::now();
    let snap = crate::snapshot::take(SnapshotPhase::Start)?;
    let ages = crate::snapshot::estimate_ages(&crate::snapshot::ProcFs::host(), &snap, clock);
    let mut c = Collector::new(CollectorConfig {
        notices: false,
        ..Default::default()
    });
    c.handle(&Event::observed(now, EventBody::Snapshot(Box::new(snap))));
    for entry in crate::snapshot::cni_results() {
        c.handle(&Event::observed(now, EventBody::CniResult(Box::new(entry))));
    }
    c.finish(now);
    let ctx = ReportContext {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        probe_mode: "none (scan)".into(),
        clock: Some(clock),
        filters: Default::default(),
        scanned_at_ns: Some(now),
        ages,
    };
    if let Some(id) = &args.netns {
        return super::report::write_story(&c, id, &ctx, args.json, args.fail_on_leak);
    }
    let report = Report::build(&c, &ctx);
    // Buffered: the pretty JSON is many small writes, and stdout's line buffering would scan
    // and copy each one.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        report.write_json(&mut out, true)?;
        writeln!(out)?;
    } else {
        report.render_text(&mut out)?;
    }
    out.flush()?;
    if args.fail_on_leak && super::report::has_leak(&report) {
        return Ok(ExitCode::from(super::EXIT_LEAK));
    }
    Ok(ExitCode::SUCCESS)
}
