//! The `edgeflow` command: run, validate, test and explain query files; receive upstream
//! batches (`collect`); make development certificates (`certs`).
//!
//! This binary is thin on purpose: it parses arguments, sets up logging, and hands the query
//! file to `edgeflow-queries` (validation, planning) and `edgeflow-engine` (running). Errors
//! are printed with their full chain and the process exits with a stable code:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success (including a graceful Ctrl-C / SIGTERM shutdown) |
//! | 1    | the pipeline failed while starting or running |
//! | 2    | the query file is invalid, or the command line is wrong |

mod certs;
mod cli;
mod collect;
mod ops;
mod status;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    match cli::execute(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
