//! `cargo xtask`: project tooling that needs only stable Rust (it must build before
//! bpf-linker exists, so it does not depend on the netns-trace crate).
mod bench;
mod bootstrap;
mod build;
mod console;
mod error;
mod initramfs;
mod kernels;
mod profile;
mod qemu;
mod soak;
mod suite;
mod util;
mod vm_test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "netns-trace tooling: bootstrap, multi-kernel VM tests, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Install what a fresh Debian 12 machine (as root) lacks to build and test: nightly
    /// rust-src, bpf-linker 0.10.0, QEMU, busybox-static, bpftrace, … and mount tracefs.
    /// Idempotent.
    Bootstrap(bootstrap::BootstrapArgs),
    /// Run the integration tests in Debian 5.10 / 6.1 / 6.12 guests under QEMU and on the host.
    VmTest(vm_test::VmTestArgs),
    /// Record the trace fixtures (tests/data/traces) in the 5.10 / 6.1 / 6.12 guests.
    RecordFixtures(vm_test::RecordFixturesArgs),
    /// Measure the tracer's cost on the node and the collector's speed.
    Bench(bench::BenchArgs),
    /// The whole test suite, as CI runs it: bootstrap, unit and host tests, the 5.10 / 6.1 /
    /// 6.12 guests, and bounded fuzzing. Needs root.
    Test(suite::TestArgs),
    /// `watch` under namespace churn for --minutes, sampling its RSS; fails if memory grows.
    /// Long: not part of `test` or CI.
    Soak(soak::SoakArgs),
    /// Bootstrap, build, and run netns-trace with the given arguments (`-- watch`).
    Run(suite::RunArgs),
    /// (internal) Paced thread generator used by `bench`.
    #[command(hide = true)]
    BenchGenerator(bench::GeneratorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<bool> = match cli.command {
        Commands::Bootstrap(args) => bootstrap::run_bootstrap(&args)
            .map(|()| true)
            .map_err(Into::into),
        Commands::VmTest(args) => vm_test::run_vm_test(&args).map_err(Into::into),
        Commands::RecordFixtures(args) => vm_test::run_record_fixtures(&args).map_err(Into::into),
        Commands::Bench(args) => bench::run(args).map(|()| true),
        Commands::Test(args) => suite::test(args),
        Commands::Soak(args) => soak::run(args),
        Commands::Run(args) => suite::run(args),
        Commands::BenchGenerator(args) => bench::generator(args).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
