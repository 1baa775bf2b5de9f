//! The state file under --dir, the `Run` that records what a scenario makes as soon as it
//! exists, and teardown.
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cli::ScenarioArgs;
use crate::error::{Result, TestbedError, last_os_err, os_err};
use crate::namespaces::{PinMethod, ThreadPin, thread_pin_new_netns};
use crate::sys::{create_mount_target, ns_inum, proc_stat, umount_detach, uuid_v4};

const STATE_FILE_NAME: &str = "netns-trace-testbed.state.json";
/// How long a teardown waits for killed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    runs: Vec<RunRecord>,
}

#[derive(Serialize, Deserialize, Clone)]
struct RunRecord {
    id: String,
    scenario: String,
    testbed_pid: u32,
    processes: Vec<ProcessRecord>,
    /// Pin paths, in the order they were mounted.
    mounts: Vec<PathBuf>,
    /// Files this run created (mount targets).
    files: Vec<PathBuf>,
}

#[derive(Serialize, Deserialize, Clone)]
struct ProcessRecord {
    pid: i32,
    /// Guards against killing an unrelated process that reused the pid.
    starttime: u64,
    role: String,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE_NAME)
}

fn load_state(dir: &Path) -> Result<StateFile> {
    let path = state_path(dir);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| TestbedError::State {
            path,
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(e) => Err(TestbedError::State {
            path,
            detail: e.to_string(),
        }),
    }
}

fn save_state(dir: &Path, state: &StateFile) -> Result<()> {
    let path = state_path(dir);
    if state.runs.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(TestbedError::State {
                path,
                detail: e.to_string(),
            }),
            _ => Ok(()),
        };
    }
    let text = serde_json::to_string_pretty(state).map_err(|e| TestbedError::State {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let tmp = dir.join(format!("{STATE_FILE_NAME}.tmp"));
    fs::write(&tmp, text)
        .and_then(|_| fs::rename(&tmp, &path))
        .map_err(|e| TestbedError::State {
            path,
            detail: e.to_string(),
        })
}

/// One scenario run: everything it creates is written to the state file as soon as it exists,
/// so `teardown` can undo even a run that was interrupted.
pub struct Run {
    dir: PathBuf,
    record: RunRecord,
    /// Direct children of this process still to be reaped.
    own_children: Vec<i32>,
}

impl Run {
    fn begin(dir: &Path, scenario: &str) -> Result<Run> {
        fs::create_dir_all(dir).map_err(os_err(format!("create {}", dir.display())))?;
        let dir = fs::canonicalize(dir).map_err(os_err(format!("resolve {}", dir.display())))?;
        let record = RunRecord {
            id: uuid_v4()?,
            scenario: scenario.into(),
            testbed_pid: std::process::id(),
            processes: vec![],
            mounts: vec![],
            files: vec![],
        };
        let run = Run {
            dir,
            record,
            own_children: vec![],
        };
        run.persist()?;
        Ok(run)
    }

    fn persist(&self) -> Result<()> {
        let mut state = load_state(&self.dir)?;
        match state.runs.iter_mut().find(|r| r.id == self.record.id) {
            Some(slot) => *slot = self.record.clone(),
            None => state.runs.push(self.record.clone()),
        }
        save_state(&self.dir, &state)
    }

    pub fn track_process(&mut self, pid: i32, role: &str) -> Result<()> {
        let (starttime, _) = proc_stat(pid).ok_or_else(|| {
            TestbedError::Unexpected(format!("{role} (pid {pid}) vanished right after starting"))
        })?;
        self.record.processes.push(ProcessRecord {
            pid,
            starttime,
            role: role.into(),
        });
        self.own_children.push(pid);
        self.persist()
    }

    /// Records that this run reaped one of its children itself.
    pub fn reaped(&mut self, pid: i32) {
        self.own_children.retain(|&p| p != pid);
    }

    fn track_mount(&mut self, path: &Path) -> Result<()> {
        self.record.mounts.push(path.to_path_buf());
        self.persist()
    }

    fn track_file(&mut self, path: &Path) -> Result<()> {
        self.record.files.push(path.to_path_buf());
        self.persist()
    }

    /// A new pin file under the run's directory, recorded for teardown before anything is
    /// mounted on it.
    pub fn new_pin_target(&mut self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        create_mount_target(&path)?;
        self.track_file(&path)?;
        self.track_mount(&path)?;
        Ok(path)
    }

    /// Pins a brand-new netns at DIR/`name` from a short-lived thread.
    pub fn pin_fresh_netns(
        &mut self,
        name: &str,
        method: PinMethod,
    ) -> Result<(PathBuf, ThreadPin)> {
        let target = self.new_pin_target(name)?;
        let pin = thread_pin_new_netns(&target, method)?;
        let seen = ns_inum(&target)?;
        if seen != pin.inum {
            return Err(TestbedError::Unexpected(format!(
                "{} has inode {seen}, expected net:[{}]",
                target.display(),
                pin.inum
            )));
        }
        Ok((target, pin))
    }

    fn teardown(mut self) -> Result<TeardownReport> {
        let mut report = TeardownReport::default();
        teardown_record(&self.record, &self.own_children, &mut report);
        self.own_children.clear();
        let mut state = load_state(&self.dir)?;
        if report.is_clean() {
            state.runs.retain(|r| r.id != self.record.id);
            save_state(&self.dir, &state)?;
        }
        Ok(report)
    }
}

#[derive(Default, Serialize)]
struct TeardownReport {
    runs: usize,
    unmounted: Vec<PathBuf>,
    killed: Vec<i32>,
    already_gone: Vec<i32>,
    still_alive: Vec<i32>,
    removed: Vec<PathBuf>,
    errors: Vec<String>,
}

impl TeardownReport {
    fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.still_alive.is_empty()
    }
}

/// Unmount pins (newest first), kill processes whose start time still matches, wait for them to
/// be gone (or zombies, which no longer hold namespaces), then remove pin files. Unmounting and
/// killing both come before file removal: unlinking a file that is still a mount point in some
/// other mount namespace would silently detach that copy.
fn teardown_record(record: &RunRecord, own_children: &[i32], report: &mut TeardownReport) {
    report.runs += 1;
    for path in record.mounts.iter().rev() {
        let mut detached = 0;
        // A path may carry stacked mounts; peel them all.
        while detached < 32 {
            match umount_detach(path) {
                Ok(()) => detached += 1,
                Err(TestbedError::Os { source, .. })
                    if matches!(
                        source.raw_os_error(),
                        Some(libc::EINVAL) | Some(libc::ENOENT)
                    ) =>
                {
                    break;
                }
                Err(e) => {
                    report.errors.push(e.to_string());
                    break;
                }
            }
        }
        if detached > 0 {
            report.unmounted.push(path.clone());
        }
    }

    let mut waiting = vec![];
    for proc_rec in &record.processes {
        match proc_stat(proc_rec.pid) {
            Some((starttime, state)) if starttime == proc_rec.starttime && state != 'Z' => {
                if unsafe { libc::kill(proc_rec.pid, libc::SIGKILL) } == 0 {
                    report.killed.push(proc_rec.pid);
                    waiting.push(proc_rec.clone());
                } else {
                    report.errors.push(
                        last_os_err(format!("kill {} ({})", proc_rec.pid, proc_rec.role))
                            .to_string(),
                    );
                }
            }
            _ => {
                report.already_gone.push(proc_rec.pid);
                if own_children.contains(&proc_rec.pid) {
                    // A zombie child of ours: reap it.
                    unsafe { libc::waitpid(proc_rec.pid, std::ptr::null_mut(), libc::WNOHANG) };
                }
            }
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    while !waiting.is_empty() {
        waiting.retain(|p| {
            if own_children.contains(&p.pid) {
                let rc = unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG) };
                if rc == p.pid {
                    return false;
                }
            }
            matches!(proc_stat(p.pid), Some((st, state)) if st == p.starttime && state != 'Z')
        });
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            report.still_alive.extend(waiting.iter().map(|p| p.pid));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    for path in record.files.iter().rev() {
        match fs::remove_file(path) {
            Ok(()) => report.removed.push(path.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => report
                .errors
                .push(format!("remove {}: {e}", path.display())),
        }
    }
}

pub fn teardown_dir(dir: &Path) -> Result<Value> {
    let mut report = TeardownReport::default();
    if dir.is_dir() {
        let mut state = load_state(dir)?;
        let mut unfinished = vec![];
        for record in state.runs.drain(..) {
            let mut one = TeardownReport::default();
            teardown_record(&record, &[], &mut one);
            if !one.is_clean() {
                unfinished.push(record);
            }
            report.runs += one.runs;
            report.unmounted.extend(one.unmounted);
            report.killed.extend(one.killed);
            report.already_gone.extend(one.already_gone);
            report.still_alive.extend(one.still_alive);
            report.removed.extend(one.removed);
            report.errors.extend(one.errors);
        }
        state.runs = unfinished;
        save_state(dir, &state)?;
    }
    if !report.is_clean() {
        return Err(TestbedError::Teardown(
            serde_json::to_string(&report)
                .unwrap_or_else(|e| format!("(report not serializable: {e})")),
        ));
    }
    let mut out = serde_json::to_value(&report).unwrap_or(Value::Null);
    out["scenario"] = json!("teardown");
    out["dir"] = json!(dir);
    Ok(out)
}

/// Runs a scenario inside a recorded `Run`; undoes the run's own resources on error, and after
/// success too unless `--keep`.
pub fn run_scenario(
    args: &ScenarioArgs,
    scenario: &str,
    body: impl FnOnce(&mut Run) -> Result<Value>,
) -> Result<Value> {
    let mut run = Run::begin(&args.dir, scenario)?;
    let outcome = body(&mut run);
    let run_id = run.record.id.clone();
    let state_file = state_path(&run.dir);
    let dir = run.dir.clone();
    match outcome {
        Ok(mut out) => {
            out["scenario"] = json!(scenario);
            out["dir"] = json!(dir);
            out["run_id"] = json!(run_id);
            out["state_file"] = json!(state_file);
            out["testbed_pid"] = json!(std::process::id());
            out["kept"] = json!(args.keep);
            if !args.keep {
                let report = run.teardown()?;
                if !report.is_clean() {
                    return Err(TestbedError::Teardown(
                        serde_json::to_string(&report).unwrap_or_default(),
                    ));
                }
                out["teardown"] = serde_json::to_value(&report).unwrap_or(Value::Null);
            }
            Ok(out)
        }
        Err(e) => {
            if let Ok(report) = run.teardown()
                && !report.is_clean()
            {
                eprintln!(
                    "netns-trace-testbed: cleanup after failure incomplete: {:?}",
                    report.errors
                );
            }
            Err(e)
        }
    }
}
