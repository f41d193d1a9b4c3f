//! Turning option errors into diagnostics users can act on: "did you mean" hints and serde's
//! messages rewritten in our words.

use edgeflow_engine::OptionError;
use edgeflow_engine::config::closest_name;

use crate::diagnostic::Diagnostic;
use crate::document::Document;

pub(crate) fn hint_for<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
    what: &str,
) -> Option<String> {
    match closest_name(wrong, candidates.clone()) {
        Some(best) => Some(format!("did you mean '{best}'?")),
        None => {
            let all: Vec<&str> = candidates.into_iter().collect();
            Some(format!("{what}: {}", all.join(", ")))
        }
    }
}

/// Turns an option error into a diagnostic pointing at the option, with serde's
/// "unknown field" and "missing field" messages rewritten in our words.
pub(crate) fn option_diagnostic(
    document: &Document<'_>,
    base: &[&str],
    what: &str,
    error: OptionError,
    known: &[&str],
) -> Diagnostic {
    let mut error = error;
    if let Some((wrong, _)) = parse_unknown_field(&error.message) {
        // serde_path_to_error ends the path with the unknown key itself.
        if error.path.last() == Some(&wrong) {
            error.path.pop();
        }
    }
    let mut path: Vec<&str> = base.to_vec();
    path.extend(error.path.iter().map(String::as_str));
    if let Some((wrong, expected)) = parse_unknown_field(&error.message) {
        let mut key_path = path.clone();
        key_path.push(&wrong);
        let candidates: Vec<&str> = if expected.is_empty() {
            known.to_vec()
        } else {
            expected.iter().map(String::as_str).collect()
        };
        let where_ = if error.path.is_empty() {
            String::new()
        } else {
            format!(" in '{}'", error.path.join("."))
        };
        return Diagnostic::error(
            format!("{what}: unknown option '{wrong}'{where_}"),
            document.key_span_of(&key_path),
        )
        .with_hint(hint_for(&wrong, candidates.iter().copied(), "options are"));
    }
    if let Some(missing) = between(&error.message, "missing field `", "`") {
        let span = if error.path.is_empty() {
            document.header_span(base[0], base.get(1).copied().unwrap_or_default())
        } else {
            document.span_of(&path)
        };
        return Diagnostic::error(format!("{what}: missing required option '{missing}'"), span)
            .with_hint(error.hint);
    }
    let location = if error.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", error.path.join("."))
    };
    let mut message = error.message.replace('`', "'");
    // Some deserializers repeat the key at the end ("... in 'devices'"); the location is
    // already shown.
    if let Some(last) = error.path.last() {
        let suffix = format!(" in '{last}'");
        if message.ends_with(&suffix) {
            message.truncate(message.len() - suffix.len());
        }
    }
    let span = if error.path.is_empty() {
        document
            .header_span(base[0], base.get(1).copied().unwrap_or_default())
            .or_else(|| document.span_of(base))
    } else {
        document.span_of(&path)
    };
    Diagnostic::error(format!("{what}: {location}{message}"), span).with_hint(error.hint)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// Recognises serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`").
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let wrong = between(message, "unknown field `", "`")?.to_string();
    let rest = &message[message.find("expected").unwrap_or(message.len())..];
    let expected: Vec<String> = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((wrong, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_messages_are_recognised() {
        let (wrong, expected) =
            parse_unknown_field("unknown field `devcies`, expected one of `devices`, `rate`")
                .unwrap();
        assert_eq!(wrong, "devcies");
        assert_eq!(expected, ["devices", "rate"]);
        let (wrong, expected) = parse_unknown_field("unknown field `x`, expected `name`").unwrap();
        assert_eq!(
            (wrong.as_str(), expected.as_slice()),
            ("x", ["name".to_string()].as_slice())
        );
        assert!(parse_unknown_field("invalid type").is_none());
    }
}
