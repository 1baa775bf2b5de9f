//! Fetches Debian cloud kernels with a private apt configuration and extracts the pieces a
//! guest needs: vmlinuz, config, and the network modules (with their dependencies) as plain
//! `.ko` files in load order.
//!
//! The system's apt configuration is never changed: every apt call gets its own source list,
//! state, list and cache directories under the cache dir.
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Result, XtaskError};
use crate::util::{create_dir_all, output, read_to_string, remove_dir_if_exists, run, write};

/// A guest kernel: which Debian suite serves it and the package name pattern (one `*`, which
/// matches a run of characters without `-`). The newest matching package is used.
///
/// To add a kernel, add a row here (and to the table in docs/vm-tests.md).
#[derive(Debug, Clone, Copy)]
pub struct KernelSpec {
    /// What `--kernel` takes, and the prefix `uname -r` must have in the guest.
    pub name: &'static str,
    pub suite: &'static str,
    pub package_pattern: &'static str,
}

pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "5.10",
        suite: "bullseye",
        package_pattern: "linux-image-5.10.0-*-cloud-amd64-unsigned",
    },
    KernelSpec {
        name: "6.1",
        suite: "bookworm",
        package_pattern: "linux-image-6.1.0-*-cloud-amd64-unsigned",
    },
    KernelSpec {
        name: "6.12",
        suite: "trixie",
        package_pattern: "linux-image-6.12.*-cloud-amd64-unsigned",
    },
];

/// Modules the tests need in every guest (their dependencies are added from modules.dep).
pub const GUEST_MODULES: &[&str] = &["veth", "bridge"];

/// The system keyring that holds the archive keys of every suite above.
const SYSTEM_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Overrides the mirror read from the system's apt configuration.
const MIRROR_ENV: &str = "NETNS_TRACE_DEBIAN_MIRROR";

pub fn spec(name: &str) -> Option<&'static KernelSpec> {
    KERNELS.iter().find(|k| k.name == name)
}

/// What a guest boots, all under the cache dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestKernel {
    pub name: String,
    pub package: String,
    /// `uname -r` of the kernel, e.g. 6.1.0-37-cloud-amd64.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub config: PathBuf,
    /// Plain .ko files, dependencies first.
    pub modules: Vec<PathBuf>,
}

/// Where downloaded and extracted kernels live: $NETNS_TRACE_VM_CACHE or target/vm-cache.
pub fn cache_dir(workspace_root: &Path) -> PathBuf {
    match std::env::var_os("NETNS_TRACE_VM_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root.join("target/vm-cache"),
    }
}

/// Returns the kernel ready to boot, downloading and extracting it only when the cache lacks
/// it (or `refresh` asks to look for a newer package).
pub fn prepare(spec: &KernelSpec, cache: &Path, refresh: bool) -> Result<GuestKernel> {
    let kernel_dir = cache.join("kernels").join(spec.name);
    let manifest_path = kernel_dir.join("kernel.json");
    if !refresh && let Some(kernel) = load_manifest(&manifest_path) {
        println!(
            "[{}] kernel {} ({}) from cache",
            spec.name, kernel.release, kernel.package
        );
        return Ok(kernel);
    }
    let apt = PrivateApt::new(cache.join("apt").join(spec.suite), spec.suite)?;
    apt.update()?;
    let package = apt.newest_matching(spec.package_pattern)?;
    let deb = apt.download(&package, &cache.join("debs"))?;
    let kernel = extract(spec, &package, &deb, &kernel_dir)?;
    let json = serde_json::to_string_pretty(&kernel).map_err(|e| XtaskError::Parse {
        what: "kernel manifest".into(),
        detail: e.to_string(),
    })?;
    write(&manifest_path, json)?;
    Ok(kernel)
}

fn load_manifest(path: &Path) -> Option<GuestKernel> {
    let text = std::fs::read_to_string(path).ok()?;
    let kernel: GuestKernel = serde_json::from_str(&text).ok()?;
    let complete = kernel.vmlinuz.is_file()
        && kernel.config.is_file()
        && kernel.modules.iter().all(|m| m.is_file());
    complete.then_some(kernel)
}

/// The Debian archive URI the system already uses (first `…/debian` entry that is not the
/// security archive), so guests' kernels come from the same mirror host. No host name is
/// built in: a machine without a Debian archive configured must name one.
fn system_mirror() -> Result<String> {
    if let Some(uri) = std::env::var_os(MIRROR_ENV).filter(|v| !v.is_empty()) {
        return Ok(uri.to_string_lossy().trim_end_matches('/').to_string());
    }
    let mut texts = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(text);
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let is_source = path
                .extension()
                .is_some_and(|ext| ext == "list" || ext == "sources");
            if is_source && let Ok(text) = std::fs::read_to_string(&path) {
                texts.push(text);
            }
        }
    }
    for text in &texts {
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            // One-line style (`deb [opts] URI suite …`) and deb822 style (`URIs: URI`).
            let candidates: Vec<&str> = match line.strip_prefix("URIs:") {
                Some(uris) => uris.split_whitespace().collect(),
                None if line.starts_with("deb ") => line
                    .split_whitespace()
                    .filter(|w| w.contains("://"))
                    .collect(),
                None => Vec::new(),
            };
            for uri in candidates {
                let uri = uri.trim_end_matches('/');
                if uri.ends_with("/debian") {
                    return Ok(uri.to_string());
                }
            }
        }
    }
    Err(XtaskError::NotFound(format!(
        "no Debian archive (a URI ending in /debian) in /etc/apt/sources.list or \
         /etc/apt/sources.list.d: configure apt, or set {MIRROR_ENV}=URI"
    )))
}

/// apt-get/apt-cache with everything (sources, lists, state, cache) in `root`.
struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    fn new(root: PathBuf, suite: &str) -> Result<Self> {
        for sub in [
            "sources.list.d",
            "preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            create_dir_all(&root.join(sub))?;
        }
        let status = root.join("state/status");
        if !status.exists() {
            write(&status, "")?;
        }
        // Trust: the system keyring (debian-archive-keyring) carries the bullseye, bookworm
        // and trixie keys, so indexes are verified with it. Only when that suite's keys are
        // absent from the system do we fall back to [trusted=yes] (and say so).
        let per_suite_key =
            Path::new("/usr/share/keyrings").join(format!("debian-archive-{suite}-stable.gpg"));
        let options = if Path::new(SYSTEM_KEYRING).is_file() && per_suite_key.is_file() {
            format!("[arch=amd64 signed-by={SYSTEM_KEYRING}]")
        } else {
            eprintln!(
                "warning: no archive key for {suite} on this system; using [trusted=yes] for it"
            );
            "[arch=amd64 trusted=yes]".to_string()
        };
        let mirror = system_mirror()?;
        write(
            &root.join("sources.list"),
            format!("deb {options} {mirror} {suite} main\n"),
        )?;
        Ok(PrivateApt { root })
    }

    fn command(&self, program: &str) -> Command {
        let r = |sub: &str| self.root.join(sub).display().to_string();
        let mut cmd = Command::new(program);
        for (key, value) in [
            ("Dir::Etc::SourceList", r("sources.list")),
            ("Dir::Etc::SourceParts", r("sources.list.d")),
            ("Dir::Etc::Preferences", r("preferences")),
            ("Dir::Etc::PreferencesParts", r("preferences.d")),
            ("Dir::State", r("state")),
            ("Dir::State::Lists", r("state/lists")),
            ("Dir::State::status", r("state/status")),
            ("Dir::Cache", r("cache")),
            ("Dir::Cache::archives", r("cache/archives")),
            ("APT::Architecture", "amd64".into()),
            ("APT::Architectures", "amd64".into()),
            ("Acquire::Languages", "none".into()),
            // Our dirs are root's; the _apt sandbox user could not write them.
            ("APT::Sandbox::User", "root".into()),
        ] {
            cmd.arg("-o").arg(format!("{key}={value}"));
        }
        cmd
    }

    fn update(&self) -> Result<()> {
        let mut cmd = self.command("apt-get");
        cmd.args(["update", "-q"]);
        output(&mut cmd).map(|_| ())
    }

    fn newest_matching(&self, pattern: &str) -> Result<String> {
        let (prefix, suffix) = pattern.split_once('*').ok_or_else(|| XtaskError::Parse {
            what: "package pattern".into(),
            detail: format!("{pattern} has no `*`"),
        })?;
        let mut cmd = self.command("apt-cache");
        cmd.args(["pkgnames", prefix]);
        let names = output(&mut cmd)?;
        names
            .lines()
            .map(str::trim)
            .filter(|name| {
                name.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix(suffix))
                    .is_some_and(|middle| !middle.is_empty() && !middle.contains('-'))
            })
            .max_by(|a, b| natural_cmp(a, b))
            .map(str::to_string)
            .ok_or_else(|| XtaskError::NotFound(format!("no package matches {pattern}")))
    }

    /// Downloads into `debs` unless a .deb of that package is already there.
    fn download(&self, package: &str, debs: &Path) -> Result<PathBuf> {
        create_dir_all(debs)?;
        if let Some(deb) = find_deb(debs, package)? {
            println!("  {package}: .deb already downloaded");
            return Ok(deb);
        }
        println!("  downloading {package}");
        let mut cmd = self.command("apt-get");
        cmd.current_dir(debs).args(["download", "-q", package]);
        output(&mut cmd)?;
        find_deb(debs, package)?.ok_or_else(|| {
            XtaskError::NotFound(format!("apt-get download left no {package}_*.deb"))
        })
    }
}

fn find_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(XtaskError::io(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    found.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(found.pop())
}

/// Compares with digit runs as numbers, so 5.10.0-9 < 5.10.0-35.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let na = std::str::from_utf8(&a[..da])
                    .unwrap_or("0")
                    .trim_start_matches('0');
                let nb = std::str::from_utf8(&b[..db])
                    .unwrap_or("0")
                    .trim_start_matches('0');
                let order = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn extract(spec: &KernelSpec, package: &str, deb: &Path, kernel_dir: &Path) -> Result<GuestKernel> {
    println!("[{}] extracting {}", spec.name, deb.display());
    let unpacked = kernel_dir.join("unpacked");
    remove_dir_if_exists(&unpacked)?;
    create_dir_all(&unpacked)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked))?;

    // Debian 12+ is usr-merged inside the package too (usr/lib/modules); older ones use lib/.
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|sub| unpacked.join(sub))
        .find(|p| p.is_dir())
        .ok_or_else(|| XtaskError::NotFound(format!("{package} has no lib/modules")))?;
    let release = single_entry(&modules_root)?;
    let boot = unpacked.join("boot");
    let vmlinuz_src = boot.join(format!("vmlinuz-{release}"));
    let config_src = boot.join(format!("config-{release}"));

    let vmlinuz = kernel_dir.join("vmlinuz");
    let config = kernel_dir.join("config");
    std::fs::copy(&vmlinuz_src, &vmlinuz).map_err(XtaskError::io(&vmlinuz_src))?;
    std::fs::copy(&config_src, &config).map_err(XtaskError::io(&config_src))?;

    let module_dir = modules_root.join(&release);
    let dep_path = module_dir.join("modules.dep");
    if !dep_path.is_file() {
        // Packages ship no modules.dep (the postinst runs depmod); make it the same way.
        let base = modules_root
            .parent()
            .and_then(Path::parent)
            .unwrap_or(&unpacked);
        run(Command::new("depmod").arg("-b").arg(base).arg(&release))?;
    }
    let dep_text = read_to_string(&dep_path)?;
    let deps = parse_modules_dep(&dep_text);
    let order = load_order(&deps, GUEST_MODULES)?;
    let out_dir = kernel_dir.join("modules");
    remove_dir_if_exists(&out_dir)?;
    create_dir_all(&out_dir)?;
    let mut modules = Vec::new();
    for name in &order {
        let rel = &deps[name].path;
        let plain = out_dir.join(format!("{name}.ko"));
        decompress_module(&module_dir.join(rel), &plain)?;
        modules.push(plain);
    }
    println!(
        "[{}] {release}: modules in load order: {}",
        spec.name,
        order.join(" ")
    );
    remove_dir_if_exists(&unpacked)?;
    Ok(GuestKernel {
        name: spec.name.to_string(),
        package: package.to_string(),
        release,
        vmlinuz,
        config,
        modules,
    })
}

fn single_entry(dir: &Path) -> Result<String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(XtaskError::io(dir))?
        .flatten()
        .filter(|e| e.path().join("modules.order").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(XtaskError::NotFound(format!(
            "expected one kernel release in {}, found {names:?}",
            dir.display()
        ))),
    }
}

#[derive(Debug)]
pub struct ModuleEntry {
    /// Path relative to lib/modules/<release>.
    pub path: String,
    pub deps: Vec<String>,
}

/// `kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz …` → name → entry.
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, ModuleEntry> {
    text.lines()
        .filter_map(|line| {
            let (path, deps) = line.split_once(':')?;
            let path = path.trim();
            Some((
                module_name(path),
                ModuleEntry {
                    path: path.to_string(),
                    deps: deps.split_whitespace().map(module_name).collect(),
                },
            ))
        })
        .collect()
}

/// `kernel/net/802/stp.ko.zst` → `stp`; `-` and `_` are the same to the kernel.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The wanted modules and everything they depend on, dependencies first.
pub fn load_order(deps: &BTreeMap<String, ModuleEntry>, wanted: &[&str]) -> Result<Vec<String>> {
    fn visit(
        name: &str,
        deps: &BTreeMap<String, ModuleEntry>,
        done: &mut HashSet<String>,
        in_progress: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        let entry = deps.get(name).ok_or_else(|| {
            XtaskError::NotFound(format!("module {name} is not in modules.dep (built in?)"))
        })?;
        if !in_progress.insert(name.to_string()) {
            return Err(XtaskError::Parse {
                what: "modules.dep".into(),
                detail: format!("dependency cycle at {name}"),
            });
        }
        for dep in &entry.deps {
            visit(dep, deps, done, in_progress, order)?;
        }
        in_progress.remove(name);
        done.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }
    let (mut done, mut in_progress, mut order) = (HashSet::new(), HashSet::new(), Vec::new());
    for name in wanted {
        visit(
            &name.replace('-', "_"),
            deps,
            &mut done,
            &mut in_progress,
            &mut order,
        )?;
    }
    Ok(order)
}

/// Writes a plain .ko: busybox insmod may not read compressed modules.
fn decompress_module(src: &Path, dest: &Path) -> Result<()> {
    let name = src.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        Some("xz")
    } else if name.ends_with(".ko.zst") {
        Some("zstd")
    } else if name.ends_with(".ko.gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => std::fs::copy(src, dest)
            .map(|_| ())
            .map_err(XtaskError::io(src)),
        Some(tool) => {
            let out = Command::new(tool)
                .arg("-dc")
                .arg(src)
                .output()
                .map_err(|source| XtaskError::Spawn {
                    program: tool.to_string(),
                    source,
                })?;
            if !out.status.success() {
                return Err(XtaskError::CommandFailed {
                    command: format!("{tool} -dc {name}"),
                    status: out.status.to_string(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            write(dest, out.stdout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_numbers() {
        assert_eq!(
            natural_cmp("linux-image-5.10.0-9-cloud", "linux-image-5.10.0-35-cloud"),
            Ordering::Less
        );
        assert_eq!(
            natural_cmp("linux-image-6.12.48+deb13", "linux-image-6.12.9+deb13"),
            Ordering::Greater
        );
        assert_eq!(natural_cmp("a1", "a1"), Ordering::Equal);
    }

    #[test]
    fn dependencies_load_first() {
        let deps = parse_modules_dep(
            "kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n\
             kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz\n\
             kernel/net/llc/llc.ko.xz:\n\
             kernel/drivers/net/veth.ko.xz:\n",
        );
        let order = load_order(&deps, &["veth", "bridge"]).unwrap();
        assert_eq!(order, vec!["veth", "llc", "stp", "bridge"]);
        assert!(load_order(&deps, &["nope"]).is_err());
    }
}
