//! The functions of the expression language: their plan-time signatures
//! ([`check_call`]) and their column-at-a-time implementations ([`call`]).
//!
//! | function | arguments | result |
//! |---|---|---|
//! | `coalesce(a, b, …)` | values of one type | the first non-null |
//! | `lower(s)`, `upper(s)`, `trim(s)` | string | string |
//! | `concat(a, b, …)` | any values (converted to text) | string; null if any is null |
//! | `split(s, 'sep')[i]` | string, string literal, integer index | string; null if out of range |
//! | `regex_match(s, 'pattern')` | string, string literal | bool |
//! | `abs(x)`, `round(x)`, `round(x, digits)` | number | same type |
//! | `clamp(x, lo, hi)` | numbers | common type |
//! | `sqrt(x)`, `ln(x)`, `exp(x)` | number | float64 |
//! | `hour(ts)` | timestamp | int64 (0–23, UTC) |
//! | `date_trunc('unit', ts)` | `second`, `minute`, `hour`, `day` | timestamp |
//!
//! Where Arrow has a kernel the implementation calls it; `lower`, `upper`, `trim`, `split`,
//! `round` and `date_trunc` are one loop over the array each.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, StringArray, new_null_array,
};
use edgeflow_engine::arrow::compute::kernels::cmp::{gt, lt};
use edgeflow_engine::arrow::compute::kernels::concat_elements::concat_elements_utf8;
use edgeflow_engine::arrow::compute::kernels::regexp::regexp_is_match_scalar;
use edgeflow_engine::arrow::compute::kernels::temporal::{DatePart, date_part};
use edgeflow_engine::arrow::compute::kernels::zip::zip;
use edgeflow_engine::arrow::compute::{cast, is_not_null};
use edgeflow_engine::arrow::datatypes::{
    DataType, Float64Type, Int64Type, Schema, TimestampMillisecondType,
};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::config::closest_name;
use edgeflow_engine::schema::{UTC, timestamp_type};

use super::ExprError;
use super::eval::{EvalContext, Value};
use super::parse::{Ast, AstKind, Literal};
use super::types::{Typed, check, coerce, is_numeric, name, unify};

/// A function with its constant arguments resolved at plan time.
#[derive(Clone, Debug, PartialEq)]
pub enum Function {
    /// `coalesce(a, b, …)`
    Coalesce,
    /// `lower(s)`
    Lower,
    /// `upper(s)`
    Upper,
    /// `trim(s)`
    Trim,
    /// `concat(a, b, …)`
    Concat,
    /// `split(s, separator)[index]` (negative indices count from the end).
    Split {
        /// The separator (a literal).
        separator: String,
        /// The part to keep.
        index: i64,
    },
    /// `regex_match(s, pattern)`
    RegexMatch(String),
    /// `abs(x)`
    Abs,
    /// `round(x, digits)`
    Round(i32),
    /// `clamp(x, lo, hi)`
    Clamp,
    /// `sqrt(x)`
    Sqrt,
    /// `ln(x)`
    Ln,
    /// `exp(x)`
    Exp,
    /// `hour(ts)`
    Hour,
    /// `date_trunc(unit, ts)`, with the unit in milliseconds.
    DateTrunc(i64),
}

/// Every function name (and `cast`), sorted, for "did you mean" hints and help texts.
pub const NAMES: [&str; 16] = [
    "abs",
    "cast",
    "clamp",
    "coalesce",
    "concat",
    "date_trunc",
    "exp",
    "hour",
    "ln",
    "lower",
    "regex_match",
    "round",
    "split",
    "sqrt",
    "trim",
    "upper",
];

const DATE_TRUNC_UNITS: [(&str, i64); 4] = [
    ("second", 1_000),
    ("minute", 60_000),
    ("hour", 3_600_000),
    ("day", 86_400_000),
];

fn arity(name: &str, offset: usize, given: usize, min: usize, max: usize) -> Result<(), ExprError> {
    if (min..=max).contains(&given) {
        return Ok(());
    }
    let wanted = match (min, max) {
        (min, usize::MAX) => format!("at least {min} arguments"),
        (1, 1) => "1 argument".to_string(),
        (min, max) if min == max => format!("{min} arguments"),
        (min, max) => format!("{min} to {max} arguments"),
    };
    Err(ExprError::new(
        offset,
        format!("'{name}' takes {wanted}, but {given} given"),
    ))
}

/// The typed argument, or an error at the argument saying what `name` wanted.
fn want(
    name: &str,
    arg: &Ast,
    typed: Typed,
    ok: impl Fn(&DataType) -> bool,
    expected: &str,
) -> Result<Typed, ExprError> {
    if ok(&typed.data_type) || typed.data_type == DataType::Null {
        return Ok(typed);
    }
    Err(ExprError::new(
        arg.offset,
        format!(
            "'{name}' takes {expected}, not {}",
            name_of(&typed.data_type)
        ),
    ))
}

fn name_of(data_type: &DataType) -> String {
    name(data_type)
}

fn string_literal<'a>(name: &str, arg: &'a Ast, what: &str) -> Result<&'a str, ExprError> {
    match &arg.kind {
        AstKind::Literal(Literal::Str(s)) => Ok(s),
        _ => Err(ExprError::new(
            arg.offset,
            format!("the {what} of '{name}' must be a string literal in quotes"),
        )),
    }
}

/// Checks a call of `name` (other than `split`, which must be indexed; see [`check_split`]).
///
/// # Errors
/// An unknown function (with a hint), a wrong number of arguments, an argument of the wrong
/// type or a bad constant argument.
pub fn check_call(
    name: &str,
    offset: usize,
    args: &[Ast],
    schema: &Schema,
) -> Result<Typed, ExprError> {
    if !NAMES.contains(&name) {
        let error = ExprError::new(offset, format!("unknown function '{name}'"));
        return Err(match closest_name(name, NAMES) {
            Some(best) => error.with_hint(format!("did you mean '{best}'?")),
            None => error.with_hint(format!("the functions are: {}", NAMES.join(", "))),
        });
    }
    let call = |function: Function, args: Vec<Typed>, data_type: DataType| Typed {
        node: super::types::Node::Call(function, args),
        data_type,
    };
    let string = |t: &DataType| t == &DataType::Utf8;
    let number = |t: &DataType| is_numeric(t);
    let time = |t: &DataType| t == &timestamp_type();
    match name {
        "split" => {
            arity(name, offset, args.len(), 2, 2)?;
            Err(ExprError::new(
                offset,
                "split(text, separator) gives a list of parts: pick one with split(text, \
                 separator)[i]",
            ))
        }
        "cast" => Err(ExprError::new(
            offset,
            "cast is written cast(x as type), as in cast(x as float64)",
        )),
        "coalesce" => {
            arity(name, offset, args.len(), 1, usize::MAX)?;
            let mut typed = Vec::with_capacity(args.len());
            let mut common = DataType::Null;
            for arg in args {
                let t = check(arg, schema)?;
                common = unify(&common, &t.data_type).ok_or_else(|| {
                    ExprError::new(
                        arg.offset,
                        format!(
                            "the arguments of 'coalesce' must have one type, but this one is \
                             {} and an earlier one {}",
                            name_of(&t.data_type),
                            name_of(&common)
                        ),
                    )
                })?;
                typed.push(t);
            }
            let typed = typed.into_iter().map(|t| coerce(t, &common)).collect();
            Ok(call(Function::Coalesce, typed, common))
        }
        "lower" | "upper" | "trim" => {
            arity(name, offset, args.len(), 1, 1)?;
            let arg = want(name, &args[0], check(&args[0], schema)?, string, "a string")?;
            let function = match name {
                "lower" => Function::Lower,
                "upper" => Function::Upper,
                _ => Function::Trim,
            };
            Ok(call(
                function,
                vec![coerce(arg, &DataType::Utf8)],
                DataType::Utf8,
            ))
        }
        "concat" => {
            arity(name, offset, args.len(), 1, usize::MAX)?;
            let typed = args
                .iter()
                .map(|a| Ok(coerce(check(a, schema)?, &DataType::Utf8)))
                .collect::<Result<_, ExprError>>()?;
            Ok(call(Function::Concat, typed, DataType::Utf8))
        }
        "regex_match" => {
            arity(name, offset, args.len(), 2, 2)?;
            let text = want(name, &args[0], check(&args[0], schema)?, string, "a string")?;
            let pattern = string_literal(name, &args[1], "pattern")?;
            // Compiling the pattern once here turns a bad pattern into a plan error.
            if let Err(error) = regexp_is_match_scalar(&StringArray::from(vec![""]), pattern, None)
            {
                return Err(ExprError::new(
                    args[1].offset,
                    format!("invalid regular expression '{pattern}': {error}"),
                ));
            }
            Ok(call(
                Function::RegexMatch(pattern.to_string()),
                vec![coerce(text, &DataType::Utf8)],
                DataType::Boolean,
            ))
        }
        "abs" | "round" => {
            arity(
                name,
                offset,
                args.len(),
                1,
                if name == "round" { 2 } else { 1 },
            )?;
            let x = want(name, &args[0], check(&args[0], schema)?, number, "a number")?;
            let data_type = if x.data_type == DataType::Float64 {
                DataType::Float64
            } else {
                DataType::Int64
            };
            let function = if name == "abs" {
                Function::Abs
            } else {
                let digits = match args.get(1).map(|a| &a.kind) {
                    None => 0,
                    Some(AstKind::Literal(Literal::Int(d))) if (-18..=18).contains(d) => *d as i32,
                    Some(_) => {
                        return Err(ExprError::new(
                            args[1].offset,
                            "the digits of 'round' must be an integer literal from -18 to 18",
                        ));
                    }
                };
                Function::Round(digits)
            };
            Ok(call(function, vec![coerce(x, &data_type)], data_type))
        }
        "clamp" => {
            arity(name, offset, args.len(), 3, 3)?;
            let mut typed = Vec::with_capacity(3);
            let mut common = DataType::Null;
            for arg in args {
                let t = want(name, arg, check(arg, schema)?, number, "numbers")?;
                common = unify(&common, &t.data_type).unwrap_or(DataType::Float64);
                typed.push(t);
            }
            if common == DataType::Null {
                common = DataType::Int64;
            }
            let typed = typed.into_iter().map(|t| coerce(t, &common)).collect();
            Ok(call(Function::Clamp, typed, common))
        }
        "sqrt" | "ln" | "exp" => {
            arity(name, offset, args.len(), 1, 1)?;
            let x = want(name, &args[0], check(&args[0], schema)?, number, "a number")?;
            let function = match name {
                "sqrt" => Function::Sqrt,
                "ln" => Function::Ln,
                _ => Function::Exp,
            };
            Ok(call(
                function,
                vec![coerce(x, &DataType::Float64)],
                DataType::Float64,
            ))
        }
        "hour" => {
            arity(name, offset, args.len(), 1, 1)?;
            let ts = want(
                name,
                &args[0],
                check(&args[0], schema)?,
                time,
                "a timestamp",
            )?;
            Ok(call(
                Function::Hour,
                vec![coerce(ts, &timestamp_type())],
                DataType::Int64,
            ))
        }
        "date_trunc" => {
            arity(name, offset, args.len(), 2, 2)?;
            let unit = string_literal(name, &args[0], "unit")?;
            let Some(&(_, millis)) = DATE_TRUNC_UNITS
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(unit))
            else {
                let error =
                    ExprError::new(args[0].offset, format!("unknown date_trunc unit '{unit}'"));
                let units = DATE_TRUNC_UNITS.iter().map(|(u, _)| *u);
                return Err(match closest_name(unit, units) {
                    Some(best) => error.with_hint(format!("did you mean '{best}'?")),
                    None => error.with_hint("the units are: second, minute, hour, day"),
                });
            };
            let ts = want(
                name,
                &args[1],
                check(&args[1], schema)?,
                time,
                "a timestamp",
            )?;
            Ok(call(
                Function::DateTrunc(millis),
                vec![coerce(ts, &timestamp_type())],
                timestamp_type(),
            ))
        }
        _ => unreachable!("every name in NAMES has a case"),
    }
}

/// Checks `split(args)[index]`.
///
/// # Errors
/// A wrong number of arguments, a non-string text or a separator that is not a non-empty
/// string literal.
pub fn check_split(
    offset: usize,
    args: &[Ast],
    index: i64,
    schema: &Schema,
) -> Result<Typed, ExprError> {
    arity("split", offset, args.len(), 2, 2)?;
    let text = want(
        "split",
        &args[0],
        check(&args[0], schema)?,
        |t| t == &DataType::Utf8,
        "a string",
    )?;
    let separator = string_literal("split", &args[1], "separator")?;
    if separator.is_empty() {
        return Err(ExprError::new(
            args[1].offset,
            "the separator of 'split' must not be empty",
        ));
    }
    Ok(Typed {
        node: super::types::Node::Call(
            Function::Split {
                separator: separator.to_string(),
                index,
            },
            vec![coerce(text, &DataType::Utf8)],
        ),
        data_type: DataType::Utf8,
    })
}

/// Applies `f` to a value's array, keeping it a scalar if it was one.
fn map(
    value: &Value,
    f: impl FnOnce(&ArrayRef) -> Result<ArrayRef, ArrowError>,
) -> Result<Value, ArrowError> {
    Ok(Value {
        array: f(&value.array)?,
        scalar: value.scalar,
    })
}

fn strings(array: &ArrayRef, f: impl Fn(&str) -> String) -> ArrayRef {
    let out: StringArray = array.as_string::<i32>().iter().map(|s| s.map(&f)).collect();
    Arc::new(out)
}

/// Evaluates `function` over its evaluated arguments (of the types [`check_call`] gave them),
/// for a batch of `rows` rows.
///
/// # Errors
/// Only when a kernel fails on input of an unexpected type (a bug).
pub fn call(
    function: &Function,
    args: Vec<Value>,
    data_type: &DataType,
    rows: usize,
    ctx: &mut EvalContext,
) -> Result<Value, ArrowError> {
    // Arguments of type null (a bare `null`) make every result null.
    let null_argument = args.iter().any(|a| a.array.data_type() == &DataType::Null);
    if (data_type == &DataType::Null || null_argument) && *function != Function::Coalesce {
        return Ok(Value::scalar(new_null_array(data_type, 1)));
    }
    let first = &args[0];
    match function {
        Function::Coalesce => {
            let mut args = args.into_iter();
            let mut acc = args.next().expect("coalesce has an argument");
            for next in args {
                if acc.array.null_count() == 0 {
                    break;
                }
                acc = if acc.scalar {
                    next
                } else {
                    let present = is_not_null(&acc.array)?;
                    Value::array(zip(&present, &acc, &next)?)
                };
            }
            let _ = rows;
            Ok(acc)
        }
        Function::Lower => map(first, |a| Ok(strings(a, str::to_lowercase))),
        Function::Upper => map(first, |a| Ok(strings(a, str::to_uppercase))),
        Function::Trim => map(first, |a| Ok(strings(a, |s| s.trim().to_string()))),
        Function::Concat => {
            let all_scalar = args.iter().all(|a| a.scalar);
            let len = if all_scalar { 1 } else { rows };
            let mut args = args.into_iter();
            let mut acc = args
                .next()
                .expect("concat has an argument")
                .into_array(len)?;
            for next in args {
                let next = next.into_array(len)?;
                acc = Arc::new(concat_elements_utf8(
                    acc.as_string::<i32>(),
                    next.as_string::<i32>(),
                )?);
            }
            Ok(Value {
                array: acc,
                scalar: all_scalar,
            })
        }
        Function::Split { separator, index } => map(first, |a| {
            let index = *index;
            let out: StringArray = a
                .as_string::<i32>()
                .iter()
                .map(|s| {
                    let s = s?;
                    if index >= 0 {
                        s.split(separator.as_str()).nth(index as usize)
                    } else {
                        let from_end = index.unsigned_abs() as usize - 1;
                        s.rsplit(separator.as_str()).nth(from_end)
                    }
                })
                .collect();
            Ok(Arc::new(out))
        }),
        Function::RegexMatch(pattern) => map(first, |a| {
            Ok(Arc::new(regexp_is_match_scalar(a.as_string::<i32>(), pattern, None)?) as ArrayRef)
        }),
        Function::Abs => map(first, |a| {
            Ok(match a.data_type() {
                DataType::Float64 => Arc::new(
                    a.as_primitive::<Float64Type>()
                        .unary::<_, Float64Type>(f64::abs),
                ),
                _ => {
                    let values = a.as_primitive::<Int64Type>();
                    let out = values.unary_opt::<_, Int64Type>(i64::checked_abs);
                    ctx.errors += out.null_count() - values.null_count();
                    Arc::new(out)
                }
            })
        }),
        Function::Round(digits) => map(first, |a| {
            Ok(match a.data_type() {
                DataType::Float64 => {
                    let scale = 10f64.powi(*digits);
                    Arc::new(
                        a.as_primitive::<Float64Type>()
                            .unary::<_, Float64Type>(|x| (x * scale).round() / scale),
                    )
                }
                _ if *digits >= 0 => a.clone(),
                _ => {
                    let scale = 10i64.pow(digits.unsigned_abs());
                    let values = a.as_primitive::<Int64Type>();
                    let out = values.unary_opt::<_, Int64Type>(|x| {
                        let half = scale / 2;
                        let rounded = if x >= 0 {
                            x.checked_add(half)?
                        } else {
                            x.checked_sub(half)?
                        };
                        Some(rounded / scale * scale)
                    });
                    ctx.errors += out.null_count() - values.null_count();
                    Arc::new(out)
                }
            })
        }),
        Function::Clamp => {
            let (x, lo, hi) = (&args[0], &args[1], &args[2]);
            let scalar = x.scalar && lo.scalar && hi.scalar;
            let len = if scalar { 1 } else { rows };
            let below = lt(x, lo)?;
            let below = expand_mask(below, len)?;
            let raised = Value::array(zip(&below, lo, x)?);
            let above = expand_mask(gt(&raised, hi)?, len)?;
            Ok(Value {
                array: zip(&above, hi, &raised)?,
                scalar,
            })
        }
        Function::Sqrt | Function::Ln => map(first, |a| {
            let values = a.as_primitive::<Float64Type>();
            let out = if matches!(function, Function::Sqrt) {
                values.unary_opt::<_, Float64Type>(|x| (x >= 0.0).then(|| x.sqrt()))
            } else {
                values.unary_opt::<_, Float64Type>(|x| (x > 0.0).then(|| x.ln()))
            };
            ctx.errors += out.null_count() - values.null_count();
            Ok(Arc::new(out) as ArrayRef)
        }),
        Function::Exp => map(first, |a| {
            Ok(Arc::new(
                a.as_primitive::<Float64Type>()
                    .unary::<_, Float64Type>(f64::exp),
            ) as ArrayRef)
        }),
        Function::Hour => map(first, |a| {
            cast(&date_part(a, DatePart::Hour)?, &DataType::Int64)
        }),
        Function::DateTrunc(unit) => map(first, |a| {
            let unit = *unit;
            let values = a.as_primitive::<TimestampMillisecondType>();
            // Only times within a unit of the earliest representable one overflow.
            let out = values
                .unary_opt::<_, TimestampMillisecondType>(|t| t.checked_sub(t.rem_euclid(unit)))
                .with_timezone(UTC);
            ctx.errors += out.null_count() - values.null_count();
            Ok(Arc::new(out) as ArrayRef)
        }),
    }
}

/// A comparison result as a `len`-row mask (a scalar comparison gives one row).
fn expand_mask(mask: BooleanArray, len: usize) -> Result<BooleanArray, ArrowError> {
    if mask.len() == len {
        return Ok(mask);
    }
    let value = Value::scalar(Arc::new(mask));
    Ok(value.into_array(len)?.as_boolean().clone())
}

#[cfg(test)]
mod tests {
    use edgeflow_engine::arrow::array::{
        Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray,
    };
    use edgeflow_engine::arrow::datatypes::{Field, SchemaRef};

    use super::*;
    use crate::expr::Expr;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("ts", timestamp_type(), true),
        ]))
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("  Sensors/Site-3/Temp "),
                    None,
                    Some("a/b"),
                ])),
                Arc::new(Float64Array::from(vec![Some(-2.25), Some(16.0), None])),
                Arc::new(Int64Array::from(vec![Some(-7), None, Some(i64::MIN)])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_717_200_123_456), Some(-1), None])
                        .with_timezone(UTC),
                ),
            ],
        )
        .unwrap()
    }

    /// Evaluates `text` over [`batch`], returning values rendered as text and the error count.
    fn eval(text: &str) -> (Vec<Option<String>>, usize) {
        let expr = Expr::compile(text, &schema()).unwrap_or_else(|e| panic!("{text}: {e}"));
        let out = expr.evaluate(&batch()).unwrap();
        assert_eq!(out.values.data_type(), expr.data_type(), "{text}");
        let rendered = cast(&out.values, &DataType::Utf8).unwrap();
        let rendered = rendered.as_string::<i32>();
        (
            rendered.iter().map(|v| v.map(str::to_string)).collect(),
            out.errors,
        )
    }

    fn values(text: &str) -> Vec<Option<String>> {
        eval(text).0
    }

    fn some(items: &[Option<&str>]) -> Vec<Option<String>> {
        items.iter().map(|v| v.map(str::to_string)).collect()
    }

    #[test]
    fn string_functions() {
        assert_eq!(
            values("lower(s)"),
            some(&[Some("  sensors/site-3/temp "), None, Some("a/b")])
        );
        assert_eq!(values("upper(s)")[2].as_deref(), Some("A/B"));
        assert_eq!(values("trim(s)")[0].as_deref(), Some("Sensors/Site-3/Temp"));
        assert_eq!(
            values("concat(s, '-', n)"),
            some(&[
                Some("  Sensors/Site-3/Temp --7"),
                None,
                Some("a/b--9223372036854775808")
            ])
        );
        assert_eq!(values("concat('a', 1)"), some(&[Some("a1"); 3]));
        assert_eq!(
            values("split(trim(s), '/')[1]"),
            some(&[Some("Site-3"), None, Some("b")])
        );
        assert_eq!(
            values("split(s, '/')[2]"),
            some(&[Some("Temp "), None, None])
        );
        assert_eq!(
            values("split(s, '/')[-1]"),
            some(&[Some("Temp "), None, Some("b")])
        );
        assert_eq!(
            values("regex_match(s, '^a/')"),
            some(&[Some("false"), None, Some("true")])
        );
    }

    #[test]
    fn math_functions() {
        assert_eq!(values("abs(x)"), some(&[Some("2.25"), Some("16.0"), None]));
        // abs(i64::MIN) overflows: null, counted.
        assert_eq!(eval("abs(n)"), (some(&[Some("7"), None, None]), 1));
        assert_eq!(
            values("round(x)"),
            some(&[Some("-2.0"), Some("16.0"), None])
        );
        assert_eq!(values("round(x, 1)")[0].as_deref(), Some("-2.3"));
        assert_eq!(values("round(n, -1)")[0].as_deref(), Some("-10"));
        assert_eq!(values("round(n)")[0].as_deref(), Some("-7"));
        assert_eq!(
            values("clamp(x, 0, 10)"),
            some(&[Some("0.0"), Some("10.0"), None])
        );
        assert_eq!(values("clamp(n, -5, 5)")[0].as_deref(), Some("-5"));
        assert_eq!(values("clamp(3, 0, 2)"), some(&[Some("2"); 3]));
        assert_eq!(eval("sqrt(x)"), (some(&[None, Some("4.0"), None]), 1));
        assert_eq!(eval("ln(x - 15)"), (some(&[None, Some("0.0"), None]), 1));
        assert_eq!(values("exp(0)"), some(&[Some("1.0"); 3]));
    }

    #[test]
    fn time_functions() {
        // 1_717_200_123_456 is 2024-06-01T00:02:03.456Z; -1 is 1969-12-31T23:59:59.999Z.
        assert_eq!(values("hour(ts)"), some(&[Some("0"), Some("23"), None]));
        let truncated = values("cast(date_trunc('minute', ts) as int64)");
        assert_eq!(
            truncated,
            some(&[Some("1717200120000"), Some("-60000"), None])
        );
        assert_eq!(
            values("cast(date_trunc('Day', ts) as int64)")[1].as_deref(),
            Some("-86400000")
        );
        assert_eq!(
            values("cast(date_trunc('second', ts) as int64)")[0].as_deref(),
            Some("1717200123000")
        );
    }

    #[test]
    fn coalesce_and_casts() {
        assert_eq!(
            values("coalesce(n, 0)"),
            some(&[Some("-7"), Some("0"), Some("-9223372036854775808")])
        );
        assert_eq!(
            values("coalesce(x, n, 1.5)"),
            some(&[Some("-2.25"), Some("16.0"), Some("-9.223372036854776e18")])
        );
        assert_eq!(values("coalesce(null, 'a')"), some(&[Some("a"); 3]));
        assert_eq!(values("coalesce(null)"), some(&[None; 3]));
        // A failed cast is null and counted.
        assert_eq!(eval("cast(s as float64)"), (some(&[None; 3]), 2));
        assert_eq!(eval("cast('12' as int64) + 1"), (some(&[Some("13"); 3]), 0));
    }

    #[test]
    fn call_errors() {
        let error = |text: &str| Expr::compile(text, &schema()).unwrap_err();
        let e = error("lowr(s)");
        assert_eq!(e.message, "unknown function 'lowr'");
        assert_eq!(e.hint.as_deref(), Some("did you mean 'lower'?"));
        let e = error("x + lower(s, s)");
        assert_eq!(e.offset, 4);
        assert_eq!(e.message, "'lower' takes 1 argument, but 2 given");
        let e = error("clamp(x, 1)");
        assert_eq!(e.message, "'clamp' takes 3 arguments, but 2 given");
        let e = error("lower(x)");
        assert_eq!(e.message, "'lower' takes a string, not float64");
        assert_eq!(e.offset, 6);
        let e = error("sqrt(s)");
        assert_eq!(e.offset, 5);
        let e = error("split(s, '/')");
        assert!(e.message.contains("split(text, separator)[i]"));
        let e = error("split(s, s)[0]");
        assert_eq!(e.offset, 9);
        let e = error("regex_match(s, '(')");
        assert!(
            e.message.contains("invalid regular expression"),
            "{}",
            e.message
        );
        let e = error("date_trunc('minutes', ts)");
        assert_eq!(e.hint.as_deref(), Some("did you mean 'minute'?"));
        let e = error("hour(x)");
        assert_eq!(e.message, "'hour' takes a timestamp, not float64");
        let e = error("coalesce(x, s)");
        assert_eq!(e.offset, 12);
        let e = error("x[1]");
        assert!(e.message.contains("only split"));
        let e = error("coalesce()");
        assert!(e.message.contains("at least 1"));
    }
}
