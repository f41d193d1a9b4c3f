//! Property tests across the whole pipeline of an expression: random well-formed expressions
//! (over every function and operator, with fields of every type and nulls) either fail to
//! compile with an error or evaluate without panicking, to an array of the checked type with
//! one value per row.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::schema::{UTC, timestamp_type};
use proptest::prelude::*;

use super::Expr;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("f", DataType::Float64, true),
        Field::new("i", DataType::Int64, true),
        Field::new("n", DataType::Int32, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("ts", timestamp_type(), true),
    ]))
}

fn batch() -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                Some(0.0),
                None,
                Some(-2.0),
                Some(f64::NAN),
            ])),
            Arc::new(Int64Array::from(vec![
                Some(i64::MAX),
                Some(0),
                None,
                Some(i64::MIN),
                Some(-1),
            ])),
            Arc::new(Int32Array::from(vec![
                Some(3),
                Some(0),
                None,
                Some(-3),
                Some(1),
            ])),
            Arc::new(StringArray::from(vec![
                Some("a/b/c"),
                Some(""),
                None,
                Some("12"),
                Some("x y"),
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                None,
            ])),
            Arc::new(
                TimestampMillisecondArray::from(vec![
                    Some(0),
                    Some(-1),
                    None,
                    Some(1_717_200_123_456),
                    Some(i64::MAX),
                ])
                .with_timezone(UTC),
            ),
        ],
    )
    .unwrap()
}

fn leaf() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "f",
        "i",
        "n",
        "s",
        "b",
        "ts",
        "0",
        "1",
        "-1",
        "2.5",
        "0.0",
        "'a'",
        "'/'",
        "''",
        "true",
        "false",
        "null",
        "9223372036854775807",
        "'2024-06-01T00:00:00Z'",
    ])
    .prop_map(str::to_string)
}

fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        let binary = prop::sample::select(vec![
            "+", "-", "*", "/", "%", "=", "!=", "<", ">=", "and", "or",
        ]);
        let unary = prop::sample::select(vec![
            "not ", "-", "lower", "upper", "trim", "abs", "round", "sqrt", "ln", "exp", "hour",
            "coalesce",
        ]);
        let types = prop::sample::select(vec!["string", "float64", "int64", "bool", "timestamp"]);
        let units = prop::sample::select(vec!["second", "minute", "hour", "day"]);
        prop_oneof![
            (inner.clone(), binary, inner.clone()).prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            (unary, inner.clone()).prop_map(|(f, x)| format!("{f}({x})")),
            (inner.clone(), types).prop_map(|(x, t)| format!("cast({x} as {t})")),
            inner.clone().prop_map(|x| format!("({x} is not null)")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("coalesce({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("concat({a}, {b})")),
            (inner.clone(), -3i64..3).prop_map(|(x, i)| format!("split({x}, '/')[{i}]")),
            inner
                .clone()
                .prop_map(|x| format!("regex_match({x}, '^[a-z]')")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(x, lo, hi)| format!("clamp({x}, {lo}, {hi})")),
            (units, inner.clone()).prop_map(|(u, x)| format!("date_trunc('{u}', {x})")),
            (inner, -2i64..3).prop_map(|(x, d)| format!("round({x}, {d})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn well_formed_expressions_compile_or_fail_cleanly_and_never_panic(text in expression()) {
        let schema = schema();
        if let Ok(expr) = Expr::compile(&text, &schema) {
            let out = expr.evaluate(&batch()).unwrap_or_else(|e| panic!("{text}: {e}"));
            prop_assert_eq!(out.values.len(), 5, "{}", text);
            prop_assert_eq!(out.values.data_type(), expr.data_type(), "{}", text);
        }
    }
}
