//! `/ready`: is the pipeline doing its job? Sources connected (or listening), sinks
//! writing, watermarks advancing.
//!
//! A [`Progress`] tracker remembers, per node, when its watermark last moved and when a
//! sink last took rows; it is updated once a second by the server and on every `/ready`.
//!
//! Rules, each a reason in the 503 answer:
//! * the pipeline is starting (not every node has registered yet, or a source that reports
//!   its link — `mqtt`'s `connected`, `http`'s `listening` — has not reported it yet) or
//!   stopping;
//! * a node reports `connected = 0` (MQTT) or `listening = 0` (HTTP source), or a sink
//!   reports `writable = 0` (the Parquet sink, after a failed probe or write of its folder),
//!   quoted with the node's `writable` message: `sink 'archive' is not writable: <why>`;
//! * a source's watermark has not moved for `watermark_stall` (`[server]`, default 5m);
//! * a sink has rows waiting in its queue but has taken none for `watermark_stall`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use edgeflow_engine::{NodeRole, NodeSnapshot};

use super::pipeline::PipelineDescription;

/// Source kinds that report the state of their link, and the value they report it in.
/// Until the value is there the source is starting: ready would be a guess.
const LINK_VALUES: [(&str, &str); 2] = [("mqtt", "connected"), ("http", "listening")];

#[derive(Clone, Copy, Debug)]
struct Seen {
    watermark: u64,
    watermark_moved: Instant,
    rows_in: u64,
    rows_moved: Instant,
}

/// When each node last made progress.
#[derive(Debug, Default)]
pub struct Progress {
    nodes: HashMap<String, Seen>,
}

impl Progress {
    /// Records what the snapshots show at `now`.
    pub fn observe(&mut self, snapshots: &[NodeSnapshot], now: Instant) {
        for snapshot in snapshots {
            let seen = self.nodes.entry(snapshot.name.clone()).or_insert(Seen {
                watermark: snapshot.watermark,
                watermark_moved: now,
                rows_in: snapshot.rows_in,
                rows_moved: now,
            });
            if snapshot.watermark != seen.watermark {
                seen.watermark = snapshot.watermark;
                seen.watermark_moved = now;
            }
            if snapshot.rows_in != seen.rows_in {
                seen.rows_in = snapshot.rows_in;
                seen.rows_moved = now;
            }
        }
    }

    /// The reasons the pipeline is not ready (empty: ready). `messages` holds each node's
    /// explanations of its values (`NodeMetrics::messages`), by node name.
    pub fn reasons(
        &self,
        description: &PipelineDescription,
        snapshots: &[NodeSnapshot],
        messages: &BTreeMap<String, BTreeMap<String, String>>,
        stall: Option<Duration>,
        now: Instant,
    ) -> Vec<String> {
        let mut reasons = Vec::new();
        let missing: Vec<&str> = description
            .nodes
            .iter()
            .filter(|node| !snapshots.iter().any(|s| s.name == node.name))
            .map(|node| node.name.as_str())
            .collect();
        if !missing.is_empty() {
            reasons.push(format!(
                "the pipeline is starting: {} not running yet",
                missing.join(", ")
            ));
        }
        for node in &description.nodes {
            let Some(snapshot) = snapshots.iter().find(|s| s.name == node.name) else {
                continue;
            };
            for (kind, key) in LINK_VALUES {
                if node.role == "source" && node.kind == kind && !snapshot.values.contains_key(key)
                {
                    reasons.push(format!(
                        "the pipeline is starting: source '{}' has not reported '{key}' yet",
                        node.name
                    ));
                }
            }
        }
        for snapshot in snapshots {
            let name = &snapshot.name;
            let value = |key: &str| snapshot.values.get(key).copied();
            if value("connected") == Some(0) {
                reasons.push(format!("{} '{name}' is not connected", role(snapshot.role)));
            }
            if value("listening") == Some(0) {
                reasons.push(format!("source '{name}' is not listening"));
            }
            if value("writable") == Some(0) {
                let why = messages
                    .get(name.as_str())
                    .and_then(|m| m.get("writable"))
                    .map_or("its output cannot be written", String::as_str);
                reasons.push(format!("sink '{name}' is not writable: {why}"));
            }
            let (Some(stall), Some(seen)) = (stall, self.nodes.get(name.as_str())) else {
                continue;
            };
            match snapshot.role {
                NodeRole::Source if now.duration_since(seen.watermark_moved) >= stall => {
                    reasons.push(format!(
                        "source '{name}': the watermark has not advanced for {}s (watermark_stall = {}s)",
                        now.duration_since(seen.watermark_moved).as_secs(),
                        stall.as_secs()
                    ));
                }
                NodeRole::Sink
                    if value(edgeflow_engine::ingress::QUEUE_DEPTH).unwrap_or(0) > 0
                        && now.duration_since(seen.rows_moved) >= stall =>
                {
                    reasons.push(format!(
                        "sink '{name}' has rows waiting but has taken none for {}s",
                        now.duration_since(seen.rows_moved).as_secs()
                    ));
                }
                _ => {}
            }
        }
        reasons
    }
}

fn role(role: NodeRole) -> &'static str {
    super::pipeline::role_word(role)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ops::pipeline::NodeInfo;

    fn snapshot(
        name: &str,
        role: NodeRole,
        watermark: u64,
        values: &[(&str, u64)],
    ) -> NodeSnapshot {
        NodeSnapshot {
            name: name.into(),
            role,
            rows_in: 0,
            rows_out: 0,
            watermark,
            state_rows: 0,
            state_bytes: 0,
            files_written: 0,
            bytes_written: 0,
            dropped: BTreeMap::new(),
            values: values.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
        }
    }

    fn description(names: &[&str]) -> PipelineDescription {
        PipelineDescription {
            name: "p".into(),
            workers: 1,
            nodes: names
                .iter()
                .map(|n| NodeInfo {
                    name: (*n).into(),
                    role: "source",
                    kind: "mqtt".into(),
                    inputs: vec![],
                    schema: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn an_unwritable_sink_is_named_with_its_reason() {
        let mut d = description(&["archive"]);
        d.nodes[0].role = "sink";
        d.nodes[0].kind = "parquet".into();
        let unwritable = [snapshot("archive", NodeRole::Sink, 0, &[("writable", 0)])];
        let mut progress = Progress::default();
        let now = Instant::now();
        progress.observe(&unwritable, now);
        let why: BTreeMap<String, BTreeMap<String, String>> = [(
            "archive".to_string(),
            [(
                "writable".to_string(),
                "cannot create 'out/x': Permission denied".to_string(),
            )]
            .into(),
        )]
        .into();
        assert_eq!(
            progress.reasons(&d, &unwritable, &why, None, now),
            ["sink 'archive' is not writable: cannot create 'out/x': Permission denied"]
        );
        assert_eq!(
            progress.reasons(&d, &unwritable, &BTreeMap::new(), None, now),
            ["sink 'archive' is not writable: its output cannot be written"]
        );
        let writable = [snapshot("archive", NodeRole::Sink, 0, &[("writable", 1)])];
        assert!(progress.reasons(&d, &writable, &why, None, now).is_empty());
    }

    #[test]
    fn ready_needs_every_node_connected_and_watermarks_moving() {
        let stall = Some(Duration::from_secs(60));
        let start = Instant::now();
        let mut progress = Progress::default();
        let mut d = description(&["a", "b"]);
        d.nodes[1].kind = "http".into();
        let none = BTreeMap::new();

        let silent = [snapshot("a", NodeRole::Source, 10, &[])];
        assert!(progress.reasons(&d, &silent, &none, stall, start).contains(
            &"the pipeline is starting: source 'a' has not reported 'connected' yet".to_string()
        ));
        let only_a = [snapshot("a", NodeRole::Source, 10, &[("connected", 1)])];
        progress.observe(&only_a, start);
        let reasons = progress.reasons(&d, &only_a, &none, stall, start);
        assert_eq!(reasons, ["the pipeline is starting: b not running yet"]);

        let both = [
            snapshot("a", NodeRole::Source, 10, &[("connected", 0)]),
            snapshot("b", NodeRole::Source, 5, &[("listening", 1)]),
        ];
        progress.observe(&both, start);
        assert_eq!(
            progress.reasons(&d, &both, &none, stall, start),
            ["source 'a' is not connected"]
        );

        // Later: b's watermark moved, a's did not.
        let later = start + Duration::from_secs(61);
        let moved = [
            snapshot("a", NodeRole::Source, 10, &[("connected", 1)]),
            snapshot("b", NodeRole::Source, 6, &[("listening", 1)]),
        ];
        progress.observe(&moved, later);
        let reasons = progress.reasons(&d, &moved, &none, stall, later);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("source 'a': the watermark has not advanced for 61s"));
        assert!(
            progress.reasons(&d, &moved, &none, None, later).is_empty(),
            "stall check off"
        );
    }
}
