//! Pod and container identity from a cgroup path.
//!
//! Shapes handled (kubelet's two cgroup drivers, three runtimes):
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID_WITH_UNDERSCORES>.slice/cri-containerd-<ID>.scope`
//!   (also `crio-<ID>.scope`, `crio-conmon-<ID>.scope`, `docker-<ID>.scope`; guaranteed pods sit
//!   directly under `kubepods.slice` as `kubepods-pod<UID>.slice`; kind nests everything under
//!   `kubelet.slice/kubelet-kubepods…`).
//! - cgroupfs: `/kubepods/burstable/pod<UID>/<ID>`, `/kubepods/pod<UID>/<ID>` (guaranteed).
//! - containerd with systemd cgroups inside another unit: `…/kubepods-besteffort-pod<UID>.slice:cri-containerd:<ID>`.
//! - CRI-O with cgroupfs: `/kubepods/besteffort/pod<UID>/crio-<ID>` (and `crio-conmon-<ID>`).
//! - plain docker: `/docker/<ID>` (cgroupfs), `/system.slice/docker-<ID>.scope` (systemd).
//! - podman: `/libpod_parent/libpod-<ID>` (cgroupfs), `/machine.slice/libpod-<ID>.scope[/container]`
//!   (systemd), and its monitor `libpod-conmon-<ID>[.scope]`.
//!
//! On cgroup v1 and hybrid hosts these paths show in the v1 hierarchies of /proc/PID/cgroup,
//! beside a `0::/` that says nothing: [`parse_cgroup_path`] picks the line that says the most.

use super::Owner;
pub use crate::snapshot::procfs::parse_cgroup_path;

/// Parses a /proc/PID/cgroup file into an owner (picking the most telling hierarchy).
pub fn owner_from_proc_cgroup(content: &str) -> Option<Owner> {
    parse_cgroup_path(content).map(|p| owner_from_cgroup(&p))
}

/// Reads what a cgroup path says about its pod and container. Fields that the path does
/// not show stay `None`; `cgroup` is always the path itself.
pub fn owner_from_cgroup(path: &str) -> Owner {
    let mut owner = Owner {
        cgroup: Some(path.to_string()),
        ..Default::default()
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let under_kubepods = segments.iter().any(|s| is_kubepods_root(s));

    for (i, seg) in segments.iter().enumerate() {
        // "slice:runtime:id" (containerd with systemd cgroups nested in a service).
        let mut colon_parts = seg.splitn(3, ':');
        let unit = colon_parts.next().unwrap_or(seg);
        if let (Some(runtime), Some(id)) = (colon_parts.next(), colon_parts.next())
            && is_container_id(id)
        {
            set_container(&mut owner, runtime, id);
        }

        if let Some((qos, uid)) = pod_slice(unit) {
            owner.pod_uid = Some(uid);
            owner.qos.get_or_insert(qos);
        } else if let Some(qos) = qos_slice(unit) {
            owner.qos = Some(qos.to_string());
        } else if let Some(uid) = unit.strip_prefix("pod").filter(|u| looks_like_uid(u)) {
            // cgroupfs: /kubepods[/qos]/pod<uid>
            owner.pod_uid = Some(uid.to_string());
            let qos = segments[..i].last().and_then(|p| match *p {
                "burstable" | "besteffort" => Some(p.to_string()),
                _ => None,
            });
            owner.qos = Some(qos.unwrap_or_else(|| "guaranteed".to_string()));
        } else if let Some((runtime, id)) = runtime_unit(unit) {
            set_container(&mut owner, runtime, id);
        } else if is_container_id(unit) && owner.container_id.is_none() {
            // cgroupfs: the container directory is the bare id. Under /docker it is docker;
            // under /kubepods the runtime is not in the path.
            let parent = if i > 0 { segments[i - 1] } else { "" };
            if parent == "docker" {
                set_container(&mut owner, "docker", unit);
            } else if under_kubepods {
                owner.container_id = Some(unit.to_string());
            }
        }
    }
    owner
}

/// A runtime's own cgroup for one container, systemd scope or cgroupfs directory:
/// `cri-containerd-<ID>.scope`, `crio-<ID>[.scope]`, `docker-<ID>.scope`, `libpod-<ID>[.scope]`,
/// and the monitors `crio-conmon-<ID>` / `libpod-conmon-<ID>`, which name the container they
/// watch. Returns (runtime, id).
fn runtime_unit(unit: &str) -> Option<(&'static str, &str)> {
    let name = unit.strip_suffix(".scope").unwrap_or(unit);
    [
        ("cri-containerd-", "containerd"),
        ("crio-conmon-", "crio"),
        ("crio-", "crio"),
        ("docker-", "docker"),
        ("libpod-conmon-", "podman"),
        ("libpod-", "podman"),
    ]
    .into_iter()
    .find_map(|(prefix, runtime)| {
        let id = name.strip_prefix(prefix)?;
        is_container_id(id).then_some((runtime, id))
    })
}

fn set_container(owner: &mut Owner, runtime: &str, id: &str) {
    let runtime = match runtime {
        "cri-containerd" | "containerd" => "containerd",
        "crio" | "cri-o" => "crio",
        "docker" => "docker",
        "podman" => "podman",
        _ => return,
    };
    owner.runtime = Some(runtime.to_string());
    owner.container_id = Some(id.to_string());
}

fn is_kubepods_root(seg: &str) -> bool {
    seg == "kubepods" || seg == "kubepods.slice" || seg == "kubelet-kubepods.slice"
}

/// `kubepods-burstable.slice` / `kubelet-kubepods-besteffort.slice` → QoS class.
fn qos_slice(unit: &str) -> Option<&'static str> {
    let name = unit.strip_suffix(".slice")?;
    let name = name.strip_prefix("kubelet-").unwrap_or(name);
    match name {
        "kubepods-burstable" => Some("burstable"),
        "kubepods-besteffort" => Some("besteffort"),
        _ => None,
    }
}

/// `kubepods-burstable-pod<uid_>.slice` → (qos, uid with dashes).
fn pod_slice(unit: &str) -> Option<(String, String)> {
    let name = unit.strip_suffix(".slice")?;
    let name = name.strip_prefix("kubelet-").unwrap_or(name);
    let rest = name.strip_prefix("kubepods-")?;
    let (qos, uid) = if let Some(uid) = rest.strip_prefix("pod") {
        ("guaranteed", uid)
    } else if let Some(uid) = rest.strip_prefix("burstable-pod") {
        ("burstable", uid)
    } else if let Some(uid) = rest.strip_prefix("besteffort-pod") {
        ("besteffort", uid)
    } else {
        return None;
    };
    // systemd escapes '-' in unit names, so kubelet writes the UID with '_'.
    let uid = uid.replace('_', "-");
    looks_like_uid(&uid).then(|| (qos.to_string(), uid))
}

/// A pod UID: 36 characters of hex and dashes (static pods use a 32-hex hash instead).
fn looks_like_uid(s: &str) -> bool {
    (s.len() == 36 || s.len() == 32) && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Container ids are 64 lowercase hex characters.
fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/data/attribution/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn owner(name: &str) -> Owner {
        owner_from_proc_cgroup(&fixture(name)).expect(name)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn systemd_containerd_burstable() {
        let o = owner("cgroup-v2-systemd-containerd-burstable");
        assert_eq!(o.pod_uid, s("5f8a9c2e-3b1d-4e7f-a6c8-9d0e1f2a3b4c"));
        assert_eq!(o.qos, s("burstable"));
        assert_eq!(o.runtime, s("containerd"));
        assert_eq!(
            o.container_id,
            s("3f9b2c7d1e4a5b6c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c")
        );
        assert!(
            o.cgroup
                .as_deref()
                .unwrap()
                .starts_with("/kubepods.slice/kubepods-burstable.slice/")
        );
        assert_eq!(o.cni_network, None);
    }

    #[test]
    fn systemd_crio_besteffort() {
        let o = owner("cgroup-v2-systemd-crio-besteffort");
        assert_eq!(o.pod_uid, s("0b7c3e21-9d4f-4a6b-8c2e-1f3a5b7d9e0c"));
        assert_eq!(o.qos, s("besteffort"));
        assert_eq!(o.runtime, s("crio"));
        assert_eq!(
            o.container_id,
            s("a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a")
        );
    }

    #[test]
    fn systemd_docker_guaranteed() {
        let o = owner("cgroup-v2-systemd-docker-guaranteed");
        assert_eq!(o.pod_uid, s("8e2d4c6a-1b3f-4d5e-9a7c-0e2f4a6c8b1d"));
        assert_eq!(o.qos, s("guaranteed"));
        assert_eq!(o.runtime, s("docker"));
        assert_eq!(
            o.container_id,
            s("c0ffee1234567890abcdef1234567890abcdef1234567890abcdef1234567890")
        );
    }

    #[test]
    fn v1_systemd_guaranteed_uses_a_v1_hierarchy_not_the_empty_unified_one() {
        let o = owner("cgroup-v1-systemd-containerd-guaranteed");
        assert_eq!(o.pod_uid, s("2c4e6a8b-0d1f-4a3c-b5e7-9f1a3c5e7b9d"));
        assert_eq!(o.qos, s("guaranteed"));
        assert_eq!(o.runtime, s("containerd"));
        assert_eq!(
            o.container_id,
            s("7e6d5c4b3a2918f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c")
        );
    }

    #[test]
    fn cgroupfs_burstable_and_guaranteed() {
        let o = owner("cgroup-v1-cgroupfs-burstable");
        assert_eq!(o.pod_uid, s("7d3a2c1b-0e9f-4a8b-9c7d-6e5f4a3b2c1d"));
        assert_eq!(o.qos, s("burstable"));
        assert_eq!(
            o.container_id,
            s("8f14e45fceea167a5a36dedd4bea2543f2c1a0b9d8e7f6a5b4c3d2e1f0a9b8c7")
        );
        assert_eq!(o.runtime, None, "cgroupfs paths do not name the runtime");

        let g = owner("cgroup-v2-cgroupfs-guaranteed");
        assert_eq!(g.pod_uid, s("4a6c8e0b-2d4f-4b6d-8f0a-c2e4a6b8d0f2"));
        assert_eq!(g.qos, s("guaranteed"));
        assert_eq!(
            g.container_id,
            s("d41d8cd98f00b204e9800998ecf8427ed41d8cd98f00b204e9800998ecf8427e")
        );
    }

    #[test]
    fn kind_nested_colon_form() {
        let o = owner("cgroup-v2-kind-nested");
        assert_eq!(o.pod_uid, s("9c1e3a5b-7d9f-4b1d-a3c5-e7f9b1d3f5a7"));
        assert_eq!(o.qos, s("besteffort"));
        assert_eq!(o.runtime, s("containerd"));
        assert_eq!(
            o.container_id,
            s("5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d")
        );
    }

    #[test]
    fn plain_docker_and_host_services() {
        let d = owner("cgroup-v1-docker-plain");
        assert_eq!(d.runtime, s("docker"));
        assert_eq!(
            d.container_id,
            s("9d3c5e7a1b2f4d6c8e0a2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a")
        );
        assert_eq!(d.pod_uid, None);

        let h = owner("cgroup-v2-host-service");
        assert_eq!(
            h,
            Owner {
                cgroup: Some("/system.slice/containerd.service".into()),
                ..Default::default()
            }
        );
    }

    /// Every layout on a cgroup v1 or hybrid host, where the unified line says little or
    /// nothing, and podman's on both: the owner comes from the line that says the most.
    /// (pod UID, QoS, runtime, container id) per fixture; the podman ones were read from
    /// /proc/PID/cgroup of a container (and its conmon) that podman 4.3 with runc ran on a
    /// hybrid host.
    #[test]
    fn v1_hybrid_and_podman_layouts() {
        const POD_1: &str = "3e0c6f4a-8b2d-4f1e-9a7c-5d6b8e0f2a4c";
        const CTR_1: &str = "1f2e3d4c5b6a79880716253443526170819a0b1c2d3e4f5061728394a5b6c7d8";
        const POD_2: &str = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
        const CTR_2: &str = "aa11bb22cc33dd44ee55ff6600778899aabbccddeeff00112233445566778899";
        const PODMAN: &str = "d3083dae08245a69d75b1abb1f8cf17a54b810a1aadfbf45d9ba4b398b71e50b";
        const PODMAN_SYSTEMD: &str =
            "5e4d3c2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0a9f8e7d6c5b4a392817060";
        type Expected = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: [(&str, Expected); 11] = [
            (
                "cgroup-v1-cgroupfs-besteffort-containerd",
                (Some(POD_1), Some("besteffort"), None, Some(CTR_1)),
            ),
            (
                "cgroup-v1-systemd-besteffort-containerd",
                (
                    Some(POD_1),
                    Some("besteffort"),
                    Some("containerd"),
                    Some(CTR_1),
                ),
            ),
            (
                "cgroup-hybrid-v1-only-runc-under-containerd-service",
                (Some(POD_1), Some("besteffort"), None, Some(CTR_1)),
            ),
            (
                "cgroup-v1-cgroupfs-burstable-crio",
                (Some(POD_2), Some("burstable"), Some("crio"), Some(CTR_2)),
            ),
            (
                "cgroup-v1-systemd-guaranteed-crio-conmon",
                (Some(POD_2), Some("guaranteed"), Some("crio"), Some(CTR_2)),
            ),
            (
                "cgroup-v1-systemd-docker",
                (
                    None,
                    None,
                    Some("docker"),
                    Some("0a9b8c7d6e5f40312233445566778899aabbccddeeff0011223344556677889a"),
                ),
            ),
            (
                "cgroup-hybrid-podman-runc-cgroupfs",
                (None, None, Some("podman"), Some(PODMAN)),
            ),
            (
                "cgroup-hybrid-podman-conmon-cgroupfs",
                (None, None, None, None),
            ),
            (
                "cgroup-v2-systemd-podman",
                (None, None, Some("podman"), Some(PODMAN_SYSTEMD)),
            ),
            (
                "cgroup-v2-systemd-podman-conmon",
                (None, None, Some("podman"), Some(PODMAN_SYSTEMD)),
            ),
            ("cgroup-hybrid-host-session", (None, None, None, None)),
        ];
        for (name, (pod_uid, qos, runtime, container_id)) in cases {
            let o = owner(name);
            assert_eq!(
                (
                    o.pod_uid.as_deref(),
                    o.qos.as_deref(),
                    o.runtime.as_deref(),
                    o.container_id.as_deref()
                ),
                (pod_uid, qos, runtime, container_id),
                "{name}: {o:?}"
            );
            // The path kept is one the file lists, and the one that said all that.
            let path = o.cgroup.as_deref().unwrap();
            assert!(
                fixture(name)
                    .lines()
                    .any(|l| l.ends_with(&format!(":{path}"))),
                "{name}: {path}"
            );
        }
        // Where nothing names a container, a path below the root still beats `/`: it says
        // which service or slice the process ran in.
        assert_eq!(
            owner("cgroup-hybrid-podman-conmon-cgroupfs")
                .cgroup
                .as_deref(),
            Some("/libpod_parent/conmon")
        );
        assert_eq!(
            owner("cgroup-hybrid-host-session").cgroup.as_deref(),
            Some("/user.slice/user-0.slice")
        );
    }

    #[test]
    fn kind_kubelet_slice_prefix() {
        let o = owner_from_cgroup(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice/cri-containerd-0000000000000000000000000000000000000000000000000000000000000001.scope",
        );
        assert_eq!(o.pod_uid, s("11111111-2222-3333-4444-555555555555"));
        assert_eq!(o.qos, s("burstable"));
        assert_eq!(o.runtime, s("containerd"));
    }

    #[test]
    fn nonsense_does_not_attribute() {
        for p in [
            "",
            "/",
            "/kubepods.slice/kubepods-podNOTAUID.slice",
            "/kubepods/burstable/podxyz/abc",
            "/docker/short",
            "::::",
            "/user.slice/user-0.slice/session-1.scope",
        ] {
            let o = owner_from_cgroup(p);
            assert_eq!(
                (o.pod_uid, o.container_id, o.runtime),
                (None, None, None),
                "{p}"
            );
        }
        assert_eq!(owner_from_proc_cgroup(""), None);
    }

    #[test]
    fn owner_serializes_as_json_with_every_field() {
        let o = owner("cgroup-v2-systemd-crio-besteffort");
        let v: serde_json::Value = serde_json::to_value(&o).unwrap();
        for k in [
            "pod_uid",
            "qos",
            "container_id",
            "runtime",
            "cgroup",
            "cni_network",
            "sandbox_id",
            "pod_namespace",
            "pod_name",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(serde_json::from_value::<Owner>(v).unwrap(), o);
    }

    #[test]
    fn a_colon_unit_without_a_container_id_names_no_container() {
        let slice = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b7c3e21_9d4f_4a6b_8c2e_1f3a5b7d9e0c.slice";
        for tail in [
            ":cri-containerd:",
            ":cri-containerd:xyz",
            ":cri-containerd:../../etc",
        ] {
            let o = owner_from_cgroup(&format!("{slice}{tail}"));
            assert_eq!(o.container_id, None, "{tail}");
            assert_eq!(o.runtime, None, "{tail}");
            assert_eq!(
                o.pod_uid,
                s("0b7c3e21-9d4f-4a6b-8c2e-1f3a5b7d9e0c"),
                "{tail}"
            );
        }
    }
}
