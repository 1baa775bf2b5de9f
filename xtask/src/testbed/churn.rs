//! `churn` and `proc-churn`: namespace and process churn for benchmarks.
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{ChurnArgs, ProcChurnArgs};
use crate::error::{Result, TestbedError, last_os_err, os_err};
use crate::sys::{c_path, create_mount_target, describe_status, pipe, wait_child};

/// Exit codes of churn children, so the parent can say what went wrong.
fn churn_failure(code: i32) -> &'static str {
    match code {
        10 => "unshare(CLONE_NEWNET) failed",
        11 => "unshare did not give a new netns",
        12 => "bind mount of the netns failed",
        13 => "umount2 of the netns pin failed",
        14 => "could not signal readiness",
        20 => "joiner could not open the member's netns",
        21 => "setns into the member's netns failed",
        22 => "joiner did not end up in the member's netns",
        _ => "unexpected exit",
    }
}

fn stat_ino(path: &CString) -> Option<u64> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::stat(path.as_ptr(), &mut st) } == 0).then_some(st.st_ino)
}

pub fn churn(args: &ChurnArgs) -> Result<Value> {
    let self_ns = c"/proc/self/ns/net".to_owned();
    let parent_inum = stat_ino(&self_ns).ok_or_else(|| last_os_err("stat /proc/self/ns/net"))?;
    let (pin_dir, own_dir) = match (&args.dir, args.pin) {
        (Some(dir), _) => {
            fs::create_dir_all(dir).map_err(os_err(format!("create {}", dir.display())))?;
            (Some(dir.clone()), false)
        }
        (None, true) => {
            let dir =
                std::env::temp_dir().join(format!("netns-trace-churn-{}", std::process::id()));
            fs::create_dir_all(&dir).map_err(os_err(format!("create {}", dir.display())))?;
            (Some(dir), true)
        }
        (None, false) => (None, false),
    };
    let target = match (&pin_dir, args.pin) {
        (Some(dir), true) => {
            let path = dir.join(format!("churn-pin-{}", std::process::id()));
            create_mount_target(&path)?;
            Some(path)
        }
        _ => None,
    };
    let outcome = churn_loop(args, parent_inum, target.as_deref());
    if let Some(path) = &target {
        let _ = fs::remove_file(path);
    }
    if let (true, Some(dir)) = (own_dir, &pin_dir) {
        let _ = fs::remove_dir(dir);
    }
    let elapsed = outcome?;
    let elapsed_ns = elapsed.as_nanos() as u64;
    Ok(json!({
        "scenario": "churn",
        "count": args.count,
        "pin": args.pin,
        "join": args.join,
        "joins": if args.join { args.count } else { 0 },
        "pin_path": target,
        "elapsed_ns": elapsed_ns,
        "per_namespace_ns": elapsed_ns.checked_div(args.count).unwrap_or(0),
        "testbed_pid": std::process::id(),
        "child_comm": churn_child_comm().to_string_lossy(),
    }))
}

/// The name churn children take before they unshare, so a tracer's report can tell this run's
/// namespaces from everyone else's by their creator.
fn churn_child_comm() -> CString {
    CString::new(format!("churn-{}", std::process::id())).unwrap_or_default()
}

fn churn_loop(args: &ChurnArgs, parent_inum: u64, target: Option<&Path>) -> Result<Duration> {
    // Everything a child needs is prepared before fork.
    let self_ns = c"/proc/self/ns/net".to_owned();
    let target_c = target.map(c_path).transpose()?;
    let comm = churn_child_comm();
    let start = Instant::now();
    for iteration in 0..args.count {
        let fail = |role: &str, pid: i32, status: libc::c_int| {
            let detail = if libc::WIFEXITED(status) {
                format!(
                    "iteration {iteration}: {}",
                    churn_failure(libc::WEXITSTATUS(status))
                )
            } else {
                format!("iteration {iteration}: {}", describe_status(status))
            };
            TestbedError::ChildFailed {
                role: role.into(),
                pid,
                detail,
            }
        };
        let handshake = if args.join {
            Some((pipe()?, pipe()?))
        } else {
            None
        };
        let member = unsafe { libc::fork() };
        if member < 0 {
            return Err(last_os_err("fork"));
        }
        if member == 0 {
            unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
            let code = churn_member(&self_ns, parent_inum, target_c.as_ref(), handshake);
            unsafe { libc::_exit(code) };
        }
        if let Some(((ready_r, ready_w), (release_r, release_w))) = handshake {
            drop(ready_w);
            drop(release_r);
            let mut byte = [0u8; 1];
            let got = unsafe { libc::read(ready_r.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
            if got != 1 {
                drop(release_w);
                let status = wait_child(member)?;
                return Err(fail("churn member", member, status));
            }
            let member_ns = CString::new(format!("/proc/{member}/ns/net")).unwrap_or_default();
            let joiner = unsafe { libc::fork() };
            if joiner < 0 {
                return Err(last_os_err("fork"));
            }
            if joiner == 0 {
                unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
                let code = churn_joiner(&member_ns, &self_ns);
                unsafe { libc::_exit(code) };
            }
            let status = wait_child(joiner)?;
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                drop(release_w);
                let _ = wait_child(member);
                return Err(fail("churn joiner", joiner, status));
            }
            drop(release_w);
        }
        let status = wait_child(member)?;
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(fail("churn member", member, status));
        }
    }
    Ok(start.elapsed())
}

type Handshake = ((OwnedFd, OwnedFd), (OwnedFd, OwnedFd));

fn churn_member(
    self_ns: &CString,
    parent_inum: u64,
    target: Option<&CString>,
    handshake: Option<Handshake>,
) -> i32 {
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return 10;
    }
    if stat_ino(self_ns) == Some(parent_inum) {
        return 11;
    }
    if let Some(target) = target {
        let rc = unsafe {
            libc::mount(
                self_ns.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return 12;
        }
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            return 13;
        }
    }
    if let Some(((ready_r, ready_w), (release_r, release_w))) = handshake {
        drop(ready_r);
        drop(release_w);
        if unsafe { libc::write(ready_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) } != 1 {
            return 14;
        }
        // Stay a member until the joiner has been in; EOF means release.
        let mut byte = [0u8; 1];
        unsafe { libc::read(release_r.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
    }
    0
}

fn churn_joiner(member_ns: &CString, self_ns: &CString) -> i32 {
    let fd = unsafe { libc::open(member_ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 20;
    }
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return 20;
    }
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return 21;
    }
    if stat_ino(self_ns) != Some(st.st_ino) {
        return 22;
    }
    0
}

pub fn proc_churn(args: &ProcChurnArgs) -> Result<Value> {
    let program = c_path(&args.program)?;
    let argv = [program.as_ptr(), std::ptr::null()];
    let start = Instant::now();
    for iteration in 0..args.count {
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(last_os_err("fork"));
        }
        if pid == 0 {
            unsafe {
                libc::execv(program.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        let status = wait_child(pid)?;
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(TestbedError::ChildFailed {
                role: args.program.display().to_string(),
                pid,
                detail: format!("iteration {iteration}: {}", describe_status(status)),
            });
        }
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    Ok(json!({
        "scenario": "proc-churn",
        "count": args.count,
        "program": args.program,
        "elapsed_ns": elapsed_ns,
        "per_process_ns": elapsed_ns.checked_div(args.count).unwrap_or(0),
        "testbed_pid": std::process::id(),
    }))
}
