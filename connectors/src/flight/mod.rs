//! Arrow Flight upstream: the `flight` sink that ships batches from the gateway to a cloud
//! collector over mutual TLS with a local store-and-forward spool, and the collector that
//! receives them (`edgeflow collect`).
//!
//! [`protocol`] is the agreement both ends follow: one `DoPut` per spool segment, addressed
//! by `["edgeflow", stream, segment id]`, acknowledged after the collector's durable write.

pub mod batcher;
pub mod collector;
pub mod options;
pub mod protocol;
pub mod sink;
pub mod spool;
pub mod tls;

#[cfg(test)]
mod sink_tests;
