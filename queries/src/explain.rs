//! `edgeflow explain`: the planned graph as text, Graphviz dot or Mermaid, each node with its
//! output schema.

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

/// The plan as a Graphviz `dot` digraph: one box per node labelled with its name, type and
/// schema; edges follow the data.
///
/// `edgeflow explain --format dot q.toml | dot -Tsvg > pipeline.svg`
pub fn explain_dot(plan: &Plan) -> String {
    let mut out = String::new();
    let name = if plan.settings.name.is_empty() {
        "pipeline"
    } else {
        &plan.settings.name
    };
    let _ = writeln!(out, "digraph \"{}\" {{", escape_dot(name));
    let _ = writeln!(
        out,
        "  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];"
    );
    for (index, node) in plan.nodes.iter().enumerate() {
        let shape = match node.role {
            NodeRole::Source => "cds",
            NodeRole::Operator => "box",
            NodeRole::Sink => "folder",
        };
        let mut label = format!("{} [{}]", node.name, node.kind);
        if node.role != NodeRole::Sink {
            for field in node.schema.fields() {
                label.push_str(&format!(
                    "\\l{}: {}",
                    field.name(),
                    type_name(field.data_type())
                ));
            }
            label.push_str("\\l");
        }
        let _ = writeln!(
            out,
            "  n{index} [shape={shape}, label=\"{}\"];",
            escape_dot(&label).replace("\\\\l", "\\l")
        );
    }
    for (index, node) in plan.nodes.iter().enumerate() {
        for input in &node.inputs {
            let _ = writeln!(out, "  n{input} -> n{index};");
        }
    }
    out.push_str("}\n");
    out
}

fn escape_dot(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The plan as a Mermaid flowchart (renders in GitHub and GitLab Markdown).
pub fn explain_mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    for (index, node) in plan.nodes.iter().enumerate() {
        let mut label = format!("<b>{}</b> [{}]", node.name, node.kind);
        if node.role != NodeRole::Sink {
            for field in node.schema.fields() {
                label.push_str(&format!(
                    "<br/>{}: {}",
                    field.name(),
                    type_name(field.data_type())
                ));
            }
        }
        let label = label.replace('"', "#quot;");
        let _ = match node.role {
            NodeRole::Source => writeln!(out, "  n{index}[/\"{label}\"/]"),
            NodeRole::Operator => writeln!(out, "  n{index}[\"{label}\"]"),
            NodeRole::Sink => writeln!(out, "  n{index}[(\"{label}\")]"),
        };
    }
    for (index, node) in plan.nodes.iter().enumerate() {
        for input in &node.inputs {
            let _ = writeln!(out, "  n{input} --> n{index}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = r#"
[pipeline]
name = "demo"
[sources.s]
type = "simulator"
schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64" }
[operators.c]
type = "clean"
inputs = ["s"]
drop_null = ["temperature"]
[sinks.out]
type = "stdout"
inputs = ["c"]
"#;

    #[test]
    fn text_lists_nodes_with_schemas() {
        let text = explain(&crate::plan(QUERY).unwrap());
        assert!(text.contains("pipeline demo"), "{text}");
        assert!(text.contains("operator c [clean] <- s"), "{text}");
        assert!(text.contains("    temperature: float64"), "{text}");
    }

    #[test]
    fn dot_has_every_node_and_edge() {
        let dot = explain_dot(&crate::plan(QUERY).unwrap());
        assert!(dot.starts_with("digraph \"demo\" {"), "{dot}");
        assert!(
            dot.contains("n0 [shape=cds, label=\"s [simulator]\\ldevice_id: string"),
            "{dot}"
        );
        assert!(
            dot.contains("n0 -> n1;") && dot.contains("n1 -> n2;"),
            "{dot}"
        );
        assert!(dot.trim_end().ends_with('}'));
    }

    #[test]
    fn mermaid_has_every_node_and_edge() {
        let mermaid = explain_mermaid(&crate::plan(QUERY).unwrap());
        assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
        assert!(
            mermaid.contains("n2[(\"<b>out</b> [stdout]\")]"),
            "{mermaid}"
        );
        assert!(
            mermaid.contains("n0 --> n1") && mermaid.contains("n1 --> n2"),
            "{mermaid}"
        );
    }
}
