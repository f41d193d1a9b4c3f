//! [`Batch`]: the container that carries Arrow rows between timely operators,
//! [`KeyExchange`]: the parallelization contract that routes rows to workers by key, and
//! [`Broadcast`]: the one that gives every worker every row (for small reference data).
//!
//! Every edge of an edgeflow dataflow carries `Batch`es. A batch wraps one Arrow
//! [`RecordBatch`]; its timely timestamp is a lower bound on the event times of its on-time rows
//! (see [`crate::time`]). Inside one process, batches move between worker threads by pointer;
//! only a multi-process cluster serialises them, as Arrow IPC.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use timely::Accountable;
use timely::communication::Push;
use timely::dataflow::channels::pact::DistributorPact;
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::dataflow::channels::{ContainerBytes, Message};

/// A container of rows: zero or one Arrow [`RecordBatch`].
///
/// The empty (default) batch holds no record batch at all, which is what timely expects of a
/// `Default` container.
#[derive(Clone, Default, Debug)]
pub struct Batch {
    rows: Option<RecordBatch>,
}

impl Batch {
    /// Wraps a record batch.
    pub fn new(rows: RecordBatch) -> Self {
        Self { rows: Some(rows) }
    }

    /// The rows, if any.
    pub fn rows(&self) -> Option<&RecordBatch> {
        self.rows.as_ref()
    }

    /// Takes the rows out, leaving an empty batch.
    pub fn take(&mut self) -> Option<RecordBatch> {
        self.rows.take()
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.rows.as_ref().map_or(0, RecordBatch::num_rows)
    }
}

impl From<RecordBatch> for Batch {
    fn from(rows: RecordBatch) -> Self {
        Self::new(rows)
    }
}

impl Accountable for Batch {
    fn record_count(&self) -> i64 {
        self.num_rows() as i64
    }
}

impl ContainerBytes for Batch {
    fn from_bytes(bytes: timely::bytes::arc::Bytes) -> Self {
        // Layout: 8-byte little-endian length, then an Arrow IPC stream, padded to 8 bytes.
        let len = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length prefix")) as usize;
        if len == 0 {
            return Self::default();
        }
        let reader = arrow::ipc::reader::StreamReader::try_new(&bytes[8..8 + len], None).expect(
            "a batch serialised by edgeflow is valid Arrow IPC: this is a bug, please report it",
        );
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect(
            "a batch serialised by edgeflow is valid Arrow IPC: this is a bug, please report it",
        );
        match batches.len() {
            0 => Self::default(),
            1 => Self::new(batches.into_iter().next().expect("one batch")),
            _ => {
                let schema = batches[0].schema();
                Self::new(arrow::compute::concat_batches(&schema, &batches).expect("same schema"))
            }
        }
    }

    fn length_in_bytes(&self) -> usize {
        let len = self.ipc_bytes().len();
        8 + len.div_ceil(8) * 8
    }

    fn into_bytes<W: std::io::Write>(&self, writer: &mut W) {
        let ipc = self.ipc_bytes();
        writer
            .write_all(&(ipc.len() as u64).to_le_bytes())
            .expect("write length");
        writer.write_all(&ipc).expect("write batch");
        let pad = ipc.len().div_ceil(8) * 8 - ipc.len();
        writer.write_all(&[0u8; 8][..pad]).expect("write padding");
    }
}

impl Batch {
    fn ipc_bytes(&self) -> Vec<u8> {
        let Some(rows) = &self.rows else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &rows.schema())
            .expect("IPC writer over a Vec cannot fail");
        writer.write(rows).expect("IPC write to a Vec cannot fail");
        writer.finish().expect("IPC finish to a Vec cannot fail");
        out
    }
}

/// Hashes the given key columns of every row into `hashes` (one entry per row).
///
/// The hash is stable within a process and across processes of the same build, which is all an
/// exchange needs. Nulls hash to a fixed value.
pub fn hash_key_columns(rows: &RecordBatch, key_columns: &[usize], hashes: &mut Vec<u64>) {
    hashes.clear();
    hashes.resize(rows.num_rows(), 0x9E37_79B9_7F4A_7C15);
    // Fixed seeds: every worker and process of one build routes a key to the same place.
    let state = ahash::RandomState::with_seeds(
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    );
    for &column in key_columns {
        let array = rows.column(column);
        hash_array_into(array, &state, hashes);
    }
}

fn hash_array_into(array: &ArrayRef, state: &impl BuildHasher, hashes: &mut [u64]) {
    let mix = |acc: &mut u64, value: u64| {
        *acc = (acc.rotate_left(5) ^ value).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    };
    macro_rules! hash_primitive {
        ($ty:ty) => {{
            let values = array.as_primitive::<$ty>();
            for (row, acc) in hashes.iter_mut().enumerate() {
                let v = if values.is_null(row) {
                    0
                } else {
                    values.value(row) as u64
                };
                mix(acc, v);
            }
        }};
    }
    use arrow::datatypes::*;
    match array.data_type() {
        DataType::Utf8 => {
            let values = array.as_string::<i32>();
            for (row, acc) in hashes.iter_mut().enumerate() {
                let mut hasher = state.build_hasher();
                if values.is_valid(row) {
                    hasher.write(values.value(row).as_bytes());
                }
                mix(acc, hasher.finish());
            }
        }
        DataType::LargeUtf8 => {
            let values = array.as_string::<i64>();
            for (row, acc) in hashes.iter_mut().enumerate() {
                let mut hasher = state.build_hasher();
                if values.is_valid(row) {
                    hasher.write(values.value(row).as_bytes());
                }
                mix(acc, hasher.finish());
            }
        }
        DataType::Int8 => hash_primitive!(Int8Type),
        DataType::Int16 => hash_primitive!(Int16Type),
        DataType::Int32 => hash_primitive!(Int32Type),
        DataType::Int64 => hash_primitive!(Int64Type),
        DataType::UInt8 => hash_primitive!(UInt8Type),
        DataType::UInt16 => hash_primitive!(UInt16Type),
        DataType::UInt32 => hash_primitive!(UInt32Type),
        DataType::UInt64 => hash_primitive!(UInt64Type),
        DataType::Timestamp(TimeUnit::Millisecond, _) => hash_primitive!(TimestampMillisecondType),
        DataType::Boolean => {
            let values = array.as_boolean();
            for (row, acc) in hashes.iter_mut().enumerate() {
                let v = if values.is_null(row) {
                    2
                } else {
                    values.value(row) as u64
                };
                mix(acc, v);
            }
        }
        DataType::Float64 => {
            let values = array.as_primitive::<Float64Type>();
            for (row, acc) in hashes.iter_mut().enumerate() {
                let v = if values.is_null(row) {
                    0
                } else {
                    values.value(row).to_bits()
                };
                mix(acc, v);
            }
        }
        other => {
            // Any other type is hashed through its display form: slower, but always correct.
            let formatter =
                arrow::util::display::ArrayFormatter::try_new(array.as_ref(), &Default::default());
            for (row, acc) in hashes.iter_mut().enumerate() {
                let mut hasher = state.build_hasher();
                if let Ok(f) = &formatter {
                    hasher.write(f.value(row).to_string().as_bytes());
                } else {
                    hasher.write(format!("{other:?}").as_bytes());
                }
                mix(acc, hasher.finish());
            }
        }
    }
}

/// A [`Distributor`] that splits each batch by the hash of its key columns.
pub struct KeyDistributor {
    key_columns: Arc<[usize]>,
    peers: usize,
    hashes: Vec<u64>,
}

impl Distributor<Batch> for KeyDistributor {
    fn partition<T: Clone, P: Push<Message<T, Batch>>>(
        &mut self,
        container: &mut Batch,
        stamp: &timely::dataflow::channels::Stamp<T>,
        pushers: &mut [P],
    ) {
        let Some(rows) = container.take() else {
            return;
        };
        if rows.num_rows() == 0 {
            return;
        }
        if self.peers == 1 || pushers.len() == 1 {
            Message::push_at(&mut Batch::new(rows), stamp.clone(), &mut pushers[0]);
            return;
        }
        hash_key_columns(&rows, &self.key_columns, &mut self.hashes);
        let mut indices: Vec<Vec<u32>> = vec![Vec::new(); pushers.len()];
        for (row, hash) in self.hashes.iter().enumerate() {
            indices[(*hash % pushers.len() as u64) as usize].push(row as u32);
        }
        for (target, rows_for_target) in indices.into_iter().enumerate() {
            if rows_for_target.is_empty() {
                continue;
            }
            let part = if rows_for_target.len() == rows.num_rows() {
                rows.clone()
            } else {
                take_record_batch(&rows, &UInt32Array::from(rows_for_target))
                    .expect("taking valid indices from a batch cannot fail")
            };
            Message::push_at(&mut Batch::new(part), stamp.clone(), &mut pushers[target]);
        }
    }

    fn flush<T: Clone, P: Push<Message<T, Batch>>>(
        &mut self,
        _stamp: &timely::dataflow::channels::Stamp<T>,
        _pushers: &mut [P],
    ) {
        // Batches are pushed whole in `partition`; nothing is buffered.
    }
}

/// The pact type returned by [`key_exchange`].
pub type KeyExchange = DistributorPact<Box<dyn FnOnce(usize) -> KeyDistributor>>;

/// A pact that sends every row to the worker that owns its key (the given columns).
///
/// With no key columns, every row goes to worker 0, which is what a global (ungrouped)
/// aggregate needs.
pub fn key_exchange(key_columns: Vec<usize>) -> KeyExchange {
    let key_columns: Arc<[usize]> = key_columns.into();
    DistributorPact(Box::new(move |peers| KeyDistributor {
        key_columns,
        peers,
        hashes: Vec::new(),
    }))
}

/// A [`Distributor`] that gives every worker the whole of each batch.
pub struct BroadcastDistributor;

impl Distributor<Batch> for BroadcastDistributor {
    fn partition<T: Clone, P: Push<Message<T, Batch>>>(
        &mut self,
        container: &mut Batch,
        stamp: &timely::dataflow::channels::Stamp<T>,
        pushers: &mut [P],
    ) {
        let Some(rows) = container.take() else {
            return;
        };
        if rows.num_rows() == 0 {
            return;
        }
        // Arrow arrays are shared, so a copy per worker costs a few pointers.
        for pusher in pushers.iter_mut() {
            Message::push_at(&mut Batch::new(rows.clone()), stamp.clone(), pusher);
        }
    }

    fn flush<T: Clone, P: Push<Message<T, Batch>>>(
        &mut self,
        _stamp: &timely::dataflow::channels::Stamp<T>,
        _pushers: &mut [P],
    ) {
        // Batches are pushed whole in `partition`; nothing is buffered.
    }
}

/// The pact type returned by [`broadcast`].
pub type Broadcast = DistributorPact<Box<dyn FnOnce(usize) -> BroadcastDistributor>>;

/// A pact that sends every row to every worker: for small reference data (a device registry)
/// that each worker needs whole, so the rows it is joined with never have to move.
pub fn broadcast() -> Broadcast {
    DistributorPact(Box::new(|_peers| BroadcastDistributor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn sample() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    None,
                    Some("a"),
                ])),
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn batch_round_trips_through_bytes() {
        let batch = Batch::new(sample());
        let mut bytes = Vec::new();
        batch.into_bytes(&mut bytes);
        assert_eq!(bytes.len(), batch.length_in_bytes());
        assert_eq!(bytes.len() % 8, 0);
        let back = Batch::from_bytes(timely::bytes::arc::BytesMut::from(bytes).freeze());
        assert_eq!(back.rows().unwrap(), batch.rows().unwrap());
    }

    #[test]
    fn empty_batch_round_trips() {
        let batch = Batch::default();
        let mut bytes = Vec::new();
        batch.into_bytes(&mut bytes);
        let back = Batch::from_bytes(timely::bytes::arc::BytesMut::from(bytes).freeze());
        assert_eq!(back.num_rows(), 0);
        assert_eq!(back.record_count(), 0);
    }

    #[test]
    fn equal_keys_hash_equally() {
        let rows = sample();
        let mut hashes = Vec::new();
        hash_key_columns(&rows, &[0], &mut hashes);
        assert_eq!(hashes[0], hashes[3]);
        assert_ne!(hashes[0], hashes[1]);
    }
}
