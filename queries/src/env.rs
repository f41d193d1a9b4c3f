//! Environment interpolation: `${VAR}` and `${VAR:-default}` inside any string value of a
//! query file, for secrets and per-gateway settings.
//!
//! Substitution happens on parsed string values, never on the raw text, so a variable can
//! never inject TOML syntax. `$${` writes a literal `${`. A variable that is unset (and has
//! no default) is an error pointing at the value that uses it. The substituted values are only
//! handed to node configs: `explain` and the logs show schemas and names, never option values.

use std::fmt;

/// A problem with one `${…}` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvError {
    /// Path of the string value (table keys, array indices as text).
    pub path: Vec<String>,
    /// What is wrong.
    pub message: String,
    /// A hint.
    pub hint: Option<String>,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.join("."), self.message)
    }
}

/// Replaces every `${VAR}` / `${VAR:-default}` in the string values of `table`, looking
/// variables up with `lookup`. Returns every error found.
pub fn interpolate(
    table: &mut toml::Table,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<EnvError> {
    let mut errors = Vec::new();
    let mut path = Vec::new();
    for (key, value) in table.iter_mut() {
        path.push(key.clone());
        walk(value, lookup, &mut path, &mut errors);
        path.pop();
    }
    errors
}

fn walk(
    value: &mut toml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
    errors: &mut Vec<EnvError>,
) {
    match value {
        toml::Value::String(text) if text.contains('$') => match substitute(text, lookup) {
            Ok(done) => *text = done,
            Err((message, hint)) => errors.push(EnvError {
                path: path.clone(),
                message,
                hint,
            }),
        },
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                path.push(index.to_string());
                walk(item, lookup, path, errors);
                path.pop();
            }
        }
        toml::Value::Table(inner) => {
            for (key, item) in inner.iter_mut() {
                path.push(key.clone());
                walk(item, lookup, path, errors);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Substitutes the references in one string.
///
/// # Errors
/// A message and hint for an unset variable, an unclosed `${`, or a bad variable name.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (String, Option<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(inner_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = inner_start.find('}') else {
            return Err((
                format!("unclosed '${{' in '{text}'"),
                Some("write ${NAME} or ${NAME:-default}; $${ for a literal ${".into()),
            ));
        };
        let reference = &inner_start[..end];
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err((
                format!("'${{{reference}}}' is not a valid environment variable reference"),
                Some("names use letters, digits and '_', and do not start with a digit".into()),
            ));
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err((
                    format!("environment variable '{name}' is not set"),
                    Some(format!("set it, or give a default: ${{{name}:-value}}")),
                ));
            }
        }
        rest = &inner_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("broker.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_variables_defaults_and_escapes() {
        assert_eq!(
            substitute("mqtt://${HOST}:1883", &env).unwrap(),
            "mqtt://broker.local:1883"
        );
        assert_eq!(substitute("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(substitute("${HOST:-x}", &env).unwrap(), "broker.local");
        assert_eq!(substitute("[${EMPTY}]", &env).unwrap(), "[]");
        assert_eq!(
            substitute("price $5 and $${HOST}", &env).unwrap(),
            "price $5 and ${HOST}"
        );
        assert_eq!(substitute("no references", &env).unwrap(), "no references");
    }

    #[test]
    fn unset_unclosed_and_invalid_references_are_errors() {
        let (message, hint) = substitute("${TOKEN}", &env).unwrap_err();
        assert_eq!(message, "environment variable 'TOKEN' is not set");
        assert!(hint.unwrap().contains("${TOKEN:-value}"));
        assert!(
            substitute("${HOST", &env)
                .unwrap_err()
                .0
                .contains("unclosed")
        );
        assert!(
            substitute("${9X}", &env)
                .unwrap_err()
                .0
                .contains("not a valid")
        );
        assert!(
            substitute("${A-B}", &env)
                .unwrap_err()
                .0
                .contains("not a valid")
        );
    }

    #[test]
    fn interpolate_walks_nested_values_and_reports_paths() {
        let mut table: toml::Table =
            "[sources.s]\nurl = \"${HOST}\"\nlist = [\"a\", \"${MISSING}\"]\nn = 3\n"
                .parse()
                .unwrap();
        let errors = interpolate(&mut table, &env);
        assert_eq!(table["sources"]["s"]["url"].as_str(), Some("broker.local"));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, ["sources", "s", "list", "1"]);
    }
}
