//! `enrich` with its registry streamed in from a second source on 1 and 2 workers: registry
//! rows add and replace devices while readings flow, a row without a key is skipped and
//! counted, and rows before any registry row pass with nulls.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use edgeflow_engine::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::{
    BoxError, BoxFuture, Graph, NodeKind, Source, SourceContext, WatermarkPolicy,
};
use edgeflow_operators::operators;

use crate::enrich::{enriched, s};
use crate::util::{Reading, Value, batch, run_into_sink, sensor_schema};

/// `device_id, site, scale, ts`: the registry feed's rows.
fn registry_schema() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("site", DataType::Utf8, true),
            Field::new("scale", DataType::Float64, true),
            Field::new("ts", timestamp_type(), false),
        ],
        Some("ts"),
    )
}

fn registry_rows(entries: &[(Option<&str>, &str, f64)]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(entries.iter().map(|e| e.0).collect::<StringArray>()),
        Arc::new(entries.iter().map(|e| Some(e.1)).collect::<StringArray>()),
        Arc::new(entries.iter().map(|e| Some(e.2)).collect::<Float64Array>()),
        Arc::new(TimestampMillisecondArray::from(vec![0; entries.len()]).with_timezone(UTC)),
    ];
    RecordBatch::try_new(registry_schema(), columns).unwrap()
}

/// Sends each step's registry rows, tells the readings' source to go on, and waits until
/// it has sent that step's readings.
struct RegistryFeed {
    steps: Vec<Option<RecordBatch>>,
    done: Sender<()>,
    readings_done: Receiver<()>,
}

impl Source for RegistryFeed {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            for rows in self.steps {
                if let Some(rows) = rows
                    && ctx.send(rows).await.is_err()
                {
                    break;
                }
                // Let the rows reach every worker's registry before the readings that
                // depend on them. (A blocking sleep is fine on this test's own I/O thread.)
                std::thread::sleep(Duration::from_millis(300));
                if self.done.send(()).is_err() || self.readings_done.recv().is_err() {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// Waits for each registry step, then sends its readings and, once they have been
/// enriched, lets the registry change again.
struct Readings {
    steps: Vec<Vec<Reading>>,
    registry_done: Receiver<()>,
    done: Sender<()>,
}

impl Source for Readings {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            for readings in self.steps {
                if self.registry_done.recv().is_err() || ctx.send(batch(&readings)).await.is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
                let _ = self.done.send(());
            }
            Ok(())
        })
    }
}

#[test]
fn registry_rows_from_a_second_source_add_and_replace_devices_as_they_arrive() {
    for workers in [1, 2] {
        let registry_steps = vec![
            None,
            Some(registry_rows(&[(Some("a"), "old-site", 1.0)])),
            Some(registry_rows(&[
                (Some("a"), "new-site", 2.0),
                (None, "nowhere", 0.0),
                (Some("b"), "b-site", 3.0),
            ])),
            // `a` repeated unchanged, `b` moved.
            Some(registry_rows(&[
                (Some("a"), "new-site", 2.0),
                (Some("b"), "b-moved", 4.0),
            ])),
        ];
        let reading_steps = vec![
            vec![Reading::new("a", 500, Some(1.0))],
            vec![
                Reading::new("a", 1_000, Some(1.0)),
                Reading::new("b", 1_000, Some(1.0)),
            ],
            vec![
                Reading::new("a", 2_000, Some(1.0)),
                Reading::new("b", 2_000, Some(1.0)),
            ],
            vec![Reading::new("b", 3_000, Some(1.0))],
        ];
        let (done, registry_done) = channel();
        let (readings_sent, readings_done) = channel();
        let kind = operators().iter().find(|k| k.name == "enrich").unwrap();
        let config = (kind.parse)(
            "columns = { site = \"string\", scale = \"float64\" }"
                .parse()
                .unwrap(),
        )
        .unwrap();
        let enrich = config.plan(&[sensor_schema(), registry_schema()]).unwrap();

        let mut graph = Graph::new("registry stream");
        let watermark = WatermarkPolicy {
            max_out_of_orderness: Duration::ZERO,
            idle_timeout: None,
        };
        let sensors = graph
            .add(
                "sensors",
                vec![],
                NodeKind::Source {
                    schema: sensor_schema(),
                    watermark,
                    source: Box::new(Readings {
                        steps: reading_steps,
                        registry_done,
                        done: readings_sent,
                    }),
                },
            )
            .unwrap();
        let feed = graph
            .add(
                "registry_feed",
                vec![],
                NodeKind::Source {
                    schema: registry_schema(),
                    watermark,
                    source: Box::new(RegistryFeed {
                        steps: registry_steps,
                        done,
                        readings_done,
                    }),
                },
            )
            .unwrap();
        let op = graph
            .add("enriched", vec![sensors, feed], NodeKind::Operator(enrich))
            .unwrap();
        let (out, report) = run_into_sink(graph, op, workers, 2);
        assert_eq!(
            enriched(&out),
            [
                (s("a"), Value::Int(500), Value::Null, Value::Null),
                (s("a"), Value::Int(1_000), s("old-site"), Value::Float(1.0)),
                (s("a"), Value::Int(2_000), s("new-site"), Value::Float(2.0)),
                (s("b"), Value::Int(1_000), Value::Null, Value::Null),
                (s("b"), Value::Int(2_000), s("b-site"), Value::Float(3.0)),
                (s("b"), Value::Int(3_000), s("b-moved"), Value::Float(4.0)),
            ],
            "workers = {workers}"
        );
        let node = report.nodes.iter().find(|n| n.name == "enriched").unwrap();
        // Counted once, however many workers hold the registry.
        assert_eq!(node.values.get("registry_updates"), Some(&4));
        assert_eq!(node.values.get("registry_errors"), Some(&1));
        assert_eq!(node.values.get("registry_entries"), Some(&2));
        assert_eq!(node.values.get("unknown_device"), Some(&2));
    }
}
