//! Plan-time type checking: a syntax tree plus the input schema becomes a [`Typed`] tree in
//! which every node knows its Arrow type and every implicit conversion is explicit.
//!
//! Expressions compute with five types: `int64`, `float64`, `string`, `bool` and
//! `timestamp_ms` (plus the type of a bare `null`). Input columns of narrower types are
//! widened when read (`int32` → `int64`, `float32` → `float64`). The rules:
//!
//! * `+ - * %` take numbers; two `int64`s give `int64`, anything with a `float64` gives
//!   `float64`. `/` always gives `float64` (`7 / 2` is `3.5`).
//! * Comparisons take two values of the same type, where `int64` and `float64` mix, and a
//!   timestamp may be compared with an RFC 3339 string literal.
//! * `and`, `or`, `not` take `bool`s. `null` fits wherever a value of any type is expected.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, NullArray, StringArray, new_null_array,
};
use edgeflow_engine::arrow::compute::kernels::cast::{
    CastOptions, can_cast_types, cast_with_options,
};
use edgeflow_engine::arrow::datatypes::{DataType, Schema, TimeUnit};
use edgeflow_engine::config::closest_name;
use edgeflow_engine::schema::{FieldType, timestamp_type, type_name};

use super::ExprError;
use super::functions::{self, Function};
use super::parse::{Ast, AstKind, BinaryOp, Literal};

/// A type-checked expression node.
#[derive(Clone, Debug)]
pub struct Typed {
    /// What the node computes.
    pub node: Node,
    /// The Arrow type of its values.
    pub data_type: DataType,
}

/// The kinds of typed node. Operands of a node already have the types it needs.
#[derive(Clone, Debug)]
pub enum Node {
    /// Input column `index`, converted to the node's type when it differs.
    Column(usize),
    /// A constant: a one-row array of the node's type.
    Literal(ArrayRef),
    /// `+ - * / %` on two operands of the node's type (`int64` or `float64`).
    Arith(BinaryOp, Box<Typed>, Box<Typed>),
    /// A comparison of two operands of the same type.
    Compare(BinaryOp, Box<Typed>, Box<Typed>),
    /// SQL `and` (false wins over null).
    And(Box<Typed>, Box<Typed>),
    /// SQL `or` (true wins over null).
    Or(Box<Typed>, Box<Typed>),
    /// `not`.
    Not(Box<Typed>),
    /// Unary minus.
    Neg(Box<Typed>),
    /// `is null` (`true`: `is not null`).
    IsNull(Box<Typed>, bool),
    /// A conversion to the node's type; `counted`: failures are runtime errors (explicit
    /// `cast`), otherwise the conversion cannot fail (`int64` → `float64`).
    Cast {
        /// The value converted.
        expr: Box<Typed>,
        /// Count values that fail to convert.
        counted: bool,
    },
    /// A function call.
    Call(Function, Vec<Typed>),
}

/// The type expressions compute with for a column of type `data_type`, if any.
pub fn normalize(data_type: &DataType) -> Option<DataType> {
    Some(match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => DataType::Int64,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::Boolean => DataType::Boolean,
        DataType::Timestamp(_, _) => timestamp_type(),
        DataType::Null => DataType::Null,
        _ => return None,
    })
}

/// True for `int64` and `float64`.
pub fn is_numeric(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Int64 | DataType::Float64)
}

/// The type name used in messages.
pub fn name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "null".into(),
        other => type_name(other),
    }
}

/// A one-row constant of the given literal.
pub fn literal(value: &Literal) -> Typed {
    let array: ArrayRef = match value {
        Literal::Int(v) => Arc::new(Int64Array::from(vec![*v])),
        Literal::Float(v) => Arc::new(Float64Array::from(vec![*v])),
        Literal::Str(s) => Arc::new(StringArray::from(vec![s.as_str()])),
        Literal::Bool(b) => Arc::new(BooleanArray::from(vec![*b])),
        Literal::Null => Arc::new(NullArray::new(1)),
    };
    Typed {
        data_type: array.data_type().clone(),
        node: Node::Literal(array),
    }
}

/// `typed` converted to `to` (constants are converted here, once). The caller has checked
/// that the conversion is one that cannot fail (`null` to anything, `int64` to `float64`).
pub fn coerce(typed: Typed, to: &DataType) -> Typed {
    if &typed.data_type == to {
        return typed;
    }
    if let Node::Literal(array) = &typed.node {
        let options = CastOptions::default();
        if let Ok(converted) = cast_with_options(array, to, &options) {
            return Typed {
                node: Node::Literal(converted),
                data_type: to.clone(),
            };
        }
        if array.data_type() == &DataType::Null {
            return Typed {
                node: Node::Literal(new_null_array(to, 1)),
                data_type: to.clone(),
            };
        }
    }
    Typed {
        node: Node::Cast {
            expr: Box::new(typed),
            counted: false,
        },
        data_type: to.clone(),
    }
}

/// The type two operands meet at, if they can: equal types, `null` with anything, `int64`
/// with `float64`.
pub fn unify(a: &DataType, b: &DataType) -> Option<DataType> {
    match (a, b) {
        _ if a == b => Some(a.clone()),
        (DataType::Null, other) | (other, DataType::Null) => Some(other.clone()),
        _ if is_numeric(a) && is_numeric(b) => Some(DataType::Float64),
        _ => None,
    }
}

/// Checks `ast` against `schema`.
///
/// # Errors
/// The first problem: an unknown field or function (with a "did you mean" hint), operands of
/// the wrong type, a wrong number of arguments.
pub fn check(ast: &Ast, schema: &Schema) -> Result<Typed, ExprError> {
    match &ast.kind {
        AstKind::Literal(value) => Ok(literal(value)),
        AstKind::Field(field) => column(field, ast.offset, schema),
        AstKind::Neg(inner) => {
            let inner = check(inner, schema)?;
            if !is_numeric(&inner.data_type) && inner.data_type != DataType::Null {
                return Err(ExprError::new(
                    ast.offset,
                    format!("cannot negate a {} value", name(&inner.data_type)),
                ));
            }
            let data_type = unify(&inner.data_type, &DataType::Int64).unwrap_or(DataType::Int64);
            let inner = coerce(inner, &data_type);
            Ok(Typed {
                node: Node::Neg(Box::new(inner)),
                data_type,
            })
        }
        AstKind::Not(inner) => {
            let inner = boolean(check(inner, schema)?, ast.offset, "'not'")?;
            Ok(Typed {
                node: Node::Not(Box::new(inner)),
                data_type: DataType::Boolean,
            })
        }
        AstKind::IsNull { expr, negated } => {
            let inner = check(expr, schema)?;
            Ok(Typed {
                node: Node::IsNull(Box::new(inner), *negated),
                data_type: DataType::Boolean,
            })
        }
        AstKind::Binary(op, left, right) => {
            let l = check(left, schema)?;
            let r = check(right, schema)?;
            binary(*op, ast.offset, l, r)
        }
        AstKind::Call { name, args } => functions::check_call(name, ast.offset, args, schema),
        AstKind::Index(inner, index) => match &inner.kind {
            AstKind::Call { name, args } if name == "split" => {
                functions::check_split(inner.offset, args, *index, schema)
            }
            _ => Err(ExprError::new(
                ast.offset,
                "only split(text, separator) can be indexed with [i]",
            )),
        },
        AstKind::Cast(inner, type_text, type_offset) => {
            let inner = check(inner, schema)?;
            let Some(target) = FieldType::parse(type_text) else {
                let names = FieldType::ALL.iter().map(|(n, _)| *n);
                let error = ExprError::new(*type_offset, format!("unknown type '{type_text}'"));
                return Err(match closest_name(type_text, names) {
                    Some(best) => error.with_hint(format!("did you mean '{best}'?")),
                    None => {
                        error.with_hint("the types are: string, float64, int64, bool, timestamp_ms")
                    }
                });
            };
            let target = target.data_type();
            if !can_cast_types(&inner.data_type, &target) {
                return Err(ExprError::new(
                    ast.offset,
                    format!(
                        "cannot cast {} to {}",
                        name(&inner.data_type),
                        name(&target)
                    ),
                ));
            }
            if inner.data_type == target {
                return Ok(inner);
            }
            Ok(Typed {
                node: Node::Cast {
                    expr: Box::new(inner),
                    counted: true,
                },
                data_type: target,
            })
        }
    }
}

fn column(field: &str, offset: usize, schema: &Schema) -> Result<Typed, ExprError> {
    let Ok(index) = schema.index_of(field) else {
        let names = schema.fields().iter().map(|f| f.name().as_str());
        let error = ExprError::new(offset, format!("unknown field '{field}'"));
        return Err(match closest_name(field, names.clone()) {
            Some(best) => error.with_hint(format!("did you mean '{best}'?")),
            None => error.with_hint(format!(
                "the input's fields are: {}",
                names.collect::<Vec<_>>().join(", ")
            )),
        });
    };
    let actual = schema.field(index).data_type();
    let Some(data_type) = normalize(actual) else {
        return Err(ExprError::new(
            offset,
            format!("field '{field}' has type {actual}, which expressions cannot use"),
        ));
    };
    Ok(Typed {
        node: Node::Column(index),
        data_type,
    })
}

/// `typed` as a `bool` operand of `what`, or an error.
pub fn boolean(typed: Typed, offset: usize, what: &str) -> Result<Typed, ExprError> {
    match typed.data_type {
        DataType::Boolean => Ok(typed),
        DataType::Null => Ok(coerce(typed, &DataType::Boolean)),
        ref other => Err(ExprError::new(
            offset,
            format!("{what} needs bool operands, not {}", name(other)),
        )
        .with_hint("compare the value to get a bool, as in 'x > 0'")),
    }
}

fn binary(op: BinaryOp, offset: usize, l: Typed, r: Typed) -> Result<Typed, ExprError> {
    let boxed = |l: Typed, r: Typed| (Box::new(l), Box::new(r));
    match op {
        BinaryOp::And | BinaryOp::Or => {
            let what = format!("'{}'", op.symbol());
            let (l, r) = boxed(boolean(l, offset, &what)?, boolean(r, offset, &what)?);
            let node = if op == BinaryOp::And {
                Node::And(l, r)
            } else {
                Node::Or(l, r)
            };
            Ok(Typed {
                node,
                data_type: DataType::Boolean,
            })
        }
        _ if op.is_comparison() => {
            let (l, r) = timestamp_literals(l, r, offset)?;
            let Some(common) = unify(&l.data_type, &r.data_type) else {
                return Err(ExprError::new(
                    offset,
                    format!(
                        "cannot compare {} with {}",
                        name(&l.data_type),
                        name(&r.data_type)
                    ),
                )
                .with_hint(format!(
                    "convert one side, as in cast(x as {})",
                    name(&l.data_type)
                )));
            };
            // Two nulls compare as bools: the answer is null either way.
            let common = if common == DataType::Null {
                DataType::Boolean
            } else {
                common
            };
            let (l, r) = boxed(coerce(l, &common), coerce(r, &common));
            Ok(Typed {
                node: Node::Compare(op, l, r),
                data_type: DataType::Boolean,
            })
        }
        _ => {
            let numeric_or_null = |t: &DataType| is_numeric(t) || t == &DataType::Null;
            if !numeric_or_null(&l.data_type) || !numeric_or_null(&r.data_type) {
                let error = ExprError::new(
                    offset,
                    format!(
                        "cannot apply '{}' to {} and {}",
                        op.symbol(),
                        name(&l.data_type),
                        name(&r.data_type)
                    ),
                );
                let strings = l.data_type == DataType::Utf8 || r.data_type == DataType::Utf8;
                return Err(if strings && op == BinaryOp::Add {
                    error.with_hint("join strings with concat(a, b)")
                } else {
                    error.with_hint("arithmetic takes int64 and float64 values")
                });
            }
            let common = unify(&l.data_type, &r.data_type)
                .filter(|t| t != &DataType::Null)
                .unwrap_or(DataType::Int64);
            let common = if op == BinaryOp::Div {
                DataType::Float64
            } else {
                common
            };
            let (l, r) = boxed(coerce(l, &common), coerce(r, &common));
            Ok(Typed {
                node: Node::Arith(op, l, r),
                data_type: common,
            })
        }
    }
}

/// A string literal compared with a timestamp is read as an RFC 3339 time, once.
fn timestamp_literals(l: Typed, r: Typed, offset: usize) -> Result<(Typed, Typed), ExprError> {
    let is_time = |t: &Typed| matches!(t.data_type, DataType::Timestamp(TimeUnit::Millisecond, _));
    let text_literal =
        |t: &Typed| matches!(t.node, Node::Literal(_)) && t.data_type == DataType::Utf8;
    let convert = |t: Typed| -> Result<Typed, ExprError> {
        let Node::Literal(array) = &t.node else {
            return Ok(t);
        };
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        match cast_with_options(array, &timestamp_type(), &options) {
            Ok(converted) => Ok(Typed {
                node: Node::Literal(converted),
                data_type: timestamp_type(),
            }),
            Err(_) => Err(ExprError::new(
                offset,
                "cannot read the string compared with a timestamp as a time",
            )
            .with_hint("write times as RFC 3339, as in '2024-06-01T00:00:00Z'")),
        }
    };
    if is_time(&l) && text_literal(&r) {
        return Ok((l, convert(r)?));
    }
    if is_time(&r) && text_literal(&l) {
        return Ok((convert(l)?, r));
    }
    Ok((l, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;
    use edgeflow_engine::arrow::datatypes::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("temperature", DataType::Float64, true),
            Field::new("humidity", DataType::Float32, true),
            Field::new("zone", DataType::Int32, true),
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), false),
            Field::new("ok", DataType::Boolean, true),
            Field::new("raw", DataType::Binary, true),
        ])
    }

    fn type_of(text: &str) -> DataType {
        Expr::compile(text, &schema())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .data_type()
            .clone()
    }

    fn error(text: &str) -> ExprError {
        Expr::compile(text, &schema()).unwrap_err()
    }

    #[test]
    fn output_types() {
        assert_eq!(type_of("zone + 1"), DataType::Int64);
        assert_eq!(type_of("zone * 1.5"), DataType::Float64);
        assert_eq!(type_of("zone / 2"), DataType::Float64);
        assert_eq!(type_of("zone % 2"), DataType::Int64);
        assert_eq!(
            type_of("temperature - (100 - humidity) / 5"),
            DataType::Float64
        );
        assert_eq!(
            type_of("temperature > 0 and device_id != 'test'"),
            DataType::Boolean
        );
        assert_eq!(type_of("zone = 1.0"), DataType::Boolean);
        assert_eq!(type_of("null"), DataType::Null);
        assert_eq!(type_of("null + 1"), DataType::Int64);
        assert_eq!(type_of("-humidity"), DataType::Float64);
        assert_eq!(type_of("ts > '2024-06-01T00:00:00Z'"), DataType::Boolean);
        assert_eq!(type_of("cast(zone as string)"), DataType::Utf8);
        assert_eq!(type_of("cast(ts as int)"), DataType::Int64);
        assert_eq!(type_of("ok or null"), DataType::Boolean);
    }

    #[test]
    fn type_errors_point_at_the_operator() {
        let e = error("temperature > 'hot'");
        assert_eq!(e.offset, 12);
        assert_eq!(e.message, "cannot compare float64 with string");

        let e = error("device_id + 1");
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("cannot apply '+' to string and int64"));

        let e = error("device_id + 'x'");
        assert_eq!(e.hint.as_deref(), Some("join strings with concat(a, b)"));

        let e = error("temperature and ok");
        assert_eq!(e.offset, 12);
        assert!(e.message.contains("'and' needs bool operands, not float64"));

        let e = error("not zone");
        assert_eq!(e.offset, 0);

        let e = error("-device_id");
        assert!(e.message.contains("cannot negate a string"));

        let e = error("ts > 'yesterday'");
        assert_eq!(e.offset, 3);

        let e = error("raw = 1");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("cannot use"), "{}", e.message);
    }

    #[test]
    fn unknown_fields_and_types_get_hints() {
        let e = error("temprature > 0");
        assert_eq!(e.offset, 0);
        assert_eq!(e.message, "unknown field 'temprature'");
        assert_eq!(e.hint.as_deref(), Some("did you mean 'temperature'?"));

        let e = error("1 + pressure");
        assert_eq!(e.offset, 4);
        assert!(
            e.hint
                .unwrap()
                .starts_with("the input's fields are: temperature")
        );

        let e = error("cast(zone as flot64)");
        assert_eq!(e.offset, 13);
        assert_eq!(e.hint.as_deref(), Some("did you mean 'float64'?"));

        let e = error("cast(ok as timestamp)");
        assert!(
            e.message.contains("cannot cast bool to timestamp_ms"),
            "{}",
            e.message
        );
    }

    #[test]
    fn option_errors_quote_the_expression_and_column() {
        let e = error("temperature > 'hot'").into_option_error(&["where"], "temperature > 'hot'");
        assert_eq!(e.path, ["where"]);
        assert_eq!(
            e.message,
            "cannot compare float64 with string at column 13 of expression 'temperature > 'hot''"
        );
    }
}
