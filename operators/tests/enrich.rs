//! The `enrich` operator inside an engine run on 1 and 2 workers: rows looked up in a
//! registry file, unknown devices passed, dropped or rejected, and the registry reloaded
//! while the pipeline runs (a malformed version is ignored, the last good one stays), from CSV
//! and from Parquet files written by the `parquet` crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use edgeflow_engine::testing::run_collect;
use edgeflow_engine::{
    BoxError, BoxFuture, Graph, NodeKind, Source, SourceContext, WatermarkPolicy,
};

use crate::clean_rules::run_with_rejected;
use crate::util::{Reading, Value, batch, plan, rows, run_into_sink, sensor_schema};

fn write(path: &Path, bytes: &[u8]) {
    // Write then rename, as a careful producer would, so a reload never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A Parquet registry of `(device_id, site, scale)` rows.
fn parquet_registry(rows: &[(&str, &str, f64)]) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter([
        (
            "device_id",
            Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()) as ArrayRef,
        ),
        (
            "site",
            Arc::new(rows.iter().map(|r| Some(r.1)).collect::<StringArray>()),
        ),
        (
            "scale",
            Arc::new(rows.iter().map(|r| Some(r.2)).collect::<Float64Array>()),
        ),
    ])
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

fn options(path: &Path, extra: &str) -> String {
    format!(
        "registry = \"{}\"\ncolumns = {{ site = \"string\", scale = \"float64\" }}\n\
         reload_interval = \"20ms\"\n{extra}",
        path.display()
    )
}

fn policy() -> WatermarkPolicy {
    WatermarkPolicy {
        max_out_of_orderness: Duration::ZERO,
        idle_timeout: None,
    }
}

/// (device, ts, site, scale) of every output row, sorted.
pub(crate) fn enriched(out: &[RecordBatch]) -> Vec<(Value, Value, Value, Value)> {
    let mut got: Vec<_> = rows(out)
        .into_iter()
        .map(|r| (r[0].clone(), r[3].clone(), r[6].clone(), r[7].clone()))
        .collect();
    got.sort();
    got
}

pub(crate) fn s(text: &str) -> Value {
    Value::Str(text.into())
}

#[test]
fn rows_get_registry_columns_and_unknown_devices_are_counted_on_one_and_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.csv");
    write(
        &path,
        b"device_id,site,scale,model\na,plant-1,1.5,x\nb,plant-2,,y\n",
    );
    let input = || {
        vec![
            batch(&[
                Reading::new("a", 1, Some(1.0)),
                Reading::new("zz", 2, Some(2.0)),
            ]),
            batch(&[Reading::new("b", 3, Some(3.0))]),
        ]
    };
    for workers in [1, 2] {
        let schema = sensor_schema();
        let pass = plan("enrich", &options(&path, ""), &schema);
        let (out, report) =
            run_collect(schema.clone(), input(), policy(), vec![pass], workers).unwrap();
        assert_eq!(
            enriched(&out),
            [
                (s("a"), Value::Int(1), s("plant-1"), Value::Float(1.5)),
                (s("b"), Value::Int(3), s("plant-2"), Value::Null),
                (s("zz"), Value::Int(2), Value::Null, Value::Null),
            ],
            "workers = {workers}"
        );
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.values.get("unknown_device"), Some(&1));
        assert_eq!(node.values.get("registry_entries"), Some(&2));
        assert_eq!(node.dropped_total(), 0);

        let reject = plan("enrich", &options(&path, "unknown = \"reject\""), &schema);
        let (out, rejected, report) = run_with_rejected(schema, input(), policy(), reject, workers);
        assert_eq!(rows(&out).len(), 2);
        let rejected = rows(&rejected);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0][0], s("zz"));
        assert_eq!(rejected[0][6], s("unknown_device:device_id"));
        let node = report.nodes.iter().find(|n| n.name == "clean").unwrap();
        assert_eq!(node.dropped.get("unknown_device"), Some(&1));
    }
}

/// Rewrites the registry (then waits for a reload), sends a batch (then waits for it to be
/// processed), and so on.
struct Script {
    path: PathBuf,
    steps: Vec<(Option<Vec<u8>>, Vec<Reading>)>,
}

impl Source for Script {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            for (registry, readings) in self.steps {
                if let Some(bytes) = registry {
                    write(&self.path, &bytes);
                    // Several reload intervals: the registry is polled on a timer, even
                    // while no row arrives. (A blocking sleep is fine on this test's own
                    // I/O thread.)
                    std::thread::sleep(Duration::from_millis(300));
                }
                if ctx.send(batch(&readings)).await.is_err() {
                    break;
                }
                // Let the rows through before the registry changes again.
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        })
    }
}

#[test]
fn registry_reloads_while_the_pipeline_runs_and_a_bad_version_is_ignored() {
    reloads(
        "devices.csv",
        [
            b"device_id,site,scale\na,old-site,1.0\n".to_vec(),
            b"device_id,site,scale\na,new-site,2.0\nb,b-site,3.0\n".to_vec(),
            b"device_id,site,scale\na,broken,not-a-number\n".to_vec(),
            b"device_id,site,scale\n".to_vec(),
        ],
    );
}

#[test]
fn parquet_registry_reloads_while_the_pipeline_runs_and_a_broken_file_is_ignored() {
    let new = parquet_registry(&[("a", "new-site", 2.0), ("b", "b-site", 3.0)]);
    // A half-written file, as a producer that does not write-then-rename leaves it.
    let broken = new[..new.len() / 2].to_vec();
    reloads(
        "devices.parquet",
        [
            parquet_registry(&[("a", "old-site", 1.0)]),
            new,
            broken,
            parquet_registry(&[]),
        ],
    );
}

/// Runs a pipeline whose registry `name` goes through four versions while rows arrive: the
/// first, a second that changes `a` and adds `b`, a broken third (ignored) and an empty
/// fourth.
fn reloads(name: &str, versions: [Vec<u8>; 4]) {
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let [first, second, broken, empty] = versions.clone();
        write(&path, &first);
        let schema = sensor_schema();
        let enrich = plan("enrich", &options(&path, ""), &schema);
        let steps = vec![
            (
                None,
                vec![
                    Reading::new("a", 1_000, Some(1.0)),
                    Reading::new("b", 1_000, Some(1.0)),
                ],
            ),
            (
                Some(second),
                vec![
                    Reading::new("a", 2_000, Some(1.0)),
                    Reading::new("b", 2_000, Some(1.0)),
                ],
            ),
            (Some(broken), vec![Reading::new("a", 3_000, Some(1.0))]),
            (Some(empty), vec![Reading::new("a", 4_000, Some(1.0))]),
        ];
        let mut graph = Graph::new("reload");
        let source = graph
            .add(
                "sensors",
                vec![],
                NodeKind::Source {
                    schema,
                    watermark: policy(),
                    source: Box::new(Script {
                        path: path.clone(),
                        steps,
                    }),
                },
            )
            .unwrap();
        let op = graph
            .add("enriched", vec![source], NodeKind::Operator(enrich))
            .unwrap();
        let (out, report) = run_into_sink(graph, op, workers, 1);
        assert_eq!(
            enriched(&out),
            [
                (s("a"), Value::Int(1_000), s("old-site"), Value::Float(1.0)),
                (s("a"), Value::Int(2_000), s("new-site"), Value::Float(2.0)),
                (s("a"), Value::Int(3_000), s("new-site"), Value::Float(2.0)),
                (s("a"), Value::Int(4_000), Value::Null, Value::Null),
                (s("b"), Value::Int(1_000), Value::Null, Value::Null),
                (s("b"), Value::Int(2_000), s("b-site"), Value::Float(3.0)),
            ],
            "workers = {workers}"
        );
        let node = report.nodes.iter().find(|n| n.name == "enriched").unwrap();
        // Every worker reads the file, so the counters add up over workers.
        assert_eq!(node.values.get("registry_errors"), Some(&(workers as u64)));
        assert_eq!(
            node.values.get("registry_reloads"),
            Some(&(2 * workers as u64))
        );
        assert_eq!(node.values.get("unknown_device"), Some(&2));
    }
}
