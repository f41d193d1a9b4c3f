//! `examples/quickstart.toml` end to end, checked with pyarrow and DuckDB.
//!
//! The test runs the example exactly as a newcomer would (in a scratch folder, so its
//! `out/quickstart` lands there), then runs the same seeded source again into a raw Parquet
//! sink. A Python script recomputes the cleaning and the 10-second windows from the raw
//! readings with pyarrow and compares them with what edgeflow wrote.

use crate::util::{check_with_python, edgeflow, repo, run, write_query};

#[test]
fn quickstart_output_matches_an_independent_recomputation() {
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("examples/quickstart.toml");

    let (output, _, stderr) = run(edgeflow()
        .arg("run")
        .arg(&example)
        .arg("--no-status")
        .current_dir(dir.path()));
    assert!(output.status.success(), "quickstart failed:\n{stderr}");
    assert_contains!(stderr, "Pipeline finished");
    let windows = dir.path().join("out/quickstart");
    assert!(windows.is_dir(), "no output folder:\n{stderr}");

    // The same source, unpaced, written raw.
    let text = std::fs::read_to_string(&example).unwrap();
    let mut query: toml::Table = text.parse().unwrap();
    query.remove("operators");
    query["sources"]["sensors"]
        .as_table_mut()
        .unwrap()
        .insert("speed".into(), "max".into());
    let raw = dir.path().join("raw");
    let sinks: toml::Table = format!(
        "[raw]\ntype = \"parquet\"\ninputs = [\"sensors\"]\npath = \"{}\"\n",
        raw.display()
    )
    .parse()
    .unwrap();
    query.insert("sinks".into(), toml::Value::Table(sinks));
    let raw_query = write_query(dir.path(), "raw.toml", &toml::to_string(&query).unwrap());
    let (output, _, stderr) = run(edgeflow().arg("run").arg(&raw_query).arg("--no-status"));
    assert!(output.status.success(), "raw run failed:\n{stderr}");

    let report = check_with_python("check_quickstart.py", &[&raw, &windows]);
    assert_contains!(report, "windows match");
}
