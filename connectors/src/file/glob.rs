//! Expanding `path = "data/*.csv"`: wildcards (`*`, `?`) in the file name only.

use std::path::{Path, PathBuf};

use crate::error::ConnectorError;

/// True when `path` contains a wildcard.
pub(crate) fn has_wildcards(path: &str) -> bool {
    path.contains(['*', '?'])
}

/// The folder part of `path` has a wildcard (which is not supported).
pub(crate) fn wildcard_in_folder(path: &str) -> bool {
    Path::new(path)
        .parent()
        .is_some_and(|parent| has_wildcards(&parent.to_string_lossy()))
}

/// Whether `name` matches `pattern` (`*` any run, `?` any one character).
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The files `path` names: itself, or the files its pattern matches, sorted by name.
/// Hidden files (`.name`) match only a pattern that starts with a dot.
///
/// # Errors
/// The folder cannot be listed, or nothing matches.
pub(crate) fn expand(path: &str) -> Result<Vec<PathBuf>, ConnectorError> {
    if !has_wildcards(path) {
        return Ok(vec![PathBuf::from(path)]);
    }
    let full = Path::new(path);
    let pattern = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder = match full.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = std::fs::read_dir(&folder).map_err(|error| ConnectorError::OpenInput {
        path: path.to_string(),
        reason: crate::error::io_reason(&error),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink())
        })
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let hidden_ok = !name.starts_with('.') || pattern.starts_with('.');
            (hidden_ok && matches(&pattern, &name)).then(|| full.with_file_name(name))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConnectorError::NoMatch {
            pattern: path.to_string(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(matches("*.csv", "a.csv"));
        assert!(matches("*.csv", ".csv"));
        assert!(!matches("*.csv", "a.csv.gz"));
        assert!(matches("part-??.csv", "part-01.csv"));
        assert!(!matches("part-??.csv", "part-1.csv"));
        assert!(matches("a*b*c", "abxxbxc"));
        assert!(matches("*", "anything"));
        assert!(!matches("x", "y"));
    }

    #[test]
    fn expansion_sorts_and_reports_no_match() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.csv", "a.csv", "c.txt", ".hidden.csv"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let pattern = format!("{}/*.csv", dir.path().display());
        let files = expand(&pattern).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.csv", "b.csv"]);
        let none = format!("{}/*.json", dir.path().display());
        assert_eq!(
            expand(&none).unwrap_err().to_string(),
            format!("no input file matches '{none}'")
        );
        assert!(wildcard_in_folder("data/*/x.csv"));
        assert!(!wildcard_in_folder("data/x*.csv"));
    }
}
