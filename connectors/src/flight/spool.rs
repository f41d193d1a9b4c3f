//! The `flight` sink's store-and-forward spool: a folder of segment files, each one Arrow IPC
//! stream holding one batch-group, kept until the collector acknowledged it.
//!
//! # Layout
//!
//! ```text
//! spool/
//!   .lock                              held (flock) while a sink uses the folder
//!   next-id                            the id floor: no id below it will ever be given again
//!   00000000000000000042-1000.arrows   segment 42, 1000 rows (Arrow IPC stream, compressed)
//!   00000000000000000043-87.arrows
//!   00000000000000000040-1000.arrows.corrupt   found damaged at start, kept for a post-mortem
//! ```
//!
//! # Guarantees
//!
//! * A segment is durable before it is sent: written under a temporary name, `fsync`ed,
//!   renamed to its final name, and the folder `fsync`ed ([`Spool::append`]).
//! * Segment ids strictly increase for the life of the folder, across restarts, even when the
//!   folder is empty at start: ids are reserved in blocks of [`ID_BLOCK`] by durably writing
//!   the new floor to `next-id` before the first id of a block is used, and on open the next
//!   id is the larger of the floor and the highest segment + 1. The collector relies on this
//!   to drop a segment it already stored. A `next-id` that cannot be read falls back to the
//!   current time in microseconds, above any id a sensible spool ever used.
//! * A segment file that is damaged (cut short by a crash or disk trouble) is renamed to
//!   `*.corrupt` when found, at open (a quick check of its schema header and end marker) or
//!   when read for sending (a full decode), logged, and counted; it never stops the sink.
//! * Leftover temporary files (a crash between write and rename) are deleted at open.
//! * Deleting an acknowledged segment is not `fsync`ed: after a power cut it may come back
//!   and be sent again, which the collector answers with `duplicate = true` (same id).
//!
//! The spool is synchronous (plain file IO); the sink calls it from blocking threads.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use thiserror::Error;

use super::options::Compression;
use super::protocol::format_segment_id;
use crate::error::io_reason;

/// How many ids one durable write of `next-id` reserves.
pub const ID_BLOCK: u64 = 1000;

/// The file holding the id floor.
pub const NEXT_ID_FILE: &str = "next-id";

const LOCK_FILE: &str = ".lock";
const SEGMENT_EXTENSION: &str = "arrows";
const CORRUPT_SUFFIX: &str = ".corrupt";
const TEMP_PREFIX: &str = ".tmp-";
/// The Arrow IPC end-of-stream marker: continuation, then a zero length.
const END_OF_STREAM: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

/// A spool operation that failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file or the folder could not be read, written or synced.
    #[error("spool {action} '{path}': {reason}")]
    Io {
        /// What was being done (`cannot create folder`, `cannot write segment`, …).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// Another sink or edgeflow process uses the folder.
    #[error(
        "spool folder '{0}' is in use by another flight sink or edgeflow process; give each sink its own spool"
    )]
    Busy(PathBuf),
    /// Rows could not be encoded as Arrow IPC (a bug).
    #[error("cannot encode rows as Arrow IPC: {0}. This is a bug: please report it")]
    Encode(String),
    /// A segment file does not decode.
    #[error("spool segment '{path}' is damaged: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_error(action: &'static str, path: &Path, error: &std::io::Error) -> SpoolError {
    SpoolError::Io {
        action,
        path: path.to_path_buf(),
        reason: io_reason(error),
    }
}

/// One segment in the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its id.
    pub id: u64,
    /// Its file.
    pub path: PathBuf,
    /// The file's size.
    pub bytes: u64,
    /// Rows it holds.
    pub rows: u64,
    /// When it was written (the file's modification time for segments found at open).
    pub created: SystemTime,
}

/// What [`Spool::open`] found besides good segments.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Damaged segments moved aside, with the reason.
    pub corrupt: Vec<(PathBuf, String)>,
    /// Leftover temporary files deleted.
    pub removed_temp: usize,
    /// Set when `next-id` could not be read and the time-based floor was used.
    pub floor_reset: Option<String>,
}

/// The spool folder of one sink. See the module documentation.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    _lock: File,
    segments: BTreeMap<u64, Segment>,
    bytes: u64,
    next_id: u64,
    reserved: u64,
    in_flight: Option<u64>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, takes its lock, moves damaged segments
    /// aside and deletes leftover temporary files.
    ///
    /// # Errors
    /// The folder cannot be created, read or locked.
    pub fn open(dir: &Path) -> Result<(Self, OpenReport), SpoolError> {
        fs::create_dir_all(dir).map_err(|e| io_error("cannot create folder", dir, &e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("cannot create lock file", &lock_path, &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Busy(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => {
                return Err(io_error("cannot lock", &lock_path, &e));
            }
        }
        let mut report = OpenReport::default();
        let mut segments = BTreeMap::new();
        let entries = fs::read_dir(dir).map_err(|e| io_error("cannot list folder", dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list folder", dir, &e))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) {
                fs::remove_file(&path)
                    .map_err(|e| io_error("cannot remove temporary file", &path, &e))?;
                report.removed_temp += 1;
                continue;
            }
            let Some((id, rows)) = parse_segment_name(&name) else {
                continue;
            };
            match check_segment(&path) {
                Ok(bytes) => {
                    let created = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or_else(|_| SystemTime::now());
                    segments.insert(
                        id,
                        Segment {
                            id,
                            path,
                            bytes,
                            rows,
                            created,
                        },
                    );
                }
                Err(reason) => {
                    move_aside(&path)?;
                    report.corrupt.push((path, reason));
                }
            }
        }
        let floor_path = dir.join(NEXT_ID_FILE);
        let floor = match fs::read_to_string(&floor_path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(floor) => floor,
                Err(_) => {
                    report.floor_reset = Some(format!(
                        "'{}' holds '{}', not a number",
                        floor_path.display(),
                        text.trim()
                    ));
                    time_floor()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A folder with segments but no floor was written by hand or by a crash
                // before the first reservation landed: the segments themselves bound the ids.
                1
            }
            Err(e) => {
                report.floor_reset = Some(format!(
                    "cannot read '{}': {}",
                    floor_path.display(),
                    io_reason(&e)
                ));
                time_floor()
            }
        };
        // Corrupt files also carry ids that were used: count them so they are not reused.
        let highest_corrupt = fs::read_dir(dir)
            .map_err(|e| io_error("cannot list folder", dir, &e))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                parse_segment_name(name.strip_suffix(CORRUPT_SUFFIX)?).map(|(id, _)| id)
            })
            .max();
        let highest = segments.keys().next_back().copied().max(highest_corrupt);
        let next_id = floor.max(highest.map_or(1, |h| h + 1)).max(1);
        let bytes = segments.values().map(|s| s.bytes).sum();
        Ok((
            Self {
                dir: dir.to_path_buf(),
                _lock: lock,
                segments,
                bytes,
                next_id,
                reserved: next_id,
                in_flight: None,
            },
            report,
        ))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of all segments.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether no segment waits.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The id the next segment will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }

    /// The oldest segment's write time.
    pub fn oldest_created(&self) -> Option<SystemTime> {
        self.segments.values().map(|s| s.created).min()
    }

    /// The oldest segment, marked as being sent (so [`Self::drop_oldest`] leaves it alone)
    /// until [`Self::remove`] or [`Self::release`].
    pub fn take_next(&mut self) -> Option<Segment> {
        let segment = self.segments.values().next().cloned()?;
        self.in_flight = Some(segment.id);
        Some(segment)
    }

    /// Ends the in-flight mark without removing the segment (the send failed).
    pub fn release(&mut self) {
        self.in_flight = None;
    }

    /// Writes `data` (one encoded segment of `rows` rows) durably under the next id.
    ///
    /// # Errors
    /// The file or the id floor could not be written.
    pub fn append(&mut self, data: &[u8], rows: u64) -> Result<Segment, SpoolError> {
        if self.next_id >= self.reserved {
            let floor = self.next_id + ID_BLOCK;
            write_durably(&self.dir, NEXT_ID_FILE, floor.to_string().as_bytes())?;
            self.reserved = floor;
        }
        let id = self.next_id;
        let name = segment_name(id, rows);
        write_durably(&self.dir, &name, data)?;
        self.next_id += 1;
        let segment = Segment {
            id,
            path: self.dir.join(name),
            bytes: data.len() as u64,
            rows,
            created: SystemTime::now(),
        };
        self.bytes += segment.bytes;
        self.segments.insert(id, segment.clone());
        Ok(segment)
    }

    /// Deletes segment `id` (acknowledged, or dropped); `None` when it is not in the spool.
    ///
    /// # Errors
    /// The file could not be deleted (it then stays listed).
    pub fn remove(&mut self, id: u64) -> Result<Option<Segment>, SpoolError> {
        if self.in_flight == Some(id) {
            self.in_flight = None;
        }
        let Some(segment) = self.segments.get(&id) else {
            return Ok(None);
        };
        match fs::remove_file(&segment.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("cannot delete segment", &segment.path, &e)),
        }
        let segment = self.segments.remove(&id).expect("checked above");
        self.bytes -= segment.bytes;
        Ok(Some(segment))
    }

    /// Deletes the oldest segment that is not being sent; `None` when there is none.
    ///
    /// # Errors
    /// The file could not be deleted.
    pub fn drop_oldest(&mut self) -> Result<Option<Segment>, SpoolError> {
        let victim = self
            .segments
            .keys()
            .copied()
            .find(|id| Some(*id) != self.in_flight);
        match victim {
            Some(id) => self.remove(id),
            None => Ok(None),
        }
    }

    /// Renames segment `id` to `*.corrupt` and forgets it.
    ///
    /// # Errors
    /// The rename failed.
    pub fn move_aside(&mut self, id: u64) -> Result<Option<Segment>, SpoolError> {
        if self.in_flight == Some(id) {
            self.in_flight = None;
        }
        let Some(segment) = self.segments.remove(&id) else {
            return Ok(None);
        };
        self.bytes -= segment.bytes;
        move_aside(&segment.path)?;
        Ok(Some(segment))
    }
}

/// Encodes batches as one Arrow IPC stream (a segment's contents).
///
/// # Errors
/// [`SpoolError::Encode`].
pub fn encode(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    compression: Compression,
) -> Result<Vec<u8>, SpoolError> {
    let encode_error = |e: arrow::error::ArrowError| SpoolError::Encode(e.to_string());
    let options = IpcWriteOptions::default()
        .try_with_compression(compression.ipc())
        .map_err(encode_error)?;
    let mut writer =
        StreamWriter::try_new_with_options(Vec::new(), schema, options).map_err(encode_error)?;
    for batch in batches {
        writer.write(batch).map_err(encode_error)?;
    }
    writer.finish().map_err(encode_error)?;
    writer.into_inner().map_err(encode_error)
}

/// Reads a segment's schema and batches (a full decode, which also checks it).
///
/// # Errors
/// [`SpoolError::Io`] when the file cannot be opened, [`SpoolError::Corrupt`] when it does
/// not decode.
pub fn read_segment(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>), SpoolError> {
    let file = File::open(path).map_err(|e| io_error("cannot open segment", path, &e))?;
    let corrupt = |reason: String| SpoolError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let reader = StreamReader::try_new(BufReader::new(file), None)
        .map_err(|e| corrupt(format!("no readable Arrow IPC schema: {e}")))?;
    let schema = reader.schema();
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(batch.map_err(|e| corrupt(format!("a batch does not decode: {e}")))?);
    }
    Ok((schema, batches))
}

/// `<20-digit id>-<rows>.arrows`.
pub fn segment_name(id: u64, rows: u64) -> String {
    format!("{}-{rows}.{SEGMENT_EXTENSION}", format_segment_id(id))
}

/// The id and rows of a segment file name.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    let (id, rows) = stem.split_once('-')?;
    if id.len() != 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rows.is_empty() || !rows.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.parse().ok()?, rows.parse().ok()?))
}

/// The quick check at open: a schema header that decodes and the end-of-stream marker at the
/// end. Returns the file size.
fn check_segment(path: &Path) -> Result<u64, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {}", io_reason(&e)))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot stat: {}", io_reason(&e)))?
        .len();
    if size < END_OF_STREAM.len() as u64 {
        return Err(format!("only {size} bytes"));
    }
    file.seek(SeekFrom::End(-(END_OF_STREAM.len() as i64)))
        .map_err(|e| format!("cannot seek: {}", io_reason(&e)))?;
    let mut tail = [0u8; 8];
    file.read_exact(&mut tail)
        .map_err(|e| format!("cannot read: {}", io_reason(&e)))?;
    if tail != END_OF_STREAM {
        return Err("no Arrow IPC end-of-stream marker: the file is cut short".to_string());
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot seek: {}", io_reason(&e)))?;
    StreamReader::try_new(BufReader::new(file), None)
        .map_err(|e| format!("no readable Arrow IPC schema: {e}"))?;
    Ok(size)
}

fn move_aside(path: &Path) -> Result<(), SpoolError> {
    let mut target = path.as_os_str().to_owned();
    target.push(CORRUPT_SUFFIX);
    fs::rename(path, &target).map_err(|e| io_error("cannot move aside segment", path, &e))
}

/// Writes `name` in `dir` atomically and durably: temporary file, fsync, rename, fsync folder.
fn write_durably(dir: &Path, name: &str, data: &[u8]) -> Result<(), SpoolError> {
    let temp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let target = dir.join(name);
    let result = (|| {
        let mut file = File::create(&temp).map_err(|e| io_error("cannot create", &temp, &e))?;
        file.write_all(data)
            .map_err(|e| io_error("cannot write", &temp, &e))?;
        file.sync_all()
            .map_err(|e| io_error("cannot sync", &temp, &e))?;
        fs::rename(&temp, &target).map_err(|e| io_error("cannot rename", &temp, &e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("cannot sync folder", dir, &e))
    })();
    if result.is_err() {
        // A failed write leaves no half file behind (best effort: the disk may be gone).
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Microseconds since the epoch: the id floor when `next-id` is lost.
fn time_floor() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]))
    }

    fn segment(values: &[i64], compression: Compression) -> Vec<u8> {
        let batch =
            RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values.to_vec()))])
                .unwrap();
        encode(&schema(), &[batch], compression).unwrap()
    }

    fn values(path: &Path) -> Vec<i64> {
        let (_, batches) = read_segment(path).unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                column.values().to_vec()
            })
            .collect()
    }

    #[test]
    fn ids_increase_across_reopen_even_when_the_spool_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let first = spool.append(&segment(&[1], Compression::Zstd), 1).unwrap();
        let second = spool.append(&segment(&[2], Compression::Zstd), 1).unwrap();
        assert_eq!((first.id, second.id), (1, 2));
        spool.remove(1).unwrap();
        spool.remove(2).unwrap();
        assert!(spool.is_empty());
        drop(spool);

        // Empty after the restart, yet the old ids are never given again.
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        assert!(spool.is_empty());
        let third = spool.append(&segment(&[3], Compression::Zstd), 1).unwrap();
        assert!(third.id > 2, "id {} reused", third.id);
        drop(spool);

        // With segments left and the floor file gone, the segments bound the ids.
        fs::remove_file(dir.path().join(NEXT_ID_FILE)).unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let fourth = spool.append(&segment(&[4], Compression::Zstd), 1).unwrap();
        assert!(fourth.id > third.id);
        drop(spool);

        // An unreadable floor falls back to the clock, far above every id used.
        fs::write(dir.path().join(NEXT_ID_FILE), "garbage").unwrap();
        let (mut spool, report) = Spool::open(dir.path()).unwrap();
        assert!(report.floor_reset.unwrap().contains("garbage"));
        let fifth = spool.append(&segment(&[5], Compression::Zstd), 1).unwrap();
        assert!(fifth.id > 1_000_000_000_000, "id {}", fifth.id);
    }

    #[test]
    fn one_durable_floor_write_per_block_of_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        spool.append(&segment(&[1], Compression::None), 1).unwrap();
        let floor = fs::read_to_string(dir.path().join(NEXT_ID_FILE)).unwrap();
        assert_eq!(floor, (1 + ID_BLOCK).to_string());
        for _ in 1..ID_BLOCK {
            spool.next_id += 1;
        }
        spool.append(&segment(&[1], Compression::None), 1).unwrap();
        let floor = fs::read_to_string(dir.path().join(NEXT_ID_FILE)).unwrap();
        assert_eq!(floor, (1 + 2 * ID_BLOCK).to_string());
    }

    #[test]
    fn segments_are_listed_and_read_in_id_order_with_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let codecs = [Compression::Zstd, Compression::Lz4, Compression::None];
        for (index, codec) in codecs.into_iter().enumerate() {
            let base = index as i64 * 10;
            spool.append(&segment(&[base, base + 1], codec), 2).unwrap();
        }
        drop(spool);
        let (mut spool, report) = Spool::open(dir.path()).unwrap();
        assert!(report.corrupt.is_empty());
        assert_eq!(spool.len(), 3);
        let mut drained = Vec::new();
        while let Some(next) = spool.take_next() {
            assert_eq!(next.rows, 2);
            drained.extend(values(&next.path));
            spool.remove(next.id).unwrap();
        }
        assert_eq!(drained, vec![0, 1, 10, 11, 20, 21]);
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn drop_oldest_spares_the_segment_being_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        for value in 0..3 {
            spool
                .append(&segment(&[value], Compression::None), 1)
                .unwrap();
        }
        let sending = spool.take_next().unwrap();
        assert_eq!(sending.id, 1);
        assert_eq!(spool.drop_oldest().unwrap().unwrap().id, 2);
        assert_eq!(spool.drop_oldest().unwrap().unwrap().id, 3);
        assert_eq!(spool.drop_oldest().unwrap(), None);
        spool.release();
        assert_eq!(spool.drop_oldest().unwrap().unwrap().id, 1);
        assert!(spool.is_empty());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "only .lock and next-id"
        );
    }

    #[test]
    fn damaged_segments_are_moved_aside_and_temporary_files_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let good = spool
            .append(&segment(&[1, 2, 3], Compression::Zstd), 3)
            .unwrap();
        let cut = spool
            .append(&segment(&[4, 5, 6], Compression::Zstd), 3)
            .unwrap();
        drop(spool);
        // A crash mid-write: the second segment lost its tail; a temp file was left.
        let data = fs::read(&cut.path).unwrap();
        fs::write(&cut.path, &data[..data.len() / 2]).unwrap();
        fs::write(dir.path().join(segment_name(99, 1)), b"not arrow at all").unwrap();
        fs::write(dir.path().join(".tmp-x.arrows"), b"half").unwrap();
        // Without the floor file, the ids of damaged segments still bound the next id.
        fs::remove_file(dir.path().join(NEXT_ID_FILE)).unwrap();

        let (spool, report) = Spool::open(dir.path()).unwrap();
        assert_eq!(
            spool.segments().map(|s| s.id).collect::<Vec<_>>(),
            vec![good.id]
        );
        assert_eq!(report.corrupt.len(), 2);
        assert_eq!(report.removed_temp, 1);
        let mut corrupt = cut.path.as_os_str().to_owned();
        corrupt.push(".corrupt");
        assert!(Path::new(&corrupt).exists());
        // Ids of damaged segments are not reused either.
        assert_eq!(spool.next_id(), 100);
    }

    #[test]
    fn a_segment_that_fails_a_full_decode_is_reported_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        // A schema header and an end marker around half a batch: the quick check at open
        // passes, the full decode before sending does not.
        let header_len = encode(&schema(), &[], Compression::None).unwrap().len() - 8;
        let full = segment(&(0..1000).collect::<Vec<_>>(), Compression::None);
        let batch_len = full.len() - 8 - header_len;
        let mut damaged = full[..header_len + batch_len / 2].to_vec();
        damaged.extend_from_slice(&END_OF_STREAM);
        let written = spool.append(&damaged, 1000).unwrap();
        assert_eq!(check_segment(&written.path), Ok(damaged.len() as u64));
        match read_segment(&written.path) {
            Err(SpoolError::Corrupt { path, .. }) => assert_eq!(path, written.path),
            other => panic!("expected a damaged segment, got {other:?}"),
        }
        spool.move_aside(written.id).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn a_second_user_of_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_spool, _) = Spool::open(dir.path()).unwrap();
        match Spool::open(dir.path()) {
            Err(SpoolError::Busy(path)) => assert_eq!(path, dir.path()),
            other => panic!("expected Busy, got {other:?}"),
        }
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(42, 7), "00000000000000000042-7.arrows");
        assert_eq!(
            parse_segment_name("00000000000000000042-7.arrows"),
            Some((42, 7))
        );
        assert_eq!(parse_segment_name("42-7.arrows"), None);
        assert_eq!(
            parse_segment_name("00000000000000000042-7.arrows.corrupt"),
            None
        );
        assert_eq!(parse_segment_name("00000000000000000042-.arrows"), None);
    }
}
