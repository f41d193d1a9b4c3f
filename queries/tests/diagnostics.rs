//! Diagnostics as data: every `tests/diagnostics/*.toml` is planned, and what `validate`
//! would print is compared with the `.expected` file beside it.
//!
//! To regenerate the expected files after an intended change of wording:
//! `EDGEFLOW_BLESS=1 cargo test -p edgeflow-queries --test diagnostics`, then review the diff.

use std::path::Path;

fn rendered(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let name = format!("{}", path.file_name().unwrap().to_string_lossy());
    match edgeflow_queries::plan(&text) {
        Ok(plan) => {
            let mut out = edgeflow_queries::render(&plan.warnings, &name, &text, false);
            out.push_str("valid\n");
            out
        }
        Err(diagnostics) => edgeflow_queries::render(&diagnostics, &name, &text, false),
    }
}

#[test]
fn diagnostics_match_expected_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let bless = std::env::var_os("EDGEFLOW_BLESS").is_some();
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        cases += 1;
        let actual = rendered(&path);
        let expected_path = path.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
                path.display()
            ));
        }
    }
    assert!(cases > 0, "no cases in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
