//! The `enrich` operator: adds columns from a device registry (site, unit, calibration,
//! thresholds…) to every row, by device id, and follows the registry as it changes. The
//! registry is a file, or the rows of a second input (such as an MQTT topic of retained
//! messages, one per device).
//!
//! ```toml
//! [operators.enriched]
//! type = "enrich"
//! inputs = ["sensors"]
//! registry = "devices.csv"          # or .json (array), .jsonl (one object per line), .parquet
//! key = "device_id"
//! columns = { site = "string", scale = "float64", offset = "float64" }
//! unknown = "pass"                  # or "drop", "reject"
//! reload_interval = "5s"
//! ```
//!
//! or, with the registry streamed in from a source:
//!
//! ```toml
//! [operators.enriched]
//! type = "enrich"
//! inputs = ["sensors", "registry_feed"]   # rows, then the registry's rows
//! columns = { site = "string", scale = "float64" }
//! ```
//!
//! # Semantics
//!
//! * Each row is enriched with the registry **as of its arrival**; a registry change never
//!   re-emits past rows.
//! * The file is checked every `reload_interval` and read again when its modification time
//!   or size changed. A file that does not read (missing, a bad value, a repeated key) is
//!   reported once per change, naming the file and the line, counted as `registry_errors`,
//!   and the last good version stays in use.
//! * A registry input's rows add or replace devices (the last row for a device wins); a row
//!   without a key is skipped and counted as `registry_errors`.
//! * A row whose key is null or not in the registry is an **unknown device**: with
//!   `unknown = "pass"` it gets nulls and is counted as the value `unknown_device`; with
//!   `"drop"` it is dropped and counted as `unknown_device`; with `"reject"` it is dropped,
//!   counted, and sent unchanged to the `rejected` side output with a `reason` column.
//!
//! # How it runs
//!
//! Every worker reads the whole registry (it is small) and keeps it as a
//! differential-dataflow collection of `(device id, values)`: each reload becomes the
//! updates from the previous version (`-1` for rows that went or changed, `+1` for new
//! ones), arranged by key with a `Pipeline` pact, so rows never move between workers. The
//! arrangement is compacted up to its frontier, so it holds one version per device. The
//! enriching operator reads the arrangement (through its trace handle) into a hash map
//! whenever it changed, and looks rows up there. Per-row state: none.
//!
//! The registry's updates are timestamped at the watermark of the rows, and the reloading
//! operator follows that watermark, so the registry never holds the pipeline back and ends
//! with the input. A registry input is broadcast to every worker and connected to no output:
//! its own watermark holds nothing back either.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::trace::cursor::{Cursor, cursor_list};
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use edgeflow_engine::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use edgeflow_engine::arrow::compute::{cast, filter_record_batch};
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::log_throttle::LogThrottle;
use edgeflow_engine::schema::FieldType;
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::channels::pact::Pipeline;
use edgeflow_engine::timely::dataflow::operators::generic::OutputBuilder;
use edgeflow_engine::timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use edgeflow_engine::timely::progress::Antichain;
use edgeflow_engine::{
    Batch, BatchStream, DataflowOperator, EventTime, NodeMetrics, OperatorContext, OptionError,
    broadcast, parse_options,
};
use serde::Deserialize;

use crate::fields::{error_at, lookup, type_name};
use crate::options::OrderedMap;
use crate::{OperatorConfig, OperatorKind};

mod parquet;
mod registry;
mod stream;

pub use registry::RegistryError;
use registry::{Cell, CellType, Poll, RegistryColumns, Snapshot, Watcher};
use stream::{StreamColumns, StreamRegistry};

/// The `enrich` operator kind.
pub const KIND: OperatorKind = OperatorKind {
    name: "enrich",
    summary: "Adds columns from a device registry file that is reloaded when it changes",
    parse,
};

/// Name of the side output carrying rows of unknown devices (`unknown = "reject"`).
pub const REJECTED: &str = "rejected";

/// Metric and reason for rows whose device is not in the registry.
pub const UNKNOWN_DEVICE: &str = "unknown_device";

fn parse(table: toml::Table) -> Result<Box<dyn OperatorConfig>, OptionError> {
    Ok(Box::new(parse_options::<EnrichConfig>(table)?))
}

/// What happens to a row whose device is not in the registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unknown {
    /// Keep the row, with nulls in the added columns (counted as the value `unknown_device`).
    #[default]
    Pass,
    /// Drop the row (counted as dropped, `unknown_device`).
    Drop,
    /// Drop the row and send it to the `rejected` side output.
    Reject,
}

/// Options of an `enrich` operator.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// The registry file: `.csv` (with a header row), `.json` (an array of objects),
    /// `.jsonl` / `.ndjson` (one object per line) or `.parquet` / `.pq` / `.parq`. A
    /// relative path is relative to the directory the pipeline runs in. Required unless the
    /// registry's rows come from a second input.
    #[serde(default)]
    pub registry: Option<PathBuf>,
    /// The field of the input holding the device id (string or integer). Default:
    /// `"device_id"`.
    #[serde(default = "default_key")]
    pub key: String,
    /// The registry column matched against `key`. Default: the same name as `key`.
    #[serde(default)]
    pub registry_key: Option<String>,
    /// Registry columns to add, with their types (`string`, `float64`, `int64`, `bool`), in
    /// output order. Required, not empty.
    pub columns: OrderedMap<String>,
    /// `"pass"`, `"drop"` or `"reject"` for rows of unknown devices. Default: `"pass"`.
    #[serde(default)]
    pub unknown: Unknown,
    /// How often the file is checked for changes. Default: `"5s"`. Unused with a registry
    /// input, whose rows apply as they arrive.
    #[serde(
        default = "default_interval",
        deserialize_with = "edgeflow_engine::config::duration"
    )]
    pub reload_interval: Duration,
}

fn default_key() -> String {
    "device_id".to_string()
}

const fn default_interval() -> Duration {
    Duration::from_secs(5)
}

impl OperatorConfig for EnrichConfig {
    fn plan(&self, inputs: &[SchemaRef]) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>> {
        Ok(Arc::new(self.build(inputs)?))
    }
}

impl EnrichConfig {
    /// Checks the options against the input schemas (the rows, and the registry's rows when
    /// there is a second input) and returns the operator. The registry file is not read here
    /// (so `validate` and `explain` never touch it).
    ///
    /// # Errors
    /// Every problem found, each with the path of the option at fault.
    pub fn build(&self, inputs: &[SchemaRef]) -> Result<Enrich, Vec<OptionError>> {
        let (schema, registry_rows) = match inputs {
            [rows] => (rows.as_ref(), None),
            [rows, registry] => (rows.as_ref(), Some(registry.as_ref())),
            _ => {
                return Err(vec![
                    error_at(
                        &["inputs"],
                        format!(
                            "an 'enrich' operator reads one or two inputs (the rows, then \
                             optionally the registry's rows), but {} are listed",
                            inputs.len()
                        ),
                    )
                    .with_hint(
                        "inputs = [\"sensors\"] or inputs = [\"sensors\", \"registry_feed\"]",
                    ),
                ]);
            }
        };
        let mut errors = Vec::new();
        let key = match lookup(schema, &self.key, &["key"]) {
            Ok((index, field)) => {
                let usable = matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                    || crate::fields::numeric(field.data_type())
                        == Some(crate::fields::Numeric::Int);
                if !usable {
                    errors.push(error_at(
                        &["key"],
                        format!(
                            "the key '{}' must be a string or integer field, not {}",
                            self.key,
                            type_name(field.data_type())
                        ),
                    ));
                }
                index
            }
            Err(error) => {
                errors.push(error);
                0
            }
        };
        if self.columns.is_empty() {
            errors.push(
                error_at(
                    &["columns"],
                    "an 'enrich' operator needs at least one column",
                )
                .with_hint("columns = { site = \"string\" }"),
            );
        }
        if self.reload_interval.is_zero() {
            errors.push(error_at(&["reload_interval"], "must be longer than 0s"));
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut columns = Vec::new();
        for (name, type_text) in self.columns.iter() {
            let path = ["columns", name];
            if schema.field_with_name(name).is_ok() {
                errors.push(
                    error_at(&path, format!("'{name}' is already a field of the input"))
                        .with_hint("rename it in the registry, or drop it from the input first"),
                );
                continue;
            }
            let kind = match FieldType::parse(type_text) {
                Some(FieldType::String) => CellType::Str,
                Some(FieldType::Float64) => CellType::Float,
                Some(FieldType::Int64) => CellType::Int,
                Some(FieldType::Bool) => CellType::Bool,
                _ => {
                    errors.push(
                        error_at(&path, format!("unknown registry column type '{type_text}'"))
                            .with_hint("use string, float64, int64 or bool"),
                    );
                    continue;
                }
            };
            fields.push(Field::new(name, cell_data_type(kind), true));
            columns.push((name.to_string(), kind));
        }
        let registry_key = self
            .registry_key
            .clone()
            .unwrap_or_else(|| self.key.clone());
        let source = match (&self.registry, registry_rows) {
            (Some(path), None) => RegistrySource::File(path.clone()),
            (None, Some(rows)) => RegistrySource::Stream(StreamColumns::find(
                rows,
                &registry_key,
                &columns,
                &mut errors,
            )),
            (None, None) => {
                errors.push(
                    error_at(
                        &["registry"],
                        "an 'enrich' operator needs a registry: a file, or a second input \
                         carrying the registry's rows",
                    )
                    .with_hint("registry = \"devices.csv\""),
                );
                RegistrySource::File(PathBuf::new())
            }
            (Some(_), Some(_)) => {
                errors.push(
                    error_at(
                        &["registry"],
                        "the registry is either a file or the second input, not both",
                    )
                    .with_hint("remove 'registry', or the second input"),
                );
                RegistrySource::File(PathBuf::new())
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut rejected: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        rejected.push(Field::new(crate::clean::REASON, DataType::Utf8, false));
        Ok(Enrich {
            plan: Arc::new(EnrichPlan {
                output_schema: Arc::new(Schema::new_with_metadata(
                    fields,
                    schema.metadata().clone(),
                )),
                rejected_schema: Arc::new(Schema::new_with_metadata(
                    rejected,
                    schema.metadata().clone(),
                )),
                key,
                key_name: self.key.clone(),
                source,
                registry: RegistryColumns {
                    key: registry_key,
                    columns,
                },
                unknown: self.unknown,
                reload_interval: self.reload_interval,
            }),
        })
    }
}

fn cell_data_type(kind: CellType) -> DataType {
    match kind {
        CellType::Str => DataType::Utf8,
        CellType::Float => DataType::Float64,
        CellType::Int => DataType::Int64,
        CellType::Bool => DataType::Boolean,
    }
}

#[derive(Debug)]
struct EnrichPlan {
    output_schema: SchemaRef,
    rejected_schema: SchemaRef,
    key: usize,
    key_name: String,
    source: RegistrySource,
    registry: RegistryColumns,
    unknown: Unknown,
    reload_interval: Duration,
}

/// Where the registry comes from.
#[derive(Debug)]
enum RegistrySource {
    /// A file, polled every `reload_interval`.
    File(PathBuf),
    /// The rows of the operator's second input.
    Stream(StreamColumns),
}

/// The planned `enrich` operator.
#[derive(Clone, Debug)]
pub struct Enrich {
    plan: Arc<EnrichPlan>,
}

/// What the lookup did to one batch.
#[derive(Debug)]
pub struct EnrichOutcome {
    /// The enriched rows, or `None` when none are left.
    pub rows: Option<RecordBatch>,
    /// Rows of unknown devices sent to the side output (`unknown = "reject"`).
    pub rejected: Option<RecordBatch>,
    /// Rows whose device is unknown (whatever `unknown` says).
    pub unknown: usize,
}

/// Logs and counts a registry that did not read.
fn report(metrics: &NodeMetrics, error: &RegistryError) {
    metrics.add_value("registry_errors", 1);
    tracing::error!(
        operator = %metrics.name(),
        %error,
        "Registry did not read; the last good version stays in use"
    );
}

impl Enrich {
    /// Enriches one batch from `registry`.
    ///
    /// # Errors
    /// Only if an Arrow kernel fails, which means the batch does not match the planned schema.
    pub(crate) fn apply(
        &self,
        rows: RecordBatch,
        registry: &HashMap<String, Vec<Cell>>,
    ) -> Result<EnrichOutcome, ArrowError> {
        let plan = &self.plan;
        let keys = cast(rows.column(plan.key), &DataType::Utf8)?;
        let keys = keys
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| ArrowError::CastError("key is not text".into()))?;
        let found: Vec<Option<&Vec<Cell>>> = keys
            .iter()
            .map(|k| k.and_then(|k| registry.get(k)))
            .collect();
        let unknown = found.iter().filter(|f| f.is_none()).count();
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        for (index, (_, kind)) in plan.registry.columns.iter().enumerate() {
            let cells = found.iter().map(|f| f.map(|values| &values[index]));
            columns.push(cells_to_array(*kind, cells));
        }
        let enriched = RecordBatch::try_new(plan.output_schema.clone(), columns)?;
        if unknown == 0 || plan.unknown == Unknown::Pass {
            return Ok(EnrichOutcome {
                rows: (enriched.num_rows() > 0).then_some(enriched),
                rejected: None,
                unknown,
            });
        }
        let known: BooleanArray = found.iter().map(|f| Some(f.is_some())).collect();
        let kept = (unknown < rows.num_rows())
            .then(|| filter_record_batch(&enriched, &known))
            .transpose()?;
        let rejected = if plan.unknown == Unknown::Reject {
            let missing: BooleanArray = found.iter().map(|f| Some(f.is_none())).collect();
            let mut columns = filter_record_batch(&rows, &missing)?.columns().to_vec();
            let reason = format!("{UNKNOWN_DEVICE}:{}", plan.key_name);
            columns.push(Arc::new(StringArray::from(vec![reason.as_str(); unknown])));
            Some(RecordBatch::try_new(plan.rejected_schema.clone(), columns)?)
        } else {
            None
        };
        Ok(EnrichOutcome {
            rows: kept,
            rejected,
            unknown,
        })
    }
}

fn cells_to_array<'a>(kind: CellType, cells: impl Iterator<Item = Option<&'a Cell>>) -> ArrayRef {
    match kind {
        CellType::Str => Arc::new(
            cells
                .map(|c| match c {
                    Some(Cell::Str(s)) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
        CellType::Float => Arc::new(
            cells
                .map(|c| match c {
                    Some(Cell::Float(bits)) => Some(f64::from_bits(*bits)),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        CellType::Int => Arc::new(
            cells
                .map(|c| match c {
                    Some(Cell::Int(v)) => Some(*v),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
        CellType::Bool => Arc::new(
            cells
                .map(|c| match c {
                    Some(Cell::Bool(v)) => Some(*v),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
    }
}

/// The arrangement of the registry: device id → values.
type RegistryTrace = TraceAgent<ValSpine<String, Vec<Cell>, EventTime, isize>>;

/// One registry update as differential dataflow carries it.
type Update = ((String, Vec<Cell>), EventTime, isize);

impl DataflowOperator for Enrich {
    fn output_schema(&self) -> SchemaRef {
        self.plan.output_schema.clone()
    }

    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        vec![(REJECTED.to_string(), self.plan.rejected_schema.clone())]
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        self.build_with_side_outputs(inputs, ctx).swap_remove(0)
    }

    fn build_with_side_outputs<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> Vec<BatchStream<'scope>> {
        let mut inputs = inputs.into_iter();
        let input = inputs
            .next()
            .expect("the planner gives an 'enrich' operator its rows' input");
        let registry_rows = inputs.next();
        let plan = self.plan.clone();
        let scope = input.scope();

        // The first version of a file is read now, before any row flows, so that no row is
        // looked up in an empty registry only because the arrangement has not caught up yet.
        // A registry input starts empty and fills as its rows arrive.
        let (mut watcher, mut streamed) = match &plan.source {
            RegistrySource::File(path) => (
                Some(Watcher::new(path.clone(), plan.registry.clone())),
                None,
            ),
            RegistrySource::Stream(columns) => (None, Some(StreamRegistry::new(columns.clone()))),
        };
        let first: Vec<((String, Vec<Cell>), isize)> = match watcher.as_mut().map(Watcher::poll) {
            Some(Poll::Changed(updates)) => updates,
            Some(Poll::Failed(error)) => {
                report(&ctx.metrics, &error);
                Vec::new()
            }
            Some(Poll::Unchanged) | None => Vec::new(),
        };
        let initial: HashMap<String, Vec<Cell>> = first
            .iter()
            .map(|((k, v), _)| (k.clone(), v.clone()))
            .collect();
        ctx.metrics.set_value(
            "registry_entries",
            watcher.as_ref().map_or(0, Watcher::len) as u64,
        );

        // 1. The registry's updates: emitted at the rows' watermark, polled on a timer.
        let metrics = ctx.metrics.clone();
        let interval = plan.reload_interval;
        // The rows' input is not connected to the updates' output: the updates' frontier
        // is the capability alone, so a reload is sealed into the arrangement at once
        // instead of waiting for the rows' watermark to move.
        let mut reload = OperatorBuilder::new("RegistryReload".to_string(), scope);
        let activator = scope.activator_for(reload.operator_info().address);
        let no_connection: Vec<(usize, Antichain<u64>)> = Vec::new();
        let mut rows_in =
            reload.new_input_connection(input.clone(), Pipeline, no_connection.clone());
        let mut registry_in = registry_rows
            .map(|rows| reload.new_input_connection(rows, broadcast(), no_connection.clone()));
        // Every worker reads every registry row; one of them counts.
        let counting = ctx.worker_index == 0;
        let mut keyless_log = LogThrottle::default();
        let (updates_out, updates) = reload.new_output_connection::<Vec<Update>, _>(no_connection);
        let mut updates_out =
            OutputBuilder::<_, CapacityContainerBuilder<Vec<Update>>>::from(updates_out);
        reload.build(move |mut capabilities| {
            let mut capability = capabilities.pop();
            let mut pending = first;
            let mut next_poll = Instant::now() + interval;
            let mut timer: Option<Instant> = None;
            move |frontiers| {
                // Only the rows' frontier matters here; their data is read elsewhere.
                rows_in.for_each(|_, _| {});
                if let (Some(registry_in), Some(streamed)) =
                    (registry_in.as_mut(), streamed.as_mut())
                {
                    registry_in.for_each(|_, data| {
                        let Some(rows) = data.take() else {
                            return;
                        };
                        let applied = match streamed.apply(&rows) {
                            Ok(applied) => applied,
                            Err(error) => {
                                tracing::error!(
                                    operator = %metrics.name(),
                                    %error,
                                    "Registry rows do not have the planned schema; this is a \
                                     bug, please report it"
                                );
                                return;
                            }
                        };
                        if counting {
                            metrics.add_value("registry_updates", applied.changed as u64);
                            metrics.set_value("registry_entries", streamed.len() as u64);
                            if applied.keyless > 0 {
                                metrics.add_value("registry_errors", applied.keyless as u64);
                                if let Some(rows) = keyless_log.note(applied.keyless as u64) {
                                    tracing::warn!(
                                        operator = %metrics.name(),
                                        rows,
                                        "Registry rows without a key were skipped"
                                    );
                                }
                            }
                        }
                        // Once the rows have ended, nothing reads the registry any more.
                        if capability.is_some() {
                            pending.extend(applied.updates);
                        }
                    });
                }
                let Some(held) = capability.as_mut() else {
                    return;
                };
                let Some(&watermark) = frontiers[0].frontier().first() else {
                    // The input has ended: so does the registry.
                    capability = None;
                    return;
                };
                // Stamp changes with the rows' watermark (never moving back).
                if watermark > *held.time() {
                    held.downgrade(&watermark);
                }
                let now = Instant::now();
                if let Some(watcher) = watcher.as_mut()
                    && now >= next_poll
                {
                    next_poll = now + interval;
                    match watcher.poll() {
                        Poll::Changed(updates) => {
                            metrics.add_value("registry_reloads", 1);
                            metrics.set_value("registry_entries", watcher.len() as u64);
                            pending.extend(updates);
                        }
                        Poll::Failed(error) => report(&metrics, &error),
                        Poll::Unchanged => {}
                    }
                }
                if !pending.is_empty() {
                    let time = *held.time();
                    let mut output = updates_out.activate();
                    let mut session = output.session_with_builder(&*held);
                    for (row, diff) in pending.drain(..) {
                        session.give((row, time, diff));
                    }
                    drop(session);
                    drop(output);
                    // Move past the change at once, so the arrangement seals it now.
                    held.downgrade(&(time + 1));
                }
                // One timer at a time: rows wake this operator too, and each wake-up must
                // not queue another timer. A registry input wakes it by itself.
                if watcher.is_some() && timer.is_none_or(|due| due <= now) {
                    activator.activate_after(next_poll.saturating_duration_since(now));
                    timer = Some(next_poll);
                }
            }
        });

        // 2. The registry as a differential collection, arranged by device id on this
        //    worker (Pipeline: every worker holds all of it).
        let arranged = arrange_core::<
            _,
            _,
            ValBatcher<String, Vec<Cell>, EventTime, isize>,
            ValSpine<String, Vec<Cell>, EventTime, isize>,
        >(updates, Pipeline, "Registry", ValBatcher::new);
        let mut trace = arranged.trace;

        // 3. The rows, looked up in the arrangement as it is when they arrive.
        let enrich = self.clone();
        let metrics = ctx.metrics.clone();
        let mut builder = OperatorBuilder::new("Enrich".to_string(), scope);
        let mut input = builder.new_input(input, Pipeline);
        let (main, main_stream) = builder.new_output::<Batch>();
        let (rejected, rejected_stream) = builder.new_output::<Batch>();
        let mut main = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(main);
        let mut rejected = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(rejected);
        builder.build(move |initial_capabilities| {
            drop(initial_capabilities);
            let mut registry = initial;
            let mut seen_version: (usize, Antichain<EventTime>) = (0, Antichain::new());
            move |_frontiers| {
                refresh(&mut trace, &mut registry, &mut seen_version);
                let mut main = main.activate();
                let mut rejected = rejected.activate();
                let (main_port, rejected_port) = (main.output_index(), rejected.output_index());
                input.for_each(|capability, data| {
                    let (Some(rows), Some(&watermark)) = (data.take(), capability.least()) else {
                        return;
                    };
                    metrics.add_rows_in(rows.num_rows());
                    let outcome = match enrich.apply(rows, &registry) {
                        Ok(outcome) => outcome,
                        Err(error) => {
                            tracing::error!(
                                operator = %metrics.name(),
                                %error,
                                "Enrich kernel failed on a batch of the planned schema; \
                                 this is a bug, please report it"
                            );
                            return;
                        }
                    };
                    match enrich.plan.unknown {
                        Unknown::Pass => metrics.add_value(UNKNOWN_DEVICE, outcome.unknown as u64),
                        Unknown::Drop | Unknown::Reject => {
                            metrics.count_dropped(UNKNOWN_DEVICE, outcome.unknown)
                        }
                    }
                    if let Some(rows) = outcome.rows {
                        metrics.add_rows_out(rows.num_rows());
                        main.session_with_builder(&capability.delayed(&watermark, main_port))
                            .give_container(&mut Batch::new(rows));
                    }
                    if let Some(rows) = outcome.rejected {
                        rejected
                            .session_with_builder(&capability.delayed(&watermark, rejected_port))
                            .give_container(&mut Batch::new(rows));
                    }
                });
            }
        });
        vec![main_stream, rejected_stream]
    }
}

/// Rebuilds `registry` from the arrangement when the arrangement holds a new version (its
/// batches with updates changed), and lets the arrangement compact what it no longer needs.
fn refresh(
    trace: &mut RegistryTrace,
    registry: &mut HashMap<String, Vec<Cell>>,
    seen: &mut (usize, Antichain<EventTime>),
) {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    let mut with_updates = 0;
    trace.map_spans(|span| with_updates += usize::from(span.has_updates()));
    if (with_updates, upper.clone()) == *seen || with_updates == 0 {
        if seen.1 != upper {
            seen.1 = upper;
        }
        return;
    }
    let Some(batches) = trace.batches_through(upper.borrow()) else {
        return;
    };
    let (mut cursor, storage) = cursor_list(batches);
    let mut fresh: Snapshot = Snapshot::new();
    while cursor.key_valid(&storage) {
        let Some(key) = cursor.get_key(&storage) else {
            break;
        };
        while cursor.val_valid(&storage) {
            let Some(values) = cursor.get_val(&storage) else {
                break;
            };
            let mut count = 0isize;
            cursor.map_times(&storage, |_, diff| count += *diff);
            if count > 0 {
                fresh.insert(key.clone(), values.clone());
            }
            cursor.step_val(&storage);
        }
        cursor.step_key(&storage);
    }
    *registry = fresh.into_iter().collect();
    // Every reader has what it needs: history before the upper may be merged away.
    trace.set_logical_compaction(upper.borrow());
    trace.set_physical_compaction(upper.borrow());
    *seen = (with_updates, upper);
}

#[cfg(test)]
mod tests;
