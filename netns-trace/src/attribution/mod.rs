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

/// Where a pin path is evidence of whose namespace it is: the one rule every path-based
/// attribution follows (the sandbox a path names, the CNI cache entry whose netns path it
/// is, the namespace a CNI call's CNI_NETNS names).
///
/// containerd, CRI-O, podman (as root) and iproute2 pin a node's namespaces in the node's
/// mount namespace: pid 1's (kthreadd's where pid 1 is hidden). Only a process with
/// CAP_SYS_ADMIN over the initial user namespace can add a mount there. A pod with a mount
/// namespace of its own can mount anything at the same path inside it (its own namespace at
/// `/run/netns/cni-<victim>`); such a pin is still a pin, shown with its mount namespace, but
/// names no sandbox, pod or network. Copies of the node's pins propagated into other mount
/// namespaces name nothing either; the node's own copy does.
///
/// When the node's mount namespace is not known (traces written before it was recorded, or
/// neither pid 1 nor kthreadd readable), a path counts in any mount namespace, as it did
/// before. Rootless podman pins in its own user and mount namespace and so gets no sandbox
/// from its paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeMountNs(Option<u32>);

impl NodeMountNs {
    /// The node's mount namespace inum; 0 means unknown.
    pub fn new(inum: u32) -> Self {
        Self((inum != 0).then_some(inum))
    }

    /// Whether a pin at some path in mount namespace `pin_mnt_ns` (None: unknown) speaks for
    /// the sandbox its path names.
    pub fn vouches_for(self, pin_mnt_ns: Option<u32>) -> bool {
        match self.0 {
            None => true,
            Some(node) => pin_mnt_ns == Some(node),
        }
    }
}

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
/// `namespaces[].owner`; every field is null when unknown.
///
/// Sources, in order of trust: the cgroup of a member process (recorded while it was alive),
/// the sandbox a pin path names, and the CNI result cache entry of that sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Kubernetes pod UID (with dashes).
    pub pod_uid: Option<String>,
    /// `guaranteed`, `burstable` or `besteffort`.
    pub qos: Option<String>,
    pub container_id: Option<String>,
    /// `containerd`, `crio`, `docker` or `podman`.
    pub runtime: Option<String>,
    /// The cgroup path the pod and container were read from.
    pub cgroup: Option<String>,
    /// The CNI network the sandbox was attached to (from the CNI result cache).
    pub cni_network: Option<String>,
    /// `cni_network` came from the sandbox's loopback attachment (containerd's
    /// `cni-loopback`): its pod network, when seen, names it instead.
    #[serde(skip)]
    pub(crate) cni_network_is_loopback: bool,
    /// The sandbox a pin path names: the UUID of `cni-<uuid>` / CRI-O's `<uuid>`, docker's
    /// sandbox key, or the pin's file name.
    pub sandbox_id: Option<String>,
    /// From the CNI result cache's K8S_POD_NAMESPACE / K8S_POD_NAME arguments.
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
}

impl Owner {
    /// Nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Nothing is known but the root cgroup (`/`), which every process outside a container
    /// sits in on a cgroup v1/hybrid host's unified hierarchy: that names no owner.
    pub fn says_nothing(&self) -> bool {
        self.is_empty()
            || (self
                .cgroup
                .as_deref()
                .is_some_and(|c| c.trim_end_matches('/').is_empty())
                && Owner {
                    cgroup: None,
                    ..self.clone()
                }
                .is_empty())
    }

    /// How much a cgroup-derived owner says: a pod and a container beat either alone.
    pub fn cgroup_rank(&self) -> u8 {
        u8::from(self.pod_uid.is_some()) * 2 + u8::from(self.container_id.is_some())
    }

    /// Takes the cgroup-derived fields of `from` when it says more than what is known (the
    /// first pod member, normally the sandbox's pause process, wins ties). Returns whether
    /// anything changed.
    pub fn merge_cgroup(&mut self, from: &Owner) -> bool {
        let current = self
            .cgroup
            .as_deref()
            .map(|c| owner_from_cgroup(c).cgroup_rank());
        if current.is_some_and(|rank| from.cgroup_rank() <= rank) || from.cgroup.is_none() {
            return false;
        }
        let before = self.clone();
        self.pod_uid = from.pod_uid.clone().or(self.pod_uid.take());
        self.qos = from.qos.clone().or(self.qos.take());
        self.container_id = from.container_id.clone().or(self.container_id.take());
        self.runtime = from.runtime.clone().or(self.runtime.take());
        self.cgroup = from.cgroup.clone();
        *self != before
    }

    /// Fills what is still unknown from the sandbox a pin path names. Returns whether
    /// anything changed.
    pub fn merge_sandbox(&mut self, sandbox: &SandboxRef) -> bool {
        let before = self.clone();
        if self.sandbox_id.is_none() && !matches!(sandbox.kind, SandboxKind::Process { .. }) {
            self.sandbox_id = Some(sandbox.uuid.clone().unwrap_or_else(|| sandbox.name.clone()));
        }
        if self.runtime.is_none() {
            self.runtime = match sandbox.kind {
                SandboxKind::Containerd => Some("containerd".into()),
                SandboxKind::Crio => Some("crio".into()),
                SandboxKind::Docker => Some("docker".into()),
                SandboxKind::Podman => Some("podman".into()),
                SandboxKind::IpNetns | SandboxKind::Process { .. } => None,
            };
        }
        *self != before
    }

    /// Fills what is still unknown from the CNI cache entry of this namespace's sandbox (the
    /// entry's container id is the sandbox's, which is what CNI was called with). Returns
    /// whether anything changed.
    pub fn merge_cni(&mut self, e: &CniCacheEntry) -> bool {
        let before = self.clone();
        let loopback = e.if_name == "lo";
        if self.cni_network.is_none() || (self.cni_network_is_loopback && !loopback) {
            self.cni_network = Some(e.network_name.clone());
            self.cni_network_is_loopback = loopback;
        }
        if self.container_id.is_none() {
            self.container_id = Some(e.container_id.clone());
        }
        if self.pod_uid.is_none() {
            self.pod_uid = e.pod_uid.clone();
        }
        if self.pod_namespace.is_none() {
            self.pod_namespace = e.pod_namespace.clone();
        }
        if self.pod_name.is_none() {
            self.pod_name = e.pod_name.clone();
        }
        *self != before
    }

    /// Fills what is still unknown from a CNI call that named this namespace: its
    /// CNI_CONTAINERID is the sandbox's container id, its CNI_ARGS the pod's. Returns whether
    /// anything changed.
    pub fn merge_cni_call(
        &mut self,
        container_id: &str,
        pod_namespace: Option<&str>,
        pod_name: Option<&str>,
        pod_uid: Option<&str>,
    ) -> bool {
        let before = self.clone();
        if self.container_id.is_none() && !container_id.is_empty() {
            self.container_id = Some(container_id.to_string());
        }
        let fill = |field: &mut Option<String>, v: Option<&str>| {
            if field.is_none() {
                *field = v.filter(|v| !v.is_empty()).map(str::to_string);
            }
        };
        fill(&mut self.pod_uid, pod_uid);
        fill(&mut self.pod_namespace, pod_namespace);
        fill(&mut self.pod_name, pod_name);
        *self != before
    }

    /// Fills `cni_network` (and the other CNI fields) from the cache entry of this owner's
    /// container. Returns whether one matched.
    pub fn attach_cni(&mut self, entries: &[CniCacheEntry]) -> bool {
        let Some(id) = &self.container_id else {
            return false;
        };
        match entries.iter().find(|e| &e.container_id == id) {
            Some(e) => {
                let e = e.clone();
                self.merge_cni(&e);
                true
            }
            None => false,
        }
    }

    /// `pod <uid> container <id12>` (or the parts that are known), for summaries and tables.
    pub fn short(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(uid) = &self.pod_uid {
            parts.push(format!("pod {uid}"));
        }
        if let (Some(ns), Some(name)) = (&self.pod_namespace, &self.pod_name) {
            parts.push(format!("({ns}/{name})"));
        }
        if let Some(id) = &self.container_id {
            parts.push(format!("container {id}"));
        }
        if parts.is_empty()
            && let Some(s) = &self.sandbox_id
        {
            parts.push(format!("sandbox {s}"));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

#[cfg(test)]
mod tests;
