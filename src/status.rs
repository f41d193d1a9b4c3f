//! The live one-line status of `edgeflow run`, and the summary printed at the end.
//!
//! On a terminal, a spinner line redraws four times a second with rows in and out, rows
//! dropped (by any rule), the slowest source watermark and files written. Elsewhere (under
//! systemd, in CI) the same figures are logged every 30 seconds instead, so logs stay small.

use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgeflow_engine::ingress::QUEUE_DEPTH;
use edgeflow_engine::memory::format_bytes;
use edgeflow_engine::time::format_event_time;
use edgeflow_engine::{NodeRole, NodeSnapshot, PipelineMetrics, RunReport};
use indicatif::{ProgressBar, ProgressStyle};

/// A background thread that shows progress until [`StatusLine::finish`].
pub struct StatusLine {
    /// Dropped by [`StatusLine::finish`], which wakes the thread at once.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StatusLine {
    /// Starts showing status (a live line on a terminal when `live`, periodic logs otherwise).
    pub fn start(metrics: Arc<PipelineMetrics>, live: bool) -> Self {
        let (stop, stopped) = mpsc::channel();
        let live = live && std::io::stderr().is_terminal();
        let thread = std::thread::Builder::new()
            .name("edgeflow-status".into())
            .spawn(move || show(metrics, live, stopped))
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }

    /// Stops and clears the status line.
    pub fn finish(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn show(metrics: Arc<PipelineMetrics>, live: bool, stop: mpsc::Receiver<()>) {
    let started = Instant::now();
    let bar = live.then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} │ {msg}").expect("valid template"),
        );
        bar
    });
    let mut last_log = Instant::now();
    let mut previous_in = 0u64;
    let mut previous_at = Instant::now();
    // Redraw every 250 ms until `finish` drops the sender, which ends the wait at once (so a
    // short run does not wait for the next tick to exit).
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(250)) {
        let nodes = metrics.snapshot();
        let now = Instant::now();
        let rows_in = total(&nodes, NodeRole::Source, |n| n.rows_out);
        let rate = (rows_in - previous_in.min(rows_in)) as f64
            / now.duration_since(previous_at).as_secs_f64().max(1e-3);
        previous_in = rows_in;
        previous_at = now;
        let line = status_text(&nodes, rate);
        match &bar {
            Some(bar) => {
                bar.set_message(line);
                bar.tick();
            }
            None => {
                if last_log.elapsed() >= Duration::from_secs(30) {
                    last_log = Instant::now();
                    tracing::info!(elapsed_s = started.elapsed().as_secs(), "Progress: {line}");
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn total(nodes: &[NodeSnapshot], role: NodeRole, field: impl Fn(&NodeSnapshot) -> u64) -> u64 {
    nodes.iter().filter(|n| n.role == role).map(field).sum()
}

fn status_text(nodes: &[NodeSnapshot], rate: f64) -> String {
    let rows_in = total(nodes, NodeRole::Source, |n| n.rows_out);
    let rows_out = total(nodes, NodeRole::Sink, |n| n.rows_in);
    let dropped: u64 = nodes.iter().map(NodeSnapshot::dropped_total).sum();
    let files = total(nodes, NodeRole::Sink, |n| n.files_written);
    let watermark = nodes
        .iter()
        .filter(|n| n.role == NodeRole::Source && n.watermark > 0)
        .map(|n| n.watermark)
        .min();
    let mut line = format!(
        "in {} ({}/s) │ out {} │ dropped {}",
        count(rows_in),
        count(rate as u64),
        count(rows_out),
        count(dropped)
    );
    if let Some(watermark) = watermark {
        let _ = write!(line, " │ watermark {}", format_event_time(watermark));
    }
    let state_rows = total(nodes, NodeRole::Operator, |n| n.state_rows);
    if state_rows > 0 {
        let bytes = total(nodes, NodeRole::Operator, |n| n.state_bytes);
        let _ = write!(
            line,
            " │ state {} keys ({})",
            count(state_rows),
            format_bytes(bytes)
        );
    }
    let _ = write!(line, " │ files {files}");
    // Connectors that keep a connection (mqtt) report `connected` and `reconnects`.
    let disconnected: Vec<&str> = nodes
        .iter()
        .filter(|n| n.values.get("connected") == Some(&0))
        .map(|n| n.name.as_str())
        .collect();
    if !disconnected.is_empty() {
        let _ = write!(line, " │ disconnected: {}", disconnected.join(", "));
    }
    let reconnects: u64 = nodes
        .iter()
        .filter_map(|n| n.values.get("reconnects"))
        .sum();
    if reconnects > 0 {
        let _ = write!(line, " │ reconnects {}", count(reconnects));
    }
    line
}

/// Formats a count with thousands separators (12,345,678).
fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The end-of-run summary: one line per node, with drops by reason.
pub fn summary(report: &RunReport) -> String {
    let mut out = String::new();
    let elapsed = report.elapsed.as_secs_f64();
    let rows_in = total(&report.nodes, NodeRole::Source, |n| n.rows_out);
    let how = if report.interrupted {
        "stopped on request"
    } else {
        "finished"
    };
    let _ = writeln!(
        out,
        "Pipeline {how} in {elapsed:.1}s: {} rows read ({}/s)",
        count(rows_in),
        count((rows_in as f64 / elapsed.max(1e-3)) as u64)
    );
    for node in &report.nodes {
        let role = match node.role {
            NodeRole::Source => "source",
            NodeRole::Operator => "operator",
            NodeRole::Sink => "sink",
        };
        let _ = write!(out, "  {role:<8} {:<16}", node.name);
        match node.role {
            NodeRole::Source => {
                let _ = write!(out, " out {:>12}", count(node.rows_out));
                // The queue depth is a sampled gauge for /metrics, meaningless once the run ended.
                for (name, value) in node.values.iter().filter(|(name, _)| *name != QUEUE_DEPTH) {
                    let _ = write!(out, "  {name}: {}", count(*value));
                }
            }
            NodeRole::Operator => {
                let _ = write!(
                    out,
                    " in {:>12}  out {:>12}",
                    count(node.rows_in),
                    count(node.rows_out)
                );
                if node.state_rows > 0 {
                    let _ = write!(
                        out,
                        "  state {} keys ({})",
                        count(node.state_rows),
                        format_bytes(node.state_bytes)
                    );
                }
                for (name, value) in node.values.iter().filter(|(name, _)| *name != QUEUE_DEPTH) {
                    let _ = write!(out, "  {name}: {}", count(*value));
                }
            }
            NodeRole::Sink => {
                let _ = write!(out, " in {:>12}", count(node.rows_in));
                if node.files_written > 0 {
                    let _ = write!(
                        out,
                        "  files {} ({} bytes)",
                        node.files_written,
                        count(node.bytes_written)
                    );
                }
            }
        }
        for (reason, rows) in &node.dropped {
            let _ = write!(out, "  {reason}: {}", count(*rows));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, role: NodeRole) -> NodeSnapshot {
        NodeSnapshot {
            name: name.into(),
            role,
            rows_in: 0,
            rows_out: 0,
            watermark: 0,
            state_rows: 0,
            state_bytes: 0,
            files_written: 0,
            bytes_written: 0,
            dropped: Default::default(),
            values: Default::default(),
        }
    }

    #[test]
    fn status_names_disconnected_connectors_and_counts_reconnects() {
        let mut mqtt = node("sensors", NodeRole::Source);
        mqtt.values.insert("connected".into(), 1);
        assert!(!status_text(&[mqtt.clone()], 0.0).contains("disconnected"));
        mqtt.values.insert("connected".into(), 0);
        mqtt.values.insert("reconnects".into(), 3);
        let line = status_text(&[mqtt], 0.0);
        assert!(line.contains("disconnected: sensors"), "{line}");
        assert!(line.contains("reconnects 3"), "{line}");
    }

    #[test]
    fn status_shows_operator_state_when_there_is_some() {
        let mut window = node("per_10s", NodeRole::Operator);
        let source = NodeSnapshot {
            rows_out: 5_000,
            ..node("sensors", NodeRole::Source)
        };
        assert!(!status_text(&[source.clone(), window.clone()], 10.0).contains("state"));
        window.state_rows = 1_200;
        window.state_bytes = 2_048;
        let line = status_text(&[source, window], 10.0);
        assert!(line.contains("state 1,200 keys (2.0 KiB)"), "{line}");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(12_345_678), "12,345,678");
    }
}
