//! The testbed's error type: what failed, with the OS error or the command's stderr.
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{role} child (pid {pid}) failed: {detail}")]
    ChildFailed {
        role: String,
        pid: i32,
        detail: String,
    },
    #[error("state file {path}: {detail}")]
    State { path: PathBuf, detail: String },
    #[error("kernel state does not match what the scenario built: {0}")]
    Unexpected(String),
    #[error("teardown incomplete: {0}")]
    Teardown(String),
}

pub type Result<T> = std::result::Result<T, TestbedError>;

pub fn os_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> TestbedError {
    let what = what.into();
    move |source| TestbedError::Os { what, source }
}

pub fn last_os_err(what: impl Into<String>) -> TestbedError {
    TestbedError::Os {
        what: what.into(),
        source: io::Error::last_os_error(),
    }
}
