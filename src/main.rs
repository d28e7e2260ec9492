//! The `reflex` binary: parse the command line, set up logging, hand over.

use std::process::ExitCode;

use clap::Parser;
use reflex::cli::{run_offline, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    reflex::daemon::mark_process_start();
    let cli = Cli::parse();
    let Command::Run(args) = cli.command else {
        return ExitCode::from(run_offline(cli.command));
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(reflex::cli::exit::USAGE);
        }
    };
    ExitCode::from(runtime.block_on(reflex::daemon::run(args)))
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
