//! Snapshots: userspace's view of every namespace at one moment. The Start snapshot is the
//! state the trace begins from (members, pins, interfaces, the host's initial namespace); the
//! Final one fills in what is still alive and can contradict a leak verdict.
use super::Collector;
use super::identity::Intent;
use super::namespace::{Actor, JoinHow, Origin};
use crate::attribution::NodeMountNs;
use crate::model::{Snapshot, SnapshotPhase};

impl Collector {
    pub(super) fn on_snapshot(&mut self, ts: u64, snap: &Snapshot) {
        let start = snap.phase == SnapshotPhase::Start;
        if start {
            self.stats.start_snapshot_at_ns = Some(ts);
        } else {
            self.stats.final_snapshot_at_ns = Some(ts);
        }
        if snap.init_mnt_ns != 0 {
            self.node_mnt = NodeMountNs::new(snap.init_mnt_ns);
        }
        if !snap.init_netns.is_none() {
            self.init = Some(snap.init_netns);
            let r = match self.reg.find(snap.init_netns, Intent::Attach) {
                Some(r) => r,
                None => self.new_life(snap.init_netns, Origin::Snapshot, ts),
            };
            if let Some(ns) = self.reg.get_mut(r) {
                ns.is_init = true;
            }
            self.reevaluate(r, ts);
        }
        for sn in &snap.namespaces {
            if sn.netns.is_none() {
                continue;
            }
            let origin = if start {
                Origin::Snapshot
            } else {
                Origin::Inferred
            };
            let r = match self.reg.find(sn.netns, Intent::Join) {
                Some(r) => r,
                None => self.new_life(sn.netns, origin, ts),
            };
            if sn.interfaces_error.is_none() {
                self.set_interfaces(r, &sn.interfaces, ts);
            }
            for pin in &sn.pins {
                self.add_pin(r, Self::pin_record(pin, ts), ts);
            }
            let Some(ns) = self.reg.get(r) else { continue };
            if ns.is_init {
                continue;
            }
            let was_memberless = ns.live_tasks == 0;
            if start || was_memberless {
                for m in &sn.members {
                    let member = Actor {
                        pid: m.pid,
                        tgid: m.tgid,
                        comm: m.comm,
                    };
                    self.join(r, member, 0, JoinHow::Snapshot, ts);
                    if let Some(span) = self.reg.get_mut(r).and_then(|ns| ns.open_span_mut(m.tgid))
                        && !m.cgroup.is_empty()
                    {
                        span.cgroup_path = Some(m.cgroup.as_str().into());
                        self.note_member_cgroup(r, &m.cgroup, ts);
                    }
                }
            }
            if !start
                && was_memberless
                && !sn.members.is_empty()
                && let Some(i) = self.reg.get(r).and_then(|ns| ns.leak_finding)
            {
                let names: Vec<String> = sn
                    .members
                    .iter()
                    .take(3)
                    .map(|m| format!("{} ({})", m.pid, m.comm))
                    .collect();
                self.findings[i].add_uncertainty(&format!(
                    "the final snapshot found members: {}",
                    names.join(", ")
                ));
            }
            self.reevaluate(r, ts);
        }
    }
}
