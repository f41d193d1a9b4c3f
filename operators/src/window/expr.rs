//! The aggregate expressions of a window's `aggregates` table: `count()`, `count(arg)`,
//! `count_if(condition)`, `sum(arg)`, `mean(arg)`, `min(arg)` and `max(arg)`.
//!
//! The outer call (one aggregate function, one argument) is parsed by hand here, so every
//! mistake in it gets a message that quotes it. The argument is either a plain field name, read
//! as it is (the fast path, keeping the field's own type), or an expression of the language in
//! [`crate::expr`], which the planner compiles against the input schema.

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
}

impl AggregateFunction {
    /// Every function with its name, in the order help texts list them.
    pub const ALL: [(&'static str, AggregateFunction); 6] = [
        ("count", Self::Count),
        ("count_if", Self::CountIf),
        ("sum", Self::Sum),
        ("mean", Self::Mean),
        ("min", Self::Min),
        ("max", Self::Max),
    ];

    /// The name as written in a query file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::CountIf => "count_if",
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateExpr {
    /// The function.
    pub function: AggregateFunction,
    /// What it reads.
    pub argument: AggregateArgument,
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
    let argument = inner.trim();
    let argument_offset = lead + open + 1 + (inner.len() - inner.trim_start().len());
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
    if argument.is_empty() || argument == "*" {
        return match function {
            AggregateFunction::Count => Ok(AggregateExpr {
                function,
                argument: AggregateArgument::Rows,
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
    Ok(AggregateExpr { function, argument })
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
        assert_eq!(
            err("stddev(t)").1.as_deref(),
            Some("the aggregate functions are: count, count_if, sum, mean, min, max")
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
}
