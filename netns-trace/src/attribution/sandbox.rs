//! Which runtime made an nsfs pin, and the sandbox it names, from the pin's path alone.
//!
//! - containerd (CRI): `/var/run/netns/cni-<uuid>` (`/run/netns/…` when /var/run is a link)
//! - CRI-O (pinns): `/var/run/netns/<uuid>`
//! - podman: `/run/netns/netns-<uuid>`, rootless `/run/user/<uid>/netns/netns-<uuid>`
//! - docker: `/var/run/docker/netns/<12 hex>` (the sandbox key)
//! - `ip netns add NAME`: `/run/netns/NAME`
//! - a process's own link: `/proc/<pid>/ns/net`

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxKind {
    Containerd,
    Crio,
    Podman,
    Docker,
    /// A named namespace made with `ip netns add` (or anything else under /run/netns).
    IpNetns,
    /// `/proc/<pid>/ns/net` (or `/proc/<pid>/task/<tid>/ns/net`): the namespace of that task.
    Process {
        pid: u32,
    },
}

/// What a pin path says about its sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRef {
    pub kind: SandboxKind,
    /// The file name under the netns directory (e.g. `cni-<uuid>`), or the pid as text.
    pub name: String,
    /// The sandbox UUID when the name carries one.
    pub uuid: Option<String>,
}

/// Parses a pin path. `None` for paths that follow no known convention.
pub fn sandbox_from_pin_path(path: &str) -> Option<SandboxRef> {
    let path = path.trim_end_matches('/');
    if let Some(rest) = path.strip_prefix("/proc/") {
        let mut parts = rest.split('/');
        let pid: u32 = parts.next()?.parse().ok()?;
        let tail: Vec<&str> = parts.collect();
        let is_net = matches!(tail.as_slice(), ["ns", "net"] | ["task", _, "ns", "net"]);
        return is_net.then(|| SandboxRef {
            kind: SandboxKind::Process { pid },
            name: pid.to_string(),
            uuid: None,
        });
    }
    let (dir, name) = path.rsplit_once('/')?;
    if name.is_empty() {
        return None;
    }
    let dir = dir.strip_prefix("/var").unwrap_or(dir);
    let uuid_in = |s: &str| is_uuid(s).then(|| s.to_string());
    // containerd's netns directory is configurable (`netns_mounts_under`), and `cni-<uuid>`
    // is distinctive enough to recognise anywhere.
    if let Some(u) = name.strip_prefix("cni-").and_then(uuid_in) {
        return Some(SandboxRef {
            kind: SandboxKind::Containerd,
            name: name.to_string(),
            uuid: Some(u),
        });
    }
    let (kind, uuid) = match dir {
        "/run/docker/netns" => (SandboxKind::Docker, None),
        "/run/netns" => {
            if let Some(u) = name.strip_prefix("cni-").and_then(uuid_in) {
                (SandboxKind::Containerd, Some(u))
            } else if let Some(u) = name.strip_prefix("netns-").and_then(uuid_in) {
                (SandboxKind::Podman, Some(u))
            } else if is_uuid(name) {
                (SandboxKind::Crio, Some(name.to_string()))
            } else {
                (SandboxKind::IpNetns, None)
            }
        }
        d if d.starts_with("/run/user/") && d.ends_with("/netns") => (
            SandboxKind::Podman,
            name.strip_prefix("netns-").and_then(uuid_in),
        ),
        _ => return None,
    };
    Some(SandboxRef {
        kind,
        name: name.to_string(),
        uuid,
    })
}

/// 8-4-4-4-12 hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(kind: SandboxKind, name: &str, uuid: Option<&str>) -> Option<SandboxRef> {
        Some(SandboxRef {
            kind,
            name: name.into(),
            uuid: uuid.map(String::from),
        })
    }

    #[test]
    fn runtime_conventions() {
        let u = "7c1e2d4b-9a0f-4b3e-8d61-2f5a6b7c8d9e";
        assert_eq!(
            sandbox_from_pin_path(&format!("/var/run/netns/cni-{u}")),
            r(SandboxKind::Containerd, &format!("cni-{u}"), Some(u))
        );
        assert_eq!(
            sandbox_from_pin_path(&format!("/run/netns/cni-{u}")),
            r(SandboxKind::Containerd, &format!("cni-{u}"), Some(u))
        );
        assert_eq!(
            sandbox_from_pin_path(&format!("/var/run/netns/{u}")),
            r(SandboxKind::Crio, u, Some(u))
        );
        assert_eq!(
            sandbox_from_pin_path(&format!("/run/netns/{u}")),
            r(SandboxKind::Crio, u, Some(u))
        );
        assert_eq!(
            sandbox_from_pin_path(&format!("/run/netns/netns-{u}")),
            r(SandboxKind::Podman, &format!("netns-{u}"), Some(u))
        );
        assert_eq!(
            sandbox_from_pin_path(&format!("/run/user/1000/netns/netns-{u}")),
            r(SandboxKind::Podman, &format!("netns-{u}"), Some(u))
        );
        assert_eq!(
            sandbox_from_pin_path("/var/run/docker/netns/5a1b2c3d4e5f"),
            r(SandboxKind::Docker, "5a1b2c3d4e5f", None)
        );
        assert_eq!(
            sandbox_from_pin_path("/run/netns/blue"),
            r(SandboxKind::IpNetns, "blue", None)
        );
        assert_eq!(
            sandbox_from_pin_path(&format!("/var/lib/containerd/netns/cni-{u}")),
            r(SandboxKind::Containerd, &format!("cni-{u}"), Some(u))
        );
        // cni- without a UUID is just a name.
        assert_eq!(
            sandbox_from_pin_path("/run/netns/cni-test"),
            r(SandboxKind::IpNetns, "cni-test", None)
        );
    }

    #[test]
    fn proc_links() {
        assert_eq!(
            sandbox_from_pin_path("/proc/4242/ns/net"),
            r(SandboxKind::Process { pid: 4242 }, "4242", None)
        );
        assert_eq!(
            sandbox_from_pin_path("/proc/4242/task/4250/ns/net"),
            r(SandboxKind::Process { pid: 4242 }, "4242", None)
        );
        assert_eq!(sandbox_from_pin_path("/proc/4242/ns/mnt"), None);
        assert_eq!(sandbox_from_pin_path("/proc/self/ns/net"), None);
    }

    #[test]
    fn unknown_paths() {
        for p in [
            "",
            "/",
            "/tmp/pin",
            "/run/netns/",
            "relative/netns/x",
            "/var/lib/netns/x",
        ] {
            assert_eq!(sandbox_from_pin_path(p), None, "{p}");
        }
        assert!(!is_uuid("7c1e2d4b-9a0f-4b3e-8d61-2f5a6b7c8d9"));
        assert!(!is_uuid("7c1e2d4b-9a0f-4b3e-8d61-2f5a6b7c8d9z"));
    }
}
