//! `edgeflow test`: pipeline tests with event-time fixtures, run offline and deterministically.
//!
//! Tests live in the query file (`[[tests]]`) or in a sibling `<name>.test.toml`. Each test
//! gives every source a list of **steps**, rows with explicit event times, in any order (late
//! and out-of-order rows included), and explicit watermark advances, and says which rows are
//! expected at any operator or sink, and which rows each node should have dropped by reason:
//!
//! ```toml
//! [[tests]]
//! name = "a late reading is dropped"
//! [[tests.input.sensors]]
//! rows = [
//!   { device_id = "a", ts = "2024-06-01T00:00:01Z", temperature = 20.0 },
//!   { device_id = "a", ts = "2024-06-01T00:00:12Z", temperature = 22.0 },
//! ]
//! [[tests.input.sensors]]
//! watermark = "2024-06-01T00:00:15Z"
//! [[tests.input.sensors]]
//! rows = [{ device_id = "a", ts = "2024-06-01T00:00:05Z", temperature = 99.0 }]  # late
//! [[tests.expect]]
//! node = "per_10s"
//! rows = [
//!   { window_start = "2024-06-01T00:00:00Z", device_id = "a", n = 1 },
//!   { window_start = "2024-06-01T00:00:10Z", device_id = "a", n = 1 },
//! ]
//! dropped = { late = 1 }
//! ```
//!
//! Sources and sinks are replaced by in-memory ones, so a test never touches files, brokers or
//! the network. Expected rows are compared as a multiset (order does not matter), on the
//! columns the expected rows name; floats to a relative 1e-9. When the inputs run out, every
//! source ends, so every open window closes, as at the end of a bounded run.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMillisecondBuilder,
};
use edgeflow_engine::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use edgeflow_engine::schema::UTC;
use edgeflow_engine::time::format_event_time;
use edgeflow_engine::{
    BoxError, BoxFuture, EventTime, PipelineMetrics, RunOptions, Source, SourceContext,
};
use serde::Deserialize;

/// One `[[tests]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in the report.
    pub name: String,
    /// Steps per source name.
    #[serde(default)]
    pub input: BTreeMap<String, Vec<Step>>,
    /// What must come out.
    #[serde(default)]
    pub expect: Vec<Expectation>,
}

/// One step of a source's input.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Rows, one table per row, keyed by field name.
    #[serde(default)]
    pub rows: Vec<toml::Table>,
    /// A watermark advance (RFC 3339 text or epoch milliseconds) after the rows.
    #[serde(default)]
    pub watermark: Option<toml::Value>,
}

/// Rows and drop counts expected at one node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// An operator or sink name.
    pub node: String,
    /// Every row the node emits (for a sink: receives); only the named columns are compared.
    /// Absent: rows are not checked.
    #[serde(default)]
    pub rows: Option<Vec<toml::Table>>,
    /// Rows the node dropped, by reason (`late`, `null_field`, …).
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
    /// For a window with revisions: before comparing `rows`, keep only the row with the
    /// highest `revision` for each combination of these columns (such as
    /// `["window_start", "device_id"]`), as a reader of the output would.
    #[serde(default)]
    pub last_revision_by: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TestFile {
    #[serde(default)]
    tests: Vec<TestCase>,
}

/// The result of one test: empty `failures` means it passed.
#[derive(Clone, Debug)]
pub struct TestOutcome {
    /// The test's name.
    pub name: String,
    /// What went wrong, readable.
    pub failures: Vec<String>,
}

/// Reads the tests of the query file at `path` (with text `text`) and of its sibling
/// `<stem>.test.toml`, if there is one.
///
/// # Errors
/// A test file that is not valid TOML or does not have the shape above.
pub fn load_tests(path: &Path, text: &str) -> Result<Vec<TestCase>, String> {
    let mut tests = parse_tests(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sibling = path.with_file_name(format!("{stem}.test.toml"));
    if sibling.exists() {
        let sibling_text = std::fs::read_to_string(&sibling)
            .map_err(|e| format!("cannot read '{}': {e}", sibling.display()))?;
        tests
            .extend(parse_tests(&sibling_text).map_err(|e| format!("{}: {e}", sibling.display()))?);
    }
    Ok(tests)
}

fn parse_tests(text: &str) -> Result<Vec<TestCase>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    let Some(tests) = table.get("tests") else {
        return Ok(Vec::new());
    };
    let mut only = toml::Table::new();
    only.insert("tests".into(), tests.clone());
    edgeflow_engine::parse_options::<TestFile>(only)
        .map(|f| f.tests)
        .map_err(|e| e.to_string())
}

/// Runs every test against the pipeline in `query` on `workers` workers.
pub fn run_tests(query: &str, tests: &[TestCase], workers: usize) -> Vec<TestOutcome> {
    tests
        .iter()
        .map(|test| TestOutcome {
            name: test.name.clone(),
            failures: run_one(query, test, workers),
        })
        .collect()
}

fn run_one(query: &str, test: &TestCase, workers: usize) -> Vec<String> {
    let plan = match crate::plan(query) {
        Ok(plan) => plan,
        Err(diagnostics) => return diagnostics.iter().map(ToString::to_string).collect(),
    };
    let mut failures = Vec::new();
    let mut schemas: BTreeMap<String, SchemaRef> = plan
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.schema.clone()))
        .collect();
    // Side outputs (`per_10s.late`) can be expected even when no node of the pipeline reads
    // them.
    schemas.extend(plan.side_outputs());
    let sources: Vec<String> = plan
        .nodes
        .iter()
        .filter(|n| n.role == edgeflow_engine::NodeRole::Source)
        .map(|n| n.name.clone())
        .collect();
    for name in test.input.keys() {
        if !sources.contains(name) {
            failures.push(format!(
                "input for '{name}', which is not a source of the pipeline"
            ));
        }
    }
    for expectation in &test.expect {
        if !schemas.contains_key(&expectation.node) {
            failures.push(format!(
                "expected rows at '{}', which is not a node of the pipeline",
                expectation.node
            ));
        }
    }
    if !failures.is_empty() {
        return failures;
    }

    let mut fixtures: BTreeMap<String, Vec<FixtureStep>> = BTreeMap::new();
    for (source, steps) in &test.input {
        match fixture_steps(source, &schemas[source], steps) {
            Ok(steps) => {
                fixtures.insert(source.clone(), steps);
            }
            Err(error) => failures.push(error),
        }
    }
    if !failures.is_empty() {
        return failures;
    }

    let taps: Vec<String> = test.expect.iter().map(|e| e.node.clone()).collect();
    let mut make_source = |name: &str, _schema: &SchemaRef| -> Box<dyn Source> {
        Box::new(FixtureSource {
            steps: fixtures.remove(name).unwrap_or_default(),
        })
    };
    let memory_limit = plan.settings.memory_limit_bytes();
    let (graph, collectors) = match plan.into_test_graph(&mut make_source, &taps) {
        Ok(built) => built,
        Err(error) => return vec![format!("cannot build the test pipeline: {error}")],
    };
    let options = RunOptions {
        workers,
        io_threads: 1,
        memory: std::sync::Arc::new(edgeflow_engine::MemoryBudget::new(memory_limit)),
        ..RunOptions::default()
    };
    let report = match edgeflow_engine::run(graph, options, PipelineMetrics::new()) {
        Ok(report) => report,
        Err(error) => return vec![format!("the pipeline failed: {error}")],
    };

    for expectation in &test.expect {
        let schema = &schemas[&expectation.node];
        if let Some(expected_rows) = &expectation.rows {
            let batches = collectors
                .iter()
                .find(|(name, _)| *name == expectation.node)
                .map(|(_, sink)| sink.batches())
                .unwrap_or_default();
            let batches = match &expectation.last_revision_by {
                None => batches,
                Some(columns) => match keep_last_revisions(&batches, columns) {
                    Ok(kept) => kept,
                    Err(error) => {
                        failures.push(format!("node '{}': {error}", expectation.node));
                        continue;
                    }
                },
            };
            match compare_rows(schema, expected_rows, &batches) {
                Ok(None) => {}
                Ok(Some(diff)) => failures.push(format!("node '{}': {diff}", expectation.node)),
                Err(error) => failures.push(format!("node '{}': {error}", expectation.node)),
            }
        }
        if !expectation.dropped.is_empty() {
            let actual = report
                .nodes
                .iter()
                .find(|n| n.name == expectation.node)
                .map(|n| n.dropped.clone())
                .unwrap_or_default();
            for (reason, want) in &expectation.dropped {
                let got = actual.get(reason).copied().unwrap_or(0);
                if got != *want {
                    failures.push(format!(
                        "node '{}': expected {want} rows dropped as '{reason}', got {got} (all drops: {actual:?})",
                        expectation.node
                    ));
                }
            }
        }
    }
    failures
}

enum FixtureStep {
    Rows(RecordBatch),
    Watermark(EventTime),
}

/// A source that plays a test's steps, then ends.
struct FixtureSource {
    steps: Vec<FixtureStep>,
}

impl Source for FixtureSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            for step in self.steps {
                let sent = match step {
                    FixtureStep::Rows(rows) => ctx.send(rows).await,
                    FixtureStep::Watermark(time) => ctx.advance_watermark(time).await,
                };
                if sent.is_err() {
                    break;
                }
            }
            Ok(())
        })
    }
}

fn fixture_steps(
    source: &str,
    schema: &SchemaRef,
    steps: &[Step],
) -> Result<Vec<FixtureStep>, String> {
    let mut out = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let at = format!("input '{source}' step {}", index + 1);
        if !step.rows.is_empty() {
            out.push(FixtureStep::Rows(
                rows_to_batch(schema, &step.rows).map_err(|e| format!("{at}: {e}"))?,
            ));
        }
        if let Some(watermark) = &step.watermark {
            let time = parse_time(watermark).map_err(|e| format!("{at}: watermark: {e}"))?;
            out.push(FixtureStep::Watermark(time.max(0) as EventTime));
        }
    }
    Ok(out)
}

/// Builds a batch of `schema` from TOML rows; fields a row leaves out are null.
fn rows_to_batch(schema: &SchemaRef, rows: &[toml::Table]) -> Result<RecordBatch, String> {
    for (index, row) in rows.iter().enumerate() {
        for key in row.keys() {
            if schema.index_of(key).is_err() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let hint = edgeflow_engine::config::closest_name(key, names.iter().copied())
                    .map(|b| format!(" (did you mean '{b}'?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "row {}: '{key}' is not a field of the source{hint}",
                    index + 1
                ));
            }
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let cells = rows.iter().enumerate().map(|(i, row)| {
            let value = row.get(name).filter(|v| !is_null(v));
            (i, value)
        });
        let wrong = |i: usize, v: &toml::Value, want: &str| {
            format!(
                "row {}: field '{name}' wants {want}, found {}",
                i + 1,
                v.type_str()
            )
        };
        let array: ArrayRef = match field.data_type() {
            DataType::Utf8 => {
                let mut b = StringBuilder::new();
                for (i, v) in cells {
                    match v {
                        None => b.append_null(),
                        Some(toml::Value::String(s)) => b.append_value(s),
                        Some(v) => return Err(wrong(i, v, "a string")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::new();
                for (i, v) in cells {
                    match v {
                        None => b.append_null(),
                        Some(toml::Value::Float(f)) => b.append_value(*f),
                        Some(toml::Value::Integer(n)) => b.append_value(*n as f64),
                        Some(v) => return Err(wrong(i, v, "a number")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Int64 => {
                let mut b = Int64Builder::new();
                for (i, v) in cells {
                    match v {
                        None => b.append_null(),
                        Some(toml::Value::Integer(n)) => b.append_value(*n),
                        Some(v) => return Err(wrong(i, v, "an integer")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::new();
                for (i, v) in cells {
                    match v {
                        None => b.append_null(),
                        Some(toml::Value::Boolean(x)) => b.append_value(*x),
                        Some(v) => return Err(wrong(i, v, "true or false")),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                let mut b = TimestampMillisecondBuilder::new().with_timezone(UTC);
                for (i, v) in cells {
                    match v {
                        None => b.append_null(),
                        Some(v) => b.append_value(
                            parse_time(v)
                                .map_err(|e| format!("row {}: field '{name}': {e}", i + 1))?,
                        ),
                    }
                }
                Arc::new(b.finish())
            }
            other => {
                return Err(format!(
                    "field '{name}' has type {other}, which tests cannot fill yet"
                ));
            }
        };
        columns.push(array);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

fn is_null(value: &toml::Value) -> bool {
    value.as_str() == Some("null")
}

/// Epoch milliseconds from RFC 3339 text, a TOML datetime, or an integer.
fn parse_time(value: &toml::Value) -> Result<i64, String> {
    match value {
        toml::Value::Integer(ms) => Ok(*ms),
        toml::Value::String(text) => parse_rfc3339(text),
        toml::Value::Datetime(datetime) => parse_rfc3339(&datetime.to_string()),
        other => Err(format!(
            "wants a time (RFC 3339 text or epoch ms), found {}",
            other.type_str()
        )),
    }
}

fn parse_rfc3339(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("'{text}' is not an RFC 3339 time ({e})"))
}

/// One value, comparable across Arrow and TOML.
#[derive(Clone, Debug)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Time(i64),
}

impl Cell {
    fn matches(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Bool(a), Cell::Bool(b)) => a == b,
            (Cell::Int(a), Cell::Int(b)) | (Cell::Time(a), Cell::Time(b)) => a == b,
            (Cell::Text(a), Cell::Text(b)) => a == b,
            (Cell::Float(a), Cell::Float(b)) => close(*a, *b),
            (Cell::Int(a), Cell::Float(b)) | (Cell::Float(b), Cell::Int(a)) => close(*a as f64, *b),
            _ => false,
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    (a - b).abs() <= 1e-12_f64.max(1e-9 * a.abs().max(b.abs()))
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("\"null\""),
            Cell::Bool(b) => write!(f, "{b}"),
            Cell::Int(n) => write!(f, "{n}"),
            Cell::Float(x) => write!(f, "{x:?}"),
            Cell::Text(s) => write!(f, "{s:?}"),
            Cell::Time(ms) => write!(f, "\"{}\"", format_event_time((*ms).max(0) as u64)),
        }
    }
}

fn actual_cell(array: &ArrayRef, row: usize) -> Cell {
    use edgeflow_engine::arrow::datatypes::*;
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => Cell::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::UInt64 => Cell::Int(array.as_primitive::<UInt64Type>().value(row) as i64),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Cell::Float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Cell::Time(array.as_primitive::<TimestampMillisecondType>().value(row))
        }
        _ => {
            let formatter = edgeflow_engine::arrow::util::display::ArrayFormatter::try_new(
                array.as_ref(),
                &Default::default(),
            );
            Cell::Text(
                formatter
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_default(),
            )
        }
    }
}

fn expected_cell(data_type: &DataType, value: &toml::Value) -> Result<Cell, String> {
    if is_null(value) && *data_type != DataType::Utf8 {
        return Ok(Cell::Null);
    }
    Ok(match (data_type, value) {
        (DataType::Timestamp(..), v) => Cell::Time(parse_time(v)?),
        (_, toml::Value::String(s)) => Cell::Text(s.clone()),
        (_, toml::Value::Integer(n)) => Cell::Int(*n),
        (_, toml::Value::Float(x)) => Cell::Float(*x),
        (_, toml::Value::Boolean(b)) => Cell::Bool(*b),
        (_, other) => {
            return Err(format!(
                "cannot compare a {} with a column",
                other.type_str()
            ));
        }
    })
}

/// Keeps, for each combination of `columns`, the row with the highest `revision`.
fn keep_last_revisions(
    batches: &[RecordBatch],
    columns: &[String],
) -> Result<Vec<RecordBatch>, String> {
    use edgeflow_engine::arrow::compute::{concat_batches, take_record_batch};
    use edgeflow_engine::arrow::datatypes::Int64Type;
    use edgeflow_engine::arrow::util::display::array_value_to_string;

    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let all = concat_batches(&first.schema(), batches).map_err(|e| e.to_string())?;
    let column = |name: &str| {
        all.column_by_name(name)
            .ok_or_else(|| format!("'{name}' is not a column of this node"))
    };
    let revisions = column("revision")?
        .as_primitive_opt::<Int64Type>()
        .ok_or("'revision' is not an int64 column")?
        .clone();
    let keys = columns
        .iter()
        .map(|name| column(name).cloned())
        .collect::<Result<Vec<ArrayRef>, String>>()?;
    let mut last: BTreeMap<Vec<String>, (i64, u32)> = BTreeMap::new();
    for row in 0..all.num_rows() {
        let key = keys
            .iter()
            .map(|k| array_value_to_string(k, row).map_err(|e| e.to_string()))
            .collect::<Result<Vec<String>, String>>()?;
        let revision = revisions.value(row);
        let entry = last.entry(key).or_insert((revision, row as u32));
        if revision > entry.0 {
            *entry = (revision, row as u32);
        }
    }
    let mut rows: Vec<u32> = last.into_values().map(|(_, row)| row).collect();
    rows.sort_unstable();
    let indices = edgeflow_engine::arrow::array::UInt32Array::from(rows);
    Ok(vec![
        take_record_batch(&all, &indices).map_err(|e| e.to_string())?,
    ])
}

/// Compares rows as multisets on the columns the expected rows name; `Ok(None)` when equal.
fn compare_rows(
    schema: &SchemaRef,
    expected: &[toml::Table],
    batches: &[RecordBatch],
) -> Result<Option<String>, String> {
    let mut columns: Vec<String> = Vec::new();
    for row in expected {
        for key in row.keys() {
            if schema.index_of(key).is_err() {
                return Err(format!("'{key}' is not a column of this node"));
            }
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    // Keep the node's column order in messages.
    columns.sort_by_key(|c| schema.index_of(c).unwrap_or(usize::MAX));
    let mut want: Vec<Vec<(String, Cell)>> = Vec::new();
    for row in expected {
        let mut cells = Vec::new();
        for (key, value) in row {
            let data_type = schema
                .field_with_name(key)
                .map_err(|e| e.to_string())?
                .data_type();
            cells.push((
                key.clone(),
                expected_cell(data_type, value).map_err(|e| format!("'{key}': {e}"))?,
            ));
        }
        want.push(cells);
    }
    let mut got: Vec<Vec<(String, Cell)>> = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells = columns
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        actual_cell(
                            batch.column(batch.schema().index_of(c).expect("same schema")),
                            row,
                        ),
                    )
                })
                .collect();
            got.push(cells);
        }
    }
    let mut unmatched_got: Vec<bool> = vec![true; got.len()];
    let mut missing = Vec::new();
    for row in &want {
        let found = got.iter().enumerate().position(|(i, g)| {
            unmatched_got[i]
                && row
                    .iter()
                    .all(|(key, cell)| g.iter().any(|(k, c)| k == key && c.matches(cell)))
        });
        match found {
            Some(i) => unmatched_got[i] = false,
            None => missing.push(row),
        }
    }
    let unexpected: Vec<&Vec<(String, Cell)>> = got
        .iter()
        .zip(&unmatched_got)
        .filter(|(_, u)| **u)
        .map(|(g, _)| g)
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(None);
    }
    let mut diff = format!(
        "{} expected row(s) missing, {} unexpected row(s) ({} expected, {} produced)",
        missing.len(),
        unexpected.len(),
        want.len(),
        got.len()
    );
    let show = |row: &Vec<(String, Cell)>| {
        let parts: Vec<String> = row.iter().map(|(k, c)| format!("{k} = {c}")).collect();
        format!("{{ {} }}", parts.join(", "))
    };
    for row in missing {
        let _ = write!(diff, "\n      - {}", show(row));
    }
    for row in unexpected {
        let _ = write!(diff, "\n      + {}", show(row));
    }
    Ok(Some(diff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::datatypes::Field;
    use edgeflow_engine::schema::{schema_with_event_time, timestamp_type};

    fn schema() -> SchemaRef {
        schema_with_event_time(
            [
                Field::new("device_id", DataType::Utf8, true),
                Field::new("ts", timestamp_type(), true),
                Field::new("v", DataType::Float64, true),
            ],
            Some("ts"),
        )
    }

    fn rows(text: &str) -> Vec<toml::Table> {
        let table: toml::Table = format!("rows = {text}").parse().unwrap();
        table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_table().unwrap().clone())
            .collect()
    }

    #[test]
    fn rows_become_batches_with_nulls_for_missing_fields() {
        let batch = rows_to_batch(&schema(), &rows(r#"[{ device_id = "a", ts = 1000, v = 1 }, { device_id = "b", ts = "1970-01-01T00:00:02Z" }]"#)).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(
            actual_cell(batch.column(1), 1).to_string(),
            "\"1970-01-01T00:00:02.000Z\""
        );
        assert!(batch.column(2).is_null(1));
    }

    #[test]
    fn bad_fixture_rows_are_explained() {
        let error = rows_to_batch(&schema(), &rows(r#"[{ device = "a" }]"#)).unwrap_err();
        assert!(error.contains("did you mean 'device_id'?"), "{error}");
        let error = rows_to_batch(&schema(), &rows(r#"[{ v = "warm" }]"#)).unwrap_err();
        assert!(
            error.contains("field 'v' wants a number, found string"),
            "{error}"
        );
        let error = rows_to_batch(&schema(), &rows(r#"[{ ts = "yesterday" }]"#)).unwrap_err();
        assert!(
            error.contains("'yesterday' is not an RFC 3339 time"),
            "{error}"
        );
    }

    #[test]
    fn comparison_is_order_free_and_tolerant_on_floats_only() {
        let batch = rows_to_batch(&schema(), &rows(r#"[{ device_id = "a", ts = 1, v = 0.30000000000000004 }, { device_id = "b", ts = 2, v = 2.0 }]"#)).unwrap();
        let same = rows(r#"[{ device_id = "b", v = 2 }, { device_id = "a", v = 0.3 }]"#);
        assert_eq!(
            compare_rows(&schema(), &same, std::slice::from_ref(&batch)).unwrap(),
            None
        );
        let different = rows(r#"[{ device_id = "a", v = 0.31 }]"#);
        let diff = compare_rows(&schema(), &different, &[batch])
            .unwrap()
            .unwrap();
        assert!(
            diff.contains("1 expected row(s) missing, 2 unexpected row(s)"),
            "{diff}"
        );
    }
}
