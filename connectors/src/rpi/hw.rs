//! The only code that touches the Raspberry Pi: rppal's `Gpio` as a [`GpioBackend`] and
//! rppal's `I2c` as a [`RawI2c`]. Compiled with the `rpi` feature only.
//!
//! Errors name the device file and say what usually fixes them (enable the interface with
//! `raspi-config`, join the `gpio` or `i2c` group).

use rppal::gpio::{Gpio, InputPin, Trigger};

use super::bus::{I2cBusError, RawI2c};
use super::gpio::{Edge, EdgeEvent, EdgeSender, EdgeTrigger, GpioBackend, PinSettings, Pull};
use super::{GPIO_DEVICE, RpiError, i2c_device, now_ms};
use crate::error::io_reason;

/// GPIO through rppal; keeps the watched pins (dropping one stops its interrupt).
pub struct RppalGpio {
    gpio: Gpio,
    pins: Vec<InputPin>,
}

impl RppalGpio {
    /// Opens the GPIO peripheral.
    ///
    /// # Errors
    /// Not a Raspberry Pi, no permission on the device, or the device is missing.
    pub fn open() -> Result<Self, RpiError> {
        let gpio = Gpio::new().map_err(|error| RpiError::OpenDevice {
            device: GPIO_DEVICE.to_string(),
            reason: gpio_reason(&error),
        })?;
        Ok(Self {
            gpio,
            pins: Vec::new(),
        })
    }
}

fn gpio_reason(error: &rppal::gpio::Error) -> String {
    use rppal::gpio::Error;
    match error {
        Error::UnknownModel => "this does not look like a Raspberry Pi (rppal could not identify the board from /proc/device-tree/compatible)".into(),
        Error::PermissionDenied(path) => format!(
            "permission denied on {path}; add the user to the gpio group (sudo usermod -aG gpio $USER) and log in again"
        ),
        Error::Io(io) => io_reason(io),
        other => other.to_string(),
    }
}

impl GpioBackend for RppalGpio {
    fn watch(&mut self, pin: &PinSettings, events: EdgeSender) -> Result<(), RpiError> {
        let fail = |reason: String| RpiError::Pin {
            pin: pin.pin,
            device: GPIO_DEVICE,
            reason,
        };
        let raw = self.gpio.get(pin.pin).map_err(|e| fail(gpio_reason(&e)))?;
        let mut input = match pin.pull {
            Pull::Up => raw.into_input_pullup(),
            Pull::Down => raw.into_input_pulldown(),
            Pull::Off => raw.into_input(),
        };
        let trigger = match pin.trigger {
            EdgeTrigger::Rising => Trigger::RisingEdge,
            EdgeTrigger::Falling => Trigger::FallingEdge,
            EdgeTrigger::Both => Trigger::Both,
        };
        let debounce = (!pin.debounce.is_zero()).then_some(pin.debounce);
        let number = pin.pin;
        // The callback runs on rppal's interrupt thread: it only stamps the wall clock and
        // hands the edge to the source task without waiting.
        input
            .set_async_interrupt(trigger, debounce, move |event| {
                let edge = match event.trigger {
                    Trigger::RisingEdge => Edge::Rising,
                    _ => Edge::Falling,
                };
                events.send(EdgeEvent {
                    pin: number,
                    edge,
                    at: event.timestamp,
                    wall_ms: now_ms(),
                });
            })
            .map_err(|e| fail(gpio_reason(&e)))?;
        self.pins.push(input);
        Ok(())
    }
}

/// An I2C bus through rppal (`/dev/i2c-N`).
pub struct RppalI2c(rppal::i2c::I2c);

impl std::fmt::Debug for RppalI2c {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RppalI2c").field(&self.0.bus()).finish()
    }
}

impl RppalI2c {
    /// Opens `/dev/i2c-<bus>`.
    ///
    /// # Errors
    /// The device file is missing (I2C not enabled, not a Pi) or not accessible.
    pub fn open(bus: u8) -> Result<Self, RpiError> {
        let device = i2c_device(bus);
        rppal::i2c::I2c::with_bus(bus)
            .map(Self)
            .map_err(|error| RpiError::OpenDevice {
                reason: match &error {
                    rppal::i2c::Error::Io(io) => match io.kind() {
                        std::io::ErrorKind::NotFound => format!(
                            "{}; enable I2C with `sudo raspi-config nonint do_i2c 0` (Interface Options → I2C) and reboot",
                            io_reason(io)
                        ),
                        std::io::ErrorKind::PermissionDenied => format!(
                            "{}; add the user to the i2c group (sudo usermod -aG i2c $USER) and log in again",
                            io_reason(io)
                        ),
                        _ => io_reason(io),
                    },
                    other => other.to_string(),
                },
                device,
            })
    }
}

fn bus_error(error: rppal::i2c::Error) -> I2cBusError {
    match error {
        rppal::i2c::Error::Io(io) => I2cBusError::from_io(&io),
        other => I2cBusError::new(embedded_hal::i2c::ErrorKind::Other, other.to_string()),
    }
}

impl RawI2c for RppalI2c {
    fn set_address(&mut self, address: u8) -> Result<(), I2cBusError> {
        self.0
            .set_slave_address(u16::from(address))
            .map_err(bus_error)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<usize, I2cBusError> {
        self.0.write(bytes).map_err(bus_error)
    }

    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, I2cBusError> {
        self.0.read(buffer).map_err(bus_error)
    }

    fn write_read(&mut self, bytes: &[u8], buffer: &mut [u8]) -> Result<(), I2cBusError> {
        self.0.write_read(bytes, buffer).map_err(bus_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_pi_opening_fails_naming_the_device() {
        // This machine is no Pi: both must fail with the device file in the message, never
        // panic. (On a Pi with I2C bus 99 absent, the I2C half holds too.)
        if std::path::Path::new("/dev/gpiomem").exists() {
            return;
        }
        let error = RppalGpio::open().err().expect("no GPIO here");
        assert!(
            error.to_string().starts_with("cannot open /dev/gpiomem: "),
            "{error}"
        );
        let error = RppalI2c::open(99).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot open /dev/i2c-99: No such file or directory; enable I2C"),
            "{error}"
        );
    }
}
