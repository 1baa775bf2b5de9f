//! The CNI reference plugins (Debian's containernetworking-plugins: bridge, host-local,
//! loopback), run as a container runtime runs them: the network's config JSON on stdin,
//! CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH and CNI_ARGS in the
//! environment, the result JSON on stdout, and that result handed back as `prevResult` for
//! CHECK and DEL (what libcni does). Each pod's pause is a real process that owns a new netns
//! (util-linux `unshare --net sleep infinity`); pins are util-linux bind mounts.
//!
//! The plugins run in a node namespace of the test's own (another `unshare --net` process),
//! so the bridge they make and every ARP stays off the machine's own network.
//!
//! - A clean churn of pods (half pinned and stopped as containerd does, half given
//!   /proc/PID/ns/net) gives no finding, and every pod namespace dies.
//! - The incident: an extra bind mount of the pause's namespace, the pause SIGKILLed, DEL given
//!   the dead /proc/PID/ns/net (the plugins release the IP and succeed; eth0 stays in the pinned
//!   namespace), and a new pod given the same IP. netns-trace must report the leak with that
//!   pin, the duplicate IP and the stale ARP reply: live, by `scan` and from a recorded trace.
//!   With $NETNS_TRACE_COLLECT_DIR set (`cargo xtask record-fixtures`), that trace and what the
//!   test saw (`common::cni_incident::CniIncident`) are left there as the `cni-incident`
//!   fixture, which tests/recorded_traces.rs checks with the same functions.
//!
//! Needs root; run serially (`-- --test-threads=1`).
mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::cni_incident::{CniIncident, NetnsId, Window};
use common::watch::{Watch, findings, netns_trace_json, netns_trace_json_with_env, report_of};
use common::{
    ip_bin, link_ipv6_global, link_mac_and_ipv4, monotonic_ns, net_namespace_slab_count, ns_inum,
    nsfs_mounts, require_root, settle_teardown, wait_until,
};
use serde_json::{Value, json};

/// Where Debian's containernetworking-plugins installs the plugins; CNI_PATH for every call.
/// The QEMU guests ship them at the same path.
const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Where netns-trace is told to read the CNI result cache instead of /var/lib/cni/results.
const CNI_CACHE_ENV: &str = "NETNS_TRACE_CNI_CACHE_DIR";
const PLUGINS_USED: [&str; 3] = ["bridge", "host-local", "loopback"];
/// The CNI spec version of every config; 1.1.1's plugins speak it, and CHECK needs >= 0.4.0.
const CNI_VERSION: &str = "1.0.0";

/// Pods in the clean churn (the issue asks for at least 50).
const CHURN_PODS: usize = 50;
/// A containerd-style pod is memberless from its pause's death until its pin is removed
/// (DEL runs in between, a few plugin runs under TCG); the churn's grace period must not judge
/// that stop, nor the kernel's cleanup_net backlog after it.
/// One churned pod lives this long after its ADD (see its use).
const HELD_POD: usize = 0;
const HELD_POD_LIFE: Duration = Duration::from_secs(3);
const CHURN_GRACE: &str = "10";
const CHURN_VERDICT_WAIT: Duration = Duration::from_secs(13);
/// The incident's grace period: short, so the test does not wait 30 s for the verdict.
const INCIDENT_GRACE: &str = "2";
/// Past the grace period, plus the collector's verdict tick and slack for slow guests.
const INCIDENT_VERDICT_WAIT: Duration = Duration::from_secs(5);

/// Panics (does not skip) when the plugins are missing: `cargo xtask bootstrap` installs them.
fn require_plugins() {
    for plugin in PLUGINS_USED {
        let path = Path::new(CNI_BIN_DIR).join(plugin);
        assert!(
            path.is_file(),
            "{} is missing: `cargo xtask bootstrap` installs Debian's containernetworking-plugins",
            path.display()
        );
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("read /proc/sys/kernel/random/uuid")
        .trim()
        .to_string()
}

/// A pod's pause: `unshare --net sleep infinity`, a process that owns a new netns.
struct Pause {
    child: Child,
    reaped: bool,
}

impl Pause {
    fn start() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn util-linux unshare --net sleep infinity");
        let mut pause = Self {
            child,
            reaped: false,
        };
        // unshare(2) has happened once the process runs sleep.
        let comm = format!("/proc/{}/comm", pause.pid());
        let ready = wait_until(Duration::from_secs(20), || {
            fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
        });
        if !ready {
            pause.kill();
            panic!("unshare --net sleep infinity did not get to sleep within 20 s");
        }
        pause
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A util-linux bind mount of a namespace file onto a file of its own.
struct Pin {
    path: PathBuf,
    mounted: bool,
    /// The `mount` process that made it.
    made_by: u32,
}

impl Pin {
    fn bind(source: &Path, path: PathBuf) -> Self {
        File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let mut pin = Self {
            path,
            mounted: false,
            made_by: 0,
        };
        let mut mount = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(&pin.path)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn util-linux mount");
        pin.made_by = mount.id();
        let status = mount.wait().expect("wait for mount");
        assert!(
            status.success(),
            "mount --bind {} {}: {status}",
            source.display(),
            pin.path.display()
        );
        pin.mounted = true;
        pin
    }

    /// As containerd removes its pins: a lazy unmount, then the file.
    fn remove(&mut self) {
        if self.mounted {
            let status = Command::new("umount")
                .arg("--lazy")
                .arg(&self.path)
                .status()
                .expect("run util-linux umount");
            assert!(
                status.success(),
                "umount --lazy {}: {status}",
                self.path.display()
            );
            self.mounted = false;
        }
        let _ = fs::remove_file(&self.path);
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount")
                .arg("--lazy")
                .arg(&self.path)
                .status();
            self.mounted = false;
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// One plugin run.
struct PluginRun {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl PluginRun {
    fn assert_success(&self) {
        assert!(
            self.status.success(),
            "{} exited {}: stdout {:?}, stderr {:?}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// The result JSON of a successful ADD.
    fn result(&self) -> Value {
        self.assert_success();
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{} printed bad JSON {:?}: {e}", self.what, self.stdout))
    }
}

/// libcni's result cache, kept as libcni keeps it: the test is the runtime, and the cache is
/// the runtime's. After a network's ADD returns, its result goes to
/// `results/<network>-<containerId>-<ifName>` as a `cniCacheV1` record (libcni's `cachedInfo`:
/// the network config in base64, the netns, the CNI_ARGS pairs, the result); after a DEL that
/// returned 0 the file is removed; a DEL that failed leaves it. netns-trace reads it through
/// NETNS_TRACE_CNI_CACHE_DIR.
struct CniCache {
    dir: tempfile::TempDir,
}

impl CniCache {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("netns-trace-cni-cache-")
            .tempdir()
            .expect("temp dir for the CNI cache");
        fs::create_dir(dir.path().join("results")).unwrap();
        Self { dir }
    }

    fn results(&self) -> PathBuf {
        self.dir.path().join("results")
    }

    fn file(results: &Path, network: &str, env: &CniEnv) -> PathBuf {
        results.join(format!("{network}-{}-{}", env.container_id, env.ifname))
    }

    /// libcni's cacheAdd, once `network`'s ADD returned `result`.
    fn add(results: &Path, network: &str, conf: &Value, env: &CniEnv, result: &Value) {
        use base64::Engine;
        let list = json!({"cniVersion": CNI_VERSION, "name": network, "plugins": [conf]});
        let args: Vec<[&str; 2]> = env
            .args
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| [k, v])
            .collect();
        let record = json!({
            "kind": "cniCacheV1",
            "containerId": env.container_id,
            "config": base64::engine::general_purpose::STANDARD.encode(list.to_string()),
            "ifName": env.ifname,
            "networkName": network,
            "netns": env.netns,
            "cniArgs": args,
            "result": result,
        });
        let path = Self::file(results, network, env);
        fs::write(&path, record.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// libcni's cacheDel, once `network`'s DEL returned 0.
    fn del(results: &Path, network: &str, env: &CniEnv) {
        let path = Self::file(results, network, env);
        if let Err(e) = fs::remove_file(&path) {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{}", path.display());
        }
    }

    /// The entries' file names.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.results())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// A bridge network with host-local IPAM, its node namespace (where the plugins run and the
/// bridge lives), and a temporary directory for host-local's state and the pod pins.
struct Network {
    name: String,
    bridge: String,
    /// "10.231.N" of the network's 10.231.N.0/24.
    subnet_prefix: String,
    /// "fd00:231:N" of a dual-stack network's fd00:231:N::/64.
    ipv6_prefix: Option<String>,
    conf: Value,
    node: Pause,
    dir: tempfile::TempDir,
    /// The runtime's CNI result cache directory (`results/`).
    cache: PathBuf,
}

impl Network {
    /// Host-local hands out 10.231.N.FIRST..=LAST (a small range reuses addresses).
    fn new(tag: &str, subnet_prefix: &str, first: u8, last: u8, cache: &CniCache) -> Self {
        // Under /run, as /run/netns is: the pins are "runtime" files.
        let dir = tempfile::Builder::new()
            .prefix(&format!("netns-trace-cni-{tag}-"))
            .tempdir_in("/run")
            .expect("temp dir under /run");
        fs::create_dir(dir.path().join("netns")).unwrap();
        let name = format!("netns-trace-{tag}");
        // IFNAMSIZ: at most 15 characters.
        let bridge = format!("ntcni{}", random_hex(4));
        let conf = json!({
            "cniVersion": CNI_VERSION,
            "name": name,
            "type": "bridge",
            "bridge": bridge,
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{
                    "subnet": format!("{subnet_prefix}.0/24"),
                    "rangeStart": format!("{subnet_prefix}.{first}"),
                    "rangeEnd": format!("{subnet_prefix}.{last}"),
                }]],
                "dataDir": dir.path().join("ipam"),
            },
        });
        Self {
            name,
            bridge,
            subnet_prefix: subnet_prefix.to_string(),
            ipv6_prefix: None,
            conf,
            node: Pause::start(),
            dir,
            cache: cache.results(),
        }
    }

    /// Dual-stack: host-local also hands out fd00:231:N::FIRST..=LAST (a second range set,
    /// so each pod gets one address of each family). The bridge plugin adds them with the
    /// container side's accept_dad off (its `enabledad` defaults to false), as a CNI setup does.
    fn dual_stack(mut self, prefix: &str, first: u8, last: u8) -> Self {
        self.conf["ipam"]["ranges"]
            .as_array_mut()
            .unwrap()
            .push(json!([{
                "subnet": format!("{prefix}::/64"),
                "rangeStart": format!("{prefix}::{first}"),
                "rangeEnd": format!("{prefix}::{last}"),
            }]));
        self.ipv6_prefix = Some(prefix.to_string());
        self
    }

    /// The prefixes of the network's addresses, as findings print them.
    fn address_prefixes(&self) -> Vec<String> {
        let mut p = vec![format!("{}.", self.subnet_prefix)];
        p.extend(self.ipv6_prefix.iter().map(|p| format!("{p}::")));
        p
    }

    fn pin_dir(&self) -> PathBuf {
        self.dir.path().join("netns")
    }

    /// host-local's reservation file for `ip` (it exists while the address is handed out).
    fn reservation(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir
            .path()
            .join("ipam")
            .join(&self.name)
            .join(ip.to_string())
    }

    /// Runs `plugin` with `conf` on stdin and the CNI environment, inside the node namespace.
    fn invoke(&self, plugin: &str, conf: &Value, command: &str, env: &CniEnv) -> PluginRun {
        let node = File::open(self.node.netns()).expect("open the node's netns");
        let node_fd = node.as_raw_fd();
        let mut cmd = Command::new(Path::new(CNI_BIN_DIR).join(plugin));
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &env.container_id)
            .env("CNI_NETNS", &env.netns)
            .env("CNI_IFNAME", env.ifname)
            .env("CNI_PATH", CNI_BIN_DIR)
            .env("CNI_ARGS", &env.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(node_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let what = format!(
            "CNI_COMMAND={command} {plugin} (CNI_NETNS={}, CNI_IFNAME={})",
            env.netns.display(),
            env.ifname
        );
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        drop(node);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{what}: write config: {e}"));
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait for {what}: {e}"));
        PluginRun {
            what,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let out =
            common::run_in_netns(&self.node.netns(), ip_bin(), &["link", "del", &self.bridge]);
        if !out.status.success() {
            eprintln!(
                "ip link del {}: {}",
                self.bridge,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.node.kill();
    }
}

/// The CNI_* environment of one attachment, except CNI_COMMAND and CNI_PATH.
struct CniEnv {
    container_id: String,
    netns: PathBuf,
    ifname: &'static str,
    args: String,
}

/// The name of containerd's loopback network (go-cni's default).
const LOOPBACK_NETWORK: &str = "cni-loopback";

/// containerd's loopback network, set up before the pod network.
fn loopback_conf() -> Value {
    json!({"cniVersion": CNI_VERSION, "name": LOOPBACK_NETWORK, "type": "loopback"})
}

/// `conf` with `prevResult`, as libcni builds the config of CHECK and DEL.
fn with_prev_result(conf: &Value, result: &Value) -> Value {
    let mut conf = conf.clone();
    conf["prevResult"] = result.clone();
    conf
}

/// A pod's two attachments (loopback as lo, then the bridge network as eth0), as a runtime
/// keeps them: the ADD results, for CHECK and DEL. Dropped while attached, it runs DEL.
struct Attachment<'n> {
    net: &'n Network,
    container_id: String,
    netns: PathBuf,
    args: String,
    loopback: Option<Value>,
    eth0: Option<Value>,
    attached: bool,
}

impl<'n> Attachment<'n> {
    fn add(net: &'n Network, pod_name: &str, netns: &Path) -> Self {
        let container_id = random_hex(32);
        // What containerd's CRI plugin passes.
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=netns-trace-tests;K8S_POD_NAME={pod_name};\
             K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={}",
            uuid()
        );
        // Attached from the first ADD on: a runtime runs DEL after a failed ADD too.
        let mut a = Self {
            net,
            container_id,
            netns: netns.to_path_buf(),
            args,
            loopback: None,
            eth0: None,
            attached: true,
        };
        let lo = net
            .invoke("loopback", &loopback_conf(), "ADD", &a.env("lo"))
            .result();
        CniCache::add(
            &net.cache,
            LOOPBACK_NETWORK,
            &loopback_conf(),
            &a.env("lo"),
            &lo,
        );
        a.loopback = Some(lo);
        let eth0 = net
            .invoke("bridge", &net.conf, "ADD", &a.env("eth0"))
            .result();
        CniCache::add(&net.cache, &net.name, &net.conf, &a.env("eth0"), &eth0);
        a.eth0 = Some(eth0);
        a
    }

    fn env(&self, ifname: &'static str) -> CniEnv {
        CniEnv {
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname,
            args: self.args.clone(),
        }
    }

    fn eth0_result(&self) -> &Value {
        self.eth0.as_ref().expect("the bridge ADD succeeded")
    }

    /// CHECK of both attachments, which must succeed.
    fn check(&self) {
        let lo = with_prev_result(&loopback_conf(), self.loopback.as_ref().unwrap());
        self.net
            .invoke("loopback", &lo, "CHECK", &self.env("lo"))
            .assert_success();
        let eth0 = with_prev_result(&self.net.conf, self.eth0_result());
        self.net
            .invoke("bridge", &eth0, "CHECK", &self.env("eth0"))
            .assert_success();
    }

    /// DEL of both attachments, the pod network first; the two runs, whatever their status.
    fn del(&mut self) -> [PluginRun; 2] {
        self.attached = false;
        let eth0 = match &self.eth0 {
            Some(result) => with_prev_result(&self.net.conf, result),
            None => self.net.conf.clone(),
        };
        let lo = match &self.loopback {
            Some(result) => with_prev_result(&loopback_conf(), result),
            None => loopback_conf(),
        };
        let runs = [
            self.net.invoke("bridge", &eth0, "DEL", &self.env("eth0")),
            self.net.invoke("loopback", &lo, "DEL", &self.env("lo")),
        ];
        for (run, network, ifname) in [
            (&runs[0], self.net.name.as_str(), "eth0"),
            (&runs[1], LOOPBACK_NETWORK, "lo"),
        ] {
            if run.status.success() {
                CniCache::del(&self.net.cache, network, &self.env(ifname));
            }
        }
        runs
    }

    fn del_successfully(&mut self) {
        for run in self.del() {
            run.assert_success();
        }
    }

    /// eth0's IPv4 address and prefix length from the ADD result.
    fn ip(&self) -> (Ipv4Addr, u8) {
        self.address()
            .unwrap_or_else(|| panic!("no IPv4 address in {}", self.eth0_result()))
    }

    /// eth0's IPv6 address and prefix length from the ADD result, on a dual-stack network.
    fn ipv6(&self) -> Option<(Ipv6Addr, u8)> {
        self.address()
    }

    /// The first address of the ADD result's `ips` that parses as an `A`.
    fn address<A: std::str::FromStr>(&self) -> Option<(A, u8)> {
        let result = self.eth0_result();
        array(result, "ips").iter().find_map(|ip| {
            let (a, prefix) = ip["address"].as_str()?.split_once('/')?;
            Some((a.parse().ok()?, prefix.parse().ok()?))
        })
    }

    /// The MAC the result gives for the interface that carries ips[0].
    fn mac(&self) -> String {
        let result = self.eth0_result();
        let index = result["ips"][0]["interface"].as_u64().unwrap() as usize;
        result["interfaces"][index]["mac"]
            .as_str()
            .unwrap_or_else(|| panic!("no MAC of interface {index} in {result}"))
            .to_string()
    }
}

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        if self.attached {
            for run in self.del() {
                if !run.status.success() {
                    eprintln!(
                        "cleanup: {} exited {}: {}",
                        run.what, run.status, run.stdout
                    );
                }
            }
        }
    }
}

/// A pod: pause, pins, attachments. Dropping it tears it down in a runtime's order: DEL,
/// unpin, kill.
struct Pod<'n> {
    attachment: Attachment<'n>,
    pins: Vec<Pin>,
    pause: Pause,
    netns: NetnsId,
}

impl<'n> Pod<'n> {
    /// With `pinned`, the namespace is bind-mounted at PIN_DIR/cni-<uuid> first and CNI_NETNS is
    /// that pin (containerd); otherwise CNI_NETNS is /proc/PID/ns/net.
    fn start(net: &'n Network, name: &str, pinned: bool) -> Self {
        let pause = Pause::start();
        let netns = NetnsId::of(&pause.netns());
        let pins: Vec<Pin> = if pinned {
            vec![Pin::bind(
                &pause.netns(),
                net.pin_dir().join(format!("cni-{}", uuid())),
            )]
        } else {
            vec![]
        };
        let cni_netns = pins
            .first()
            .map_or_else(|| pause.netns(), |p| p.path.clone());
        let attachment = Attachment::add(net, name, &cni_netns);
        Self {
            attachment,
            pins,
            pause,
            netns,
        }
    }

    fn cni_netns(&self) -> &Path {
        &self.attachment.netns
    }

    /// Tears the pod down in a runtime's order: DEL, unpin, kill.
    fn tear_down(mut self) {
        self.attachment.del_successfully();
        for pin in &mut self.pins {
            pin.remove();
        }
        self.pause.kill();
    }
}

fn array<'a>(v: &'a Value, field: &str) -> &'a Vec<Value> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field}[] in {v}"))
}

/// Lets two throwaway namespaces go, one second apart: kernels that free a namespace only on
/// the next cleanup_net run (6.13+, backported to 6.12; and this host's 6.18) then free the
/// last pod namespace too.
fn flush_deferred_frees() {
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(1));
        let status = Command::new("unshare")
            .args(["--net", "true"])
            .status()
            .expect("run unshare --net true");
        assert!(status.success());
    }
}

/// Findings about the given namespaces, or about an address starting with one of `prefixes`
/// (`Network::address_prefixes`).
fn findings_about<'a>(
    findings: &'a [Value],
    namespaces: &[NetnsId],
    prefixes: &[String],
) -> Vec<&'a Value> {
    let in_subnet = |ip: &Value| {
        ip.as_str()
            .is_some_and(|ip| prefixes.iter().any(|p| ip.starts_with(p.as_str())))
    };
    findings
        .iter()
        .filter(|f| {
            namespaces.iter().any(|n| n.is(&f["netns"]))
                || in_subnet(&f["ip"])
                || in_subnet(&f["sender_ip"])
        })
        .collect()
}

#[test]
fn a_clean_churn_of_cni_pods_gives_no_finding_and_every_namespace_dies() {
    clean_churn(CHURN_PODS, false);
}

/// The churn on a dual-stack network: every pod gets an IPv4 and an IPv6 address, and the
/// IPv6 ones are handed out again too.
#[test]
fn a_clean_dual_stack_churn_gives_no_finding_and_every_namespace_dies() {
    clean_churn(DUAL_STACK_CHURN_PODS, true);
}

/// Pods in the dual-stack churn: enough for host-local to reuse each address of both families.
const DUAL_STACK_CHURN_PODS: usize = 16;

fn clean_churn(churn_pods: usize, dual_stack: bool) {
    if !require_root() {
        return;
    }
    require_plugins();
    let baseline = net_namespace_slab_count();
    let trace_dir = tempfile::Builder::new()
        .prefix("netns-trace-cni-churn-")
        .tempdir()
        .unwrap();
    let trace = trace_dir.path().join("watch.trace");
    let cache = CniCache::new();
    let results = cache.results();
    let cache_env = [(CNI_CACHE_ENV, results.as_path())];
    let watch = Watch::start_with_env(
        &["--grace", CHURN_GRACE, "--record", trace.to_str().unwrap()],
        &cache_env,
    );
    // Eight addresses for fifty pods: host-local hands each one out again and again.
    let mut net = Network::new("churn", "10.231.61", 10, 17, &cache);
    if dual_stack {
        net = net.dual_stack("fd00:231:61", 10, 17);
    }
    let network = net.name.clone();
    let node = NetnsId::of(&net.node.netns());
    let mut pods = Vec::new();
    let mut addresses = std::collections::BTreeSet::new();
    let t0 = Instant::now();
    let mut addresses_v6 = std::collections::BTreeSet::new();
    for i in 0..churn_pods {
        // Even pods as containerd runs them, odd ones with /proc/PID/ns/net as CNI_NETNS.
        let containerd_style = i % 2 == 0;
        let mut pod = Pod::start(&net, &format!("churn-{i}"), containerd_style);
        pod.attachment.check();
        let (ip, prefix) = pod.attachment.ip();
        let (mac, addrs) = link_mac_and_ipv4(pod.cni_netns(), "eth0");
        assert_eq!(
            addrs,
            vec![format!("{ip}/{prefix}")],
            "eth0 of pod {i}, by iproute2"
        );
        assert_eq!(
            mac,
            pod.attachment.mac(),
            "eth0's MAC, by iproute2 and in the ADD result"
        );
        assert!(net.reservation(ip).exists(), "host-local reserved {ip}");
        if dual_stack {
            let (ipv6, prefix) = pod
                .attachment
                .ipv6()
                .expect("an IPv6 address in the result");
            assert_eq!(
                link_ipv6_global(pod.cni_netns(), "eth0"),
                vec![(format!("{ipv6}/{prefix}"), vec![])],
                "eth0 of pod {i}, by iproute2 -6"
            );
            addresses_v6.insert(ipv6);
        }
        pods.push(pod.netns);
        addresses.insert(ip);
        if i == HELD_POD {
            // Outlives several ticks of the tracer, which read the cache while a CNI call is
            // recent: its attribution does not depend on catching a DEL in time.
            std::thread::sleep(HELD_POD_LIFE);
        }
        if containerd_style {
            // StopPodSandbox: the sandbox is killed, then DEL through the pin; then
            // RemovePodSandbox removes the pin.
            pod.pause.kill();
            pod.attachment.del_successfully();
            for pin in &mut pod.pins {
                pin.remove();
            }
            drop(pod);
        } else {
            pod.tear_down();
        }
        assert!(
            !net.reservation(ip).exists(),
            "DEL gave {ip} back to host-local"
        );
    }
    eprintln!(
        "{churn_pods} pods added, checked and deleted in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        addresses.len() < churn_pods,
        "host-local handed addresses out again: {addresses:?}"
    );
    if dual_stack {
        assert!(
            addresses_v6.len() < churn_pods,
            "host-local handed IPv6 addresses out again: {addresses_v6:?}"
        );
    }
    let subnet = net.address_prefixes();
    drop(net);

    // Gone, seen independently: no task, fd or nsfs mount in any mount namespace holds them.
    let still_held: Vec<(NetnsId, Vec<String>)> = pods
        .iter()
        .chain([&node])
        .filter(|n| n.exists())
        .map(|n| (*n, common::netns_holders(n.inum)))
        .collect();
    assert!(
        still_held.is_empty(),
        "pod namespaces still held: {still_held:?}"
    );

    flush_deferred_frees();
    settle_teardown(baseline);
    std::thread::sleep(CHURN_VERDICT_WAIT);
    // Every DEL returned 0, so libcni's cache is empty, and a CNI GC has nothing to clean.
    assert_eq!(cache.entries(), Vec::<String>::new(), "the CNI cache");
    let scan = netns_trace_json_with_env(&["scan", "--json"], &cache_env);
    assert_eq!(scan["cni_gc"], json!([]), "scan's CNI GC dry run");
    let lines = watch.stop();
    let report = report_of(&trace, CHURN_GRACE);
    assert_eq!(report["cni_gc"], json!([]), "the report's CNI GC dry run");
    // ... and that is not because the cache went unseen: the pod that lived past several ticks
    // is attributed to the pod network (over its loopback attachment). The others live
    // ~100 ms; the cache is read when their DEL starts, which a loaded tracer may see late, so
    // their count is printed, not asserted.
    let namespaces = array(&report, "namespaces");
    let held = namespaces
        .iter()
        .find(|n| pods[HELD_POD].is(&n["id"]))
        .unwrap_or_else(|| {
            panic!(
                "the held pod's namespace {:?} is in the report",
                pods[HELD_POD]
            )
        });
    assert_eq!(
        held["owner"]["cni_network"],
        network.as_str(),
        "the held pod's owner: {held:#}"
    );
    let attributed = namespaces
        .iter()
        .filter(|n| pods.iter().any(|p| p.is(&n["id"])))
        .filter(|n| {
            n["owner"]["cni_network"] == network.as_str()
                || n["owner"]["cni_network"] == LOOPBACK_NETWORK
        })
        .count();
    eprintln!("{attributed} of {churn_pods} pod namespaces attributed through the CNI cache");

    let ours: Vec<NetnsId> = pods.iter().copied().chain([node]).collect();
    let live = findings(&lines);
    let about_live = findings_about(&live, &ours, &subnet);
    assert!(
        about_live.is_empty(),
        "watch reported the churn: {about_live:#?}"
    );
    let replayed = array(&report, "findings");
    let about_replayed = findings_about(replayed, &ours, &subnet);
    assert!(
        about_replayed.is_empty(),
        "the report has findings about the churn: {about_replayed:#?}"
    );
    let cni_findings: Vec<&Value> = live
        .iter()
        .chain(replayed)
        .filter(|f| f["kind"].as_str().is_some_and(|k| k.starts_with("cni_")))
        .collect();
    assert!(
        cni_findings.is_empty(),
        "CNI findings in a clean churn: {cni_findings:#?}"
    );
    let lost: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "lost_events" || l["notice"]["kind"] == "events_lost")
        .collect();
    assert!(lost.is_empty(), "watch lost events: {lost:?}");

    // The trace saw each pod namespace end.
    let namespaces = array(&report, "namespaces");
    for pod in &pods {
        let seen: Vec<&Value> = namespaces.iter().filter(|n| pod.is(&n["id"])).collect();
        assert!(!seen.is_empty(), "the report lists no {pod:?}");
        let not_destroyed: Vec<&&Value> =
            seen.iter().filter(|n| n["state"] != "destroyed").collect();
        assert!(
            not_destroyed.is_empty(),
            "{pod:?} not destroyed in the report: {not_destroyed:#?}"
        );
    }
}

/// The pod's eth0 as `ip -j addr` sees it through `nsenter --net=NETNS_FILE`.
fn eth0_through(netns_file: &Path) -> Value {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns_file.display()))
        .args([ip_bin(), "-j", "addr", "show", "dev", "eth0"])
        .output()
        .expect("run nsenter");
    assert!(
        out.status.success(),
        "nsenter --net={} ip addr show dev eth0: {}",
        netns_file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j JSON");
    v[0].clone()
}

/// The mount point of the nsfs mount of net:[inum] at `path`, as /proc/self/mountinfo lists it.
fn mountinfo_pin(inum: u64, path: &Path) -> String {
    let want_root = format!("net:[{inum}]");
    let want_point = fs::canonicalize(path).unwrap();
    nsfs_mounts(Path::new("/proc/self/mountinfo"))
        .into_iter()
        .find(|m| m.root == want_root && Path::new(&m.mount_point) == want_point)
        .unwrap_or_else(|| {
            panic!(
                "mountinfo has no nsfs mount of {want_root} at {}",
                want_point.display()
            )
        })
        .mount_point
}

#[test]
fn the_cni_incident_gives_the_leak_the_duplicate_ip_and_the_stale_arp_reply() {
    cni_incident(false);
}

/// The incident on a dual-stack network: pod B gets pod A's IPv4 and IPv6 addresses, each is a
/// duplicate_ip, and pod A answers the client's Neighbour Solicitation for the IPv6 one with a
/// stale advertisement, as it answers ARP for the IPv4 one.
#[test]
fn the_dual_stack_cni_incident_gives_a_duplicate_ip_and_a_stale_reply_for_each_address() {
    cni_incident(true);
}

fn cni_incident(dual_stack: bool) {
    if !require_root() {
        return;
    }
    require_plugins();
    let trace_dir = tempfile::Builder::new()
        .prefix("netns-trace-cni-incident-")
        .tempdir()
        .unwrap();
    let trace = trace_dir.path().join("watch.trace");
    let trace_arg = trace.to_str().unwrap();
    let cache = CniCache::new();
    let results = cache.results();
    let cache_env = [(CNI_CACHE_ENV, results.as_path())];
    let watch = Watch::start_with_env(
        &["--grace", INCIDENT_GRACE, "--record", trace_arg],
        &cache_env,
    );
    // Two addresses: the client takes the first, pod A the second, and once A's is released
    // host-local has only that one to give pod B.
    let mut net = Network::new("incident", "10.231.62", 10, 11, &cache);
    if dual_stack {
        net = net.dual_stack("fd00:231:62", 10, 11);
    }
    let client = Pod::start(&net, "client", true);

    // Pod A, with CNI_NETNS=/proc/PID/ns/net.
    let mut pod_a = Pod::start(&net, "pod-a", false);
    let (ip, prefix) = pod_a.attachment.ip();
    let address = format!("{ip}/{prefix}");
    let a = pod_a.netns;
    let (mac_a, addrs_a) = link_mac_and_ipv4(&pod_a.pause.netns(), "eth0");
    assert_eq!(addrs_a, vec![address.clone()], "pod A's eth0, by iproute2");
    let ipv6 = pod_a.attachment.ipv6();
    assert_eq!(
        ipv6.is_some(),
        dual_stack,
        "pod A's IPv6 address in the ADD result"
    );
    if let Some((ipv6, prefix)) = ipv6 {
        let by_ip: Vec<String> = link_ipv6_global(&pod_a.pause.netns(), "eth0")
            .into_iter()
            .map(|(a, flags)| {
                assert!(
                    !flags.contains(&"tentative") && !flags.contains(&"dadfailed"),
                    "pod A's {a} is in use: {flags:?}"
                );
                a
            })
            .collect();
        assert_eq!(
            by_ip,
            vec![format!("{ipv6}/{prefix}")],
            "pod A's eth0, by iproute2 -6"
        );
    }
    assert_eq!(
        mac_a,
        pod_a.attachment.mac(),
        "pod A's MAC, by iproute2 and in the ADD result"
    );

    // The plugin's debugging bind mount: an extra pin of the pause's namespace.
    let debug_pin = Pin::bind(
        &pod_a.pause.netns(),
        net.pin_dir().join(&pod_a.attachment.container_id),
    );
    let pin_path = mountinfo_pin(a.inum, &debug_pin.path);
    let pin_maker = debug_pin.made_by;
    pod_a.pins.push(debug_pin);

    // The pause dies, and the runtime's DEL gets the dead /proc/PID/ns/net path.
    let dead_netns = pod_a.cni_netns().to_path_buf();
    let pause_pid = pod_a.pause.pid();
    let kill_from = monotonic_ns();
    pod_a.pause.kill();
    let pause_killed = Window {
        from_ns: kill_from,
        to_ns: monotonic_ns(),
    };
    assert!(
        !dead_netns.exists(),
        "{} is gone with its process",
        dead_netns.display()
    );
    let del_from = monotonic_ns();
    let runs = pod_a.attachment.del();
    let del = Window {
        from_ns: del_from,
        to_ns: monotonic_ns(),
    };
    for run in runs {
        run.assert_success();
    }
    assert!(
        !net.reservation(ip).exists(),
        "DEL released {ip} in host-local"
    );
    // ...while eth0, its address and MAC live on in the pinned namespace.
    assert_eq!(ns_inum(Path::new(&pin_path)), Some(a.inum));
    let eth0 = eth0_through(Path::new(&pin_path));
    assert_eq!(
        eth0["address"],
        mac_a.as_str(),
        "eth0 through the pin: {eth0}"
    );
    assert!(
        array(&eth0, "addr_info")
            .iter()
            .any(|i| i["local"] == ip.to_string() && i["prefixlen"] == prefix),
        "{address} on eth0 through the pin: {eth0}"
    );
    if let Some((ipv6, _)) = ipv6 {
        assert!(
            array(&eth0, "addr_info")
                .iter()
                .any(|i| i["local"] == ipv6.to_string()),
            "{ipv6} on eth0 through the pin: {eth0}"
        );
    }

    // Pod B: host-local hands out the released address.
    let pod_b = Pod::start(&net, "pod-b", true);
    let b = pod_b.netns;
    assert_eq!(
        pod_b.attachment.ip(),
        (ip, prefix),
        "pod B got pod A's address"
    );
    assert_eq!(
        pod_b.attachment.ipv6(),
        ipv6,
        "pod B got pod A's IPv6 address"
    );
    let (mac_b, _) = link_mac_and_ipv4(pod_b.cni_netns(), "eth0");
    assert_ne!(mac_a, mac_b);

    // Who has that address? Both answer the client.
    let replies = common::arp_reply_macs(client.cni_netns(), "eth0", ip, 3);
    assert!(
        replies.contains(&mac_a) && replies.contains(&mac_b),
        "ARP replies for {ip} from {replies:?}; pod A is {mac_a}, pod B {mac_b}"
    );
    // The same for IPv6: the client's kernel solicits the address and both advertise it,
    // pod A's kernel counting the advertisement it sent.
    if let Some((ipv6, _)) = ipv6 {
        let pin = Path::new(&pin_path);
        let before = common::nd_counters(pin);
        let answers = common::na_macs(client.cni_netns(), "eth0", ipv6, Duration::from_secs(2));
        let after = common::nd_counters(pin);
        assert!(
            answers.contains(&mac_a) && answers.contains(&mac_b),
            "neighbour advertisements for {ipv6} from {answers:?}; pod A is {mac_a}, pod B {mac_b}"
        );
        assert!(
            after[2] > before[2] && after[1] > before[1],
            "pod A's kernel counted the solicitation and its advertisement: [out NS, in NS, \
             out NA, in NA] {before:?} then {after:?}"
        );
    }
    std::thread::sleep(INCIDENT_VERDICT_WAIT);

    // scan: no history, but the pin, the memberless namespace and the duplicate IP.
    let scan = netns_trace_json_with_env(&["scan", "--json"], &cache_env);
    let scanned_a = array(&scan, "namespaces")
        .iter()
        .find(|n| a.is(&n["id"]))
        .unwrap_or_else(|| panic!("scan lists no pod A {a:?}"));
    assert_eq!(scanned_a["state"], "leak_suspect", "{scanned_a:#}");
    assert!(
        array(scanned_a, "pins")
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["path"] == pin_path.as_str()),
        "scan names the pin {pin_path}: {scanned_a:#}"
    );
    let scanned_b = array(&scan, "namespaces")
        .iter()
        .find(|n| b.is(&n["id"]))
        .unwrap_or_else(|| panic!("scan lists no pod B {b:?}"));
    assert_ne!(
        scanned_b["state"], "leak_suspect",
        "pod B lives: {scanned_b:#}"
    );
    let scan_findings = array(&scan, "findings");
    let addresses = [ip.to_string()]
        .into_iter()
        .chain(ipv6.map(|(a, _)| a.to_string()));
    for ip in addresses {
        let duplicate = scan_findings
            .iter()
            .find(|f| f["kind"] == "duplicate_ip" && f["ip"] == ip.as_str())
            .unwrap_or_else(|| panic!("scan: duplicate_ip for {ip}: {scan_findings:#?}"));
        let holders = array(duplicate, "holders");
        assert!(
            holders.iter().any(|h| a.is(&h["netns"])) && holders.iter().any(|h| b.is(&h["netns"])),
            "scan: pods A and B hold {ip}: {duplicate:#}"
        );
    }

    // Pod A's DEL returned 0, so libcni removed its cache entries: a runtime's CNI GC cannot
    // see the leak, and the dry run says so by listing nothing (pod B and the client live).
    let a_entries: Vec<String> = cache
        .entries()
        .into_iter()
        .filter(|e| e.contains(&pod_a.attachment.container_id))
        .collect();
    assert_eq!(a_entries, Vec::<String>::new(), "pod A's cache entries");
    assert_eq!(scan["cni_gc"], json!([]), "scan's CNI GC dry run");

    let lines = watch.stop();
    let live = findings(&lines);
    let incident = CniIncident {
        pod_a: a,
        pod_b: b,
        client: client.netns,
        ip,
        mac_a,
        ipv6: ipv6.map(|(a, _)| a),
        pin_path,
        pin_maker,
        container_id: pod_a.attachment.container_id.clone(),
        pause_pid,
        pause_killed,
        dead_netns: dead_netns.to_string_lossy().into_owned(),
        del,
    };
    incident.check_findings("watch", &live);
    incident.check_cni("watch", &live);

    let report = report_of(&trace, INCIDENT_GRACE);
    assert_eq!(report["cni_gc"], json!([]), "the report's CNI GC dry run");
    let report_findings = array(&report, "findings");
    incident.check_findings("report", report_findings);
    let bridge_del = incident.check_cni("report", report_findings);
    // The report lists pod A's CNI calls with its namespace, in JSON and in text.
    let listed_a = array(&report, "namespaces")
        .iter()
        .find(|n| a.is(&n["id"]))
        .unwrap();
    assert!(
        array(listed_a, "cni_calls")
            .iter()
            .any(|c| c["verb"] == "DEL"
                && c["plugin"]["comm"] == "host-local"
                && c["netns_path"] == incident.dead_netns.as_str()),
        "the report's pod A lists every call, chained ones too: {listed_a:#}"
    );
    let text = Command::new(common::watch::netns_trace_bin())
        .args(["report", trace_arg, "--grace", INCIDENT_GRACE])
        .output()
        .expect("run netns-trace report");
    assert!(text.status.success());
    incident.check_text(
        "report",
        &String::from_utf8_lossy(&text.stdout),
        &bridge_del,
    );
    let reported_a = array(&report, "namespaces")
        .iter()
        .find(|n| a.is(&n["id"]))
        .unwrap_or_else(|| panic!("the report lists no pod A {a:?}"));
    assert_eq!(reported_a["state"], "leaked", "{reported_a:#}");

    // Torn down, every namespace of the test dies.
    pod_b.tear_down();
    drop(pod_a);
    client.tear_down();
    let node = NetnsId::of(&net.node.netns());
    drop(net);
    for (what, n) in [
        ("pod A", a),
        ("pod B", b),
        ("client", incident.client),
        ("node", node),
    ] {
        assert!(
            !n.exists(),
            "{what} {n:?} is still held: {:?}",
            common::netns_holders(n.inum)
        );
    }
    // In a guest run that collects (`cargo xtask record-fixtures`), the trace and these facts
    // become the `cni-incident` fixture.
    if !dual_stack {
        common::leave_for_collection("cni-incident", &trace, &incident.to_json());
    }
}

/// One CNI plugin run as a `cni_exec` event shows it: (file executed, CNI_COMMAND,
/// CNI_IFNAME).
type ExecSeen = (String, String, String);

/// The `cni_exec` events of `events` for the sandbox `container_id`, in order, after checking
/// that each carries the CNI_NETNS and CNI_ARGS the test passed, uncut, with the plugin's name
/// as its comm.
fn execs_of(source: &str, events: &[Value], container_id: &str, env: &CniEnv) -> Vec<ExecSeen> {
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "cni_exec" && e["container_id"] == container_id)
        .collect();
    let mut seen = Vec::new();
    for e in mine {
        let path = e["path"].as_str().unwrap_or_default();
        assert_eq!(
            e["netns_path"],
            env.netns.to_str().unwrap(),
            "{source}: CNI_NETNS of {e}"
        );
        assert_eq!(
            e["cni_args"],
            env.args.as_str(),
            "{source}: CNI_ARGS of {e}"
        );
        assert_eq!(e["truncated"], json!([]), "{source}: nothing cut in {e}");
        let plugin = Path::new(path).file_name().unwrap().to_string_lossy();
        assert_eq!(e["comm"], *plugin, "{source}: the plugin's comm in {e}");
        seen.push((
            path.to_string(),
            e["verb"].as_str().unwrap_or_default().to_string(),
            e["if_name"].as_str().unwrap_or_default().to_string(),
        ));
    }
    seen
}

/// The plugin runs of one pod's ADD and DEL, as the runtime (the test) and the bridge plugin
/// make them: bridge execs host-local with its own environment, so with the same CNI_*.
fn expected_execs() -> Vec<ExecSeen> {
    let run = |plugin: &str, verb: &str, ifname: &str| {
        (
            Path::new(CNI_BIN_DIR)
                .join(plugin)
                .to_string_lossy()
                .into_owned(),
            verb.to_string(),
            ifname.to_string(),
        )
    };
    vec![
        run("loopback", "ADD", "lo"),
        run("bridge", "ADD", "eth0"),
        run("host-local", "ADD", "eth0"),
        run("bridge", "DEL", "eth0"),
        run("host-local", "DEL", "eth0"),
        run("loopback", "DEL", "lo"),
    ]
}

/// How each plugin run of sandbox `container_id` ended, in the order they started, as its
/// `cni_exit` event (same tgid, later) shows it: (plugin, wait status, parent: "runtime" when
/// it is `runtime`, else the plugin that started it).
fn exits_of(
    source: &str,
    events: &[Value],
    container_id: &str,
    runtime: u32,
) -> Vec<(String, i64, String)> {
    let execs: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "cni_exec" && e["container_id"] == container_id)
        .collect();
    execs
        .iter()
        .map(|exec| {
            let tgid = &exec["tgid"];
            let exit = events
                .iter()
                .find(|e| {
                    e["type"] == "cni_exit"
                        && e["tgid"] == *tgid
                        && e["ts_ns"].as_u64() >= exec["ts_ns"].as_u64()
                })
                .unwrap_or_else(|| panic!("{source}: no cni_exit of {exec}"));
            let parent = exit["parent"].as_u64().unwrap() as u32;
            let parent = if parent == runtime {
                "runtime".to_string()
            } else {
                execs
                    .iter()
                    .find(|e| e["tgid"] == parent)
                    .map(|e| e["comm"].as_str().unwrap().to_string())
                    .unwrap_or_else(|| panic!("{source}: parent {parent} of {exit}"))
            };
            (
                exec["comm"].as_str().unwrap().to_string(),
                exit["wait_status"].as_i64().unwrap(),
                parent,
            )
        })
        .collect()
}

#[test]
fn every_cni_plugin_run_is_an_event_with_the_environment_it_was_given() {
    if !require_root() {
        return;
    }
    require_plugins();
    let probes = netns_trace_json(&["probes", "--json"]);
    let cni_probe = array(&probes, "probes")
        .iter()
        .find(|p| p["name"] == "cni_exec")
        .unwrap_or_else(|| panic!("`probes` lists no cni_exec: {probes:#}"));
    assert_eq!(cni_probe["status"], "attached", "{cni_probe:#}");
    let exit_probe = array(&probes, "probes")
        .iter()
        .find(|p| p["name"] == "cni_exit")
        .unwrap_or_else(|| panic!("`probes` lists no cni_exit: {probes:#}"));
    assert_eq!(exit_probe["status"], "attached", "{exit_probe:#}");

    let trace_dir = tempfile::Builder::new()
        .prefix("netns-trace-cni-exec-")
        .tempdir()
        .unwrap();
    let trace = trace_dir.path().join("watch.trace");
    let cache = CniCache::new();
    let watch = Watch::start(&["--raw", "--record", trace.to_str().unwrap()]);
    let net = Network::new("exec", "10.231.63", 10, 11, &cache);
    // One pod as containerd runs it (CNI_NETNS is its pin), one given /proc/PID/ns/net.
    let mut pods = Vec::new();
    for (name, pinned) in [("exec-pinned", true), ("exec-proc", false)] {
        let mut pod = Pod::start(&net, name, pinned);
        pod.attachment.del_successfully();
        let env = pod.attachment.env("eth0");
        pods.push((pod.attachment.container_id.clone(), env));
        drop(pod);
    }
    // A run that fails to exec is no plugin run.
    let missing = Command::new(Path::new(CNI_BIN_DIR).join("no-such-plugin"))
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", &pods[0].0)
        .status();
    assert!(missing.is_err(), "no-such-plugin ran: {missing:?}");
    drop(net);
    let lines = watch.stop();
    let live = common::watch::events(&lines);

    let out = Command::new(common::watch::netns_trace_bin())
        .args([
            "export",
            trace.to_str().unwrap(),
            "--format",
            "jsonl",
            "-o",
            "-",
        ])
        .output()
        .expect("run netns-trace export");
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL {l}: {e}")))
        .collect();

    for (container_id, env) in &pods {
        for (source, events) in [("watch", &live), ("trace", &replayed)] {
            assert_eq!(
                execs_of(source, events, container_id, env),
                expected_execs(),
                "{source}: the plugin runs of sandbox {container_id}"
            );
            // Each ended with 0, told the test (the runtime); host-local told bridge.
            let ok = |plugin: &str, parent: &str| (plugin.to_string(), 0, parent.to_string());
            assert_eq!(
                exits_of(source, events, container_id, std::process::id()),
                vec![
                    ok("loopback", "runtime"),
                    ok("bridge", "runtime"),
                    ok("host-local", "bridge"),
                    ok("bridge", "runtime"),
                    ok("host-local", "bridge"),
                    ok("loopback", "runtime"),
                ],
                "{source}: the plugin ends of sandbox {container_id}"
            );
        }
    }
}

#[test]
fn a_cni_del_whose_ipam_plugin_fails_is_a_cni_del_failed() {
    if !require_root() {
        return;
    }
    require_plugins();
    let trace_dir = tempfile::Builder::new()
        .prefix("netns-trace-cni-del-failed-")
        .tempdir()
        .unwrap();
    let trace = trace_dir.path().join("watch.trace");
    let cache = CniCache::new();
    let watch = Watch::start(&["--record", trace.to_str().unwrap()]);
    let net = Network::new("delfail", "10.231.64", 10, 11, &cache);
    let mut pod = Pod::start(&net, "del-fails", true);
    // The same network with a range host-local cannot parse: bridge's DEL runs host-local,
    // which exits 1, and so does bridge.
    let mut bad = net.conf.clone();
    bad["ipam"]["ranges"] = json!([[{"subnet": "not-a-subnet"}]]);
    let bad = with_prev_result(&bad, pod.attachment.eth0_result());
    let failed = net.invoke("bridge", &bad, "DEL", &pod.attachment.env("eth0"));
    assert!(
        !failed.status.success(),
        "{} succeeded with a bad range: {}",
        failed.what,
        failed.stdout
    );
    let code = failed.status.code().expect("bridge exited");
    let container_id = pod.attachment.container_id.clone();
    let netns = pod.netns;
    // The runtime retries with the right config, and the pod goes.
    pod.attachment.del_successfully();
    for pin in &mut pod.pins {
        pin.remove();
    }
    drop(pod);
    drop(net);
    let lines = watch.stop();
    let report = report_of(&trace, "30");

    for (source, findings) in [
        ("watch", findings(&lines)),
        ("report", array(&report, "findings").clone()),
    ] {
        let failed: Vec<&Value> = findings
            .iter()
            .filter(|f| f["kind"] == "cni_del_failed" && f["container_id"] == container_id.as_str())
            .collect();
        assert_eq!(
            failed.len(),
            1,
            "{source}: one cni_del_failed: {findings:#?}"
        );
        let f = failed[0];
        assert!(
            netns.is(&f["netns"]),
            "{source}: the pod's namespace: {f:#}"
        );
        assert_eq!(f["del"]["plugin"]["comm"], "bridge", "{source}: {f:#}");
        assert_eq!(f["del"]["parent"], std::process::id(), "{source}: {f:#}");
        assert_eq!(
            f["del"]["end"]["status"],
            json!({"how": "exited", "code": code}),
            "{source}: {f:#}"
        );
        let chained = array(f, "chained");
        assert!(
            chained.iter().any(|c| c["plugin"]["comm"] == "host-local"
                && c["end"]["status"]["how"] == "exited"
                && c["end"]["status"]["code"] != 0),
            "{source}: host-local failed under it: {f:#}"
        );
        assert_eq!(f["namespace"]["state"], "alive", "{source}: {f:#}");
        let others: Vec<&Value> = findings
            .iter()
            .filter(|g| g["kind"] != "cni_del_failed" && netns.is(&g["netns"]))
            .collect();
        assert!(others.is_empty(), "{source}: {others:#?}");
    }
}

/// The CNI GC dry run's entries about sandbox `container_id`, by interface.
fn gc_entries<'a>(report: &'a Value, container_id: &str) -> Vec<(&'a str, &'a Value)> {
    let mut v: Vec<(&str, &Value)> = array(report, "cni_gc")
        .iter()
        .filter(|g| g["container_id"] == container_id)
        .map(|g| (g["if_name"].as_str().unwrap(), g))
        .collect();
    v.sort_by_key(|(i, _)| *i);
    v
}

fn reasons(g: &Value) -> Vec<&str> {
    array(g, "reasons")
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect()
}

/// A runtime that loses track of pods (it restarted, its state went) never runs their DEL: their
/// cache entries stay, and those are what its CNI GC would clean. One lost pod is pinned as
/// containerd pins it (its namespace lives on, memberless), one was given /proc/PID/ns/net
/// (the path dies with its pause); a third pod runs on. `scan` and the report list the lost
/// pods' attachments, with why, and not the live one's; once the runtime runs their DELs (what
/// its GC would do) the cache empties and nothing is listed.
#[test]
fn the_cache_entries_of_pods_a_runtime_lost_are_what_its_cni_gc_would_clean() {
    if !require_root() {
        return;
    }
    require_plugins();
    let trace_dir = tempfile::Builder::new()
        .prefix("netns-trace-cni-gc-")
        .tempdir()
        .unwrap();
    let trace = trace_dir.path().join("watch.trace");
    let cache = CniCache::new();
    let results = cache.results();
    let cache_env = [(CNI_CACHE_ENV, results.as_path())];
    let watch = Watch::start_with_env(
        &[
            "--grace",
            INCIDENT_GRACE,
            "--record",
            trace.to_str().unwrap(),
        ],
        &cache_env,
    );
    let net = Network::new("gc", "10.231.65", 10, 13, &cache);
    let live = Pod::start(&net, "gc-live", true);
    let mut pinned = Pod::start(&net, "gc-lost-pinned", true);
    let mut by_proc = Pod::start(&net, "gc-lost-proc", false);
    assert_eq!(cache.entries().len(), 6, "lo and eth0 of 3 pods");
    let pin_path = mountinfo_pin(pinned.netns.inum, &pinned.pins[0].path);
    let proc_path = by_proc.cni_netns().to_string_lossy().into_owned();
    // The runtime loses them: their pauses die, no DEL runs.
    pinned.pause.kill();
    by_proc.pause.kill();
    std::thread::sleep(INCIDENT_VERDICT_WAIT);

    let scan = netns_trace_json_with_env(&["scan", "--json"], &cache_env);
    let lines = watch.stop();
    let report = report_of(&trace, INCIDENT_GRACE);
    for (source, r, pinned_state) in [
        ("scan", &scan, "leak_suspect"),
        ("report", &report, "leaked"),
    ] {
        assert_eq!(
            gc_entries(r, &live.attachment.container_id),
            vec![],
            "{source}: the live pod is valid"
        );
        let p = gc_entries(r, &pinned.attachment.container_id);
        assert_eq!(
            p.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec!["eth0", "lo"],
            "{source}: {p:#?}"
        );
        for (ifname, g) in &p {
            assert_eq!(reasons(g), vec!["netns_leaked"], "{source} {ifname}: {g:#}");
            assert_eq!(g["reasons"][0]["state"], pinned_state, "{source}: {g:#}");
            assert!(pinned.netns.is(&g["netns"]["id"]), "{source}: {g:#}");
            assert_eq!(g["netns"]["resolves_to"]["kind"], "pin", "{source}: {g:#}");
            assert_eq!(g["netns"]["state"], pinned_state, "{source}: {g:#}");
            assert!(
                array(g, "pins")
                    .iter()
                    .any(|pin| pin["kind"] == "bind_mount" && pin["path"] == pin_path.as_str()),
                "{source}: the pin {pin_path}: {g:#}"
            );
            assert_eq!(g["pod_name"], "gc-lost-pinned", "{source}: {g:#}");
        }
        let (ip, prefix) = pinned.attachment.ip();
        assert_eq!(
            p[0].1["ips"][0]["address"],
            ip.to_string(),
            "{source}: {:#}",
            p[0].1
        );
        assert_eq!(p[0].1["ips"][0]["prefix_len"], prefix, "{source}");
        assert_eq!(p[0].1["network"], net.name.as_str(), "{source}");
        assert_eq!(p[1].1["network"], LOOPBACK_NETWORK, "{source}");

        let q = gc_entries(r, &by_proc.attachment.container_id);
        assert_eq!(
            q.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec!["eth0", "lo"],
            "{source}: {q:#?}"
        );
        for (ifname, g) in &q {
            assert_eq!(g["netns"]["path"], proc_path.as_str(), "{source}: {g:#}");
            assert_eq!(
                reasons(g).first(),
                Some(&"netns_path_dead"),
                "{source} {ifname}: {g:#}"
            );
        }
    }
    // With history, the report has the ADD and the namespace that path was for.
    for (ifname, g) in gc_entries(&report, &by_proc.attachment.container_id) {
        assert_eq!(g["add"]["verb"], "ADD", "{ifname}: {g:#}");
        assert!(by_proc.netns.is(&g["netns"]["id"]), "{ifname}: {g:#}");
        assert_eq!(
            g["netns"]["resolves_to"]["kind"], "exited_process",
            "{ifname}: {g:#}"
        );
        assert_eq!(g["del"], Value::Null, "{ifname}: {g:#}");
    }
    assert!(
        findings(&lines)
            .iter()
            .all(|f| !f["kind"].as_str().is_some_and(|k| k.starts_with("cni_"))),
        "no DEL ran, so no CNI finding"
    );
    let text = Command::new(common::watch::netns_trace_bin())
        .args(["scan"])
        .env(CNI_CACHE_ENV, &results)
        .output()
        .expect("run netns-trace scan");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(
            "\nCNI GC WOULD CLEAN (advice only: netns-trace runs no plugin and deletes nothing)\n"
        ) && text.lines().any(|l| l.starts_with(&format!(
            "{} sandbox {} eth0, netns {pin_path}",
            net.name, pinned.attachment.container_id
        ))),
        "scan text: {text}"
    );

    // What the runtime's GC would do: DEL each with its cached netns path; libcni removes the
    // entries, and then the pinned namespace's pin.
    pinned.attachment.del_successfully();
    by_proc.attachment.del_successfully();
    for pin in &mut pinned.pins {
        pin.remove();
    }
    let scan = netns_trace_json_with_env(&["scan", "--json"], &cache_env);
    assert_eq!(scan["cni_gc"], json!([]), "after the DELs: {scan:#}");
    assert_eq!(cache.entries().len(), 2, "the live pod's lo and eth0");

    let ids = [live.netns, pinned.netns, by_proc.netns];
    live.tear_down();
    drop(pinned);
    drop(by_proc);
    drop(net);
    for n in ids {
        assert!(
            !n.exists(),
            "{n:?} is still held: {:?}",
            common::netns_holders(n.inum)
        );
    }
}
