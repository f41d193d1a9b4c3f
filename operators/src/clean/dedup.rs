//! The memory of `dedup`: each combination of the compared fields (in Arrow's row format)
//! with the largest event time it was seen at, forgotten once the watermark passes that time
//! by `horizon`.
//!
//! Built for the hot path (every row of the stream goes through it): a combination of up to
//! [`INLINE`] bytes, which covers a device id and a timestamp, is stored inside the hash
//! table's slot, so remembering a row allocates nothing; a row costs one hash and one probe.
//! Expired combinations count as forgotten at once (the lookup checks the time) and are
//! removed in sweeps every quarter of the horizon, which costs a constant amount of work per
//! row on average, whatever the rate.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};

use ahash::RandomState;
use edgeflow_engine::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use edgeflow_engine::arrow::datatypes::DataType;
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::arrow::row::{RowConverter, Rows, SortField};

pub(crate) use super::dedup_times::TimeDedup;

/// Longest combination stored without an allocation.
pub(crate) const INLINE: usize = 30;

/// One combination of the compared fields.
#[derive(Clone, Debug)]
pub(crate) enum Combo {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Combo {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Combo::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Combo::Heap(bytes.into())
        }
    }

    /// Bytes stored outside the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Combo::Inline { .. } => 0,
            Combo::Heap(bytes) => bytes.len(),
        }
    }

    /// Whether this is the combination `bytes`; compares short ones eight bytes at a time in
    /// line, without a call to `memcmp` (this runs for every row).
    pub(crate) fn is(&self, bytes: &[u8]) -> bool {
        let mine = self.as_bytes();
        if mine.len() != bytes.len() {
            return false;
        }
        let (mine_words, mine_tail) = mine.as_chunks::<8>();
        let (words, tail) = bytes.as_chunks::<8>();
        mine_words
            .iter()
            .zip(words)
            .all(|(a, b)| u64::from_ne_bytes(*a) == u64::from_ne_bytes(*b))
            && mine_tail.iter().zip(tail).all(|(a, b)| a == b)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Combo::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Combo::Heap(bytes) => bytes,
        }
    }
}

// Hashing and equality go by the bytes alone, as for `[u8]`, so that a table of combos can be
// searched with a plain byte slice (`Borrow<[u8]>`).
impl Hash for Combo {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for Combo {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Combo {}

impl std::borrow::Borrow<[u8]> for Combo {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// What [`DedupSet::check`] says about a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not seen within the horizon: kept, and remembered.
    New,
    /// Seen within the horizon: a duplicate.
    Duplicate,
    /// Older than `watermark - horizon`: it can no longer be checked, and passes.
    Unchecked,
}

/// The combinations `dedup` remembers on one worker.
pub(crate) struct DedupSet {
    seen: HashMap<Combo, i64, RandomState>,
    horizon: i64,
    last_sweep: i64,
    /// Bytes of combinations stored outside the table.
    heap_bytes: usize,
}

impl std::fmt::Debug for DedupSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupSet")
            .field("combinations", &self.seen.len())
            .finish()
    }
}

impl DedupSet {
    pub(crate) fn new(horizon: i64, hasher: RandomState) -> Self {
        Self {
            seen: HashMap::with_hasher(hasher),
            horizon,
            last_sweep: i64::MIN,
            heap_bytes: 0,
        }
    }

    /// Combinations remembered (including expired ones not yet swept).
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// A rough size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        // A slot holds the combo (32 bytes) and the time (8), plus a control byte; the table
        // keeps some slots free.
        self.seen.capacity() * (std::mem::size_of::<(Combo, i64)>() + 1) + self.heap_bytes
    }

    /// Checks the combination of a row at event time `time` that arrived with `watermark`,
    /// and remembers it (or its later time).
    pub(crate) fn check(&mut self, combo: &[u8], time: i64, watermark: i64) -> Verdict {
        let horizon = self.horizon;
        let alive = |t: i64| t.saturating_add(horizon) >= watermark;
        if combo.len() > INLINE {
            // Search with the bytes: a long combination is only copied when remembered.
            if let Some(latest) = self.seen.get_mut(combo) {
                return Self::update(latest, time, alive);
            }
            if !alive(time) {
                return Verdict::Unchecked;
            }
            self.heap_bytes += combo.len();
            self.seen.insert(Combo::new(combo), time);
            return Verdict::New;
        }
        match self.seen.entry(Combo::new(combo)) {
            Entry::Occupied(mut entry) => Self::update(entry.get_mut(), time, alive),
            Entry::Vacant(_) if !alive(time) => Verdict::Unchecked,
            Entry::Vacant(entry) => {
                entry.insert(time);
                Verdict::New
            }
        }
    }

    fn update(latest: &mut i64, time: i64, alive: impl Fn(i64) -> bool) -> Verdict {
        if alive(*latest) {
            *latest = (*latest).max(time);
            Verdict::Duplicate
        } else if alive(time) {
            // Forgotten (not yet swept): seen anew.
            *latest = time;
            Verdict::New
        } else {
            Verdict::Unchecked
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
        let mut freed = 0;
        self.seen.retain(|combo, &mut t| {
            let keep = t >= limit;
            if !keep && let Combo::Heap(bytes) = combo {
                freed += bytes.len();
            }
            keep
        });
        self.heap_bytes -= freed;
        // Give memory back after a burst.
        if self.seen.capacity() > 4 * self.seen.len().max(1024) {
            self.seen.shrink_to_fit();
        }
    }

    /// Forgets the oldest combinations beyond `max`, down to 90 % of it (so that a steady
    /// stream of new combinations does not sort on every batch). Returns how many.
    pub(crate) fn enforce_max(&mut self, max: usize) -> usize {
        if self.seen.len() <= max {
            return 0;
        }
        let target = max - max / 10;
        let excess = self.seen.len() - target;
        let mut times: Vec<i64> = self.seen.values().copied().collect();
        let (_, &mut cutoff, _) = times.select_nth_unstable(excess - 1);
        // Everything older than the cutoff goes, then as many at the cutoff as needed.
        let older = times.iter().filter(|&&t| t < cutoff).count();
        let mut at_cutoff = excess - older;
        let mut freed = 0;
        self.seen.retain(|combo, &mut t| {
            let keep = t > cutoff || (t == cutoff && at_cutoff == 0);
            if t == cutoff && at_cutoff > 0 {
                at_cutoff -= 1;
            }
            if !keep && let Combo::Heap(bytes) = combo {
                freed += bytes.len();
            }
            keep
        });
        self.heap_bytes -= freed;
        excess
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.seen = HashMap::with_hasher(self.seen.hasher().clone());
        self.heap_bytes = 0;
    }
}

/// What `dedup` remembers on one worker: every combination, or per rest a set of times.
#[derive(Debug)]
pub(crate) enum DedupMemory {
    Combos(DedupSet),
    Times(TimeDedup),
}

impl DedupMemory {
    /// Combinations remembered.
    pub(crate) fn len(&self) -> usize {
        match self {
            DedupMemory::Combos(set) => set.len(),
            DedupMemory::Times(set) => set.len(),
        }
    }

    /// A rough size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            DedupMemory::Combos(set) => set.bytes(),
            DedupMemory::Times(set) => set.bytes(),
        }
    }

    /// See [`DedupSet::check`] and [`TimeDedup::check`]; `bytes` come from [`DedupBytes`].
    pub(crate) fn check(&mut self, bytes: &[u8], time: i64, watermark: i64) -> Verdict {
        match self {
            DedupMemory::Combos(set) => set.check(bytes, time, watermark),
            DedupMemory::Times(set) => set.check(bytes, time, watermark),
        }
    }

    pub(crate) fn expire(&mut self, watermark: i64) {
        match self {
            DedupMemory::Combos(set) => set.expire(watermark),
            DedupMemory::Times(set) => set.expire(watermark),
        }
    }

    pub(crate) fn enforce_max(&mut self, max: usize) -> usize {
        match self {
            DedupMemory::Combos(set) => set.enforce_max(max),
            DedupMemory::Times(set) => set.enforce_max(max),
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            DedupMemory::Combos(set) => set.clear(),
            DedupMemory::Times(set) => set.clear(),
        }
    }
}

/// How the compared fields of a row (less the event time, when remembered by time) become
/// bytes: one string field as it is, anything else in Arrow's row format.
pub(crate) enum DedupEncoder {
    /// No field besides the event time.
    Nothing,
    /// One `string` field, at this column: its UTF-8 bytes, and a null as the byte `0xFF`,
    /// which no UTF-8 text is.
    Utf8(usize),
    Rows(Vec<usize>, RowConverter),
}

impl std::fmt::Debug for DedupEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DedupEncoder::Nothing => f.write_str("Nothing"),
            DedupEncoder::Utf8(c) => write!(f, "Utf8({c})"),
            DedupEncoder::Rows(c, _) => write!(f, "Rows({c:?})"),
        }
    }
}

/// The compared fields of one batch's rows, as bytes.
pub(crate) enum DedupBytes<'a> {
    Nothing,
    Utf8(&'a StringArray),
    Rows(Rows),
}

const NULL_STRING: &[u8] = &[0xFF];

impl DedupEncoder {
    /// For `columns`, of the data `types`.
    pub(crate) fn new(columns: Vec<usize>, types: &[DataType]) -> Result<Self, ArrowError> {
        Ok(match (columns.as_slice(), types) {
            ([], _) => DedupEncoder::Nothing,
            (&[c], [DataType::Utf8]) => DedupEncoder::Utf8(c),
            _ => {
                let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
                DedupEncoder::Rows(columns, RowConverter::new(fields)?)
            }
        })
    }

    pub(crate) fn encode<'a>(&self, batch: &'a RecordBatch) -> Result<DedupBytes<'a>, ArrowError> {
        Ok(match self {
            DedupEncoder::Nothing => DedupBytes::Nothing,
            DedupEncoder::Utf8(c) => DedupBytes::Utf8(batch.column(*c).as_string::<i32>()),
            DedupEncoder::Rows(columns, converter) => {
                let columns: Vec<ArrayRef> =
                    columns.iter().map(|&c| batch.column(c).clone()).collect();
                DedupBytes::Rows(converter.convert_columns(&columns)?)
            }
        })
    }
}

impl DedupBytes<'_> {
    pub(crate) fn row(&self, row: usize) -> &[u8] {
        match self {
            DedupBytes::Nothing => &[],
            DedupBytes::Utf8(strings) if strings.is_null(row) => NULL_STRING,
            DedupBytes::Utf8(strings) => strings.value(row).as_bytes(),
            DedupBytes::Rows(rows) => rows.row(row).data(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_new_duplicate_or_unchecked_by_the_horizon() {
        let mut set = DedupSet::new(10, RandomState::new());
        let long = [7u8; INLINE + 5];
        for combo in [&b"a"[..], &long[..]] {
            assert_eq!(set.check(combo, 100, 95), Verdict::New);
            assert_eq!(set.check(combo, 100, 110), Verdict::Duplicate);
            // A later sighting moves the time the combination is remembered by.
            assert_eq!(set.check(combo, 105, 110), Verdict::Duplicate);
            assert_eq!(set.check(combo, 100, 115), Verdict::Duplicate);
            // 105 + 10 < 116: forgotten, even before a sweep; an old row cannot be checked.
            assert_eq!(set.check(combo, 100, 116), Verdict::Unchecked);
            assert_eq!(set.check(combo, 110, 116), Verdict::New);
        }
        assert_eq!(set.len(), 2);
        assert!(set.bytes() > INLINE + 5);
        set.expire(121);
        assert_eq!(set.len(), 0);
        assert_eq!(set.heap_bytes, 0);
    }

    #[test]
    fn the_oldest_go_beyond_the_maximum() {
        let mut set = DedupSet::new(1_000, RandomState::new());
        for i in 0..100u8 {
            assert_eq!(set.check(&[i], i64::from(i / 2), 0), Verdict::New);
        }
        assert_eq!(set.enforce_max(50), 55);
        assert_eq!(set.len(), 45);
        // The 45 latest stay: one of the two at time 27, and 28 to 49.
        assert_eq!(set.check(&[99], 0, 0), Verdict::Duplicate);
        assert_eq!(set.check(&[56], 0, 0), Verdict::Duplicate);
        assert_eq!(set.check(&[0], 0, 0), Verdict::New);
        assert_eq!(set.enforce_max(50), 0);
    }
}
