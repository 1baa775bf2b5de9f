//! Threads that enter network namespaces or pin new ones, and the namespace's cookie.
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, TestbedError, last_os_err, os_err};
use crate::sys::{bind_mount, gettid, ns_inum, open_tree_move_mount, setns, unshare};

/// SO_NETNS_COOKIE (Linux 5.14+), from include/uapi/asm-generic/socket.h; not in libc yet.
const SO_NETNS_COOKIE: libc::c_int = 71;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PinMethod {
    /// mount(2) with MS_BIND, like `ip netns add` and CNI plugins.
    BindMount,
    /// open_tree(OPEN_TREE_CLONE) + move_mount.
    NewMountApi,
}

pub struct ThreadPin {
    pub inum: u64,
    pub tid: i32,
    pub original_inum: u64,
}

/// Runs `f` on a fresh thread whose network namespace is the one at `netns_file`; the rest of
/// the process is unaffected (setns(CLONE_NEWNET) is per-thread).
pub fn in_netns<T: Send>(netns_file: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = File::open(netns_file).map_err(os_err(format!("open {}", netns_file.display())))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(
                ns.as_raw_fd(),
                libc::CLONE_NEWNET,
                &netns_file.display().to_string(),
            )?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(TestbedError::Unexpected(
                "namespace worker thread panicked".into(),
            ))
        })
    })
}

/// The containerd pattern: a thread unshares CLONE_NEWNET, pins /proc/self/task/TID/ns/net at
/// `target`, then setns()es back to the namespace it started in.
pub fn thread_pin_new_netns(target: &Path, method: PinMethod) -> Result<ThreadPin> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let tid = gettid();
            let own = PathBuf::from(format!("/proc/self/task/{tid}/ns/net"));
            let original = File::open(&own).map_err(os_err(format!("open {}", own.display())))?;
            let original_inum = original
                .metadata()
                .map_err(os_err("fstat original netns"))?
                .ino();
            unshare(libc::CLONE_NEWNET, "CLONE_NEWNET")?;
            let inum = ns_inum(&own)?;
            let pinned = match method {
                PinMethod::BindMount => bind_mount(&own, target),
                PinMethod::NewMountApi => open_tree_move_mount(&own, target),
            };
            setns(
                original.as_raw_fd(),
                libc::CLONE_NEWNET,
                "back to the original netns",
            )?;
            pinned?;
            if ns_inum(&own)? != original_inum {
                return Err(TestbedError::Unexpected(
                    "thread did not return to its original netns".into(),
                ));
            }
            Ok(ThreadPin {
                inum,
                tid,
                original_inum,
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(TestbedError::Unexpected(
                "namespace worker thread panicked".into(),
            ))
        })
    })
}

/// The namespace's net_cookie, read through SO_NETNS_COOKIE on a socket made inside it. It is
/// the key netns-trace uses, since inode numbers are reused. None before Linux 5.14.
pub fn netns_cookie(netns_file: &Path) -> Option<u64> {
    in_netns(netns_file, || {
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(last_os_err("socket(AF_INET)"));
        }
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        Ok((rc == 0).then_some(cookie))
    })
    .ok()
    .flatten()
}
