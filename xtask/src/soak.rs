//! `cargo xtask soak`: `netns-trace watch` under continuous namespace churn, with the tracer's
//! RSS sampled every 10 s. Not part of CI (it is long); see docs/reliability.md.
//!
//! Verdict. After a warm-up (the first quarter, at least 2 min: the collector fills its
//! retention of destroyed namespaces, --keep-destroyed, and the allocator settles), memory
//! must be flat:
//! - the least-squares slope of RSS over the remaining samples stays under --max-slope-kib
//!   (default 256 KiB/min). The collector keeps ≤ 2 KiB per namespace (`cargo xtask bench`),
//!   and churn here makes thousands of namespaces a minute, so a leak of even ~100 B per
//!   namespace would exceed it; allocator noise stays well below;
//! - the last sample is within --max-growth-mib (default 16 MiB) of the highest sample in
//!   the warm-up: what a leak that the slope fit smooths over would still break.
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build::{self, Flavour, PACKAGE, TESTBED_BIN};

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Length of the soak.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// Destroyed namespaces watch keeps (`watch --keep-destroyed`): small, so the soak
    /// reaches its steady state early and a growing retained set would show.
    #[arg(long, default_value_t = 1000)]
    pub keep_destroyed: u64,
    /// Fail when RSS grows faster than this after warm-up (KiB per minute).
    #[arg(long, default_value_t = 256.0)]
    pub max_slope_kib: f64,
    /// Fail when the last sample exceeds the warm-up peak by more than this (MiB).
    #[arg(long, default_value_t = 16.0)]
    pub max_growth_mib: f64,
    /// Use the binaries already built instead of building them.
    #[arg(long)]
    pub no_build: bool,
}

/// Resident set size of `pid` in KiB (VmRSS).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Least-squares slope of (seconds, KiB) points, in KiB per minute.
pub fn slope_kib_per_min(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx * 60.0 }
}

/// Kills and reaps the tracer however the soak ends.
struct Tracer(Child);

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(args: SoakArgs) -> Result<bool> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak loads BPF programs and makes namespaces: run it as root");
    }
    if args.interval == 0 || args.minutes == 0 {
        bail!("--minutes and --interval must be positive");
    }
    // The shipped tracer: its memory is what the soak judges.
    let (tracer_bin, testbed_bin) = if args.no_build {
        let release = crate::util::target_dir().join("release");
        (release.join(PACKAGE), release.join(TESTBED_BIN))
    } else {
        (
            build::release_netns_trace(Flavour::Shipped)?,
            build::release_testbed()?,
        )
    };
    for b in [&tracer_bin, &testbed_bin] {
        if !b.exists() {
            bail!("{} is missing (build it, or drop --no-build)", b.display());
        }
    }
    let log_dir = crate::util::target_dir().join("soak");
    std::fs::create_dir_all(&log_dir)?;
    let stderr_log = log_dir.join("watch.stderr");

    let child = Command::new(&tracer_bin)
        .args([
            "watch",
            "--json",
            "--grace",
            "5",
            "--keep-destroyed",
            &args.keep_destroyed.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_log)?)
        .spawn()
        .with_context(|| format!("start {}", tracer_bin.display()))?;
    let mut tracer = Tracer(child);
    let pid = tracer.0.id();
    // Attached once it says so on stderr.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&stderr_log)
        .unwrap_or_default()
        .contains("watching")
    {
        if let Some(st) = tracer.0.try_wait()? {
            bail!(
                "watch exited during start-up ({st}); see {}",
                stderr_log.display()
            );
        }
        if Instant::now() > deadline {
            bail!("watch did not attach within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Churn in batches until told to stop, alternating plain, pinned and joined namespaces.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let churn = {
        let (stop, made) = (Arc::clone(&stop), Arc::clone(&made));
        std::thread::spawn(move || -> Result<()> {
            let shapes: [&[&str]; 3] = [&[], &["--pin"], &["--join"]];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new(&testbed_bin)
                    .args(["churn", "--count", "100"])
                    .args(shapes[i % shapes.len()])
                    .stdin(Stdio::null())
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "testbed churn failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                made.fetch_add(100, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        })
    };

    let t0 = Instant::now();
    let total = Duration::from_secs(args.minutes * 60);
    let mut samples: Vec<Sample> = Vec::new();
    println!(
        "soak: {} min, RSS of watch (pid {pid}) every {} s",
        args.minutes, args.interval
    );
    println!("{:>7} {:>10} {:>12}", "t (s)", "RSS (KiB)", "namespaces");
    let mut failure = None;
    while t0.elapsed() < total {
        std::thread::sleep(Duration::from_secs(args.interval));
        if let Some(st) = tracer.0.try_wait()? {
            failure = Some(format!(
                "watch exited during the soak ({st}); see {}",
                stderr_log.display()
            ));
            break;
        }
        if churn.is_finished() {
            failure = Some("the churn stopped early".to_string());
            break;
        }
        let Some(rss) = rss_kib(pid) else {
            failure = Some("cannot read the tracer's RSS".to_string());
            break;
        };
        let s = t0.elapsed().as_secs_f64();
        let n = made.load(Ordering::Relaxed);
        println!("{s:>7.0} {rss:>10} {n:>12}");
        let _ = std::io::stdout().flush();
        samples.push((s, rss, n));
    }
    stop.store(true, Ordering::Relaxed);
    let churn_result = churn.join();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = tracer.0.wait();
    if let Some(f) = failure {
        println!("soak FAILED: {f}");
        return Ok(false);
    }
    match churn_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            println!("soak FAILED: {e:#}");
            return Ok(false);
        }
        Err(_) => {
            println!("soak FAILED: the churn thread panicked");
            return Ok(false);
        }
    }
    Ok(verdict(&args, &samples))
}

/// One sample: (seconds since start, RSS in KiB, namespaces made so far).
type Sample = (f64, u64, u64);

fn verdict(args: &SoakArgs, samples: &[Sample]) -> bool {
    let warm_s = (args.minutes as f64 * 60.0 / 4.0).max(120.0);
    let (warm, steady): (Vec<&Sample>, Vec<&Sample>) = samples.iter().partition(|s| s.0 < warm_s);
    if steady.len() < 3 {
        println!(
            "soak FAILED: too few samples after the {warm_s:.0} s warm-up to judge (run longer)"
        );
        return false;
    }
    let points: Vec<(f64, f64)> = steady.iter().map(|s| (s.0, s.1 as f64)).collect();
    let slope = slope_kib_per_min(&points);
    let warm_peak = warm.iter().map(|s| s.1).max().unwrap_or(steady[0].1);
    let last = steady.last().unwrap();
    let growth_mib = (last.1 as f64 - warm_peak as f64) / 1024.0;
    let first_steady = steady[0];
    let minutes = (last.0 - first_steady.0) / 60.0;
    let rate = (last.2 - first_steady.2) as f64 / minutes.max(1e-9);
    println!(
        "after warm-up ({warm_s:.0} s): slope {slope:+.1} KiB/min (bound {:.0}), last {} KiB vs warm-up peak {} KiB ({growth_mib:+.1} MiB, bound {:.0}), churn {rate:.0} namespaces/min, {} namespaces in all",
        args.max_slope_kib, last.1, warm_peak, args.max_growth_mib, last.2
    );
    if rate > 0.0 {
        println!(
            "  = {:+.1} bytes per namespace churned",
            slope * 1024.0 / rate
        );
    }
    let ok = slope <= args.max_slope_kib && growth_mib <= args.max_growth_mib;
    println!("soak {}", if ok { "PASSED" } else { "FAILED" });
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 10.0, 1000.0 + i as f64 * 5.0))
            .collect();
        assert!((slope_kib_per_min(&line) - 30.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 42.0)).collect();
        assert_eq!(slope_kib_per_min(&flat), 0.0);
        assert_eq!(slope_kib_per_min(&[(1.0, 2.0)]), 0.0);
    }
}
