//! The collector's disk layout: segments as date-partitioned Parquet files plus a ledger that
//! makes a resent segment a no-op.
//!
//! ```text
//! out/gateway=gw-01/date=2026-11-26/plant1.upstream-00000000000000000042.parquet
//! out/_segments/gateway=gw-01/plant1.upstream/00000000000000000042.done     (JSON: rows, files)
//! out/_segments/gateway=gw-01/plant1.upstream/00000000000000000042.pending  (while writing)
//! ```
//!
//! Storing a segment:
//! 1. If its `.done` marker exists, the segment is a duplicate: nothing is written.
//! 2. Its rows are split by the UTC date of the event-time column (the arrival date when the
//!    schema names none; `__HIVE_DEFAULT_PARTITION__` for a null event time).
//! 3. A `.pending` marker records the arrival date and the planned files, so that a resend
//!    after a crash picks the same date and therefore the same file names.
//! 4. Each file is written under a hidden temporary name, `fsync`ed, renamed into place and
//!    its folder `fsync`ed. File names are deterministic, so a resend after a crash between a
//!    rename and the marker overwrites the same files instead of adding rows twice.
//! 5. The `.done` marker is written the same durable way; only then is the segment acked.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ::parquet::arrow::ArrowWriter;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::basic::{Compression, ZstdLevel};
use ::parquet::file::properties::WriterProperties;
use edgeflow_engine::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use edgeflow_engine::arrow::compute::{cast, concat_batches, take_record_batch};
use edgeflow_engine::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};
use edgeflow_engine::schema::event_time_column;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{io_reason, parquet_reason};
use crate::flight::protocol::{SegmentRef, format_segment_id};

/// Folder (under the output folder) of the per-segment ledger.
pub const LEDGER_DIR: &str = "_segments";

/// Partition value for rows whose event time is null (Hive's name for a null key).
pub const NULL_DATE: &str = "__HIVE_DEFAULT_PARTITION__";

const DAY_MS: i64 = 86_400_000;

/// A failure to store or read segments, naming the file at fault.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A file or folder could not be written, synced or renamed.
    #[error("cannot write '{path}': {reason}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// A stored file could not be read back.
    #[error("cannot read '{path}': {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// The segment's batches could not be combined or split (mixed schemas in one segment).
    #[error("segment {stream}/{segment} has unusable data: {reason}")]
    BadData {
        /// The segment's stream.
        stream: String,
        /// The segment id.
        segment: String,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    fn write(path: &Path, error: &io::Error) -> Self {
        Self::Write {
            path: path.to_path_buf(),
            reason: io_reason(error),
        }
    }
}

/// The outcome of storing one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Rows the collector holds for the segment.
    pub rows: u64,
    /// True when the segment had been stored before and nothing was written now.
    pub duplicate: bool,
    /// Parquet files holding the segment, relative to the output folder.
    pub files: Vec<String>,
}

/// What the ledger keeps per segment (the `.done` and `.pending` markers).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Marker {
    rows: u64,
    arrival_date: String,
    files: Vec<String>,
}

/// Totals per (gateway, stream), for `ListFlights`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamTotals {
    /// Segments stored.
    pub segments: u64,
    /// Rows stored.
    pub rows: u64,
}

type SegmentKey = (String, String, u64);

/// The output folder with its ledger. Safe to share between threads; segments of the same
/// (gateway, stream, id) are stored one at a time, different ones in parallel.
#[derive(Debug)]
pub struct SegmentStore {
    root: PathBuf,
    totals: Mutex<BTreeMap<(String, String), StreamTotals>>,
    busy: Mutex<HashMap<SegmentKey, Arc<Mutex<()>>>>,
}

impl SegmentStore {
    /// Opens (creating if needed) the output folder and reads the ledger's totals.
    ///
    /// # Errors
    /// The folder cannot be created or the ledger cannot be read.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join(LEDGER_DIR)).map_err(|e| StoreError::write(root, &e))?;
        let mut totals = BTreeMap::new();
        let ledger = root.join(LEDGER_DIR);
        for gateway_dir in read_dir_sorted(&ledger)? {
            let Some(gateway) = file_name(&gateway_dir)
                .strip_prefix("gateway=")
                .map(str::to_owned)
            else {
                continue;
            };
            for stream_dir in read_dir_sorted(&gateway_dir)? {
                let stream = file_name(&stream_dir).to_owned();
                for marker in read_dir_sorted(&stream_dir)? {
                    if marker.extension().is_some_and(|e| e == "done") {
                        let entry: &mut StreamTotals =
                            totals.entry((gateway.clone(), stream.clone())).or_default();
                        entry.segments += 1;
                        entry.rows += read_marker(&marker)?.rows;
                    }
                }
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            totals: Mutex::new(totals),
            busy: Mutex::default(),
        })
    }

    /// The output folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Rows and segments per (gateway, stream).
    pub fn totals(&self) -> BTreeMap<(String, String), StreamTotals> {
        self.totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stores one segment durably (see the module docs), or recognises it as a duplicate.
    /// `today` is the arrival date (`YYYY-MM-DD`) used when rows carry no event time.
    ///
    /// # Errors
    /// A file that cannot be written, or batches that cannot be combined.
    pub fn store(
        &self,
        gateway: &str,
        segment: &SegmentRef,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        today: &str,
    ) -> Result<Stored, StoreError> {
        let key = (gateway.to_owned(), segment.stream.clone(), segment.id);
        let lock = {
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(busy.entry(key.clone()).or_default())
        };
        let result = {
            let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.store_locked(gateway, segment, schema, batches, today)
        };
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        // Two references left (the map's and ours) means nobody else waits for this segment.
        if Arc::strong_count(&lock) == 2 {
            busy.remove(&key);
        }
        result
    }

    fn store_locked(
        &self,
        gateway: &str,
        segment: &SegmentRef,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        today: &str,
    ) -> Result<Stored, StoreError> {
        let id = format_segment_id(segment.id);
        let ledger = self
            .root
            .join(LEDGER_DIR)
            .join(format!("gateway={gateway}"))
            .join(&segment.stream);
        let done = ledger.join(format!("{id}.done"));
        if done.exists() {
            let marker = read_marker(&done)?;
            return Ok(Stored {
                rows: marker.rows,
                duplicate: true,
                files: marker.files,
            });
        }
        let bad = |reason: String| StoreError::BadData {
            stream: segment.stream.clone(),
            segment: id.clone(),
            reason,
        };
        let rows = concat_batches(schema, batches).map_err(|e| bad(e.to_string()))?;
        let pending_path = ledger.join(format!("{id}.pending"));
        let earlier = if pending_path.exists() {
            Some(read_marker(&pending_path)?)
        } else {
            None
        };
        // A resend after a crash keeps the first attempt's arrival date, so that rows without
        // an event time land in the same file as before.
        let arrival_date = earlier
            .as_ref()
            .map_or_else(|| today.to_owned(), |m| m.arrival_date.clone());
        let parts = split_by_date(&rows, &arrival_date).map_err(bad)?;
        let gateway_dir = format!("gateway={gateway}");
        let file_name = format!("{}-{id}.parquet", segment.stream);
        let files: Vec<String> = parts
            .iter()
            .map(|(date, _)| format!("{gateway_dir}/date={date}/{file_name}"))
            .collect();
        let marker = Marker {
            rows: rows.num_rows() as u64,
            arrival_date,
            files,
        };
        create_dirs(&self.root, &ledger)?;
        write_durably(
            &pending_path,
            &serde_json::to_vec(&marker).unwrap_or_default(),
        )?;
        if let Some(earlier) = earlier {
            // Files of an earlier attempt that this plan does not overwrite would hold the
            // same rows a second time.
            for stale in earlier.files.iter().filter(|f| !marker.files.contains(f)) {
                let path = self.root.join(stale);
                if let Err(error) = fs::remove_file(&path)
                    && error.kind() != io::ErrorKind::NotFound
                {
                    return Err(StoreError::write(&path, &error));
                }
            }
        }
        for ((_, part), relative) in parts.iter().zip(&marker.files) {
            let path = self.root.join(relative);
            let folder = path.parent().unwrap_or(&self.root);
            create_dirs(&self.root, folder)?;
            write_parquet(&path, part)?;
        }
        write_durably(&done, &serde_json::to_vec(&marker).unwrap_or_default())?;
        if let Err(error) = fs::remove_file(&pending_path) {
            tracing::warn!(path = %pending_path.display(), reason = %io_reason(&error),
                "Cannot remove a pending marker; it is ignored once the segment is done");
        }
        let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = totals
            .entry((gateway.to_owned(), segment.stream.clone()))
            .or_default();
        entry.segments += 1;
        entry.rows += marker.rows;
        Ok(Stored {
            rows: marker.rows,
            duplicate: false,
            files: marker.files,
        })
    }

    /// The Parquet files of one (gateway, stream), in date then segment order.
    ///
    /// # Errors
    /// A folder that cannot be listed.
    pub fn files_of(&self, gateway: &str, stream: &str) -> Result<Vec<PathBuf>, StoreError> {
        let gateway_dir = self.root.join(format!("gateway={gateway}"));
        if !gateway_dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut files = Vec::new();
        for date_dir in read_dir_sorted(&gateway_dir)? {
            if !file_name(&date_dir).starts_with("date=") {
                continue;
            }
            for file in read_dir_sorted(&date_dir)? {
                if segment_file_stream(file_name(&file)) == Some(stream) {
                    files.push(file);
                }
            }
        }
        // Sort by segment id (the name's end), then date, so rows come back in send order.
        files.sort_by(|a, b| (file_name(a), a.parent()).cmp(&(file_name(b), b.parent())));
        Ok(files)
    }
}

/// The stream part of `<stream>-<20 digits>.parquet`, if the name has that form.
fn segment_file_stream(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".parquet")?;
    let (stream, id) = stem.rsplit_once('-')?;
    (id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit())).then_some(stream)
}

/// Reads every row of a stored Parquet file.
///
/// # Errors
/// [`StoreError::Read`] naming the file.
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    let read = |reason: String| StoreError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| read(io_reason(&e)))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| read(parquet_reason(&e)))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(e.to_string()))
}

/// Splits rows by the UTC date of the event-time column (all on `arrival_date` without one).
fn split_by_date(
    rows: &RecordBatch,
    arrival_date: &str,
) -> Result<Vec<(String, RecordBatch)>, String> {
    if rows.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let Some((column, _)) = event_time_column(rows.schema_ref()) else {
        return Ok(vec![(arrival_date.to_owned(), rows.clone())]);
    };
    let times = cast(
        rows.column(column),
        &DataType::Timestamp(TimeUnit::Millisecond, None),
    )
    .map_err(|e| format!("event-time column is not a timestamp: {e}"))?;
    let times = times.as_primitive::<TimestampMillisecondType>();
    let mut by_day: BTreeMap<Option<i64>, Vec<u32>> = BTreeMap::new();
    for row in 0..times.len() {
        let day = times
            .is_valid(row)
            .then(|| times.value(row).div_euclid(DAY_MS));
        by_day.entry(day).or_default().push(row as u32);
    }
    if by_day.len() == 1 {
        let day = *by_day.keys().next().unwrap_or(&None);
        return Ok(vec![(date_name(day), rows.clone())]);
    }
    by_day
        .into_iter()
        .map(|(day, indices)| {
            let part =
                take_record_batch(rows, &UInt32Array::from(indices)).map_err(|e| e.to_string())?;
            Ok((date_name(day), part))
        })
        .collect()
}

fn date_name(day: Option<i64>) -> String {
    match day.and_then(|d| chrono::DateTime::from_timestamp(d * 86_400, 0)) {
        Some(time) => time.format("%Y-%m-%d").to_string(),
        None => NULL_DATE.to_owned(),
    }
}

/// Writes `rows` to `path` durably: temporary name, fsync, rename, fsync of the folder.
fn write_parquet(path: &Path, rows: &RecordBatch) -> Result<(), StoreError> {
    let temporary = temporary_name(path);
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let file = File::create(&temporary).map_err(|e| StoreError::write(&temporary, &e))?;
    let parquet_error = |e: ::parquet::errors::ParquetError| StoreError::Write {
        path: temporary.clone(),
        reason: parquet_reason(&e),
    };
    let mut writer =
        ArrowWriter::try_new(file, rows.schema(), Some(properties)).map_err(parquet_error)?;
    writer.write(rows).map_err(parquet_error)?;
    let file = writer.into_inner().map_err(parquet_error)?;
    file.sync_all()
        .map_err(|e| StoreError::write(&temporary, &e))?;
    drop(file);
    commit(&temporary, path)
}

/// Writes `bytes` to `path` durably, as [`write_parquet`] does.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let temporary = temporary_name(path);
    let mut file = File::create(&temporary).map_err(|e| StoreError::write(&temporary, &e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::write(&temporary, &e))?;
    drop(file);
    commit(&temporary, path)
}

fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

fn commit(temporary: &Path, path: &Path) -> Result<(), StoreError> {
    fs::rename(temporary, path).map_err(|e| StoreError::write(path, &e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::write(dir, &e))
}

/// Creates `dir` and its missing parents below `root`, syncing each parent so that the new
/// entries survive a crash.
fn create_dirs(root: &Path, dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && parent != root
    {
        create_dirs(root, parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(dir.parent().unwrap_or(root)),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::write(dir, &error)),
    }
}

fn read_marker(path: &Path) -> Result<Marker, StoreError> {
    let bytes = fs::read(path).map_err(|e| StoreError::Read {
        path: path.to_path_buf(),
        reason: io_reason(&e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::Read {
        path: dir.to_path_buf(),
        reason: io_reason(&e),
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.retain(|p| !file_name(p).starts_with('.'));
    paths.sort();
    Ok(paths)
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::array::{Float64Array, TimestampMillisecondArray};
    use edgeflow_engine::arrow::datatypes::Field;
    use edgeflow_engine::schema::schema_with_event_time;

    const T0: i64 = 1_764_115_200_000; // 2025-11-26T00:00:00Z

    fn rows(times: &[Option<i64>], with_event_time: bool) -> (SchemaRef, RecordBatch) {
        let fields = vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("value", DataType::Float64, false),
        ];
        let schema = schema_with_event_time(fields, with_event_time.then_some("ts"));
        let values: Vec<f64> = (0..times.len()).map(|i| i as f64).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMillisecondArray::from(times.to_vec())),
                Arc::new(Float64Array::from(values)),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    fn segment(id: u64) -> SegmentRef {
        SegmentRef {
            stream: "plant.up".into(),
            id,
        }
    }

    #[test]
    fn splits_a_segment_across_dates_and_acks_a_resend_as_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path()).unwrap();
        let (schema, batch) = rows(&[Some(T0 - 1), Some(T0), Some(T0 + 5), None], true);
        let first = store.store(
            "gw-01",
            &segment(3),
            &schema,
            std::slice::from_ref(&batch),
            "2030-01-01",
        );
        let first = first.unwrap();
        assert_eq!(first.rows, 4);
        assert!(!first.duplicate);
        assert_eq!(
            first.files,
            [
                format!("gateway=gw-01/date={NULL_DATE}/plant.up-00000000000000000003.parquet"),
                "gateway=gw-01/date=2025-11-25/plant.up-00000000000000000003.parquet".into(),
                "gateway=gw-01/date=2025-11-26/plant.up-00000000000000000003.parquet".into(),
            ]
        );
        let day2: usize = read_parquet(&dir.path().join(&first.files[2]))
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(day2, 2);
        let again = store
            .store("gw-01", &segment(3), &schema, &[batch], "2030-01-01")
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.rows, 4);
        let totals = store.totals();
        assert_eq!(
            totals[&("gw-01".into(), "plant.up".into())],
            StreamTotals {
                segments: 1,
                rows: 4
            }
        );
        // The ledger survives a restart.
        let reopened = SegmentStore::open(dir.path()).unwrap();
        assert_eq!(reopened.totals(), totals);
        assert_eq!(reopened.files_of("gw-01", "plant.up").unwrap().len(), 3);
        assert!(reopened.files_of("gw-01", "plant").unwrap().is_empty());
    }

    #[test]
    fn rows_without_event_time_use_the_first_attempts_arrival_date() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path()).unwrap();
        let (schema, batch) = rows(&[Some(T0), Some(T0)], false);
        // A crash after the Parquet rename but before the `.done` marker: simulate it by
        // storing, then removing the marker and leaving a pending one with the old date.
        let stored = store.store(
            "gw",
            &segment(1),
            &schema,
            std::slice::from_ref(&batch),
            "2030-01-01",
        );
        assert_eq!(
            stored.unwrap().files,
            ["gateway=gw/date=2030-01-01/plant.up-00000000000000000001.parquet"]
        );
        let ledger = dir.path().join(LEDGER_DIR).join("gateway=gw/plant.up");
        let done = ledger.join("00000000000000000001.done");
        fs::rename(&done, ledger.join("00000000000000000001.pending")).unwrap();
        let resent = store
            .store("gw", &segment(1), &schema, &[batch], "2030-01-02")
            .unwrap();
        assert!(!resent.duplicate);
        assert_eq!(
            resent.files,
            ["gateway=gw/date=2030-01-01/plant.up-00000000000000000001.parquet"]
        );
        let all: usize = store
            .files_of("gw", "plant.up")
            .unwrap()
            .iter()
            .flat_map(|f| read_parquet(f).unwrap())
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(all, 2, "a resend after a crash must not duplicate rows");
    }

    #[test]
    fn segment_file_names_are_recognised() {
        assert_eq!(
            segment_file_stream("a-b.c-00000000000000000001.parquet"),
            Some("a-b.c")
        );
        assert_eq!(segment_file_stream("a-1.parquet"), None);
        assert_eq!(segment_file_stream("a-00000000000000000001.json"), None);
    }
}
