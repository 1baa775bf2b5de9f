//! Briefly entering a network namespace to read its interfaces, without ever keeping it alive.
//!
//! The read runs in a dedicated, short-lived thread:
//! 1. open the handle (`/proc/PID/ns/net`, `/proc/PID/root/<bind mount>`, `/proc/PID/fd/N`),
//! 2. `setns(CLONE_NEWNET)` in that thread only (network namespaces are per thread),
//! 3. close the handle at once,
//! 4. dump links and IPv4 addresses over a NETLINK_ROUTE socket and read the namespace
//!    cookie from that socket (SO_NETNS_COOKIE),
//! 5. close the socket, switch the thread back ([`NetnsGuard`]'s drop) and end the thread.
//!
//! Switching back before the thread exits matters: pthread_join returns once the kernel
//! clears the thread id (in exit_mm), which is before exit_task_namespaces drops the
//! thread's nsproxy. Restoring in the guard drops our reference synchronously, so when
//! [`read_interfaces`] returns, nothing of ours refers to the target namespace.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::SnapshotError;
use crate::model::{DadState, Interface, Ipv6Address, Mac, NsId};

/// `_IOR(NSIO, 13, __u64)`: the namespace id (6.18+; equals the net cookie there).
const NS_GET_ID: libc::c_ulong = 0x8008_b70d;

/// What one read of a namespace found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsRead {
    pub netns: NsId,
    pub interfaces: Vec<Interface>,
}

/// The inode number of a namespace file, by stat(2) (follows /proc's magic links and
/// nsfs bind mounts without taking a reference).
pub fn ns_inum_of(path: &Path) -> io::Result<u32> {
    let ino = std::fs::metadata(path)?.ino();
    u32::try_from(ino).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("inode {ino} does not fit a namespace inum"),
        )
    })
}

fn open_cloexec(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: c is a valid NUL-terminated string; the returned fd is owned by us alone.
    let fd = unsafe { libc::open(c.as_ptr(), HANDLE_FLAGS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// How every handle is opened: a FIFO or a device planted where a pin was must neither block
/// the open nor become our terminal.
const HANDLE_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;

/// `/proc/PID/root/REST` split into the root (`/proc/PID/root`) and REST, relative.
fn split_proc_root(path: &Path) -> Option<(PathBuf, &Path)> {
    use std::path::Component;
    let comps: Vec<Component> = path.components().collect();
    let at = comps.windows(2).position(|w| {
        matches!(w, [Component::Normal(pid), Component::Normal(root)]
            if *root == "root" && !pid.is_empty() && pid.as_bytes().iter().all(u8::is_ascii_digit))
    })?;
    let root: PathBuf = comps[..at + 2].iter().collect();
    let rest = path.strip_prefix(&root).ok()?;
    (!rest.as_os_str().is_empty()).then_some((root, rest))
}

/// Opens `rest` inside the directory `root` as if it were `/`: an absolute symlink in a pod's
/// tree resolves inside that tree, not against the tracer's root, and no /proc magic link is
/// followed on the way (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, Linux 5.6+; older
/// kernels get a plain openat, and the nsfs check after it).
pub(crate) fn open_in_root(root: &Path, rest: &Path) -> io::Result<OwnedFd> {
    let root_c = c_path(root)?;
    // SAFETY: valid string; the fd is owned below.
    let dir = unsafe {
        libc::open(
            root_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dir was just returned by open.
    let dir = unsafe { OwnedFd::from_raw_fd(dir) };
    let rest_c = c_path(rest)?;
    // SAFETY: open_how is plain integers; all-zero is its "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = HANDLE_FLAGS as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `how` (of the size given) and the path; returns a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rest_c.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    } as libc::c_int;
    let fd = if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // SAFETY: as above, with openat's arguments.
        unsafe { libc::openat(dir.as_raw_fd(), rest_c.as_ptr(), HANDLE_FLAGS) }
    } else {
        fd
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat2/openat.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a namespace handle, which a pod may have put anything behind: a path inside a
/// process's root is resolved inside that root ([`open_in_root`]), and whatever was opened
/// must be an nsfs file before any ioctl or setns is tried on it.
pub(crate) fn open_ns_file(path: &Path) -> io::Result<OwnedFd> {
    let fd = match split_proc_root(path) {
        Some((root, rest)) => open_in_root(&root, rest)?,
        None => open_cloexec(path)?,
    };
    // SAFETY: fstatfs writes into the zeroed buffer we own.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut sfs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // f_type and the magic have different types in glibc and musl, and on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    if sfs.f_type as i64 != libc::NSFS_MAGIC as i64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a namespace file",
        ));
    }
    Ok(fd)
}

fn setns_net(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: setns only reads the fd; it affects the calling thread's network namespace.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The namespace id from NS_GET_ID, or 0 where the kernel lacks it.
fn ns_get_id(fd: &OwnedFd) -> u64 {
    let mut id: u64 = 0;
    // SAFETY: NS_GET_ID writes one u64 through the pointer, which points at `id`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_ID as _, &mut id as *mut u64) };
    if r == 0 { id } else { 0 }
}

/// For an nsfs file whose type mountinfo does not show: its inum if it is a network
/// namespace, `None` if it is another kind. The fd is closed before returning.
pub fn net_inum_of_nsfs_file(path: &Path) -> io::Result<Option<u32>> {
    let fd = open_ns_file(path)?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns the type.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE as _) };
    let kind = if kind < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(kind)
    };
    let inum = std::fs::File::from(fd).metadata()?.ino();
    if kind? != libc::CLONE_NEWNET {
        return Ok(None);
    }
    Ok(u32::try_from(inum).ok())
}

/// The calling thread is inside another network namespace while this lives; dropping it
/// switches the thread back to the namespace it came from. Only ever created on a thread
/// that [`read_interfaces`] spawned for the purpose.
struct NetnsGuard {
    /// The thread's own namespace (the tracer's, which its members keep alive anyway).
    original: OwnedFd,
}

impl NetnsGuard {
    fn enter(target: &OwnedFd) -> io::Result<Self> {
        let original = open_cloexec(Path::new("/proc/thread-self/ns/net"))?;
        setns_net(target)?;
        Ok(Self { original })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns_net(&self.original) {
            // The thread is about to end, which releases the namespace anyway.
            tracing::warn!(
                "could not switch a reader thread back to its own network namespace: {e}"
            );
        }
    }
}

/// Reads the interfaces and identity of the network namespace behind `handle_path`.
pub fn read_interfaces(handle_path: &Path) -> Result<NsRead, SnapshotError> {
    use std::sync::atomic::Ordering;
    let timed_out = |what: String| SnapshotError::Io {
        path: handle_path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::TimedOut, what),
    };
    let stuck = ABANDONED_READS.load(Ordering::Relaxed);
    if stuck >= MAX_ABANDONED_READS {
        return Err(timed_out(format!(
            "{stuck} earlier namespace reads are still blocked; not starting another"
        )));
    }
    let path = handle_path.to_path_buf();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let reader = std::thread::Builder::new()
        .name("netns-read".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(|| read_in_this_thread(&path));
            if tx.send(r).is_err() {
                // Given up on: it no longer counts as blocked.
                ABANDONED_READS.fetch_sub(1, Ordering::Relaxed);
            }
        })
        .map_err(|e| SnapshotError::Io {
            path: handle_path.to_path_buf(),
            source: e,
        })?;
    match rx.recv_timeout(READ_TIMEOUT) {
        Ok(Ok(r)) => {
            let _ = reader.join();
            r
        }
        Ok(Err(_)) => Err(SnapshotError::ReaderPanicked(handle_path.to_path_buf())),
        Err(_) => {
            // Blocked where a pod put something slow (a FUSE or hung network mount): the
            // thread is left to finish on its own, and the tracer goes on.
            ABANDONED_READS.fetch_add(1, Ordering::Relaxed);
            drop(rx);
            Err(timed_out(format!(
                "no answer within {} s",
                READ_TIMEOUT.as_secs()
            )))
        }
    }
}

/// How long one namespace read may take before it is given up on.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Reads given up on and still blocked; past this many, no new one is started.
const MAX_ABANDONED_READS: isize = 4;
static ABANDONED_READS: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

fn read_in_this_thread(path: &Path) -> Result<NsRead, SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let target = open_ns_file(path).map_err(io_err)?;
    let inum = {
        // SAFETY: fstat writes into the zeroed stat buffer we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(target.as_raw_fd(), &mut st) } != 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        st.st_ino as u32
    };
    let ns_id = ns_get_id(&target);
    let guard = NetnsGuard::enter(&target).map_err(|source| SnapshotError::Enter {
        path: path.to_path_buf(),
        source,
    })?;
    drop(target);
    let result = dump_current_netns(path);
    drop(guard);
    let (cookie, interfaces) = result?;
    let cookie = if cookie != 0 { cookie } else { ns_id };
    Ok(NsRead {
        netns: NsId::new(cookie, inum),
        interfaces,
    })
}

/// Dumps links and IPv4 and IPv6 addresses of the calling thread's network namespace, and its
/// cookie.
/// The socket is closed before returning.
fn dump_current_netns(path: &Path) -> Result<(u64, Vec<Interface>), SnapshotError> {
    let nl_err = |what: String| SnapshotError::Netlink {
        path: path.to_path_buf(),
        what,
    };
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| nl_err(format!("socket: {e}")))?;
    socket
        .bind_auto()
        .map_err(|e| nl_err(format!("bind: {e}")))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| nl_err(format!("connect: {e}")))?;
    let cookie = netns_cookie(&socket).map_err(|e| nl_err(format!("SO_NETNS_COOKIE: {e}")))?;

    let mut interfaces: Vec<Interface> = Vec::new();
    dump(
        &socket,
        1,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        |msg| {
            if let RouteNetlinkMessage::NewLink(link) = msg {
                interfaces.push(interface_of(&link));
            }
        },
    )
    .map_err(|e| nl_err(format!("link dump: {e}")))?;

    let mut request = AddressMessage::default();
    request.header.family = AddressFamily::Inet;
    dump(
        &socket,
        2,
        RouteNetlinkMessage::GetAddress(request),
        |msg| {
            if let RouteNetlinkMessage::NewAddress(addr) = msg
                && let Some((index, ip, prefix)) = ipv4_of(&addr)
                && let Some(iface) = interfaces.iter_mut().find(|i| i.ifindex == index)
            {
                iface.ipv4.push((ip, prefix));
            }
        },
    )
    .map_err(|e| nl_err(format!("address dump: {e}")))?;

    let mut request = AddressMessage::default();
    request.header.family = AddressFamily::Inet6;
    dump(
        &socket,
        3,
        RouteNetlinkMessage::GetAddress(request),
        |msg| {
            if let RouteNetlinkMessage::NewAddress(addr) = msg
                && let Some((index, a)) = ipv6_of(&addr)
                && let Some(iface) = interfaces.iter_mut().find(|i| i.ifindex == index)
            {
                iface.ipv6.push(a);
            }
        },
    )
    .map_err(|e| nl_err(format!("IPv6 address dump: {e}")))?;
    drop(socket);
    interfaces.sort_by_key(|i| i.ifindex);
    Ok((cookie, interfaces))
}

fn netns_cookie(socket: &Socket) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `cookie`.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            &mut cookie as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if r == 0 {
        return Ok(cookie);
    }
    let e = io::Error::last_os_error();
    // Kernels before 5.14 have no SO_NETNS_COOKIE.
    if e.raw_os_error() == Some(libc::ENOPROTOOPT) {
        Ok(0)
    } else {
        Err(e)
    }
}

fn interface_of(link: &LinkMessage) -> Interface {
    let mut iface = Interface {
        ifindex: link.header.index,
        ..Default::default()
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(name) => iface.name = name.clone(),
            LinkAttribute::Address(addr) if addr.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(addr);
                iface.mac = Mac(m);
            }
            _ => {}
        }
    }
    iface
}

/// (ifindex, local address, prefix length) of an IPv4 address message. IFA_LOCAL is the
/// interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
fn ipv4_of(addr: &AddressMessage) -> Option<(u32, Ipv4Addr, u8)> {
    let pick = |want_local: bool| {
        addr.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(std::net::IpAddr::V4(ip)) if want_local => Some(*ip),
            AddressAttribute::Address(std::net::IpAddr::V4(ip)) if !want_local => Some(*ip),
            _ => None,
        })
    };
    let ip = pick(true).or_else(|| pick(false))?;
    Some((addr.header.index, ip, addr.header.prefix_len))
}

/// (ifindex, address) of an IPv6 address message. IFA_FLAGS (32 bits) supersedes the
/// header's 8-bit flags when present; the flags that matter fit in both.
fn ipv6_of(addr: &AddressMessage) -> Option<(u32, Ipv6Address)> {
    let pick = |want_local: bool| {
        addr.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(std::net::IpAddr::V6(ip)) if want_local => Some(*ip),
            AddressAttribute::Address(std::net::IpAddr::V6(ip)) if !want_local => Some(*ip),
            _ => None,
        })
    };
    let ip = pick(true).or_else(|| pick(false))?;
    let flags = addr
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(f.bits()),
            _ => None,
        })
        .unwrap_or(u32::from(addr.header.flags.bits()));
    Some((
        addr.header.index,
        ipv6_address(ip, addr.header.prefix_len, flags),
    ))
}

/// An address from its IFA_F_* flags.
fn ipv6_address(ip: Ipv6Addr, prefix_len: u8, flags: u32) -> Ipv6Address {
    const IFA_F_NODAD: u32 = 0x02;
    const IFA_F_DADFAILED: u32 = 0x08;
    const IFA_F_TENTATIVE: u32 = 0x40;
    // A failed address keeps IFA_F_TENTATIVE (addrconf_dad_failure sets DADFAILED on top).
    let dad = if flags & IFA_F_DADFAILED != 0 {
        Some(DadState::Failed)
    } else if flags & IFA_F_TENTATIVE != 0 {
        Some(DadState::Tentative)
    } else {
        None
    };
    Ipv6Address::new(ip, prefix_len, dad, flags & IFA_F_NODAD != 0)
}

/// Sends one dump request and feeds every reply to `each` until NLMSG_DONE. A reply that
/// does not parse (an attribute this crate version does not know how to read) is skipped
/// with a warning rather than failing the whole dump.
fn dump(
    socket: &Socket,
    seq: u32,
    request: RouteNetlinkMessage,
    mut each: impl FnMut(RouteNetlinkMessage),
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    msg.finalize();
    let mut out = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut out);
    socket.send(&out, 0)?;

    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink socket closed mid-dump",
            ));
        }
        let mut offset = 0;
        while offset + 16 <= n {
            let len =
                u32::from_ne_bytes(buf[offset..offset + 4].try_into().expect("4 bytes")) as usize;
            if len < 16 || offset + len > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad netlink message length {len}"),
                ));
            }
            let bytes = &buf[offset..offset + len];
            offset += (len + 3) & !3;
            let seq_of_reply = u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes"));
            if seq_of_reply != seq {
                continue;
            }
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                Ok(reply) => match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        if let Some(code) = e.code {
                            return Err(io::Error::from_raw_os_error(-code.get()));
                        }
                    }
                    NetlinkPayload::InnerMessage(m) => each(m),
                    _ => {}
                },
                Err(e) => {
                    let msg_type = u16::from_ne_bytes(bytes[4..6].try_into().expect("2 bytes"));
                    if msg_type == libc::NLMSG_DONE as u16 {
                        return Ok(());
                    }
                    tracing::warn!(
                        "skipping a netlink reply (type {msg_type}) that did not parse: {e}"
                    );
                }
            }
        }
    }
}

/// Handles through which a namespace can be reached, best first.
pub fn handle_for_task(pid: u32, tid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/task/{tid}/ns/net"))
}

/// A bind mount's path as seen from mount namespace of `holder_pid`.
pub fn handle_for_bind_mount(holder_pid: u32, path: &str) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{holder_pid}/root/{}",
        path.trim_start_matches('/')
    ))
}

pub fn handle_for_fd(pid: u32, fd: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/fd/{fd}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_built_from_parts() {
        assert_eq!(
            handle_for_task(10, 12),
            PathBuf::from("/proc/10/task/12/ns/net")
        );
        assert_eq!(
            handle_for_bind_mount(7, "/run/netns/a b"),
            PathBuf::from("/proc/7/root/run/netns/a b")
        );
        assert_eq!(handle_for_fd(7, 3), PathBuf::from("/proc/7/fd/3"));
    }

    #[test]
    fn inum_of_own_namespace_matches_readlink() {
        let link = std::fs::read_link("/proc/self/ns/net").unwrap();
        let (_, inum) = super::super::procfs::parse_ns_link(&link.to_string_lossy()).unwrap();
        assert_eq!(ns_inum_of(Path::new("/proc/self/ns/net")).unwrap(), inum);
    }

    #[test]
    fn a_missing_handle_is_an_error_not_a_panic() {
        let err = read_interfaces(Path::new("/proc/self/ns/does-not-exist")).unwrap_err();
        assert!(matches!(err, SnapshotError::Io { .. }), "{err}");
        // A file that is not a namespace is not even entered.
        let err = read_interfaces(Path::new("/proc/self/status")).unwrap_err();
        assert!(matches!(err, SnapshotError::Io { .. }), "{err}");
        assert!(err.to_string().contains("not a namespace file"), "{err}");
    }

    /// Issue 14 item 2: a FIFO planted where a pin was blocked a plain O_RDONLY open forever
    /// (the tracer's reads stalled with it). It must be refused at once, and nothing asked of
    /// it by ioctl.
    #[test]
    fn a_fifo_at_a_handle_path_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("cni-fake");
        let c = c_path(&fifo).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send((
                read_interfaces(&f).map(|_| ()).map_err(|e| e.to_string()),
                net_inum_of_nsfs_file(&f).map_err(|e| e.to_string()),
            ));
        });
        let (read, kind) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO handle blocked");
        assert!(read.unwrap_err().contains("not a namespace file"));
        assert!(kind.unwrap_err().contains("not a namespace file"));
    }

    /// Issue 14 item 2: a pod's absolute symlink resolved against the tracer's root, so
    /// `/proc/PID/root/run/netns/x -> /proc/self/ns/net` handed us the tracer's own namespace.
    /// Inside the pod's root it leads nowhere.
    #[test]
    fn a_symlink_in_a_pods_root_resolves_inside_that_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run/netns")).unwrap();
        std::os::unix::fs::symlink("/proc/self/ns/net", root.path().join("run/netns/x")).unwrap();
        assert!(
            open_cloexec(&root.path().join("run/netns/x")).is_ok(),
            "a plain open follows it out of the root"
        );
        let err = open_in_root(root.path(), Path::new("run/netns/x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        // A real namespace file inside the root is still found.
        let ours = open_in_root(Path::new("/proc/self"), Path::new("ns/net"));
        assert!(
            ours.is_err(),
            "ns/net is a magic link: refused under RESOLVE_NO_MAGICLINKS"
        );
    }

    /// IFA_F_DADFAILED comes with IFA_F_TENTATIVE still set: failed wins.
    #[test]
    fn ipv6_flags_give_the_dad_state() {
        let a: Ipv6Addr = "fd00::5".parse().unwrap();
        let nodad = ipv6_address(a, 64, 0x02 | 0x80);
        assert_eq!((nodad.dad, nodad.nodad), (None, true));
        assert_eq!(ipv6_address(a, 64, 0x40).dad, Some(DadState::Tentative));
        assert_eq!(ipv6_address(a, 64, 0x40 | 0x08).dad, Some(DadState::Failed));
        assert_eq!(
            ipv6_address(a, 64, 0).scope,
            crate::model::Ipv6Scope::UniqueLocal
        );
    }

    #[test]
    fn proc_root_paths_are_split_at_the_pid_root() {
        assert_eq!(
            split_proc_root(Path::new("/proc/42/root/run/netns/cni-1")),
            Some((PathBuf::from("/proc/42/root"), Path::new("run/netns/cni-1")))
        );
        assert_eq!(split_proc_root(Path::new("/proc/42/ns/net")), None);
        assert_eq!(split_proc_root(Path::new("/proc/42/root")), None);
        assert_eq!(split_proc_root(Path::new("/proc/self/root/x")), None);
    }

    /// Reading our own namespace needs no privilege beyond opening our own ns file, and
    /// must find the loopback device.
    #[test]
    fn reads_own_namespace() {
        let r = read_interfaces(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(
            r.netns.inum,
            ns_inum_of(Path::new("/proc/self/ns/net")).unwrap()
        );
        let lo = r.interfaces.iter().find(|i| i.name == "lo").expect("lo");
        assert_eq!(lo.mac, Mac::default());
        assert!(lo.ipv4.contains(&(Ipv4Addr::LOCALHOST, 8)), "{lo:?}");
        // ::1 is on lo wherever IPv6 is enabled on it.
        let v6 = std::fs::read_to_string("/proc/sys/net/ipv6/conf/lo/disable_ipv6");
        if v6.is_ok_and(|s| s.trim() == "0") {
            let one = lo.ipv6.iter().find(|a| a.address == Ipv6Addr::LOCALHOST);
            let one = one.unwrap_or_else(|| panic!("no ::1 on lo: {lo:?}"));
            assert_eq!(
                (one.prefix_len, one.scope, one.dad),
                (128, crate::model::Ipv6Scope::Host, None)
            );
        }
        // The reader thread is gone and left no fd behind.
        for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            if let Ok(t) = std::fs::read_link(fd.path()) {
                assert!(!t.to_string_lossy().starts_with("net:["), "leaked {t:?}");
            }
        }
    }
}
