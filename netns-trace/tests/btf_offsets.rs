//! The BTF resolver on the running kernel's real BTF: on the host (6.18) and in each guest
//! (5.10, 6.1, 6.12). Expected values were measured on these exact Debian kernels and are
//! recorded in KERNEL-NOTES: offsets move a lot between versions, which is the point.
use std::path::Path;

use netns_trace::probes::btf::{KernelBtf, VMLINUX_BTF};

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string()
}

#[test]
fn resolves_every_member_this_kernel_has() {
    let btf = match KernelBtf::load(Path::new(VMLINUX_BTF)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIP resolves_every_member_this_kernel_has: {e}");
            return;
        }
    };
    let r = btf.resolve();
    assert!(r.missing.is_empty(), "kernel {}: unresolved members {:?}", kernel(), r.missing);
    let o = r.offsets;
    let k = kernel();
    // (task_struct.nsproxy, net.ns.inum) per kernel series, from KERNEL-NOTES.
    let expected = if k.starts_with("5.10.") {
        Some((2824, 136))
    } else if k.starts_with("6.1.") {
        Some((3064, 144))
    } else if k.starts_with("6.12.") {
        Some((3064, 136))
    } else if k.starts_with("6.18.") {
        Some((1840, 176))
    } else {
        None
    };
    if let Some((nsproxy, inum)) = expected {
        assert_eq!((o.task_nsproxy, o.net_ns_inum), (nsproxy, inum), "kernel {k}");
    }
    // dev_addr is a pointer on every supported kernel (const since 5.15); the namespace type
    // moved to ns_common in 6.18.
    let major_minor: Vec<u32> = k.split(['.', '-']).take(2).filter_map(|p| p.parse().ok()).collect();
    let v = (major_minor[0], major_minor[1]);
    assert_eq!(o.netdev_dev_addr_is_ptr, 1, "dev_addr kind on {k}");
    assert_eq!(o.ns_common_ns_type != netns_trace_common::offsets::MISSING, v >= (6, 18), "ns_type on {k}");
    println!("kernel {k}: {o:?}");
}
