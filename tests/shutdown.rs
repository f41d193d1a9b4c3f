//! Graceful shutdown: SIGINT and SIGTERM close open windows and commit files, exit code 0.

use std::time::{Duration, Instant};

use crate::util::{check_with_python, edgeflow, write_query};

const UNBOUNDED: &str = r#"
[pipeline]
name = "forever"

[sources.sensors]
type = "simulator"
devices = 20
rate = "100/s"
speed = 10
seed = 3
start = "2024-06-01T00:00:00Z"
schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64" }
event_time = "ts"

[operators.per_1s]
type = "window"
inputs = ["sensors"]
kind = "tumbling"
size = "1s"
group_by = ["device_id"]
aggregates = { n = "count()" }

[sinks.out]
type = "parquet"
inputs = ["per_1s"]
path = "out"
"#;

fn stop_with(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let query = write_query(dir.path(), "forever.toml", UNBOUNDED);
    let mut child = edgeflow()
        .arg("run")
        .arg(&query)
        .arg("--no-status")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "edgeflow did not stop within 30 s of SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(exit.success(), "SIG{signal}: exit {exit:?}\n{stderr}");
    assert_contains!(stderr, "stopped on request");
    let report = check_with_python("check_counts.py", &[&dir.path().join("out")]);
    assert_contains!(report, "rows");
}

#[test]
fn sigint_closes_windows_and_commits_files() {
    stop_with("INT");
}

#[test]
fn sigterm_closes_windows_and_commits_files() {
    stop_with("TERM");
}
