//! Tests of the running `flight` sink against a small in-process Flight collector over real
//! mutual TLS (an rcgen PKI made per test): the link down at start and then up, a collector
//! failing mid-stream, a restart with a non-empty spool, both full policies, and a TLS
//! failure reported with the endpoint and the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use edgeflow_engine::{NodeMetrics, SinkEvent, SinkInput, SinkSummary};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::options::{FlightSinkConfig, parse_endpoint};
use super::protocol::{SegmentAck, SegmentRef};
use super::spool::Spool;
use super::tls::{Link, LinkError};
use crate::SinkConfig;

/// A CA and certificates it signs, written as PEM files into `dir`.
struct Pki {
    dir: PathBuf,
    authority: CertifiedIssuer<'static, KeyPair>,
    ca: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let authority =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let ca = dir.join(format!("{name}.pem"));
        std::fs::write(&ca, authority.pem()).unwrap();
        Self {
            dir: dir.to_path_buf(),
            authority,
            ca,
        }
    }

    /// A certificate with subject CN `cn` and DNS names `names`: (cert path, key path).
    fn leaf(&self, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.authority).expect("sign");
        let cert_path = self.dir.join(format!("{cn}.pem"));
        let key_path = self.dir.join(format!("{cn}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// What the test collector received.
#[derive(Default)]
struct Received {
    /// Stored segments by id (each once).
    stored: BTreeMap<u64, Vec<RecordBatch>>,
    /// Every `DoPut` that arrived, in order: (stream, id).
    puts: Vec<(String, u64)>,
    /// `DoPut` numbers (0-based) to fail before storing.
    fail_before_store: Vec<usize>,
    /// `DoPut` numbers to fail after storing (a lost ack).
    fail_after_store: Vec<usize>,
}

/// A Flight collector that "stores" segments in memory, then acks.
#[derive(Clone, Default)]
struct TestCollector {
    received: Arc<Mutex<Received>>,
}

type Stream<T> = BoxStream<'static, Result<T, Status>>;

#[tonic::async_trait]
impl FlightService for TestCollector {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;
    type DoExchangeStream = Stream<FlightData>;

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake"))
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }
    async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        Err(Status::unimplemented("do_get"))
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action"))
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        if request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(Status::unauthenticated("no client certificate"));
        }
        let messages: Vec<FlightData> = request.into_inner().try_collect().await?;
        let descriptor = messages
            .first()
            .and_then(|m| m.flight_descriptor.clone())
            .ok_or_else(|| Status::invalid_argument("no descriptor"))?;
        let segment = SegmentRef::from_descriptor(&descriptor)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            futures::stream::iter(messages.into_iter().map(Ok::<_, FlightError>)),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut received = self.received.lock().unwrap();
        let number = received.puts.len();
        received.puts.push((segment.stream.clone(), segment.id));
        if received.fail_before_store.contains(&number) {
            return Err(Status::unavailable(
                "disk busy (test failure before storing)",
            ));
        }
        let duplicate = received.stored.contains_key(&segment.id);
        received.stored.entry(segment.id).or_insert(batches);
        if received.fail_after_store.contains(&number) {
            return Err(Status::internal("crashed after storing (test: lost ack)"));
        }
        let ack = SegmentAck {
            stream: segment.stream,
            segment_id: segment.id,
            rows,
            duplicate,
        };
        let result = PutResult {
            app_metadata: ack.to_bytes().into(),
        };
        Ok(Response::new(futures::stream::iter([Ok(result)]).boxed()))
    }
}

/// Serves `collector` with mutual TLS on `addr` until the returned sender is dropped or fired.
async fn serve(
    addr: SocketAddr,
    server_cert: &(PathBuf, PathBuf),
    client_ca: &Path,
    collector: TestCollector,
) -> oneshot::Sender<()> {
    let identity = Identity::from_pem(
        std::fs::read(&server_cert.0).unwrap(),
        std::fs::read(&server_cert.1).unwrap(),
    );
    let tls = ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(std::fs::read(client_ca).unwrap()));
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        .tls_config(tls)
        .expect("server TLS")
        .add_service(FlightServiceServer::new(collector));
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device", DataType::Utf8, false),
        Field::new("value", DataType::Int64, false),
    ]))
}

/// Rows `from..from + count` with `value` = row number.
fn rows(from: i64, count: i64) -> RecordBatch {
    let values: Vec<i64> = (from..from + count).collect();
    let devices: Vec<String> = values.iter().map(|v| format!("d{}", v % 3)).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(devices)),
            Arc::new(Int64Array::from(values)),
        ],
    )
    .unwrap()
}

/// The `value`s of batches, in order.
fn values(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let column = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            (0..column.len())
                .map(|i| column.value(i))
                .collect::<Vec<_>>()
        })
        .collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    pki: Pki,
    server_cert: (PathBuf, PathBuf),
    spool: PathBuf,
    addr: SocketAddr,
    base: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "test-ca");
    let server_cert = pki.leaf("collector", &["localhost"]);
    let (cert, key) = pki.leaf("gateway-7", &[]);
    let addr = free_addr();
    let spool = dir.path().join("spool");
    let base = format!(
        r#"
        endpoint = "https://{addr}"
        server_name = "localhost"
        ca = "{}"
        cert = "{}"
        key = "{}"
        spool = "{}"
        stream = "plant1.up"
        retry_initial = "20ms"
        retry_max = "100ms"
        connect_timeout = "2s"
        "#,
        pki.ca.display(),
        cert.display(),
        key.display(),
        spool.display()
    );
    Setup {
        _dir: dir,
        pki,
        server_cert,
        spool,
        addr,
        base,
    }
}

/// Builds the sink from `options` and runs it; the sender feeds it.
fn start_sink(
    options: &str,
    capacity: usize,
) -> (
    mpsc::Sender<SinkEvent>,
    Arc<NodeMetrics>,
    tokio::task::JoinHandle<SinkSummary>,
) {
    let table: toml::Table = toml::from_str(options).expect("options parse");
    let config: FlightSinkConfig = edgeflow_engine::parse_options(table).expect("options");
    let sink = config.build(&schema()).expect("build");
    let (input, sender) = SinkInput::for_test("upstream", schema(), capacity);
    let metrics = input.metrics().clone();
    let task = tokio::spawn(async move { sink.run(input).await.expect("sink run") });
    (sender, metrics, task)
}

fn value(metrics: &NodeMetrics, name: &str) -> u64 {
    metrics.snapshot().values.get(name).copied().unwrap_or(0)
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_at_start_then_up_drains_in_order_exactly_once() {
    let s = setup();
    // Segments are cut by rows only (250-row batches, 100-row segments), so exactly ten.
    let options = format!("{}\nbatch_rows = 100\nbatch_interval = \"1h\"", s.base);
    let (sender, metrics, task) = start_sink(&options, 4);
    for start in (0..1000).step_by(250) {
        sender
            .send(SinkEvent::Rows(rows(start, 250)))
            .await
            .unwrap();
    }
    // The collector is not there yet: ten segments wait in the spool, with retries.
    wait_for("10 spooled segments", || {
        value(&metrics, "spool_segments") == 10
    })
    .await;
    wait_for("a retry", || value(&metrics, "retries") >= 2).await;
    assert_eq!(value(&metrics, "connected"), 0);
    assert_eq!(value(&metrics, "acks"), 0);

    let collector = TestCollector::default();
    let _stop = serve(s.addr, &s.server_cert, &s.pki.ca, collector.clone()).await;
    wait_for("all acks", || value(&metrics, "acks") == 10).await;
    assert_eq!(value(&metrics, "connected"), 1);
    drop(sender);
    let summary = task.await.unwrap();
    assert_eq!(summary.rows, 1000);
    assert_eq!(summary.files, 10);

    let received = collector.received.lock().unwrap();
    let ids: Vec<u64> = received.puts.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids,
        (1..=10).collect::<Vec<u64>>(),
        "sent in id order, each once"
    );
    assert!(
        received
            .puts
            .iter()
            .all(|(stream, _)| stream == "plant1.up")
    );
    let all: Vec<RecordBatch> = received.stored.values().flatten().cloned().collect();
    assert_eq!(values(&all), (0..1000).collect::<Vec<i64>>());
    assert_eq!(value(&metrics, "sent_rows"), 1000);
    assert_eq!(value(&metrics, "spool_segments"), 0);
    assert_eq!(value(&metrics, "spool_bytes"), 0);
    assert!(value(&metrics, "sent_bytes") > 0);
    let (spool, _) = Spool::open(&s.spool).unwrap();
    assert!(spool.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_failing_mid_stream_loses_nothing_and_stores_each_segment_once() {
    let s = setup();
    let collector = TestCollector::default();
    {
        let mut received = collector.received.lock().unwrap();
        received.fail_before_store = vec![1];
        received.fail_after_store = vec![3];
    }
    let _stop = serve(s.addr, &s.server_cert, &s.pki.ca, collector.clone()).await;
    let options = format!("{}\nbatch_rows = 50\nbatch_interval = \"50ms\"", s.base);
    let (sender, metrics, task) = start_sink(&options, 4);
    for start in (0..300).step_by(100) {
        sender
            .send(SinkEvent::Rows(rows(start, 100)))
            .await
            .unwrap();
    }
    drop(sender);
    let summary = task.await.unwrap();
    assert_eq!(summary.rows, 300);
    assert_eq!(value(&metrics, "retries"), 2, "one retry per failed DoPut");

    let received = collector.received.lock().unwrap();
    let ids: Vec<u64> = received.puts.iter().map(|(_, id)| *id).collect();
    // Put 1 (segment 2) failed before storing and put 3 (segment 3) after: both are sent
    // again, in order; the collector holds every segment once.
    assert_eq!(ids, vec![1, 2, 2, 3, 3, 4, 5, 6]);
    assert_eq!(received.stored.len(), 6);
    let all: Vec<RecordBatch> = received.stored.values().flatten().cloned().collect();
    assert_eq!(values(&all), (0..300).collect::<Vec<i64>>());
    assert_eq!(value(&metrics, "spool_segments"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_survives_a_restart_and_is_sent_first_with_new_ids_after_it() {
    let s = setup();
    // First run: no collector, a short drain: everything stays spooled.
    let options = format!(
        "{}\nbatch_rows = 100\nbatch_interval = \"50ms\"\ndrain_timeout = \"100ms\"",
        s.base
    );
    let (sender, metrics, task) = start_sink(&options, 4);
    sender.send(SinkEvent::Rows(rows(0, 300))).await.unwrap();
    drop(sender);
    let summary = task.await.unwrap();
    assert_eq!(summary.rows, 0);
    assert_eq!(value(&metrics, "spool_segments"), 3);

    // Second run: the collector is up; old segments go first, new ids continue after them.
    let collector = TestCollector::default();
    let _stop = serve(s.addr, &s.server_cert, &s.pki.ca, collector.clone()).await;
    let (sender, metrics, task) = start_sink(&options, 4);
    sender.send(SinkEvent::Rows(rows(300, 100))).await.unwrap();
    drop(sender);
    let summary = task.await.unwrap();
    assert_eq!(summary.rows, 400);
    assert_eq!(value(&metrics, "spool_segments"), 0);
    let received = collector.received.lock().unwrap();
    let ids: Vec<u64> = received.puts.iter().map(|(_, id)| *id).collect();
    // The first run reserved ids up to 1000 (one durable `next-id` write per block).
    assert_eq!(ids, vec![1, 2, 3, 1001]);
    let all: Vec<RecordBatch> = received.stored.values().flatten().cloned().collect();
    assert_eq!(values(&all), (0..400).collect::<Vec<i64>>());
}

/// The size of one encoded 100-row segment of [`rows`].
fn segment_size() -> u64 {
    super::spool::encode(
        &schema(),
        &[rows(0, 100)],
        super::options::Compression::None,
    )
    .unwrap()
    .len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_the_oldest_segments_and_counts_them() {
    let s = setup();
    let size = segment_size();
    // Room for three segments; the collector never comes.
    let options = format!(
        "{}\nbatch_rows = 100\nbatch_bytes = {1}\nbatch_interval = \"50ms\"\ncompression = \"none\"\nmax_spool_size = {1}\nfull_policy = \"drop_oldest\"\ndrain_timeout = \"50ms\"",
        s.base,
        3 * size + size / 2
    );
    let (sender, metrics, task) = start_sink(&options, 4);
    for start in (0..1000).step_by(100) {
        sender
            .send(SinkEvent::Rows(rows(start, 100)))
            .await
            .unwrap();
    }
    drop(sender);
    task.await.unwrap();
    assert_eq!(value(&metrics, "dropped_segments"), 7);
    assert_eq!(value(&metrics, "dropped_rows"), 700);
    assert_eq!(metrics.snapshot().dropped.get("spool_full"), Some(&700));
    let (spool, _) = Spool::open(&s.spool).unwrap();
    let kept: Vec<u64> = spool.segments().map(|seg| seg.id).collect();
    assert_eq!(kept, vec![8, 9, 10], "the newest segments are kept");
    assert!(spool.bytes() <= 3 * size + size / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_with_block_stops_taking_rows_until_the_link_frees_space() {
    let s = setup();
    let size = segment_size();
    let options = format!(
        "{}\nbatch_rows = 100\nbatch_bytes = {1}\nbatch_interval = \"50ms\"\ncompression = \"none\"\nmax_spool_size = {1}\nfull_policy = \"block\"",
        s.base,
        3 * size + size / 2
    );
    let (sender, metrics, task) = start_sink(&options, 1);
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let feeder = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            for start in (0..1000).step_by(100) {
                sender
                    .send(SinkEvent::Rows(rows(start, 100)))
                    .await
                    .unwrap();
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    wait_for("a full spool", || value(&metrics, "spool_segments") == 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Three segments spooled, one encoded and waiting for room, one in the channel: the
    // feeder is held back.
    let held = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        held < 10,
        "the feeder was not held back: {held} batches accepted"
    );
    assert!(!feeder.is_finished());
    assert_eq!(value(&metrics, "spool_segments"), 3);

    let collector = TestCollector::default();
    let _stop = serve(s.addr, &s.server_cert, &s.pki.ca, collector.clone()).await;
    feeder.await.unwrap();
    let summary = task.await.unwrap();
    assert_eq!(summary.rows, 1000);
    assert_eq!(value(&metrics, "dropped_segments"), 0);
    let received = collector.received.lock().unwrap();
    let all: Vec<RecordBatch> = received.stored.values().flatten().cloned().collect();
    assert_eq!(values(&all), (0..1000).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_names_the_endpoint_and_the_reason() {
    let s = setup();
    // The collector's certificate comes from a CA the gateway does not trust.
    let dir = tempfile::tempdir().unwrap();
    let other = Pki::new(dir.path(), "other-ca");
    let foreign_cert = other.leaf("impostor", &["localhost"]);
    let _stop = serve(s.addr, &foreign_cert, &s.pki.ca, TestCollector::default()).await;
    let settings = {
        let table: toml::Table = toml::from_str(&s.base).unwrap();
        let config: FlightSinkConfig = edgeflow_engine::parse_options(table).unwrap();
        config.plan().unwrap()
    };
    let link = Link::new(
        settings.endpoint.clone(),
        settings.tls.as_ref(),
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .unwrap();
    let error = link.connect().await.expect_err("an untrusted collector");
    let message = error.to_string();
    assert!(matches!(error, LinkError::Tls { .. }), "{message}");
    assert!(
        message.contains(&format!("https://{}", s.addr)),
        "{message}"
    );
    assert!(message.contains("UnknownIssuer"), "{message}");

    // Nothing listens: a connection error, also naming the endpoint.
    let closed = parse_endpoint(&format!("http://{}", free_addr())).unwrap();
    let link = Link::new(closed, None, Duration::from_secs(2), Duration::from_secs(2)).unwrap();
    let message = link.connect().await.expect_err("no listener").to_string();
    assert!(
        message.starts_with("cannot connect to Flight collector http://127.0.0.1:"),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
}
