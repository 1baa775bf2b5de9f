//! Files the tool writes (traces, exports): created private, and never through something a
//! less privileged user planted at the path. The tool runs as root and the path may lie in a
//! directory others can write to, so `--force` replaces only a plain file of its own:
//! - a symbolic link is refused (O_NOFOLLOW), so it cannot redirect the write;
//! - a FIFO or device is refused without blocking (O_NONBLOCK), and nothing is truncated
//!   before the target is known to be a regular file;
//! - a file with a second hard link is refused: truncating it would clobber the other name.
use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("refusing to write to {}: it is a symbolic link", path.display())]
    Symlink { path: PathBuf },
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("refusing to write to {}: not a regular file", path.display())]
    NotARegularFile { path: PathBuf },
    #[error("refusing to overwrite {}: it has {links} hard links, and overwriting would change the others too", path.display())]
    HardLinked { path: PathBuf, links: u64 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Opens `path` for writing, mode 0600, empty. Without `overwrite` the file must not exist.
pub fn create_private(path: &Path, overwrite: bool) -> Result<File, OutputError> {
    let mut open = OpenOptions::new();
    open.write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY);
    if overwrite {
        open.create(true);
    } else {
        open.create_new(true);
    }
    let file = open.open(path).map_err(|source| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            OutputError::Symlink {
                path: path.to_owned(),
            }
        } else if source.kind() == std::io::ErrorKind::AlreadyExists {
            OutputError::AlreadyExists {
                path: path.to_owned(),
            }
        } else if source.raw_os_error() == Some(libc::ENXIO) {
            // O_NONBLOCK on a FIFO nobody reads.
            OutputError::NotARegularFile {
                path: path.to_owned(),
            }
        } else {
            OutputError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let io = |source| OutputError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(OutputError::NotARegularFile {
            path: path.to_owned(),
        });
    }
    if meta.nlink() > 1 {
        return Err(OutputError::HardLinked {
            path: path.to_owned(),
            links: meta.nlink(),
        });
    }
    // Only now that it is known to be a plain file of one name; an overwritten file keeps its
    // old mode unless it is set.
    file.set_len(0).map_err(io)?;
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(io)?;
    // Writes block as usual from here on.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn a_new_file_is_private_and_an_existing_one_needs_overwrite() {
        let d = dir();
        let p = d.path().join("out");
        std::fs::write(&p, b"old contents").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            create_private(&p, false),
            Err(OutputError::AlreadyExists { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"old contents");
        drop(create_private(&p, true).unwrap());
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.len(), 0);
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking_and_a_symlink_is_not_followed() {
        let d = dir();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            create_private(&fifo, true),
            Err(OutputError::NotARegularFile { .. })
        ));
        let target = d.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            create_private(&link, true),
            Err(OutputError::Symlink { .. })
        ));
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn a_hard_linked_file_is_left_whole() {
        let d = dir();
        let other = d.path().join("shadow");
        std::fs::write(&other, b"someone else's").unwrap();
        let p = d.path().join("out");
        std::fs::hard_link(&other, &p).unwrap();
        let err = create_private(&p, true).unwrap_err();
        assert!(
            matches!(err, OutputError::HardLinked { links: 2, .. }),
            "{err}"
        );
        assert_eq!(std::fs::read(&other).unwrap(), b"someone else's");
    }
}
