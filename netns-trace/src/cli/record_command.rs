//! `record -- CMD`: record around a command (a deployment), as `perf record -- CMD` does.
//! The probes attach and the start snapshot is written first; then CMD starts; the
//! recording stops a grace period after CMD exits, so the teardowns CMD set off are caught;
//! and CMD's exit status becomes netns-trace's. `--until-idle` stops a recording once no
//! namespace event came for a while.
use std::future::Future;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::model::{Event, EventBody};

/// The command, until the probes are attached.
pub struct PendingCommand {
    argv: Vec<String>,
    exited: oneshot::Sender<std::io::Result<ExitStatus>>,
    pid: Arc<AtomicI32>,
}

/// What the stop future needs of the command.
pub struct CommandWatch {
    exited: oneshot::Receiver<std::io::Result<ExitStatus>>,
    pid: Arc<AtomicI32>,
}

pub fn prepare(argv: Vec<String>) -> (PendingCommand, CommandWatch) {
    let (tx, rx) = oneshot::channel();
    let pid = Arc::new(AtomicI32::new(0));
    (
        PendingCommand {
            argv,
            exited: tx,
            pid: pid.clone(),
        },
        CommandWatch { exited: rx, pid },
    )
}

impl PendingCommand {
    /// Starts CMD with our stdin, stdout and stderr, in our process group (a terminal's
    /// Ctrl-C reaches it as it would without netns-trace), and a thread that waits for it.
    pub fn start(self) -> anyhow::Result<()> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("no command after --"))?;
        let mut child = std::process::Command::new(program)
            .args(args)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
        self.pid.store(child.id() as i32, Ordering::SeqCst);
        eprintln!(
            "netns-trace: started {} (pid {})",
            crate::model::terminal_safe(&self.argv.join(" ")),
            child.id()
        );
        std::thread::Builder::new()
            .name("record-cmd".into())
            .spawn(move || {
                let _ = self.exited.send(child.wait());
            })?;
        Ok(())
    }
}

/// netns-trace's exit status for CMD's: its code, or 128 + the signal that killed it.
pub fn exit_code(status: &ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => (128 + s) as u8,
        (None, None) => 1,
    }
}

/// Events that say a namespace's life changed (for `--until-idle`): not forks and exits,
/// which a busy node never stops making.
pub fn is_namespace_event(ev: &Event) -> bool {
    matches!(
        ev.body,
        EventBody::NetnsCreated(_)
            | EventBody::NetnsTeardown(_)
            | EventBody::NetnsFreed(_)
            | EventBody::NsfsMount(_)
            | EventBody::NsfsEvict(_)
            | EventBody::PinAdded(_)
            | EventBody::PinRemoved(_)
    )
}

/// A signal stream that, when it could not be installed, never fires (the other ways to stop
/// still work).
struct Received(Option<tokio::signal::unix::Signal>);

impl Received {
    async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// When the last namespace event came (milliseconds since `record` started), shared between
/// the sink that sees events and the stop future.
#[derive(Clone, Default)]
pub struct IdleClock(Arc<AtomicU64>);

impl IdleClock {
    pub fn touch(&self, since_start: Duration) {
        self.0
            .store(since_start.as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// How a recording ends.
pub struct StopRule {
    /// Stop this long after CMD exits.
    pub command: Option<(CommandWatch, Duration)>,
    /// Stop after this long without a namespace event.
    pub until_idle: Option<(IdleClock, Duration)>,
    /// Stop after this long in all.
    pub duration: Option<Duration>,
}

/// Completes when the recording should stop; gives CMD's exit status when there was one.
/// Handlers for SIGINT and SIGTERM are installed by this call (see `shutdown_signal`).
/// With a command running: SIGINT (which a terminal delivers to CMD too) and SIGTERM (which
/// is passed on to CMD) wait for CMD to exit; a second one stops at once.
pub fn stop(
    rule: StopRule,
    started: std::time::Instant,
) -> impl Future<Output = Option<ExitStatus>> {
    use tokio::signal::unix::{SignalKind, signal};
    let watch_for = |kind: SignalKind, name: &str| {
        signal(kind)
            .inspect_err(|e| tracing::warn!("cannot watch for {name}: {e}"))
            .ok()
    };
    let interrupt = watch_for(SignalKind::interrupt(), "SIGINT");
    let terminate = watch_for(SignalKind::terminate(), "SIGTERM");
    async move {
        let (mut interrupt, mut terminate) = (Received(interrupt), Received(terminate));
        let deadline = async {
            match rule.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let idle = async {
            match &rule.until_idle {
                Some((clock, quiet)) => loop {
                    let since = started.elapsed().saturating_sub(clock.last());
                    if since >= *quiet {
                        eprintln!(
                            "netns-trace: no namespace event for {} s; stopping",
                            quiet.as_secs_f64()
                        );
                        break;
                    }
                    tokio::time::sleep(*quiet - since).await;
                },
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline, idle);
        let Some((mut watch, linger)) = rule.command else {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                _ = &mut deadline => {}
                _ = &mut idle => {}
            }
            return None;
        };
        let mut asked = false;
        let status = loop {
            tokio::select! {
                r = &mut watch.exited => break r.ok().and_then(|r| r.ok()),
                _ = interrupt.recv() => {
                    if asked { return None; }
                    asked = true;
                    eprintln!("netns-trace: waiting for the command to exit (again to stop now)");
                }
                _ = terminate.recv() => {
                    if asked { return None; }
                    asked = true;
                    let pid = watch.pid.load(Ordering::SeqCst);
                    if pid > 0 {
                        // SAFETY: kill(2) on our own child's pid, which the waiting thread
                        // has not reaped (it would have sent its status first).
                        unsafe { libc::kill(pid, libc::SIGTERM) };
                    }
                }
                _ = &mut deadline => return None,
                _ = &mut idle => return None,
            }
        };
        if let Some(st) = &status {
            eprintln!(
                "netns-trace: the command exited ({st}); recording {} s more for the teardowns it set off",
                linger.as_secs_f64()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(linger) => {}
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = &mut deadline => {}
        }
        status
    }
}
