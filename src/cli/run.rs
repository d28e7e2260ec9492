//! `reflex run`: its arguments, and how a start-up failure is shown and
//! mapped to an exit code. The daemon itself is [`crate::daemon`].

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use tracing::error;

use super::{exit, LogFormat};
use crate::config::Overrides;
use crate::daemon::StartupError;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The configuration file. Without it, everything comes from flags and
    /// the environment.
    #[arg(long, value_name = "FILE", env = "REFLEX_CONFIG")]
    pub config: Option<PathBuf>,
    /// The alarm queue's URL (overrides `queue_url`).
    #[arg(long, env = "REFLEX_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// The dead-letter queue's URL (overrides `dead_letter_queue_url`).
    #[arg(long = "dlq-url", env = "REFLEX_DLQ_URL")]
    pub dead_letter_queue_url: Option<String>,
    /// The rules: a directory, or `s3://bucket/prefix/` (overrides
    /// `[rules] source`).
    #[arg(
        long = "rules",
        env = "REFLEX_RULES_DIR",
        value_name = "DIR|s3://BUCKET/PREFIX/"
    )]
    pub rules_dir: Option<String>,
    /// The same as `--rules`, under the name the Terraform module sets.
    #[arg(
        long = "rules-source",
        env = "REFLEX_RULES_SOURCE",
        value_name = "DIR|s3://BUCKET/PREFIX/",
        conflicts_with = "rules_dir"
    )]
    pub rules_source: Option<String>,
    /// Where the last good set from S3 is kept (overrides `[rules] cache`).
    #[arg(long = "rules-cache", env = "REFLEX_RULES_CACHE", value_name = "FILE")]
    pub rules_cache: Option<PathBuf>,
    /// An SNS topic told about each rejected set from S3 (overrides
    /// `[rules] rejected_topic_arn`).
    #[arg(
        long = "rules-rejected-topic-arn",
        env = "REFLEX_RULES_REJECTED_TOPIC_ARN",
        value_name = "ARN"
    )]
    pub rules_rejected_topic_arn: Option<String>,
    /// A trusted SNS topic ARN (repeatable; the environment variable takes a
    /// comma-separated list). Added to `trusted_topic_arns`.
    #[arg(
        long = "trusted-topic-arn",
        env = "REFLEX_TRUSTED_TOPIC_ARNS",
        value_delimiter = ','
    )]
    pub trusted_topic_arns: Vec<String>,
    /// Global dry run: read everything, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Address for /metrics, /healthz and /readyz, or `off` (overrides
    /// `metrics.listen`; port 0 picks a free port, logged at start-up).
    #[arg(long, env = "REFLEX_METRICS_LISTEN", value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Visibility timeout requested on receive, e.g. "150s" (overrides
    /// `receive.visibility_timeout`; the Terraform module sets it to the
    /// queue's).
    #[arg(long, env = "REFLEX_VISIBILITY_TIMEOUT", value_name = "DURATION")]
    pub visibility_timeout: Option<String>,
    /// How often a message being worked on has its visibility extended
    /// (overrides `receive.heartbeat`).
    #[arg(long, env = "REFLEX_HEARTBEAT", value_name = "DURATION")]
    pub heartbeat: Option<String>,
    /// Time for in-flight messages after SIGTERM (overrides
    /// `shutdown_grace`; keep it below the platform's kill timeout).
    #[arg(long, env = "REFLEX_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
}

impl RunArgs {
    /// The `reflex.toml` to read (if any), and the flags and environment that
    /// override it.
    pub fn into_parts(self) -> (Option<PathBuf>, Overrides) {
        let overrides = Overrides {
            queue_url: self.queue_url,
            dead_letter_queue_url: self.dead_letter_queue_url,
            rules: self.rules_source.or(self.rules_dir),
            rules_cache: self.rules_cache,
            rules_rejected_topic_arn: self.rules_rejected_topic_arn,
            trusted_topic_arns: self.trusted_topic_arns,
            dry_run: self.dry_run,
            metrics_listen: self.metrics_listen,
            visibility_timeout: self.visibility_timeout,
            heartbeat: self.heartbeat,
            shutdown_grace: self.shutdown_grace,
            state: crate::state::config::StateOverrides::from_env(),
        };
        (self.config, overrides)
    }
}

/// Runs the daemon until a shutdown signal; `started` is when the process
/// began.
pub async fn run(args: RunArgs, started: Instant) -> Result<(), StartupError> {
    let (config, overrides) = args.into_parts();
    crate::daemon::run(config, overrides, started).await
}

/// The exit code of a start-up failure: a usage, config or rule-load
/// error, except a rules source that cannot be read (S3 down), which a
/// restart may fix.
pub fn exit_code(error: &StartupError) -> u8 {
    match error {
        StartupError::RulesUnavailable { .. } => exit::FAILED,
        StartupError::Config(_)
        | StartupError::Rules { .. }
        | StartupError::AuditFile { .. }
        | StartupError::MetricsListener { .. }
        | StartupError::Runtime(_)
        | StartupError::Tls(_)
        | StartupError::State(_) => exit::USAGE,
    }
}

/// Shows a start-up failure once. In text, each located problem is a plain
/// `file:line:col: message` line on stderr (as `reflex check` prints them),
/// then one `error: …` line; in JSON, each is one log event, so stderr stays
/// one JSON object per line.
pub fn report(error: &StartupError, format: LogFormat) {
    match format {
        LogFormat::Text => {
            for problem in error.located() {
                eprintln!("{problem}");
            }
            eprintln!("error: {error}");
        }
        LogFormat::Json => {
            let what = match error {
                StartupError::Config(_) => "Invalid configuration.",
                _ => "Invalid rule.",
            };
            for problem in error.located() {
                error!(problem = %problem, "{what}");
            }
            error!(error = %error, "reflex cannot start.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn run_arguments_become_overrides() {
        let cli = crate::cli::Cli::try_parse_from([
            "reflex",
            "run",
            "--config",
            "r.toml",
            "--queue-url",
            "q",
            "--dlq-url",
            "d",
            "--trusted-topic-arn",
            "a,b",
            "--dry-run",
            "--metrics-listen",
            "off",
            "--rules",
            "my-rules",
        ])
        .expect("parses");
        let crate::cli::Command::Run(args) = cli.command else {
            panic!("not `run`: {:?}", cli.command)
        };
        let (config, o) = args.into_parts();
        assert_eq!(config, Some(PathBuf::from("r.toml")));
        assert_eq!(o.queue_url.as_deref(), Some("q"));
        assert_eq!(o.dead_letter_queue_url.as_deref(), Some("d"));
        assert_eq!(o.trusted_topic_arns, vec!["a", "b"]);
        assert!(o.dry_run);
        assert_eq!(o.metrics_listen.as_deref(), Some("off"));
        assert_eq!(o.rules.as_deref(), Some("my-rules"));
    }

    #[test]
    fn every_start_up_failure_is_a_usage_error() {
        let io = || std::io::Error::other("boom");
        for e in [
            StartupError::Config(vec![]),
            StartupError::Rules {
                rules_source: "rules".into(),
                errors: vec![],
            },
            StartupError::AuditFile {
                path: "a.jsonl".into(),
                source: io(),
            },
            StartupError::MetricsListener {
                addr: "127.0.0.1:9464".parse().expect("address"),
                source: io(),
            },
            StartupError::Runtime(io()),
        ] {
            assert_eq!(exit_code(&e), exit::USAGE, "{e}");
        }
        let unavailable = StartupError::RulesUnavailable {
            rules_source: "s3://bkt/rules/".into(),
            error: "connection refused".into(),
            cache: None,
        };
        assert_eq!(exit_code(&unavailable), exit::FAILED, "{unavailable}");
    }
}
