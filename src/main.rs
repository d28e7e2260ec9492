//! The `reflex` binary: parse the command line, set up logging, hand over.

use std::process::ExitCode;

use clap::Parser;
use reflex::cli::{run_offline, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    reflex::daemon::mark_process_start();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_logging(cli.log_format);
            block_on(reflex::daemon::run(args))
        }
        Command::Dlq(args) => {
            init_logging(cli.log_format);
            block_on(reflex::cli::dlq::run(args))
        }
        Command::State(args) => {
            init_logging(cli.log_format);
            block_on(reflex::cli::state::run(args))
        }
        offline => ExitCode::from(run_offline(offline)),
    }
}

/// Runs an AWS-facing command on a multi-threaded tokio runtime.
fn block_on(command: impl std::future::Future<Output = u8>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => ExitCode::from(runtime.block_on(command)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(reflex::cli::exit::USAGE)
        }
    }
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
