//! netns-trace-testbed: builds real network-namespace situations on the running kernel so that
//! integration tests and benchmarks can watch the tracer observe them.
//!
//! Every command prints exactly one JSON line on stdout describing what it made (pids, inode
//! numbers, paths, MACs, IPs); errors go to stderr with a non-zero exit. Scenario commands record
//! what they create in a state file under `--dir`, so `teardown --dir` can undo them later.
//!
//! Namespaces are made with direct syscalls (unshare, setns, mount, open_tree/move_mount, fork);
//! only links and addresses go through iproute2's `ip`. Addresses are always inside 10.231.0.0/16
//! and only ever assigned inside namespaces made here.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as ProcessCommand, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

// Not (yet) exported by the libc crate; values from include/uapi/linux/mount.h.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;

/// SO_NETNS_COOKIE (Linux 5.14+), from include/uapi/asm-generic/socket.h; not in libc yet.
const SO_NETNS_COOKIE: libc::c_int = 71;

const STATE_FILE_NAME: &str = "netns-trace-testbed.state.json";
const ETH_P_ARP: u16 = 0x0806;
/// How long a teardown waits for killed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a scenario waits for links to come up or go away.
const LINK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum TestbedError {
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{role} child (pid {pid}) failed: {detail}")]
    ChildFailed {
        role: String,
        pid: i32,
        detail: String,
    },
    #[error("state file {path}: {detail}")]
    State { path: PathBuf, detail: String },
    #[error("kernel state does not match what the scenario built: {0}")]
    Unexpected(String),
    #[error("teardown incomplete: {0}")]
    Teardown(String),
}

type Result<T> = std::result::Result<T, TestbedError>;

fn os_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> TestbedError {
    let what = what.into();
    move |source| TestbedError::Os { what, source }
}

fn last_os_err(what: impl Into<String>) -> TestbedError {
    TestbedError::Os {
        what: what.into(),
        source: io::Error::last_os_error(),
    }
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
struct ScenarioArgs {
    /// Directory for pin files and the state file (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Leave everything in place after printing; undo later with `teardown --dir DIR`.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
struct IncidentArgs {
    #[command(flatten)]
    common: ScenarioArgs,
    /// Pod IP X with prefix, inside 10.231.0.0/16 (prefix 16..=30). Both pods get this IP; the
    /// client gets the last usable address of the subnet (one below if that is X).
    #[arg(long, default_value = "10.231.1.10/24")]
    ip: String,
    /// Tear pod A down properly (unmount its pin, then kill its pause): no leak, one ARP reply.
    #[arg(long)]
    clean_teardown: bool,
    /// How many broadcast ARP requests the client sends (400 ms listening window each).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    arp_count: u32,
    /// A cgroup v2 directory pod A's pause process moves itself into (writing cgroup.procs)
    /// before it creates its namespace, as the runtime places a pod's pause container.
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
}

#[derive(Args)]
struct TeardownArgs {
    /// Directory an earlier scenario ran with.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Args)]
struct RuntimeStyleArgs {
    #[command(flatten)]
    common: ScenarioArgs,
    /// SIGKILL the joined member afterwards, leaving the namespace pinned only by the mount.
    #[arg(long)]
    kill_member: bool,
}

#[derive(Args)]
struct ChurnArgs {
    /// Number of namespaces to create and release.
    #[arg(long)]
    count: u64,
    /// Each child bind-mounts its netns onto a file under --dir, then unmounts it (MNT_DETACH).
    #[arg(long)]
    pin: bool,
    /// A second process joins each namespace with setns before everyone exits.
    #[arg(long)]
    join: bool,
    /// Directory for the --pin mount target (default: a private directory under $TMPDIR,
    /// removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct ProcChurnArgs {
    /// Number of fork + exec cycles.
    #[arg(long)]
    count: u64,
    /// Program to exec (no arguments).
    #[arg(long, default_value = "/bin/true")]
    program: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Incident(args) => {
            run_scenario(&args.common, "incident", |run| incident(run, &args))
        }
        Command::Teardown(args) => teardown_dir(&args.dir),
        Command::FdPin(args) => run_scenario(&args, "fd-pin", fd_pin),
        Command::CopiedMount(args) => run_scenario(&args, "copied-mount", copied_mount),
        Command::NewMountApi(args) => run_scenario(&args, "new-mount-api", new_mount_api),
        Command::RuntimeStyle(args) => run_scenario(&args.common, "runtime-style", |run| {
            runtime_style(run, args.kill_member)
        }),
        Command::Churn(args) => churn(&args),
        Command::ProcChurn(args) => proc_churn(&args),
    };
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netns-trace-testbed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small syscall wrappers
// ---------------------------------------------------------------------------------------------

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        TestbedError::InvalidArgument(format!("path {} contains a NUL byte", path.display()))
    })
}

fn unshare(flags: libc::c_int, what: &str) -> Result<()> {
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(last_os_err(format!("unshare({what})")));
    }
    Ok(())
}

fn setns(fd: RawFd, nstype: libc::c_int, what: &str) -> Result<()> {
    if unsafe { libc::setns(fd, nstype) } != 0 {
        return Err(last_os_err(format!("setns({what})")));
    }
    Ok(())
}

fn bind_mount(source: &Path, target: &Path) -> Result<()> {
    let (src, dst) = (c_path(source)?, c_path(target)?);
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(last_os_err(format!(
            "mount --bind {} {}",
            source.display(),
            target.display()
        )));
    }
    Ok(())
}

fn umount_detach(target: &Path) -> Result<()> {
    let dst = c_path(target)?;
    if unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(last_os_err(format!(
            "umount2({}, MNT_DETACH)",
            target.display()
        )));
    }
    Ok(())
}

/// `mount --bind` the way util-linux >= 2.39 does it: clone the nsfs file's mount into a
/// detached tree, then attach that tree at `target`.
fn open_tree_move_mount(source: &Path, target: &Path) -> Result<()> {
    let (src, dst) = (c_path(source)?, c_path(target)?);
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    };
    if tree < 0 {
        return Err(last_os_err(format!(
            "open_tree({}, OPEN_TREE_CLONE) (needs Linux 5.2+)",
            source.display()
        )));
    }
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(last_os_err(format!("move_mount(-> {})", target.display())));
    }
    Ok(())
}

fn gettid() -> i32 {
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn ns_inum(path: &Path) -> Result<u64> {
    fs::metadata(path)
        .map(|m| m.ino())
        .map_err(os_err(format!("stat {}", path.display())))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_os_err("pipe2"));
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Blocks until `pid` (a child of ours) exits; returns its raw wait status.
fn wait_child(pid: i32) -> Result<libc::c_int> {
    let mut status = 0;
    loop {
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(TestbedError::Os {
                what: format!("waitpid({pid})"),
                source: err,
            });
        }
    }
}

fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// SIGKILLs a child of ours and reaps it.
fn kill_child(pid: i32) -> Result<()> {
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(last_os_err(format!("kill({pid}, SIGKILL)")));
    }
    wait_child(pid).map(|_| ())
}

/// Start time (clock ticks since boot, field 22 of /proc/PID/stat) and state letter.
fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses; the fields after the last ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let starttime = fields.nth(18)?.parse().ok()?;
    Some((starttime, state))
}

fn uuid_v4() -> Result<String> {
    let mut b = [0u8; 16];
    // getrandom(2) rather than /dev/urandom: minimal guests may lack a populated /dev.
    let got = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if got != b.len() as isize {
        return Err(last_os_err("getrandom"));
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Creates an empty file to mount on. Fails if it exists, so we never claim someone else's file.
fn create_mount_target(path: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(os_err(format!("create mount target {}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// Forked helper processes
// ---------------------------------------------------------------------------------------------

/// What a forked child does once it has reported success.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterReport {
    /// Sleep until killed (a pause process, a holder).
    SleepForever,
    /// Exit once the parent drops `ForkedChild::release`.
    ExitWhenReleased,
}

struct ForkedChild {
    pid: i32,
    /// The text the child reported after "ok ".
    report: String,
    /// Closing this lets an `ExitWhenReleased` child exit.
    release: Option<OwnedFd>,
}

impl ForkedChild {
    fn release_and_reap(mut self, role: &str) -> Result<()> {
        drop(self.release.take());
        let status = wait_child(self.pid)?;
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(TestbedError::ChildFailed {
                role: role.into(),
                pid: self.pid,
                detail: describe_status(status),
            });
        }
        Ok(())
    }
}

/// Forks a child named `comm` that runs `body` and reports its result through a pipe. The child
/// first points stdio at /dev/null and closes every other inherited fd, so it neither holds a
/// caller's output pipe open nor pins a namespace through an fd it did not open itself.
///
/// Must only be called while this process is single-threaded.
fn fork_child(
    comm: &str,
    after: AfterReport,
    body: impl FnOnce() -> Result<String>,
) -> Result<ForkedChild> {
    let comm_c = CString::new(comm)
        .map_err(|_| TestbedError::InvalidArgument(format!("process name {comm:?}")))?;
    let (report_r, report_w) = pipe()?;
    let release = match after {
        AfterReport::ExitWhenReleased => Some(pipe()?),
        AfterReport::SleepForever => None,
    };
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_os_err("fork"));
    }
    if pid == 0 {
        drop(report_r);
        let release_r = release.map(|(r, w)| {
            drop(w);
            r
        });
        let code = child_main(&comm_c, report_w, release_r, after, body);
        unsafe { libc::_exit(code) }
    }
    drop(report_w);
    let release_w = release.map(|(r, w)| {
        drop(r);
        w
    });
    let mut text = String::new();
    // EOF arrives when the child closes the pipe after reporting, or dies.
    let read = File::from(report_r).read_to_string(&mut text);
    if let (Ok(_), Some(report)) = (&read, text.strip_prefix("ok ")) {
        return Ok(ForkedChild {
            pid,
            report: report.to_string(),
            release: release_w,
        });
    }
    drop(release_w);
    let status = wait_child(pid)
        .map(describe_status)
        .unwrap_or_else(|e| e.to_string());
    let detail = match text.strip_prefix("err ") {
        Some(msg) => format!("{msg} ({status})"),
        None => format!("exited before reporting ({status})"),
    };
    Err(TestbedError::ChildFailed {
        role: comm.into(),
        pid,
        detail,
    })
}

fn child_main(
    comm: &CString,
    report_w: OwnedFd,
    release_r: Option<OwnedFd>,
    after: AfterReport,
    body: impl FnOnce() -> Result<String>,
) -> i32 {
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
    let mut keep = vec![report_w.as_raw_fd()];
    keep.extend(release_r.as_ref().map(|f| f.as_raw_fd()));
    detach_inherited_fds(&keep);
    let mut report = File::from(report_w);
    match body() {
        Ok(msg) => {
            let _ = write!(report, "ok {msg}");
            drop(report);
        }
        Err(e) => {
            let _ = write!(report, "err {e}");
            return 1;
        }
    }
    match (after, release_r) {
        (AfterReport::ExitWhenReleased, Some(release)) => {
            let mut byte = [0u8; 1];
            let _ = File::from(release).read(&mut byte);
            0
        }
        _ => loop {
            unsafe { libc::pause() };
        },
    }
}

fn detach_inherited_fds(keep: &[RawFd]) {
    let devnull = c"/dev/null";
    let null = unsafe { libc::open(devnull.as_ptr(), libc::O_RDWR) };
    if null >= 0 {
        for std_fd in 0..3 {
            unsafe { libc::dup2(null, std_fd) };
        }
        if null > 2 {
            unsafe { libc::close(null) };
        }
    } else {
        // No /dev/null (bare guest): closing still releases the caller's output pipes.
        for std_fd in 0..3 {
            unsafe { libc::close(std_fd) };
        }
    }
    let mut keep: Vec<u32> = keep.iter().map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut next = 3u32;
    for fd in keep {
        if fd < next {
            continue;
        }
        if fd > next {
            close_range(next, fd - 1);
        }
        next = fd + 1;
    }
    close_range(next, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if rc != 0 {
        // close_range is 5.9+; walk a bounded range on older kernels.
        for fd in first..=last.min(first.saturating_add(65_536)) {
            unsafe { libc::close(fd as RawFd) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Threads that enter namespaces
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum PinMethod {
    /// mount(2) with MS_BIND, like `ip netns add` and CNI plugins.
    BindMount,
    /// open_tree(OPEN_TREE_CLONE) + move_mount.
    NewMountApi,
}

struct ThreadPin {
    inum: u64,
    tid: i32,
    original_inum: u64,
}

/// Runs `f` on a fresh thread whose network namespace is the one at `netns_file`; the rest of
/// the process is unaffected (setns(CLONE_NEWNET) is per-thread).
fn in_netns<T: Send>(netns_file: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = File::open(netns_file).map_err(os_err(format!("open {}", netns_file.display())))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(
                ns.as_raw_fd(),
                libc::CLONE_NEWNET,
                &netns_file.display().to_string(),
            )?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(TestbedError::Unexpected(
                "namespace worker thread panicked".into(),
            ))
        })
    })
}

/// The containerd pattern: a thread unshares CLONE_NEWNET, pins /proc/self/task/TID/ns/net at
/// `target`, then setns()es back to the namespace it started in.
fn thread_pin_new_netns(target: &Path, method: PinMethod) -> Result<ThreadPin> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let tid = gettid();
            let own = PathBuf::from(format!("/proc/self/task/{tid}/ns/net"));
            let original = File::open(&own).map_err(os_err(format!("open {}", own.display())))?;
            let original_inum = original
                .metadata()
                .map_err(os_err("fstat original netns"))?
                .ino();
            unshare(libc::CLONE_NEWNET, "CLONE_NEWNET")?;
            let inum = ns_inum(&own)?;
            let pinned = match method {
                PinMethod::BindMount => bind_mount(&own, target),
                PinMethod::NewMountApi => open_tree_move_mount(&own, target),
            };
            setns(
                original.as_raw_fd(),
                libc::CLONE_NEWNET,
                "back to the original netns",
            )?;
            pinned?;
            if ns_inum(&own)? != original_inum {
                return Err(TestbedError::Unexpected(
                    "thread did not return to its original netns".into(),
                ));
            }
            Ok(ThreadPin {
                inum,
                tid,
                original_inum,
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(TestbedError::Unexpected(
                "namespace worker thread panicked".into(),
            ))
        })
    })
}

/// The namespace's net_cookie, read through SO_NETNS_COOKIE on a socket made inside it. It is
/// the key netns-trace uses, since inode numbers are reused. None before Linux 5.14.
fn netns_cookie(netns_file: &Path) -> Option<u64> {
    in_netns(netns_file, || {
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(last_os_err("socket(AF_INET)"));
        }
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        Ok((rc == 0).then_some(cookie))
    })
    .ok()
    .flatten()
}

/// ifreq with only the flags member of the union used (struct size 40 on 64-bit).
#[repr(C)]
struct IfreqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn iface_flags(sock: RawFd, ifname: &str) -> Option<libc::c_short> {
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    for (dst, src) in req
        .name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    let rc = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) };
    (rc == 0).then_some(req.flags)
}

/// Waits until every interface in `ifnames` is IFF_RUNNING (operstate up, so its qdisc is
/// active and frames are not dropped).
fn wait_links_running(netns_file: &Path, ifnames: &[&str]) -> Result<()> {
    wait_links(netns_file, ifnames, true)
}

fn wait_links_gone(netns_file: &Path, ifnames: &[&str]) -> Result<()> {
    wait_links(netns_file, ifnames, false)
}

fn wait_links(netns_file: &Path, ifnames: &[&str], running: bool) -> Result<()> {
    in_netns(netns_file, || {
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(last_os_err("socket(AF_INET)"));
        }
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        let deadline = Instant::now() + LINK_WAIT;
        loop {
            let pending: Vec<&str> = ifnames
                .iter()
                .copied()
                .filter(|name| match iface_flags(sock.as_raw_fd(), name) {
                    Some(flags) => running != (flags as libc::c_int & libc::IFF_RUNNING != 0),
                    None => running,
                })
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let want = if running { "running" } else { "gone" };
                return Err(TestbedError::Unexpected(format!(
                    "links {pending:?} in {} not {want} after {LINK_WAIT:?}",
                    netns_file.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

// ---------------------------------------------------------------------------------------------
// iproute2
// ---------------------------------------------------------------------------------------------

/// iproute2's ip: busybox's applet lacks `type veth` and netns paths, so prefer /sbin/ip.
fn ip_bin() -> &'static str {
    if Path::new("/sbin/ip").exists() {
        "/sbin/ip"
    } else {
        "ip"
    }
}

/// Runs `ip ARGS` inside the network namespace at `netns_file`.
fn ip_in(netns_file: &Path, args: &[&str]) -> Result<String> {
    let ns = File::open(netns_file).map_err(os_err(format!("open {}", netns_file.display())))?;
    let ns_fd = ns.as_raw_fd();
    let mut cmd = ProcessCommand::new(ip_bin());
    cmd.args(args).stdin(Stdio::null());
    // The fd is O_CLOEXEC, so it is still open here and closed by exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let command = format!(
        "[netns {}] {} {}",
        netns_file.display(),
        ip_bin(),
        args.join(" ")
    );
    let out = cmd.output().map_err(os_err(format!("run {command}")))?;
    if !out.status.success() {
        return Err(TestbedError::CommandFailed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// State file and teardown
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    runs: Vec<RunRecord>,
}

#[derive(Serialize, Deserialize, Clone)]
struct RunRecord {
    id: String,
    scenario: String,
    testbed_pid: u32,
    processes: Vec<ProcessRecord>,
    /// Pin paths, in the order they were mounted.
    mounts: Vec<PathBuf>,
    /// Files this run created (mount targets).
    files: Vec<PathBuf>,
}

#[derive(Serialize, Deserialize, Clone)]
struct ProcessRecord {
    pid: i32,
    /// Guards against killing an unrelated process that reused the pid.
    starttime: u64,
    role: String,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE_NAME)
}

fn load_state(dir: &Path) -> Result<StateFile> {
    let path = state_path(dir);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| TestbedError::State {
            path,
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(e) => Err(TestbedError::State {
            path,
            detail: e.to_string(),
        }),
    }
}

fn save_state(dir: &Path, state: &StateFile) -> Result<()> {
    let path = state_path(dir);
    if state.runs.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(TestbedError::State {
                path,
                detail: e.to_string(),
            }),
            _ => Ok(()),
        };
    }
    let text = serde_json::to_string_pretty(state).map_err(|e| TestbedError::State {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let tmp = dir.join(format!("{STATE_FILE_NAME}.tmp"));
    fs::write(&tmp, text)
        .and_then(|_| fs::rename(&tmp, &path))
        .map_err(|e| TestbedError::State {
            path,
            detail: e.to_string(),
        })
}

/// One scenario run: everything it creates is written to the state file as soon as it exists,
/// so `teardown` can undo even a run that was interrupted.
struct Run {
    dir: PathBuf,
    record: RunRecord,
    /// Direct children of this process still to be reaped.
    own_children: Vec<i32>,
}

impl Run {
    fn begin(dir: &Path, scenario: &str) -> Result<Run> {
        fs::create_dir_all(dir).map_err(os_err(format!("create {}", dir.display())))?;
        let dir = fs::canonicalize(dir).map_err(os_err(format!("resolve {}", dir.display())))?;
        let record = RunRecord {
            id: uuid_v4()?,
            scenario: scenario.into(),
            testbed_pid: std::process::id(),
            processes: vec![],
            mounts: vec![],
            files: vec![],
        };
        let run = Run {
            dir,
            record,
            own_children: vec![],
        };
        run.persist()?;
        Ok(run)
    }

    fn persist(&self) -> Result<()> {
        let mut state = load_state(&self.dir)?;
        match state.runs.iter_mut().find(|r| r.id == self.record.id) {
            Some(slot) => *slot = self.record.clone(),
            None => state.runs.push(self.record.clone()),
        }
        save_state(&self.dir, &state)
    }

    fn track_process(&mut self, pid: i32, role: &str) -> Result<()> {
        let (starttime, _) = proc_stat(pid).ok_or_else(|| {
            TestbedError::Unexpected(format!("{role} (pid {pid}) vanished right after starting"))
        })?;
        self.record.processes.push(ProcessRecord {
            pid,
            starttime,
            role: role.into(),
        });
        self.own_children.push(pid);
        self.persist()
    }

    /// Records that this run reaped one of its children itself.
    fn reaped(&mut self, pid: i32) {
        self.own_children.retain(|&p| p != pid);
    }

    fn track_mount(&mut self, path: &Path) -> Result<()> {
        self.record.mounts.push(path.to_path_buf());
        self.persist()
    }

    fn track_file(&mut self, path: &Path) -> Result<()> {
        self.record.files.push(path.to_path_buf());
        self.persist()
    }

    /// A new pin file under the run's directory, recorded for teardown before anything is
    /// mounted on it.
    fn new_pin_target(&mut self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        create_mount_target(&path)?;
        self.track_file(&path)?;
        self.track_mount(&path)?;
        Ok(path)
    }

    /// Pins a brand-new netns at DIR/`name` from a short-lived thread.
    fn pin_fresh_netns(&mut self, name: &str, method: PinMethod) -> Result<(PathBuf, ThreadPin)> {
        let target = self.new_pin_target(name)?;
        let pin = thread_pin_new_netns(&target, method)?;
        let seen = ns_inum(&target)?;
        if seen != pin.inum {
            return Err(TestbedError::Unexpected(format!(
                "{} has inode {seen}, expected net:[{}]",
                target.display(),
                pin.inum
            )));
        }
        Ok((target, pin))
    }

    fn teardown(mut self) -> Result<TeardownReport> {
        let mut report = TeardownReport::default();
        teardown_record(&self.record, &self.own_children, &mut report);
        self.own_children.clear();
        let mut state = load_state(&self.dir)?;
        if report.is_clean() {
            state.runs.retain(|r| r.id != self.record.id);
            save_state(&self.dir, &state)?;
        }
        Ok(report)
    }
}

#[derive(Default, Serialize)]
struct TeardownReport {
    runs: usize,
    unmounted: Vec<PathBuf>,
    killed: Vec<i32>,
    already_gone: Vec<i32>,
    still_alive: Vec<i32>,
    removed: Vec<PathBuf>,
    errors: Vec<String>,
}

impl TeardownReport {
    fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.still_alive.is_empty()
    }
}

/// Unmount pins (newest first), kill processes whose start time still matches, wait for them to
/// be gone (or zombies, which no longer hold namespaces), then remove pin files. Unmounting and
/// killing both come before file removal: unlinking a file that is still a mount point in some
/// other mount namespace would silently detach that copy.
fn teardown_record(record: &RunRecord, own_children: &[i32], report: &mut TeardownReport) {
    report.runs += 1;
    for path in record.mounts.iter().rev() {
        let mut detached = 0;
        // A path may carry stacked mounts; peel them all.
        while detached < 32 {
            match umount_detach(path) {
                Ok(()) => detached += 1,
                Err(TestbedError::Os { source, .. })
                    if matches!(
                        source.raw_os_error(),
                        Some(libc::EINVAL) | Some(libc::ENOENT)
                    ) =>
                {
                    break;
                }
                Err(e) => {
                    report.errors.push(e.to_string());
                    break;
                }
            }
        }
        if detached > 0 {
            report.unmounted.push(path.clone());
        }
    }

    let mut waiting = vec![];
    for proc_rec in &record.processes {
        match proc_stat(proc_rec.pid) {
            Some((starttime, state)) if starttime == proc_rec.starttime && state != 'Z' => {
                if unsafe { libc::kill(proc_rec.pid, libc::SIGKILL) } == 0 {
                    report.killed.push(proc_rec.pid);
                    waiting.push(proc_rec.clone());
                } else {
                    report.errors.push(
                        last_os_err(format!("kill {} ({})", proc_rec.pid, proc_rec.role))
                            .to_string(),
                    );
                }
            }
            _ => {
                report.already_gone.push(proc_rec.pid);
                if own_children.contains(&proc_rec.pid) {
                    // A zombie child of ours: reap it.
                    unsafe { libc::waitpid(proc_rec.pid, std::ptr::null_mut(), libc::WNOHANG) };
                }
            }
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    while !waiting.is_empty() {
        waiting.retain(|p| {
            if own_children.contains(&p.pid) {
                let rc = unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG) };
                if rc == p.pid {
                    return false;
                }
            }
            matches!(proc_stat(p.pid), Some((st, state)) if st == p.starttime && state != 'Z')
        });
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            report.still_alive.extend(waiting.iter().map(|p| p.pid));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    for path in record.files.iter().rev() {
        match fs::remove_file(path) {
            Ok(()) => report.removed.push(path.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => report
                .errors
                .push(format!("remove {}: {e}", path.display())),
        }
    }
}

fn teardown_dir(dir: &Path) -> Result<Value> {
    let mut report = TeardownReport::default();
    if dir.is_dir() {
        let mut state = load_state(dir)?;
        let mut unfinished = vec![];
        for record in state.runs.drain(..) {
            let mut one = TeardownReport::default();
            teardown_record(&record, &[], &mut one);
            if !one.is_clean() {
                unfinished.push(record);
            }
            report.runs += one.runs;
            report.unmounted.extend(one.unmounted);
            report.killed.extend(one.killed);
            report.already_gone.extend(one.already_gone);
            report.still_alive.extend(one.still_alive);
            report.removed.extend(one.removed);
            report.errors.extend(one.errors);
        }
        state.runs = unfinished;
        save_state(dir, &state)?;
    }
    if !report.is_clean() {
        return Err(TestbedError::Teardown(
            serde_json::to_string(&report)
                .unwrap_or_else(|e| format!("(report not serializable: {e})")),
        ));
    }
    let mut out = serde_json::to_value(&report).unwrap_or(Value::Null);
    out["scenario"] = json!("teardown");
    out["dir"] = json!(dir);
    Ok(out)
}

/// Runs a scenario inside a recorded `Run`; undoes the run's own resources on error, and after
/// success too unless `--keep`.
fn run_scenario(
    args: &ScenarioArgs,
    scenario: &str,
    body: impl FnOnce(&mut Run) -> Result<Value>,
) -> Result<Value> {
    let mut run = Run::begin(&args.dir, scenario)?;
    let outcome = body(&mut run);
    let run_id = run.record.id.clone();
    let state_file = state_path(&run.dir);
    let dir = run.dir.clone();
    match outcome {
        Ok(mut out) => {
            out["scenario"] = json!(scenario);
            out["dir"] = json!(dir);
            out["run_id"] = json!(run_id);
            out["state_file"] = json!(state_file);
            out["testbed_pid"] = json!(std::process::id());
            out["kept"] = json!(args.keep);
            if !args.keep {
                let report = run.teardown()?;
                if !report.is_clean() {
                    return Err(TestbedError::Teardown(
                        serde_json::to_string(&report).unwrap_or_default(),
                    ));
                }
                out["teardown"] = serde_json::to_value(&report).unwrap_or(Value::Null);
            }
            Ok(out)
        }
        Err(e) => {
            if let Ok(report) = run.teardown()
                && !report.is_clean()
            {
                eprintln!(
                    "netns-trace-testbed: cleanup after failure incomplete: {:?}",
                    report.errors
                );
            }
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// incident
// ---------------------------------------------------------------------------------------------

struct PodCidr {
    ip: Ipv4Addr,
    prefix: u8,
}

fn parse_pod_cidr(text: &str) -> Result<PodCidr> {
    let bad = |why: &str| TestbedError::InvalidArgument(format!("--ip {text:?}: {why}"));
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
    let ip: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
    let prefix: u8 = prefix.parse().map_err(|_| bad("prefix is not a number"))?;
    if !(16..=30).contains(&prefix) {
        return Err(bad("prefix must be between 16 and 30"));
    }
    let o = ip.octets();
    if o[0] != 10 || o[1] != 231 {
        return Err(bad(
            "the testbed only assigns addresses inside 10.231.0.0/16",
        ));
    }
    let mask = u32::MAX << (32 - prefix);
    let host = u32::from(ip) & !mask;
    if host == 0 || host == !mask {
        return Err(bad("that is the subnet's network or broadcast address"));
    }
    Ok(PodCidr { ip, prefix })
}

/// The client takes the subnet's last usable address, or the one below if the pods use it.
fn client_ip_for(pod: &PodCidr) -> Ipv4Addr {
    let mask = u32::MAX << (32 - pod.prefix);
    let broadcast = (u32::from(pod.ip) & mask) | !mask;
    let candidate = broadcast - 1;
    Ipv4Addr::from(if candidate == u32::from(pod.ip) {
        candidate - 1
    } else {
        candidate
    })
}

/// 02:<tag>:<the four IP bytes>: locally administered, fixed, and readable in captures.
fn mac_for(tag: u8, ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, tag, o[0], o[1], o[2], o[3]]
}

struct Pod {
    pause_pid: i32,
    cookie: Option<u64>,
    pin: PathBuf,
    inum: u64,
    host_veth: String,
    mac: [u8; 6],
}

/// A pod as a CNI runtime makes one: a pause process in a new netns, bind-mounted at
/// DIR/cni-<uuid>, with eth0 (fixed MAC, pod IP) veth-paired to a port of the node's bridge.
fn start_pod(
    run: &mut Run,
    name: &str,
    node: &Path,
    bridge: &str,
    mac: [u8; 6],
    cidr: &PodCidr,
    cgroup: Option<&Path>,
) -> Result<Pod> {
    let role = format!("pause of pod {name}");
    let pause = fork_child("pause", AfterReport::SleepForever, || {
        if let Some(cg) = cgroup {
            let procs = cg.join("cgroup.procs");
            fs::write(&procs, "0").map_err(os_err(format!("write {}", procs.display())))?;
        }
        unshare(libc::CLONE_NEWNET, "CLONE_NEWNET")?;
        Ok(ns_inum(Path::new("/proc/self/ns/net"))?.to_string())
    })?;
    run.track_process(pause.pid, &role)?;
    let inum: u64 = pause
        .report
        .parse()
        .map_err(|_| TestbedError::Unexpected(format!("{role} reported {:?}", pause.report)))?;
    let pin = run.new_pin_target(&format!("cni-{}", uuid_v4()?))?;
    bind_mount(Path::new(&format!("/proc/{}/ns/net", pause.pid)), &pin)?;
    if ns_inum(&pin)? != inum {
        return Err(TestbedError::Unexpected(format!(
            "{} does not pin net:[{inum}]",
            pin.display()
        )));
    }
    let host_veth = format!("veth-{name}");
    let mac_text = fmt_mac(&mac);
    let node_text = node.to_string_lossy();
    let ip_text = format!("{}/{}", cidr.ip, cidr.prefix);
    ip_in(&pin, &["link", "set", "lo", "up"])?;
    ip_in(
        &pin,
        &[
            "link", "add", "eth0", "address", &mac_text, "type", "veth", "peer", "name",
            &host_veth, "netns", &node_text,
        ],
    )?;
    ip_in(node, &["link", "set", &host_veth, "master", bridge, "up"])?;
    ip_in(&pin, &["addr", "add", &ip_text, "dev", "eth0"])?;
    ip_in(&pin, &["link", "set", "eth0", "up"])?;
    // Ready as a CNI ADD leaves it: carrier up on both ends. Waiting here, while the pause
    // process still lives, keeps every visit to the pod inside its life; linkwatch can take
    // over a second under TCG, and a visitor that stays that long counts as a member.
    wait_links_running(&pin, &["eth0"])?;
    wait_links_running(node, &[&host_veth])?;
    Ok(Pod {
        pause_pid: pause.pid,
        cookie: netns_cookie(&pin),
        pin,
        inum,
        host_veth,
        mac,
    })
}

fn incident(run: &mut Run, args: &IncidentArgs) -> Result<Value> {
    let cidr = parse_pod_cidr(&args.ip)?;
    let client_ip = client_ip_for(&cidr);
    let leak = !args.clean_teardown;
    let bridge = format!("ntbr{}", std::process::id() % 100_000);

    // (1) the node: a pinned netns with the bridge.
    let (node, node_pin) = run.pin_fresh_netns("node", PinMethod::BindMount)?;
    ip_in(&node, &["link", "set", "lo", "up"])?;
    ip_in(&node, &["link", "add", &bridge, "type", "bridge"])?;
    ip_in(&node, &["link", "set", &bridge, "up"])?;

    // (2) pod A.
    let pod_a = start_pod(
        run,
        "a",
        &node,
        &bridge,
        mac_for(0x00, cidr.ip),
        &cidr,
        args.cgroup.as_deref(),
    )?;

    // (3) pod A goes away: SIGKILL without cleanup (leak), or unmount first (clean).
    let mut pod_a_pin_mounted = true;
    if !leak {
        // What `ip netns del` and a CNI DEL do: detach, then unlink.
        umount_detach(&pod_a.pin)?;
        fs::remove_file(&pod_a.pin).map_err(os_err(format!("remove {}", pod_a.pin.display())))?;
        pod_a_pin_mounted = false;
    }
    kill_child(pod_a.pause_pid)?;
    run.reaped(pod_a.pause_pid);
    if leak {
        let seen = ns_inum(&pod_a.pin)?;
        if seen != pod_a.inum {
            return Err(TestbedError::Unexpected(format!(
                "pin {} holds inode {seen}, not pod A's net:[{}]",
                pod_a.pin.display(),
                pod_a.inum
            )));
        }
    } else {
        // Its netns is freed asynchronously; wait for its veth to vanish from the node so pod A
        // cannot answer the ARP requests below.
        wait_links_gone(&node, &[&pod_a.host_veth])?;
    }

    // (4) pod B, same IP, different MAC.
    let pod_b = start_pod(
        run,
        "b",
        &node,
        &bridge,
        mac_for(0x01, cidr.ip),
        &cidr,
        None,
    )?;

    // (5) the client.
    let client_mac = mac_for(0x02, client_ip);
    let (client, client_pin) = run.pin_fresh_netns("client", PinMethod::BindMount)?;
    let node_text = node.to_string_lossy();
    ip_in(&client, &["link", "set", "lo", "up"])?;
    ip_in(
        &client,
        &[
            "link",
            "add",
            "eth0",
            "address",
            &fmt_mac(&client_mac),
            "type",
            "veth",
            "peer",
            "name",
            "veth-c",
            "netns",
            &node_text,
        ],
    )?;
    ip_in(&node, &["link", "set", "veth-c", "master", &bridge, "up"])?;
    ip_in(
        &client,
        &[
            "addr",
            "add",
            &format!("{client_ip}/{}", cidr.prefix),
            "dev",
            "eth0",
        ],
    )?;
    ip_in(&client, &["link", "set", "eth0", "up"])?;

    // Pod A is not visited again after its pause process died: a visit would be a member.
    wait_links_running(&node, &["veth-c"])?;
    wait_links_running(&client, &["eth0"])?;

    let arp = arp_exchange(
        &client,
        "eth0",
        client_mac,
        client_ip,
        cidr.ip,
        args.arp_count,
    )?;
    let mut responders: Vec<String> = arp.replies.iter().map(|r| fmt_mac(&r.sender_mac)).collect();
    responders.sort();
    responders.dedup();
    let replies: Vec<Value> = arp
        .replies
        .iter()
        .map(|r| {
            json!({
                "request": r.request,
                "sender_mac": fmt_mac(&r.sender_mac),
                "sender_ip": r.sender_ip.to_string(),
                "eth_src": fmt_mac(&r.eth_src),
            })
        })
        .collect();
    let stale_reply = responders.contains(&fmt_mac(&pod_a.mac));
    // After a clean teardown the kernel may hand pod A's inode number to a later namespace:
    // say so, since only the cookie tells them apart.
    let pod_a_inum_reused_by = [("pod_b", pod_b.inum), ("client", client_pin.inum)]
        .into_iter()
        .find(|(_, inum)| *inum == pod_a.inum)
        .map(|(role, _)| role);

    let pod_json = |pod: &Pod, alive: bool, pin_mounted: bool| {
        json!({
            "pause_pid": pod.pause_pid,
            "pause_alive": alive,
            "netns_inum": pod.inum,
            "netns_cookie": pod.cookie,
            "pin": pod.pin,
            "pin_mounted": pin_mounted,
            "mac": fmt_mac(&pod.mac),
            "ip": cidr.ip.to_string(),
            "prefix": cidr.prefix,
            "interface": "eth0",
            "host_veth": pod.host_veth,
        })
    };
    Ok(json!({
        "leak_expected": leak,
        "clean_teardown": !leak,
        "bridge": bridge,
        "node": {
            "pin": node,
            "netns_inum": node_pin.inum,
            "netns_cookie": netns_cookie(&node),
            "creator_tid": node_pin.tid,
        },
        "pod_a": pod_json(&pod_a, false, pod_a_pin_mounted),
        "pod_a_inum_reused_by": pod_a_inum_reused_by,
        "pod_b": pod_json(&pod_b, true, true),
        "client": {
            "pin": client,
            "netns_inum": client_pin.inum,
            "netns_cookie": netns_cookie(&client),
            "mac": fmt_mac(&client_mac),
            "ip": client_ip.to_string(),
            "prefix": cidr.prefix,
            "interface": "eth0",
            "host_veth": "veth-c",
        },
        "arp": {
            "target_ip": cidr.ip.to_string(),
            "requests_sent": arp.requests_sent,
            "replies": replies,
            "responder_macs": responders,
            "stale_reply": stale_reply,
        },
    }))
}

struct ArpReply {
    request: u32,
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    eth_src: [u8; 6],
}

struct ArpExchange {
    requests_sent: u32,
    replies: Vec<ArpReply>,
}

/// Sends `count` broadcast ARP requests for `target` from `ifname` in the netns at `netns_file`
/// through an AF_PACKET socket, and collects every reply addressed to us (400 ms per request).
fn arp_exchange(
    netns_file: &Path,
    ifname: &str,
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    target: Ipv4Addr,
    count: u32,
) -> Result<ArpExchange> {
    in_netns(netns_file, || {
        let proto_be = ETH_P_ARP.to_be();
        let sock = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto_be as libc::c_int,
            )
        };
        if sock < 0 {
            return Err(last_os_err("socket(AF_PACKET)"));
        }
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        let name = CString::new(ifname)
            .map_err(|_| TestbedError::InvalidArgument(format!("interface {ifname:?}")))?;
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(last_os_err(format!("if_nametoindex({ifname})")));
        }
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto_be;
        addr.sll_ifindex = ifindex as i32;
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(last_os_err("bind(AF_PACKET)"));
        }

        let mut frame = [0u8; 60];
        frame[0..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&src_mac);
        frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        frame[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        frame[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        frame[18] = 6;
        frame[19] = 4;
        frame[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
        frame[22..28].copy_from_slice(&src_mac);
        frame[28..32].copy_from_slice(&src_ip.octets());
        frame[38..42].copy_from_slice(&target.octets());

        let mut replies = vec![];
        let mut buf = [0u8; 2048];
        for request in 1..=count {
            let sent =
                unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if sent < 0 {
                return Err(last_os_err("send ARP request"));
            }
            let deadline = Instant::now() + Duration::from_millis(400);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut pfd = libc::pollfd {
                    fd: sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ready =
                    unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
                if ready < 0 {
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(TestbedError::Os {
                        what: "poll".into(),
                        source: err,
                    });
                }
                if ready == 0 {
                    continue;
                }
                let n = unsafe {
                    libc::recv(
                        sock.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 42 {
                    continue;
                }
                let frame_in = &buf[..n as usize];
                let is_reply = frame_in[12..14] == ETH_P_ARP.to_be_bytes()
                    && frame_in[20..22] == 2u16.to_be_bytes();
                if !is_reply
                    || frame_in[28..32] != target.octets()
                    || frame_in[38..42] != src_ip.octets()
                {
                    continue;
                }
                let mut sender_mac = [0u8; 6];
                sender_mac.copy_from_slice(&frame_in[22..28]);
                let mut eth_src = [0u8; 6];
                eth_src.copy_from_slice(&frame_in[6..12]);
                replies.push(ArpReply {
                    request,
                    sender_mac,
                    sender_ip: target,
                    eth_src,
                });
            }
        }
        Ok(ArpExchange {
            requests_sent: count,
            replies,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// fd-pin, copied-mount, new-mount-api, runtime-style
// ---------------------------------------------------------------------------------------------

fn fd_pin(run: &mut Run) -> Result<Value> {
    let member = fork_child("netns-member", AfterReport::ExitWhenReleased, || {
        unshare(libc::CLONE_NEWNET, "CLONE_NEWNET")?;
        Ok(ns_inum(Path::new("/proc/self/ns/net"))?.to_string())
    })?;
    run.track_process(member.pid, "netns member")?;
    let inum: u64 = member
        .report
        .parse()
        .map_err(|_| TestbedError::Unexpected(format!("member reported {:?}", member.report)))?;
    let member_pid = member.pid;
    let cookie = netns_cookie(Path::new(&format!("/proc/{member_pid}/ns/net")));
    let member_ns = PathBuf::from(format!("/proc/{member_pid}/ns/net"));
    let holder = fork_child("docker-proxy", AfterReport::SleepForever, || {
        let fd = File::open(&member_ns).map_err(os_err(format!("open {}", member_ns.display())))?;
        let held = fd.metadata().map_err(os_err("fstat held netns fd"))?.ino();
        if held != inum {
            return Err(TestbedError::Unexpected(format!(
                "opened net:[{held}], expected net:[{inum}]"
            )));
        }
        // Deliberately leaked: this fd is the pin.
        Ok(std::os::fd::IntoRawFd::into_raw_fd(fd).to_string())
    })?;
    run.track_process(holder.pid, "nsfs fd holder")?;
    let holder_fd: i32 = holder
        .report
        .parse()
        .map_err(|_| TestbedError::Unexpected(format!("holder reported {:?}", holder.report)))?;
    member.release_and_reap("netns member")?;
    run.reaped(member_pid);

    let link = fs::read_link(format!("/proc/{}/fd/{holder_fd}", holder.pid)).map_err(os_err(
        format!("readlink /proc/{}/fd/{holder_fd}", holder.pid),
    ))?;
    if link.as_os_str().as_bytes() != format!("net:[{inum}]").as_bytes() {
        return Err(TestbedError::Unexpected(format!(
            "holder fd points at {}",
            link.display()
        )));
    }
    let host_inum = ns_inum(Path::new("/proc/self/ns/net"))?;
    let holder_netns = ns_inum(Path::new(&format!("/proc/{}/ns/net", holder.pid)))?;
    Ok(json!({
        "netns_inum": inum,
        "netns_cookie": cookie,
        "member_pid": member_pid,
        "member_alive": false,
        "holder_pid": holder.pid,
        "holder_fd": holder_fd,
        "holder_comm": "docker-proxy",
        "holder_netns_inum": holder_netns,
        "host_netns_inum": host_inum,
    }))
}

/// Does the mountinfo at `path` contain an nsfs mount whose root is net:[inum]? Returns its
/// mount point.
fn nsfs_mount_point(mountinfo: &Path, inum: u64) -> Result<Option<String>> {
    let text =
        fs::read_to_string(mountinfo).map_err(os_err(format!("read {}", mountinfo.display())))?;
    let root = format!("net:[{inum}]");
    Ok(text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let fstype = right.split(' ').next()?;
        (fstype == "nsfs" && fields.get(3) == Some(&root.as_str()))
            .then(|| fields.get(4).unwrap_or(&"").to_string())
    }))
}

fn copied_mount(run: &mut Run) -> Result<Value> {
    let (original, pin) = run.pin_fresh_netns("copied-netns", PinMethod::BindMount)?;
    let holder = fork_child("mnt-ns-holder", AfterReport::SleepForever, || {
        unshare(libc::CLONE_NEWNS, "CLONE_NEWNS")?;
        // Private propagation: the host's later umount must not reach this copy.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(last_os_err("mount --make-rprivate /"));
        }
        Ok(ns_inum(Path::new("/proc/self/ns/mnt"))?.to_string())
    })?;
    run.track_process(holder.pid, "mount namespace holder")?;
    let holder_mnt_ns: u64 = holder
        .report
        .parse()
        .map_err(|_| TestbedError::Unexpected(format!("holder reported {:?}", holder.report)))?;
    let cookie = netns_cookie(&original);
    umount_detach(&original)?;

    let host_mountinfo = Path::new("/proc/self/mountinfo");
    let holder_mountinfo = PathBuf::from(format!("/proc/{}/mountinfo", holder.pid));
    if let Some(mp) = nsfs_mount_point(host_mountinfo, pin.inum)? {
        return Err(TestbedError::Unexpected(format!(
            "net:[{}] still mounted at {mp} in the host",
            pin.inum
        )));
    }
    let copy = nsfs_mount_point(&holder_mountinfo, pin.inum)?.ok_or_else(|| {
        TestbedError::Unexpected(format!(
            "the holder's mount namespace has no copy of net:[{}]",
            pin.inum
        ))
    })?;
    Ok(json!({
        "netns_inum": pin.inum,
        "netns_cookie": cookie,
        "original_path": original,
        "original_mounted": false,
        "copy_mount_point": copy,
        "holder_pid": holder.pid,
        "holder_comm": "mnt-ns-holder",
        "holder_mnt_ns_inum": holder_mnt_ns,
        "host_mnt_ns_inum": ns_inum(Path::new("/proc/self/ns/mnt"))?,
    }))
}

fn new_mount_api(run: &mut Run) -> Result<Value> {
    let (path, pin) =
        run.pin_fresh_netns(&format!("newapi-{}", uuid_v4()?), PinMethod::NewMountApi)?;
    let cookie = netns_cookie(&path);
    let mount_point =
        nsfs_mount_point(Path::new("/proc/self/mountinfo"), pin.inum)?.ok_or_else(|| {
            TestbedError::Unexpected(format!("no nsfs mount of net:[{}] in mountinfo", pin.inum))
        })?;
    Ok(json!({
        "netns_inum": pin.inum,
        "netns_cookie": cookie,
        "pin": path,
        "mount_point": mount_point,
        "api": "open_tree+move_mount",
        "creator_tid": pin.tid,
        "creator_restored_to_inum": pin.original_inum,
    }))
}

fn runtime_style(run: &mut Run, kill_member: bool) -> Result<Value> {
    let (pin_path, pin) =
        run.pin_fresh_netns(&format!("cni-{}", uuid_v4()?), PinMethod::BindMount)?;
    let cookie = netns_cookie(&pin_path);
    let expected = pin.inum;
    let member = fork_child("pause", AfterReport::SleepForever, || {
        let ns = File::open(&pin_path).map_err(os_err(format!("open {}", pin_path.display())))?;
        setns(
            ns.as_raw_fd(),
            libc::CLONE_NEWNET,
            &pin_path.display().to_string(),
        )?;
        drop(ns);
        let joined = ns_inum(Path::new("/proc/self/ns/net"))?;
        if joined != expected {
            return Err(TestbedError::Unexpected(format!(
                "joined net:[{joined}], expected net:[{expected}]"
            )));
        }
        Ok(joined.to_string())
    })?;
    run.track_process(member.pid, "joined pause")?;
    if kill_member {
        kill_child(member.pid)?;
        run.reaped(member.pid);
    }
    Ok(json!({
        "netns_inum": pin.inum,
        "netns_cookie": cookie,
        "pin": pin_path,
        "creator_tid": pin.tid,
        "creator_restored_to_inum": pin.original_inum,
        "member_pid": member.pid,
        "member_comm": "pause",
        "member_alive": !kill_member,
        "member_killed": kill_member,
    }))
}

// ---------------------------------------------------------------------------------------------
// churn, proc-churn
// ---------------------------------------------------------------------------------------------

/// Exit codes of churn children, so the parent can say what went wrong.
fn churn_failure(code: i32) -> &'static str {
    match code {
        10 => "unshare(CLONE_NEWNET) failed",
        11 => "unshare did not give a new netns",
        12 => "bind mount of the netns failed",
        13 => "umount2 of the netns pin failed",
        14 => "could not signal readiness",
        20 => "joiner could not open the member's netns",
        21 => "setns into the member's netns failed",
        22 => "joiner did not end up in the member's netns",
        _ => "unexpected exit",
    }
}

fn stat_ino(path: &CString) -> Option<u64> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::stat(path.as_ptr(), &mut st) } == 0).then_some(st.st_ino)
}

fn churn(args: &ChurnArgs) -> Result<Value> {
    let self_ns = c"/proc/self/ns/net".to_owned();
    let parent_inum = stat_ino(&self_ns).ok_or_else(|| last_os_err("stat /proc/self/ns/net"))?;
    let (pin_dir, own_dir) = match (&args.dir, args.pin) {
        (Some(dir), _) => {
            fs::create_dir_all(dir).map_err(os_err(format!("create {}", dir.display())))?;
            (Some(dir.clone()), false)
        }
        (None, true) => {
            let dir =
                std::env::temp_dir().join(format!("netns-trace-churn-{}", std::process::id()));
            fs::create_dir_all(&dir).map_err(os_err(format!("create {}", dir.display())))?;
            (Some(dir), true)
        }
        (None, false) => (None, false),
    };
    let target = match (&pin_dir, args.pin) {
        (Some(dir), true) => {
            let path = dir.join(format!("churn-pin-{}", std::process::id()));
            create_mount_target(&path)?;
            Some(path)
        }
        _ => None,
    };
    let outcome = churn_loop(args, parent_inum, target.as_deref());
    if let Some(path) = &target {
        let _ = fs::remove_file(path);
    }
    if let (true, Some(dir)) = (own_dir, &pin_dir) {
        let _ = fs::remove_dir(dir);
    }
    let elapsed = outcome?;
    let elapsed_ns = elapsed.as_nanos() as u64;
    Ok(json!({
        "scenario": "churn",
        "count": args.count,
        "pin": args.pin,
        "join": args.join,
        "joins": if args.join { args.count } else { 0 },
        "pin_path": target,
        "elapsed_ns": elapsed_ns,
        "per_namespace_ns": elapsed_ns.checked_div(args.count).unwrap_or(0),
        "testbed_pid": std::process::id(),
        "child_comm": churn_child_comm().to_string_lossy(),
    }))
}

/// The name churn children take before they unshare, so a tracer's report can tell this run's
/// namespaces from everyone else's by their creator.
fn churn_child_comm() -> CString {
    CString::new(format!("churn-{}", std::process::id())).unwrap_or_default()
}

fn churn_loop(args: &ChurnArgs, parent_inum: u64, target: Option<&Path>) -> Result<Duration> {
    // Everything a child needs is prepared before fork.
    let self_ns = c"/proc/self/ns/net".to_owned();
    let target_c = target.map(c_path).transpose()?;
    let comm = churn_child_comm();
    let start = Instant::now();
    for iteration in 0..args.count {
        let fail = |role: &str, pid: i32, status: libc::c_int| {
            let detail = if libc::WIFEXITED(status) {
                format!(
                    "iteration {iteration}: {}",
                    churn_failure(libc::WEXITSTATUS(status))
                )
            } else {
                format!("iteration {iteration}: {}", describe_status(status))
            };
            TestbedError::ChildFailed {
                role: role.into(),
                pid,
                detail,
            }
        };
        let handshake = if args.join {
            Some((pipe()?, pipe()?))
        } else {
            None
        };
        let member = unsafe { libc::fork() };
        if member < 0 {
            return Err(last_os_err("fork"));
        }
        if member == 0 {
            unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
            let code = churn_member(&self_ns, parent_inum, target_c.as_ref(), handshake);
            unsafe { libc::_exit(code) };
        }
        if let Some(((ready_r, ready_w), (release_r, release_w))) = handshake {
            drop(ready_w);
            drop(release_r);
            let mut byte = [0u8; 1];
            let got = unsafe { libc::read(ready_r.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
            if got != 1 {
                drop(release_w);
                let status = wait_child(member)?;
                return Err(fail("churn member", member, status));
            }
            let member_ns = CString::new(format!("/proc/{member}/ns/net")).unwrap_or_default();
            let joiner = unsafe { libc::fork() };
            if joiner < 0 {
                return Err(last_os_err("fork"));
            }
            if joiner == 0 {
                unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
                let code = churn_joiner(&member_ns, &self_ns);
                unsafe { libc::_exit(code) };
            }
            let status = wait_child(joiner)?;
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                drop(release_w);
                let _ = wait_child(member);
                return Err(fail("churn joiner", joiner, status));
            }
            drop(release_w);
        }
        let status = wait_child(member)?;
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(fail("churn member", member, status));
        }
    }
    Ok(start.elapsed())
}

type Handshake = ((OwnedFd, OwnedFd), (OwnedFd, OwnedFd));

fn churn_member(
    self_ns: &CString,
    parent_inum: u64,
    target: Option<&CString>,
    handshake: Option<Handshake>,
) -> i32 {
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return 10;
    }
    if stat_ino(self_ns) == Some(parent_inum) {
        return 11;
    }
    if let Some(target) = target {
        let rc = unsafe {
            libc::mount(
                self_ns.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return 12;
        }
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            return 13;
        }
    }
    if let Some(((ready_r, ready_w), (release_r, release_w))) = handshake {
        drop(ready_r);
        drop(release_w);
        if unsafe { libc::write(ready_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) } != 1 {
            return 14;
        }
        // Stay a member until the joiner has been in; EOF means release.
        let mut byte = [0u8; 1];
        unsafe { libc::read(release_r.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
    }
    0
}

fn churn_joiner(member_ns: &CString, self_ns: &CString) -> i32 {
    let fd = unsafe { libc::open(member_ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 20;
    }
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return 20;
    }
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return 21;
    }
    if stat_ino(self_ns) != Some(st.st_ino) {
        return 22;
    }
    0
}

fn proc_churn(args: &ProcChurnArgs) -> Result<Value> {
    let program = c_path(&args.program)?;
    let argv = [program.as_ptr(), std::ptr::null()];
    let start = Instant::now();
    for iteration in 0..args.count {
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(last_os_err("fork"));
        }
        if pid == 0 {
            unsafe {
                libc::execv(program.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        let status = wait_child(pid)?;
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(TestbedError::ChildFailed {
                role: args.program.display().to_string(),
                pid,
                detail: format!("iteration {iteration}: {}", describe_status(status)),
            });
        }
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    Ok(json!({
        "scenario": "proc-churn",
        "count": args.count,
        "program": args.program,
        "elapsed_ns": elapsed_ns,
        "per_process_ns": elapsed_ns.checked_div(args.count).unwrap_or(0),
        "testbed_pid": std::process::id(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidr_must_stay_inside_the_testbed_range() {
        assert!(parse_pod_cidr("10.231.1.10/24").is_ok());
        assert!(parse_pod_cidr("10.232.1.10/24").is_err());
        assert!(parse_pod_cidr("192.168.1.10/24").is_err());
        assert!(parse_pod_cidr("10.231.1.10/8").is_err());
        assert!(parse_pod_cidr("10.231.1.10/31").is_err());
        assert!(parse_pod_cidr("10.231.1.0/24").is_err());
        assert!(parse_pod_cidr("10.231.1.255/24").is_err());
        assert!(parse_pod_cidr("10.231.1.10").is_err());
        assert!(parse_pod_cidr("banana/24").is_err());
    }

    #[test]
    fn client_ip_avoids_the_pod_ip() {
        let pod = parse_pod_cidr("10.231.1.10/24").unwrap();
        assert_eq!(client_ip_for(&pod), Ipv4Addr::new(10, 231, 1, 254));
        let pod = parse_pod_cidr("10.231.1.254/24").unwrap();
        assert_eq!(client_ip_for(&pod), Ipv4Addr::new(10, 231, 1, 253));
        let pod = parse_pod_cidr("10.231.1.2/30").unwrap();
        assert_eq!(client_ip_for(&pod), Ipv4Addr::new(10, 231, 1, 1));
    }

    #[test]
    fn macs_embed_the_ip() {
        assert_eq!(
            fmt_mac(&mac_for(0, Ipv4Addr::new(10, 231, 1, 10))),
            "02:00:0a:e7:01:0a"
        );
        assert_eq!(
            fmt_mac(&mac_for(1, Ipv4Addr::new(10, 231, 1, 10))),
            "02:01:0a:e7:01:0a"
        );
    }

    #[test]
    fn uuid_has_v4_shape() {
        let u = uuid_v4().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
