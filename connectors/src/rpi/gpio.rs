//! The `gpio` source: digital inputs of a Raspberry Pi as rows.
//!
//! Two modes, one per source (their rows differ):
//!
//! * `mode = "edges"` (default): one row per accepted edge,
//!   `timestamp, device_id, pin, level, edge` (`level` is the input's level after the edge,
//!   `edge` is `"rising"` or `"falling"`). Door contacts, buttons, alarm outputs.
//! * `mode = "pulses"`: pulses counted per `interval` (aligned to the wall clock), one row
//!   per pin and interval, `timestamp, device_id, pin, pulses, rate_hz, value`, where
//!   `value = pulses × scale` (for example litres per pulse → litres in the interval) and is
//!   null without `scale`. Flow meters, anemometers, S0 energy meters. See [`super::pulse`].
//!
//! Per pin: `pin` (BCM number, 0–27), `device_id`, `edge` (`rising`, `falling`, `both`;
//! default `both` for edges, `falling` for pulses, as a pulse output usually pulls a pulled-up
//! input low), `pull` (`up` (default), `down`, `off`) and `debounce` (default `"0ms"`).
//!
//! # Debounce
//!
//! The debounce period goes to the kernel through rppal (`set_async_interrupt`'s `debounce`,
//! the GPIO character device's debounce attribute): it reports an edge only once the line
//! has been stable that long. The same period is applied again here to the events' kernel
//! timestamps ([`DebounceFilter`]: an edge closer than `debounce` to the last accepted edge
//! of its pin is dropped), so a backend without kernel debounce behaves the same. Dropped
//! bounces are counted in the node's values as `debounced`.
//!
//! # Timestamps
//!
//! The kernel stamps each edge on the monotonic clock; debounce uses those stamps. The row's
//! `timestamp` is the wall clock when rppal's interrupt thread handed the edge over (within
//! a millisecond or so of the edge on an idle Pi).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgeflow_engine::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMillisecondBuilder,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
use edgeflow_engine::config::{duration, optional_duration};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::{
    BoxError, BoxFuture, OptionError, Source, SourceContext, WatermarkPolicy, parse_options,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::pulse::{IntervalCounts, PulseCounter};
use super::{RpiError, now_ms};
use crate::SourceConfig;
use crate::error::ConnectorError;
use crate::schema_options::{default_idle_timeout, idle_timeout, watermark_policy};

pub(super) fn parse(table: toml::Table) -> Result<Box<dyn SourceConfig>, OptionError> {
    parse_options::<GpioConfig>(table).map(|c| Box::new(c) as Box<dyn SourceConfig>)
}

/// Highest BCM GPIO number on the 40-pin header.
pub const MAX_PIN: u8 = 27;

/// Edges waiting between rppal's interrupt thread and the source task; beyond this, edges
/// are dropped and counted as `edge_overflow`.
pub const EDGE_QUEUE: usize = 4_096;

/// Most rows in one batch of edges.
const MAX_BATCH_ROWS: usize = 1_024;

/// Options of the `gpio` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// `"edges"` (a row per edge) or `"pulses"` (counts per interval). Default `"edges"`.
    #[serde(default)]
    pub mode: GpioMode,
    /// The inputs.
    pub pins: Vec<PinConfig>,
    /// Length of a pulse-counting interval (`mode = "pulses"` only). Default `"10s"`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub interval: Option<Duration>,
    /// How far behind the newest event time the watermark trails. Default `"0s"`.
    #[serde(default, deserialize_with = "duration")]
    pub max_out_of_orderness: Duration,
    /// After this long without rows, the watermark follows the wall clock. Default `"30s"`;
    /// `"off"` never advances it. Inputs that rarely change want it on.
    #[serde(default = "default_idle_timeout", deserialize_with = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
}

/// What the source emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpioMode {
    /// One row per edge.
    #[default]
    Edges,
    /// Pulses counted per interval.
    Pulses,
}

/// One input pin.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinConfig {
    /// BCM GPIO number (0–27; GPIO 17 is header pin 11).
    pub pin: u8,
    /// The `device_id` of this pin's rows.
    pub device_id: String,
    /// Which edges count: `"rising"`, `"falling"` or `"both"`. Default `"both"` for edges,
    /// `"falling"` for pulses.
    #[serde(default)]
    pub edge: Option<EdgeTrigger>,
    /// The internal bias resistor: `"up"`, `"down"` or `"off"`. Default `"up"`.
    #[serde(default)]
    pub pull: Pull,
    /// Edges closer than this to the previous accepted edge are bounces. Default `"0ms"`.
    #[serde(default, deserialize_with = "duration")]
    pub debounce: Duration,
    /// Units per pulse (`mode = "pulses"` only): `value = pulses × scale`. Default: no
    /// `value` (null).
    #[serde(default)]
    pub scale: Option<f64>,
}

/// Which edges of a pin are watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeTrigger {
    /// Low to high.
    Rising,
    /// High to low.
    Falling,
    /// Both.
    Both,
}

impl EdgeTrigger {
    /// True when `edge` is one of the watched edges.
    pub fn matches(self, edge: Edge) -> bool {
        matches!(
            (self, edge),
            (Self::Both, _) | (Self::Rising, Edge::Rising) | (Self::Falling, Edge::Falling)
        )
    }
}

/// The internal bias resistor of an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    /// Pulled up to 3.3 V (a switch or open collector to ground).
    #[default]
    Up,
    /// Pulled down to ground.
    Down,
    /// Floating (an external resistor or a push-pull output drives it).
    Off,
}

/// An edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Low to high.
    Rising,
    /// High to low.
    Falling,
}

impl Edge {
    /// `"rising"` or `"falling"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rising => "rising",
            Self::Falling => "falling",
        }
    }
}

/// A checked pin.
#[derive(Clone, Debug, PartialEq)]
pub struct PinSettings {
    /// BCM number.
    pub pin: u8,
    /// Rows' `device_id`.
    pub device_id: String,
    /// Watched edges.
    pub trigger: EdgeTrigger,
    /// Bias.
    pub pull: Pull,
    /// Debounce period (zero: none).
    pub debounce: Duration,
    /// Units per pulse.
    pub scale: Option<f64>,
}

/// Checked options.
#[derive(Clone, Debug, PartialEq)]
pub struct GpioSettings {
    /// Edges or pulses.
    pub mode: GpioMode,
    /// The pins, in the order written.
    pub pins: Vec<PinSettings>,
    /// Pulse interval.
    pub interval: Duration,
}

/// Default pulse interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Longest debounce period accepted (longer is surely a unit mistake).
const MAX_DEBOUNCE: Duration = Duration::from_secs(10);

impl GpioConfig {
    /// Checks every option.
    ///
    /// # Errors
    /// Every problem, each with its option path (`pins.1.pin`).
    pub fn settings(&self) -> Result<GpioSettings, Vec<OptionError>> {
        let mut errors = Vec::new();
        let pulses = self.mode == GpioMode::Pulses;
        if self.pins.is_empty() {
            errors.push(OptionError::at(
                "pins",
                "no pins to watch; list some, like pins = [{ pin = 17, device_id = \"door\" }]",
            ));
        }
        let interval = self.interval.unwrap_or(DEFAULT_INTERVAL);
        if self.interval.is_some() && !pulses {
            errors.push(
                OptionError::at("interval", "interval applies to mode = \"pulses\" only")
                    .with_hint("set mode = \"pulses\" to count pulses per interval"),
            );
        } else if interval < Duration::from_millis(100) {
            errors.push(OptionError::at(
                "interval",
                format!("interval {interval:?} is too short; use 100ms or more"),
            ));
        }
        let mut pins = Vec::with_capacity(self.pins.len());
        for (index, pin) in self.pins.iter().enumerate() {
            let at = |key: &str| format!("pins.{index}.{key}");
            if pin.pin > MAX_PIN {
                errors.push(OptionError::at(
                    &at("pin"),
                    format!(
                        "GPIO {} does not exist on the header; BCM numbers go from 0 to {MAX_PIN} (GPIO 17 is header pin 11)",
                        pin.pin
                    ),
                ));
            }
            if let Some(first) = self.pins[..index].iter().position(|p| p.pin == pin.pin) {
                errors.push(OptionError::at(
                    &at("pin"),
                    format!("GPIO {} is already listed as pins.{first}", pin.pin),
                ));
            }
            if pin.device_id.trim().is_empty() {
                errors.push(OptionError::at(&at("device_id"), "device_id is empty"));
            }
            if pin.debounce > MAX_DEBOUNCE {
                errors.push(OptionError::at(
                    &at("debounce"),
                    format!(
                        "debounce {:?} is longer than {MAX_DEBOUNCE:?}; switch bounce lasts milliseconds",
                        pin.debounce
                    ),
                ));
            }
            match pin.scale {
                Some(_) if !pulses => errors.push(OptionError::at(
                    &at("scale"),
                    "scale applies to mode = \"pulses\" only",
                )),
                Some(scale) if !scale.is_finite() || scale <= 0.0 => {
                    errors.push(OptionError::at(
                        &at("scale"),
                        format!("scale {scale} must be a positive number of units per pulse"),
                    ));
                }
                _ => {}
            }
            let default_trigger = if pulses {
                EdgeTrigger::Falling
            } else {
                EdgeTrigger::Both
            };
            pins.push(PinSettings {
                pin: pin.pin,
                device_id: pin.device_id.clone(),
                trigger: pin.edge.unwrap_or(default_trigger),
                pull: pin.pull,
                debounce: pin.debounce,
                scale: pin.scale,
            });
        }
        if errors.is_empty() {
            Ok(GpioSettings {
                mode: self.mode,
                pins,
                interval,
            })
        } else {
            Err(errors)
        }
    }
}

/// The rows of `mode`.
pub fn schema(mode: GpioMode) -> SchemaRef {
    let common = [
        Field::new("timestamp", timestamp_type(), false),
        Field::new("device_id", DataType::Utf8, false),
        Field::new("pin", DataType::Int64, false),
    ];
    let specific = match mode {
        GpioMode::Edges => vec![
            Field::new("level", DataType::Boolean, false),
            Field::new("edge", DataType::Utf8, false),
        ],
        GpioMode::Pulses => vec![
            Field::new("pulses", DataType::Int64, false),
            Field::new("rate_hz", DataType::Float64, false),
            Field::new("value", DataType::Float64, true),
        ],
    };
    schema_with_event_time(common.into_iter().chain(specific), Some("timestamp"))
}

impl SourceConfig for GpioConfig {
    fn schema(&self) -> Result<SchemaRef, Vec<OptionError>> {
        self.settings().map(|settings| schema(settings.mode))
    }

    fn watermark(&self) -> WatermarkPolicy {
        watermark_policy(self.max_out_of_orderness, self.idle_timeout)
    }

    fn build(&self) -> Result<Box<dyn Source>, BoxError> {
        let settings = self.settings().map_err(ConnectorError::Options)?;
        #[cfg(feature = "rpi")]
        {
            let backend = super::hw::RppalGpio::open()?;
            Ok(Box::new(GpioSource::start(settings, Box::new(backend))?))
        }
        #[cfg(not(feature = "rpi"))]
        {
            let _ = settings;
            Err(Box::new(RpiError::NotBuilt { kind: "gpio" }))
        }
    }
}

/// One edge as the backend saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeEvent {
    /// BCM number.
    pub pin: u8,
    /// Which edge.
    pub edge: Edge,
    /// The kernel's timestamp (monotonic clock), for debouncing.
    pub at: Duration,
    /// Wall clock when the edge was handed over, ms since the epoch.
    pub wall_ms: i64,
}

/// Where a backend delivers edges: never blocks (an interrupt thread must not wait on the
/// pipeline); edges that do not fit are counted.
#[derive(Clone, Debug)]
pub struct EdgeSender {
    sender: mpsc::Sender<EdgeEvent>,
    overflow: Arc<AtomicU64>,
}

impl EdgeSender {
    /// Delivers one edge, or counts it as overflow when the queue is full.
    pub fn send(&self, event: EdgeEvent) {
        if self.sender.try_send(event).is_err() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Something that watches GPIO inputs: rppal on a Pi, a fake in tests.
///
/// # For implementers
/// `watch` configures the pin as an input with the bias and starts delivering its edges
/// (of the trigger, debounced by `debounce` if the hardware can) to `events`, from any
/// thread. Keep whatever must stay alive for that (the rppal `InputPin`) inside the
/// backend: the source drops the backend when it stops, and that must stop the deliveries.
pub trait GpioBackend: Send {
    /// Starts watching one pin.
    ///
    /// # Errors
    /// The pin cannot be used (taken, no permission), naming the pin and the device.
    fn watch(&mut self, pin: &PinSettings, events: EdgeSender) -> Result<(), RpiError>;
}

/// Drops bounces: edges of an unwatched kind, and edges closer than the debounce period to
/// the last accepted edge (by the kernel's timestamps).
#[derive(Clone, Debug)]
pub struct DebounceFilter {
    trigger: EdgeTrigger,
    debounce: Duration,
    last: Option<Duration>,
}

impl DebounceFilter {
    /// A filter for one pin.
    pub fn new(trigger: EdgeTrigger, debounce: Duration) -> Self {
        Self {
            trigger,
            debounce,
            last: None,
        }
    }

    /// True when the edge counts.
    pub fn accept(&mut self, edge: Edge, at: Duration) -> bool {
        if !self.trigger.matches(edge) {
            return false;
        }
        // A timestamp earlier than the last one (it should not happen) is accepted: better a
        // bounce too many than a real edge lost.
        if let Some(last) = self.last
            && at >= last
            && at - last < self.debounce
        {
            return false;
        }
        self.last = Some(at);
        true
    }
}

/// The running `gpio` source: the backend (kept alive while it runs) and the edge queue.
pub struct GpioSource {
    settings: GpioSettings,
    _backend: Box<dyn GpioBackend>,
    events: mpsc::Receiver<EdgeEvent>,
    overflow: Arc<AtomicU64>,
}

impl std::fmt::Debug for GpioSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpioSource")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl GpioSource {
    /// Watches every pin of `settings` with `backend`; edges queue up until the source runs.
    ///
    /// # Errors
    /// A pin could not be watched.
    pub fn start(
        settings: GpioSettings,
        mut backend: Box<dyn GpioBackend>,
    ) -> Result<Self, RpiError> {
        let (sender, events) = mpsc::channel(EDGE_QUEUE);
        let overflow = Arc::new(AtomicU64::new(0));
        for pin in &settings.pins {
            backend.watch(
                pin,
                EdgeSender {
                    sender: sender.clone(),
                    overflow: overflow.clone(),
                },
            )?;
        }
        Ok(Self {
            settings,
            _backend: backend,
            events,
            overflow,
        })
    }
}

impl Source for GpioSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            let mut source = *self;
            match source.settings.mode {
                GpioMode::Edges => source.run_edges(&ctx).await,
                GpioMode::Pulses => source.run_pulses(&ctx).await,
            }
            Ok(())
        })
    }
}

impl GpioSource {
    fn filters(&self) -> Vec<DebounceFilter> {
        self.settings
            .pins
            .iter()
            .map(|p| DebounceFilter::new(p.trigger, p.debounce))
            .collect()
    }

    /// The index of `event`'s pin after debouncing, or `None` for a dropped edge.
    fn accept(
        &self,
        filters: &mut [DebounceFilter],
        event: &EdgeEvent,
        ctx: &SourceContext,
    ) -> Option<usize> {
        let index = self.settings.pins.iter().position(|p| p.pin == event.pin)?;
        if filters[index].accept(event.edge, event.at) {
            Some(index)
        } else {
            ctx.metrics().add_value("debounced", 1);
            None
        }
    }

    fn note_overflow(&self, ctx: &SourceContext) {
        let overflow = self.overflow.swap(0, Ordering::Relaxed);
        ctx.metrics().count_dropped(
            "edge_overflow",
            usize::try_from(overflow).unwrap_or(usize::MAX),
        );
    }

    async fn run_edges(&mut self, ctx: &SourceContext) {
        let mut shutdown = ctx.shutdown();
        let mut filters = self.filters();
        let schema = ctx.schema().clone();
        loop {
            let first = tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
                () = shutdown.requested() => break,
            };
            // Take every edge already waiting, so a burst leaves in one batch.
            let mut rows = EdgeRows::default();
            let mut next = Some(first);
            while let Some(event) = next {
                if let Some(index) = self.accept(&mut filters, &event, ctx) {
                    rows.push(&self.settings.pins[index], &event);
                }
                next = if rows.len() < MAX_BATCH_ROWS {
                    self.events.try_recv().ok()
                } else {
                    None
                };
            }
            self.note_overflow(ctx);
            if rows.len() == 0 {
                continue;
            }
            let batch = match rows.finish(&schema) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(node = ctx.name(), %error, "Could not build a batch of GPIO edges. This is a bug: please report it");
                    continue;
                }
            };
            if ctx.send(batch).await.is_err() {
                break;
            }
        }
    }

    async fn run_pulses(&mut self, ctx: &SourceContext) {
        let mut shutdown = ctx.shutdown();
        let mut filters = self.filters();
        let schema = ctx.schema().clone();
        let interval_ms = i64::try_from(self.settings.interval.as_millis()).unwrap_or(i64::MAX);
        let mut counter = PulseCounter::new(self.settings.pins.len(), interval_ms, now_ms());
        loop {
            let wait = u64::try_from(counter.end_ms() - now_ms()).unwrap_or(0);
            let closed = tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => match self.accept(&mut filters, &event, ctx) {
                        Some(index) => counter.record(index, event.wall_ms),
                        None => Vec::new(),
                    },
                    None => break,
                },
                () = tokio::time::sleep(Duration::from_millis(wait)) => counter.close_until(now_ms()),
                () = shutdown.requested() => break,
            };
            self.note_overflow(ctx);
            if closed.is_empty() {
                continue;
            }
            match pulse_rows(&schema, &self.settings.pins, &closed) {
                Ok(batch) => {
                    if ctx.send(batch).await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::error!(node = ctx.name(), %error, "Could not build a batch of pulse counts. This is a bug: please report it");
                }
            }
        }
    }
}

/// Builders of edge rows.
#[derive(Default)]
struct EdgeRows {
    timestamp: TimestampMillisecondBuilder,
    device_id: StringBuilder,
    pin: Int64Builder,
    level: BooleanBuilder,
    edge: StringBuilder,
}

impl EdgeRows {
    fn len(&self) -> usize {
        self.pin.len()
    }

    fn push(&mut self, pin: &PinSettings, event: &EdgeEvent) {
        self.timestamp.append_value(event.wall_ms);
        self.device_id.append_value(&pin.device_id);
        self.pin.append_value(i64::from(pin.pin));
        self.level.append_value(event.edge == Edge::Rising);
        self.edge.append_value(event.edge.name());
    }

    fn finish(
        mut self,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, edgeflow_engine::arrow::error::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.timestamp.finish().with_timezone(UTC)),
            Arc::new(self.device_id.finish()),
            Arc::new(self.pin.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.edge.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// One row per pin and closed interval.
fn pulse_rows(
    schema: &SchemaRef,
    pins: &[PinSettings],
    closed: &[IntervalCounts],
) -> Result<RecordBatch, edgeflow_engine::arrow::error::ArrowError> {
    let rows = pins.len() * closed.len();
    let mut timestamp = TimestampMillisecondBuilder::with_capacity(rows);
    let mut device_id = StringBuilder::new();
    let mut pin_column = Int64Builder::with_capacity(rows);
    let mut pulses = Int64Builder::with_capacity(rows);
    let mut rate = Float64Builder::with_capacity(rows);
    let mut value = Float64Builder::with_capacity(rows);
    for interval in closed {
        for (index, pin) in pins.iter().enumerate() {
            let count = interval.pulses[index];
            timestamp.append_value(interval.start_ms);
            device_id.append_value(&pin.device_id);
            pin_column.append_value(i64::from(pin.pin));
            pulses.append_value(i64::try_from(count).unwrap_or(i64::MAX));
            rate.append_value(interval.rate_hz(index));
            value.append_option(pin.scale.map(|scale| count as f64 * scale));
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(timestamp.finish().with_timezone(UTC)),
        Arc::new(device_id.finish()),
        Arc::new(pin_column.finish()),
        Arc::new(pulses.finish()),
        Arc::new(rate.finish()),
        Arc::new(value.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debounce_drops_bounces_by_kernel_timestamps() {
        let ms = Duration::from_millis;
        let mut filter = DebounceFilter::new(EdgeTrigger::Both, ms(20));
        // A press bouncing for 6 ms, a release 300 ms later bouncing too.
        let edges = [
            (Edge::Falling, 1_000),
            (Edge::Rising, 1_002),
            (Edge::Falling, 1_006),
            (Edge::Rising, 1_300),
            (Edge::Falling, 1_301),
            (Edge::Rising, 1_319),
            (Edge::Falling, 1_320),
        ];
        let accepted: Vec<(Edge, u64)> = edges
            .iter()
            .filter(|(edge, at)| filter.accept(*edge, ms(*at)))
            .copied()
            .collect();
        assert_eq!(
            accepted,
            [
                (Edge::Falling, 1_000),
                (Edge::Rising, 1_300),
                (Edge::Falling, 1_320)
            ],
            "an edge exactly `debounce` after the last accepted one counts"
        );

        let mut rising = DebounceFilter::new(EdgeTrigger::Rising, Duration::ZERO);
        assert!(!rising.accept(Edge::Falling, ms(1)));
        assert!(rising.accept(Edge::Rising, ms(2)));
        assert!(
            rising.accept(Edge::Rising, ms(2)),
            "no debounce: every edge"
        );
        let mut falling = DebounceFilter::new(EdgeTrigger::Falling, ms(5));
        assert!(falling.accept(Edge::Falling, ms(10)));
        assert!(
            falling.accept(Edge::Falling, ms(3)),
            "a clock going back is not a bounce"
        );
    }
}
