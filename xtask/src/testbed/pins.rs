//! The pin scenarios: fd-pin, copied-mount, new-mount-api and runtime-style.
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Result, TestbedError, last_os_err, os_err};
use crate::namespaces::{PinMethod, netns_cookie};
use crate::process::{AfterReport, fork_child};
use crate::state::Run;
use crate::sys::{kill_child, ns_inum, setns, umount_detach, unshare, uuid_v4};

pub fn fd_pin(run: &mut Run) -> Result<Value> {
    let member = fork_child("netns-member", AfterReport::ExitWhenReleased, || {
        unshare(libc::CLONE_NEWNET, "CLONE_NEWNET")?;
        Ok(ns_inum(Path::new("/proc/self/ns/net"))?.to_string())
    })?;
    run.track_process(member.pid, "netns member")?;
    let inum: u64 = member
        .report
        .parse()
        .map_err(|_| TestbedError::Unexpected(format!("member reported {:?}", member.report)))?;
    let member_pid = member.pid;
    let cookie = netns_cookie(Path::new(&format!("/proc/{member_pid}/ns/net")));
    let member_ns = PathBuf::from(format!("/proc/{member_pid}/ns/net"));
    let holder = fork_child("docker-proxy", AfterReport::SleepForever, || {
        let fd = File::open(&member_ns).map_err(os_err(format!("open {}", member_ns.display())))?;
        let held = fd.metadata().map_err(os_err("fstat held netns fd"))?.ino();
        if held != inum {
            return Err(TestbedError::Unexpected(format!(
                "opened net:[{held}], expected net:[{inum}]"
            )));
        }
        // Deliberately leaked: this fd is the pin.
        Ok(std::os::fd::IntoRawFd::into_raw_fd(fd).to_string())
    })?;
    run.track_process(holder.pid, "nsfs fd holder")?;
    let holder_fd: i32 = holder
        .report
        .parse()
        .map_err(|_| TestbedError::Unexpected(format!("holder reported {:?}", holder.report)))?;
    member.release_and_reap("netns member")?;
    run.reaped(member_pid);

    let link = fs::read_link(format!("/proc/{}/fd/{holder_fd}", holder.pid)).map_err(os_err(
        format!("readlink /proc/{}/fd/{holder_fd}", holder.pid),
    ))?;
    if link.as_os_str().as_bytes() != format!("net:[{inum}]").as_bytes() {
        return Err(TestbedError::Unexpected(format!(
            "holder fd points at {}",
            link.display()
        )));
    }
    let host_inum = ns_inum(Path::new("/proc/self/ns/net"))?;
    let holder_netns = ns_inum(Path::new(&format!("/proc/{}/ns/net", holder.pid)))?;
    Ok(json!({
        "netns_inum": inum,
        "netns_cookie": cookie,
        "member_pid": member_pid,
        "member_alive": false,
        "holder_pid": holder.pid,
        "holder_fd": holder_fd,
        "holder_comm": "docker-proxy",
        "holder_netns_inum": holder_netns,
        "host_netns_inum": host_inum,
    }))
}

/// Does the mountinfo at `path` contain an nsfs mount whose root is net:[inum]? Returns its
/// mount point.
fn nsfs_mount_point(mountinfo: &Path, inum: u64) -> Result<Option<String>> {
    let text =
        fs::read_to_string(mountinfo).map_err(os_err(format!("read {}", mountinfo.display())))?;
    let root = format!("net:[{inum}]");
    Ok(text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let fstype = right.split(' ').next()?;
        (fstype == "nsfs" && fields.get(3) == Some(&root.as_str()))
            .then(|| fields.get(4).unwrap_or(&"").to_string())
    }))
}

pub fn copied_mount(run: &mut Run) -> Result<Value> {
    let (original, pin) = run.pin_fresh_netns("copied-netns", PinMethod::BindMount)?;
    let holder = fork_child("mnt-ns-holder", AfterReport::SleepForever, || {
        unshare(libc::CLONE_NEWNS, "CLONE_NEWNS")?;
        // Private propagation: the host's later umount must not reach this copy.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(last_os_err("mount --make-rprivate /"));
        }
        Ok(ns_inum(Path::new("/proc/self/ns/mnt"))?.to_string())
    })?;
    run.track_process(holder.pid, "mount namespace holder")?;
    let holder_mnt_ns: u64 = holder
        .report
        .parse()
        .map_err(|_| TestbedError::Unexpected(format!("holder reported {:?}", holder.report)))?;
    let cookie = netns_cookie(&original);
    umount_detach(&original)?;

    let host_mountinfo = Path::new("/proc/self/mountinfo");
    let holder_mountinfo = PathBuf::from(format!("/proc/{}/mountinfo", holder.pid));
    if let Some(mp) = nsfs_mount_point(host_mountinfo, pin.inum)? {
        return Err(TestbedError::Unexpected(format!(
            "net:[{}] still mounted at {mp} in the host",
            pin.inum
        )));
    }
    let copy = nsfs_mount_point(&holder_mountinfo, pin.inum)?.ok_or_else(|| {
        TestbedError::Unexpected(format!(
            "the holder's mount namespace has no copy of net:[{}]",
            pin.inum
        ))
    })?;
    Ok(json!({
        "netns_inum": pin.inum,
        "netns_cookie": cookie,
        "original_path": original,
        "original_mounted": false,
        "copy_mount_point": copy,
        "holder_pid": holder.pid,
        "holder_comm": "mnt-ns-holder",
        "holder_mnt_ns_inum": holder_mnt_ns,
        "host_mnt_ns_inum": ns_inum(Path::new("/proc/self/ns/mnt"))?,
    }))
}

pub fn new_mount_api(run: &mut Run) -> Result<Value> {
    let (path, pin) =
        run.pin_fresh_netns(&format!("newapi-{}", uuid_v4()?), PinMethod::NewMountApi)?;
    let cookie = netns_cookie(&path);
    let mount_point =
        nsfs_mount_point(Path::new("/proc/self/mountinfo"), pin.inum)?.ok_or_else(|| {
            TestbedError::Unexpected(format!("no nsfs mount of net:[{}] in mountinfo", pin.inum))
        })?;
    Ok(json!({
        "netns_inum": pin.inum,
        "netns_cookie": cookie,
        "pin": path,
        "mount_point": mount_point,
        "api": "open_tree+move_mount",
        "creator_tid": pin.tid,
        "creator_restored_to_inum": pin.original_inum,
    }))
}

pub fn runtime_style(run: &mut Run, kill_member: bool) -> Result<Value> {
    let (pin_path, pin) =
        run.pin_fresh_netns(&format!("cni-{}", uuid_v4()?), PinMethod::BindMount)?;
    let cookie = netns_cookie(&pin_path);
    let expected = pin.inum;
    let member = fork_child("pause", AfterReport::SleepForever, || {
        let ns = File::open(&pin_path).map_err(os_err(format!("open {}", pin_path.display())))?;
        setns(
            ns.as_raw_fd(),
            libc::CLONE_NEWNET,
            &pin_path.display().to_string(),
        )?;
        drop(ns);
        let joined = ns_inum(Path::new("/proc/self/ns/net"))?;
        if joined != expected {
            return Err(TestbedError::Unexpected(format!(
                "joined net:[{joined}], expected net:[{expected}]"
            )));
        }
        Ok(joined.to_string())
    })?;
    run.track_process(member.pid, "joined pause")?;
    if kill_member {
        kill_child(member.pid)?;
        run.reaped(member.pid);
    }
    Ok(json!({
        "netns_inum": pin.inum,
        "netns_cookie": cookie,
        "pin": pin_path,
        "creator_tid": pin.tid,
        "creator_restored_to_inum": pin.original_inum,
        "member_pid": member.pid,
        "member_comm": "pause",
        "member_alive": !kill_member,
        "member_killed": kill_member,
    }))
}
