//! Reads of /proc: which task is in which network and mount namespace, which fds point at
//! network namespaces, and each process's comm, tgid and cgroup.
//!
//! Nothing here opens a namespace: links are read with readlink(2) and stat(2) only.
//! Processes come and go during a walk; a vanished process (ENOENT, ESRCH) is skipped
//! silently, anything else is skipped with a debug message.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::model::Comm;

/// Where procfs is mounted. Tests point it at a directory of fake entries.
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::host()
    }
}

/// One task (thread) and the namespaces it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskNs {
    pub tid: u32,
    pub tgid: u32,
    pub net_inum: u32,
    pub comm: Comm,
}

/// One process, its threads' network namespaces and its fd pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessNs {
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
    pub cgroup: String,
    /// 0 when it could not be read (kernel threads have one; exited processes do not).
    pub mnt_inum: u32,
    pub tasks: Vec<TaskNs>,
    /// Open fds on network namespace files: (net inum, fd).
    pub net_fds: Vec<(u32, u32)>,
}

/// True for errors that only mean "the process went away while we looked".
pub fn is_vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH))
}

/// `net:[4026531833]` → (`net`, 4026531833).
pub fn parse_ns_link(link: &str) -> Option<(&str, u32)> {
    let (kind, rest) = link.split_once(":[")?;
    let inum = rest.strip_suffix(']')?.parse().ok()?;
    Some((kind, inum))
}

/// The `Tgid:` value of /proc/PID/status.
pub fn parse_status_tgid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:")?.trim().parse().ok())
}

/// The one cgroup path that best describes a process, from /proc/PID/cgroup: the line whose
/// path names the most about its pod and container (both, then either; see
/// [`owner_from_cgroup`](crate::attribution::owner_from_cgroup)). On a cgroup v1 or hybrid
/// host that is a v1 line when the unified `0::/` beside them says nothing. Among lines that
/// say as much, a path below the root beats `/`, then the unified line wins, then the v1
/// hierarchies in `V1_PREFERENCE` order (those runtimes always place containers in).
pub fn parse_cgroup_path(content: &str) -> Option<String> {
    const V1_PREFERENCE: [&str; 6] = [
        "pids",
        "memory",
        "cpu",
        "name=systemd",
        "net_cls",
        "devices",
    ];
    let mut best: Option<((u8, bool, usize), &str)> = None;
    let mut last_ranked: Option<(&str, u8)> = None;
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let preference = if controllers.is_empty() {
            V1_PREFERENCE.len() + 1
        } else {
            V1_PREFERENCE
                .iter()
                .position(|w| controllers.split(',').any(|c| c == *w))
                .map_or(0, |i| V1_PREFERENCE.len() - i)
        };
        // v1 hierarchies mostly repeat one path: parse each distinct one once.
        let rank = match &last_ranked {
            Some((p, rank)) if *p == path => *rank,
            _ if path == "/" => 0,
            _ => crate::attribution::owner_from_cgroup(path).cgroup_rank(),
        };
        last_ranked = Some((path, rank));
        let key = (rank, path != "/", preference);
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, path));
        }
    }
    best.map(|(_, path)| path.to_string())
}

/// The device nsfs files live on (that of our own /proc/self/ns/net), found once.
fn nsfs_dev() -> Option<u64> {
    static DEV: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *DEV.get_or_init(|| std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.dev()))
}

/// For an fd link whose text is a path: the net inum if the fd is on a network namespace
/// file. Only nsfs files are opened (to ask their type), and closed at once.
fn net_inum_of_nsfs_fd(fd_link: &Path) -> Option<u32> {
    let dev = std::fs::metadata(fd_link).ok()?.dev();
    if Some(dev) != nsfs_dev() {
        return None;
    }
    super::netns_handle::net_inum_of_nsfs_file(fd_link)
        .ok()
        .flatten()
}

/// The error when every other process's namespaces are refused to us.
fn blind(denied: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the namespaces of {denied} processes could not be read (permission denied) and \
             none but our own could: netns-trace would be blind to the node. Run it as root \
             with CAP_SYS_PTRACE; in a container, with the host's PID namespace and without \
             the runtime's default AppArmor profile (see deploy/kubernetes/daemonset.yaml)"
        ),
    )
}

impl ProcFs {
    pub fn host() -> Self {
        Self {
            root: PathBuf::from("/proc"),
        }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn pid_path(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    fn numeric_entries(dir: &Path) -> io::Result<Vec<u32>> {
        let mut ids: Vec<u32> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Every process id in /proc, ascending.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        Self::numeric_entries(&self.root)
    }

    /// Thread ids of a process, ascending.
    pub fn tids(&self, pid: u32) -> io::Result<Vec<u32>> {
        Self::numeric_entries(&self.pid_path(pid).join("task"))
    }

    /// The inum of a namespace link such as /proc/PID/ns/net, by readlink, else by stat
    /// (both leave the namespace alone).
    pub fn ns_link_inum(path: &Path, kind: &str) -> io::Result<u32> {
        match std::fs::read_link(path) {
            Ok(target) => {
                let target = target.to_string_lossy();
                match parse_ns_link(&target) {
                    Some((k, inum)) if k == kind => Ok(inum),
                    _ => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} -> {target}: not a {kind} namespace", path.display()),
                    )),
                }
            }
            Err(e) if is_vanished(&e) => Err(e),
            Err(_) => super::netns_handle::ns_inum_of(path),
        }
    }

    pub fn comm(&self, pid: u32) -> io::Result<Comm> {
        Self::comm_at(&self.pid_path(pid).join("comm"))
    }

    fn comm_at(path: &Path) -> io::Result<Comm> {
        let s = std::fs::read_to_string(path)?;
        Ok(Comm::from_str_lossy(s.trim_end_matches('\n')))
    }

    pub fn tgid(&self, pid: u32) -> io::Result<u32> {
        let status = std::fs::read_to_string(self.pid_path(pid).join("status"))?;
        parse_status_tgid(&status)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Tgid in status"))
    }

    pub fn cgroup(&self, pid: u32) -> io::Result<String> {
        let content = std::fs::read_to_string(self.pid_path(pid).join("cgroup"))?;
        Ok(parse_cgroup_path(&content).unwrap_or_default())
    }

    pub fn mnt_ns(&self, pid: u32) -> io::Result<u32> {
        Self::ns_link_inum(&self.pid_path(pid).join("ns/mnt"), "mnt")
    }

    pub fn net_ns(&self, pid: u32) -> io::Result<u32> {
        Self::ns_link_inum(&self.pid_path(pid).join("ns/net"), "net")
    }

    pub fn mountinfo(&self, pid: u32) -> io::Result<String> {
        std::fs::read_to_string(self.pid_path(pid).join("mountinfo"))
    }

    /// Open fds of `pid` that point at network namespace files: (net inum, fd).
    pub fn net_fds(&self, pid: u32) -> io::Result<Vec<(u32, u32)>> {
        let dir = self.pid_path(pid).join("fd");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let Ok(entry) = entry else { continue };
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // The fd may be closed between readdir and readlink; that is fine.
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(("net", inum)) = parse_ns_link(&target) {
                out.push((inum, fd));
            } else if target.starts_with('/') {
                // An nsfs file opened through a bind mount reads back as the mount's path
                // (`/run/netns/x`), not `net:[…]` (seen on 6.18). Recognise it by device.
                if let Some(inum) = net_inum_of_nsfs_fd(&entry.path()) {
                    out.push((inum, fd));
                }
            }
        }
        out.sort_unstable_by_key(|&(_, fd)| fd);
        Ok(out)
    }

    /// Everything about one process. Errors mean the process vanished or is unreadable.
    pub fn process(&self, pid: u32) -> io::Result<ProcessNs> {
        let comm = self.comm(pid)?;
        let tgid = self.tgid(pid)?;
        let cgroup = self.cgroup(pid).unwrap_or_default();
        let mnt_inum = self.mnt_ns(pid).unwrap_or(0);
        let mut tasks = Vec::new();
        let tids = self.tids(pid).unwrap_or_default();
        for tid in tids {
            let task_dir = self.pid_path(pid).join("task").join(tid.to_string());
            let net_inum = match Self::ns_link_inum(&task_dir.join("ns/net"), "net") {
                Ok(i) => i,
                Err(e) => {
                    if !is_vanished(&e) {
                        tracing::debug!("task {tid} of {pid}: {e}");
                    }
                    continue;
                }
            };
            let comm = Self::comm_at(&task_dir.join("comm")).unwrap_or(comm);
            tasks.push(TaskNs {
                tid,
                tgid,
                net_inum,
                comm,
            });
        }
        if tasks.is_empty() {
            // No task directory readable (or none listed): fall back to the process link.
            let net_inum = self.net_ns(pid)?;
            tasks.push(TaskNs {
                tid: pid,
                tgid,
                net_inum,
                comm,
            });
        }
        let net_fds = match self.net_fds(pid) {
            Ok(f) => f,
            Err(e) => {
                if !is_vanished(&e) {
                    tracing::debug!("fds of {pid}: {e}");
                }
                Vec::new()
            }
        };
        Ok(ProcessNs {
            pid,
            tgid,
            comm,
            cgroup,
            mnt_inum,
            tasks,
            net_fds,
        })
    }

    /// Every process that could be read. Vanished processes are skipped silently. When
    /// other processes' namespaces are refused and none but our own can be read, the tracer
    /// would see nothing of the node: that is an error, not an empty node.
    pub fn processes(&self) -> io::Result<Vec<ProcessNs>> {
        let me = std::process::id();
        let mut out = Vec::new();
        let mut denied = 0usize;
        for pid in self.pids()? {
            match self.process(pid) {
                Ok(p) => out.push(p),
                Err(e) if is_vanished(&e) => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::PermissionDenied {
                        denied += 1;
                    }
                    tracing::debug!("process {pid}: {e}");
                }
            }
        }
        if denied > 0 && out.iter().all(|p| p.pid == me) {
            return Err(blind(denied));
        }
        Ok(out)
    }

    /// A process currently in mount namespace `mnt_inum`, if any.
    pub fn representative_of_mnt_ns(&self, mnt_inum: u32) -> io::Result<Option<u32>> {
        for pid in self.pids()? {
            if self.mnt_ns(pid).ok() == Some(mnt_inum) {
                return Ok(Some(pid));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn parses_namespace_links() {
        assert_eq!(parse_ns_link("net:[4026531833]"), Some(("net", 4026531833)));
        assert_eq!(parse_ns_link("mnt:[4026531832]"), Some(("mnt", 4026531832)));
        assert_eq!(parse_ns_link("socket:[12345]"), Some(("socket", 12345)));
        assert_eq!(parse_ns_link("/dev/null"), None);
        assert_eq!(parse_ns_link("net:[]"), None);
        assert_eq!(parse_ns_link("net:[99999999999]"), None);
        assert_eq!(parse_ns_link("anon_inode:[eventpoll]"), None);
    }

    #[test]
    fn parses_tgid() {
        let status = "Name:\tcontainerd\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t812\nNgid:\t0\nPid:\t815\nPPid:\t1\n";
        assert_eq!(parse_status_tgid(status), Some(812));
        assert_eq!(parse_status_tgid("Name:\tx\n"), None);
        assert_eq!(parse_status_tgid("Tgid:\tabc\n"), None);
    }

    #[test]
    fn picks_the_cgroup_path() {
        let v2 = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8695_a4b3c2d1e0f9.slice/cri-containerd-aa.scope\n";
        assert_eq!(parse_cgroup_path(v2).unwrap(), v2[3..].trim_end());
        let v1 = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/attribution/cgroup-v1-cgroupfs-burstable"
        ))
        .unwrap();
        assert_eq!(
            parse_cgroup_path(&v1).unwrap(),
            "/kubepods/burstable/pod7d3a2c1b-0e9f-4a8b-9c7d-6e5f4a3b2c1d/8f14e45fceea167a5a36dedd4bea2543f2c1a0b9d8e7f6a5b4c3d2e1f0a9b8c7"
        );
        // Hybrid: the empty unified path does not hide the v1 one.
        assert_eq!(
            parse_cgroup_path("12:pids:/docker/abc\n0::/\n").unwrap(),
            "/docker/abc"
        );
        // A v1 line naming a pod beats a unified one naming only a host service (a runc that
        // manages the v1 hierarchies only leaves the unified line at the shim's service).
        let pod = "/kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9";
        assert_eq!(
            parse_cgroup_path(&format!(
                "11:pids:{pod}\n0::/system.slice/containerd.service\n"
            ))
            .unwrap(),
            pod
        );
        // Saying as little, the unified line wins over the same path in v1.
        assert_eq!(
            parse_cgroup_path(
                "1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n"
            )
            .unwrap(),
            "/system.slice/b.service"
        );
        assert_eq!(parse_cgroup_path("0::/\n").unwrap(), "/");
        assert_eq!(parse_cgroup_path("garbage\n"), None);
        assert_eq!(parse_cgroup_path(""), None);
    }

    /// A fake /proc with symlinks shaped like the kernel's.
    #[test]
    fn walks_a_fake_proc() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let mk = |pid: u32, tids: &[(u32, u32)], fds: &[(u32, &str)]| {
            let base = p.join(pid.to_string());
            std::fs::create_dir_all(base.join("ns")).unwrap();
            std::fs::create_dir_all(base.join("fd")).unwrap();
            std::fs::write(base.join("comm"), format!("proc{pid}\n")).unwrap();
            std::fs::write(
                base.join("status"),
                format!("Name:\tproc{pid}\nTgid:\t{pid}\nPid:\t{pid}\n"),
            )
            .unwrap();
            std::fs::write(base.join("cgroup"), format!("0::/test/{pid}\n")).unwrap();
            symlink("mnt:[4026531832]", base.join("ns/mnt")).unwrap();
            symlink(format!("net:[{}]", tids[0].1), base.join("ns/net")).unwrap();
            for &(tid, net) in tids {
                let t = base.join("task").join(tid.to_string());
                std::fs::create_dir_all(t.join("ns")).unwrap();
                std::fs::write(t.join("comm"), format!("thr{tid}\n")).unwrap();
                symlink(format!("net:[{net}]"), t.join("ns/net")).unwrap();
            }
            for &(fd, target) in fds {
                symlink(target, base.join("fd").join(fd.to_string())).unwrap();
            }
        };
        mk(1, &[(1, 4026531833)], &[(0, "/dev/null")]);
        mk(
            40,
            &[(40, 4026531833), (41, 4026532300)],
            &[
                (3, "net:[4026532301]"),
                (4, "socket:[999]"),
                (7, "net:[4026532302]"),
            ],
        );
        std::fs::create_dir_all(p.join("self")).unwrap();
        std::fs::create_dir_all(p.join("77")).unwrap(); // vanished: no files at all

        let fs = ProcFs::at(p);
        assert_eq!(fs.pids().unwrap(), vec![1, 40, 77]);
        let procs = fs.processes().unwrap();
        assert_eq!(procs.len(), 2);
        let p40 = &procs[1];
        assert_eq!(p40.comm.as_str(), "proc40");
        assert_eq!(p40.cgroup, "/test/40");
        assert_eq!(p40.mnt_inum, 4026531832);
        assert_eq!(
            p40.tasks
                .iter()
                .map(|t| (t.tid, t.net_inum))
                .collect::<Vec<_>>(),
            vec![(40, 4026531833), (41, 4026532300)]
        );
        assert_eq!(p40.tasks[1].comm.as_str(), "thr41");
        assert_eq!(p40.net_fds, vec![(4026532301, 3), (4026532302, 7)]);
        assert_eq!(fs.representative_of_mnt_ns(4026531832).unwrap(), Some(1));
        assert_eq!(fs.representative_of_mnt_ns(1).unwrap(), None);
    }
}
