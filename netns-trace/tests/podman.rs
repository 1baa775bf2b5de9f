//! podman 4.3 with runc (Debian's packages, installed by `cargo xtask bootstrap`), running
//! containers as a node does, while `netns-trace watch --json` watches (issue 12):
//! - twenty containers run and removed leave no leak, and every namespace they had is gone;
//! - a container whose conmon and process are SIGKILLed (so podman never cleans up) is exactly
//!   one leak, naming its pin /run/netns/netns-<uuid> and its container id.
//!
//! Expected values come from `podman inspect` (Id, State.Pid, State.ConmonPid,
//! NetworkSettings.SandboxKey) and from /proc and every mountinfo (`common::netns_exists`).
//!
//! How podman is run, and why: `--runtime runc` (crun refuses this host's hybrid cgroups),
//! `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024` (the host cannot raise rlimits),
//! `--network bridge` (netavark, bridge podman0, 10.88.0.0/16; the containers only sleep, so
//! nothing is sent). There is no registry: the image is `podman import`ed from a busybox-static
//! root filesystem. Images and containers live under a temporary `--root`/`--runroot` removed at
//! the end; the pins are podman's own, in the host's /run/netns.
//!
//! Host only (QEMU guests have no podman); needs root. Skips, saying why, only where podman is
//! not installed.
mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::watch::{Watch, findings, leak_findings_for, notices_about};
use common::{
    netns_cookie, netns_exists, netns_holders, ns_inum, process_alive, require_root, wait_until,
};
use serde_json::Value;

/// Grace period given to the tracer: short, so the tests do not wait 30 s for a verdict.
const GRACE: &str = "2";
/// Past the grace period, plus the collector's verdict tick and some slack.
const VERDICT_WAIT: Duration = Duration::from_secs(5);
/// Containers run and removed by the clean test (issue 12).
const CLEAN_CONTAINERS: usize = 20;
/// A container process that joined less than a second ago is a visit, not a member.
const MEMBER_STAY: Duration = Duration::from_secs(2);

/// podman with a temporary storage root and a local busybox image.
struct Podman {
    dir: tempfile::TempDir,
    image: String,
}

fn podman_installed() -> bool {
    Command::new("podman")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Podman {
    /// None (with the reason printed) when this machine cannot run podman at all.
    fn usable() -> Option<Podman> {
        if !require_root() {
            return None;
        }
        if !podman_installed() {
            eprintln!("SKIP: podman is not installed (`cargo xtask bootstrap` installs it)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("netns-trace-podman-")
            .tempdir()
            .expect("create temp dir");
        let image = format!("localhost/netns-trace-busybox:{}", std::process::id());
        let podman = Podman { dir, image };
        podman.import_busybox();
        Some(podman)
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .stdin(Stdio::null());
        cmd
    }

    /// `podman ARGS`; panics with its stderr unless it succeeds.
    fn run(&self, args: &[&str]) -> Output {
        let out = self
            .cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run podman {args:?}: {e}"));
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A root filesystem of busybox-static with the one applet the containers run, imported.
    fn import_busybox(&self) {
        let rootfs = self.dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed (cargo xtask bootstrap)");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).unwrap();
        let tarball = self.dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(
            status.success(),
            "tar the busybox root filesystem: {status}"
        );
        self.run(&["import", "-q", tarball.to_str().unwrap(), &self.image]);
    }

    /// `podman run -d` of a container that sleeps; returns what `podman inspect` says of it.
    fn run_container(&self) -> Container {
        let out = self.run(&[
            "run",
            "-d",
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--network",
            "bridge",
            &self.image,
            "sleep",
            "3600",
        ]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.inspect(&id)
    }

    fn inspect(&self, id: &str) -> Container {
        let out = self.run(&["inspect", id]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("podman inspect prints JSON");
        let c = &v[0];
        let text = |ptr: &str| {
            c.pointer(ptr)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("podman inspect {id}: no {ptr} in {c}"))
                .to_string()
        };
        let number = |ptr: &str| {
            c.pointer(ptr)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("podman inspect {id}: no {ptr} in {c}"))
        };
        let sandbox_key = PathBuf::from(text("/NetworkSettings/SandboxKey"));
        let inum =
            ns_inum(&sandbox_key).unwrap_or_else(|| panic!("stat {}: {c}", sandbox_key.display()));
        Container {
            id: text("/Id"),
            pid: number("/State/Pid"),
            conmon_pid: number("/State/ConmonPid"),
            cookie: netns_cookie(&sandbox_key),
            sandbox_key,
            inum,
        }
    }

    /// `podman rm -f -t 0`: stop (SIGKILL at once: the containers only sleep) and remove.
    fn remove(&self, ids: &[&str]) -> Result<(), String> {
        let out = self
            .cmd()
            .args(["rm", "-f", "-t", "0"])
            .args(ids)
            .output()
            .map_err(|e| format!("run podman rm: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "podman rm {ids:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers a failed test left, then the image; then whatever podman's storage still
        // has mounted under the temporary root, so the directory can go.
        for args in [&["rm", "-a", "-f", "-t", "0"][..], &["rmi", "-a", "-f"][..]] {
            match self.cmd().args(args).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "cleanup: podman {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("cleanup: podman {args:?}: {e}"),
            }
        }
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounted: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&dir))
            .collect();
        mounted.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in mounted {
            let c = CString::new(point).unwrap();
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// One container, as `podman inspect` and the system see it.
#[derive(Debug)]
struct Container {
    /// The 64-hex container id.
    id: String,
    pid: u64,
    conmon_pid: u64,
    /// NetworkSettings.SandboxKey: the pin /run/netns/netns-<uuid>.
    sandbox_key: PathBuf,
    inum: u64,
    cookie: Option<u64>,
}

impl Container {
    fn pin_in_host_mountinfo(&self) -> bool {
        let key = self.sandbox_key.to_string_lossy();
        common::nsfs_mounts(Path::new("/proc/self/mountinfo"))
            .iter()
            .any(|m| m.mount_point == key)
    }
}

/// Lets the kernel run its namespace cleanup once more: 6.13+ (and 6.12.y) free a torn-down
/// namespace only on the next cleanup_net run, which is what tracepoint mode sees as the end.
fn let_a_throwaway_namespace_go() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("true");
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    assert!(
        cmd.status()
            .expect("run true in a throwaway namespace")
            .success()
    );
}

/// The leak findings about this container's namespace, or that name its pin. Only the test's
/// own containers count: other work on the machine may run podman too.
fn leaks_of<'a>(all: &'a [Value], c: &Container) -> Vec<&'a Value> {
    let key = c.sandbox_key.to_string_lossy();
    all.iter()
        .filter(|f| f["kind"] == "leaked_netns")
        .filter(|f| {
            !leak_findings_for(std::slice::from_ref(*f), c.inum, c.cookie).is_empty()
                || f["pins"]
                    .as_array()
                    .is_some_and(|pins| pins.iter().any(|p| p["path"] == *key))
        })
        .collect()
}

#[test]
fn twenty_containers_run_and_removed_leave_no_leak() {
    let Some(podman) = Podman::usable() else {
        return;
    };
    let watch = Watch::start(&["--grace", GRACE]);
    let containers: Vec<Container> = (0..CLEAN_CONTAINERS)
        .map(|_| podman.run_container())
        .collect();
    std::thread::sleep(MEMBER_STAY);
    let ids: Vec<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    let removed = podman.remove(&ids);
    for c in &containers {
        wait_until(Duration::from_secs(20), || !netns_exists(c.inum, c.cookie));
    }
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(1));
        let_a_throwaway_namespace_go();
    }
    // A namespace wrongly left memberless would be judged past the grace period by now.
    std::thread::sleep(VERDICT_WAIT);
    let lines = watch.stop();
    removed.unwrap_or_else(|e| panic!("{e}"));

    let still_there: Vec<String> = containers
        .iter()
        .filter(|c| netns_exists(c.inum, c.cookie) || c.pin_in_host_mountinfo())
        .map(|c| {
            format!(
                "{} net:[{}] held by {:?}",
                c.sandbox_key.display(),
                c.inum,
                netns_holders(c.inum)
            )
        })
        .collect();
    assert!(
        still_there.is_empty(),
        "namespaces of removed containers still exist: {still_there:#?}"
    );
    let all = findings(&lines);
    let leaks: Vec<&Value> = containers.iter().flat_map(|c| leaks_of(&all, c)).collect();
    assert!(
        leaks.is_empty(),
        "{CLEAN_CONTAINERS} containers run and removed, yet leaks were reported: {leaks:#?}"
    );
    let not_destroyed: Vec<String> = containers
        .iter()
        .filter(|c| {
            !notices_about(&lines, c.inum, c.cookie).iter().any(|n| {
                n["kind"] == "state_changed"
                    && n["text"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("-> destroyed"))
            })
        })
        .map(|c| {
            format!(
                "{} net:[{}] (container {})",
                c.sandbox_key.display(),
                c.inum,
                c.id
            )
        })
        .collect();
    assert!(
        not_destroyed.is_empty(),
        "the tracer did not report these removed containers' namespaces destroyed: {not_destroyed:#?}"
    );
}

/// Removes a container whatever state the test left it in: `podman rm -f`, then podman's pin
/// and the v1/v2 cgroups of the container if a killed conmon left them.
struct KilledContainerCleanup<'a> {
    podman: &'a Podman,
    container: Option<Container>,
}

impl Drop for KilledContainerCleanup<'_> {
    fn drop(&mut self) {
        let Some(c) = self.container.take() else {
            return;
        };
        for pid in [c.pid, c.conmon_pid] {
            if process_alive(pid) {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        if let Err(e) = self.podman.remove(&[&c.id]) {
            eprintln!("cleanup: {e}");
        }
        if c.pin_in_host_mountinfo() {
            eprintln!(
                "cleanup: podman rm left {}; unmounting it",
                c.sandbox_key.display()
            );
            let key = CString::new(c.sandbox_key.to_string_lossy().into_owned()).unwrap();
            unsafe { libc::umount2(key.as_ptr(), libc::MNT_DETACH) };
            let _ = std::fs::remove_file(&c.sandbox_key);
        }
        // conmon removes the container's cgroups when the container exits; it was killed first.
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.filter_map(Result::ok) {
                let _ = std::fs::remove_dir(
                    h.path()
                        .join("libpod_parent")
                        .join(format!("libpod-{}", c.id)),
                );
            }
        }
    }
}

#[test]
fn a_container_whose_conmon_and_process_are_killed_is_one_leak_naming_its_pin_and_id() {
    let Some(podman) = Podman::usable() else {
        return;
    };
    let watch = Watch::start(&["--grace", GRACE]);
    let cleanup = KilledContainerCleanup {
        podman: &podman,
        container: Some(podman.run_container()),
    };
    let c = cleanup.container.as_ref().unwrap();
    assert!(
        c.id.len() == 64 && c.id.bytes().all(|b| b.is_ascii_hexdigit()),
        "podman inspect gave container id {:?}",
        c.id
    );
    std::thread::sleep(MEMBER_STAY);
    // conmon first: it would otherwise see its container exit and have podman clean up.
    for pid in [c.conmon_pid, c.pid] {
        assert_eq!(
            unsafe { libc::kill(pid as i32, libc::SIGKILL) },
            0,
            "SIGKILL {pid}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || !process_alive(c.pid)
            && !process_alive(c.conmon_pid)),
        "container process {} or conmon {} still alive after SIGKILL",
        c.pid,
        c.conmon_pid
    );
    std::thread::sleep(VERDICT_WAIT);
    let lines = watch.stop();

    // The leak is real: only podman's pin holds the namespace now.
    let holders = netns_holders(c.inum);
    assert!(
        c.pin_in_host_mountinfo() && netns_exists(c.inum, c.cookie),
        "{} (net:[{}]) is not pinned any more: holders {holders:?}",
        c.sandbox_key.display(),
        c.inum
    );
    assert!(
        holders.iter().all(|h| h.starts_with("mount ")),
        "something besides mounts holds net:[{}]: {holders:?}",
        c.inum
    );

    let all = findings(&lines);
    let leaks = leaks_of(&all, c);
    assert!(
        leaks.len() == 1,
        "expected exactly one leak, of net:[{}] (cookie {:?}) pinned at {}: {leaks:#?}",
        c.inum,
        c.cookie,
        c.sandbox_key.display()
    );
    let leak = leaks[0];
    let key = c.sandbox_key.to_string_lossy();
    assert!(
        leak["pins"].as_array().is_some_and(|pins| pins
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["path"] == *key)),
        "the leak names podman's pin {key}: {leak:#}"
    );
    assert_eq!(
        leak["owner"]["container_id"].as_str(),
        Some(c.id.as_str()),
        "the leak's owner names container {} (podman inspect): {leak:#}",
        c.id
    );
}
