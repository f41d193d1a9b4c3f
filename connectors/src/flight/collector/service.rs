//! The collector's Arrow Flight service: `DoPut` stores a segment and acks it,
//! `ListFlights` / `GetFlightInfo` / `DoGet` read back what arrived.

use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use edgeflow_engine::arrow::datatypes::{Schema, SchemaRef};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::stats::CollectorStats;
use super::store::{SegmentStore, read_parquet};
use crate::flight::protocol::{SegmentAck, SegmentRef, format_segment_id};
use crate::http::auth::certificate_common_name;

/// Metadata header naming the gateway in `--insecure` mode (no certificates to read it from).
pub const INSECURE_GATEWAY_HEADER: &str = "x-edgeflow-gateway";

/// How the service learns which gateway is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayIdentity {
    /// The subject CN of the client certificate (mutual TLS; the normal case).
    ClientCertificate,
    /// The `x-edgeflow-gateway` header, else `anonymous`: for local tests without TLS only.
    InsecureHeader,
}

/// The Flight service over a [`SegmentStore`].
#[derive(Clone, Debug)]
pub struct CollectorService {
    store: Arc<SegmentStore>,
    stats: Arc<CollectorStats>,
    identity: GatewayIdentity,
}

impl CollectorService {
    /// A service storing into `store` and counting into `stats`.
    pub fn new(
        store: Arc<SegmentStore>,
        stats: Arc<CollectorStats>,
        identity: GatewayIdentity,
    ) -> Self {
        Self {
            store,
            stats,
            identity,
        }
    }

    /// The calling gateway's name, safe as a path part.
    fn gateway<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let name = match self.identity {
            GatewayIdentity::ClientCertificate => {
                let certs = request.peer_certs().ok_or_else(|| {
                    self.reject(
                        "no client certificate",
                        "the connection has no client certificate",
                    )
                })?;
                let first = certs.first().ok_or_else(|| {
                    self.reject(
                        "no client certificate",
                        "the connection has no client certificate",
                    )
                })?;
                certificate_common_name(first).ok_or_else(|| {
                    self.reject(
                        "no common name",
                        "the client certificate has no subject common name (CN = gateway id)",
                    )
                })?
            }
            GatewayIdentity::InsecureHeader => request
                .metadata()
                .get(INSECURE_GATEWAY_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("anonymous")
                .to_owned(),
        };
        Ok(sanitise_gateway(&name))
    }

    /// Counts a rejected request and builds its error.
    fn reject(&self, reason: &'static str, message: impl Into<String>) -> Status {
        let message = message.into();
        let total = self.stats.count_rejected(reason);
        tracing::warn!(reason, rejected_so_far = total, %message, "Rejected a request");
        if reason == "write failed" {
            Status::unavailable(message)
        } else if reason == "no client certificate" || reason == "no common name" {
            Status::unauthenticated(message)
        } else {
            Status::invalid_argument(message)
        }
    }

    async fn put_segment(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<SegmentAck, Status> {
        let gateway = self.gateway(&request)?;
        let mut incoming = request.into_inner();
        let first = match incoming.message().await {
            Ok(Some(first)) => first,
            Ok(None) => return Err(self.reject("bad descriptor", "empty DoPut: no messages")),
            Err(status) => return Err(status),
        };
        let descriptor = first.flight_descriptor.clone().ok_or_else(|| {
            self.reject(
                "bad descriptor",
                "the first DoPut message carries no flight descriptor",
            )
        })?;
        let segment = SegmentRef::from_descriptor(&descriptor)
            .map_err(|e| self.reject("bad descriptor", e.to_string()))?;
        let id = format_segment_id(segment.id);
        let stats = Arc::clone(&self.stats);
        let data = stream::once(async { Ok(first) })
            .chain(incoming.map_err(FlightError::from))
            .inspect_ok(move |d| {
                stats.count_bytes((d.data_header.len() + d.data_body.len()) as u64);
            });
        let mut decoded = FlightRecordBatchStream::new_from_flight_data(data);
        let mut batches = Vec::new();
        while let Some(batch) = decoded.next().await {
            match batch {
                Ok(batch) => batches.push(batch),
                // The client went away (link cut, cancel): nothing is stored or acked.
                Err(FlightError::Tonic(status)) => return Err(*status),
                Err(error) => {
                    return Err(self.reject(
                        "bad data",
                        format!("segment {}/{id} from {gateway}: {error}", segment.stream),
                    ));
                }
            }
        }
        let schema: SchemaRef = match (decoded.schema(), batches.first()) {
            (Some(schema), _) => Arc::clone(schema),
            (None, Some(batch)) => batch.schema(),
            (None, None) => Arc::new(Schema::empty()),
        };
        let store = Arc::clone(&self.store);
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let (gateway_for_store, segment_for_store) = (gateway.clone(), segment.clone());
        let stored = tokio::task::spawn_blocking(move || {
            store.store(
                &gateway_for_store,
                &segment_for_store,
                &schema,
                &batches,
                &today,
            )
        })
        .await
        .map_err(|e| Status::internal(format!("bug: the segment writer panicked: {e}")))?;
        let stored = match stored {
            Ok(stored) => stored,
            Err(super::store::StoreError::BadData { reason, .. }) => {
                return Err(self.reject(
                    "bad data",
                    format!("segment {}/{id} from {gateway}: {reason}", segment.stream),
                ));
            }
            Err(error) => {
                return Err(self.reject(
                    "write failed",
                    format!(
                        "cannot store segment {}/{id} from {gateway}: {error}",
                        segment.stream
                    ),
                ));
            }
        };
        if stored.duplicate {
            self.stats.count_duplicate();
        } else {
            self.stats.count_stored(stored.rows);
        }
        tracing::debug!(%gateway, stream = %segment.stream, segment = segment.id,
            rows = stored.rows, duplicate = stored.duplicate, files = stored.files.len(),
            "Segment stored");
        Ok(SegmentAck {
            stream: segment.stream,
            segment_id: segment.id,
            rows: stored.rows,
            duplicate: stored.duplicate,
        })
    }

    /// The `FlightInfo` of one (gateway, stream), with the schema of its first file.
    fn flight_info(&self, gateway: &str, stream: &str, segments: u64, rows: u64) -> FlightInfo {
        let ticket = format!("{gateway}/{stream}");
        let metadata = serde_json::json!({
            "gateway": gateway, "stream": stream, "segments": segments, "rows": rows,
        });
        let info = FlightInfo::new()
            .with_descriptor(FlightDescriptor::new_path(vec![
                gateway.to_owned(),
                stream.to_owned(),
            ]))
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_total_records(i64::try_from(rows).unwrap_or(i64::MAX))
            .with_app_metadata(metadata.to_string());
        let schema = self
            .store
            .files_of(gateway, stream)
            .ok()
            .and_then(|files| files.into_iter().next())
            .and_then(|file| parquet_schema(&file));
        match schema {
            Some(schema) => info.clone().try_with_schema(&schema).unwrap_or(info),
            None => info,
        }
    }
}

fn parquet_schema(path: &std::path::Path) -> Option<Schema> {
    let file = std::fs::File::open(path).ok()?;
    let builder =
        ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    Some(builder.schema().as_ref().clone())
}

/// A gateway name made safe as a path part: characters outside `[A-Za-z0-9._-]` become `_`,
/// and a name of only dots becomes underscores too.
pub fn sanitise_gateway(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        "_".repeat(clean.len().max(1))
    } else {
        clean
    }
}

type Stream<T> = BoxStream<'static, Result<T, Status>>;

#[tonic::async_trait]
impl FlightService for CollectorService {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;
    type DoExchangeStream = Stream<FlightData>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "the collector authenticates by client certificate",
        ))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos: Vec<Result<FlightInfo, Status>> = self
            .store
            .totals()
            .into_iter()
            .map(|((gateway, stream), t)| {
                Ok(self.flight_info(&gateway, &stream, t.segments, t.rows))
            })
            .collect();
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.into_inner();
        let [gateway, stream] = descriptor.path.as_slice() else {
            return Err(Status::invalid_argument(
                "expected a path descriptor [gateway, stream]",
            ));
        };
        let totals = self.store.totals();
        let Some(t) = totals.get(&(gateway.clone(), stream.clone())) else {
            return Err(Status::not_found(format!(
                "nothing received for {gateway}/{stream}"
            )));
        };
        Ok(Response::new(
            self.flight_info(gateway, stream, t.segments, t.rows),
        ))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info: use ListFlights"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema: use ListFlights"))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = String::from_utf8_lossy(&request.get_ref().ticket).into_owned();
        let Some((gateway, stream_name)) = ticket.split_once('/') else {
            return Err(Status::invalid_argument(format!(
                "ticket `{ticket}` is not <gateway>/<stream>"
            )));
        };
        let files = self
            .store
            .files_of(gateway, stream_name)
            .map_err(|e| Status::internal(e.to_string()))?;
        if files.is_empty() {
            return Err(Status::not_found(format!("nothing received for {ticket}")));
        }
        // Files are read on a blocking thread, a few batches ahead of the network.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            for file in files {
                let batches = match read_parquet(&file) {
                    Ok(batches) => batches,
                    Err(error) => {
                        let _ =
                            sender.blocking_send(Err(FlightError::ExternalError(Box::new(error))));
                        return;
                    }
                };
                for batch in batches {
                    if sender.blocking_send(Ok(batch)).is_err() {
                        return;
                    }
                }
            }
        });
        let batches = stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        let encoded = FlightDataEncoderBuilder::new()
            .build(batches)
            .map_err(Status::from)
            .boxed();
        Ok(Response::new(encoded))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let ack = self.put_segment(request).await?;
        let result = PutResult {
            app_metadata: ack.to_bytes().into(),
        };
        Ok(Response::new(stream::once(async { Ok(result) }).boxed()))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented(
            "do_exchange is not offered by the collector",
        ))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("the collector has no actions"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Ok(Response::new(stream::empty().boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_names_are_safe_path_parts() {
        assert_eq!(sanitise_gateway("gw-01"), "gw-01");
        assert_eq!(sanitise_gateway("plant 1/gw"), "plant_1_gw");
        assert_eq!(sanitise_gateway(".."), "__");
        assert_eq!(sanitise_gateway(""), "_");
    }
}
