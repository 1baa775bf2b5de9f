//! `netns-trace export`: a trace as a Perfetto timeline or JSON lines.
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::progress::ProgressArgs;
use crate::collector::CollectorConfig;
use crate::export::{PerfettoExport, PerfettoOptions, write_jsonl};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Perfetto protobuf: open it at https://ui.perfetto.dev (one track per namespace).
    Perfetto,
    /// One JSON object per event, with RFC 3339 time, for log pipelines.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The trace file.
    pub file: PathBuf,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to write ("-" for stdout).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Overwrite OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Grace period before a memberless namespace counts as leaked (Perfetto), as for `report`.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub grace: f64,
    #[command(flatten)]
    pub progress: ProgressArgs,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let (mut reader, mut progress) = super::progress::open(&args.file, args.progress.progress)?;
    let clock = reader.meta().clock;
    let out: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(crate::output::create_private(&args.output, args.force)?)
    };
    let mut out = BufWriter::new(out);
    // Streamed: events go from the trace to the output one at a time, so a trace of any
    // size exports in the memory the collector needs.
    match args.format {
        Format::Jsonl => {
            let events = reader.by_ref().inspect(|_| progress.event());
            let n = write_jsonl(events, Some(clock), &mut out)?;
            progress.finish();
            eprintln!("netns-trace: wrote {n} events as JSON lines");
        }
        Format::Perfetto => {
            // The same collector settings and trace end `report` uses, so both tell one story.
            let options = PerfettoOptions {
                collector: CollectorConfig {
                    grace_ns: super::secs_to_ns(args.grace)?,
                    ..Default::default()
                },
                clock: Some(clock),
                ended_at_ns: None,
            };
            let mut export = PerfettoExport::new(&options);
            let mut last_ts = reader.meta().started_at_ns;
            for ev in reader.by_ref() {
                last_ts = last_ts.max(ev.ts_ns);
                export.event(&ev);
                progress.event();
            }
            progress.finish();
            let end = super::report::trace_end(&reader, last_ts);
            let stats = export.finish(Some(end), &mut out)?;
            eprintln!(
                "netns-trace: wrote a Perfetto trace: {} namespaces, {} tracks, {} slices, {} instants, {} findings; open it at https://ui.perfetto.dev",
                stats.namespaces, stats.tracks, stats.slices, stats.instants, stats.findings
            );
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
