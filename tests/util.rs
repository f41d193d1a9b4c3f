//! Shared helpers: running the binary, temp folders, the Python used for output checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command for the `edgeflow` binary built for these tests.
pub fn edgeflow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgeflow"));
    command.env("RUST_LOG", "warn,edgeflow=info,edgeflow_connectors=info");
    command
}

/// Runs a command and returns its output, with stdout/stderr as text for messages.
pub fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("the command starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// The Python interpreter with pyarrow and duckdb.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("EDGEFLOW_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with pyarrow: run scripts/test (it creates .venv) or set EDGEFLOW_PYTHON"
    );
    venv
}

/// Runs `tests/python/<script>` with `args`; panics with its output when it fails.
pub fn check_with_python(script: &str, args: &[&Path]) -> String {
    let mut command = Command::new(python());
    command.arg(repo().join("tests/python").join(script));
    command.args(args);
    let (output, stdout, stderr) = run(&mut command);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// Writes a query file into `dir` and returns its path.
pub fn write_query(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write query file");
    path
}

/// Asserts that `haystack` contains `needle`, showing both on failure.
macro_rules! assert_contains {
    ($haystack:expr, $needle:expr) => {{
        let haystack: &str = &$haystack;
        let needle: &str = &$needle;
        assert!(
            haystack.contains(needle),
            "expected to find {needle:?} in:\n{haystack}"
        );
    }};
}
