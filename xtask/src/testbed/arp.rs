//! ARP on the wire: broadcast requests from an AF_PACKET socket, and the replies they get.
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Result, TestbedError, last_os_err};
use crate::namespaces::in_netns;

const ETH_P_ARP: u16 = 0x0806;

pub struct ArpReply {
    pub request: u32,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub eth_src: [u8; 6],
}

pub struct ArpExchange {
    pub requests_sent: u32,
    pub replies: Vec<ArpReply>,
}

/// Sends `count` broadcast ARP requests for `target` from `ifname` in the netns at `netns_file`
/// through an AF_PACKET socket, and collects every reply addressed to us (400 ms per request).
pub fn arp_exchange(
    netns_file: &Path,
    ifname: &str,
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    target: Ipv4Addr,
    count: u32,
) -> Result<ArpExchange> {
    in_netns(netns_file, || {
        let proto_be = ETH_P_ARP.to_be();
        let sock = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto_be as libc::c_int,
            )
        };
        if sock < 0 {
            return Err(last_os_err("socket(AF_PACKET)"));
        }
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        let name = CString::new(ifname)
            .map_err(|_| TestbedError::InvalidArgument(format!("interface {ifname:?}")))?;
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(last_os_err(format!("if_nametoindex({ifname})")));
        }
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto_be;
        addr.sll_ifindex = ifindex as i32;
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(last_os_err("bind(AF_PACKET)"));
        }

        let mut frame = [0u8; 60];
        frame[0..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&src_mac);
        frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        frame[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        frame[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        frame[18] = 6;
        frame[19] = 4;
        frame[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
        frame[22..28].copy_from_slice(&src_mac);
        frame[28..32].copy_from_slice(&src_ip.octets());
        frame[38..42].copy_from_slice(&target.octets());

        let mut replies = vec![];
        let mut buf = [0u8; 2048];
        for request in 1..=count {
            let sent =
                unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if sent < 0 {
                return Err(last_os_err("send ARP request"));
            }
            let deadline = Instant::now() + Duration::from_millis(400);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut pfd = libc::pollfd {
                    fd: sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ready =
                    unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
                if ready < 0 {
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(TestbedError::Os {
                        what: "poll".into(),
                        source: err,
                    });
                }
                if ready == 0 {
                    continue;
                }
                let n = unsafe {
                    libc::recv(
                        sock.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 42 {
                    continue;
                }
                let frame_in = &buf[..n as usize];
                let is_reply = frame_in[12..14] == ETH_P_ARP.to_be_bytes()
                    && frame_in[20..22] == 2u16.to_be_bytes();
                if !is_reply
                    || frame_in[28..32] != target.octets()
                    || frame_in[38..42] != src_ip.octets()
                {
                    continue;
                }
                let mut sender_mac = [0u8; 6];
                sender_mac.copy_from_slice(&frame_in[22..28]);
                let mut eth_src = [0u8; 6];
                eth_src.copy_from_slice(&frame_in[6..12]);
                replies.push(ArpReply {
                    request,
                    sender_mac,
                    sender_ip: target,
                    eth_src,
                });
            }
        }
        Ok(ArpExchange {
            requests_sent: count,
            replies,
        })
    })
}
