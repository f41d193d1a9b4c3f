//! The memory of `dedup` when the compared fields include the event time, as in the usual
//! `on = ["device_id", "ts"]`: the other fields (the "rest", here the device) name an entry
//! holding the event times seen for them within the horizon, sorted.
//!
//! This is the same answer as remembering every combination (see `dedup.rs`) for much less
//! work: a device reporting every second has about `horizon / 1 s` times in one small entry,
//! instead of as many entries in a large table that a sweep must walk. A row costs one hash
//! of its rest and a look at the end of the entry's times (readings come nearly in order);
//! times older than `watermark - horizon` are dropped from the front of an entry when it is
//! touched, and whole entries in a sweep every quarter of the horizon.

use std::collections::VecDeque;

use ahash::RandomState;
use hashbrown::HashTable;

use super::dedup::{Combo, Verdict};

/// The event times one rest was seen at within the horizon, ascending.
#[derive(Clone, Debug)]
enum Times {
    /// One time: the common case of a combination seen once (no allocation).
    One(i64),
    Many(VecDeque<i64>),
}

impl Times {
    fn len(&self) -> usize {
        match self {
            Times::One(_) => 1,
            Times::Many(times) => times.len(),
        }
    }

    fn oldest(&self) -> Option<i64> {
        match self {
            Times::One(t) => Some(*t),
            Times::Many(times) => times.front().copied(),
        }
    }

    #[cfg(test)]
    fn newest(&self) -> Option<i64> {
        match self {
            Times::One(t) => Some(*t),
            Times::Many(times) => times.back().copied(),
        }
    }

    /// Drops the times before `limit`; returns how many.
    fn prune(&mut self, limit: i64) -> usize {
        match self {
            Times::One(t) => usize::from(*t < limit),
            Times::Many(times) => {
                let before = times.len();
                while times.front().is_some_and(|&t| t < limit) {
                    times.pop_front();
                }
                before - times.len()
            }
        }
    }

    /// Adds `time` unless present; says whether it was added.
    fn insert(&mut self, time: i64) -> bool {
        match self {
            Times::One(t) if *t == time => false,
            Times::One(t) => {
                let mut times = VecDeque::with_capacity(4);
                times.push_back((*t).min(time));
                times.push_back((*t).max(time));
                *self = Times::Many(times);
                true
            }
            Times::Many(times) => {
                // Readings come nearly in order: the newest is the place to look first.
                if times.back().is_none_or(|&last| time > last) {
                    times.push_back(time);
                    return true;
                }
                match times.binary_search(&time) {
                    Ok(_) => false,
                    Err(at) => {
                        times.insert(at, time);
                        true
                    }
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Times::One(_) => 0,
            Times::Many(times) => times.capacity() * 8,
        }
    }
}

/// One rest with its times.
#[derive(Debug)]
struct Entry {
    rest: Combo,
    times: Times,
}

/// The times `dedup` remembers on one worker, per rest of the compared fields.
pub(crate) struct TimeDedup {
    /// By the hash of the rest's bytes (`hasher`); compared with [`Combo::is`].
    entries: HashTable<Entry>,
    hasher: RandomState,
    horizon: i64,
    last_sweep: i64,
    /// Times remembered over all entries (what counts against `max_keys`).
    remembered: usize,
}

impl std::fmt::Debug for TimeDedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeDedup")
            .field("entries", &self.entries.len())
            .field("remembered", &self.remembered)
            .finish()
    }
}

impl TimeDedup {
    pub(crate) fn new(horizon: i64, hasher: RandomState) -> Self {
        Self {
            entries: HashTable::new(),
            hasher,
            horizon,
            last_sweep: i64::MIN,
            remembered: 0,
        }
    }

    /// Combinations (rest and time) remembered, including expired ones not yet dropped.
    pub(crate) fn len(&self) -> usize {
        self.remembered
    }

    /// A rough size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        let slots = self.entries.capacity() * (std::mem::size_of::<Entry>() + 1);
        let heap: usize = self
            .entries
            .iter()
            .map(|entry| entry.rest.heap_bytes() + entry.times.heap_bytes())
            .sum();
        slots + heap
    }

    /// Checks the row whose compared fields other than the event time are `rest`, at event
    /// time `time`, that arrived with `watermark`; remembers it.
    pub(crate) fn check(&mut self, rest: &[u8], time: i64, watermark: i64) -> Verdict {
        let limit = watermark.saturating_sub(self.horizon);
        if time < limit {
            // Its combination would already be forgotten: it cannot be checked.
            return Verdict::Unchecked;
        }
        // Look up with the bytes: the rest is only copied when first remembered.
        let hash = self.hasher.hash_one(rest);
        let Some(Entry { times, .. }) = self.entries.find_mut(hash, |e| e.rest.is(rest)) else {
            let hasher = &self.hasher;
            self.entries.insert_unique(
                hash,
                Entry {
                    rest: Combo::new(rest),
                    times: Times::One(time),
                },
                |e| hasher.hash_one(e.rest.as_bytes()),
            );
            self.remembered += 1;
            return Verdict::New;
        };
        let before = times.len();
        let pruned = times.prune(limit);
        if pruned == before {
            // Everything it held has expired (including a lone `One`).
            *times = Times::One(time);
            self.remembered = self.remembered + 1 - pruned;
            return Verdict::New;
        }
        self.remembered -= pruned;
        if times.insert(time) {
            self.remembered += 1;
            Verdict::New
        } else {
            Verdict::Duplicate
        }
    }

    /// Removes what the watermark has passed by more than the horizon, in a sweep every
    /// quarter of the horizon.
    pub(crate) fn expire(&mut self, watermark: i64) {
        if watermark.saturating_sub(self.last_sweep) < (self.horizon / 4).max(1) {
            return;
        }
        self.last_sweep = watermark;
        let limit = watermark.saturating_sub(self.horizon);
        let mut dropped = 0;
        self.entries.retain(|Entry { times, .. }| {
            let before = times.len();
            let pruned = times.prune(limit);
            dropped += pruned;
            let keep = pruned < before;
            if keep && let Times::Many(many) = times {
                if many.len() == 1 {
                    *times = Times::One(many[0]);
                } else if many.capacity() > 4 * many.len().max(4) {
                    many.shrink_to_fit();
                }
            }
            keep
        });
        self.remembered -= dropped;
        if self.entries.capacity() > 4 * self.entries.len().max(1024) {
            let hasher = &self.hasher;
            self.entries
                .shrink_to_fit(|e| hasher.hash_one(e.rest.as_bytes()));
        }
    }

    /// Forgets the oldest combinations beyond `max`, down to 90 % of it. Returns how many.
    pub(crate) fn enforce_max(&mut self, max: usize) -> usize {
        if self.remembered <= max {
            return 0;
        }
        let target = max - max / 10;
        let excess = self.remembered - target;
        let mut all: Vec<i64> = Vec::with_capacity(self.remembered);
        for Entry { times, .. } in &self.entries {
            match times {
                Times::One(t) => all.push(*t),
                Times::Many(many) => all.extend(many.iter().copied()),
            }
        }
        let (_, &mut cutoff, _) = all.select_nth_unstable(excess - 1);
        // Everything older than the cutoff goes, then as many at the cutoff as needed.
        let older = all.iter().filter(|&&t| t < cutoff).count();
        let mut at_cutoff = excess - older;
        self.entries.retain(|Entry { times, .. }| {
            let before = times.len();
            let mut gone = times.prune(cutoff);
            if gone < before && at_cutoff > 0 && times.oldest() == Some(cutoff) {
                // Times are unique within an entry: at most one sits at the cutoff.
                gone += times.prune(cutoff + 1);
                at_cutoff -= 1;
            }
            gone < before
        });
        self.remembered -= excess;
        excess
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.entries = HashTable::new();
        self.remembered = 0;
    }

    /// The newest time of any entry (for tests).
    #[cfg(test)]
    fn newest(&self) -> Option<i64> {
        self.entries.iter().filter_map(|e| e.times.newest()).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::dedup::{DedupSet, INLINE};

    #[test]
    fn rows_are_new_duplicate_or_unchecked_by_the_horizon() {
        let mut set = TimeDedup::new(10, RandomState::new());
        let long = [7u8; INLINE + 5];
        for rest in [&b"a"[..], &long[..]] {
            assert_eq!(set.check(rest, 100, 95), Verdict::New);
            assert_eq!(set.check(rest, 100, 110), Verdict::Duplicate);
            assert_eq!(set.check(rest, 105, 110), Verdict::New);
            assert_eq!(set.check(rest, 103, 110), Verdict::New);
            assert_eq!(set.check(rest, 105, 112), Verdict::Duplicate);
            // 100 + 10 < 111: forgotten, and too old to check.
            assert_eq!(set.check(rest, 100, 111), Verdict::Unchecked);
        }
        assert_eq!(set.len(), 4);
        set.expire(114);
        // 100 and 103 are gone, 105 stays in each entry.
        assert_eq!(set.len(), 2);
        set.expire(200);
        assert_eq!(set.len(), 0);
        assert!(set.entries.is_empty());
    }

    #[test]
    fn the_oldest_go_beyond_the_maximum() {
        let mut set = TimeDedup::new(1_000, RandomState::new());
        for i in 0..100i64 {
            assert_eq!(set.check(&[(i % 7) as u8], i, 0), Verdict::New);
        }
        assert_eq!(set.enforce_max(50), 55);
        assert_eq!(set.len(), 45);
        // The 45 latest stay: 55 to 99.
        assert_eq!(set.check(&[(55 % 7) as u8], 55, 0), Verdict::Duplicate);
        assert_eq!(set.check(&[(54 % 7) as u8], 54, 0), Verdict::New);
        assert_eq!(set.newest(), Some(99));
        assert_eq!(set.enforce_max(50), 0);
    }

    proptest::proptest! {
        /// The same verdicts as remembering every combination, on disordered input with
        /// duplicates and rows older than the horizon.
        #[test]
        fn agrees_with_remembering_every_combination(
            horizon in 1i64..40,
            rows in proptest::collection::vec((0u8..5, -10i64..20, 0i64..4), 1..2_000),
        ) {
            let mut times = TimeDedup::new(horizon, RandomState::new());
            let mut combos = DedupSet::new(horizon, RandomState::new());
            let mut watermark = 0i64;
            for (device, offset, advance) in rows {
                let time = watermark + offset;
                let mut combo = vec![device];
                combo.extend_from_slice(&time.to_be_bytes());
                proptest::prop_assert_eq!(
                    times.check(&[device], time, watermark),
                    combos.check(&combo, time, watermark),
                    "device {} at {}, watermark {}", device, time, watermark
                );
                watermark += advance;
                times.expire(watermark);
                combos.expire(watermark);
            }
        }
    }
}
