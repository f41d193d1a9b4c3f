//! Tests of the `gpio` and `i2c` sources without a Pi: sensors over `embedded-hal-mock`
//! buses, GPIO over a fake backend, and the options' errors with their paths.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeflow_engine::arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use edgeflow_engine::arrow::datatypes::{Float64Type, Int64Type};
use edgeflow_engine::{NodeMetrics, NodeRole, OptionError, Source, SourceContext, parse_options};
use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

use super::RpiError;
use super::gpio::{
    EDGE_QUEUE, Edge, EdgeEvent, EdgeSender, GpioBackend, GpioConfig, GpioSource, PinSettings,
};
use super::i2c::{I2cConfig, I2cSource, PolledSensor, Poller, sensor_for};
use super::sensors::SensorModel;
use crate::SourceConfig;

// ---------------------------------------------------------------------------------------
// BME280

/// Calibration of the BME280/BMP280 datasheets' worked example (temperature, pressure) and
/// of a real chip (humidity).
const T: [i64; 3] = [27504, 26435, -1000];
const P: [i64; 9] = [36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000];
const H1: i64 = 75;
const H2: i64 = 362;
const H3: i64 = 0;
const H4: i64 = 324;
const H5: i64 = 50;
const H6: i64 = 30;
/// Raw readings: the datasheet's adc_T and adc_P, and a humidity in the middle range.
const ADC_T: i64 = 519_888;
const ADC_P: i64 = 415_148;
const ADC_H: i64 = 30_000;

/// The 26 bytes at 0x88: T1..T3, P1..P9 little-endian, a reserved byte, H1.
fn pt_calibration() -> Vec<u8> {
    let mut bytes: Vec<u8> = T
        .iter()
        .chain(P.iter())
        .flat_map(|v| (*v as u16).to_le_bytes())
        .collect();
    bytes.push(0);
    bytes.push(H1 as u8);
    bytes
}

/// The 7 bytes at 0xE1: H2 (LE), H3, then H4 and H5 as 12-bit values sharing 0xE5, H6.
fn h_calibration() -> Vec<u8> {
    let h2 = (H2 as u16).to_le_bytes();
    vec![
        h2[0],
        h2[1],
        H3 as u8,
        (H4 >> 4) as u8,
        ((H4 & 0x0F) | ((H5 & 0x0F) << 4)) as u8,
        (H5 >> 4) as u8,
        H6 as u8,
    ]
}

/// The 8 data bytes at 0xF7: pressure and temperature as 20 bits, humidity as 16.
fn data_bytes() -> Vec<u8> {
    let p = ADC_P << 4;
    let t = ADC_T << 4;
    vec![
        (p >> 16) as u8,
        (p >> 8) as u8,
        p as u8,
        (t >> 16) as u8,
        (t >> 8) as u8,
        t as u8,
        (ADC_H >> 8) as u8,
        ADC_H as u8,
    ]
}

/// The datasheet's double-precision compensation (BME280 datasheet, section 8.1):
/// (°C, Pa, %RH).
fn datasheet_values() -> (f64, f64, f64) {
    let [t1, t2, t3] = T.map(|v| v as f64);
    let [p1, p2, p3, p4, p5, p6, p7, p8, p9] = P.map(|v| v as f64);
    let adc_t = ADC_T as f64;
    let var1 = (adc_t / 16384.0 - t1 / 1024.0) * t2;
    let var2 = (adc_t / 131072.0 - t1 / 8192.0).powi(2) * t3;
    let t_fine = (var1 + var2).trunc();
    let temperature = (var1 + var2) / 5120.0;

    let mut var1 = t_fine / 2.0 - 64000.0;
    let mut var2 = var1 * var1 * p6 / 32768.0;
    var2 += var1 * p5 * 2.0;
    var2 = var2 / 4.0 + p4 * 65536.0;
    var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0;
    var1 = (1.0 + var1 / 32768.0) * p1;
    let mut p = 1048576.0 - ADC_P as f64;
    p = (p - var2 / 4096.0) * 6250.0 / var1;
    let var1 = p9 * p * p / 2147483648.0;
    let var2 = p * p8 / 32768.0;
    let pressure = p + (var1 + var2 + p7) / 16.0;

    let [h1, h2, h3, h4, h5, h6] = [H1, H2, H3, H4, H5, H6].map(|v| v as f64);
    let mut h = t_fine - 76800.0;
    h = (ADC_H as f64 - (h4 * 64.0 + h5 / 16384.0 * h))
        * (h2 / 65536.0 * (1.0 + h6 / 67108864.0 * h * (1.0 + h3 / 67108864.0 * h)));
    h *= 1.0 - h1 * h / 524288.0;
    (temperature, pressure, h.clamp(0.0, 100.0))
}

/// What the driver sends to bring a BME280 up: chip id, soft reset, calibration, then
/// humidity ×1, pressure ×16 + temperature ×2 (0x54) and IIR filter 16 (0x10).
fn bme280_init(address: u8) -> Vec<Transaction> {
    vec![
        Transaction::write_read(address, vec![0xD0], vec![0x60]),
        Transaction::write(address, vec![0xE0, 0xB6]),
        Transaction::write_read(address, vec![0x88], pt_calibration()),
        Transaction::write_read(address, vec![0xE1], h_calibration()),
        Transaction::write_read(address, vec![0xF4], vec![0x00]),
        Transaction::write(address, vec![0xF2, 0x01]),
        Transaction::write_read(address, vec![0xF4], vec![0x00]),
        Transaction::write(address, vec![0xF4, 0x54]),
        Transaction::write_read(address, vec![0xF5], vec![0x00]),
        Transaction::write(address, vec![0xF5, 0x10]),
    ]
}

/// A forced measurement: mode check, forced mode, then the 8 data bytes.
fn bme280_measure(address: u8) -> Vec<Transaction> {
    vec![
        Transaction::write_read(address, vec![0xF4], vec![0x54]),
        Transaction::write_read(address, vec![0xF4], vec![0x54]),
        Transaction::write(address, vec![0xF4, 0x55]),
        Transaction::write_read(address, vec![0xF7], data_bytes()),
    ]
}

fn metrics() -> Arc<NodeMetrics> {
    NodeMetrics::detached("climate", NodeRole::Source)
}

fn no_sleep() -> impl FnMut(Duration) {
    |_| {}
}

#[test]
fn bme280_reads_the_datasheet_values_from_its_calibration() {
    let (temperature, pressure, humidity) = datasheet_values();
    // The datasheet's own results for its example.
    assert!((temperature - 25.08).abs() < 0.005, "{temperature}");
    assert!((pressure - 100_653.27).abs() < 0.05, "{pressure}");

    let mut expectations = bme280_init(0x76);
    expectations.extend(bme280_measure(0x76));
    expectations.extend(bme280_measure(0x76));
    let mut bus = Mock::new(&expectations);
    let mut sensor = sensor_for(SensorModel::Bme280, 0x76, bus.clone());
    for _ in 0..2 {
        let reading = sensor.read().unwrap();
        let t = reading.temperature.unwrap();
        let p = reading.pressure.unwrap();
        let h = reading.humidity.unwrap();
        assert!((t - temperature).abs() < 0.01, "{t} vs {temperature}");
        assert!(
            (p - pressure / 100.0).abs() < 0.01,
            "{p} hPa vs {pressure} Pa"
        );
        assert!((h - humidity).abs() < 0.05, "{h} vs {humidity}");
        assert!((20.0..80.0).contains(&h), "a plausible humidity: {h}");
    }
    bus.done();
}

#[test]
fn bme280_wrong_chip_is_reported_not_read() {
    let mut bus = Mock::new(&[Transaction::write_read(0x77, vec![0xD0], vec![0x99])]);
    let mut sensor = sensor_for(SensorModel::Bme280, 0x77, bus.clone());
    let error = sensor.read().unwrap_err();
    assert_eq!(error.reason, "unsupported_chip");
    bus.done();
}

// ---------------------------------------------------------------------------------------
// SHT3x

/// CRC-8 of the SHT3x datasheet: polynomial 0x31, initial value 0xFF.
fn crc8(bytes: [u8; 2]) -> u8 {
    let mut crc = 0xFFu8;
    for byte in bytes {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x31
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A measurement answer: raw temperature and humidity, each with its CRC.
fn sht3x_answer(t: u16, rh: u16, good_crc: bool) -> Vec<u8> {
    let [t0, t1] = t.to_be_bytes();
    let [h0, h1] = rh.to_be_bytes();
    let h_crc = crc8([h0, h1]);
    vec![
        t0,
        t1,
        crc8([t0, t1]),
        h0,
        h1,
        if good_crc { h_crc } else { h_crc ^ 0x01 },
    ]
}

fn sht3x_measure(address: u8, answer: Vec<u8>) -> Vec<Transaction> {
    vec![
        Transaction::transaction_start(address),
        Transaction::write(address, vec![0x2C, 0x06]),
        Transaction::read(address, answer),
        Transaction::transaction_end(address),
    ]
}

#[test]
fn sht3x_measures_with_crc_checked() {
    assert_eq!(crc8([0xBE, 0xEF]), 0x92, "the datasheet's CRC example");
    let mut expectations = vec![Transaction::write(0x44, vec![0x30, 0xA2])];
    expectations.extend(sht3x_measure(0x44, sht3x_answer(0x6666, 0x8000, true)));
    expectations.extend(sht3x_measure(0x44, sht3x_answer(0x6666, 0x8000, false)));
    let mut bus = Mock::new(&expectations);
    let mut sensor = sensor_for(SensorModel::Sht3x, 0x44, bus.clone());
    let reading = sensor.read().unwrap();
    let expected_t = -45.0 + 175.0 * f64::from(0x6666u16) / 65535.0;
    let expected_rh = 100.0 * f64::from(0x8000u16) / 65535.0;
    assert!((reading.temperature.unwrap() - expected_t).abs() < 0.001);
    assert!((reading.humidity.unwrap() - expected_rh).abs() < 0.001);
    assert_eq!(reading.pressure, None);
    let error = sensor.read().unwrap_err();
    assert_eq!(error.reason, "crc");
    bus.done();
}

#[test]
fn sht3x_that_did_not_answer_is_reset_again_before_the_next_read() {
    let nack = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
    let mut expectations = vec![Transaction::write(0x44, vec![0x30, 0xA2]).with_error(nack)];
    expectations.push(Transaction::write(0x44, vec![0x30, 0xA2]));
    expectations.extend(sht3x_measure(0x44, sht3x_answer(0x6666, 0x8000, true)));
    let mut bus = Mock::new(&expectations);
    let mut sensor = sensor_for(SensorModel::Sht3x, 0x44, bus.clone());
    let error = sensor.read().unwrap_err();
    assert_eq!(error.reason, "no_ack");
    assert!(error.message.contains("I2C transfer failed"), "{error}");
    assert!(sensor.read().is_ok(), "reset, then measured");
    bus.done();
}

// ---------------------------------------------------------------------------------------
// Poller: retries, backoff, counters

#[test]
fn a_failed_read_is_retried_with_backoff_counted_and_the_next_poll_works() {
    let nack = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
    let chip_id = || Transaction::write_read(0x76, vec![0xD0], vec![0x60]);
    let mut expectations = Vec::new();
    // Poll 1: the BME280 does not answer (3 attempts); the SHT3x fails its CRC once, then
    // answers on the retry.
    for _ in 0..3 {
        expectations.push(chip_id().with_error(nack));
    }
    expectations.push(Transaction::write(0x44, vec![0x30, 0xA2]));
    expectations.extend(sht3x_measure(0x44, sht3x_answer(0x6666, 0x8000, false)));
    expectations.extend(sht3x_measure(0x44, sht3x_answer(0x6666, 0x8000, true)));
    // Poll 2: the BME280 is back; the SHT3x answers at once.
    expectations.extend(bme280_init(0x76));
    expectations.extend(bme280_measure(0x76));
    expectations.extend(sht3x_measure(0x44, sht3x_answer(0x7000, 0x4000, true)));
    let mut bus = Mock::new(&expectations);

    let settings = parse_i2c(
        r#"
        interval = "1s"
        retries = 2
        retry_backoff = "50ms"
        sensors = [
          { device_id = "greenhouse", model = "bme280" },
          { device_id = "cellar", model = "sht3x", address = 0x44 },
        ]
        "#,
    )
    .settings()
    .unwrap();
    let mut poller = Poller::new(&settings, bus.clone());
    let metrics = metrics();
    let mut slept = Vec::new();
    let readings = poller.poll(&metrics, &mut |d| slept.push(d));
    assert_eq!(readings.len(), 1, "only the SHT3x answered");
    assert_eq!(readings[0].sensor, 1);
    assert_eq!(
        slept,
        [
            Duration::from_millis(50),
            Duration::from_millis(100),
            Duration::from_millis(50)
        ],
        "the BME280 backs off 50 then 100 ms; the SHT3x retries once after 50 ms"
    );
    let values = metrics.snapshot().values;
    assert_eq!(values["read_errors.greenhouse.no_ack"], 3);
    assert_eq!(values["polls_failed.greenhouse"], 1);
    assert_eq!(values["read_errors.cellar.crc"], 1);
    assert_eq!(values["reads.cellar"], 1);
    assert!(!values.contains_key("reads.greenhouse"));

    let readings = poller.poll(&metrics, &mut no_sleep());
    assert_eq!(readings.len(), 2, "both answer on the next poll");
    let batch = poller.rows(&readings).unwrap();
    assert_eq!(strings(&batch, "device_id"), ["greenhouse", "cellar"]);
    assert_eq!(strings(&batch, "sensor"), ["bme280", "sht3x"]);
    let pressure = floats(&batch, "pressure");
    assert!((pressure.value(0) - datasheet_values().1 / 100.0).abs() < 0.01);
    assert!(pressure.is_null(1), "an SHT3x has no pressure");
    let values = metrics.snapshot().values;
    assert_eq!(values["reads.greenhouse"], 1);
    assert_eq!(values["reads.cellar"], 2);
    assert_eq!(values["polls_failed.greenhouse"], 1);
    bus.done();
}

#[tokio::test]
async fn the_i2c_source_sends_a_row_per_sensor_per_poll() {
    let mut expectations = vec![Transaction::write(0x45, vec![0x30, 0xA2])];
    expectations.extend(sht3x_measure(0x45, sht3x_answer(0x6666, 0x8000, true)));
    expectations.extend(sht3x_measure(0x45, sht3x_answer(0x6000, 0x9000, true)));
    let mut bus = Mock::new(&expectations);
    let poller = Poller::with_sensors(
        vec![PolledSensor::new(
            "cellar",
            SensorModel::Sht3x,
            sensor_for(SensorModel::Sht3x, 0x45, bus.clone()),
        )],
        0,
        Duration::from_millis(10),
    );
    let source = Box::new(I2cSource::new(poller, Duration::from_millis(100)));
    let (ctx, mut rows, stop) = SourceContext::for_test("climate", super::i2c::schema(), 4);
    let task = tokio::spawn(source.run(ctx));
    let first = rows.recv().await.unwrap();
    let second = rows.recv().await.unwrap();
    stop.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(strings(&first, "device_id"), ["cellar"]);
    let t1 = floats(&first, "temperature").value(0);
    let t2 = floats(&second, "temperature").value(0);
    assert!((t1 - 25.0).abs() < 0.01 && t2 < t1, "{t1} then {t2}");
    let times = first
        .column(0)
        .as_primitive::<edgeflow_engine::arrow::datatypes::TimestampMillisecondType>();
    assert!(times.value(0) > 1_600_000_000_000, "wall-clock event time");
    bus.done();
}

// ---------------------------------------------------------------------------------------
// GPIO

/// A backend that hands the test the senders of the pins it was asked to watch.
#[derive(Clone, Default)]
struct FakeGpio {
    watched: Arc<Mutex<Vec<(PinSettings, EdgeSender)>>>,
    refuse: Option<u8>,
}

impl GpioBackend for FakeGpio {
    fn watch(&mut self, pin: &PinSettings, events: EdgeSender) -> Result<(), RpiError> {
        if self.refuse == Some(pin.pin) {
            return Err(RpiError::Pin {
                pin: pin.pin,
                device: super::GPIO_DEVICE,
                reason: "Pin 5 is already in use".into(),
            });
        }
        self.watched.lock().unwrap().push((pin.clone(), events));
        Ok(())
    }
}

impl FakeGpio {
    fn send(&self, pin: u8, edge: Edge, at_ms: u64, wall_ms: i64) {
        let watched = self.watched.lock().unwrap();
        let (_, sender) = watched.iter().find(|(p, _)| p.pin == pin).unwrap();
        sender.send(EdgeEvent {
            pin,
            edge,
            at: Duration::from_millis(at_ms),
            wall_ms,
        });
    }
}

#[tokio::test]
async fn edges_become_rows_after_debounce() {
    let config = parse_gpio(
        r#"
        pins = [
          { pin = 17, device_id = "door", debounce = "20ms" },
          { pin = 27, device_id = "button", edge = "rising", pull = "down" },
        ]
        "#,
    );
    let settings = config.settings().unwrap();
    let fake = FakeGpio::default();
    let source = GpioSource::start(settings, Box::new(fake.clone())).unwrap();
    {
        let watched = fake.watched.lock().unwrap();
        assert_eq!(watched.len(), 2);
        assert_eq!(watched[0].0.debounce, Duration::from_millis(20));
        assert_eq!(watched[1].0.pull, super::gpio::Pull::Down);
    }
    // The door opens with bounces, the button is pressed (its falling edge is not watched).
    fake.send(17, Edge::Falling, 1_000, 1_700_000_000_000);
    fake.send(17, Edge::Rising, 1_003, 1_700_000_000_003);
    fake.send(17, Edge::Falling, 1_008, 1_700_000_000_008);
    fake.send(27, Edge::Rising, 1_100, 1_700_000_000_100);
    fake.send(27, Edge::Falling, 1_150, 1_700_000_000_150);
    fake.send(17, Edge::Rising, 1_900, 1_700_000_000_900);

    let (ctx, mut rows, stop) = SourceContext::for_test("inputs", config.schema().unwrap(), 4);
    let metrics = ctx.metrics().clone();
    let task = tokio::spawn(Box::new(source).run(ctx));
    let batch = rows.recv().await.unwrap();
    stop.trigger();
    task.await.unwrap().unwrap();

    assert_eq!(strings(&batch, "device_id"), ["door", "button", "door"]);
    assert_eq!(strings(&batch, "edge"), ["falling", "rising", "rising"]);
    let level = batch.column_by_name("level").unwrap().as_boolean().clone();
    assert_eq!(level, BooleanArray::from(vec![false, true, true]));
    let pins = batch
        .column_by_name("pin")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(pins.values(), &[17, 27, 17]);
    let times = batch
        .column(0)
        .as_primitive::<edgeflow_engine::arrow::datatypes::TimestampMillisecondType>();
    assert_eq!(
        times.values(),
        &[1_700_000_000_000, 1_700_000_000_100, 1_700_000_000_900]
    );
    assert_eq!(
        metrics.snapshot().values["debounced"],
        3,
        "two bounces and one unwatched edge"
    );
}

#[tokio::test]
async fn a_full_edge_queue_counts_overflow_instead_of_blocking() {
    let config = parse_gpio(r#"pins = [{ pin = 4, device_id = "fast" }]"#);
    let fake = FakeGpio::default();
    let source = GpioSource::start(config.settings().unwrap(), Box::new(fake.clone())).unwrap();
    let edges = EDGE_QUEUE + 3;
    for i in 0..edges {
        let edge = if i % 2 == 0 {
            Edge::Rising
        } else {
            Edge::Falling
        };
        fake.send(4, edge, i as u64, 1_700_000_000_000 + i as i64);
    }
    let (ctx, mut rows, stop) = SourceContext::for_test("inputs", config.schema().unwrap(), 64);
    let metrics = ctx.metrics().clone();
    let task = tokio::spawn(Box::new(source).run(ctx));
    let mut received = 0;
    while received < EDGE_QUEUE {
        received += rows.recv().await.unwrap().num_rows();
    }
    stop.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(received, EDGE_QUEUE);
    assert_eq!(metrics.snapshot().dropped["edge_overflow"], 3);
}

#[tokio::test]
async fn pulses_are_counted_per_interval_with_rate_and_scaled_value() {
    let config = parse_gpio(
        r#"
        mode = "pulses"
        interval = "200ms"
        pins = [
          { pin = 17, device_id = "water", debounce = "1ms", scale = 0.5 },
          { pin = 22, device_id = "wind" },
        ]
        "#,
    );
    let fake = FakeGpio::default();
    let source = GpioSource::start(config.settings().unwrap(), Box::new(fake.clone())).unwrap();
    assert_eq!(
        fake.watched.lock().unwrap()[0].0.trigger,
        super::gpio::EdgeTrigger::Falling,
        "pulses count falling edges by default"
    );
    let (ctx, mut rows, stop) = SourceContext::for_test("flow", config.schema().unwrap(), 16);
    let task = tokio::spawn(Box::new(source).run(ctx));
    // Five pulses on the water meter (one of them a bounce), all now.
    let now = super::now_ms();
    for (i, at) in [0u64, 10, 10, 20, 30, 40].iter().enumerate() {
        fake.send(17, Edge::Falling, *at, now + i as i64);
    }
    let mut water = 0;
    let mut wind_rows = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (water < 5 || wind_rows < 2) && tokio::time::Instant::now() < deadline {
        let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(2), rows.recv()).await
        else {
            break;
        };
        let ids = strings(&batch, "device_id");
        let pulses = batch
            .column_by_name("pulses")
            .unwrap()
            .as_primitive::<Int64Type>();
        let rate = floats(&batch, "rate_hz");
        let value = floats(&batch, "value");
        let times = batch
            .column(0)
            .as_primitive::<edgeflow_engine::arrow::datatypes::TimestampMillisecondType>();
        for (row, id) in ids.iter().enumerate() {
            assert_eq!(
                times.value(row) % 200,
                0,
                "intervals are aligned to the wall clock"
            );
            assert!(rate.value(row) >= pulses.value(row) as f64 / 0.2 - 1e-9);
            match id.as_str() {
                "water" => {
                    water += pulses.value(row);
                    assert_eq!(value.value(row), pulses.value(row) as f64 * 0.5);
                }
                _ => {
                    wind_rows += 1;
                    assert_eq!(pulses.value(row), 0);
                    assert!(value.is_null(row), "no scale, no value");
                }
            }
        }
    }
    stop.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(water, 5, "the bounce 0 ms after a pulse is not counted");
    assert!(
        wind_rows >= 2,
        "an idle pin reports 0 pulses every interval"
    );
}

#[test]
fn a_pin_the_backend_refuses_stops_the_start_with_its_name() {
    let config = parse_gpio(r#"pins = [{ pin = 5, device_id = "x" }]"#);
    let fake = FakeGpio {
        refuse: Some(5),
        ..FakeGpio::default()
    };
    let error = GpioSource::start(config.settings().unwrap(), Box::new(fake)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot watch GPIO 5 (/dev/gpiomem): Pin 5 is already in use"
    );
}

// ---------------------------------------------------------------------------------------
// Options

fn parse_gpio(text: &str) -> GpioConfig {
    parse_options(text.parse::<toml::Table>().unwrap()).unwrap()
}

fn parse_i2c(text: &str) -> I2cConfig {
    parse_options(text.parse::<toml::Table>().unwrap()).unwrap()
}

fn parse_error<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> OptionError {
    parse_options::<T>(text.parse::<toml::Table>().unwrap()).unwrap_err()
}

fn paths(errors: &[OptionError]) -> Vec<String> {
    errors.iter().map(|e| e.path.join(".")).collect()
}

#[test]
fn gpio_options_report_every_problem_at_its_path() {
    let errors = parse_gpio(
        r#"
        interval = "1s"
        pins = [
          { pin = 40, device_id = "a" },
          { pin = 17, device_id = " ", debounce = "1m" },
          { pin = 17, device_id = "c", scale = 2.0 },
        ]
        "#,
    )
    .settings()
    .unwrap_err();
    assert_eq!(
        paths(&errors),
        [
            "interval",
            "pins.0.pin",
            "pins.1.device_id",
            "pins.1.debounce",
            "pins.2.pin",
            "pins.2.scale"
        ]
    );
    assert!(errors[1].message.contains("GPIO 40"), "{}", errors[1]);
    assert!(errors[4].message.contains("pins.1"), "{}", errors[4]);

    let errors = parse_gpio("mode = \"pulses\"\npins = []\ninterval = \"10ms\"")
        .settings()
        .unwrap_err();
    assert_eq!(paths(&errors), ["pins", "interval"]);
    let errors =
        parse_gpio("mode = \"pulses\"\npins = [{ pin = 3, device_id = \"m\", scale = -1.0 }]")
            .settings()
            .unwrap_err();
    assert_eq!(paths(&errors), ["pins.0.scale"]);

    let error = parse_error::<GpioConfig>(r#"pins = [{ pin = 4, device_id = "a", edge = "up" }]"#);
    assert_eq!(error.path, ["pins", "0", "edge"]);
    let error =
        parse_error::<GpioConfig>(r#"pins = [{ pin = 4, device_id = "a", debounc = "1ms" }]"#);
    assert_eq!(error.path, ["pins", "0", "debounc"]);
    assert!(error.message.contains("debounc"), "{}", error.message);
    let error = parse_error::<GpioConfig>(r#"pins = [{ pin = 300, device_id = "a" }]"#);
    assert_eq!(error.path, ["pins", "0", "pin"]);
    let error = parse_error::<GpioConfig>("mode = \"counter\"\npins = []");
    assert_eq!(error.path, ["mode"]);
}

#[test]
fn i2c_options_report_every_problem_at_its_path() {
    let errors = parse_i2c(
        r#"
        interval = "1s"
        retries = 5
        retry_backoff = "100ms"
        sensors = [
          { device_id = "a", model = "bme280", address = 0x76 },
          { device_id = "b", model = "bme280", address = 0x44 },
          { device_id = "a", model = "sht3x" },
          { device_id = "d", model = "bme280" },
        ]
        "#,
    )
    .settings()
    .unwrap_err();
    assert_eq!(
        paths(&errors),
        [
            "retry_backoff",
            "sensors.1.address",
            "sensors.2.device_id",
            "sensors.2.address",
            "sensors.3.address"
        ]
    );
    assert!(errors[0].message.contains("3.1s"), "{}", errors[0]);
    assert_eq!(
        errors[1].message,
        "a bme280 answers at 0x76 or 0x77, not 0x44"
    );
    assert!(
        errors[3].message.contains("already taken by sensors.1"),
        "{}",
        errors[3]
    );
    assert!(
        errors[4].message.contains("already taken by sensors.0"),
        "{}",
        errors[4]
    );

    let errors = parse_i2c("sensors = []\ninterval = \"1ms\"\nretries = 11")
        .settings()
        .unwrap_err();
    assert_eq!(paths(&errors), ["sensors", "interval", "retries"]);

    let error = parse_error::<I2cConfig>(r#"sensors = [{ device_id = "a", model = "bme680" }]"#);
    assert_eq!(error.path, ["sensors", "0", "model"]);
    let error = parse_error::<I2cConfig>(
        r#"sensors = [{ device_id = "a", model = "sht3x", address = 300 }]"#,
    );
    assert_eq!(error.path, ["sensors", "0", "address"]);

    // Defaults: bus 1, 10 s, 2 retries from 50 ms, the chips' usual addresses.
    let settings = parse_i2c(
        r#"sensors = [{ device_id = "a", model = "bme280" }, { device_id = "b", model = "sht3x" }]"#,
    )
    .settings()
    .unwrap();
    assert_eq!(settings.bus, 1);
    assert_eq!(settings.interval, Duration::from_secs(10));
    assert_eq!(
        (settings.retries, settings.retry_backoff),
        (2, Duration::from_millis(50))
    );
    let addresses: Vec<u8> = settings.sensors.iter().map(|s| s.address).collect();
    assert_eq!(addresses, [0x76, 0x44]);
}

#[test]
fn the_module_examples_parse_and_have_schemas() {
    let text = include_str!("mod.rs");
    let toml: String = text
        .lines()
        .skip_while(|l| !l.starts_with("//! ```toml"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start_matches(' '))
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table = toml.parse().unwrap();
    let sources = table["sources"].as_table().unwrap();
    for (name, node) in sources {
        let mut node = node.as_table().unwrap().clone();
        let kind = node.remove("type").unwrap();
        let kind = crate::sources()
            .iter()
            .find(|k| k.name == kind.as_str().unwrap())
            .unwrap();
        let config = (kind.parse)(node).unwrap_or_else(|e| panic!("{name}: {e}"));
        let schema = config.schema().unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            edgeflow_engine::schema::event_time_column(&schema),
            Some((0, "timestamp"))
        );
    }
}

#[test]
fn build_names_the_device_or_the_missing_feature() {
    let gpio = parse_gpio(r#"pins = [{ pin = 17, device_id = "door" }]"#);
    let i2c = parse_i2c(r#"sensors = [{ device_id = "a", model = "sht3x" }]"#);
    if std::path::Path::new("/dev/gpiomem").exists() || std::path::Path::new("/dev/i2c-1").exists()
    {
        return; // A Pi: building would really open the devices.
    }
    let gpio_error = gpio.build().err().expect("no GPIO here").to_string();
    let i2c_error = i2c.build().err().expect("no I2C here").to_string();
    if cfg!(feature = "rpi") {
        assert!(
            gpio_error.starts_with("cannot open /dev/gpiomem: "),
            "{gpio_error}"
        );
        assert!(
            i2c_error.starts_with("cannot open /dev/i2c-1: "),
            "{i2c_error}"
        );
    } else {
        assert!(
            gpio_error.contains("without the `rpi` feature"),
            "{gpio_error}"
        );
        assert!(
            i2c_error.contains("without the `rpi` feature"),
            "{i2c_error}"
        );
    }
}

// ---------------------------------------------------------------------------------------

fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    let array: &StringArray = batch.column_by_name(column).unwrap().as_string();
    array.iter().map(|v| v.unwrap().to_string()).collect()
}

fn floats<'a>(batch: &'a RecordBatch, column: &str) -> &'a Float64Array {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>()
}

#[allow(dead_code)]
fn ints<'a>(batch: &'a RecordBatch, column: &str) -> &'a Int64Array {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Int64Type>()
}
