//! The expression language of the `filter` and `derive` operators.
//!
//! ```text
//! temperature > 0 and device_id != 'test'
//! temperature - (100 - humidity) / 5
//! split(topic, '/')[1]
//! ```
//!
//! An expression is compiled once, at plan time, against the operator's input schema
//! ([`Expr::compile`]): [`parse`] turns the text into a syntax tree, [`types`] checks it and
//! gives every node its Arrow type (so a type error stops the plan, never the pipeline), and
//! [`eval`] runs the typed tree over a batch a column at a time with Arrow kernels. The
//! functions are in [`functions`]; the user-facing reference is the "Expressions" section of
//! `docs/queries.md`.
//!
//! Runtime problems (division by zero, a cast that fails, an integer overflow, the square
//! root of a negative number) make that row's result null and are counted, never raised.

use std::fmt;

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::array::{ArrayRef, RecordBatch};
use edgeflow_engine::arrow::datatypes::{DataType, Schema};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::log_throttle::LogThrottle;

pub mod eval;
pub mod functions;
pub mod parse;
pub mod types;

/// A problem with an expression's text or types, found at plan time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the expression where the problem is (0 is the first character).
    pub offset: usize,
    /// What is wrong and, for syntax errors, what was expected.
    pub message: String,
    /// What the user probably meant (a field or function name).
    pub hint: Option<String>,
}

impl ExprError {
    /// An error at `offset`.
    pub fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An [`OptionError`] at `path` whose message quotes the expression `text` and gives the
    /// 1-based column (`at column 13`).
    pub fn into_option_error(self, path: &[&str], text: &str) -> OptionError {
        let error = OptionError::at_path(
            path,
            format!(
                "{} at column {} of expression '{text}'",
                self.message,
                self.offset + 1
            ),
        );
        match self.hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at column {}", self.message, self.offset + 1)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}

/// A compiled, type-checked expression, ready to evaluate over batches of its input schema.
#[derive(Clone, Debug)]
pub struct Expr {
    text: String,
    typed: types::Typed,
}

/// The result of evaluating an expression over one batch.
#[derive(Debug)]
pub struct Evaluated {
    /// One value per row, of the expression's [`Expr::data_type`].
    pub values: ArrayRef,
    /// Rows whose value is null because of a runtime error (division by zero, failed cast…).
    pub errors: usize,
}

impl Expr {
    /// Parses and type-checks `text` against `schema`.
    ///
    /// # Errors
    /// The first syntax or type error, with its byte offset.
    pub fn compile(text: &str, schema: &Schema) -> Result<Self, ExprError> {
        let ast = parse::parse(text)?;
        let typed = types::check(&ast, schema)?;
        Ok(Self {
            text: text.to_string(),
            typed,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The Arrow type of the values it produces (`Null` only for an expression that is always
    /// null, such as `null` itself).
    pub fn data_type(&self) -> &DataType {
        &self.typed.data_type
    }

    /// Evaluates the expression over every row of `rows` (a batch of the schema it was
    /// compiled against).
    ///
    /// # Errors
    /// Only if an Arrow kernel fails in a way the type checker should have prevented, which
    /// means the batch does not match the planned schema (a bug).
    pub fn evaluate(&self, rows: &RecordBatch) -> Result<Evaluated, ArrowError> {
        let mut ctx = eval::EvalContext::default();
        let value = eval::evaluate(&self.typed, rows, &mut ctx)?;
        Ok(Evaluated {
            values: value.into_array(rows.num_rows())?,
            errors: ctx.errors,
        })
    }
}

/// Counts an operator's runtime expression errors and logs them, at most once per
/// [`LogThrottle::DEFAULT_INTERVAL`] per worker, so a stream of bad rows cannot flood the log.
#[derive(Debug)]
pub struct ErrorReporter {
    operator: String,
    expression: String,
    throttle: LogThrottle,
}

impl ErrorReporter {
    /// A reporter for `expression` in the operator named `operator`.
    pub fn new(operator: &str, expression: &str) -> Self {
        Self {
            operator: operator.to_string(),
            expression: expression.to_string(),
            throttle: LogThrottle::default(),
        }
    }

    /// Counts `errors` values that became null under `metrics` (reason `expression_error`)
    /// and logs a warning unless one was logged less than ten seconds ago.
    pub fn report(&mut self, metrics: &edgeflow_engine::NodeMetrics, errors: usize) {
        if errors == 0 {
            return;
        }
        metrics.count_dropped("expression_error", errors);
        if let Some(values) = self.throttle.note(errors as u64) {
            tracing::warn!(
                operator = %self.operator,
                expression = %self.expression,
                values,
                "Expression gave null for values with runtime errors (division by zero, failed \
                 cast, overflow or a math function outside its domain)"
            );
        }
    }
}

#[cfg(test)]
mod tests;
