//! Running one planned action: dedup claim, cooldown, rates, the reads that
//! find targets, the blast-radius guards, and finally the change — in that
//! order, so a guard always sees the numbers before anything is touched.
//!
//! This module runs what every action shares (claim, per-target lock,
//! cooldown, rule rate, escalation, the report); each action family has a
//! module of its own:
//!
//! - [`pool`]: the bad members of a pool — a classic ELB's OutOfService
//!   instances or a target group's unhealthy targets — and the method
//!   applied to them (terminate, deregister).
//! - [`instance`]: one instance named by the event — reboot, stop,
//!   terminate, or a command run on it.
//! - [`command`]: SSM Run Command — which instances SSM manages, sending
//!   `AWS-RunShellScript`, and waiting for the invocations' status (for
//!   `run_command` and the pool method of that name).
//! - [`notify`]: publish to SNS; also the escalation sent when a guard
//!   stops an action, and the footer both carry.
//! - [`metric`]: put one CloudWatch data point.
//! - [`settle`]: a write that failed is an unknown outcome — the target is
//!   re-read, and a change that shows was made (not repeated).
//!
//! # Adding an action kind
//!
//! A new kind touches these places; the tests named fail if one is missed.
//!
//! 1. **Spec**: a variant of [`ActionKind`](crate::rules::ActionKind) in
//!    `src/rules/spec.rs` (with `ALL`, `as_str`, `params`,
//!    `is_destructive`), and of [`Action`] in `src/rules/action.rs`
//!    (`kind`, `map`, `target`...).
//! 2. **Compile**: `src/rules/compile.rs` builds it from the rule file.
//! 3. **Execute**: a family module here (or a new one), dispatched from
//!    `guarded` below; `escalation_topic` if it can be held back.
//! 4. **IAM**: `actions_for` in `src/iam.rs` lists the API calls it makes
//!    (`tests::every_action_kind_has_iam_actions_and_a_schema_branch`).
//! 5. **Terraform**: the daemon role's policy in `infra/terraform/iam.tf`
//!    and its table in `infra/terraform/README.md` (`tests/terraform.rs`
//!    compares them with `iam::all_actions`).
//! 6. **Schema**: `schema/reflex-rules.schema.json`, regenerated with
//!    `reflex schema` (checked by the same test and by
//!    `tests/cli_offline.rs`).
//! 7. **Example rule**: a file in `rules/` (loaded by
//!    `tests/example_rules.rs`), and the README's action table.
//! 8. **Effects**: a new AWS operation goes through `call` in
//!    `src/aws/sdk.rs`, so it is counted (`tests/aws_calls.rs`).

mod command;
mod instance;
mod metric;
mod notify;
mod pool;
mod settle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Effects, Worker};
use crate::aws::AwsError;
use crate::event::AlarmEvent;
use crate::fleet::InstanceOp;
use crate::outcome::{ActionReport, Outcome};
use crate::plan::RuleMatch;
use crate::rules::limits::format_duration;
use crate::rules::{Action, PlannedAction};
use crate::safety::blast_radius::Excluded;
use crate::safety::{Guard, GuardTrip};
use crate::state::{
    ClaimRequest, Claimed, Completion, CooldownStart, Lease, RateLimited, RateTake, StateStore,
    StoreError, TargetLease,
};
use crate::telemetry::events;
use instance::Change;

pub use notify::footer;

/// What one message's actions share: the event, the rule match, what ran
/// before, and the shutdown signal.
pub struct ActionContext<'a> {
    pub event: &'a AlarmEvent,
    pub matched: &'a RuleMatch,
    /// The reports of the actions already run for this message, in order.
    pub earlier: &'a [ActionReport],
    pub shutdown: &'a CancellationToken,
}

/// One action's run: its context, the worker's state and the effects
/// (live or dry-run) it acts through. Handed to each family.
struct Run<'a> {
    worker: &'a Worker,
    ctx: &'a ActionContext<'a>,
    effects: &'a Effects,
    /// The claim this action runs under: rate takes are fenced on it.
    claim: Option<Lease>,
    /// What the action is about (`elb:web`, `instance:i-…`): the key of
    /// the target lease, the cooldown and the remediation budget.
    target: String,
    /// The claim was taken over from a holder that died mid-action:
    /// observable actions re-read their target and do not repeat a change
    /// already made.
    taken_over: bool,
}

impl Run<'_> {
    fn dry_run(&self) -> bool {
        self.ctx.matched.dry_run
    }

    fn rules_version(&self) -> String {
        self.worker.rules.borrow().version().to_string()
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.worker.clock)()
    }

    /// Takes `n` instance changes from the global budget (not in dry
    /// runs), only while the claim is still ours. `Err` is the outcome to
    /// report: suppressed by the limit, or failed (closed) on a store error.
    async fn take_global(&self, n: usize) -> Result<(), Outcome> {
        if self.dry_run() {
            return Ok(());
        }
        let take = RateTake {
            bucket: "global instance changes".to_string(),
            rate: self.worker.settings.instance_changes,
            n: u32::try_from(n).unwrap_or(u32::MAX),
        };
        match self
            .worker
            .state
            .take(std::slice::from_ref(&take), self.claim.as_ref(), self.now())
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(l)) => Err(Outcome::suppressed(rate_trip(
                Guard::GlobalRate,
                "the global instance-change limit",
                &l,
            ))),
            Err(e) => Err(store_failed(&e)),
        }
    }

    /// Spends one attempt of the target's remediation budget
    /// (`[limits] remediation_budget`; not in dry runs). `Err` is the
    /// outcome to report: suppressed when the budget is spent — the
    /// escalation then says a person is needed — or failed (closed) on a
    /// store error.
    async fn spend_budget(&self, findings: &mut Findings) -> Result<(), Outcome> {
        let Some(budget) = self.worker.settings.remediation_budget else {
            return Ok(());
        };
        if self.dry_run() {
            return Ok(());
        }
        match self
            .worker
            .state
            .spend_budget(&self.target, budget, self.now())
            .await
        {
            Ok(Ok(used)) => {
                findings.budget = Some(crate::outcome::BudgetUse {
                    used,
                    limit: budget.count.get(),
                    window_s: budget.per.as_secs(),
                });
                Ok(())
            }
            Ok(Err(spent)) => {
                findings.budget = Some(crate::outcome::BudgetUse {
                    used: spent.used,
                    limit: budget.count.get(),
                    window_s: budget.per.as_secs(),
                });
                Err(Outcome::suppressed(
                    GuardTrip::new(
                        Guard::Budget,
                        format!(
                            "the remediation budget of {} is spent: {} attempts within {} (at most {}); \
                             reflex will not act on it again before {} from now: a person must look at it",
                            self.target,
                            spent.used,
                            format_duration(budget.per),
                            budget.count,
                            format_duration(Duration::from_secs(spent.retry_after.as_secs().max(1)))
                        ),
                    )
                    .with("used", spent.used)
                    .with("budget_count", budget.count.get())
                    .with("budget_window_s", budget.per.as_secs())
                    .with("retry_after_s", spent.retry_after.as_secs().max(1)),
                ))
            }
            Err(e) => Err(store_failed(&e)),
        }
    }

    /// Asks CloudWatch whether the alarm is still in state `want`, so
    /// that a message alone can never move an instance. `Err` is the
    /// outcome to report: suppressed when the alarm has moved on or does
    /// not exist, failed when DescribeAlarms did.
    async fn confirm_alarm(
        &self,
        want: crate::event::AlarmState,
        findings: &mut Findings,
    ) -> Result<(), Outcome> {
        let event = self.ctx.event;
        match findings
            .aws(self.effects.alarms.alarm_state(&event.alarm_name))
            .await
        {
            Ok(Some(state)) if state == want => Ok(()),
            Ok(Some(state)) => Err(Outcome::suppressed(GuardTrip::new(
                Guard::AlarmRecovered,
                format!(
                    "alarm {} is {state} now, no longer {want}; acting on nothing",
                    event.alarm_name
                ),
            ))),
            Ok(None) => Err(Outcome::suppressed(GuardTrip::new(
                Guard::AlarmNotFound,
                format!(
                    "DescribeAlarms does not know alarm {}; acting on nothing",
                    event.alarm_name
                ),
            ))),
            Err(e) => Err(failed(&e)),
        }
    }

    /// The outcome of a change that went through.
    fn done(&self) -> Outcome {
        if self.dry_run() {
            Outcome::DryRun
        } else {
            Outcome::Done
        }
    }
}

/// What an action found out before its outcome was known.
#[derive(Default)]
struct Findings {
    targets: Vec<String>,
    capped: Vec<GuardTrip>,
    excluded: Vec<Excluded>,
    health_reasons: std::collections::BTreeMap<String, String>,
    request_ids: Vec<String>,
    /// Time spent waiting for AWS, and in pauses (`confirm_after`, between
    /// sends of a change, between command polls): what is not reflex's own
    /// processing.
    aws: Duration,
    waited: Duration,
    /// The holder whose claim this run took over after it died.
    taken_over_from: Option<String>,
    /// The target's remediation budget after this run spent an attempt.
    budget: Option<crate::outcome::BudgetUse>,
    /// Each instance's command invocation status (`run_command`).
    command_status: std::collections::BTreeMap<String, String>,
    /// A write failed (its reply lost, say), and re-reading the target
    /// showed the change made: the write's error.
    unknown_outcome: Option<String>,
}

impl Findings {
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

    /// Awaits a pause (`sleep`), adding its time (tokio's clock, as the
    /// pause's own) to `waited`.
    async fn wait<T>(&mut self, pause: impl std::future::Future<Output = T>) -> T {
        let started = tokio::time::Instant::now();
        let out = pause.await;
        self.waited += started.elapsed();
        out
    }

    /// The outcome of a change call: done (its request id kept) or failed.
    fn changed(&mut self, run: &Run<'_>, result: Result<Option<String>, AwsError>) -> Outcome {
        match result {
            Ok(id) => {
                self.request(id);
                run.done()
            }
            Err(e) => failed(&e),
        }
    }
}

/// A store failure fails closed: no action, and the message is retried.
fn store_failed(e: &StoreError) -> Outcome {
    tracing::warn!(error = %e, kind = e.label(), "State store call failed; not acting.");
    Outcome::Failed {
        transient: true,
        error: format!("state store: {e}"),
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
    /// Runs action `index` of the match and reports what happened. Never
    /// panics, never returns early without a report. `rule_rate` caches
    /// the rule's rate decision across the match's actions.
    pub(super) async fn execute(
        &self,
        ctx: &ActionContext<'_>,
        index: usize,
        action: &PlannedAction,
        rule_rate: &mut Option<Option<GuardTrip>>,
    ) -> ActionReport {
        let started = Instant::now();
        let (event, m) = (ctx.event, ctx.matched);
        let rule = &m.rule.name;
        let target = action.target();
        let claim_key = format!("{}#{rule}#{index}", event.transition_key());
        let mut findings = Findings::default();
        // A rule's actions run in order. When another delivery of this
        // transition holds an earlier one (Busy), this one must not run
        // ahead of it: it waits for the retry, unclaimed.
        let earlier_busy = ctx
            .earlier
            .iter()
            .any(|r| r.rule == *rule && r.outcome == Outcome::Busy);
        let claim = if earlier_busy {
            Ok(None)
        } else {
            let req = ClaimRequest {
                key: claim_key,
                rule: rule.clone(),
                target: target.clone(),
                owner: self.owner.clone(),
                lease: self.settings.lease,
            };
            self.state.claim(&req, (self.clock)()).await.map(Some)
        };
        let mut run = Run {
            worker: self,
            ctx,
            effects: if m.dry_run { &self.dry } else { &self.live },
            claim: None,
            target: target.clone(),
            taken_over: false,
        };
        let outcome = match claim {
            Err(e) => store_failed(&e),
            Ok(None | Some(Claimed::Busy { .. })) => Outcome::Busy,
            Ok(Some(Claimed::Done { .. })) => Outcome::Duplicate,
            Ok(Some(Claimed::New(lease))) => {
                run.claim = Some(lease.clone());
                under_claim(&run, lease, action, &target, rule_rate, &mut findings).await
            }
            Ok(Some(Claimed::TakenOver {
                lease,
                previous_owner,
            })) => {
                tracing::warn!(
                    rule = %rule, target = %target, previous_owner = %previous_owner,
                    "Claim taken over after a crash: its holder died mid-action; re-reading the target before acting."
                );
                run.claim = Some(lease.clone());
                run.taken_over = true;
                findings.taken_over_from = Some(previous_owner);
                under_claim(&run, lease, action, &target, rule_rate, &mut findings).await
            }
        };
        let mut report = ActionReport {
            rule: rule.clone(),
            action_index: index,
            kind: action.kind(),
            target,
            targets: findings.targets,
            outcome,
            capped: findings.capped,
            excluded: findings.excluded,
            health_reasons: findings.health_reasons,
            request_ids: findings.request_ids,
            duration_ms: started.elapsed().as_millis() as u64,
            aws_us: findings.aws.as_micros() as u64,
            waited_us: findings.waited.as_micros() as u64,
            escalation_message_id: None,
            taken_over_from: findings.taken_over_from,
            budget: findings.budget,
            command_status: findings.command_status,
            unknown_outcome: findings.unknown_outcome,
        };
        if let (Outcome::Suppressed { .. }, Some(topic)) =
            (&report.outcome, escalation_topic(action))
        {
            report.escalation_message_id = notify::escalate(&run, &report, topic).await;
        }
        events::action_reported(&report, m.dry_run);
        report
    }
}

/// Runs the action under its claim: takes the target lease (one replica
/// at a time on a target), keeps both leases alive while it runs, then
/// completes the claim (a final outcome, with the cooldown in the same
/// write) or releases it (nothing changed; a retry may take it at once).
async fn under_claim(
    run: &Run<'_>,
    claim: Lease,
    action: &PlannedAction,
    target: &str,
    rule_rate: &mut Option<Option<GuardTrip>>,
    findings: &mut Findings,
) -> Outcome {
    let worker = run.worker;
    let state = &worker.state;
    let lease_for = worker.settings.lease;
    let target_lease = match acquire_target(run, target).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            release(&**state, &claim).await;
            return Outcome::Busy;
        }
        Err(e) => {
            release(&**state, &claim).await;
            return store_failed(&e);
        }
    };
    // The span in which this replica alone may act on the target (the
    // replica tests line these up across processes).
    tracing::debug!(target_lease = %target, owner = %worker.owner, "Target lease acquired.");
    // Both leases are renewed well before they run out, until the action
    // is over. A renewal that finds the lease lost is logged: the action
    // still finishes (it is never cancelled half-way), and the completion
    // then reports the loss.
    let stop = CancellationToken::new();
    let renew = {
        let (state, clock, stop) = (Arc::clone(state), Arc::clone(&worker.clock), stop.clone());
        let leases = [claim.clone(), target_lease.clone()];
        tokio::spawn(async move {
            let every = (lease_for / 3).max(Duration::from_millis(200));
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.cancelled() => return,
                }
                for l in &leases {
                    if let Err(error) = state.heartbeat(l, lease_for, clock()).await {
                        tracing::warn!(%error, lease = %l.key, "Could not renew a lease.");
                    }
                }
            }
        })
    };
    let outcome = if run.ctx.shutdown.is_cancelled() {
        Outcome::Aborted
    } else {
        guarded(run, action, target, rule_rate, findings).await
    };
    stop.cancel();
    let _ = renew.await;
    let rule = &run.ctx.matched.rule;
    if outcome.is_final() {
        let completion = Completion {
            outcome: outcome.label().to_string(),
            remember: worker.settings.dedup_window,
            cooldown: match (&outcome, rule.limits.cooldown) {
                (Outcome::Done, Some(period)) => Some(CooldownStart {
                    rule: rule.name.clone(),
                    target: target.to_string(),
                    period,
                }),
                _ => None,
            },
        };
        if let Err(error) = state.complete(&claim, &completion, run.now()).await {
            // The outcome stands; a redelivery takes the claim over and
            // re-reads the target before doing anything again.
            tracing::warn!(%error, kind = error.label(), "Could not record the action's outcome in the state store.");
        }
    } else {
        // Not final (a transient failure, shutdown, a busy target): give
        // the claim back so the retry can take it at once. A retry re-reads
        // every instance it would change, and the guards leave out one a
        // failed-but-applied call already terminated or stopped.
        release(&**state, &claim).await;
    }
    tracing::debug!(target_lease = %target, owner = %worker.owner, "Target lease released.");
    release(&**state, &target_lease).await;
    outcome
}

/// Gives a lease back, logging (not failing) if that does not work: an
/// unreleased lease runs out on its own.
async fn release(state: &dyn StateStore, lease: &Lease) {
    if let Err(error) = state.release(lease).await {
        tracing::info!(%error, lease = %lease.key, "Could not release a lease; it will run out.");
    }
}

/// Waits for the target lease, up to a third of the visibility timeout;
/// `None` if another replica still holds it then.
async fn acquire_target(run: &Run<'_>, target: &str) -> Result<Option<Lease>, StoreError> {
    let worker = run.worker;
    let deadline = Instant::now() + worker.settings.visibility_timeout / 3;
    loop {
        match worker
            .state
            .lease_target(target, &worker.owner, worker.settings.lease, run.now())
            .await?
        {
            TargetLease::Acquired(l) => return Ok(Some(l)),
            TargetLease::Held { .. } if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            TargetLease::Held { holder, .. } => {
                tracing::info!(target, holder = %holder, "Another replica is acting on this target; will retry.");
                return Ok(None);
            }
        }
    }
}

/// Cooldown and rule rate, then the action's family.
async fn guarded(
    run: &Run<'_>,
    action: &PlannedAction,
    target: &str,
    rule_rate: &mut Option<Option<GuardTrip>>,
    findings: &mut Findings,
) -> Outcome {
    let m = run.ctx.matched;
    let rule = &m.rule;
    let state = &run.worker.state;
    let left = match state.cooldown(&rule.name, target, run.now()).await {
        Ok(l) => l,
        Err(e) => return store_failed(&e),
    };
    if let Some(left) = left {
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
        if rule_rate.is_none() {
            if let Some(rate) = rule.limits.rate {
                let bucket = format!("rule {}", rule.name);
                let take = RateTake {
                    bucket: bucket.clone(),
                    rate,
                    n: 1,
                };
                match state
                    .take(std::slice::from_ref(&take), run.claim.as_ref(), run.now())
                    .await
                {
                    Ok(r) => {
                        *rule_rate = Some(r.err().map(|l| rate_trip(Guard::RuleRate, &bucket, &l)));
                    }
                    Err(e) => return store_failed(&e),
                }
            } else {
                *rule_rate = Some(None);
            }
        }
        if let Some(Some(trip)) = rule_rate {
            return Outcome::suppressed(trip.clone());
        }
    }
    let outcome = match action {
        Action::TerminateOutOfService(o) => pool::out_of_service(run, o, false, findings).await,
        Action::DeregisterOutOfService(o) => pool::out_of_service(run, o, true, findings).await,
        Action::RemediatePool(p) => pool::remediate(run, p, findings).await,
        Action::RebootInstance(o) => {
            instance::on_instance(run, o, Change::Ec2(InstanceOp::Reboot), findings).await
        }
        Action::StopInstance(o) => {
            instance::on_instance(run, o, Change::Ec2(InstanceOp::Stop), findings).await
        }
        Action::TerminateInstance(o) => {
            instance::on_instance(run, o, Change::Ec2(InstanceOp::Terminate), findings).await
        }
        Action::RunCommand(c) => {
            instance::on_instance(run, &c.instance, Change::Command(&c.command), findings).await
        }
        Action::Notify(n) => notify::notify(run, n, findings).await,
        Action::PutMetric(p) => metric::put_metric(run, p, findings).await,
    };
    // The cooldown starts with the claim's completion, in the same write.
    outcome
}

/// Where to say that a guard held the action back, if anywhere.
fn escalation_topic(action: &PlannedAction) -> Option<&str> {
    match action {
        Action::TerminateOutOfService(o) | Action::DeregisterOutOfService(o) => {
            o.escalate_topic_arn.as_deref()
        }
        Action::RebootInstance(o) | Action::StopInstance(o) | Action::TerminateInstance(o) => {
            o.escalate_topic_arn.as_deref()
        }
        Action::RemediatePool(p) => p.escalate_topic_arn.as_deref(),
        Action::RunCommand(c) => c.instance.escalate_topic_arn.as_deref(),
        Action::Notify(_) | Action::PutMetric(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use tokio_util::sync::CancellationToken;

    use crate::aws::QueueMessage;
    use crate::disposition::Disposition;
    use crate::event::decode_str;
    use crate::outcome::Outcome;
    use crate::rules::ActionKind;
    use crate::state::{ClaimRequest, Claimed, Completion, StateStore};
    use crate::testing::worker::{at, START};
    use crate::testing::{AlarmBody, TestWorker};

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

    /// The raw notification every test here delivers.
    fn body() -> String {
        AlarmBody::default().reason("r").raw()
    }

    fn now() -> DateTime<Utc> {
        at(START)
    }

    fn message(id: &str) -> QueueMessage {
        QueueMessage {
            message_id: id.to_string(),
            receipt_handle: format!("rh-{id}"),
            body: body(),
            receive_count: 1,
            sent_at: None,
            first_received_at: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Every kind, by an exhaustive match: a new variant of `ActionKind`
    /// does not compile here until it is added, and then the test below
    /// checks it is in `ALL`, the IAM mapping and both schemas.
    fn every_kind() -> Vec<ActionKind> {
        let listed = |k: ActionKind| match k {
            ActionKind::TerminateOutOfService
            | ActionKind::DeregisterOutOfService
            | ActionKind::RebootInstance
            | ActionKind::StopInstance
            | ActionKind::TerminateInstance
            | ActionKind::RemediatePool
            | ActionKind::RunCommand
            | ActionKind::Notify
            | ActionKind::PutMetric => k,
        };
        vec![
            listed(ActionKind::TerminateOutOfService),
            listed(ActionKind::DeregisterOutOfService),
            listed(ActionKind::RebootInstance),
            listed(ActionKind::StopInstance),
            listed(ActionKind::TerminateInstance),
            listed(ActionKind::RemediatePool),
            listed(ActionKind::RunCommand),
            listed(ActionKind::Notify),
            listed(ActionKind::PutMetric),
        ]
    }

    /// The `allOf` branches of `ActionSpec` in a rule schema, by kind.
    fn schema_branches(schema: &serde_json::Value) -> Vec<String> {
        schema
            .pointer("/definitions/ActionSpec/allOf")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| b.pointer("/if/properties/type/const")?.as_str())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_action_kind_has_iam_actions_and_a_schema_branch() {
        let shipped: serde_json::Value =
            serde_json::from_str(include_str!("../../../schema/reflex-rules.schema.json"))
                .unwrap_or_else(|e| panic!("schema/reflex-rules.schema.json is not JSON: {e}"));
        let generated = crate::schema::rule_schema();
        let granted = crate::iam::granted_actions(
            &crate::iam::policy(None, &crate::iam::Scope::default()).document,
        );
        for kind in every_kind() {
            assert!(
                ActionKind::ALL.contains(&kind),
                "{kind} is missing from ActionKind::ALL"
            );
            let needs = crate::iam::actions_for(kind);
            assert!(
                !needs.is_empty(),
                "{kind} has no IAM actions in iam::actions_for"
            );
            for action in needs {
                assert!(
                    granted.contains(*action),
                    "the IAM policy does not grant {action}, which {kind} calls"
                );
            }
            for (name, schema) in [("generated", &generated), ("shipped", &shipped)] {
                assert!(
                    schema_branches(schema).iter().any(|b| b == kind.as_str()),
                    "the {name} schema has no ActionSpec branch for {kind}"
                );
                let kinds = schema
                    .pointer("/definitions/ActionKind/oneOf")
                    .and_then(serde_json::Value::as_array)
                    .map(|v| {
                        v.iter()
                            .filter_map(|k| k.pointer("/enum/0")?.as_str())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                assert!(
                    kinds.contains(&kind.as_str()),
                    "the {name} schema's ActionKind does not list {kind}: {kinds:?}"
                );
            }
        }
    }

    /// Runs one action of each kind against the fake AWS and checks that
    /// every API call it made is in the kind's IAM mapping: an action that
    /// starts calling a new operation fails here until IAM grants it.
    #[tokio::test]
    async fn every_action_kind_calls_only_what_its_iam_mapping_grants() {
        use crate::fleet::InstanceInfo;
        let rules = r#"
[[rule]]
name = "every-kind"
[rule.match]
alarm_name = "web-unhealthy"
[[rule.actions]]
type = "terminate_out_of_service"
load_balancer = "web"
max_percent = 100
min_in_service = 1
escalate_topic_arn = "arn:aws:sns:us-east-1:123456789012:held"
[[rule.actions]]
type = "deregister_out_of_service"
load_balancer = "api"
max_percent = 100
min_in_service = 1
[[rule.actions]]
type = "reboot_instance"
instance_id = "i-reboot"
[[rule.actions]]
type = "stop_instance"
instance_id = "i-stop"
[[rule.actions]]
type = "terminate_instance"
instance_id = "i-term"
escalate_topic_arn = "arn:aws:sns:us-east-1:123456789012:held"
[[rule.actions]]
type = "remediate_pool"
target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/0123abcd"
method = "deregister"
max_percent = 100
min_in_service = 1
[[rule.actions]]
type = "run_command"
instance_id = "i-cmd"
commands = ["systemctl restart app"]
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:ops"
subject = "s"
message = "m"
[[rule.actions]]
type = "put_metric"
namespace = "reflex-test"
metric_name = "Acted"
value = 1.0
"#;
        let h = TestWorker::builder(rules).build();
        let aws = &h.aws;
        let info = |id: &str, state: &str| InstanceInfo {
            instance_id: id.to_string(),
            state: state.into(),
            launch_time: Some(now() - chrono::Duration::hours(2)),
            tags: BTreeMap::new(),
        };
        for lb in ["web", "api"] {
            aws.add_instance(lb, info(&format!("{lb}-ok"), "running"), "InService");
            aws.add_instance(lb, info(&format!("{lb}-bad"), "stopped"), "OutOfService");
        }
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/0123abcd";
        aws.add_target(tg, "tg-ok", "healthy", None, Some(info("tg-ok", "running")));
        aws.add_target(
            tg,
            "tg-bad",
            "unhealthy",
            Some("Target.FailedHealthChecks"),
            Some(info("tg-bad", "running")),
        );
        for id in ["i-reboot", "i-stop", "i-term", "i-cmd"] {
            aws.state()
                .instances
                .insert(id.to_string(), info(id, "running"));
        }
        aws.add_ssm_agent("i-cmd", "Online");
        aws.state()
            .alarms
            .insert("web-unhealthy".into(), crate::event::AlarmState::Alarm);
        let handled = h
            .worker
            .handle(&message("sqs-kinds"), &CancellationToken::new())
            .await;
        let kinds: Vec<ActionKind> = handled.reports.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, every_kind(), "one report per kind, in order");
        for r in &handled.reports {
            assert!(
                matches!(r.outcome, Outcome::Done),
                "{} did not run: {:?}",
                r.kind,
                r.outcome
            );
        }
        // Replay each kind's calls: the fake records them in order, and
        // each action's calls follow the previous action's.
        let calls = aws.state().calls.clone();
        let all: std::collections::BTreeSet<&str> = ActionKind::ALL
            .iter()
            .flat_map(|k| crate::iam::actions_for(*k).iter().copied())
            .collect();
        for call in &calls {
            assert!(
                all.contains(call.as_str()),
                "{call} is made by an action but granted by no action kind's IAM mapping"
            );
        }
        for kind in every_kind() {
            assert!(
                !crate::iam::actions_for(kind).is_empty(),
                "{kind} has no IAM actions"
            );
        }
        // The change each kind exists to make is in its own mapping.
        for (kind, change) in [
            (ActionKind::TerminateOutOfService, "ec2:TerminateInstances"),
            (
                ActionKind::DeregisterOutOfService,
                "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
            ),
            (ActionKind::RebootInstance, "ec2:RebootInstances"),
            (ActionKind::StopInstance, "ec2:StopInstances"),
            (ActionKind::TerminateInstance, "ec2:TerminateInstances"),
            (
                ActionKind::RemediatePool,
                "elasticloadbalancing:DeregisterTargets",
            ),
            (ActionKind::Notify, "sns:Publish"),
            (ActionKind::PutMetric, "cloudwatch:PutMetricData"),
        ] {
            assert!(calls.iter().any(|c| c == change), "{change} was not called");
            assert!(
                crate::iam::actions_for(kind).contains(&change),
                "iam::actions_for({kind}) lacks {change}"
            );
        }
    }

    /// Another delivery of the same transition holds the rule's first
    /// action: the later action must not run ahead of it.
    #[tokio::test]
    async fn later_actions_wait_while_an_earlier_one_is_busy_elsewhere() {
        let h = TestWorker::builder(RULE).build();
        let (aws, state, worker) = (&h.aws, &h.state, &h.worker);

        let first = format!(
            "{}#act-then-tell#0",
            decode_str(&body()).unwrap().transition_key()
        );
        let other = ClaimRequest {
            key: first.clone(),
            rule: "act-then-tell".into(),
            target: "topic:first".into(),
            owner: "the-other-delivery".into(),
            lease: Duration::from_secs(60),
        };
        let Ok(Claimed::New(lease)) = state.claim(&other, now()).await else {
            panic!("the other delivery claims first");
        };

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
        let completion = Completion {
            outcome: "done".into(),
            remember: Duration::from_secs(3600),
            cooldown: None,
        };
        state
            .complete(&lease, &completion, now())
            .await
            .expect("the other delivery completes");
        let handled = worker.handle(&message("sqs-2"), &shutdown).await;
        let outcomes: Vec<&Outcome> = handled.reports.iter().map(|r| &r.outcome).collect();
        assert_eq!(outcomes, [&Outcome::Duplicate, &Outcome::Done]);
        assert_eq!(handled.disposition, Disposition::Ack);
        let published: Vec<String> = aws.state().published.iter().map(|p| p.1.clone()).collect();
        assert_eq!(published, ["then"]);
    }
}
