//! The aggregate expressions of a window's `aggregates` table: `count()`, `count(field)`,
//! `sum(field)`, `mean(field)`, `min(field)` and `max(field)`.
//!
//! The syntax is deliberately small (one function applied to one field) and parsed by hand,
//! so every mistake gets a message that quotes it. A fuller expression language replaces this
//! module later; until then, anything else is rejected rather than guessed at.

use std::fmt;

use edgeflow_engine::config::closest_name;

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateFunction {
    /// `count()` counts rows; `count(field)` counts non-null (and non-NaN) values. Int64.
    Count,
    /// Sum of the non-null, non-NaN values, as float64; null when there are none.
    Sum,
    /// Arithmetic mean of the non-null, non-NaN values, as float64; null when there are none.
    Mean,
    /// Smallest non-null, non-NaN value, in the field's own type; null when there are none.
    Min,
    /// Largest non-null, non-NaN value, in the field's own type; null when there are none.
    Max,
}

impl AggregateFunction {
    /// Every function with its name, in the order help texts list them.
    pub const ALL: [(&'static str, AggregateFunction); 5] = [
        ("count", Self::Count),
        ("sum", Self::Sum),
        ("mean", Self::Mean),
        ("min", Self::Min),
        ("max", Self::Max),
    ];

    /// The name as written in a query file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Mean => "mean",
            Self::Min => "min",
            Self::Max => "max",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(candidate, _)| *candidate == lower)
            .map(|(_, function)| *function)
    }
}

impl fmt::Display for AggregateFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed aggregate expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateExpr {
    /// The function.
    pub function: AggregateFunction,
    /// The field it reads; `None` only for `count()` (also written `count(*)`).
    pub field: Option<String>,
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
const ALIASES: [(&str, &str); 7] = [
    ("avg", "mean"),
    ("average", "mean"),
    ("total", "sum"),
    ("minimum", "min"),
    ("maximum", "max"),
    ("cnt", "count"),
    ("len", "count"),
];

fn function_list() -> String {
    let names: Vec<&str> = AggregateFunction::ALL.iter().map(|(n, _)| *n).collect();
    format!("the aggregate functions are: {}", names.join(", "))
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `function(field)`, `count()` or `count(*)`.
///
/// Function names are matched case-insensitively. A field name may be quoted with double
/// quotes or backticks when it contains characters other than letters, digits and `_`.
///
/// # Errors
/// A message quoting the expression, with a hint when one helps.
pub fn parse_aggregate(text: &str) -> Result<AggregateExpr, ExprError> {
    let trimmed = text.trim();
    let Some(open) = trimmed.find('(') else {
        if let Some(function) = AggregateFunction::from_name(trimmed) {
            let example = if function == AggregateFunction::Count {
                "count()".to_string()
            } else {
                format!("{function}(field)")
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
    let argument = trimmed[open + 1..trimmed.len() - 1].trim();
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
    if argument.contains(['(', ')']) {
        return Err(ExprError::new(format!(
            "nested expressions are not supported yet: '{trimmed}'"
        ))
        .hint("apply one function to one field, as in 'max(temperature)'"));
    }
    let field = unquote(argument);
    if argument.contains(',') && field == argument {
        return Err(ExprError::new(format!(
            "'{function}' takes one field, got '{argument}'"
        )));
    }
    if field.is_empty() || field == "*" {
        if function == AggregateFunction::Count {
            return Ok(AggregateExpr {
                function,
                field: None,
            });
        }
        return Err(
            ExprError::new(format!("'{trimmed}' needs a field")).hint(format!(
                "write '{function}(field)', as in '{function}(temperature)'"
            )),
        );
    }
    if field == argument && !is_identifier(field) {
        return Err(
            ExprError::new(format!("'{field}' is not a field name in '{trimmed}'")).hint(format!(
                "quote field names that contain other characters: {function}(\"{field}\")"
            )),
        );
    }
    Ok(AggregateExpr {
        function,
        field: Some(field.to_string()),
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
        (expr.function, expr.field)
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
        assert_eq!(
            err("stddev(t)").1.as_deref(),
            Some("the aggregate functions are: count, sum, mean, min, max")
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
            err("temperature").0,
            "expected an aggregate such as 'mean(temperature)' or 'count()', got 'temperature'"
        );
        assert_eq!(
            err("mean(temperature"),
            ("missing ')' at the end of 'mean(temperature'".into(), None)
        );
        assert_eq!(err("mean()").0, "'mean()' needs a field");
        assert_eq!(err("sum(*)").0, "'sum(*)' needs a field");
        assert_eq!(err("max(a, b)").0, "'max' takes one field, got 'a, b'");
        assert_eq!(
            err("max(abs(t))").0,
            "nested expressions are not supported yet: 'max(abs(t))'"
        );
        assert_eq!(err("(t)").0, "expected a function name before '(' in '(t)'");
        assert_eq!(
            err("mean(a b)").0,
            "'a b' is not a field name in 'mean(a b)'"
        );
    }
}
