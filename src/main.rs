//! The `reflex` binary: parse the command line, set up logging, hand over,
//! and turn a start-up failure into one report and an exit code.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use reflex::cli::{exit, run_offline, Cli, Command, LogFormat};
use reflex::daemon::StartupError;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Before anything else: the first receive logs the start-up time.
    let started = Instant::now();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_logging(cli.log_format);
            let result = runtime().and_then(|rt| rt.block_on(reflex::cli::run::run(args, started)));
            match result {
                Ok(()) => ExitCode::from(exit::OK),
                Err(error) => {
                    reflex::cli::run::report(&error, cli.log_format);
                    ExitCode::from(reflex::cli::run::exit_code(&error))
                }
            }
        }
        Command::Dlq(args) => {
            init_logging(cli.log_format);
            match runtime() {
                Ok(rt) => ExitCode::from(rt.block_on(reflex::cli::dlq::run(args))),
                Err(error) => {
                    reflex::cli::run::report(&error, cli.log_format);
                    ExitCode::from(reflex::cli::run::exit_code(&error))
                }
            }
        }
        Command::State(args) => {
            init_logging(cli.log_format);
            match runtime() {
                Ok(rt) => ExitCode::from(rt.block_on(reflex::cli::state::run(args))),
                Err(error) => {
                    reflex::cli::run::report(&error, cli.log_format);
                    ExitCode::from(reflex::cli::run::exit_code(&error))
                }
            }
        }
        offline => ExitCode::from(run_offline(offline)),
    }
}

/// The multi-threaded tokio runtime the AWS-facing commands run on.
fn runtime() -> Result<tokio::runtime::Runtime, StartupError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartupError::Runtime)
}

/// Logs go to stderr; `REFLEX_LOG` sets the filter (default `info`).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("REFLEX_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
