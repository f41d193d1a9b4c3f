//! `/health`: is the process alive, and are its dataflow workers alive?
//!
//! Every timely worker beats a heartbeat after each step of its loop
//! ([`edgeflow_engine::metrics::WorkerLiveness`]). A worker with nothing to do parks for at
//! most one second and then steps (an empty step) and beats, so an idle pipeline never looks
//! dead. Under load a worker steps thousands of times a second, so load alone does not make
//! a heartbeat old either; what does is a worker stuck *inside* one step.
//!
//! Rules, each a reason in the 503 answer:
//! * a worker panicked (a bug; the run is failing and the process is about to exit 1);
//! * a worker in its loop has not completed a step for `worker_stall` (default
//!   [`WORKER_STALL`], 30 s): an operator that never returns, or a worker blocked on a sink
//!   that has taken nothing for that long (backpressure from a slow sink blocks a worker only
//!   until the sink takes its next batch, which is far less than 30 s unless the sink is
//!   wedged; `/ready` reports a sink that stopped taking rows much earlier).
//!
//! A worker that left its loop because the dataflow completed is not a failure: the process
//! is ending. Before the workers start (while sources and sinks open), `/health` answers 200
//! with no workers listed.

use std::time::Duration;

use edgeflow_engine::metrics::{WorkerSnapshot, WorkerState};
use serde_json::{Value, json};

/// How long a worker may go without completing a step before `/health` fails.
pub const WORKER_STALL: Duration = Duration::from_secs(30);

/// The reasons the workers are not healthy (empty: healthy).
pub fn reasons(workers: &[WorkerSnapshot], stall: Duration) -> Vec<String> {
    let mut reasons = Vec::new();
    for worker in workers {
        match worker.state {
            WorkerState::Panicked => reasons.push(format!(
                "dataflow worker {} panicked (a bug: its message is in the log); the pipeline is stopping",
                worker.index
            )),
            WorkerState::Running if worker.since_last_step >= stall => reasons.push(format!(
                "dataflow worker {} has not completed a step for {:.0}s (limit {}s): stuck in an operator or blocked on a sink that takes nothing",
                worker.index,
                worker.since_last_step.as_secs_f64(),
                stall.as_secs()
            )),
            WorkerState::Running | WorkerState::Finished => {}
        }
    }
    reasons
}

/// The workers as JSON for the `/health` answer.
pub fn workers_json(workers: &[WorkerSnapshot]) -> Value {
    Value::Array(
        workers
            .iter()
            .map(|worker| {
                json!({
                    "index": worker.index,
                    "state": match worker.state {
                        WorkerState::Running => "running",
                        WorkerState::Finished => "finished",
                        WorkerState::Panicked => "panicked",
                    },
                    "steps": worker.steps,
                    "seconds_since_step": worker.since_last_step.as_secs_f64(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(index: usize, state: WorkerState, since: u64) -> WorkerSnapshot {
        WorkerSnapshot {
            index,
            state,
            steps: 10,
            since_last_step: Duration::from_secs(since),
        }
    }

    #[test]
    fn stalled_and_panicked_workers_are_named_finished_ones_are_fine() {
        let stall = Duration::from_secs(30);
        assert!(reasons(&[], stall).is_empty(), "starting");
        let fine = [
            worker(0, WorkerState::Running, 1),
            worker(1, WorkerState::Finished, 120),
        ];
        assert!(reasons(&fine, stall).is_empty());
        let bad = [
            worker(0, WorkerState::Running, 31),
            worker(1, WorkerState::Panicked, 0),
        ];
        let found = reasons(&bad, stall);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("dataflow worker 0 has not completed a step for 31s (limit 30s)"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("dataflow worker 1 panicked"),
            "{found:?}"
        );
        assert_eq!(workers_json(&bad)[1]["state"], "panicked");
    }
}
