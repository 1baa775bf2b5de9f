//! Names that pods and traces control, made safe to print on a terminal or in a log line.
//!
//! A pod chooses its process names (prctl), mount paths, interface names and cgroup paths, and
//! a trace file chooses everything. Printed raw, a newline forges a `FINDING` line and an
//! escape sequence rewrites the operator's screen. Text output passes every such value
//! through [`terminal_safe`]; JSON output needs nothing (serde escapes control characters).

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with control characters and invisible direction or zero-width marks replaced by a
/// visible escape (`\n`, `\t`, `\x1b`, `\u{202e}`); everything else, backslashes included (cgroup
/// paths carry systemd's `\x2d`), unchanged. Borrowed when nothing needs escaping.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // zero-width and direction marks, line and paragraph separators, bidi embeddings,
            // overrides and isolates, BOM
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_borrowed_unchanged() {
        for s in [
            "/run/netns/cni-1234",
            "kubepods-burstable-pod12\\x2d34.slice",
            "pause",
            "réseau",
        ] {
            assert!(matches!(terminal_safe(s), Cow::Borrowed(b) if b == s));
        }
    }

    #[test]
    fn control_and_invisible_characters_become_visible_escapes() {
        assert_eq!(
            terminal_safe("/run/netns/x\nFINDING forged"),
            "/run/netns/x\\nFINDING forged"
        );
        assert_eq!(terminal_safe("a\x1b[2Jb\r\t"), "a\\x1b[2Jb\\r\\t");
        assert_eq!(terminal_safe("\u{7f}\u{9b}"), "\\x7f\\x9b");
        assert_eq!(terminal_safe("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        // The result never contains a character that would need escaping.
        assert_eq!(terminal_safe("a\u{2028}b"), "a\\u{2028}b");
        assert!(
            !terminal_safe("\u{0}\u{1}\u{85}\u{2028}")
                .chars()
                .any(needs_escape)
        );
    }
}
