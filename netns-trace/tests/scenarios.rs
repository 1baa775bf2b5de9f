//! The real-world leak scenarios of issue 5 (2–7), end to end on the running kernel: the testbed
//! builds each situation with real namespaces, `netns-trace watch --json --record` watches it,
//! and the assertions read `watch --json` findings and `report --json` of the recorded trace.
//! Needs root; run serially (`-- --test-threads=1`), the tests share kernel state.
//!
//! The churn sizes default to the issues' numbers on the host; NETNS_TRACE_CHURN_COUNT (clean
//! churn, 500) and NETNS_TRACE_NEVER_PIN_CHURN_COUNT (tracer does not pin, 1,000) change them.
//! QEMU guests (TCG) churn 100 each unless those are set.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::watch::{
    Watch, findings, leak_findings_for, netns_trace_bin, report_of, spawn_until_ready,
};
use common::{
    Scenario, monotonic_ns, names_netns, net_namespace_slab_count, require_root, run_in_netns,
    settle_teardown, testbed, wait_until,
};
use serde_json::Value;

/// Grace period given to the tracer: short, so the tests do not wait 30 s for a verdict.
const GRACE: &str = "2";
/// Past the grace period, plus the collector's verdict tick and some slack for slow guests.
const VERDICT_WAIT: Duration = Duration::from_secs(5);

/// The scenario's namespace as (inum, cookie) from its testbed JSON.
fn scenario_netns(sc: &Scenario) -> (u64, Option<u64>) {
    (sc.u64_at("/netns_inum"), sc.out["netns_cookie"].as_u64())
}

fn the_leak_finding(findings: &[Value], inum: u64, cookie: Option<u64>) -> Value {
    let mut leaks = leak_findings_for(findings, inum, cookie);
    assert_eq!(
        leaks.len(),
        1,
        "expected one leaked_netns for net:[{inum}] (cookie {cookie:?}) in {findings:#?}"
    );
    leaks.remove(0)
}

fn report_namespace(report: &Value, inum: u64, cookie: Option<u64>) -> &Value {
    let mut found = report["namespaces"].as_array().unwrap().iter().filter(|n| {
        n["inum"] == inum
            && n["id"]
                .as_str()
                .is_some_and(|id| names_netns(id, inum, cookie))
    });
    let ns = found
        .next()
        .unwrap_or_else(|| panic!("report lists no net:[{inum}] (cookie {cookie:?})"));
    assert!(found.next().is_none(), "report lists net:[{inum}] twice");
    ns
}

/// A fresh path for a trace file (the tracer refuses to overwrite one).
fn trace_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// `watch --json --grace 2 --record FILE` with the trace in its own temporary directory.
struct WatchedRun {
    dir: tempfile::TempDir,
    watch: Option<Watch>,
    grace: &'static str,
}

impl WatchedRun {
    fn start() -> Self {
        Self::with_grace(GRACE)
    }

    fn with_grace(grace: &'static str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("netns-trace-scenario-")
            .tempdir()
            .unwrap();
        let trace = trace_path(&dir, "watch.trace");
        let watch = Watch::start(&["--grace", grace, "--record", trace.to_str().unwrap()]);
        Self {
            dir,
            watch: Some(watch),
            grace,
        }
    }

    /// Stops watch; its JSON lines and the report of what it recorded.
    fn stop(mut self) -> (Vec<Value>, Value) {
        let lines = self.watch.take().unwrap().stop();
        let report = report_of(&trace_path(&self.dir, "watch.trace"), self.grace);
        (lines, report)
    }
}

fn pins_of(v: &Value) -> &Vec<Value> {
    v["pins"]
        .as_array()
        .unwrap_or_else(|| panic!("no pins[] in {v}"))
}

/// A process joins the namespace at `netns_file` (setns), lives there 2 s and exits, so the
/// namespace has had a real member when only its pin is left. (A setns stay under a second is a
/// visit, like `ip -n`, and does not count.)
fn live_there_for_a_while(netns_file: &Path) {
    let out = run_in_netns(netns_file, "sleep", &["2"]);
    assert!(
        out.status.success(),
        "member through {} failed: {}",
        netns_file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Scenario 2 (moby 41136, docker-proxy): the namespace's only process exits while a process
/// outside keeps an fd on its /proc/PID/ns/net. The leak must name that pid and fd.
#[test]
fn fd_pin_is_reported_as_a_leak_held_by_that_pid_and_fd() {
    if !require_root() {
        return;
    }
    let run = WatchedRun::start();
    let sc = Scenario::start("fd-pin", &[]);
    let (inum, cookie) = scenario_netns(&sc);
    let holder_pid = sc.u64_at("/holder_pid");
    let holder_fd = sc.u64_at("/holder_fd");
    let member_pid = sc.u64_at("/member_pid");
    std::thread::sleep(VERDICT_WAIT);
    let (lines, report) = run.stop();

    let live = findings(&lines);
    let leak = the_leak_finding(&live, inum, cookie);
    let fd_pins: Vec<&Value> = pins_of(&leak)
        .iter()
        .filter(|p| p["kind"] == "fd")
        .collect();
    assert!(
        fd_pins
            .iter()
            .any(|p| p["pid"] == holder_pid && p["fd"] == holder_fd),
        "the leak names fd {holder_fd} of pid {holder_pid}: {leak:#}"
    );
    assert!(
        !pins_of(&leak).iter().any(|p| p["kind"] == "bind_mount"),
        "nothing is mounted in this scenario: {leak:#}"
    );
    assert_eq!(
        leak["last_member"]["tgid"], member_pid,
        "the member that exited: {leak:#}"
    );
    assert_eq!(leak["history_unknown"], false);

    let ns = report_namespace(&report, inum, cookie);
    assert_eq!(ns["state"], "leaked", "{ns:#}");
    assert!(
        pins_of(ns)
            .iter()
            .any(|p| p["kind"] == "fd" && p["pid"] == holder_pid && p["fd"] == holder_fd),
        "{ns:#}"
    );
    assert_eq!(
        leak_findings_for(report["findings"].as_array().unwrap(), inum, cookie).len(),
        1,
        "replay finds the same leak"
    );
    drop(sc);
}

/// Scenario 3 (containerd 3667): the bind mount is copied into a private mount namespace, the
/// original is unmounted, and the copy keeps the namespace. The leak must name the copy's mount
/// namespace and the process that holds that mount namespace, and not the host's mount.
#[test]
fn a_copy_in_another_mount_namespace_is_named_as_the_pin() {
    if !require_root() {
        return;
    }
    let run = WatchedRun::start();
    let sc = Scenario::start("copied-mount", &[]);
    let (inum, cookie) = scenario_netns(&sc);
    let holder_pid = sc.u64_at("/holder_pid");
    let holder_mnt_ns = sc.u64_at("/holder_mnt_ns_inum");
    let host_mnt_ns = sc.u64_at("/host_mnt_ns_inum");
    let copy = sc.str_at("/copy_mount_point").to_string();
    assert_ne!(holder_mnt_ns, host_mnt_ns);
    // The pod's process: it lived in the namespace and is gone, as in the incident.
    live_there_for_a_while(
        &Path::new(&format!("/proc/{holder_pid}/root")).join(copy.trim_start_matches('/')),
    );
    std::thread::sleep(VERDICT_WAIT);
    let (lines, report) = run.stop();

    let live = findings(&lines);
    let leak = the_leak_finding(&live, inum, cookie);
    let pins = pins_of(&leak);
    assert!(
        pins.iter().any(|p| p["kind"] == "bind_mount"
            && p["mount_ns"] == holder_mnt_ns
            && p["pid"] == holder_pid
            && p["path"] == copy.as_str()),
        "the leak names the copy {copy} in mnt:[{holder_mnt_ns}] held by pid {holder_pid}: {leak:#}"
    );
    assert!(
        !pins.iter().any(|p| p["mount_ns"] == host_mnt_ns),
        "the host's mount was removed and must not be named: {leak:#}"
    );

    let ns = report_namespace(&report, inum, cookie);
    assert_eq!(ns["state"], "leaked", "{ns:#}");
    assert!(
        pins_of(ns)
            .iter()
            .any(|p| p["mount_ns"] == holder_mnt_ns && p["pid"] == holder_pid),
        "{ns:#}"
    );
    drop(sc);
}

/// Scenario 4: a pin made with open_tree(OPEN_TREE_CLONE) + move_mount (util-linux >= 2.39)
/// is recognised as a bind mount, both while nobody ever lived there (persistent) and as the
/// evidence of a leak once a member has come and gone.
#[test]
fn a_pin_made_with_the_new_mount_api_is_recognised() {
    if !require_root() {
        return;
    }
    let run = WatchedRun::start();
    let sc = Scenario::start("new-mount-api", &[]);
    let (inum, cookie) = scenario_netns(&sc);
    let pin = sc.str_at("/pin").to_string();
    assert_eq!(sc.out["api"], "open_tree+move_mount");
    // Report of the same trace before anyone joined: a persistent namespace held by that mount.
    std::thread::sleep(VERDICT_WAIT);
    live_there_for_a_while(Path::new(&pin));
    std::thread::sleep(VERDICT_WAIT);
    let (lines, report) = run.stop();

    let live = findings(&lines);
    let leak = the_leak_finding(&live, inum, cookie);
    assert!(
        pins_of(&leak)
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["path"] == pin.as_str()),
        "the leak names the move_mount pin {pin}: {leak:#}"
    );
    let ns = report_namespace(&report, inum, cookie);
    assert_eq!(ns["state"], "leaked", "{ns:#}");
    let recognised = pins_of(ns)
        .iter()
        .find(|p| p["kind"] == "bind_mount" && p["path"] == pin.as_str());
    let recognised = recognised.unwrap_or_else(|| panic!("report has no pin at {pin}: {ns:#}"));
    assert!(
        recognised["at_ns"].as_u64().is_some(),
        "the pin's time is known: {recognised}"
    );
    // Before the visit it was a set-up namespace, not a leak: no finding was raised then.
    assert!(
        leak["raised_at_ns"].as_u64().unwrap()
            > leak["last_member"]["exited_at_ns"].as_u64().unwrap(),
        "{leak:#}"
    );
    drop(sc);
}

/// Scenario 5 (containerd/CRI creation): a thread unshares, bind-mounts and switches back; a
/// pause process joins with setns. Not leaked while the pause lives; leaked, with the pin, once
/// it dies and the pin stays.
#[test]
fn runtime_style_namespace_leaks_only_after_its_joined_member_dies() {
    if !require_root() {
        return;
    }
    let run = WatchedRun::start();
    let sc = Scenario::start("runtime-style", &[]);
    let (inum, cookie) = scenario_netns(&sc);
    let pin = sc.str_at("/pin").to_string();
    let member = sc.u64_at("/member_pid");
    assert_eq!(sc.out["member_alive"], true);
    // Well past the grace period with the member alive.
    std::thread::sleep(VERDICT_WAIT);
    let killed_at = monotonic_ns();
    assert_eq!(
        unsafe { libc::kill(member as i32, libc::SIGKILL) },
        0,
        "kill the pause {member}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !common::process_alive(member)),
        "pause {member} did not die"
    );
    std::thread::sleep(VERDICT_WAIT);
    let (lines, report) = run.stop();

    let live = findings(&lines);
    let leak = the_leak_finding(&live, inum, cookie);
    let raised = leak["raised_at_ns"].as_u64().unwrap();
    assert!(
        raised > killed_at,
        "no leak may be reported while the joined member lives: raised at {raised}, killed at {killed_at}: {leak:#}"
    );
    assert_eq!(leak["last_member"]["tgid"], member, "{leak:#}");
    assert!(
        pins_of(&leak)
            .iter()
            .any(|p| p["kind"] == "bind_mount" && p["path"] == pin.as_str()),
        "{leak:#}"
    );
    let ns = report_namespace(&report, inum, cookie);
    assert_eq!(ns["state"], "leaked", "{ns:#}");
    assert!(
        ns["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["tgid"] == member
                && m["joined_how"] == "setns"
                && m["counts_as_member"] == true),
        "the pause joined with setns and counts as a member: {ns:#}"
    );
    drop(sc);
}

// ---- churn ----------------------------------------------------------------------------------

/// Grace period for the churn tests. A churn of hundreds leaves the kernel a cleanup_net backlog
/// of seconds on a loaded machine, and in tracepoint mode without a teardown hook a namespace
/// waiting behind a long cleanup batch looks memberless, unpinned and alive; 10 s (a third of
/// the default) keeps the verdict meaningful without judging the backlog.
const CHURN_GRACE: &str = "10";
const CHURN_VERDICT_WAIT: Duration = Duration::from_secs(13);
/// Namespaces churned per churn test in a QEMU guest (see `churn_count`).
const GUEST_CHURN_COUNT: u64 = 100;

/// Churn size: `var` when set, else the number on the host, else (in a QEMU guest)
/// `guest_default`. Guests run under TCG here, where a churned namespace costs ~50x what it
/// costs on the host; the guests prove full mode's code paths, the host run the full size.
fn churn_count(var: &str, default: u64, guest_default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a count")),
        Err(_) if std::env::var_os("NETNS_TRACE_IN_VM").is_some() => guest_default,
        Err(_) => default,
    }
}

/// Runs `testbed churn` (bind-mount, unmount and a setns joiner for every namespace), then
/// lets two more namespaces go, so that kernels which free a namespace only on the *next*
/// cleanup_net run (6.13+, backported to 6.12) free the last churned one too. Returns the churn
/// JSON.
fn churn(count: u64) -> Value {
    let count_arg = count.to_string();
    let t0 = Instant::now();
    let out = testbed(&["churn", "--count", &count_arg, "--pin", "--join"]);
    eprintln!(
        "churn of {count} namespaces took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // Each throwaway namespace's cleanup run frees what the previous run tore down; the pause
    // lets the last churned ones reach a run of their own first.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(1));
        testbed(&["churn", "--count", "1"]);
    }
    out
}

/// The churn's namespaces in a report: those its children (named `child_comm`) created.
fn churned_namespaces<'a>(report: &'a Value, child_comm: &str) -> Vec<&'a Value> {
    report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["created_by"]["comm"] == child_comm)
        .collect()
}

/// Findings about any of `namespaces`, from a list of findings.
fn findings_about<'a>(findings: &'a [Value], namespaces: &[&Value]) -> Vec<&'a Value> {
    let ids: BTreeSet<&str> = namespaces.iter().filter_map(|n| n["id"].as_str()).collect();
    findings
        .iter()
        .filter(|f| f["netns"].as_str().is_some_and(|id| ids.contains(id)))
        .collect()
}

/// `watch --json` said nothing about lost records: no lost_events line, no events_lost notice,
/// and a zero total in its closing summary where it prints one.
fn assert_no_lost_events(lines: &[Value]) {
    let lost: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["type"] == "lost_events"
                || (l["type"] == "notice" && l["notice"]["kind"] == "events_lost")
        })
        .collect();
    assert!(lost.is_empty(), "watch reported lost events: {lost:?}");
    if let Some(summary) = lines.iter().rev().find(|l| l["type"] == "summary") {
        assert_eq!(
            summary["lost_events"]["total"], 0,
            "watch summary: {summary}"
        );
    }
}

fn assert_every_one_destroyed(namespaces: &[&Value], count: u64, what: &str) {
    assert_eq!(
        namespaces.len() as u64,
        count,
        "{what}: every churned namespace's creation was traced"
    );
    let not_destroyed: Vec<&&Value> = namespaces
        .iter()
        .filter(|n| n["state"] != "destroyed")
        .collect();
    assert!(
        not_destroyed.is_empty(),
        "{what}: {} of {count} churned namespaces not destroyed, e.g. {:#}",
        not_destroyed.len(),
        not_destroyed[0]
    );
}

/// Scenario 6, and issue 3's churn run: namespaces created, joined, pinned, unpinned and
/// destroyed in a loop leave zero findings, every namespace destroyed and zero lost events.
#[test]
fn clean_churn_ends_with_every_namespace_destroyed_and_nothing_reported() {
    if !require_root() {
        return;
    }
    let count = churn_count("NETNS_TRACE_CHURN_COUNT", 500, GUEST_CHURN_COUNT);
    let baseline = net_namespace_slab_count();
    let run = WatchedRun::with_grace(CHURN_GRACE);
    let out = churn(count);
    let child_comm = out["child_comm"].as_str().unwrap().to_string();
    settle_teardown(baseline);
    std::thread::sleep(CHURN_VERDICT_WAIT);
    let (lines, report) = run.stop();

    assert_no_lost_events(&lines);
    assert_eq!(
        report["lost_events"]["total"], 0,
        "the trace lost events: {}",
        report["lost_events"]
    );

    let churned = churned_namespaces(&report, &child_comm);
    assert_every_one_destroyed(&churned, count, "report");
    let live = findings(&lines);
    let about_live = findings_about(&live, &churned);
    // How long each accused namespace took from its last member's exit to its end.
    let timeline: Vec<String> = about_live
        .iter()
        .filter_map(|f| churned.iter().find(|n| n["id"] == f["netns"]))
        .map(|n| {
            format!(
                "{}: last member left {}, destroyed {}, freed {}",
                n["id"], n["last_member_exit_at_ns"], n["destroyed_at_ns"], n["freed_at_ns"]
            )
        })
        .collect();
    assert!(
        about_live.is_empty(),
        "watch reported churned namespaces: {timeline:#?} {about_live:#?}"
    );
    let about_replayed = findings_about(report["findings"].as_array().unwrap(), &churned);
    assert!(
        about_replayed.is_empty(),
        "the report has findings about churned namespaces: {about_replayed:#?}"
    );
}

/// A tracer process and the lines it printed.
struct Tracer {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Tracer {
    /// Starts `netns-trace ARGS` and waits for `ready` on its stderr.
    fn start(args: &[&str], ready: &str) -> Self {
        let mut cmd = Command::new(netns_trace_bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = spawn_until_ready(&mut cmd, args[0], ready);
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stdout);
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM; its JSON stdout lines.
    fn stop(mut self) -> Vec<Value> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for the tracer");
        assert!(status.success(), "tracer exited with {status}");
        // The reader thread ends at EOF, right after exit.
        std::thread::sleep(Duration::from_millis(200));
        let lines = self.stdout.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a sampler saw a tracer hold: `net:[...]` fds and threads in a namespace other than
/// its own. A hold is one unbroken run of samples that show it; the same fd number showing the
/// same namespace again after a sample without it is a new hold (a new scoped read).
#[derive(Default)]
struct Sightings {
    samples: u64,
    /// Holds that ended: "pid fd N -> net:[X]" -> (count, longest).
    ended: BTreeMap<String, (u64, Duration)>,
    /// Holds seen in the latest sample, with when each started.
    open: HashMap<String, Instant>,
}

impl Sightings {
    fn sample(&mut self, now: Instant, seen: BTreeSet<String>) {
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let started = self.open.remove(&key).unwrap();
            let e = self.ended.entry(key).or_default();
            e.0 += 1;
            e.1 = e.1.max(now - started);
        }
        for key in seen {
            self.open.entry(key).or_insert(now);
        }
        self.samples += 1;
    }

    /// Every hold, ended or still open, with its longest duration.
    fn longest(&self, now: Instant) -> BTreeMap<String, (u64, Duration)> {
        let mut all = self.ended.clone();
        for (key, started) in &self.open {
            let e = all.entry(key.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(now - *started);
        }
        all
    }
}

/// Samples every tracer's /proc/PID/fd and /proc/PID/task/*/ns/net until `stop` is set.
fn sample_tracers(pids: Vec<u32>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Sightings> {
    std::thread::spawn(move || {
        let mut s = Sightings::default();
        let home: HashMap<u32, String> = pids
            .iter()
            .map(|p| {
                (
                    *p,
                    std::fs::read_link(format!("/proc/{p}/ns/net"))
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        while !stop.load(Ordering::Relaxed) {
            let mut seen = BTreeSet::new();
            for &pid in &pids {
                if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                    for fd in fds.filter_map(Result::ok) {
                        if let Ok(link) = std::fs::read_link(fd.path()) {
                            let link = link.to_string_lossy().into_owned();
                            if link.starts_with("net:[") {
                                seen.insert(format!(
                                    "{pid} fd {} -> {link}",
                                    fd.file_name().to_string_lossy()
                                ));
                            }
                        }
                    }
                }
                if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                    for task in tasks.filter_map(Result::ok) {
                        if let Ok(link) = std::fs::read_link(task.path().join("ns/net")) {
                            let link = link.to_string_lossy().into_owned();
                            if link != home[&pid] {
                                seen.insert(format!(
                                    "{pid} task {} in {link}",
                                    task.file_name().to_string_lossy()
                                ));
                            }
                        }
                    }
                }
            }
            s.sample(Instant::now(), seen);
            std::thread::sleep(Duration::from_millis(5));
        }
        s
    })
}

/// Holds of `net:[...]` by a tracer, from /proc right now.
fn net_fds_of(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .map(|l| l.to_string_lossy().into_owned())
                .filter(|l| l.starts_with("net:["))
                .collect()
        })
        .unwrap_or_default()
}

/// Scenario 7 and issue 8's "never pins": during a 1,000-namespace churn with `watch --record`
/// and `record` both running, every namespace is freed (the tracer's own free events), the
/// tracers' fds never keep a `net:[...]` beyond a scoped read, their threads never stay in
/// another namespace, and they never get a mount namespace of their own (where nsfs copies
/// would live).
#[test]
fn the_tracer_does_not_pin_namespaces_during_churn() {
    if !require_root() {
        return;
    }
    let count = churn_count("NETNS_TRACE_NEVER_PIN_CHURN_COUNT", 1000, GUEST_CHURN_COUNT);
    let dir = tempfile::Builder::new()
        .prefix("netns-trace-never-pins-")
        .tempdir()
        .unwrap();
    let watch_trace = trace_path(&dir, "watch.trace");
    let record_trace = trace_path(&dir, "record.trace");
    let baseline = net_namespace_slab_count();
    let watch = Tracer::start(
        &[
            "watch",
            "--json",
            "--grace",
            CHURN_GRACE,
            "--record",
            watch_trace.to_str().unwrap(),
        ],
        "watching",
    );
    let record = Tracer::start(
        &[
            "record",
            "--quiet",
            "--grace",
            CHURN_GRACE,
            "-o",
            record_trace.to_str().unwrap(),
        ],
        "recording to",
    );
    let pids = vec![watch.pid(), record.pid()];
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_tracers(pids.clone(), Arc::clone(&stop));

    let out = churn(count);
    let child_comm = out["child_comm"].as_str().unwrap().to_string();
    settle_teardown(baseline);
    std::thread::sleep(CHURN_VERDICT_WAIT);
    stop.store(true, Ordering::Relaxed);
    let sightings = sampler.join().expect("sampler thread");

    // After every read has ended: nothing held, nobody elsewhere, no private mount namespace.
    let own_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    for &pid in &pids {
        assert_eq!(
            net_fds_of(pid),
            Vec::<String>::new(),
            "tracer {pid} holds namespace fds after the churn"
        );
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
            own_mnt,
            "tracer {pid} has a mount namespace of its own"
        );
    }
    // During the run: only brief, scoped reads. A read that outlives this is a pin.
    let longest = sightings.longest(Instant::now());
    eprintln!(
        "sampled the tracers {} times; net:[...] holds (count, longest): {longest:?}",
        sightings.samples
    );
    assert!(sightings.samples > 10, "the sampler ran during the churn");
    let held_long: Vec<_> = longest
        .iter()
        .filter(|(_, (_, d))| *d > Duration::from_secs(5))
        .collect();
    assert!(
        held_long.is_empty(),
        "the tracer kept a namespace beyond a scoped read: {held_long:?}"
    );

    let watch_lines = watch.stop();
    assert_no_lost_events(&watch_lines);
    record.stop();
    for (what, trace) in [("watch --record", &watch_trace), ("record", &record_trace)] {
        let report = report_of(trace, CHURN_GRACE);
        assert_eq!(
            report["lost_events"]["total"], 0,
            "{what}: {}",
            report["lost_events"]
        );
        let churned = churned_namespaces(&report, &child_comm);
        assert_every_one_destroyed(&churned, count, what);
        let not_freed: Vec<&&Value> = churned
            .iter()
            .filter(|n| n["freed_at_ns"].as_u64().is_none())
            .collect();
        assert!(
            not_freed.is_empty(),
            "{what}: {} of {count} churned namespaces have no free event, e.g. {:#}",
            not_freed.len(),
            not_freed[0]
        );
    }
    if let (Some(before), Some(after)) = (baseline, net_namespace_slab_count()) {
        eprintln!("net_namespace slab objects: {before} before, {after} after");
    }
}
