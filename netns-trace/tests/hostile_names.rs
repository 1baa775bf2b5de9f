//! A hostile pod names things: its process (comm, written through /proc/self/comm) and the
//! path its namespace is pinned at. It leaks that namespace, and `watch` and `scan` report
//! it as text. No name may forge an output line or put a control sequence on the operator's
//! terminal: every line is checked for control characters, and the names appear escaped.
//! Root-only (namespaces, mounts, and BPF for `watch`).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::watch::{netns_trace_bin, spawn_until_ready};
use common::{ns_inum, process_alive, require_root, wait_until};

/// What a pod chooses: a comm that sets the terminal title and breaks the line
/// ("p\x1b]0;x\x07\nFAKE"), and a pin path that forges a finding line and clears the screen.
const EVIL_FILE: &str = "ns\nFINDING forged\x1b[2J";

fn assert_terminal_safe(tool: &str, text: &str) {
    for line in text.lines() {
        assert!(
            !line.starts_with("FINDING forged") && !line.starts_with("FAKE"),
            "{tool} printed a forged line {line:?}:\n{text}"
        );
        assert!(
            !line.chars().any(char::is_control),
            "{tool} printed a control character in {line:?}"
        );
    }
}

struct HostilePod {
    shell: std::process::Child,
    pin: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HostilePod {
    /// A shell in a new network namespace, renamed to EVIL_COMM, whose namespace is
    /// bind-mounted at DIR/EVIL_FILE.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join(EVIL_FILE);
        std::fs::File::create(&pin).unwrap();
        let shell = Command::new("unshare")
            .args(["--net", "sh", "-c"])
            // printf's octal escapes spell EVIL_COMM.
            .arg(r"printf 'p\033]0;x\007\nFAKE' > /proc/self/comm; while :; do sleep 1; done")
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        let pid = shell.id();
        let ns = format!("/proc/{pid}/ns/net");
        assert!(
            wait_until(Duration::from_secs(10), || {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                ns_inum(std::path::Path::new(&ns))
                    != ns_inum(std::path::Path::new("/proc/self/ns/net"))
                    && comm.starts_with("p\x1b")
            }),
            "the hostile shell did not enter its namespace and rename itself"
        );
        let out = Command::new("mount")
            .args(["--bind", &ns])
            .arg(&pin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            shell,
            pin,
            _dir: dir,
        }
    }

    /// Kills every process of the pod: only the bind mount keeps the namespace now.
    fn kill_processes(&mut self) {
        let pid = self.shell.id();
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &pid.to_string()])
            .status();
        let _ = self.shell.kill();
        let _ = self.shell.wait();
        assert!(wait_until(Duration::from_secs(10), || !process_alive(
            u64::from(pid)
        )));
    }
}

impl Drop for HostilePod {
    fn drop(&mut self) {
        let _ = self.shell.kill();
        let _ = Command::new("umount").arg(&self.pin).status();
    }
}

#[test]
fn hostile_names_are_escaped_in_watch_and_scan_text() {
    if !require_root() {
        return;
    }
    let mut watch = spawn_until_ready(
        Command::new(netns_trace_bin())
            .args(["watch", "--grace", "1"])
            .stdout(Stdio::piped()),
        "watch",
        "watching",
    );
    let mut pod = HostilePod::start();
    pod.kill_processes();

    let scan = Command::new(netns_trace_bin())
        .arg("scan")
        .output()
        .unwrap();
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let scan = String::from_utf8(scan.stdout).expect("scan prints UTF-8");
    assert_terminal_safe("scan", &scan);
    assert!(
        scan.contains("ns\\nFINDING forged\\x1b[2J"),
        "scan names the pin, escaped:\n{scan}"
    );

    // Past the grace period the leak is a finding; then stop watch and read all it printed.
    std::thread::sleep(Duration::from_secs(4));
    unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
    let mut text = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(watch.wait().unwrap().success());
    assert_terminal_safe("watch", &text);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FINDING ") && l.contains("ns\\nFINDING forged\\x1b[2J")),
        "watch reports the leak with its pin, escaped:\n{text}"
    );
    assert!(
        text.contains("p\\x1b]0;x\\x07\\nFAKE"),
        "watch names the pod's process, escaped:\n{text}"
    );
}
