//! The command line: one subcommand per scenario, plus teardown and the churn workloads.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "netns-trace-testbed",
    version,
    about = "Create real network-namespace situations (leaks, pins, churn) for netns-trace tests and benchmarks",
    long_about = "Create real network-namespace situations (leaks, pins, churn) on the running kernel \
for netns-trace's integration tests and benchmarks. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).\n\n\
Every command prints one JSON line on stdout describing what it made; errors go to stderr with a \
non-zero exit. Scenario commands record their processes, mounts and files in a state file under \
--dir. Without --keep a scenario is torn down again before the command exits (useful when only the \
events matter); with --keep it stays until `teardown --dir DIR`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Reproduce the stale-ARP production incident: a pod's pause process is SIGKILLed while
    /// its CNI bind mount stays, a new pod reuses its IP on the same bridge, and a client's ARP
    /// request gets two replies (the leaked pod's and the new pod's).
    ///
    /// Layout: a "node" netns pinned at DIR/node holding bridge ntbr<N>; pod A (pause process in
    /// a new netns, pinned at DIR/cni-<uuid>, eth0 with IP X and MAC 02:00:<X>) and pod B (same
    /// IP X, MAC 02:01:<X>) and a "client" netns pinned at DIR/client, each linked to the bridge
    /// by a veth pair. With --clean-teardown pod A is unmounted before its pause is killed, so
    /// nothing leaks and only pod B answers.
    Incident(IncidentArgs),
    /// Undo everything earlier runs recorded under DIR: unmount pins (MNT_DETACH), SIGKILL
    /// recorded processes (only if their start time still matches), remove pin files.
    /// Idempotent: a second call finds nothing to do.
    Teardown(TeardownArgs),
    /// docker-proxy style leak: the namespace's only member exits while another process
    /// (outside the namespace) keeps an open fd on /proc/PID/ns/net. Prints holder pid and fd.
    FdPin(ScenarioArgs),
    /// containerd-3667 style leak: the netns is bind-mounted under DIR, a second mount
    /// namespace (private propagation, held by a sleeping process) gets a copy of that mount,
    /// then the original is unmounted; the copy still pins the netns.
    CopiedMount(ScenarioArgs),
    /// Pin a netns with the new mount API: open_tree(OPEN_TREE_CLONE) on the nsfs file, then
    /// move_mount onto DIR/newapi-<uuid> (what util-linux >= 2.39 `mount --bind` does).
    NewMountApi(ScenarioArgs),
    /// containerd/CRI style creation: a thread unshares CLONE_NEWNET, bind-mounts
    /// /proc/self/task/TID/ns/net onto DIR/cni-<uuid> and setns()es back; a later "pause"
    /// process joins with setns and sleeps. --kill-member SIGKILLs it afterwards (cri-o 273 leak).
    RuntimeStyle(RuntimeStyleArgs),
    /// Namespace churn for benchmarks: N times fork a child that unshares CLONE_NEWNET
    /// (optionally bind-mounts and unmounts its netns, optionally lets a second process join it
    /// with setns), then everyone exits. No `ip` calls. Prints count and elapsed nanoseconds.
    Churn(ChurnArgs),
    /// Process churn baseline for benchmarks: fork + exec of /bin/true N times.
    ProcChurn(ProcChurnArgs),
}

#[derive(Args)]
pub struct ScenarioArgs {
    /// Directory for pin files and the state file (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Leave everything in place after printing; undo later with `teardown --dir DIR`.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args)]
pub struct IncidentArgs {
    #[command(flatten)]
    pub common: ScenarioArgs,
    /// Pod IP X with prefix, inside 10.231.0.0/16 (prefix 16..=30). Both pods get this IP; the
    /// client gets the last usable address of the subnet (one below if that is X).
    #[arg(long, default_value = "10.231.1.10/24")]
    pub ip: String,
    /// Tear pod A down properly (unmount its pin, then kill its pause): no leak, one ARP reply.
    #[arg(long)]
    pub clean_teardown: bool,
    /// How many broadcast ARP requests the client sends (400 ms listening window each).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub arp_count: u32,
    /// A cgroup v2 directory pod A's pause process moves itself into (writing cgroup.procs)
    /// before it creates its namespace, as the runtime places a pod's pause container.
    #[arg(long, value_name = "DIR")]
    pub cgroup: Option<PathBuf>,
}

#[derive(Args)]
pub struct TeardownArgs {
    /// Directory an earlier scenario ran with.
    #[arg(long)]
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct RuntimeStyleArgs {
    #[command(flatten)]
    pub common: ScenarioArgs,
    /// SIGKILL the joined member afterwards, leaving the namespace pinned only by the mount.
    #[arg(long)]
    pub kill_member: bool,
}

#[derive(Args)]
pub struct ChurnArgs {
    /// Number of namespaces to create and release.
    #[arg(long)]
    pub count: u64,
    /// Each child bind-mounts its netns onto a file under --dir, then unmounts it (MNT_DETACH).
    #[arg(long)]
    pub pin: bool,
    /// A second process joins each namespace with setns before everyone exits.
    #[arg(long)]
    pub join: bool,
    /// Directory for the --pin mount target (default: a private directory under $TMPDIR,
    /// removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct ProcChurnArgs {
    /// Number of fork + exec cycles.
    #[arg(long)]
    pub count: u64,
    /// Program to exec (no arguments).
    #[arg(long, default_value = "/bin/true")]
    pub program: PathBuf,
}
