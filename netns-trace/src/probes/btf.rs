//! Resolves the kernel struct members the probes read, from BTF (no CO-RE in Rust eBPF).
//!
//! Each member is looked up by a path of names (`ns.inum`), descending through anonymous
//! structs and unions the way C does. A member that is missing, or whose type is not what the
//! probes expect, is recorded as missing with the reason, and only the programs that need it
//! are disabled.
use std::collections::BTreeMap;
use std::path::Path;

use btf_rs::{Btf, Type};
use netns_trace_common::offsets::{KernelOffsets, MISSING, Offset};

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

/// Why a member could not be resolved; the text is what `netns-trace probes` reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    #[error("struct {root} not in BTF")]
    NoStruct { root: String },
    #[error("struct {root} has no member {path}")]
    NoMember { root: String, path: String },
    /// `path` leads through a member that is not a struct or union.
    #[error("{root}.{path} is a {kind}, not a struct")]
    NotAStruct {
        root: String,
        path: String,
        kind: &'static str,
    },
    #[error("{root}.{path}: expected {expected}, found {found}")]
    UnexpectedType {
        root: String,
        path: String,
        expected: Expect,
        found: &'static str,
    },
}

/// The kind of type the probes read a member as. It is checked so that a member that changed
/// type (say, a pointer became an array) is treated as missing, not misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Pointer,
    Integer,
    /// A struct or union (the probes take its address).
    Struct,
    /// Read as bytes, whatever the type.
    Any,
    /// `net_device.dev_addr`: which of the two also sets `netdev_dev_addr_is_ptr`.
    PointerOrArray,
}

impl Expect {
    fn accepts(self, t: &Type) -> bool {
        match self {
            Expect::Pointer => matches!(t, Type::Ptr(_)),
            Expect::Integer => matches!(t, Type::Int(_) | Type::Enum(_) | Type::Enum64(_)),
            Expect::Struct => matches!(t, Type::Struct(_) | Type::Union(_)),
            Expect::Any => true,
            Expect::PointerOrArray => matches!(t, Type::Ptr(_) | Type::Array(_)),
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expect::Pointer => "a pointer",
            Expect::Integer => "an integer",
            Expect::Struct => "a struct",
            Expect::Any => "anything",
            Expect::PointerOrArray => "a pointer or an array",
        })
    }
}

/// Where each member lives in the kernel's types: struct, member path (dot-separated, through
/// anonymous members as C does), and the kind of type the probes read.
fn location(member: Offset) -> (&'static str, &'static str, Expect) {
    use Expect::*;
    match member {
        Offset::TaskNsproxy => ("task_struct", "nsproxy", Pointer),
        Offset::TaskPid => ("task_struct", "pid", Integer),
        Offset::TaskTgid => ("task_struct", "tgid", Integer),
        Offset::NsproxyNetNs => ("nsproxy", "net_ns", Pointer),
        Offset::NsproxyMntNs => ("nsproxy", "mnt_ns", Pointer),
        Offset::NetNs => ("net", "ns", Struct),
        Offset::NetNsInum => ("net", "ns.inum", Integer),
        // u64 on 5.12+, atomic64_t (a struct around the counter) before: same offset.
        Offset::NetCookie => ("net", "net_cookie", Any),
        Offset::MntNsInum => ("mnt_namespace", "ns.inum", Integer),
        Offset::MountMnt => ("mount", "mnt", Struct),
        Offset::VfsmountMntRoot => ("vfsmount", "mnt_root", Pointer),
        Offset::DentryDSb => ("dentry", "d_sb", Pointer),
        Offset::DentryDInode => ("dentry", "d_inode", Pointer),
        Offset::SbSMagic => ("super_block", "s_magic", Integer),
        Offset::InodeIPrivate => ("inode", "i_private", Pointer),
        Offset::PathDentry => ("path", "dentry", Pointer),
        Offset::NsCommonNsType => ("ns_common", "ns_type", Integer),
        Offset::NsCommonOps => ("ns_common", "ops", Pointer),
        Offset::ProcNsOpsType => ("proc_ns_operations", "type", Integer),
        Offset::NetdevIfindex => ("net_device", "ifindex", Integer),
        Offset::NetdevName => ("net_device", "name", Any),
        Offset::NetdevNdNet => ("net_device", "nd_net.net", Pointer),
        Offset::NetdevDevAddr => ("net_device", "dev_addr", PointerOrArray),
        Offset::SkbProtocol => ("sk_buff", "protocol", Integer),
        Offset::SkbHead => ("sk_buff", "head", Pointer),
        Offset::SkbData => ("sk_buff", "data", Pointer),
        Offset::SkbNetworkHeader => ("sk_buff", "network_header", Integer),
        Offset::SkbTransportHeader => ("sk_buff", "transport_header", Integer),
        Offset::SkbLen => ("sk_buff", "len", Integer),
        Offset::SkbDev => ("sk_buff", "dev", Pointer),
        Offset::IfaLocal => ("in_ifaddr", "ifa_local", Integer),
        Offset::IfaPrefixlen => ("in_ifaddr", "ifa_prefixlen", Integer),
        Offset::IfaDev => ("in_ifaddr", "ifa_dev", Pointer),
        Offset::IfaLabel => ("in_ifaddr", "ifa_label", Any),
        Offset::InDeviceDev => ("in_device", "dev", Pointer),
        Offset::NeighPrimaryKey => ("neighbour", "primary_key", Any),
        Offset::NeighDev => ("neighbour", "dev", Pointer),
        Offset::NeighTbl => ("neighbour", "tbl", Pointer),
        Offset::NeighTableFamily => ("neigh_table", "family", Integer),
    }
}

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What the resolver found: the offsets, and a reason for every member it could not resolve.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub offsets: KernelOffsets,
    pub missing: BTreeMap<Offset, MemberError>,
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

    fn struct_named(&self, name: &str) -> Result<btf_rs::Struct, MemberError> {
        self.btf
            .resolve_types_by_name(name)
            .unwrap_or_default()
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| MemberError::NoStruct { root: name.into() })
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
    pub fn member(&self, root: &str, path: &str) -> Result<(u32, Type), MemberError> {
        let mut total = 0u32;
        let mut ty = Type::Struct(self.struct_named(root)?);
        let mut walked = String::new();
        for part in path.split('.') {
            let st = match ty {
                Type::Struct(s) | Type::Union(s) => s,
                other => {
                    return Err(MemberError::NotAStruct {
                        root: root.into(),
                        path: walked,
                        kind: other.name(),
                    });
                }
            };
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(part);
            let (off, t) = self
                .find_member(&st, part, 0)
                .ok_or_else(|| MemberError::NoMember {
                    root: root.into(),
                    path: walked.clone(),
                })?;
            total += off;
            ty = t;
        }
        Ok((total, ty))
    }

    /// Offset of one member, with its type checked against what the probes read.
    fn resolve_member(&self, member: Offset) -> Result<(u32, Type), MemberError> {
        let (root, path, expected) = location(member);
        let (off, t) = self.member(root, path)?;
        if !expected.accepts(&t) {
            return Err(MemberError::UnexpectedType {
                root: root.into(),
                path: path.into(),
                expected,
                found: t.name(),
            });
        }
        Ok((off, t))
    }

    /// Resolves every offset the probes use. Never fails: unknowns are reported in `missing`.
    pub fn resolve(&self) -> Resolved {
        let mut offsets = KernelOffsets::UNRESOLVED;
        let mut missing = BTreeMap::new();
        for &member in Offset::ALL {
            match self.resolve_member(member) {
                Ok((off, t)) => {
                    offsets.set(member, off);
                    if member == Offset::NetdevDevAddr {
                        offsets.netdev_dev_addr_is_ptr = u32::from(matches!(t, Type::Ptr(_)));
                    }
                }
                Err(why) => {
                    missing.insert(member, why);
                }
            }
        }
        // The namespace type moved from ns->ops->type to ns->ns_type in 6.18: one of the two.
        if offsets.ns_common_ns_type != MISSING {
            missing.remove(&Offset::NsCommonOps);
            missing.remove(&Offset::ProcNsOpsType);
        } else if offsets.ns_common_ops != MISSING && offsets.proc_ns_ops_type != MISSING {
            missing.remove(&Offset::NsCommonNsType);
        }
        Resolved { offsets, missing }
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
        assert_eq!(
            btf.member("net", "ns.no_such_member").unwrap_err(),
            MemberError::NoMember {
                root: "net".into(),
                path: "ns.no_such_member".into()
            }
        );
        assert_eq!(
            btf.member("no_such_struct_xyz", "a").unwrap_err(),
            MemberError::NoStruct {
                root: "no_such_struct_xyz".into()
            }
        );
        let err = btf.member("net", "ns.inum.deeper").unwrap_err();
        assert!(
            matches!(&err, MemberError::NotAStruct { path, .. } if path == "ns.inum"),
            "{err}"
        );
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
