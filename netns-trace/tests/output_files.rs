//! The files `export` writes, through the real binary: `--force` replaces only a plain file
//! of one name, and never blocks on or truncates what someone planted at the path
//! (issue 14, item 7). The writer's own unit tests are in src/output.rs.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> String {
    std::env::var("NETNS_TRACE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_netns-trace").to_string())
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/traces/6.1-incident.nstrace")
}

/// `export FIXTURE --format jsonl -o OUT --force`, killed if it takes over 30 s (a FIFO open
/// that blocks would hang forever).
fn export_to(out: &Path) -> Output {
    let mut child = Command::new(bin())
        .args(["export"])
        .arg(fixture())
        .args(["--format", "jsonl", "--force", "-o"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn export");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("export to {} blocked", out.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn export_force_refuses_a_fifo_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.jsonl");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    let out = export_to(&fifo);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

#[test]
fn export_force_leaves_a_hard_linked_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"another name's contents").unwrap();
    let out_path = dir.path().join("out.jsonl");
    std::fs::hard_link(&victim, &out_path).unwrap();
    let out = export_to(&out_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("hard links"), "{stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"another name's contents");
}

#[test]
fn export_force_replaces_a_plain_file_and_makes_it_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, b"stale").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = export_to(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() > 10, "the fixture's events: {}", lines.len());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
