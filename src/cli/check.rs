//! `reflex check`: validate rule files.

use std::path::PathBuf;

use clap::Args;

use super::exit;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rule files or directories.
    #[arg(default_value = "rules")]
    pub paths: Vec<PathBuf>,
}

pub fn run(args: &CheckArgs) -> u8 {
    if let Some(missing) = args.paths.iter().find(|p| !p.exists()) {
        eprintln!("{}:1:1: no such file or directory", missing.display());
        return exit::USAGE;
    }
    match crate::rules::load_paths(&args.paths) {
        Ok(set) => {
            let files: std::collections::BTreeSet<_> =
                set.rules().iter().map(|r| &r.file).collect();
            println!(
                "ok: {} rules in {} files, version {}",
                set.rules().len(),
                files.len(),
                set.version()
            );
            exit::OK
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{} problem(s) found", errors.len());
            exit::FAILED
        }
    }
}
