//! Forked helper processes (pause processes, holders, namespace members) that report back
//! through a pipe.
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::error::{Result, TestbedError, last_os_err};
use crate::sys::{describe_status, pipe, wait_child};

/// What a forked child does once it has reported success.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AfterReport {
    /// Sleep until killed (a pause process, a holder).
    SleepForever,
    /// Exit once the parent drops `ForkedChild::release`.
    ExitWhenReleased,
}

pub struct ForkedChild {
    pub pid: i32,
    /// The text the child reported after "ok ".
    pub report: String,
    /// Closing this lets an `ExitWhenReleased` child exit.
    release: Option<OwnedFd>,
}

impl ForkedChild {
    pub fn release_and_reap(mut self, role: &str) -> Result<()> {
        drop(self.release.take());
        let status = wait_child(self.pid)?;
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(TestbedError::ChildFailed {
                role: role.into(),
                pid: self.pid,
                detail: describe_status(status),
            });
        }
        Ok(())
    }
}

/// Forks a child named `comm` that runs `body` and reports its result through a pipe. The child
/// first points stdio at /dev/null and closes every other inherited fd, so it neither holds a
/// caller's output pipe open nor pins a namespace through an fd it did not open itself.
///
/// Must only be called while this process is single-threaded.
pub fn fork_child(
    comm: &str,
    after: AfterReport,
    body: impl FnOnce() -> Result<String>,
) -> Result<ForkedChild> {
    let comm_c = CString::new(comm)
        .map_err(|_| TestbedError::InvalidArgument(format!("process name {comm:?}")))?;
    let (report_r, report_w) = pipe()?;
    let release = match after {
        AfterReport::ExitWhenReleased => Some(pipe()?),
        AfterReport::SleepForever => None,
    };
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_os_err("fork"));
    }
    if pid == 0 {
        drop(report_r);
        let release_r = release.map(|(r, w)| {
            drop(w);
            r
        });
        let code = child_main(&comm_c, report_w, release_r, after, body);
        unsafe { libc::_exit(code) }
    }
    drop(report_w);
    let release_w = release.map(|(r, w)| {
        drop(r);
        w
    });
    let mut text = String::new();
    // EOF arrives when the child closes the pipe after reporting, or dies.
    let read = File::from(report_r).read_to_string(&mut text);
    if let (Ok(_), Some(report)) = (&read, text.strip_prefix("ok ")) {
        return Ok(ForkedChild {
            pid,
            report: report.to_string(),
            release: release_w,
        });
    }
    drop(release_w);
    let status = wait_child(pid)
        .map(describe_status)
        .unwrap_or_else(|e| e.to_string());
    let detail = match text.strip_prefix("err ") {
        Some(msg) => format!("{msg} ({status})"),
        None => format!("exited before reporting ({status})"),
    };
    Err(TestbedError::ChildFailed {
        role: comm.into(),
        pid,
        detail,
    })
}

fn child_main(
    comm: &CString,
    report_w: OwnedFd,
    release_r: Option<OwnedFd>,
    after: AfterReport,
    body: impl FnOnce() -> Result<String>,
) -> i32 {
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
    let mut keep = vec![report_w.as_raw_fd()];
    keep.extend(release_r.as_ref().map(|f| f.as_raw_fd()));
    detach_inherited_fds(&keep);
    let mut report = File::from(report_w);
    match body() {
        Ok(msg) => {
            let _ = write!(report, "ok {msg}");
            drop(report);
        }
        Err(e) => {
            let _ = write!(report, "err {e}");
            return 1;
        }
    }
    match (after, release_r) {
        (AfterReport::ExitWhenReleased, Some(release)) => {
            let mut byte = [0u8; 1];
            let _ = File::from(release).read(&mut byte);
            0
        }
        _ => loop {
            unsafe { libc::pause() };
        },
    }
}

fn detach_inherited_fds(keep: &[RawFd]) {
    let devnull = c"/dev/null";
    let null = unsafe { libc::open(devnull.as_ptr(), libc::O_RDWR) };
    if null >= 0 {
        for std_fd in 0..3 {
            unsafe { libc::dup2(null, std_fd) };
        }
        if null > 2 {
            unsafe { libc::close(null) };
        }
    } else {
        // No /dev/null (bare guest): closing still releases the caller's output pipes.
        for std_fd in 0..3 {
            unsafe { libc::close(std_fd) };
        }
    }
    let mut keep: Vec<u32> = keep.iter().map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut next = 3u32;
    for fd in keep {
        if fd < next {
            continue;
        }
        if fd > next {
            close_range(next, fd - 1);
        }
        next = fd + 1;
    }
    close_range(next, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if rc != 0 {
        // close_range is 5.9+; walk a bounded range on older kernels.
        for fd in first..=last.min(first.saturating_add(65_536)) {
            unsafe { libc::close(fd as RawFd) };
        }
    }
}
