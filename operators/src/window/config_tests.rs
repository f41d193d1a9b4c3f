//! Unit tests of the window options and their planning: output schemas, kinds, and every error with its path and hint.

use super::*;
use edgeflow_engine::parse_options;

pub(crate) fn input() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, false),
            Field::new("ts", timestamp_type(), false),
            Field::new("temperature", DataType::Float64, true),
            Field::new("level", DataType::Int32, true),
            Field::new("ok", DataType::Boolean, true),
        ],
        Some("ts"),
    )
}

fn config(text: &str) -> Result<WindowConfig, OptionError> {
    parse_options(text.parse::<toml::Table>().unwrap())
}

fn errors(text: &str) -> Vec<(String, String, Option<String>)> {
    config(text)
        .unwrap()
        .plan_window(&[input()])
        .unwrap_err()
        .into_iter()
        .map(|e| (e.path.join("."), e.message, e.hint))
        .collect()
}

const EXAMPLE: &str = "kind = \"tumbling\"\nsize = \"10s\"\ngroup_by = [\"device_id\"]\n\
    aggregates = { temp_avg = \"mean(temperature)\", temp_max = \"max(temperature)\", \
    n = \"count()\" }";

#[test]
fn query_file_example_plans() {
    let config = config(EXAMPLE).unwrap();
    let plan = config.plan_window(&[input()]).unwrap();
    assert_eq!(
        plan.kind,
        WindowKind::Aligned(Alignment::fixed(10_000, 10_000))
    );
    assert_eq!(plan.event_time, 1);
    assert_eq!(plan.keys, [0]);
    let schema = plan.output_schema;
    let columns: Vec<(&str, &DataType, bool)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
        .collect();
    assert_eq!(
        columns,
        [
            ("window_start", &timestamp_type(), false),
            ("window_end", &timestamp_type(), false),
            ("device_id", &DataType::Utf8, false),
            ("temp_avg", &DataType::Float64, true),
            ("temp_max", &DataType::Float64, true),
            ("n", &DataType::Int64, false),
        ]
    );
    assert_eq!(event_time_column(&schema), Some((0, WINDOW_START)));
}

#[test]
fn output_types_follow_the_function() {
    let config = config(
        "size = \"1s\"\naggregates = { a = \"min(level)\", b = \"sum(level)\", \
         c = \"count(device_id)\", d = \"max(temperature)\" }",
    )
    .unwrap();
    let plan = config.plan_window(&[input()]).unwrap();
    assert_eq!(config.kind, "tumbling");
    let types: Vec<&DataType> = plan.output_schema.fields()[2..]
        .iter()
        .map(|f| f.data_type())
        .collect();
    assert_eq!(
        types,
        [
            &DataType::Int32,
            &DataType::Float64,
            &DataType::Int64,
            &DataType::Float64
        ]
    );
}

#[test]
fn every_bad_option_is_reported_with_path_and_hint() {
    let found = errors(
        "kind = \"hopping\"\nsize = \"10s\"\nslide = \"3s\"\ngroup_by = [\"devce_id\", \"temperature\"]\n\
         aggregates = { a = \"avg(temperature)\", b = \"max(temprature)\", \
         c = \"mean(device_id)\", d = \"count\" }",
    );
    let expected = [
        (
            "slide",
            "the window 'size' must be a multiple of 'slide'",
            Some("such as slide = \"1000ms\""),
        ),
        (
            "group_by.0",
            "'devce_id' is not a field of the input",
            Some("did you mean 'device_id'?"),
        ),
        (
            "group_by.1",
            "cannot group by float64 field 'temperature'",
            Some("group keys must be string, integer or bool fields"),
        ),
        (
            "aggregates.a",
            "unknown aggregate function 'avg'",
            Some("did you mean 'mean'?"),
        ),
        (
            "aggregates.b",
            "'temprature' is not a field of the input",
            Some("did you mean 'temperature'?"),
        ),
        (
            "aggregates.c",
            "cannot take mean of string field 'device_id'",
            Some("mean takes numeric (int or float) fields"),
        ),
        (
            "aggregates.d",
            "'count' is missing its parentheses",
            Some("write 'count()'"),
        ),
    ];
    let expected: Vec<(String, String, Option<String>)> = expected
        .into_iter()
        .map(|(p, m, h)| (p.into(), m.into(), h.map(Into::into)))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn aggregates_of_expressions_plan() {
    let config = config(
        "size = \"1s\"\naggregates = { hot = \"count_if(temperature > 30)\", \
         f_avg = \"mean(temperature * 1.8 + 32)\", n = \"count()\", m = \"max(temperature)\", \
         l = \"min(level)\", l2 = \"max(level * 2)\", c = \"count(level / 0)\", \
         o = \"count_if(ok)\", s = \"sum(\\\"level\\\")\" }",
    )
    .unwrap();
    let plan = config.plan_window(&[input()]).unwrap();
    let columns: Vec<(&str, &DataType, bool)> = plan.output_schema.fields()[2..]
        .iter()
        .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
        .collect();
    assert_eq!(
        columns,
        [
            ("hot", &DataType::Int64, false),
            ("f_avg", &DataType::Float64, true),
            ("n", &DataType::Int64, false),
            ("m", &DataType::Float64, true),
            // A plain field keeps its type; an expression computes with int64.
            ("l", &DataType::Int32, true),
            ("l2", &DataType::Int64, true),
            ("c", &DataType::Int64, false),
            ("o", &DataType::Int64, false),
            ("s", &DataType::Float64, true),
        ]
    );
    let reads: Vec<(Option<usize>, Option<&str>)> = plan
        .aggregates
        .iter()
        .map(|a| (a.column, a.expression.as_ref().map(|e| e.text())))
        .collect();
    assert_eq!(
        reads,
        [
            (None, Some("temperature > 30")),
            (None, Some("temperature * 1.8 + 32")),
            (None, None),
            (Some(2), None),
            (Some(3), None),
            (None, Some("level * 2")),
            (None, Some("level / 0")),
            (None, Some("ok")),
            (Some(3), None),
        ]
    );
}

#[test]
fn expression_arguments_are_type_checked() {
    let found = errors(
        "size = \"1s\"\naggregates = { a = \"count_if(temperature)\", \
         b = \"mean(concat(device_id, 'x'))\", c = \"mean(lower(device_id))\", \
         d = \"max(temprature * 2)\", e = \"sum(null)\", f = \"count_if()\", \
         g = \"avg(temperature * 2)\", h = \"min(temperature >)\", \
         i = \"mean(device_id || 'x')\" }",
    );
    let expected = [
        (
            "aggregates.a",
            "count_if needs a bool condition, but 'temperature' gives float64 values \
             at column 10 of expression 'count_if(temperature)'",
            Some("compare the value, as in 'count_if(temperature > 30)'"),
        ),
        (
            "aggregates.b",
            "cannot take mean of string values at column 6 of expression \
             'mean(concat(device_id, 'x'))'",
            Some("mean takes numeric (int or float) values"),
        ),
        (
            "aggregates.c",
            "cannot take mean of string values at column 6 of expression \
             'mean(lower(device_id))'",
            Some("mean takes numeric (int or float) values"),
        ),
        (
            "aggregates.d",
            "unknown field 'temprature' at column 5 of expression 'max(temprature * 2)'",
            Some("did you mean 'temperature'?"),
        ),
        (
            "aggregates.e",
            "'null' is always null at column 5 of expression 'sum(null)'",
            Some("give it a type, as in cast(null as float64)"),
        ),
        (
            "aggregates.f",
            "'count_if()' needs a condition",
            Some("write 'count_if(condition)', as in 'count_if(temperature > 30)'"),
        ),
        (
            "aggregates.g",
            "unknown aggregate function 'avg'",
            Some("did you mean 'mean'?"),
        ),
    ];
    let expected: Vec<(String, String, Option<String>)> = expected
        .into_iter()
        .map(|(p, m, h)| (p.into(), m.into(), h.map(Into::into)))
        .collect();
    assert_eq!(found[..expected.len()], expected[..]);
    // A syntax error in the argument points into the whole aggregate.
    let (path, message, _) = &found[expected.len()];
    assert_eq!(path, "aggregates.h");
    assert!(
        message.contains("at column 18 of expression 'min(temperature >)'"),
        "{message}"
    );
    // The expression language has no `||`: a syntax error, at the first '|'.
    let (path, message, _) = &found[expected.len() + 1];
    assert_eq!(path, "aggregates.i");
    assert!(
        message.contains("at column 16 of expression 'mean(device_id || 'x')'"),
        "{message}"
    );
    assert_eq!(found.len(), expected.len() + 2);
}

#[test]
fn kind_typos_and_sizes() {
    let found = errors("kind = \"tumbing\"\nsize = \"1s\"");
    assert_eq!(found[0].0, "kind");
    assert_eq!(found[0].1, "unknown window kind 'tumbing'");
    assert_eq!(found[0].2.as_deref(), Some("did you mean 'tumbling'?"));
    let found = errors("size = \"0s\"");
    assert_eq!(found[0].0, "size");
    assert!(found[0].1.contains("at least 1ms"), "{}", found[0].1);

    let found = errors("size = \"1500us\"");
    assert_eq!(found[0].0, "size");

    let found = errors("size = \"ten seconds\"\ngroup_by = [\"devce_id\"]");
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "size");
    assert!(found[0].1.contains("'ten seconds'"), "{}", found[0].1);
    assert_eq!(found[1].0, "group_by.0");

    let found = errors("kind = \"tumbling\"");
    assert_eq!(found[0].1, "tumbling windows need 'size'");
}

#[test]
fn output_names_must_be_unique() {
    let found = errors(
        "size = \"1s\"\ngroup_by = [\"device_id\"]\n\
         aggregates = { device_id = \"count()\", window_end = \"count()\", \"a.b\" = \"count()\" }",
    );
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, "aggregates.device_id");
    assert_eq!(
        found[0].1,
        "output column 'device_id' is already a group key"
    );
    assert_eq!(
        found[1].1,
        "output column 'window_end' is already the window end"
    );
}

#[test]
fn input_needs_a_timestamp_event_time() {
    let schema: SchemaRef = Arc::new(edgeflow_engine::arrow::datatypes::Schema::new(vec![
        Field::new("v", DataType::Float64, true),
    ]));
    let config = config("size = \"1s\"").unwrap();
    let errors = config.plan_window(&[schema]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].path.is_empty());
    assert!(errors[0].message.contains("no event-time field"));

    let errors = config.plan_window(&[input(), input()]).unwrap_err();
    assert_eq!(errors[0].path, ["inputs"]);
}
