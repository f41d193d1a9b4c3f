//! Diagnostics: what `edgeflow validate` prints, each pointing at `file:line:col`.
//!
//! A [`Diagnostic`] holds a message, an optional byte span in the query file and an optional
//! hint. [`render`] turns a list of them into the compiler-style text users see:
//!
//! ```text
//! error: source 'sensors': unknown option 'devcies'
//!  --> pipeline.toml:7:1
//!   |
//! 7 | devcies = 50
//!   | ^^^^^^^
//!   |
//!   = help: did you mean 'devices'?
//! ```

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The pipeline cannot run.
    Error,
    /// The pipeline runs, but probably not as intended.
    Warning,
}

/// One problem found in a query file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, quoting the bad input.
    pub message: String,
    /// Byte range in the query file, when the problem has a place.
    pub span: Option<Range<usize>>,
    /// What the user probably meant.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Self {
            severity: Severity::Warning,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// Adds a hint (replacing any previous one).
    #[must_use]
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A 1-based line and column for a byte offset in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Renders diagnostics for the file at `path` with contents `source`.
///
/// With `color`, uses ANSI colours (for a terminal).
pub fn render(diagnostics: &[Diagnostic], path: &str, source: &str, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let mut out = String::new();
    for diagnostic in diagnostics {
        let level = match diagnostic.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let mut group = match &diagnostic.span {
            Some(span) => {
                let span = clamp_span(source, span.clone());
                level.primary_title(diagnostic.message.as_str()).element(
                    Snippet::source(source)
                        .path(path)
                        .fold(true)
                        .annotation(AnnotationKind::Primary.span(span)),
                )
            }
            None => Group::with_title(level.primary_title(diagnostic.message.as_str())),
        };
        if let Some(hint) = &diagnostic.hint {
            group = group.element(Level::HELP.message(hint.as_str()));
        }
        let report = [group];
        out.push_str(&renderer.render(&report));
        out.push_str("\n\n");
    }
    out
}

/// Keeps a span inside `source` and on character boundaries, and widens an empty span to
/// the character it points at (a renderer needs something to underline).
fn clamp_span(source: &str, span: Range<usize>) -> Range<usize> {
    let mut start = span.start.min(source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, source.len());
    while !source.is_char_boundary(end) {
        end += 1;
    }
    if start == end {
        end = source[start..]
            .chars()
            .next()
            .map_or(end, |c| start + c.len_utf8());
    }
    start..end
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_land_on_character_boundaries() {
        let source = "a = 'Ⱥ'";
        let inside = source.find('Ⱥ').unwrap() + 1;
        assert_eq!(clamp_span(source, inside..inside), 5..7);
        assert_eq!(clamp_span(source, 0..100), 0..source.len());
        assert_eq!(clamp_span("", 3..4), 0..0);
    }

    #[test]
    fn line_col_is_one_based() {
        let source = "a = 1\nbb = 2\n";
        assert_eq!(line_col(source, 0), (1, 1));
        assert_eq!(line_col(source, 6), (2, 1));
        assert_eq!(line_col(source, 9), (2, 4));
    }

    #[test]
    fn render_points_at_file_line_col_with_hint() {
        let source = "[pipeline]\nname = \"x\"\ndevcies = 50\n";
        let start = source.find("devcies").unwrap();
        let diagnostic = Diagnostic::error("unknown option 'devcies'", Some(start..start + 7))
            .with_hint(Some("did you mean 'devices'?".into()));
        let text = render(&[diagnostic], "q.toml", source, false);
        assert!(text.contains("error: unknown option 'devcies'"), "{text}");
        assert!(text.contains("q.toml:3:1"), "{text}");
        assert!(text.contains("^^^^^^^"), "{text}");
        assert!(text.contains("did you mean 'devices'?"), "{text}");
    }
}
