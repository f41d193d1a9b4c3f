//! The registry as a stream: rows from the `enrich` operator's second input (an MQTT topic
//! of retained messages, one per device, or any other source) that add or replace devices.
//! Each batch becomes the same differential updates a file reload gives (`-1` for a device's
//! old values, `+1` for its new ones).

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type, Int64Type, Schema};
use edgeflow_engine::arrow::error::ArrowError;

use super::cell_data_type;
use super::registry::{Cell, CellType, Snapshot};
use crate::fields::{Numeric, error_at, numeric, type_name};

/// Where the registry's columns are in the registry input's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamColumns {
    /// The key column.
    key: usize,
    /// Each added column: its position in the registry rows (`None`: always null) and type.
    columns: Vec<(Option<usize>, CellType)>,
}

impl StreamColumns {
    /// Finds `key` and `columns` in the registry input's `schema`, pushing an error (under
    /// `inputs.1`, or the column's option) for each that is missing or of a type that cannot
    /// be read as declared.
    pub(crate) fn find(
        schema: &Schema,
        key: &str,
        columns: &[(String, CellType)],
        errors: &mut Vec<OptionError>,
    ) -> Self {
        let mut found = Self {
            key: 0,
            columns: Vec::with_capacity(columns.len()),
        };
        match schema.index_of(key) {
            Ok(index) => {
                let data_type = schema.field(index).data_type();
                if !(is_text(data_type) || numeric(data_type) == Some(Numeric::Int)) {
                    errors.push(error_at(
                        &["registry_key"],
                        format!(
                            "the registry input's key '{key}' must be a string or integer \
                             field, not {}",
                            type_name(data_type)
                        ),
                    ));
                }
                found.key = index;
            }
            Err(_) => errors.push(
                error_at(
                    &["inputs", "1"],
                    format!("the registry input has no key field '{key}'"),
                )
                .with_hint("name it with registry_key, or add it to the source's schema"),
            ),
        }
        for (name, kind) in columns {
            let Ok(index) = schema.index_of(name) else {
                errors.push(
                    error_at(
                        &["columns", name],
                        format!("the registry input has no field '{name}'"),
                    )
                    .with_hint("add it to the registry source's schema"),
                );
                found.columns.push((None, *kind));
                continue;
            };
            let data_type = schema.field(index).data_type();
            let readable = match kind {
                CellType::Str => {
                    is_text(data_type)
                        || numeric(data_type).is_some()
                        || *data_type == DataType::Boolean
                }
                CellType::Float => numeric(data_type).is_some(),
                CellType::Int => numeric(data_type) == Some(Numeric::Int),
                CellType::Bool => *data_type == DataType::Boolean,
            };
            if !readable {
                errors.push(error_at(
                    &["columns", name],
                    format!(
                        "the registry input's field '{name}' is {}, which cannot be read as \
                         {}",
                        type_name(data_type),
                        type_name(&cell_data_type(*kind))
                    ),
                ));
            }
            found.columns.push((Some(index), *kind));
        }
        found
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8)
}

/// What one batch of registry rows did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// The differential updates, in order.
    pub(crate) updates: Vec<((String, Vec<Cell>), isize)>,
    /// Devices added or whose values changed.
    pub(crate) changed: usize,
    /// Rows without a key, which were skipped.
    pub(crate) keyless: usize,
}

/// The registry's current version on one worker, as the stream has built it.
#[derive(Debug)]
pub(crate) struct StreamRegistry {
    spec: StreamColumns,
    current: Snapshot,
}

impl StreamRegistry {
    pub(crate) fn new(spec: StreamColumns) -> Self {
        Self {
            spec,
            current: Snapshot::new(),
        }
    }

    /// Devices in the registry.
    pub(crate) fn len(&self) -> usize {
        self.current.len()
    }

    /// Adds or replaces the device of each row, in order (a later row for the same device
    /// wins). A row whose values equal the device's current ones changes nothing.
    ///
    /// # Errors
    /// Only if a cast the planner checked fails, which means the rows do not have the
    /// planned schema.
    pub(crate) fn apply(&mut self, rows: &RecordBatch) -> Result<Applied, ArrowError> {
        let keys = cast(rows.column(self.spec.key), &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        let columns: Vec<(ArrayRef, CellType)> = self
            .spec
            .columns
            .iter()
            .map(|&(index, kind)| {
                let target = cell_data_type(kind);
                let array = match index {
                    Some(index) => cast(rows.column(index), &target)?,
                    None => new_null_array(&target, rows.num_rows()),
                };
                Ok((array, kind))
            })
            .collect::<Result<_, ArrowError>>()?;
        let mut applied = Applied::default();
        for row in 0..rows.num_rows() {
            if keys.is_null(row) || keys.value(row).trim().is_empty() {
                applied.keyless += 1;
                continue;
            }
            let values: Vec<Cell> = columns
                .iter()
                .map(|(array, kind)| cell_at(array, *kind, row))
                .collect();
            let key = keys.value(row).to_string();
            match self.current.get(&key) {
                Some(old) if *old == values => continue,
                Some(old) => applied.updates.push(((key.clone(), old.clone()), -1)),
                None => {}
            }
            applied.updates.push(((key.clone(), values.clone()), 1));
            applied.changed += 1;
            self.current.insert(key, values);
        }
        Ok(applied)
    }
}

/// The value of `array` (already cast to `kind`'s Arrow type) at `row`.
fn cell_at(array: &ArrayRef, kind: CellType, row: usize) -> Cell {
    if array.is_null(row) {
        return Cell::Null;
    }
    match kind {
        CellType::Str => Cell::Str(array.as_string::<i32>().value(row).to_string()),
        CellType::Float => Cell::Float(array.as_primitive::<Float64Type>().value(row).to_bits()),
        CellType::Int => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        CellType::Bool => Cell::Bool(array.as_boolean().value(row)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use edgeflow_engine::arrow::array::{Float64Array, Int32Array, StringArray};
    use edgeflow_engine::arrow::datatypes::Field;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("site", DataType::Utf8, true),
            Field::new("scale", DataType::Float64, true),
            Field::new("floor", DataType::Int32, true),
        ]))
    }

    fn columns() -> Vec<(String, CellType)> {
        vec![
            ("site".into(), CellType::Str),
            ("scale".into(), CellType::Float),
            ("floor".into(), CellType::Int),
        ]
    }

    fn rows(ids: &[Option<&str>], sites: &[Option<&str>], scales: &[f64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(StringArray::from(sites.to_vec())),
                Arc::new(Float64Array::from(scales.to_vec())),
                Arc::new(Int32Array::from(vec![Some(2); ids.len()])),
            ],
        )
        .unwrap()
    }

    fn registry() -> StreamRegistry {
        let mut errors = Vec::new();
        let spec = StreamColumns::find(&schema(), "device_id", &columns(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        StreamRegistry::new(spec)
    }

    fn values(site: &str, scale: f64) -> Vec<Cell> {
        vec![
            Cell::Str(site.into()),
            Cell::Float(scale.to_bits()),
            Cell::Int(2),
        ]
    }

    #[test]
    fn rows_add_replace_and_repeat_devices() {
        let mut registry = registry();
        let first = registry
            .apply(&rows(
                &[Some("d1"), Some("d2")],
                &[Some("north"), Some("south")],
                &[1.0, 2.0],
            ))
            .unwrap();
        assert_eq!(
            first.updates,
            vec![
                (("d1".into(), values("north", 1.0)), 1),
                (("d2".into(), values("south", 2.0)), 1),
            ]
        );
        assert_eq!((first.changed, registry.len()), (2, 2));

        // d1 unchanged (no update), d2 moved twice in one batch (the last wins), a row
        // without a key skipped.
        let second = registry
            .apply(&rows(
                &[Some("d1"), Some("d2"), None, Some("d2")],
                &[Some("north"), Some("east"), Some("x"), Some("west")],
                &[1.0, 2.0, 0.0, 3.0],
            ))
            .unwrap();
        assert_eq!(
            second.updates,
            vec![
                (("d2".into(), values("south", 2.0)), -1),
                (("d2".into(), values("east", 2.0)), 1),
                (("d2".into(), values("east", 2.0)), -1),
                (("d2".into(), values("west", 3.0)), 1),
            ]
        );
        assert_eq!((second.changed, second.keyless), (2, 1));
        assert_eq!(registry.current["d2"], values("west", 3.0));
    }

    #[test]
    fn missing_and_unreadable_fields_are_reported_at_their_option() {
        let mut errors = Vec::new();
        let columns = vec![
            ("site".to_string(), CellType::Float),
            ("building".to_string(), CellType::Str),
        ];
        StreamColumns::find(&schema(), "serial", &columns, &mut errors);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].contains("no key field 'serial'"), "{text:?}");
        assert!(text[1].contains("cannot be read as float64"), "{text:?}");
        assert!(text[2].contains("no field 'building'"), "{text:?}");
    }
}
