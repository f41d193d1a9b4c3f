//! A query file parsed twice over: values for deserializing, spans for pointing at errors.
//!
//! [`Document::parse`] reads the TOML once into plain [`toml::Table`] values (what node configs
//! deserialize from) and once into a span-preserving tree (where each key and value sits in
//! the file). [`Document::span_of`] finds the byte range of any option by its path, so an
//! error found deep in a connector's config can still point at `file:line:col`.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::Diagnostic;

/// A parsed query file.
pub struct Document<'a> {
    /// The file's text.
    pub source: &'a str,
    /// The values.
    pub values: toml::Table,
    spans: Spanned<DeTable<'a>>,
}

/// Where a path ends: the key that names it and the value it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Span of the last key of the path (for arrays: of the element).
    pub key: Range<usize>,
    /// Span of the value.
    pub value: Range<usize>,
}

impl<'a> Document<'a> {
    /// Parses `source`.
    ///
    /// # Errors
    /// Every TOML syntax error, each with its span.
    pub fn parse(source: &'a str) -> Result<Self, Vec<Diagnostic>> {
        let (spans, errors) = DeTable::parse_recoverable(source);
        if !errors.is_empty() {
            return Err(errors
                .into_iter()
                .map(|error| {
                    let message = first_line(error.message());
                    Diagnostic::error(format!("invalid TOML: {message}"), error.span())
                })
                .collect());
        }
        match source.parse::<toml::Table>() {
            Ok(values) => Ok(Self {
                source,
                values,
                spans,
            }),
            Err(error) => Err(vec![Diagnostic::error(
                format!("invalid TOML: {}", first_line(error.message())),
                error.span(),
            )]),
        }
    }

    /// Finds `path` (table keys, and array indices as decimal text) from the document root.
    pub fn locate(&self, path: &[&str]) -> Option<Located> {
        let mut table: &DeTable<'a> = self.spans.get_ref();
        let mut current: Option<Located> = None;
        let mut value: Option<&Spanned<DeValue<'a>>> = None;
        for (depth, segment) in path.iter().enumerate() {
            if depth > 0 {
                match value.map(Spanned::get_ref) {
                    Some(DeValue::Table(inner)) => table = inner,
                    Some(DeValue::Array(array)) => {
                        let index: usize = segment.parse().ok()?;
                        let element = array.get(index)?;
                        current = Some(Located {
                            key: element.span(),
                            value: element.span(),
                        });
                        value = Some(element);
                        continue;
                    }
                    _ => return None,
                }
            }
            let (key, found) = table
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == *segment)?;
            current = Some(Located {
                key: key.span(),
                value: found.span(),
            });
            value = Some(found);
        }
        current
    }

    /// The best span for an error at `path`: the value if present, else the nearest parent key.
    pub fn span_of(&self, path: &[&str]) -> Option<Range<usize>> {
        for len in (1..=path.len()).rev() {
            if let Some(located) = self.locate(&path[..len]) {
                return Some(if len == path.len() {
                    located.value
                } else {
                    located.key
                });
            }
        }
        None
    }

    /// The span of the key at `path` (falls back like [`Self::span_of`]).
    pub fn key_span_of(&self, path: &[&str]) -> Option<Range<usize>> {
        for len in (1..=path.len()).rev() {
            if let Some(located) = self.locate(&path[..len]) {
                return Some(located.key);
            }
        }
        None
    }

    /// The span of a table header such as `[sources.sensors]`, to point at a whole node.
    pub fn header_span(&self, section: &str, node: &str) -> Option<Range<usize>> {
        let located = self.locate(&[section, node])?;
        // For a `[section.node]` header the key span covers `node`; widen to the line.
        let line_start = self.source[..located.key.start]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line_end = self.source[located.key.end..]
            .find('\n')
            .map_or(self.source.len(), |i| located.key.end + i);
        Some(line_start..line_end)
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"[pipeline]
name = "q"

[sources.sensors]
type = "simulator"
schema = { ts = "timestamp_ms", t = "float64" }
ranges = [1, 2, 3]
"#;

    #[test]
    fn locates_nested_keys_and_array_elements() {
        let document = Document::parse(SOURCE).unwrap();
        let span = document
            .span_of(&["sources", "sensors", "schema", "t"])
            .unwrap();
        assert_eq!(&SOURCE[span], "\"float64\"");
        let span = document
            .span_of(&["sources", "sensors", "ranges", "2"])
            .unwrap();
        assert_eq!(&SOURCE[span], "3");
        let span = document
            .key_span_of(&["sources", "sensors", "type"])
            .unwrap();
        assert_eq!(&SOURCE[span], "type");
    }

    #[test]
    fn missing_paths_fall_back_to_the_parent_key() {
        let document = Document::parse(SOURCE).unwrap();
        let span = document.span_of(&["sources", "sensors", "nope"]).unwrap();
        assert_eq!(&SOURCE[span], "sensors");
        let header = document.header_span("sources", "sensors").unwrap();
        assert_eq!(&SOURCE[header], "[sources.sensors]");
    }

    #[test]
    fn syntax_errors_have_spans() {
        let errors = Document::parse("[pipeline\nname = 1\n").err().unwrap();
        assert!(!errors.is_empty());
        assert!(errors[0].span.is_some());
        assert!(
            errors[0].message.starts_with("invalid TOML"),
            "{}",
            errors[0].message
        );
    }
}
