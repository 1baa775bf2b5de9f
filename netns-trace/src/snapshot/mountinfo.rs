//! Parser for `/proc/PID/mountinfo` (proc(5)), and the nsfs net bind mounts in it.
//!
//! Line format:
//! `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
//! = mount id, parent id, st_dev, root, mount point, mount options, zero or more optional
//! fields, the `-` separator, fs type, source, super options. Paths escape space, tab,
//! newline and backslash as three-digit octal (`\040`, `\011`, `\012`, `\134`).
//!
//! What an nsfs net bind mount looks like (seen on this 6.18.44 host, `ip netns add snapprobe`):
//! `44 43 0:4 net:[4026532177] /run/netns/snapprobe rw shared:2 - nsfs nsfs rw`
//! i.e. fstype `nsfs`, source `nsfs`, and the root names the namespace as `net:[INUM]`.
//! Kernels that show the root as `/` (source `nsfs`) give no inum in the text; those entries
//! are returned by [`nsfs_unnamed`] and the caller stats the mount point instead.

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `st_dev` of files on this mount, as (major, minor).
    pub major_minor: (u32, u32),
    /// The directory of the filesystem that forms this mount's root (for nsfs: `net:[INUM]`).
    pub root: String,
    /// Relative to the reading process's root directory.
    pub mount_point: String,
    pub mount_options: String,
    /// `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional_fields: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    /// The peer group this mount shares propagation with, if any (`shared:N`).
    pub fn shared_group(&self) -> Option<u32> {
        self.optional_fields
            .iter()
            .find_map(|f| f.strip_prefix("shared:")?.parse().ok())
    }
}

/// Why one line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed mountinfo line ({reason}): {line:?}")]
pub struct MountinfoLineError {
    pub line: String,
    pub reason: &'static str,
}

/// Decodes mountinfo's octal escapes (`\040` → space). Anything that is not a valid
/// three-digit octal escape is kept literally.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = (digits[0] - b'0') as u32 * 64
                    + (digits[1] - b'0') as u32 * 8
                    + (digits[2] - b'0') as u32;
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one mountinfo line.
pub fn parse_line(line: &str) -> Result<MountEntry, MountinfoLineError> {
    let err = |reason| MountinfoLineError {
        line: line.to_string(),
        reason,
    };
    let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
    let sep = fields
        .iter()
        .position(|f| *f == "-")
        .ok_or_else(|| err("no ' - ' separator"))?;
    if sep < 6 {
        return Err(err("fewer than 6 fields before the separator"));
    }
    if fields.len() < sep + 3 {
        return Err(err("fewer than 2 fields after the separator"));
    }
    let mount_id = fields[0]
        .parse()
        .map_err(|_| err("mount id is not a number"))?;
    let parent_id = fields[1]
        .parse()
        .map_err(|_| err("parent id is not a number"))?;
    let (major, minor) = fields[2]
        .split_once(':')
        .ok_or_else(|| err("st_dev is not major:minor"))?;
    let major_minor = (
        major.parse().map_err(|_| err("major is not a number"))?,
        minor.parse().map_err(|_| err("minor is not a number"))?,
    );
    Ok(MountEntry {
        mount_id,
        parent_id,
        major_minor,
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        mount_options: fields[5].to_string(),
        optional_fields: fields[6..sep].iter().map(|f| f.to_string()).collect(),
        fstype: unescape(fields[sep + 1]),
        source: unescape(fields[sep + 2]),
        super_options: fields
            .get(sep + 3)
            .map(|s| s.to_string())
            .unwrap_or_default(),
    })
}

/// Parses a whole mountinfo file. Malformed lines are skipped with a warning.
pub fn parse(content: &str) -> Vec<MountEntry> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match parse_line(l) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        })
        .collect()
}

/// `net:[4026532177]` → 4026532177.
pub fn parse_net_ns_name(s: &str) -> Option<u32> {
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// nsfs mounts of network namespaces that name their namespace: (net inum, mount point).
/// Before nsfs existed (< 3.19) the same mounts had fstype `proc`; they are accepted too.
pub fn nsfs_net_pins(entries: &[MountEntry]) -> Vec<(u32, String)> {
    entries
        .iter()
        .filter(|e| e.fstype == "nsfs" || e.fstype == "proc")
        .filter_map(|e| {
            // Some kernels print the root with a leading slash.
            let root = e.root.strip_prefix('/').unwrap_or(&e.root);
            parse_net_ns_name(root).map(|inum| (inum, e.mount_point.clone()))
        })
        .collect()
}

/// nsfs mounts whose root is `/` (the namespace is not named in the text). Their type and
/// inum must be found by looking at the mount point.
pub fn nsfs_unnamed(entries: &[MountEntry]) -> Vec<&MountEntry> {
    entries
        .iter()
        .filter(|e| e.fstype == "nsfs" && e.root == "/")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/data/snapshot/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn parses_the_man_page_example() {
        let e = parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(e.mount_id, 36);
        assert_eq!(e.parent_id, 35);
        assert_eq!(e.major_minor, (98, 0));
        assert_eq!(e.root, "/mnt1");
        assert_eq!(e.mount_point, "/mnt2");
        assert_eq!(e.mount_options, "rw,noatime");
        assert_eq!(e.optional_fields, vec!["master:1"]);
        assert_eq!(e.fstype, "ext3");
        assert_eq!(e.source, "/dev/root");
        assert_eq!(e.super_options, "rw,errors=continue");
    }

    #[test]
    fn handles_zero_and_many_optional_fields() {
        let none = parse_line("22 1 0:21 / /proc rw,nosuid - proc proc rw").unwrap();
        assert!(none.optional_fields.is_empty());
        assert_eq!(none.fstype, "proc");
        let many = parse_line("50 44 0:4 net:[4026532300] /run/netns/x rw shared:7 master:3 propagate_from:2 - nsfs nsfs rw").unwrap();
        assert_eq!(
            many.optional_fields,
            vec!["shared:7", "master:3", "propagate_from:2"]
        );
        assert_eq!(many.shared_group(), Some(7));
    }

    #[test]
    fn decodes_octal_escapes() {
        let e = parse_line(
            r"60 44 0:4 net:[4026532301] /run/netns/with\040space\011tab\134bs rw - nsfs nsfs rw",
        )
        .unwrap();
        assert_eq!(e.mount_point, "/run/netns/with space\ttab\\bs");
        assert_eq!(unescape(r"a\012b"), "a\nb");
        // Not a valid escape: kept as is.
        assert_eq!(unescape(r"a\9zz\04"), r"a\9zz\04");
        assert_eq!(unescape("\\"), "\\");
    }

    #[test]
    fn rejects_malformed_lines_without_panicking() {
        for bad in [
            "",
            "garbage",
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 ext3 /dev/root rw",
            "x 35 98:0 / / rw - ext4 /dev/sda rw",
            "36 35 98 / / rw - ext4 /dev/sda rw",
            "36 35 98:0 / - ext4 /dev/sda rw",
            "36 35 98:0 / / rw -",
            "36 35 98:0 / / rw - nsfs",
            "36 35 a:b / / rw - ext4 /dev/sda rw",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn finds_net_pins_in_a_real_host_mountinfo() {
        let entries = parse(&fixture("mountinfo-host-6.18"));
        assert!(entries.len() > 20);
        let pins = nsfs_net_pins(&entries);
        assert_eq!(
            pins,
            vec![
                (4026532177, "/run/netns/snapprobe".to_string()),
                (
                    4026532412,
                    "/run/netns/cni-7c1e2d4b-9a0f-4b3e-8d61-2f5a6b7c8d9e".to_string()
                ),
                (
                    4026532498,
                    "/var/run/netns/b4e1f0a2-6c3d-4e5f-a718-29304a5b6c7d".to_string()
                ),
                (4026532498, "/tmp/pin dir/copy".to_string()),
            ]
        );
        // mnt:[…] and uts:[…] nsfs mounts are not network namespaces.
        assert!(
            entries
                .iter()
                .any(|e| e.fstype == "nsfs" && e.root.starts_with("mnt:["))
        );
    }

    #[test]
    fn skips_malformed_lines_in_a_file() {
        let entries = parse(&fixture("mountinfo-malformed"));
        assert_eq!(entries.len(), 3);
        assert_eq!(
            nsfs_net_pins(&entries),
            vec![(4026532600, "/run/netns/ok".to_string())]
        );
    }

    #[test]
    fn old_style_roots() {
        let entries = parse(concat!(
            "70 44 0:3 /net:[4026532700] /run/netns/slash rw - nsfs nsfs rw\n",
            "71 44 0:3 net:[4026532701] /run/netns/proc rw - proc proc rw\n",
            "72 44 0:3 / /run/netns/unnamed rw - nsfs nsfs rw\n",
        ));
        assert_eq!(
            nsfs_net_pins(&entries),
            vec![
                (4026532700, "/run/netns/slash".to_string()),
                (4026532701, "/run/netns/proc".to_string())
            ]
        );
        assert_eq!(nsfs_unnamed(&entries).len(), 1);
        assert_eq!(nsfs_unnamed(&entries)[0].mount_point, "/run/netns/unnamed");
        assert_eq!(parse_net_ns_name("net:[x]"), None);
        assert_eq!(parse_net_ns_name("mnt:[4026531832]"), None);
    }
}
