//! The CNI incident of tests/cni_plugins.rs, as facts and as the checks of what netns-trace must
//! say about it. The live test checks `watch` and `report` with them; in a guest it writes the
//! facts beside its trace (the `cni-incident` fixture's sidecar), and
//! tests/recorded_traces.rs checks the fixture's report with the same functions.
//!
//! The incident: pod A's pause owns a namespace with eth0 (bridge, host-local), an extra bind
//! mount pins it, the pause is SIGKILLed, the runtime's DEL gets the dead /proc/PID/ns/net
//! (the plugins release the IP and succeed; eth0 stays in the pinned namespace), and pod B gets
//! the same IP. In its dual-stack form (host-local with an IPv4 and an IPv6 range) pod B also
//! gets pod A's IPv6 address.
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{names_netns, netns_cookie, netns_exists, ns_inum};

/// A namespace as the kernel names it: inode number, and net_cookie where the kernel has
/// SO_NETNS_COOKIE (5.14+); inode numbers are reused, cookies are not.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct NetnsId {
    pub inum: u64,
    pub cookie: Option<u64>,
}

impl NetnsId {
    pub fn of(netns_file: &Path) -> Self {
        Self {
            inum: ns_inum(netns_file).unwrap_or_else(|| panic!("stat {}", netns_file.display())),
            cookie: netns_cookie(netns_file),
        }
    }

    /// Is the collector id `id` this namespace?
    pub fn is(&self, id: &Value) -> bool {
        id.as_str()
            .is_some_and(|id| names_netns(id, self.inum, self.cookie))
    }

    pub fn exists(&self) -> bool {
        netns_exists(self.inum, self.cookie)
    }
}

/// A CLOCK_MONOTONIC interval (`common::monotonic_ns`, the clock of netns-trace's `*_ns`
/// times) around something the test did.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Window {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Window {
    fn holds(&self, ns: &Value) -> bool {
        ns.as_u64()
            .is_some_and(|ns| self.from_ns <= ns && ns <= self.to_ns)
    }
}

/// What the incident test did, as it saw it: everything a report of its trace must name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CniIncident {
    /// Pod A (the leaked one), pod B (given A's address) and the client that asked ARP.
    pub pod_a: NetnsId,
    pub pod_b: NetnsId,
    pub client: NetnsId,
    /// Pod A's address, and eth0's MAC there.
    pub ip: Ipv4Addr,
    pub mac_a: String,
    /// Pod A's IPv6 address in the dual-stack form (absent in fixtures recorded before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// The extra bind mount of pod A's namespace, as mountinfo names it, and the `mount`
    /// process that made it.
    pub pin_path: String,
    pub pin_maker: u32,
    /// CNI_CONTAINERID of pod A.
    pub container_id: String,
    /// Pod A's pause, and when the test killed and reaped it.
    pub pause_pid: u32,
    pub pause_killed: Window,
    /// The CNI_NETNS of the runtime's DEL: the dead pause's /proc/PID/ns/net.
    pub dead_netns: String,
    /// From the start of the runtime's DEL (bridge, then loopback) to their return.
    pub del: Window,
}

fn array<'a>(v: &'a Value, field: &str) -> &'a Vec<Value> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field}[] in {v}"))
}

/// `secs` of the collector: how the text report prints a CLOCK_MONOTONIC time in a summary.
fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

impl CniIncident {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("serialize the CNI incident")
    }

    pub fn from_json(v: &Value) -> Self {
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("not a CNI incident ({e}): {v:#}"))
    }

    /// The leak of pod A and the duplicate IP and stale ARP reply it causes, from `watch` or
    /// `report` findings; the live pods are never accused.
    pub fn check_findings(&self, source: &str, findings: &[Value]) {
        let (ip, mac_a, pin_path) = (self.ip, self.mac_a.as_str(), self.pin_path.as_str());
        let leak = self.leak(source, findings);
        let pin = array(leak, "pins")
            .iter()
            .find(|p| p["kind"] == "bind_mount" && p["path"] == pin_path)
            .unwrap_or_else(|| panic!("{source}: the leak names the pin {pin_path}: {leak:#}"));
        assert!(
            pin["by"]["pid"] == self.pin_maker && pin["by"]["comm"] == "mount",
            "{source}: the pin was made by mount, pid {}: {pin}",
            self.pin_maker
        );
        assert!(
            array(leak, "interfaces").iter().any(|i| i["mac"] == mac_a
                && array(i, "ipv4")
                    .iter()
                    .any(|a| a.as_str().is_some_and(|a| a.starts_with(&format!("{ip}/"))))),
            "{source}: pod A's eth0 ({mac_a}, {ip}) in the leak's evidence: {leak:#}"
        );

        if let Some(ipv6) = self.ipv6 {
            assert!(
                array(leak, "interfaces").iter().any(|i| i["mac"] == mac_a
                    && i["ipv6"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|a| a["address"] == ipv6.to_string()))),
                "{source}: pod A's eth0 ({mac_a}, {ipv6}) in the leak's evidence: {leak:#}"
            );
        }

        let addresses = [Some(ip.to_string()), self.ipv6.map(|a| a.to_string())];
        for ip in addresses.iter().flatten() {
            let duplicate = findings
                .iter()
                .find(|f| f["kind"] == "duplicate_ip" && f["ip"] == ip.as_str())
                .unwrap_or_else(|| panic!("{source}: no duplicate_ip for {ip}: {findings:#?}"));
            let holders = array(duplicate, "holders");
            assert!(
                holders.iter().any(|h| self.pod_a.is(&h["netns"]))
                    && holders.iter().any(|h| self.pod_b.is(&h["netns"])),
                "{source}: pods A and B hold {ip}: {duplicate:#}"
            );
            // Added by the bridge plugin with DAD off: in use in both, a plain duplicate.
            assert!(
                holders.iter().all(|h| h.get("dad").is_none()),
                "{source}: no DAD state on {ip}: {duplicate:#}"
            );
        }

        assert!(
            findings.iter().any(|f| f["kind"] == "stale_arp_reply"
                && f["sender_ip"] == ip.to_string()
                && f["sender_mac"] == mac_a
                && self.pod_a.is(&f["observed_in"])),
            "{source}: no stale_arp_reply from pod A ({mac_a}): {findings:#?}"
        );
        if let Some(ipv6) = self.ipv6 {
            assert!(
                findings.iter().any(|f| f["kind"] == "stale_arp_reply"
                    && f["sender_ip"] == ipv6.to_string()
                    && f["sender_mac"] == mac_a
                    && self.pod_a.is(&f["observed_in"])),
                "{source}: no stale neighbour advertisement from pod A ({mac_a}): {findings:#?}"
            );
        }
        let accused: Vec<&Value> = findings
            .iter()
            .filter(|f| match f["kind"].as_str() {
                Some("stale_arp_reply") => {
                    self.pod_b.is(&f["observed_in"]) || self.client.is(&f["observed_in"])
                }
                Some("leaked_netns") => self.pod_b.is(&f["netns"]) || self.client.is(&f["netns"]),
                _ => false,
            })
            .collect();
        assert!(
            accused.is_empty(),
            "{source}: the live pods are accused: {accused:#?}"
        );
    }

    /// The one leaked_netns finding of pod A.
    fn leak<'f>(&self, source: &str, findings: &'f [Value]) -> &'f Value {
        let leaks: Vec<&Value> = findings
            .iter()
            .filter(|f| f["kind"] == "leaked_netns" && self.pod_a.is(&f["netns"]))
            .collect();
        assert_eq!(
            leaks.len(),
            1,
            "{source}: one leaked_netns for pod A {:?}: {findings:#?}",
            self.pod_a
        );
        leaks[0]
    }

    /// The sequence, in the one leak finding of pod A: beside the pin (`check_findings`), the
    /// DEL that ran after the pause died, with its time (inside the window the test ran it
    /// in), exit status and the dead netns path; and exactly one cni_del_left_namespace,
    /// naming the namespace that outlived that DEL. Returns the bridge DEL the leak cites.
    pub fn check_cni(&self, source: &str, findings: &[Value]) -> Value {
        let leak = self.leak(source, findings);
        let calls = array(leak, "cni_calls");
        let bridge_del = calls
            .iter()
            .find(|c| {
                c["verb"] == "DEL"
                    && c["container_id"] == self.container_id.as_str()
                    && c["plugin"]["comm"] == "bridge"
            })
            .unwrap_or_else(|| panic!("{source}: the leak cites bridge's DEL: {leak:#}"));
        assert_eq!(
            bridge_del["netns_path"],
            self.dead_netns.as_str(),
            "{source}: {bridge_del:#}"
        );
        assert_eq!(
            bridge_del["end"]["status"],
            json!({"how": "exited", "code": 0}),
            "{source}: {bridge_del:#}"
        );
        assert!(
            self.del.holds(&bridge_del["at_ns"]) && self.del.holds(&bridge_del["end"]["at_ns"]),
            "{source}: the DEL started and ended while the test ran it, in {:?}: {bridge_del:#}",
            self.del
        );
        let target = &bridge_del["target"];
        assert_eq!(target["kind"], "exited_process", "{source}: {bridge_del:#}");
        assert_eq!(target["pid"], self.pause_pid, "{source}: {bridge_del:#}");
        assert!(
            self.pause_killed.holds(&target["exited_at_ns"]),
            "{source}: the pause exited when the test killed it, in {:?}: {bridge_del:#}",
            self.pause_killed
        );
        assert!(
            bridge_del["at_ns"].as_u64() >= target["exited_at_ns"].as_u64(),
            "{source}: the DEL ran after the pause died: {bridge_del:#}"
        );
        assert!(
            calls.iter().any(|c| c["verb"] == "ADD"),
            "{source}: the leak cites the ADD: {leak:#}"
        );
        assert!(
            calls.iter().all(|c| c["plugin"]["comm"] != "host-local"),
            "{source}: the runtime's calls only: {leak:#}"
        );
        let summary = leak["summary"].as_str().unwrap();
        assert!(
            summary.contains(&self.del_story(bridge_del)),
            "{source}: the leak's summary tells the DEL ({}): {summary}",
            self.del_story(bridge_del)
        );

        let left: Vec<&Value> = findings
            .iter()
            .filter(|f| f["kind"] == "cni_del_left_namespace")
            .collect();
        assert_eq!(
            left.len(),
            1,
            "{source}: one cni_del_left_namespace: {findings:#?}"
        );
        let left = left[0];
        assert!(self.pod_a.is(&left["netns"]), "{source}: {left:#}");
        assert_eq!(left["container_id"], self.container_id.as_str(), "{left:#}");
        assert_eq!(left["netns_path_resolved"], false, "{source}: {left:#}");
        assert_eq!(
            left["del"]["netns_path"],
            self.dead_netns.as_str(),
            "{left:#}"
        );
        assert_eq!(
            left["del"]["at_ns"], bridge_del["at_ns"],
            "{source}: {left:#}"
        );
        assert!(
            array(left, "interfaces")
                .iter()
                .any(|i| i["name"] == "eth0"),
            "{source}: eth0 was left: {left:#}"
        );
        let others: Vec<&Value> = findings
            .iter()
            .filter(|f| {
                f["kind"].as_str().is_some_and(|k| k.starts_with("cni_"))
                    && f["kind"] != "cni_del_left_namespace"
            })
            .collect();
        assert!(
            others.is_empty(),
            "{source}: other CNI findings: {others:#?}"
        );
        bridge_del.clone()
    }

    /// How the leak's summary tells the DEL `del` (a cni_calls entry): its time, exit status,
    /// the dead path and the dead pause, after the last member left.
    fn del_story(&self, del: &Value) -> String {
        format!(
            "DEL at {} (exit 0), CNI_NETNS {} naming nothing: process {} had exited at ",
            secs(del["at_ns"].as_u64().unwrap_or_default()),
            self.dead_netns,
            self.pause_pid
        )
    }

    /// The text report of the same trace: pod A's CNI calls list the DEL with the dead pause,
    /// and the leak's one summary line names pod A, the pin, the DEL (time, exit status, dead
    /// path) and that it came after the last member left. `bridge_del` is what `check_cni`
    /// returned for the JSON report.
    pub fn check_text(&self, source: &str, text: &str, bridge_del: &Value) {
        assert!(
            text.contains("\nCNI CALLS\n")
                && text.lines().any(|l| l.contains("DEL bridge")
                    && l.contains("exit 0")
                    && l.contains(&format!(
                        "CNI_NETNS {} -> nothing: process {}",
                        self.dead_netns, self.pause_pid
                    ))),
            "{source}: report text: {text}"
        );
        let story = self.del_story(bridge_del);
        let leak_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" leaked: ") && l.contains(&story))
            .collect();
        assert_eq!(
            leak_lines.len(),
            1,
            "{source}: one leak line with {story:?}: {text}"
        );
        let line = leak_lines[0].trim();
        let leaked_ns = line.split_whitespace().next().unwrap_or_default();
        assert!(
            self.pod_a.is(&json!(leaked_ns))
                && line.contains(&format!("bind mount {}", self.pin_path))
                && line.contains(" after the last member left at "),
            "{source}: the leak line names pod A {:?}, the pin {} and the sequence: {line}",
            self.pod_a,
            self.pin_path
        );
    }
}
