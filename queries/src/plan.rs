//! Validation and planning: a query file becomes a [`Plan`] with every node's schema known,
//! or a list of every [`Diagnostic`] found.
//!
//! Planning never touches the outside world: it can run on a laptop for a file meant for a
//! gateway. [`Plan::into_graph`] is the step that opens files and folders.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use edgeflow_connectors::{SinkConfig, SourceConfig};
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::testing::CollectSink;
use edgeflow_engine::{
    BoxError, DataflowOperator, EngineError, Graph, NodeKind, NodeRole, OptionError,
    WatermarkPolicy,
};
use serde::Deserialize;

use crate::declare::{Declared, check_server, check_top_level, declare_nodes, kind_names};
use crate::diagnostic::Diagnostic;
use crate::document::Document;
use crate::hints::{hint_for, option_diagnostic};

/// Settings from the `[pipeline]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// Name of the pipeline: shown in logs and written into every Parquet file's metadata.
    #[serde(default)]
    pub name: String,
    /// Dataflow worker threads. Default: one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Most state the pipeline's stateful operators may hold together, such as `"64MB"`
    /// (estimated; see `edgeflow_engine::memory`). When reached, each window operator emits
    /// its oldest window early. Default: no limit.
    #[serde(default)]
    pub memory_limit: Option<String>,
}

impl PipelineSettings {
    /// `memory_limit` in bytes (`None` when unset or invalid; the planner reports invalid
    /// ones).
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        self.memory_limit
            .as_deref()
            .and_then(|text| edgeflow_engine::memory::parse_bytes(text).ok())
    }
}

/// Settings from the `[server]` table: the operations HTTP server (`/health`, `/ready`,
/// `/metrics`, `/api/pipeline`) that `edgeflow run` starts.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// The address to listen on, like `"127.0.0.1:9400"`.
    pub listen: String,
    /// `/ready` reports a source whose watermark has not moved for this long. Default
    /// `"5m"`; `"off"` never does.
    #[serde(default = "default_watermark_stall")]
    pub watermark_stall: String,
}

fn default_watermark_stall() -> String {
    "5m".into()
}

impl ServerSettings {
    /// `watermark_stall` as a duration (`None` for `"off"` or when invalid; the planner
    /// reports invalid ones).
    pub fn watermark_stall(&self) -> Option<std::time::Duration> {
        if self.watermark_stall.trim().eq_ignore_ascii_case("off") {
            return None;
        }
        edgeflow_engine::time::parse_duration(&self.watermark_stall).ok()
    }
}

enum Component {
    SideOutput {
        index: usize,
        schema: SchemaRef,
    },
    Source {
        config: Box<dyn SourceConfig>,
        watermark: WatermarkPolicy,
    },
    Operator(Arc<dyn DataflowOperator>),
    Sink {
        config: Box<dyn SinkConfig>,
        input_schema: SchemaRef,
    },
}

/// One node of a plan.
pub struct PlannedNode {
    /// Name from the query file.
    pub name: String,
    /// Source, operator or sink.
    pub role: NodeRole,
    /// The `type` value.
    pub kind: String,
    /// Indices (into [`Plan::nodes`]) of the nodes it reads from.
    pub inputs: Vec<usize>,
    /// Output schema (sources and operators) or input schema (sinks).
    pub schema: SchemaRef,
    component: Component,
}

/// A validated pipeline: nodes in topological order (sources, operators, sinks).
pub struct Plan {
    /// The `[pipeline]` settings.
    pub settings: PipelineSettings,
    /// The `[server]` settings, when the file has that table.
    pub server: Option<ServerSettings>,
    /// The nodes.
    pub nodes: Vec<PlannedNode>,
    /// Problems that do not stop the pipeline from running.
    pub warnings: Vec<Diagnostic>,
}

/// Errors from [`Plan::into_graph`]: a source or sink could not be created.
#[derive(Debug, thiserror::Error)]
#[error("{role} '{node}' could not start")]
pub struct BuildError {
    /// "source" or "sink".
    pub role: &'static str,
    /// Node name.
    pub node: String,
    /// What went wrong.
    #[source]
    pub source: BoxError,
}

impl Plan {
    /// Every side output of every operator and source as `("node.port", schema)`, whether
    /// or not a node of the pipeline reads it.
    pub fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        let mut out = Vec::new();
        for node in &self.nodes {
            for (port, schema) in declared_side_outputs(Some(&node.component)) {
                out.push((format!("{}.{port}", node.name), schema));
            }
        }
        out
    }

    /// The graph `edgeflow test` runs: every source replaced by the one `make_source` returns
    /// for it, every sink by a collecting sink, and a collecting sink added behind each node
    /// named in `taps`. Nothing touches the outside world.
    ///
    /// Returns the graph and the collectors by node name (a sink's collector holds what the
    /// sink would have written).
    pub(crate) fn into_test_graph(
        self,
        make_source: &mut dyn FnMut(&str, &SchemaRef) -> Box<dyn edgeflow_engine::Source>,
        taps: &[String],
    ) -> Result<(Graph, Vec<(String, CollectSink)>), EngineError> {
        let mut graph = Graph::new(self.settings.name.clone());
        let mut collectors = Vec::new();
        // Tap sinks shift graph indices, so map plan indices to graph indices.
        let mut graph_index: Vec<usize> = Vec::with_capacity(self.nodes.len());
        let planned_names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for node in self.nodes {
            // Taken before the component moves into the graph.
            let side_outputs = declared_side_outputs(Some(&node.component));
            let kind = match node.component {
                Component::Source { watermark, .. } => NodeKind::Source {
                    source: make_source(&node.name, &node.schema),
                    schema: node.schema.clone(),
                    watermark,
                },
                Component::Operator(operator) => NodeKind::Operator(operator),
                Component::SideOutput { index, schema } => NodeKind::SideOutput { index, schema },
                Component::Sink { .. } => {
                    let sink = CollectSink::new();
                    collectors.push((node.name.clone(), sink.clone()));
                    NodeKind::Sink {
                        sink: Box::new(sink),
                    }
                }
            };
            let is_sink = matches!(kind, NodeKind::Sink { .. });
            let side_outputs = match &kind {
                NodeKind::Operator(operator) => operator.side_outputs(),
                NodeKind::Source { .. } => side_outputs,
                _ => Vec::new(),
            };
            let inputs = node.inputs.iter().map(|&i| graph_index[i]).collect();
            let added = graph.add(node.name.clone(), inputs, kind)?;
            graph_index.push(added);
            // Side outputs the pipeline does not read but a test expects rows from.
            for (index, (port, schema)) in side_outputs.into_iter().enumerate() {
                let name = format!("{}.{port}", node.name);
                if taps.contains(&name) && !planned_names.contains(&name) {
                    let side = graph.add(
                        name.clone(),
                        vec![added],
                        NodeKind::SideOutput { index, schema },
                    )?;
                    let sink = CollectSink::new();
                    collectors.push((name.clone(), sink.clone()));
                    graph.add(
                        format!("{name} (test tap)"),
                        vec![side],
                        NodeKind::Sink {
                            sink: Box::new(sink),
                        },
                    )?;
                }
            }
            if !is_sink && taps.contains(&node.name) {
                let sink = CollectSink::new();
                collectors.push((node.name.clone(), sink.clone()));
                let tap = format!("{} (test tap)", node.name);
                graph.add(
                    tap,
                    vec![added],
                    NodeKind::Sink {
                        sink: Box::new(sink),
                    },
                )?;
            }
        }
        Ok((graph, collectors))
    }

    /// Creates the running sources and sinks and returns the engine graph.
    ///
    /// # Errors
    /// The first source or sink that cannot be created (missing input file, unwritable
    /// output folder, …).
    pub fn into_graph(self) -> Result<Graph, BuildError> {
        let mut graph = Graph::new(self.settings.name.clone());
        for node in self.nodes {
            let kind = match node.component {
                Component::Source { config, watermark } => NodeKind::Source {
                    schema: node.schema,
                    watermark,
                    source: config.build().map_err(|source| BuildError {
                        role: "source",
                        node: node.name.clone(),
                        source,
                    })?,
                },
                Component::Operator(operator) => NodeKind::Operator(operator),
                Component::SideOutput { index, schema } => NodeKind::SideOutput { index, schema },
                Component::Sink {
                    config,
                    input_schema,
                } => NodeKind::Sink {
                    sink: config.build(&input_schema).map_err(|source| BuildError {
                        role: "sink",
                        node: node.name.clone(),
                        source,
                    })?,
                },
            };
            graph
                .add(node.name.clone(), node.inputs, kind)
                .map_err(|error| BuildError {
                    role: "node",
                    node: node.name,
                    source: Box::new(error),
                })?;
        }
        Ok(graph)
    }
}

pub(crate) const SECTIONS: [(&str, NodeRole); 3] = [
    ("sources", NodeRole::Source),
    ("operators", NodeRole::Operator),
    ("sinks", NodeRole::Sink),
];

pub(crate) fn role_word(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Source => "source",
        NodeRole::Operator => "operator",
        NodeRole::Sink => "sink",
    }
}

fn section_of(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Source => "sources",
        NodeRole::Operator => "operators",
        NodeRole::Sink => "sinks",
    }
}

/// Checks a query file and plans it, taking `${VAR}` values from the process environment.
///
/// # Errors
/// Every error found (and the warnings), in file order.
pub fn plan(source: &str) -> Result<Plan, Vec<Diagnostic>> {
    plan_with_env(source, &|name| std::env::var(name).ok())
}

/// [`plan`] with environment variables looked up through `lookup` (for tests and embedders).
///
/// # Errors
/// Every error found (and the warnings), in file order.
pub fn plan_with_env(
    source: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut document = Document::parse(source)?;
    let mut diagnostics = Vec::new();
    for error in crate::env::interpolate(&mut document.values, lookup) {
        let path: Vec<&str> = error.path.iter().map(String::as_str).collect();
        diagnostics
            .push(Diagnostic::error(error.message, document.span_of(&path)).with_hint(error.hint));
    }
    let settings = check_top_level(&document, &mut diagnostics);
    let server = check_server(&document, &mut diagnostics);
    let declared = declare_nodes(&document, &mut diagnostics);
    let planned = plan_nodes(&document, declared, &mut diagnostics);
    diagnostics.sort_by_key(|d| (d.severity, d.span.as_ref().map_or(usize::MAX, |s| s.start)));
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    let nodes = planned.expect("no errors means every node planned");
    Ok(Plan {
        settings,
        server,
        nodes,
        warnings: diagnostics,
    })
}

/// Plans every declared node; `None` when any error stopped a node from planning.
fn plan_nodes(
    document: &Document<'_>,
    declared: Vec<Declared>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Vec<PlannedNode>> {
    let index_of: HashMap<&str, usize> = declared
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    let names: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
    let kinds: Vec<String> = declared.iter().map(|d| d.kind.clone()).collect();
    let mut ok = true;

    // Resolve inputs to indices. `"op.port"` names a side output of operator `op`; it is
    // checked against the operator's side outputs once the operator is planned.
    let mut inputs: Vec<Vec<usize>> = Vec::with_capacity(declared.len());
    let mut side_refs: HashMap<(usize, usize), String> = HashMap::new();
    for (reader, node) in declared.iter().enumerate() {
        let section = section_of(node.role);
        let mut resolved = Vec::new();
        for (position, input) in node.input_names.iter().enumerate() {
            let span = document.span_of(&[section, &node.name, "inputs", &position.to_string()]);
            match index_of.get(input.as_str()) {
                Some(&i) if declared[i].role == NodeRole::Sink => {
                    diagnostics.push(Diagnostic::error(
                        format!(
                            "{} '{}' reads from '{input}', which is a sink (sinks have no output)",
                            role_word(node.role),
                            node.name
                        ),
                        span,
                    ));
                    ok = false;
                }
                Some(&i) if i == index_of[node.name.as_str()] => {
                    diagnostics.push(Diagnostic::error(
                        format!("{} '{}' reads from itself", role_word(node.role), node.name),
                        span,
                    ));
                    ok = false;
                }
                Some(&i) => resolved.push(i),
                None if input.rsplit_once('.').is_some_and(|(base, _)| {
                    index_of
                        .get(base)
                        .is_some_and(|&b| declared[b].role != NodeRole::Sink && b != reader)
                }) =>
                {
                    let (base, port) = input.rsplit_once('.').expect("checked above");
                    side_refs.insert((reader, resolved.len()), port.to_string());
                    resolved.push(index_of[base]);
                }
                None => {
                    let candidates = names.iter().copied().filter(|n| *n != node.name);
                    diagnostics.push(
                        Diagnostic::error(
                            format!(
                                "{} '{}' reads from '{input}', which is not defined",
                                role_word(node.role),
                                node.name
                            ),
                            span,
                        )
                        .with_hint(hint_for(
                            input,
                            candidates,
                            "defined nodes are",
                        )),
                    );
                    ok = false;
                }
            }
        }
        inputs.push(resolved);
    }

    // Topological order (Kahn), keeping file order among ready nodes; sinks last.
    let mut remaining_inputs: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); declared.len()];
    for (node, ins) in inputs.iter().enumerate() {
        for &input in ins {
            readers[input].push(node);
        }
    }
    let mut order = Vec::with_capacity(declared.len());
    let mut ready: std::collections::BTreeSet<(u8, usize)> = (0..declared.len())
        .filter(|&i| remaining_inputs[i] == 0)
        .map(|i| (rank(declared[i].role), i))
        .collect();
    while let Some((_, node)) = ready.pop_first() {
        order.push(node);
        for &reader in &readers[node] {
            remaining_inputs[reader] -= 1;
            if remaining_inputs[reader] == 0 {
                ready.insert((rank(declared[reader].role), reader));
            }
        }
    }
    if order.len() < declared.len() {
        let stuck: Vec<usize> = (0..declared.len()).filter(|i| !order.contains(i)).collect();
        for &node in &stuck {
            if remaining_inputs[node] == 0 || inputs[node].len() < declared[node].input_names.len()
            {
                continue; // blocked by an input error already reported
            }
            let cycle = describe_cycle(node, &inputs, &stuck, &declared);
            if let Some(cycle) = cycle {
                let section = section_of(declared[node].role);
                diagnostics.push(
                    Diagnostic::error(
                        format!(
                            "{} '{}' is part of a cycle: {cycle}",
                            role_word(declared[node].role),
                            declared[node].name
                        ),
                        document.span_of(&[section, &declared[node].name, "inputs"]),
                    )
                    .with_hint(Some(
                        "a pipeline must flow one way, from sources to sinks".into(),
                    )),
                );
            }
        }
        ok = false;
    }
    if !declared.iter().any(|d| d.role == NodeRole::Sink) {
        diagnostics.push(
            Diagnostic::error(
                "the pipeline has no sinks, so its results would go nowhere",
                None,
            )
            .with_hint(Some(
                "add a [sinks.<name>] table, for example type = \"parquet\" or \"stdout\"".into(),
            )),
        );
        ok = false;
    }
    if !declared.iter().any(|d| d.role == NodeRole::Source) {
        diagnostics.push(
            Diagnostic::error("the pipeline has no sources", None).with_hint(Some(
                "add a [sources.<name>] table, for example type = \"simulator\"".into(),
            )),
        );
        ok = false;
    }

    // Parse options and compute schemas in topological order.
    let mut schemas: Vec<Option<SchemaRef>> = vec![None; declared.len()];
    let mut components: Vec<Option<Component>> = (0..declared.len()).map(|_| None).collect();
    let mut side_ports: HashMap<(usize, String), (usize, SchemaRef)> = HashMap::new();
    for &node in &order {
        let decl = &declared[node];
        let section = section_of(decl.role);
        let base = [section, decl.name.as_str()];
        let what = format!("{} '{}'", role_word(decl.role), decl.name);
        // A node whose inputs did not all resolve still has its own options checked.
        let input_schemas: Option<Vec<SchemaRef>> = if inputs[node].len() == decl.input_names.len()
        {
            let mut input_schemas = Vec::with_capacity(inputs[node].len());
            for (position, &input) in inputs[node].iter().enumerate() {
                let schema = match side_refs.get(&(node, position)) {
                    None => schemas[input].clone(),
                    Some(port) => match side_output_schema(components[input].as_ref(), port) {
                        Ok((index, schema)) => {
                            side_ports.insert((input, port.clone()), (index, schema.clone()));
                            Some(schema)
                        }
                        Err(available) => {
                            let span = document.span_of(&[
                                section,
                                &decl.name,
                                "inputs",
                                &position.to_string(),
                            ]);
                            let role = role_word(declared[input].role);
                            let hint = if available.is_empty() {
                                format!("this {role} has no side outputs")
                            } else {
                                format!("its side outputs are: {}", available.join(", "))
                            };
                            diagnostics.push(
                                Diagnostic::error(
                                    format!("{what} reads '{}.{port}', but {role} '{}' has no side output '{port}'", names[input], names[input]),
                                    span,
                                )
                                .with_hint(Some(hint)),
                            );
                            ok = false;
                            None
                        }
                    },
                };
                input_schemas.push(schema);
            }
            input_schemas.into_iter().collect()
        } else {
            None
        };
        let result = plan_one(decl, input_schemas);
        match result {
            Ok(Some((schema, component))) => {
                schemas[node] = Some(schema);
                components[node] = Some(component);
            }
            Ok(None) => ok = false, // an input failed; its error is already reported
            Err(PlanFailure::UnknownKind) => {
                let known = kind_names(decl.role);
                diagnostics.push(
                    Diagnostic::error(
                        format!(
                            "{what}: unknown {} type '{}'",
                            role_word(decl.role),
                            decl.kind
                        ),
                        document.span_of(&[section, &decl.name, "type"]),
                    )
                    .with_hint(hint_for(
                        &decl.kind,
                        known.iter().copied(),
                        &format!("{} types are", role_word(decl.role)),
                    )),
                );
                ok = false;
            }
            Err(PlanFailure::Options(errors)) => {
                for error in errors {
                    diagnostics.push(option_diagnostic(document, &base, &what, error, &[]));
                }
                ok = false;
            }
        }
    }

    // Nodes whose output never reaches a sink (only worth saying about a pipeline that
    // otherwise plans).
    let mut feeds_sink = vec![false; schemas.len()];
    for &node in order.iter().rev() {
        if components[node]
            .as_ref()
            .is_some_and(|c| matches!(c, Component::Sink { .. }))
            || feeds_sink[node]
        {
            feeds_sink[node] = true;
            for &input in &inputs[node] {
                feeds_sink[input] = true;
            }
        }
    }
    for &node in order.iter().filter(|_| ok) {
        if !feeds_sink[node]
            && components[node].is_some()
            && let Some(decl_name) = names.get(node)
        {
            let section = match &components[node] {
                Some(Component::Source { .. }) => "sources",
                _ => "operators",
            };
            diagnostics.push(Diagnostic::warning(
                format!("the output of '{decl_name}' is not used by any sink"),
                document.header_span(section, decl_name),
            ));
        }
    }

    if !ok {
        return None;
    }
    let mut planned: Vec<PlannedNode> = Vec::with_capacity(order.len());
    let mut new_index = vec![usize::MAX; components.len()];
    let mut side_nodes: HashMap<(usize, String), usize> = HashMap::new();
    for &node in &order {
        let component = components[node].take()?;
        let role = match component {
            Component::Source { .. } => NodeRole::Source,
            Component::Operator(_) | Component::SideOutput { .. } => NodeRole::Operator,
            Component::Sink { .. } => NodeRole::Sink,
        };
        let mut node_inputs = Vec::with_capacity(inputs[node].len());
        for (position, &input) in inputs[node].iter().enumerate() {
            let Some(port) = side_refs.get(&(node, position)) else {
                node_inputs.push(new_index[input]);
                continue;
            };
            // A side output becomes its own node, right after its operator's readers need it.
            let key = (input, port.clone());
            let index = match side_nodes.get(&key) {
                Some(&index) => index,
                None => {
                    let (port_index, schema) = side_ports.get(&key)?.clone();
                    planned.push(PlannedNode {
                        name: format!("{}.{port}", names[input]),
                        role: NodeRole::Operator,
                        kind: format!("side output of {}", names[input]),
                        inputs: vec![new_index[input]],
                        schema: schema.clone(),
                        component: Component::SideOutput {
                            index: port_index,
                            schema,
                        },
                    });
                    side_nodes.insert(key, planned.len() - 1);
                    planned.len() - 1
                }
            };
            node_inputs.push(index);
        }
        new_index[node] = planned.len();
        planned.push(PlannedNode {
            name: names[node].to_string(),
            role,
            kind: kinds[node].clone(),
            inputs: node_inputs,
            schema: schemas[node].clone().expect("planned nodes have schemas"),
            component,
        });
    }
    Some(planned)
}

fn rank(role: NodeRole) -> u8 {
    match role {
        NodeRole::Source => 0,
        NodeRole::Operator => 1,
        NodeRole::Sink => 2,
    }
}

fn describe_cycle(
    start: usize,
    inputs: &[Vec<usize>],
    stuck: &[usize],
    declared: &[Declared],
) -> Option<String> {
    // Walk inputs among stuck nodes until a node repeats.
    let mut path = vec![start];
    let mut current = start;
    for _ in 0..=stuck.len() {
        let next = *inputs[current].iter().find(|i| stuck.contains(i))?;
        if let Some(position) = path.iter().position(|&p| p == next) {
            // `path` follows inputs backwards; data flows the other way round.
            let mut cycle: Vec<&str> = path[position..]
                .iter()
                .rev()
                .map(|&i| declared[i].name.as_str())
                .collect();
            cycle.push(cycle[0]);
            return if path[position..].contains(&start) {
                Some(cycle.join(" → "))
            } else {
                None
            };
        }
        path.push(next);
        current = next;
    }
    None
}

enum PlanFailure {
    UnknownKind,
    Options(Vec<OptionError>),
}

/// A registry entry's option parser.
type ParseFn<C> = fn(toml::Table) -> Result<C, OptionError>;

/// Finds the kind named by the node's `type` among `kinds` and parses the node's options.
fn parse_node<K, C>(
    kinds: &[K],
    name: fn(&K) -> &'static str,
    parse: fn(&K) -> ParseFn<C>,
    decl: &Declared,
) -> Result<C, PlanFailure> {
    let kind = kinds
        .iter()
        .find(|k| name(k) == decl.kind)
        .ok_or(PlanFailure::UnknownKind)?;
    parse(kind)(decl.options.clone()).map_err(|e| PlanFailure::Options(vec![e]))
}

fn plan_one(
    decl: &Declared,
    input_schemas: Option<Vec<SchemaRef>>,
) -> Result<Option<(SchemaRef, Component)>, PlanFailure> {
    match decl.role {
        NodeRole::Source => {
            let config = parse_node(
                edgeflow_connectors::sources(),
                |k| k.name,
                |k| k.parse,
                decl,
            )?;
            let schema = config.schema().map_err(PlanFailure::Options)?;
            let watermark = config.watermark();
            Ok(Some((schema, Component::Source { config, watermark })))
        }
        NodeRole::Operator => {
            let config = parse_node(
                edgeflow_operators::operators(),
                |k| k.name,
                |k| k.parse,
                decl,
            )?;
            let Some(input_schemas) = input_schemas else {
                return Ok(None);
            };
            let operator = config.plan(&input_schemas).map_err(PlanFailure::Options)?;
            Ok(Some((
                operator.output_schema(),
                Component::Operator(operator),
            )))
        }
        NodeRole::Sink => {
            let config = parse_node(edgeflow_connectors::sinks(), |k| k.name, |k| k.parse, decl)?;
            let Some(input_schemas) = input_schemas else {
                return Ok(None);
            };
            let first = input_schemas[0].clone();
            let mut errors = Vec::new();
            for (position, schema) in input_schemas.iter().enumerate().skip(1) {
                if schema.fields() != first.fields() {
                    errors.push(OptionError::at(
                        &format!("inputs.{position}"),
                        format!("input '{}' has a different schema from input '{}'; a sink's inputs must all have the same columns", decl.input_names[position], decl.input_names[0]),
                    ));
                }
            }
            errors.extend(config.check(&first));
            if !errors.is_empty() {
                return Err(PlanFailure::Options(errors));
            }
            Ok(Some((
                first.clone(),
                Component::Sink {
                    config,
                    input_schema: first,
                },
            )))
        }
    }
}

/// The side outputs a planned operator or source declares.
fn declared_side_outputs(component: Option<&Component>) -> Vec<(String, SchemaRef)> {
    match component {
        Some(Component::Operator(operator)) => operator.side_outputs(),
        Some(Component::Source { config, .. }) => config.side_outputs(),
        _ => Vec::new(),
    }
}

/// The position and schema of `port` among the side outputs of a planned operator or
/// source, or the names of the side outputs it does have.
fn side_output_schema(
    component: Option<&Component>,
    port: &str,
) -> Result<(usize, SchemaRef), Vec<String>> {
    let outputs = declared_side_outputs(component);
    match outputs.iter().position(|(name, _)| name == port) {
        Some(index) => Ok((index, outputs[index].1.clone())),
        None => Err(outputs.into_iter().map(|(name, _)| name).collect()),
    }
}

/// Counts of nodes by role, for summaries.
pub fn count_by_role(plan: &Plan) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for node in &plan.nodes {
        *counts.entry(role_word(node.role)).or_insert(0) += 1;
    }
    counts
}
