//! iproute2's `ip netns add/exec/del`, driven as an operator drives it, on a node where
//! /run/netns is still cold: a namespace made on purpose is `persistent`, then `destroyed`, and
//! never `leaked` (issue 12). `netns-trace watch --json` watches; its state notices and findings
//! are the verdict, and /proc plus every mountinfo (`common::netns_exists`) say independently
//! whether the namespace is gone.
//!
//! What "cold" means and how each run gets one: on a node fresh from boot /run/netns is not a
//! mount point yet, so the first `ip netns add` bind-mounts /run/netns onto itself and makes it
//! shared before it pins the namespace; every later one (warm) only pins. The host's own
//! /run/netns cannot be made cold again for a test: podman and other tests keep pins under it,
//! and unmounting it would hide those. So each test gets a mount namespace of its own, a copy of
//! the host's with a fresh tmpfs on /run (as a node's /run is a tmpfs made at boot), where
//! /run/netns does not exist yet; `ip` runs in it with the host's binaries, /proc and /sys. The
//! copies of the host's namespace pins are unmounted there first, so the test's node never keeps
//! another test's namespace alive. The node is made before the tracer starts, as a node boots
//! before anyone watches it. A shell lives in it and the test types each `ip` command into that
//! shell, as an operator does on a node: `ip` is forked inside the node's mount namespace and
//! never enters it from outside. Killing the shell at the end (or on a failed assertion) drops
//! every pin the test made.
//!
//! Two kinds of node: /run private, as on this build host (no systemd: every mount is private),
//! and /run shared, as systemd mounts it. With a shared /run the pin `ip` makes inside
//! /run/netns propagates to the /run/netns directory the self-bind hides, so the mount namespace
//! holds two nsfs mounts of one namespace, and `ip netns del` removes both.
//!
//! Needs root. In QEMU guests (full mode) /sbin/ip is iproute2 (busybox's applet has no netns).
mod common;

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::watch::{Watch, findings, leak_findings_for, notices_about};
use common::{ip_bin, monotonic_ns, netns_cookie, netns_exists, ns_inum, require_root, wait_until};
use serde_json::Value;

/// Grace period given to the tracer: short, so the test does not wait 30 s for a verdict.
const GRACE: &str = "2";
/// Past the grace period, plus the collector's verdict tick and slack for slow guests.
const VERDICT_WAIT: Duration = Duration::from_secs(5);

/// How /run is mounted in the test's node.
#[derive(Clone, Copy, Debug)]
enum RunMount {
    /// No propagation (this build host, nodes without systemd).
    Private,
    /// Its own shared peer group, as systemd mounts /run.
    Shared,
}

/// A mount namespace copied from the host's with a fresh tmpfs on /run, and a shell living in
/// it: the test types `ip` commands into that shell as an operator would on the node, so `ip`
/// is forked inside the node and never enters its mount namespace from outside.
struct ColdNode {
    shell: Child,
    stdin: ChildStdin,
    replies: BufReader<ChildStdout>,
    mnt_ns: File,
    /// Where the shell leaves each command's output (same directory in the node and the host).
    scratch: tempfile::TempDir,
}

/// What one command typed into the node's shell did.
struct Ran {
    pid: u32,
    stdout: String,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl ColdNode {
    fn start(run: RunMount) -> ColdNode {
        let mut shell = Command::new("sh");
        shell
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        unsafe {
            shell.pre_exec(|| {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // Private first, so nothing done here reaches the host's mount namespace.
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))
            });
        }
        let mut shell = shell
            .spawn()
            .unwrap_or_else(|e| panic!("make a mount namespace for the test's node: {e}"));
        let mnt_ns_path = format!("/proc/{}/ns/mnt", shell.id());
        let mnt_ns = File::open(&mnt_ns_path).unwrap_or_else(|e| panic!("open {mnt_ns_path}: {e}"));
        let node = ColdNode {
            stdin: shell.stdin.take().unwrap(),
            replies: BufReader::new(shell.stdout.take().unwrap()),
            shell,
            mnt_ns,
            scratch: tempfile::Builder::new()
                .prefix("netns-trace-ip-")
                .tempdir()
                .expect("create temp dir"),
        };
        node.fresh_run(run);
        node
    }

    /// Drops the copied mounts under /run and every copied namespace pin (copies of the host's
    /// would keep other tests' namespaces alive while this node lives), then mounts a fresh
    /// tmpfs on /run.
    fn fresh_run(&self, run: RunMount) {
        let mut copied: Vec<CString> = self
            .mounts()
            .into_iter()
            .filter(|(point, fstype)| {
                fstype == "nsfs" || point == "/run" || point.starts_with("/run/")
            })
            .map(|(point, _)| CString::new(point).unwrap())
            .collect();
        // Deepest first.
        copied.sort_by_key(|p| std::cmp::Reverse(p.as_bytes().len()));
        let shared = matches!(run, RunMount::Shared);
        let fd = self.mnt_ns.as_raw_fd();
        let mut cmd = Command::new("true");
        unsafe {
            cmd.pre_exec(move || {
                check(libc::setns(fd, libc::CLONE_NEWNS))?;
                for point in &copied {
                    // EINVAL when a parent's detach already took it.
                    libc::umount2(point.as_ptr(), libc::MNT_DETACH);
                }
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/run".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    c"mode=0755".as_ptr().cast(),
                ))?;
                if shared {
                    check(libc::mount(
                        std::ptr::null(),
                        c"/run".as_ptr(),
                        std::ptr::null(),
                        libc::MS_SHARED,
                        std::ptr::null(),
                    ))?;
                }
                Ok(())
            });
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("mount a fresh /run in the test's node: {e}"));
        assert!(status.success(), "mount a fresh /run: {status}");
        let left: Vec<(String, String)> = self
            .mounts()
            .into_iter()
            .filter(|(point, fstype)| fstype == "nsfs" || point.starts_with("/run/"))
            .collect();
        assert!(
            left.is_empty(),
            "copied mounts left in the test's node: {left:?}"
        );
    }

    /// Types `ip ARGS` into the node's shell and waits for it; panics unless it succeeds.
    fn ip(&mut self, args: &[&str]) -> Ran {
        // Names, paths and addresses only: nothing the shell would expand.
        let plain = |a: &&str| {
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
        };
        assert!(args.iter().all(plain), "unquoted ip arguments {args:?}");
        let out = self.scratch.path().join("out");
        let err = self.scratch.path().join("err");
        let line = format!(
            "{} {} >{} 2>{} & pid=$!; wait $pid; echo \"$pid $?\"\n",
            ip_bin(),
            args.join(" "),
            out.display(),
            err.display()
        );
        self.stdin
            .write_all(line.as_bytes())
            .expect("type into the node's shell");
        let mut reply = String::new();
        self.replies
            .read_line(&mut reply)
            .expect("read the node's shell");
        let (pid, status) = reply
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("the node's shell answered {reply:?} to {line:?}"));
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        assert_eq!(status, "0", "ip {args:?} failed: {stderr}");
        Ran {
            pid: pid.parse().expect("a pid"),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        }
    }

    /// The pin `ip netns add NAME` made, seen from the host through the shell's root.
    fn pin(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/run/netns/{name}", self.shell.id()))
    }

    /// (mount point, fstype) of every mount in the node's mount namespace, from its mountinfo.
    fn mounts(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.shell.id()))
            .expect("read the node's mountinfo");
        text.lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                Some((
                    left.split(' ').nth(4)?.to_string(),
                    right.split(' ').next()?.to_string(),
                ))
            })
            .collect()
    }

    fn run_netns_is_a_mount_point(&self) -> bool {
        self.mounts().iter().any(|(point, _)| point == "/run/netns")
    }
}

impl Drop for ColdNode {
    fn drop(&mut self) {
        // The mount namespace dies with its last process, and every pin in it with it.
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// One `ip netns add` and what the system says about the namespace it made.
struct Added {
    name: String,
    /// The `ip netns add` process, which made the pin.
    ip_pid: u32,
    inum: u64,
    cookie: Option<u64>,
    /// Was /run/netns a mount point before this add?
    warm: bool,
    /// Inode of the node's mount namespace, where the pin is.
    node_mnt_ns: u64,
}

/// `ip netns add NAME`, then use it as an operator does: `ip netns exec NAME ip link set lo up`
/// and `ip -n NAME addr add ADDR dev lo`, checked with `ip -n NAME -j addr show`.
fn add_and_use(node: &mut ColdNode, name: &str, address: &str) -> Added {
    let warm = node.run_netns_is_a_mount_point();
    let ip_pid = node.ip(&["netns", "add", name]).pid;
    assert!(
        node.run_netns_is_a_mount_point(),
        "ip netns add {name} left /run/netns without a mount: {:?}",
        node.mounts()
    );
    node.ip(&["netns", "exec", name, ip_bin(), "link", "set", "lo", "up"]);
    node.ip(&["-n", name, "addr", "add", address, "dev", "lo"]);
    let shown = node.ip(&["-n", name, "-j", "addr", "show", "dev", "lo"]);
    let lo: Value = serde_json::from_str(&shown.stdout).expect("ip -j prints JSON");
    let local = address.split('/').next().unwrap();
    assert!(
        lo[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP"))
            && lo[0]["addr_info"]
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i["local"] == local)),
        "lo in {name} is not up with {address}: {lo}"
    );
    let pin = node.pin(name);
    let inum = ns_inum(&pin).unwrap_or_else(|| panic!("stat {}", pin.display()));
    let cookie = netns_cookie(&pin);
    Added {
        name: name.to_string(),
        ip_pid,
        inum,
        cookie,
        warm,
        node_mnt_ns: node
            .mnt_ns
            .metadata()
            .expect("stat the node's mount namespace")
            .ino(),
    }
}

/// Lets the kernel run its namespace cleanup once more: 6.13+ (and 6.12.y) free a torn-down
/// namespace only on the next cleanup_net run, which is what tracepoint mode sees as the end.
fn let_a_throwaway_namespace_go() {
    let mut cmd = Command::new("true");
    unsafe {
        cmd.pre_exec(|| check(libc::unshare(libc::CLONE_NEWNET)));
    }
    let status = cmd.status().expect("run true in a throwaway namespace");
    assert!(status.success());
}

/// The target state of every `state_changed` notice ("state A -> B") about `added`, with time.
fn states(notices: &[Value]) -> Vec<(u64, String)> {
    notices
        .iter()
        .filter(|n| n["kind"] == "state_changed")
        .filter_map(|n| {
            let to = n["text"].as_str()?.rsplit(" -> ").next()?.to_string();
            Some((n["ts_ns"].as_u64()?, to))
        })
        .collect()
}

/// What is wrong with the verdicts on one namespace (empty when right): it must be persistent
/// before `deleted_at`, never leaked, destroyed after it, and its pin known as made by the
/// `ip netns add` process.
fn verdict_problems(lines: &[Value], added: &Added, deleted_at: u64) -> Vec<String> {
    let name = &added.name;
    let what = format!(
        "{} namespace {name} (net:[{}], cookie {:?})",
        if added.warm { "warm" } else { "cold" },
        added.inum,
        added.cookie
    );
    let notices = notices_about(lines, added.inum, added.cookie);
    let states = states(&notices);
    let mut problems = vec![];
    let leaks = leak_findings_for(&findings(lines), added.inum, added.cookie);
    if !leaks.is_empty() {
        problems.push(format!(
            "{what} was made on purpose with ip netns add, yet reported leaked: {}",
            Value::from(leaks)
        ));
    }
    if states.iter().any(|(_, s)| s == "leaked") {
        problems.push(format!(
            "{what} was never leaked, yet its states were {states:?}"
        ));
    }
    let before_del = states.iter().rev().find(|(ts, _)| *ts < deleted_at);
    if before_del.map(|(_, s)| s.as_str()) != Some("persistent") {
        problems.push(format!(
            "{what} past the grace period, before ip netns del, is {before_del:?}, not persistent"
        ));
    }
    if !states
        .iter()
        .any(|(ts, s)| *ts >= deleted_at && s == "destroyed")
    {
        problems.push(format!(
            "{what} was not reported destroyed after ip netns del"
        ));
    }
    // PinRecord::describe: "bind mount PATH in mnt:[N] made by PID (COMM)". `ip netns exec`
    // copies the pin into mount namespaces of its own; the one asked about is the node's.
    let pin = format!(
        "/run/netns/{name} in mnt:[{}] made by {} (ip)",
        added.node_mnt_ns, added.ip_pid
    );
    let pinned_by_ip = notices
        .iter()
        .any(|n| n["kind"] == "pin_added" && n["text"].as_str().is_some_and(|t| t.ends_with(&pin)));
    if !pinned_by_ip {
        problems.push(format!("{what}: no notice of its pin {pin}"));
    }
    if !problems.is_empty() {
        problems.push(format!("{what}: its notices: {}", Value::from(notices)));
    }
    problems
}

/// Cold `ip netns add` (the first on the node), then a warm one, both used, both deleted.
fn ip_netns_lifecycle(run: RunMount) {
    if !require_root() {
        return;
    }
    let tag = format!(
        "nt-ip-{}-{}",
        std::process::id(),
        monotonic_ns() % 1_000_000_000
    );
    // The node exists before the tracer starts, as a booted node's /run does.
    let mut node = ColdNode::start(run);
    let watch = Watch::start(&["--grace", GRACE]);
    assert!(
        !node.run_netns_is_a_mount_point(),
        "/run/netns must be cold in the fresh /run: {:?}",
        node.mounts()
    );

    let cold = add_and_use(&mut node, &format!("{tag}-cold"), "10.231.60.1/32");
    assert!(!cold.warm);
    std::thread::sleep(VERDICT_WAIT);
    let warm = add_and_use(&mut node, &format!("{tag}-warm"), "10.231.60.2/32");
    assert!(
        warm.warm,
        "the second ip netns add must find /run/netns mounted"
    );
    std::thread::sleep(VERDICT_WAIT);

    let deleted_at = monotonic_ns();
    for added in [&cold, &warm] {
        node.ip(&["netns", "del", &added.name]);
        assert!(
            wait_until(Duration::from_secs(10), || !netns_exists(
                added.inum,
                added.cookie
            )),
            "{} (net:[{}]) still has holders after ip netns del: {:?}",
            added.name,
            added.inum,
            common::netns_holders(added.inum)
        );
    }
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(1));
        let_a_throwaway_namespace_go();
    }
    std::thread::sleep(Duration::from_secs(1));
    drop(node);
    let lines = watch.stop();

    let problems: Vec<String> = [&cold, &warm]
        .into_iter()
        .flat_map(|added| verdict_problems(&lines, added, deleted_at))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// This build host's kind of node: /run and everything else private.
#[test]
fn ip_netns_on_a_cold_node_is_persistent_then_destroyed_never_leaked() {
    ip_netns_lifecycle(RunMount::Private);
}

/// A systemd node: /run is shared, so the pin is propagated under the /run/netns self-bind too.
#[test]
fn ip_netns_on_a_cold_systemd_node_with_a_shared_run_is_persistent_then_destroyed_never_leaked() {
    ip_netns_lifecycle(RunMount::Shared);
}
