//! Entries and their order of use: the slots a cache hit reads, the links of the two recency
//! lists (policies, failed-fetch memories), and eviction.

use super::PolicyCache;
use crate::lookup::FetchMemo;
use crate::outcome::CachedPolicy;
use crate::policy_domain::PolicyDomain;
use crate::time::UnixTime;

/// No slot: the end of a list.
pub(super) const NIL: u32 = u32::MAX;

/// Which recency list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum List {
    /// Entries with a policy.
    Policies = 0,
    /// Entries without a policy: they only remember a failed fetch (R19).
    Memos = 1,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Ends {
    /// Most recently used.
    pub(super) head: u32,
    /// Least recently used: evicted first.
    pub(super) tail: u32,
}

/// What a cache hit reads, in one cache line: the name to compare, the policy, the last use,
/// whether the entry is among the most recent and when its TXT id was last checked. The rest of
/// an entry is in its [`Links`].
#[derive(Debug)]
#[repr(align(64))]
pub(super) struct Slot {
    pub(super) domain: SlotName,
    pub(super) policy: Option<CachedPolicy>,
    pub(super) last_used: UnixTime,
    /// The recency clock when the slot was last moved to the head of its list.
    pub(super) moved: u32,
    /// When the TXT id of the policy was last checked (or a check began), in seconds after its
    /// fetch (0 for the fetch itself): for [`Config::recheck_after`](crate::Config::recheck_after).
    pub(super) checked: u32,
}

// A hit reads one line of slots (checked here, so that a field added to `Slot` is a choice).
const _: () = assert!(size_of::<Option<Slot>>() == 64);

/// The parts of an entry that a cache hit does not read: its place on its recency list, its
/// timer and the memory of a failed fetch. `links[i]` belongs to `slots[i]`.
#[derive(Debug)]
pub(super) struct Links {
    /// Boxed: rare, and the links stay small.
    pub(super) memo: Option<Box<FetchMemo>>,
    pub(super) timer: Option<UnixTime>,
    pub(super) prev: u32,
    pub(super) next: u32,
}

impl Links {
    pub(super) const NEW: Self = Self {
        memo: None,
        timer: None,
        prev: NIL,
        next: NIL,
    };
}

impl Slot {
    pub(super) fn list(&self) -> List {
        if self.policy.is_some() {
            List::Policies
        } else {
            List::Memos
        }
    }
}

/// A slot's domain: inline when short (nearly always), so that a hit compares it without reading
/// another allocation.
#[derive(Debug)]
pub(crate) enum SlotName {
    Inline { len: u8, bytes: [u8; 30] },
    Heap(PolicyDomain),
}

impl SlotName {
    pub(super) fn new(domain: &PolicyDomain) -> Self {
        let s = domain.as_str();
        if s.len() > 30 {
            return Self::Heap(domain.clone());
        }
        let mut bytes = [0; 30];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Self::Inline {
            len: s.len() as u8,
            bytes,
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(d) => d.as_str().as_bytes(),
        }
    }

    /// The name (a normalised domain: ASCII, so this never fails).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub(super) fn to_domain(&self) -> PolicyDomain {
        match self {
            Self::Inline { .. } => PolicyDomain::from_normalised(self.as_str().to_owned()),
            Self::Heap(d) => d.clone(),
        }
    }
}

impl PolicyCache {
    pub(super) fn remove(&mut self, i: u32) {
        self.set_timer(i, None);
        self.unlink(i);
        if let Some(s) = self.slots.get_mut(i as usize).and_then(Option::take) {
            self.index.remove(s.domain.as_str(), i);
            if let Some(l) = self.links_mut(i) {
                *l = Links::NEW;
            }
            self.free.push(i);
        }
    }

    /// The entries with a policy, most recently used first: (domain, policy, last use).
    pub(crate) fn policies_by_recency(
        &self,
    ) -> impl Iterator<Item = (&SlotName, &CachedPolicy, UnixTime)> + '_ {
        let mut i = self.lists[List::Policies as usize].head;
        core::iter::from_fn(move || {
            let s = self.slot(i)?;
            i = self.links(i)?.next;
            s.policy.as_ref().map(|p| (&s.domain, p, s.last_used))
        })
    }

    /// Moves `i` to the most recent end of its list without changing its last use.
    pub(super) fn touch_order_only(&mut self, i: u32) {
        self.unlink(i);
        self.link_head(i);
    }

    /// The slot of `domain`, if cached.
    pub(super) fn find(&self, domain: &str) -> Option<u32> {
        self.index
            .get(domain, |i| self.slot(i).map(|s| s.domain.as_bytes()))
    }

    pub(super) fn slot(&self, i: u32) -> Option<&Slot> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    pub(super) fn slot_mut(&mut self, i: u32) -> Option<&mut Slot> {
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }

    pub(super) fn ends(&mut self, list: List) -> &mut Ends {
        &mut self.lists[list as usize]
    }

    /// The links of slot `i` (those of a free slot are [`Links::NEW`]); `None` for [`NIL`].
    pub(super) fn links(&self, i: u32) -> Option<&Links> {
        self.links.get(i as usize)
    }

    pub(super) fn links_mut(&mut self, i: u32) -> Option<&mut Links> {
        self.links.get_mut(i as usize)
    }

    /// The failed fetch that slot `i` remembers.
    pub(super) fn memo(&self, i: u32) -> Option<FetchMemo> {
        self.links(i).and_then(|l| l.memo.as_deref().copied())
    }

    pub(super) fn unlink(&mut self, i: u32) {
        let Some(list) = self.slot(i).map(Slot::list) else {
            return;
        };
        let Some(&Links { prev, next, .. }) = self.links(i) else {
            return;
        };
        match self.links_mut(prev) {
            Some(p) => p.next = next,
            None => self.ends(list).head = next,
        }
        match self.links_mut(next) {
            Some(n) => n.prev = prev,
            None => self.ends(list).tail = prev,
        }
        if let Some(l) = self.links_mut(i) {
            l.prev = NIL;
            l.next = NIL;
        }
    }

    /// Links `i` at the head (most recent end) of the list matching its state.
    pub(super) fn link_head(&mut self, i: u32) {
        let Some(list) = self.slot(i).map(Slot::list) else {
            return;
        };
        let head = self.ends(list).head;
        if let Some(h) = self.links_mut(head) {
            h.prev = i;
        }
        let clock = self.clock;
        self.clock = clock.wrapping_add(1);
        if let Some(l) = self.links_mut(i) {
            l.prev = NIL;
            l.next = head;
        }
        if let Some(s) = self.slot_mut(i) {
            s.moved = clock;
        }
        let ends = self.ends(list);
        ends.head = i;
        if ends.tail == NIL {
            ends.tail = i;
        }
    }

    /// Records a use. The slot moves to the head of its list unless it is among the most recent
    /// eighth already (then no other slot is touched): recency is exact but for the order within
    /// that eighth, which a hit does not refresh.
    pub(super) fn touch(&mut self, i: u32, now: UnixTime) {
        let recent = (self.index.len() / 8).min(u32::MAX as usize) as u32;
        let clock = self.clock;
        let Some(s) = self.slot_mut(i) else { return };
        s.last_used = s.last_used.max(now);
        if clock.wrapping_sub(s.moved) < recent {
            return;
        }
        if self.ends(self.slot(i).map_or(List::Memos, Slot::list)).head != i {
            self.unlink(i);
            self.link_head(i);
        }
    }

    /// The entry for `domain`, created (evicting if full) when missing; `None` if the capacity
    /// is zero.
    pub(super) fn entry(&mut self, domain: &PolicyDomain, now: UnixTime) -> Option<u32> {
        if let Some(i) = self.find(domain.as_str()) {
            return Some(i);
        }
        if self.config.capacity == 0 {
            return None;
        }
        while self.index.len() >= self.config.capacity {
            let victim = match self.lists[List::Memos as usize].tail {
                NIL => self.lists[List::Policies as usize].tail,
                t => t,
            };
            if victim == NIL {
                break;
            }
            self.remove(victim);
            self.stats.evictions += 1;
        }
        let slot = Slot {
            domain: SlotName::new(domain),
            policy: None,
            last_used: now,
            moved: 0,
            checked: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                self.links[i as usize] = Links::NEW;
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).ok().filter(|&i| i != NIL)?;
                self.slots.push(Some(slot));
                self.links.push(Links::NEW);
                i
            }
        };
        self.index.insert(domain.as_str(), i);
        self.link_head(i);
        Some(i)
    }

    /// Records that the TXT id of slot `i`'s policy was checked at `now`.
    pub(super) fn mark_checked(&mut self, i: u32, now: UnixTime) {
        let Some(s) = self.slot_mut(i) else { return };
        if let Some(p) = &s.policy {
            let after = now.since(p.fetched_at()).as_secs();
            s.checked = u32::try_from(after).unwrap_or(u32::MAX);
        }
    }
}
