//! The `reflex` binary: parse the command line and hand over.

use std::process::ExitCode;

use clap::Parser;
use reflex::cli::{run_offline, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(run_offline(cli.command))
}
