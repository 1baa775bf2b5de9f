//! A progress line on stderr while `report` or `export` reads a long trace.
//!
//! One line, redrawn in place with a carriage return (no terminal escapes, so any terminal
//! shows it), at most [`REDRAWS_PER_SEC`] times a second, and blanked out before anything
//! else is printed. It never goes to stdout, so the report and its JSON are the same with or
//! without it.
//!
//! When to show it (`--progress auto`): stderr is a terminal and the trace has more than
//! [`AUTO_AFTER_EVENTS`] events. The event count is only known once the trace is read (the
//! end frame that counts them is the last thing in the file, and a trace whose recorder was
//! killed has none), and bytes per event vary too much to guess it from the file's size (9
//! on a recording of process churn, 25 to 37 on the synthetic mix, docs/trace-format.md). So
//! the line appears when the millionth event has been read: exactly the traces with more
//! events get it, about a second into reading them, and short reports never flicker.
//!
//! A small module rather than a progress-bar crate: the one line it draws needs no
//! dependency, and `--progress always` must draw on stderr even when it is not a terminal
//! (the tests read it through a pipe), which the usual crates decline to do.
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::trace::{TraceError, TraceReader};

/// `--progress auto` shows progress once this many events have been read.
pub const AUTO_AFTER_EVENTS: u64 = 1_000_000;
/// At most this many redraws a second.
pub const REDRAWS_PER_SEC: u32 = 10;
/// Events between two looks at the clock (reading the clock per event would cost more than
/// decoding some events).
const CHECK_EVERY: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// When stderr is a terminal and the trace has more than a million events.
    #[default]
    Auto,
    /// From the first event, even when stderr is not a terminal.
    Always,
    /// Never.
    Never,
}

/// `--progress`, shared by the commands that read a whole trace.
#[derive(Debug, Clone, clap::Args)]
pub struct ProgressArgs {
    /// Show how far reading the trace has got, as one line on stderr (bytes read of the
    /// file's size, percentage, events read and their rate), erased once it is read; never
    /// on stdout. auto: when stderr is a terminal and the trace has more than a million
    /// events (from the millionth event on); always: also when stderr is not a terminal;
    /// never: not at all.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// Counts the bytes a reader has handed out, for a [`Progress`] to read from another place.
struct Counted<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens the trace at `path` for reading with progress shown as `mode` says.
pub fn open(path: &Path, mode: ProgressMode) -> Result<(TraceReader, Progress), TraceError> {
    let file = File::open(path).map_err(|source| TraceError::File {
        path: path.to_owned(),
        source,
    })?;
    // A pipe or a device has no size to measure against.
    let total = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let bytes = Arc::new(AtomicU64::new(0));
    let reader = TraceReader::from_reader(Counted {
        inner: file,
        bytes: bytes.clone(),
    })?;
    let stderr = std::io::stderr();
    let show_after = show_after(mode, stderr.is_terminal());
    Ok((
        reader,
        Progress::new(show_after, total, bytes, Box::new(stderr)),
    ))
}

/// After how many events progress appears, or `None` for never.
pub fn show_after(mode: ProgressMode, stderr_is_terminal: bool) -> Option<u64> {
    match mode {
        ProgressMode::Always => Some(1),
        ProgressMode::Auto if stderr_is_terminal => Some(AUTO_AFTER_EVENTS),
        ProgressMode::Auto | ProgressMode::Never => None,
    }
}

/// The progress of one trace read. Call [`event`](Self::event) per event read and
/// [`finish`](Self::finish) before printing anything else (dropping it finishes it too).
pub struct Progress {
    total_bytes: Option<u64>,
    bytes: Arc<AtomicU64>,
    out: Box<dyn Write>,
    events: u64,
    /// The event count at which to look again.
    next_check: u64,
    started: Instant,
    last_draw: Option<Instant>,
    /// Characters of the line on screen (0: none).
    drawn: usize,
}

impl Progress {
    fn new(
        show_after: Option<u64>,
        total_bytes: Option<u64>,
        bytes: Arc<AtomicU64>,
        out: Box<dyn Write>,
    ) -> Self {
        Self {
            total_bytes,
            bytes,
            out,
            events: 0,
            next_check: show_after.unwrap_or(u64::MAX),
            started: Instant::now(),
            last_draw: None,
            drawn: 0,
        }
    }

    /// One more event was read.
    #[inline(always)]
    pub fn event(&mut self) {
        self.events += 1;
        if self.events >= self.next_check {
            self.check();
        }
    }

    #[inline(never)]
    fn check(&mut self) {
        self.next_check = self.events.saturating_add(CHECK_EVERY);
        let now = Instant::now();
        let due = self
            .last_draw
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1) / REDRAWS_PER_SEC);
        if due {
            self.last_draw = Some(now);
            let line = self.line(now.duration_since(self.started));
            self.draw(&line);
        }
    }

    /// The line as it reads after `elapsed`.
    fn line(&self, elapsed: Duration) -> String {
        let read = self.bytes.load(Ordering::Relaxed);
        let bytes = match self.total_bytes {
            Some(total) if total > 0 => format!(
                "{}% ({} of {})",
                read.min(total) * 100 / total,
                super::human_bytes(read.min(total)),
                super::human_bytes(total)
            ),
            _ => super::human_bytes(read),
        };
        let rate = self.events as f64 / elapsed.as_secs_f64().max(1e-3);
        format!(
            "netns-trace: reading the trace: {bytes}, {} events, {:.2} M events/s",
            self.events,
            rate / 1e6
        )
    }

    /// Replaces the line on screen with `line` (or blanks it out when `line` is empty).
    fn draw(&mut self, line: &str) {
        let len = line.chars().count();
        let mut s = String::with_capacity(len.max(self.drawn) + 2);
        s.push('\r');
        s.push_str(line);
        if self.drawn > len {
            s.extend(std::iter::repeat_n(' ', self.drawn - len));
            if line.is_empty() {
                s.push('\r');
            }
        }
        // A progress line that cannot be written is no reason to fail the report.
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
        self.drawn = len;
    }

    /// Erases the line, if one was drawn.
    pub fn finish(&mut self) {
        if self.drawn > 0 {
            self.draw("");
        }
        self.next_check = u64::MAX;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn progress(show_after: Option<u64>, total: Option<u64>) -> (Progress, Shared, Arc<AtomicU64>) {
        let out = Shared::default();
        let bytes = Arc::new(AtomicU64::new(0));
        let p = Progress::new(show_after, total, bytes.clone(), Box::new(out.clone()));
        (p, out, bytes)
    }

    #[test]
    fn auto_shows_only_on_a_terminal_and_always_shows_anywhere() {
        assert_eq!(
            show_after(ProgressMode::Auto, true),
            Some(AUTO_AFTER_EVENTS)
        );
        assert_eq!(show_after(ProgressMode::Auto, false), None);
        assert_eq!(show_after(ProgressMode::Always, false), Some(1));
        assert_eq!(show_after(ProgressMode::Always, true), Some(1));
        assert_eq!(show_after(ProgressMode::Never, true), None);
    }

    #[test]
    fn auto_on_a_terminal_draws_from_the_millionth_event() {
        let (mut p, out, bytes) = progress(show_after(ProgressMode::Auto, true), Some(40 << 20));
        bytes.store(10 << 20, Ordering::Relaxed);
        for _ in 0..AUTO_AFTER_EVENTS - 1 {
            p.event();
        }
        assert_eq!(out.text(), "", "nothing before the millionth event");
        p.event();
        let text = out.text();
        assert!(
            text.starts_with(
                "\rnetns-trace: reading the trace: 25% (10.0 MiB of 40.0 MiB), 1000000 events, "
            ),
            "{text:?}"
        );
        assert!(text.ends_with(" M events/s"), "{text:?}");
        // Throttled: a burst of events right after a draw draws nothing more.
        for _ in 0..10 * CHECK_EVERY {
            p.event();
        }
        assert_eq!(
            out.text(),
            text,
            "at most {REDRAWS_PER_SEC} redraws a second"
        );
        // Finishing blanks the line out and leaves the cursor at its start.
        p.finish();
        let blank = format!("\r{}\r", " ".repeat(text.len() - 1));
        assert_eq!(out.text(), format!("{text}{blank}"));
        p.finish();
        assert_eq!(out.text(), format!("{text}{blank}"), "erased once");
    }

    #[test]
    fn redraws_after_the_throttle_interval() {
        let (mut p, out, bytes) = progress(Some(1), None);
        bytes.store(5 << 20, Ordering::Relaxed);
        p.event();
        let first = out.text();
        assert!(
            first.starts_with("\rnetns-trace: reading the trace: 5.0 MiB, 1 events, "),
            "{first:?}"
        );
        std::thread::sleep(Duration::from_secs(1) / REDRAWS_PER_SEC);
        // The next look at the clock comes CHECK_EVERY events later.
        bytes.store(6 << 20, Ordering::Relaxed);
        for _ in 0..CHECK_EVERY - 1 {
            p.event();
        }
        assert_eq!(out.text(), first);
        p.event();
        let second = &out.text()[first.len()..];
        assert!(
            second.starts_with(&format!(
                "\rnetns-trace: reading the trace: 6.0 MiB, {} events, ",
                1 + CHECK_EVERY
            )),
            "{second:?}"
        );
    }

    #[test]
    fn a_shorter_line_blanks_what_the_longer_one_left() {
        let (mut p, out, _) = progress(Some(1), None);
        p.draw("abcdef");
        p.draw("xyz");
        assert_eq!(out.text(), "\rabcdef\rxyz   ");
        p.finish();
        assert_eq!(out.text(), "\rabcdef\rxyz   \r   \r");
    }

    #[test]
    fn never_and_auto_off_a_terminal_draw_nothing() {
        for show in [
            show_after(ProgressMode::Never, true),
            show_after(ProgressMode::Auto, false),
        ] {
            let (mut p, out, _) = progress(show, Some(100));
            for _ in 0..2 * AUTO_AFTER_EVENTS {
                p.event();
            }
            p.finish();
            drop(p);
            assert_eq!(out.text(), "");
        }
    }
}
