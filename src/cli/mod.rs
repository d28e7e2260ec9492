//! The command line: argument types (clap) for every subcommand, and the
//! offline subcommands, which need no AWS: `check`, `explain`, `replay`,
//! `test`, `schema`, `iam-policy`, `audit`, and `health` (which asks a
//! running daemon's `/readyz` on loopback). `run` ([`run`]) and `dlq`
//! ([`dlq`]) parse here and act through [`crate::daemon`] and [`crate::dlq`].
//!
//! Exit codes are a contract other tools rely on: see [`exit`].

pub mod audit;
pub mod check;
pub mod dlq;
pub mod explain;
pub mod health;
pub mod iam_policy;
pub mod replay;
pub mod rule_test;
pub mod run;
pub mod state;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Process exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Rules invalid (`check`) or a rule test failed (`test`).
    pub const FAILED: u8 = 1;
    /// Usage, config or rule-load error.
    pub const USAGE: u8 = 2;
    /// The input is poison (`explain`).
    pub const POISON: u8 = 3;
}

/// reflex: CloudWatch alarms in, guarded remediation out.
#[derive(Debug, Parser)]
#[command(name = "reflex", version, about, long_about = None)]
pub struct Cli {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate rule files; print each problem as file:line:col: message.
    Check(check::CheckArgs),
    /// Decode one SQS message body and show the event, matched rules and planned actions.
    Explain(explain::ExplainArgs),
    /// Backtest rules against message bodies, one per line (JSON lines).
    Replay(replay::ReplayArgs),
    /// Run rule tests: message bodies with the matches and actions they must produce.
    Test(rule_test::TestArgs),
    /// Print the JSON Schema of the rule format.
    Schema,
    /// Print the least-privilege IAM policy the daemon needs for a rule set.
    IamPolicy(iam_policy::IamPolicyArgs),
    /// Review the audit trail: what was terminated, which rules fired, what was suppressed and why.
    Audit(audit::AuditArgs),
    /// Run the daemon: drain the alarm queue and act.
    Run(run::RunArgs),
    /// Inspect the dead-letter queue, or redrive its messages after a fix.
    Dlq(dlq::DlqArgs),
    /// Ask a running daemon's /readyz on loopback: exit 0 if ready, 1 if not (for container health checks).
    Health(health::HealthArgs),
    /// Show what reflex remembers: transitions handled, cooldowns, rate buckets, target leases.
    State(state::StateArgs),
}

/// `--rules DIR`, shared by the subcommands that evaluate rules.
#[derive(Debug, Clone, Args)]
pub struct RulesArg {
    /// Rule file or directory (repeatable).
    #[arg(long = "rules", value_name = "DIR", default_value = "rules")]
    pub rules: Vec<PathBuf>,
}

impl RulesArg {
    /// Loads the rules, or prints every problem to stderr.
    pub fn load(&self) -> Result<crate::rules::RuleSet, u8> {
        crate::rules::load_paths(&self.rules).map_err(|errors| {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "error: {} problem(s) in the rules; nothing was evaluated",
                errors.len()
            );
            exit::USAGE
        })
    }
}

/// Runs an offline subcommand and returns its exit code.
pub fn run_offline(command: Command) -> u8 {
    match command {
        Command::Check(a) => check::run(&a),
        Command::Explain(a) => explain::run(&a),
        Command::Replay(a) => replay::run(&a),
        Command::Test(a) => rule_test::run(&a),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::schema::rule_schema()).unwrap_or_default()
            );
            exit::OK
        }
        Command::IamPolicy(a) => iam_policy::run(&a),
        Command::Audit(a) => audit::run(&a),
        Command::Health(a) => health::run(&a),
        Command::Run(_) | Command::Dlq(_) | Command::State(_) => {
            eprintln!("error: `run`, `dlq` and `state` are not offline commands");
            exit::USAGE
        }
    }
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}
