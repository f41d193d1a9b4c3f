//! Command-line arguments and the three commands.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use edgeflow_engine::{MemoryBudget, PipelineMetrics, RunOptions};
use edgeflow_queries::{Plan, render};

const EXAMPLES: &str = "\
Examples:
  edgeflow run examples/quickstart.toml          run a pipeline until its input ends or Ctrl-C
  edgeflow validate pipeline.toml                check a query file; exit 0 when it is valid
  edgeflow test pipeline.toml                    run its [[tests]] with fixture inputs
  edgeflow explain pipeline.toml                 show the graph with each node's schema
  edgeflow explain --format dot q.toml | dot -Tsvg > q.svg   draw it
  RUST_LOG=debug edgeflow run pipeline.toml      more detailed logs
  edgeflow certs --out certs                     development CA and mTLS certificates
  edgeflow collect --tls-cert certs/collector.pem --tls-key certs/collector-key.pem \\
    --client-ca certs/ca.pem --out collected     receive Flight upstream into Parquet";

/// Stream processing for IoT edge gateways: sensor streams in, windowed results out as
/// Parquet and Arrow.
#[derive(Debug, Parser)]
#[command(name = "edgeflow", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until its sources end or it receives Ctrl-C / SIGTERM.
    Run {
        /// The query file.
        file: PathBuf,
        /// Dataflow worker threads (default: `[pipeline] workers`, else one per core).
        #[arg(long, short = 'w')]
        workers: Option<usize>,
        /// Never show the live status line (it is shown only on a terminal anyway).
        #[arg(long)]
        no_status: bool,
    },
    /// Check a query file without running it; print every problem found.
    Validate {
        /// The query file.
        file: PathBuf,
    },
    /// Run the tests of a query file (`[[tests]]` in it, or in `<name>.test.toml` beside it)
    /// with fixture inputs in simulated event time. Exit 0 when all pass, 1 otherwise.
    Test {
        /// The query file.
        file: PathBuf,
        /// Dataflow worker threads for each test run.
        #[arg(long, short = 'w', default_value_t = 2)]
        workers: usize,
    },
    /// Show the planned graph with each node's output schema.
    Explain {
        /// The query file.
        file: PathBuf,
        /// Output format: text, Graphviz dot (`| dot -Tsvg > graph.svg`), or Mermaid.
        #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
        format: ExplainFormat,
    },
    /// Receive Arrow Flight upstream from gateways (mutual TLS) into partitioned Parquet.
    Collect(crate::collect::CollectArgs),
    /// Write a development CA and certificates for `collect` and its gateways.
    Certs(crate::certs::CertsArgs),
}

/// Formats of `edgeflow explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainFormat {
    /// Indented text.
    Text,
    /// A Graphviz digraph.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// Sets up `tracing` from `RUST_LOG` (default: edgeflow at info, everything else at warn).
pub fn init_logging(_cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,edgeflow=info,edgeflow_engine=info,edgeflow_connectors=info,edgeflow_operators=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Runs the chosen command.
///
/// # Errors
/// Failures while starting or running a pipeline (exit code 1).
pub fn execute(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Collect(args) => crate::collect::run(args),
        Command::Certs(args) => crate::certs::run(&args),
        Command::Validate { file } => {
            let (plan, text) = match load(&file)? {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            print_warnings(&plan, &file, &text);
            let counts = edgeflow_queries::plan::count_by_role(&plan);
            let summary: Vec<String> = counts
                .iter()
                .map(|(role, n)| format!("{n} {role}{}", if *n == 1 { "" } else { "s" }))
                .collect();
            println!("{}: valid ({})", file.display(), summary.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { file, format } => {
            let (plan, text) = match load(&file)? {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            print_warnings(&plan, &file, &text);
            let rendered = match format {
                ExplainFormat::Text => edgeflow_queries::explain(&plan),
                ExplainFormat::Dot => edgeflow_queries::explain_dot(&plan),
                ExplainFormat::Mermaid => edgeflow_queries::explain_mermaid(&plan),
            };
            print!("{rendered}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { file, workers } => {
            let (plan, text) = match load(&file)? {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            print_warnings(&plan, &file, &text);
            drop(plan);
            anyhow::ensure!(workers > 0, "--workers must be at least 1");
            let tests = edgeflow_queries::fixture::load_tests(&file, &text)
                .map_err(|error| anyhow::anyhow!("invalid tests: {error}"))?;
            if tests.is_empty() {
                eprintln!(
                    "{}: no tests (add [[tests]] to it or to a sibling .test.toml)",
                    file.display()
                );
                return Ok(ExitCode::from(1));
            }
            let outcomes = edgeflow_queries::fixture::run_tests(&text, &tests, workers);
            let mut failed = 0;
            for outcome in &outcomes {
                if outcome.failures.is_empty() {
                    println!("test {} ... ok", outcome.name);
                } else {
                    failed += 1;
                    println!("test {} ... FAILED", outcome.name);
                    for failure in &outcome.failures {
                        println!("    {failure}");
                    }
                }
            }
            println!(
                "\n{}: {} passed, {failed} failed",
                file.display(),
                outcomes.len() - failed
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Run {
            file,
            workers,
            no_status,
        } => {
            let (plan, text) = match load(&file)? {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            print_warnings(&plan, &file, &text);
            run(plan, &file, workers, no_status)
        }
    }
}

/// Reads and plans a query file; `Err(code)` after printing diagnostics.
fn load(file: &Path) -> Result<std::result::Result<(Plan, String), ExitCode>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read query file '{}'", file.display()))?;
    match edgeflow_queries::plan(&text) {
        Ok(plan) => Ok(Ok((plan, text))),
        Err(diagnostics) => {
            let color = std::io::stderr().is_terminal();
            eprint!(
                "{}",
                render(&diagnostics, &file.display().to_string(), &text, color)
            );
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            eprintln!(
                "error: {} is invalid: {errors} error{}",
                file.display(),
                if errors == 1 { "" } else { "s" }
            );
            Ok(Err(ExitCode::from(2)))
        }
    }
}

fn print_warnings(plan: &Plan, file: &Path, text: &str) {
    if !plan.warnings.is_empty() {
        let color = std::io::stderr().is_terminal();
        eprint!(
            "{}",
            render(&plan.warnings, &file.display().to_string(), text, color)
        );
    }
}

fn run(plan: Plan, file: &Path, workers: Option<usize>, no_status: bool) -> Result<ExitCode> {
    let mut options = RunOptions {
        handle_signals: true,
        ..RunOptions::default()
    };
    if let Some(workers) = workers.or(plan.settings.workers) {
        anyhow::ensure!(workers > 0, "--workers must be at least 1");
        options.workers = workers;
    }
    options.memory = Arc::new(MemoryBudget::new(plan.settings.memory_limit_bytes()));
    let name = if plan.settings.name.is_empty() {
        file.file_stem().map_or_else(
            || "pipeline".to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    } else {
        plan.settings.name.clone()
    };
    let mut plan = plan;
    plan.settings.name = name.clone();
    // The operations server describes the graph, so take its description before the plan
    // becomes the graph.
    let server = plan.server.clone().map(|settings| {
        let description =
            crate::ops::pipeline::PipelineDescription::of(&plan, &name, options.workers);
        (settings, description)
    });
    let graph = plan
        .into_graph()
        .with_context(|| format!("cannot start pipeline '{name}' from '{}'", file.display()))?;
    let metrics = PipelineMetrics::new();
    let ops = match server {
        Some((settings, description)) => Some(crate::ops::OpsServer::start(
            &settings.listen,
            settings.watermark_stall(),
            description,
            metrics.clone(),
            options.shutdown.signal(),
        )?),
        None => None,
    };
    tracing::info!(pipeline = %name, workers = options.workers, "Pipeline starting");
    let status = crate::status::StatusLine::start(metrics.clone(), !no_status);
    let result = edgeflow_engine::run(graph, options, metrics);
    status.finish();
    if let Some(ops) = ops {
        ops.stop();
    }
    let report = result.with_context(|| format!("pipeline '{name}' failed"))?;
    eprint!("{}", crate::status::summary(&report));
    Ok(ExitCode::SUCCESS)
}
