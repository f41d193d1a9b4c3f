//! Raspberry Pi inputs: the `gpio` source (edges as events, or pulses counted into rates) and
//! the `i2c` source (BME280 and SHT3x sensors polled at an interval).
//!
//! ```toml
//! [sources.flow]
//! type = "gpio"
//! mode = "pulses"                 # or "edges": one row per edge
//! interval = "10s"
//! pins = [{ pin = 17, device_id = "water-main", edge = "falling", pull = "up", debounce = "2ms", scale = 0.5 }]
//!
//! [sources.climate]
//! type = "i2c"
//! bus = 1                         # /dev/i2c-1, header pins 3 (SDA) and 5 (SCL)
//! interval = "30s"
//! sensors = [
//!   { device_id = "greenhouse", model = "bme280", address = 0x76 },
//!   { device_id = "cellar", model = "sht3x" },
//! ]
//! ```
//!
//! # Layers
//!
//! Everything but one thin adapter is independent of the hardware and tested on any machine:
//!
//! * [`gpio`]: options, the [`gpio::GpioBackend`] trait (watch a pin, deliver its edges to a
//!   channel), the debounce filter and the source task; [`pulse`]: counting pulses into
//!   wall-clock-aligned intervals.
//! * [`i2c`]: options and the poller (retries with backoff, errors counted per sensor and
//!   reason); [`sensors`]: the chips, written against embedded-hal 1.0 traits;
//!   [`bus`]: the embedded-hal I2C bus that keeps repeated starts, shared by the sensors.
//! * `hw` (only with the `rpi` cargo feature, on by default): rppal's `Gpio` as a
//!   [`gpio::GpioBackend`] (`InputPin::set_async_interrupt`, whose callback runs on rppal's
//!   thread and sends into a tokio channel) and rppal's `I2c` as a [`bus::RawI2c`].
//!
//! Validation (`edgeflow validate`, `explain`, `test`) never opens a device. `build` does:
//! off a Pi it fails with the device file in the message (`/dev/gpiomem`, `/dev/i2c-1`).
//! Built without the `rpi` feature, both kinds still parse and validate, and `build` says
//! that edgeflow was built without it.
//!
//! # Errors never stop the pipeline
//!
//! A sensor that does not answer is retried with backoff within the poll, counted in the
//! node's values as `read_errors.<device_id>.<reason>`, and polled again at the next
//! interval; see [`i2c`]. Edges the pipeline cannot take fast enough are counted as dropped
//! (`edge_overflow`) instead of blocking rppal's interrupt thread.

pub mod bus;
pub mod gpio;
#[cfg(feature = "rpi")]
mod hw;
pub mod i2c;
pub mod pulse;
pub mod sensors;

use thiserror::Error;

/// The `gpio` source kind.
pub const GPIO_KIND: crate::SourceKind = crate::SourceKind {
    name: "gpio",
    summary: "Raspberry Pi GPIO inputs: one row per edge (debounced), or pulses counted into rates",
    parse: gpio::parse,
};

/// The `i2c` source kind.
pub const I2C_KIND: crate::SourceKind = crate::SourceKind {
    name: "i2c",
    summary: "Raspberry Pi I2C sensors (BME280, SHT3x) polled at an interval, with retries",
    parse: i2c::parse,
};

/// The GPIO device rppal opens (its register window; `/dev/gpiochipN` carries the edges).
pub const GPIO_DEVICE: &str = "/dev/gpiomem";

/// The device file of I2C bus `bus`.
pub fn i2c_device(bus: u8) -> String {
    format!("/dev/i2c-{bus}")
}

/// Why a Raspberry Pi source could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RpiError {
    /// This binary has no Raspberry Pi support compiled in.
    #[error(
        "the '{kind}' source needs Raspberry Pi support, but edgeflow was built without the `rpi` feature; rebuild with default features (or `--features rpi`)"
    )]
    NotBuilt {
        /// `gpio` or `i2c`.
        kind: &'static str,
    },
    /// A device file could not be opened (not a Pi, interface disabled, no permission).
    #[error("cannot open {device}: {reason}")]
    OpenDevice {
        /// The device file, like `/dev/i2c-1`.
        device: String,
        /// Why, in words, with what to try.
        reason: String,
    },
    /// A GPIO pin could not be set up as a watched input.
    #[error("cannot watch GPIO {pin} ({device}): {reason}")]
    Pin {
        /// BCM number.
        pin: u8,
        /// The GPIO device.
        device: &'static str,
        /// Why, in words.
        reason: String,
    },
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
