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
use std::net::Ipv4Addr;
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
use crate::model::{Interface, Mac, NsId};

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
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: c is a valid NUL-terminated string; the returned fd is owned by us alone.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
    let fd = open_cloexec(path)?;
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
    let path = handle_path.to_path_buf();
    std::thread::Builder::new()
        .name("netns-read".into())
        .spawn(move || read_in_this_thread(&path))
        .map_err(|e| SnapshotError::Io {
            path: handle_path.to_path_buf(),
            source: e,
        })?
        .join()
        .map_err(|_| SnapshotError::ReaderPanicked(handle_path.to_path_buf()))?
}

fn read_in_this_thread(path: &Path) -> Result<NsRead, SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let target = open_cloexec(path).map_err(io_err)?;
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

/// Dumps links and IPv4 addresses of the calling thread's network namespace, and its cookie.
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
        // A file that is not a namespace cannot be entered.
        let err = read_interfaces(Path::new("/proc/self/status")).unwrap_err();
        assert!(matches!(err, SnapshotError::Enter { .. }), "{err}");
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
        // The reader thread is gone and left no fd behind.
        for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            if let Ok(t) = std::fs::read_link(fd.path()) {
                assert!(!t.to_string_lossy().starts_with("net:["), "leaked {t:?}");
            }
        }
    }
}
