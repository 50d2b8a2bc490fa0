//! The index from a domain to its slot.

use core::hash::BuildHasher;
use std::hash::RandomState;

/// The index from a domain to its slot: open addressing with linear probing over a power-of-two
/// table of words `hash << 32 | slot`, where `hash` is the low half of the domain's keyed hash
/// (the standard library's `RandomState`: SipHash-1-3 with random keys, against flooding). The
/// domain is kept once, in its slot; a word gives its home position without the domain, so
/// growing and deleting (backward shift) need no rehashing, and the hash half filters out nearly
/// every other domain before its slot is read.
#[derive(Debug)]
pub(super) struct Index {
    /// The hasher: the standard library's SipHash-1-3 with random keys, per cache.
    key: RandomState,
    table: Vec<u64>,
    len: usize,
}

const EMPTY: u64 = u64::MAX;

impl Index {
    pub(super) fn new() -> Self {
        Self {
            key: RandomState::new(),
            table: Vec::new(),
            len: 0,
        }
    }

    /// The number of domains indexed.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn hash(&self, domain: &str) -> u32 {
        self.key.hash_one(domain) as u32
    }

    fn mask(&self) -> usize {
        self.table.len().wrapping_sub(1)
    }

    /// The slot of `domain`, given how to read a slot's domain.
    pub(super) fn get<'s>(
        &self,
        domain: &str,
        name: impl Fn(u32) -> Option<&'s [u8]>,
    ) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let hash = self.hash(domain);
        let mask = self.mask();
        let mut pos = hash as usize & mask;
        loop {
            let word = self.table[pos];
            if word == EMPTY {
                return None;
            }
            let slot = word as u32;
            if (word >> 32) as u32 == hash && name(slot) == Some(domain.as_bytes()) {
                return Some(slot);
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Adds `domain` (absent) at `slot`.
    pub(super) fn insert(&mut self, domain: &str, slot: u32) {
        // At most three quarters full.
        if (self.len + 1) * 4 > self.table.len() * 3 {
            self.grow();
        }
        let word = u64::from(self.hash(domain)) << 32 | u64::from(slot);
        self.place(word);
        self.len += 1;
    }

    fn place(&mut self, word: u64) {
        let mask = self.mask();
        let mut pos = (word >> 32) as usize & mask;
        while self.table[pos] != EMPTY {
            pos = (pos + 1) & mask;
        }
        self.table[pos] = word;
    }

    fn grow(&mut self) {
        let size = (self.table.len() * 2).max(16);
        let old = core::mem::replace(&mut self.table, vec![EMPTY; size]);
        for word in old.into_iter().filter(|&w| w != EMPTY) {
            self.place(word);
        }
    }

    /// Removes `domain`, which is at `slot`.
    pub(super) fn remove(&mut self, domain: &str, slot: u32) {
        if self.len == 0 {
            return;
        }
        let mask = self.mask();
        let mut hole = self.hash(domain) as usize & mask;
        loop {
            match self.table[hole] {
                EMPTY => return,
                w if w as u32 == slot => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        self.table[hole] = EMPTY;
        self.len -= 1;
        // Backward shift: an entry after the hole moves into it unless its home lies in between.
        let mut pos = hole;
        loop {
            pos = (pos + 1) & mask;
            let word = self.table[pos];
            if word == EMPTY {
                return;
            }
            let home = (word >> 32) as usize & mask;
            if pos.wrapping_sub(home) & mask >= pos.wrapping_sub(hole) & mask {
                self.table[hole] = word;
                self.table[pos] = EMPTY;
                hole = pos;
            }
        }
    }

    /// The slots indexed.
    #[cfg(any(test, fuzzing))]
    pub(super) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.table
            .iter()
            .filter(|&&w| w != EMPTY)
            .map(|&w| w as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_every_name_through_growth_and_backward_shift_deletion() {
        let names: Vec<String> = (0..3000).map(|i| format!("d{i}.example")).collect();
        let name = |i: u32| names.get(i as usize).map(String::as_bytes);
        let mut index = Index::new();
        for (i, n) in names.iter().enumerate() {
            index.insert(n, i as u32);
        }
        // Remove every third, then check every name, present or not.
        for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            index.remove(n, i as u32);
        }
        assert_eq!(index.len, 2000);
        for (i, n) in names.iter().enumerate() {
            let want = (i % 3 != 0).then_some(i as u32);
            assert_eq!(index.get(n, name), want, "{n}");
        }
        assert_eq!(index.get("absent.example", name), None);
        assert_eq!(index.slots().count(), 2000);
    }
}
