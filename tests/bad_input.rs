//! Malformed input lines are counted and skipped; the valid rows around them are kept.

use crate::util::{edgeflow, run, write_query};

#[test]
fn malformed_csv_and_json_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "device_id,ts,temperature\n\
        a,1717200000000,20.5\n\
        b,1717200001000,not-a-number\n\
        c,1717200002000\n\
        d,2024-06-01T00:00:03Z,22.0\n\
        e,1717200004000,23.5\n";
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    let jsonl = "{\"device_id\":\"a\",\"ts\":1717200000000,\"temperature\":1.5}\n\
        {\"device_id\":\"b\",\"ts\":1717200001000,\"temperature\":\n\
        {\"device_id\":\"c\",\"ts\":1717200002000,\"temperature\":\"hot\"}\n\
        {\"device_id\":\"d\",\"ts\":\"2024-06-01T00:00:03Z\",\"temperature\":4.5}\n";
    std::fs::write(dir.path().join("in.jsonl"), jsonl).unwrap();

    for (file, good, bad) in [
        ("in.csv", ["a", "d", "e"].as_slice(), 2),
        ("in.jsonl", ["a", "d"].as_slice(), 2),
    ] {
        let text = format!(
            r#"
[sources.f]
type = "file"
path = "{file}"
schema = {{ device_id = "string", ts = "timestamp_ms", temperature = "float64" }}
event_time = "ts"

[sinks.out]
type = "stdout"
inputs = ["f"]
"#
        );
        let query = write_query(dir.path(), "q.toml", &text);
        let (output, stdout, stderr) = run(edgeflow()
            .arg("run")
            .arg(&query)
            .arg("--no-status")
            .current_dir(dir.path()));
        assert!(output.status.success(), "{file}:\n{stderr}");
        let devices: Vec<String> = stdout
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["device_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(devices, good, "{file}: {stdout}\n{stderr}");
        // The summary names the rows skipped, and the log names the lines.
        let summary_line = stderr
            .lines()
            .find(|l| l.contains("source") && l.contains(" f "))
            .unwrap_or_default();
        let skipped: u64 = summary_line
            .split("  ")
            .filter_map(|part| {
                part.split_once(": ")
                    .and_then(|(_, n)| n.trim().replace(',', "").parse::<u64>().ok())
            })
            .sum();
        assert_eq!(skipped, bad, "{file}: {stderr}");
        assert!(
            stderr.contains("line=3"),
            "{file}: the warning names the line:\n{stderr}"
        );
    }
}
