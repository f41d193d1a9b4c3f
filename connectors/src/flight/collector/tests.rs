//! The collector in process, over plain gRPC (`--insecure` mode) with arrow-flight's own
//! client: acks after the write, duplicates, undecodable data answered with
//! `InvalidArgument` and counted while the server keeps serving, the insecure gateway header,
//! concurrent sends of one segment stored once, and `DoGet` of what arrived.

use std::sync::Arc;
use std::time::Duration;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, FlightData, Ticket};
use edgeflow_engine::arrow::array::{Float64Array, RecordBatch, TimestampMillisecondArray};
use edgeflow_engine::arrow::datatypes::{DataType, Field, TimeUnit};
use edgeflow_engine::schema::schema_with_event_time;
use futures::TryStreamExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;
use crate::flight::protocol::{SegmentAck, SegmentRef};

const T0: i64 = 1_764_115_200_000; // 2025-11-26T00:00:00Z

fn rows(n: usize) -> RecordBatch {
    let schema = schema_with_event_time(
        [
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("value", DataType::Float64, false),
        ],
        Some("ts"),
    );
    let ts: Vec<i64> = (0..n as i64).map(|i| T0 + i).collect();
    let values: Vec<f64> = (0..n).map(|i| i as f64).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMillisecondArray::from(ts)),
            Arc::new(Float64Array::from(values)),
        ],
    )
    .unwrap()
}

async fn client(port: u16, gateway: &str) -> FlightClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightClient::new(channel);
    client
        .add_header(service::INSECURE_GATEWAY_HEADER, gateway)
        .unwrap();
    client
}

async fn put(
    client: &mut FlightClient,
    id: u64,
    batch: RecordBatch,
) -> Result<SegmentAck, FlightError> {
    let segment = SegmentRef {
        stream: "s1".into(),
        id,
    };
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(segment.descriptor()))
        .build(futures::stream::once(async move { Ok(batch) }));
    let results: Vec<_> = client.do_put(data).await?.try_collect().await?;
    assert_eq!(results.len(), 1, "one PutResult per segment");
    Ok(SegmentAck::from_bytes(&results[0].app_metadata).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_acks_rejects_bad_data_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let options = CollectorOptions {
        out: dir.path().to_path_buf(),
        tls: None,
        summary_interval: Duration::from_secs(3600),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, options, async move {
        let _ = stopped.await;
    }));
    let mut gw = client(port, "plant 7/gw").await;

    let ack = put(&mut gw, 1, rows(10)).await.unwrap();
    assert_eq!((ack.rows, ack.duplicate), (10, false));
    assert!(
        dir.path()
            .join("gateway=plant_7_gw/date=2025-11-26/s1-00000000000000000001.parquet")
            .exists()
    );

    // Undecodable data after a valid descriptor: InvalidArgument naming the segment.
    let descriptor = SegmentRef {
        stream: "s1".into(),
        id: 2,
    }
    .descriptor();
    let garbage = FlightData {
        flight_descriptor: Some(descriptor),
        data_header: vec![1, 2, 3, 4, 5, 6, 7, 8].into(),
        ..FlightData::default()
    };
    let error = match gw
        .do_put(futures::stream::once(async { Ok(garbage) }))
        .await
    {
        Ok(results) => results.try_collect::<Vec<_>>().await.unwrap_err(),
        Err(error) => error,
    };
    let FlightError::Tonic(status) = error else {
        panic!("expected a gRPC status: {error}")
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status
            .message()
            .contains("segment s1/00000000000000000002 from plant_7_gw"),
        "{status}"
    );

    // Still serving: the same segment twice at once is stored once, the other acked as a
    // duplicate.
    let mut other = client(port, "plant 7/gw").await;
    let (a, b) = tokio::join!(put(&mut gw, 3, rows(5)), put(&mut other, 3, rows(5)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.rows, b.rows), (5, 5));
    assert!(
        a.duplicate != b.duplicate,
        "exactly one of {a:?} and {b:?} is a duplicate"
    );

    // DoGet returns each stored row once.
    let batches: Vec<RecordBatch> = gw
        .do_get(Ticket::new("plant_7_gw/s1"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 15);

    let _ = stop.send(());
    let stats = server.await.unwrap().unwrap();
    assert_eq!((stats.segments, stats.rows, stats.duplicates), (2, 15, 1));
    assert_eq!(stats.rejected.get("bad data"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_names_each_gateway_stream_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let options = CollectorOptions {
        out: dir.path().to_path_buf(),
        tls: None,
        summary_interval: Duration::from_secs(3600),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, options, async move {
        let _ = stopped.await;
    }));
    let mut a = client(port, "gw-a").await;
    let mut b = client(port, "gw-b").await;
    put(&mut a, 1, rows(3)).await.unwrap();
    put(&mut a, 2, rows(4)).await.unwrap();
    put(&mut b, 1, rows(2)).await.unwrap();
    let infos: Vec<_> = a
        .list_flights(vec![])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let listed: Vec<(Vec<String>, i64)> = infos
        .iter()
        .map(|i| (i.flight_descriptor.clone().unwrap().path, i.total_records))
        .collect();
    assert_eq!(
        listed,
        [
            (vec!["gw-a".to_owned(), "s1".to_owned()], 7),
            (vec!["gw-b".to_owned(), "s1".to_owned()], 2),
        ]
    );
    let schema = infos[0].clone().try_decode_schema().unwrap();
    assert_eq!(schema.field(0).name(), "ts");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
