//! Self-test of `cargo xtask vm-test`: proves a guest boots the kernel it was asked for, with
//! BTF, and that the shipped iproute2 and veth module work in a namespace the test makes.
//! On the host (NETNS_TRACE_IN_VM unset) only the BTF and veth checks run.
use std::path::Path;
use std::process::{Command, Output};

fn in_vm() -> bool {
    std::env::var("NETNS_TRACE_IN_VM").is_ok_and(|v| v == "1")
}

/// iproute2's ip: in a guest, busybox's `ip` (no `netns`, no `type veth`) is also around.
fn ip(args: &[&str]) -> Output {
    let program = if Path::new("/sbin/ip").exists() {
        "/sbin/ip"
    } else {
        "ip"
    };
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn ip_ok(args: &[&str]) -> String {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the namespace even when an assertion fails half-way.
struct NamedNetns(String);

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

#[test]
fn guest_runs_the_requested_kernel() {
    if !in_vm() {
        return;
    }
    let wanted =
        std::env::var("NETNS_TRACE_KERNEL").expect("NETNS_TRACE_KERNEL is set in every guest");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("read /proc/sys/kernel/osrelease");
    let release = release.trim();
    // "6.1" must not accept "6.12…": the version has to end where the prefix ends.
    let rest = release
        .strip_prefix(wanted.as_str())
        .unwrap_or_else(|| panic!("guest kernel {release} is not the requested {wanted}"));
    assert!(
        rest.starts_with(['.', '-', '+']) || rest.is_empty(),
        "guest kernel {release} is not the requested {wanted}"
    );
}

#[test]
fn kernel_exposes_btf() {
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "/sys/kernel/btf/vmlinux is missing"
    );
}

#[test]
fn veth_pair_in_a_fresh_namespace() {
    let netns = NamedNetns(format!("nt-vmharness-{}", std::process::id()));
    let name = netns.0.as_str();
    ip_ok(&["netns", "add", name]);
    assert!(
        Path::new("/run/netns").join(name).exists(),
        "ip netns add made no /run/netns/{name}"
    );

    ip_ok(&[
        "-n", name, "link", "add", "vh0", "type", "veth", "peer", "name", "vh1",
    ]);
    let details = ip_ok(&["-n", name, "-d", "link", "show", "vh0"]);
    assert!(
        details.contains("vh0@vh1"),
        "vh0 is not paired with vh1: {details}"
    );
    assert!(
        details.contains("veth"),
        "vh0 is not a veth device: {details}"
    );
    ip_ok(&["-n", name, "link", "set", "vh0", "up"]);
    ip_ok(&["-n", name, "link", "set", "vh1", "up"]);

    // Deleting one end removes its peer.
    ip_ok(&["-n", name, "link", "del", "vh0"]);
    let links = ip_ok(&["-n", name, "-o", "link", "show"]);
    assert!(!links.contains("vh1"), "vh1 outlived its peer: {links}");

    ip_ok(&["netns", "del", name]);
    assert!(
        !Path::new("/run/netns").join(name).exists(),
        "ip netns del left /run/netns/{name}"
    );
}
