//! Reading a device registry from a Parquet file (`.parquet`, `.pq`, `.parq`).
//!
//! Columns are found by name and converted to the declared types with Arrow's casts: any
//! integer or float column reads as `float64`, integers (or whole floats) as `int64`, strings
//! parse as numbers or bools, and the key may be a string or an integer column. A value that
//! does not convert fails the whole file, naming the row (from 1, across row groups) and
//! quoting the value, like the CSV and JSON readers.

use std::collections::BTreeMap;
use std::path::Path;

use edgeflow_engine::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type, Int64Type};
use edgeflow_engine::arrow::util::display::array_value_to_string;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::registry::{Cell, CellType, RegistryColumns, Snapshot, insert, type_word};

/// Where in the file and what is wrong.
type Failure = (String, String);

/// Reads a Parquet registry. Errors name the place (`row N`, or `file` when the file itself
/// does not read as Parquet) and say what is wrong.
pub(crate) fn parse_parquet(path: &Path, spec: &RegistryColumns) -> Result<Snapshot, Failure> {
    let file = std::fs::File::open(path).map_err(|e| ("file".to_string(), e.to_string()))?;
    let not_parquet = |e: &dyn std::fmt::Display| {
        (
            "file".to_string(),
            format!("not a readable Parquet file: {e}"),
        )
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| not_parquet(&e))?
        .build()
        .map_err(|e| not_parquet(&e))?;
    let mut snapshot = Snapshot::new();
    let mut firsts = BTreeMap::new();
    let mut first_row = 1;
    for batch in reader {
        let batch = batch.map_err(|e| not_parquet(&e))?;
        read_batch(&batch, spec, first_row, &mut snapshot, &mut firsts)?;
        first_row += batch.num_rows();
    }
    Ok(snapshot)
}

fn read_batch(
    batch: &RecordBatch,
    spec: &RegistryColumns,
    first_row: usize,
    snapshot: &mut Snapshot,
    firsts: &mut BTreeMap<String, String>,
) -> Result<(), Failure> {
    let schema = batch.schema();
    let column = |name: &str| -> Result<&ArrayRef, Failure> {
        batch.column_by_name(name).ok_or_else(|| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            (
                "file".to_string(),
                format!("no column '{name}' in the file ({})", names.join(", ")),
            )
        })
    };
    let place = |row: usize| format!("row {}", first_row + row);

    let key_column = column(&spec.key)?;
    let keys = convert(key_column, CellType::Str).map_err(|(row, _)| {
        (
            place(row),
            format!("key '{}' is not a string or an integer", spec.key),
        )
    })?;
    let mut columns = Vec::with_capacity(spec.columns.len());
    for (name, kind) in &spec.columns {
        let source = column(name)?;
        columns.push(convert(source, *kind).map_err(|(row, text)| {
            (
                place(row),
                format!(
                    "value '{text}' of column '{name}' is not {}",
                    type_word(*kind)
                ),
            )
        })?);
    }
    for row in 0..batch.num_rows() {
        let key = match &keys[row] {
            Cell::Str(key) if !key.trim().is_empty() => key.trim().to_string(),
            _ => return Err((place(row), format!("empty key '{}'", spec.key))),
        };
        let values = columns.iter().map(|c| c[row].clone()).collect();
        insert(snapshot, firsts, key, values, place(row)).map_err(|m| (place(row), m))?;
    }
    Ok(())
}

/// The column as cells of `kind`, or the first row whose value does not convert, with the
/// value as text.
fn convert(source: &ArrayRef, kind: CellType) -> Result<Vec<Cell>, (usize, String)> {
    let target = match kind {
        CellType::Str => DataType::Utf8,
        CellType::Float => DataType::Float64,
        CellType::Int => DataType::Int64,
        CellType::Bool => DataType::Boolean,
    };
    let text = |row: usize| array_value_to_string(source, row).unwrap_or_default();
    let allowed = match (kind, source.data_type()) {
        // Text and numbers become strings; anything else (lists, structs) is not a registry
        // value.
        (CellType::Str, t) => {
            t.is_primitive() || is_text(t) || matches!(t, DataType::Dictionary(..))
        }
        (_, t) => {
            t.is_numeric()
                || is_text(t)
                || matches!(t, DataType::Boolean | DataType::Dictionary(..))
        }
    };
    if !allowed {
        let row = (0..source.len()).find(|&r| source.is_valid(r)).unwrap_or(0);
        return Err((row, text(row)));
    }
    // Arrow's cast truncates floats to integers: only whole numbers may become int64.
    if kind == CellType::Int && source.data_type().is_floating() {
        let floats = cast(source, &DataType::Float64).map_err(|_| (0, text(0)))?;
        let floats = floats.as_primitive::<Float64Type>();
        if let Some(row) =
            (0..floats.len()).find(|&r| floats.is_valid(r) && floats.value(r).fract() != 0.0)
        {
            return Err((row, text(row)));
        }
    }
    let converted = cast(source, &target).map_err(|_| (0, text(0)))?;
    let mut cells = Vec::with_capacity(source.len());
    for row in 0..source.len() {
        if source.is_null(row) {
            cells.push(Cell::Null);
            continue;
        }
        // A safe cast turns what does not convert into null.
        if converted.is_null(row) {
            return Err((row, text(row)));
        }
        cells.push(match kind {
            CellType::Str => Cell::Str(converted.as_string::<i32>().value(row).to_string()),
            CellType::Float => {
                Cell::Float(converted.as_primitive::<Float64Type>().value(row).to_bits())
            }
            CellType::Int => Cell::Int(converted.as_primitive::<Int64Type>().value(row)),
            CellType::Bool => Cell::Bool(converted.as_boolean().value(row)),
        });
    }
    Ok(cells)
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use edgeflow_engine::arrow::array::{
        BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
    };
    use parquet::arrow::ArrowWriter;

    use super::super::registry::{RegistryError, load};
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

    /// Writes the columns as a Parquet file, in two row groups.
    fn write(dir: &tempfile::TempDir, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
        let path = dir.path().join(name);
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
                .unwrap();
        let half = batch.num_rows() / 2;
        writer.write(&batch.slice(0, half)).unwrap();
        writer.flush().unwrap();
        writer
            .write(&batch.slice(half, batch.num_rows() - half))
            .unwrap();
        writer.close().unwrap();
        path
    }

    fn good() -> Vec<(&'static str, ArrayRef)> {
        vec![
            (
                "device_id",
                Arc::new(StringArray::from(vec!["d1", "d2", "d3"])) as ArrayRef,
            ),
            (
                "site",
                Arc::new(StringArray::from(vec![
                    Some("plant-1"),
                    None,
                    Some("plant-2"),
                ])),
            ),
            (
                "scale",
                Arc::new(Float32Array::from(vec![Some(1.5), None, Some(0.25)])),
            ),
            (
                "floor",
                Arc::new(Int32Array::from(vec![Some(2), None, Some(-1)])),
            ),
            (
                "active",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
            ("extra", Arc::new(Int64Array::from(vec![7, 8, 9]))),
        ]
    }

    #[test]
    fn a_parquet_registry_reads_like_the_same_csv() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = write(&dir, "devices.parquet", good());
        let csv = dir.path().join("devices.csv");
        std::fs::write(
            &csv,
            "device_id,site,scale,floor,active\nd1,plant-1,1.5,2,true\nd2,,,,\nd3,plant-2,0.25,-1,false\n",
        )
        .unwrap();
        let from_parquet = load(&parquet, &spec()).unwrap();
        assert_eq!(from_parquet.len(), 3);
        assert_eq!(from_parquet, load(&csv, &spec()).unwrap());

        // Integer keys and numbers written as text convert too.
        let mut columns = good();
        columns[0].1 = Arc::new(Int64Array::from(vec![1, 2, 3]));
        columns[2].1 = Arc::new(StringArray::from(vec![Some("1.5"), None, Some("0.25")]));
        columns[3].1 = Arc::new(Float64Array::from(vec![Some(2.0), None, Some(-1.0)]));
        let numbered = load(&write(&dir, "numbered.pq", columns), &spec()).unwrap();
        assert_eq!(numbered["1"], from_parquet["d1"]);
        assert_eq!(numbered["3"], from_parquet["d3"]);
    }

    #[test]
    fn bad_parquet_registries_name_the_file_and_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let message = |path: &Path| match load(path, &spec()).unwrap_err() {
            error @ RegistryError::Malformed { .. } => error.to_string(),
            other => panic!("{other:?}"),
        };

        let mut columns = good();
        columns[2].1 = Arc::new(StringArray::from(vec![Some("1.5"), None, Some("abc")]));
        let text = message(&write(&dir, "a.parquet", columns));
        assert!(text.contains("a.parquet' row 3"), "{text}");
        assert!(
            text.contains("value 'abc' of column 'scale' is not a float64"),
            "{text}"
        );

        let mut columns = good();
        columns[3].1 = Arc::new(Float64Array::from(vec![Some(2.0), Some(2.5), None]));
        let text = message(&write(&dir, "b.parquet", columns));
        assert!(
            text.contains("row 2: value '2.5' of column 'floor' is not an int64"),
            "{text}"
        );

        let mut columns = good();
        columns.remove(3);
        let text = message(&write(&dir, "c.parquet", columns));
        assert!(
            text.contains("c.parquet' file: no column 'floor' in the file"),
            "{text}"
        );

        let mut columns = good();
        columns[0].1 = Arc::new(StringArray::from(vec!["d1", "d2", "d1"]));
        let text = message(&write(&dir, "d.parquet", columns));
        assert!(
            text.contains("row 3: key 'd1' is listed twice (first at row 1)"),
            "{text}"
        );

        let mut columns = good();
        columns[0].1 = Arc::new(StringArray::from(vec![Some("d1"), None, Some("d3")]));
        let text = message(&write(&dir, "e.parquet", columns));
        assert!(text.contains("row 2: empty key 'device_id'"), "{text}");

        // Half a file, as a reader sees it while a careless producer still writes.
        let whole = std::fs::read(write(&dir, "f.parquet", good())).unwrap();
        let half = dir.path().join("half.parquet");
        std::fs::write(&half, &whole[..whole.len() / 2]).unwrap();
        let text = message(&half);
        assert!(
            text.contains("half.parquet' file: not a readable Parquet file"),
            "{text}"
        );

        let missing = load(&dir.path().join("none.parquet"), &spec()).unwrap_err();
        assert!(matches!(missing, RegistryError::Io { .. }), "{missing}");
    }
}
