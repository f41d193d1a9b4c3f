//! [`KeyTable`]: the keys one worker's `anomaly` operator knows, as dense ids (the index of
//! each key's detector), with the time each key was last seen and the forgetting of the least
//! recently seen keys past `max_keys`.
//!
//! A single text key (`group_by = ["device_id"]`, the usual case) is looked up by its bytes;
//! other keys go through Arrow's row format first. Either way there is one hash lookup per
//! row and no allocation except for a new key. Ids of forgotten keys are reused, so the
//! per-id vectors of the state never grow past the most keys held at once.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use ahash::RandomState;
use edgeflow_engine::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use edgeflow_engine::arrow::datatypes::{DataType, Schema};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::arrow::row::{OwnedRow, Row, RowConverter, SortField};

/// Bytes a key keeps inline in the hash table.
const INLINE: usize = 22;

/// A key's bytes: inline up to [`INLINE`] bytes (most device ids), so that comparing a row's
/// key with the table's does not follow a pointer to a cold allocation (that miss was 8 % of
/// `mad`'s time with 10,000 keys); longer keys on the heap.
#[derive(Clone, Debug)]
enum KeyBytes {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            Self::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(key.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

// Equality and hashing are those of the bytes, as `Borrow<[u8]>` requires.
impl PartialEq for KeyBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for KeyBytes {}

impl Hash for KeyBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The keys of one worker.
pub(crate) struct KeyTable {
    /// The group-by columns (empty: one key for every row).
    columns: Vec<usize>,
    /// Encodes the group-by values as bytes (`None` without `group_by`); also decodes the
    /// kept key values back into columns for `gap` rows.
    converter: Option<RowConverter>,
    /// With a single Utf8 group-by column, the text itself is the map key.
    text_key: bool,
    map: HashMap<KeyBytes, u32, RandomState>,
    /// The id of the null text key (with `text_key`; other keys encode nulls themselves).
    null_id: Option<u32>,
    /// Whether to keep each key's values (`gap` emits them).
    keep_rows: bool,
    /// Id → the key's values (with `keep_rows`).
    rows: Vec<Option<OwnedRow>>,
    /// Id → the event time of the key's latest row.
    latest: Vec<i64>,
    /// Id → whether a key holds it (false: free for reuse).
    live: Vec<bool>,
    free: Vec<u32>,
}

impl KeyTable {
    /// An empty table for the group-by `columns` of `schema`.
    pub(crate) fn new(
        schema: &Schema,
        columns: &[usize],
        keep_rows: bool,
    ) -> Result<Self, ArrowError> {
        let converter = if columns.is_empty() {
            None
        } else {
            let fields = columns
                .iter()
                .map(|&k| SortField::new(schema.field(k).data_type().clone()))
                .collect();
            Some(RowConverter::new(fields)?)
        };
        let text_key =
            columns.len() == 1 && schema.field(columns[0]).data_type() == &DataType::Utf8;
        Ok(Self {
            columns: columns.to_vec(),
            converter,
            text_key,
            map: HashMap::default(),
            null_id: None,
            keep_rows,
            rows: Vec::new(),
            latest: Vec::new(),
            live: Vec::new(),
            free: Vec::new(),
        })
    }

    /// Keys held now.
    pub(crate) fn held(&self) -> usize {
        self.live.len() - self.free.len()
    }

    /// Writes the key id of every row of `rows` to `ids`, calling `new_key` for each key not
    /// held before (with an id that is fresh or was freed by forgetting).
    pub(crate) fn ids(
        &mut self,
        rows: &RecordBatch,
        ids: &mut Vec<u32>,
        mut new_key: impl FnMut(u32),
    ) -> Result<(), ArrowError> {
        ids.clear();
        let n = rows.num_rows();
        if self.columns.is_empty() {
            if self.live.is_empty() {
                let id = self.allocate(None);
                new_key(id);
            }
            ids.resize(n, 0);
            return Ok(());
        }
        if self.text_key {
            let column = rows.column(self.columns[0]).clone();
            let text = column.as_string::<i32>();
            for i in 0..n {
                let id = if text.is_null(i) {
                    match self.null_id {
                        Some(id) => id,
                        None => {
                            let id = self.new_text_key(&column, i, None)?;
                            self.null_id = Some(id);
                            new_key(id);
                            id
                        }
                    }
                } else {
                    let bytes = text.value(i).as_bytes();
                    match self.map.get(bytes) {
                        Some(&id) => id,
                        None => {
                            let id = self.new_text_key(&column, i, Some(bytes))?;
                            new_key(id);
                            id
                        }
                    }
                };
                ids.push(id);
            }
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&k| rows.column(k).clone())
            .collect();
        let Some(converter) = &self.converter else {
            return Ok(());
        };
        let encoded = converter.convert_columns(&columns)?;
        for row in encoded.iter() {
            let id = match self.map.get(row.as_ref()) {
                Some(&id) => id,
                None => {
                    let owned = self.keep_rows.then(|| row.owned());
                    let id = self.allocate(owned);
                    self.map.insert(KeyBytes::new(row.as_ref()), id);
                    new_key(id);
                    id
                }
            };
            ids.push(id);
        }
        Ok(())
    }

    fn new_text_key(
        &mut self,
        column: &ArrayRef,
        row: usize,
        bytes: Option<&[u8]>,
    ) -> Result<u32, ArrowError> {
        let owned = match (&self.converter, self.keep_rows) {
            (Some(converter), true) => Some(
                converter
                    .convert_columns(&[column.slice(row, 1)])?
                    .row(0)
                    .owned(),
            ),
            _ => None,
        };
        let id = self.allocate(owned);
        if let Some(bytes) = bytes {
            self.map.insert(KeyBytes::new(bytes), id);
        }
        Ok(id)
    }

    fn allocate(&mut self, row: Option<OwnedRow>) -> u32 {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.live.push(false);
                self.latest.push(i64::MIN);
                self.rows.push(None);
                (self.live.len() - 1) as u32
            }
        };
        let at = id as usize;
        self.live[at] = true;
        self.latest[at] = i64::MIN;
        self.rows[at] = row;
        id
    }

    /// Records that key `id` had a row at `time`.
    pub(crate) fn touch(&mut self, id: u32, time: i64) {
        let latest = &mut self.latest[id as usize];
        *latest = (*latest).max(time);
    }

    /// The values of key `id` (kept with `keep_rows`).
    pub(crate) fn row(&self, id: u32) -> Option<Row<'_>> {
        self.rows[id as usize].as_ref().map(OwnedRow::row)
    }

    /// Decodes key rows back into the group-by columns.
    pub(crate) fn columns<'a>(
        &self,
        rows: impl IntoIterator<Item = Row<'a>>,
    ) -> Result<Vec<ArrayRef>, ArrowError> {
        match &self.converter {
            Some(converter) => converter.convert_rows(rows),
            None => Ok(Vec::new()),
        }
    }

    /// The group-by columns, in the order [`Self::columns`] returns them.
    pub(crate) fn key_columns(&self) -> &[usize] {
        &self.columns
    }

    /// Forgets the least recently seen keys (by the event time of their latest row, ties by
    /// id) when more than `limit` are held: down to 90 % of `limit`, so that a steady stream
    /// of new keys does not select on every batch. Returns the ids freed.
    pub(crate) fn forget_least_recent(&mut self, limit: usize) -> Vec<u32> {
        let held = self.held();
        if held <= limit {
            return Vec::new();
        }
        let keep = limit - limit / 10;
        let forget = held - keep;
        let mut ages: Vec<(i64, u32)> = (0..self.live.len())
            .filter(|&id| self.live[id])
            .map(|id| (self.latest[id], id as u32))
            .collect();
        if forget < ages.len() {
            ages.select_nth_unstable(forget);
        }
        ages.truncate(forget);
        let freed: Vec<u32> = ages.into_iter().map(|(_, id)| id).collect();
        for &id in &freed {
            let at = id as usize;
            self.live[at] = false;
            self.rows[at] = None;
            self.free.push(id);
        }
        let live = &self.live;
        self.map.retain(|_, id| live[*id as usize]);
        if self.null_id.is_some_and(|id| !live[id as usize]) {
            self.null_id = None;
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use edgeflow_engine::arrow::array::{Int64Array, StringArray};
    use edgeflow_engine::arrow::datatypes::Field;

    use super::*;

    fn batch(names: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Int64Array::from(vec![1; names.len()])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn text_and_row_keys_agree_and_forgetting_reuses_ids() {
        let rows = batch(&[Some("a"), Some("b"), None, Some("a"), Some(""), None]);
        let schema = rows.schema();
        // One text column (by its bytes) and the same column next to another (row format).
        let mut text = KeyTable::new(&schema, &[0], true).unwrap();
        let mut pair = KeyTable::new(&schema, &[0, 1], false).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut new = 0;
        text.ids(&rows, &mut a, |_| new += 1).unwrap();
        pair.ids(&rows, &mut b, |_| {}).unwrap();
        assert_eq!(new, 4, "a, b, null and the empty text are four keys");
        assert_eq!(a, b);
        assert_eq!(a, [0, 1, 2, 0, 3, 2]);
        let values = text
            .columns([text.row(2).unwrap(), text.row(3).unwrap()])
            .unwrap();
        let values = values[0].as_string::<i32>();
        assert!(values.is_null(0) && values.value(1).is_empty());

        // Seen at 10, 40, 20 and 30: with at most 3 (keeping 3 − 0), "a" (10) goes.
        for (id, time) in [(0, 10), (1, 40), (2, 20), (3, 30)] {
            text.touch(id, time);
        }
        assert_eq!(text.forget_least_recent(3), [0]);
        assert_eq!(text.held(), 3);
        let mut again = Vec::new();
        let mut fresh = Vec::new();
        text.ids(&batch(&[Some("a"), Some("b")]), &mut again, |id| {
            fresh.push(id)
        })
        .unwrap();
        assert_eq!(again, [0, 1], "a comes back as a new key in the freed id");
        assert_eq!(fresh, [0]);
        // Down to 90 % of the limit: 4 held, limit 2 → keep 2 − 0 = 2.
        for (id, time) in [(0, 50), (2, 60), (3, 5)] {
            text.touch(id, time);
        }
        let mut gone = text.forget_least_recent(2);
        gone.sort_unstable();
        assert_eq!(gone, [1, 3]);
        assert_eq!(text.live.len(), 4, "ids are reused, not added");

        // Keys longer than the inline bytes live on the heap and are found again.
        let long = "a-device-id-longer-than-22-bytes";
        let mut ids = Vec::new();
        text.ids(
            &batch(&[Some(long), Some("b"), Some(long)]),
            &mut ids,
            |_| {},
        )
        .unwrap();
        assert_eq!(ids[0], ids[2]);
        assert_ne!(ids[0], ids[1]);
    }
}
