//! Builds a guest's initramfs: busybox, the netns-trace binaries and test executables with
//! their shared libraries, the host's iproute2, util-linux namespace tools and CNI plugins,
//! the kernel's modules, and an /init script that runs the tests and prints machine-parsable
//! verdicts.
use std::collections::BTreeSet;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{TESTBED_BIN, TESTBED_ENV};
use crate::error::{Result, XtaskError};
use crate::kernels::GuestKernel;
use crate::util::{create_dir_all, output, output_if_ok, remove_dir_if_exists, run, write};

/// Where the guest finds the main binary (and what NETNS_TRACE_BIN says).
pub const GUEST_BIN_DIR: &str = "/usr/local/bin";
pub const GUEST_TEST_DIR: &str = "/tests";
const GUEST_MODULE_DIR: &str = "/lib/modules/netns-trace";

/// Verdict lines the init script prints and qemu.rs parses.
pub const MARK_BOOTED: &str = "NETNS_TRACE_VM_BOOTED:";
pub const MARK_TEST_START: &str = "NETNS_TRACE_VM_TEST_START:";
pub const MARK_TEST_VERDICT: &str = "NETNS_TRACE_VM_TEST:";
pub const MARK_SETUP_FAILED: &str = "NETNS_TRACE_VM_SETUP_FAILED:";
pub const MARK_RESULT: &str = "NETNS_TRACE_VM_RESULT:";
/// A file the guest ships to the host over the console: base64 lines between these two.
pub const MARK_FILE_BEGIN: &str = "NETNS_TRACE_VM_FILE_BEGIN:";
pub const MARK_FILE_END: &str = "NETNS_TRACE_VM_FILE_END:";

/// Where guest tests leave files for the host (NETNS_TRACE_COLLECT_DIR) when the run collects.
pub const GUEST_COLLECT_DIR: &str = "/collect";

/// Host tools copied in: busybox's `ip` lacks `netns` and `type veth`, and its unshare,
/// nsenter and mount lack options the tests use.
const IPROUTE2_IP: &str = "ip";
const UTIL_LINUX_TOOLS: &[&str] = &["unshare", "nsenter", "mount", "umount"];
/// Independent readers the tests check the product against (bpftool reads the guest
/// kernel's BTF for tests/btf_offsets.rs); copied in when the host has them.
const CHECKING_TOOLS: &[&str] = &["bpftool"];

/// Where Debian's containernetworking-plugins puts the CNI plugins; the guest has them at the
/// same path, so tests use one CNI_PATH everywhere.
const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";
/// The plugins tests/cni_plugins.rs runs (the bridge plugin runs host-local itself).
const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback"];

/// Everything from the build that goes into every guest.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The package's binaries; `main_bin` names the one NETNS_TRACE_BIN points at.
    pub bins: Vec<PathBuf>,
    pub main_bin: String,
    /// (test target name, executable).
    pub tests: Vec<(String, PathBuf)>,
    /// Directories copied to the same absolute path in the guest (test fixtures that tests
    /// find through CARGO_MANIFEST_DIR).
    pub data_dirs: Vec<PathBuf>,
}

/// Builds `<work_dir>/<kernel>.cpio.gz` and returns its path.
pub fn build(
    work_dir: &Path,
    kernel: &GuestKernel,
    payload: &Payload,
    test_args: &[String],
) -> Result<PathBuf> {
    build_image(work_dir, kernel, payload, test_args, false)
}

/// Like `build`, with an /init that ships the files tests leave in GUEST_COLLECT_DIR back
/// over the console.
pub fn build_collecting(
    work_dir: &Path,
    kernel: &GuestKernel,
    payload: &Payload,
    test_args: &[String],
) -> Result<PathBuf> {
    build_image(work_dir, kernel, payload, test_args, true)
}

fn build_image(
    work_dir: &Path,
    kernel: &GuestKernel,
    payload: &Payload,
    test_args: &[String],
    collect: bool,
) -> Result<PathBuf> {
    let root = work_dir.join(format!("{}-root", kernel.name));
    remove_dir_if_exists(&root)?;
    let image = Image {
        root: root.clone(),
        libs: BTreeSet::new(),
    };
    let mut image = image;
    image.skeleton()?;
    image.busybox()?;
    image.host_tool(IPROUTE2_IP, "/sbin/ip")?;
    symlink("/sbin/ip", image.path("/usr/local/bin/ip"))
        .map_err(XtaskError::io("/usr/local/bin/ip"))?;
    for tool in UTIL_LINUX_TOOLS {
        image.host_tool(tool, &format!("{GUEST_BIN_DIR}/{tool}"))?;
    }
    for tool in CHECKING_TOOLS {
        if let Err(e) = image.host_tool(tool, &format!("{GUEST_BIN_DIR}/{tool}")) {
            println!("initramfs: {tool} not shipped: {e}");
        }
    }
    for plugin in CNI_PLUGINS {
        let host = Path::new(CNI_PLUGIN_DIR).join(plugin);
        if !host.is_file() {
            return Err(XtaskError::NotFound(format!(
                "{} is not installed (cargo xtask bootstrap installs containernetworking-plugins)",
                host.display()
            )));
        }
        image.executable(&host, &host.to_string_lossy())?;
    }
    for bin in &payload.bins {
        let name = file_name(bin)?;
        image.executable(bin, &format!("{GUEST_BIN_DIR}/{name}"))?;
    }
    for (name, exe) in &payload.tests {
        image.executable(exe, &format!("{GUEST_TEST_DIR}/{name}"))?;
    }
    for dir in &payload.data_dirs {
        if dir.is_dir() {
            let dest = image.path(&dir.to_string_lossy());
            copy_tree(dir, &dest)?;
        }
    }
    let mut module_names = Vec::new();
    for module in &kernel.modules {
        let name = file_name(module)?;
        image.copy(module, &format!("{GUEST_MODULE_DIR}/{name}"))?;
        module_names.push(name);
    }
    let test_names: Vec<String> = payload.tests.iter().map(|(name, _)| name.clone()).collect();
    let init = init_script(
        &kernel.name,
        &payload.main_bin,
        &module_names,
        &test_names,
        test_args,
        collect,
    );
    let init_path = image.path("/init");
    write(&init_path, init)?;
    set_mode(&init_path, 0o755)?;

    let archive = work_dir.join(format!("{}.cpio.gz", kernel.name));
    write_cpio_gz(&root, &archive)?;
    Ok(archive)
}

struct Image {
    root: PathBuf,
    /// Shared libraries already copied (guest paths).
    libs: BTreeSet<String>,
}

impl Image {
    fn path(&self, guest_path: &str) -> PathBuf {
        self.root.join(guest_path.trim_start_matches('/'))
    }

    fn skeleton(&self) -> Result<()> {
        for dir in [
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "usr/local/bin",
            "lib64",
            "lib/x86_64-linux-gnu",
            "proc",
            "sys",
            "dev",
            "tmp",
            "run",
            "var",
            "etc",
            "root",
            "mnt",
            "tests",
            "lib/modules/netns-trace",
        ] {
            create_dir_all(&self.path(dir))?;
        }
        set_mode(&self.path("/tmp"), 0o1777)?;
        // ip netns uses /var/run/netns; make it the same directory as /run/netns.
        symlink("../run", self.path("/var/run")).map_err(XtaskError::io("var/run"))?;
        symlink("/proc/self/mounts", self.path("/etc/mtab")).map_err(XtaskError::io("etc/mtab"))?;
        write(&self.path("/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
        write(&self.path("/etc/group"), "root:x:0:\n")?;
        // The kernel needs /dev/console before /init mounts devtmpfs, or init has no stdio.
        let console = self.path("/dev/console");
        if let Err(e) = run(Command::new("mknod").arg(&console).args(["c", "5", "1"])) {
            eprintln!(
                "warning: cannot create /dev/console in the initramfs ({e}); relying on the kernel's"
            );
        }
        Ok(())
    }

    fn busybox(&mut self) -> Result<()> {
        let busybox = find_in_path("busybox")?;
        self.copy(&busybox, "/bin/busybox")?;
        let applets = output(Command::new(&busybox).arg("--list-full"))?;
        for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
            let name = applet.rsplit('/').next().unwrap_or(applet);
            // Our iproute2/util-linux copies replace these applets.
            if name == IPROUTE2_IP || name == "busybox" || name == "linuxrc" {
                continue;
            }
            let link = self.path(applet);
            if let Some(parent) = link.parent() {
                create_dir_all(parent)?;
            }
            if !link.exists() {
                symlink("/bin/busybox", &link).map_err(XtaskError::io(&link))?;
            }
        }
        Ok(())
    }

    fn host_tool(&mut self, name: &str, guest_path: &str) -> Result<()> {
        let host = find_in_path(name)?;
        self.executable(&host, guest_path)
    }

    /// Copies an executable and, through ldd, its shared libraries and loader.
    fn executable(&mut self, host: &Path, guest_path: &str) -> Result<()> {
        self.copy(host, guest_path)?;
        for lib in shared_libraries(host) {
            if self.libs.insert(lib.clone()) {
                self.copy(Path::new(&lib), &lib)?;
            }
        }
        Ok(())
    }

    /// Copies file contents (following symlinks) to a guest path, keeping the mode.
    fn copy(&self, host: &Path, guest_path: &str) -> Result<()> {
        let dest = self.path(guest_path);
        if let Some(parent) = dest.parent() {
            create_dir_all(parent)?;
        }
        std::fs::copy(host, &dest).map_err(XtaskError::io(host))?;
        Ok(())
    }
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| XtaskError::NotFound(format!("{} has no file name", path.display())))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(XtaskError::io(path))
}

/// First executable of that name in $PATH (plus the sbin dirs, which root's PATH may lack).
pub fn find_in_path(name: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            XtaskError::NotFound(format!("`{name}` is not installed (cargo xtask bootstrap)"))
        })
}

/// Absolute paths of the libraries and loader ldd reports; empty for static executables.
fn shared_libraries(exe: &Path) -> Vec<String> {
    let Some(text) = output_if_ok(Command::new("ldd").arg(exe)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)
        .map_err(XtaskError::io(src))?
        .flatten()
    {
        let from = entry.path();
        let to = dest.join(entry.file_name());
        if from.is_dir() {
            copy_tree(&from, &to)?;
        } else {
            std::fs::copy(&from, &to).map_err(XtaskError::io(&from))?;
        }
    }
    Ok(())
}

/// Single-quotes a word for sh.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The guest's /init (busybox sh): mounts, modules, then every test executable with
/// `--test-threads=1` and the filter args, a verdict line each, a final result, poweroff.
/// With `collect`, tests get NETNS_TRACE_COLLECT_DIR, and every file left there is printed
/// to the console before the final result (see `collect_script`).
pub fn init_script(
    kernel: &str,
    main_bin: &str,
    modules: &[String],
    tests: &[String],
    test_args: &[String],
    collect: bool,
) -> String {
    let (collect_env, collect_files) = if collect {
        (
            format!(
                "export NETNS_TRACE_COLLECT_DIR={GUEST_COLLECT_DIR}\nmkdir -p {GUEST_COLLECT_DIR}\n"
            ),
            collect_script(),
        )
    } else {
        (String::new(), String::new())
    };
    let filter: Vec<String> = test_args.iter().map(|a| shell_quote(a)).collect();
    let filter = filter.join(" ");
    let modules: Vec<String> = modules.iter().map(|m| shell_quote(m)).collect();
    let tests: Vec<String> = tests.iter().map(|t| shell_quote(t)).collect();
    format!(
        r#"#!/bin/sh
# Generated by `cargo xtask vm-test`; see xtask/src/initramfs.rs.
export PATH={GUEST_BIN_DIR}:/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1
export NETNS_TRACE_BIN={GUEST_BIN_DIR}/{main_bin}
export {TESTBED_ENV}={GUEST_BIN_DIR}/{TESTBED_BIN}
export NETNS_TRACE_EXPECT_MODE=full
export NETNS_TRACE_KERNEL={kernel}
export NETNS_TRACE_IN_VM=1
{collect_env}
setup_failed=0
setup() {{
    "$@" || {{ echo "{MARK_SETUP_FAILED} $*"; setup_failed=1; }}
}}

setup mount -t proc proc /proc
setup mount -t sysfs sysfs /sys
setup mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /sys/kernel/tracing /sys/kernel/debug /sys/fs/bpf /sys/fs/cgroup
setup mount -t tracefs tracefs /sys/kernel/tracing
setup mount -t debugfs debugfs /sys/kernel/debug
setup mount -t bpf bpf /sys/fs/bpf
setup mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /run/netns /var/run
echo "{MARK_BOOTED} release=$(cat /proc/sys/kernel/osrelease) cpus=$(grep -c ^processor /proc/cpuinfo)"
setup /sbin/ip link set lo up
for module in {modules}; do
    setup insmod {GUEST_MODULE_DIR}/$module
done

overall=PASS
[ "$setup_failed" = 0 ] || overall=FAIL
for test in {tests}; do
    echo "{MARK_TEST_START} $test"
    (cd /tmp && {GUEST_TEST_DIR}/$test --test-threads=1 {filter})
    status=$?
    if [ "$status" = 0 ]; then verdict=PASS; else verdict=FAIL; overall=FAIL; fi
    echo "{MARK_TEST_VERDICT} name=$test verdict=$verdict exit=$status"
done
{collect_files}echo "{MARK_RESULT} $overall"
sync
poweroff -f
"#,
        modules = modules.join(" "),
        tests = tests.join(" "),
    )
}

/// Prints every regular file in the collect directory as
/// `BEGIN name=N size=BYTES sha256=HEX`, base64 lines (76 columns), `END name=N`.
/// The guest has no network card and no shared filesystem; the console is the one channel
/// the harness already reads, under KVM and TCG alike, with no extra driver or module.
/// Kernel messages are held back meanwhile (console loglevel 1), so none lands inside a
/// base64 line; the size and SHA-256 catch whatever damage still gets through.
fn collect_script() -> String {
    format!(
        r#"loglevel=$(cut -f1 /proc/sys/kernel/printk)
dmesg -n 1
for file in {GUEST_COLLECT_DIR}/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    echo "{MARK_FILE_BEGIN} name=$name size=$(wc -c < "$file" | tr -d " ") sha256=$(sha256sum "$file" | cut -d' ' -f1)"
    base64 "$file"
    echo "{MARK_FILE_END} name=$name"
done
dmesg -n "$loglevel"
"#
    )
}

/// `find . | cpio -o -H newc` (owned by root) piped through gzip.
fn write_cpio_gz(root: &Path, archive: &Path) -> Result<()> {
    let mut cmd = Command::new("bash");
    cmd.current_dir(root).args([
        "-o",
        "pipefail",
        "-c",
        r#"find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet | gzip -1 > "$1""#,
        "write-cpio",
    ]);
    cmd.arg(archive);
    output(&mut cmd).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_quotes_filter_args_and_lists_tests() {
        let script = init_script(
            "6.1",
            "netns-trace",
            &["llc.ko".into(), "veth.ko".into()],
            &["vm_harness".into()],
            &["it's".into(), "--exact".into()],
            false,
        );
        assert!(script.contains(r"--test-threads=1 'it'\''s' '--exact'"));
        assert!(script.contains("for module in 'llc.ko' 'veth.ko'; do"));
        assert!(script.contains("export NETNS_TRACE_KERNEL=6.1"));
        assert!(script.contains("NETNS_TRACE_BIN=/usr/local/bin/netns-trace"));
        assert!(script.contains("NETNS_TRACE_TESTBED_BIN=/usr/local/bin/netns-trace-testbed"));
        assert!(script.trim_end().ends_with("poweroff -f"));
        assert!(!script.contains("NETNS_TRACE_COLLECT_DIR"));
    }

    #[test]
    fn collecting_init_ships_files_before_the_result() {
        let script = init_script("6.12", "netns-trace", &[], &["t".into()], &[], true);
        assert!(script.contains("export NETNS_TRACE_COLLECT_DIR=/collect"));
        let begin = script.find(MARK_FILE_BEGIN).unwrap();
        let result = script.find(&format!("echo \"{MARK_RESULT}")).unwrap();
        let tests = script.find(MARK_TEST_VERDICT).unwrap();
        assert!(
            tests < begin && begin < result,
            "files go out after the tests, before the verdict"
        );
    }
}
