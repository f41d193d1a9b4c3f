//! One key's detector: [`KeyDetector`] holds the state of a [`MethodSpec`] (for an ensemble,
//! of every member) and the key's warm-up count, and turns each value into a [`Verdict`].
//!
//! Dispatch is a `match` on the method, so a key's state is one enum value with no boxing
//! beyond the windows the method needs.

use super::change_point::ChangePoint;
use super::options::{Combine, MethodSpec};
use super::rules::{Flatline, RateOfChange, threshold};
use super::spike_dip::SpikeDip;
use super::statistical::{Ewma, Mad, ZScore};

/// What a method says about one value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Verdict {
    /// In [0, 1]: how unusual the value is.
    pub score: f64,
    /// Whether it crosses the method's limit.
    pub anomaly: bool,
    /// Why, with the numbers; only for anomalies.
    pub reason: Option<String>,
}

impl Verdict {
    pub(crate) fn normal(score: f64) -> Self {
        Self {
            score,
            anomaly: false,
            reason: None,
        }
    }

    pub(crate) fn anomaly(score: f64, reason: String) -> Self {
        Self {
            score,
            anomaly: true,
            reason: Some(reason),
        }
    }
}

/// The state of one method for one key.
#[derive(Clone, Debug)]
enum MethodState {
    ZScore(ZScore),
    Ewma(Ewma),
    Mad(Mad),
    SpikeDip(SpikeDip),
    ChangePoint(ChangePoint),
    Flatline(Flatline),
    RateOfChange(RateOfChange),
    /// Stateless (`threshold`), or handled by the operator (`gap`, from the watermark).
    None,
    Ensemble(Vec<KeyDetector>),
}

/// One key's detector with its warm-up count.
#[derive(Clone, Debug)]
pub(crate) struct KeyDetector {
    seen: u64,
    state: MethodState,
}

impl KeyDetector {
    /// A fresh detector for `spec`.
    pub(crate) fn new(spec: &MethodSpec) -> Self {
        let state = match spec {
            MethodSpec::ZScore { span, .. } => MethodState::ZScore(ZScore::new(span)),
            MethodSpec::Ewma { .. } => MethodState::Ewma(Ewma::default()),
            MethodSpec::Mad { span, .. } => MethodState::Mad(Mad::new(span)),
            MethodSpec::SpikeDip { history, .. } => MethodState::SpikeDip(SpikeDip::new(*history)),
            MethodSpec::ChangePoint { span, .. } => {
                MethodState::ChangePoint(ChangePoint::new(span))
            }
            MethodSpec::Flatline { .. } => MethodState::Flatline(Flatline::default()),
            MethodSpec::RateOfChange { .. } => MethodState::RateOfChange(RateOfChange::default()),
            MethodSpec::Threshold { .. } | MethodSpec::Gap { .. } => MethodState::None,
            MethodSpec::Ensemble { members, .. } => {
                MethodState::Ensemble(members.iter().map(|(m, _)| KeyDetector::new(m)).collect())
            }
        };
        Self { seen: 0, state }
    }

    /// Judges the key's next value (in event-time order). During the first `warmup` values the
    /// method learns but reports nothing (score 0).
    pub(crate) fn observe(
        &mut self,
        spec: &MethodSpec,
        warmup: u64,
        time: i64,
        value: f64,
        limits: &[Option<f64>],
    ) -> Verdict {
        self.seen = self.seen.saturating_add(1);
        let verdict = match (&mut self.state, spec) {
            (
                MethodState::ZScore(s),
                MethodSpec::ZScore {
                    span,
                    threshold,
                    direction,
                },
            ) => s.observe(span, *threshold, *direction, time, value),
            (
                MethodState::Ewma(s),
                MethodSpec::Ewma {
                    alpha,
                    threshold,
                    direction,
                },
            ) => s.observe(*alpha, *threshold, *direction, value),
            (
                MethodState::Mad(s),
                MethodSpec::Mad {
                    span,
                    threshold,
                    direction,
                },
            ) => s.observe(span, *threshold, *direction, time, value),
            (
                MethodState::SpikeDip(s),
                MethodSpec::SpikeDip {
                    confidence,
                    direction,
                    ..
                },
            ) => s.observe(*confidence, *direction, time, value),
            (
                MethodState::ChangePoint(s),
                MethodSpec::ChangePoint {
                    span,
                    threshold,
                    drift,
                    direction,
                },
            ) => s.observe(span, *threshold, *drift, *direction, time, value),
            (
                MethodState::Flatline(s),
                MethodSpec::Flatline {
                    epsilon,
                    duration_ms,
                },
            ) => s.observe(*epsilon, *duration_ms, time, value),
            (
                MethodState::RateOfChange(s),
                MethodSpec::RateOfChange {
                    max_rate,
                    direction,
                },
            ) => s.observe(*max_rate, *direction, time, value),
            (MethodState::None, MethodSpec::Threshold { min, max }) => {
                threshold(*min, *max, limits, value)
            }
            (MethodState::Ensemble(states), MethodSpec::Ensemble { members, combine }) => {
                ensemble(states, members, *combine, time, value, limits)
            }
            // `gap` judges silences, not values; a spec always builds its own state.
            _ => Verdict::normal(0.0),
        };
        if self.seen <= warmup {
            Verdict::normal(0.0)
        } else {
            verdict
        }
    }

    /// Estimated bytes of this key's state (the struct and its heap).
    pub(crate) fn state_bytes(&self) -> usize {
        let heap = match &self.state {
            MethodState::ZScore(s) => s.heap_bytes(),
            MethodState::Mad(s) => s.heap_bytes(),
            MethodState::SpikeDip(s) => s.heap_bytes(),
            MethodState::ChangePoint(s) => s.heap_bytes(),
            MethodState::Ensemble(members) => members.iter().map(Self::state_bytes).sum(),
            _ => 0,
        };
        std::mem::size_of::<Self>() + heap
    }
}

/// Member scores an ensemble keeps on the stack for its reason (`mean` names every member's
/// score); members beyond it still count, but are left out of that reason.
const INLINE_MEMBERS: usize = 16;

/// Runs every member and combines their verdicts, without allocating unless there is a
/// reason to write.
fn ensemble(
    states: &mut [KeyDetector],
    members: &[(MethodSpec, u64)],
    combine: Combine,
    time: i64,
    value: f64,
    limits: &[Option<f64>],
) -> Verdict {
    let n = members.len().max(1);
    let (mut votes, mut max, mut sum) = (0usize, 0.0f64, 0.0f64);
    let mut scores = [0.0f64; INLINE_MEMBERS];
    // Reasons are rare (anomalies only): this stays unallocated for normal values.
    let mut reasons: Vec<(usize, String)> = Vec::new();
    for (index, (state, (spec, warmup))) in states.iter_mut().zip(members).enumerate() {
        let verdict = state.observe(spec, *warmup, time, value, limits);
        votes += usize::from(verdict.anomaly);
        max = max.max(verdict.score);
        sum += verdict.score;
        if let Some(slot) = scores.get_mut(index) {
            *slot = verdict.score;
        }
        if let Some(why) = verdict.reason {
            reasons.push((index, why));
        }
    }
    let (score, anomaly) = match combine {
        Combine::Max => (max, votes > 0),
        Combine::Mean { min_score } => {
            let mean = sum / n as f64;
            (mean, mean >= min_score)
        }
        Combine::Vote { min_votes } => (votes as f64 / n as f64, votes >= min_votes),
    };
    if !anomaly {
        return Verdict::normal(score);
    }
    let mut reason = match combine {
        Combine::Max => String::new(),
        Combine::Mean { min_score } => format!("mean score {score:.3} ≥ {min_score}: "),
        Combine::Vote { .. } => format!("{votes} of {n} methods agree: "),
    };
    let mut reasons = reasons.into_iter().peekable();
    let mut first = true;
    for (index, (spec, _)) in members.iter().enumerate() {
        let part = match reasons.next_if(|(at, _)| *at == index) {
            Some((_, why)) => format!("{}: {why}", spec.name()),
            None if matches!(combine, Combine::Mean { .. }) && index < INLINE_MEMBERS => {
                format!("{} score {:.3}", spec.name(), scores[index])
            }
            None => continue,
        };
        if !first {
            reason.push_str("; ");
        }
        reason.push_str(&part);
        first = false;
    }
    Verdict::anomaly(score, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::options::{Direction, Limit, Span};

    fn members() -> Vec<(MethodSpec, u64)> {
        let span = Span {
            events: 20,
            age: None,
        };
        vec![
            (
                MethodSpec::ZScore {
                    span,
                    threshold: 3.0,
                    direction: Direction::Both,
                },
                5,
            ),
            (
                MethodSpec::Threshold {
                    min: None,
                    max: Some(Limit::Value(100.0)),
                },
                1,
            ),
        ]
    }

    fn run(spec: &MethodSpec, values: &[f64]) -> Vec<Verdict> {
        let mut d = KeyDetector::new(spec);
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| d.observe(spec, 3, i as i64 * 1000, v, &[]))
            .collect()
    }

    #[test]
    fn warmup_reports_nothing() {
        let spec = MethodSpec::Threshold {
            min: None,
            max: Some(Limit::Value(1.0)),
        };
        let verdicts = run(&spec, &[5.0, 5.0, 5.0, 5.0]);
        assert!(verdicts[..3].iter().all(|v| !v.anomaly && v.score == 0.0));
        assert!(verdicts[3].anomaly);
    }

    #[test]
    fn ensemble_combinations() {
        let values: Vec<f64> = (0..12)
            .map(|i| 50.0 + (i % 3) as f64)
            .chain([150.0])
            .collect();
        let max = MethodSpec::Ensemble {
            members: members(),
            combine: Combine::Max,
        };
        let last = run(&max, &values).pop().unwrap();
        assert!(last.anomaly);
        let reason = last.reason.unwrap();
        assert!(reason.starts_with("zscore: value 150 is"), "{reason}");
        assert!(
            reason.ends_with("threshold: value 150 is above the limit 100"),
            "{reason}"
        );

        let vote = MethodSpec::Ensemble {
            members: members(),
            combine: Combine::Vote { min_votes: 2 },
        };
        let verdicts = run(&vote, &values);
        assert_eq!(verdicts.last().unwrap().score, 1.0);
        assert!(verdicts.last().unwrap().anomaly);
        let one = run(&vote, &[50.0, 51.0, 50.0, 51.0, 50.0, 51.0, 50.0, 95.0]);
        let last = one.last().unwrap();
        assert!(!last.anomaly && last.score == 0.5, "{last:?}");

        let mean = MethodSpec::Ensemble {
            members: members(),
            combine: Combine::Mean { min_score: 0.5 },
        };
        let last = run(&mean, &values).pop().unwrap();
        assert!(last.anomaly && last.reason.unwrap().starts_with("mean score"));
    }
}
