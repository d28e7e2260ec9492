//! `reflex run`: load the configuration and rules, build the AWS clients,
//! start the worker, and shut down cleanly on SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::audit::{AuditSink, FileSink, NoAudit, StdoutSink};
use crate::aws::sdk::{
    AutoScalingGroups, ClassicElb, Clients, CloudWatch, Ec2, Elbv2, Sns, SqsQueue, Ssm, S3,
};
use crate::aws::signing_certs::HttpSigningCerts;
use crate::aws::timeouts::CallKind;
use crate::aws::{Notifier, Queue, SigningCerts};
use crate::config::{AuditTarget, Config, Overrides};
use crate::reload::s3::{S3Rules, StartError};
use crate::reload::RulesSource;
use crate::rules::source::SourceError;
use crate::rules::RuleSet;
use crate::telemetry::events::RulesStartedFromCache;
use crate::worker::{Effects, Settings, Worker};

/// Why `reflex run` did not start. Each is reported once, by `main`, which
/// also maps it to an exit code; nothing here logs it.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `reflex.toml`, flags or environment are invalid: every problem, located.
    #[error("{} problem(s) in the configuration; not starting", .0.len())]
    Config(Vec<SourceError>),
    /// The rules do not load: every problem, located.
    #[error("{} problem(s) in the rules under {rules_source}; not starting", .errors.len())]
    Rules {
        rules_source: String,
        errors: Vec<SourceError>,
    },
    /// An `s3://` rules source cannot be read, and there is no usable cache
    /// of the last good set.
    #[error("cannot read the rules from {rules_source}: {error}; {}, not starting", match .cache { Some(p) => format!("the cache {} cannot be used either (see the warning above)", p.display()), None => "no cache is configured ([rules] cache, REFLEX_RULES_CACHE)".to_string() })]
    RulesUnavailable {
        rules_source: String,
        error: String,
        cache: Option<PathBuf>,
    },
    /// `audit.sink = "file"` names a file that cannot be opened for appending
    /// (so a bad path stops start-up rather than losing records).
    #[error("cannot open the audit file {}: {source}", .path.display())]
    AuditFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The `/metrics` listener cannot bind.
    #[error("cannot listen on {addr} (metrics.listen): {source}")]
    MetricsListener {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The state store cannot be opened (a local file another reflex
    /// holds, an unreadable file).
    #[error("cannot open the state store: {0}")]
    State(#[source] crate::state::StoreError),
    /// The TLS client for SNS signing certificates cannot be built (no
    /// usable system root certificates).
    #[error("cannot set up TLS for SNS signing certificates: {0}")]
    Tls(#[source] std::io::Error),
    /// The async runtime cannot be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl StartupError {
    /// The located problems (`file:line:col: message`) behind a config or
    /// rules error; empty for the others.
    pub fn located(&self) -> &[SourceError] {
        match self {
            StartupError::Config(errors) | StartupError::Rules { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// Opens the audit trail's sink; for a file, fails if it cannot be opened
/// for appending.
pub fn open_audit(target: &AuditTarget) -> Result<Arc<dyn AuditSink>, StartupError> {
    Ok(match target {
        AuditTarget::Off => Arc::new(NoAudit),
        AuditTarget::Stdout => Arc::new(StdoutSink::default()),
        AuditTarget::File(path) => {
            Arc::new(
                FileSink::open(path).map_err(|source| StartupError::AuditFile {
                    path: path.clone(),
                    source,
                })?,
            )
        }
    })
}

/// Runs the daemon until a shutdown signal. `config` is the `reflex.toml`
/// (if any), `overrides` the flags and environment over it, `started` when
/// the process began (the first receive logs the start-up time).
pub async fn run(
    config: Option<PathBuf>,
    overrides: Overrides,
    started: Instant,
) -> Result<(), StartupError> {
    let config = Config::load(config.as_deref(), overrides).map_err(StartupError::Config)?;
    for warning in config.trust.warnings() {
        warn!("{warning}");
    }
    let audit = open_audit(&config.audit)?;
    let clients = Clients::from_env(&config.aws_timeouts).await;
    // Every AWS call from here on is counted in reflex_aws_calls_total.
    crate::telemetry::events::install();
    let (rules, follow) = load_rules(&config, &clients).await?;
    info!(
        rules = rules.rules().len(),
        rules_version = rules.version(),
        rules_source = %config.rules,
        queue_url = %config.queue_url,
        dry_run = config.dry_run,
        audit = %config.audit.describe(),
        "Starting reflex."
    );
    crate::telemetry::metrics().rules_loaded(rules.version(), rules.rules().len());
    let (rules_tx, rules_rx) = watch::channel(Arc::new(rules));
    let shutdown = CancellationToken::new();
    let queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(
        clients.sqs.clone(),
        &config.queue_url,
        config.aws_timeouts,
    ));
    let store = open_state_store(&config.state)
        .await
        .map_err(StartupError::State)?;
    info!(state = %store.describe(), "State store open.");
    // Every store call from here on is timed and counted (conflicts and
    // errors by operation).
    let store: Arc<dyn crate::state::StateStore> =
        Arc::new(crate::telemetry::store::CountedStore::new(store));
    if let Some(addr) = config.metrics_listen {
        let ready = crate::telemetry::http::Ready {
            rules: rules_rx.clone(),
            queue: Arc::clone(&queue),
            store: Arc::clone(&store),
        };
        crate::telemetry::http::serve(addr, ready, shutdown.clone())
            .await
            .map_err(|source| StartupError::MetricsListener { addr, source })?;
    }
    match follow {
        FollowRules::Watch(path) => {
            tokio::spawn(crate::reload::watch_rules(path, rules_tx, shutdown.clone()));
        }
        FollowRules::Poll(s3) => {
            tokio::spawn(s3.follow(rules_tx, shutdown.clone()));
        }
    }
    let live = Effects {
        elb: Arc::new(ClassicElb::new(clients.elb.clone(), config.aws_timeouts)),
        target_groups: Arc::new(Elbv2::new(clients.elbv2.clone(), config.aws_timeouts)),
        auto_scaling: Arc::new(AutoScalingGroups::new(
            clients.autoscaling.clone(),
            config.aws_timeouts,
        )),
        ec2: Arc::new(Ec2::new(clients.ec2.clone(), config.aws_timeouts)),
        ssm: Arc::new(Ssm::new(clients.ssm.clone(), config.aws_timeouts)),
        alarms: Arc::new(CloudWatch::new(
            clients.cloudwatch.clone(),
            config.aws_timeouts,
        )),
        sns: Arc::new(Sns::new(clients.sns.clone(), config.aws_timeouts)),
        metrics: Arc::new(CloudWatch::new(
            clients.cloudwatch.clone(),
            config.aws_timeouts,
        )),
    };
    let signing_certs = Arc::new(
        HttpSigningCerts::new(
            HttpSigningCerts::endpoint_from_env(),
            clients.credentials.clone(),
        )
        .map_err(StartupError::Tls)?
        .with_limits(config.aws_timeouts.limits(CallKind::Read, Duration::ZERO)),
    );
    if let Some(endpoint) = signing_certs.endpoint() {
        info!(
            endpoint,
            "SNS signing certificates come from the overridden SNS endpoint."
        );
    }
    let worker = Arc::new(Worker {
        audit,
        process_started: started,
        ..Worker::new(
            queue,
            Arc::new(SqsQueue::new(
                clients.sqs.clone(),
                &config.dead_letter_queue_url,
                config.aws_timeouts,
            )),
            live,
            rules_rx,
            store,
            Settings::from(&config),
        )
        .with_signing_certs(signing_certs)
    });
    let tracker = TaskTracker::new();
    let pollers = tokio::spawn(Arc::clone(&worker).run(shutdown.clone(), tracker.clone()));
    tokio::spawn(crate::telemetry::cloudwatch::publish(
        Arc::new(CloudWatch::new(
            clients.cloudwatch.clone(),
            config.aws_timeouts,
        )),
        queue_name(&config.queue_url),
        config.cloudwatch_interval,
        Arc::clone(&worker.receives),
        shutdown.clone(),
    ));

    wait_for_signal().await;
    info!(
        grace_s = config.shutdown_grace.as_secs(),
        "Shutdown requested: no new messages; letting in-flight ones finish."
    );
    shutdown.cancel();
    // One grace period for both: the outstanding long poll finishing (its
    // messages are released) and the in-flight messages.
    let stopped = async {
        let _ = pollers.await;
        tracker.close();
        tracker.wait().await;
    };
    if tokio::time::timeout(config.shutdown_grace, stopped)
        .await
        .is_err()
    {
        warn!(
            in_flight = tracker.len(),
            "Grace period over with messages still in flight; they return to the queue when their visibility times out."
        );
    }
    info!("reflex stopped.");
    Ok(())
}

/// How the live rules follow their source.
enum FollowRules {
    /// A local directory: watched, and reloaded on SIGHUP.
    Watch(PathBuf),
    /// An `s3://` prefix: polled.
    Poll(S3Rules),
}

/// The rules to start with, and how they follow their source from then
/// on. S3 with no valid set falls back to the cache of the last
/// good set, if one is configured and usable.
async fn load_rules(
    config: &Config,
    clients: &Clients,
) -> Result<(RuleSet, FollowRules), StartupError> {
    match &config.rules {
        RulesSource::Local(path) => crate::rules::load_paths(std::slice::from_ref(path))
            .map(|set| (set, FollowRules::Watch(path.clone())))
            .map_err(|errors| StartupError::Rules {
                rules_source: path.display().to_string(),
                errors,
            }),
        RulesSource::S3(s3) => {
            let objects = Arc::new(S3::new(clients.s3.clone(), config.aws_timeouts));
            let notifier: Arc<dyn Notifier> =
                Arc::new(Sns::new(clients.sns.clone(), config.aws_timeouts));
            let mut follower = S3Rules::new(objects, s3.clone(), Some(notifier));
            match follower.start().await {
                Ok((set, None)) => Ok((set, FollowRules::Poll(follower))),
                Ok((set, Some(reason))) => {
                    RulesStartedFromCache {
                        source: &s3.url(),
                        cache: s3.cache.as_deref().unwrap_or(std::path::Path::new("")),
                        rules_version: set.version(),
                        reason: &reason,
                    }
                    .emit();
                    Ok((set, FollowRules::Poll(follower)))
                }
                Err(StartError::Invalid(errors)) => Err(StartupError::Rules {
                    rules_source: s3.url(),
                    errors,
                }),
                Err(StartError::Unreachable(error)) => Err(StartupError::RulesUnavailable {
                    rules_source: s3.url(),
                    error: error.to_string(),
                    cache: s3.cache.clone(),
                }),
            }
        }
    }
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
