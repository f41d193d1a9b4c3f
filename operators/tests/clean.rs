//! The `clean` operator inside an engine run: what survives, and the drop counts by reason.

use std::time::Duration;

use edgeflow_engine::WatermarkPolicy;
use edgeflow_engine::testing::run_collect;

use crate::util::{Reading, Value, batch, plan, rows, sensor_schema};

const OPTIONS: &str = "drop_null = [\"temperature\"]\n\
                       drop_outside = { temperature = [-40.0, 125.0], level = [0, 100] }";

fn input() -> Vec<edgeflow_engine::arrow::array::RecordBatch> {
    let mut first = vec![
        Reading::new("a", 1, Some(20.0)),
        Reading::new("a", 2, None),
        Reading::new("b", 3, Some(f64::NAN)),
        Reading::new("b", 4, Some(125.0)),
        Reading::new("c", 5, Some(125.1)),
    ];
    first[4].level = Some(50);
    let mut second = vec![
        Reading::new("a", 6, Some(-40.0)),
        Reading::new("b", 7, Some(-41.0)),
        Reading::new("c", 8, Some(10.0)),
        Reading::new("c", 9, Some(11.0)),
    ];
    second[2].level = Some(101);
    second[3].level = Some(100);
    vec![batch(&first), batch(&second)]
}

#[test]
fn clean_drops_and_counts_by_reason_on_one_and_two_workers() {
    for workers in [1, 2] {
        let schema = sensor_schema();
        let clean = plan("clean", OPTIONS, &schema);
        assert_eq!(clean.output_schema(), schema);
        let (out, report) = run_collect(
            schema,
            input(),
            WatermarkPolicy::default(),
            vec![clean],
            workers,
        )
        .unwrap();
        let mut kept: Vec<(i64, Value)> = rows(&out)
            .into_iter()
            .map(|row| match row[3] {
                Value::Int(ts) => (ts, row[4].clone()),
                _ => unreachable!(),
            })
            .collect();
        kept.sort_by_key(|(ts, _)| *ts);
        assert_eq!(
            kept,
            [
                (1, Value::Float(20.0)),
                (4, Value::Float(125.0)),
                (6, Value::Float(-40.0)),
                (9, Value::Float(11.0)),
            ],
            "workers = {workers}"
        );
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.rows_in, 9);
        assert_eq!(node.rows_out, 4);
        assert_eq!(node.dropped.get("null_field"), Some(&2));
        assert_eq!(node.dropped.get("out_of_range"), Some(&3));
    }
}

#[test]
fn query_file_example_clean_then_window() {
    let schema = sensor_schema();
    let clean = plan(
        "clean",
        "drop_null = [\"temperature\"]\n\
         drop_outside = { temperature = [-40.0, 125.0] }",
        &schema,
    );
    let window = plan(
        "window",
        "kind = \"tumbling\"\nsize = \"10s\"\ngroup_by = [\"device_id\"]\n\
         aggregates = { temp_avg = \"mean(temperature)\", temp_max = \"max(temperature)\", \
         n = \"count()\" }",
        &clean.output_schema(),
    );
    let batches = vec![
        batch(&[
            Reading::new("b", 1_000, Some(20.0)),
            Reading::new("a", 2_000, Some(10.0)),
            Reading::new("a", 3_000, None),
            Reading::new("a", 9_999, Some(30.0)),
        ]),
        batch(&[
            Reading::new("b", 10_000, Some(999.0)),
            Reading::new("b", 12_000, Some(21.0)),
            Reading::new("a", 8_000, Some(50.0)),
        ]),
    ];
    let policy = WatermarkPolicy {
        max_out_of_orderness: Duration::from_secs(5),
        idle_timeout: None,
    };
    let (out, report) = run_collect(schema, batches, policy, vec![clean, window], 2).unwrap();
    let mut got = rows(&out);
    got.sort();
    let f = Value::Float;
    let s = |t: &str| Value::Str(t.into());
    assert_eq!(
        got,
        [
            vec![
                Value::Int(0),
                Value::Int(10_000),
                s("a"),
                f(30.0),
                f(50.0),
                Value::Int(3)
            ],
            vec![
                Value::Int(0),
                Value::Int(10_000),
                s("b"),
                f(20.0),
                f(20.0),
                Value::Int(1)
            ],
            vec![
                Value::Int(10_000),
                Value::Int(20_000),
                s("b"),
                f(21.0),
                f(21.0),
                Value::Int(1)
            ],
        ]
    );
    let window = report.nodes.iter().find(|n| n.name == "op1").unwrap();
    assert_eq!(window.rows_in, 5);
    assert_eq!(window.rows_out, 3);
    assert_eq!(window.state_rows, 0);
    assert_eq!(window.dropped_total(), 0);
}
