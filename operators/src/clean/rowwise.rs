//! The row-local rules of `clean`, as Arrow kernels over whole columns: value transforms
//! (string normalisation, unit conversion, calibration, clipping) and the checks that reject
//! rows (`drop_null`, `drop_outside`).

use std::collections::HashMap;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray,
};
use edgeflow_engine::arrow::compute::kernels::cmp::{gt, lt};
use edgeflow_engine::arrow::compute::{and_not, cast, is_null, or};
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type, Int64Type};
use edgeflow_engine::arrow::error::ArrowError;

use super::Reasons;
use super::units::Conversion;

/// `drop_null` for one field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NullRule {
    pub(crate) column: usize,
    /// Float fields: NaN counts as missing too.
    pub(crate) nan_too: bool,
    pub(crate) label: u16,
}

/// `drop_outside` or `clip` for one field: an inclusive range, in the field's class.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Range {
    Float { min: f64, max: f64 },
    Int { min: i64, max: i64 },
}

/// `drop_outside` for one field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RangeRule {
    pub(crate) column: usize,
    pub(crate) range: Range,
    pub(crate) label: u16,
}

/// `clip` for one field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClipRule {
    pub(crate) column: usize,
    pub(crate) range: Range,
}

/// Letter case for `normalize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Case {
    Keep,
    Lower,
    Upper,
}

/// `normalize` for one string field: trim, then change case, then map whole values.
#[derive(Clone, Debug)]
pub(crate) struct NormalizeRule {
    pub(crate) column: usize,
    pub(crate) trim: bool,
    pub(crate) case: Case,
    pub(crate) map: HashMap<String, String>,
}

/// A number in a calibration: fixed, or read from a field of the row (per device).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operand {
    Value(f64),
    Column(usize),
}

/// `convert` or `calibrate` for one field: `value * scale + offset`, as Float64.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LinearRule {
    Convert {
        column: usize,
        conversion: Conversion,
    },
    Calibrate {
        column: usize,
        scale: Operand,
        offset: Operand,
    },
}

/// Marks, among rows still kept, those whose value is missing.
pub(crate) fn check_null(
    rule: &NullRule,
    columns: &[ArrayRef],
    reasons: &mut Reasons,
) -> Result<(), ArrowError> {
    let column = &columns[rule.column];
    if column.null_count() > 0 {
        let nulls = is_null(column)?;
        reasons.mark(&nulls, rule.label);
    }
    if rule.nan_too {
        let values = as_f64(column)?;
        if values.values().iter().any(|v| v.is_nan()) {
            reasons.mark(&nan_mask(&values), rule.label);
        }
    }
    Ok(())
}

/// Marks, among rows still kept, those whose value lies outside the range (null and NaN
/// values pass).
pub(crate) fn check_range(
    rule: &RangeRule,
    columns: &[ArrayRef],
    reasons: &mut Reasons,
) -> Result<(), ArrowError> {
    let column = &columns[rule.column];
    let outside = match rule.range {
        Range::Float { min, max } => {
            let values = as_f64(column)?;
            // Arrow compares floats by IEEE total order, where NaN sorts above every number;
            // NaN is "missing" here, not "out of range", so it is masked out.
            let out = or(
                &lt(&values, &Float64Array::new_scalar(min))?,
                &gt(&values, &Float64Array::new_scalar(max))?,
            )?;
            if values.values().iter().any(|v| v.is_nan()) {
                and_not(&out, &nan_mask(&values))?
            } else {
                out
            }
        }
        Range::Int { min, max } => {
            let values = cast(column, &DataType::Int64)?;
            or(
                &lt(&values, &Int64Array::new_scalar(min))?,
                &gt(&values, &Int64Array::new_scalar(max))?,
            )?
        }
    };
    // A null in the mask (a null value) means "keep".
    reasons.mark(&outside, rule.label);
    Ok(())
}

/// Clamps the column to the range; returns the new column and how many values changed.
pub(crate) fn clip(rule: &ClipRule, column: &ArrayRef) -> Result<(ArrayRef, usize), ArrowError> {
    let data_type = column.data_type().clone();
    let mut changed = 0;
    let clipped: ArrayRef = match rule.range {
        Range::Float { min, max } => {
            let values = as_f64(column)?;
            let out: Float64Array = values
                .iter()
                .map(|v| {
                    v.map(|v| {
                        // NaN is missing, not out of range: it stays NaN.
                        let c = if v.is_nan() { v } else { v.clamp(min, max) };
                        if c != v && !v.is_nan() {
                            changed += 1;
                        }
                        c
                    })
                })
                .collect();
            Arc::new(out)
        }
        Range::Int { min, max } => {
            let values = cast(column, &DataType::Int64)?;
            let out: Int64Array = values
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| {
                    v.map(|v| {
                        let c = v.clamp(min, max);
                        changed += usize::from(c != v);
                        c
                    })
                })
                .collect();
            Arc::new(out)
        }
    };
    if changed == 0 {
        return Ok((column.clone(), 0));
    }
    Ok((cast(&clipped, &data_type)?, changed))
}

/// Normalises a string column; returns the new column and how many values the map replaced.
pub(crate) fn normalize(
    rule: &NormalizeRule,
    column: &ArrayRef,
) -> Result<(ArrayRef, usize), ArrowError> {
    let text = cast(column, &DataType::Utf8)?;
    let mut mapped = 0;
    let out: StringArray = text
        .as_string::<i32>()
        .iter()
        .map(|value| {
            value.map(|value| {
                let value = if rule.trim { value.trim() } else { value };
                let value = match rule.case {
                    Case::Keep => value.to_string(),
                    Case::Lower => value.to_lowercase(),
                    Case::Upper => value.to_uppercase(),
                };
                match rule.map.get(&value) {
                    Some(replacement) => {
                        mapped += 1;
                        replacement.clone()
                    }
                    None => value,
                }
            })
        })
        .collect();
    Ok((
        cast(&(Arc::new(out) as ArrayRef), column.data_type())?,
        mapped,
    ))
}

/// Applies a conversion or calibration; returns the Float64 column and, for calibrations,
/// how many non-null values had no scale or offset (and were left as they were).
pub(crate) fn linear(
    rule: &LinearRule,
    columns: &[ArrayRef],
) -> Result<(ArrayRef, usize), ArrowError> {
    match *rule {
        LinearRule::Convert { column, conversion } => {
            let values = as_f64(&columns[column])?;
            let out: Float64Array = values.unary(|v| conversion.apply(v));
            Ok((Arc::new(out), 0))
        }
        LinearRule::Calibrate {
            column,
            scale,
            offset,
        } => {
            let values = as_f64(&columns[column])?;
            let operand = |o: Operand| -> Result<Option<Float64Array>, ArrowError> {
                match o {
                    Operand::Value(_) => Ok(None),
                    Operand::Column(c) => as_f64(&columns[c]).map(Some),
                }
            };
            let (scales, offsets) = (operand(scale)?, operand(offset)?);
            let pick = |o: Operand, column: &Option<Float64Array>, row: usize| match o {
                Operand::Value(v) => Some(v),
                Operand::Column(_) => column
                    .as_ref()
                    .filter(|c| c.is_valid(row))
                    .map(|c| c.value(row)),
            };
            let mut missing = 0;
            let out: Float64Array = values
                .iter()
                .enumerate()
                .map(|(row, v)| {
                    v.map(|v| {
                        match (pick(scale, &scales, row), pick(offset, &offsets, row)) {
                            (Some(s), Some(o)) => v * s + o,
                            (s, o) => {
                                // A device without calibration keeps its reading, counted.
                                missing += 1;
                                v * s.unwrap_or(1.0) + o.unwrap_or(0.0)
                            }
                        }
                    })
                })
                .collect();
            Ok((Arc::new(out), missing))
        }
    }
}

/// A numeric column as `Float64`.
pub(crate) fn as_f64(column: &ArrayRef) -> Result<Float64Array, ArrowError> {
    let column = match column.data_type() {
        DataType::Float64 => column.clone(),
        _ => cast(column, &DataType::Float64)?,
    };
    Ok(column.as_primitive::<Float64Type>().clone())
}

/// True where the value slot holds NaN (null slots may say anything; [`Reasons::mark`] reads
/// the mask only where the row is kept, and null rows of a float column are handled first).
fn nan_mask(values: &Float64Array) -> BooleanArray {
    let raw = values.values();
    let mask: BooleanArray = (0..raw.len())
        .map(|i| Some(values.is_valid(i) && raw[i].is_nan()))
        .collect();
    mask
}
