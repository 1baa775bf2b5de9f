//! Where a tracer's cost goes during one workload run: the run count and run time of each of
//! its BPF programs (the kernel's own accounting, switched on with BPF_ENABLE_STATS for the
//! run) and the CPU time of its userspace process. The timed repetitions run without these
//! stats, which cost two clock reads per program run.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_ns: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub workload: String,
    pub tracer: String,
    pub wall_s: f64,
    /// The tracer process's CPU time in userspace / in the kernel on its behalf, all threads.
    pub user_s: f64,
    pub sys_s: f64,
    /// Its BPF programs, busiest first.
    pub programs: Vec<ProgramCost>,
}

impl Profile {
    pub fn bpf_s(&self) -> f64 {
        self.programs.iter().map(|p| p.run_ns).sum::<u64>() as f64 / 1e9
    }
}

/// BPF program ids a process holds (program fds and the links that carry them).
fn prog_ids_of(pid: u32) -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// (name, run count, run time ns) of the given programs.
fn program_stats(ids: &BTreeSet<u32>) -> BTreeMap<u32, (String, u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| {
            let name = p.name_as_str().unwrap_or("?").to_string();
            (
                p.id(),
                (name, p.run_count(), p.run_time().as_nanos() as u64),
            )
        })
        .collect()
}

/// utime and stime of a process in seconds (all its threads).
fn cpu_seconds(pid: u32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks =
        |i: usize| -> Result<f64> { Ok(f.get(i).context("short stat")?.parse::<f64>()? / hz) };
    Ok((ticks(11)?, ticks(12)?))
}

/// Runs `work` once while `pid` (a tracer that is already attached) is watched.
pub fn measure(
    workload: &str,
    tracer: &str,
    pid: u32,
    work: &dyn Fn() -> Result<f64>,
) -> Result<Profile> {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("BPF_ENABLE_STATS (needs 5.8+ and CAP_SYS_ADMIN)")?;
    let ids = prog_ids_of(pid);
    let before = program_stats(&ids);
    let (u0, s0) = cpu_seconds(pid)?;
    let t0 = Instant::now();
    work()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let (u1, s1) = cpu_seconds(pid)?;
    let after = program_stats(&ids);
    // Programs sharing a name (one program on several hooks) are summed.
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (id, (name, runs, ns)) in after {
        let (r0, n0) = before.get(&id).map(|b| (b.1, b.2)).unwrap_or((0, 0));
        let e = by_name.entry(name).or_default();
        e.0 += runs.saturating_sub(r0);
        e.1 += ns.saturating_sub(n0);
    }
    let mut programs: Vec<ProgramCost> = by_name
        .into_iter()
        .filter(|(_, (runs, _))| *runs > 0)
        .map(|(name, (runs, run_ns))| ProgramCost { name, runs, run_ns })
        .collect();
    programs.sort_by_key(|p| std::cmp::Reverse(p.run_ns));
    Ok(Profile {
        workload: workload.into(),
        tracer: tracer.into(),
        wall_s,
        user_s: u1 - u0,
        sys_s: s1 - s0,
        programs,
    })
}

pub fn print(profiles: &[Profile]) {
    if profiles.is_empty() {
        return;
    }
    println!("\nprofile (one run each, BPF run-time stats on):");
    for p in profiles {
        let share = |s: f64| 100.0 * s / p.wall_s;
        println!(
            "  {} under {}: wall {:.3} s; tracer userspace {:.3} s user + {:.3} s sys ({:.1}% of wall); BPF programs {:.3} s ({:.1}% of wall)",
            p.workload,
            p.tracer,
            p.wall_s,
            p.user_s,
            p.sys_s,
            share(p.user_s + p.sys_s),
            p.bpf_s(),
            share(p.bpf_s()),
        );
        for prog in p.programs.iter().take(8) {
            println!(
                "    {:<28} {:>11} runs {:>9.3} ms {:>7.0} ns/run",
                prog.name,
                prog.runs,
                prog.run_ns as f64 / 1e6,
                prog.run_ns as f64 / prog.runs.max(1) as f64
            );
        }
    }
}
