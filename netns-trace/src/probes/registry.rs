//! Every probe netns-trace knows, with its fallback chain.
//!
//! A probe is one capability (say, "see namespaces being created"). Its chain lists ways to
//! get it, best first: fentry/fexit, then kprobe/kretprobe, then tracepoints. At load time
//! the first link that works on this kernel is attached (see loader.rs). Kernel prototypes
//! per version sit next to each program in netns-trace-ebpf/src/probes/.
use netns_trace_common::{offsets::Offset, packet_families};

/// How one program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// fentry/fexit program on a kernel function (needs BTF and trampoline support).
    Fentry {
        program: &'static str,
        function: &'static str,
    },
    Fexit {
        program: &'static str,
        function: &'static str,
    },
    Kprobe {
        program: &'static str,
        function: &'static str,
    },
    Kretprobe {
        program: &'static str,
        function: &'static str,
    },
    /// tp_btf: a raw tracepoint with typed arguments.
    BtfTracepoint {
        program: &'static str,
        event: &'static str,
    },
    /// tp_btf on a packet tracepoint whose one program serves several probes, one packet
    /// family each (bits of [`netns_trace_common::packet_families`]): attached once, however
    /// many probes' links name it, and recording `family` while this link stays attached.
    PacketTracepoint {
        program: &'static str,
        event: &'static str,
        family: u32,
    },
    /// A classic tracepoint (syscalls:...).
    Tracepoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
    },
}

impl Attach {
    pub fn program(&self) -> &'static str {
        match *self {
            Attach::Fentry { program, .. }
            | Attach::Fexit { program, .. }
            | Attach::Kprobe { program, .. }
            | Attach::Kretprobe { program, .. }
            | Attach::BtfTracepoint { program, .. }
            | Attach::PacketTracepoint { program, .. }
            | Attach::Tracepoint { program, .. } => program,
        }
    }

    pub fn target(&self) -> String {
        match *self {
            Attach::Fentry { function, .. } => format!("fentry:{function}"),
            Attach::Fexit { function, .. } => format!("fexit:{function}"),
            Attach::Kprobe { function, .. } => format!("kprobe:{function}"),
            Attach::Kretprobe { function, .. } => format!("kretprobe:{function}"),
            Attach::BtfTracepoint { event, .. } | Attach::PacketTracepoint { event, .. } => {
                format!("tp_btf:{event}")
            }
            Attach::Tracepoint { category, name, .. } => format!("tracepoint:{category}:{name}"),
        }
    }
}

/// The family of a chain link; decides the run's probe mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl Mechanism {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mechanism::Fentry => "fentry",
            Mechanism::Kprobe => "kprobe",
            Mechanism::Tracepoint => "tracepoint",
        }
    }
}

/// Extra condition a link needs beyond its programs loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requires {
    Nothing,
    /// cleanup_net's address must be readable in /proc/kallsyms.
    CleanupNetSymbol,
}

/// One way to provide a probe: all of `attaches` succeed, or none stays attached.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub mechanism: Mechanism,
    pub attaches: &'static [Attach],
    /// KernelOffsets members the programs read.
    pub needs: &'static [Offset],
    pub requires: Requires,
}

#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec {
    pub name: &'static str,
    pub purpose: &'static str,
    pub chain: &'static [Link],
}

const NS_ID: &[Offset] = &[Offset::NetNsInum, Offset::NetCookie];
const TASK_NS: &[Offset] = &[
    Offset::TaskNsproxy,
    Offset::TaskPid,
    Offset::TaskTgid,
    Offset::NsproxyNetNs,
    Offset::NsproxyMntNs,
    Offset::MntNsInum,
    Offset::NetNsInum,
    Offset::NetCookie,
];
const NSFS: &[Offset] = &[
    Offset::NetNs,
    Offset::NetNsInum,
    Offset::NetCookie,
    Offset::DentryDSb,
    Offset::SbSMagic,
    Offset::DentryDInode,
    Offset::InodeIPrivate,
    Offset::TaskNsproxy,
    Offset::NsproxyMntNs,
    Offset::MntNsInum,
];
const DEV: &[Offset] = &[
    Offset::NetdevIfindex,
    Offset::NetdevName,
    Offset::NetdevDevAddr,
    Offset::NetdevNdNet,
    Offset::NetNsInum,
    Offset::NetCookie,
];
const ADDR: &[Offset] = &[
    Offset::IfaLocal,
    Offset::IfaPrefixlen,
    Offset::IfaDev,
    Offset::IfaLabel,
    Offset::InDeviceDev,
    Offset::NetdevIfindex,
    Offset::NetdevNdNet,
    Offset::NetNsInum,
    Offset::NetCookie,
];
const ARP: &[Offset] = &[
    Offset::SkbProtocol,
    Offset::SkbHead,
    Offset::SkbData,
    Offset::SkbNetworkHeader,
    Offset::SkbDev,
    Offset::NetdevIfindex,
    Offset::NetdevNdNet,
    Offset::NetNsInum,
    Offset::NetCookie,
];
/// ndisc_send_skb and ndisc_rcv: the ICMPv6 message from the skb's data or transport header.
const NDISC: &[Offset] = &[
    Offset::SkbHead,
    Offset::SkbData,
    Offset::SkbNetworkHeader,
    Offset::SkbTransportHeader,
    Offset::SkbLen,
    Offset::SkbDev,
    Offset::NetdevIfindex,
    Offset::NetdevNdNet,
    Offset::NetNsInum,
    Offset::NetCookie,
];

const MOUNT_SYSCALLS: &[Attach] = &[
    Attach::Tracepoint {
        program: "mount_enter",
        category: "syscalls",
        name: "sys_enter_mount",
    },
    Attach::Tracepoint {
        program: "mount_exit",
        category: "syscalls",
        name: "sys_exit_mount",
    },
    Attach::Tracepoint {
        program: "umount_enter",
        category: "syscalls",
        name: "sys_enter_umount",
    },
    Attach::Tracepoint {
        program: "mount_exit",
        category: "syscalls",
        name: "sys_exit_umount",
    },
    Attach::Tracepoint {
        program: "open_tree_enter",
        category: "syscalls",
        name: "sys_enter_open_tree",
    },
    Attach::Tracepoint {
        program: "mount_exit",
        category: "syscalls",
        name: "sys_exit_open_tree",
    },
    Attach::Tracepoint {
        program: "move_mount_enter",
        category: "syscalls",
        name: "sys_enter_move_mount",
    },
    Attach::Tracepoint {
        program: "mount_exit",
        category: "syscalls",
        name: "sys_exit_move_mount",
    },
];

pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        name: "netns_created",
        purpose: "a network namespace is created (clone/unshare with CLONE_NEWNET)",
        chain: &[
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[Attach::Fexit {
                    program: "netns_created_fexit",
                    function: "copy_net_ns",
                }],
                needs: NS_ID,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "netns_created_kprobe",
                        function: "copy_net_ns",
                    },
                    Attach::Kretprobe {
                        program: "netns_created_kretprobe",
                        function: "copy_net_ns",
                    },
                ],
                needs: NS_ID,
                requires: Requires::Nothing,
            },
            // unshare(CLONE_NEWNET) is caught by task_membership's before/after compare.
            Link {
                mechanism: Mechanism::Tracepoint,
                attaches: &[Attach::BtfTracepoint {
                    program: "netns_created_task_newtask",
                    event: "task_newtask",
                }],
                needs: TASK_NS,
                requires: Requires::Nothing,
            },
        ],
    },
    ProbeSpec {
        name: "task_membership",
        purpose: "tasks entering and leaving namespaces (fork, exit, unshare, setns)",
        chain: &[Link {
            mechanism: Mechanism::Tracepoint,
            attaches: &[
                Attach::BtfTracepoint {
                    program: "task_fork",
                    event: "sched_process_fork",
                },
                Attach::BtfTracepoint {
                    program: "task_exit",
                    event: "sched_process_exit",
                },
                Attach::Tracepoint {
                    program: "task_unshare_enter",
                    category: "syscalls",
                    name: "sys_enter_unshare",
                },
                Attach::Tracepoint {
                    program: "task_unshare_exit",
                    category: "syscalls",
                    name: "sys_exit_unshare",
                },
                Attach::Tracepoint {
                    program: "task_setns_enter",
                    category: "syscalls",
                    name: "sys_enter_setns",
                },
                Attach::Tracepoint {
                    program: "task_setns_exit",
                    category: "syscalls",
                    name: "sys_exit_setns",
                },
            ],
            needs: TASK_NS,
            requires: Requires::Nothing,
        }],
    },
    ProbeSpec {
        name: "netns_teardown",
        purpose: "the kernel starts destroying a namespace (per-net exit callbacks)",
        chain: &[
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[Attach::Fentry {
                    program: "netns_teardown_fentry",
                    function: "netns_bpf_pernet_pre_exit",
                }],
                needs: NS_ID,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[Attach::Kprobe {
                    program: "netns_teardown_kprobe",
                    function: "netns_bpf_pernet_pre_exit",
                }],
                needs: NS_ID,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[Attach::Kprobe {
                    program: "netns_teardown_kprobe",
                    function: "rtnetlink_net_exit",
                }],
                needs: NS_ID,
                requires: Requires::Nothing,
            },
            // Coarse: says a cleanup batch ran; the namespaces in it are named by their frees.
            Link {
                mechanism: Mechanism::Tracepoint,
                attaches: &[Attach::BtfTracepoint {
                    program: "netns_cleanup_run",
                    event: "workqueue_execute_start",
                }],
                needs: &[],
                requires: Requires::CleanupNetSymbol,
            },
        ],
    },
    ProbeSpec {
        name: "netns_freed",
        purpose: "a namespace's struct net goes back to the slab",
        chain: &[Link {
            mechanism: Mechanism::Tracepoint,
            attaches: &[Attach::BtfTracepoint {
                program: "netns_freed_kmem",
                event: "kmem_cache_free",
            }],
            needs: &[],
            requires: Requires::Nothing,
        }],
    },
    ProbeSpec {
        name: "mount_syscalls",
        purpose: "mount, umount, open_tree and move_mount calls with paths and results",
        chain: &[Link {
            mechanism: Mechanism::Tracepoint,
            attaches: MOUNT_SYSCALLS,
            needs: &[
                Offset::TaskNsproxy,
                Offset::NsproxyNetNs,
                Offset::NsproxyMntNs,
                Offset::MntNsInum,
                Offset::NetNsInum,
                Offset::NetCookie,
            ],
            requires: Requires::Nothing,
        }],
    },
    ProbeSpec {
        name: "nsfs_mount",
        purpose: "an nsfs netns file is bind-mounted (the pin itself, with the exact namespace)",
        chain: &[
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fentry {
                        program: "nsfs_mount_graft_fentry",
                        function: "graft_tree",
                    },
                    Attach::Fentry {
                        program: "nsfs_mount_move_fentry",
                        function: "security_move_mount",
                    },
                ],
                needs: NSFS,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "nsfs_mount_graft_kprobe",
                        function: "graft_tree",
                    },
                    Attach::Kprobe {
                        program: "nsfs_mount_move_kprobe",
                        function: "security_move_mount",
                    },
                ],
                needs: NSFS,
                requires: Requires::Nothing,
            },
        ],
    },
    ProbeSpec {
        name: "nsfs_evict",
        purpose: "the last nsfs inode of a namespace is evicted (a pin truly lets go)",
        chain: &[
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[Attach::Fentry {
                    program: "nsfs_evict_fentry",
                    function: "nsfs_evict",
                }],
                needs: NSFS,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[Attach::Kprobe {
                    program: "nsfs_evict_kprobe",
                    function: "nsfs_evict",
                }],
                needs: NSFS,
                requires: Requires::Nothing,
            },
        ],
    },
    ProbeSpec {
        name: "netdev",
        purpose: "network devices registered, unregistered or moved between namespaces",
        chain: &[
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fexit {
                        program: "netdev_register_fexit",
                        function: "register_netdevice",
                    },
                    Attach::Fentry {
                        program: "netdev_unregister_fentry",
                        function: "unregister_netdevice_queue",
                    },
                    Attach::Fentry {
                        program: "netdev_move_fentry",
                        function: "__dev_change_net_namespace",
                    },
                ],
                needs: DEV,
                requires: Requires::Nothing,
            },
            // Before 5.13 the move is the exported dev_change_net_namespace (same first two args).
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fexit {
                        program: "netdev_register_fexit",
                        function: "register_netdevice",
                    },
                    Attach::Fentry {
                        program: "netdev_unregister_fentry",
                        function: "unregister_netdevice_queue",
                    },
                    Attach::Fentry {
                        program: "netdev_move_fentry",
                        function: "dev_change_net_namespace",
                    },
                ],
                needs: DEV,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "netdev_register_kprobe",
                        function: "register_netdevice",
                    },
                    Attach::Kretprobe {
                        program: "netdev_register_kretprobe",
                        function: "register_netdevice",
                    },
                    Attach::Kprobe {
                        program: "netdev_unregister_kprobe",
                        function: "unregister_netdevice_queue",
                    },
                    Attach::Kprobe {
                        program: "netdev_move_kprobe",
                        function: "__dev_change_net_namespace",
                    },
                ],
                needs: DEV,
                requires: Requires::Nothing,
            },
        ],
    },
    ProbeSpec {
        name: "ipv4_addr",
        purpose: "IPv4 addresses added to or removed from devices",
        chain: &[
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fentry {
                        program: "ipv4_add_fentry",
                        function: "__inet_insert_ifa",
                    },
                    Attach::Fentry {
                        program: "ipv4_del_fentry",
                        function: "__inet_del_ifa",
                    },
                ],
                needs: ADDR,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "ipv4_add_kprobe",
                        function: "__inet_insert_ifa",
                    },
                    Attach::Kprobe {
                        program: "ipv4_del_kprobe",
                        function: "__inet_del_ifa",
                    },
                ],
                needs: ADDR,
                requires: Requires::Nothing,
            },
        ],
    },
    ProbeSpec {
        name: "arp",
        purpose: "ARP requests and replies sent and received, per device and namespace",
        chain: &[
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fentry {
                        program: "arp_tx_fentry",
                        function: "arp_xmit",
                    },
                    Attach::Fentry {
                        program: "arp_rx_fentry",
                        function: "arp_process",
                    },
                ],
                needs: ARP,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "arp_tx_kprobe",
                        function: "arp_xmit",
                    },
                    Attach::Kprobe {
                        program: "arp_rx_kprobe",
                        function: "arp_process",
                    },
                ],
                needs: ARP,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Tracepoint,
                attaches: &[
                    Attach::PacketTracepoint {
                        program: "packet_tx_tp",
                        event: "net_dev_xmit",
                        family: packet_families::ARP,
                    },
                    Attach::PacketTracepoint {
                        program: "packet_rx_tp",
                        event: "netif_receive_skb",
                        family: packet_families::ARP,
                    },
                ],
                needs: ARP,
                requires: Requires::Nothing,
            },
        ],
    },
    ProbeSpec {
        name: "ndisc",
        purpose: "IPv6 Neighbour Solicitations and Advertisements sent and received, per \
                  device and namespace",
        chain: &[
            Link {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fentry {
                        program: "ndisc_tx_fentry",
                        function: "ndisc_send_skb",
                    },
                    Attach::Fentry {
                        program: "ndisc_rx_fentry",
                        function: "ndisc_rcv",
                    },
                ],
                needs: NDISC,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "ndisc_tx_kprobe",
                        function: "ndisc_send_skb",
                    },
                    Attach::Kprobe {
                        program: "ndisc_rx_kprobe",
                        function: "ndisc_rcv",
                    },
                ],
                needs: NDISC,
                requires: Requires::Nothing,
            },
            Link {
                mechanism: Mechanism::Tracepoint,
                attaches: &[
                    Attach::PacketTracepoint {
                        program: "packet_tx_tp",
                        event: "net_dev_xmit",
                        family: packet_families::NDISC,
                    },
                    Attach::PacketTracepoint {
                        program: "packet_rx_tp",
                        event: "netif_receive_skb",
                        family: packet_families::NDISC,
                    },
                ],
                needs: ARP,
                requires: Requires::Nothing,
            },
        ],
    },
    ProbeSpec {
        name: "neigh_update",
        purpose: "IPv4 neighbour (ARP cache) entries changing",
        chain: &[Link {
            mechanism: Mechanism::Tracepoint,
            attaches: &[Attach::BtfTracepoint {
                program: "neigh_update_tp",
                event: "neigh_update",
            }],
            needs: &[
                Offset::NeighPrimaryKey,
                Offset::NeighDev,
                Offset::NeighTbl,
                Offset::NeighTableFamily,
                Offset::NetdevIfindex,
                Offset::NetdevNdNet,
                Offset::NetNsInum,
                Offset::NetCookie,
            ],
            requires: Requires::Nothing,
        }],
    },
    ProbeSpec {
        name: "cni_exec",
        purpose: "CNI plugin runs: execs whose environment holds CNI_COMMAND (verb, container \
                  id, netns path, ifname, CNI_ARGS), read at exec",
        chain: &[Link {
            mechanism: Mechanism::Tracepoint,
            attaches: &[
                Attach::Tracepoint {
                    program: "cni_exec_enter_execve",
                    category: "syscalls",
                    name: "sys_enter_execve",
                },
                Attach::Tracepoint {
                    program: "cni_exec_exit_execve",
                    category: "syscalls",
                    name: "sys_exit_execve",
                },
                Attach::Tracepoint {
                    program: "cni_exec_enter_execveat",
                    category: "syscalls",
                    name: "sys_enter_execveat",
                },
                Attach::Tracepoint {
                    program: "cni_exec_exit_execve",
                    category: "syscalls",
                    name: "sys_exit_execveat",
                },
            ],
            needs: &[
                Offset::TaskNsproxy,
                Offset::NsproxyNetNs,
                Offset::NetNsInum,
                Offset::NetCookie,
            ],
            requires: Requires::Nothing,
        }],
    },
    ProbeSpec {
        name: "cni_exit",
        purpose: "CNI plugin ends: how each plugin cni_exec saw start ended (exit code or \
                  signal) and the parent told, at the SIGCHLD its parent is sent",
        chain: &[Link {
            mechanism: Mechanism::Tracepoint,
            attaches: &[
                Attach::Tracepoint {
                    program: "cni_leader_exit",
                    category: "sched",
                    name: "sched_process_exit",
                },
                Attach::BtfTracepoint {
                    program: "cni_exit",
                    event: "signal_generate",
                },
            ],
            needs: &[Offset::TaskTgid],
            requires: Requires::Nothing,
        }],
    },
];

pub fn find(name: &str) -> Option<&'static ProbeSpec> {
    PROBES.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_chains_non_empty() {
        let mut names: Vec<_> = PROBES.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROBES.len());
        assert!(PROBES.iter().all(|p| !p.chain.is_empty()));
    }

    #[test]
    fn chains_go_from_best_to_most_available() {
        for p in PROBES {
            let mechs: Vec<_> = p.chain.iter().map(|l| l.mechanism).collect();
            let mut sorted = mechs.clone();
            sorted.sort();
            assert_eq!(mechs, sorted, "{}: chain out of order", p.name);
        }
    }
}
