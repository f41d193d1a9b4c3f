//! The documentation matches the code: every function `docs/queries.md` documents exists,
//! every function that exists is documented, and so is every node kind.

use crate::util::repo;

fn queries_md() -> String {
    std::fs::read_to_string(repo().join("docs/queries.md")).unwrap()
}

/// Function names in the first cell of the rows of the table under `### Expressions`:
/// "| `lower(s)`, `upper(s)`, `trim(s)` | string |" gives lower, upper, trim.
fn documented_expression_functions(doc: &str) -> Vec<String> {
    let section = doc
        .split("### Expressions")
        .nth(1)
        .expect("an Expressions section");
    let section = section.split("\n## ").next().unwrap();
    let mut names = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line.split('|').nth(1).unwrap_or_default();
        for code in first_cell.split('`').skip(1).step_by(2) {
            if let Some((name, _)) = code.split_once('(') {
                names.push(name.trim().to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_documented_expression_function_exists_and_every_function_is_documented() {
    let documented = documented_expression_functions(&queries_md());
    let existing: Vec<String> = edgeflow_operators::expr::functions::NAMES
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(!documented.is_empty());
    for name in &documented {
        assert!(
            existing.contains(name),
            "docs/queries.md documents '{name}()', which does not exist"
        );
    }
    for name in &existing {
        assert!(
            documented.contains(name),
            "function '{name}' is not documented in docs/queries.md"
        );
    }
}

#[test]
fn every_window_aggregate_is_documented() {
    let doc = queries_md();
    let window = doc
        .split("### `window`")
        .nth(1)
        .unwrap()
        .split("\n### ")
        .next()
        .unwrap();
    for (name, _) in edgeflow_operators::window::AggregateFunction::ALL {
        assert_contains!(window, &format!("`{name}("));
    }
}

#[test]
fn every_source_operator_and_sink_kind_is_documented() {
    let doc = queries_md();
    let kinds = edgeflow_connectors::sources()
        .iter()
        .map(|k| k.name)
        .chain(edgeflow_operators::operators().iter().map(|k| k.name))
        .chain(edgeflow_connectors::sinks().iter().map(|k| k.name));
    for kind in kinds {
        assert_contains!(doc, &format!("### `{kind}`"));
    }
}
