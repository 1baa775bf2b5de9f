//! The tracer spine against the running kernel: every probe that attached must deliver its
//! events with the right fields. Runs on the host (tracepoint mode) and in the QEMU guests
//! (full mode; NETNS_TRACE_EXPECT_MODE=full), where it also checks which mechanism each
//! probe used.
mod common;

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::watch::{Watch, events as raw_events};
use serde_json::Value;

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn bin() -> String {
    common::watch::netns_trace_bin()
}

/// iproute2's ip (busybox's lacks `netns` and `type veth`).
fn ip() -> &'static str {
    if std::path::Path::new("/sbin/ip").exists() {
        "/sbin/ip"
    } else {
        "ip"
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed: {st}");
}

fn expect_mode() -> String {
    std::env::var("NETNS_TRACE_EXPECT_MODE").unwrap_or_else(|_| "tracepoint".into())
}

struct Cleanup(Vec<&'static str>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new(ip())
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `ip netns add NAME`, and the new namespace's inode number (read from its pin).
fn add_netns(name: &str) -> u64 {
    sh(&[ip(), "netns", "add", name]);
    inum(&format!("/run/netns/{name}"))
}

fn inum(path: &str) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .ino()
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

fn in_ns(e: &Value, inum: u64) -> bool {
    e["netns"]["inum"].as_u64() == Some(inum)
}

#[test]
fn every_attached_probe_delivers_correct_events() {
    if !is_root() {
        eprintln!("SKIP every_attached_probe_delivers_correct_events: needs root to load BPF");
        return;
    }
    let (a, b) = ("nt-e2e-a", "nt-e2e-b");
    let _cleanup = Cleanup(vec![a, b]);
    for ns in [a, b] {
        let _ = Command::new(ip())
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    let watch = Watch::start(&["--raw"]);

    let (ia, ib) = (add_netns(a), add_netns(b));
    sh(&[
        ip(),
        "link",
        "add",
        "nte2a",
        "address",
        "02:00:0a:e7:09:01",
        "type",
        "veth",
        "peer",
        "name",
        "nte2b",
        "address",
        "02:00:0a:e7:09:02",
    ]);
    sh(&[ip(), "link", "set", "nte2a", "netns", a]);
    sh(&[ip(), "link", "set", "nte2b", "netns", b]);
    sh(&[
        ip(),
        "-n",
        a,
        "addr",
        "add",
        "10.231.9.1/24",
        "dev",
        "nte2a",
    ]);
    sh(&[
        ip(),
        "-n",
        b,
        "addr",
        "add",
        "10.231.9.2/24",
        "dev",
        "nte2b",
    ]);
    // IPv6 too, with no link-local address and no duplicate address detection, so that the
    // only Neighbour Discovery on the link is what the ping below makes.
    for (ns, dev, addr) in [
        (a, "nte2a", "fd00:231:9::1/64"),
        (b, "nte2b", "fd00:231:9::2/64"),
    ] {
        sh(&[ip(), "-n", ns, "link", "set", dev, "addrgenmode", "none"]);
        sh(&[ip(), "-n", ns, "addr", "add", addr, "dev", dev, "nodad"]);
    }
    for (ns, dev) in [(a, "nte2a"), (b, "nte2b")] {
        sh(&[ip(), "-n", ns, "link", "set", dev, "up"]);
        sh(&[ip(), "-n", ns, "link", "set", "lo", "up"]);
    }
    // A member joins A (setns), pings B (ARP request from A, reply from B) and exits.
    let member = Command::new(ip())
        .args([
            "netns",
            "exec",
            a,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.231.9.2",
        ])
        .spawn()
        .expect("spawn ping");
    let member_pid = member.id() as u64;
    let st = member.wait_with_output().expect("ping");
    assert!(st.status.success(), "ping across the veth failed");
    // The same over IPv6: A's kernel solicits B's address, B advertises it. Each kernel's
    // ICMPv6 counters, read before the namespaces go, say how many ND messages there were.
    sh(&[
        ip(),
        "netns",
        "exec",
        a,
        "busybox",
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "2",
        "fd00:231:9::2",
    ]);
    let nd_a = common::nd_counters(std::path::Path::new(&format!("/run/netns/{a}")));
    let nd_b = common::nd_counters(std::path::Path::new(&format!("/run/netns/{b}")));

    sh(&[ip(), "netns", "del", a]);
    sh(&[ip(), "netns", "del", b]);
    // From 6.13 a net's memory is freed on the *next* cleanup run; give it one.
    for _ in 0..3 {
        sh(&["unshare", "-n", "true"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    let events = raw_events(&watch.stop());
    assert!(!events.is_empty(), "no events at all");

    let probes: Value = {
        let out = Command::new(bin())
            .args(["probes", "--json"])
            .output()
            .expect("probes --json");
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).expect("probes JSON")
    };
    // The probe table of this kernel, for the log (the VM harness keeps it per kernel).
    for p in probes["probes"].as_array().unwrap() {
        eprintln!(
            "PROBE {:<16} {:<12} {:<11} {}",
            p["name"].as_str().unwrap(),
            p["status"].as_str().unwrap(),
            p["mechanism"].as_str().unwrap_or("-"),
            if p["status"] == "attached" {
                p["targets"].to_string()
            } else {
                p["detail"].to_string()
            }
        );
    }
    let mode = probes["mode"].as_str().unwrap().to_string();
    assert_eq!(mode, expect_mode(), "probe mode on this kernel");
    let attached = |name: &str| {
        probes["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == name && p["status"] == "attached")
    };
    // Which mechanism each probe used: full mode must get fentry/kprobe wherever such a link
    // exists (ipv4_addr's hooks are static, so kprobes there); tracepoint mode only tracepoints.
    for p in probes["probes"].as_array().unwrap() {
        let (name, mech) = (
            p["name"].as_str().unwrap(),
            p["mechanism"].as_str().unwrap_or("-"),
        );
        if mode == "full"
            && [
                "netns_created",
                "netns_teardown",
                "nsfs_mount",
                "nsfs_evict",
                "netdev",
                "ipv4_addr",
                "arp",
                "ndisc",
            ]
            .contains(&name)
        {
            assert!(
                mech == "fentry" || mech == "kprobe",
                "{name} used {mech} in full mode: {p}"
            );
        }
        if mode == "tracepoint" && p["status"] == "attached" {
            assert_eq!(mech, "tracepoint", "{name} in tracepoint mode");
        }
    }

    // Creation: both namespaces, with identity matching the bind-mounted file's inode. An
    // inum is reused as soon as a namespace is freed, so another namespace of the same inum
    // (made and gone earlier in the trace, by anything on the node) may precede ours: ours is
    // the one made by the `ip` process that then bind-mounted it at /run/netns/NAME.
    let created = of_type(&events, "netns_created");
    let mounts = of_type(&events, "mount_syscall");
    let creation_of = |name: &str, i: u64| {
        let pin = mounts
            .iter()
            .find(|e| e["op"] == "mount" && e["target"] == format!("/run/netns/{name}"))
            .unwrap_or_else(|| panic!("no mount of /run/netns/{name}: {mounts:?}"));
        created
            .iter()
            .find(|e| in_ns(e, i) && e["pid"] == pin["pid"])
            .unwrap_or_else(|| {
                panic!(
                    "no netns_created for {name} (inum {i}) by pid {} in {created:?}",
                    pin["pid"]
                )
            })
    };
    for (name, i) in [(a, ia), (b, ib)] {
        let e = creation_of(name, i);
        assert_eq!(e["comm"], "ip", "creator comm");
        assert!(e["net_ptr"].as_u64().unwrap() != 0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        if !kernel.starts_with("5.10") {
            assert!(
                e["netns"]["cookie"].as_u64().unwrap() != 0,
                "net_cookie set at creation on 5.12+"
            );
        }
        let want_source = if mode == "full" {
            "copy_net_ns"
        } else {
            "unshare"
        };
        assert_eq!(e["source"], want_source);
    }
    let cookie_a = creation_of(a, ia)["netns"]["cookie"].clone();

    // Pin: ip's bind mount of its own netns file onto /run/netns/A.
    let pin = mounts
        .iter()
        .find(|e| e["op"] == "mount" && e["target"] == format!("/run/netns/{a}"))
        .unwrap_or_else(|| panic!("no mount of /run/netns/{a}: {mounts:?}"));
    assert_eq!(pin["source"], "/proc/self/ns/net");
    assert_eq!(pin["ret"], 0);
    assert!(
        in_ns(pin, ia),
        "the mount syscall ran inside the new namespace"
    );
    assert!(pin["flags"].as_u64().unwrap() & 4096 != 0, "MS_BIND");
    let umount = mounts
        .iter()
        .find(|e| e["op"] == "umount" && e["source"] == format!("/run/netns/{a}"));
    assert!(umount.is_some(), "ip netns del unmounts the pin");

    // Membership: the ping joined A by setns and exited from A.
    let tasks = of_type(&events, "task");
    let joined = tasks
        .iter()
        .find(|e| e["op"] == "setns" && e["pid"].as_u64() == Some(member_pid));
    let joined = joined.unwrap_or_else(|| panic!("no setns of pid {member_pid}"));
    assert!(in_ns(joined, ia));
    assert_eq!(joined["netns"]["cookie"], cookie_a);
    assert!(
        tasks
            .iter()
            .any(|e| e["op"] == "exit" && e["pid"].as_u64() == Some(member_pid) && in_ns(e, ia)),
        "exit of the member from A"
    );

    // ARP: A asked for .2, B answered with its MAC, each seen on the right device and netns.
    let arps = of_type(&events, "arp");
    let request = arps.iter().find(|e| {
        e["op"] == 1 && e["dir"] == "tx" && in_ns(e, ia) && e["target_ip"] == "10.231.9.2"
    });
    let request = request.unwrap_or_else(|| panic!("no ARP request sent from A: {arps:?}"));
    assert_eq!(request["sender_ip"], "10.231.9.1");
    assert_eq!(request["sender_mac"], "02:00:0a:e7:09:01");
    let reply = arps
        .iter()
        .find(|e| e["op"] == 2 && e["dir"] == "tx" && in_ns(e, ib));
    let reply = reply.unwrap_or_else(|| panic!("no ARP reply sent from B: {arps:?}"));
    assert_eq!(reply["sender_ip"], "10.231.9.2");
    assert_eq!(reply["sender_mac"], "02:00:0a:e7:09:02");
    assert!(
        arps.iter()
            .any(|e| e["op"] == 2 && e["dir"] == "rx" && in_ns(e, ia)),
        "reply received in A"
    );
    if attached("neigh_update") {
        let neigh = of_type(&events, "neigh_update");
        assert!(
            neigh.iter().any(|e| in_ns(e, ia)
                && e["ip"] == "10.231.9.2"
                && e["mac"] == "02:00:0a:e7:09:02"),
            "A's neighbour entry for B: {neigh:?}"
        );
    }

    // ND: A solicited fd00:231:9::2 with its MAC in the source link-layer option, B
    // advertised it (solicited, override) with its own; as many of each, sent and received,
    // in each namespace as its kernel counted.
    if attached("ndisc") {
        let nd = of_type(&events, "ndisc");
        let solicitation = nd
            .iter()
            .find(|e| {
                e["icmp_type"] == 135
                    && e["dir"] == "tx"
                    && in_ns(e, ia)
                    && e["target"] == "fd00:231:9::2"
            })
            .unwrap_or_else(|| panic!("no solicitation sent from A: {nd:?}"));
        assert_eq!(solicitation["src"], "fd00:231:9::1");
        assert_eq!(solicitation["lla"], "02:00:0a:e7:09:01");
        assert_eq!(solicitation["lla_option"], 1);
        let advert = nd
            .iter()
            .find(|e| e["icmp_type"] == 136 && e["dir"] == "tx" && in_ns(e, ib))
            .unwrap_or_else(|| panic!("no advertisement sent from B: {nd:?}"));
        assert_eq!(advert["target"], "fd00:231:9::2");
        assert_eq!(advert["dst"], "fd00:231:9::1");
        assert_eq!(advert["lla"], "02:00:0a:e7:09:02");
        assert_eq!(advert["lla_option"], 2);
        assert_eq!(advert["na_flags"], 0x60, "solicited and override: {advert}");
        let want_hook = if mode == "full" {
            "fentry"
        } else {
            "tracepoint"
        };
        assert_eq!(advert["hook"], want_hook);
        for (name, i, counted) in [("A", ia, nd_a), ("B", ib, nd_b)] {
            let n = |t: u64, dir: &str| {
                nd.iter()
                    .filter(|e| in_ns(e, i) && e["icmp_type"] == t && e["dir"] == dir)
                    .count() as u64
            };
            let traced = [n(135, "tx"), n(135, "rx"), n(136, "tx"), n(136, "rx")];
            eprintln!(
                "ND {name}: [out NS, in NS, out NA, in NA] traced {traced:?}, snmp6 {counted:?}"
            );
            assert_eq!(
                traced, counted,
                "{name}: [out NS, in NS, out NA, in NA] traced vs the kernel's snmp6: {nd:?}"
            );
        }
    }

    // Teardown and free.
    let destroyed_a = |t: &str| of_type(&events, t).iter().any(|e| in_ns(e, ia));
    if mode == "full" {
        assert!(destroyed_a("netns_teardown"), "teardown of A");
        assert!(destroyed_a("nsfs_evict"), "nsfs inode of A evicted");
        let nsfs = of_type(&events, "nsfs_mount");
        assert!(
            nsfs.iter().any(|e| in_ns(e, ia) && e["comm"] == "ip"),
            "graft of A's nsfs file: {nsfs:?}"
        );
        let devs = of_type(&events, "net_dev");
        assert!(
            devs.iter().any(|e| e["op"] == "register"
                && e["name"] == "nte2a"
                && e["mac"] == "02:00:0a:e7:09:01"),
            "veth registered: {devs:?}"
        );
        assert!(
            devs.iter()
                .any(|e| e["op"] == "move" && e["name"] == "nte2a" && in_ns(e, ia)),
            "veth moved into A"
        );
        let addrs = of_type(&events, "ipv4_addr");
        assert!(
            addrs.iter().any(|e| e["op"] == "add"
                && e["addr"] == "10.231.9.1"
                && e["prefix_len"] == 24
                && in_ns(e, ia)),
            "address added in A: {addrs:?}"
        );
    } else {
        assert!(
            !of_type(&events, "cleanup_run").is_empty() || !attached("netns_teardown"),
            "cleanup_net runs seen"
        );
    }
    if attached("netns_freed") {
        assert!(destroyed_a("netns_freed"), "struct net of A freed");
    }
}

/// The packet tracepoints serve both the `arp` and the `ndisc` probe: with one of them
/// disabled, its family is never recorded, while the other's still is. Run in the kernel's
/// best mode (in full mode each has hooks of its own, and the same holds) and in tracepoint
/// mode, so that the guests' kernels load and run the packet tracepoint programs too.
#[test]
fn a_disabled_packet_probe_records_nothing_while_the_other_records() {
    if !is_root() {
        eprintln!(
            "SKIP a_disabled_packet_probe_records_nothing_while_the_other_records: needs root"
        );
        return;
    }
    let cases = ["auto", "tracepoint"]
        .into_iter()
        .flat_map(|mode| [(mode, "arp", "ndisc"), (mode, "ndisc", "arp")]);
    for (mode, disabled, kept) in cases {
        let (a, b) = ("nt-fam-a", "nt-fam-b");
        let _cleanup = Cleanup(vec![a, b]);
        let watch = Watch::start(&["--raw", "--mode", mode, "--disable-probe", disabled]);
        let (ia, ib) = (add_netns(a), add_netns(b));
        sh(&[
            ip(),
            "link",
            "add",
            "ntfama",
            "type",
            "veth",
            "peer",
            "name",
            "ntfamb",
        ]);
        for (ns, dev, v4, v6) in [
            (a, "ntfama", "10.231.19.1/24", "fd00:231:19::1/64"),
            (b, "ntfamb", "10.231.19.2/24", "fd00:231:19::2/64"),
        ] {
            sh(&[ip(), "link", "set", dev, "netns", ns]);
            sh(&[ip(), "-n", ns, "link", "set", dev, "addrgenmode", "none"]);
            sh(&[ip(), "-n", ns, "addr", "add", v4, "dev", dev]);
            sh(&[ip(), "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            sh(&[ip(), "-n", ns, "link", "set", dev, "up"]);
        }
        for target in ["10.231.19.2", "fd00:231:19::2"] {
            sh(&[
                ip(),
                "netns",
                "exec",
                a,
                "busybox",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                target,
            ]);
        }
        sh(&[ip(), "netns", "del", a]);
        sh(&[ip(), "netns", "del", b]);
        let events = raw_events(&watch.stop());
        let count = |t: &str| {
            of_type(&events, t)
                .iter()
                .filter(|e| in_ns(e, ia) || in_ns(e, ib))
                .count()
        };
        eprintln!(
            "--mode {mode} --disable-probe {disabled}: {} {disabled} and {} {kept} records",
            count(disabled),
            count(kept)
        );
        assert_eq!(count(disabled), 0, "{disabled} disabled, yet recorded");
        // A request and a reply, or a solicitation and an advertisement, each sent and
        // received.
        assert!(count(kept) >= 4, "{kept} still records: {}", count(kept));
    }
}
