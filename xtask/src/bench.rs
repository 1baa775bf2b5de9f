//! `cargo xtask bench`: the tracer's cost on the node, and the collector's speed.
//!
//! Every figure is relative to a baseline measured in the same run, with the configurations
//! interleaved (A B C, B C A, …) and the median of at least five repetitions, because these
//! machines are noisy (±10% run to run). Nothing here asserts timings; it prints a table and
//! writes $CARGO_TARGET_DIR/bench/results.json (target/bench/ by default).
//!
//! `--guest KERNEL` also boots that Debian kernel under QEMU (the vm-test machinery) and runs
//! the cost workloads there with netns-trace in full mode; under TCG emulation only the ratios
//! mean anything.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::build::{self, Flavour, TESTBED_ENV};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask bench --quick                 # host only, under 3 minutes
  cargo xtask bench                         # host, full sizes (under 20 minutes)
  cargo xtask bench --guest 6.1 --guest-only --quick   # churn ratios in a 6.1 guest (full mode)
  cargo xtask bench --only collector        # one workload group")]
pub struct BenchArgs {
    /// Fewer iterations (under 3 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Repetitions per configuration (median taken); default 5 (quick) or 7.
    #[arg(long)]
    pub reps: Option<usize>,
    /// Only run workloads whose name contains this (netns-churn, process-churn, packet-path,
    /// packet-path-ipv6, collector, event-rate).
    #[arg(long)]
    pub only: Option<String>,
    /// Namespaces per netns-churn run (default 300 quick, 2000 full).
    #[arg(long)]
    pub netns_count: Option<u64>,
    /// Processes per process-churn run (default 1000 quick, 10000 full).
    #[arg(long)]
    pub proc_count: Option<u64>,
    /// Also run the churn workloads in a QEMU guest with this kernel (5.10, 6.1, 6.12), where
    /// netns-trace runs in full mode.
    #[arg(long, value_name = "KERNEL")]
    pub guest: Option<String>,
    /// Leave out the bpftrace column.
    #[arg(long)]
    pub no_bpftrace: bool,
    /// With --guest: skip the host workloads.
    #[arg(long)]
    pub guest_only: bool,
    /// After the timed repetitions, run each cost workload once more per tracer with the
    /// kernel's BPF run-time stats on, and print where the tracer's cost went: each BPF
    /// program's runs and time, and the tracer's own CPU time.
    #[arg(long)]
    pub profile: bool,
    /// (internal) Running inside a bench guest: binaries from NETNS_TRACE_BIN and
    /// NETNS_TRACE_TESTBED_BIN, nothing built, results printed on the console.
    #[arg(long, hide = true)]
    pub in_guest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Tracer {
    None,
    NetnsTrace,
    /// netns-trace with the CNI exec probes disabled: beside the full column, it gives the
    /// cost of reading every exec's environment (issue 13).
    NetnsTraceNoExec,
    Bpftrace,
}

/// The probes that trace CNI plugin runs (exec and exit), disabled in the no-exec column.
const EXEC_PROBES: &[&str] = &["cni_exec", "cni_exit"];

impl Tracer {
    fn key(self) -> &'static str {
        match self {
            Tracer::None => "none",
            Tracer::NetnsTrace => "netns-trace",
            Tracer::NetnsTraceNoExec => "netns-trace-no-exec",
            Tracer::Bpftrace => "bpftrace",
        }
    }

    fn is_netns_trace(self) -> bool {
        matches!(self, Tracer::NetnsTrace | Tracer::NetnsTraceNoExec)
    }
}

#[derive(Debug, Serialize, Default, serde::Deserialize)]
struct Results {
    machine: BTreeMap<String, String>,
    workloads: Vec<Workload>,
    collector: BTreeMap<String, f64>,
    targets: Vec<Target>,
    notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    profiles: Vec<crate::profile::Profile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest: Option<Box<Results>>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct Workload {
    name: String,
    unit: String,
    /// Throughput (higher is better) or elapsed time (lower is better).
    higher_is_better: bool,
    /// tracer → every repetition's value, in run order.
    samples: BTreeMap<String, Vec<f64>>,
    median: BTreeMap<String, f64>,
    /// Cost relative to no tracer (1.0 = free; higher is worse): median(tracer)/median(none)
    /// for times, median(none)/median(tracer) for throughput.
    ratio: BTreeMap<String, f64>,
    /// netns-trace's lost events, summed over the repetitions.
    lost_events: u64,
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct Target {
    what: String,
    target: String,
    measured: String,
    met: bool,
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn root() -> PathBuf {
    crate::util::workspace_root()
}

/// Where the binaries and the results go.
struct Env {
    netns_trace: PathBuf,
    testbed: PathBuf,
    dir: PathBuf,
    in_guest: bool,
}

impl Env {
    /// In a guest, the binaries the initramfs shipped; on the host, a release build of
    /// netns-trace with its `dev` feature (`dev synth`, `dev replay`) and of the testbed.
    fn new(in_guest: bool) -> Result<Self> {
        if in_guest {
            let from_env = |var: &str| {
                std::env::var_os(var)
                    .map(PathBuf::from)
                    .with_context(|| format!("{var} is not set in the guest"))
            };
            return Ok(Self {
                netns_trace: from_env("NETNS_TRACE_BIN")?,
                testbed: from_env(TESTBED_ENV)?,
                dir: PathBuf::from("/tmp/bench"),
                in_guest,
            });
        }
        Ok(Self {
            netns_trace: build::release_netns_trace(Flavour::Dev)?,
            testbed: build::release_testbed()?,
            dir: target_dir().join("bench"),
            in_guest,
        })
    }
}

use crate::util::target_dir;

/// net_namespace slab objects in use: the kernel's own count of live struct nets.
fn net_namespace_objects() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("net_namespace "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Waits until namespace teardown from the previous run has drained (cleanup_net runs on a
/// workqueue; a backlog slows whatever runs next).
fn settle() {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = net_namespace_objects();
    let mut stable = 0;
    while Instant::now() < deadline && stable < 3 {
        std::thread::sleep(Duration::from_millis(200));
        let now = net_namespace_objects();
        if now == last {
            stable += 1
        } else {
            stable = 0
        }
        last = now;
    }
}

/// The bpftrace equivalent of netns-trace's tracepoint-mode hooks, what a user would write
/// instead: creation (task_newtask with CLONE_NEWNET, and the namespace compared around
/// unshare/setns), members (fork/exit outside the initial namespace), mount-family syscalls,
/// cleanup_net runs, the struct net free (a map lookup on every kmem_cache_free), ARP on the
/// packet tracepoints, and neighbour updates. One printed line per event. ARP uses the
/// variants of the packet tracepoints that carry the protocol (net_dev_start_xmit,
/// netif_receive_skb_entry): casting skbaddr to struct sk_buff makes bpftrace 0.17 parse the
/// kernel's BTF for minutes before it attaches.
const BPFTRACE_SCRIPT: &str = r#"
BEGIN { @init = curtask->nsproxy->net_ns->ns.inum; printf("ready\n"); }
tracepoint:task:task_newtask /args->clone_flags & 0x40000000/ { printf("create %d %s\n", pid, comm); }
tracepoint:sched:sched_process_fork /curtask->nsproxy->net_ns->ns.inum != @init/ { printf("fork %d %d\n", args->parent_pid, args->child_pid); }
tracepoint:sched:sched_process_exit /curtask->nsproxy->net_ns->ns.inum != @init/ { printf("exit %d %s\n", pid, comm); }
tracepoint:syscalls:sys_enter_unshare, tracepoint:syscalls:sys_enter_setns { @ns[tid] = curtask->nsproxy->net_ns->ns.inum; }
tracepoint:syscalls:sys_exit_unshare, tracepoint:syscalls:sys_exit_setns /@ns[tid] && @ns[tid] != curtask->nsproxy->net_ns->ns.inum/ {
  @net[(uint64)curtask->nsproxy->net_ns] = 1;
  printf("ns %d %u %u\n", tid, @ns[tid], curtask->nsproxy->net_ns->ns.inum);
}
tracepoint:syscalls:sys_exit_unshare, tracepoint:syscalls:sys_exit_setns { delete(@ns[tid]); }
tracepoint:syscalls:sys_enter_mount { printf("mount %s %s\n", str(args->dev_name), str(args->dir_name)); }
tracepoint:syscalls:sys_enter_umount { printf("umount %s\n", str(args->name)); }
tracepoint:syscalls:sys_exit_mount, tracepoint:syscalls:sys_exit_umount { printf("ret %d\n", args->ret); }
tracepoint:workqueue:workqueue_execute_start /args->function == kaddr("cleanup_net")/ { printf("cleanup_net\n"); }
tracepoint:kmem:kmem_cache_free /@net[(uint64)args->ptr]/ { printf("freed %llx\n", (uint64)args->ptr); delete(@net[(uint64)args->ptr]); }
tracepoint:net:net_dev_start_xmit /args->protocol == 0x0806/ { printf("arp tx %s\n", str(args->name)); }
tracepoint:net:netif_receive_skb_entry /args->protocol == 0x0806/ { printf("arp rx %s\n", str(args->name)); }
tracepoint:neigh:neigh_update { printf("neigh %s\n", str(args->dev)); }
"#;

struct Running {
    tracer: Tracer,
    child: Child,
}

fn start(tracer: Tracer, env: &Env) -> Result<Option<Running>> {
    let dir = &env.dir;
    let mut child = match tracer {
        Tracer::None => return Ok(None),
        Tracer::NetnsTrace | Tracer::NetnsTraceNoExec => Command::new(&env.netns_trace)
            .args(["record", "--force", "--quiet", "-o"])
            .arg(dir.join("bench.trace"))
            .args(
                EXEC_PROBES
                    .iter()
                    .filter(|_| tracer == Tracer::NetnsTraceNoExec)
                    .flat_map(|p| ["--disable-probe", p]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting netns-trace record")?,
        Tracer::Bpftrace => {
            let script = dir.join("netns.bt");
            std::fs::write(&script, BPFTRACE_SCRIPT)?;
            // Unbuffered, to a file we hand it as stdout: with `-o FILE` bpftrace 0.17 keeps
            // the BEGIN line in its buffer until enough events arrive to flush it, which on
            // a quiet node is never (it looked like minutes of "attaching").
            let out = std::fs::File::create(dir.join("bpftrace.out"))?;
            Command::new("bpftrace")
                .args(["-B", "none"])
                .arg(&script)
                .stdout(out)
                .stderr(Stdio::piped())
                .spawn()
                .context("starting bpftrace")?
        }
    };
    // Drain stderr for the whole run (a full pipe would stall the tracer); keep the lines.
    let stderr = child.stderr.take().context("tracer stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    loop {
        while let Ok(l) = rx.try_recv() {
            seen.push(l);
        }
        let ready = match tracer {
            Tracer::NetnsTrace | Tracer::NetnsTraceNoExec => {
                seen.iter().any(|l| l.contains("recording to"))
            }
            // BEGIN runs once every probe is attached.
            _ => std::fs::read_to_string(dir.join("bpftrace.out"))
                .is_ok_and(|s| s.lines().any(|l| l == "ready")),
        };
        if ready {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited ({status}) before it was ready: {}",
                tracer.key(),
                seen.join(" | ")
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} was not ready within 300 s", tracer.key());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(Running { tracer, child }))
}

/// What netns-trace's own trace says about a run.
#[derive(Debug, Default, Clone, Copy)]
struct TraceCounts {
    events: u64,
    lost: u64,
}

/// Stops a tracer (SIGTERM, as a service manager would); for netns-trace, reads back its
/// trace's event and lost-event counts.
fn stop(r: Option<Running>, env: &Env) -> Result<TraceCounts> {
    let Some(mut r) = r else {
        return Ok(TraceCounts::default());
    };
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
    let status = r.child.wait()?;
    if !r.tracer.is_netns_trace() {
        return Ok(TraceCounts::default());
    }
    if !status.success() {
        bail!("netns-trace record exited with {status}");
    }
    let v = dev_replay(env, &env.dir.join("bench.trace"), &[])?.1;
    Ok(TraceCounts {
        events: v["events"].as_u64().unwrap_or(0),
        lost: v["lost_events"].as_u64().unwrap_or(0),
    })
}

/// `netns-trace dev replay FILE`: (peak RSS KiB from wait4, its JSON line).
fn dev_replay(env: &Env, trace: &Path, extra: &[&str]) -> Result<(u64, serde_json::Value)> {
    let mut cmd = Command::new(&env.netns_trace);
    cmd.args(["dev", "replay"]).arg(trace).args(extra);
    let (stdout, rss) = run_measured(&mut cmd)?;
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("dev replay printed {stdout:?}"))?;
    Ok((rss, v))
}

/// Runs a command to completion; returns its stdout and peak RSS in KiB (from wait4).
fn run_measured(cmd: &mut Command) -> Result<(String, u64)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().context("stdout")?, &mut stdout)?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: wait4 on our own child with valid out-pointers; it reaps the child, so the
    // Child handle is never waited on again (forget keeps it from trying).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    std::mem::forget(child);
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (wait status {status})");
    }
    Ok((stdout, usage.ru_maxrss as u64))
}

/// Runs a testbed workload; returns the seconds its own loop took (process start excluded).
fn run_testbed(env: &Env, args: &[&str]) -> Result<f64> {
    let out = Command::new(&env.testbed)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("running netns-trace-testbed")?;
    if !out.status.success() {
        bail!("testbed {args:?} failed");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).with_context(|| format!("testbed {args:?} output"))?;
    v["elapsed_ns"]
        .as_f64()
        .map(|ns| ns / 1e9)
        .context("testbed output without elapsed_ns")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const BED_A: &str = "ntbench-a";
const BED_B: &str = "ntbench-b";
const BED_SERVER_IP: &str = "10.231.250.2";
/// The server's IPv6 address: the same path over IPv6, where every packet takes the ND
/// filter's next-header check (and its ACKs and data none of the rest).
const BED_SERVER_IP6: &str = "fd00:231:250::2";
const BED_PIDFILE: &str = "/run/ntbench-iperf3.pid";

/// iperf3 TCP throughput (Gbit/s) from namespace A to `server` in B over the bench's veth
/// pair.
fn packet_path(seconds: u32, server: &str) -> Result<f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", BED_A, "iperf3", "-c", server, "-t"])
        .arg(seconds.to_string())
        .arg("-J")
        .output()?;
    if !out.status.success() {
        bail!(
            "iperf3 client failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("iperf3 JSON without sum_received")
}

/// Two namespaces joined by a veth pair, addresses from 10.231.250.0/24 and fd00:231:250::/64
/// (no DAD), an iperf3 server in B. Everything is removed on drop.
struct PacketBed;

impl PacketBed {
    fn up() -> Result<Self> {
        Self::down();
        let bed = PacketBed;
        for c in [
            format!("ip netns add {BED_A}"),
            format!("ip netns add {BED_B}"),
            format!("ip -n {BED_A} link add ntbench0 type veth peer name ntbench1 netns {BED_B}"),
            format!("ip -n {BED_A} addr add 10.231.250.1/24 dev ntbench0"),
            format!("ip -n {BED_B} addr add {BED_SERVER_IP}/24 dev ntbench1"),
            format!("ip -n {BED_A} addr add fd00:231:250::1/64 dev ntbench0 nodad"),
            format!("ip -n {BED_B} addr add {BED_SERVER_IP6}/64 dev ntbench1 nodad"),
            format!("ip -n {BED_A} link set ntbench0 up"),
            format!("ip -n {BED_B} link set ntbench1 up"),
            format!("ip -n {BED_A} link set lo up"),
            format!("ip -n {BED_B} link set lo up"),
            format!("ip netns exec {BED_B} iperf3 -s -D -1 --pidfile {BED_PIDFILE}"),
        ] {
            let st = Command::new("sh").args(["-c", &c]).status()?;
            if !st.success() {
                bail!("{c} failed");
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(bed)
    }

    /// Starts the one-shot server again (each client run consumes it).
    fn serve() -> Result<()> {
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!("[ -f {BED_PIDFILE} ] && kill $(cat {BED_PIDFILE}) 2>/dev/null"),
            ])
            .status();
        let st = Command::new("ip")
            .args([
                "netns",
                "exec",
                BED_B,
                "iperf3",
                "-s",
                "-D",
                "-1",
                "--pidfile",
            ])
            .arg(BED_PIDFILE)
            .status()?;
        if !st.success() {
            bail!("iperf3 server did not start");
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    fn run(seconds: u32, server: &str) -> Result<f64> {
        Self::serve()?;
        packet_path(seconds, server)
    }

    fn down() {
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "[ -f {BED_PIDFILE} ] && kill $(cat {BED_PIDFILE}) 2>/dev/null; rm -f {BED_PIDFILE}; \
                     ip netns del {BED_A} 2>/dev/null; ip netns del {BED_B} 2>/dev/null"
                ),
            ])
            .status();
    }
}

impl Drop for PacketBed {
    fn drop(&mut self) {
        Self::down();
    }
}

struct Sizes {
    reps: usize,
    netns: u64,
    procs: u64,
    iperf_secs: u32,
    events: u64,
    namespaces: u64,
    rates: Vec<u64>,
    rate_secs: u64,
}

impl Sizes {
    fn new(args: &BenchArgs) -> Self {
        let q = args.quick;
        Sizes {
            reps: args.reps.unwrap_or(if q { 5 } else { 7 }).max(1),
            netns: args.netns_count.unwrap_or(if q { 300 } else { 2000 }),
            procs: args.proc_count.unwrap_or(if q { 1000 } else { 10_000 }),
            iperf_secs: if q { 1 } else { 3 },
            events: if q { 1_000_000 } else { 10_000_000 },
            namespaces: if q { 10_000 } else { 100_000 },
            rates: if q {
                vec![200_000]
            } else {
                vec![50_000, 100_000, 200_000, 300_000, 400_000]
            },
            rate_secs: if q { 2 } else { 4 },
        }
    }
}

/// The cost workloads: for each repetition and tracer (order rotated every repetition), one
/// tracer session that runs every selected workload in turn.
fn cost_workloads(
    env: &Env,
    sizes: &Sizes,
    tracers: &[Tracer],
    want: &dyn Fn(&str) -> bool,
    notes: &mut Vec<String>,
    profiles: Option<&mut Vec<crate::profile::Profile>>,
) -> Result<Vec<Workload>> {
    type Run<'a> = Box<dyn Fn() -> Result<f64> + 'a>;
    let netns = sizes.netns.to_string();
    let procs = sizes.procs.to_string();
    let mut runs: Vec<(&str, &str, bool, Run)> = Vec::new();
    if want("netns-churn") {
        runs.push((
            "netns-churn",
            "s",
            false,
            Box::new(|| run_testbed(env, &["churn", "--count", &netns, "--pin", "--join"])),
        ));
    }
    if want("process-churn") {
        runs.push((
            "process-churn",
            "s",
            false,
            Box::new(|| run_testbed(env, &["proc-churn", "--count", &procs])),
        ));
    }
    let mut bed = None;
    let (v4, v6) = (want("packet-path"), want("packet-path-ipv6"));
    if v4 || v6 {
        if have("iperf3") {
            bed = Some(PacketBed::up()?);
            // Warm-up: resolves ARP and ND, so the measured runs carry none.
            PacketBed::run(1, BED_SERVER_IP)?;
            PacketBed::run(1, BED_SERVER_IP6)?;
            let secs = sizes.iperf_secs;
            if v4 {
                runs.push((
                    "packet-path",
                    "Gbit/s",
                    true,
                    Box::new(move || PacketBed::run(secs, BED_SERVER_IP)),
                ));
            }
            if v6 {
                runs.push((
                    "packet-path-ipv6",
                    "Gbit/s",
                    true,
                    Box::new(move || PacketBed::run(secs, BED_SERVER_IP6)),
                ));
            }
        } else {
            notes.push("iperf3 is not installed: packet-path skipped".into());
        }
    }
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let mut samples: Vec<BTreeMap<String, Vec<f64>>> = vec![BTreeMap::new(); runs.len()];
    let mut lost = 0u64;
    let mut bpftrace_failed = false;
    for rep in 0..sizes.reps {
        let mut order = tracers.to_vec();
        order.rotate_left(rep % tracers.len());
        for t in order {
            if bpftrace_failed && t == Tracer::Bpftrace {
                continue;
            }
            settle();
            let running = match start(t, env) {
                Ok(r) => r,
                // The baseline column is worth having, not worth the whole run.
                Err(e) if t == Tracer::Bpftrace => {
                    eprintln!("bench: bpftrace failed, its column is left out: {e:#}");
                    notes.push(format!(
                        "bpftrace failed in repetition {rep} and was left out: {e:#}"
                    ));
                    bpftrace_failed = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut values = Vec::new();
            let mut failure = None;
            for (_, _, _, run) in &runs {
                settle();
                match run() {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let counts = stop(running, env)?;
            if let Some(e) = failure {
                return Err(e);
            }
            lost += counts.lost;
            for (i, v) in values.into_iter().enumerate() {
                let (name, unit, ..) = &runs[i];
                eprintln!("  rep {rep} {:<12} {name:<14} {v:>9.4} {unit}", t.key());
                samples[i].entry(t.key().into()).or_default().push(v);
            }
            if t.is_netns_trace() {
                eprintln!(
                    "  rep {rep} {} recorded {} events, lost {}",
                    t.key(),
                    counts.events,
                    counts.lost
                );
            }
        }
    }
    if let Some(profiles) = profiles {
        for &t in tracers
            .iter()
            .filter(|t| **t != Tracer::None && !(bpftrace_failed && **t == Tracer::Bpftrace))
        {
            settle();
            let running = start(t, env)?;
            let pid = running
                .as_ref()
                .map(|r| r.child.id())
                .context("tracer pid")?;
            let mut failure = None;
            for (name, _, _, run) in &runs {
                settle();
                match crate::profile::measure(name, t.key(), pid, run.as_ref()) {
                    Ok(p) => profiles.push(p),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            stop(running, env)?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }
    drop(bed);
    Ok(runs
        .iter()
        .zip(samples)
        .map(|((name, unit, higher_is_better, _), samples)| {
            let median: BTreeMap<String, f64> = samples
                .iter()
                .map(|(k, v)| (k.clone(), median(v)))
                .collect();
            let base = median.get("none").copied().unwrap_or(f64::NAN);
            let ratio = median
                .iter()
                .filter(|(k, _)| *k != "none")
                .map(|(k, v)| {
                    let r = if *higher_is_better {
                        base / v
                    } else {
                        v / base
                    };
                    (k.clone(), r)
                })
                .collect();
            Workload {
                name: (*name).into(),
                unit: (*unit).into(),
                higher_is_better: *higher_is_better,
                samples,
                median,
                ratio,
                lost_events: lost,
            }
        })
        .collect())
}

/// Synthetic trace generation, replay throughput, trace size and collector memory.
fn collector(env: &Env, sizes: &Sizes, reps: usize) -> Result<BTreeMap<String, f64>> {
    let dir = &env.dir;
    let synth = |path: &Path, events: u64, namespaces: u64| -> Result<serde_json::Value> {
        let out = Command::new(&env.netns_trace)
            .args(["dev", "synth", "--force", "--events"])
            .arg(events.to_string())
            .arg("--namespaces")
            .arg(namespaces.to_string())
            .arg("-o")
            .arg(path)
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            bail!("netns-trace dev synth failed");
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let trace = dir.join("synthetic.trace");
    let small = dir.join("synthetic-small.trace");
    let made = synth(&trace, sizes.events, sizes.namespaces)?;
    synth(&small, 1_000, 10)?;
    let events = made["events"].as_f64().unwrap_or(f64::NAN);
    eprintln!("  collector: synthetic trace {made}");
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    for rep in 0..reps {
        let (kib, v) = dev_replay(env, &trace, &[])?;
        eprintln!("  collector: replay {rep}: {v}");
        wall.push(v["events_per_sec"].as_f64().unwrap_or(f64::NAN));
        cpu.push(v["events_per_cpu_sec"].as_f64().unwrap_or(f64::NAN));
        rss.push(kib as f64);
    }
    // Every namespace kept (none dropped as old history): memory per tracked namespace.
    let (all_kib, all) = dev_replay(env, &trace, &["--keep-destroyed", "100000000"])?;
    let (base_kib, _) = dev_replay(env, &small, &[])?;
    let tracked = all["namespaces_tracked"].as_f64().unwrap_or(f64::NAN);
    // The whole `report --json` path (decode, collector, report, JSON) for comparison.
    let t0 = Instant::now();
    let (_, report_kib) = run_measured(
        Command::new(&env.netns_trace)
            .arg("report")
            .arg(&trace)
            .arg("--json"),
    )?;
    let report_secs = t0.elapsed().as_secs_f64();
    let mut c = BTreeMap::new();
    c.insert("events".into(), events);
    c.insert("namespaces".into(), sizes.namespaces as f64);
    c.insert(
        "trace_bytes".into(),
        made["bytes"].as_f64().unwrap_or(f64::NAN),
    );
    c.insert(
        "bytes_per_event".into(),
        made["bytes_per_event"].as_f64().unwrap_or(f64::NAN),
    );
    c.insert("replay_events_per_sec".into(), median(&wall));
    c.insert("replay_events_per_cpu_sec".into(), median(&cpu));
    c.insert("replay_peak_rss_kib".into(), median(&rss));
    c.insert("all_tracked_namespaces".into(), tracked);
    c.insert("all_tracked_peak_rss_kib".into(), all_kib as f64);
    c.insert("baseline_peak_rss_kib".into(), base_kib as f64);
    c.insert(
        "kib_per_namespace".into(),
        (all_kib as f64 - base_kib as f64) / tracked,
    );
    c.insert("report_json_events_per_sec".into(), events / report_secs);
    c.insert("report_json_peak_rss_kib".into(), report_kib as f64);
    Ok(c)
}

/// Highest paced event rate `record` keeps without loss: threads switching between two
/// non-initial namespaces with setns (one record per switch).
fn event_rate(env: &Env, sizes: &Sizes, c: &mut BTreeMap<String, f64>) -> Result<()> {
    let mut best = 0.0f64;
    for &rate in &sizes.rates {
        settle();
        let running = start(Tracer::NetnsTrace, env)?;
        let achieved = generate_events(rate, sizes.rate_secs);
        let counts = stop(running, env)?;
        let achieved = achieved?;
        eprintln!(
            "  event-rate: asked {rate}/s, generated {achieved:.0}/s, recorded {} events, lost {}",
            counts.events, counts.lost
        );
        c.insert(format!("rate_{}k_generated_per_sec", rate / 1000), achieved);
        c.insert(format!("rate_{}k_lost", rate / 1000), counts.lost as f64);
        if counts.lost == 0 {
            best = best.max(achieved);
        }
    }
    c.insert("max_lossless_events_per_sec".into(), best);
    Ok(())
}

fn machine_info(env: &Env) -> BTreeMap<String, String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut m = BTreeMap::new();
    m.insert("kernel".into(), read("/proc/sys/kernel/osrelease"));
    m.insert("cpu".into(), cpu);
    m.insert(
        "cpus".into(),
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_default(),
    );
    m.insert("loadavg_at_start".into(), read("/proc/loadavg"));
    m.insert(
        "where".into(),
        if env.in_guest {
            "QEMU guest".into()
        } else {
            "host".into()
        },
    );
    m
}

fn targets(res: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let mode = res.machine.get("probe_mode").cloned().unwrap_or_default();
    for w in &res.workloads {
        let packets = w.name.starts_with("packet-path");
        let limit = if packets { 1.01 } else { 1.03 };
        let Some(nt) = w.ratio.get("netns-trace").copied() else {
            continue;
        };
        let bpf = w.ratio.get("bpftrace").copied();
        let cost = if w.higher_is_better {
            "throughput loss"
        } else {
            "slowdown"
        };
        out.push(Target {
            what: format!("{} {cost} ({mode})", w.name),
            target: format!(
                "≤ {:.0}%{}",
                (limit - 1.0) * 100.0,
                if bpf.is_some() && !packets {
                    ", below bpftrace"
                } else {
                    ""
                }
            ),
            measured: format!(
                "{:+.1}% (bpftrace {})",
                (nt - 1.0) * 100.0,
                bpf.map(|b| format!("{:+.1}%", (b - 1.0) * 100.0))
                    .unwrap_or("-".into())
            ),
            met: nt <= limit && (packets || bpf.is_none_or(|b| nt <= b)),
        });
    }
    let c = &res.collector;
    if let Some(r) = c.get("replay_events_per_sec") {
        let cpu = c
            .get("replay_events_per_cpu_sec")
            .copied()
            .unwrap_or(f64::NAN);
        out.push(Target {
            what: "replay throughput (one core)".into(),
            target: "≥ 3M events/s".into(),
            measured: format!("{:.2}M/s wall, {:.2}M per CPU-second", r / 1e6, cpu / 1e6),
            met: *r >= 3e6 || cpu >= 3e6,
        });
    }
    if let Some(b) = c.get("bytes_per_event") {
        out.push(Target {
            what: "trace size".into(),
            target: "≤ 48 B/event".into(),
            measured: format!("{b:.1} B/event"),
            met: *b <= 48.0,
        });
    }
    if let Some(k) = c.get("kib_per_namespace") {
        out.push(Target {
            what: "collector memory".into(),
            target: "≤ 2 KiB/namespace".into(),
            measured: format!("{k:.2} KiB"),
            met: *k <= 2.0,
        });
    }
    if let Some(r) = c.get("max_lossless_events_per_sec") {
        let lost_200k = c.get("rate_200k_lost").copied();
        let made_200k = c.get("rate_200k_generated_per_sec").copied();
        out.push(Target {
            what: "record without loss".into(),
            target: "no loss at 200k events/s".into(),
            measured: format!(
                "lossless up to {:.0}k/s{}",
                r / 1e3,
                match (made_200k, lost_200k) {
                    (Some(m), Some(l)) => format!(
                        "; asked 200k/s, generator reached {:.0}k/s, lost {l:.0}",
                        m / 1e3
                    ),
                    _ => String::new(),
                }
            ),
            met: *r >= 200e3 * 0.98,
        });
    }
    out
}

/// The netns-trace probe mode on this kernel, from `netns-trace probes --json`.
fn probe_mode(env: &Env) -> String {
    let out = Command::new(&env.netns_trace)
        .args(["probes", "--json"])
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        return String::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["mode"].as_str().unwrap_or_default().to_string()
}

/// Runs every selected workload on this machine (host, or inside a bench guest).
fn bench_here(args: &BenchArgs, env: &Env) -> Result<Results> {
    std::fs::create_dir_all(&env.dir)?;
    let sizes = Sizes::new(args);
    let want = |n: &str| args.only.as_deref().is_none_or(|o| n.contains(o));
    let mut res = Results {
        machine: machine_info(env),
        ..Default::default()
    };
    let mode = probe_mode(env);
    res.machine.insert("probe_mode".into(), mode);
    let mut tracers = vec![Tracer::None, Tracer::NetnsTrace];
    if want("process-churn") {
        // Every exec's environment is scanned for CNI_*: process churn shows what that costs.
        tracers.push(Tracer::NetnsTraceNoExec);
    }
    if args.no_bpftrace {
        res.notes
            .push("run with --no-bpftrace: the bpftrace column is empty".into());
    } else if have("bpftrace") {
        tracers.push(Tracer::Bpftrace);
    } else {
        res.notes.push(
            "bpftrace is not installed here: the bpftrace column is empty (cargo xtask bootstrap installs it on the host)".into(),
        );
    }
    let t0 = Instant::now();
    let mut profiles = Vec::new();
    res.workloads = cost_workloads(
        env,
        &sizes,
        &tracers,
        &want,
        &mut res.notes,
        args.profile.then_some(&mut profiles),
    )?;
    res.profiles = profiles;
    if want("collector") {
        res.collector = collector(env, &sizes, sizes.reps.min(5))?;
    }
    if want("event-rate") {
        event_rate(env, &sizes, &mut res.collector)?;
    }
    res.machine.insert(
        "loadavg_at_end".into(),
        std::fs::read_to_string("/proc/loadavg")?.trim().into(),
    );
    res.machine.insert(
        "bench_seconds".into(),
        format!("{:.0}", t0.elapsed().as_secs_f64()),
    );
    res.targets = targets(&res);
    Ok(res)
}

/// Marks the guest's results line on the console.
const GUEST_RESULTS_MARK: &str = "NETNS_TRACE_BENCH_RESULTS:";

pub fn run(args: BenchArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks load BPF programs and make namespaces: run as root");
    }
    let env = Env::new(args.in_guest)?;
    if args.in_guest {
        let res = bench_here(&args, &env)?;
        print_results(&res);
        println!("{GUEST_RESULTS_MARK} {}", serde_json::to_string(&res)?);
        return Ok(());
    }
    let mut res = if args.guest_only {
        Results::default()
    } else {
        bench_here(&args, &env)?
    };
    if let Some(kernel) = &args.guest {
        match guest::run(&args, kernel, &env) {
            Ok(g) => res.guest = Some(Box::new(g)),
            Err(e) => {
                eprintln!("bench: the guest run failed: {e:#}");
                res.notes.push(format!("guest {kernel}: {e:#}"));
            }
        }
    }
    print_results(&res);
    std::fs::create_dir_all(&env.dir)?;
    let out = env.dir.join("results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&res)?)?;
    println!("\nwrote {}", out.display());
    Ok(())
}

fn print_results(res: &Results) {
    if !res.workloads.is_empty() || !res.collector.is_empty() {
        let m = &res.machine;
        let get = |k: &str| m.get(k).map(String::as_str).unwrap_or("?");
        println!(
            "\nnetns-trace bench on {} ({} mode): kernel {}, {} CPUs ({}); load {} → {}; {} s",
            get("where"),
            get("probe_mode"),
            get("kernel"),
            get("cpus"),
            get("cpu"),
            get("loadavg_at_start"),
            get("loadavg_at_end"),
            get("bench_seconds"),
        );
        println!(
            "{:<14} {:>8} {:>11} {:>11} {:>11} {:>9} {:>9} {:>6}",
            "workload", "unit", "none", "netns-trace", "bpftrace", "nt ratio", "bt ratio", "lost"
        );
        for w in &res.workloads {
            let med = |k: &str| {
                w.median
                    .get(k)
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or("-".into())
            };
            let ratio = |k: &str| {
                w.ratio
                    .get(k)
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or("-".into())
            };
            println!(
                "{:<14} {:>8} {:>11} {:>11} {:>11} {:>9} {:>9} {:>6}",
                w.name,
                w.unit,
                med("none"),
                med("netns-trace"),
                med("bpftrace"),
                ratio("netns-trace"),
                ratio("bpftrace"),
                w.lost_events
            );
        }
        // The share of netns-trace's cost that reading every exec's environment takes.
        for w in &res.workloads {
            let key = Tracer::NetnsTraceNoExec.key();
            if let (Some(with), Some(without)) = (w.ratio.get("netns-trace"), w.ratio.get(key)) {
                println!(
                    "exec tracing   {:<14} netns-trace {:+.1}%, without its CNI exec probes {:+.1}%",
                    w.name,
                    (with - 1.0) * 100.0,
                    (without - 1.0) * 100.0
                );
            }
        }
        for (k, v) in &res.collector {
            println!("collector {k:<30} {v:>16.2}");
        }
        println!("targets:");
        for t in &res.targets {
            println!(
                "  [{}] {:<44} target {:<26} measured {}",
                if t.met { "met" } else { "MISSED" },
                t.what,
                t.target,
                t.measured
            );
        }
        for n in &res.notes {
            println!("note: {n}");
        }
        crate::profile::print(&res.profiles);
    }
    if let Some(g) = &res.guest {
        print_results(g);
    }
}

/// Runs the generator in a fresh network namespace; returns the records/s it produced.
fn generate_events(records_per_sec: u64, secs: u64) -> Result<f64> {
    let out = Command::new("unshare")
        .arg("-n")
        .arg(std::env::current_exe()?)
        .args(["bench-generator", "--records-per-sec"])
        .arg(records_per_sec.to_string())
        .arg("--secs")
        .arg(secs.to_string())
        .output()?;
    if !out.status.success() {
        bail!("generator failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let switches: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("generator output")?;
    Ok(switches / secs as f64)
}

#[derive(Debug, clap::Args)]
pub struct GeneratorArgs {
    /// Namespace switches per second, all workers together (one task record each).
    #[arg(long)]
    pub records_per_sec: u64,
    #[arg(long)]
    pub secs: u64,
}

fn open_ns(path: &str) -> Result<std::fs::File> {
    std::fs::File::open(path).with_context(|| format!("opening {path}"))
}

/// Worker threads that each make a network namespace of their own and switch between it and
/// the process's namespace with setns(2), paced: every switch is one task record when traced
/// (thread create+exit, two records, costs ten times more and could not go past ~20k/s
/// here). Run inside `unshare -n`, so nothing touches the host's namespace. Prints how many
/// switches were made.
pub fn generator(args: GeneratorArgs) -> Result<()> {
    use std::os::fd::AsRawFd;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
    let per_worker = args.records_per_sec / workers;
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let home = open_ns("/proc/self/ns/net")?;
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let home = home.try_clone()?;
            Ok(std::thread::spawn(move || -> Result<u64> {
                // SAFETY: unshare on the calling thread only (network namespaces are per thread).
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
                }
                let own = open_ns("/proc/thread-self/ns/net")?;
                let start = Instant::now();
                let mut made = 0u64;
                while Instant::now() < deadline {
                    let due = (start.elapsed().as_secs_f64() * per_worker as f64) as u64;
                    if made >= due {
                        std::thread::sleep(Duration::from_micros(100));
                        continue;
                    }
                    for _ in 0..due.saturating_sub(made).min(64) {
                        let to = if made.is_multiple_of(2) { &home } else { &own };
                        // SAFETY: setns with an fd we own, for this thread.
                        if unsafe { libc::setns(to.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                            bail!("setns: {}", std::io::Error::last_os_error());
                        }
                        made += 1;
                    }
                }
                Ok(made)
            }))
        })
        .collect::<Result<_>>()?;
    let mut total = 0u64;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
    }
    println!("{total}");
    Ok(())
}

/// The bench in a QEMU guest, with the vm-test machinery (kernels, initramfs, console).
mod guest {
    use super::*;
    use crate::initramfs::{self, Payload};
    use crate::kernels;
    use crate::qemu::{self, Accel, Boot};

    pub fn run(args: &BenchArgs, kernel: &str, env: &Env) -> Result<Results> {
        let spec = kernels::spec(kernel)
            .with_context(|| format!("unknown guest kernel {kernel}; one of 5.10, 6.1, 6.12"))?;
        let root = root();
        let cache = kernels::cache_dir(&root);
        let target = target_dir();
        let kernel = kernels::prepare(spec, &cache, false)?;
        let work = target.join("bench-guest");
        std::fs::create_dir_all(&work)?;
        // The init script runs "tests" with libtest arguments; this one ignores them and runs
        // the bench (xtask itself, shipped as a binary) with the churn sizes a TCG guest
        // finishes in minutes.
        let reps = args.reps.unwrap_or(5);
        let only = args.only.clone().unwrap_or_else(|| "churn".into());
        let netns = args.netns_count.unwrap_or(300);
        let procs = args.proc_count.unwrap_or(1000);
        let script = work.join("bench-in-guest");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec /usr/local/bin/xtask bench --in-guest --reps {reps} --only '{only}' \
                 --netns-count {netns} --proc-count {procs}{profile}\n",
                profile = if args.profile { " --profile" } else { "" },
            ),
        )?;
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let mut bins = vec![
            env.netns_trace.clone(),
            env.testbed.clone(),
            copy_as(&std::env::current_exe()?, &work.join("xtask"))?,
        ];
        if let Ok(iperf) = initramfs::find_in_path("iperf3") {
            bins.push(iperf);
        }
        let payload = Payload {
            bins,
            main_bin: "netns-trace".into(),
            tests: vec![("bench".into(), script)],
            data_dirs: Vec::new(),
        };
        let initrd = initramfs::build(&work, &kernel, &payload, &[])?;
        let log_path = target
            .join("vm-logs")
            .join(format!("bench-{}.log", spec.name));
        let boot = Boot {
            label: format!("bench-{}", spec.name),
            vmlinuz: kernel.vmlinuz.clone(),
            initrd,
            log_path: log_path.clone(),
            timeout: Duration::from_secs(if args.quick { 900 } else { 1500 }),
            accel: Accel::detect(),
        };
        println!(
            "bench: booting {} for the guest bench (log {})",
            kernel.release,
            log_path.display()
        );
        let (_, verdict, accel) = qemu::run(&boot)?;
        let log = std::fs::read_to_string(&log_path)?;
        let line = log
            .lines()
            .find_map(|l| l.split_once(GUEST_RESULTS_MARK).map(|(_, r)| r.trim()))
            .with_context(|| {
                format!(
                    "the guest printed no results ({verdict:?}); see {}",
                    log_path.display()
                )
            })?;
        let mut res: Results = serde_json::from_str(line).context("guest results")?;
        res.machine.insert(
            "accelerator".into(),
            if accel == Accel::Kvm { "KVM" } else { "TCG" }.into(),
        );
        res.machine
            .insert("guest_kernel_package".into(), kernel.release.clone());
        if accel == Accel::Tcg {
            res.notes.push(
                "TCG software emulation: absolute times are meaningless, only the ratios count"
                    .into(),
            );
        }
        Ok(res)
    }

    fn copy_as(from: &Path, to: &Path) -> Result<PathBuf> {
        std::fs::copy(from, to).with_context(|| format!("copy {}", from.display()))?;
        Ok(to.to_path_buf())
    }
}
