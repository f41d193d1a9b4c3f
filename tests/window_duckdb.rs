//! A dirty million-event CSV file through 10 s tumbling and 60 s / 10 s hopping windows,
//! compared with DuckDB computing the same windows (issue 4).
//!
//! `tests/python/check_windows.py generate` writes the file (seeded: disorder, duplicates,
//! null and NaN readings, malformed lines, events late beyond the watermark) with the
//! generator's own record of every well-formed line. The real `edgeflow run` reads it with two
//! workers into both windows, each with a Parquet sink and a Parquet sink for its `late` side
//! output. This test checks the counters of the run's summary against what the generator
//! wrote; `check_windows.py check` then has DuckDB recompute both windows over the input
//! minus the late rows and compares every window (exact keys and counts, 1e-9 relative for
//! mean and sum, exact min and max), checks that each late row could be late and that every
//! surely late row is, and that every line is accounted for.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::{check_with_python, edgeflow, run, write_query};

/// The query: one source, both windows, four Parquet sinks.
const QUERY: &str = r#"
[pipeline]
name = "window_duckdb"
workers = 2

[sources.events]
type = "file"
path = "events.csv"
format = "csv"
schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64", seq = "int64" }
event_time = "ts"
max_out_of_orderness = "5s"
# Reading never pauses for long, but a slow test machine must not move the watermark.
idle_timeout = "off"

[operators.tumbling]
type = "window"
inputs = ["events"]
kind = "tumbling"
size = "10s"
group_by = ["device_id"]
aggregates = { n = "count()", n_temp = "count(temperature)", temp_avg = "mean(temperature)", temp_min = "min(temperature)", temp_max = "max(temperature)", temp_sum = "sum(temperature)" }

[operators.hopping]
type = "window"
inputs = ["events"]
kind = "hopping"
size = "60s"
slide = "10s"
group_by = ["device_id"]
aggregates = { n = "count()", n_temp = "count(temperature)", temp_avg = "mean(temperature)", temp_min = "min(temperature)", temp_max = "max(temperature)", temp_sum = "sum(temperature)" }

[sinks.tumbling_out]
type = "parquet"
inputs = ["tumbling"]
path = "out/tumbling"

[sinks.hopping_out]
type = "parquet"
inputs = ["hopping"]
path = "out/hopping"

[sinks.tumbling_late]
type = "parquet"
inputs = ["tumbling.late"]
path = "out/tumbling_late"

[sinks.hopping_late]
type = "parquet"
inputs = ["hopping.late"]
path = "out/hopping_late"
"#;

/// One node's line of the run summary: `rows_in`/`rows_out` and the drops by reason.
#[derive(Debug, Default)]
struct NodeLine {
    counts: BTreeMap<String, u64>,
}

impl NodeLine {
    fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}

/// Parses the summary `edgeflow run` prints at the end (`src/status.rs`): lines such as
/// `  operator tumbling   in   999,000  out   99,463  late: 2,444`.
fn summary(stderr: &str) -> BTreeMap<String, NodeLine> {
    let mut nodes = BTreeMap::new();
    let start = stderr
        .find("Pipeline finished")
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    for line in stderr[start..].lines().skip(1) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 2 || !["source", "operator", "sink"].contains(&words[0]) {
            break;
        }
        let mut node = NodeLine::default();
        for pair in words[2..].windows(2) {
            let Ok(value) = pair[1].replace(',', "").parse::<u64>() else {
                continue;
            };
            node.counts
                .insert(pair[0].trim_end_matches(':').to_string(), value);
        }
        nodes.insert(words[1].to_string(), node);
    }
    nodes
}

#[test]
fn windows_over_a_dirty_million_events_match_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    check_with_python("check_windows.py", &[Path::new("generate"), dir.path()]);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    let count = |name: &str| expected[name].as_u64().unwrap();

    let query = write_query(dir.path(), "windows.toml", QUERY);
    let (output, _, stderr) = run(edgeflow()
        .arg("run")
        .arg(&query)
        .arg("--no-status")
        .current_dir(dir.path()));
    assert!(output.status.success(), "edgeflow run failed:\n{stderr}");
    let nodes = summary(&stderr);

    // The source skipped exactly the malformed lines, by reason, and kept every other line.
    let source = &nodes["events"];
    assert_eq!(
        source.get("malformed_csv"),
        count("malformed_csv"),
        "{stderr}"
    );
    assert_eq!(source.get("wrong_type"), count("wrong_type"), "{stderr}");
    assert_eq!(source.get("out"), count("valid"), "{stderr}");
    assert_eq!(
        count("valid") + count("malformed_csv") + count("wrong_type"),
        count("lines")
    );

    let mut metrics = serde_json::Map::new();
    for name in ["tumbling", "hopping"] {
        let window = &nodes[name];
        let late = window.get("late");
        // Each window reads every row; the late ones leave through its side output, into
        // their own sink; nothing else is dropped (every row has an event time).
        assert_eq!(window.get("in"), count("valid"), "{name}:\n{stderr}");
        assert_eq!(
            window.counts.len(),
            3,
            "{name} drops only late rows:\n{stderr}"
        );
        assert!(late > 0, "the file has late events:\n{stderr}");
        assert_eq!(nodes[&format!("{name}.late")].get("out"), late, "{stderr}");
        assert_eq!(nodes[&format!("{name}_late")].get("in"), late, "{stderr}");
        assert_eq!(
            nodes[&format!("{name}_out")].get("in"),
            window.get("out"),
            "{stderr}"
        );
        metrics.insert(name.into(), serde_json::json!({ "late": late }));
    }
    std::fs::write(
        dir.path().join("metrics.json"),
        serde_json::Value::Object(metrics).to_string(),
    )
    .unwrap();

    let report = check_with_python("check_windows.py", &[Path::new("check"), dir.path()]);
    assert_contains!(report, "windows match DuckDB");
    println!("{report}");
}
