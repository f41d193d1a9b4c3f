//! The Parquet sink's file handling: partitions, rotation and atomic commits.
//!
//! Rows go to one open file per partition (`date=YYYY-MM-DD`, the UTC date of the row's event
//! time; `date=__HIVE_DEFAULT_PARTITION__` for a null one; no folder without partitioning).
//! A file is written as `.part-<unix_ms>-<seq>.parquet.tmp` and committed when it reaches
//! `max_rows_per_file`, when it has been open for `roll_interval`, when more than
//! [`MAX_OPEN_FILES`] are open (the least recently written goes first), and at the end of the
//! input. Committing closes the Parquet writer, `fsync`s the file, renames it to
//! `part-<unix_ms>-<seq>.parquet` and `fsync`s the folder, so a reader never sees half a file
//! and a crash leaves at worst a hidden `.tmp` file.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::parquet::arrow::ArrowWriter;
use ::parquet::file::properties::WriterProperties;
use edgeflow_engine::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMillisecondArray};
use edgeflow_engine::arrow::compute::filter_record_batch;
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::{NodeMetrics, SinkSummary};

use crate::error::{ConnectorError, io_reason, parquet_reason};

/// Most files open at once (one per partition receiving rows).
pub(crate) const MAX_OPEN_FILES: usize = 16;

/// Buffered bytes of a file's current row group beyond which it is flushed early.
const FLUSH_BYTES: usize = 64 << 20;

/// Partition folder for rows without an event time (Hive's name for a null key).
pub(crate) const NULL_PARTITION: &str = "date=__HIVE_DEFAULT_PARTITION__";

const DAY_MS: i64 = 86_400_000;

/// How the writer lays out and rotates files.
#[derive(Clone, Debug)]
pub(crate) struct WriterSettings {
    pub folder: PathBuf,
    pub schema: SchemaRef,
    pub properties: WriterProperties,
    /// Column whose UTC date picks the partition, if partitioning.
    pub partition_column: Option<usize>,
    pub max_rows_per_file: u64,
    pub roll_interval: Duration,
}

struct OpenFile {
    writer: ArrowWriter<File>,
    temporary: PathBuf,
    final_path: PathBuf,
    rows: u64,
    opened: Instant,
    last_write: Instant,
}

/// Writes batches into partitioned, rotating Parquet files.
pub(crate) struct PartitionedWriter {
    settings: WriterSettings,
    metrics: Arc<NodeMetrics>,
    open: BTreeMap<Option<String>, OpenFile>,
    sequence: u64,
    summary: SinkSummary,
}

impl PartitionedWriter {
    pub(crate) fn new(settings: WriterSettings, metrics: Arc<NodeMetrics>) -> Self {
        Self {
            settings,
            metrics,
            open: BTreeMap::new(),
            sequence: 0,
            summary: SinkSummary::default(),
        }
    }

    /// Writes `rows`, splitting them by partition and across files as needed.
    pub(crate) fn write(&mut self, rows: &RecordBatch) -> Result<(), ConnectorError> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let max_rows = self.settings.max_rows_per_file;
        for (partition, part) in self.split_by_partition(rows)? {
            let mut offset = 0;
            while offset < part.num_rows() {
                let file = self.file_for(&partition)?;
                let room = max_rows.saturating_sub(file.rows).max(1);
                let take = (part.num_rows() - offset).min(room.min(usize::MAX as u64) as usize);
                let slice = part.slice(offset, take);
                let write = file.writer.write(&slice).and_then(|()| {
                    if file.writer.in_progress_size() > FLUSH_BYTES {
                        file.writer.flush()
                    } else {
                        Ok(())
                    }
                });
                if let Err(error) = write {
                    return Err(ConnectorError::write_output(
                        &file.final_path,
                        parquet_reason(&error),
                    ));
                }
                file.rows += take as u64;
                file.last_write = Instant::now();
                offset += take;
                if file.rows >= max_rows {
                    self.commit(&partition)?;
                }
            }
        }
        Ok(())
    }

    /// Commits every file open for at least the roll interval.
    pub(crate) fn roll_due(&mut self, now: Instant) -> Result<(), ConnectorError> {
        let due: Vec<Option<String>> = self
            .open
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.opened) >= self.settings.roll_interval)
            .map(|(partition, _)| partition.clone())
            .collect();
        for partition in due {
            self.commit(&partition)?;
        }
        Ok(())
    }

    /// Commits every open file and reports what was written.
    pub(crate) fn finish(mut self) -> Result<SinkSummary, ConnectorError> {
        let partitions: Vec<Option<String>> = self.open.keys().cloned().collect();
        for partition in partitions {
            if let Err(error) = self.commit(&partition) {
                self.abandon();
                return Err(error);
            }
        }
        Ok(self.summary)
    }

    /// Removes the temporary files of everything still open (after an error).
    pub(crate) fn abandon(mut self) {
        for (_, file) in std::mem::take(&mut self.open) {
            drop(file.writer);
            // Best effort: the error that led here is the one worth reporting.
            let _ = fs::remove_file(&file.temporary);
        }
    }

    fn split_by_partition(
        &self,
        rows: &RecordBatch,
    ) -> Result<Vec<(Option<String>, RecordBatch)>, ConnectorError> {
        let Some(column) = self.settings.partition_column else {
            return Ok(vec![(None, rows.clone())]);
        };
        let Some(times) = rows
            .column(column)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
        else {
            return Ok(vec![(None, rows.clone())]);
        };
        let day = |i: usize| times.is_valid(i).then(|| times.value(i).div_euclid(DAY_MS));
        let first = day(0);
        if (1..times.len()).all(|i| day(i) == first) {
            return Ok(vec![(Some(partition_name(first)), rows.clone())]);
        }
        let days: Vec<Option<i64>> = (0..times.len()).map(day).collect();
        let mut distinct = days.clone();
        distinct.sort_unstable();
        distinct.dedup();
        distinct
            .into_iter()
            .map(|wanted| {
                let mask: BooleanArray = days.iter().map(|d| Some(*d == wanted)).collect();
                filter_record_batch(rows, &mask)
                    .map(|part| (Some(partition_name(wanted)), part))
                    .map_err(|error| ConnectorError::Internal(format!("partition filter: {error}")))
            })
            .collect()
    }

    fn file_for(&mut self, partition: &Option<String>) -> Result<&mut OpenFile, ConnectorError> {
        if !self.open.contains_key(partition) {
            if self.open.len() >= MAX_OPEN_FILES
                && let Some(oldest) = self
                    .open
                    .iter()
                    .min_by_key(|(_, f)| f.last_write)
                    .map(|(p, _)| p.clone())
            {
                self.commit(&oldest)?;
            }
            let file = self.create(partition.as_deref())?;
            self.open.insert(partition.clone(), file);
        }
        self.open
            .get_mut(partition)
            .ok_or_else(|| ConnectorError::Internal("open file vanished".into()))
    }

    fn create(&mut self, partition: Option<&str>) -> Result<OpenFile, ConnectorError> {
        let folder = match partition {
            Some(name) => self.settings.folder.join(name),
            None => self.settings.folder.clone(),
        };
        if !folder.is_dir() {
            let cannot_create = |error: io::Error| ConnectorError::CreateOutput {
                path: folder.display().to_string(),
                reason: io_reason(&error),
            };
            fs::create_dir_all(&folder).map_err(cannot_create)?;
            // Make the new folder's entry durable too.
            sync_folder(&self.settings.folder).map_err(cannot_create)?;
        }
        let stamp = chrono::Utc::now().timestamp_millis();
        loop {
            self.sequence += 1;
            let name = format!("part-{stamp:013}-{:06}.parquet", self.sequence);
            let final_path = folder.join(&name);
            let temporary = folder.join(format!(".{name}.tmp"));
            if final_path.exists() {
                continue;
            }
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)
            {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(ConnectorError::write_output(&temporary, io_reason(&error)));
                }
            };
            let writer = ArrowWriter::try_new(
                file,
                self.settings.schema.clone(),
                Some(self.settings.properties.clone()),
            )
            .map_err(|error| {
                let _ = fs::remove_file(&temporary);
                ConnectorError::write_output(&temporary, parquet_reason(&error))
            })?;
            let now = Instant::now();
            return Ok(OpenFile {
                writer,
                temporary,
                final_path,
                rows: 0,
                opened: now,
                last_write: now,
            });
        }
    }

    fn commit(&mut self, partition: &Option<String>) -> Result<(), ConnectorError> {
        let Some(file) = self.open.remove(partition) else {
            return Ok(());
        };
        let OpenFile {
            writer,
            temporary,
            final_path,
            rows,
            ..
        } = file;
        let fail = |reason: String| {
            let _ = fs::remove_file(&temporary);
            ConnectorError::write_output(&final_path, reason)
        };
        let handle = writer
            .into_inner()
            .map_err(|error| fail(parquet_reason(&error)))?;
        handle.sync_all().map_err(|error| fail(io_reason(&error)))?;
        let bytes = handle
            .metadata()
            .map_err(|error| fail(io_reason(&error)))?
            .len();
        drop(handle);
        fs::rename(&temporary, &final_path).map_err(|error| fail(io_reason(&error)))?;
        if let Some(folder) = final_path.parent() {
            sync_folder(folder)
                .map_err(|error| ConnectorError::write_output(&final_path, io_reason(&error)))?;
        }
        self.metrics.add_file_written(bytes);
        self.summary.files += 1;
        self.summary.rows += rows;
        Ok(())
    }
}

/// The partition folder for a UTC day number (days since the epoch).
fn partition_name(day: Option<i64>) -> String {
    let Some(day) = day else {
        return NULL_PARTITION.to_string();
    };
    match chrono::DateTime::from_timestamp_millis(day.saturating_mul(DAY_MS)) {
        Some(moment) => format!("date={}", moment.format("%Y-%m-%d")),
        None => NULL_PARTITION.to_string(),
    }
}

/// `fsync`s a folder so renames and new entries in it survive a crash.
pub(crate) fn sync_folder(folder: &Path) -> io::Result<()> {
    File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_utc_dates() {
        assert_eq!(partition_name(Some(0)), "date=1970-01-01");
        assert_eq!(
            partition_name(Some(1_704_067_200_000 / DAY_MS)),
            "date=2024-01-01"
        );
        assert_eq!(partition_name(Some(-1)), "date=1969-12-31");
        assert_eq!(partition_name(None), NULL_PARTITION);
    }
}
