//! Probe-side diagnostics: aya-log records written by the eBPF programs (see
//! netns-trace-ebpf/src/diag.rs) become `tracing` events on stderr, each with the probe's
//! name as the `probe` field, e.g.
//! `WARN ring buffer full: a record of kind 2 was dropped on this CPU; … probe=task_membership`.
use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::{Interest, unix::AsyncFd};

/// Name of the global that `--debug-probes` sets before load.
pub const DEBUG_GLOBAL: &str = "DEBUG_PROBES";

/// Forwards aya-log records to tracing; the eBPF side puts the probe name in the target.
pub struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let probe = record.target();
        let msg = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(probe = %probe, "{msg}"),
            log::Level::Warn => tracing::warn!(probe = %probe, "{msg}"),
            log::Level::Info => tracing::info!(probe = %probe, "{msg}"),
            log::Level::Debug => tracing::debug!(probe = %probe, "{msg}"),
            log::Level::Trace => tracing::trace!(probe = %probe, "{msg}"),
        }
    }

    fn flush(&self) {}
}

/// The reader of the programs' log ring buffer.
pub struct ProbeLogger {
    inner: EbpfLogger<ToTracing>,
    broken: bool,
}

impl AsRawFd for ProbeLogger {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_fd().as_raw_fd()
    }
}

impl ProbeLogger {
    /// Takes the log map out of the object. None (with a debug line) when the object has none.
    pub fn init(ebpf: &mut Ebpf) -> Option<Self> {
        match EbpfLogger::init_with_logger(ebpf, ToTracing) {
            Ok(inner) => Some(Self {
                inner,
                broken: false,
            }),
            Err(e) => {
                tracing::debug!("probe diagnostics unavailable: {e}");
                None
            }
        }
    }

    /// Logs every pending record. aya-log panics on a record it cannot parse (a version
    /// mismatch between the two halves); that must not take the tracer down, so such a
    /// logger is retired with a warning.
    pub fn flush(&mut self) {
        if self.broken {
            return;
        }
        let inner = &mut self.inner;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.flush())).is_err() {
            tracing::warn!(
                "probe diagnostics disabled: a malformed log record came from the kernel"
            );
            self.broken = true;
        }
    }
}

/// The logger registered with tokio; `readable` resolves when records wait.
pub struct ProbeLogs {
    fd: Option<AsyncFd<ProbeLogger>>,
}

impl ProbeLogs {
    pub fn new(logger: Option<ProbeLogger>) -> Self {
        // SAFETY: the logger owns its ring buffer fd and lives inside the AsyncFd, so the fd
        // cannot be closed while registered.
        let fd = logger.and_then(|l| {
            match unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) } {
                Ok(fd) => Some(fd),
                Err(e) => {
                    tracing::warn!(
                        "probe diagnostics unavailable: cannot poll their ring buffer: {e}"
                    );
                    None
                }
            }
        });
        Self { fd }
    }

    /// Waits for records and logs them; pends forever when there is no logger.
    pub async fn pump(&mut self) {
        let Some(fd) = self.fd.as_mut() else {
            return std::future::pending().await;
        };
        match fd.readable_mut().await {
            Ok(mut guard) => {
                guard.get_inner_mut().flush();
                guard.clear_ready();
                if guard.get_inner().broken {
                    drop(guard);
                    self.fd = None;
                }
            }
            Err(e) => {
                tracing::warn!("probe diagnostics stopped: {e}");
                self.fd = None;
            }
        }
    }

    /// Logs whatever is pending now (at shutdown).
    pub fn flush(&mut self) {
        if let Some(fd) = self.fd.as_mut() {
            fd.get_mut().flush();
        }
    }
}

/// The eBPF object, 8-byte aligned (the ELF parser reads headers in place), with its BTF type
/// names made acceptable to the kernel.
///
/// aya-log-ebpf 0.2 (its `AYA_LOG_LEVEL`) and our `DEBUG_PROBES` are `aya_ebpf::Global`s, a
/// `MaybeUninit<T>`; bpf-linker 0.10 names that union `MaybeUninit<u8>` in BTF, and the
/// kernel refuses a struct or union name that is not a C identifier (BPF_BTF_LOAD: EINVAL).
/// Such names are rewritten in place (`MaybeUninit_u8_`): same length, so no offset moves.
pub struct AlignedObject {
    words: Vec<u64>,
    len: usize,
}

impl AlignedObject {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes; u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

pub fn sanitize_btf_names(object: &[u8]) -> AlignedObject {
    let mut out = AlignedObject {
        words: vec![0u64; object.len().div_ceil(8)],
        len: object.len(),
    };
    out.bytes_mut().copy_from_slice(object);
    if let Some(strings) = btf_strings(object) {
        let bytes = out.bytes_mut();
        let mut start = strings.start;
        while start < strings.end {
            let end = bytes[start..strings.end]
                .iter()
                .position(|&b| b == 0)
                .map_or(strings.end, |p| start + p);
            let name = &mut bytes[start..end];
            // Generic instantiations are the only type names with '<'; other strings (source
            // lines in line info) are never checked by the kernel, so leave them alone.
            if name.contains(&b'<') && !name.contains(&b' ') {
                for b in name
                    .iter_mut()
                    .filter(|b| !(b.is_ascii_alphanumeric() || **b == b'_'))
                {
                    *b = b'_';
                }
            }
            start = end + 1;
        }
    }
    out
}

/// Byte range of the string table of the object's `.BTF` section (ELF64 little-endian).
fn btf_strings(elf: &[u8]) -> Option<std::ops::Range<usize>> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let section = |i: usize| -> Option<(u32, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(h)?,
            usize::try_from(u64_at(h + 0x18)?).ok()?,
            usize::try_from(u64_at(h + 0x20)?).ok()?,
        ))
    };
    let (_, names_off, _) = section(shstrndx)?;
    let (btf_off, btf_size) = (0..shnum).find_map(|i| {
        let (name, off, size) = section(i)?;
        let at = names_off.checked_add(name as usize)?;
        (elf.get(at..at + 5)? == b".BTF\0").then_some((off, size))
    })?;
    let btf = elf.get(btf_off..btf_off.checked_add(btf_size)?)?;
    if btf.get(..2)? != [0x9f, 0xeb] {
        return None;
    }
    let word = |o: usize| Some(u32::from_le_bytes(btf.get(o..o + 4)?.try_into().ok()?) as usize);
    let (hdr_len, str_off, str_len) = (word(4)?, word(16)?, word(20)?);
    let start = btf_off.checked_add(hdr_len)?.checked_add(str_off)?;
    let end = start.checked_add(str_len)?;
    (end <= btf_off + btf_size).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_object_has_only_identifier_names_for_generic_types() {
        let object = sanitize_btf_names(super::super::loader::EBPF_OBJECT);
        let range = btf_strings(object.bytes()).expect("the object has a .BTF section");
        let strings = &object.bytes()[range];
        assert!(
            !strings.windows(12).any(|w| w == b"MaybeUninit<"),
            "a generic name is left"
        );
        assert!(
            strings.windows(15).any(|w| w == b"MaybeUninit_u8_"),
            "aya-log's level global is renamed"
        );
        // Nothing else moved: same length, same bytes outside the renamed names.
        assert_eq!(
            object.bytes().len(),
            super::super::loader::EBPF_OBJECT.len()
        );
    }

    #[test]
    fn garbage_is_returned_unchanged() {
        for junk in [
            &b""[..],
            b"\x7fELF\x02\x01",
            b"not an elf at all",
            &[0xff; 100],
        ] {
            assert_eq!(sanitize_btf_names(junk).bytes(), junk);
        }
    }
}
