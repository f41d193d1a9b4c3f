//! The `modbus` source through the `edgeflow` binary against a real pymodbus server
//! (`tests/python/modbus_server.py`) on a free loopback port: every value type and word order
//! decodes exactly, and a dead unit, a slow unit, a closed port and an illegal address are
//! counted per device (in `/metrics` and the run summary) while the good device keeps its
//! poll rate.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{client, free_port, sample, scrape};
use crate::util::{edgeflow, python, repo, write_query};

/// The pymodbus server, stopped when dropped.
struct ModbusServer {
    child: Child,
    port: u16,
}

impl ModbusServer {
    /// Starts the server; unit 2 waits `slow` seconds before each answer.
    fn start(slow: f64) -> Self {
        let mut child = Command::new(python())
            .arg(repo().join("tests/python/modbus_server.py"))
            .args(["--slow", &slow.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Modbus server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server prints its port");
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("expected 'port <n>', got {line:?}"));
        Self { child, port }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `edgeflow run` on `query` for `duration`, optionally scraping `/metrics` on
/// `metrics_port` just before stopping it with SIGTERM; returns (stdout JSON rows, stderr,
/// the scrape).
fn run_for(
    query: &str,
    duration: Duration,
    metrics_port: Option<u16>,
) -> (Vec<Value>, String, Option<prometheus_parse::Scrape>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_query(dir.path(), "plc.toml", query);
    let child = edgeflow()
        .arg("run")
        .arg(&path)
        .arg("--no-status")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgeflow starts");
    let started = Instant::now();
    std::thread::sleep(duration.saturating_sub(started.elapsed()));
    let scraped =
        metrics_port.map(|port| scrape(&client(), &format!("http://127.0.0.1:{port}/metrics")));
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("edgeflow ends");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let rows = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    (rows, stderr, scraped)
}

const GOOD_MAP: &str = r#"
[sources.plc.maps.all_types]
registers = [
  { field = "f32_big", kind = "holding", address = 0, type = "f32", word_order = "big" },
  { field = "f32_little", kind = "holding", address = 2, type = "f32", word_order = "little" },
  { field = "f32_big_swap", kind = "holding", address = 4, type = "f32", word_order = "badc" },
  { field = "f32_little_swap", kind = "holding", address = 6, type = "f32", word_order = "little_swap" },
  { field = "i16_neg", kind = "holding", address = 8, type = "i16" },
  { field = "i16_scaled", kind = "holding", address = 9, type = "i16", scale = 0.5, offset = 10.0 },
  { field = "u32_big", kind = "holding", address = 10, type = "u32" },
  { field = "i32_little", kind = "holding", address = 12, type = "i32", word_order = "cdab" },
  { field = "u16_max", kind = "holding", address = 14 },
  { field = "bit2", kind = "holding", address = 15, type = "bool", bit = 2 },
  { field = "bit3", kind = "holding", address = 15, type = "bool", bit = 3 },
  { field = "bit15", kind = "holding", address = 15, type = "bool", bit = 15 },
  { field = "flow", kind = "input", address = 0, scale = 0.1 },
  { field = "input_i16", kind = "input", address = 1, type = "i16" },
  { field = "coil0", kind = "coil", address = 0 },
  { field = "coil1", kind = "coil", address = 1 },
  { field = "coil7", kind = "coil", address = 7 },
  { field = "di1", kind = "discrete_input", address = 1, type = "bool" },
  { field = "di2", kind = "discrete_input", address = 2 },
]
"#;

#[test]
fn every_type_and_word_order_decodes_exactly_from_pymodbus() {
    let server = ModbusServer::start(5.0);
    let query = format!(
        r#"
[sources.plc]
type = "modbus"
interval = "200ms"
timeout = "1s"
{GOOD_MAP}
[[sources.plc.devices]]
id = "press-1"
address = "{}"
unit = 1
map = "all_types"

[sinks.out]
type = "stdout"
inputs = ["plc"]
"#,
        server.address()
    );
    let (rows, stderr, _) = run_for(&query, Duration::from_millis(1_500), None);
    assert!(rows.len() >= 3, "{} rows:\n{stderr}", rows.len());
    let expected = serde_json::json!({
        "device_id": "press-1",
        "f32_big": 21.5,
        "f32_little": -3.25,
        "f32_big_swap": 1234.5,
        "f32_little_swap": 0.125,
        "i16_neg": -1234,
        "i16_scaled": 9.5,
        "u32_big": 4_000_000_000u64,
        "i32_little": -100_000,
        "u16_max": 65535,
        "bit2": true,
        "bit3": false,
        "bit15": true,
        "flow": 150.0,
        "input_i16": -1,
        "coil0": true,
        "coil1": false,
        "coil7": true,
        "di1": true,
        "di2": false,
    });
    for row in &rows {
        let mut row = row.clone();
        let timestamp = row
            .as_object_mut()
            .unwrap()
            .remove("timestamp")
            .expect("a timestamp");
        assert!(timestamp.as_str().unwrap().ends_with('Z'), "{timestamp}");
        assert_eq!(row, expected);
    }
    // 19 fields in 5 requests: holding 0-15, input 0-1, coils 0-1, coil 7 (max_gap = 0 does
    // not read the unmapped coils 2-6), discrete inputs 1-2.
    assert_contains!(stderr, "requests=5");
    assert_contains!(stderr, &format!("press-1.polls: {}", rows.len()));
}

#[test]
fn dead_slow_and_refusing_devices_are_counted_while_the_good_one_keeps_its_rate() {
    let server = ModbusServer::start(5.0);
    let ops = free_port();
    let closed = free_port();
    let address = server.address();
    let query = format!(
        r#"
[server]
listen = "127.0.0.1:{ops}"

[sources.plc]
type = "modbus"
interval = "200ms"
timeout = "300ms"
reconnect_min = "200ms"
reconnect_max = "400ms"
{GOOD_MAP}
[[sources.plc.devices]]
id = "good"
address = "{address}"
map = "all_types"

[[sources.plc.devices]]
id = "slow"
address = "{address}"
unit = 2
map = "all_types"

[[sources.plc.devices]]
id = "dead"
address = "{address}"
unit = 3
map = "all_types"

[[sources.plc.devices]]
id = "refused"
address = "127.0.0.1:{closed}"
map = "all_types"

[[sources.plc.devices]]
id = "wrong_map"
address = "{address}"
[[sources.plc.devices.registers]]
field = "beyond"
kind = "holding"
address = 500

[sinks.out]
type = "stdout"
inputs = ["plc"]
"#
    );
    let (rows, stderr, metrics) = run_for(&query, Duration::from_secs(4), Some(ops));
    let metrics = metrics.expect("scraped");
    let event = |name: &str| {
        sample(
            &metrics,
            "edgeflow_node_events_total",
            &[("node", "plc"), ("event", name)],
        )
        .unwrap_or(0.0)
    };
    assert!(event("slow.timeout") >= 3.0, "{stderr}");
    assert!(event("dead.timeout") >= 3.0, "{stderr}");
    assert!(event("refused.connect_failed") >= 3.0, "{stderr}");
    assert!(
        event("wrong_map.exception:illegal_data_address") >= 10.0,
        "{stderr}"
    );
    assert_eq!(
        event("slow.polls") + event("dead.polls") + event("refused.polls"),
        0.0
    );
    assert_eq!(event("wrong_map.polls"), 0.0);

    // Only the good device produced rows, at its interval, although three others never
    // answer: polls 200 ms apart (a timeout elsewhere would have stretched them to 300 ms+).
    assert!(rows.iter().all(|r| r["device_id"] == "good"), "{rows:?}");
    let times: Vec<i64> = rows
        .iter()
        .map(|r| rfc3339_ms(r["timestamp"].as_str().expect("timestamp text")))
        .collect();
    assert!(times.len() >= 15, "{} rows in 4 s:\n{stderr}", times.len());
    let span = (times[times.len() - 1] - times[0]) as f64;
    let mean_gap = span / (times.len() - 1) as f64;
    eprintln!(
        "good device: {} polls, mean gap {mean_gap:.1} ms; slow.timeout {}, dead.timeout {}, refused.connect_failed {}, wrong_map.exception:illegal_data_address {}",
        times.len(),
        event("slow.timeout"),
        event("dead.timeout"),
        event("refused.connect_failed"),
        event("wrong_map.exception:illegal_data_address"),
    );
    assert!(
        (190.0..=250.0).contains(&mean_gap),
        "mean gap between polls {mean_gap:.1} ms over {} rows",
        times.len()
    );

    // The run summary and the log name the devices and reasons.
    assert_contains!(stderr, "refused.connect_failed: ");
    assert_contains!(stderr, "wrong_map.exception:illegal_data_address: ");
    assert_contains!(stderr, "device=dead");
    assert_contains!(stderr, "reason=timeout");
    assert_contains!(stderr, &format!("address=127.0.0.1:{closed}"));
}

/// Milliseconds since the epoch of an RFC 3339 UTC text such as `2024-01-01T00:00:00.250Z`.
fn rfc3339_ms(text: &str) -> i64 {
    let (date, time) = text
        .trim_end_matches('Z')
        .split_once('T')
        .expect("date and time");
    let mut date = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, d) = (
        date.next().unwrap(),
        date.next().unwrap(),
        date.next().unwrap(),
    );
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|p| p.parse::<i64>().unwrap());
    let (h, min, s) = (
        hms.next().unwrap(),
        hms.next().unwrap(),
        hms.next().unwrap(),
    );
    let ms: i64 = format!("{fraction:0<3}")[..3].parse().unwrap();
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h) * 60 + min) * 60_000 + s * 1_000 + ms
}
