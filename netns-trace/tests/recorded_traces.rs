//! Recorded traces, both ways round.
//!
//! - `every_fixture_reports_without_bpf`: the traces committed in tests/data/traces were
//!   recorded in the 5.10 / 6.1 / 6.12 guests (full mode) by the round-trip tests below
//!   (`cargo xtask record-fixtures`), and `<kernel>-cni-incident` by the CNI incident of
//!   tests/cni_plugins.rs (the real reference plugins; its sidecar is that test's
//!   `CniIncident`). Their reports must say what happened there. Each report
//!   runs as `nobody` under a seccomp filter that makes bpf(2) and perf_event_open(2) fail
//!   with ENOSYS, which is what a kernel built without BPF answers: `report` needs neither
//!   root nor BPF.
//! - `incident_recorded_then_reported` / `clean_teardown_recorded_then_reported`: `netns-trace
//!   record` around the incident scenario on the running kernel, then `report` on the file,
//!   checked against what the testbed says it built. In a guest run with
//!   `--collect-traces`, the trace and the testbed's JSON are left in
//!   $NETNS_TRACE_COLLECT_DIR: that is how the fixtures are made.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::cni_incident::CniIncident;
use common::watch::{netns_trace_bin, spawn_until_ready};
use common::{Scenario, require_root};
use netns_trace::trace::TraceReader;
use serde_json::Value;

/// Grace period for every report here: the recordings end a few seconds after pod A died.
const GRACE_SECS: &str = "1";
/// Pod IPs of the two round-trip scenarios (inside the testbed's 10.231.0.0/16).
const INCIDENT_IP: &str = "10.231.51.10/24";
const CLEAN_IP: &str = "10.231.52.10/24";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/traces")
}

// ------------------------------------------------------------------------------------------
// What a report of the incident must say, given the testbed's description of the scenario.
// ------------------------------------------------------------------------------------------

fn in_netns(id: &Value, inum: u64) -> bool {
    id.as_str()
        .is_some_and(|id| id.starts_with(&format!("net:[{inum}]")))
}

fn findings_of<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

/// The namespaces listed with this inode number, oldest first (numbers get reused).
fn namespaces_with_inum(report: &Value, inum: u64) -> Vec<&Value> {
    report["namespaces"]
        .as_array()
        .expect("namespaces array")
        .iter()
        .filter(|n| n["inum"] == inum)
        .collect()
}

fn check_trace_health(report: &Value) {
    assert_eq!(report["schema"], "netns-trace/report/v1");
    let damage = &report["trace"]["damage"];
    assert_eq!(damage["intact"], true, "the trace is whole: {damage}");
    assert_eq!(
        damage["clean_shutdown"], true,
        "the recorder shut down in order: {damage}"
    );
    assert!(
        report["trace"]["events"].as_u64().unwrap_or(0) > 0,
        "no events replayed"
    );
}

/// The leaking incident: pod A leaked through its CNI bind mount, still holding the pod IP
/// and MAC; pod B got the same IP; ARP for it was answered from pod A.
fn check_incident_report(report: &Value, scenario: &Value) {
    check_trace_health(report);
    let pod_a = &scenario["pod_a"];
    let pod_b = &scenario["pod_b"];
    let a = pod_a["netns_inum"].as_u64().expect("pod_a.netns_inum");
    let b = pod_b["netns_inum"].as_u64().expect("pod_b.netns_inum");
    let pin = pod_a["pin"].as_str().expect("pod_a.pin");
    let ip = pod_a["ip"].as_str().expect("pod_a.ip");
    let mac_a = pod_a["mac"]
        .as_str()
        .expect("pod_a.mac")
        .to_ascii_lowercase();

    let ns_a = namespaces_with_inum(report, a);
    let ns_a = ns_a
        .first()
        .unwrap_or_else(|| panic!("pod A net:[{a}] not listed"));
    assert_eq!(ns_a["state"], "leaked", "pod A: {ns_a:#}");
    assert!(
        ns_a["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["path"] == pin),
        "pod A is pinned by its bind mount {pin}: {ns_a:#}"
    );
    // The verdict first, on one line: CI shows only the head of a long message.
    assert_eq!(
        ns_a["last_member"]["tgid"], pod_a["pause_pid"],
        "pod A's pause process was its last member; last_member={} members={}; pod A: {ns_a:#}",
        ns_a["last_member"], ns_a["members"]
    );

    let leaks = findings_of(report, "leaked_netns");
    let leak = leaks
        .iter()
        .find(|f| in_netns(&f["netns"], a))
        .unwrap_or_else(|| panic!("no leaked_netns for pod A net:[{a}]: {leaks:#?}"));
    assert!(
        leak["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["path"] == pin),
        "the leak names the bind mount {pin}: {leak:#}"
    );
    let interfaces = leak["interfaces"].to_string().to_ascii_lowercase();
    assert!(
        interfaces.contains(ip) && interfaces.contains(&mac_a),
        "the leak's evidence holds pod A's {ip} and {mac_a}: {leak:#}"
    );
    assert!(
        !leaks.iter().any(|f| in_netns(&f["netns"], b)),
        "pod B is alive, never leaked: {leaks:#?}"
    );

    let duplicates = findings_of(report, "duplicate_ip");
    let duplicate = duplicates
        .iter()
        .find(|f| f["ip"] == ip)
        .unwrap_or_else(|| panic!("no duplicate_ip for {ip}: {duplicates:#?}"));
    let holders = duplicate["holders"].as_array().unwrap();
    for (pod, inum) in [("A", a), ("B", b)] {
        assert!(
            holders.iter().any(|h| in_netns(&h["netns"], inum)),
            "pod {pod} holds {ip}: {duplicate:#}"
        );
    }

    let stale = findings_of(report, "stale_arp_reply");
    assert!(
        stale.iter().any(|f| f["sender_ip"] == ip
            && f["sender_mac"].as_str().map(str::to_ascii_lowercase) == Some(mac_a.clone())
            && in_netns(&f["observed_in"], a)),
        "a stale ARP reply for {ip} from pod A's {mac_a}: {stale:#?}"
    );
    assert!(
        !stale.iter().any(|f| in_netns(&f["observed_in"], b)),
        "pod B, the live owner of {ip}, is never accused: {stale:#?}"
    );
    let ns_b = namespaces_with_inum(report, b);
    assert!(
        ns_b.iter().any(|n| n["state"] == "alive"),
        "pod B is alive: {ns_b:#?}"
    );
}

/// The clean teardown: pod A unmounted, then killed. Nothing leaks through it, nothing is
/// duplicated, nobody answers ARP in its name. The kernel frees a namespace asynchronously
/// (cleanup_net on a workqueue), so a live recording may end before pod A's teardown is seen:
/// then it must at least be draining with no pin. The committed fixtures must show it
/// destroyed (`require_destroyed`).
fn check_clean_teardown_report(report: &Value, scenario: &Value, require_destroyed: bool) {
    check_trace_health(report);
    let pod_a = &scenario["pod_a"];
    let a = pod_a["netns_inum"].as_u64().expect("pod_a.netns_inum");
    let ip = pod_a["ip"].as_str().expect("pod_a.ip");
    let listed = namespaces_with_inum(report, a);
    // Its inode number may have gone to pod B or the client: the cookie (5.14+) tells them
    // apart, else pod A is the oldest.
    let ns_a = match pod_a["netns_cookie"].as_u64() {
        Some(cookie) => listed.iter().find(|n| n["cookie"] == cookie),
        None => listed.first(),
    }
    .unwrap_or_else(|| panic!("pod A net:[{a}] not listed: {listed:#?}"));
    if require_destroyed || ns_a["state"] != "draining" {
        assert_eq!(ns_a["state"], "destroyed", "pod A was torn down: {ns_a:#}");
    } else {
        eprintln!("pod A's teardown was not traced before the recording ended; it is draining");
    }
    // One line first: a CI log keeps only the head of a panic message.
    assert_eq!(
        ns_a["pins"],
        serde_json::json!([]),
        "nothing pins pod A, but it has pins {} (state {}, members {}); whole entry: {ns_a:#}",
        ns_a["pins"],
        ns_a["state"],
        ns_a["members"]
    );
    assert!(
        !findings_of(report, "leaked_netns")
            .iter()
            .any(|f| f["netns"] == ns_a["id"]),
        "no leak for pod A"
    );
    assert!(
        !findings_of(report, "duplicate_ip")
            .iter()
            .any(|f| f["ip"] == ip),
        "no duplicate once pod A is gone"
    );
    assert!(
        !findings_of(report, "stale_arp_reply")
            .iter()
            .any(|f| f["sender_ip"] == ip),
        "only pod B answered for {ip}"
    );
}

/// The CNI incident of tests/cni_plugins.rs, run with the real reference plugins and recorded
/// by `watch --record`: one leak finding names the pin, the DEL that ran after the pause died
/// (time, exit status, the dead /proc/PID/ns/net) and the namespace that outlived it, beside
/// exactly one cni_del_left_namespace. The expectations are what that test saw, from its
/// sidecar. Returns the DEL the leak cites, for the text report.
fn check_cni_incident_report(report: &Value, scenario: &Value) -> Value {
    check_trace_health(report);
    let incident = CniIncident::from_json(scenario);
    let findings = report["findings"].as_array().expect("findings array");
    incident.check_findings("fixture", findings);
    incident.check_cni("fixture", findings)
}

/// Checks a fixture's JSON report; for the CNI incident, returns the DEL its leak cites.
fn check_report(scenario_name: &str, report: &Value, scenario: &Value) -> Option<Value> {
    match scenario_name {
        "incident" => check_incident_report(report, scenario),
        "clean-teardown" => check_clean_teardown_report(report, scenario, true),
        "cni-incident" => return Some(check_cni_incident_report(report, scenario)),
        other => panic!("no expectations for a scenario called {other:?}"),
    }
    None
}

fn parse_report(args: &[&str], out: &Output) -> Value {
    // 3 is "leak found", which only --fail-on-leak asks for.
    assert!(
        out.status.success(),
        "netns-trace {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("netns-trace {args:?} printed bad JSON: {e}"))
}

// ------------------------------------------------------------------------------------------
// No BPF at all: an unprivileged user, with bpf(2) answering ENOSYS.
// ------------------------------------------------------------------------------------------

const NOBODY: libc::uid_t = 65534;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_00B7;

/// A classic-BPF seccomp program: bpf(2) and perf_event_open(2) (and any foreign-arch call)
/// fail with ENOSYS, everything else runs. ENOSYS is what a kernel without
/// CONFIG_BPF_SYSCALL returns, so this is "a machine with no BPF" for the process.
fn no_bpf_filter() -> [libc::sock_filter; 8] {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let enosys = RET_ERRNO | libc::ENOSYS as u32;
    [
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 1, 0, AUDIT_ARCH_NATIVE),
        op(RET_K, 0, 0, enosys),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JEQ_K, 2, 0, libc::SYS_bpf as u32),
        op(JEQ_K, 1, 0, libc::SYS_perf_event_open as u32),
        op(RET_K, 0, 0, RET_ALLOW),
        op(RET_K, 0, 0, enosys),
    ]
}

/// Installs `no_bpf_filter` on the calling thread (and what it execs). Only raw syscalls: it
/// runs between fork and exec.
fn install_no_bpf_filter(filter: &[libc::sock_filter; 8]) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// errno of a bpf(BPF_MAP_CREATE) with no attributes: EFAULT/EINVAL/EPERM where BPF exists.
fn bpf_syscall_errno() -> i32 {
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0) };
    assert_eq!(rc, -1, "bpf(BPF_MAP_CREATE, NULL, 0) cannot succeed");
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `BIN ARGS` as nobody (when we are root) with bpf(2) gone.
fn run_without_bpf(bin: &Path, args: &[&str]) -> Output {
    let filter = no_bpf_filter();
    let drop_root = unsafe { libc::geteuid() } == 0;
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).env_remove("RUST_LOG");
    unsafe {
        cmd.pre_exec(move || {
            if drop_root
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(NOBODY) != 0
                    || libc::setuid(NOBODY) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            install_no_bpf_filter(&filter)
        });
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("run netns-trace {args:?} without BPF: {e}"))
}

#[test]
fn the_no_bpf_filter_makes_bpf_fail_like_a_kernel_without_it() {
    let filter = no_bpf_filter();
    let (before, after) = std::thread::spawn(move || {
        let before = bpf_syscall_errno();
        install_no_bpf_filter(&filter).expect("install the seccomp filter");
        (before, bpf_syscall_errno())
    })
    .join()
    .unwrap();
    // Where the kernel has BPF, the filter is what turns the answer into ENOSYS.
    if before != libc::ENOSYS {
        eprintln!("bpf(2) answered errno {before} before the filter");
    }
    assert_eq!(after, libc::ENOSYS, "bpf(2) under the filter");
}

/// (kernel, scenario, trace path) of every committed fixture, e.g. ("6.1", "incident", …).
fn fixtures() -> Vec<(String, String, PathBuf)> {
    let dir = fixture_dir();
    let mut found: Vec<(String, String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "nstrace"))
        .map(|path| {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let (kernel, scenario) = stem
                .split_once('-')
                .unwrap_or_else(|| panic!("{} is not <kernel>-<scenario>.nstrace", path.display()));
            (kernel.to_string(), scenario.to_string(), path)
        })
        .collect();
    found.sort();
    found
}

/// Copies a file where `nobody` can use it, with `mode` (the checkout may not be
/// world-readable, e.g. a clone under a 0700 `mktemp -d`).
fn readable_copy(file: &Path, dir: &Path, mode: u32) -> PathBuf {
    let copy = dir.join(file.file_name().unwrap());
    std::fs::copy(file, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(mode)).unwrap();
    copy
}

#[test]
fn every_fixture_reports_without_bpf() {
    let fixtures = fixtures();
    let kernels: Vec<&str> = fixtures.iter().map(|(k, _, _)| k.as_str()).collect();
    for kernel in ["5.10", "6.1", "6.12"] {
        assert!(
            kernels.contains(&kernel),
            "no {kernel} fixture in {} (cargo xtask record-fixtures)",
            fixture_dir().display()
        );
        assert!(
            fixtures
                .iter()
                .any(|(k, s, _)| k == kernel && s == "cni-incident"),
            "no {kernel}-cni-incident fixture in {} (cargo xtask record-fixtures)",
            fixture_dir().display()
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("netns-trace-fixtures-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = readable_copy(Path::new(&netns_trace_bin()), scratch.path(), 0o755);

    for (kernel, scenario_name, fixture) in &fixtures {
        eprintln!("fixture {}", fixture.display());
        let sidecar = fixture.with_extension("scenario.json");
        let scenario: Value = serde_json::from_slice(
            &std::fs::read(&sidecar).unwrap_or_else(|e| panic!("{}: {e}", sidecar.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", sidecar.display()));
        let trace = readable_copy(fixture, scratch.path(), 0o644);
        let trace_arg = trace.to_str().unwrap();

        let args = ["report", trace_arg, "--json", "--grace", GRACE_SECS];
        let report = parse_report(&args, &run_without_bpf(&bin, &args));
        assert_eq!(
            report["probe_mode"], "full",
            "{kernel}: guests record in full mode"
        );
        let release = report["host"]["kernel"].as_str().unwrap_or_default();
        assert!(
            release.starts_with(&format!("{kernel}."))
                || release.starts_with(&format!("{kernel}-")),
            "{kernel}: the report names the guest's kernel, not {release:?}"
        );
        let cited_del = check_report(scenario_name, &report, &scenario);

        // The text report renders from the same file, also without BPF.
        let out = run_without_bpf(&bin, &["report", trace_arg, "--grace", GRACE_SECS]);
        assert!(
            out.status.success(),
            "text report: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("kernel: {release}")) && text.contains("probe mode: full"),
            "{text}"
        );
        assert!(text.contains("NAMESPACES"), "{text}");
        if scenario_name == "incident" {
            let ip = scenario["pod_a"]["ip"].as_str().unwrap();
            for needle in ["leaked", "duplicate_ip", "stale_arp_reply", ip] {
                assert!(
                    text.contains(needle),
                    "{kernel}: text report lacks {needle:?}:\n{text}"
                );
            }
        }
        if let Some(del) = cited_del {
            CniIncident::from_json(&scenario).check_text(kernel, &text, &del);
        }

        // The header's probe table: the guests attach fentry/fexit and kprobe programs, which
        // this host (tracepoint mode) never can.
        let reader =
            TraceReader::open(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
        let meta = reader.meta();
        let attached: Vec<&str> = meta
            .probes
            .iter()
            .filter(|p| p.status == "attached")
            .map(|p| p.mechanism.as_str())
            .collect();
        for mechanism in ["fentry", "kprobe"] {
            assert!(
                attached.contains(&mechanism),
                "{kernel}: no attached {mechanism} probe in {:#?}",
                meta.probes
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// Record → report on the running kernel (full mode in the guests, tracepoint on the host).
// ------------------------------------------------------------------------------------------

/// `netns-trace record -o FILE` in the background; `stop` ends it with SIGTERM.
struct Recorder {
    child: Option<std::process::Child>,
}

impl Recorder {
    fn start(trace: &Path) -> Recorder {
        let mut cmd = Command::new(netns_trace_bin());
        cmd.args(["record", "--quiet", "-o"])
            .arg(trace)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Recorder {
            child: Some(spawn_until_ready(&mut cmd, "record", "recording to")),
        }
    }

    fn stop(mut self) {
        let child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().expect("wait for the recorder");
        assert!(
            out.status.success(),
            "netns-trace record exited with {}",
            out.status
        );
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Records `testbed incident EXTRA` and returns (trace, the testbed's JSON); the scenario is
/// torn down after the recorder stopped, so the trace ends with pod A's state as it was.
fn record_incident(extra: &[&str]) -> (tempfile::TempDir, PathBuf, Value) {
    let dir = tempfile::Builder::new()
        .prefix("netns-trace-record-")
        .tempdir()
        .unwrap();
    let trace = dir.path().join("incident.nstrace");
    let recorder = Recorder::start(&trace);
    let scenario = Scenario::start("incident", extra);
    // Pod A's last member died a while ago; give the leak more than the grace period.
    std::thread::sleep(Duration::from_secs(3));
    recorder.stop();
    let out = scenario.out.clone();
    drop(scenario);
    (dir, trace, out)
}

fn report_of(trace: &Path) -> Value {
    let trace_arg = trace.to_str().unwrap();
    let args = ["report", trace_arg, "--json", "--grace", GRACE_SECS];
    let out = Command::new(netns_trace_bin())
        .args(args)
        .output()
        .expect("run netns-trace report");
    let report = parse_report(&args, &out);
    if let Ok(mode) = std::env::var("NETNS_TRACE_EXPECT_MODE") {
        assert_eq!(
            report["probe_mode"],
            mode.as_str(),
            "recorded in the expected mode"
        );
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(report["host"]["kernel"], release.trim());
    report
}

#[test]
fn incident_recorded_then_reported() {
    if !require_root() {
        return;
    }
    let (_dir, trace, scenario) = record_incident(&["--ip", INCIDENT_IP]);
    assert!(
        scenario["arp"]["stale_reply"].as_bool().unwrap_or(false),
        "the testbed saw pod A answer ARP: {scenario:#}"
    );
    let report = report_of(&trace);
    check_incident_report(&report, &scenario);
    let out = Command::new(netns_trace_bin())
        .args([
            "report",
            trace.to_str().unwrap(),
            "--grace",
            GRACE_SECS,
            "--fail-on-leak",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "--fail-on-leak exits 3 on the leak"
    );
    common::leave_for_collection("incident", &trace, &scenario);
}

#[test]
fn clean_teardown_recorded_then_reported() {
    if !require_root() {
        return;
    }
    let (_dir, trace, scenario) = record_incident(&["--ip", CLEAN_IP, "--clean-teardown"]);
    let report = report_of(&trace);
    check_clean_teardown_report(&report, &scenario, false);
    common::leave_for_collection("clean-teardown", &trace, &scenario);
}
