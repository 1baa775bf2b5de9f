//! Arbitrary text into the mountinfo parser (snapshot/mountinfo.rs): it must never panic,
//! `parse` must keep exactly the lines `parse_line` accepts (skipping the rest), and the
//! nsfs helpers must only report what the entries say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netns_trace::snapshot::mountinfo::{
    nsfs_net_pins, nsfs_unnamed, parse, parse_line, parse_net_ns_name, unescape,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries = parse(&text);
    let accepted: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| parse_line(l).ok())
        .collect();
    assert_eq!(entries, accepted, "parse keeps exactly the lines parse_line accepts");
    for e in &entries {
        // Unescaping never grows a field: an escape is 4 bytes for one (at most 3-byte
        // U+FFFD) character.
        assert!(e.root.chars().count() <= text.len());
        let _ = e.shared_group();
    }
    for (inum, mount_point) in nsfs_net_pins(&entries) {
        assert!(
            entries.iter().any(|e| &e.mount_point == &mount_point
                && parse_net_ns_name(e.root.strip_prefix('/').unwrap_or(&e.root)) == Some(inum)),
            "pin {inum} at {mount_point:?} comes from an entry"
        );
    }
    for e in nsfs_unnamed(&entries) {
        assert!(e.fstype == "nsfs" && e.root == "/");
    }
    for field in text.split([' ', '\n']) {
        assert!(unescape(field).chars().count() <= field.chars().count());
    }
});
