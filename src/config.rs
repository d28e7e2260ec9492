//! The daemon's configuration file (`reflex.toml`), as strict as rule files:
//! unknown keys are errors, and every error has file, line and column.
//! Command-line flags and `REFLEX_*` environment variables override it.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::aws::timeouts::{defaults as aws_timeouts_defaults, AwsTimeouts, CallLimits};
use crate::disposition::Backoff;
use crate::reload::RulesSource;
use crate::rules::limits::{parse_duration, Rate};
use crate::rules::source::{parse_toml, SourceError, SourceFile};
use crate::trust::TrustPolicy;
use crate::worker::{defaults, Settings};

/// How long in-flight messages may take to finish on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a processed alarm transition is remembered.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(6 * 3600);
/// How often the heartbeat and counts are put to CloudWatch.
pub const DEFAULT_CLOUDWATCH_INTERVAL: Duration = Duration::from_secs(60);
/// Where `/metrics`, `/healthz` and `/readyz` listen.
pub const DEFAULT_METRICS_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9464),
);

/// `reflex.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    /// URL of the SQS queue the alarm topic feeds.
    pub queue_url: Option<String>,
    /// URL of the dead-letter queue for poison messages.
    pub dead_letter_queue_url: Option<String>,
    /// Directory (or file) of rule files. Default `rules`. The older
    /// spelling of `[rules] source`, still read.
    pub rules_dir: Option<PathBuf>,
    #[serde(default)]
    pub rules: RulesSpec,
    /// SNS topics whose notifications are trusted. An SNS envelope from any
    /// other topic is dead-lettered as `untrusted_topic`; while it is set,
    /// unsigned formats are refused (`[trust]`). Empty: trust all.
    #[serde(default)]
    pub trusted_topic_arns: Vec<String>,
    #[serde(default)]
    pub trust: TrustSpec,
    /// Global dry run: every rule runs as if `dry_run = true`.
    #[serde(default)]
    pub dry_run: bool,
    /// Ignore alarms whose state changed longer ago than this (rules may
    /// override). Default `"15m"`.
    pub max_event_age: Option<Spanned<String>>,
    /// How long in-flight messages may take to finish on shutdown.
    /// Default `"30s"`.
    pub shutdown_grace: Option<Spanned<String>>,
    #[serde(default)]
    pub receive: ReceiveSpec,
    #[serde(default)]
    pub retry: RetrySpec,
    #[serde(default)]
    pub limits: GlobalLimitsSpec,
    #[serde(default)]
    pub audit: AuditSpec,
    #[serde(default)]
    pub metrics: MetricsSpec,
    #[serde(default)]
    pub state: crate::state::config::StateSpec,
    #[serde(default)]
    pub aws: AwsSpec,
}

/// `[rules]`: where the rules come from, and how an `s3://` source is
/// followed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSpec {
    /// A directory (or one file) of rule files, or `s3://bucket/prefix/`.
    /// Default `rules`.
    pub source: Option<Spanned<String>>,
    /// How often an `s3://` source is listed for changes. Default `"30s"`.
    pub poll_interval: Option<Spanned<String>>,
    /// A local file that keeps the last good set read from S3, so that a
    /// restart while S3 is unreachable starts with it. Default: none (and
    /// reflex does not start without S3).
    pub cache: Option<Spanned<String>>,
    /// An SNS topic told about each rejected set read from S3.
    pub rejected_topic_arn: Option<Spanned<String>>,
}

/// `[aws]`: how long AWS calls may take. Each kind of call has a limit per
/// attempt (a timed-out attempt is retried by the SDK's standard retry)
/// and a deadline for the whole operation, retries included.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSpec {
    /// Connecting to an endpoint. Default `"2s"`.
    pub connect_timeout: Option<Spanned<String>>,
    /// Added to `receive.wait` for one `ReceiveMessage` attempt (its
    /// deadline is twice that). Default `"5s"`.
    pub receive_margin: Option<Spanned<String>>,
    /// The first backoff of the SDK's standard retry: a refused connection
    /// or a timed-out attempt is retried after a random pause of up to
    /// this, doubled for each further attempt (at most 20 s). Default
    /// `"200ms"` (the SDK's own default is 1 s).
    pub retry_backoff: Option<Spanned<String>>,
    /// One attempt of a queue call: `ChangeMessageVisibility` (the
    /// heartbeat), `DeleteMessage`, the dead-letter `SendMessage`,
    /// `GetQueueAttributes`. Default `"2s"`.
    pub queue_attempt_timeout: Option<Spanned<String>>,
    /// A whole queue call; shorter than `receive.visibility_timeout` less
    /// `receive.heartbeat`. Default `"6s"`.
    pub queue_timeout: Option<Spanned<String>>,
    /// One attempt of a read (the EC2, ELB, CloudWatch and Auto Scaling
    /// describes, and fetching an SNS signing certificate). Default `"3s"`.
    pub read_attempt_timeout: Option<Spanned<String>>,
    /// A whole read. Default `"10s"`.
    pub read_timeout: Option<Spanned<String>>,
    /// A read, a signing certificate fetch or a queue call (heartbeat,
    /// delete, release) that has not answered after this gets a second,
    /// identical request beside it; the first answer is used. At most one
    /// per call, within the call's deadline. Shorter than
    /// `read_attempt_timeout` and `queue_attempt_timeout`, or `"off"`.
    /// Default `"1s"`.
    pub hedge_after: Option<Spanned<String>>,
    /// One attempt of a write (terminate, stop, reboot, deregister,
    /// publish, put metric data). Default `"5s"`.
    pub write_attempt_timeout: Option<Spanned<String>>,
    /// A whole write. Default `"15s"`.
    pub write_timeout: Option<Spanned<String>>,
}

/// `[trust]`: the unsigned formats accepted while `trusted_topic_arns` is
/// set. SNS signatures are always verified.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSpec {
    /// Accept raw CloudWatch alarms (SNS raw message delivery), which carry
    /// no signature. Default false.
    #[serde(default)]
    pub accept_raw: bool,
    /// Accept EventBridge alarm events, which carry no signature; needs
    /// `trusted_accounts`. Default false.
    pub accept_eventbridge: Option<Spanned<bool>>,
    /// Accounts an accepted unsigned alarm may come from (12 digits each).
    #[serde(default)]
    pub trusted_accounts: Vec<Spanned<String>>,
}

/// `[metrics]`: the HTTP listener and the CloudWatch summary.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// Address for `/metrics`, `/healthz` and `/readyz`, or `"off"`.
    /// Default `"127.0.0.1:9464"`.
    pub listen: Option<Spanned<String>>,
    /// How often the heartbeat and counts are put to CloudWatch (namespace
    /// `reflex`). Default `"60s"`.
    pub cloudwatch_interval: Option<Spanned<String>>,
}

/// `[audit]`: the audit trail, one JSON line per action and per message
/// decision (read it back with `reflex audit`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// `"stdout"` (logs go to stderr), `"file"` (append to `path`), or
    /// `"off"`. Default `"stdout"`.
    pub sink: Option<Spanned<String>>,
    /// The file for `sink = "file"`; its directory must exist.
    pub path: Option<Spanned<PathBuf>>,
}

/// `[receive]`: how messages are taken from the queue.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveSpec {
    /// Parallel long-polling loops. Default 1.
    pub pollers: Option<Spanned<i64>>,
    /// Most messages being worked on at once. Default 10.
    pub max_in_flight: Option<Spanned<i64>>,
    /// Long-poll wait, at most 20s. Default `"20s"`.
    pub wait: Option<Spanned<String>>,
    /// Visibility timeout requested on receive. Default `"60s"`.
    pub visibility_timeout: Option<Spanned<String>>,
    /// How often a message being worked on has its visibility extended.
    /// Default: a third of the visibility timeout.
    pub heartbeat: Option<Spanned<String>>,
}

/// `[retry]`: backoff for transient failures, by receive count.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// First backoff. Default `"10s"`.
    pub base: Option<Spanned<String>>,
    /// Longest backoff. Default `"15m"`.
    pub max: Option<Spanned<String>>,
}

/// `[limits]`: caps across all rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalLimitsSpec {
    /// Instances changed (terminated, stopped, rebooted, deregistered) across
    /// all rules. Default `"20/hour"`.
    pub instance_changes: Option<Spanned<String>>,
    /// How long a processed alarm transition is remembered, so a redelivery
    /// does not act twice. Default `"6h"`.
    pub dedup_window: Option<Spanned<String>>,
    /// At most this many remediation attempts on one target (a load
    /// balancer, a target group, an instance) within the period, across
    /// all rules, e.g. `"3/24h"`. Once spent, reflex does not act on that
    /// target and escalates. Default: none.
    pub remediation_budget: Option<Spanned<String>>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    /// `[rules]` (or `rules_dir`, or the flags).
    pub rules: RulesSource,
    /// `trusted_topic_arns` and `[trust]`.
    pub trust: TrustPolicy,
    pub dry_run: bool,
    pub max_event_age: Duration,
    pub shutdown_grace: Duration,
    pub pollers: NonZeroU32,
    pub max_in_flight: NonZeroU32,
    pub wait: Duration,
    pub visibility_timeout: Duration,
    pub heartbeat: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub instance_changes: Rate,
    pub dedup_window: Duration,
    pub remediation_budget: Option<Rate>,
    pub audit: AuditTarget,
    /// `None`: no HTTP listener.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub cloudwatch_interval: Duration,
    /// `[state]`: where claims, cooldowns, rates and target leases live.
    pub state: crate::state::config::StateConfig,
    /// `[aws]`: per-call timeouts.
    pub aws_timeouts: AwsTimeouts,
}

/// `[audit]` in `reflex.toml`: where the trail goes. Plain data: the daemon
/// opens the sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AuditTarget {
    Off,
    #[default]
    Stdout,
    File(PathBuf),
}

impl AuditTarget {
    /// For logs: `off`, `stdout`, or the file's path.
    pub fn describe(&self) -> String {
        match self {
            AuditTarget::Off => "off".to_string(),
            AuditTarget::Stdout => "stdout".to_string(),
            AuditTarget::File(p) => p.display().to_string(),
        }
    }
}

/// Values that override the file (flags, environment).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    /// `--rules` / `REFLEX_RULES_DIR` or `--rules-source` /
    /// `REFLEX_RULES_SOURCE`: a path or an `s3://` URL.
    pub rules: Option<String>,
    /// `--rules-cache` / `REFLEX_RULES_CACHE`: overrides `[rules] cache`.
    pub rules_cache: Option<PathBuf>,
    /// `--rules-rejected-topic-arn` / `REFLEX_RULES_REJECTED_TOPIC_ARN`.
    pub rules_rejected_topic_arn: Option<String>,
    pub trusted_topic_arns: Vec<String>,
    pub dry_run: bool,
    pub metrics_listen: Option<String>,
    /// `REFLEX_VISIBILITY_TIMEOUT` / `--visibility-timeout`, a duration such
    /// as `"150s"`: overrides `receive.visibility_timeout`.
    pub visibility_timeout: Option<String>,
    /// `REFLEX_HEARTBEAT` / `--heartbeat`: overrides `receive.heartbeat`.
    pub heartbeat: Option<String>,
    /// `REFLEX_SHUTDOWN_GRACE` / `--shutdown-grace`: overrides `shutdown_grace`.
    pub shutdown_grace: Option<String>,
    /// `REFLEX_STATE_*`.
    pub state: crate::state::config::StateOverrides,
}

/// A duration from the environment or a flag, named by both in errors.
fn override_duration(
    value: &Option<String>,
    variable: &str,
    flag: &str,
    file: &SourceFile,
    errors: &mut Vec<SourceError>,
) -> Option<Duration> {
    let value = value.as_ref()?;
    match parse_duration(value) {
        Ok(d) => Some(d),
        Err(e) => {
            // Reported once here; the file's value stands in so that no
            // second error follows from this one.
            errors.push(file.error(None, format!("{variable} (or {flag}): {e}")));
            None
        }
    }
}

impl Config {
    /// Reads and checks a config file (if given), then applies overrides.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, Vec<SourceError>> {
        let (spec, file) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    vec![SourceError {
                        file: p.to_path_buf(),
                        line: 1,
                        column: 1,
                        message: format!("cannot read config: {e}"),
                    }]
                })?;
                let file = SourceFile::new(p, text);
                (parse_toml::<ConfigSpec>(&file).map_err(|e| vec![e])?, file)
            }
            None => (
                ConfigSpec::default(),
                SourceFile::new(Path::new("<flags>"), String::new()),
            ),
        };
        Config::from_spec(spec, &file, overrides)
    }

    /// Checks a parsed config, collecting every problem.
    pub fn from_spec(
        spec: ConfigSpec,
        file: &SourceFile,
        o: Overrides,
    ) -> Result<Config, Vec<SourceError>> {
        let mut errors = Vec::new();
        // The environment (and flags) win over the file; a bad value is an
        // error naming the variable, never a silent fallback.
        let visibility_override = override_duration(
            &o.visibility_timeout,
            "REFLEX_VISIBILITY_TIMEOUT",
            "--visibility-timeout",
            file,
            &mut errors,
        );
        let heartbeat_override = override_duration(
            &o.heartbeat,
            "REFLEX_HEARTBEAT",
            "--heartbeat",
            file,
            &mut errors,
        );
        let grace_override = override_duration(
            &o.shutdown_grace,
            "REFLEX_SHUTDOWN_GRACE",
            "--shutdown-grace",
            file,
            &mut errors,
        );
        let mut duration = |v: &Option<Spanned<String>>, default: Duration| -> Duration {
            match v {
                Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|e| {
                    errors.push(file.error(Some(v.span()), e));
                    Duration::ZERO
                }),
                None => default,
            }
        };
        let max_event_age = duration(&spec.max_event_age, defaults::MAX_EVENT_AGE);
        let shutdown_grace = match grace_override {
            Some(d) => d,
            None => duration(&spec.shutdown_grace, DEFAULT_SHUTDOWN_GRACE),
        };
        let wait = duration(&spec.receive.wait, defaults::WAIT);
        let visibility_timeout = match visibility_override {
            Some(d) => d,
            None => duration(
                &spec.receive.visibility_timeout,
                defaults::VISIBILITY_TIMEOUT,
            ),
        };
        // Unset, the heartbeat follows the visibility timeout actually set
        // (the environment's, if given).
        let heartbeat = match heartbeat_override {
            Some(d) => d,
            None => duration(&spec.receive.heartbeat, visibility_timeout / 3),
        };
        let aws = &spec.aws;
        let aws_defaults = AwsTimeouts::default();
        let queue = CallLimits::new(
            duration(&aws.queue_attempt_timeout, aws_defaults.queue.attempt),
            duration(&aws.queue_timeout, aws_defaults.queue.operation),
        );
        let read = CallLimits::new(
            duration(&aws.read_attempt_timeout, aws_defaults.read.attempt),
            duration(&aws.read_timeout, aws_defaults.read.operation),
        );
        let aws_timeouts = AwsTimeouts {
            connect: duration(&aws.connect_timeout, aws_defaults.connect),
            receive_margin: duration(&aws.receive_margin, aws_defaults.receive_margin),
            retry_backoff: duration(&aws.retry_backoff, aws_defaults.retry_backoff),
            // Unset, the hedge waits 1 s, or half the shorter attempt
            // timeout when the attempts are shorter than 2 s.
            hedge_after: match &aws.hedge_after {
                Some(v) if v.get_ref() == "off" => None,
                Some(_) => Some(duration(&aws.hedge_after, Duration::ZERO)),
                None => Some(
                    aws_timeouts_defaults::HEDGE_AFTER.min(read.attempt.min(queue.attempt) / 2),
                ),
            },
            queue,
            read,
            write: CallLimits::new(
                duration(&aws.write_attempt_timeout, aws_defaults.write.attempt),
                duration(&aws.write_timeout, aws_defaults.write.operation),
            ),
        };
        let retry_base = duration(&spec.retry.base, defaults::RETRY_BASE);
        let retry_max = duration(&spec.retry.max, defaults::RETRY_MAX);
        let dedup_window = duration(&spec.limits.dedup_window, DEFAULT_DEDUP_WINDOW);
        let cloudwatch_interval = duration(
            &spec.metrics.cloudwatch_interval,
            DEFAULT_CLOUDWATCH_INTERVAL,
        );
        let mut count =
            |v: &Option<Spanned<i64>>, default: u32, max: i64, what: &str| -> NonZeroU32 {
                let n = v.as_ref().map_or(i64::from(default), |v| *v.get_ref());
                match u32::try_from(n)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .filter(|_| n <= max)
                {
                    Some(n) => n,
                    None => {
                        let span = v.as_ref().map(Spanned::span);
                        errors.push(file.error(
                            span,
                            format!("`{what}` must be between 1 and {max}, not {n}"),
                        ));
                        NonZeroU32::MIN
                    }
                }
            };
        let pollers = count(
            &spec.receive.pollers,
            defaults::POLLERS,
            64,
            "receive.pollers",
        );
        let max_in_flight = count(
            &spec.receive.max_in_flight,
            defaults::MAX_IN_FLIGHT,
            1000,
            "receive.max_in_flight",
        );
        let instance_changes = match &spec.limits.instance_changes {
            Some(r) => Rate::parse(r.get_ref()).unwrap_or_else(|e| {
                errors.push(file.error(Some(r.span()), e));
                Rate::parse("1/hour").unwrap_or(Rate {
                    count: NonZeroU32::MIN,
                    per: Duration::from_secs(3600),
                })
            }),
            None => defaults::INSTANCE_CHANGES,
        };
        let remediation_budget = spec.limits.remediation_budget.as_ref().and_then(|r| {
            Rate::parse(r.get_ref())
                .map_err(|e| errors.push(file.error(Some(r.span()), e)))
                .ok()
        });
        let bad = |errors: &mut Vec<SourceError>, v: &Option<Spanned<String>>, msg: &str| {
            errors.push(file.error(v.as_ref().map(Spanned::span), msg.to_string()));
        };
        if wait > Duration::from_secs(20) {
            bad(
                &mut errors,
                &spec.receive.wait,
                "`receive.wait` is at most 20s (the SQS long-poll limit)",
            );
        }
        // A value from the environment is named as such; the file's span
        // would point at a line that is not in force.
        let (visibility_span, visibility_name) = match visibility_override {
            Some(_) => (&None, "REFLEX_VISIBILITY_TIMEOUT"),
            None => (
                &spec.receive.visibility_timeout,
                "`receive.visibility_timeout`",
            ),
        };
        let (heartbeat_span, heartbeat_name) = match heartbeat_override {
            Some(_) => (&None, "REFLEX_HEARTBEAT"),
            None => (&spec.receive.heartbeat, "`receive.heartbeat`"),
        };
        if visibility_timeout < Duration::from_secs(1)
            || visibility_timeout > Duration::from_secs(43_200)
        {
            bad(
                &mut errors,
                visibility_span,
                &format!("{visibility_name} must be between 1s and 12h"),
            );
        }
        if heartbeat.is_zero() || heartbeat >= visibility_timeout {
            bad(
                &mut errors,
                heartbeat_span,
                &format!(
                    "{heartbeat_name} must be shorter than the visibility timeout, and not zero"
                ),
            );
        }
        if retry_base.is_zero() || retry_max < retry_base {
            bad(
                &mut errors,
                &spec.retry.max,
                "`retry.base` must be more than zero and `retry.max` at least `retry.base`",
            );
        }
        check_aws_timeouts(
            &aws_timeouts,
            aws,
            visibility_timeout,
            heartbeat,
            file,
            &mut errors,
        );
        let audit = audit_target(&spec.audit, file, &mut errors);
        if cloudwatch_interval < Duration::from_secs(1) {
            bad(
                &mut errors,
                &spec.metrics.cloudwatch_interval,
                "`metrics.cloudwatch_interval` must be at least 1s",
            );
        }
        let listen = match (&o.metrics_listen, &spec.metrics.listen) {
            (Some(flag), _) => Some((flag.as_str(), None)),
            (None, Some(l)) => Some((l.get_ref().as_str(), Some(l.span()))),
            (None, None) => None,
        };
        let metrics_listen = match listen {
            Some(("off", _)) => None,
            Some((addr, span)) => match addr.parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    errors.push(file.error(span, format!("`metrics.listen` {addr:?} is not an address like \"127.0.0.1:9464\" or \"off\"")));
                    None
                }
            },
            None => Some(DEFAULT_METRICS_LISTEN),
        };
        let queue_url = o.queue_url.or(spec.queue_url);
        let dead_letter_queue_url = o.dead_letter_queue_url.or(spec.dead_letter_queue_url);
        if queue_url.is_none() {
            errors.push(file.error(
                None,
                "no queue URL: set `queue_url`, --queue-url or REFLEX_QUEUE_URL",
            ));
        }
        if dead_letter_queue_url.is_none() {
            errors.push(file.error(None, "no dead-letter queue URL: set `dead_letter_queue_url`, --dlq-url or REFLEX_DLQ_URL"));
        }
        let state = spec.state.check(file, &o.state, &mut errors);
        let rules = rules_source(
            &spec.rules,
            spec.rules_dir.as_deref(),
            o.rules.as_deref(),
            o.rules_cache.as_deref(),
            o.rules_rejected_topic_arn.as_deref(),
            file,
            &mut errors,
        );
        let mut trusted = spec.trusted_topic_arns;
        trusted.extend(o.trusted_topic_arns);
        let trust = trust_policy(trusted, &spec.trust, file, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config {
            queue_url: queue_url.unwrap_or_default(),
            dead_letter_queue_url: dead_letter_queue_url.unwrap_or_default(),
            rules,
            trust,
            dry_run: o.dry_run || spec.dry_run,
            max_event_age,
            shutdown_grace,
            pollers,
            max_in_flight,
            wait,
            visibility_timeout,
            heartbeat,
            retry_base,
            retry_max,
            instance_changes,
            dedup_window,
            remediation_budget,
            audit,
            metrics_listen,
            cloudwatch_interval,
            state,
            aws_timeouts,
        })
    }
}

/// `[rules]`, `rules_dir` and the flags: where the rules come from. The
/// flag wins over the file; the keys that only an `s3://` source uses are
/// refused for a local one, so that a typo cannot look like a setting.
fn rules_source(
    spec: &RulesSpec,
    rules_dir: Option<&Path>,
    flag: Option<&str>,
    cache_flag: Option<&Path>,
    topic_flag: Option<&str>,
    file: &SourceFile,
    errors: &mut Vec<SourceError>,
) -> RulesSource {
    let fallback = RulesSource::Local(PathBuf::from("rules"));
    if let (Some(source), Some(_)) = (&spec.source, rules_dir) {
        errors.push(file.error(
            Some(source.span()),
            "set `[rules] source` or `rules_dir`, not both",
        ));
    }
    let parsed = match (flag, &spec.source, rules_dir) {
        (Some(text), _, _) => RulesSource::parse(text).map_err(|e| {
            file.error(
                None,
                format!("--rules / REFLEX_RULES_DIR / REFLEX_RULES_SOURCE: {e}"),
            )
        }),
        (None, Some(source), _) => {
            RulesSource::parse(source.get_ref()).map_err(|e| file.error(Some(source.span()), e))
        }
        (None, None, Some(dir)) => Ok(RulesSource::Local(dir.to_path_buf())),
        (None, None, None) => Ok(fallback.clone()),
    };
    let mut source = match parsed {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            return fallback;
        }
    };
    let cache = cache_flag.map(|p| (p.to_path_buf(), None)).or_else(|| {
        spec.cache
            .as_ref()
            .map(|c| (PathBuf::from(c.get_ref()), Some(c.span())))
    });
    match &mut source {
        RulesSource::S3(s3) => {
            if let Some(interval) = &spec.poll_interval {
                match parse_duration(interval.get_ref()) {
                    Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(3600) => {
                        s3.poll_interval = d;
                    }
                    Ok(_) => errors.push(file.error(
                        Some(interval.span()),
                        "`rules.poll_interval` must be between 1s and 1h",
                    )),
                    Err(e) => errors.push(file.error(Some(interval.span()), e)),
                }
            }
            s3.cache = cache.map(|(path, _)| path);
            let topic = topic_flag.map(|t| (t.to_string(), None)).or_else(|| {
                spec.rejected_topic_arn
                    .as_ref()
                    .map(|t| (t.get_ref().clone(), Some(t.span())))
            });
            if let Some((topic, span)) = topic {
                if topic.starts_with("arn:") {
                    s3.rejected_topic_arn = Some(topic);
                } else {
                    errors.push(file.error(
                        span,
                        format!("`rules.rejected_topic_arn` (or REFLEX_RULES_REJECTED_TOPIC_ARN) must be an SNS topic ARN (arn:...), not {topic:?}"),
                    ));
                }
            }
        }
        RulesSource::Local(_) => {
            let only_s3 = [
                (
                    "rules.poll_interval",
                    spec.poll_interval.as_ref().map(Spanned::span),
                ),
                (
                    "rules.cache",
                    cache.as_ref().map(|(_, span)| span.clone().unwrap_or(0..0)),
                ),
                (
                    "rules.rejected_topic_arn",
                    spec.rejected_topic_arn.as_ref().map(Spanned::span),
                ),
            ];
            for (key, span) in only_s3 {
                if let Some(span) = span {
                    errors.push(file.error(
                        Some(span),
                        format!("`{key}` applies only to an s3:// rules source (a local directory is watched)"),
                    ));
                }
            }
        }
    }
    source
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Self {
        Settings {
            trust: c.trust.clone(),
            dry_run: c.dry_run,
            max_event_age: c.max_event_age,
            pollers: c.pollers.get(),
            max_in_flight: c.max_in_flight.get(),
            wait: c.wait,
            visibility_timeout: c.visibility_timeout,
            heartbeat: c.heartbeat,
            backoff: Backoff {
                base: c.retry_base,
                max: c.retry_max,
            },
            instance_changes: c.instance_changes,
            dedup_window: c.dedup_window,
            remediation_budget: c.remediation_budget,
            lease: c.state.lease,
            queue_timeout: c.aws_timeouts.queue.operation,
            settle_after: c.aws_timeouts.hedge_after,
        }
    }
}

/// Checks `[aws]`: every limit more than zero, an attempt no longer than
/// its operation, and a queue call (the heartbeat) short enough to be
/// retried before the visibility runs out.
fn check_aws_timeouts(
    t: &AwsTimeouts,
    spec: &AwsSpec,
    visibility_timeout: Duration,
    heartbeat: Duration,
    file: &SourceFile,
    errors: &mut Vec<SourceError>,
) {
    let span = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
    for (value, spanned, name) in [
        (t.connect, &spec.connect_timeout, "connect_timeout"),
        (t.receive_margin, &spec.receive_margin, "receive_margin"),
        (t.retry_backoff, &spec.retry_backoff, "retry_backoff"),
        (
            t.queue.attempt,
            &spec.queue_attempt_timeout,
            "queue_attempt_timeout",
        ),
        (
            t.read.attempt,
            &spec.read_attempt_timeout,
            "read_attempt_timeout",
        ),
        (
            t.write.attempt,
            &spec.write_attempt_timeout,
            "write_attempt_timeout",
        ),
    ] {
        if value.is_zero() {
            errors.push(file.error(
                span(spanned),
                format!("`aws.{name}` must be more than zero"),
            ));
        }
    }
    for (limits, spanned, name) in [
        (t.queue, &spec.queue_timeout, "queue"),
        (t.read, &spec.read_timeout, "read"),
        (t.write, &spec.write_timeout, "write"),
    ] {
        if limits.operation < limits.attempt {
            errors.push(file.error(
                span(spanned),
                format!("`aws.{name}_timeout` must be at least `aws.{name}_attempt_timeout`"),
            ));
        }
    }
    if let Some(after) = t.hedge_after {
        if after.is_zero() || after >= t.read.attempt.min(t.queue.attempt) {
            errors.push(file.error(
                span(&spec.hedge_after),
                format!(
                    "`aws.hedge_after` must be more than zero and shorter than `aws.read_attempt_timeout` ({}) and `aws.queue_attempt_timeout` ({}), or \"off\"",
                    humantime::format_duration(t.read.attempt),
                    humantime::format_duration(t.queue.attempt)
                ),
            ));
        }
    }
    if t.retry_backoff > Duration::from_secs(20) {
        errors.push(file.error(
            span(&spec.retry_backoff),
            "`aws.retry_backoff` must be at most 20s (the SDK's longest backoff)".to_string(),
        ));
    }
    // A heartbeat sent `heartbeat` after the last one has until the last
    // extension runs out to get through, retries included.
    let room = visibility_timeout.saturating_sub(heartbeat);
    if t.queue.operation >= room {
        errors.push(file.error(
            span(&spec.queue_timeout),
            format!(
                "`aws.queue_timeout` ({}) must be shorter than the visibility timeout less the heartbeat interval ({}), so a stalled heartbeat is retried before the visibility runs out",
                humantime::format_duration(t.queue.operation),
                humantime::format_duration(room)
            ),
        ));
    }
}

/// Checks `[trust]`: accounts of 12 digits, and EventBridge accepted only
/// from named accounts.
fn trust_policy(
    trusted_topic_arns: Vec<String>,
    spec: &TrustSpec,
    file: &SourceFile,
    errors: &mut Vec<SourceError>,
) -> TrustPolicy {
    for account in &spec.trusted_accounts {
        let a = account.get_ref();
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(file.error(
                Some(account.span()),
                format!("`trust.trusted_accounts`: {a:?} is not a 12-digit AWS account id"),
            ));
        }
    }
    let accept_eventbridge = spec
        .accept_eventbridge
        .as_ref()
        .is_some_and(|b| *b.get_ref());
    if accept_eventbridge && spec.trusted_accounts.is_empty() {
        errors.push(file.error(
            spec.accept_eventbridge.as_ref().map(Spanned::span),
            "`trust.accept_eventbridge = true` needs `trust.trusted_accounts`: EventBridge events carry no signature, so only alarms of named accounts are accepted",
        ));
    }
    TrustPolicy {
        trusted_topic_arns,
        accept_raw: spec.accept_raw,
        accept_eventbridge,
        trusted_accounts: spec
            .trusted_accounts
            .iter()
            .map(|a| a.get_ref().clone())
            .collect(),
    }
}

/// Checks `[audit]`: a known sink, and a path exactly when it is a file.
fn audit_target(spec: &AuditSpec, file: &SourceFile, errors: &mut Vec<SourceError>) -> AuditTarget {
    let sink = spec
        .sink
        .as_ref()
        .map_or("stdout", |s| s.get_ref().as_str());
    let sink_span = spec.sink.as_ref().map(Spanned::span);
    match (sink, &spec.path) {
        ("stdout", None) => AuditTarget::Stdout,
        ("off", None) => AuditTarget::Off,
        ("file", Some(path)) => AuditTarget::File(path.get_ref().clone()),
        ("file", None) => {
            errors.push(file.error(sink_span, "`audit.sink = \"file\"` needs `audit.path`"));
            AuditTarget::Off
        }
        ("stdout" | "off", Some(path)) => {
            errors.push(file.error(
                Some(path.span()),
                format!("`audit.path` is only used with `sink = \"file\"`, not {sink:?}"),
            ));
            AuditTarget::Off
        }
        (other, _) => {
            errors.push(file.error(
                sink_span,
                format!("unknown `audit.sink` {other:?}; expected \"stdout\", \"file\" or \"off\""),
            ));
            AuditTarget::Off
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Vec<String>> {
        let file = SourceFile::new(Path::new("reflex.toml"), text.to_string());
        let spec: ConfigSpec = parse_toml(&file).map_err(|e| vec![e.to_string()])?;
        Config::from_spec(spec, &file, Overrides::default())
            .map_err(|es| es.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults() {
        let c = load("queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n").expect("loads");
        assert_eq!(c.visibility_timeout, Duration::from_secs(60));
        assert_eq!(c.heartbeat, Duration::from_secs(20));
        assert_eq!(c.instance_changes.to_string(), "20/hour");
        assert_eq!(c.pollers.get(), 1);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_located() {
        let e = load("queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n[receive]\npolers = 2\n")
            .unwrap_err();
        assert!(
            e[0].starts_with("reflex.toml:4:1: unknown field `polers`"),
            "{e:?}"
        );
        let e = load("queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n[receive]\nwait = \"1 fortnight\"\nmax_in_flight = 0\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|e| e.starts_with("reflex.toml:4:8:")), "{e:?}");
        assert!(
            e.iter().any(|e| e.starts_with("reflex.toml:5:17:")),
            "{e:?}"
        );
    }

    #[test]
    fn audit_sink_defaults_to_stdout_and_is_checked() {
        let base = "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n";
        assert_eq!(load(base).expect("loads").audit, AuditTarget::Stdout);
        let c = load(&format!(
            "{base}[audit]\nsink = \"file\"\npath = \"/var/log/reflex/audit.jsonl\"\n"
        ))
        .expect("loads");
        assert_eq!(
            c.audit,
            AuditTarget::File(PathBuf::from("/var/log/reflex/audit.jsonl"))
        );
        let off = load(&format!("{base}[audit]\nsink = \"off\"\n")).expect("loads");
        assert_eq!(off.audit, AuditTarget::Off);
        let e = load(&format!("{base}[audit]\nsink = \"syslog\"\n")).unwrap_err();
        assert!(
            e[0].starts_with("reflex.toml:4:8: unknown `audit.sink` \"syslog\""),
            "{e:?}"
        );
        let e = load(&format!("{base}[audit]\nsink = \"file\"\n")).unwrap_err();
        assert!(e[0].starts_with("reflex.toml:4:8:"), "{e:?}");
        let e = load(&format!("{base}[audit]\npath = \"a.jsonl\"\n")).unwrap_err();
        assert!(e[0].starts_with("reflex.toml:4:8: `audit.path`"), "{e:?}");
    }

    fn load_with(text: &str, o: Overrides) -> Result<Config, Vec<String>> {
        let file = SourceFile::new(Path::new("reflex.toml"), text.to_string());
        let spec: ConfigSpec = parse_toml(&file).map_err(|e| vec![e.to_string()])?;
        Config::from_spec(spec, &file, o).map_err(|es| es.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn timing_from_the_environment_wins_over_the_file() {
        let text = "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\nshutdown_grace = \"10s\"\n[receive]\nvisibility_timeout = \"30s\"\n";
        let c = load_with(
            text,
            Overrides {
                visibility_timeout: Some("150s".into()),
                shutdown_grace: Some("65s".into()),
                ..Overrides::default()
            },
        )
        .expect("loads");
        assert_eq!(c.visibility_timeout, Duration::from_secs(150));
        assert_eq!(
            c.heartbeat,
            Duration::from_secs(50),
            "a third of the timeout in force"
        );
        assert_eq!(c.shutdown_grace, Duration::from_secs(65));
        let c = load_with(
            text,
            Overrides {
                heartbeat: Some("10s".into()),
                ..Overrides::default()
            },
        )
        .expect("loads");
        assert_eq!(c.visibility_timeout, Duration::from_secs(30));
        assert_eq!(c.heartbeat, Duration::from_secs(10));
    }

    #[test]
    fn bad_timing_in_the_environment_names_the_variable() {
        let base = "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n";
        let e = load_with(
            base,
            Overrides {
                visibility_timeout: Some("150".into()),
                heartbeat: Some("soon".into()),
                shutdown_grace: Some("1 fortnight".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        for name in [
            "REFLEX_VISIBILITY_TIMEOUT",
            "REFLEX_HEARTBEAT",
            "REFLEX_SHUTDOWN_GRACE",
        ] {
            assert!(
                e.iter().any(|e| e.contains(name)),
                "no error names {name}: {e:?}"
            );
        }
        let e = load_with(
            base,
            Overrides {
                visibility_timeout: Some("60s".into()),
                heartbeat: Some("60s".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert!(
            e.iter().any(|e| e.contains("REFLEX_HEARTBEAT must be shorter than the visibility timeout")),
            "{e:?}"
        );
        let e = load_with(
            base,
            Overrides {
                visibility_timeout: Some("13h".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert!(
            e.iter()
                .any(|e| e.contains("REFLEX_VISIBILITY_TIMEOUT must be between 1s and 12h")),
            "{e:?}"
        );
    }

    /// The worker's built-in defaults are what an empty `reflex.toml` gives.
    #[test]
    fn an_empty_config_gives_the_worker_defaults() {
        let c = load("queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n").expect("loads");
        assert_eq!(Settings::from(&c), Settings::default());
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.dedup_window, Duration::from_secs(6 * 3600));
        assert_eq!(c.cloudwatch_interval, Duration::from_secs(60));
        assert_eq!(c.max_event_age, Duration::from_secs(15 * 60));
        assert_eq!(
            c.metrics_listen,
            Some("127.0.0.1:9464".parse().expect("address"))
        );
    }

    #[test]
    fn trust_is_checked_and_located() {
        let base = "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\ntrusted_topic_arns = [\"arn:aws:sns:us-east-1:123456789012:a\"]\n";
        let c = load(&format!(
            "{base}[trust]\naccept_raw = true\naccept_eventbridge = true\ntrusted_accounts = [\"123456789012\"]\n"
        ))
        .expect("loads");
        assert!(c.trust.accept_raw && c.trust.accept_eventbridge);
        assert_eq!(c.trust.trusted_accounts, ["123456789012"]);
        assert_eq!(c.trust.warnings().len(), 2, "{:?}", c.trust.warnings());
        let e = load(&format!("{base}[trust]\naccept_eventbridge = true\n")).unwrap_err();
        assert!(
            e.iter()
                .any(|e| e.starts_with("reflex.toml:5:")
                    && e.contains("needs `trust.trusted_accounts`")),
            "{e:?}"
        );
        let e = load(&format!("{base}[trust]\ntrusted_accounts = [\"12345\"]\n")).unwrap_err();
        assert!(e.iter().any(|e| e.contains("not a 12-digit")), "{e:?}");
        let e = load(&format!("{base}[trust]\naccept_everything = true\n")).unwrap_err();
        assert!(e.iter().any(|e| e.contains("accept_everything")), "{e:?}");
        let open = load("queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n").expect("loads");
        assert!(open.trust.warnings()[0].contains("trusts whatever reaches the queue"));
    }

    #[test]
    fn aws_timeouts_default_and_are_checked() {
        let base = "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n";
        let c = load(base).expect("loads");
        assert_eq!(c.aws_timeouts, AwsTimeouts::default());
        let c = load(&format!(
            "{base}[aws]\nconnect_timeout = \"1s\"\nreceive_margin = \"3s\"\nqueue_attempt_timeout = \"1s\"\nqueue_timeout = \"4s\"\nread_attempt_timeout = \"2s\"\nread_timeout = \"7s\"\nwrite_attempt_timeout = \"4s\"\nwrite_timeout = \"20s\"\n"
        ))
        .expect("loads");
        let t = c.aws_timeouts;
        assert_eq!(t.connect, Duration::from_secs(1));
        assert_eq!(t.receive_margin, Duration::from_secs(3));
        assert_eq!(
            t.queue,
            CallLimits::new(Duration::from_secs(1), Duration::from_secs(4))
        );
        assert_eq!(
            t.read,
            CallLimits::new(Duration::from_secs(2), Duration::from_secs(7))
        );
        assert_eq!(
            t.write,
            CallLimits::new(Duration::from_secs(4), Duration::from_secs(20))
        );
        let e = load(&format!("{base}[aws]\nread_timeout = \"1s\"\n")).unwrap_err();
        assert!(
            e.iter().any(|e| e.starts_with("reflex.toml:4:16:")
                && e.contains("`aws.read_timeout` must be at least `aws.read_attempt_timeout`")),
            "{e:?}"
        );
        let e = load(&format!("{base}[aws]\nqueue_timeout = \"40s\"\n")).unwrap_err();
        assert!(
            e.iter().any(|e| e.contains("`aws.queue_timeout` (40s) must be shorter than the visibility timeout less the heartbeat interval (40s)")),
            "{e:?}"
        );
        let e = load(&format!("{base}[aws]\nwrite_attempt_timeout = \"0s\"\n")).unwrap_err();
        assert!(
            e.iter()
                .any(|e| e.contains("`aws.write_attempt_timeout` must be more than zero")),
            "{e:?}"
        );
        let e = load(&format!("{base}[aws]\nretries = 5\n")).unwrap_err();
        assert!(e[0].contains("unknown field `retries`"), "{e:?}");
    }

    #[test]
    fn hedges_are_on_by_default_and_can_be_turned_off() {
        use crate::aws::timeouts::CallKind;
        let base = "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n[aws]\n";
        let read = |c: &Config| c.aws_timeouts.limits(CallKind::Read, Duration::ZERO);
        let c = load(base).expect("loads");
        assert_eq!(read(&c).hedge_after, Some(Duration::from_secs(1)));
        // Unset, it stays under attempts shorter than the defaults.
        let c = load(&format!("{base}queue_attempt_timeout = \"1s\"\n")).expect("loads");
        assert_eq!(read(&c).hedge_after, Some(Duration::from_millis(500)));
        let c = load(&format!("{base}hedge_after = \"250ms\"\n")).expect("loads");
        assert_eq!(read(&c).hedge_after, Some(Duration::from_millis(250)));
        let c = load(&format!("{base}hedge_after = \"off\"\n")).expect("loads");
        assert_eq!(read(&c).hedge_after, None);
        for bad in ["\"3s\"", "\"0s\"", "\"never\""] {
            let e = load(&format!("{base}hedge_after = {bad}\n")).unwrap_err();
            assert!(
                e.iter().any(|e| e.starts_with("reflex.toml:4:15:")),
                "{bad}: {e:?}"
            );
        }
        let e = load(&format!("{base}hedge_after = \"3s\"\n")).unwrap_err();
        assert!(
            e.iter().any(|e| e.contains("`aws.hedge_after` must be more than zero and shorter than `aws.read_attempt_timeout` (3s) and `aws.queue_attempt_timeout` (2s), or \"off\"")),
            "{e:?}"
        );
    }

    #[test]
    fn queue_urls_are_required() {
        let e = load("").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn a_bad_remediation_budget_is_located() {
        let base = "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n";
        let c = load(base).expect("loads");
        assert_eq!(c.remediation_budget, None, "no budget by default");
        let errors = load(&format!(
            "{base}[limits]\nremediation_budget = \"three a day\"\n"
        ))
        .expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("reflex.toml:4:") && e.contains("invalid rate")),
            "{errors:?}"
        );
    }

    #[test]
    fn the_rules_source_is_a_directory_or_an_s3_prefix_and_checked() {
        let base = "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n";
        let local = |c: &Config| match &c.rules {
            RulesSource::Local(p) => p.display().to_string(),
            RulesSource::S3(s3) => panic!("not local: {s3:?}"),
        };
        assert_eq!(local(&load(base).expect("loads")), "rules");
        assert_eq!(
            local(&load(&format!("rules_dir = \"r\"\n{base}")).expect("loads")),
            "r"
        );
        let c = load(&format!(
            "{base}[rules]\nsource = \"s3://bkt/reflex/rules\"\npoll_interval = \"5s\"\ncache = \"/var/lib/reflex/c.json\"\nrejected_topic_arn = \"arn:aws:sns:eu-west-1:1:oncall\"\n"
        ))
        .expect("loads");
        let RulesSource::S3(s3) = &c.rules else {
            panic!("not s3: {:?}", c.rules)
        };
        assert_eq!(s3.url(), "s3://bkt/reflex/rules/");
        assert_eq!(s3.poll_interval, Duration::from_secs(5));
        assert_eq!(
            s3.cache.as_deref(),
            Some(Path::new("/var/lib/reflex/c.json"))
        );
        assert_eq!(
            s3.rejected_topic_arn.as_deref(),
            Some("arn:aws:sns:eu-west-1:1:oncall")
        );

        // Located errors: a bad URL, an interval out of range, both spellings,
        // and S3-only keys on a local source.
        let e = load(&format!("{base}[rules]\nsource = \"s3://B/x\"\n")).unwrap_err();
        assert!(
            e[0].starts_with("reflex.toml:4:10:") && e[0].contains("bucket"),
            "{e:?}"
        );
        let e = load(&format!(
            "{base}[rules]\nsource = \"s3://bkt/x/\"\npoll_interval = \"0s\"\n"
        ))
        .unwrap_err();
        assert!(e[0].starts_with("reflex.toml:5:17:"), "{e:?}");
        let e = load(&format!(
            "rules_dir = \"r\"\n{base}[rules]\nsource = \"s\"\n"
        ))
        .unwrap_err();
        assert!(
            e[0].starts_with("reflex.toml:5:10:") && e[0].contains("not both"),
            "{e:?}"
        );
        let e = load(&format!(
            "{base}[rules]\nsource = \"rules\"\ncache = \"c.json\"\n"
        ))
        .unwrap_err();
        assert!(
            e[0].starts_with("reflex.toml:5:9:") && e[0].contains("only to an s3://"),
            "{e:?}"
        );

        // The flag (REFLEX_RULES_SOURCE) wins over the file.
        let file = SourceFile::new(Path::new("reflex.toml"), base.to_string());
        let spec: ConfigSpec = parse_toml(&file).expect("parses");
        let o = Overrides {
            rules: Some("s3://bkt/p/".into()),
            rules_cache: Some(PathBuf::from("/tmp/c.json")),
            ..Overrides::default()
        };
        let c = Config::from_spec(spec, &file, o).expect("loads");
        assert!(matches!(&c.rules, RulesSource::S3(s3) if s3.cache.is_some()));
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The shipped example documents every key; it must stay loadable.
    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("reflex.example.toml");
        let c = Config::load(Some(&path), Overrides::default()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.trust.trusted_topic_arns.len(), 1);
        assert_eq!(c.dedup_window, Duration::from_secs(6 * 3600));
        assert_eq!(c.retry_max, Duration::from_secs(900));
        assert_eq!(c.remediation_budget, Rate::parse("3/24h").ok());
    }
}
