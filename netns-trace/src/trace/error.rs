use std::path::PathBuf;

/// Everything the trace writer and reader can fail with. Damage inside a readable trace is
/// not an error: the reader skips it and reports it in [`super::TraceDamage`].
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("not a netns-trace trace file (no NSTRACE magic)")]
    NotATrace,
    #[error("trace format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("the trace file header is cut short ({len} bytes)")]
    TruncatedHeader { len: usize },
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trace I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("one event encodes to {bytes} bytes, over the {limit}-byte frame limit")]
    EventTooLarge { bytes: usize, limit: u32 },
    #[error("trace metadata: {0}")]
    Meta(#[from] serde_json::Error),
}
