//! `reflex run`: load the configuration and rules, build the AWS clients,
//! start the worker, and shut down cleanly on SIGTERM or ctrl-c.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::aws::sdk::{ClassicElb, Clients, CloudWatch, Ec2, Sns, SqsQueue};
use crate::aws::Queue;
use crate::cli::exit;
use crate::config::{Config, Overrides};
use crate::safety::state::MemoryStore;
use crate::worker::{Effects, Settings, Worker};

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
    /// The rules directory (overrides `rules_dir`).
    #[arg(long = "rules", env = "REFLEX_RULES_DIR")]
    pub rules_dir: Option<PathBuf>,
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
}

static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Records when the process started, for the start-up time in the logs.
pub fn mark_process_start() {
    PROCESS_START.get_or_init(std::time::Instant::now);
}

/// Milliseconds since [`mark_process_start`].
pub fn since_process_start() -> std::time::Duration {
    PROCESS_START.get_or_init(std::time::Instant::now).elapsed()
}

/// Runs the daemon until a shutdown signal; returns the exit code.
pub async fn run(args: RunArgs) -> u8 {
    let overrides = Overrides {
        queue_url: args.queue_url,
        dead_letter_queue_url: args.dead_letter_queue_url,
        rules_dir: args.rules_dir,
        trusted_topic_arns: args.trusted_topic_arns,
        dry_run: args.dry_run,
        metrics_listen: args.metrics_listen,
        state: crate::state::config::StateOverrides::from_env(),
    };
    let config = match Config::load(args.config.as_deref(), overrides) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                error!(error = %e, "Configuration error.");
                eprintln!("{e}");
            }
            return exit::USAGE;
        }
    };
    let rules = match crate::rules::load_paths(std::slice::from_ref(&config.rules_dir)) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            error!(problems = errors.len(), rules_dir = %config.rules_dir.display(), "Rules are invalid; not starting.");
            return exit::USAGE;
        }
    };
    if config.trusted_topic_arns.is_empty() {
        warn!("trusted_topic_arns is empty: SNS notifications from any topic will be acted on.");
    }
    let audit = match config.audit.open() {
        Ok(sink) => sink,
        Err(e) => {
            error!(error = %e, audit = %config.audit.describe(), "Cannot open the audit file; not starting.");
            eprintln!(
                "error: cannot open the audit file {}: {e}",
                config.audit.describe()
            );
            return exit::USAGE;
        }
    };
    info!(
        rules = rules.rules().len(),
        rules_version = rules.version(),
        queue_url = %config.queue_url,
        dry_run = config.dry_run,
        audit = %config.audit.describe(),
        "Starting reflex."
    );
    let clients = Clients::from_env().await;
    crate::telemetry::metrics().rules_loaded(rules.version(), rules.rules().len());
    let (rules_tx, rules_rx) = watch::channel(Arc::new(rules));
    let shutdown = CancellationToken::new();
    let queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(clients.sqs.clone(), &config.queue_url));
    if let Some(addr) = config.metrics_listen {
        if let Err(e) = crate::telemetry::http::serve(
            addr,
            rules_rx.clone(),
            Arc::clone(&queue),
            shutdown.clone(),
        )
        .await
        {
            error!(error = %e, address = %addr, "Cannot listen for /metrics; not starting.");
            eprintln!("error: cannot listen on {addr} (metrics.listen): {e}");
            return exit::USAGE;
        }
    }
    tokio::spawn(crate::reload::watch_rules(
        config.rules_dir.clone(),
        rules_tx,
        shutdown.clone(),
    ));
    let live = Effects {
        elb: Arc::new(ClassicElb(clients.elb.clone())),
        ec2: Arc::new(Ec2(clients.ec2.clone())),
        alarms: Arc::new(CloudWatch(clients.cloudwatch.clone())),
        sns: Arc::new(Sns(clients.sns.clone())),
        metrics: Arc::new(CloudWatch(clients.cloudwatch.clone())),
    };
    let worker = Arc::new(Worker {
        audit,
        ..Worker::new(
            queue,
            Arc::new(SqsQueue::new(
                clients.sqs.clone(),
                &config.dead_letter_queue_url,
            )),
            live,
            rules_rx,
            Arc::new(MemoryStore::new(config.dedup_window)),
            Settings::from(&config),
        )
    });
    let tracker = TaskTracker::new();
    let pollers = tokio::spawn(Arc::clone(&worker).run(shutdown.clone(), tracker.clone()));
    tokio::spawn(crate::telemetry::cloudwatch::publish(
        Arc::new(CloudWatch(clients.cloudwatch.clone())),
        queue_name(&config.queue_url),
        config.cloudwatch_interval,
        shutdown.clone(),
    ));

    wait_for_signal().await;
    info!(
        grace_s = config.shutdown_grace.as_secs(),
        "Shutdown requested: no new messages; letting in-flight ones finish."
    );
    shutdown.cancel();
    let _ = pollers.await;
    tracker.close();
    if tokio::time::timeout(config.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            in_flight = tracker.len(),
            "Grace period over with messages still in flight; they return to the queue when their visibility times out."
        );
    }
    info!("reflex stopped.");
    exit::OK
}

/// Opens the state store `[state]` names.
pub async fn open_state_store(
    config: &crate::state::config::StateConfig,
) -> Result<Arc<dyn crate::state::StateStore>, crate::state::StoreError> {
    use crate::state::config::Backend;
    Ok(match &config.backend {
        Backend::Memory => Arc::new(crate::state::memory::MemoryStore::new()),
        Backend::Local { path } => {
            let path = path.clone();
            let store =
                tokio::task::spawn_blocking(move || crate::state::local::LocalStore::open(&path))
                    .await
                    .map_err(|e| crate::state::StoreError::Permanent(e.to_string()))??;
            Arc::new(store)
        }
        Backend::DynamoDb { table } => {
            Arc::new(crate::aws::dynamodb_state::DynamoDbStore::from_env(table.clone()).await)
        }
    })
}

/// The queue's name: the last segment of its URL.
pub fn queue_name(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(url)
        .to_string()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "Cannot listen for SIGTERM; only ctrl-c will stop reflex.");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
