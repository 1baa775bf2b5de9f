//! Which namespace an event is about.
//!
//! The cookie (`net->net_cookie`) is the key whenever it is non-zero. Inode numbers are reused
//! by the kernel, so an inum only names "the most recent namespace with that inum", and a
//! creation with an inum whose holder is already destroyed starts a new life. On 5.8–5.11 the
//! cookie is set lazily and snapshots may lack it: such events attach by inum, and the first
//! event that reveals the cookie upgrades the key.
//!
//! [`Registry`] keeps the keys; `Collector::place` resolves an event's namespace through it,
//! and `Collector::new_life` starts a namespace life.
use rustc_hash::FxHashMap;

use super::namespace::{Namespace, NsState, Origin};
use super::{Collector, DeadlineKind, NoticeKind};
use crate::model::NsId;

/// init_net's inode number on 6.18 (fixed); older kernels allocate it at boot and the Start
/// snapshot names it.
const INIT_NET_INUM_FIXED: u32 = 0xEFFF_FFF9;

/// A slot index plus the generation it was valid for; slots are reused after eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SlotRef {
    pub slot: u32,
    pub generation: u32,
}

/// What the event intends to do with the namespace, which decides whether a destroyed
/// namespace with the same inum may be meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Something only a live namespace can do (a task joins, a pin is made): a destroyed
    /// namespace with this inum is not it.
    Join,
    /// Follow-ups (teardown, free, exits, late observations): the latest namespace with
    /// this inum, destroyed or not.
    Attach,
}

/// What to do with an event about a namespace that is not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IfUnknown {
    /// Start an `Inferred` life for it: the event proves the namespace exists.
    Infer,
    /// Drop the event, counted as unattributed.
    Skip,
}

#[derive(Default)]
pub(crate) struct Registry {
    slots: Vec<Option<Namespace>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    by_cookie: FxHashMap<u64, u32>,
    by_inum: FxHashMap<u32, u32>,
    by_ptr: FxHashMap<u64, u32>,
    /// How many namespaces each inum has named in this trace.
    incarnations: FxHashMap<u32, u32>,
    live: usize,
}

impl Registry {
    pub fn get(&self, r: SlotRef) -> Option<&Namespace> {
        if self.generations.get(r.slot as usize) != Some(&r.generation) {
            return None;
        }
        self.slots[r.slot as usize].as_ref()
    }

    pub fn get_mut(&mut self, r: SlotRef) -> Option<&mut Namespace> {
        if self.generations.get(r.slot as usize) != Some(&r.generation) {
            return None;
        }
        self.slots[r.slot as usize].as_mut()
    }

    fn slot_ref(&self, slot: u32) -> SlotRef {
        SlotRef {
            slot,
            generation: self.generations[slot as usize],
        }
    }

    fn ns(&self, slot: u32) -> &Namespace {
        self.slots[slot as usize]
            .as_ref()
            .expect("index maps only name occupied slots")
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn iter(&self) -> impl Iterator<Item = (SlotRef, &Namespace)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.as_ref().map(|ns| {
                (
                    SlotRef {
                        slot: i as u32,
                        generation: self.generations[i],
                    },
                    ns,
                )
            })
        })
    }

    /// The namespace `id` names for an event with `intent`, upgrading a cookie-less entry when
    /// the event reveals its cookie. None when unknown.
    pub fn find(&mut self, id: NsId, intent: Intent) -> Option<SlotRef> {
        let (r, reveals_cookie) = self.locate(id, intent)?;
        if reveals_cookie {
            self.set_cookie(r, id.cookie);
        }
        Some(r)
    }

    /// What [`find`](Self::find) answers for a follow-up event ([`Intent::Attach`]), without
    /// recording a cookie the id reveals: for outputs that place an event where the collector
    /// placed it, after it did.
    pub fn peek(&self, id: NsId) -> Option<SlotRef> {
        self.locate(id, Intent::Attach).map(|(r, _)| r)
    }

    /// The rule behind `find` and `peek`: the life `id` names, and whether the id reveals the
    /// cookie of an entry known so far only by inum.
    #[inline(always)]
    fn locate(&self, id: NsId, intent: Intent) -> Option<(SlotRef, bool)> {
        if id.is_none() {
            return None;
        }
        if id.cookie != 0 {
            if let Some(&slot) = self.by_cookie.get(&id.cookie) {
                return Some((self.slot_ref(slot), false));
            }
            if id.inum == 0 {
                return None;
            }
            let &slot = self.by_inum.get(&id.inum)?;
            let ns = self.ns(slot);
            if ns.cookie != 0 || (ns.is_destroyed() && intent == Intent::Join) {
                // A different (or finished) life owns this inum.
                return None;
            }
            return Some((self.slot_ref(slot), true));
        }
        let &slot = self.by_inum.get(&id.inum)?;
        let ns = self.ns(slot);
        if ns.is_destroyed() && intent == Intent::Join {
            return None;
        }
        Some((self.slot_ref(slot), false))
    }

    /// The namespace behind a `struct net *` seen at creation or teardown.
    pub fn find_ptr(&self, net_ptr: u64) -> Option<SlotRef> {
        if net_ptr == 0 {
            return None;
        }
        self.by_ptr.get(&net_ptr).map(|&s| self.slot_ref(s))
    }

    pub fn set_ptr(&mut self, r: SlotRef, net_ptr: u64) {
        if net_ptr == 0 {
            return;
        }
        if let Some(ns) = self.get_mut(r) {
            ns.net_ptr = net_ptr;
            self.by_ptr.insert(net_ptr, r.slot);
        }
    }

    /// The memory behind the pointer was freed; the allocator may hand it to a new namespace.
    pub fn forget_ptr(&mut self, net_ptr: u64, r: SlotRef) {
        if self.by_ptr.get(&net_ptr) == Some(&r.slot) {
            self.by_ptr.remove(&net_ptr);
        }
    }

    pub fn find_cookie(&self, cookie: u64) -> Option<SlotRef> {
        if cookie == 0 {
            return None;
        }
        self.by_cookie.get(&cookie).map(|&s| self.slot_ref(s))
    }

    /// The latest namespace named by `inum`, destroyed or not.
    pub fn holder_of_inum(&self, inum: u32) -> Option<SlotRef> {
        self.by_inum.get(&inum).map(|&s| self.slot_ref(s))
    }

    /// Records a cookie learnt late for a cookie-less entry.
    pub fn set_cookie(&mut self, r: SlotRef, cookie: u64) {
        if cookie == 0 {
            return;
        }
        if let Some(ns) = self.get_mut(r)
            && ns.cookie == 0
        {
            ns.cookie = cookie;
            self.by_cookie.insert(cookie, r.slot);
        }
    }

    /// The namespace currently named by `inum`, if it is not destroyed (another life cannot
    /// share the inum while it lives).
    pub fn live_holder_of_inum(&self, inum: u32) -> Option<SlotRef> {
        let &slot = self.by_inum.get(&inum)?;
        (!self.ns(slot).is_destroyed()).then(|| self.slot_ref(slot))
    }

    /// Registers a new namespace life. The caller must first retire a live holder of the same
    /// inum (see `live_holder_of_inum`).
    pub fn insert(&mut self, id: NsId, origin: Origin, ts: u64) -> SlotRef {
        let n = self.incarnations.entry(id.inum).or_insert(0);
        *n += 1;
        let ns = Namespace::new(id, *n, origin, ts);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(ns);
                s
            }
            None => {
                self.slots.push(Some(ns));
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        if id.cookie != 0 {
            self.by_cookie.insert(id.cookie, slot);
        }
        if id.inum != 0 {
            self.by_inum.insert(id.inum, slot);
        }
        self.live += 1;
        self.slot_ref(slot)
    }

    /// Drops a namespace record entirely (retention limit); returns it.
    pub fn remove(&mut self, r: SlotRef) -> Option<Namespace> {
        self.get(r)?;
        let ns = self.slots[r.slot as usize].take().expect("checked");
        if ns.cookie != 0 && self.by_cookie.get(&ns.cookie) == Some(&r.slot) {
            self.by_cookie.remove(&ns.cookie);
        }
        if self.by_inum.get(&ns.inum) == Some(&r.slot) {
            self.by_inum.remove(&ns.inum);
        }
        if ns.net_ptr != 0 && self.by_ptr.get(&ns.net_ptr) == Some(&r.slot) {
            self.by_ptr.remove(&ns.net_ptr);
        }
        self.generations[r.slot as usize] = self.generations[r.slot as usize].wrapping_add(1);
        self.free.push(r.slot);
        self.live -= 1;
        Some(ns)
    }
}

impl Collector {
    pub(super) fn is_init(&self, id: NsId) -> bool {
        if id.inum == INIT_NET_INUM_FIXED {
            return true;
        }
        match self.init {
            Some(init) if init.cookie != 0 && id.cookie != 0 => init.cookie == id.cookie,
            Some(init) => init.inum == id.inum,
            None => false,
        }
    }

    /// Starts a new namespace life, retiring a still-live holder of the same inum (the kernel
    /// reuses inums only after the old namespace is gone, so its end was missed).
    pub(super) fn new_life(&mut self, id: NsId, origin: Origin, ts: u64) -> SlotRef {
        if id.inum != 0
            && let Some(old) = self.reg.live_holder_of_inum(id.inum)
        {
            if let Some(ns) = self.reg.get_mut(old) {
                ns.vanished_at_ns = Some(ts);
            }
            self.reevaluate(old, ts);
        }
        let r = self.reg.insert(id, origin, ts);
        self.stats.namespaces_seen += 1;
        let is_init = self.is_init(id);
        if let Some(ns) = self.reg.get_mut(r) {
            ns.is_init = is_init;
        }
        // The first state is set without a "changed" notice.
        if let Some(ns) = self.reg.get(r) {
            let first = self.evaluate(ns, ts);
            if let Some(ns) = self.reg.get_mut(r) {
                ns.state = first;
            }
            if first == NsState::LeakSuspect {
                self.schedule(
                    r,
                    ts.saturating_add(self.cfg.grace_ns),
                    DeadlineKind::Suspect,
                );
            }
        }
        if origin != Origin::Traced {
            self.notify(ts, Some(r), NoticeKind::Seen, |c| {
                let how = if origin == Origin::Snapshot {
                    "existed before the trace"
                } else {
                    "first seen mid-trace"
                };
                format!("{} {how}", c.reg.get(r).map(|n| n.id()).unwrap_or_default())
            });
        }
        r
    }

    /// The namespace an event is about; `if_unknown` says what to do when none is known.
    #[inline]
    pub(super) fn place(
        &mut self,
        id: NsId,
        intent: Intent,
        if_unknown: IfUnknown,
        ts: u64,
    ) -> Option<SlotRef> {
        if id.is_none() {
            return None;
        }
        if let Some(r) = self.reg.find(id, intent) {
            return Some(r);
        }
        match if_unknown {
            IfUnknown::Infer => {
                let r = self.new_life(id, Origin::Inferred, ts);
                self.reevaluate(r, ts);
                Some(r)
            }
            IfUnknown::Skip => {
                self.stats.unattributed_events += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_less_entry_is_upgraded_when_the_cookie_shows_up() {
        let mut reg = Registry::default();
        let r = reg.insert(NsId::new(0, 77), Origin::Traced, 1);
        assert_eq!(reg.find(NsId::new(0, 77), Intent::Join), Some(r));
        assert_eq!(reg.find(NsId::new(500, 77), Intent::Join), Some(r));
        assert_eq!(reg.get(r).unwrap().cookie, 500);
        assert_eq!(reg.get(r).unwrap().id(), "net:[77]#500");
        // A different cookie with the same inum is another life.
        assert_eq!(reg.find(NsId::new(501, 77), Intent::Join), None);
    }

    #[test]
    fn destroyed_holder_of_an_inum_only_matches_follow_ups() {
        let mut reg = Registry::default();
        let r = reg.insert(NsId::new(0, 9), Origin::Traced, 1);
        reg.get_mut(r).unwrap().teardown_at_ns = Some(5);
        assert_eq!(reg.find(NsId::new(0, 9), Intent::Join), None);
        assert_eq!(reg.find(NsId::new(0, 9), Intent::Attach), Some(r));
        let r2 = reg.insert(NsId::new(0, 9), Origin::Traced, 6);
        assert_ne!(r, r2);
        assert_eq!(reg.get(r2).unwrap().id(), "net:[9]~2");
        assert_eq!(reg.find(NsId::new(0, 9), Intent::Attach), Some(r2));
    }

    #[test]
    fn peek_answers_like_a_follow_up_find_without_upgrading() {
        let mut reg = Registry::default();
        let r = reg.insert(NsId::new(0, 77), Origin::Traced, 1);
        assert_eq!(reg.peek(NsId::new(500, 77)), Some(r));
        assert_eq!(reg.get(r).unwrap().cookie, 0, "peek records nothing");
        reg.get_mut(r).unwrap().teardown_at_ns = Some(5);
        assert_eq!(
            reg.peek(NsId::new(0, 77)),
            Some(r),
            "follow-ups reach the dead"
        );
        assert_eq!(reg.find(NsId::new(500, 77), Intent::Attach), Some(r));
        assert_eq!(reg.peek(NsId::new(500, 77)), Some(r));
        assert_eq!(reg.peek(NsId::new(501, 77)), None);
    }

    #[test]
    fn removed_slots_are_reused_with_a_new_generation() {
        let mut reg = Registry::default();
        let r = reg.insert(NsId::new(3, 9), Origin::Traced, 1);
        reg.remove(r);
        assert!(reg.get(r).is_none());
        let r2 = reg.insert(NsId::new(4, 10), Origin::Traced, 2);
        assert_eq!(r.slot, r2.slot);
        assert_ne!(r.generation, r2.generation);
        assert!(reg.find(NsId::new(3, 9), Intent::Attach).is_none());
        assert_eq!(reg.len(), 1);
    }
}
