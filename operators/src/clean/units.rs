//! The units table behind `convert`: each unit is an affine map to its quantity's base unit
//! (`base = value * scale + offset`), so any two units of one quantity convert exactly as
//! `to = (from * scale_from + offset_from - offset_to) / scale_to`.
//!
//! A table rather than a crate such as `uom`: `uom` checks units in the type system, while a
//! query file names them as text at run time, so it would only add a large dependency behind
//! the same lookup by name.

/// A physical quantity; only units of the same quantity convert into each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quantity {
    Temperature,
    Pressure,
    Speed,
    Length,
    Voltage,
    Current,
}

impl Quantity {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Quantity::Temperature => "temperature",
            Quantity::Pressure => "pressure",
            Quantity::Speed => "speed",
            Quantity::Length => "length",
            Quantity::Voltage => "voltage",
            Quantity::Current => "current",
        }
    }
}

/// One unit: its names (the first is canonical) and its map to the base unit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unit {
    pub(crate) names: &'static [&'static str],
    pub(crate) quantity: Quantity,
    scale: f64,
    offset: f64,
}

const fn unit(names: &'static [&'static str], quantity: Quantity, scale: f64, offset: f64) -> Unit {
    Unit {
        names,
        quantity,
        scale,
        offset,
    }
}

use Quantity::{Current, Length, Pressure, Speed, Temperature, Voltage};

/// Every unit `convert` knows. Base units: °C, Pa, m/s, m, V, A.
pub(crate) const UNITS: &[Unit] = &[
    unit(&["degC", "C", "°C", "celsius"], Temperature, 1.0, 0.0),
    unit(
        &["degF", "F", "°F", "fahrenheit"],
        Temperature,
        5.0 / 9.0,
        -160.0 / 9.0,
    ),
    unit(&["K", "kelvin"], Temperature, 1.0, -273.15),
    unit(&["Pa"], Pressure, 1.0, 0.0),
    unit(&["hPa"], Pressure, 100.0, 0.0),
    unit(&["kPa"], Pressure, 1_000.0, 0.0),
    unit(&["mbar"], Pressure, 100.0, 0.0),
    unit(&["bar"], Pressure, 100_000.0, 0.0),
    unit(&["psi"], Pressure, 6_894.757_293_168, 0.0),
    unit(&["atm"], Pressure, 101_325.0, 0.0),
    unit(&["mmHg"], Pressure, 133.322_387_415, 0.0),
    unit(&["m/s"], Speed, 1.0, 0.0),
    unit(&["km/h", "kph"], Speed, 1.0 / 3.6, 0.0),
    unit(&["mph"], Speed, 0.447_04, 0.0),
    unit(&["kn", "knot"], Speed, 1_852.0 / 3_600.0, 0.0),
    unit(&["m"], Length, 1.0, 0.0),
    unit(&["mm"], Length, 0.001, 0.0),
    unit(&["cm"], Length, 0.01, 0.0),
    unit(&["km"], Length, 1_000.0, 0.0),
    unit(&["in"], Length, 0.0254, 0.0),
    unit(&["ft"], Length, 0.3048, 0.0),
    unit(&["V"], Voltage, 1.0, 0.0),
    unit(&["mV"], Voltage, 0.001, 0.0),
    unit(&["kV"], Voltage, 1_000.0, 0.0),
    unit(&["A"], Current, 1.0, 0.0),
    unit(&["mA"], Current, 0.001, 0.0),
];

/// The unit named `name` (exactly, case-sensitive: `mA` is not `MA`).
pub(crate) fn find(name: &str) -> Option<&'static Unit> {
    UNITS.iter().find(|u| u.names.contains(&name))
}

/// Every canonical unit name, for hints.
pub(crate) fn canonical_names() -> impl Iterator<Item = &'static str> {
    UNITS.iter().map(|u| u.names[0])
}

/// A conversion between two units of one quantity, as `to = from * scale + offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Conversion {
    pub(crate) scale: f64,
    pub(crate) offset: f64,
}

impl Conversion {
    /// The conversion from `from` to `to`, or `None` when their quantities differ.
    pub(crate) fn between(from: &Unit, to: &Unit) -> Option<Self> {
        (from.quantity == to.quantity).then(|| Conversion {
            scale: from.scale / to.scale,
            offset: (from.offset - to.offset) / to.scale,
        })
    }

    pub(crate) fn apply(self, value: f64) -> f64 {
        value * self.scale + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(value: f64, from: &str, to: &str) -> f64 {
        Conversion::between(find(from).unwrap(), find(to).unwrap())
            .unwrap()
            .apply(value)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn known_points_convert() {
        assert!(close(convert(212.0, "degF", "degC"), 100.0));
        assert!(close(convert(32.0, "°F", "C"), 0.0));
        assert!(close(convert(-40.0, "degF", "degC"), -40.0));
        assert!(close(convert(0.0, "degC", "K"), 273.15));
        assert!(close(convert(300.0, "K", "degF"), 80.33));
        assert!(close(convert(1.0, "bar", "kPa"), 100.0));
        assert!(close(convert(1.0, "psi", "Pa"), 6_894.757_293_168));
        assert!(close(convert(1.0, "atm", "hPa"), 1_013.25));
        assert!(close(convert(36.0, "km/h", "m/s"), 10.0));
        assert!(close(convert(1.0, "kn", "km/h"), 1.852));
        assert!(close(convert(12.0, "in", "ft"), 1.0));
        assert!(close(convert(1_500.0, "mV", "V"), 1.5));
    }

    #[test]
    fn every_conversion_round_trips_and_names_are_unique() {
        let mut names: Vec<&str> = UNITS.iter().flat_map(|u| u.names.iter().copied()).collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total, "a unit name is listed twice");
        for a in UNITS {
            for b in UNITS.iter().filter(|b| b.quantity == a.quantity) {
                let there = Conversion::between(a, b).unwrap().apply(123.456);
                let back = Conversion::between(b, a).unwrap().apply(there);
                assert!(close(back, 123.456), "{} -> {}", a.names[0], b.names[0]);
            }
        }
    }

    #[test]
    fn different_quantities_do_not_convert() {
        assert!(Conversion::between(find("degC").unwrap(), find("Pa").unwrap()).is_none());
        assert!(find("MA").is_none());
        assert_eq!(find("kelvin").unwrap().quantity.name(), "temperature");
    }
}
