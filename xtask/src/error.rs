//! The one error type of the bootstrap / VM-test tooling.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum XtaskError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        // The tail is where tools put the reason.
        let tail: Vec<&str> = trimmed.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(":\n{}", tail.join("\n"))
    }
}

impl XtaskError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> XtaskError {
        let path = path.into();
        move |source| XtaskError::Io { path, source }
    }
}

pub type Result<T, E = XtaskError> = std::result::Result<T, E>;
