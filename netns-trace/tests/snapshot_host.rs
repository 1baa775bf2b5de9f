//! Root-only: snapshots a namespace this test makes (bind mount, member, fd holder, veth
//! with addresses, a copy of the bind mount in a private mount namespace), then proves the
//! snapshot left nothing behind: after `ip netns del` and killing the holders, the namespace
//! is gone from every /proc/*/ns/net, every fd table and every mount namespace.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netns_trace::model::{Mac, Pin, SnapshotPhase};
use netns_trace::snapshot;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn link_inum(path: &str) -> Option<u32> {
    let t = std::fs::read_link(path).ok()?;
    t.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn mnt_inum(pid: u32) -> Option<u32> {
    let t = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    t.to_str()?
        .strip_prefix("mnt:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything this test made, undone on drop (also on panic).
struct Cleanup {
    netns: String,
    children: Vec<Child>,
    files: Vec<String>,
}

impl Cleanup {
    fn kill_children(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.kill_children();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .stderr(Stdio::null())
            .status();
        for f in &self.files {
            // Unlinking a mount point also detaches mounts on it in other mount namespaces.
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Every place an inum can still be referenced from: task links, fd links, mountinfo of
/// every process (so every mount namespace). Returns what still refers to it.
fn references_to(inum: u32) -> Vec<String> {
    let needle = format!("net:[{inum}]");
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if link_inum(&format!("{}/ns/net", t.path().display())) == Some(inum) {
                    found.push(format!("task {:?} of {pid}", t.file_name()));
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for fd in fds.flatten() {
                if std::fs::read_link(fd.path())
                    .map(|l| l.to_string_lossy() == needle)
                    .unwrap_or(false)
                {
                    found.push(format!("fd {:?} of {pid}", fd.file_name()));
                }
            }
        }
        if let Ok(mi) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            && mi.contains(&needle)
        {
            found.push(format!("mountinfo of {pid}"));
        }
    }
    found
}

#[test]
fn snapshot_finds_everything_and_keeps_nothing_alive() {
    if !is_root() {
        eprintln!("skipping snapshot_host: needs root (ip netns, veth, mount namespaces)");
        return;
    }
    let me = std::process::id();
    let name = format!("snaptest{me}");
    let subnet = (me % 250 + 1) as u8;
    let mut cleanup = Cleanup {
        netns: name.clone(),
        children: Vec::new(),
        files: Vec::new(),
    };
    run(&["ip", "netns", "add", &name]);
    let pin_path = format!("/run/netns/{name}");
    let inum = std::fs::metadata(&pin_path).unwrap().ino() as u32;

    // veth pair inside the namespace, with addresses and a MAC we chose.
    let mac = Mac([0x02, 0x31, 0x00, 0x00, (subnet as u8), 0x01]);
    run(&[
        "ip",
        "-n",
        &name,
        "link",
        "add",
        "snapA",
        "address",
        &mac.to_string(),
        "type",
        "veth",
        "peer",
        "name",
        "snapB",
    ]);
    run(&[
        "ip",
        "-n",
        &name,
        "addr",
        "add",
        &format!("10.231.{subnet}.1/24"),
        "dev",
        "snapA",
    ]);
    run(&[
        "ip",
        "-n",
        &name,
        "addr",
        "add",
        &format!("10.231.{subnet}.2/24"),
        "dev",
        "snapB",
    ]);
    run(&["ip", "-n", &name, "link", "set", "snapA", "up"]);
    run(&["ip", "-n", &name, "link", "set", "snapB", "up"]);

    // A member.
    let member = Command::new("ip")
        .args(["netns", "exec", &name, "sleep", "30"])
        .spawn()
        .unwrap();
    let member_pid = member.id();
    cleanup.children.push(member);
    wait_until(
        "the member to enter the namespace",
        Duration::from_secs(10),
        || link_inum(&format!("/proc/{member_pid}/ns/net")) == Some(inum),
    );

    // An fd holder (sh opens fd 7 on the namespace, then becomes sleep). Opened through the
    // bind mount, its /proc/PID/fd link reads `/run/netns/NAME`, not `net:[…]`.
    let fd_holder = Command::new("sh")
        .args(["-c", &format!("exec sleep 30 7<{pin_path}")])
        .spawn()
        .unwrap();
    let fd_holder_pid = fd_holder.id();
    cleanup.children.push(fd_holder);
    wait_until(
        "the fd holder to open its fd",
        Duration::from_secs(10),
        || {
            std::fs::metadata(format!("/proc/{fd_holder_pid}/fd/7"))
                .map(|m| m.ino() == inum as u64)
                .unwrap_or(false)
                && std::fs::read_to_string(format!("/proc/{fd_holder_pid}/comm"))
                    .map(|c| c.trim() == "sleep")
                    .unwrap_or(false)
        },
    );

    // A private mount namespace: it holds a copy of /run/netns/NAME, plus its own bind mount
    // of the namespace at another path. `ip netns del` unlinks /run/netns/NAME, which on
    // 3.18+ detaches the copy mounted on that very file in every mount namespace (seen), but
    // not the second bind: that one is the leak shape (a pin no `ip netns` can see).
    let my_mnt = mnt_inum(me).unwrap();
    let private_pin = format!("/run/snapcopy-{me}");
    std::fs::write(&private_pin, b"").unwrap();
    cleanup.files.push(private_pin.clone());
    let copier = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {pin_path} {private_pin} && exec sleep 60"
        ))
        .spawn()
        .unwrap();
    let copier_pid = copier.id();
    cleanup.children.push(copier);
    wait_until(
        "the copier's mount namespace",
        Duration::from_secs(10),
        || {
            mnt_inum(copier_pid).is_some_and(|m| m != my_mnt)
                && std::fs::read_to_string(format!("/proc/{copier_pid}/comm"))
                    .map(|c| c.trim() == "sleep")
                    .unwrap_or(false)
        },
    );
    let copier_mnt = mnt_inum(copier_pid).unwrap();

    let snap = snapshot::take(SnapshotPhase::Start).expect("snapshot");

    let ns = snap
        .namespaces
        .iter()
        .find(|n| n.netns.inum == inum)
        .expect("our namespace is in the snapshot");
    // SO_NETNS_COOKIE exists from 5.14 (the 5.10 guest has none: the cookie stays 0 there).
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let v: Vec<u32> = release
        .split(['.', '-'])
        .take(2)
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    if v.len() == 2 && (v[0], v[1]) >= (5, 14) {
        assert!(
            ns.netns.cookie != 0,
            "{release}: SO_NETNS_COOKIE gives the cookie: {:?}",
            ns.netns
        );
    }
    assert_ne!(snap.init_netns.inum, inum);
    // pid 1 can be hidden even from root in some sandboxes (EACCES); kthreadd is always in init_net.
    let init_inum = link_inum("/proc/1/ns/net")
        .or_else(|| link_inum("/proc/2/ns/net"))
        .unwrap();
    assert_eq!(snap.init_netns.inum, init_inum);
    assert!(
        snap.namespaces.iter().any(|n| n.netns == snap.init_netns),
        "init namespace listed"
    );
    let init = snap
        .namespaces
        .iter()
        .find(|n| n.netns == snap.init_netns)
        .unwrap();
    assert!(
        init.interfaces.iter().any(|i| i.name == "lo"),
        "init interfaces read: {:?}",
        init.interfaces_error
    );

    // Pins: the bind mount in our mount namespace, its private copy, the fd.
    assert!(
        ns.pins.iter().any(|p| matches!(p, Pin::BindMount { path, mnt_ns, .. } if *path == pin_path && *mnt_ns == my_mnt)),
        "bind mount in our mount ns: {:#?}",
        ns.pins
    );
    let copy = ns
        .pins
        .iter()
        .find(|p| matches!(p, Pin::BindMount { path, mnt_ns, .. } if *path == pin_path && *mnt_ns == copier_mnt))
        .unwrap_or_else(|| panic!("copy in mnt:[{copier_mnt}] not found: {:#?}", ns.pins));
    let Pin::BindMount {
        holder_pid,
        holder_comm,
        ..
    } = copy
    else {
        unreachable!()
    };
    assert_eq!(
        mnt_inum(*holder_pid),
        Some(copier_mnt),
        "holder lives in the copy's mount namespace"
    );
    assert_eq!(
        *holder_pid, copier_pid,
        "the copier is the only process in its mount namespace"
    );
    assert_eq!(holder_comm.as_str(), "sleep");
    assert!(
        ns.pins.iter().any(|p| matches!(p, Pin::Fd { pid, fd: 7, comm } if *pid == fd_holder_pid && comm.as_str() == "sleep")),
        "fd pin: {:#?}",
        ns.pins
    );

    // Member.
    let m = ns
        .members
        .iter()
        .find(|m| m.pid == member_pid)
        .unwrap_or_else(|| panic!("member {member_pid} missing: {:#?}", ns.members));
    assert_eq!(m.tgid, member_pid);
    assert_eq!(m.comm.as_str(), "sleep");
    assert!(!m.cgroup.is_empty());

    // Interfaces, MAC, IPs.
    assert_eq!(ns.interfaces_error, None);
    let a = ns
        .interfaces
        .iter()
        .find(|i| i.name == "snapA")
        .unwrap_or_else(|| panic!("{:#?}", ns.interfaces));
    assert_eq!(a.mac, mac);
    assert_eq!(a.ipv4, vec![(Ipv4Addr::new(10, 231, subnet, 1), 24)]);
    let b = ns.interfaces.iter().find(|i| i.name == "snapB").unwrap();
    assert_eq!(b.ipv4, vec![(Ipv4Addr::new(10, 231, subnet, 2), 24)]);
    assert!(
        ns.interfaces
            .iter()
            .any(|i| i.name == "lo" && i.ifindex == 1)
    );

    // The building blocks the live enricher calls agree with the snapshot.
    assert!(
        ns.pins
            .iter()
            .any(|p| matches!(p, Pin::BindMount { path, mnt_ns, .. }
            if *path == private_pin && *mnt_ns == copier_mnt)),
        "private bind in mnt:[{copier_mnt}]: {:#?}",
        ns.pins
    );
    assert!(
        !ns.pins
            .iter()
            .any(|p| matches!(p, Pin::BindMount { path, mnt_ns, .. }
            if *path == private_pin && *mnt_ns == my_mnt)),
        "the private bind must not show up in our mount namespace"
    );
    let copies = snapshot::scan_mount_ns_pins(copier_mnt).unwrap();
    assert!(
        copies
            .iter()
            .any(|(i, p)| *i == inum
                && matches!(p, Pin::BindMount { path, .. } if *path == pin_path))
    );
    assert_eq!(
        snapshot::fd_pins_of(fd_holder_pid)
            .iter()
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
        vec![inum]
    );
    let through_copy = snapshot::read_interfaces(std::path::Path::new(&format!(
        "/proc/{copier_pid}/root{pin_path}"
    )))
    .unwrap();
    assert_eq!(through_copy.netns, ns.netns);
    let through_fd =
        snapshot::read_interfaces(std::path::Path::new(&format!("/proc/{fd_holder_pid}/fd/7")))
            .unwrap();
    assert_eq!(through_fd.netns, ns.netns);

    // We hold nothing: no netns fd in this process.
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(t) = std::fs::read_link(fd.path()) {
            assert!(
                !t.to_string_lossy().starts_with("net:["),
                "the test process holds {t:?} on fd {:?}",
                fd.file_name()
            );
        }
    }
    // No thread of ours is in it either.
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        assert_ne!(
            link_inum(&format!("{}/ns/net", t.path().display())),
            Some(inum)
        );
    }

    // Undo: ip netns del, kill the holders. The namespace must vanish everywhere.
    run(&["ip", "netns", "del", &name]);
    // Control: with the member and fd holder gone and /run/netns/NAME unlinked, the private
    // bind alone still pins it, and the check below sees that (so "nothing left" means it).
    let copier = cleanup.children.pop().unwrap();
    cleanup.kill_children();
    cleanup.children.push(copier);
    let left = references_to(inum);
    assert_eq!(
        left,
        vec![format!("mountinfo of {copier_pid}")],
        "only the private bind should remain"
    );
    let only_copy = snapshot::take(SnapshotPhase::Final).unwrap();
    let still = only_copy
        .namespaces
        .iter()
        .find(|n| n.netns == ns.netns)
        .expect("pinned only by the copy, still listed");
    assert!(still.members.is_empty());
    assert!(
        matches!(still.pins.as_slice(), [Pin::BindMount { path, mnt_ns, holder_pid, .. }]
            if *path == private_pin && *mnt_ns == copier_mnt && *holder_pid == copier_pid),
        "{:#?}",
        still.pins
    );
    assert!(
        still.interfaces.iter().any(|i| i.name == "snapA"),
        "read through /proc/COPIER/root{private_pin}: {:?}",
        still.interfaces_error
    );
    cleanup.kill_children();
    wait_until(
        "the namespace to be released everywhere",
        Duration::from_secs(10),
        || references_to(inum).is_empty(),
    );
    let after = snapshot::take(SnapshotPhase::Final).unwrap();
    assert!(
        after
            .namespaces
            .iter()
            .all(|n| n.netns.inum != inum || n.netns.cookie != ns.netns.cookie),
        "still in a snapshot"
    );
}
