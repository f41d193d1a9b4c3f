//! Unit tests of `enrich`: options and their paths, and the lookup of one batch.

use super::*;
use edgeflow_engine::arrow::array::AsArray;
use edgeflow_engine::arrow::datatypes::Float64Type;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("temperature", DataType::Float64, true),
        Field::new("zone", DataType::Int32, true),
    ]))
}

fn config(text: &str) -> Result<EnrichConfig, OptionError> {
    parse_options(text.parse::<toml::Table>().unwrap())
}

fn enrich(text: &str) -> Enrich {
    config(text).unwrap().build(&[schema()]).unwrap()
}

fn rows() -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec![
                Some("d1"),
                Some("nope"),
                None,
                Some("d2"),
            ])),
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])),
            Arc::new(edgeflow_engine::arrow::array::Int32Array::from(vec![
                7, 8, 9, 7,
            ])),
        ],
    )
    .unwrap()
}

fn registry() -> HashMap<String, Vec<Cell>> {
    HashMap::from([
        (
            "d1".to_string(),
            vec![Cell::Str("plant-1".into()), Cell::Float(1.5f64.to_bits())],
        ),
        (
            "d2".to_string(),
            vec![Cell::Null, Cell::Float(2.0f64.to_bits())],
        ),
        (
            "7".to_string(),
            vec![Cell::Str("zone-7".into()), Cell::Null],
        ),
    ])
}

const OPTIONS: &str =
    "registry = \"devices.csv\"\ncolumns = { site = \"string\", scale = \"float64\" }";

#[test]
fn query_file_example_parses_and_plans() {
    let config = config(&format!(
        "{OPTIONS}\nunknown = \"reject\"\nreload_interval = \"1s\""
    ))
    .unwrap();
    assert_eq!(config.key, "device_id");
    assert_eq!(config.unknown, Unknown::Reject);
    let operator = config.plan(&[schema()]).unwrap();
    let names: Vec<String> = operator
        .output_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["device_id", "temperature", "zone", "site", "scale"]);
    let side = operator.side_outputs();
    assert_eq!(side[0].0, "rejected");
    assert_eq!(side[0].1.fields().last().unwrap().name(), "reason");
}

#[test]
fn unknown_devices_pass_with_nulls_or_are_dropped_or_rejected() {
    let pass = enrich(OPTIONS).apply(rows(), &registry()).unwrap();
    assert_eq!(pass.unknown, 2);
    let out = pass.rows.unwrap();
    assert_eq!(out.num_rows(), 4);
    let site: Vec<Option<&str>> = out.column(3).as_string::<i32>().iter().collect();
    assert_eq!(site, [Some("plant-1"), None, None, None]);
    let scale: Vec<Option<f64>> = out.column(4).as_primitive::<Float64Type>().iter().collect();
    assert_eq!(scale, [Some(1.5), None, None, Some(2.0)]);

    let drop = enrich(&format!("{OPTIONS}\nunknown = \"drop\""))
        .apply(rows(), &registry())
        .unwrap();
    assert_eq!(drop.rows.unwrap().num_rows(), 2);
    assert!(drop.rejected.is_none());

    let reject = enrich(&format!("{OPTIONS}\nunknown = \"reject\""))
        .apply(rows(), &registry())
        .unwrap();
    let rejected = reject.rejected.unwrap();
    assert_eq!(rejected.num_rows(), 2);
    assert_eq!(rejected.num_columns(), 4);
    let reasons: Vec<Option<&str>> = rejected.column(3).as_string::<i32>().iter().collect();
    assert_eq!(reasons, [Some("unknown_device:device_id"); 2]);
    let temperatures: Vec<f64> = rejected
        .column(1)
        .as_primitive::<Float64Type>()
        .values()
        .to_vec();
    assert_eq!(temperatures, [2.0, 3.0]);
}

#[test]
fn integer_keys_match_their_text() {
    let enrich = enrich(
        "registry = \"r.csv\"\nkey = \"zone\"\nregistry_key = \"zone_id\"\ncolumns = { site = \"string\", scale = \"float64\" }",
    );
    assert_eq!(enrich.plan.registry.key, "zone_id");
    let out = enrich.apply(rows(), &registry()).unwrap();
    assert_eq!(out.unknown, 2);
    let out = out.rows.unwrap();
    let site: Vec<Option<&str>> = out.column(3).as_string::<i32>().iter().collect();
    assert_eq!(site, [Some("zone-7"), None, None, Some("zone-7")]);
}

#[test]
fn bad_options_are_reported_with_their_paths() {
    let errors = config(
        "registry = \"r.csv\"\nkey = \"temprature\"\n\
         columns = { temperature = \"float64\", when = \"timestamp\", x = \"complex\" }\n\
         reload_interval = \"0s\"",
    )
    .unwrap()
    .build(&[schema()])
    .unwrap_err();
    let paths: Vec<String> = errors.iter().map(|e| e.path.join(".")).collect();
    assert_eq!(
        paths,
        [
            "key",
            "reload_interval",
            "columns.temperature",
            "columns.when",
            "columns.x"
        ]
    );
    assert_eq!(
        errors[0].hint.as_deref(),
        Some("did you mean 'temperature'?")
    );
    let errors = config("registry = \"r.csv\"\nkey = \"temperature\"\ncolumns = {}")
        .unwrap()
        .build(&[schema()])
        .unwrap_err();
    let paths: Vec<String> = errors.iter().map(|e| e.path.join(".")).collect();
    assert_eq!(paths, ["key", "columns"]);
    let error = config("registry = \"r.csv\"\ncolumns = { a = \"string\" }\nunknown = \"keep\"")
        .unwrap_err();
    assert_eq!(error.path, ["unknown"]);
    // Without a file or a registry input, and with both: named at `registry`.
    let errors = config("columns = { a = \"string\" }")
        .unwrap()
        .build(&[schema()])
        .unwrap_err();
    assert_eq!(errors[0].path, ["registry"]);
    assert!(errors[0].message.contains("second input"), "{}", errors[0]);
    let errors = config("registry = \"r.csv\"\ncolumns = { a = \"string\" }")
        .unwrap()
        .build(&[schema(), schema()])
        .unwrap_err();
    assert_eq!(errors[0].path, ["registry"]);
    assert!(errors[0].message.contains("not both"), "{}", errors[0]);
    let errors = config("columns = { a = \"string\" }")
        .unwrap()
        .build(&[schema(), schema(), schema()])
        .unwrap_err();
    assert_eq!(errors[0].path, ["inputs"]);
    assert!(
        errors[0].message.contains("one or two inputs"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_registry_input_must_hold_the_key_and_the_columns() {
    let registry = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("site", DataType::Utf8, true),
        Field::new("scale", DataType::Utf8, true),
    ]));
    let ok = config("columns = { site = \"string\" }")
        .unwrap()
        .build(&[schema(), registry.clone()])
        .unwrap();
    assert!(matches!(ok.plan.source, RegistrySource::Stream(_)));
    let errors = config("columns = { site = \"string\", scale = \"float64\", floor = \"int64\" }")
        .unwrap()
        .build(&[schema(), registry])
        .unwrap_err();
    let paths: Vec<String> = errors.iter().map(|e| e.path.join(".")).collect();
    assert_eq!(paths, ["columns.scale", "columns.floor"]);
}
