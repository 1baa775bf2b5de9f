//! netns-trace-testbed: builds real network-namespace situations on the running kernel so that
//! integration tests and benchmarks can watch the tracer observe them.
//!
//! Every command prints exactly one JSON line on stdout describing what it made (pids, inode
//! numbers, paths, MACs, IPs); errors go to stderr with a non-zero exit. Scenario commands record
//! what they create in a state file under `--dir`, so `teardown --dir` can undo them later.
//!
//! Namespaces are made with direct syscalls (unshare, setns, mount, open_tree/move_mount, fork);
//! only links and addresses go through iproute2's `ip`. Addresses are always inside 10.231.0.0/16
//! and only ever assigned inside namespaces made here.

mod arp;
mod churn;
mod cli;
mod error;
mod incident;
mod links;
mod namespaces;
mod pins;
mod process;
mod state;
mod sys;

use std::process::ExitCode;

use clap::Parser;

use churn::{churn, proc_churn};
use cli::{Cli, Command};
use incident::incident;
use pins::{copied_mount, fd_pin, new_mount_api, runtime_style};
use state::{run_scenario, teardown_dir};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Incident(args) => {
            run_scenario(&args.common, "incident", |run| incident(run, &args))
        }
        Command::Teardown(args) => teardown_dir(&args.dir),
        Command::FdPin(args) => run_scenario(&args, "fd-pin", fd_pin),
        Command::CopiedMount(args) => run_scenario(&args, "copied-mount", copied_mount),
        Command::NewMountApi(args) => run_scenario(&args, "new-mount-api", new_mount_api),
        Command::RuntimeStyle(args) => run_scenario(&args.common, "runtime-style", |run| {
            runtime_style(run, args.kill_member)
        }),
        Command::Churn(args) => churn(&args),
        Command::ProcChurn(args) => proc_churn(&args),
    };
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netns-trace-testbed: {e}");
            ExitCode::FAILURE
        }
    }
}
