//! The options of an `anomaly` operator ([`AnomalyConfig`]) and their checked form
//! ([`MethodSpec`]), one variant per method with its parameters and defaults.
//!
//! Every method reads the same flat table, so a query file says `method = "mad"` and sets
//! only the options that method takes; an option another method takes is an error that names
//! the methods it belongs to. Ensemble members are tables of the same shape without
//! `group_by` and `value`.

use serde::Deserialize;

use edgeflow_engine::OptionError;

use super::statistical::humanize_ms;

/// How far back a rolling method looks: a number of events, or a duration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum WindowOption {
    /// The last N events of the key.
    Events(u64),
    /// The events of the last duration (`"10m"`), at most `max_history` of them.
    Duration(String),
}

/// A limit of the `threshold` method: a number, or the name of a column holding it per row.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LimitOption {
    /// A fixed limit.
    Value(f64),
    /// A numeric column of the input (for example joined from a device registry).
    Column(String),
}

/// Options of an `anomaly` operator (and, without `group_by`, `value` and `members`, of an
/// ensemble member).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// `zscore`, `ewma`, `mad`, `spike_dip`, `change_point`, `flatline`, `gap`,
    /// `rate_of_change`, `threshold` or `ensemble`. Required.
    pub method: String,
    /// Fields whose values make a key; each key has its own state. Default: one key.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// The numeric field, or an expression, to watch. Required except for `gap`.
    pub value: Option<String>,
    /// Events per key before the method reports anything (score 0, `is_anomaly` false).
    /// Default: the window (at most 1000 events) for rolling methods, 30 for `ewma` and
    /// `change_point`, 1 for the others.
    pub warmup: Option<u64>,
    /// After an anomaly, how long the key stays quiet: its scores are capped below 0.5 and
    /// `is_anomaly` is false until then, so one incident gives one alert. Any method. Default:
    /// none.
    pub cooldown: Option<String>,
    /// Most keys one worker holds; past it the least recently seen keys are forgotten
    /// (counted as `forgotten_keys`). Default 100000.
    pub max_keys: Option<u64>,
    /// `zscore`, `mad`: the window of past events the value is compared with, as a count
    /// (`100`) or a duration (`"1h"`). Default 100 events.
    pub window: Option<WindowOption>,
    /// Bound on the events a duration window keeps per key. Default 10000.
    pub max_history: Option<u64>,
    /// `zscore`, `mad`, `ewma` (L), `change_point` (h): how many standard deviations (or
    /// CUSUM units) make an anomaly. Defaults 3, 3.5, 3 and 5.
    pub threshold: Option<f64>,
    /// `ewma`: the weight of the newest value, in (0, 1]. Default 0.1.
    pub alpha: Option<f64>,
    /// `change_point`: the allowance k, in standard deviations, that the CUSUM ignores.
    /// Default 0.5.
    pub drift: Option<f64>,
    /// `spike_dip`: the confidence level, 1 to 100. Default 95.
    pub confidence: Option<f64>,
    /// `spike_dip`: how many past events the value is ranked against. Default 100.
    pub history: Option<u64>,
    /// `zscore`, `ewma`, `mad`, `spike_dip`, `change_point`, `rate_of_change`: `"both"`
    /// (default), `"up"` (spikes, rises) or `"down"` (dips, falls).
    pub direction: Option<String>,
    /// `flatline`: the largest variation that still counts as no variation. Default 0.
    pub epsilon: Option<f64>,
    /// `flatline`: how long the value must stay flat; `gap`: how long a key may be silent.
    /// Required for both.
    pub duration: Option<String>,
    /// `rate_of_change`: the largest |dv/dt| allowed, per second. Required.
    pub max_rate: Option<f64>,
    /// `threshold`: the lowest normal value, a number or a column name.
    pub min: Option<LimitOption>,
    /// `threshold`: the highest normal value, a number or a column name.
    pub max: Option<LimitOption>,
    /// `ensemble`: the member methods, each a table with its own `method` and options.
    pub members: Option<Vec<AnomalyConfig>>,
    /// `ensemble`: `"max"` (default: any member's anomaly), `"mean"` or `"vote"`.
    pub combine: Option<String>,
    /// `ensemble` with `combine = "vote"`: members that must agree. Default: a majority.
    pub min_votes: Option<u64>,
    /// `ensemble` with `combine = "mean"`: the mean score that makes an anomaly. Default 0.5.
    pub min_score: Option<f64>,
}

/// Which deviations count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    Both,
    /// Only upwards (spikes, rises).
    Up,
    /// Only downwards (dips, falls).
    Down,
}

impl Direction {
    /// Whether a deviation of sign `delta` counts.
    pub(crate) fn admits(self, delta: f64) -> bool {
        match self {
            Self::Both => true,
            Self::Up => delta > 0.0,
            Self::Down => delta < 0.0,
        }
    }
}

/// A checked window: at most `events` values, and with `age` only those younger than it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    /// At most this many events.
    pub events: usize,
    /// Only events younger than this (ms), for duration windows.
    pub age: Option<i64>,
}

impl Span {
    /// "the last 100 rows" or "the last 10m".
    pub(crate) fn describe(&self) -> String {
        match self.age {
            Some(age) => format!("the last {}", humanize_ms(age)),
            None => format!("the last {} rows", self.events),
        }
    }
}

/// How an ensemble combines its members.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Combine {
    /// The highest score; an anomaly when any member says so.
    Max,
    /// The mean score; an anomaly when it reaches `min_score`.
    Mean {
        /// The mean score that makes an anomaly.
        min_score: f64,
    },
    /// The share of members that say anomaly; an anomaly with at least `min_votes`.
    Vote {
        /// Members that must agree.
        min_votes: usize,
    },
}

/// A limit of the `threshold` method, checked: a value or an index into the limit columns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// A fixed limit.
    Value(f64),
    /// The value of the n-th limit column of the row.
    Column(usize),
}

/// A method with its checked parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum MethodSpec {
    /// Rolling mean and standard deviation.
    ZScore {
        /// The window.
        span: Span,
        /// σ for an anomaly.
        threshold: f64,
        /// Which deviations count.
        direction: Direction,
    },
    /// Exponentially weighted mean and variance.
    Ewma {
        /// Weight of the newest value.
        alpha: f64,
        /// L, σ for an anomaly.
        threshold: f64,
        /// Which deviations count.
        direction: Direction,
    },
    /// Rolling median and MAD.
    Mad {
        /// The window.
        span: Span,
        /// Robust z for an anomaly.
        threshold: f64,
        /// Which deviations count.
        direction: Direction,
    },
    /// Rank against the recent history.
    SpikeDip {
        /// Past events ranked against.
        history: usize,
        /// Confidence level, 1–100.
        confidence: f64,
        /// Spikes, dips or both.
        direction: Direction,
    },
    /// Two-sided CUSUM against a rolling baseline.
    ChangePoint {
        /// The baseline window.
        span: Span,
        /// h, the alarm level.
        threshold: f64,
        /// k, the allowance.
        drift: f64,
        /// Level rises, falls or both.
        direction: Direction,
    },
    /// No variation beyond `epsilon` for `duration_ms`.
    Flatline {
        /// Largest variation that counts as flat.
        epsilon: f64,
        /// How long flat means stuck.
        duration_ms: i64,
    },
    /// A key silent for `duration_ms`.
    Gap {
        /// How long a key may be silent.
        duration_ms: i64,
    },
    /// |dv/dt| above `max_rate` per second.
    RateOfChange {
        /// Largest rate allowed, per second.
        max_rate: f64,
        /// Rises, falls or both.
        direction: Direction,
    },
    /// Static or per-row limits.
    Threshold {
        /// Lowest normal value.
        min: Option<Limit>,
        /// Highest normal value.
        max: Option<Limit>,
    },
    /// Several methods combined.
    Ensemble {
        /// The members, each with its own warm-up.
        members: Vec<(MethodSpec, u64)>,
        /// How scores combine.
        combine: Combine,
    },
}

impl MethodSpec {
    /// The method's name, as in `method = "…"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ZScore { .. } => "zscore",
            Self::Ewma { .. } => "ewma",
            Self::Mad { .. } => "mad",
            Self::SpikeDip { .. } => "spike_dip",
            Self::ChangePoint { .. } => "change_point",
            Self::Flatline { .. } => "flatline",
            Self::Gap { .. } => "gap",
            Self::RateOfChange { .. } => "rate_of_change",
            Self::Threshold { .. } => "threshold",
            Self::Ensemble { .. } => "ensemble",
        }
    }

    /// The silence after which a key is reported, when this is (or contains) `gap`.
    pub(crate) fn gap_ms(&self) -> Option<i64> {
        match self {
            Self::Gap { duration_ms } => Some(*duration_ms),
            Self::Ensemble { members, .. } => members.iter().filter_map(|(m, _)| m.gap_ms()).min(),
            _ => None,
        }
    }
}

/// Every method name, sorted.
pub const METHODS: [&str; 10] = [
    "change_point",
    "ensemble",
    "ewma",
    "flatline",
    "gap",
    "mad",
    "rate_of_change",
    "spike_dip",
    "threshold",
    "zscore",
];

/// Which methods take each method-specific option (for "does not apply" errors).
const TAKES: [(&str, &[&str]); 16] = [
    ("window", &["zscore", "mad", "change_point"]),
    ("max_history", &["zscore", "mad", "change_point"]),
    ("threshold", &["zscore", "mad", "ewma", "change_point"]),
    ("alpha", &["ewma"]),
    ("drift", &["change_point"]),
    ("confidence", &["spike_dip"]),
    ("history", &["spike_dip"]),
    (
        "direction",
        &[
            "zscore",
            "ewma",
            "mad",
            "spike_dip",
            "change_point",
            "rate_of_change",
        ],
    ),
    ("epsilon", &["flatline"]),
    ("duration", &["flatline", "gap"]),
    ("max_rate", &["rate_of_change"]),
    ("min", &["threshold"]),
    ("max", &["threshold"]),
    ("members", &["ensemble"]),
    ("combine", &["ensemble"]),
    ("min_votes", &["ensemble"]),
];

/// Resolves limit column names to indices (the operator owns the list of limit columns).
pub(crate) trait LimitColumns {
    /// The index of `name` among the limit columns, or an error at `path`.
    fn limit_column(&mut self, name: &str, path: &[String]) -> Result<usize, OptionError>;
}

fn at(prefix: &[String], option: &str, message: impl Into<String>) -> OptionError {
    let mut path = prefix.to_vec();
    path.push(option.to_string());
    OptionError {
        path,
        message: message.into(),
        hint: None,
    }
}

impl AnomalyConfig {
    fn set_options(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        let flags = [
            ("window", self.window.is_some()),
            ("max_history", self.max_history.is_some()),
            ("threshold", self.threshold.is_some()),
            ("alpha", self.alpha.is_some()),
            ("drift", self.drift.is_some()),
            ("confidence", self.confidence.is_some()),
            ("history", self.history.is_some()),
            ("direction", self.direction.is_some()),
            ("epsilon", self.epsilon.is_some()),
            ("duration", self.duration.is_some()),
            ("max_rate", self.max_rate.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("members", self.members.is_some()),
            ("combine", self.combine.is_some()),
            ("min_votes", self.min_votes.is_some()),
            ("min_score", self.min_score.is_some()),
        ];
        for (name, is_set) in flags {
            if is_set {
                set.push(name);
            }
        }
        set
    }

    /// Checks the method and its parameters; `prefix` is the path of this table (empty at the
    /// top, `members.N` inside an ensemble). Returns the method and its warm-up.
    pub(crate) fn method_spec(
        &self,
        prefix: &[String],
        limits: &mut dyn LimitColumns,
        errors: &mut Vec<OptionError>,
    ) -> Option<(MethodSpec, u64)> {
        let method = self.method.as_str();
        if !METHODS.contains(&method) {
            errors.push(
                at(
                    prefix,
                    "method",
                    format!("unknown anomaly method '{method}'"),
                )
                .suggest(method, METHODS),
            );
            return None;
        }
        let before = errors.len();
        for option in self.set_options() {
            let takes: &[&str] = if option == "min_score" {
                &["ensemble"]
            } else {
                TAKES
                    .iter()
                    .find(|(name, _)| *name == option)
                    .map_or(&[], |(_, m)| *m)
            };
            if !takes.contains(&method) {
                errors.push(
                    at(
                        prefix,
                        option,
                        format!("'{option}' does not apply to method '{method}'"),
                    )
                    .with_hint(format!("'{option}' is an option of: {}", takes.join(", "))),
                );
            }
        }
        let direction = match self.direction.as_deref() {
            None | Some("both") => Direction::Both,
            Some("up") => Direction::Up,
            Some("down") => Direction::Down,
            Some(other) => {
                errors.push(
                    at(prefix, "direction", format!("unknown direction '{other}'"))
                        .with_hint("use \"both\", \"up\" or \"down\""),
                );
                Direction::Both
            }
        };
        let positive = |errors: &mut Vec<OptionError>, name: &str, value: Option<f64>, default| {
            let value = value.unwrap_or(default);
            if !(value.is_finite() && value > 0.0) {
                errors.push(at(
                    prefix,
                    name,
                    format!("'{name}' must be a positive number, not {value}"),
                ));
            }
            value
        };
        let duration = |errors: &mut Vec<OptionError>| -> i64 {
            match self.duration.as_deref() {
                None => {
                    errors.push(
                        at(
                            prefix,
                            "duration",
                            format!("method '{method}' needs 'duration'"),
                        )
                        .with_hint("duration = \"10m\""),
                    );
                    0
                }
                Some(text) => match edgeflow_engine::time::parse_duration(text) {
                    Ok(d) if !d.is_zero() => d.as_millis().min(i64::MAX as u128) as i64,
                    Ok(_) => {
                        errors.push(at(prefix, "duration", "'duration' must not be zero"));
                        0
                    }
                    Err(e) => {
                        errors.push(at(prefix, "duration", e));
                        0
                    }
                },
            }
        };
        let max_history = self.max_history.unwrap_or(10_000);
        if max_history == 0 || max_history > 1_000_000 {
            errors.push(at(
                prefix,
                "max_history",
                format!("'max_history' must be between 1 and 1000000, not {max_history}"),
            ));
        }
        let span = |errors: &mut Vec<OptionError>, default: u64| -> Span {
            match &self.window {
                None => Span {
                    events: default as usize,
                    age: None,
                },
                Some(WindowOption::Events(n)) if (2..=1_000_000).contains(n) => Span {
                    events: *n as usize,
                    age: None,
                },
                Some(WindowOption::Events(n)) => {
                    errors.push(at(
                        prefix,
                        "window",
                        format!("'window' must hold 2 to 1000000 events, not {n}"),
                    ));
                    Span {
                        events: 2,
                        age: None,
                    }
                }
                Some(WindowOption::Duration(text)) => {
                    let age = match edgeflow_engine::time::parse_duration(text) {
                        Ok(d) if !d.is_zero() => d.as_millis().min(i64::MAX as u128) as i64,
                        Ok(_) => {
                            errors.push(at(prefix, "window", "'window' must not be zero"));
                            1
                        }
                        Err(e) => {
                            errors.push(at(prefix, "window", e).with_hint(
                                "a number of events (window = 100) or a duration (\"10m\")",
                            ));
                            1
                        }
                    };
                    Span {
                        events: max_history as usize,
                        age: Some(age),
                    }
                }
            }
        };
        let spec = match method {
            "zscore" => MethodSpec::ZScore {
                span: span(errors, 100),
                threshold: positive(errors, "threshold", self.threshold, 3.0),
                direction,
            },
            "mad" => MethodSpec::Mad {
                span: span(errors, 100),
                threshold: positive(errors, "threshold", self.threshold, 3.5),
                direction,
            },
            "ewma" => {
                let alpha = positive(errors, "alpha", self.alpha, 0.1);
                if alpha > 1.0 {
                    errors.push(at(
                        prefix,
                        "alpha",
                        format!("'alpha' must be at most 1, not {alpha}"),
                    ));
                }
                MethodSpec::Ewma {
                    alpha,
                    threshold: positive(errors, "threshold", self.threshold, 3.0),
                    direction,
                }
            }
            "spike_dip" => {
                let confidence = self.confidence.unwrap_or(95.0);
                if !(1.0..=100.0).contains(&confidence) {
                    errors.push(at(
                        prefix,
                        "confidence",
                        format!("'confidence' must be between 1 and 100, not {confidence}"),
                    ));
                }
                let history = self.history.unwrap_or(100);
                if !(2..=100_000).contains(&history) {
                    errors.push(at(
                        prefix,
                        "history",
                        format!("'history' must be between 2 and 100000, not {history}"),
                    ));
                }
                MethodSpec::SpikeDip {
                    history: history as usize,
                    confidence,
                    direction,
                }
            }
            "change_point" => MethodSpec::ChangePoint {
                span: span(errors, 100),
                threshold: positive(errors, "threshold", self.threshold, 5.0),
                drift: {
                    let drift = self.drift.unwrap_or(0.5);
                    if !(drift.is_finite() && drift >= 0.0) {
                        errors.push(at(prefix, "drift", "'drift' must be 0 or more"));
                    }
                    drift
                },
                direction,
            },
            "flatline" => {
                let epsilon = self.epsilon.unwrap_or(0.0);
                if !(epsilon.is_finite() && epsilon >= 0.0) {
                    errors.push(at(prefix, "epsilon", "'epsilon' must be 0 or more"));
                }
                MethodSpec::Flatline {
                    epsilon,
                    duration_ms: duration(errors),
                }
            }
            "gap" => MethodSpec::Gap {
                duration_ms: duration(errors),
            },
            "rate_of_change" => {
                if self.max_rate.is_none() {
                    errors.push(
                        at(
                            prefix,
                            "max_rate",
                            "method 'rate_of_change' needs 'max_rate'",
                        )
                        .with_hint("max_rate = 2.0 (per second)"),
                    );
                }
                MethodSpec::RateOfChange {
                    max_rate: positive(errors, "max_rate", self.max_rate, 1.0),
                    direction,
                }
            }
            "threshold" => {
                let mut limit = |name: &str, option: &Option<LimitOption>| match option {
                    None => None,
                    Some(LimitOption::Value(v)) if v.is_finite() => Some(Limit::Value(*v)),
                    Some(LimitOption::Value(v)) => {
                        errors.push(at(
                            prefix,
                            name,
                            format!("'{name}' must be finite, not {v}"),
                        ));
                        None
                    }
                    Some(LimitOption::Column(column)) => {
                        let mut path = prefix.to_vec();
                        path.push(name.to_string());
                        match limits.limit_column(column, &path) {
                            Ok(index) => Some(Limit::Column(index)),
                            Err(e) => {
                                errors.push(e);
                                None
                            }
                        }
                    }
                };
                let (min, max) = (limit("min", &self.min), limit("max", &self.max));
                if self.min.is_none() && self.max.is_none() {
                    errors.push(
                        at(
                            prefix,
                            "max",
                            "method 'threshold' needs 'min', 'max' or both",
                        )
                        .with_hint("max = 80.0, or max = \"max_temperature\" (a column)"),
                    );
                }
                if let (Some(Limit::Value(lo)), Some(Limit::Value(hi))) = (min, max)
                    && lo > hi
                {
                    errors.push(at(prefix, "min", format!("'min' {lo} is above 'max' {hi}")));
                }
                MethodSpec::Threshold { min, max }
            }
            "ensemble" => self.ensemble(prefix, limits, errors)?,
            _ => return None,
        };
        let default_warmup = match &spec {
            MethodSpec::ZScore { span, .. } | MethodSpec::Mad { span, .. } => {
                if span.age.is_some() {
                    30
                } else {
                    span.events.min(1000) as u64
                }
            }
            MethodSpec::ChangePoint { span, .. } => {
                if span.age.is_some() {
                    30
                } else {
                    span.events.min(1000) as u64
                }
            }
            MethodSpec::SpikeDip { history, .. } => (*history).min(1000) as u64,
            MethodSpec::Ewma { .. } => 30,
            _ => 1,
        };
        let warmup = self.warmup.unwrap_or(default_warmup).max(1);
        (errors.len() == before).then_some((spec, warmup))
    }

    fn ensemble(
        &self,
        prefix: &[String],
        limits: &mut dyn LimitColumns,
        errors: &mut Vec<OptionError>,
    ) -> Option<MethodSpec> {
        let Some(members) = self.members.as_ref().filter(|m| !m.is_empty()) else {
            errors.push(
                at(
                    prefix,
                    "members",
                    "method 'ensemble' needs at least one member",
                )
                .with_hint("members = [{ method = \"zscore\" }, { method = \"mad\" }]"),
            );
            return None;
        };
        let mut specs = Vec::new();
        for (index, member) in members.iter().enumerate() {
            let mut path = prefix.to_vec();
            path.push("members".into());
            path.push(index.to_string());
            if !member.group_by.is_empty() {
                errors.push(at(
                    &path,
                    "group_by",
                    "members share the operator's 'group_by'",
                ));
            }
            if member.value.is_some() {
                errors.push(at(&path, "value", "members share the operator's 'value'"));
            }
            if member.cooldown.is_some() {
                errors.push(at(
                    &path,
                    "cooldown",
                    "members share the operator's 'cooldown'",
                ));
            }
            if member.max_keys.is_some() {
                errors.push(at(
                    &path,
                    "max_keys",
                    "members share the operator's 'max_keys'",
                ));
            }
            if member.method == "ensemble" {
                errors.push(at(
                    &path,
                    "method",
                    "an ensemble cannot contain an ensemble",
                ));
                continue;
            }
            if let Some(spec) = member.method_spec(&path, limits, errors) {
                specs.push(spec);
            }
        }
        let combine = match self.combine.as_deref() {
            None | Some("max") => Combine::Max,
            Some("mean") => {
                let min_score = self.min_score.unwrap_or(0.5);
                if !(0.0..=1.0).contains(&min_score) {
                    errors.push(at(
                        prefix,
                        "min_score",
                        "'min_score' must be between 0 and 1",
                    ));
                }
                Combine::Mean { min_score }
            }
            Some("vote") => {
                let n = members.len() as u64;
                let min_votes = self.min_votes.unwrap_or(n / 2 + 1);
                if min_votes == 0 || min_votes > n {
                    errors.push(at(
                        prefix,
                        "min_votes",
                        format!("'min_votes' must be between 1 and {n} (the members)"),
                    ));
                }
                Combine::Vote {
                    min_votes: min_votes as usize,
                }
            }
            Some(other) => {
                errors.push(
                    at(prefix, "combine", format!("unknown combination '{other}'"))
                        .with_hint("use \"max\", \"mean\" or \"vote\""),
                );
                Combine::Max
            }
        };
        if self.min_votes.is_some() && !matches!(combine, Combine::Vote { .. }) {
            errors.push(at(
                prefix,
                "min_votes",
                "'min_votes' only applies to combine = \"vote\"",
            ));
        }
        if self.min_score.is_some() && !matches!(combine, Combine::Mean { .. }) {
            errors.push(at(
                prefix,
                "min_score",
                "'min_score' only applies to combine = \"mean\"",
            ));
        }
        Some(MethodSpec::Ensemble {
            members: specs,
            combine,
        })
    }
}
