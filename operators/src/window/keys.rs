//! Group keys: mapping each row of a batch to a dense group id within its window, and turning
//! a window's keys back into sorted Arrow columns when it closes.
//!
//! Three encodings, chosen once from the key types:
//!
//! * no key: every row is group 0;
//! * one `Utf8` key: a hash map from `Box<str>` looked up by `&str`, so a row allocates only
//!   when its key is new to the window;
//! * one integer key: a hash map from `i64`;
//! * anything else (several keys, bool, large or view strings, `UInt64`): Arrow's
//!   [`RowConverter`] encodes each row's keys as order-preserving bytes, looked up by `&[u8]`.
//!
//! Null is a key value of its own, and sorts first, as in the row format's default order.

use std::collections::HashMap;
use std::sync::Arc;

use ahash::RandomState;
use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray,
};
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{DataType, FieldRef, Int64Type};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::arrow::row::{RowConverter, Rows, SortField};

use super::Selection;

/// How a window's keys are encoded (fixed for the operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Unit,
    Str,
    Int,
    Rows,
}

/// The per-worker key encoder: chooses the encoding and owns the row converter.
pub(crate) struct KeyEncoder {
    encoding: Encoding,
    columns: Vec<usize>,
    fields: Vec<FieldRef>,
    converter: Option<RowConverter>,
    hasher: RandomState,
}

/// One batch's key columns, prepared for lookups.
pub(crate) enum BatchKeys {
    Unit,
    Str(StringArray),
    Int(Int64Array),
    Rows(Rows),
}

/// The keys of one open window: key → group id (dense, from 0).
pub(crate) enum KeyTable {
    Unit {
        groups: u32,
    },
    Str {
        map: HashMap<Box<str>, u32, RandomState>,
        null: Option<u32>,
    },
    Int {
        map: HashMap<i64, u32, RandomState>,
        null: Option<u32>,
    },
    Rows {
        map: HashMap<Box<[u8]>, u32, RandomState>,
    },
}

fn is_small_int(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

impl KeyEncoder {
    /// An encoder for the key columns `columns`, whose fields are `fields`.
    pub(crate) fn new(columns: Vec<usize>, fields: Vec<FieldRef>) -> Result<Self, ArrowError> {
        let encoding = match fields.as_slice() {
            [] => Encoding::Unit,
            [one] if one.data_type() == &DataType::Utf8 => Encoding::Str,
            [one] if is_small_int(one.data_type()) => Encoding::Int,
            _ => Encoding::Rows,
        };
        let converter = if encoding == Encoding::Rows {
            let sort_fields = fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            Some(RowConverter::new(sort_fields)?)
        } else {
            None
        };
        Ok(Self {
            encoding,
            columns,
            fields,
            converter,
            hasher: RandomState::new(),
        })
    }

    /// Prepares the key columns of `rows` (casts or row-encodes them once per batch).
    pub(crate) fn prepare(&self, rows: &RecordBatch) -> Result<BatchKeys, ArrowError> {
        Ok(match self.encoding {
            Encoding::Unit => BatchKeys::Unit,
            Encoding::Str => BatchKeys::Str(rows.column(self.columns[0]).as_string().clone()),
            Encoding::Int => {
                let column = cast(rows.column(self.columns[0]), &DataType::Int64)?;
                BatchKeys::Int(column.as_primitive::<Int64Type>().clone())
            }
            Encoding::Rows => {
                let columns: Vec<ArrayRef> = self
                    .columns
                    .iter()
                    .map(|&c| rows.column(c).clone())
                    .collect();
                BatchKeys::Rows(self.converter()?.convert_columns(&columns)?)
            }
        })
    }

    /// An empty table for a new window.
    pub(crate) fn table(&self) -> KeyTable {
        self.table_with_capacity(0)
    }

    /// An empty table with room for `capacity` keys without rehashing (a new window usually
    /// meets about as many keys as the one before).
    pub(crate) fn table_with_capacity(&self, capacity: usize) -> KeyTable {
        let hasher = self.hasher.clone();
        match self.encoding {
            Encoding::Unit => KeyTable::Unit { groups: 0 },
            Encoding::Str => KeyTable::Str {
                map: HashMap::with_capacity_and_hasher(capacity, hasher),
                null: None,
            },
            Encoding::Int => KeyTable::Int {
                map: HashMap::with_capacity_and_hasher(capacity, hasher),
                null: None,
            },
            Encoding::Rows => KeyTable::Rows {
                map: HashMap::with_capacity_and_hasher(capacity, hasher),
            },
        }
    }

    fn converter(&self) -> Result<&RowConverter, ArrowError> {
        self.converter.as_ref().ok_or_else(|| {
            ArrowError::InvalidArgumentError("row keys without a row converter".into())
        })
    }

    /// The key columns of `table`, sorted by key, and the group id of each output row.
    pub(crate) fn sorted(&self, table: &KeyTable) -> Result<(Vec<ArrayRef>, Vec<u32>), ArrowError> {
        Ok(match table {
            KeyTable::Unit { groups } => (Vec::new(), (0..*groups).collect()),
            KeyTable::Str { map, null } => {
                let mut entries: Vec<(&str, u32)> =
                    map.iter().map(|(k, &g)| (k.as_ref(), g)).collect();
                entries.sort_unstable();
                let order: Vec<u32> = null
                    .iter()
                    .copied()
                    .chain(entries.iter().map(|e| e.1))
                    .collect();
                let values: StringArray = null
                    .iter()
                    .map(|_| None)
                    .chain(entries.iter().map(|e| Some(e.0)))
                    .collect();
                (vec![Arc::new(values) as ArrayRef], order)
            }
            KeyTable::Int { map, null } => {
                let mut entries: Vec<(i64, u32)> = map.iter().map(|(&k, &g)| (k, g)).collect();
                entries.sort_unstable();
                let order: Vec<u32> = null
                    .iter()
                    .copied()
                    .chain(entries.iter().map(|e| e.1))
                    .collect();
                let values: Int64Array = null
                    .iter()
                    .map(|_| None)
                    .chain(entries.iter().map(|e| Some(e.0)))
                    .collect();
                let values: ArrayRef = Arc::new(values);
                let target = self.fields[0].data_type();
                let values = if target == &DataType::Int64 {
                    values
                } else {
                    cast(&values, target)?
                };
                (vec![values], order)
            }
            KeyTable::Rows { map } => {
                let mut entries: Vec<(&[u8], u32)> =
                    map.iter().map(|(k, &g)| (k.as_ref(), g)).collect();
                entries.sort_unstable();
                let converter = self.converter()?;
                let parser = converter.parser();
                let columns = converter.convert_rows(entries.iter().map(|e| parser.parse(e.0)))?;
                (columns, entries.iter().map(|e| e.1).collect())
            }
        })
    }
}

impl KeyTable {
    /// Number of groups.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Unit { groups } => *groups as usize,
            Self::Str { map, null } => map.len() + usize::from(null.is_some()),
            Self::Int { map, null } => map.len() + usize::from(null.is_some()),
            Self::Rows { map } => map.len(),
        }
    }

    /// Writes the group id of each selected row into `gids` (one per selected row), adding
    /// groups for keys new to the window.
    pub(crate) fn assign(&mut self, keys: &BatchKeys, rows: Selection<'_>, gids: &mut Vec<u32>) {
        gids.clear();
        gids.resize(rows.len(), 0);
        let mut next = self.len() as u32;
        match (self, keys) {
            (Self::Unit { groups }, BatchKeys::Unit) => {
                // Every row is group 0; `gids` is already all zeros.
                *groups = 1;
            }
            (Self::Str { map, null }, BatchKeys::Str(values)) => {
                // Rows often come in runs of one device: remember the last key looked up.
                let mut last: Option<(&str, u32)> = None;
                rows.for_each(|k, row| {
                    gids[k] = if values.is_null(row) {
                        *null.get_or_insert_with(|| take_next(&mut next))
                    } else {
                        let key = values.value(row);
                        match last {
                            Some((last_key, gid)) if last_key == key => gid,
                            _ => {
                                let gid = match map.get(key) {
                                    Some(&gid) => gid,
                                    None => {
                                        let gid = take_next(&mut next);
                                        map.insert(key.into(), gid);
                                        gid
                                    }
                                };
                                last = Some((key, gid));
                                gid
                            }
                        }
                    };
                });
            }
            (Self::Int { map, null }, BatchKeys::Int(values)) => {
                let raw = values.values();
                rows.for_each(|k, row| {
                    gids[k] = if values.is_null(row) {
                        *null.get_or_insert_with(|| take_next(&mut next))
                    } else {
                        *map.entry(raw[row]).or_insert_with(|| take_next(&mut next))
                    };
                });
            }
            (Self::Rows { map }, BatchKeys::Rows(encoded)) => {
                rows.for_each(|k, row| {
                    let key = encoded.row(row).data();
                    gids[k] = match map.get(key) {
                        Some(&gid) => gid,
                        None => {
                            let gid = take_next(&mut next);
                            map.insert(key.into(), gid);
                            gid
                        }
                    };
                });
            }
            _ => unreachable!("a window's key table and the batch keys come from one encoder"),
        }
    }
}

impl KeyTable {
    /// Adds every key of `other` that this table lacks, as new groups (numbered after the
    /// existing ones, in no particular order); returns how many were added. Both tables must
    /// come from one encoder.
    pub(crate) fn add_keys_of(&mut self, other: &KeyTable) -> usize {
        let before = self.len();
        let mut next = before as u32;
        match (self, other) {
            (Self::Unit { groups }, Self::Unit { groups: theirs }) => {
                *groups = (*groups).max(*theirs);
            }
            (
                Self::Str { map, null },
                Self::Str {
                    map: theirs,
                    null: their_null,
                },
            ) => {
                if their_null.is_some() && null.is_none() {
                    *null = Some(take_next(&mut next));
                }
                for key in theirs.keys() {
                    if !map.contains_key(key) {
                        map.insert(key.clone(), take_next(&mut next));
                    }
                }
            }
            (
                Self::Int { map, null },
                Self::Int {
                    map: theirs,
                    null: their_null,
                },
            ) => {
                if their_null.is_some() && null.is_none() {
                    *null = Some(take_next(&mut next));
                }
                for &key in theirs.keys() {
                    map.entry(key).or_insert_with(|| take_next(&mut next));
                }
            }
            (Self::Rows { map }, Self::Rows { map: theirs }) => {
                for key in theirs.keys() {
                    if !map.contains_key(key) {
                        map.insert(key.clone(), take_next(&mut next));
                    }
                }
            }
            _ => unreachable!("both key tables come from one encoder"),
        }
        next as usize - before
    }
}

impl KeyTable {
    /// Keeps only the groups with a new id in `new_ids` (indexed by old id), renumbered to it.
    pub(crate) fn renumber(&mut self, new_ids: &[Option<u32>]) {
        let new = |gid: &mut u32| match new_ids[*gid as usize] {
            Some(id) => {
                *gid = id;
                true
            }
            None => false,
        };
        match self {
            Self::Unit { groups } => {
                *groups = new_ids.iter().flatten().count() as u32;
            }
            Self::Str { map, null } => {
                map.retain(|_, gid| new(gid));
                *null = null.and_then(|gid| new_ids[gid as usize]);
            }
            Self::Int { map, null } => {
                map.retain(|_, gid| new(gid));
                *null = null.and_then(|gid| new_ids[gid as usize]);
            }
            Self::Rows { map } => map.retain(|_, gid| new(gid)),
        }
    }
}

fn take_next(next: &mut u32) -> u32 {
    let gid = *next;
    *next += 1;
    gid
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::array::{BooleanArray, Int32Array};
    use edgeflow_engine::arrow::datatypes::{Field, Schema};
    use edgeflow_engine::arrow::util::pretty::pretty_format_columns;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("i", DataType::Int32, true),
            Field::new("b", DataType::Boolean, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("b"),
                    Some("a"),
                    None,
                    Some("b"),
                    Some("a"),
                ])),
                Arc::new(Int32Array::from(vec![
                    Some(3),
                    None,
                    Some(-1),
                    Some(3),
                    None,
                ])),
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                    Some(true),
                ])),
            ],
        )
        .unwrap()
    }

    fn group(columns: &[usize]) -> (Vec<u32>, Vec<u32>, Vec<ArrayRef>) {
        let rows = batch();
        let fields = columns
            .iter()
            .map(|&c| Arc::new(rows.schema().field(c).clone()))
            .collect();
        let encoder = KeyEncoder::new(columns.to_vec(), fields).unwrap();
        let keys = encoder.prepare(&rows).unwrap();
        let mut table = encoder.table();
        let mut gids = Vec::new();
        table.assign(&keys, Selection::All(rows.num_rows()), &mut gids);
        let (columns, order) = encoder.sorted(&table).unwrap();
        (gids, order, columns)
    }

    fn show(columns: &[ArrayRef]) -> String {
        columns
            .iter()
            .map(|c| {
                pretty_format_columns("k", std::slice::from_ref(c))
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn string_keys_group_and_sort_with_null_first() {
        let (gids, order, columns) = group(&[0]);
        assert_eq!(gids, [0, 1, 2, 0, 1]);
        assert_eq!(order, [2, 1, 0]);
        let keys = columns[0].as_string::<i32>();
        assert!(keys.is_null(0));
        assert_eq!((keys.value(1), keys.value(2)), ("a", "b"));
    }

    #[test]
    fn int_keys_keep_their_type() {
        let (gids, order, columns) = group(&[1]);
        assert_eq!(gids, [0, 1, 2, 0, 1]);
        assert_eq!(order, [1, 2, 0]);
        assert_eq!(columns[0].data_type(), &DataType::Int32);
        assert_eq!(
            show(&columns).lines().filter(|l| l.contains("| 3")).count(),
            1
        );
    }

    #[test]
    fn several_keys_use_rows_and_sort_lexicographically() {
        let (gids, order, columns) = group(&[0, 2]);
        // (b,true) (a,false) (null,null) (b,true) (a,true)
        assert_eq!(gids, [0, 1, 2, 0, 3]);
        assert_eq!(order, [2, 1, 3, 0]);
        assert_eq!(columns.len(), 2);
        assert_eq!(columns[1].data_type(), &DataType::Boolean);
    }

    #[test]
    fn bool_key_alone_uses_rows() {
        let (gids, order, _) = group(&[2]);
        assert_eq!(gids, [0, 1, 2, 0, 0]);
        assert_eq!(order, [2, 1, 0]);
    }

    #[test]
    fn no_keys_is_one_group_and_selection_is_respected() {
        let (gids, order, columns) = group(&[]);
        assert_eq!(gids, [0; 5]);
        assert_eq!(order, [0]);
        assert!(columns.is_empty());

        let rows = batch();
        let encoder =
            KeyEncoder::new(vec![0], vec![Arc::new(rows.schema().field(0).clone())]).unwrap();
        let keys = encoder.prepare(&rows).unwrap();
        let mut table = encoder.table();
        let mut gids = Vec::new();
        table.assign(&keys, Selection::Rows(&[4, 0]), &mut gids);
        assert_eq!(gids, [0, 1]);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn add_keys_of_fills_in_missing_keys_for_every_encoding() {
        let rows = batch();
        for columns in [vec![], vec![0], vec![1], vec![0, 2]] {
            let fields = columns
                .iter()
                .map(|&c| Arc::new(rows.schema().field(c).clone()))
                .collect();
            let encoder = KeyEncoder::new(columns.clone(), fields).unwrap();
            let keys = encoder.prepare(&rows).unwrap();
            let mut gids = Vec::new();
            let mut all = encoder.table();
            all.assign(&keys, Selection::All(rows.num_rows()), &mut gids);
            let mut some = encoder.table();
            some.assign(&keys, Selection::Rows(&[0]), &mut gids);
            let added = some.add_keys_of(&all);
            assert_eq!(added + 1, all.len(), "keys {columns:?}");
            assert_eq!(some.len(), all.len());
            assert_eq!(
                encoder.sorted(&some).unwrap().0,
                encoder.sorted(&all).unwrap().0
            );
            // Group ids stay dense and distinct.
            let (_, mut order) = encoder.sorted(&some).unwrap();
            order.sort_unstable();
            assert_eq!(order, (0..all.len() as u32).collect::<Vec<_>>());
            assert_eq!(some.add_keys_of(&all), 0);
        }
    }

    #[test]
    fn renumber_keeps_and_renames_groups() {
        let rows = batch();
        for columns in [vec![0], vec![1], vec![0, 2]] {
            let fields = columns
                .iter()
                .map(|&c| Arc::new(rows.schema().field(c).clone()))
                .collect();
            let encoder = KeyEncoder::new(columns.clone(), fields).unwrap();
            let keys = encoder.prepare(&rows).unwrap();
            let mut table = encoder.table();
            let mut gids = Vec::new();
            table.assign(&keys, Selection::All(rows.num_rows()), &mut gids);
            // Keep every other group, renumbered from 0 in id order.
            let groups = table.len();
            let mut next = 0;
            let new_ids: Vec<Option<u32>> = (0..groups)
                .map(|g| {
                    (g % 2 == 1).then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            table.renumber(&new_ids);
            assert_eq!(table.len(), groups / 2, "keys {columns:?}");
            let mut again = Vec::new();
            table.assign(&keys, Selection::All(rows.num_rows()), &mut again);
            for (row, &old) in gids.iter().enumerate() {
                if let Some(id) = new_ids[old as usize] {
                    assert_eq!(again[row], id, "row {row}, keys {columns:?}");
                } else {
                    assert!(again[row] >= next, "a forgotten key gets a new id");
                }
            }
        }
    }
}
