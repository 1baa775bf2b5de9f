//! What xtask builds for tests, benches and the soak, and where cargo put it. Paths come from
//! cargo's JSON messages, so they are right wherever CARGO_TARGET_DIR points.
use std::path::PathBuf;
use std::process::Command;

use crate::error::{Result, XtaskError};
use crate::util::{output, workspace_root};

/// The product package.
pub const PACKAGE: &str = "netns-trace";
/// The scenario testbed: a second binary of the xtask package (xtask/src/testbed), so it never
/// ships with netns-trace. Same name on the host and in guests.
pub const TESTBED_BIN: &str = "netns-trace-testbed";
/// How netns-trace's integration tests (tests/common) and the bench find the testbed: cargo
/// builds no binary of another package for them.
pub const TESTBED_ENV: &str = "NETNS_TRACE_TESTBED_BIN";
/// netns-trace's feature with the synthetic trace generator and the hidden `dev` command:
/// on for tests and benches, off in the binary that ships.
pub const DEV_FEATURE: &str = "netns-trace/dev";

/// Which netns-trace binary to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// What ships (`cargo xtask run`, the soak).
    Shipped,
    /// With the `dev` feature: what tests and benches run.
    Dev,
}

/// `cargo`, as the one running xtask when it says so, in the workspace root.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// `cargo build --release` of netns-trace's main binary; returns the executable.
pub fn release_netns_trace(flavour: Flavour) -> Result<PathBuf> {
    let mut args = vec!["build", "--release", "-p", PACKAGE, "--bin", PACKAGE];
    if flavour == Flavour::Dev {
        args.extend(["--features", DEV_FEATURE]);
    }
    only_executable(&args, PACKAGE)
}

/// `cargo build --release` of the testbed; returns the executable.
pub fn release_testbed() -> Result<PathBuf> {
    only_executable(
        &["build", "--release", "-p", "xtask", "--bin", TESTBED_BIN],
        TESTBED_BIN,
    )
}

fn only_executable(cargo_args: &[&str], name: &str) -> Result<PathBuf> {
    println!("xtask: cargo {}", cargo_args.join(" "));
    executables(cargo_args, "bin")?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, path)| path)
        .ok_or_else(|| XtaskError::NotFound(format!("cargo built no binary `{name}`")))
}

/// (target name, executable) of every artifact of `kind` that cargo reports.
pub fn executables(cargo_args: &[&str], kind: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = cargo();
    cmd.args(cargo_args)
        .arg("--message-format=json-render-diagnostics");
    cmd.stderr(std::process::Stdio::inherit());
    let stdout = output(&mut cmd)?;
    let mut found = Vec::new();
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_kind = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == kind));
        let (Some(name), Some(exe)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        if is_kind && !found.iter().any(|(n, _)| n == name) {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    Ok(found)
}
