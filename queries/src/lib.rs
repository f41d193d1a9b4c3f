//! Query files: the TOML model, validation with `file:line:col` diagnostics, and planning
//! into an engine [`Graph`](edgeflow_engine::Graph).
//!
//! ```text
//!  text ──Document::parse──▶ values + spans ──plan()──▶ Plan ──into_graph()──▶ Graph ──▶ engine::run
//!                                 │                      │
//!                                 └── every error ──▶ Diagnostic (file:line:col, hint)
//! ```
//!
//! A query file has four sections: `[pipeline]` settings, and named nodes under `[sources.*]`,
//! `[operators.*]` and `[sinks.*]`. Each node has a `type` (looked up in the connector and
//! operator registries) and, unless it is a source, `inputs` naming the nodes it reads.
//! [`plan()`] checks everything it can without touching the outside world and reports every
//! problem at once.

mod declare;
pub mod diagnostic;
pub mod document;
pub mod env;
pub mod explain;
pub mod fixture;
mod hints;
pub mod plan;

pub use diagnostic::{Diagnostic, Severity, render};
pub use explain::{explain, explain_dot, explain_mermaid};
pub use plan::{
    BuildError, PipelineSettings, Plan, PlannedNode, ServerSettings, plan, plan_with_env,
};
