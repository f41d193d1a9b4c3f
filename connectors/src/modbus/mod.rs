//! The `modbus` source: polls holding/input registers, coils and discrete inputs of Modbus TCP
//! devices at an interval, on tokio-modbus, one row per device and poll.
//!
//! ```toml
//! [sources.plc]
//! type = "modbus"
//! interval = "1s"                  # time between two polls of a device
//! timeout = "500ms"                # per connection attempt and per read request
//!
//! [sources.plc.maps.press]         # a register map shared by identical devices
//! registers = [
//!   { field = "temperature", kind = "holding", address = 100, type = "f32", word_order = "little" },
//!   { field = "pressure", kind = "input", address = 0, type = "i16", scale = 0.1 },
//!   { field = "running", kind = "coil", address = 0 },
//! ]
//!
//! [[sources.plc.devices]]
//! id = "press-1"                   # the device_id column
//! address = "192.168.1.20:502"
//! unit = 1
//! map = "press"
//!
//! [[sources.plc.devices]]
//! id = "meter-7"
//! address = "192.168.1.31"         # port 502
//! [[sources.plc.devices.registers]]
//! field = "energy_kwh"
//! kind = "input"
//! address = 0
//! type = "u32"
//! scale = 0.01
//! ```
//!
//! Output: `timestamp` (poll start, UTC, the event-time column), `device_id`, then one
//! column per field in order of first appearance: Float64 for `f32` and scaled numbers, Int64
//! for integers without `scale`/`offset`, Boolean for bits. A device without a field leaves it
//! null.
//!
//! * [`options`]: the options, their checks and the [`options::ModbusPlan`].
//! * [`decode`]: value types, word orders, scaling.
//! * [`coalesce`]: map entries → as few read requests as possible.
//! * [`source`]: one task per device (own timer, timeout and reconnect backoff), batching,
//!   counters per device and reason.

pub mod coalesce;
pub mod decode;
pub mod options;
pub mod source;

#[cfg(test)]
mod tests;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::{BoxError, OptionError, Source, WatermarkPolicy, parse_options};

pub use self::options::ModbusConfig;
use self::source::ModbusSource;
use crate::error::ConnectorError;
use crate::schema_options::watermark_policy;
use crate::{SourceConfig, SourceKind};

/// The `modbus` source kind.
pub const KIND: SourceKind = SourceKind {
    name: "modbus",
    summary: "Polls Modbus TCP devices (registers, coils) at an interval; one row per device and poll",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn SourceConfig>, OptionError> {
    parse_options::<ModbusConfig>(table).map(|c| Box::new(c) as Box<dyn SourceConfig>)
}

impl SourceConfig for ModbusConfig {
    fn schema(&self) -> Result<SchemaRef, Vec<OptionError>> {
        self.plan().map(|plan| plan.schema)
    }

    fn watermark(&self) -> WatermarkPolicy {
        watermark_policy(self.out_of_orderness(), self.idle_timeout)
    }

    fn build(&self) -> Result<Box<dyn Source>, BoxError> {
        let plan = self.plan().map_err(ConnectorError::Options)?;
        Ok(Box::new(ModbusSource { plan }))
    }
}
