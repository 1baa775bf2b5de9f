//! Small wrappers around the syscalls the scenarios use: namespaces, mounts, pipes, children.
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Result, TestbedError, last_os_err, os_err};

// Not (yet) exported by the libc crate; values from include/uapi/linux/mount.h.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;

pub fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        TestbedError::InvalidArgument(format!("path {} contains a NUL byte", path.display()))
    })
}

pub fn unshare(flags: libc::c_int, what: &str) -> Result<()> {
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(last_os_err(format!("unshare({what})")));
    }
    Ok(())
}

pub fn setns(fd: RawFd, nstype: libc::c_int, what: &str) -> Result<()> {
    if unsafe { libc::setns(fd, nstype) } != 0 {
        return Err(last_os_err(format!("setns({what})")));
    }
    Ok(())
}

pub fn bind_mount(source: &Path, target: &Path) -> Result<()> {
    let (src, dst) = (c_path(source)?, c_path(target)?);
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(last_os_err(format!(
            "mount --bind {} {}",
            source.display(),
            target.display()
        )));
    }
    Ok(())
}

pub fn umount_detach(target: &Path) -> Result<()> {
    let dst = c_path(target)?;
    if unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(last_os_err(format!(
            "umount2({}, MNT_DETACH)",
            target.display()
        )));
    }
    Ok(())
}

/// `mount --bind` the way util-linux >= 2.39 does it: clone the nsfs file's mount into a
/// detached tree, then attach that tree at `target`.
pub fn open_tree_move_mount(source: &Path, target: &Path) -> Result<()> {
    let (src, dst) = (c_path(source)?, c_path(target)?);
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    };
    if tree < 0 {
        return Err(last_os_err(format!(
            "open_tree({}, OPEN_TREE_CLONE) (needs Linux 5.2+)",
            source.display()
        )));
    }
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(last_os_err(format!("move_mount(-> {})", target.display())));
    }
    Ok(())
}

pub fn gettid() -> i32 {
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

pub fn ns_inum(path: &Path) -> Result<u64> {
    fs::metadata(path)
        .map(|m| m.ino())
        .map_err(os_err(format!("stat {}", path.display())))
}

pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_os_err("pipe2"));
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Blocks until `pid` (a child of ours) exits; returns its raw wait status.
pub fn wait_child(pid: i32) -> Result<libc::c_int> {
    let mut status = 0;
    loop {
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(TestbedError::Os {
                what: format!("waitpid({pid})"),
                source: err,
            });
        }
    }
}

pub fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// SIGKILLs a child of ours and reaps it.
pub fn kill_child(pid: i32) -> Result<()> {
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(last_os_err(format!("kill({pid}, SIGKILL)")));
    }
    wait_child(pid).map(|_| ())
}

/// Start time (clock ticks since boot, field 22 of /proc/PID/stat) and state letter.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses; the fields after the last ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let starttime = fields.nth(18)?.parse().ok()?;
    Some((starttime, state))
}

pub fn uuid_v4() -> Result<String> {
    let mut b = [0u8; 16];
    // getrandom(2) rather than /dev/urandom: minimal guests may lack a populated /dev.
    let got = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if got != b.len() as isize {
        return Err(last_os_err("getrandom"));
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Creates an empty file to mount on. Fails if it exists, so we never claim someone else's file.
pub fn create_mount_target(path: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(os_err(format!("create mount target {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_v4_shape() {
        let u = uuid_v4().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
