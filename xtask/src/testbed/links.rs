//! Links and addresses: interfaces waited on through ioctl, configured with iproute2's `ip`,
//! and the addressing rules (10.231.0.0/16, MACs that embed the IP).
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as ProcessCommand, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Result, TestbedError, last_os_err, os_err};
use crate::namespaces::in_netns;

/// How long a scenario waits for links to come up or go away.
const LINK_WAIT: Duration = Duration::from_secs(10);

/// ifreq with only the flags member of the union used (struct size 40 on 64-bit).
#[repr(C)]
struct IfreqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn iface_flags(sock: RawFd, ifname: &str) -> Option<libc::c_short> {
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    for (dst, src) in req
        .name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    let rc = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) };
    (rc == 0).then_some(req.flags)
}

/// Waits until every interface in `ifnames` is IFF_RUNNING (operstate up, so its qdisc is
/// active and frames are not dropped).
pub fn wait_links_running(netns_file: &Path, ifnames: &[&str]) -> Result<()> {
    wait_links(netns_file, ifnames, true)
}

pub fn wait_links_gone(netns_file: &Path, ifnames: &[&str]) -> Result<()> {
    wait_links(netns_file, ifnames, false)
}

fn wait_links(netns_file: &Path, ifnames: &[&str], running: bool) -> Result<()> {
    in_netns(netns_file, || {
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(last_os_err("socket(AF_INET)"));
        }
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        let deadline = Instant::now() + LINK_WAIT;
        loop {
            let pending: Vec<&str> = ifnames
                .iter()
                .copied()
                .filter(|name| match iface_flags(sock.as_raw_fd(), name) {
                    Some(flags) => running != (flags as libc::c_int & libc::IFF_RUNNING != 0),
                    None => running,
                })
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let want = if running { "running" } else { "gone" };
                return Err(TestbedError::Unexpected(format!(
                    "links {pending:?} in {} not {want} after {LINK_WAIT:?}",
                    netns_file.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// iproute2's ip: busybox's applet lacks `type veth` and netns paths, so prefer /sbin/ip.
fn ip_bin() -> &'static str {
    if Path::new("/sbin/ip").exists() {
        "/sbin/ip"
    } else {
        "ip"
    }
}

/// Runs `ip ARGS` inside the network namespace at `netns_file`.
pub fn ip_in(netns_file: &Path, args: &[&str]) -> Result<String> {
    let ns = File::open(netns_file).map_err(os_err(format!("open {}", netns_file.display())))?;
    let ns_fd = ns.as_raw_fd();
    let mut cmd = ProcessCommand::new(ip_bin());
    cmd.args(args).stdin(Stdio::null());
    // The fd is O_CLOEXEC, so it is still open here and closed by exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let command = format!(
        "[netns {}] {} {}",
        netns_file.display(),
        ip_bin(),
        args.join(" ")
    );
    let out = cmd.output().map_err(os_err(format!("run {command}")))?;
    if !out.status.success() {
        return Err(TestbedError::CommandFailed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub struct PodCidr {
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

pub fn parse_pod_cidr(text: &str) -> Result<PodCidr> {
    let bad = |why: &str| TestbedError::InvalidArgument(format!("--ip {text:?}: {why}"));
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
    let ip: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
    let prefix: u8 = prefix.parse().map_err(|_| bad("prefix is not a number"))?;
    if !(16..=30).contains(&prefix) {
        return Err(bad("prefix must be between 16 and 30"));
    }
    let o = ip.octets();
    if o[0] != 10 || o[1] != 231 {
        return Err(bad(
            "the testbed only assigns addresses inside 10.231.0.0/16",
        ));
    }
    let mask = u32::MAX << (32 - prefix);
    let host = u32::from(ip) & !mask;
    if host == 0 || host == !mask {
        return Err(bad("that is the subnet's network or broadcast address"));
    }
    Ok(PodCidr { ip, prefix })
}

/// The client takes the subnet's last usable address, or the one below if the pods use it.
pub fn client_ip_for(pod: &PodCidr) -> Ipv4Addr {
    let mask = u32::MAX << (32 - pod.prefix);
    let broadcast = (u32::from(pod.ip) & mask) | !mask;
    let candidate = broadcast - 1;
    Ipv4Addr::from(if candidate == u32::from(pod.ip) {
        candidate - 1
    } else {
        candidate
    })
}

/// 02:<tag>:<the four IP bytes>: locally administered, fixed, and readable in captures.
pub fn mac_for(tag: u8, ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, tag, o[0], o[1], o[2], o[3]]
}

pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidr_must_stay_inside_the_testbed_range() {
        assert!(parse_pod_cidr("10.231.1.10/24").is_ok());
        assert!(parse_pod_cidr("10.232.1.10/24").is_err());
        assert!(parse_pod_cidr("192.168.1.10/24").is_err());
        assert!(parse_pod_cidr("10.231.1.10/8").is_err());
        assert!(parse_pod_cidr("10.231.1.10/31").is_err());
        assert!(parse_pod_cidr("10.231.1.0/24").is_err());
        assert!(parse_pod_cidr("10.231.1.255/24").is_err());
        assert!(parse_pod_cidr("10.231.1.10").is_err());
        assert!(parse_pod_cidr("banana/24").is_err());
    }

    #[test]
    fn client_ip_avoids_the_pod_ip() {
        let pod = parse_pod_cidr("10.231.1.10/24").unwrap();
        assert_eq!(client_ip_for(&pod), Ipv4Addr::new(10, 231, 1, 254));
        let pod = parse_pod_cidr("10.231.1.254/24").unwrap();
        assert_eq!(client_ip_for(&pod), Ipv4Addr::new(10, 231, 1, 253));
        let pod = parse_pod_cidr("10.231.1.2/30").unwrap();
        assert_eq!(client_ip_for(&pod), Ipv4Addr::new(10, 231, 1, 1));
    }

    #[test]
    fn macs_embed_the_ip() {
        assert_eq!(
            fmt_mac(&mac_for(0, Ipv4Addr::new(10, 231, 1, 10))),
            "02:00:0a:e7:01:0a"
        );
        assert_eq!(
            fmt_mac(&mac_for(1, Ipv4Addr::new(10, 231, 1, 10))),
            "02:01:0a:e7:01:0a"
        );
    }
}
