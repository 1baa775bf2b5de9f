//! `incident`: the stale-ARP production incident (a leaked pod answering ARP for a reused IP).
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::arp::arp_exchange;
use crate::cli::IncidentArgs;
use crate::error::{Result, TestbedError, os_err};
use crate::links::{
    PodCidr, client_ip_for, fmt_mac, ip_in, mac_for, parse_pod_cidr, wait_links_gone,
    wait_links_running,
};
use crate::namespaces::{PinMethod, netns_cookie};
use crate::process::{AfterReport, fork_child};
use crate::state::Run;
use crate::sys::{bind_mount, kill_child, ns_inum, umount_detach, unshare, uuid_v4};

struct Pod {
    pause_pid: i32,
    cookie: Option<u64>,
    pin: PathBuf,
    inum: u64,
    host_veth: String,
    mac: [u8; 6],
}

/// A pod as a CNI runtime makes one: a pause process in a new netns, bind-mounted at
/// DIR/cni-<uuid>, with eth0 (fixed MAC, pod IP) veth-paired to a port of the node's bridge.
fn start_pod(
    run: &mut Run,
    name: &str,
    node: &Path,
    bridge: &str,
    mac: [u8; 6],
    cidr: &PodCidr,
    cgroup: Option<&Path>,
) -> Result<Pod> {
    let role = format!("pause of pod {name}");
    let pause = fork_child("pause", AfterReport::SleepForever, || {
        if let Some(cg) = cgroup {
            let procs = cg.join("cgroup.procs");
            fs::write(&procs, "0").map_err(os_err(format!("write {}", procs.display())))?;
        }
        unshare(libc::CLONE_NEWNET, "CLONE_NEWNET")?;
        Ok(ns_inum(Path::new("/proc/self/ns/net"))?.to_string())
    })?;
    run.track_process(pause.pid, &role)?;
    let inum: u64 = pause
        .report
        .parse()
        .map_err(|_| TestbedError::Unexpected(format!("{role} reported {:?}", pause.report)))?;
    let pin = run.new_pin_target(&format!("cni-{}", uuid_v4()?))?;
    bind_mount(Path::new(&format!("/proc/{}/ns/net", pause.pid)), &pin)?;
    if ns_inum(&pin)? != inum {
        return Err(TestbedError::Unexpected(format!(
            "{} does not pin net:[{inum}]",
            pin.display()
        )));
    }
    let host_veth = format!("veth-{name}");
    let mac_text = fmt_mac(&mac);
    let node_text = node.to_string_lossy();
    let ip_text = format!("{}/{}", cidr.ip, cidr.prefix);
    ip_in(&pin, &["link", "set", "lo", "up"])?;
    ip_in(
        &pin,
        &[
            "link", "add", "eth0", "address", &mac_text, "type", "veth", "peer", "name",
            &host_veth, "netns", &node_text,
        ],
    )?;
    ip_in(node, &["link", "set", &host_veth, "master", bridge, "up"])?;
    ip_in(&pin, &["addr", "add", &ip_text, "dev", "eth0"])?;
    ip_in(&pin, &["link", "set", "eth0", "up"])?;
    // Ready as a CNI ADD leaves it: carrier up on both ends. Waiting here, while the pause
    // process still lives, keeps every visit to the pod inside its life; linkwatch can take
    // over a second under TCG, and a visitor that stays that long counts as a member.
    wait_links_running(&pin, &["eth0"])?;
    wait_links_running(node, &[&host_veth])?;
    Ok(Pod {
        pause_pid: pause.pid,
        cookie: netns_cookie(&pin),
        pin,
        inum,
        host_veth,
        mac,
    })
}

pub fn incident(run: &mut Run, args: &IncidentArgs) -> Result<Value> {
    let cidr = parse_pod_cidr(&args.ip)?;
    let client_ip = client_ip_for(&cidr);
    let leak = !args.clean_teardown;
    let bridge = format!("ntbr{}", std::process::id() % 100_000);

    // (1) the node: a pinned netns with the bridge.
    let (node, node_pin) = run.pin_fresh_netns("node", PinMethod::BindMount)?;
    ip_in(&node, &["link", "set", "lo", "up"])?;
    ip_in(&node, &["link", "add", &bridge, "type", "bridge"])?;
    ip_in(&node, &["link", "set", &bridge, "up"])?;

    // (2) pod A.
    let pod_a = start_pod(
        run,
        "a",
        &node,
        &bridge,
        mac_for(0x00, cidr.ip),
        &cidr,
        args.cgroup.as_deref(),
    )?;

    // (3) pod A goes away: SIGKILL without cleanup (leak), or unmount first (clean).
    let mut pod_a_pin_mounted = true;
    if !leak {
        // What `ip netns del` and a CNI DEL do: detach, then unlink.
        umount_detach(&pod_a.pin)?;
        fs::remove_file(&pod_a.pin).map_err(os_err(format!("remove {}", pod_a.pin.display())))?;
        pod_a_pin_mounted = false;
    }
    kill_child(pod_a.pause_pid)?;
    run.reaped(pod_a.pause_pid);
    if leak {
        let seen = ns_inum(&pod_a.pin)?;
        if seen != pod_a.inum {
            return Err(TestbedError::Unexpected(format!(
                "pin {} holds inode {seen}, not pod A's net:[{}]",
                pod_a.pin.display(),
                pod_a.inum
            )));
        }
    } else {
        // Its netns is freed asynchronously; wait for its veth to vanish from the node so pod A
        // cannot answer the ARP requests below.
        wait_links_gone(&node, &[&pod_a.host_veth])?;
    }

    // (4) pod B, same IP, different MAC.
    let pod_b = start_pod(
        run,
        "b",
        &node,
        &bridge,
        mac_for(0x01, cidr.ip),
        &cidr,
        None,
    )?;

    // (5) the client.
    let client_mac = mac_for(0x02, client_ip);
    let (client, client_pin) = run.pin_fresh_netns("client", PinMethod::BindMount)?;
    let node_text = node.to_string_lossy();
    ip_in(&client, &["link", "set", "lo", "up"])?;
    ip_in(
        &client,
        &[
            "link",
            "add",
            "eth0",
            "address",
            &fmt_mac(&client_mac),
            "type",
            "veth",
            "peer",
            "name",
            "veth-c",
            "netns",
            &node_text,
        ],
    )?;
    ip_in(&node, &["link", "set", "veth-c", "master", &bridge, "up"])?;
    ip_in(
        &client,
        &[
            "addr",
            "add",
            &format!("{client_ip}/{}", cidr.prefix),
            "dev",
            "eth0",
        ],
    )?;
    ip_in(&client, &["link", "set", "eth0", "up"])?;

    // Pod A is not visited again after its pause process died: a visit would be a member.
    wait_links_running(&node, &["veth-c"])?;
    wait_links_running(&client, &["eth0"])?;

    let arp = arp_exchange(
        &client,
        "eth0",
        client_mac,
        client_ip,
        cidr.ip,
        args.arp_count,
    )?;
    let mut responders: Vec<String> = arp.replies.iter().map(|r| fmt_mac(&r.sender_mac)).collect();
    responders.sort();
    responders.dedup();
    let replies: Vec<Value> = arp
        .replies
        .iter()
        .map(|r| {
            json!({
                "request": r.request,
                "sender_mac": fmt_mac(&r.sender_mac),
                "sender_ip": r.sender_ip.to_string(),
                "eth_src": fmt_mac(&r.eth_src),
            })
        })
        .collect();
    let stale_reply = responders.contains(&fmt_mac(&pod_a.mac));
    // After a clean teardown the kernel may hand pod A's inode number to a later namespace:
    // say so, since only the cookie tells them apart.
    let pod_a_inum_reused_by = [("pod_b", pod_b.inum), ("client", client_pin.inum)]
        .into_iter()
        .find(|(_, inum)| *inum == pod_a.inum)
        .map(|(role, _)| role);

    let pod_json = |pod: &Pod, alive: bool, pin_mounted: bool| {
        json!({
            "pause_pid": pod.pause_pid,
            "pause_alive": alive,
            "netns_inum": pod.inum,
            "netns_cookie": pod.cookie,
            "pin": pod.pin,
            "pin_mounted": pin_mounted,
            "mac": fmt_mac(&pod.mac),
            "ip": cidr.ip.to_string(),
            "prefix": cidr.prefix,
            "interface": "eth0",
            "host_veth": pod.host_veth,
        })
    };
    Ok(json!({
        "leak_expected": leak,
        "clean_teardown": !leak,
        "bridge": bridge,
        "node": {
            "pin": node,
            "netns_inum": node_pin.inum,
            "netns_cookie": netns_cookie(&node),
            "creator_tid": node_pin.tid,
        },
        "pod_a": pod_json(&pod_a, false, pod_a_pin_mounted),
        "pod_a_inum_reused_by": pod_a_inum_reused_by,
        "pod_b": pod_json(&pod_b, true, true),
        "client": {
            "pin": client,
            "netns_inum": client_pin.inum,
            "netns_cookie": netns_cookie(&client),
            "mac": fmt_mac(&client_mac),
            "ip": client_ip.to_string(),
            "prefix": cidr.prefix,
            "interface": "eth0",
            "host_veth": "veth-c",
        },
        "arp": {
            "target_ip": cidr.ip.to_string(),
            "requests_sent": arp.requests_sent,
            "replies": replies,
            "responder_macs": responders,
            "stale_reply": stale_reply,
        },
    }))
}
