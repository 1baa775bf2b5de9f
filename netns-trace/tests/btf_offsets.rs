//! The BTF resolver on the running kernel's real BTF: on the host (6.18) and in each guest
//! (5.10, 6.1, 6.12). Offsets move between versions and between builds of one version, so
//! the expected values come from the running kernel through bpftool, read independently.
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use netns_trace::probes::btf::{KernelBtf, VMLINUX_BTF};

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
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
    assert!(
        r.missing.is_empty(),
        "kernel {}: unresolved members {:?}",
        kernel(),
        r.missing
    );
    let o = r.offsets;
    let k = kernel();
    match bpftool_offsets(&["task_struct.nsproxy", "net.ns.inum"]) {
        Ok(expected) => assert_eq!(
            vec![o.task_nsproxy as u64, o.net_ns_inum as u64],
            expected,
            "kernel {k}: (task_struct.nsproxy, net.ns.inum) against bpftool"
        ),
        Err(why) => eprintln!("kernel {k}: offsets not cross-checked: {why}"),
    }
    // dev_addr is a pointer on every supported kernel (const since 5.15); the namespace type
    // moved to ns_common in 6.18.
    let major_minor: Vec<u32> = k
        .split(['.', '-'])
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    let v = (major_minor[0], major_minor[1]);
    assert_eq!(o.netdev_dev_addr_is_ptr, 1, "dev_addr kind on {k}");
    assert_eq!(
        o.ns_common_ns_type != netns_trace_common::offsets::MISSING,
        v >= (6, 18),
        "ns_type on {k}"
    );
    println!("kernel {k}: {o:?}");
}

/// Byte offsets of dotted member paths ("net.ns.inum"), resolved by bpftool's own BTF parser
/// from the running kernel's BTF: `bpftool -j btf dump file … format raw`. Anonymous struct
/// and union members are searched as C does. Err only when bpftool is not installed.
fn bpftool_offsets(paths: &[&str]) -> Result<Vec<u64>, String> {
    let out = match Command::new("bpftool")
        .args(["-j", "btf", "dump", "file", VMLINUX_BTF, "format", "raw"])
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("bpftool is not installed".into());
        }
        Err(e) => panic!("bpftool: {e}"),
    };
    assert!(
        out.status.success(),
        "bpftool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let types = dump["types"].as_array().expect("types[]");
    let by_id = |id: u64| types.iter().find(|t| t["id"].as_u64() == Some(id));
    // Through typedefs and qualifiers to the struct or union itself.
    let resolve = |mut id: u64| loop {
        let t = by_id(id).unwrap_or_else(|| panic!("BTF type {id} missing"));
        match t["kind"].as_str() {
            Some("TYPEDEF" | "CONST" | "VOLATILE" | "RESTRICT" | "TYPE_TAG") => {
                id = t["type_id"].as_u64().expect("type_id")
            }
            _ => break t,
        }
    };
    fn member_bits<'a>(
        resolve: &dyn Fn(u64) -> &'a Value,
        ty: &'a Value,
        name: &str,
    ) -> Option<(u64, u64)> {
        for m in ty["members"].as_array()? {
            let bits = m["bits_offset"].as_u64()?;
            let type_id = m["type_id"].as_u64()?;
            if m["name"] == name {
                return Some((bits, type_id));
            }
            if m["name"] == "(anon)"
                && let Some((inner, id)) = member_bits(resolve, resolve(type_id), name)
            {
                return Some((bits + inner, id));
            }
        }
        None
    }
    Ok(paths
        .iter()
        .map(|path| {
            let mut parts = path.split('.');
            let root = parts.next().unwrap();
            let mut ty = types
                .iter()
                .find(|t| {
                    t["kind"] == "STRUCT" && t["name"] == root && t["vlen"].as_u64() > Some(0)
                })
                .unwrap_or_else(|| panic!("struct {root} not in BTF"));
            let mut bits = 0;
            for name in parts {
                let (b, id) = member_bits(&resolve, ty, name)
                    .unwrap_or_else(|| panic!("{path}: no member {name}"));
                bits += b;
                ty = resolve(id);
            }
            bits / 8
        })
        .collect())
}
