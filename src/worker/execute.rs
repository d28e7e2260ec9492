//! Running one planned action: dedup claim, cooldown, rates, the reads that
//! find targets, the blast-radius guards, and finally the change — in that
//! order, so a guard always sees the numbers before anything is touched.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Effects, Worker};
use crate::aws::{AwsError, Datum, InstanceOp};
use crate::event::{format_millis, AlarmEvent, AlarmState};
use crate::outcome::{ActionReport, Outcome};
use crate::plan::RuleMatch;
use crate::rules::action::{OnInstance, OutOfService};
use crate::rules::limits::format_duration;
use crate::rules::{Action, PlannedAction};
use crate::safety::blast_radius::{self, check_instance, Excluded, Selection};
use crate::safety::state::{Claim, RateLimited};
use crate::safety::{Guard, GuardTrip};

/// What an action found out before its outcome was known.
#[derive(Default)]
struct Progress {
    targets: Vec<String>,
    capped: Vec<GuardTrip>,
    excluded: Vec<Excluded>,
    request_ids: Vec<String>,
    /// Time spent waiting for AWS, and in `confirm_after` waits: what is
    /// not reflex's own processing.
    aws: Duration,
    waited: Duration,
}

impl Progress {
    fn request(&mut self, id: Option<String>) {
        self.request_ids.extend(id);
    }

    /// Awaits an AWS call, adding its time to `aws`.
    async fn aws<T>(&mut self, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.aws += started.elapsed();
        out
    }
}

fn failed(e: &AwsError) -> Outcome {
    Outcome::Failed {
        transient: e.transient,
        error: e.to_string(),
    }
}

fn rate_trip(guard: Guard, bucket: &str, limited: &RateLimited) -> GuardTrip {
    let detail = match limited.retry_after {
        Some(after) => format!(
            "{bucket} allows {}; next allowed in {}",
            limited.rate,
            format_duration(Duration::from_secs(after.as_secs().max(1)))
        ),
        None => format!(
            "{bucket} allows {}, and {} were asked for at once",
            limited.rate, limited.requested
        ),
    };
    GuardTrip::new(guard, detail)
        .with("requested", limited.requested)
        .with("rate_count", limited.rate.count.get())
        .with("rate_period_s", limited.rate.per.as_secs())
}

impl Worker {
    /// Runs one action and reports what happened. Never panics, never
    /// returns early without a report.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn execute(
        &self,
        event: &AlarmEvent,
        m: &RuleMatch,
        index: usize,
        action: &PlannedAction,
        rule_rate: &mut Option<Option<GuardTrip>>,
        earlier: &[ActionReport],
        shutdown: &CancellationToken,
    ) -> ActionReport {
        let started = Instant::now();
        let rule = &m.rule.name;
        let target = action.target();
        let claim_key = format!("{}#{rule}#{index}", event.transition_key());
        let mut progress = Progress::default();
        // A rule's actions run in order. When another delivery of this
        // transition holds an earlier one (Busy), this one must not run
        // ahead of it: it waits for the retry, unclaimed.
        let earlier_busy = earlier
            .iter()
            .any(|r| r.rule == *rule && r.outcome == Outcome::Busy);
        let claim = if earlier_busy {
            Claim::InProgress
        } else {
            self.state.claim(&claim_key)
        };
        let outcome = match claim {
            Claim::Done => Outcome::Duplicate,
            Claim::InProgress => Outcome::Busy,
            Claim::New => {
                // Actions on one target run one at a time.
                let _guard = self.locks.lock(&target).await;
                let outcome = if shutdown.is_cancelled() {
                    Outcome::Aborted
                } else {
                    self.guarded(
                        event,
                        m,
                        action,
                        &target,
                        rule_rate,
                        earlier,
                        shutdown,
                        &mut progress,
                    )
                    .await
                };
                self.state.finish(&claim_key, outcome.is_final());
                outcome
            }
        };
        let mut report = ActionReport {
            rule: rule.clone(),
            action_index: index,
            kind: action.kind(),
            target,
            targets: progress.targets,
            outcome,
            capped: progress.capped,
            excluded: progress.excluded,
            request_ids: progress.request_ids,
            duration_ms: started.elapsed().as_millis() as u64,
            aws_us: progress.aws.as_micros() as u64,
            waited_us: progress.waited.as_micros() as u64,
            escalation_message_id: None,
        };
        if let (Outcome::Suppressed { .. }, Some(topic)) =
            (&report.outcome, escalation_topic(action))
        {
            report.escalation_message_id = self.escalate(event, m, &report, topic).await;
        }
        match &report.outcome {
            Outcome::Failed { transient, error } => warn!(
                rule = %report.rule, kind = %report.kind, target = %report.target, targets = ?report.targets,
                outcome = report.outcome.label(), transient, error = %error, request_ids = ?report.request_ids,
                "Action failed."
            ),
            Outcome::Suppressed {
                guard,
                detail,
                numbers,
            } => info!(
                rule = %report.rule, kind = %report.kind, target = %report.target, targets = ?report.targets,
                outcome = report.outcome.label(), guard = guard.as_str(), detail = %detail, numbers = ?numbers,
                "Action suppressed by a guard."
            ),
            other => info!(
                rule = %report.rule, kind = %report.kind, target = %report.target, targets = ?report.targets,
                outcome = other.label(), dry_run = m.dry_run, capped = ?report.capped.iter().map(|c| c.guard.as_str()).collect::<Vec<_>>(),
                excluded = report.excluded.len(), request_ids = ?report.request_ids,
                "Action finished."
            ),
        }
        report
    }

    #[allow(clippy::too_many_arguments)]
    async fn guarded(
        &self,
        event: &AlarmEvent,
        m: &RuleMatch,
        action: &PlannedAction,
        target: &str,
        rule_rate: &mut Option<Option<GuardTrip>>,
        earlier: &[ActionReport],
        shutdown: &CancellationToken,
        progress: &mut Progress,
    ) -> Outcome {
        let rule = &m.rule;
        if let Some(left) = self.state.cooldown_remaining(&rule.name, target) {
            return Outcome::suppressed(
                GuardTrip::new(
                    Guard::Cooldown,
                    format!(
                        "{} acted on {target} recently; cooldown ends in {}",
                        rule.name,
                        format_duration(Duration::from_secs(left.as_secs().max(1)))
                    ),
                )
                .with("remaining_s", left.as_secs()),
            );
        }
        // The rule's rate counts executions of the rule, once per message.
        if !m.dry_run {
            let trip = rule_rate.get_or_insert_with(|| {
                let rate = rule.limits.rate?;
                let bucket = format!("rule {}", rule.name);
                self.state
                    .take(&bucket, rate, 1)
                    .err()
                    .map(|l| rate_trip(Guard::RuleRate, &bucket, &l))
            });
            if let Some(trip) = trip {
                return Outcome::suppressed(trip.clone());
            }
        }
        let effects = if m.dry_run { &self.dry } else { &self.live };
        let outcome = match action {
            Action::TerminateOutOfService(o) => {
                self.out_of_service(event, m, o, false, effects, shutdown, progress)
                    .await
            }
            Action::DeregisterOutOfService(o) => {
                self.out_of_service(event, m, o, true, effects, shutdown, progress)
                    .await
            }
            Action::RebootInstance(o) => {
                self.on_instance(m, o, InstanceOp::Reboot, effects, progress)
                    .await
            }
            Action::StopInstance(o) => {
                self.on_instance(m, o, InstanceOp::Stop, effects, progress)
                    .await
            }
            Action::TerminateInstance(o) => {
                self.on_instance(m, o, InstanceOp::Terminate, effects, progress)
                    .await
            }
            Action::Notify(n) => {
                let message = format!(
                    "{}\n\n{}",
                    n.message,
                    footer(event, m, earlier, self.rules_version())
                );
                match progress
                    .aws(effects.sns.publish(&n.topic_arn, &n.subject, &message))
                    .await
                {
                    Ok(id) => {
                        progress.request(id);
                        done(m)
                    }
                    Err(e) => failed(&e),
                }
            }
            Action::PutMetric(p) => {
                let datum = Datum {
                    metric_name: p.metric_name.clone(),
                    value: p.value,
                    unit: p.unit.clone(),
                    dimensions: p.dimensions.clone(),
                };
                match progress
                    .aws(effects.metrics.put(&p.namespace, &[datum]))
                    .await
                {
                    Ok(id) => {
                        progress.request(id);
                        done(m)
                    }
                    Err(e) => failed(&e),
                }
            }
        };
        if outcome == Outcome::Done {
            if let Some(cooldown) = rule.limits.cooldown {
                self.state.start_cooldown(&rule.name, target, cooldown);
            }
        }
        outcome
    }

    fn rules_version(&self) -> String {
        self.rules.borrow().version().to_string()
    }

    /// Takes `n` instance changes from the global budget (not in dry runs).
    fn take_global(&self, m: &RuleMatch, n: usize) -> Result<(), GuardTrip> {
        if m.dry_run {
            return Ok(());
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.state
            .take("global instance changes", self.settings.instance_changes, n)
            .map_err(|l| rate_trip(Guard::GlobalRate, "the global instance-change limit", &l))
    }

    #[allow(clippy::too_many_arguments)]
    async fn out_of_service(
        &self,
        event: &AlarmEvent,
        m: &RuleMatch,
        o: &OutOfService<String>,
        deregister: bool,
        effects: &Effects,
        shutdown: &CancellationToken,
        progress: &mut Progress,
    ) -> Outcome {
        let lb = &o.load_balancer;
        let health = match progress.aws(effects.elb.instance_health(lb)).await {
            Ok(h) => h,
            Err(e) => return failed(&e),
        };
        let mut oos: Vec<String> = health
            .iter()
            .filter(|h| h.out_of_service())
            .map(|h| h.instance_id.clone())
            .collect();
        if oos.is_empty() {
            return Outcome::NothingToDo {
                reason: format!(
                    "no instance of {lb} is OutOfService ({} registered)",
                    health.len()
                ),
            };
        }
        let infos = match progress.aws(effects.ec2.describe(&oos)).await {
            Ok(i) => i,
            Err(e) => return failed(&e),
        };
        match progress
            .aws(effects.alarms.alarm_state(&event.alarm_name))
            .await
        {
            Ok(Some(AlarmState::Alarm)) => {}
            Ok(Some(state)) => {
                return Outcome::suppressed(GuardTrip::new(
                    Guard::AlarmRecovered,
                    format!(
                        "alarm {} is {state} now, no longer ALARM; acting on nothing",
                        event.alarm_name
                    ),
                ))
            }
            Ok(None) => {
                return Outcome::suppressed(GuardTrip::new(
                    Guard::AlarmNotFound,
                    format!(
                        "DescribeAlarms does not know alarm {}; acting on nothing",
                        event.alarm_name
                    ),
                ))
            }
            Err(e) => return failed(&e),
        }
        let mut health = health;
        if let Some(wait) = o.confirm_after {
            info!(load_balancer = %lb, wait_s = wait.as_secs(), out_of_service = ?oos, "Waiting to confirm instances are still OutOfService.");
            let started = Instant::now();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Nothing has been changed yet, so stopping here is whole.
                () = shutdown.cancelled() => return Outcome::Aborted,
            }
            progress.waited += started.elapsed();
            health = match progress.aws(effects.elb.instance_health(lb)).await {
                Ok(h) => h,
                Err(e) => return failed(&e),
            };
            let before = oos.len();
            oos.retain(|id| {
                health
                    .iter()
                    .any(|h| &h.instance_id == id && h.out_of_service())
            });
            if oos.is_empty() {
                return Outcome::suppressed(
                    GuardTrip::new(
                        Guard::NotConfirmed,
                        format!(
                            "no instance was still OutOfService after {}",
                            format_duration(wait)
                        ),
                    )
                    .with("first_check", before)
                    .with("second_check", 0),
                );
            }
        }
        let limits = blast_radius::Limits {
            max_instances: o.max_instances,
            max_percent: o.max_percent,
            min_in_service: o.min_in_service,
            min_instance_age: o.min_instance_age,
            require_tag: o.require_tag.clone(),
        };
        let now = (self.clock)();
        // Eligibility follows TerminateInstances' rules (running or stopped)
        // for deregistering too: neither acts on pending or dying instances.
        let targets = match blast_radius::select(
            &health,
            &oos,
            &infos,
            InstanceOp::Terminate,
            &limits,
            now,
        ) {
            Selection::Suppressed { trip, excluded } => {
                progress.excluded = excluded;
                return Outcome::suppressed(trip);
            }
            Selection::Act {
                targets,
                excluded,
                capped,
            } => {
                progress.excluded = excluded;
                progress.capped = capped;
                targets
            }
        };
        progress.targets = targets.clone();
        if let Err(trip) = self.take_global(m, targets.len()) {
            return Outcome::suppressed(trip);
        }
        let result = if deregister {
            progress.aws(effects.elb.deregister(lb, &targets)).await
        } else {
            progress
                .aws(
                    effects
                        .ec2
                        .change(InstanceOp::Terminate, &targets, m.dry_run),
                )
                .await
        };
        match result {
            Ok(id) => {
                progress.request(id);
                done(m)
            }
            Err(e) => failed(&e),
        }
    }

    async fn on_instance(
        &self,
        m: &RuleMatch,
        o: &OnInstance<String>,
        op: InstanceOp,
        effects: &Effects,
        progress: &mut Progress,
    ) -> Outcome {
        let id = o.instance_id.clone();
        let infos = match progress
            .aws(effects.ec2.describe(std::slice::from_ref(&id)))
            .await
        {
            Ok(i) => i,
            Err(e) => return failed(&e),
        };
        let Some(info) = infos.iter().find(|i| i.instance_id == id) else {
            return Outcome::suppressed(GuardTrip::new(
                Guard::InstanceState,
                format!("EC2 does not know instance {id}"),
            ));
        };
        let limits = blast_radius::Limits {
            max_instances: 1,
            max_percent: 100,
            min_in_service: 0,
            min_instance_age: o.min_instance_age,
            require_tag: o.require_tag.clone(),
        };
        if let Err(excluded) = check_instance(info, op, &limits, (self.clock)()) {
            let trip = GuardTrip::new(excluded.guard, excluded.reason.clone());
            progress.excluded.push(excluded);
            return Outcome::suppressed(trip);
        }
        progress.targets = vec![id.clone()];
        if let Err(trip) = self.take_global(m, 1) {
            return Outcome::suppressed(trip);
        }
        match progress.aws(effects.ec2.change(op, &[id], m.dry_run)).await {
            Ok(req) => {
                progress.request(req);
                done(m)
            }
            Err(e) => failed(&e),
        }
    }

    /// Tells the escalation topic that a guard stopped an action.
    async fn escalate(
        &self,
        event: &AlarmEvent,
        m: &RuleMatch,
        report: &ActionReport,
        topic: &str,
    ) -> Option<String> {
        let effects = if m.dry_run { &self.dry } else { &self.live };
        let subject = format!("reflex held back: {} on {}", report.kind, report.target);
        let message = format!(
            "reflex did NOT act.\n\n{}\n\n{}",
            report.summary(),
            footer(event, m, std::slice::from_ref(report), self.rules_version())
        );
        match effects.sns.publish(topic, &subject, &message).await {
            Ok(id) => id,
            Err(error) => {
                warn!(%error, topic, "Escalation could not be published.");
                None
            }
        }
    }
}

fn done(m: &RuleMatch) -> Outcome {
    if m.dry_run {
        Outcome::DryRun
    } else {
        Outcome::Done
    }
}

fn escalation_topic(action: &PlannedAction) -> Option<&str> {
    match action {
        Action::TerminateOutOfService(o) | Action::DeregisterOutOfService(o) => {
            o.escalate_topic_arn.as_deref()
        }
        Action::RebootInstance(o) | Action::StopInstance(o) | Action::TerminateInstance(o) => {
            o.escalate_topic_arn.as_deref()
        }
        Action::Notify(_) | Action::PutMetric(_) => None,
    }
}

/// What a notification says about the alarm, what reflex did, and the ids
/// that tie it to logs and audit records.
fn footer(
    event: &AlarmEvent,
    m: &RuleMatch,
    reports: &[ActionReport],
    rules_version: String,
) -> String {
    let mut s = String::from("--\n");
    for r in reports {
        s.push_str(&r.summary());
        s.push('\n');
    }
    s.push_str(&format!(
        "rule: {}{}\nalarm: {} ({} -> {} at {})\nsns message id: {}\nrules version: {rules_version}\n",
        m.rule.name,
        if m.dry_run { " (dry run)" } else { "" },
        event.alarm_name,
        event.old_state.map_or("-".to_string(), |s| s.to_string()),
        event.new_state,
        format_millis(&event.state_change_time),
        event.sns_message_id.as_deref().unwrap_or("-"),
    ));
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    use crate::aws::fake::FakeAws;
    use crate::aws::QueueMessage;
    use crate::disposition::Disposition;
    use crate::event::decode_str;
    use crate::outcome::Outcome;
    use crate::safety::state::{Claim, MemoryStore, StateStore};
    use crate::worker::{Effects, Settings, Worker};

    const RULE: &str = r#"
[[rule]]
name = "act-then-tell"
[rule.match]
alarm_name = "web-unhealthy"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:first"
subject = "first"
message = "first"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:then"
subject = "then"
message = "then"
"#;

    const BODY: &str = r#"{"AlarmName":"web-unhealthy","AlarmArn":"arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-unhealthy","AWSAccountId":"123456789012","NewStateValue":"ALARM","OldStateValue":"OK","NewStateReason":"r","StateChangeTime":"2026-01-12T16:30:42.236+0000","Region":"US East (N. Virginia)","Trigger":{"MetricName":"UnHealthyHostCount","Namespace":"AWS/ELB","Dimensions":[{"name":"LoadBalancerName","value":"web"}],"Threshold":1.0}}"#;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-12T16:31:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn message(id: &str) -> QueueMessage {
        QueueMessage {
            message_id: id.to_string(),
            receipt_handle: format!("rh-{id}"),
            body: BODY.to_string(),
            receive_count: 1,
            sent_at: None,
            first_received_at: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Another delivery of the same transition holds the rule's first
    /// action: the later action must not run ahead of it.
    #[tokio::test]
    async fn later_actions_wait_while_an_earlier_one_is_busy_elsewhere() {
        let aws = FakeAws::new();
        let rules = crate::rules::load_sources(vec![(PathBuf::from("t.toml"), RULE.to_string())])
            .unwrap_or_else(|e| panic!("{e:?}"));
        let (_tx, rx) = watch::channel(Arc::new(rules));
        let a = Arc::new(aws.clone());
        let effects = Effects {
            elb: a.clone(),
            ec2: a.clone(),
            alarms: a.clone(),
            sns: a.clone(),
            metrics: a.clone(),
        };
        let state = Arc::new(MemoryStore::new(Duration::from_secs(3600)));
        let settings = Settings::default();
        let mut worker = Worker::new(a.clone(), a, effects, rx, state.clone(), settings);
        worker.clock = Arc::new(now);

        let first = format!(
            "{}#act-then-tell#0",
            decode_str(BODY).unwrap().transition_key()
        );
        assert_eq!(state.claim(&first), Claim::New, "the other delivery");

        let shutdown = CancellationToken::new();
        let handled = worker.handle(&message("sqs-2"), &shutdown).await;
        let outcomes: Vec<&Outcome> = handled.reports.iter().map(|r| &r.outcome).collect();
        assert_eq!(outcomes, [&Outcome::Busy, &Outcome::Busy]);
        assert!(matches!(handled.disposition, Disposition::Retry { .. }));
        assert!(
            aws.state().published.is_empty(),
            "ran ahead of the first action"
        );

        // The other delivery finishes the first action; the retry does the rest.
        state.finish(&first, true);
        let handled = worker.handle(&message("sqs-2"), &shutdown).await;
        let outcomes: Vec<&Outcome> = handled.reports.iter().map(|r| &r.outcome).collect();
        assert_eq!(outcomes, [&Outcome::Duplicate, &Outcome::Done]);
        assert_eq!(handled.disposition, Disposition::Ack);
        let published: Vec<String> = aws.state().published.iter().map(|p| p.1.clone()).collect();
        assert_eq!(published, ["then"]);
    }
}
