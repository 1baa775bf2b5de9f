//! Shared helpers for integration tests that need real namespaces: privilege check, the
//! scenario testbed binary, and independent ways to look at kernel state (procfs, mountinfo,
//! iproute2, ARP on the wire).
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cni_incident;
pub mod watch;

/// True when the test may create namespaces. Prints why it skips otherwise; tests skip only
/// when really unprivileged (not root).
pub fn require_root() -> bool {
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!("SKIP: needs root to create namespaces and mounts (euid is {euid})");
        return false;
    }
    true
}

/// The testbed binary, named by NETNS_TRACE_TESTBED_BIN. It is a binary of the xtask package
/// (xtask/src/testbed), so cargo does not build it for these tests; `cargo xtask test`,
/// `vm-test` and `bench` build it and set the variable (in guests too).
pub fn testbed_bin() -> PathBuf {
    const VAR: &str = "NETNS_TRACE_TESTBED_BIN";
    let path = std::env::var_os(VAR)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{VAR} is not set. Run these tests through `cargo xtask vm-test --kernel host \
                 --test <file>`, or build the testbed (`cargo build --release -p xtask --bin \
                 netns-trace-testbed`) and set {VAR}=target/release/netns-trace-testbed"
            )
        });
    assert!(
        path.is_file(),
        "{VAR}={} is not a file (build it with `cargo build --release -p xtask --bin \
         netns-trace-testbed`)",
        path.display()
    );
    path
}

/// Runs the testbed; Ok(JSON line) on success, Err(stderr + status) otherwise.
pub fn try_testbed(args: &[&str]) -> Result<Value, String> {
    let out: Output = Command::new(testbed_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", testbed_bin().display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "testbed {args:?} failed ({}): {stderr}",
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| {
            format!("testbed {args:?} printed no JSON line; stdout {stdout:?}, stderr {stderr:?}")
        })?;
    serde_json::from_str(line)
        .map_err(|e| format!("testbed {args:?} printed bad JSON {line:?}: {e}"))
}

/// Runs the testbed and returns its JSON line; panics with its stderr if it fails.
pub fn testbed(args: &[&str]) -> Value {
    try_testbed(args).unwrap_or_else(|e| panic!("{e}"))
}

/// A scenario kept alive for the duration of a test. Dropping it (also while unwinding from a
/// failed assertion) runs `teardown` on its directory before the directory is removed.
pub struct Scenario {
    dir: tempfile::TempDir,
    pub out: Value,
}

impl Scenario {
    /// Runs `testbed SUBCOMMAND --dir <tempdir> --keep EXTRA...`.
    pub fn start(subcommand: &str, extra: &[&str]) -> Scenario {
        let dir = tempfile::Builder::new()
            .prefix("netns-trace-testbed-")
            .tempdir()
            .expect("create temp dir");
        // The guard exists before the run, so even a half-built scenario gets torn down.
        let mut scenario = Scenario {
            dir,
            out: Value::Null,
        };
        let dir_arg = scenario.dir.path().to_string_lossy().into_owned();
        let mut args = vec![subcommand, "--dir", dir_arg.as_str(), "--keep"];
        args.extend_from_slice(extra);
        scenario.out = testbed(&args);
        scenario
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Tears down now and returns the teardown report.
    pub fn teardown(&self) -> Value {
        testbed(&["teardown", "--dir", &self.dir.path().to_string_lossy()])
    }

    /// A u64 field of the scenario's JSON by JSON pointer ("/pod_a/netns_inum").
    pub fn u64_at(&self, pointer: &str) -> u64 {
        self.out
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("no {pointer} in {}", self.out))
    }

    pub fn str_at(&self, pointer: &str) -> &str {
        self.out
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {pointer} in {}", self.out))
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if let Err(e) = try_testbed(&["teardown", "--dir", &self.dir.path().to_string_lossy()]) {
            eprintln!("scenario teardown failed: {e}");
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of every `*_ns` time netns-trace prints.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn numeric_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn link_text(path: &Path) -> Option<String> {
    fs::read_link(path)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// One nsfs mount seen in some mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsfsMount {
    pub mount_point: String,
    /// e.g. "net:[4026532290]"
    pub root: String,
}

/// nsfs mounts listed in one mountinfo file (e.g. /proc/self/mountinfo or /proc/PID/mountinfo).
pub fn nsfs_mounts(mountinfo: &Path) -> Vec<NsfsMount> {
    let Ok(text) = fs::read_to_string(mountinfo) else {
        return vec![];
    };
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split(' ').next()? != "nsfs" {
                return None;
            }
            let fields: Vec<&str> = left.split(' ').collect();
            Some(NsfsMount {
                root: fields.get(3)?.to_string(),
                mount_point: fields.get(4)?.to_string(),
            })
        })
        .collect()
}

/// Everything that visibly holds net:[inum]: task namespaces, nsfs mounts in any mount
/// namespace, open fds. Each entry says where it was seen. (Sockets are not covered.)
pub fn netns_holders(inum: u64) -> Vec<String> {
    holders_with_paths(inum)
        .into_iter()
        .map(|(what, _)| what)
        .collect()
}

/// Holders of net:[inum], each with a path through which the namespace can be opened.
fn holders_with_paths(inum: u64) -> Vec<(String, PathBuf)> {
    let want = format!("net:[{inum}]");
    let mut holders = vec![];
    let mut mount_namespaces = HashSet::new();
    for proc_dir in numeric_dirs(Path::new("/proc")) {
        for task in numeric_dirs(&proc_dir.join("task")) {
            let ns = task.join("ns/net");
            if link_text(&ns).as_deref() == Some(want.as_str()) {
                holders.push((format!("task {}", task.display()), ns));
            }
        }
        if let Ok(fds) = fs::read_dir(proc_dir.join("fd")) {
            for fd in fds.filter_map(Result::ok) {
                if link_text(&fd.path()).as_deref() == Some(want.as_str()) {
                    holders.push((format!("fd {}", fd.path().display()), fd.path()));
                }
            }
        }
        // One mountinfo per mount namespace is enough.
        let Some(mnt_ns) = link_text(&proc_dir.join("ns/mnt")) else {
            continue;
        };
        if !mount_namespaces.insert(mnt_ns.clone()) {
            continue;
        }
        for m in nsfs_mounts(&proc_dir.join("mountinfo")) {
            if m.root == want {
                // /proc/PID/root resolves the mount point inside that mount namespace.
                let through = proc_dir
                    .join("root")
                    .join(m.mount_point.trim_start_matches('/'));
                let what = format!(
                    "mount {} in {mnt_ns} (seen via {})",
                    m.mount_point,
                    proc_dir.display()
                );
                holders.push((what, through));
            }
        }
    }
    holders
}

/// Does anything visible still hold net:[inum]?
pub fn netns_inum_exists(inum: u64) -> bool {
    !holders_with_paths(inum).is_empty()
}

/// Like `netns_inum_exists`, but when `cookie` is known a holder counts only if it is that very
/// namespace: inode numbers are recycled, and other tests create namespaces concurrently.
pub fn netns_exists(inum: u64, cookie: Option<u64>) -> bool {
    let holders = holders_with_paths(inum);
    match cookie {
        None => !holders.is_empty(),
        // A holder whose cookie cannot be read (it vanished meanwhile) does not count.
        Some(cookie) => holders
            .iter()
            .any(|(_, path)| netns_cookie(path) == Some(cookie)),
    }
}

/// net_cookie of the namespace behind `netns_file` (SO_NETNS_COOKIE, Linux 5.14+).
pub fn netns_cookie(netns_file: &Path) -> Option<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let ns = File::open(netns_file).ok()?;
    std::thread::spawn(move || {
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return None;
        }
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut cookie = 0u64;
        let mut len = size_of::<u64>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(cookie)
    })
    .join()
    .ok()
    .flatten()
}

/// Active objects of the net_namespace slab cache, if /proc/slabinfo is readable and the
/// cache is not merged into another.
pub fn net_namespace_slab_count() -> Option<u64> {
    let text = fs::read_to_string("/proc/slabinfo").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == "net_namespace").then(|| fields.next()?.parse().ok())?
    })
}

/// Waits until the kernel has finished tearing namespaces down: the net_namespace slab count
/// is back at `baseline` or has stopped falling for 2 s (other work may create namespaces
/// too). Without a readable slab count, waits a fixed while.
pub fn settle_teardown(baseline: Option<u64>) {
    let Some(baseline) = baseline else {
        std::thread::sleep(Duration::from_secs(5));
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut since) = (u64::MAX, Instant::now());
    while Instant::now() < deadline {
        let now = net_namespace_slab_count().unwrap_or(0);
        if now <= baseline {
            break;
        }
        if now < last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "net_namespace slab: baseline {baseline}, now {:?}",
        net_namespace_slab_count()
    );
}

/// Does the collector id `id` ("net:[INUM]#COOKIE", "net:[INUM]", "net:[INUM]~N") name the
/// namespace with this inode number and (when the kernel has SO_NETNS_COOKIE) cookie?
pub fn names_netns(id: &str, inum: u64, cookie: Option<u64>) -> bool {
    let Some(rest) = id.strip_prefix(&format!("net:[{inum}]")) else {
        return false;
    };
    match (rest.strip_prefix('#'), cookie) {
        (Some(seen), Some(want)) => seen == want.to_string(),
        (Some(_), None) | (None, _) => {
            rest.is_empty() || rest.starts_with('~') || rest.starts_with('#')
        }
    }
}

/// Is `pid` a live (non-zombie) process?
pub fn process_alive(pid: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Inode number of a namespace file (/proc/PID/ns/net, a pin path).
pub fn ns_inum(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// iproute2's ip (busybox's applet lacks JSON output and veth).
pub fn ip_bin() -> &'static str {
    if Path::new("/sbin/ip").exists() {
        "/sbin/ip"
    } else {
        "ip"
    }
}

/// Runs `program args` with its network namespace switched to the one at `netns_file` (the
/// `ip -n` / `nsenter --net=FILE` idea without needing /run/netns names).
pub fn run_in_netns(netns_file: &Path, program: &str, args: &[&str]) -> Output {
    let ns =
        File::open(netns_file).unwrap_or_else(|e| panic!("open {}: {e}", netns_file.display()));
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("run {program} in {}: {e}", netns_file.display()))
}

/// `ip -j ARGS` inside the netns at `netns_file`, parsed.
pub fn ip_json_in(netns_file: &Path, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = run_in_netns(netns_file, ip_bin(), &full);
    assert!(
        out.status.success(),
        "ip {full:?} in {}: {}",
        netns_file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ip {full:?} printed bad JSON: {e}"))
}

/// (MAC, IPv4 addresses) of `ifname` inside the netns at `netns_file`, as iproute2 reports them.
pub fn link_mac_and_ipv4(netns_file: &Path, ifname: &str) -> (String, Vec<String>) {
    let v = ip_json_in(netns_file, &["addr", "show", "dev", ifname]);
    let link = &v[0];
    let mac = link["address"].as_str().unwrap_or_default().to_string();
    let addrs = link["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["family"] == "inet")
                .filter_map(|i| {
                    Some(format!(
                        "{}/{}",
                        i["local"].as_str()?,
                        i["prefixlen"].as_u64()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    (mac, addrs)
}

/// The global-scope (iproute2 counts unique-local ones as global) IPv6 addresses of `ifname`
/// in the netns at `netns_file`, as `addr/len`, by `ip -j -6 addr`; with the flags iproute2
/// shows for each (`nodad`, `tentative`, `dadfailed`).
pub fn link_ipv6_global(netns_file: &Path, ifname: &str) -> Vec<(String, Vec<&'static str>)> {
    let v = ip_json_in(netns_file, &["-6", "addr", "show", "dev", ifname]);
    let infos = v[0]["addr_info"].as_array().cloned().unwrap_or_default();
    infos
        .iter()
        .filter(|i| i["family"] == "inet6" && i["scope"] == "global")
        .filter_map(|i| {
            let flags = ["nodad", "tentative", "dadfailed"]
                .into_iter()
                .filter(|f| i[*f] == true)
                .collect();
            Some((
                format!("{}/{}", i["local"].as_str()?, i["prefixlen"].as_u64()?),
                flags,
            ))
        })
        .collect()
}

/// Sends `count` broadcast ARP requests for `target` from `ifname` in the netns at
/// `netns_file` and returns the sender MAC of every reply (lowercase, colon separated).
/// Uses its own AF_PACKET socket on the client's interface, with the interface's own MAC and
/// first IPv4 address as sender.
pub fn arp_reply_macs(
    netns_file: &Path,
    ifname: &str,
    target: Ipv4Addr,
    count: u32,
) -> Vec<String> {
    let (mac_text, addrs) = link_mac_and_ipv4(netns_file, ifname);
    let src_mac: Vec<u8> = mac_text
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    assert_eq!(src_mac.len(), 6, "bad MAC {mac_text:?}");
    let src_ip: Ipv4Addr = addrs
        .first()
        .and_then(|a| a.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{ifname} in {} has no IPv4 address", netns_file.display()));
    let ns =
        File::open(netns_file).unwrap_or_else(|e| panic!("open {}: {e}", netns_file.display()));
    let ifname = ifname.to_string();
    std::thread::spawn(move || {
        let sock = packet_socket_in(&ns, &ifname, 0x0806);
        let mut frame = vec![0xffu8; 6];
        frame.extend_from_slice(&src_mac);
        frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        frame.extend_from_slice(&src_mac);
        frame.extend_from_slice(&src_ip.octets());
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&target.octets());
        frame.resize(60, 0);
        let mut macs = vec![];
        let mut buf = [0u8; 1600];
        for _ in 0..count {
            let sent =
                unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            assert_eq!(
                sent,
                frame.len() as isize,
                "send: {}",
                io::Error::last_os_error()
            );
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                let n =
                    unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 42 {
                    continue;
                }
                let f = &buf[..n as usize];
                if f[12..14] == [0x08, 0x06]
                    && f[20..22] == [0, 2]
                    && f[28..32] == target.octets()
                    && f[38..42] == src_ip.octets()
                {
                    macs.push(mac_string(&f[22..28]));
                }
            }
        }
        macs
    })
    .join()
    .expect("ARP probe thread panicked")
}

/// What a namespace's ICMPv6 counters say it sent and received of Neighbour Discovery:
/// `Icmp6{Out,In}Neighbor{Solicits,Advertisements}` of /proc/net/snmp6, read from inside it
/// (through `netns_file`, a pin or /proc/PID/ns/net), in that order: out NS, in NS, out NA,
/// in NA. Counted by the kernel, independently of any tracer.
pub fn nd_counters(netns_file: &Path) -> [u64; 4] {
    let ns =
        File::open(netns_file).unwrap_or_else(|e| panic!("open {}: {e}", netns_file.display()));
    std::thread::spawn(move || {
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns: {}",
            io::Error::last_os_error()
        );
        // /proc/self/net is the thread group leader's namespace; this thread's is thread-self.
        let text = fs::read_to_string("/proc/thread-self/net/snmp6").expect("read snmp6");
        let get = |name: &str| {
            text.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(char::is_whitespace)?;
                    (k == name).then(|| v.trim().parse::<u64>().ok())?
                })
                .unwrap_or_else(|| panic!("no {name} in snmp6"))
        };
        [
            get("Icmp6OutNeighborSolicits"),
            get("Icmp6InNeighborSolicits"),
            get("Icmp6OutNeighborAdvertisements"),
            get("Icmp6InNeighborAdvertisements"),
        ]
    })
    .join()
    .expect("snmp6 thread panicked")
}

/// Makes the kernel in `netns_file` resolve `target` (a UDP datagram to its discard port from
/// an unbound socket: the stack sends a multicast Neighbour Solicitation, as `ping -6` would)
/// and returns the target link-layer addresses of the Neighbour Advertisements for `target`
/// that arrive on `ifname` within `wait`, read from a packet socket: who answered.
pub fn na_macs(netns_file: &Path, ifname: &str, target: Ipv6Addr, wait: Duration) -> Vec<String> {
    let ns =
        File::open(netns_file).unwrap_or_else(|e| panic!("open {}: {e}", netns_file.display()));
    let ifname = ifname.to_string();
    std::thread::spawn(move || {
        let sock = packet_socket_in(&ns, &ifname, 0x86dd);
        let udp = std::net::UdpSocket::bind("[::]:0").expect("bind a UDP socket");
        udp.send_to(b"who", (target, 9))
            .expect("send a datagram to the target");
        let mut macs = vec![];
        let mut buf = [0u8; 1600];
        let until = Instant::now() + wait;
        while Instant::now() < until {
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            // Ethernet (14), IPv6 (40), an advertisement (24) and one 8-byte option.
            if n < 86 {
                continue;
            }
            let f = &buf[..n as usize];
            if f[12..14] == [0x86, 0xdd]
                && f[20] == 58
                && f[54] == 136
                && f[62..78] == target.octets()
                && f[78] == 2
                && f[79] == 1
            {
                macs.push(mac_string(&f[80..86]));
            }
        }
        macs
    })
    .join()
    .expect("ND probe thread panicked")
}

/// In the calling thread (which it moves into the network namespace of `ns`): a raw packet
/// socket for EtherType `ethertype`, bound to `ifname` there, whose reads time out after
/// 100 ms. Raw, not SOCK_DGRAM: frames go and come with their Ethernet header.
fn packet_socket_in(ns: &File, ifname: &str, ethertype: u16) -> OwnedFd {
    assert_eq!(
        unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
        0,
        "setns: {}",
        io::Error::last_os_error()
    );
    let proto = ethertype.to_be();
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    assert!(
        raw >= 0,
        "socket(AF_PACKET): {}",
        io::Error::last_os_error()
    );
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let name = CString::new(ifname).unwrap();
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex > 0, "no {ifname}");
    let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    at.sll_family = libc::AF_PACKET as u16;
    at.sll_protocol = proto;
    at.sll_ifindex = ifindex as i32;
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&at as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    sock
}

/// A MAC address as lowercase, colon-separated text.
fn mac_string(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The namespace of a report or scan (`--json`) whose inum is `inum`, if listed.
pub fn namespace_with_inum(report: &Value, inum: u64) -> Option<&Value> {
    report["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["inum"] == inum)
}

/// The namespace of a report or scan whose inum is `inum`; panics when it is not listed.
pub fn listed_namespace(report: &Value, inum: u64) -> &Value {
    namespace_with_inum(report, inum).unwrap_or_else(|| panic!("net:[{inum}] not in the report"))
}

/// Hands a trace and its scenario to the harness (`cargo xtask vm-test --collect-traces`, which
/// `cargo xtask record-fixtures` runs): in $NETNS_TRACE_COLLECT_DIR as NAME.nstrace and
/// NAME.scenario.json. Does nothing when that is unset.
pub fn leave_for_collection(name: &str, trace: &Path, scenario: &Value) {
    let Some(dir) = std::env::var_os("NETNS_TRACE_COLLECT_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(trace, dir.join(format!("{name}.nstrace"))).unwrap();
    let json = serde_json::to_string_pretty(scenario).unwrap() + "\n";
    std::fs::write(dir.join(format!("{name}.scenario.json")), json).unwrap();
    let size = std::fs::metadata(trace).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "left {name}.nstrace ({size} bytes) for collection in {}",
        dir.display()
    );
}
