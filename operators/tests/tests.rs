//! Integration tests of the operators, each run inside a real engine (source → operators →
//! collecting sink) on one and several workers.
//!
//! One test binary, so the engine links once:
//!
//! * `util`: the sensor schema, row builders, and helpers that read output back as values;
//! * `aggregates`: every window aggregate function through a tumbling window on 1 and 2
//!   workers, against a from-scratch oracle, and fixed scenarios worked out by hand;
//! * `anomaly`: the `anomaly` operator in scenarios and on the labelled NAB series (a score
//!   floor on six files; the full evaluation is ignored by default);
//! * `clean`: the `clean` operator end to end, with drop counts by reason;
//! * `enrich`, `enrich_stream`: `enrich` with a registry file reloaded while rows flow, and
//!   with registry rows streamed in from a second source;
//! * `expressions`: `filter` and `derive` end to end, and an ignored `filter` throughput test;
//! * `window`: fixed scenarios (late rows, cascaded windows, metrics) and a proptest that
//!   checks random out-of-order input against a from-scratch oracle on 1 and 2 workers, for
//!   tumbling and hopping windows with lateness and early firings;
//! * `window_emission`: emit_empty, early firings, revisions, max_keys, processing time and
//!   calendar alignment in fixed scenarios;
//! * `window_kinds`: session, sliding and count windows in scenarios worked out by hand, and
//!   proptests against from-scratch oracles on 1 and 2 workers.

mod aggregates;
mod anomaly;
mod clean;
mod clean_rules;
mod enrich;
mod enrich_stream;
mod expressions;
mod util;
mod window;
mod window_emission;
mod window_kinds;
