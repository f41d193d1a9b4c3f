//! Random and mutated query files never panic the planner: every outcome is a plan or a list
//! of diagnostics, and every diagnostic span lies inside the file.

use proptest::prelude::*;

const SEEDS: [&str; 2] = [
    include_str!("../../examples/quickstart.toml"),
    include_str!("diagnostics/window_errors.toml"),
];

fn check(text: &str) {
    let lookup = |_: &str| None;
    match edgeflow_queries::plan_with_env(text, &lookup) {
        Ok(plan) => {
            let _ = edgeflow_queries::explain(&plan);
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty());
            for diagnostic in &diagnostics {
                if let Some(span) = &diagnostic.span {
                    assert!(
                        span.start <= text.len() && span.end <= text.len(),
                        "{span:?} outside the file"
                    );
                }
            }
            let _ = edgeflow_queries::render(&diagnostics, "fuzz.toml", text, false);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn random_toml_like_text_never_panics(text in "(\\[[a-z.]{0,12}\\]\n|[a-z_]{1,8} = (\"[^\"\n]{0,10}\"|[0-9.e-]{1,6}|\\[\\]|\\{\\}|true)\n){0,12}") {
        check(&text);
    }

    #[test]
    fn mutated_examples_never_panic(
        seed in 0..SEEDS.len(),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), "\\PC{0,6}"), 1..4),
    ) {
        let mut text = SEEDS[seed].to_string();
        for (at, len, insert) in cuts {
            let start = at.index(text.len().max(1)).min(text.len());
            let end = (start + len.index(8)).min(text.len());
            if text.is_char_boundary(start) && text.is_char_boundary(end) {
                text.replace_range(start..end, &insert);
            }
        }
        check(&text);
    }
}
