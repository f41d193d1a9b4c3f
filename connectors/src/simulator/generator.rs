//! The simulator's row generator: deterministic from a seed, independent of batching.
//!
//! Events are numbered `0, 1, 2, …`; event `e` belongs to tick `e / devices` and device
//! `e % devices`, so every tick holds one event per device. Tick `k` happens at the nominal
//! event time `start + k / rate`. One random stream, seeded once, is consumed event by event,
//! which makes the rows depend only on the options (and the start time), never on how the
//! events are cut into batches or on the wall clock.
//!
//! Values, by field type:
//! * the device field (`dev-0001`, …), the event-time field (nominal time minus a random
//!   jitter of up to `jitter`, never before `start`), other timestamp fields (the nominal time);
//! * `float64`: a per-device base level plus a sine wave (per-device phase) plus Gaussian
//!   noise; sometimes a spike (`+200`) or a missing value (null);
//! * `int64`: a per-device counter; `bool`: random; other `string` fields: a per-device label
//!   from a set of four (`site-1` … `site-4` for a field named `site`).

use std::f64::consts::TAU;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::schema::{FieldType, UTC};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

/// How far a spike lifts a value.
pub(crate) const SPIKE_OFFSET: f64 = 200.0;

/// Everything the generator needs, checked.
#[derive(Clone, Debug)]
pub(crate) struct GeneratorSettings {
    pub fields: Vec<(String, FieldType)>,
    pub schema: SchemaRef,
    pub event_time: usize,
    pub device_field: Option<usize>,
    pub devices: u32,
    pub rate_per_second: f64,
    /// Total number of events, if bounded.
    pub limit: Option<u64>,
    pub seed: u64,
    pub start_ms: i64,
    pub period_ms: f64,
    pub spike_probability: f64,
    pub missing_probability: f64,
    pub jitter_ms: u64,
}

#[derive(Clone, Copy, Debug)]
enum Column {
    DeviceId,
    EventTime,
    Nominal,
    Float(usize),
    Counter(usize),
    Bool,
    Label(usize),
}

#[derive(Clone, Debug)]
struct Signal {
    base: f64,
    amplitude: f64,
    phase: f64,
    noise: f64,
}

#[derive(Clone, Debug)]
struct Device {
    id: String,
    signals: Vec<Signal>,
    counters: Vec<i64>,
    labels: Vec<String>,
}

enum Builder {
    Str(StringBuilder),
    F64(Float64Builder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMillisecondBuilder),
}

impl Builder {
    fn finish(self) -> ArrayRef {
        match self {
            Self::Str(mut b) => Arc::new(b.finish()),
            Self::F64(mut b) => Arc::new(b.finish()),
            Self::I64(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::Ts(mut b) => Arc::new(b.finish().with_timezone(UTC)),
        }
    }
}

/// Produces the simulator's rows, batch by batch.
pub(crate) struct Generator {
    settings: GeneratorSettings,
    columns: Vec<Column>,
    devices: Vec<Device>,
    rng: Xoshiro256PlusPlus,
    next_event: u64,
}

/// Level, swing and noise of a float field, guessed from its name so the numbers look
/// plausible (`temperature` around 20, `humidity` around 50).
fn signal_profile(name: &str) -> ((f64, f64), (f64, f64), f64) {
    let name = name.to_ascii_lowercase();
    if name.contains("temp") {
        ((18.0, 26.0), (1.0, 4.0), 0.3)
    } else if name.contains("hum") {
        ((35.0, 65.0), (4.0, 10.0), 1.0)
    } else if name.contains("press") {
        ((995.0, 1025.0), (1.0, 5.0), 0.5)
    } else if name.contains("volt") || name.contains("batt") {
        ((3.3, 4.1), (0.02, 0.1), 0.01)
    } else {
        ((10.0, 90.0), (2.0, 10.0), 0.5)
    }
}

impl Generator {
    /// A generator at event 0.
    pub(crate) fn new(settings: GeneratorSettings) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(settings.seed);
        let mut columns = Vec::with_capacity(settings.fields.len());
        let (mut floats, mut counters, mut labels) = (Vec::new(), 0usize, Vec::new());
        for (index, (name, field_type)) in settings.fields.iter().enumerate() {
            let column = if Some(index) == settings.device_field {
                Column::DeviceId
            } else if index == settings.event_time {
                Column::EventTime
            } else {
                match field_type {
                    FieldType::TimestampMs => Column::Nominal,
                    FieldType::Float64 => {
                        floats.push(name.clone());
                        Column::Float(floats.len() - 1)
                    }
                    FieldType::Int64 => {
                        counters += 1;
                        Column::Counter(counters - 1)
                    }
                    FieldType::Bool => Column::Bool,
                    // `String` and any type added to the engine later: a label.
                    _ => {
                        labels.push(name.clone());
                        Column::Label(labels.len() - 1)
                    }
                }
            };
            columns.push(column);
        }
        let devices = (0..settings.devices)
            .map(|d| Device {
                id: format!("dev-{:04}", d + 1),
                signals: floats
                    .iter()
                    .map(|name| {
                        let ((lo, hi), (amp_lo, amp_hi), noise) = signal_profile(name);
                        Signal {
                            base: rng.random_range(lo..hi),
                            amplitude: rng.random_range(amp_lo..amp_hi),
                            phase: rng.random_range(0.0..TAU),
                            noise,
                        }
                    })
                    .collect(),
                counters: vec![0; counters],
                labels: labels
                    .iter()
                    .map(|name| format!("{name}-{}", rng.random_range(1..=4u8)))
                    .collect(),
            })
            .collect();
        Self {
            settings,
            columns,
            devices,
            rng,
            next_event: 0,
        }
    }

    /// The number of the next event.
    pub(crate) fn next_event(&self) -> u64 {
        self.next_event
    }

    /// True once the bound (`count` or `duration`) is reached.
    pub(crate) fn is_done(&self) -> bool {
        self.settings
            .limit
            .is_some_and(|limit| self.next_event >= limit)
    }

    /// Events per tick.
    pub(crate) fn devices(&self) -> u64 {
        u64::from(self.settings.devices)
    }

    /// Event time of tick `tick` relative to the start, in ms (fractional).
    pub(crate) fn tick_offset_ms(&self, tick: u64) -> f64 {
        tick as f64 * 1_000.0 / self.settings.rate_per_second
    }

    /// The number of events whose tick lies at or before `offset_ms` after the start.
    pub(crate) fn events_due(&self, offset_ms: f64) -> u64 {
        let ticks = (offset_ms * self.settings.rate_per_second / 1_000.0).floor();
        let ticks = if ticks.is_finite() && ticks >= 0.0 {
            (ticks as u64).saturating_add(1)
        } else {
            0
        };
        ticks.saturating_mul(self.devices())
    }

    /// Generates events `next_event .. until` (at most `max_rows`, never past the bound);
    /// `None` when there is nothing to generate.
    pub(crate) fn next_batch(&mut self, max_rows: usize, until: u64) -> Option<RecordBatch> {
        let end = self
            .settings
            .limit
            .map_or(until, |limit| limit.min(until))
            .min(self.next_event.saturating_add(max_rows as u64));
        if end <= self.next_event {
            return None;
        }
        let rows = (end - self.next_event) as usize;
        let mut builders: Vec<Builder> = self
            .columns
            .iter()
            .map(|column| match column {
                Column::DeviceId | Column::Label(_) => {
                    Builder::Str(StringBuilder::with_capacity(rows, rows * 8))
                }
                Column::EventTime | Column::Nominal => {
                    Builder::Ts(TimestampMillisecondBuilder::with_capacity(rows))
                }
                Column::Float(_) => Builder::F64(Float64Builder::with_capacity(rows)),
                Column::Counter(_) => Builder::I64(Int64Builder::with_capacity(rows)),
                Column::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            })
            .collect();
        let devices = self.devices();
        for event in self.next_event..end {
            let tick = event / devices;
            let device = (event % devices) as usize;
            self.push_event(tick, device, &mut builders);
        }
        self.next_event = end;
        let columns: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
        // The builders match the schema by construction; a mismatch would be a bug, and a
        // connector must not panic, so it ends the batch stream instead.
        RecordBatch::try_new(self.settings.schema.clone(), columns).ok()
    }

    fn push_event(&mut self, tick: u64, device: usize, builders: &mut [Builder]) {
        let offset_ms = self.tick_offset_ms(tick);
        let nominal = self
            .settings
            .start_ms
            .saturating_add(offset_ms.floor() as i64);
        let jitter = if self.settings.jitter_ms > 0 {
            self.rng.random_range(0..=self.settings.jitter_ms) as i64
        } else {
            0
        };
        // Jitter never moves a reading before `start`: a run's data begins where it says.
        let event_time = nominal
            .saturating_sub(jitter)
            .max(self.settings.start_ms)
            .max(0);
        let period = self.settings.period_ms;
        for (column, builder) in self.columns.iter().zip(builders.iter_mut()) {
            match (column, builder) {
                (Column::DeviceId, Builder::Str(b)) => b.append_value(&self.devices[device].id),
                (Column::Label(i), Builder::Str(b)) => {
                    b.append_value(&self.devices[device].labels[*i]);
                }
                (Column::EventTime, Builder::Ts(b)) => b.append_value(event_time),
                (Column::Nominal, Builder::Ts(b)) => b.append_value(nominal),
                (Column::Float(i), Builder::F64(b)) => {
                    let missing = self.rng.random_bool(self.settings.missing_probability);
                    let spike = self.rng.random_bool(self.settings.spike_probability);
                    let noise: f64 = self.rng.sample(StandardNormal);
                    if missing {
                        b.append_null();
                        continue;
                    }
                    let signal = &self.devices[device].signals[*i];
                    let wave = (TAU * offset_ms / period + signal.phase).sin();
                    let mut value = signal.base + signal.amplitude * wave + signal.noise * noise;
                    if spike {
                        value += SPIKE_OFFSET;
                    }
                    b.append_value(value);
                }
                (Column::Counter(i), Builder::I64(b)) => {
                    let counter = &mut self.devices[device].counters[*i];
                    b.append_value(*counter);
                    *counter += 1;
                }
                (Column::Bool, Builder::Bool(b)) => b.append_value(self.rng.random_bool(0.5)),
                // Builders are made from the same column list, so this arm is unreachable.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_options::{SchemaSpec, resolve_schema};
    use edgeflow_engine::arrow::array::{Array, AsArray, Float64Array};
    use edgeflow_engine::arrow::datatypes::{Float64Type, TimestampMillisecondType};

    fn settings(seed: u64) -> GeneratorSettings {
        let spec = SchemaSpec::new([
            ("device_id", "string"),
            ("ts", "timestamp_ms"),
            ("temperature", "float64"),
            ("humidity", "float64"),
            ("seq", "int64"),
            ("open", "bool"),
            ("site", "string"),
            ("received", "timestamp_ms"),
        ]);
        let resolved = resolve_schema(&spec, Some("ts")).unwrap();
        GeneratorSettings {
            fields: resolved.fields,
            schema: resolved.schema,
            event_time: 1,
            device_field: Some(0),
            devices: 3,
            rate_per_second: 10.0,
            limit: Some(60),
            seed,
            start_ms: 1_704_067_200_000,
            period_ms: 600_000.0,
            spike_probability: 0.001,
            missing_probability: 0.01,
            jitter_ms: 500,
        }
    }

    #[test]
    fn batching_does_not_change_the_rows() {
        let mut whole = Generator::new(settings(7));
        let all = whole.next_batch(1_000, u64::MAX).unwrap();
        assert!(whole.is_done());
        assert!(whole.next_batch(1_000, u64::MAX).is_none());

        let mut pieces = Generator::new(settings(7));
        let mut parts = Vec::new();
        while let Some(batch) = pieces.next_batch(7, u64::MAX) {
            parts.push(batch);
        }
        let joined = edgeflow_engine::arrow::compute::concat_batches(all.schema_ref(), &parts);
        assert_eq!(joined.unwrap(), all);
    }

    #[test]
    fn rows_follow_devices_ticks_and_counters() {
        let mut generator = Generator::new(settings(1));
        let batch = generator.next_batch(6, u64::MAX).unwrap();
        let ids = batch.column(0).as_string::<i32>();
        let ids: Vec<&str> = ids.iter().map(Option::unwrap).collect();
        assert_eq!(
            ids,
            [
                "dev-0001", "dev-0002", "dev-0003", "dev-0001", "dev-0002", "dev-0003"
            ]
        );
        let seq = batch
            .column(4)
            .as_primitive::<edgeflow_engine::arrow::datatypes::Int64Type>();
        assert_eq!(seq.values().as_ref(), [0, 0, 0, 1, 1, 1]);
        let received = batch.column(7).as_primitive::<TimestampMillisecondType>();
        let start = 1_704_067_200_000;
        assert_eq!(
            received.values().as_ref(),
            [start, start, start, start + 100, start + 100, start + 100]
        );
        let site = batch.column(6).as_string::<i32>().value(0);
        assert!(site.starts_with("site-"), "{site}");
    }

    #[test]
    fn temperatures_look_like_temperatures() {
        let mut s = settings(3);
        s.limit = Some(3_000);
        s.spike_probability = 0.0;
        s.missing_probability = 0.0;
        let mut generator = Generator::new(s);
        let batch = generator.next_batch(10_000, u64::MAX).unwrap();
        let temperature: &Float64Array = batch.column(2).as_primitive::<Float64Type>();
        assert_eq!(temperature.null_count(), 0);
        for value in temperature.values() {
            assert!((10.0..35.0).contains(value), "{value}");
        }
    }

    #[test]
    fn events_due_counts_whole_ticks() {
        let generator = Generator::new(settings(1));
        assert_eq!(generator.events_due(0.0), 3);
        assert_eq!(generator.events_due(99.0), 3);
        assert_eq!(generator.events_due(100.0), 6);
        assert_eq!(generator.events_due(-5.0), 0);
        assert_eq!(generator.tick_offset_ms(5), 500.0);
    }
}
