//! [`AlignedWindow`]: the timely operator around a [`WindowAggregator`], for tumbling and
//! hopping windows.
//!
//! Rows are exchanged by group key (all to worker 0 without one), so each worker owns its
//! keys' state. For every window not yet emitted in full, the operator keeps a capability at
//! `fire - 1`, where `fire` is the window's next firing time (its end, or the next early
//! firing with `emit_every`), derived from the batch that opened it (whose timestamp, the
//! watermark, is below `fire`). Once the input frontier has no time below `fire`, the window
//! is emitted with that capability, which is then dropped (or moved on to the next early
//! firing), so the frontier downstream moves on. The output's event time is `window_start`,
//! which is at most `end - 1`, so cascaded windows whose size is a multiple of this one stay on
//! time.
//!
//! Late rows that an ended window still accepts (`allowed_lateness`) are emitted as revisions
//! with the capability of the batch that brought them. With processing time, windows fire on
//! the wall clock: the operator asks timely to wake it at the next firing time.
//!
//! The operator has a second output, the `late` side output: rows whose earliest window had
//! been dropped, unchanged, stamped with the watermark of the batch that brought them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeflow_engine::arrow::array::{Array, RecordBatch, Scalar, TimestampMillisecondArray};
use edgeflow_engine::arrow::compute::{filter_record_batch, kernels::cmp::lt};
use edgeflow_engine::arrow::datatypes::{DataType, SchemaRef};
use edgeflow_engine::log_throttle::LogThrottle;
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::operators::Capability;
use edgeflow_engine::timely::dataflow::operators::generic::OutputBuilder;
use edgeflow_engine::timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use edgeflow_engine::{
    Batch, BatchStream, DataflowOperator, EventTime, OperatorContext, key_exchange,
};

use super::aggregator::{Emission, Shed, WindowAggregator};
use super::config::WindowPlan;
use crate::expr::ErrorReporter;
use crate::input_stash::{InputStash, Stashed};

const BUG: &str = "window kernels on a batch of the planned schema cannot fail: \
                   this is a bug, please report it";

/// Name of the side output carrying late rows.
pub const LATE: &str = "late";

/// Metric: windows closed early or cut short to keep the state under `max_keys`.
pub const EVICTED_WINDOWS: &str = "evicted_windows";

/// Metric: keys `emit_empty` stopped tracking to stay under `max_keys`.
pub const FORGOTTEN_KEYS: &str = "forgotten_keys";

/// The planned tumbling- or hopping-window operator.
#[derive(Debug)]
pub struct AlignedWindow {
    pub(crate) plan: Arc<WindowPlan>,
    pub(crate) input_schema: SchemaRef,
}

/// A window waiting for its next emission.
struct Pending {
    end: i64,
    /// When it fires next: its end, or an early firing before it.
    fire: i64,
    capability: Capability<EventTime>,
}

/// The next firing time of the window `[start, end)` after time `after`: the next multiple of
/// `every` after the start (early firings), or the end.
fn next_fire(start: i64, end: i64, after: i64, every: Option<i64>) -> i64 {
    match every {
        None => end,
        Some(every) => {
            let k = ((after - start).div_euclid(every) + 1).max(1);
            start.saturating_add(k.saturating_mul(every)).min(end)
        }
    }
}

/// Wall-clock milliseconds since the epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A time as a timely timestamp (times before the epoch clamp to 0).
fn stamp(time: i64) -> EventTime {
    time.max(0) as EventTime
}

impl DataflowOperator for AlignedWindow {
    fn output_schema(&self) -> SchemaRef {
        self.plan.output_schema.clone()
    }

    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        vec![(LATE.to_string(), self.input_schema.clone())]
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        self.build_with_side_outputs(inputs, ctx).swap_remove(0)
    }

    fn build_with_side_outputs<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> Vec<BatchStream<'scope>> {
        let input = inputs
            .into_iter()
            .next()
            .expect("the planner gives a 'window' operator exactly one input");
        let plan = self.plan.clone();
        let metrics = ctx.metrics.clone();
        let metrics_for_state = ctx.metrics.clone();
        let memory = ctx.memory.clone();
        let name = ctx.name.clone();
        let every = plan.emit_every_ms;
        let processing_time = plan.processing_time;
        // One reporter per aggregate that reads an expression: runtime errors in it (division
        // by zero, a failed cast) make the value null, which the aggregate skips, and are
        // counted as `expression_error`, as in `filter` and `derive`.
        let mut reporters: Vec<Option<ErrorReporter>> = plan
            .aggregates
            .iter()
            .map(|spec| {
                spec.expression
                    .as_ref()
                    .map(|e| ErrorReporter::new(&ctx.name, e.text()))
            })
            .collect();
        // Under a burst of new keys, windows can close early many times a second.
        let mut early_close_log = LogThrottle::default();

        let scope = input.scope();
        let mut builder = OperatorBuilder::new("Window".to_string(), scope);
        let activator = scope.activator_for(builder.operator_info().address);
        let mut input = builder.new_input(input, key_exchange(plan.keys.clone()));
        let (windows, window_stream) = builder.new_output::<Batch>();
        let (late, late_stream) = builder.new_output::<Batch>();
        let mut windows = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(windows);
        let mut late = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(late);

        builder.build(move |initial| {
            // Output is only ever sent with capabilities derived from input batches.
            drop(initial);
            let mut aggregator = WindowAggregator::new(plan.clone()).expect(BUG);
            let mut pending: BTreeMap<i64, Pending> = BTreeMap::new();
            let mut stash = InputStash::default();
            // The state size last reported to the metrics and the memory budget.
            let (mut reported_groups, mut reported_bytes) = (0usize, 0u64);
            let budget = memory.clone();
            let mut account = move |aggregator: &WindowAggregator| {
                let (groups, bytes) = (aggregator.groups(), aggregator.state_bytes() as u64);
                metrics_for_state.add_state_rows(groups as i64 - reported_groups as i64);
                metrics_for_state.add_state_bytes(bytes as i64 - reported_bytes as i64);
                budget.adjust(reported_bytes, bytes);
                (reported_groups, reported_bytes) = (groups, bytes);
            };
            move |frontiers| {
                let mut windows = windows.activate();
                let mut late = late.activate();
                let (window_port, late_port) = (windows.output_index(), late.output_index());
                let now = processing_time.then(now_ms);
                let mut send = |capability: &Capability<EventTime>, rows: Option<RecordBatch>| {
                    if let Some(rows) = rows {
                        metrics.add_rows_out(rows.num_rows());
                        windows
                            .session_with_builder(capability)
                            .give_container(&mut Batch::new(rows));
                    }
                };
                // The capability for revisions: the earliest batch that changed ended windows.
                let mut revision_capability: Option<Capability<EventTime>> = None;

                // Read all that waits, absorb a bounded part (see `crate::input_stash`).
                stash.read(&mut input, window_port, late_port);
                for Stashed {
                    main: capability,
                    side: late_capability,
                    rows,
                } in stash.this_activation()
                {
                    let watermark = *capability.time();
                    metrics.add_rows_in(rows.num_rows());
                    let threshold = aggregator.threshold(watermark);
                    let absorbed = aggregator
                        .absorb(&rows, watermark, now, |start, end| {
                            let (fire, at) = if processing_time {
                                (
                                    next_fire(start, end, now.unwrap_or(start), every),
                                    watermark,
                                )
                            } else {
                                let fire = next_fire(start, end, watermark as i64, every);
                                (fire, watermark.max(stamp(fire - 1)))
                            };
                            let capability = capability.delayed(&at);
                            pending.insert(
                                start,
                                Pending {
                                    end,
                                    fire,
                                    capability,
                                },
                            );
                        })
                        .expect(BUG);
                    for (reporter, &errors) in
                        reporters.iter_mut().zip(aggregator.expression_errors())
                    {
                        if let Some(reporter) = reporter {
                            reporter.report(&metrics, errors);
                        }
                    }
                    metrics.count_dropped(LATE, absorbed.late);
                    metrics.count_dropped("missing_event_time", absorbed.missing_time);
                    if absorbed.late > 0 {
                        let late_rows = late_rows(&rows, plan.event_time, threshold);
                        late.session_with_builder(&late_capability)
                            .give_container(&mut Batch::new(late_rows));
                    }
                    if plan.allowed_lateness_ms > 0
                        && revision_capability
                            .as_ref()
                            .is_none_or(|held| held.time() > &watermark)
                    {
                        revision_capability = Some(capability.clone());
                    }
                    // Keep the state under `max_keys` and the pipeline's memory limit: cut
                    // lateness short, then close the oldest windows early.
                    account(&aggregator);
                    while let Some(shed) = aggregator.shed(memory.exceeded()) {
                        metrics.add_value(EVICTED_WINDOWS, 1);
                        if let Shed::CloseEarly(start) = shed
                            && let Some(window) = pending.remove(&start)
                        {
                            if let Some(windows) = early_close_log.note(1) {
                                tracing::warn!(
                                    operator = %name,
                                    windows,
                                    "More groups held than max_keys or the memory limit allow: \
                                     emitted {windows} window(s) early, the latest starting at \
                                     {}; their later rows count as late (metric \
                                     evicted_windows; one line per 10 s)",
                                    edgeflow_engine::time::format_event_time(stamp(start))
                                );
                            }
                            send(
                                &window.capability,
                                aggregator.emit(start, Emission::Final).expect(BUG),
                            );
                        }
                        account(&aggregator);
                    }
                }
                if !stash.is_empty() {
                    activator.activate();
                }

                let earliest = stash.earliest(&frontiers[0]);
                let reached = |fire: i64| match now {
                    Some(now) => earliest.is_none() || now >= fire,
                    None => earliest.is_none_or(|time| time >= stamp(fire)),
                };
                // One window at a time, earliest start first: firing one may open the next.
                while let Some(start) = pending
                    .iter()
                    .find(|(_, window)| reached(window.fire))
                    .map(|(&start, _)| start)
                {
                    let mut window = pending.remove(&start).expect("due windows are pending");
                    if window.fire < window.end {
                        send(
                            &window.capability,
                            aggregator.emit(start, Emission::Early).expect(BUG),
                        );
                        window.fire = next_fire(start, window.end, window.fire, every);
                        if !processing_time {
                            window.capability.downgrade(&stamp(window.fire - 1));
                        }
                        pending.insert(start, window);
                        continue;
                    }
                    send(
                        &window.capability,
                        aggregator.emit(start, Emission::Final).expect(BUG),
                    );
                    let forgotten = aggregator.forget_idle_keys(start);
                    if forgotten > 0 {
                        metrics.add_value(FORGOTTEN_KEYS, forgotten as u64);
                    }
                    // With `emit_empty`, the next window exists even if no row comes, so
                    // silent keys get their zero-count row: while input may come, and
                    // through the gaps between windows that rows opened.
                    let next = aggregator.next_start(start);
                    let before_last = pending.keys().next_back().is_some_and(|&l| next < l);
                    if aggregator.knows_keys()
                        && (earliest.is_some() || before_last)
                        && !aggregator.holds(next)
                    {
                        let end = aggregator.open_empty(next);
                        let (fire, at) = match now {
                            Some(now) => {
                                (next_fire(next, end, now, every), *window.capability.time())
                            }
                            None => {
                                let after = (*window.capability.time()) as i64;
                                let fire = next_fire(next, end, after.max(next - 1), every);
                                (
                                    fire,
                                    window.capability.time().max(&stamp(fire - 1)).to_owned(),
                                )
                            }
                        };
                        let capability = window.capability.delayed(&at);
                        pending.insert(
                            next,
                            Pending {
                                end,
                                fire,
                                capability,
                            },
                        );
                    }
                }

                if let Some(capability) = revision_capability.take() {
                    for start in aggregator.revised() {
                        send(
                            &capability,
                            aggregator.emit(start, Emission::Revision).expect(BUG),
                        );
                    }
                }
                aggregator.expire(earliest);

                if let (Some(now), Some(next)) = (now, pending.values().map(|w| w.fire).min()) {
                    activator.activate_after(Duration::from_millis((next - now).max(1) as u64));
                }

                account(&aggregator);
            }
        });
        vec![window_stream, late_stream]
    }
}

/// The rows of `rows` whose event time is below `threshold` (see
/// [`super::aggregator::late_threshold`]).
fn late_rows(rows: &RecordBatch, event_time: usize, threshold: i64) -> RecordBatch {
    let times = rows.column(event_time);
    let timezone = match times.data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    let bound = TimestampMillisecondArray::from(vec![threshold]).with_timezone_opt(timezone);
    let mask = lt(times, &Scalar::new(bound)).expect(BUG);
    // Null event times compare as null and are not selected: they are counted as missing.
    filter_record_batch(rows, &mask).expect(BUG)
}
