//! Arbitrary bytes into the CNI result-cache parser (attribution/cni.rs): a bad file is an
//! error, never a panic, and a parsed entry has only valid addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netns_trace::attribution::{
    Owner,
    cni::{find_by_netns_path, parse_cni_cache},
};

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = parse_cni_cache(data, "fuzz") else {
        return;
    };
    for ip in &entry.ips {
        let max = if ip.address.is_ipv4() { 32 } else { 128 };
        assert!(ip.prefix_len <= max, "prefix /{} on {}", ip.prefix_len, ip.address);
    }
    let entries = vec![entry];
    if let Some(path) = entries[0].netns_path.clone() {
        assert!(find_by_netns_path(&entries, &path).is_some(), "an entry is found by its own netns path");
    }
    let mut owner = Owner::default();
    let _ = owner.attach_cni(&entries);
    let _ = owner.short();
});
