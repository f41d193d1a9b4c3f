//! The running `modbus` source: one tokio task per device polls on its own timer, with its own
//! connection, timeouts and reconnect backoff, and hands each successful poll as one row to
//! the source loop, which batches whatever rows are ready and sends them into the dataflow.
//!
//! A device that does not answer only delays its own task: the others keep their rate.
//!
//! # Counters
//!
//! Per device, in the node's values (the run summary, `/metrics` as
//! `edgeflow_node_events_total{event="<id>.<what>"}`, `/api/pipeline`):
//!
//! * `<id>.polls`: polls that produced a row;
//! * `<id>.timeout`: a connection or a request not answered within `timeout`;
//! * `<id>.exception:<name>`: the device answered with a Modbus exception
//!   (`illegal_function`, `illegal_data_address`, `illegal_data_value`,
//!   `server_device_failure`, `acknowledge`, `server_device_busy`, `memory_parity_error`,
//!   `gateway_path_unavailable`, `gateway_target_device`, or `code_<n>`);
//! * `<id>.connect_failed`: the TCP connection could not be made (refused, unreachable,
//!   unknown host);
//! * `<id>.connection_lost`: the connection broke during a poll;
//! * `<id>.decode`: the answer did not match the request (wrong length, transaction or unit);
//! * `<id>.restarts`: the device's task stopped on a bug (a panic) and was started again
//!   after one interval.
//!
//! A failed poll emits no row for that device and never stops the pipeline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use edgeflow_engine::arrow::datatypes::{DataType, SchemaRef};
use edgeflow_engine::arrow::record_batch::RecordBatch;
use edgeflow_engine::{BoxError, BoxFuture, NodeMetrics, Source, SourceContext};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::{ExceptionCode, Slave};
use tracing::{debug, error, info, warn};

use super::coalesce::{Request, Table};
use super::decode::Reading;
use super::options::{DevicePlan, ModbusPlan};
use crate::mqtt::connection::Backoff;

/// Most rows in one batch.
const MAX_BATCH_ROWS: usize = 4096;

/// The running source.
#[derive(Debug)]
pub struct ModbusSource {
    pub(crate) plan: ModbusPlan,
}

/// One successful poll.
#[derive(Debug)]
pub(crate) struct PolledRow {
    /// Index of the device.
    device: usize,
    /// Poll start, ms since the epoch.
    at_ms: i64,
    /// (column, value) for each field of the device.
    values: Vec<(usize, Reading)>,
}

/// Why a poll failed; [`Failure::reason`] is the counter name.
#[derive(Debug)]
pub(crate) enum Failure {
    Timeout(&'static str),
    Exception(ExceptionCode, Request),
    ConnectFailed(String),
    ConnectionLost(String),
    Decode(String),
}

impl Failure {
    /// The counter name (`timeout`, `exception:illegal_data_address`, …).
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Timeout(_) => "timeout".into(),
            Self::Exception(code, _) => format!("exception:{}", exception_name(*code)),
            Self::ConnectFailed(_) => "connect_failed".into(),
            Self::ConnectionLost(_) => "connection_lost".into(),
            Self::Decode(_) => "decode".into(),
        }
    }

    /// Whether the connection must be dropped: after a timeout a late answer could still
    /// arrive and be taken for the next request's.
    fn drops_connection(&self) -> bool {
        !matches!(self, Self::Exception(..))
    }

    fn detail(&self, timeout: Duration) -> String {
        match self {
            Self::Timeout(what) => format!("no answer to {what} within {timeout:?}"),
            Self::Exception(code, request) => format!(
                "the device answered {} (exception {:#04x}) to reading {} {} at address {}",
                exception_name(*code),
                u8::from(*code),
                request.count,
                request.table.name(),
                request.address
            ),
            Self::ConnectFailed(reason) => format!("cannot connect: {reason}"),
            Self::ConnectionLost(reason) => format!("connection lost: {reason}"),
            Self::Decode(reason) => format!("bad answer: {reason}"),
        }
    }
}

/// The snake_case name of a Modbus exception code.
pub(crate) fn exception_name(code: ExceptionCode) -> String {
    match code {
        ExceptionCode::IllegalFunction => "illegal_function".into(),
        ExceptionCode::IllegalDataAddress => "illegal_data_address".into(),
        ExceptionCode::IllegalDataValue => "illegal_data_value".into(),
        ExceptionCode::ServerDeviceFailure => "server_device_failure".into(),
        ExceptionCode::Acknowledge => "acknowledge".into(),
        ExceptionCode::ServerDeviceBusy => "server_device_busy".into(),
        ExceptionCode::MemoryParityError => "memory_parity_error".into(),
        ExceptionCode::GatewayPathUnavailable => "gateway_path_unavailable".into(),
        ExceptionCode::GatewayTargetDevice => "gateway_target_device".into(),
        ExceptionCode::Custom(code) => format!("code_{code}"),
    }
}

impl Source for ModbusSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            self.run_loop(ctx).await;
            Ok(())
        })
    }
}

impl ModbusSource {
    async fn run_loop(self, ctx: SourceContext) {
        let plan = self.plan;
        let (rows, mut receiver) = mpsc::channel::<PolledRow>(plan.devices.len().max(16) * 2);
        // Dropping the set at the end aborts every device task.
        let mut tasks = JoinSet::new();
        let mut task_devices = HashMap::new();
        let spawn = |tasks: &mut JoinSet<()>, index: usize, delay: Duration| {
            let device: &DevicePlan = &plan.devices[index];
            let task = DeviceTask {
                index,
                device: device.clone(),
                source: ctx.name().to_string(),
                interval: device.interval,
                timeout: device.timeout,
                reconnect: plan.reconnect,
                metrics: ctx.metrics().clone(),
                delay,
            };
            tasks.spawn(poll_device(task, rows.clone())).id()
        };
        for (index, device) in plan.devices.iter().enumerate() {
            info!(source = %ctx.name(), device = %device.id, address = %device.address, unit = device.unit, interval = ?device.interval, requests = device.requests.len(), "Polling Modbus device");
            task_devices.insert(spawn(&mut tasks, index, Duration::ZERO), index);
        }
        let ids: Vec<&str> = plan.devices.iter().map(|d| d.id.as_str()).collect();
        let mut shutdown = ctx.shutdown();
        let mut pending = Vec::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.requested() => break,
                Some(ended) = tasks.join_next_with_id() => {
                    // A device task only ends by panicking (a bug here or in tokio-modbus, such
                    // as its debug assertion on a short answer). Keep the device polled: start
                    // it again after one interval, so a device that triggers the bug on every
                    // poll cannot cause a restart storm.
                    let (id, reason) = match ended {
                        Ok((id, ())) => (id, "ended".to_string()),
                        Err(error) => (error.id(), error.to_string()),
                    };
                    if let Some(index) = task_devices.remove(&id) {
                        let device = &plan.devices[index];
                        error!(source = %ctx.name(), device = %device.id, address = %device.address, "The polling task of a Modbus device stopped ({reason}); this is a bug, please report it. Restarting it");
                        ctx.metrics().add_value(&format!("{}.restarts", device.id), 1);
                        task_devices.insert(spawn(&mut tasks, index, device.interval), index);
                    }
                    continue;
                }
                received = receiver.recv_many(&mut pending, MAX_BATCH_ROWS) => {
                    if received == 0 {
                        break;
                    }
                }
            }
            let batch = build_batch(&plan.schema, &ids, &pending);
            ctx.metrics().add_rows_in(pending.len());
            pending.clear();
            match batch {
                Ok(batch) => {
                    if ctx.send(batch).await.is_err() {
                        break;
                    }
                }
                // The builders follow the schema the plan made, so this is a bug.
                Err(error) => {
                    warn!(source = %ctx.name(), "Could not assemble Modbus rows (a bug, please report it): {error}")
                }
            }
        }
        tasks.shutdown().await;
    }
}

/// What one device task needs.
struct DeviceTask {
    index: usize,
    device: DevicePlan,
    source: String,
    interval: Duration,
    timeout: Duration,
    reconnect: (Duration, Duration),
    metrics: Arc<NodeMetrics>,
    /// Wait before the first poll (a restarted task).
    delay: Duration,
}

/// Polls one device forever (until aborted or the row channel closes).
async fn poll_device(task: DeviceTask, rows: mpsc::Sender<PolledRow>) {
    let device = &task.device;
    let count = |what: &str| {
        task.metrics.add_value(&format!("{}.{what}", device.id), 1);
    };
    let mut ticker = tokio::time::interval_at(Instant::now() + task.delay, task.interval);
    // A poll longer than the interval skips the ticks it overran instead of bursting.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut backoff = Backoff::new(task.reconnect.0, task.reconnect.1);
    let mut connection: Option<Context> = None;
    let mut retry_at: Option<Instant> = None;
    let mut failures = 0u64;
    loop {
        ticker.tick().await;
        let at_ms = chrono::Utc::now().timestamp_millis();
        if connection.is_none() {
            if retry_at.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            match connect(device, task.timeout).await {
                Ok(context) => {
                    connection = Some(context);
                    retry_at = None;
                    backoff.reset();
                }
                Err(failure) => {
                    let delay = backoff.next_delay();
                    retry_at = Some(Instant::now() + delay);
                    failures += 1;
                    count(&failure.reason());
                    report(&task, &failure, failures, Some(delay));
                    continue;
                }
            }
        }
        let Some(context) = connection.as_mut() else {
            continue;
        };
        match poll(context, device, task.timeout).await {
            Ok(values) => {
                count("polls");
                if failures > 0 {
                    info!(source = %task.source, device = %device.id, address = %device.address, failures, "Modbus device answers again");
                    failures = 0;
                }
                let row = PolledRow {
                    device: task.index,
                    at_ms,
                    values,
                };
                if rows.send(row).await.is_err() {
                    return;
                }
            }
            Err(failure) => {
                failures += 1;
                count(&failure.reason());
                report(&task, &failure, failures, None);
                if failure.drops_connection() {
                    connection = None;
                }
            }
        }
    }
}

/// Logs a failure: the first of a streak and every tenth as a warning, the rest at debug, so a
/// device that stays away is visible without flooding the log.
fn report(task: &DeviceTask, failure: &Failure, failures: u64, retry: Option<Duration>) {
    let device = &task.device;
    let detail = failure.detail(task.timeout);
    let reason = failure.reason();
    let retry = retry.map_or(String::new(), |d| format!("; next attempt in {d:?}"));
    if failures == 1 || failures.is_multiple_of(10) {
        warn!(source = %task.source, device = %device.id, address = %device.address, unit = device.unit, reason = %reason, failures, "Modbus poll failed: {detail}{retry}");
    } else {
        debug!(source = %task.source, device = %device.id, address = %device.address, unit = device.unit, reason = %reason, failures, "Modbus poll failed: {detail}{retry}");
    }
}

/// Opens the TCP connection of `device`.
pub(crate) async fn connect(device: &DevicePlan, timeout: Duration) -> Result<Context, Failure> {
    let stream = match tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect(device.address.as_str()),
    )
    .await
    {
        Err(_) => return Err(Failure::Timeout("the connection")),
        Ok(Err(error)) => return Err(Failure::ConnectFailed(crate::error::io_reason(&error))),
        Ok(Ok(stream)) => stream,
    };
    // Requests are small and answered one at a time: send each at once.
    let _ = stream.set_nodelay(true);
    Ok(tokio_modbus::client::tcp::attach_slave(
        stream,
        Slave(device.unit),
    ))
}

/// The answer to one request.
enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// Reads every request of `device` and decodes its fields.
pub(crate) async fn poll(
    context: &mut Context,
    device: &DevicePlan,
    timeout: Duration,
) -> Result<Vec<(usize, Reading)>, Failure> {
    let mut answers = Vec::with_capacity(device.requests.len());
    for request in &device.requests {
        let (address, count) = (request.address, request.count);
        let read = async {
            match request.table {
                Table::Coil => context
                    .read_coils(address, count)
                    .await
                    .map(|r| r.map(Data::Bits)),
                Table::DiscreteInput => context
                    .read_discrete_inputs(address, count)
                    .await
                    .map(|r| r.map(Data::Bits)),
                Table::Holding => context
                    .read_holding_registers(address, count)
                    .await
                    .map(|r| r.map(Data::Words)),
                Table::Input => context
                    .read_input_registers(address, count)
                    .await
                    .map(|r| r.map(Data::Words)),
            }
        };
        let data = match tokio::time::timeout(timeout, read).await {
            Err(_) => return Err(Failure::Timeout("a read request")),
            Ok(Err(tokio_modbus::Error::Transport(error))) => {
                return Err(Failure::ConnectionLost(crate::error::io_reason(&error)));
            }
            Ok(Err(tokio_modbus::Error::Protocol(error))) => {
                return Err(Failure::Decode(error.to_string()));
            }
            Ok(Ok(Err(code))) => return Err(Failure::Exception(code, *request)),
            Ok(Ok(Ok(data))) => data,
        };
        let got = match &data {
            Data::Words(words) => words.len(),
            Data::Bits(bits) => bits.len(),
        };
        if got < usize::from(count) {
            return Err(Failure::Decode(format!(
                "asked for {count} {} at address {address}, got {got}",
                request.table.name()
            )));
        }
        answers.push(data);
    }
    let mut values = Vec::with_capacity(device.fields.len());
    for field in &device.fields {
        let offset = usize::from(field.location.offset);
        let reading = match answers.get(field.location.request) {
            Some(Data::Bits(bits)) => bits.get(offset).map(|b| field.decoder.from_bit(*b)),
            Some(Data::Words(words)) => words
                .get(offset..offset + usize::from(field.decoder.value_type.registers()))
                .map(|w| field.decoder.from_words(w)),
            None => None,
        };
        // The requests were planned to cover every field; a miss would be a planning bug.
        values.push((field.column, reading.unwrap_or(Reading::Null)));
    }
    Ok(values)
}

/// One batch from the rows of several polls.
pub(crate) fn build_batch(
    schema: &SchemaRef,
    ids: &[&str],
    rows: &[PolledRow],
) -> Result<RecordBatch, edgeflow_engine::arrow::error::ArrowError> {
    let mut timestamps =
        TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    let mut devices = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
    for row in rows {
        timestamps.append_value(row.at_ms);
        devices.append_value(ids.get(row.device).copied().unwrap_or_default());
    }
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(timestamps.finish()), Arc::new(devices.finish())];
    for (column, field) in schema.fields().iter().enumerate().skip(2) {
        let value = |row: &PolledRow| {
            row.values
                .iter()
                .find(|(c, _)| *c == column)
                .map_or(Reading::Null, |(_, v)| *v)
        };
        let array: ArrayRef = match field.data_type() {
            DataType::Boolean => {
                let mut builder = BooleanBuilder::with_capacity(rows.len());
                for row in rows {
                    match value(row) {
                        Reading::Bool(b) => builder.append_value(b),
                        _ => builder.append_null(),
                    }
                }
                Arc::new(builder.finish())
            }
            DataType::Int64 => {
                let mut builder = Int64Builder::with_capacity(rows.len());
                for row in rows {
                    match value(row) {
                        Reading::Int(v) => builder.append_value(v),
                        _ => builder.append_null(),
                    }
                }
                Arc::new(builder.finish())
            }
            _ => {
                let mut builder = Float64Builder::with_capacity(rows.len());
                for row in rows {
                    match value(row) {
                        Reading::Float(v) => builder.append_value(v),
                        _ => builder.append_null(),
                    }
                }
                Arc::new(builder.finish())
            }
        };
        columns.push(array);
    }
    RecordBatch::try_new(schema.clone(), columns)
}
