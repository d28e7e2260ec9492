//! Telemetry events as types: one struct per thing that happens, each with
//! an `emit()` that both logs it (a sentence with key/value fields) and
//! counts it, so the log line and the metric cannot drift apart. The model
//! is vector's `src/internal_events/`.
//!
//! Labels stay low-cardinality: reason codes, rule names, action kinds,
//! outcomes, guards, AWS services and operations — never message, instance
//! or request ids (those go in the log line only).
//!
//! The metric names and label values are a public contract (dashboards and
//! alarms read them); `tests/e2e_operate.rs` checks them on `/metrics`.
//!
//! AWS calls are reported by `aws` itself, through the
//! [`CallObserver`] it defines: [`install`] makes [`CountAwsCalls`] that
//! observer, which turns each [`AwsCallFinished`] into a count.

use std::fmt::Display;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::metrics;
use crate::aws::hedge::Hedge;
use crate::aws::observe::{self, AwsCallFinished, CallObserver};
use crate::outcome::{ActionReport, Outcome};

/// Installs the telemetry observers (today: counting AWS calls). Call once
/// at start-up; later calls change nothing.
pub fn install() {
    observe::set_call_observer(&CountAwsCalls);
}

/// Messages came back from one `ReceiveMessage`.
pub struct MessagesReceived {
    pub count: usize,
}

impl MessagesReceived {
    pub fn emit(&self) {
        if self.count > 0 {
            debug!(count = self.count, "Messages received.");
        }
        metrics().messages_received.inc_by(self.count as u64);
    }
}

/// A message body did not decode, or came from an untrusted source: it is
/// poison and goes to the dead-letter queue.
pub struct MessageRejected<'a> {
    /// The poison code (`not_json`, `untrusted_topic`...).
    pub code: &'a str,
    pub reason: &'a str,
}

impl MessageRejected<'_> {
    pub fn emit(&self) {
        warn!(
            code = self.code,
            reason = %self.reason,
            "Poison message; sending it to the dead-letter queue."
        );
        metrics()
            .decode_failures
            .get_or_create(&super::CodeLabel {
                code: self.code.to_string(),
            })
            .inc();
    }
}

/// A rule matched an event and will act (it was not skipped).
pub struct RuleMatched<'a> {
    pub rule: &'a str,
}

impl RuleMatched<'_> {
    pub fn emit(&self) {
        debug!(rule = self.rule, "Rule matched.");
        metrics()
            .rule_matches
            .get_or_create(&super::RuleLabel {
                rule: self.rule.to_string(),
            })
            .inc();
    }
}

/// An action ran to an outcome other than a guard stopping it: done, dry
/// run, nothing to do, duplicate, busy, failed or aborted.
pub struct ActionFinished<'a> {
    pub report: &'a ActionReport,
    pub dry_run: bool,
}

impl ActionFinished<'_> {
    pub fn emit(&self) {
        let r = self.report;
        match &r.outcome {
            Outcome::Failed { transient, error } => warn!(
                rule = %r.rule, kind = %r.kind, target = %r.target, targets = ?r.targets,
                outcome = r.outcome.label(), transient, error = %error, request_ids = ?r.request_ids,
                "Action failed."
            ),
            other => info!(
                rule = %r.rule, kind = %r.kind, target = %r.target, targets = ?r.targets,
                outcome = other.label(), dry_run = self.dry_run,
                capped = ?r.capped.iter().map(|c| c.guard.as_str()).collect::<Vec<_>>(),
                excluded = r.excluded.len(), request_ids = ?r.request_ids,
                "Action finished."
            ),
        }
        metrics().action(r);
    }
}

/// A guard stopped an action.
pub struct ActionSuppressed<'a> {
    pub report: &'a ActionReport,
}

impl ActionSuppressed<'_> {
    pub fn emit(&self) {
        let r = self.report;
        if let Outcome::Suppressed {
            guard,
            detail,
            numbers,
        } = &r.outcome
        {
            info!(
                rule = %r.rule, kind = %r.kind, target = %r.target, targets = ?r.targets,
                outcome = r.outcome.label(), guard = guard.as_str(), detail = %detail, numbers = ?numbers,
                "Action suppressed by a guard."
            );
        }
        metrics().action(r);
    }
}

/// Emits [`ActionSuppressed`] or [`ActionFinished`], as the report says.
pub fn action_reported(report: &ActionReport, dry_run: bool) {
    if matches!(report.outcome, Outcome::Suppressed { .. }) {
        ActionSuppressed { report }.emit();
    } else {
        ActionFinished { report, dry_run }.emit();
    }
}

/// A message was deleted from the alarm queue after a final outcome.
pub struct MessageDeleted;

impl MessageDeleted {
    pub fn emit(&self) {
        debug!("Message deleted.");
        metrics().messages_deleted.inc();
    }
}

/// A message is left on the queue for a retry.
pub struct MessageRetried {
    pub after: Duration,
}

impl MessageRetried {
    pub fn emit(&self) {
        info!(
            retry_in_s = self.after.as_secs(),
            "Leaving the message on the queue for a retry."
        );
        metrics().messages_retried.inc();
    }
}

/// Shutdown released a message untouched.
pub struct MessageReleased;

impl MessageReleased {
    pub fn emit(&self) {
        info!("Releasing the message: it is visible again at once.");
        metrics().messages_released.inc();
    }
}

/// A message's heartbeat could not extend its visibility before it ran
/// out: another consumer may receive it now. Its remaining actions are not
/// started.
pub struct VisibilityLost<'a> {
    /// Heartbeat attempts made since the last one that got through.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: &'a str,
}

impl VisibilityLost<'_> {
    pub fn emit(&self) {
        warn!(
            attempts = self.attempts,
            error = %self.error,
            "The message's visibility ran out before a heartbeat got through; its remaining actions will not be started."
        );
        metrics().visibility_lost.inc();
    }
}

/// A message was sent to the dead-letter queue.
pub struct MessageDeadLettered<'a> {
    /// The dead-letter reason code.
    pub code: &'a str,
    pub dlq_message_id: &'a str,
}

impl MessageDeadLettered<'_> {
    pub fn emit(&self) {
        info!(
            code = %self.code,
            dlq_message_id = %self.dlq_message_id,
            "Message sent to the dead-letter queue."
        );
        metrics().dead_lettered(self.code);
    }
}

/// A new rule set became the live one.
pub struct RulesReloaded<'a> {
    /// The directory, file or `s3://` prefix the rules came from.
    pub source: &'a str,
    pub from_version: &'a str,
    pub rules_version: &'a str,
    pub rules: usize,
}

impl RulesReloaded<'_> {
    pub fn emit(&self) {
        metrics().rule_reloads.inc();
        metrics().rules_loaded(self.rules_version, self.rules);
        info!(
            source = %self.source,
            from_version = %self.from_version,
            rules_version = %self.rules_version,
            rules = self.rules,
            "Rules reloaded."
        );
    }
}

/// A reload found the new rules invalid; the previous rules stay.
pub struct RulesReloadRejected<'a, P: Display> {
    pub problems: &'a [P],
    /// The version still in force.
    pub rules_version: &'a str,
}

impl<P: Display> RulesReloadRejected<'_, P> {
    pub fn emit(&self) {
        metrics().rule_reload_failures.inc();
        for p in self.problems {
            warn!(problem = %p, "Invalid rule.");
        }
        // A warning, not an error: the daemon is fine and keeps acting
        // under the previous rules; the edit needs a human.
        warn!(
            problems = self.problems.len(),
            rules_version = %self.rules_version,
            "Rule reload rejected; the previous rules stay in force."
        );
    }
}

/// A poll of an `s3://` rules source failed; the loaded rules stay.
pub struct RulesPollFailed<'a> {
    pub source: &'a str,
    pub error: &'a dyn Display,
    /// The version still in force.
    pub rules_version: &'a str,
}

impl RulesPollFailed<'_> {
    pub fn emit(&self) {
        metrics().rules_source_poll_failures.inc();
        warn!(
            source = %self.source,
            error = %self.error,
            rules_version = %self.rules_version,
            "Cannot read the rules source; the loaded rules stay in force."
        );
    }
}

/// A poll of an `s3://` rules source got an answer.
pub struct RulesPolled;

impl RulesPolled {
    pub fn emit(&self) {
        metrics()
            .rules_source_last_success_timestamp_seconds
            .set(unix_now_secs());
    }
}

/// reflex started from its cache of the last good rule set, because the
/// source could not give it a valid one.
pub struct RulesStartedFromCache<'a> {
    pub source: &'a str,
    pub cache: &'a std::path::Path,
    pub rules_version: &'a str,
    /// Why the source itself was not used.
    pub reason: &'a str,
}

impl RulesStartedFromCache<'_> {
    pub fn emit(&self) {
        warn!(
            source = %self.source,
            cache = %self.cache.display(),
            rules_version = %self.rules_version,
            reason = %self.reason,
            "Starting from the cached rule set: the rules source gave no valid set."
        );
    }
}

/// The cache of the last good rule set could not be written (the rules
/// are live all the same; a restart while the source is down would not
/// find them).
pub struct RulesCacheNotWritten<'a> {
    pub cache: &'a std::path::Path,
    pub error: &'a dyn Display,
}

impl RulesCacheNotWritten<'_> {
    pub fn emit(&self) {
        warn!(
            cache = %self.cache.display(),
            error = %self.error,
            "Cannot write the rules cache."
        );
    }
}

fn unix_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How one store call ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCallResult {
    Ok,
    /// The store answered, and the answer was "someone else": `busy`,
    /// `done`, `taken_over` (a claim), `held` (a target lease), `lost` (a
    /// lease no longer ours).
    Conflict(&'static str),
    /// The store did not answer usefully: `unavailable`, `locked`,
    /// `permanent`.
    Error(&'static str),
}

/// A state store call finished: timed in `reflex_state_call_seconds`,
/// and counted in `reflex_state_conflicts_total` or
/// `reflex_state_errors_total` when it did not simply succeed. Failures are
/// logged where they are handled (the worker fails closed and says so), so
/// this logs at debug level only.
pub struct StoreCallFinished {
    pub operation: &'static str,
    pub result: StoreCallResult,
    pub elapsed: Duration,
}

impl StoreCallFinished {
    pub fn emit(&self) {
        let m = metrics();
        m.state_call_seconds
            .get_or_create(&super::OperationLabel {
                operation: self.operation.to_string(),
            })
            .observe(self.elapsed.as_secs_f64());
        let (family, kind) = match self.result {
            StoreCallResult::Ok => return,
            StoreCallResult::Conflict(kind) => (&m.state_conflicts, kind),
            StoreCallResult::Error(kind) => (&m.state_errors, kind),
        };
        debug!(
            operation = self.operation,
            kind,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "State store call did not succeed."
        );
        family
            .get_or_create(&super::StoreLabels {
                operation: self.operation.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }
}

/// Counts every finished AWS call in `reflex_aws_calls_total`. Failures
/// are logged where they are handled, so this logs at debug level only.
pub struct CountAwsCalls;

impl CallObserver for CountAwsCalls {
    fn call_finished(&self, call: &AwsCallFinished) {
        debug!(
            service = call.service,
            operation = call.operation,
            outcome = call.outcome.as_str(),
            code = call.code.as_deref().unwrap_or(""),
            elapsed_ms = call.elapsed.as_millis() as u64,
            "AWS call finished."
        );
        let m = metrics();
        m.aws_call_outcome(call.service, call.operation, call.outcome.as_str());
        let labels = super::AwsOperationLabels {
            service: call.service.to_string(),
            operation: call.operation.to_string(),
        };
        m.aws_call_seconds
            .get_or_create(&labels)
            .observe(call.elapsed.as_secs_f64());
        if call.outcome == crate::aws::observe::CallOutcome::Timeout {
            m.aws_timeouts.get_or_create(&labels).inc();
        }
        if let Hedge::Sent { won } = call.hedge {
            m.aws_hedges
                .get_or_create(&super::AwsHedgeLabels {
                    service: labels.service,
                    operation: labels.operation,
                    answer: if won { "hedge" } else { "first" },
                })
                .inc();
        }
    }
}

/// Emits an [`AwsCallFinished`] directly (for callers outside `aws`).
pub fn aws_call_finished(call: &AwsCallFinished) {
    CountAwsCalls.call_finished(call);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::observe::CallOutcome;

    fn count(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn aws_calls_are_counted_with_the_served_labels() {
        let series = "reflex_aws_calls_total{service=\"elasticloadbalancing\",operation=\"DeregisterInstancesFromLoadBalancer\",outcome=\"ok\"}";
        let before = count(&metrics().encode(), series);
        aws_call_finished(&AwsCallFinished {
            service: "elasticloadbalancing",
            operation: "DeregisterInstancesFromLoadBalancer",
            outcome: CallOutcome::Ok,
            code: None,
            elapsed: Duration::from_millis(3),
            hedge: Hedge::NotSent,
        });
        assert_eq!(count(&metrics().encode(), series), before + 1);
    }

    #[test]
    fn aws_calls_are_timed_and_timeouts_counted_per_operation() {
        let timeouts =
            "reflex_aws_timeouts_total{service=\"ec2\",operation=\"TerminateInstances\"}";
        let calls =
            "reflex_aws_call_seconds_count{service=\"ec2\",operation=\"TerminateInstances\"}";
        let text = metrics().encode();
        let (t0, c0) = (count(&text, timeouts), count(&text, calls));
        for outcome in [CallOutcome::Ok, CallOutcome::Timeout] {
            aws_call_finished(&AwsCallFinished {
                service: "ec2",
                operation: "TerminateInstances",
                outcome,
                code: None,
                elapsed: Duration::from_secs(5),
                hedge: Hedge::NotSent,
            });
        }
        let text = metrics().encode();
        assert_eq!(count(&text, timeouts), t0 + 1);
        assert_eq!(count(&text, calls), c0 + 2);
    }

    #[test]
    fn dead_letters_count_by_code_and_in_the_total() {
        let series = "reflex_messages_dead_lettered_total{code=\"events_test_code\"}";
        let before = metrics().totals.dead_lettered.get();
        MessageDeadLettered {
            code: "events_test_code",
            dlq_message_id: "m-1",
        }
        .emit();
        assert_eq!(count(&metrics().encode(), series), 1);
        assert!(metrics().totals.dead_lettered.get() > before);
    }
}
