//! Integration tests of the `edgeflow` binary.
//!
//! * `cli`: arguments, exit codes, `validate` and `explain` on every example and on broken
//!   query files, clear one-line errors for missing inputs and unwritable outputs.
//! * `quickstart`: runs `examples/quickstart.toml` end to end and checks its Parquet output
//!   with pyarrow and DuckDB against an independent recomputation of the windows.
//! * `bad_input`: malformed CSV and JSON lines are counted and skipped; the valid rows
//!   around them reach the output.
//! * `window_duckdb`: a dirty million-event CSV file through tumbling and hopping windows,
//!   compared with DuckDB computing the same windows (issue 4).
//! * `http`: the `http` source through the binary with reqwest: every status code, bearer
//!   tokens and mutual TLS (an rcgen PKI), body limits, 503 under overload with bounded
//!   memory, `/metrics` counters against what was sent (issue 7).
//! * `ops`: the operations server: `/health`, `/ready` (and its reasons), `/metrics`,
//!   `/api/pipeline` (issue 7).
//! * `flight_pyarrow`: the `flight` sink through the binary into a `pyarrow.flight` collector
//!   over mutual TLS: every row arrives once and the spool empties; TLS failures name the
//!   endpoint and the reason (issue 9).
//! * `mqtt`: the MQTT source and sink against a real mosquitto started by `mqtt_broker` on a
//!   free loopback port (plain, TLS, mutual TLS): payloads and rejects, QoS 1 across broker
//!   and engine restarts, certificates, reconnect backoff.
//! * `modbus`: the `modbus` source against a pymodbus server (`python/modbus_server.py`) on a
//!   free loopback port: every type and word order decoded exactly, a dead unit, a slow unit, a
//!   closed port and an illegal address counted per device while the good one keeps its rate.
//!
//! * `collect`: `edgeflow certs` and `edgeflow collect` with a pyarrow.flight client over
//!   mutual TLS: partitioned Parquet checked with DuckDB, duplicate segments, refused
//!   certificates (none, other CA, expired), ListFlights and DoGet (issue 9).
//! * `upstream`: `edgeflow run` with a `flight` sink into `edgeflow collect`: a collector
//!   killed and restarted mid-stream, a gateway killed with a full spool, a spool full with
//!   `drop_oldest`; rows compared with what was sent, exactly once (issue 9).
//!
//! Python checks use `$EDGEFLOW_PYTHON`, else `.venv/bin/python` (made by `scripts/test`).

#[macro_use]
mod util;

mod bad_input;
mod cli;
mod collect;
mod docs;
mod flight_pyarrow;
mod http;
mod modbus;
mod mqtt;
mod mqtt_broker;
mod ops;
mod pki;
mod quickstart;
mod shutdown;
mod upstream;
mod window_duckdb;
