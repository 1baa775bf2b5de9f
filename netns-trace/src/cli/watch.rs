//! `netns-trace watch`: live events.
use std::process::ExitCode;

use super::ProbeArgs;
use crate::live::source::LiveSource;

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print every decoded kernel event as it arrives.
    #[arg(long)]
    pub raw: bool,
}

pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut tracer = crate::probes::load(&args.probe.load_options())?;
        let mut source = LiveSource::new(&mut tracer)?;
        eprintln!("netns-trace: watching in {} mode; Ctrl-C to stop", tracer.mode());
        let mut batch = Vec::new();
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                r = source.next_batch(&mut batch) => r?,
                _ = tick.tick() => batch.extend(source.lost_events(&tracer, crate::live::source::monotonic_ns())),
                _ = tokio::signal::ctrl_c() => break,
                _ = sigterm.recv() => break,
            }
            for ev in batch.drain(..) {
                if args.json {
                    println!("{}", serde_json::to_string(&ev)?);
                } else {
                    println!("{ev:?}");
                }
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
