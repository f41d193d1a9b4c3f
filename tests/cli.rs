//! The command line: help, version, validate, explain, and start-up errors.

use crate::util::{edgeflow, repo, run, write_query};

#[test]
fn version_and_help() {
    let (output, stdout, _) = run(edgeflow().arg("--version"));
    assert!(output.status.success());
    assert_contains!(stdout, env!("CARGO_PKG_VERSION"));

    let (output, stdout, _) = run(edgeflow().arg("--help"));
    assert!(output.status.success());
    for word in [
        "run",
        "validate",
        "explain",
        "Examples:",
        "edgeflow run examples/quickstart.toml",
    ] {
        assert_contains!(stdout, word);
    }
}

/// Certificates made by `edgeflow certs` for the examples that ship rows upstream (no
/// private key is kept in the repository).
fn example_certs() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    let (output, stdout, stderr) = run(edgeflow()
        .args(["certs", "--gateway", "gw-01", "--out"])
        .arg(certs.path()));
    assert!(output.status.success(), "edgeflow certs:\n{stdout}{stderr}");
    certs
}

/// `edgeflow` with what the examples need from the environment: `EDGEFLOW_CERTS`.
fn edgeflow_for_examples(certs: &tempfile::TempDir) -> std::process::Command {
    let mut command = edgeflow();
    command.env("EDGEFLOW_CERTS", certs.path());
    command
}

#[test]
fn every_example_validates() {
    let certs = example_certs();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let is_test_file = path.to_string_lossy().ends_with(".test.toml");
        if path.extension().is_some_and(|e| e == "toml") && !is_test_file {
            let (output, stdout, stderr) =
                run(edgeflow_for_examples(&certs).arg("validate").arg(&path));
            assert!(
                output.status.success(),
                "{}:\n{stdout}{stderr}",
                path.display()
            );
            assert_contains!(stdout, "valid");
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn explain_shows_every_node_with_its_schema() {
    let (output, stdout, stderr) = run(edgeflow()
        .arg("explain")
        .arg(repo().join("examples/quickstart.toml")));
    assert!(output.status.success(), "{stderr}");
    assert_contains!(stdout, "source sensors [simulator]");
    assert_contains!(stdout, "ts: timestamp_ms  (event time)");
    assert_contains!(stdout, "operator per_10s [window] <- clean");
    assert_contains!(stdout, "window_start: timestamp_ms");
    assert_contains!(stdout, "n: int64");
    assert_contains!(stdout, "sink local [parquet] <- per_10s");
}

const BROKEN: &str = r#"[pipeline]
name = "broken"

[sourcez.x]
type = "simulator"

[sources.sensors]
type = "simulator"
devcies = 5
schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64" }
event_time = "ts"

[operators.clean]
type = "clean"
inputs = ["sensor"]
drop_null = ["temperature"]

[operators.agg]
type = "windw"
inputs = ["clean"]

[sinks.out]
type = "stdout"
inputs = ["agg"]
"#;

#[test]
fn a_broken_query_file_gets_every_error_at_once_with_positions_and_hints() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_query(dir.path(), "broken.toml", BROKEN);
    let (output, _, stderr) = run(edgeflow().arg("validate").arg(&path));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let file = path.display().to_string();
    // Unknown section, with the closest name.
    assert_contains!(stderr, "unknown section 'sourcez'");
    assert_contains!(stderr, &format!("{file}:4:2"));
    assert_contains!(stderr, "did you mean 'sources'?");
    // Misspelt option.
    assert_contains!(stderr, "unknown option 'devcies'");
    assert_contains!(stderr, &format!("{file}:9:1"));
    assert_contains!(stderr, "did you mean 'devices'?");
    // Unknown input.
    assert_contains!(stderr, "reads from 'sensor', which is not defined");
    assert_contains!(stderr, "did you mean 'sensors'?");
    // Unknown operator type.
    assert_contains!(stderr, "unknown operator type 'windw'");
    assert_contains!(stderr, "did you mean 'window'?");
    assert_contains!(stderr, "4 errors");
}

#[test]
fn type_errors_and_cycles_are_reported_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[sources.s]
type = "simulator"
devices = 2
schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64" }
event_time = "ts"

[operators.a]
type = "clean"
inputs = ["s", "b"]

[operators.b]
type = "clean"
inputs = ["a"]

[operators.w]
type = "window"
inputs = ["s"]
kind = "tumbling"
size = "10s"
group_by = ["devce_id"]
aggregates = { m = "mean(device_id)", x = "max(temprature)" }

[sinks.out]
type = "stdout"
inputs = ["w", "b"]
"#;
    let path = write_query(dir.path(), "cycle.toml", text);
    let (output, _, stderr) = run(edgeflow().arg("validate").arg(&path));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_contains!(stderr, "is part of a cycle");
    assert_contains!(stderr, "did you mean 'device_id'?");
    assert_contains!(stderr, "did you mean 'temperature'?");
    assert_contains!(stderr, "device_id");
}

#[test]
fn a_missing_input_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[sources.f]
type = "file"
path = "does/not/exist.csv"
schema = { device_id = "string", ts = "timestamp_ms", v = "float64" }
event_time = "ts"

[sinks.out]
type = "stdout"
inputs = ["f"]
"#;
    let path = write_query(dir.path(), "missing.toml", text);
    let (output, _, stderr) = run(edgeflow().arg("run").arg(&path).current_dir(dir.path()));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_contains!(stderr, "does/not/exist.csv");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unwritable_output_folder_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the output folder should be: no user, root included, can
    // create a folder inside it.
    std::fs::write(dir.path().join("blocker"), "not a folder").unwrap();
    let text = r#"
[sources.s]
type = "simulator"
devices = 1
count = 10
speed = "max"
schema = { device_id = "string", ts = "timestamp_ms", v = "float64" }
event_time = "ts"

[sinks.out]
type = "parquet"
inputs = ["s"]
path = "blocker/out"
"#;
    let path = write_query(dir.path(), "unwritable.toml", text);
    let (output, _, stderr) = run(edgeflow().arg("run").arg(&path).current_dir(dir.path()));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_contains!(stderr, "blocker/out");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_missing_query_file_is_a_clear_error() {
    let (output, _, stderr) = run(edgeflow().arg("run").arg("no/such/query.toml"));
    assert_eq!(output.status.code(), Some(1));
    assert_contains!(stderr, "cannot read query file 'no/such/query.toml'");
}

#[test]
fn environment_variables_fill_in_string_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "device_id,ts,v\na,1717200000000,1.5\n",
    )
    .unwrap();
    let text = r#"
[sources.f]
type = "file"
path = "${EDGEFLOW_INPUT_DIR}/in.csv"
schema = { device_id = "string", ts = "timestamp_ms", v = "float64" }

[sinks.out]
type = "stdout"
inputs = ["f"]
"#;
    let path = write_query(dir.path(), "env.toml", text);
    let (output, _, stderr) = run(edgeflow()
        .arg("validate")
        .arg(&path)
        .env_remove("EDGEFLOW_INPUT_DIR"));
    assert_eq!(output.status.code(), Some(2));
    assert_contains!(
        stderr,
        "environment variable 'EDGEFLOW_INPUT_DIR' is not set"
    );
    assert_contains!(stderr, "env.toml:4:8");

    let (output, stdout, stderr) = run(edgeflow()
        .arg("run")
        .arg(&path)
        .arg("--no-status")
        .env("EDGEFLOW_INPUT_DIR", dir.path()));
    assert!(output.status.success(), "{stderr}");
    assert_contains!(stdout, "\"device_id\":\"a\"");
}

#[test]
fn explain_draws_dot_and_mermaid() {
    let example = repo().join("examples/quickstart.toml");
    let (output, stdout, _) = run(edgeflow()
        .args(["explain", "--format", "dot"])
        .arg(&example));
    assert!(output.status.success());
    assert!(stdout.starts_with("digraph \"quickstart\" {"), "{stdout}");
    assert_contains!(stdout, "n2 -> n3;");
    let (output, stdout, _) = run(edgeflow()
        .args(["explain", "--format", "mermaid"])
        .arg(&example));
    assert!(output.status.success());
    assert!(stdout.starts_with("flowchart LR"), "{stdout}");
    assert_contains!(stdout, "n0 --> n1");
}

#[test]
fn every_example_with_tests_passes_them() {
    let certs = example_certs();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let query = entry.unwrap().path();
        let name = query.to_string_lossy().into_owned();
        if !name.ends_with(".toml") || name.ends_with(".test.toml") {
            continue;
        }
        for workers in ["1", "2"] {
            let (output, stdout, stderr) = run(edgeflow_for_examples(&certs)
                .args(["test", "--workers", workers])
                .arg(&query));
            if stdout.contains("no tests") || stderr.contains("no tests") {
                break;
            }
            assert!(output.status.success(), "{name}:\n{stdout}{stderr}");
            assert_contains!(stdout, " passed, 0 failed");
            checked += usize::from(workers == "1");
        }
    }
    // At least quickstart, late_readings, derived_metrics, revisions and sessions have tests.
    assert!(checked >= 5, "{checked} examples with tests");
}

#[test]
fn a_failing_pipeline_test_shows_a_diff_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let query = std::fs::read_to_string(repo().join("examples/quickstart.toml")).unwrap();
    let tests = r#"
[[tests]]
name = "wrong expectation"
[[tests.input.sensors]]
rows = [{ device_id = "a", ts = "2024-06-01T00:00:01Z", temperature = 20.0 }]
[[tests.expect]]
node = "per_10s"
rows = [{ device_id = "a", n = 2 }]
dropped = { late = 1 }
"#;
    let path = write_query(dir.path(), "q.toml", &format!("{query}\n{tests}"));
    let (output, stdout, _) = run(edgeflow().arg("test").arg(&path));
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_contains!(stdout, "test wrong expectation ... FAILED");
    assert_contains!(stdout, "- { device_id = \"a\", n = 2 }");
    assert_contains!(stdout, "+ { device_id = \"a\", n = 1 }");
    assert_contains!(stdout, "expected 1 rows dropped as 'late', got 0");
    assert_contains!(stdout, "0 passed, 1 failed");
}

#[test]
fn secrets_from_the_environment_stay_out_of_explain_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-t0ken-4711";
    let text = r#"
[sources.s]
type = "simulator"
count = 20
speed = "max"
start = "2024-06-01T00:00:00Z"
schema = { device_id = "string", ts = "timestamp_ms", v = "float64" }

[sinks.out]
type = "parquet"
inputs = ["s"]
path = "out/${EDGEFLOW_TEST_SECRET}"
"#;
    let path = write_query(dir.path(), "secret.toml", text);
    for command in [
        vec!["validate"],
        vec!["explain"],
        vec!["explain", "--format", "dot"],
        vec!["run", "--no-status"],
    ] {
        let (output, stdout, stderr) = run(edgeflow()
            .args(&command)
            .arg(&path)
            .current_dir(dir.path())
            .env("EDGEFLOW_TEST_SECRET", secret)
            .env("RUST_LOG", "debug"));
        assert!(output.status.success(), "{command:?}: {stderr}");
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{command:?} shows the secret:\n{stdout}\n{stderr}"
        );
    }
    // The value was used: the sink wrote under the secret folder name.
    assert!(dir.path().join("out").join(secret).is_dir());
}
