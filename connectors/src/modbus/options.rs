//! The options of the `modbus` source and their checks: devices, shared register maps,
//! register entries, and the plan the running source follows (output schema, one list of read
//! requests per device, where each field's value lies in the responses).

use std::collections::BTreeMap;
use std::time::Duration;

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
use edgeflow_engine::config::{duration, optional_duration};
use edgeflow_engine::schema::{schema_with_event_time, timestamp_type};
use serde::Deserialize;

use super::coalesce::{Limits, Location, Request, Span, Table, coalesce};
use super::decode::{Decoder, ValueType, WordOrder};
use crate::schema_options::{default_idle_timeout, idle_timeout};

/// The event-time column: when the poll started (UTC).
pub const TIMESTAMP: &str = "timestamp";
/// The column holding each device's `id`.
pub const DEVICE_ID: &str = "device_id";
/// The Modbus TCP port used when `address` has none.
pub const DEFAULT_PORT: u16 = 502;

/// Options of the `modbus` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// Time between two polls of a device. Default `"1s"`.
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// Longest wait for a connection or for the answer to one read request. Default `"1s"`.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// First wait before reconnecting to a device that refused or dropped the connection;
    /// doubles per failure (with jitter) up to `reconnect_max`. Default `"1s"`.
    #[serde(default = "default_reconnect_min", deserialize_with = "duration")]
    pub reconnect_min: Duration,
    /// Longest wait between connection attempts. Default `"30s"`.
    #[serde(default = "default_reconnect_max", deserialize_with = "duration")]
    pub reconnect_max: Duration,
    /// Most registers read by one request, 2 to 125 (the protocol limit). Default 125.
    #[serde(default = "default_max_registers")]
    pub max_registers: u16,
    /// Most coils or discrete inputs read by one request, 1 to 2000. Default 2000.
    #[serde(default = "default_max_coils")]
    pub max_coils: u16,
    /// Unmapped addresses a request may read to join two entries into one request.
    /// Default 0 (read only mapped addresses).
    #[serde(default)]
    pub max_gap: u16,
    /// Register maps shared by several devices, by name (`[sources.plc.maps.press]`).
    #[serde(default)]
    pub maps: BTreeMap<String, MapConfig>,
    /// The devices to poll.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// How far behind the newest poll time the watermark trails. Default: the longest a poll
    /// can take, `timeout` × (one more than its requests), over all devices, so a slow
    /// device's rows are not late.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_out_of_orderness: Option<Duration>,
    /// After this long without rows, the watermark follows the wall clock. Default `"30s"`;
    /// `"off"` never advances it.
    #[serde(default = "default_idle_timeout", deserialize_with = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
}

/// A shared register map.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Its entries.
    #[serde(default)]
    pub registers: Vec<RegisterConfig>,
}

/// One device (a PLC, a meter, a gateway unit).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Its name, written to the `device_id` column.
    pub id: String,
    /// `host:port` or `host` (port 502).
    pub address: String,
    /// Unit (slave) id, 0 to 255. Default 1.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// This device's poll interval, instead of the source's `interval`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub interval: Option<Duration>,
    /// This device's timeout, instead of the source's `timeout` (a slow serial line behind a
    /// gateway).
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// The shared map in `maps` to read.
    #[serde(default)]
    pub map: Option<String>,
    /// Entries of this device only (after those of `map`, if any).
    #[serde(default)]
    pub registers: Vec<RegisterConfig>,
}

/// One value read from a device: an output column.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// The column name.
    pub field: String,
    /// `holding`, `input`, `coil` or `discrete_input`.
    pub kind: Table,
    /// The 0-based protocol address (register 40101 in 1-based "4xxxx" notation is
    /// `kind = "holding"`, `address = 100`).
    pub address: u32,
    /// `u16`, `i16`, `u32`, `i32`, `f32` or `bool`. Default `bool` for coils and discrete
    /// inputs, `u16` for registers.
    #[serde(default, rename = "type")]
    pub value_type: Option<ValueType>,
    /// Word order of 32-bit types: `big` (ABCD), `little` (CDAB), `big_swap` (BADC),
    /// `little_swap` (DCBA). Default `big`.
    #[serde(default)]
    pub word_order: Option<WordOrder>,
    /// For `type = "bool"` on a register: the bit to read, 0 (least significant) to 15.
    /// Default: true when the register is non-zero.
    #[serde(default)]
    pub bit: Option<u8>,
    /// Multiplier applied to the raw value; makes the column Float64.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Added after `scale`; makes the column Float64.
    #[serde(default)]
    pub offset: Option<f64>,
}

const fn default_interval() -> Duration {
    Duration::from_secs(1)
}

const fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

const fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}

const fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}

const fn default_max_registers() -> u16 {
    125
}

const fn default_max_coils() -> u16 {
    2000
}

const fn default_unit() -> u8 {
    1
}

/// One field of one device, ready to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldPlan {
    /// Output column index.
    pub column: usize,
    /// Where its value lies in the responses.
    pub location: Location,
    /// How to decode it.
    pub decoder: Decoder,
    /// Whether it is read from a bit table.
    pub bits: bool,
}

/// One device, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct DevicePlan {
    /// `id`.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Unit id.
    pub unit: u8,
    /// Poll interval.
    pub interval: Duration,
    /// Connect and request timeout.
    pub timeout: Duration,
    /// Read requests of one poll.
    pub requests: Vec<Request>,
    /// Fields and where their values are.
    pub fields: Vec<FieldPlan>,
}

/// Everything the running source needs.
#[derive(Clone, Debug)]
pub struct ModbusPlan {
    /// Output schema: `timestamp`, `device_id`, then every field.
    pub schema: SchemaRef,
    /// The devices.
    pub devices: Vec<DevicePlan>,
    /// Reconnect backoff bounds.
    pub reconnect: (Duration, Duration),
}

impl ModbusConfig {
    /// Checks every option.
    ///
    /// # Errors
    /// Every problem, each at its option path (`devices.0.registers.2.type`).
    pub fn plan(&self) -> Result<ModbusPlan, Vec<OptionError>> {
        let mut errors = Vec::new();
        self.check_settings(&mut errors);
        for (name, map) in &self.maps {
            if map.registers.is_empty() {
                errors.push(OptionError::at_path(
                    &["maps", name, "registers"],
                    format!("map '{name}' has no registers"),
                ));
            }
        }
        if self.devices.is_empty() {
            errors.push(OptionError::at(
                "devices",
                "no devices to poll; add one, like [[sources.<name>.devices]] with id, address and registers",
            ));
        }
        let limits = Limits {
            registers: self.max_registers.clamp(2, 125),
            bits: self.max_coils.clamp(1, 2000),
            gap: self.max_gap,
        };
        // Output columns in order of first appearance, with their types and where they were
        // first declared (for the error when a later entry disagrees).
        let mut columns: Vec<(String, DataType)> = Vec::new();
        // Each shared map is checked once, whether or not a device reads it.
        let mut checked_maps: BTreeMap<&str, Vec<Entry<'_>>> = BTreeMap::new();
        for (name, map) in &self.maps {
            let entries = map
                .registers
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    let path = vec![
                        "maps".to_string(),
                        name.clone(),
                        "registers".to_string(),
                        i.to_string(),
                    ];
                    let checked = check_entry(&path, entry, &mut errors);
                    (path, entry, checked)
                })
                .collect();
            checked_maps.insert(name, entries);
        }
        let mut devices = Vec::with_capacity(self.devices.len());
        let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, device) in self.devices.iter().enumerate() {
            let at = |key: &str| format!("devices.{index}.{key}");
            if device.id.trim().is_empty() {
                errors.push(OptionError::at(&at("id"), "the device id is empty"));
            } else if let Some(first) = ids.insert(&device.id, index) {
                errors.push(OptionError::at(
                    &at("id"),
                    format!(
                        "device id '{}' is already used by devices.{first}",
                        device.id
                    ),
                ));
            }
            if let Err(message) = check_address(&device.address) {
                errors.push(OptionError::at(&at("address"), message));
            }
            for (key, value) in [("interval", device.interval), ("timeout", device.timeout)] {
                if value.is_some_and(|v| v.is_zero()) {
                    errors.push(OptionError::at(
                        &at(key),
                        format!("{key} must be longer than 0s"),
                    ));
                }
            }
            let mut entries: Vec<Entry<'_>> = Vec::new();
            let mut map_missing = false;
            if let Some(map) = &device.map {
                match checked_maps.get(map.as_str()) {
                    Some(found) => entries.extend(found.iter().cloned()),
                    None => {
                        map_missing = true;
                        let known: Vec<&str> = self.maps.keys().map(String::as_str).collect();
                        let message = if known.is_empty() {
                            format!("no map named '{map}': this source declares no maps")
                        } else {
                            format!("no map named '{map}'; maps are {}", known.join(", "))
                        };
                        errors.push(
                            OptionError::at(&at("map"), message)
                                .suggest(map, known.iter().copied()),
                        );
                    }
                }
            }
            for (i, entry) in device.registers.iter().enumerate() {
                let path = vec![
                    "devices".to_string(),
                    index.to_string(),
                    "registers".to_string(),
                    i.to_string(),
                ];
                let checked = check_entry(&path, entry, &mut errors);
                entries.push((path, entry, checked));
            }
            if entries.is_empty() {
                if !map_missing {
                    errors.push(OptionError::at(
                        &format!("devices.{index}"),
                        format!(
                            "device '{}' reads nothing: give it registers or a map",
                            device.id
                        ),
                    ));
                }
                continue;
            }
            let mut spans = Vec::with_capacity(entries.len());
            let mut fields = Vec::with_capacity(entries.len());
            let mut names: BTreeMap<&str, &[String]> = BTreeMap::new();
            for (path, entry, checked) in &entries {
                let Some((span, decoder)) = *checked else {
                    continue;
                };
                if let Some(first) = names.insert(&entry.field, path) {
                    errors.push(OptionError::at_path(
                        &segments(path, "field"),
                        format!(
                            "field '{}' of device '{}' is already read by {}",
                            entry.field,
                            device.id,
                            first.join(".")
                        ),
                    ));
                    continue;
                }
                let data_type = decoder.data_type();
                let column = match columns.iter().position(|(n, _)| *n == entry.field) {
                    Some(column) if columns[column].1 != data_type => {
                        errors.push(OptionError::at_path(
                            &segments(path, "type"),
                            format!(
                                "field '{}' is {} here but {} for another device; a column has one type",
                                entry.field, data_type, columns[column].1
                            ),
                        ).with_hint("use the same type, scale and offset, or another field name"));
                        continue;
                    }
                    Some(column) => column,
                    None => {
                        columns.push((entry.field.clone(), data_type));
                        columns.len() - 1
                    }
                };
                spans.push(span);
                fields.push((column + 2, decoder, span.table.is_bits()));
            }
            let (requests, locations) = coalesce(&spans, limits);
            devices.push(DevicePlan {
                id: device.id.clone(),
                address: with_port(&device.address),
                unit: device.unit,
                interval: device.interval.unwrap_or(self.interval),
                timeout: device.timeout.unwrap_or(self.timeout),
                requests,
                fields: fields
                    .into_iter()
                    .zip(locations)
                    .map(|((column, decoder, bits), location)| FieldPlan {
                        column,
                        location,
                        decoder,
                        bits,
                    })
                    .collect(),
            });
        }
        if !errors.is_empty() {
            // A map read by several devices can give the same error (a duplicate field) once
            // per device: report it once.
            let mut unique: Vec<OptionError> = Vec::with_capacity(errors.len());
            for error in errors {
                if !unique.contains(&error) {
                    unique.push(error);
                }
            }
            return Err(unique);
        }
        let fields = [
            Field::new(TIMESTAMP, timestamp_type(), false),
            Field::new(DEVICE_ID, DataType::Utf8, false),
        ]
        .into_iter()
        .chain(
            columns
                .into_iter()
                .map(|(name, data_type)| Field::new(name, data_type, true)),
        );
        Ok(ModbusPlan {
            schema: schema_with_event_time(fields, Some(TIMESTAMP)),
            devices,
            reconnect: (self.reconnect_min, self.reconnect_max),
        })
    }

    /// The watermark's `max_out_of_orderness`: as given, or the longest a poll can take.
    pub fn out_of_orderness(&self) -> Duration {
        if let Some(given) = self.max_out_of_orderness {
            return given;
        }
        let longest_poll = |device: &DevicePlan| {
            let steps = u32::try_from(device.requests.len() + 1).unwrap_or(u32::MAX);
            device.timeout.saturating_mul(steps)
        };
        self.plan()
            .ok()
            .and_then(|plan| plan.devices.iter().map(longest_poll).max())
            .unwrap_or(self.timeout)
    }

    fn check_settings(&self, errors: &mut Vec<OptionError>) {
        if self.interval.is_zero() {
            errors.push(OptionError::at(
                "interval",
                "interval must be longer than 0s",
            ));
        }
        if self.timeout.is_zero() {
            errors.push(OptionError::at("timeout", "timeout must be longer than 0s"));
        }
        if self.reconnect_min.is_zero() {
            errors.push(OptionError::at(
                "reconnect_min",
                "reconnect_min must be longer than 0s",
            ));
        }
        if self.reconnect_max < self.reconnect_min {
            errors.push(OptionError::at(
                "reconnect_max",
                format!(
                    "reconnect_max ({:?}) is shorter than reconnect_min ({:?})",
                    self.reconnect_max, self.reconnect_min
                ),
            ));
        }
        if !(2..=125).contains(&self.max_registers) {
            errors.push(OptionError::at(
                "max_registers",
                format!(
                    "max_registers = {} is outside 2..=125 (125 is the protocol limit; 32-bit values need 2)",
                    self.max_registers
                ),
            ));
        }
        if !(1..=2000).contains(&self.max_coils) {
            errors.push(OptionError::at(
                "max_coils",
                format!(
                    "max_coils = {} is outside 1..=2000 (2000 is the protocol limit)",
                    self.max_coils
                ),
            ));
        }
    }
}

/// A map entry with its option path and, when it is sound, its addresses and decoder.
type Entry<'a> = (Vec<String>, &'a RegisterConfig, Option<(Span, Decoder)>);

/// `path` + `key` as path segments.
fn segments<'a>(path: &'a [String], key: &'a str) -> Vec<&'a str> {
    path.iter().map(String::as_str).chain([key]).collect()
}

/// Checks one map entry; its addresses and decoder when it is sound.
fn check_entry(
    path: &[String],
    entry: &RegisterConfig,
    errors: &mut Vec<OptionError>,
) -> Option<(Span, Decoder)> {
    let before = errors.len();
    let mut error = |key: &str, message: String| {
        errors.push(OptionError::at_path(&segments(path, key), message));
    };
    if entry.field.trim().is_empty() {
        error("field", "the field name is empty".into());
    } else if entry.field == TIMESTAMP || entry.field == DEVICE_ID {
        error(
            "field",
            format!(
                "'{}' is a column the source writes itself; name the field something else",
                entry.field
            ),
        );
    }
    let bits = entry.kind.is_bits();
    let value_type = entry.value_type.unwrap_or(if bits {
        ValueType::Bool
    } else {
        ValueType::U16
    });
    let count = if bits { 1 } else { value_type.registers() };
    if bits && value_type != ValueType::Bool {
        error(
            "type",
            format!(
                "type '{}' needs {} register(s), but a {} is a single bit; use type = \"bool\", or kind = \"holding\" or \"input\"",
                value_type.name(),
                value_type.registers(),
                entry.kind.name()
            ),
        );
    }
    if entry.address + u32::from(count) - 1 > u32::from(u16::MAX) {
        error(
            "address",
            format!(
                "register out of range: {} {} at address {} would read up to address {}, past 65535 (addresses are 0-based)",
                entry.kind.name(),
                value_type.name(),
                entry.address,
                entry.address + u32::from(count) - 1
            ),
        );
    }
    if entry.word_order.is_some() && value_type.registers() != 2 {
        error(
            "word_order",
            format!(
                "word_order applies to 32-bit types (u32, i32, f32), not to '{}'",
                value_type.name()
            ),
        );
    }
    if let Some(bit) = entry.bit {
        if bits || value_type != ValueType::Bool {
            error(
                "bit",
                "bit applies to type = \"bool\" on a holding or input register".into(),
            );
        } else if bit > 15 {
            error(
                "bit",
                format!("bit {bit} does not exist: a register has bits 0 to 15"),
            );
        }
    }
    for (key, value) in [("scale", entry.scale), ("offset", entry.offset)] {
        match value {
            Some(_) if value_type == ValueType::Bool => {
                error(key, format!("{key} applies to numbers, not to bool values"));
            }
            Some(v) if !v.is_finite() => error(key, format!("{key} = {v} is not a finite number")),
            _ => {}
        }
    }
    if errors.len() > before {
        return None;
    }
    let span = Span {
        table: entry.kind,
        address: entry.address as u16,
        count,
    };
    let decoder = Decoder {
        value_type,
        word_order: entry.word_order.unwrap_or_default(),
        bit: entry.bit,
        scale: entry.scale,
        offset: entry.offset,
    };
    Some((span, decoder))
}

/// Checks `host:port` or `host`.
fn check_address(address: &str) -> Result<(), String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("the address is empty; write host:port, like \"192.168.1.20:502\"".into());
    }
    if address.contains("://") {
        return Err(format!(
            "'{address}' is a URL; write host:port, like \"192.168.1.20:502\""
        ));
    }
    // `[v6]:port`, `v6` without a port, `host:port`, `host`.
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("'{address}' is not host:port")),
            },
            None => return Err(format!("'{address}': missing ']'")),
        }
    } else if address.matches(':').count() > 1 {
        (address, None)
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{address}' has no host"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "'{port}' in '{address}' is not a port number (1 to 65535)"
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// `address` with the default port added when it has none.
fn with_port(address: &str) -> String {
    let address = address.trim();
    let has_port = if address.starts_with('[') {
        address.contains("]:")
    } else {
        address.matches(':').count() == 1
    };
    match (
        has_port,
        address.matches(':').count() > 1 && !address.starts_with('['),
    ) {
        (true, _) => address.to_string(),
        (false, true) => format!("[{address}]:{DEFAULT_PORT}"),
        (false, false) => format!("{address}:{DEFAULT_PORT}"),
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_ports() {
        assert_eq!(with_port("10.0.0.5"), "10.0.0.5:502");
        assert_eq!(with_port("plc.local:1502"), "plc.local:1502");
        assert_eq!(with_port("::1"), "[::1]:502");
        assert_eq!(with_port("[::1]:1502"), "[::1]:1502");
        assert!(check_address("10.0.0.5").is_ok());
        assert!(check_address("[::1]:502").is_ok());
        assert!(check_address("plc:0").unwrap_err().contains("'0'"));
        assert!(check_address("plc:http").unwrap_err().contains("'http'"));
        assert!(check_address("tcp://plc:502").unwrap_err().contains("URL"));
        assert!(check_address(":502").unwrap_err().contains("no host"));
        assert!(check_address("").is_err());
    }
}
