//! The first pass over a query file: the `[pipeline]` table and every node's declaration
//! (`type`, `inputs`), before any node's own options are checked.

use std::collections::HashMap;

use edgeflow_engine::NodeRole;

use crate::diagnostic::Diagnostic;
use crate::document::Document;
use crate::hints::{hint_for, option_diagnostic};
use crate::plan::{PipelineSettings, SECTIONS, ServerSettings, role_word};

/// A node as declared, before its options are checked.
pub(crate) struct Declared {
    pub(crate) name: String,
    pub(crate) role: NodeRole,
    pub(crate) kind: String,
    pub(crate) input_names: Vec<String>,
    pub(crate) options: toml::Table,
}

pub(crate) fn check_top_level(
    document: &Document<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> PipelineSettings {
    // `tests` holds `edgeflow test` cases (see `fixture`); planning ignores it.
    const TOP: [&str; 6] = [
        "pipeline",
        "server",
        "sources",
        "operators",
        "sinks",
        "tests",
    ];
    for key in document.values.keys() {
        if !TOP.contains(&key.as_str()) {
            diagnostics.push(
                Diagnostic::error(
                    format!("unknown section '{key}'"),
                    document.key_span_of(&[key]),
                )
                .with_hint(hint_for(key, TOP.iter().copied(), "sections are")),
            );
        }
    }
    let Some(value) = document.values.get("pipeline") else {
        return PipelineSettings::default();
    };
    let Some(table) = value.as_table() else {
        diagnostics.push(Diagnostic::error(
            "'pipeline' must be a table",
            document.span_of(&["pipeline"]),
        ));
        return PipelineSettings::default();
    };
    match edgeflow_engine::parse_options::<PipelineSettings>(table.clone()) {
        Ok(settings) => {
            if settings.workers == Some(0) {
                diagnostics.push(Diagnostic::error(
                    "workers must be at least 1",
                    document.span_of(&["pipeline", "workers"]),
                ));
            }
            if let Some(Err(message)) = settings
                .memory_limit
                .as_deref()
                .map(edgeflow_engine::memory::parse_bytes)
            {
                diagnostics.push(Diagnostic::error(
                    message,
                    document.span_of(&["pipeline", "memory_limit"]),
                ));
            }
            settings
        }
        Err(error) => {
            diagnostics.push(option_diagnostic(
                document,
                &["pipeline"],
                "[pipeline]",
                error,
                &["name", "workers", "memory_limit"],
            ));
            PipelineSettings::default()
        }
    }
}

/// The `[server]` table, checked (the operations server; see `ServerSettings`).
pub(crate) fn check_server(
    document: &Document<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<ServerSettings> {
    let value = document.values.get("server")?;
    let Some(table) = value.as_table() else {
        diagnostics.push(Diagnostic::error(
            "'server' must be a table, like [server] listen = \"127.0.0.1:9400\"",
            document.span_of(&["server"]),
        ));
        return None;
    };
    match edgeflow_engine::parse_options::<ServerSettings>(table.clone()) {
        Ok(settings) => {
            if settings
                .listen
                .trim()
                .parse::<std::net::SocketAddr>()
                .is_err()
            {
                diagnostics.push(
                    Diagnostic::error(
                        format!("'{}' is not an address to listen on", settings.listen),
                        document.span_of(&["server", "listen"]),
                    )
                    .with_hint(Some(
                        "write ip:port, like \"127.0.0.1:9400\" (or \"0.0.0.0:9400\" for every interface)".to_string(),
                    )),
                );
            }
            let stall = settings.watermark_stall.trim();
            if !stall.eq_ignore_ascii_case("off")
                && let Err(message) = edgeflow_engine::time::parse_duration(stall)
            {
                diagnostics.push(Diagnostic::error(
                    message,
                    document.span_of(&["server", "watermark_stall"]),
                ));
            }
            Some(settings)
        }
        Err(error) => {
            diagnostics.push(option_diagnostic(
                document,
                &["server"],
                "[server]",
                error,
                &["listen", "watermark_stall"],
            ));
            None
        }
    }
}

pub(crate) fn kind_names(role: NodeRole) -> Vec<&'static str> {
    match role {
        NodeRole::Source => edgeflow_connectors::sources()
            .iter()
            .map(|k| k.name)
            .collect(),
        NodeRole::Operator => edgeflow_operators::operators()
            .iter()
            .map(|k| k.name)
            .collect(),
        NodeRole::Sink => edgeflow_connectors::sinks()
            .iter()
            .map(|k| k.name)
            .collect(),
    }
}

pub(crate) fn declare_nodes(
    document: &Document<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Declared> {
    let mut declared: Vec<Declared> = Vec::new();
    let mut seen: HashMap<String, NodeRole> = HashMap::new();
    for (section, role) in SECTIONS {
        let Some(value) = document.values.get(section) else {
            continue;
        };
        let Some(nodes) = value.as_table() else {
            diagnostics.push(Diagnostic::error(
                format!(
                    "'{section}' must be a table of named {}s, like [{section}.my_{}]",
                    role_word(role),
                    role_word(role)
                ),
                document.span_of(&[section]),
            ));
            continue;
        };
        for (name, node) in nodes {
            let at = |key: &str| document.span_of(&[section, name, key]);
            let header = document.header_span(section, name);
            let what = format!("{} '{name}'", role_word(role));
            if let Some(previous) = seen.get(name) {
                diagnostics.push(
                    Diagnostic::error(
                        format!(
                            "{what}: the name '{name}' is already used by a {}",
                            role_word(*previous)
                        ),
                        header.clone(),
                    )
                    .with_hint(Some(
                        "node names must be unique across sources, operators and sinks".into(),
                    )),
                );
                continue;
            }
            seen.insert(name.clone(), role);
            let Some(table) = node.as_table() else {
                diagnostics.push(Diagnostic::error(
                    format!("{what} must be a table"),
                    document.span_of(&[section, name]),
                ));
                continue;
            };
            let mut options = table.clone();
            let kind = match options.remove("type") {
                Some(toml::Value::String(kind)) => kind,
                Some(other) => {
                    diagnostics.push(Diagnostic::error(
                        format!(
                            "{what}: 'type' must be a string, found {}",
                            other.type_str()
                        ),
                        at("type"),
                    ));
                    continue;
                }
                None => {
                    diagnostics.push(
                        Diagnostic::error(format!("{what} has no 'type'"), header).with_hint(Some(
                            format!(
                                "add type = \"...\"; {}s are: {}",
                                role_word(role),
                                kind_names(role).join(", ")
                            ),
                        )),
                    );
                    continue;
                }
            };
            let input_names = match (role, options.remove("inputs")) {
                (NodeRole::Source, None) => Vec::new(),
                (NodeRole::Source, Some(_)) => {
                    diagnostics.push(Diagnostic::error(
                        format!("{what}: sources take no 'inputs'"),
                        at("inputs"),
                    ));
                    Vec::new()
                }
                (_, None) => {
                    diagnostics.push(
                        Diagnostic::error(format!("{what} has no 'inputs'"), header).with_hint(
                            Some("add inputs = [\"<name of a source or operator>\"]".into()),
                        ),
                    );
                    continue;
                }
                (_, Some(toml::Value::Array(items))) => {
                    let mut names = Vec::new();
                    for (index, item) in items.iter().enumerate() {
                        match item.as_str() {
                            Some(input) => names.push(input.to_string()),
                            None => diagnostics.push(Diagnostic::error(
                                format!(
                                    "{what}: each input must be a node name (a string), found {}",
                                    item.type_str()
                                ),
                                document.span_of(&[section, name, "inputs", &index.to_string()]),
                            )),
                        }
                    }
                    if items.is_empty() {
                        diagnostics.push(Diagnostic::error(
                            format!("{what}: 'inputs' is empty"),
                            at("inputs"),
                        ));
                    }
                    names
                }
                (_, Some(toml::Value::String(single))) => {
                    diagnostics.push(
                        Diagnostic::error(format!("{what}: 'inputs' must be a list"), at("inputs"))
                            .with_hint(Some(format!("write inputs = [\"{single}\"]"))),
                    );
                    continue;
                }
                (_, Some(other)) => {
                    diagnostics.push(Diagnostic::error(
                        format!(
                            "{what}: 'inputs' must be a list of node names, found {}",
                            other.type_str()
                        ),
                        at("inputs"),
                    ));
                    continue;
                }
            };
            declared.push(Declared {
                name: name.clone(),
                role,
                kind,
                input_names,
                options,
            });
        }
    }
    declared
}
