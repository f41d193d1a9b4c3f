//! Option types shared by operator configs.
//!
//! [`OrderedMap`] reads a TOML table as `(key, value)` pairs in file order. Use it instead of a
//! `BTreeMap` when the order matters to the user: output columns follow it (`aggregates`), and
//! so do error messages (`drop_outside`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// A TOML table kept in file order, as `(key, value)` pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    /// True when the table has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = OrderedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    pairs.push((key, value));
                }
                Ok(OrderedMap(pairs))
            }
        }

        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Holder {
        map: OrderedMap<[f64; 2]>,
    }

    #[test]
    fn keeps_file_order_and_reports_paths() {
        let table: toml::Table = "map = { z = [1, 2.5], a = [0.0, 1.0] }".parse().unwrap();
        let holder: Holder = edgeflow_engine::parse_options(table).unwrap();
        assert_eq!(
            holder.map.0,
            [("z".to_string(), [1.0, 2.5]), ("a".to_string(), [0.0, 1.0])]
        );

        let table: toml::Table = "map = { z = [1, \"x\"] }".parse().unwrap();
        let error = edgeflow_engine::parse_options::<Holder>(table).unwrap_err();
        assert_eq!(error.path, ["map", "z", "1"]);

        let table: toml::Table = "map = 3".parse().unwrap();
        let error = edgeflow_engine::parse_options::<Holder>(table).unwrap_err();
        assert_eq!(error.path, ["map"]);
        assert!(error.message.contains("a table"), "{}", error.message);
    }
}
