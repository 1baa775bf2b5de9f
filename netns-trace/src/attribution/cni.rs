//! libcni's result cache: `/var/lib/cni/results/<network>-<containerid>-<ifname>`.
//!
//! Each file is libcni's `cachedInfo` as JSON:
//! `{"kind":"cniCacheV1","containerId":…,"config":<base64 network config>,"ifName":…,
//!   "networkName":…,"netns":…(libcni ≥ 1.1),"cniArgs":[[k,v],…],"capabilityArgs":{…},
//!   "result":{"cniVersion":…,"interfaces":[{"name","mac","sandbox"}],"ips":[{"address":"10.0.0.2/24",…}],…}}`.
//! The cache outlives the sandbox when a CNI DEL never ran, which is itself a leak signal.

use std::net::IpAddr;
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::AttributionError;

/// One cached CNI ADD result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniCacheEntry {
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    /// `name` from the decoded network config (normally equal to `network_name`).
    pub config_name: Option<String>,
    /// The netns path CNI was called with: the `netns` field, else the sandbox of the
    /// result's interface with that name.
    pub netns_path: Option<String>,
    pub ips: Vec<CniIp>,
    /// From `cniArgs` (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID) when present.
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniIp {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
}

/// The JSON shape, as libcni writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CachedInfo {
    kind: String,
    container_id: String,
    #[serde(default)]
    config: Option<String>,
    if_name: String,
    network_name: String,
    #[serde(default)]
    netns: Option<String>,
    #[serde(default)]
    cni_args: Vec<(String, String)>,
    #[serde(default)]
    result: Option<RawResult>,
}

#[derive(Deserialize, Default)]
struct RawResult {
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    ips: Vec<RawIp>,
}

#[derive(Deserialize)]
struct RawInterface {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct RawIp {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

/// Parses one cache file's content. `origin` names it in errors.
pub fn parse_cni_cache(content: &[u8], origin: &str) -> Result<CniCacheEntry, AttributionError> {
    let bad = |reason: String| AttributionError::BadCniCache {
        path: origin.to_string(),
        reason,
    };
    let info: CachedInfo = serde_json::from_slice(content).map_err(|e| bad(e.to_string()))?;
    if info.kind != "cniCacheV1" {
        return Err(bad(format!(
            "kind {:?}, expected \"cniCacheV1\"",
            info.kind
        )));
    }
    let config_name = match &info.config {
        Some(b64) => Some(config_name_of(b64).map_err(bad)?),
        None => None,
    };
    let result = info.result.unwrap_or_default();
    let mut ips = Vec::with_capacity(result.ips.len());
    for ip in &result.ips {
        let (address, prefix_len) =
            parse_cidr(&ip.address).ok_or_else(|| bad(format!("bad address {:?}", ip.address)))?;
        let gateway = ip.gateway.as_deref().and_then(|g| g.parse().ok());
        ips.push(CniIp {
            address,
            prefix_len,
            gateway,
        });
    }
    let netns_path = info.netns.clone().filter(|s| !s.is_empty()).or_else(|| {
        result
            .interfaces
            .iter()
            .find(|i| i.name == info.if_name)
            .and_then(|i| i.sandbox.clone())
            .filter(|s| !s.is_empty())
    });
    let arg = |k: &str| {
        info.cni_args
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    Ok(CniCacheEntry {
        pod_namespace: arg("K8S_POD_NAMESPACE"),
        pod_name: arg("K8S_POD_NAME"),
        pod_uid: arg("K8S_POD_UID"),
        container_id: info.container_id,
        if_name: info.if_name,
        network_name: info.network_name,
        config_name,
        netns_path,
        ips,
    })
}

/// The `name` of a base64-encoded network config (a single config or a conflist).
fn config_name_of(b64: &str) -> Result<String, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("config is not base64: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|e| format!("config is not JSON: {e}"))?;
    v.get("name")
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| "config has no name".to_string())
}

/// `10.244.1.17/24` → (10.244.1.17, 24).
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// Reads every cache entry in `dir` (normally /var/lib/cni/results). Files that do not
/// parse are skipped with a warning; a missing directory is simply empty.
pub fn read_cni_cache_dir(dir: &Path) -> Vec<CniCacheEntry> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!("{}: {e}", dir.display());
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        let origin = path.display().to_string();
        let parsed = std::fs::read(&path)
            .map_err(|source| AttributionError::Io {
                path: origin.clone(),
                source,
            })
            .and_then(|bytes| parse_cni_cache(&bytes, &origin));
        match parsed {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!("skipping CNI cache file: {e}"),
        }
    }
    out
}

/// The cache entry whose netns path is `pin_path` (a pin found in mountinfo).
pub fn find_by_netns_path<'a>(
    entries: &'a [CniCacheEntry],
    pin_path: &str,
) -> Option<&'a CniCacheEntry> {
    let canon = |p: &str| p.strip_prefix("/var").unwrap_or(p).to_string();
    let want = canon(pin_path);
    entries
        .iter()
        .find(|e| e.netns_path.as_deref().map(canon).as_deref() == Some(want.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/attribution/cni-results")
    }

    #[test]
    fn reads_the_directory_and_skips_bad_files() {
        let entries = read_cni_cache_dir(&dir());
        // 5 files: 2 good, one truncated, one of another kind, one with a bad config.
        assert_eq!(entries.len(), 2, "{entries:#?}");

        let c = &entries[0];
        assert_eq!(
            c.container_id,
            "3f9b2c7d1e4a5b6c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c"
        );
        assert_eq!(c.network_name, "cbr0");
        assert_eq!(c.config_name.as_deref(), Some("cbr0"));
        assert_eq!(c.if_name, "eth0");
        assert_eq!(
            c.netns_path.as_deref(),
            Some("/var/run/netns/cni-7c1e2d4b-9a0f-4b3e-8d61-2f5a6b7c8d9e")
        );
        assert_eq!(
            c.ips,
            vec![CniIp {
                address: "10.244.1.17".parse().unwrap(),
                prefix_len: 24,
                gateway: Some("10.244.1.1".parse().unwrap())
            }]
        );
        assert_eq!(c.pod_namespace.as_deref(), Some("default"));
        assert_eq!(c.pod_name.as_deref(), Some("web-7d4b9c-x2x8q"));
        assert_eq!(
            c.pod_uid.as_deref(),
            Some("5f8a9c2e-3b1d-4e7f-a6c8-9d0e1f2a3b4c")
        );

        // CRI-O: no netns field, so the sandbox of eth0 in the result names it; dual stack.
        let o = &entries[1];
        assert_eq!(o.network_name, "crio");
        assert_eq!(
            o.netns_path.as_deref(),
            Some("/var/run/netns/b4e1f0a2-6c3d-4e5f-a718-29304a5b6c7d")
        );
        assert_eq!(o.ips.len(), 2);
        assert_eq!(o.ips[0].address, "10.85.0.23".parse::<IpAddr>().unwrap());
        assert_eq!(o.ips[0].prefix_len, 16);
        assert_eq!(o.ips[1].address, "1100:200::17".parse::<IpAddr>().unwrap());
        assert_eq!(o.ips[1].prefix_len, 24);

        assert_eq!(
            find_by_netns_path(
                &entries,
                "/run/netns/cni-7c1e2d4b-9a0f-4b3e-8d61-2f5a6b7c8d9e"
            )
            .map(|e| e.network_name.as_str()),
            Some("cbr0")
        );
        assert!(find_by_netns_path(&entries, "/run/netns/other").is_none());
    }

    #[test]
    fn rejects_bad_entries_with_reasons() {
        let err = |s: &str| parse_cni_cache(s.as_bytes(), "t").unwrap_err().to_string();
        assert!(err("{").contains("EOF"));
        assert!(
            err(r#"{"kind":"other","containerId":"a","ifName":"e","networkName":"n"}"#)
                .contains("cniCacheV1")
        );
        assert!(err(r#"{"kind":"cniCacheV1","containerId":"a","config":"%%%","ifName":"e","networkName":"n"}"#).contains("base64"));
        assert!(err(r#"{"kind":"cniCacheV1","containerId":"a","ifName":"e","networkName":"n","result":{"ips":[{"address":"10.0.0.1/40"}]}}"#).contains("bad address"));
        assert!(
            err(r#"{"kind":"cniCacheV1","ifName":"e","networkName":"n"}"#).contains("containerId")
        );
    }

    #[test]
    fn minimal_entry_without_result() {
        let e = parse_cni_cache(
            br#"{"kind":"cniCacheV1","containerId":"a","ifName":"eth0","networkName":"n"}"#,
            "t",
        )
        .unwrap();
        assert_eq!((e.ips.len(), e.netns_path, e.config_name), (0, None, None));
    }

    #[test]
    fn owner_takes_the_network_of_its_container() {
        let entries = read_cni_cache_dir(&dir());
        let mut owner = crate::attribution::owner_from_cgroup(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5f8a9c2e_3b1d_4e7f_a6c8_9d0e1f2a3b4c.slice/cri-containerd-3f9b2c7d1e4a5b6c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c.scope",
        );
        assert!(owner.attach_cni(&entries));
        assert_eq!(owner.cni_network.as_deref(), Some("cbr0"));
        let mut stranger = crate::attribution::owner_from_cgroup("/system.slice/cron.service");
        assert!(!stranger.attach_cni(&entries));
        assert!(read_cni_cache_dir(Path::new("/nonexistent/cni/results")).is_empty());
    }
}
