//! Who owns a namespace: the pod and container behind its members' cgroups, the sandbox a
//! pin path names, and the CNI network a container was attached to.
//!
//! Everything here parses real on-disk formats; nothing touches namespaces.
//! - [`cgroup`]: /proc/PID/cgroup paths (v1 and v2; systemd and cgroupfs drivers).
//! - [`sandbox`]: runtime and sandbox identity from an nsfs pin path.
//! - [`cni`]: libcni's result cache (/var/lib/cni/results).

pub mod cgroup;
pub mod cni;
pub mod sandbox;

use serde::{Deserialize, Serialize};

pub use cgroup::{owner_from_cgroup, owner_from_proc_cgroup};
pub use cni::{CniCacheEntry, CniIp, find_by_netns_path, parse_cni_cache, read_cni_cache_dir};
pub use sandbox::{SandboxKind, SandboxRef, sandbox_from_pin_path};

#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a CNI cache entry: {reason}")]
    BadCniCache { path: String, reason: String },
}

/// The owner of a namespace as far as the node can tell. Serialized as JSON
/// `namespaces[].owner`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Kubernetes pod UID (with dashes).
    pub pod_uid: Option<String>,
    /// `guaranteed`, `burstable` or `besteffort`.
    pub qos: Option<String>,
    pub container_id: Option<String>,
    /// `containerd`, `crio` or `docker`.
    pub runtime: Option<String>,
    /// The cgroup path the rest was read from.
    pub cgroup: String,
    /// The CNI network the container was attached to (from the CNI result cache).
    pub cni_network: Option<String>,
}

impl Owner {
    /// Fills `cni_network` from the cache entry of this owner's container (the sandbox's
    /// container id is what CNI was called with). Returns whether one matched.
    pub fn attach_cni(&mut self, entries: &[CniCacheEntry]) -> bool {
        let Some(id) = &self.container_id else {
            return false;
        };
        match entries.iter().find(|e| &e.container_id == id) {
            Some(e) => {
                self.cni_network = Some(e.network_name.clone());
                true
            }
            None => false,
        }
    }
}
