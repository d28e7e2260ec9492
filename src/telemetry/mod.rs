//! Metrics: what reflex counts, in one registry served in Prometheus text
//! format ([`http`]) and partly published to CloudWatch ([`cloudwatch`]).
//! Code outside telemetry records what happened through the event types
//! of [`events`], which log and count together.
//!
//! Labels are low-cardinality on purpose: reason codes, rule names, action
//! kinds, outcomes, guards, AWS operations — never message or instance ids.

pub mod cloudwatch;
pub mod events;
pub mod http;
pub mod store;

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: String,
    pub outcome: String,
    /// The guard that suppressed the action; empty otherwise.
    pub guard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub service: String,
    pub operation: String,
    /// `ok`, `transient_error` or `permanent_error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// The store operation: `claim`, `heartbeat`, `complete`, `release`,
    /// `cooldown`, `start_cooldown`, `forget_cooldown`, `take`,
    /// `lease_target`, `snapshot`, `ping`.
    pub operation: String,
    /// Conflicts: `busy`, `done`, `taken_over`, `held`, `lost`. Errors:
    /// `unavailable`, `locked`, `permanent`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

/// One AWS operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsOperationLabels {
    pub service: String,
    pub operation: String,
}

/// One hedged AWS read, by whose answer was used.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsHedgeLabels {
    pub service: String,
    pub operation: String,
    /// `hedge` (the second request answered first) or `first`.
    pub answer: &'static str,
}

/// 5 ms to ~82 s: a call on a healthy network takes milliseconds, a long
/// poll up to its wait, a stalled one its deadline.
fn aws_call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// A histogram per label set, all with the same buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 50 µs to ~1.6 s: a local commit is sub-millisecond, a DynamoDB call a
/// few milliseconds, a timeout seconds.
fn store_call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

/// Every metric reflex keeps, registered in one Prometheus registry.
pub struct MetricRegistry {
    pub registry: Registry,
    pub messages_received: Counter,
    pub messages_deleted: Counter,
    pub messages_retried: Counter,
    pub messages_released: Counter,
    pub messages_dead_lettered: Family<CodeLabel, Counter>,
    pub decode_failures: Family<CodeLabel, Counter>,
    pub rule_matches: Family<RuleLabel, Counter>,
    pub actions: Family<ActionLabels, Counter>,
    pub aws_calls: Family<AwsCallLabels, Counter>,
    pub state_errors: Family<StoreLabels, Counter>,
    pub state_conflicts: Family<StoreLabels, Counter>,
    pub state_call_seconds: HistogramFamily<OperationLabel>,
    pub aws_call_seconds: HistogramFamily<AwsOperationLabels>,
    pub aws_timeouts: Family<AwsOperationLabels, Counter>,
    pub aws_hedges: Family<AwsHedgeLabels, Counter>,
    pub in_flight: Gauge,
    /// The age of the oldest message being worked on, set from
    /// [`MetricRegistry::in_flight_since`] on each scrape.
    pub oldest_in_flight_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// When each message being worked on started.
    pub in_flight_since: InFlightStarts,
    pub visibility_lost: Counter,
    pub alarm_to_action_seconds: Histogram,
    pub processing_seconds: Histogram,
    pub rules_info: Family<VersionLabel, Gauge>,
    pub rules_loaded_timestamp_seconds: Gauge,
    pub rules_count: Gauge,
    pub rule_reloads: Counter,
    pub rule_reload_failures: Counter,
    /// Polls of an `s3://` rules source that failed (S3 unreachable,
    /// access denied, a read that timed out).
    pub rules_source_poll_failures: Counter,
    /// When a poll of an `s3://` rules source last succeeded (Unix time).
    pub rules_source_last_success_timestamp_seconds: Gauge,
    /// Unlabelled totals for the CloudWatch summary (not exported).
    pub totals: Totals,
}

/// Totals across labels, for the per-minute CloudWatch counts.
#[derive(Default)]
pub struct Totals {
    pub dead_lettered: Counter,
    pub actions_done: Counter,
    pub actions_suppressed: Counter,
    pub actions_failed: Counter,
}

impl MetricRegistry {
    fn new() -> MetricRegistry {
        let mut m = MetricRegistry {
            messages_received: Counter::default(),
            messages_deleted: Counter::default(),
            messages_retried: Counter::default(),
            messages_released: Counter::default(),
            messages_dead_lettered: Family::default(),
            decode_failures: Family::default(),
            rule_matches: Family::default(),
            actions: Family::default(),
            aws_calls: Family::default(),
            state_errors: Family::default(),
            state_conflicts: Family::default(),
            state_call_seconds: Family::new_with_constructor(store_call_histogram),
            aws_call_seconds: Family::new_with_constructor(aws_call_histogram),
            aws_timeouts: Family::default(),
            aws_hedges: Family::default(),
            in_flight: Gauge::default(),
            oldest_in_flight_seconds: Gauge::default(),
            in_flight_since: InFlightStarts::default(),
            visibility_lost: Counter::default(),
            // 1 s to ~9 h: alarms reach reflex after CloudWatch's evaluation
            // periods, so this is seconds to minutes.
            alarm_to_action_seconds: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            // 50 µs to ~1.6 s.
            processing_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            rules_info: Family::default(),
            rules_loaded_timestamp_seconds: Gauge::default(),
            rules_count: Gauge::default(),
            rule_reloads: Counter::default(),
            rule_reload_failures: Counter::default(),
            rules_source_poll_failures: Counter::default(),
            rules_source_last_success_timestamp_seconds: Gauge::default(),
            totals: Totals::default(),
            registry: Registry::with_prefix("reflex"),
        };
        let registry = &mut m.registry;
        registry.register(
            "messages_received",
            "SQS messages received",
            m.messages_received.clone(),
        );
        registry.register(
            "messages_deleted",
            "Messages deleted from the alarm queue after a final outcome",
            m.messages_deleted.clone(),
        );
        registry.register(
            "messages_retried",
            "Messages left on the queue for a retry after a transient failure",
            m.messages_retried.clone(),
        );
        registry.register(
            "messages_released",
            "Messages made visible again at once: at shutdown, or after their visibility was lost with actions not started",
            m.messages_released.clone(),
        );
        registry.register(
            "messages_dead_lettered",
            "Messages sent to the dead-letter queue, by reason code",
            m.messages_dead_lettered.clone(),
        );
        registry.register(
            "decode_failures",
            "Message bodies that did not decode, by poison code",
            m.decode_failures.clone(),
        );
        registry.register(
            "rule_matches",
            "Rule matches that acted (not skipped), by rule",
            m.rule_matches.clone(),
        );
        registry.register(
            "actions",
            "Actions by kind, outcome and suppressing guard",
            m.actions.clone(),
        );
        registry.register(
            "aws_calls",
            "AWS API calls by service, operation and outcome",
            m.aws_calls.clone(),
        );
        registry.register(
            "state_errors",
            "State store calls that failed (the store unreachable, locked, or a permanent error), by operation and kind",
            m.state_errors.clone(),
        );
        registry.register(
            "state_conflicts",
            "State store calls that found another owner (a claim busy, done or taken over, a target lease held, a lease lost), by operation and kind",
            m.state_conflicts.clone(),
        );
        registry.register(
            "aws_call_seconds",
            "Time of each AWS call, retries included, by service and operation",
            m.aws_call_seconds.clone(),
        );
        registry.register(
            "aws_timeouts",
            "AWS calls that got no reply within their deadline, by service and operation",
            m.aws_timeouts.clone(),
        );
        registry.register(
            "aws_hedges",
            "AWS reads and queue calls that got a second request because the first had not answered in time ([aws] hedge_after), by service, operation and whose answer was used",
            m.aws_hedges.clone(),
        );
        registry.register(
            "state_call_seconds",
            "Time of each state store call, by operation",
            m.state_call_seconds.clone(),
        );
        registry.register(
            "messages_in_flight",
            "Messages being worked on",
            m.in_flight.clone(),
        );
        registry.register(
            "oldest_in_flight_seconds",
            "Age of the oldest message being worked on (0 when none is)",
            m.oldest_in_flight_seconds.clone(),
        );
        registry.register(
            "visibility_lost",
            "Messages whose visibility ran out before a heartbeat could extend it (their remaining actions are not started)",
            m.visibility_lost.clone(),
        );
        registry.register(
            "alarm_to_action_seconds",
            "Alarm state change to action done",
            m.alarm_to_action_seconds.clone(),
        );
        registry.register(
            "processing_seconds",
            "reflex's own processing per message, AWS calls and waits excluded",
            m.processing_seconds.clone(),
        );
        registry.register(
            "rules_info",
            "The loaded rule set's version (content hash)",
            m.rules_info.clone(),
        );
        registry.register(
            "rules_loaded_timestamp_seconds",
            "When the rule set was loaded (Unix time)",
            m.rules_loaded_timestamp_seconds.clone(),
        );
        registry.register(
            "rules",
            "Rules in the loaded rule set",
            m.rules_count.clone(),
        );
        registry.register(
            "rule_reloads",
            "Successful rule reloads",
            m.rule_reloads.clone(),
        );
        registry.register(
            "rule_reload_failures",
            "Rule reloads rejected because the new rules are invalid",
            m.rule_reload_failures.clone(),
        );
        registry.register(
            "rules_source_poll_failures",
            "Polls of the s3:// rules source that failed; the loaded rules stay in force",
            m.rules_source_poll_failures.clone(),
        );
        registry.register(
            "rules_source_last_success_timestamp_seconds",
            "When a poll of the s3:// rules source last succeeded (Unix time)",
            m.rules_source_last_success_timestamp_seconds.clone(),
        );
        m
    }

    /// Records a dead-lettered message.
    pub fn dead_lettered(&self, code: &str) {
        self.messages_dead_lettered
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
        self.totals.dead_lettered.inc();
    }

    /// Records an action's outcome.
    pub fn action(&self, report: &crate::outcome::ActionReport) {
        use crate::outcome::Outcome;
        let guard = match &report.outcome {
            Outcome::Suppressed { guard, .. } => guard.as_str(),
            _ => "",
        };
        let labels = ActionLabels {
            kind: report.kind.as_str().to_string(),
            outcome: report.outcome.label().to_string(),
            guard: guard.to_string(),
        };
        self.actions.get_or_create(&labels).inc();
        match report.outcome {
            Outcome::Done => self.totals.actions_done.inc(),
            Outcome::Suppressed { .. } => self.totals.actions_suppressed.inc(),
            Outcome::Failed { .. } => self.totals.actions_failed.inc(),
            _ => 0,
        };
    }

    /// Records an AWS call's outcome: `ok`, `transient_error`, `permanent_error`.
    pub fn aws_call_outcome(&self, service: &str, operation: &str, outcome: &str) {
        self.aws_calls
            .get_or_create(&AwsCallLabels {
                service: service.into(),
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Records that a rule set became the live one.
    pub fn rules_loaded(&self, version: &str, rules: usize) {
        self.rules_info.clear();
        self.rules_info
            .get_or_create(&VersionLabel {
                version: version.to_string(),
            })
            .set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        self.rules_loaded_timestamp_seconds
            .set(now.as_secs() as i64);
        self.rules_count.set(rules as i64);
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        // Computed here, on scrape, not on the message path.
        self.oldest_in_flight_seconds.set(
            self.in_flight_since
                .oldest_age(std::time::Instant::now())
                .as_secs_f64(),
        );
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// When each message being worked on started, for the age of the oldest
/// (`reflex_oldest_in_flight_seconds`). Starting one is a map insert;
/// the age is computed only when asked.
#[derive(Debug, Default)]
pub struct InFlightStarts {
    started: std::sync::Mutex<std::collections::BTreeMap<u64, std::time::Instant>>,
    next: std::sync::atomic::AtomicU64,
}

impl InFlightStarts {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, std::time::Instant>> {
        self.started.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a message started at `at`; it counts until the guard drops.
    pub fn start(&self, at: std::time::Instant) -> InFlightGuard<'_> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(id, at);
        InFlightGuard { starts: self, id }
    }

    /// How long the oldest message being worked on has been, at `now`
    /// (zero when none is).
    pub fn oldest_age(&self, now: std::time::Instant) -> Duration {
        self.lock()
            .values()
            .min()
            .map_or(Duration::ZERO, |&t| now.saturating_duration_since(t))
    }
}

/// A message being worked on; dropping it ends it.
#[derive(Debug)]
pub struct InFlightGuard<'a> {
    starts: &'a InFlightStarts,
    id: u64,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.starts.lock().remove(&self.id);
    }
}

static METRICS: OnceLock<MetricRegistry> = OnceLock::new();

/// The process's metrics.
pub fn metrics() -> &'static MetricRegistry {
    METRICS.get_or_init(MetricRegistry::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_in_flight_age_follows_the_messages_being_worked_on() {
        let starts = InFlightStarts::default();
        let t0 = std::time::Instant::now();
        let s = Duration::from_secs;
        assert_eq!(starts.oldest_age(t0 + s(9)), Duration::ZERO, "none yet");
        let first = starts.start(t0);
        let second = starts.start(t0 + s(3));
        assert_eq!(starts.oldest_age(t0 + s(10)), s(10));
        drop(first);
        assert_eq!(starts.oldest_age(t0 + s(10)), s(7), "the next oldest");
        drop(second);
        assert_eq!(starts.oldest_age(t0 + s(10)), Duration::ZERO);
        // The gauge is set on scrape.
        let text = metrics().encode();
        assert!(text.contains("reflex_oldest_in_flight_seconds "), "{text}");
    }

    #[test]
    fn encodes_prometheus_text_with_labels() {
        let m = metrics();
        m.messages_received.inc();
        m.messages_dead_lettered
            .get_or_create(&CodeLabel {
                code: "not_json".into(),
            })
            .inc();
        m.rules_loaded("abc123", 3);
        let text = m.encode();
        assert!(text.contains("reflex_messages_received_total"), "{text}");
        assert!(
            text.contains("reflex_messages_dead_lettered_total{code=\"not_json\"}"),
            "{text}"
        );
        assert!(
            text.contains("reflex_rules_info{version=\"abc123\"} 1"),
            "{text}"
        );
        assert!(text.contains("reflex_processing_seconds_bucket"), "{text}");
        assert!(
            text.trim_end().ends_with("# EOF"),
            "OpenMetrics text ends with # EOF"
        );
    }
}
