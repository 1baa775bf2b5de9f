//! Arbitrary text into the /proc/PID/cgroup parser and the cgroup-path reader
//! (attribution/cgroup.rs): never a panic, and what comes out is taken from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netns_trace::attribution::cgroup::{owner_from_cgroup, owner_from_proc_cgroup};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(owner) = owner_from_proc_cgroup(&text) {
        let path = owner.cgroup.as_deref().expect("an owner from a cgroup file names its path");
        assert!(text.contains(path), "path {path:?} comes from the file");
    }
    for line in text.lines() {
        let owner = owner_from_cgroup(line);
        assert_eq!(owner.cgroup.as_deref(), Some(line));
        if let Some(id) = &owner.container_id {
            assert!(line.contains(id.as_str()), "container id {id:?} comes from {line:?}");
        }
        let _ = owner.short();
    }
});
