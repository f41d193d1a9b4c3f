//! The Sensirion SHT3x (temperature, humidity) through the `embedded-sht3x` 0.2 driver.
//!
//! Creating the driver soft-resets the chip (command 0x30A2, 1.5 ms). A reading is a
//! single-shot, high-repeatability measurement with clock stretching (command 0x2C06, then
//! 6 bytes: temperature, CRC, humidity, CRC); the driver checks both CRC-8 (polynomial
//! 0x31, init 0xFF) and converts `T = -45 + 175 · raw / 65535`, `RH = 100 · raw / 65535`.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use embedded_sht3x::{Repeatability, Sht3x};

use super::{Reading, Sensor, SensorError};

/// An SHT3x at one address. The bus handle is cloned to bring the chip up again after an
/// error (the driver takes its bus by value and does not give it back on failure).
pub struct Sht3xSensor<I2C, D> {
    bus: I2C,
    address: u8,
    device: Option<Sht3x<I2C, D>>,
}

impl<I2C, D> std::fmt::Debug for Sht3xSensor<I2C, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sht3xSensor")
            .field("address", &self.address)
            .field("ready", &self.device.is_some())
            .finish_non_exhaustive()
    }
}

impl<I2C: I2c + Clone, D: DelayNs + Default> Sht3xSensor<I2C, D> {
    /// A sensor at `address` (0x44 or 0x45); nothing is sent before the first read.
    pub fn new(bus: I2C, address: u8) -> Self {
        Self {
            bus,
            address,
            device: None,
        }
    }

    fn try_read(&mut self) -> Result<Reading, embedded_sht3x::Error<I2C::Error>> {
        let device = match &mut self.device {
            Some(device) => device,
            None => {
                let mut device = Sht3x::new(self.bus.clone(), self.address, D::default())?;
                device.repeatability = Repeatability::High;
                self.device.insert(device)
            }
        };
        let measured = device.single_measurement()?;
        Ok(Reading {
            temperature: Some(f64::from(measured.temperature.0)),
            humidity: Some(f64::from(measured.relative_humidity.value())),
            pressure: None,
        })
    }
}

impl<I2C, D> Sensor for Sht3xSensor<I2C, D>
where
    I2C: I2c + Clone + Send,
    I2C::Error: std::fmt::Display,
    D: DelayNs + Default + Send,
{
    fn read(&mut self) -> Result<Reading, SensorError> {
        self.try_read().map_err(|error| match error {
            embedded_sht3x::Error::I2c(bus) => {
                // The chip may have been reset or power-cycled: reset it again next time.
                self.device = None;
                SensorError::bus(&bus)
            }
            embedded_sht3x::Error::BadCrc => SensorError::new(
                "crc",
                "the checksum of the reading does not match (noise on the bus?)",
            ),
        })
    }
}
