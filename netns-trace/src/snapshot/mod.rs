//! Userspace's view of every network namespace: members, pins, interfaces.
//!
//! The ironclad rule: the tracer never keeps a namespace alive. /proc links are only
//! readlink'd or stat'ed; mountinfo is read as text (no mount is copied into our own mount
//! namespace); a namespace is entered only by [`netns_handle::read_interfaces`], which closes
//! its fd at once, closes its netlink socket and switches its dedicated thread back before
//! returning.
//!
//! - [`take`] builds a whole [`Snapshot`].
//! - [`scan_mount_ns_pins`], [`fd_pins_of`], [`all_fd_pins`], [`read_interfaces`] are the
//!   pieces the live enricher calls on events; [`ProcObserver`] bundles them as its
//!   [`Observer`](crate::live::enrich::Observer).

pub mod age;
pub mod mountinfo;
pub mod netns_handle;
pub mod procfs;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

pub use age::{AgeEstimate, AgeSource, estimate_ages};
pub use netns_handle::{NsRead, ns_inum_of, read_interfaces};
pub use procfs::ProcFs;
use procfs::{ProcessNs, is_vanished};

use crate::model::{Comm, Interface, Member, NsId, Pin, SnapNamespace, Snapshot, SnapshotPhase};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot enter the network namespace at {}: {source}", path.display())]
    Enter { path: PathBuf, source: io::Error },
    #[error("rtnetlink read through {}: {what}", path.display())]
    Netlink { path: PathBuf, what: String },
    #[error("the namespace reader thread for {} panicked", .0.display())]
    ReaderPanicked(PathBuf),
    #[error("no process lives in mount namespace mnt:[{0}], so its mounts cannot be read")]
    NoProcessInMountNs(u32),
}

/// Takes a snapshot of every network namespace reachable from /proc.
pub fn take(phase: SnapshotPhase) -> Result<Snapshot, SnapshotError> {
    take_with(&ProcFs::host(), phase, &mut |p: &Path| read_interfaces(p))
}

/// What is known about one namespace while a snapshot is assembled.
#[derive(Default)]
struct Gathered {
    members: Vec<Member>,
    pins: Vec<Pin>,
    /// Paths to reach the namespace through, best first.
    handles: Vec<PathBuf>,
}

/// [`take`] with the /proc root and the interface reader replaceable (for tests).
pub fn take_with(
    proc: &ProcFs,
    phase: SnapshotPhase,
    read: &mut dyn FnMut(&Path) -> Result<NsRead, SnapshotError>,
) -> Result<Snapshot, SnapshotError> {
    let processes = proc.processes().map_err(|source| SnapshotError::Io {
        path: proc.root().to_path_buf(),
        source,
    })?;
    let mut by_inum: BTreeMap<u32, Gathered> = BTreeMap::new();

    let mut member_handles: Vec<(u32, PathBuf)> = Vec::new();
    for p in &processes {
        for (inum, member, handle) in members_of(proc, p) {
            by_inum.entry(inum).or_default().members.push(member);
            member_handles.push((inum, handle));
        }
    }
    for (inum, handle) in member_handles {
        by_inum.entry(inum).or_default().handles.push(handle);
    }

    // One representative process per mount namespace: propagated and copied bind mounts
    // live in other mount namespaces than ours.
    let mut mount_namespaces: BTreeMap<u32, &ProcessNs> = BTreeMap::new();
    for p in &processes {
        if p.mnt_inum != 0 {
            mount_namespaces.entry(p.mnt_inum).or_insert(p);
        }
    }
    for (&mnt_ns, rep) in &mount_namespaces {
        match bind_mount_pins(proc, mnt_ns, rep.pid, rep.comm) {
            Ok(pins) => {
                for (inum, pin) in pins {
                    let g = by_inum.entry(inum).or_default();
                    if let Pin::BindMount {
                        path, holder_pid, ..
                    } = &pin
                    {
                        g.handles.push(handle_in_mount_ns(proc, *holder_pid, path));
                    }
                    g.pins.push(pin);
                }
            }
            Err(e) if matches!(&e, SnapshotError::Io { source, .. } if is_vanished(source)) => {}
            Err(e) => tracing::warn!("mount namespace mnt:[{mnt_ns}]: {e}"),
        }
    }
    for p in &processes {
        for &(inum, fd) in &p.net_fds {
            let g = by_inum.entry(inum).or_default();
            g.pins.push(Pin::Fd {
                pid: p.pid,
                fd,
                comm: p.comm,
            });
            g.handles
                .push(proc.pid_path(p.pid).join("fd").join(fd.to_string()));
        }
    }

    // pid 1's namespace is the host's; where pid 1 is hidden from us (another user namespace,
    // hidepid), our own stands in, since netns-trace runs with the host network.
    let init_inum = init_net_inum(proc)?;
    let mut namespaces = Vec::with_capacity(by_inum.len());
    for (inum, mut g) in by_inum {
        let (netns, interfaces, interfaces_error) = read_through_any(inum, &g.handles, read);
        g.members.sort_by_key(|m| (m.tgid, m.pid));
        namespaces.push(SnapNamespace {
            netns,
            members: g.members,
            pins: g.pins,
            interfaces,
            interfaces_error,
        });
    }
    let init_netns = namespaces
        .iter()
        .find(|n| n.netns.inum == init_inum)
        .map(|n| n.netns)
        .unwrap_or(NsId::new(0, init_inum));
    Ok(Snapshot {
        phase,
        namespaces,
        init_netns,
        init_mnt_ns: init_mnt_inum(proc),
    })
}

/// The node's mount namespace, where runtimes put their pins: pid 1's, or kthreadd's where
/// pid 1 cannot be read (kernel threads share the initial mount namespace). 0 when neither
/// can be read: never our own, which in a pod is the pod's.
fn init_mnt_inum(proc: &ProcFs) -> u32 {
    if let Ok(inum) = proc.mnt_ns(1) {
        return inum;
    }
    if proc.comm(2).is_ok_and(|c| c.as_str() == "kthreadd")
        && let Ok(inum) = proc.mnt_ns(2)
    {
        return inum;
    }
    0
}

/// The initial network namespace's inum: pid 1's. Where pid 1 cannot be read (some
/// sandboxes hide it even from root, seen here: EACCES), kthreadd's (kernel threads always
/// live in init_net), and last our own.
fn init_net_inum(proc: &ProcFs) -> Result<u32, SnapshotError> {
    let pid1 = match proc.net_ns(1) {
        Ok(inum) => return Ok(inum),
        Err(e) => e,
    };
    if proc.comm(2).is_ok_and(|c| c.as_str() == "kthreadd")
        && let Ok(inum) = proc.net_ns(2)
    {
        return Ok(inum);
    }
    proc.net_ns(std::process::id())
        .map_err(|_| SnapshotError::Io {
            path: proc.pid_path(1).join("ns/net"),
            source: pid1,
        })
}

/// Members of a process: one per distinct network namespace among its threads. The entry
/// for the thread-group leader's namespace carries the tgid as pid; a thread that sits in
/// another namespace (containerd's locked thread) is listed with its own tid.
fn members_of(proc: &ProcFs, p: &ProcessNs) -> Vec<(u32, Member, PathBuf)> {
    let leader_inum = p.tasks.iter().find(|t| t.tid == p.tgid).map(|t| t.net_inum);
    let mut out: Vec<(u32, Member, PathBuf)> = Vec::new();
    for t in &p.tasks {
        if out.iter().any(|(inum, _, _)| *inum == t.net_inum) {
            continue;
        }
        let (pid, comm) = if Some(t.net_inum) == leader_inum {
            (p.tgid, p.comm)
        } else {
            (t.tid, t.comm)
        };
        let handle = proc
            .pid_path(p.pid)
            .join("task")
            .join(pid.to_string())
            .join("ns/net");
        out.push((
            t.net_inum,
            Member {
                pid,
                tgid: p.tgid,
                comm,
                cgroup: p.cgroup.clone(),
            },
            handle,
        ));
    }
    out
}

/// The path of a bind mount as reached through a process of the mount namespace it lives in.
fn handle_in_mount_ns(proc: &ProcFs, holder_pid: u32, path: &str) -> PathBuf {
    proc.pid_path(holder_pid)
        .join("root")
        .join(path.trim_start_matches('/'))
}

/// Tries each handle until one reads the namespace we asked for (a pid can be reused and a
/// mount replaced between the walk and the read).
fn read_through_any(
    inum: u32,
    handles: &[PathBuf],
    read: &mut dyn FnMut(&Path) -> Result<NsRead, SnapshotError>,
) -> (NsId, Vec<Interface>, Option<String>) {
    let mut last_error = String::from("no handle: no member, bind mount or fd could be used");
    for handle in handles {
        match read(handle) {
            Ok(r) if r.netns.inum == inum => return (r.netns, r.interfaces, None),
            Ok(r) => last_error = format!("{} now leads to {} instead", handle.display(), r.netns),
            Err(e) => last_error = e.to_string(),
        }
    }
    (NsId::new(0, inum), Vec::new(), Some(last_error))
}

/// nsfs net bind mounts in mount namespace `mnt_ns`, read through process `holder_pid`.
fn bind_mount_pins(
    proc: &ProcFs,
    mnt_ns: u32,
    holder_pid: u32,
    holder_comm: Comm,
) -> Result<Vec<(u32, Pin)>, SnapshotError> {
    let text = proc
        .mountinfo(holder_pid)
        .map_err(|source| SnapshotError::Io {
            path: proc.pid_path(holder_pid).join("mountinfo"),
            source,
        })?;
    let entries = mountinfo::parse(&text);
    let mut found = mountinfo::nsfs_net_pins(&entries);
    // Kernels that print an nsfs root as "/": find the inum (and that it is a net ns) by
    // looking at the mount point itself.
    for e in mountinfo::nsfs_unnamed(&entries) {
        let handle = handle_in_mount_ns(proc, holder_pid, &e.mount_point);
        match netns_handle::net_inum_of_nsfs_file(&handle) {
            Ok(Some(inum)) => found.push((inum, e.mount_point.clone())),
            Ok(None) => {}
            Err(err) => tracing::debug!("{}: {err}", handle.display()),
        }
    }
    Ok(found
        .into_iter()
        .map(|(inum, path)| {
            (
                inum,
                Pin::BindMount {
                    path,
                    mnt_ns,
                    holder_pid,
                    holder_comm,
                },
            )
        })
        .collect())
}

/// nsfs net bind mounts visible in mount namespace `mnt_ns_inum`: (net inum, pin). Finds a
/// process in that mount namespace and reads its mountinfo.
pub fn scan_mount_ns_pins(mnt_ns_inum: u32) -> Result<Vec<(u32, Pin)>, SnapshotError> {
    scan_mount_ns_pins_in(&ProcFs::host(), mnt_ns_inum)
}

pub fn scan_mount_ns_pins_in(
    proc: &ProcFs,
    mnt_ns_inum: u32,
) -> Result<Vec<(u32, Pin)>, SnapshotError> {
    // A process may exit between being chosen and being read; try the next one then.
    let pids = proc.pids().map_err(|source| SnapshotError::Io {
        path: proc.root().to_path_buf(),
        source,
    })?;
    for pid in pids {
        if proc.mnt_ns(pid).ok() != Some(mnt_ns_inum) {
            continue;
        }
        let comm = proc.comm(pid).unwrap_or_default();
        match bind_mount_pins(proc, mnt_ns_inum, pid, comm) {
            Ok(pins) => return Ok(pins),
            Err(SnapshotError::Io { source, .. }) if is_vanished(&source) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(SnapshotError::NoProcessInMountNs(mnt_ns_inum))
}

/// Open fds of `pid` on network namespace files: (net inum, pin). Empty if it is gone.
pub fn fd_pins_of(pid: u32) -> Vec<(u32, Pin)> {
    fd_pins_of_in(&ProcFs::host(), pid)
}

pub fn fd_pins_of_in(proc: &ProcFs, pid: u32) -> Vec<(u32, Pin)> {
    let Ok(fds) = proc.net_fds(pid) else {
        return Vec::new();
    };
    if fds.is_empty() {
        return Vec::new();
    }
    let comm = proc.comm(pid).unwrap_or_default();
    let mut per_namespace: HashMap<u32, usize> = HashMap::new();
    fds.into_iter()
        .filter(|(inum, _)| {
            let n = per_namespace.entry(*inum).or_default();
            *n += 1;
            *n <= MAX_FD_PINS_PER_HOLDER
        })
        .map(|(inum, fd)| (inum, Pin::Fd { pid, fd, comm }))
        .collect()
}

/// Fd pins reported per process and namespace (its lowest fds). Which process holds the
/// namespace is what a verdict needs; a pod opening its namespace 19,000 times (RLIMIT_NOFILE
/// can be 1M in a pod) must not make 19,000 pins, events and comparisons.
pub const MAX_FD_PINS_PER_HOLDER: usize = 4;

/// Open fds on network namespace files across every process.
pub fn all_fd_pins() -> Vec<(u32, Pin)> {
    let proc = ProcFs::host();
    proc.pids()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|pid| fd_pins_of_in(&proc, pid))
        .collect()
}

/// Where libcni keeps its result cache.
pub const CNI_CACHE_DIR: &str = "/var/lib/cni/results";
/// Environment variable naming another CNI result cache directory (a host path mounted
/// elsewhere in a container, or a test's directory).
pub const CNI_CACHE_DIR_ENV: &str = "NETNS_TRACE_CNI_CACHE_DIR";

/// The CNI result cache directory: `$NETNS_TRACE_CNI_CACHE_DIR`, else /var/lib/cni/results.
pub fn cni_cache_dir() -> PathBuf {
    std::env::var_os(CNI_CACHE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CNI_CACHE_DIR))
}

/// Every parseable entry of the CNI result cache (none when the directory does not exist).
pub fn cni_results() -> Vec<crate::attribution::CniCacheEntry> {
    crate::attribution::read_cni_cache_dir(&cni_cache_dir())
}

/// Where the cgroup v2 hierarchy is mounted in our mount namespace, and which of its
/// directories that mount shows (`/` unless a subtree is mounted), found once.
fn cgroup2_mount() -> Option<&'static (PathBuf, String)> {
    static MOUNT: std::sync::OnceLock<Option<(PathBuf, String)>> = std::sync::OnceLock::new();
    MOUNT
        .get_or_init(|| {
            let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
            mountinfo::parse(&text)
                .into_iter()
                .find(|m| m.fstype == "cgroup2")
                .map(|m| (PathBuf::from(m.mount_point), m.root))
        })
        .as_ref()
}

/// The cgroup v2 path (as /proc/PID/cgroup writes it) of the cgroup whose id the kernel
/// reported (`bpf_get_current_cgroup_id`), looked up by file handle on the cgroup2 mount:
/// the id is the kernfs node id, which is what a FILEID_KERNFS handle carries. Works for as
/// long as the cgroup directory exists, whether or not any process is left in it.
pub fn cgroup_path_of_id(cgroup_id: u64) -> Option<String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// include/linux/exportfs.h: kernfs node id handles.
    const FILEID_KERNFS: i32 = 0xfe;
    #[repr(C)]
    struct KernfsHandle {
        handle_bytes: u32,
        handle_type: i32,
        id: u64,
    }
    let (mount_point, root) = cgroup2_mount()?;
    let mount = std::fs::File::open(mount_point).ok()?;
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id: cgroup_id,
    };
    // SAFETY: `handle` is a file_handle header followed by its 8 bytes; the returned fd is
    // owned here and closed on drop.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            (&raw mut handle).cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    let target = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
    let below = target.strip_prefix(mount_point).ok()?;
    let path = Path::new(root).join(below);
    Some(path.to_string_lossy().into_owned())
}

/// The host's [`Observer`](crate::live::enrich::Observer): reads /proc and enters
/// namespaces only through [`read_interfaces`].
#[derive(Clone, Debug, Default)]
pub struct ProcObserver;

impl crate::live::enrich::Observer for ProcObserver {
    fn mount_ns_pins(&mut self, mnt_ns: u32) -> Result<Vec<(u32, Pin)>, String> {
        scan_mount_ns_pins(mnt_ns).map_err(|e| e.to_string())
    }
    fn fd_pins(&mut self) -> Vec<(u32, Pin)> {
        all_fd_pins()
    }
    fn interfaces(&mut self, handle: &Path) -> Result<(NsId, Vec<Interface>), String> {
        read_interfaces(handle)
            .map(|r| (r.netns, r.interfaces))
            .map_err(|e| e.to_string())
    }
    fn member_cgroup(&mut self, pid: u32) -> Option<String> {
        ProcFs::host().cgroup(pid).ok().filter(|p| !p.is_empty())
    }
    fn cgroup_path_of_id(&mut self, cgroup_id: u64) -> Option<String> {
        cgroup_path_of_id(cgroup_id)
    }
    fn cni_results(&mut self) -> Vec<crate::attribution::CniCacheEntry> {
        cni_results()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::model::Mac;

    fn fake_process(
        root: &Path,
        pid: u32,
        comm: &str,
        mnt: u32,
        tasks: &[(u32, u32)],
        fds: &[(u32, u32)],
        mountinfo: &str,
    ) {
        let base = root.join(pid.to_string());
        std::fs::create_dir_all(base.join("ns")).unwrap();
        std::fs::create_dir_all(base.join("fd")).unwrap();
        std::fs::write(base.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(
            base.join("status"),
            format!("Name:\t{comm}\nTgid:\t{pid}\n"),
        )
        .unwrap();
        std::fs::write(
            base.join("cgroup"),
            format!("0::/system.slice/{comm}.service\n"),
        )
        .unwrap();
        std::fs::write(base.join("mountinfo"), mountinfo).unwrap();
        symlink(format!("mnt:[{mnt}]"), base.join("ns/mnt")).unwrap();
        symlink(format!("net:[{}]", tasks[0].1), base.join("ns/net")).unwrap();
        for &(tid, net) in tasks {
            let t = base.join("task").join(tid.to_string());
            std::fs::create_dir_all(t.join("ns")).unwrap();
            std::fs::write(t.join("comm"), format!("{comm}-{tid}\n")).unwrap();
            symlink(format!("net:[{net}]"), t.join("ns/net")).unwrap();
        }
        for &(fd, net) in fds {
            symlink(format!("net:[{net}]"), base.join("fd").join(fd.to_string())).unwrap();
        }
    }

    const INIT_NET: u32 = 4026531833;
    const HOST_MNT: u32 = 4026531832;

    /// Issue 14 (fd flood): 5 processes holding 19,000 fds each on one namespace made 95,000
    /// pins. A holder is named by its lowest few fds per namespace.
    #[test]
    fn a_process_with_thousands_of_fds_on_a_namespace_is_a_few_pins() {
        let dir = tempfile::tempdir().unwrap();
        let flood: Vec<(u32, u32)> = (3..3003)
            .map(|fd| (fd, 4026532800))
            .chain([(5000, 4026532801)])
            .collect();
        fake_process(
            dir.path(),
            700,
            "hoarder",
            HOST_MNT,
            &[(700, INIT_NET)],
            &flood,
            "",
        );
        let pins = fd_pins_of_in(&ProcFs::at(dir.path()), 700);
        let on = |inum: u32| -> Vec<u32> {
            pins.iter()
                .filter(|(i, _)| *i == inum)
                .map(|(_, p)| match p {
                    Pin::Fd { fd, .. } => *fd,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(on(4026532800), vec![3, 4, 5, 6]);
        assert_eq!(
            on(4026532801),
            vec![5000],
            "another namespace keeps its own"
        );
    }

    /// A fake /proc: init, a pod sandbox member, a copied bind mount in a private mount
    /// namespace, an fd pin, and a containerd-style thread in another namespace.
    /// Each cgroup directory's id (its inode number, as stat shows it) leads back to its path.
    #[test]
    fn cgroup_ids_resolve_to_their_paths() {
        use std::os::unix::fs::MetadataExt;
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: open_by_handle_at needs CAP_DAC_READ_SEARCH (not root)");
            return;
        }
        let Some((mount_point, root)) = cgroup2_mount() else {
            eprintln!("SKIP: no cgroup2 hierarchy is mounted");
            return;
        };
        let mut dirs = vec![mount_point.clone()];
        dirs.extend(
            std::fs::read_dir(mount_point)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
        for dir in dirs {
            let id = std::fs::metadata(&dir).unwrap().ino();
            let expected = Path::new(root).join(dir.strip_prefix(mount_point).unwrap());
            assert_eq!(
                cgroup_path_of_id(id).as_deref(),
                Some(expected.to_str().unwrap()),
                "{}",
                dir.display()
            );
        }
        assert_eq!(cgroup_path_of_id(u64::MAX), None, "no such cgroup");
    }

    #[test]
    fn assembles_namespaces_from_a_fake_proc() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let host_mounts = "27 1 254:0 / / rw - ext4 /dev/vda rw\n44 27 0:4 net:[4026532500] /run/netns/cni-1 rw shared:2 - nsfs nsfs rw\n";
        let private_mounts = "90 89 254:0 / / rw - ext4 /dev/vda rw\n91 90 0:4 net:[4026532500] /run/netns/cni-1 rw - nsfs nsfs rw\n92 90 0:4 net:[4026532600] /tmp/only-here rw - nsfs nsfs rw\n";
        fake_process(
            p,
            1,
            "systemd",
            HOST_MNT,
            &[(1, INIT_NET)],
            &[],
            host_mounts,
        );
        fake_process(
            p,
            300,
            "containerd",
            HOST_MNT,
            &[(300, INIT_NET), (305, 4026532700)],
            &[],
            host_mounts,
        );
        fake_process(
            p,
            400,
            "pause",
            HOST_MNT,
            &[(400, 4026532500)],
            &[],
            host_mounts,
        );
        fake_process(
            p,
            500,
            "sleep",
            4026532900,
            &[(500, INIT_NET)],
            &[],
            private_mounts,
        );
        fake_process(
            p,
            600,
            "docker-proxy",
            HOST_MNT,
            &[(600, INIT_NET)],
            &[(9, 4026532800)],
            host_mounts,
        );

        let mut reads: Vec<PathBuf> = Vec::new();
        let mut reader = |h: &Path| -> Result<NsRead, SnapshotError> {
            reads.push(h.to_path_buf());
            // Fake reader: answers with the inum the fake link names, cookie = inum + 1.
            let inum = if let Ok(t) = std::fs::read_link(h) {
                procfs::parse_ns_link(&t.to_string_lossy()).unwrap().1
            } else {
                // A bind mount handle: /…/PID/root/PATH; the fake cannot follow it.
                return Err(SnapshotError::Enter {
                    path: h.to_path_buf(),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                });
            };
            Ok(NsRead {
                netns: NsId::new(inum as u64 + 1, inum),
                interfaces: vec![Interface {
                    name: "eth0".into(),
                    ifindex: 2,
                    mac: Mac([2, 0, 0, 0, 0, 1]),
                    ipv4: vec![],
                    ipv6: Vec::new(),
                }],
            })
        };
        let snap = take_with(&ProcFs::at(p), SnapshotPhase::Start, &mut reader).unwrap();
        assert_eq!(snap.init_netns, NsId::new(INIT_NET as u64 + 1, INIT_NET));
        // Pid 1's mount namespace is the node's, not the private one of pid 500.
        assert_eq!(snap.init_mnt_ns, HOST_MNT);
        let ns = |inum: u32| {
            snap.namespaces
                .iter()
                .find(|n| n.netns.inum == inum)
                .unwrap_or_else(|| panic!("{inum} missing"))
        };

        let init = ns(INIT_NET);
        assert_eq!(
            init.members.iter().map(|m| m.pid).collect::<Vec<_>>(),
            vec![1, 300, 500, 600]
        );
        assert_eq!(init.members[1].cgroup, "/system.slice/containerd.service");

        let sandbox = ns(4026532500);
        assert_eq!(
            sandbox
                .members
                .iter()
                .map(|m| (m.pid, m.comm.as_str().into_owned()))
                .collect::<Vec<_>>(),
            vec![(400, "pause".into())]
        );
        assert_eq!(
            sandbox.pins,
            vec![
                Pin::BindMount {
                    path: "/run/netns/cni-1".into(),
                    mnt_ns: HOST_MNT,
                    holder_pid: 1,
                    holder_comm: Comm::from_str_lossy("systemd")
                },
                Pin::BindMount {
                    path: "/run/netns/cni-1".into(),
                    mnt_ns: 4026532900,
                    holder_pid: 500,
                    holder_comm: Comm::from_str_lossy("sleep")
                },
            ]
        );
        assert_eq!(sandbox.netns.cookie, 4026532501);
        assert!(sandbox.interfaces_error.is_none());

        // Only pinned by a mount the fake reader cannot follow: identity by inum, reason kept.
        let only_mount = ns(4026532600);
        assert!(only_mount.members.is_empty());
        assert_eq!(only_mount.netns, NsId::new(0, 4026532600));
        assert!(
            only_mount
                .interfaces_error
                .as_deref()
                .unwrap()
                .contains("only-here"),
            "{:?}",
            only_mount.interfaces_error
        );

        // The containerd thread that sits in another namespace is a member under its tid.
        let thread_ns = ns(4026532700);
        assert_eq!(
            thread_ns.members,
            vec![Member {
                pid: 305,
                tgid: 300,
                comm: Comm::from_str_lossy("containerd-305"),
                cgroup: "/system.slice/containerd.service".into()
            }]
        );

        let fd_ns = ns(4026532800);
        assert_eq!(
            fd_ns.pins,
            vec![Pin::Fd {
                pid: 600,
                fd: 9,
                comm: Comm::from_str_lossy("docker-proxy")
            }]
        );
        assert_eq!(fd_ns.netns.cookie, 4026532801);
        assert!(reads.iter().any(|r| r.ends_with("600/fd/9")));

        // Mount-namespace scans used by the live enricher.
        let proc = ProcFs::at(p);
        let private = scan_mount_ns_pins_in(&proc, 4026532900).unwrap();
        assert_eq!(
            private.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![4026532500, 4026532600]
        );
        assert!(matches!(
            scan_mount_ns_pins_in(&proc, 1),
            Err(SnapshotError::NoProcessInMountNs(1))
        ));
        assert_eq!(fd_pins_of_in(&proc, 600).len(), 1);
        assert!(fd_pins_of_in(&proc, 12345).is_empty());
    }
}
