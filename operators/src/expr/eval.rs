//! Column-at-a-time evaluation of a [`Typed`] tree over one batch.
//!
//! Every node yields a [`Value`]: either an array with one value per row, or a one-row
//! *scalar* (constants, and anything computed only from constants), which Arrow's `Datum`
//! kernels combine with arrays without expanding it. Arithmetic, comparisons, boolean logic,
//! `is null` and casts are single Arrow kernel calls. Integer arithmetic that overflows is
//! redone in one checked loop over the batch, where the overflowing rows become null.
//!
//! Null semantics are SQL's: an operator with a null operand gives null, except `and`
//! (`false and null` is `false`) and `or` (`true or null` is `true`), and `is [not] null`.
//! Division or remainder by zero gives null. Every null produced by a runtime error (division
//! by zero, overflow, failed cast, `sqrt`/`ln` out of domain) is counted in
//! [`EvalContext::errors`].

use std::sync::Arc;

use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, Datum, Float64Array, Int64Array, UInt32Array, new_null_array,
};
use edgeflow_engine::arrow::compute::kernels::cmp::{eq, gt, gt_eq, lt, lt_eq, neq};
use edgeflow_engine::arrow::compute::kernels::numeric::{add, div, mul, neg, rem, sub};
use edgeflow_engine::arrow::compute::{
    and_kleene, cast, concat, is_not_null, is_null, not, nullif, or_kleene, take,
};
use edgeflow_engine::arrow::datatypes::{DataType, Int64Type};
use edgeflow_engine::arrow::error::ArrowError;

use super::functions;
use super::parse::BinaryOp;
use super::types::{Node, Typed};

/// What evaluation of one batch found besides the values.
#[derive(Debug, Default)]
pub struct EvalContext {
    /// Values that are null because of a runtime error.
    pub errors: usize,
}

/// The result of evaluating a node: an array of one value per row, or a one-row scalar.
#[derive(Clone, Debug)]
pub struct Value {
    /// The values (one row when `scalar`).
    pub array: ArrayRef,
    /// The single value stands for every row.
    pub scalar: bool,
}

impl Value {
    /// One value per row.
    pub fn array(array: ArrayRef) -> Self {
        Self {
            array,
            scalar: false,
        }
    }

    /// One value for every row (`array` has one row).
    pub fn scalar(array: ArrayRef) -> Self {
        Self {
            array,
            scalar: true,
        }
    }

    /// The values as an array of `rows` rows (a scalar is repeated).
    ///
    /// # Errors
    /// Only if Arrow's `take` fails, which it does not for a one-row array.
    pub fn into_array(self, rows: usize) -> Result<ArrayRef, ArrowError> {
        if !self.scalar || self.array.len() == rows {
            return Ok(self.array);
        }
        if self.array.data_type() == &DataType::Null || self.array.is_null(0) {
            return Ok(new_null_array(self.array.data_type(), rows));
        }
        take(&self.array, &UInt32Array::from(vec![0; rows]), None)
    }

    /// Number of null values, counting a null scalar once per row.
    fn nulls(&self, rows: usize) -> usize {
        let nulls = self.array.logical_null_count();
        if self.scalar { nulls * rows } else { nulls }
    }
}

impl Datum for Value {
    fn get(&self) -> (&dyn Array, bool) {
        (self.array.as_ref(), self.scalar)
    }
}

/// Evaluates `typed` over `batch`.
///
/// # Errors
/// Only if a kernel rejects its input, which the type checker prevents for batches of the
/// planned schema.
pub fn evaluate(
    typed: &Typed,
    batch: &RecordBatch,
    ctx: &mut EvalContext,
) -> Result<Value, ArrowError> {
    let rows = batch.num_rows();
    Ok(match &typed.node {
        Node::Column(index) => {
            let column = batch.column(*index);
            if column.data_type() == &typed.data_type {
                Value::array(column.clone())
            } else {
                let (array, failed) = lenient_cast(column, &typed.data_type)?;
                ctx.errors += failed;
                Value::array(array)
            }
        }
        Node::Literal(array) => Value::scalar(array.clone()),
        Node::Arith(op, l, r) => {
            let l = evaluate(l, batch, ctx)?;
            let r = evaluate(r, batch, ctx)?;
            arithmetic(*op, l, r, &typed.data_type, rows, ctx)?
        }
        Node::Compare(op, l, r) => {
            let l = evaluate(l, batch, ctx)?;
            let r = evaluate(r, batch, ctx)?;
            let scalar = l.scalar && r.scalar;
            let result = match op {
                BinaryOp::Eq => eq(&l, &r)?,
                BinaryOp::NotEq => neq(&l, &r)?,
                BinaryOp::Lt => lt(&l, &r)?,
                BinaryOp::LtEq => lt_eq(&l, &r)?,
                BinaryOp::Gt => gt(&l, &r)?,
                BinaryOp::GtEq => gt_eq(&l, &r)?,
                other => unreachable!("'{}' is not a comparison", other.symbol()),
            };
            Value {
                array: Arc::new(result),
                scalar,
            }
        }
        Node::And(l, r) | Node::Or(l, r) => {
            let l = evaluate(l, batch, ctx)?;
            let r = evaluate(r, batch, ctx)?;
            let scalar = l.scalar && r.scalar;
            let len = if scalar { 1 } else { rows };
            let l = l.into_array(len)?;
            let r = r.into_array(len)?;
            let result = if matches!(typed.node, Node::And(..)) {
                and_kleene(l.as_boolean(), r.as_boolean())?
            } else {
                or_kleene(l.as_boolean(), r.as_boolean())?
            };
            Value {
                array: Arc::new(result),
                scalar,
            }
        }
        Node::Not(inner) => {
            let inner = evaluate(inner, batch, ctx)?;
            Value {
                array: Arc::new(not(inner.array.as_boolean())?),
                scalar: inner.scalar,
            }
        }
        Node::Neg(inner) => {
            let inner = evaluate(inner, batch, ctx)?;
            let array = match neg(&inner.array) {
                Ok(array) => array,
                // Only -i64::MIN overflows; redo it with a checked loop.
                Err(_) => {
                    let values = inner.array.as_primitive::<Int64Type>();
                    let out = values.unary_opt::<_, Int64Type>(i64::checked_neg);
                    ctx.errors += out.null_count() - values.null_count();
                    Arc::new(out)
                }
            };
            Value {
                array,
                scalar: inner.scalar,
            }
        }
        Node::IsNull(inner, negated) => {
            let inner = evaluate(inner, batch, ctx)?;
            let result = if *negated {
                is_not_null(&inner.array)?
            } else {
                is_null(&inner.array)?
            };
            Value {
                array: Arc::new(result),
                scalar: inner.scalar,
            }
        }
        Node::Cast { expr, counted } => {
            let inner = evaluate(expr, batch, ctx)?;
            let (array, failed) = lenient_cast(&inner.array, &typed.data_type)?;
            let converted = Value {
                array,
                scalar: inner.scalar,
            };
            if *counted {
                ctx.errors += converted.nulls(rows).saturating_sub(inner.nulls(rows));
            } else {
                ctx.errors += if inner.scalar { failed * rows } else { failed };
            }
            converted
        }
        Node::Call(function, args) => {
            let args = args
                .iter()
                .map(|a| evaluate(a, batch, ctx))
                .collect::<Result<Vec<_>, _>>()?;
            let scalar = args.iter().all(|a| a.scalar);
            let before = ctx.errors;
            let result = functions::call(function, args, &typed.data_type, rows, ctx)?;
            // Functions count errors per computed value; a scalar stands for every row.
            if scalar && ctx.errors > before {
                ctx.errors = before + (ctx.errors - before) * rows;
            }
            result
        }
    })
}

/// `array` converted to `to`, where a value that does not convert is null, and how many of
/// those the cast kernel refused outright.
///
/// The kernel's "safe" mode already turns most failures into nulls, but some (a timestamp
/// outside the calendar range, as text) fail the whole array; then the array is converted
/// value by value, which only happens for batches holding such a value.
fn lenient_cast(array: &ArrayRef, to: &DataType) -> Result<(ArrayRef, usize), ArrowError> {
    if let Ok(converted) = cast(array, to) {
        return Ok((converted, 0));
    }
    let mut failed = 0;
    let parts: Vec<ArrayRef> = (0..array.len())
        .map(|i| {
            cast(&array.slice(i, 1), to).unwrap_or_else(|_| {
                failed += 1;
                new_null_array(to, 1)
            })
        })
        .collect();
    let parts: Vec<&dyn Array> = parts.iter().map(AsRef::as_ref).collect();
    Ok((concat(&parts)?, failed))
}

/// `l op r` for two operands of `data_type` (`int64` or `float64`).
fn arithmetic(
    op: BinaryOp,
    l: Value,
    mut r: Value,
    data_type: &DataType,
    rows: usize,
    ctx: &mut EvalContext,
) -> Result<Value, ArrowError> {
    let scalar = l.scalar && r.scalar;
    let count = if scalar { rows } else { 1 };
    if matches!(op, BinaryOp::Div | BinaryOp::Rem) {
        // Division by zero is null, for floats too (not ±inf or NaN): mask zero divisors out.
        let zero: ArrayRef = match data_type {
            DataType::Float64 => Arc::new(Float64Array::from(vec![0.0])),
            _ => Arc::new(Int64Array::from(vec![0])),
        };
        let is_zero = eq(&r, &Value::scalar(zero))?;
        let zeros = is_zero.true_count();
        if zeros > 0 {
            ctx.errors += if r.scalar { rows } else { zeros };
            r = Value {
                array: nullif(&r.array, &is_zero)?,
                scalar: r.scalar,
            };
        }
    }
    let result = match op {
        BinaryOp::Add => add(&l, &r),
        BinaryOp::Sub => sub(&l, &r),
        BinaryOp::Mul => mul(&l, &r),
        BinaryOp::Div => div(&l, &r),
        BinaryOp::Rem => rem(&l, &r),
        other => unreachable!("'{}' is not arithmetic", other.symbol()),
    };
    let array = match result {
        Ok(array) => array,
        // Integer overflow: the kernels refuse the whole batch, so redo it row by row with
        // checked arithmetic, where only the overflowing rows become null.
        Err(ArrowError::ArithmeticOverflow(_)) if data_type == &DataType::Int64 => {
            let len = if scalar { 1 } else { rows };
            let a = l.into_array(len)?;
            let b = r.into_array(len)?;
            let (a, b) = (a.as_primitive::<Int64Type>(), b.as_primitive::<Int64Type>());
            let mut overflows = 0;
            let out: Int64Array = a
                .iter()
                .zip(b.iter())
                .map(|(x, y)| {
                    let (x, y) = (x?, y?);
                    let value = match op {
                        BinaryOp::Add => x.checked_add(y),
                        BinaryOp::Sub => x.checked_sub(y),
                        BinaryOp::Mul => x.checked_mul(y),
                        _ => x.checked_rem(y),
                    };
                    overflows += usize::from(value.is_none());
                    value
                })
                .collect();
            ctx.errors += overflows * count;
            Arc::new(out)
        }
        Err(error) => return Err(error),
    };
    Ok(Value { array, scalar })
}

#[cfg(test)]
mod tests {
    use edgeflow_engine::arrow::array::{BooleanArray, StringArray};
    use edgeflow_engine::arrow::datatypes::{Field, Schema, SchemaRef};

    use super::*;
    use crate::expr::Expr;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Boolean, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("x", DataType::Float64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
        ]))
    }

    /// Nine rows: every pair of `true`, `false`, `null` for `a` and `b`.
    fn batch() -> RecordBatch {
        let t = [Some(true), Some(false), None];
        let a: BooleanArray = t.iter().flat_map(|&v| [v; 3]).collect();
        let b: BooleanArray = (0..3).flat_map(|_| t).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(a),
                Arc::new(b),
                Arc::new(Float64Array::from(vec![
                    Some(1.0),
                    Some(0.0),
                    None,
                    Some(-3.0),
                    Some(4.5),
                    Some(10.0),
                    Some(f64::NAN),
                    Some(2.0),
                    Some(0.5),
                ])),
                Arc::new(edgeflow_engine::arrow::array::Int32Array::from(vec![
                    Some(7),
                    Some(0),
                    None,
                    Some(-7),
                    Some(3),
                    Some(i32::MAX),
                    Some(1),
                    Some(2),
                    Some(0),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("7"),
                    Some("x"),
                    None,
                    Some("1.5"),
                    Some(""),
                    Some("3"),
                    Some("a"),
                    Some("b"),
                    Some("c"),
                ])),
            ],
        )
        .unwrap()
    }

    fn run(text: &str) -> (ArrayRef, usize) {
        let expr = Expr::compile(text, &schema()).unwrap_or_else(|e| panic!("{text}: {e}"));
        let out = expr.evaluate(&batch()).unwrap();
        assert_eq!(out.values.len(), 9, "{text}");
        assert_eq!(out.values.data_type(), expr.data_type(), "{text}");
        (out.values, out.errors)
    }

    fn bools(text: &str) -> Vec<Option<bool>> {
        run(text).0.as_boolean().iter().collect()
    }

    fn ints(text: &str) -> (Vec<Option<i64>>, usize) {
        let (values, errors) = run(text);
        (values.as_primitive::<Int64Type>().iter().collect(), errors)
    }

    fn floats(text: &str) -> (Vec<Option<f64>>, usize) {
        let (values, errors) = run(text);
        (
            values
                .as_primitive::<edgeflow_engine::arrow::datatypes::Float64Type>()
                .iter()
                .collect(),
            errors,
        )
    }

    const T: Option<bool> = Some(true);
    const F: Option<bool> = Some(false);
    const N: Option<bool> = None;

    #[test]
    fn three_valued_logic() {
        // Rows: (a, b) = TT TF TN FT FF FN NT NF NN.
        assert_eq!(bools("a and b"), [T, F, N, F, F, F, N, F, N]);
        assert_eq!(bools("a or b"), [T, T, T, T, F, N, T, N, N]);
        assert_eq!(bools("not a"), [F, F, F, T, T, T, N, N, N]);
        assert_eq!(bools("a is null"), [F, F, F, F, F, F, T, T, T]);
        assert_eq!(bools("b is not null"), [T, T, F, T, T, F, T, T, F]);
        assert_eq!(bools("a and null"), [N, N, N, F, F, F, N, N, N]);
        assert_eq!(bools("a or true"), [T; 9]);
        assert_eq!(bools("null = 1"), [N; 9]);
        assert_eq!(bools("a = b"), [T, F, N, F, T, N, N, N, N]);
        assert_eq!(bools("null is null"), [T; 9]);
        assert_eq!(bools("coalesce(null) is not null"), [F; 9]);
        assert_eq!(bools("not null"), [N; 9]);
    }

    #[test]
    fn comparisons_with_nulls_and_mixed_numbers() {
        assert_eq!(bools("x > 0"), [T, F, N, F, T, T, T, T, T]);
        assert_eq!(bools("n = x"), [F, T, N, F, F, F, F, T, F]);
        assert_eq!(bools("s <> 'x'"), [T, F, N, T, T, T, T, T, T]);
        assert_eq!(bools("1 < 2"), [T; 9]);
    }

    #[test]
    fn division_by_zero_is_null_and_counted() {
        let (values, errors) = floats("x / n");
        assert_eq!(values[0], Some(1.0 / 7.0));
        assert_eq!(values[1], None);
        assert_eq!(values[8], None);
        assert_eq!(values[2], None);
        assert_eq!(errors, 2);
        let (values, errors) = ints("n % 0");
        assert_eq!(values, [None; 9]);
        assert_eq!(errors, 9);
        let (values, errors) = ints("n % 4");
        assert_eq!(values[3], Some(-3));
        assert_eq!(errors, 0);
        let (values, _) = floats("x / 0.0");
        assert_eq!(values, [None; 9]);
        assert_eq!(floats("7 / 2").0[0], Some(3.5));
    }

    #[test]
    fn overflow_is_null_and_counted() {
        let (values, errors) = ints("n * 9223372036854775807");
        assert_eq!(values[1], Some(0));
        assert_eq!(values[6], Some(i64::MAX));
        assert_eq!(values[0], None);
        assert_eq!(errors, 5);
        let (values, errors) = ints("-(n - 9223372036854775807 - 1)");
        // Rows 1 and 8 (n = 0) overflow in the negation, row 3 (n = -7) in the subtraction.
        assert_eq!(values[1], None);
        assert_eq!(errors, 3);
        assert_eq!(ints("n + 1").0[5], Some(i64::from(i32::MAX) + 1));
    }

    #[test]
    fn arithmetic_precedence_and_types() {
        let (values, errors) = floats("x - (100 - n) / 5");
        assert_eq!(values[0], Some(1.0 - 93.0 / 5.0));
        assert_eq!(errors, 0);
        assert_eq!(ints("n - 2 * 3").0[0], Some(1));
        assert_eq!(ints("null + n").0, [None; 9]);
    }

    #[test]
    fn failed_casts_are_null_and_counted() {
        let (values, errors) = floats("cast(s as float64)");
        assert_eq!(values[..4], [Some(7.0), None, None, Some(1.5)]);
        // "x", "", "a", "b", "c" fail; the null stays null without counting.
        assert_eq!(errors, 5);
        let (values, errors) = ints("cast('nope' as int)");
        assert_eq!(values, [None; 9]);
        assert_eq!(errors, 9);
    }
}
