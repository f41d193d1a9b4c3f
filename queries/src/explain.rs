//! `edgeflow explain`: the planned graph as text, each node with its output schema.

use std::fmt::Write;

use edgeflow_engine::NodeRole;
use edgeflow_engine::schema::{event_time_column, type_name};

use crate::plan::Plan;

/// Renders the plan as indented text: one block per node, with its type, inputs and schema.
pub fn explain(plan: &Plan) -> String {
    let mut out = String::new();
    let name = if plan.settings.name.is_empty() {
        "(unnamed)"
    } else {
        &plan.settings.name
    };
    let workers = plan
        .settings
        .workers
        .map_or("one per core".to_string(), |w| w.to_string());
    let _ = writeln!(out, "pipeline {name}  (workers: {workers})");
    for node in &plan.nodes {
        let role = match node.role {
            NodeRole::Source => "source",
            NodeRole::Operator => "operator",
            NodeRole::Sink => "sink",
        };
        let inputs: Vec<&str> = node
            .inputs
            .iter()
            .map(|&i| plan.nodes[i].name.as_str())
            .collect();
        let _ = write!(out, "\n{role} {} [{}]", node.name, node.kind);
        if !inputs.is_empty() {
            let _ = write!(out, " <- {}", inputs.join(", "));
        }
        out.push('\n');
        if node.role == NodeRole::Sink {
            continue;
        }
        let event_time = event_time_column(&node.schema).map(|(i, _)| i);
        for (index, field) in node.schema.fields().iter().enumerate() {
            let nullable = if field.is_nullable() { "" } else { " not null" };
            let marker = if Some(index) == event_time {
                "  (event time)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {}: {}{nullable}{marker}",
                field.name(),
                type_name(field.data_type())
            );
        }
    }
    out
}
