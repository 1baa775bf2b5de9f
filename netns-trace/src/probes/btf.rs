//! Resolves the kernel struct members the probes read, from BTF (no CO-RE in Rust eBPF).
//!
//! Each member is looked up by a path of names (`ns.inum`), descending through anonymous
//! structs and unions the way C does. A member that is missing, or whose type is not what the
//! probes expect, is recorded as missing with the reason, and only the programs that need it
//! are disabled.
use std::collections::BTreeMap;
use std::path::Path;

use btf_rs::{Btf, Type};
use netns_trace_common::offsets::{KernelOffsets, MISSING};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "this kernel exposes no BTF at {path} ({source}); netns-trace needs CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse BTF at {path}: {reason}")]
    Parse { path: String, reason: String },
}

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What the resolver found: the offsets, and a reason for every member it could not resolve.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub offsets: KernelOffsets,
    /// `field name` → why it is missing.
    pub missing: BTreeMap<&'static str, String>,
}

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn load(path: &Path) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::NoBtf {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|reason| BtfError::Parse {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        Btf::from_bytes(bytes)
            .map(|btf| Self { btf })
            .map_err(|e| e.to_string())
    }

    /// Does the kernel have a function (BTF FUNC) of this name?
    pub fn has_function(&self, name: &str) -> bool {
        self.btf
            .resolve_types_by_name(name)
            .map(|types| types.iter().any(|t| matches!(t, Type::Func(_))))
            .unwrap_or(false)
    }

    /// Does the kernel have a BTF-enabled tracepoint `name` (typedef btf_trace_<name>)?
    pub fn has_btf_tracepoint(&self, name: &str) -> bool {
        self.btf
            .resolve_ids_by_name(&format!("btf_trace_{name}"))
            .map(|ids| !ids.is_empty())
            .unwrap_or(false)
    }

    fn strip(&self, mut t: Type) -> Result<Type, String> {
        for _ in 0..16 {
            match &t {
                Type::Typedef(_)
                | Type::Const(_)
                | Type::Volatile(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    let bt = t.as_btf_type().ok_or("untyped modifier")?;
                    t = self
                        .btf
                        .resolve_chained_type(bt)
                        .map_err(|e| e.to_string())?;
                }
                _ => return Ok(t),
            }
        }
        Err("modifier chain too long".into())
    }

    fn struct_named(&self, name: &str) -> Result<btf_rs::Struct, String> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| format!("struct {name} not in BTF"))?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| format!("struct {name} not in BTF"))
    }

    /// Finds member `name` in `st`, looking inside anonymous members. Returns its byte offset
    /// and its type (modifiers stripped).
    fn find_member(&self, st: &btf_rs::Struct, name: &str, depth: u32) -> Option<(u32, Type)> {
        if depth > 8 {
            return None;
        }
        for m in &st.members {
            let mname = self.btf.resolve_name(m).unwrap_or_default();
            let Ok(mtype) = self.btf.resolve_chained_type(m) else {
                continue;
            };
            let Ok(mtype) = self.strip(mtype) else {
                continue;
            };
            if m.bitfield_size().is_some_and(|s| s != 0) {
                continue;
            }
            let here = m.bit_offset() / 8;
            if mname == name {
                return Some((here, mtype));
            }
            if mname.is_empty()
                && let Type::Struct(inner) | Type::Union(inner) = &mtype
                && let Some((off, t)) = self.find_member(inner, name, depth + 1)
            {
                return Some((here + off, t));
            }
        }
        None
    }

    /// Byte offset of `path` (dot-separated members) inside `struct root`, and the member's
    /// type.
    pub fn member(&self, root: &str, path: &str) -> Result<(u32, Type), String> {
        let mut st = self.struct_named(root)?;
        let mut total = 0u32;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (off, t) = self
                .find_member(&st, part, 0)
                .ok_or_else(|| format!("struct {root} has no member {}", parts[..=i].join(".")))?;
            total += off;
            if i + 1 == parts.len() {
                return Ok((total, t));
            }
            st = match t {
                Type::Struct(s) | Type::Union(s) => s,
                other => {
                    return Err(format!(
                        "{root}.{} is a {}, not a struct",
                        parts[..=i].join("."),
                        other.name()
                    ));
                }
            };
        }
        Err(format!("empty member path for {root}"))
    }

    /// Resolves every offset the probes use. Never fails: unknowns are reported in `missing`.
    pub fn resolve(&self) -> Resolved {
        let mut o = KernelOffsets::UNRESOLVED;
        let mut missing = BTreeMap::new();

        // (field, struct, member path, expected kind): kind is checked so that a member that
        // changed type (say, a pointer became an array) is treated as missing, not misread.
        macro_rules! field {
            ($field:ident, $root:expr, $path:expr, $check:expr) => {{
                match self.member($root, $path) {
                    Ok((off, t)) => {
                        let check: fn(&Type) -> Result<(), String> = $check;
                        match check(&t) {
                            Ok(()) => o.$field = off,
                            Err(why) => {
                                missing.insert(
                                    stringify!($field),
                                    format!("{}.{}: {why}", $root, $path),
                                );
                            }
                        }
                    }
                    Err(why) => {
                        missing.insert(stringify!($field), why);
                    }
                }
            }};
        }
        fn ptr(t: &Type) -> Result<(), String> {
            match t {
                Type::Ptr(_) => Ok(()),
                other => Err(format!("expected a pointer, found {}", other.name())),
            }
        }
        fn int(t: &Type) -> Result<(), String> {
            match t {
                Type::Int(_) | Type::Enum(_) | Type::Enum64(_) => Ok(()),
                other => Err(format!("expected an integer, found {}", other.name())),
            }
        }
        fn any(_: &Type) -> Result<(), String> {
            Ok(())
        }
        fn record(t: &Type) -> Result<(), String> {
            match t {
                Type::Struct(_) | Type::Union(_) => Ok(()),
                other => Err(format!("expected a struct, found {}", other.name())),
            }
        }

        field!(task_nsproxy, "task_struct", "nsproxy", ptr);
        field!(task_pid, "task_struct", "pid", int);
        field!(task_tgid, "task_struct", "tgid", int);
        field!(nsproxy_net_ns, "nsproxy", "net_ns", ptr);
        field!(nsproxy_mnt_ns, "nsproxy", "mnt_ns", ptr);
        field!(net_ns, "net", "ns", record);
        field!(net_ns_inum, "net", "ns.inum", int);
        // u64 on 5.12+, atomic64_t (a struct around the counter) before: same offset.
        field!(net_cookie, "net", "net_cookie", any);
        field!(mnt_ns_inum, "mnt_namespace", "ns.inum", int);
        field!(mount_mnt, "mount", "mnt", record);
        field!(vfsmount_mnt_root, "vfsmount", "mnt_root", ptr);
        field!(dentry_d_sb, "dentry", "d_sb", ptr);
        field!(dentry_d_inode, "dentry", "d_inode", ptr);
        field!(sb_s_magic, "super_block", "s_magic", int);
        field!(inode_i_private, "inode", "i_private", ptr);
        field!(path_dentry, "path", "dentry", ptr);
        // The namespace type moved from ns->ops->type to ns->ns_type in 6.18: one of the two.
        field!(ns_common_ns_type, "ns_common", "ns_type", int);
        field!(ns_common_ops, "ns_common", "ops", ptr);
        field!(proc_ns_ops_type, "proc_ns_operations", "type", int);
        if o.ns_common_ns_type != MISSING {
            missing.remove("ns_common_ops");
            missing.remove("proc_ns_ops_type");
        } else if o.ns_common_ops != MISSING && o.proc_ns_ops_type != MISSING {
            missing.remove("ns_common_ns_type");
        }
        field!(netdev_ifindex, "net_device", "ifindex", int);
        field!(netdev_name, "net_device", "name", any);
        field!(netdev_nd_net, "net_device", "nd_net.net", ptr);
        match self.member("net_device", "dev_addr") {
            Ok((off, Type::Ptr(_))) => {
                o.netdev_dev_addr = off;
                o.netdev_dev_addr_is_ptr = 1;
            }
            Ok((off, Type::Array(_))) => {
                o.netdev_dev_addr = off;
                o.netdev_dev_addr_is_ptr = 0;
            }
            Ok((_, other)) => {
                missing.insert(
                    "netdev_dev_addr",
                    format!("net_device.dev_addr is a {}", other.name()),
                );
            }
            Err(why) => {
                missing.insert("netdev_dev_addr", why);
            }
        }
        field!(skb_protocol, "sk_buff", "protocol", int);
        field!(skb_head, "sk_buff", "head", ptr);
        field!(skb_data, "sk_buff", "data", ptr);
        field!(skb_network_header, "sk_buff", "network_header", int);
        field!(skb_dev, "sk_buff", "dev", ptr);
        field!(ifa_local, "in_ifaddr", "ifa_local", int);
        field!(ifa_prefixlen, "in_ifaddr", "ifa_prefixlen", int);
        field!(ifa_dev, "in_ifaddr", "ifa_dev", ptr);
        field!(ifa_label, "in_ifaddr", "ifa_label", any);
        field!(in_device_dev, "in_device", "dev", ptr);
        field!(neigh_primary_key, "neighbour", "primary_key", any);
        field!(neigh_dev, "neighbour", "dev", ptr);
        field!(neigh_tbl, "neighbour", "tbl", ptr);
        field!(neigh_table_family, "neigh_table", "family", int);

        Resolved {
            offsets: o,
            missing,
        }
    }
}

/// Address of a text symbol in /proc/kallsyms (0 when hidden by kptr_restrict or absent).
pub fn kallsyms_address(name: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
        return 0;
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = it.next()?;
            let _kind = it.next()?;
            (it.next()? == name)
                .then(|| u64::from_str_radix(addr, 16).ok())
                .flatten()
        })
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Option<KernelBtf> {
        match KernelBtf::load(Path::new(VMLINUX_BTF)) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }

    #[test]
    fn resolves_every_member_on_the_host_kernel() {
        let Some(btf) = host() else { return };
        let r = btf.resolve();
        assert!(
            r.missing.is_empty(),
            "unresolved on this kernel: {:?}",
            r.missing
        );
        let o = r.offsets;
        // Sanity: members lie inside their structs and differ from each other.
        assert!(o.task_nsproxy > 0 && o.task_nsproxy < 16384);
        assert_ne!(o.net_ns_inum, o.net_cookie);
        assert!(o.net_ns_inum >= o.net_ns, "ns.inum lies inside net.ns");
        assert_eq!(
            o.netdev_dev_addr_is_ptr, 1,
            "dev_addr is a pointer since 5.15"
        );
    }

    #[test]
    fn reports_missing_members_with_a_reason() {
        let Some(btf) = host() else { return };
        let err = btf.member("net", "no_such_member").unwrap_err();
        assert!(err.contains("no member no_such_member"), "{err}");
        let err = btf.member("no_such_struct_xyz", "a").unwrap_err();
        assert!(err.contains("not in BTF"), "{err}");
        let err = btf.member("net", "ns.inum.deeper").unwrap_err();
        assert!(err.contains("not a struct"), "{err}");
    }

    #[test]
    fn finds_functions_and_btf_tracepoints() {
        let Some(btf) = host() else { return };
        assert!(btf.has_function("copy_net_ns"));
        assert!(btf.has_btf_tracepoint("sched_process_fork"));
        assert!(!btf.has_function("definitely_not_a_kernel_function"));
    }

    #[test]
    fn rejects_garbage_btf() {
        assert!(KernelBtf::from_bytes(b"not btf at all").is_err());
        assert!(KernelBtf::from_bytes(&[]).is_err());
    }
}
