//! The aggregate expressions of a window's `aggregates` table: `count()`, `count(arg)`,
//! `count_if(condition)`, `sum`, `mean`, `min`, `max`, `first`, `last`, `min_at`, `max_at`,
//! `stddev`, `variance`, `stddev_pop`, `var_pop`, `median`, `quantile(arg, q)`,
//! `distinct_count`, `rate`, `increase`, `time_weighted_mean(arg[, 'step' | 'linear'])` and
//! `integral(arg[, 'step' | 'linear'])`.
//!
//! The outer call (one aggregate function, its argument, and for a few functions one literal
//! parameter after a comma) is parsed by hand here, so every mistake in it gets a message that
//! quotes it. The argument is either a plain field name, read as it is (the fast path, keeping
//! the field's own type), or an expression of the language in [`crate::expr`], which the
//! planner compiles against the input schema.

use std::fmt;

use edgeflow_engine::config::closest_name;

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateFunction {
    /// `count()` counts rows; `count(field)` counts non-null (and non-NaN) values. Int64.
    Count,
    /// `count_if(condition)` counts rows where the bool condition is true (not false or
    /// null). Int64.
    CountIf,
    /// Sum of the non-null, non-NaN values, as float64; null when there are none.
    Sum,
    /// Arithmetic mean of the non-null, non-NaN values, as float64; null when there are none.
    Mean,
    /// Smallest non-null, non-NaN value, in the field's own type; null when there are none.
    Min,
    /// Largest non-null, non-NaN value, in the field's own type; null when there are none.
    Max,
    /// The value with the smallest event time (the first to arrive among equal times), in the
    /// argument's own type (numbers, bools, strings and timestamps).
    First,
    /// The value with the largest event time (the last to arrive among equal times).
    Last,
    /// The event time (a UTC timestamp) of the smallest value, the earliest one on ties.
    MinAt,
    /// The event time (a UTC timestamp) of the largest value, the earliest one on ties.
    MaxAt,
    /// Sample standard deviation (n − 1), float64; null with fewer than 2 values.
    Stddev,
    /// Sample variance (n − 1), float64; null with fewer than 2 values.
    Variance,
    /// Population standard deviation (n), float64; null without values.
    StddevPop,
    /// Population variance (n), float64; null without values.
    VarPop,
    /// The median from a DDSketch (1% relative error), float64.
    Median,
    /// `quantile(arg, q)`: the q-quantile from a DDSketch (1% relative error), float64.
    Quantile,
    /// Number of distinct values: exact up to a bound, HyperLogLog++ above it. Int64.
    DistinctCount,
    /// Increase per second of a monotonic counter (resets handled), over the span of the
    /// samples. Float64.
    Rate,
    /// Increase of a monotonic counter, resets handled as Prometheus does. Float64.
    Increase,
    /// Mean weighted by the time each value held (step or linear interpolation). Float64.
    TimeWeightedMean,
    /// Integral over time in value·seconds (step or linear interpolation). Float64.
    Integral,
}

impl AggregateFunction {
    /// Every function with its name, in the order help texts list them.
    pub const ALL: [(&'static str, AggregateFunction); 21] = [
        ("count", Self::Count),
        ("count_if", Self::CountIf),
        ("sum", Self::Sum),
        ("mean", Self::Mean),
        ("min", Self::Min),
        ("max", Self::Max),
        ("first", Self::First),
        ("last", Self::Last),
        ("min_at", Self::MinAt),
        ("max_at", Self::MaxAt),
        ("stddev", Self::Stddev),
        ("variance", Self::Variance),
        ("stddev_pop", Self::StddevPop),
        ("var_pop", Self::VarPop),
        ("median", Self::Median),
        ("quantile", Self::Quantile),
        ("distinct_count", Self::DistinctCount),
        ("rate", Self::Rate),
        ("increase", Self::Increase),
        ("time_weighted_mean", Self::TimeWeightedMean),
        ("integral", Self::Integral),
    ];

    /// Other names accepted for a function (not listed in help texts).
    const SYNONYMS: [(&'static str, AggregateFunction); 2] =
        [("min_by_time", Self::MinAt), ("max_by_time", Self::MaxAt)];

    /// The name as written in a query file.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, function)| *function == self)
            .map_or("?", |(name, _)| name)
    }

    fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        Self::ALL
            .iter()
            .chain(&Self::SYNONYMS)
            .find(|(candidate, _)| *candidate == lower)
            .map(|(_, function)| *function)
    }

    /// The literal parameter this function takes after its argument, if any.
    fn parameter(self) -> Option<ParameterKind> {
        match self {
            Self::Quantile => Some(ParameterKind::Level),
            Self::TimeWeightedMean | Self::Integral => Some(ParameterKind::Interpolation),
            _ => None,
        }
    }
}

impl fmt::Display for AggregateFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How `time_weighted_mean` and `integral` fill the time between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// The previous value holds until the next sample (the default, as historians record
    /// values that are reported on change).
    #[default]
    Step,
    /// A straight line between two samples (the trapezoid rule).
    Linear,
}

/// The literal parameter after an aggregate's argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AggregateParameter {
    /// The q of `quantile(arg, q)`, in [0, 1].
    Level(f64),
    /// The `'step'` or `'linear'` of `time_weighted_mean` and `integral`.
    Interpolation(Interpolation),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParameterKind {
    Level,
    Interpolation,
}

/// What an aggregate function reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AggregateArgument {
    /// Nothing: `count()` (also written `count(*)`) counts rows.
    Rows,
    /// A field, by name (bare, or quoted with double quotes or backticks).
    Field(String),
    /// An expression over the input's fields, to compile with [`crate::expr::Expr`].
    Expression {
        /// The expression's text.
        text: String,
        /// Byte offset of `text` in the aggregate's text as given to [`parse_aggregate`], so
        /// that errors in the expression can point into the whole aggregate.
        offset: usize,
    },
}

/// A parsed aggregate expression.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateExpr {
    /// The function.
    pub function: AggregateFunction,
    /// What it reads.
    pub argument: AggregateArgument,
    /// The literal after the argument: always there for `quantile`, optional for
    /// `time_weighted_mean` and `integral`, never for the others.
    pub parameter: Option<AggregateParameter>,
}

/// Why an aggregate expression did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// What is wrong, quoting the expression.
    pub message: String,
    /// What the user probably meant.
    pub hint: Option<String>,
}

impl ExprError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Names people reach for that mean one of ours.
const ALIASES: [(&str, &str); 16] = [
    ("avg", "mean"),
    ("std", "stddev"),
    ("stdev", "stddev"),
    ("stddev_samp", "stddev"),
    ("var", "variance"),
    ("var_samp", "variance"),
    ("percentile", "quantile"),
    ("approx_percentile", "quantile"),
    ("count_distinct", "distinct_count"),
    ("approx_distinct", "distinct_count"),
    ("average", "mean"),
    ("total", "sum"),
    ("minimum", "min"),
    ("maximum", "max"),
    ("cnt", "count"),
    ("len", "count"),
];

/// Splits `inner` (the text between an aggregate's parentheses) at its last comma outside
/// parentheses and quotes: `("arg", Some(("param", offset of param)))`, or the whole text and
/// `None` when there is no such comma.
fn split_parameter(inner: &str) -> (&str, Option<(&str, usize)>) {
    let (mut depth, mut quote, mut last) = (0i32, None::<char>, None);
    for (at, c) in inner.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, ',') if depth == 0 => last = Some(at),
            _ => {}
        }
    }
    match last {
        Some(at) => (&inner[..at], Some((&inner[at + 1..], at + 1))),
        None => (inner, None),
    }
}

/// Parses the literal parameter `text` of `function` (in the aggregate `whole`).
fn parse_parameter(
    function: AggregateFunction,
    kind: ParameterKind,
    text: &str,
    whole: &str,
) -> Result<AggregateParameter, ExprError> {
    let text = text.trim();
    match kind {
        ParameterKind::Level => {
            let Ok(q) = text.parse::<f64>() else {
                return Err(ExprError::new(format!(
                    "the level of '{whole}' must be a number between 0 and 1, got '{text}'"
                ))
                .hint("write 'quantile(temperature, 0.95)' for the 95th percentile"));
            };
            if !(0.0..=1.0).contains(&q) {
                let error = ExprError::new(format!(
                    "the level of '{whole}' must be between 0 and 1, got {text}"
                ));
                return Err(if q > 1.0 && q <= 100.0 {
                    error.hint(format!("write {} for the {text}th percentile", q / 100.0))
                } else {
                    error.hint("write 'quantile(temperature, 0.95)' for the 95th percentile")
                });
            }
            Ok(AggregateParameter::Level(q))
        }
        ParameterKind::Interpolation => {
            let word = text
                .strip_prefix('\'')
                .and_then(|t| t.strip_suffix('\''))
                .unwrap_or(text);
            match word.to_ascii_lowercase().as_str() {
                "step" | "previous" => Ok(AggregateParameter::Interpolation(Interpolation::Step)),
                "linear" => Ok(AggregateParameter::Interpolation(Interpolation::Linear)),
                _ => Err(ExprError::new(format!(
                    "unknown interpolation {text} in '{whole}'"
                ))
                .hint(format!(
                    "write '{function}(x, \'step\')' (the previous value holds, the default) \
                     or '{function}(x, \'linear\')'"
                ))),
            }
        }
    }
}

fn function_list() -> String {
    let names: Vec<&str> = AggregateFunction::ALL.iter().map(|(n, _)| *n).collect();
    format!("the aggregate functions are: {}", names.join(", "))
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Words of the expression language that are not field names when bare.
const KEYWORDS: [&str; 8] = ["and", "or", "not", "is", "null", "true", "false", "as"];

/// `text` as a field name when it is one on its own: a bare name that the expression language
/// would also read as a field, or a name quoted with double quotes or backticks.
fn field_name(text: &str) -> Option<&str> {
    let unquoted = unquote(text);
    if unquoted.len() != text.len() {
        let quote = text.chars().next()?;
        return (!unquoted.contains(quote)).then_some(unquoted);
    }
    let mut chars = text.chars();
    let first = chars.next()?;
    let bare = (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(text));
    bare.then_some(text)
}

/// Parses `function(argument)`, `count()` or `count(*)`.
///
/// Function names are matched case-insensitively. The argument of every function but
/// `count_if` may be a field name, read as it is, quoted with double quotes or backticks when
/// it contains characters other than letters, digits and `_`. Any other argument, and every
/// `count_if` condition, is an expression (checked later, against the input schema).
///
/// # Errors
/// A message quoting the expression, with a hint when one helps.
pub fn parse_aggregate(text: &str) -> Result<AggregateExpr, ExprError> {
    let trimmed = text.trim();
    let lead = text.len() - text.trim_start().len();
    let Some(open) = trimmed.find('(') else {
        if let Some(function) = AggregateFunction::from_name(trimmed) {
            let example = match function {
                AggregateFunction::Count => "count()".to_string(),
                AggregateFunction::CountIf => "count_if(condition)".to_string(),
                AggregateFunction::Quantile => "quantile(field, 0.95)".to_string(),
                _ => format!("{function}(field)"),
            };
            return Err(
                ExprError::new(format!("'{trimmed}' is missing its parentheses"))
                    .hint(format!("write '{example}'")),
            );
        }
        return Err(ExprError::new(format!(
            "expected an aggregate such as 'mean(temperature)' or 'count()', got '{trimmed}'"
        )));
    };
    let name = trimmed[..open].trim();
    if !trimmed.ends_with(')') {
        return Err(ExprError::new(format!(
            "missing ')' at the end of '{trimmed}'"
        )));
    }
    let inner = &trimmed[open + 1..trimmed.len() - 1];
    if !is_identifier(name) {
        return Err(ExprError::new(format!(
            "expected a function name before '(' in '{trimmed}'"
        ))
        .hint(function_list()));
    }
    let Some(function) = AggregateFunction::from_name(name) else {
        let error = ExprError::new(format!("unknown aggregate function '{name}'"));
        let lower = name.to_ascii_lowercase();
        if let Some((_, meant)) = ALIASES.iter().find(|(alias, _)| *alias == lower) {
            return Err(error.hint(format!("did you mean '{meant}'?")));
        }
        let names = AggregateFunction::ALL.iter().map(|(n, _)| *n);
        return Err(match closest_name(name, names) {
            Some(best) => error.hint(format!("did you mean '{best}'?")),
            None => error.hint(function_list()),
        });
    };
    let (inner, parameter) = split_parameter(inner);
    let parameter = match (function.parameter(), parameter) {
        (Some(kind), Some((text, _))) => Some(parse_parameter(function, kind, text, trimmed)?),
        (Some(ParameterKind::Level), None) if function == AggregateFunction::Quantile => {
            return Err(
                ExprError::new(format!("'{trimmed}' needs a level")).hint(format!(
                    "write 'quantile({}, 0.95)' for the 95th percentile",
                    if inner.trim().is_empty() {
                        "temperature"
                    } else {
                        inner.trim()
                    }
                )),
            );
        }
        (_, None) => None,
        (None, Some(_)) => {
            let example = match function {
                AggregateFunction::Count => "count(field)".to_string(),
                AggregateFunction::CountIf => "count_if(a > 1 and b < 2)".to_string(),
                _ => format!("{function}(field)"),
            };
            return Err(ExprError::new(format!(
                "{function} takes one argument, but '{trimmed}' has more"
            ))
            .hint(format!("write '{example}'")));
        }
    };
    let argument = inner.trim();
    let argument_offset = lead + open + 1 + (inner.len() - inner.trim_start().len());
    if argument.is_empty() || argument == "*" {
        return match function {
            AggregateFunction::Count => Ok(AggregateExpr {
                function,
                argument: AggregateArgument::Rows,
                parameter,
            }),
            AggregateFunction::CountIf => {
                Err(ExprError::new(format!("'{trimmed}' needs a condition"))
                    .hint("write 'count_if(condition)', as in 'count_if(temperature > 30)'"))
            }
            _ => Err(
                ExprError::new(format!("'{trimmed}' needs a field")).hint(format!(
                    "write '{function}(field)', as in '{function}(temperature)'"
                )),
            ),
        };
    }
    let argument = match field_name(argument) {
        // A condition is always an expression, even a lone bool field.
        Some(field) if function != AggregateFunction::CountIf => {
            AggregateArgument::Field(field.to_string())
        }
        _ => AggregateArgument::Expression {
            text: argument.to_string(),
            offset: argument_offset,
        },
    };
    Ok(AggregateExpr {
        function,
        argument,
        parameter,
    })
}

/// Strips one pair of matching double quotes or backticks.
fn unquote(text: &str) -> &str {
    for quote in ['"', '`'] {
        if let Some(inner) = text
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (AggregateFunction, Option<String>) {
        let expr = parse_aggregate(text).unwrap();
        match expr.argument {
            AggregateArgument::Rows => (expr.function, None),
            AggregateArgument::Field(field) => (expr.function, Some(field)),
            other => panic!("{text}: {other:?}"),
        }
    }

    fn expression(text: &str) -> (AggregateFunction, String, usize) {
        let expr = parse_aggregate(text).unwrap();
        match expr.argument {
            AggregateArgument::Expression { text, offset } => (expr.function, text, offset),
            other => panic!("{text}: {other:?}"),
        }
    }

    fn err(text: &str) -> (String, Option<String>) {
        let error = parse_aggregate(text).unwrap_err();
        (error.message, error.hint)
    }

    #[test]
    fn good_expressions() {
        use AggregateFunction::*;
        assert_eq!(ok("count()"), (Count, None));
        assert_eq!(ok(" COUNT( * ) "), (Count, None));
        assert_eq!(
            ok("count(temperature)"),
            (Count, Some("temperature".into()))
        );
        assert_eq!(
            ok("mean( temperature )"),
            (Mean, Some("temperature".into()))
        );
        assert_eq!(ok("Max(temp_2)"), (Max, Some("temp_2".into())));
        assert_eq!(ok("sum(\"flow rate\")"), (Sum, Some("flow rate".into())));
        assert_eq!(ok("min(`a.b`)"), (Min, Some("a.b".into())));
        assert_eq!(ok("max(température)"), (Max, Some("température".into())));
    }

    #[test]
    fn other_arguments_are_expressions() {
        use AggregateFunction::*;
        assert_eq!(
            expression("count_if(temperature > 30)"),
            (CountIf, "temperature > 30".into(), 9)
        );
        // A condition is an expression even when it is one field.
        assert_eq!(expression(" COUNT_IF( ok )"), (CountIf, "ok".into(), 11));
        assert_eq!(
            expression("mean(temperature * 1.8 + 32)"),
            (Mean, "temperature * 1.8 + 32".into(), 5)
        );
        assert_eq!(expression("max(abs(t))"), (Max, "abs(t)".into(), 4));
        assert_eq!(expression("sum(1)"), (Sum, "1".into(), 4));
        assert_eq!(expression("count(null)"), (Count, "null".into(), 6));
        assert_eq!(
            expression("sum(\"a\" + \"b\")"),
            (Sum, "\"a\" + \"b\"".into(), 4)
        );
        assert_eq!(expression("mean(a b)"), (Mean, "a b".into(), 5));
    }

    #[test]
    fn unknown_functions_suggest_ours() {
        assert_eq!(
            err("avg(temperature)"),
            (
                "unknown aggregate function 'avg'".into(),
                Some("did you mean 'mean'?".into())
            )
        );
        assert_eq!(err("maxx(t)").1.as_deref(), Some("did you mean 'max'?"));
        assert_eq!(err("stdev(t)").1.as_deref(), Some("did you mean 'stddev'?"));
        assert_eq!(
            err("count_distinct(t)").1.as_deref(),
            Some("did you mean 'distinct_count'?")
        );
        assert_eq!(
            err("zzzzzzzz(t)").1.as_deref(),
            Some(
                "the aggregate functions are: count, count_if, sum, mean, min, max, first, \
                 last, min_at, max_at, stddev, variance, stddev_pop, var_pop, median, \
                 quantile, distinct_count, rate, increase, time_weighted_mean, integral"
            )
        );
    }

    #[test]
    fn malformed_expressions_quote_the_input() {
        assert_eq!(
            err("count"),
            (
                "'count' is missing its parentheses".into(),
                Some("write 'count()'".into())
            )
        );
        assert_eq!(err("mean").1.as_deref(), Some("write 'mean(field)'"));
        assert_eq!(
            err("count_if").1.as_deref(),
            Some("write 'count_if(condition)'")
        );
        assert_eq!(
            err("count_if( )"),
            (
                "'count_if( )' needs a condition".into(),
                Some("write 'count_if(condition)', as in 'count_if(temperature > 30)'".into())
            )
        );
        assert_eq!(
            err("temperature").0,
            "expected an aggregate such as 'mean(temperature)' or 'count()', got 'temperature'"
        );
        assert_eq!(
            err("mean(temperature"),
            ("missing ')' at the end of 'mean(temperature'".into(), None)
        );
        assert_eq!(err("mean()").0, "'mean()' needs a field");
        assert_eq!(err("sum(*)").0, "'sum(*)' needs a field");
        assert_eq!(err("(t)").0, "expected a function name before '(' in '(t)'");
    }

    fn parameter(text: &str) -> Option<AggregateParameter> {
        parse_aggregate(text).unwrap().parameter
    }

    #[test]
    fn new_functions_and_synonyms_parse() {
        use AggregateFunction::*;
        for (name, function) in AggregateFunction::ALL {
            assert_eq!(function.name(), name);
            let reads_a_field = !matches!(function, CountIf | Quantile);
            if reads_a_field {
                assert_eq!(
                    ok(&format!("{name}(x)")),
                    (function, Some("x".into())),
                    "{name}"
                );
            }
        }
        assert_eq!(ok("min_by_time(t)"), (MinAt, Some("t".into())));
        assert_eq!(ok("MAX_BY_TIME(t)"), (MaxAt, Some("t".into())));
        assert_eq!(ok("first(\"a, b\")"), (First, Some("a, b".into())));
        assert_eq!(parameter("stddev(t)"), None);
    }

    #[test]
    fn quantile_levels() {
        assert_eq!(
            parameter("quantile(t, 0.95)"),
            Some(AggregateParameter::Level(0.95))
        );
        assert_eq!(
            parameter("quantile( t ,0 )"),
            Some(AggregateParameter::Level(0.0))
        );
        assert_eq!(
            parameter("quantile(t, 1)"),
            Some(AggregateParameter::Level(1.0))
        );
        // The level is the last top-level comma's; commas inside calls and strings belong to
        // the argument expression.
        let expr = parse_aggregate("quantile(coalesce(a, b), 0.5)").unwrap();
        assert_eq!(expr.parameter, Some(AggregateParameter::Level(0.5)));
        assert_eq!(
            expr.argument,
            AggregateArgument::Expression {
                text: "coalesce(a, b)".into(),
                offset: 9
            }
        );
        let expr = parse_aggregate("quantile(length(s || ','), 0.5)").unwrap();
        assert_eq!(
            expr.argument,
            AggregateArgument::Expression {
                text: "length(s || ',')".into(),
                offset: 9
            }
        );
    }

    #[test]
    fn bad_quantile_levels_are_explained() {
        assert_eq!(
            err("quantile(t)"),
            (
                "'quantile(t)' needs a level".into(),
                Some("write 'quantile(t, 0.95)' for the 95th percentile".into())
            )
        );
        assert_eq!(
            err("quantile(t, 95)"),
            (
                "the level of 'quantile(t, 95)' must be between 0 and 1, got 95".into(),
                Some("write 0.95 for the 95th percentile".into())
            )
        );
        assert_eq!(
            err("quantile(t, -0.1)").0,
            "the level of 'quantile(t, -0.1)' must be between 0 and 1, got -0.1"
        );
        assert_eq!(
            err("quantile(t, NaN)").0,
            "the level of 'quantile(t, NaN)' must be between 0 and 1, got NaN"
        );
        assert_eq!(
            err("quantile(t, high)").0,
            "the level of 'quantile(t, high)' must be a number between 0 and 1, got 'high'"
        );
        assert_eq!(
            err("quantile(t, )").0,
            "the level of 'quantile(t, )' must be a number between 0 and 1, got ''"
        );
        assert_eq!(
            err("quantile").1.as_deref(),
            Some("write 'quantile(field, 0.95)'")
        );
    }

    #[test]
    fn interpolation_methods() {
        use Interpolation::*;
        assert_eq!(parameter("time_weighted_mean(t)"), None);
        assert_eq!(
            parameter("time_weighted_mean(t, 'linear')"),
            Some(AggregateParameter::Interpolation(Linear))
        );
        assert_eq!(
            parameter("integral(t, 'STEP')"),
            Some(AggregateParameter::Interpolation(Step))
        );
        assert_eq!(
            parameter("integral(t, linear)"),
            Some(AggregateParameter::Interpolation(Linear))
        );
        assert_eq!(
            err("integral(t, 'cubic')"),
            (
                "unknown interpolation 'cubic' in 'integral(t, 'cubic')'".into(),
                Some(
                    "write 'integral(x, 'step')' (the previous value holds, the default) or \
                     'integral(x, 'linear')'"
                        .into()
                )
            )
        );
    }

    #[test]
    fn extra_arguments_are_refused() {
        assert_eq!(
            err("mean(a, b)"),
            (
                "mean takes one argument, but 'mean(a, b)' has more".into(),
                Some("write 'mean(field)'".into())
            )
        );
        assert_eq!(
            err("count_if(a, b)").1.as_deref(),
            Some("write 'count_if(a > 1 and b < 2)'")
        );
        // A comma inside a call is the argument's own.
        assert_eq!(
            expression("max(coalesce(a, b))"),
            (AggregateFunction::Max, "coalesce(a, b)".into(), 4)
        );
    }
}
