//! `/health` against real timely workers: an idle worker parked for longer than the stall
//! limit stays healthy, a worker stuck inside an operator and a worker that panicked are
//! named in a 503, and a finished run is healthy again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeflow_engine::arrow::array::{Int64Array, RecordBatch};
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::testing::{CollectSink, VecSource};
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::channels::pact::Pipeline;
use edgeflow_engine::timely::dataflow::operators::Operator;
use edgeflow_engine::{
    Batch, BatchStream, BoxError, BoxFuture, DataflowOperator, EngineError, Graph, NodeKind,
    OperatorContext, PipelineMetrics, RunOptions, RunReport, ShutdownTrigger, Source,
    SourceContext, WatermarkPolicy,
};
use serde_json::Value;

use super::OpsServer;
use super::pipeline::PipelineDescription;

/// What a test operator does with its first batch.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Blocks its worker thread this long (an operator stuck in a step).
    Block(Duration),
    /// Panics (a bug).
    Panic,
}

#[derive(Debug)]
struct TestOperator {
    schema: SchemaRef,
    behaviour: Behaviour,
}

impl DataflowOperator for TestOperator {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        _ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        let behaviour = self.behaviour;
        let input = inputs.into_iter().next().expect("one input");
        input.unary::<CapacityContainerBuilder<Batch>, _, _, _>(
            Pipeline,
            "HealthTest",
            move |_cap, _info| {
                move |input, output| {
                    input.for_each(|time, data| {
                        match behaviour {
                            Behaviour::Block(duration) => std::thread::sleep(duration),
                            Behaviour::Panic => panic!("deliberate test panic"),
                        }
                        output.session(&time).give_container(data);
                    });
                }
            },
        )
    }
}

/// Sends nothing and ends on shutdown: a pipeline waiting for input.
struct WaitingSource;

impl Source for WaitingSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            ctx.shutdown().requested().await;
            Ok(())
        })
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]))
}

fn one_batch() -> RecordBatch {
    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).expect("batch")
}

/// Runs `source → operator → collect` on `workers` workers in a thread, with an operations
/// server whose worker stall limit is one second.
fn start(
    source: Box<dyn Source>,
    operator: Option<TestOperator>,
    workers: usize,
) -> (
    OpsServer,
    ShutdownTrigger,
    std::thread::JoinHandle<Result<RunReport, EngineError>>,
) {
    let mut graph = Graph::new("health_test");
    let mut last = graph
        .add(
            "source",
            vec![],
            NodeKind::Source {
                schema: schema(),
                watermark: WatermarkPolicy::default(),
                source,
            },
        )
        .expect("source");
    if let Some(operator) = operator {
        last = graph
            .add("stage", vec![last], NodeKind::Operator(Arc::new(operator)))
            .expect("operator");
    }
    graph
        .add(
            "out",
            vec![last],
            NodeKind::Sink {
                sink: Box::new(CollectSink::new()),
            },
        )
        .expect("sink");
    let metrics = PipelineMetrics::new();
    let (shutdown, _) = ShutdownTrigger::new();
    let description = PipelineDescription {
        name: "health_test".into(),
        workers,
        nodes: Vec::new(),
    };
    let server = OpsServer::start_with_worker_stall(
        "127.0.0.1:0",
        None,
        Duration::from_secs(1),
        description,
        metrics.clone(),
        shutdown.signal(),
    )
    .expect("ops server");
    let options = RunOptions {
        workers,
        io_threads: 1,
        shutdown: shutdown.clone(),
        ..RunOptions::default()
    };
    let run = std::thread::spawn(move || edgeflow_engine::run(graph, options, metrics));
    (server, shutdown, run)
}

fn health(server: &OpsServer) -> (u16, Value) {
    // reqwest is built without a default crypto provider (the process uses ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::blocking::get(format!("http://{}/health", server.address()))
        .expect("/health answers");
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// Polls `/health` until `done` holds for its answer, for at most 10 s.
fn health_until(server: &OpsServer, done: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = health(server);
        if done(status, &body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "never reached: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_idle_worker_parked_longer_than_the_limit_stays_healthy() {
    let (server, shutdown, run) = start(Box::new(WaitingSource), None, 2);
    let (_, first) = health_until(&server, |_, body| {
        body["workers"].as_array().is_some_and(|w| w.len() == 2)
    });
    // Three times the stall limit with no input at all.
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = health(&server);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    for (before, after) in first["workers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(body["workers"].as_array().unwrap())
    {
        assert_eq!(after["state"], "running");
        assert!(
            after["steps"].as_u64() > before["steps"].as_u64(),
            "a parked worker wakes to beat: {before} → {after}"
        );
        assert!(
            after["seconds_since_step"].as_f64().unwrap() < 1.0,
            "{after}"
        );
    }
    shutdown.trigger();
    run.join().expect("run thread").expect("run");
    server.stop();
}

#[test]
fn a_worker_stuck_in_an_operator_is_named_then_healthy_again() {
    let operator = TestOperator {
        schema: schema(),
        behaviour: Behaviour::Block(Duration::from_secs(3)),
    };
    let (server, _shutdown, run) = start(
        Box::new(VecSource::new(vec![one_batch()])),
        Some(operator),
        1,
    );
    let (status, body) = health_until(&server, |status, _| status == 503);
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unhealthy");
    let reason = body["reasons"][0].as_str().expect("a reason");
    assert!(
        reason.starts_with("dataflow worker 0 has not completed a step for"),
        "{reason}"
    );
    // The operator returns, the input ends, the worker leaves its loop: healthy.
    run.join().expect("run thread").expect("run");
    let (status, body) = health(&server);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["workers"][0]["state"], "finished");
    server.stop();
}

#[test]
fn a_panicked_worker_is_named() {
    let operator = TestOperator {
        schema: schema(),
        behaviour: Behaviour::Panic,
    };
    let (server, _shutdown, run) = start(
        Box::new(VecSource::new(vec![one_batch()])),
        Some(operator),
        2,
    );
    let error = run.join().expect("run thread").expect_err("the run fails");
    assert!(error.to_string().contains("panicked"), "{error}");
    let (status, body) = health(&server);
    assert_eq!(status, 503, "{body}");
    let reasons: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("dataflow worker 0 panicked")),
        "{reasons:?}"
    );
    server.stop();
}
