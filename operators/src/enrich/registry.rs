//! The device registry file: reading it (CSV, JSON array, JSON lines or Parquet, the latter
//! in [`super::parquet`]), typing its values,
//! and the difference between two versions, which feeds the differential collection.
//!
//! A registry maps a key (a device id) to one row of values. Reading checks everything and
//! fails as a whole, naming the file and the line (or JSON entry) at fault, so that a
//! half-written or malformed file never replaces a good registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The type of one registry column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CellType {
    Str,
    Float,
    Int,
    Bool,
}

/// One registry value. Floats are kept as their bits so that rows are `Ord`, as
/// differential dataflow requires (equal bits, equal values: the order itself is not used).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum Cell {
    Null,
    Str(String),
    Float(u64),
    Int(i64),
    Bool(bool),
}

impl Cell {
    /// Reads a CSV field (empty means null).
    fn from_text(text: &str, kind: CellType) -> Option<Cell> {
        let text = text.trim();
        if text.is_empty() {
            return Some(Cell::Null);
        }
        Some(match kind {
            CellType::Str => Cell::Str(text.to_string()),
            CellType::Float => Cell::Float(text.parse::<f64>().ok()?.to_bits()),
            CellType::Int => Cell::Int(text.parse().ok()?),
            CellType::Bool => match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Cell::Bool(true),
                "false" | "0" | "no" => Cell::Bool(false),
                _ => return None,
            },
        })
    }

    /// Reads a JSON value.
    fn from_json(value: &serde_json::Value, kind: CellType) -> Option<Cell> {
        use serde_json::Value;
        Some(match (value, kind) {
            (Value::Null, _) => Cell::Null,
            (Value::String(s), CellType::Str) => Cell::Str(s.clone()),
            (Value::Number(n), CellType::Str) => Cell::Str(n.to_string()),
            (Value::Number(n), CellType::Float) => Cell::Float(n.as_f64()?.to_bits()),
            (Value::Number(n), CellType::Int) => Cell::Int(n.as_i64()?),
            (Value::Bool(b), CellType::Bool) => Cell::Bool(*b),
            (Value::String(s), kind) => Cell::from_text(s, kind)?,
            _ => return None,
        })
    }
}

/// What a registry file could not be read for. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The file could not be read.
    #[error("cannot read registry '{path}': {source}")]
    Io {
        /// The registry file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A line or entry is malformed.
    #[error("registry '{path}' {place}: {message}")]
    Malformed {
        /// The registry file.
        path: PathBuf,
        /// `line N` (CSV, JSON lines), `entry N` (JSON array, from 1), `row N` (Parquet,
        /// from 1) or `file` (the file is not readable Parquet, or lacks a column).
        place: String,
        /// What is wrong, quoting the bad value.
        message: String,
    },
}

/// The columns the operator reads from the registry.
#[derive(Clone, Debug)]
pub(crate) struct RegistryColumns {
    pub(crate) key: String,
    pub(crate) columns: Vec<(String, CellType)>,
}

/// Key → values, in `columns` order.
pub(crate) type Snapshot = BTreeMap<String, Vec<Cell>>;

/// Reads and checks a registry file.
///
/// # Errors
/// The file cannot be read, or a line or entry is malformed (a missing column, a value of
/// the wrong type, a missing or repeated key).
pub(crate) fn load(path: &Path, spec: &RegistryColumns) -> Result<Snapshot, RegistryError> {
    let extension = path.extension().and_then(|e| e.to_str());
    if matches!(extension, Some("parquet" | "pq" | "parq")) {
        // Read before parsing, so that a missing file is an I/O error like for the others.
        std::fs::metadata(path).map_err(|source| RegistryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        return super::parquet::parse_parquet(path, spec).map_err(|(place, message)| {
            RegistryError::Malformed {
                path: path.to_path_buf(),
                place,
                message,
            }
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let json = matches!(extension, Some("json" | "jsonl" | "ndjson"));
    if json {
        parse_json(&text, spec).map_err(|(place, message)| RegistryError::Malformed {
            path: path.to_path_buf(),
            place,
            message,
        })
    } else {
        parse_csv(&text, spec).map_err(|(line, message)| RegistryError::Malformed {
            path: path.to_path_buf(),
            place: format!("line {line}"),
            message,
        })
    }
}

pub(crate) fn insert(
    snapshot: &mut Snapshot,
    firsts: &mut BTreeMap<String, String>,
    key: String,
    values: Vec<Cell>,
    place: String,
) -> Result<(), String> {
    if let Some(first) = firsts.get(&key) {
        return Err(format!("key '{key}' is listed twice (first at {first})"));
    }
    firsts.insert(key.clone(), place);
    snapshot.insert(key, values);
    Ok(())
}

fn parse_csv(text: &str, spec: &RegistryColumns) -> Result<Snapshot, (u64, String)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| (1, format!("unreadable header: {e}")))?
        .clone();
    let position = |name: &str| headers.iter().position(|h| h == name);
    let key_at = position(&spec.key).ok_or_else(|| {
        (
            1,
            format!(
                "no key column '{}' in the header ({})",
                spec.key,
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let mut at = Vec::with_capacity(spec.columns.len());
    for (name, _) in &spec.columns {
        at.push(position(name).ok_or_else(|| (1, format!("no column '{name}' in the header")))?);
    }
    let mut snapshot = Snapshot::new();
    let mut firsts = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            (line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let key = record.get(key_at).unwrap_or_default().trim();
        if key.is_empty() {
            return Err((line, format!("empty key '{}'", spec.key)));
        }
        let mut values = Vec::with_capacity(at.len());
        for (&i, (name, kind)) in at.iter().zip(&spec.columns) {
            let text = record.get(i).unwrap_or_default();
            values.push(Cell::from_text(text, *kind).ok_or_else(|| {
                (
                    line,
                    format!(
                        "value '{text}' of column '{name}' is not {}",
                        type_word(*kind)
                    ),
                )
            })?);
        }
        insert(
            &mut snapshot,
            &mut firsts,
            key.to_string(),
            values,
            format!("line {line}"),
        )
        .map_err(|m| (line, m))?;
    }
    Ok(snapshot)
}

pub(crate) fn type_word(kind: CellType) -> &'static str {
    match kind {
        CellType::Str => "a string",
        CellType::Float => "a float64",
        CellType::Int => "an int64",
        CellType::Bool => "a bool",
    }
}

fn parse_json(text: &str, spec: &RegistryColumns) -> Result<Snapshot, (String, String)> {
    let mut entries: Vec<(String, serde_json::Value)> = Vec::new();
    if text.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| (format!("line {}", e.line()), e.to_string()))?;
        for (i, value) in values.into_iter().enumerate() {
            entries.push((format!("entry {}", i + 1), value));
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| (format!("line {}", i + 1), e.to_string()))?;
            entries.push((format!("line {}", i + 1), value));
        }
    }
    let mut snapshot = Snapshot::new();
    let mut firsts = BTreeMap::new();
    for (place, value) in entries {
        let Some(object) = value.as_object() else {
            return Err((place, "not a JSON object".to_string()));
        };
        let key = match object.get(&spec.key) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err((place, format!("no key '{}'", spec.key))),
        };
        let mut values = Vec::with_capacity(spec.columns.len());
        for (name, kind) in &spec.columns {
            let value = object.get(name).unwrap_or(&serde_json::Value::Null);
            values.push(Cell::from_json(value, *kind).ok_or_else(|| {
                (
                    place.clone(),
                    format!("value {value} of '{name}' is not {}", type_word(*kind)),
                )
            })?);
        }
        insert(&mut snapshot, &mut firsts, key, values, place.clone()).map_err(|m| (place, m))?;
    }
    Ok(snapshot)
}

/// The updates turning `old` into `new`: `-1` for rows that went or changed, `+1` for rows
/// that came or changed.
pub(crate) fn diff(old: &Snapshot, new: &Snapshot) -> Vec<((String, Vec<Cell>), isize)> {
    let mut updates = Vec::new();
    for (key, values) in old {
        if new.get(key) != Some(values) {
            updates.push(((key.clone(), values.clone()), -1));
        }
    }
    for (key, values) in new {
        if old.get(key) != Some(values) {
            updates.push(((key.clone(), values.clone()), 1));
        }
    }
    updates
}

/// Watches one registry file: reloads it when its modification time or size changes, and
/// keeps the last version that read without error.
#[derive(Debug)]
pub(crate) struct Watcher {
    path: PathBuf,
    spec: RegistryColumns,
    seen: Option<(SystemTime, u64)>,
    current: Snapshot,
}

/// What one [`Watcher::poll`] found.
#[derive(Debug)]
pub(crate) enum Poll {
    /// The file did not change.
    Unchanged,
    /// A new version: the updates from the previous one.
    Changed(Vec<((String, Vec<Cell>), isize)>),
    /// The file changed but could not be read; the previous version stays.
    Failed(RegistryError),
}

impl Watcher {
    pub(crate) fn new(path: PathBuf, spec: RegistryColumns) -> Self {
        Self {
            path,
            spec,
            seen: None,
            current: Snapshot::new(),
        }
    }

    /// Entries of the current version.
    pub(crate) fn len(&self) -> usize {
        self.current.len()
    }

    /// Checks the file and reloads it if it changed.
    pub(crate) fn poll(&mut self) -> Poll {
        let stamp = std::fs::metadata(&self.path)
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let stamp = match stamp {
            Ok(stamp) => stamp,
            Err(source) => {
                // Report a missing file once, not on every poll.
                let first = self.seen != Some((SystemTime::UNIX_EPOCH, u64::MAX));
                self.seen = Some((SystemTime::UNIX_EPOCH, u64::MAX));
                return if first {
                    Poll::Failed(RegistryError::Io {
                        path: self.path.clone(),
                        source,
                    })
                } else {
                    Poll::Unchanged
                };
            }
        };
        if self.seen == Some(stamp) {
            return Poll::Unchanged;
        }
        self.seen = Some(stamp);
        match load(&self.path, &self.spec) {
            Ok(snapshot) => {
                let updates = diff(&self.current, &snapshot);
                self.current = snapshot;
                Poll::Changed(updates)
            }
            Err(error) => Poll::Failed(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RegistryColumns {
        RegistryColumns {
            key: "device_id".into(),
            columns: vec![
                ("site".into(), CellType::Str),
                ("scale".into(), CellType::Float),
                ("floor".into(), CellType::Int),
                ("active".into(), CellType::Bool),
            ],
        }
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn csv_and_json_read_the_same_registry() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(
            &dir,
            "devices.csv",
            "device_id,site,scale,floor,active,extra\nd1, plant-1 ,1.5,2,true,x\nd2,,,,,\n",
        );
        let json = write(
            &dir,
            "devices.json",
            r#"[{"device_id": "d1", "site": "plant-1", "scale": 1.5, "floor": 2, "active": true},
                {"device_id": "d2"}]"#,
        );
        let lines = write(
            &dir,
            "devices.jsonl",
            "{\"device_id\": \"d1\", \"site\": \"plant-1\", \"scale\": 1.5, \"floor\": 2, \"active\": true}\n\n{\"device_id\": \"d2\"}\n",
        );
        let from_csv = load(&csv, &spec()).unwrap();
        assert_eq!(
            from_csv["d1"],
            [
                Cell::Str("plant-1".into()),
                Cell::Float(1.5f64.to_bits()),
                Cell::Int(2),
                Cell::Bool(true)
            ]
        );
        assert_eq!(
            from_csv["d2"],
            [Cell::Null, Cell::Null, Cell::Null, Cell::Null]
        );
        assert_eq!(load(&json, &spec()).unwrap(), from_csv);
        assert_eq!(load(&lines, &spec()).unwrap(), from_csv);
    }

    #[test]
    fn malformed_files_name_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "a.csv",
                "device_id,site,scale,floor,active\nd1,p,1,1,true\nd2,p,abc,1,true\n",
                "line 3: value 'abc' of column 'scale' is not a float64",
            ),
            (
                "b.csv",
                "device_id,site,scale,floor,active\nd1,p,1,1,true\nd1,p,1,1,true\n",
                "line 3: key 'd1' is listed twice (first at line 2)",
            ),
            (
                "c.csv",
                "id,site,scale,floor,active\n",
                "line 1: no key column 'device_id' in the header (id, site, scale, floor, active)",
            ),
            (
                "d.csv",
                "device_id,site,scale,floor,active\nd1,p,1\n",
                "line 2:",
            ),
            (
                "e.csv",
                "device_id,site,scale,floor\n",
                "line 1: no column 'active' in the header",
            ),
            (
                "f.jsonl",
                "{\"device_id\": \"d1\"}\n{\"device_id\": \n",
                "line 2:",
            ),
            (
                "g.json",
                "[{\"device_id\": \"d1\"}, {\"site\": \"x\"}]",
                "entry 2: no key 'device_id'",
            ),
            (
                "h.json",
                "[{\"device_id\": \"d1\", \"floor\": 1.5}]",
                "entry 1: value 1.5 of 'floor' is not an int64",
            ),
        ];
        for (name, text, want) in cases {
            let path = write(&dir, name, text);
            let error = load(&path, &spec()).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("registry '{}' ", path.display())),
                "{error}"
            );
            assert!(error.contains(want), "{name}: {error}");
        }
        let missing = load(&dir.path().join("none.csv"), &spec()).unwrap_err();
        assert!(matches!(missing, RegistryError::Io { .. }));
        assert!(missing.to_string().contains("none.csv"), "{missing}");
    }

    #[test]
    fn diff_retracts_what_went_or_changed() {
        let row = |s: &str| vec![Cell::Str(s.into())];
        let old: Snapshot = [("a".into(), row("x")), ("b".into(), row("y"))].into();
        let new: Snapshot = [("b".into(), row("z")), ("c".into(), row("w"))].into();
        let mut updates = diff(&old, &new);
        updates.sort();
        assert_eq!(
            updates,
            [
                (("a".into(), row("x")), -1),
                (("b".into(), row("y")), -1),
                (("b".into(), row("z")), 1),
                (("c".into(), row("w")), 1),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn watcher_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let spec = RegistryColumns {
            key: "device_id".into(),
            columns: vec![("site".into(), CellType::Str)],
        };
        let path = write(&dir, "r.csv", "device_id,site\nd1,a\n");
        let mut watcher = Watcher::new(path.clone(), spec);
        assert!(matches!(watcher.poll(), Poll::Changed(u) if u.len() == 1));
        assert!(matches!(watcher.poll(), Poll::Unchanged));
        std::fs::write(&path, "device_id,site\nd1,a\nd2\"broken\n").unwrap();
        assert!(matches!(watcher.poll(), Poll::Failed(_)));
        assert_eq!(watcher.len(), 1);
        std::fs::write(&path, "device_id,site\nd1,b\nd2,c\n").unwrap();
        match watcher.poll() {
            Poll::Changed(updates) => assert_eq!(updates.len(), 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(watcher.len(), 2);
    }
}
