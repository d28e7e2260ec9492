//! The worker: polls, decodes, evaluates, guards, executes, disposes. The
//! only place that sequences effects.
//!
//! What happens to each message is decided by the pure
//! [`crate::disposition`]; the worker carries the decision out.
//!
//! - [`actions`]: running one planned action through its guards, one
//!   module per action family.
//! - [`batch`]: queue calls that come together sent as one batch call,
//!   each with its own result — heartbeats (`ChangeMessageVisibilityBatch`)
//!   and, through [`deleter`], deletes (`DeleteMessageBatch`).
//! - [`trust`]: the gate every decoded message passes: the trust policy,
//!   and SNS signatures checked against cached certificates.
//! - This module: the receive loop, heartbeats, per-message handling and
//!   shutdown.

pub mod actions;
pub mod batch;
pub mod deleter;
pub mod slots;
pub mod trust;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, info_span, warn, Instrument};

use crate::audit::{AuditRecord, AuditSink, NoAudit};
use crate::aws::dry_run::{
    DryRunAutoScaling, DryRunCommands, DryRunInstances, DryRunLoadBalancers, DryRunMetrics,
    DryRunNotifier, DryRunTargetGroups,
};
use crate::aws::{
    Alarms, AutoScaling, Commands, Instances, LoadBalancers, MetricPublisher, Notifier, Queue,
    QueueMessage, SigningCerts, TargetGroups,
};
use crate::disposition::{
    decide, decide_poison, decide_unfinished, Backoff, Disposition, MessageOutcome,
};
use crate::event::{decode_str, Poison};
use crate::outcome::ActionReport;
use crate::plan::{evaluate_with, EvalOptions};
use crate::rules::{Rate, RuleSet};
use crate::state::StateStore;
use crate::telemetry::events::{
    MessageDeadLettered, MessageDeleted, MessageRejected, MessageReleased, MessageRetried,
    MessagesReceived, RuleMatched, VisibilityLost,
};
use crate::telemetry::metrics;
use crate::trust::TrustPolicy;
use actions::ActionContext;
use trust::{Admission, NoSigningCerts, TrustGate};

/// The effects actions can have.
#[derive(Clone)]
pub struct Effects {
    pub elb: Arc<dyn LoadBalancers>,
    pub target_groups: Arc<dyn TargetGroups>,
    pub auto_scaling: Arc<dyn AutoScaling>,
    pub ec2: Arc<dyn Instances>,
    pub ssm: Arc<dyn Commands>,
    pub alarms: Arc<dyn Alarms>,
    pub sns: Arc<dyn Notifier>,
    pub metrics: Arc<dyn MetricPublisher>,
}

impl Effects {
    /// The same effects with every write replaced by its dry-run version.
    pub fn dry_run(&self) -> Effects {
        Effects {
            elb: Arc::new(DryRunLoadBalancers(Arc::clone(&self.elb))),
            target_groups: Arc::new(DryRunTargetGroups(Arc::clone(&self.target_groups))),
            auto_scaling: Arc::new(DryRunAutoScaling(Arc::clone(&self.auto_scaling))),
            ec2: Arc::new(DryRunInstances(Arc::clone(&self.ec2))),
            ssm: Arc::new(DryRunCommands(Arc::clone(&self.ssm))),
            alarms: Arc::clone(&self.alarms),
            sns: Arc::new(DryRunNotifier),
            metrics: Arc::new(DryRunMetrics),
        }
    }
}

/// The worker's settings (the `config` layer builds them from `reflex.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `trusted_topic_arns` and `[trust]`.
    pub trust: TrustPolicy,
    pub dry_run: bool,
    pub max_event_age: Duration,
    pub pollers: u32,
    pub max_in_flight: u32,
    pub wait: Duration,
    pub visibility_timeout: Duration,
    pub heartbeat: Duration,
    pub backoff: Backoff,
    /// Instances changed across all rules.
    pub instance_changes: Rate,
    /// How long a handled transition is remembered (`limits.dedup_window`).
    pub dedup_window: Duration,
    /// At most this many remediation attempts per target within the
    /// period, across all rules (`limits.remediation_budget`); `None`: no
    /// budget.
    pub remediation_budget: Option<Rate>,
    /// How long a claim or target lease holds without a heartbeat
    /// (`state.lease`).
    pub lease: Duration,
    /// The deadline of a whole queue call (`aws.queue_timeout`): bounds
    /// each heartbeat, with [`Settings::heartbeat_timeout`].
    pub queue_timeout: Duration,
    /// A change (terminate, deregister...) not answered after this has its
    /// target re-read beside it, and is done when the change shows
    /// (`aws.hedge_after`); `None`: only after it fails.
    pub settle_after: Option<Duration>,
}

/// The default of each setting: what a `reflex.toml` without the key gives.
/// `config` takes its defaults from here, so the two cannot drift.
pub mod defaults {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use crate::rules::Rate;

    /// Alarms whose state changed longer ago are ignored (`max_event_age`).
    pub const MAX_EVENT_AGE: Duration = Duration::from_secs(15 * 60);
    /// Parallel long-polling loops (`receive.pollers`).
    pub const POLLERS: u32 = 1;
    /// Most messages being worked on at once (`receive.max_in_flight`).
    pub const MAX_IN_FLIGHT: u32 = 10;
    /// Long-poll wait (`receive.wait`).
    pub const WAIT: Duration = Duration::from_secs(20);
    /// Visibility timeout requested on receive (`receive.visibility_timeout`).
    pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);
    /// Visibility extension period: a third of the visibility timeout
    /// (`receive.heartbeat`).
    pub const HEARTBEAT: Duration = Duration::from_secs(VISIBILITY_TIMEOUT.as_secs() / 3);
    /// First retry backoff (`retry.base`).
    pub const RETRY_BASE: Duration = Duration::from_secs(10);
    /// Longest retry backoff (`retry.max`).
    pub const RETRY_MAX: Duration = Duration::from_secs(15 * 60);
    /// Instances changed across all rules (`limits.instance_changes`):
    /// 20 an hour.
    /// How long a handled transition is remembered (`limits.dedup_window`).
    pub const DEDUP_WINDOW: Duration = Duration::from_secs(6 * 3600);
    pub const INSTANCE_CHANGES: Rate = Rate {
        count: NonZeroU32::MIN.saturating_add(19),
        per: Duration::from_secs(3600),
    };
}

impl Settings {
    /// Every setting at its default; no trusted topics, dry run off.
    pub const DEFAULT: Settings = Settings {
        trust: TrustPolicy {
            trusted_topic_arns: Vec::new(),
            accept_raw: false,
            accept_eventbridge: false,
            trusted_accounts: Vec::new(),
        },
        dry_run: false,
        max_event_age: defaults::MAX_EVENT_AGE,
        pollers: defaults::POLLERS,
        max_in_flight: defaults::MAX_IN_FLIGHT,
        wait: defaults::WAIT,
        visibility_timeout: defaults::VISIBILITY_TIMEOUT,
        heartbeat: defaults::HEARTBEAT,
        backoff: Backoff {
            base: defaults::RETRY_BASE,
            max: defaults::RETRY_MAX,
        },
        instance_changes: defaults::INSTANCE_CHANGES,
        dedup_window: defaults::DEDUP_WINDOW,
        remediation_budget: None,
        lease: crate::state::config::DEFAULT_LEASE,
        queue_timeout: crate::aws::timeouts::defaults::QUEUE.operation,
        settle_after: Some(crate::aws::timeouts::defaults::HEDGE_AFTER),
    };

    /// How long one heartbeat (`ChangeMessageVisibility`) may take before
    /// it is given up and retried: the queue call's deadline, and at most
    /// a third of the heartbeat interval, so that a stalled one is retried
    /// well before the visibility runs out.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.queue_timeout.min(self.heartbeat / 3)
    }

    /// The visibility a receive asks for: room for the first heartbeat,
    /// not the whole visibility timeout. That heartbeat, sent as soon as
    /// the message arrives, extends it to `visibility_timeout`. A receive
    /// whose reply is lost on the way back (SQS handed the messages out,
    /// nobody got them) hides its messages only this long: twice the
    /// heartbeat's call timeout (one attempt, and a retry in what is left),
    /// at most one heartbeat interval. With the defaults that is 12 s, not
    /// 60; in the lossy test, 2 s, which is also the receive's own attempt
    /// timeout, so the SDK's retry of a black-holed receive finds the
    /// messages it had hidden.
    pub fn receive_visibility(&self) -> Duration {
        self.heartbeat
            .min(self.visibility_timeout)
            .min(self.heartbeat_timeout() * 2)
    }
}

/// The first pause before a failed heartbeat is retried; it doubles up to
/// [`HEARTBEAT_RETRY_MAX`].
const HEARTBEAT_RETRY_FIRST: Duration = Duration::from_millis(250);
const HEARTBEAT_RETRY_MAX: Duration = Duration::from_secs(2);

/// How long past its wait a receive outstanding at shutdown may take.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

impl Default for Settings {
    /// What a `reflex.toml` without any key gives: [`Settings::DEFAULT`].
    fn default() -> Self {
        Settings::DEFAULT
    }
}

/// A message's heartbeat: `stop` ends it; it cancels `lost` when the
/// message's visibility ran out for want of an extension.
struct Heartbeat {
    stop: CancellationToken,
    lost: CancellationToken,
    /// Ends at once when stopped between calls, or once the call in
    /// flight has its answer or timed out.
    task: tokio::task::JoinHandle<()>,
}

/// A clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// This replica's name: `REFLEX_REPLICA_ID`, or `<host>-<pid>`.
pub fn replica_id() -> String {
    if let Some(id) = std::env::var("REFLEX_REPLICA_ID")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return id;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "reflex".to_string());
    format!("{host}-{}", std::process::id())
}

/// The queue consumer.
pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn Queue>,
    pub live: Effects,
    pub dry: Effects,
    pub rules: watch::Receiver<Arc<RuleSet>>,
    /// Claims, cooldowns, rate buckets and target leases.
    pub state: Arc<dyn StateStore>,
    /// This replica's name in claims and leases (`REFLEX_REPLICA_ID`, or
    /// host and process id).
    pub owner: String,
    pub settings: Settings,
    pub clock: Clock,
    /// Where audit records go (none unless the daemon sets a sink).
    pub audit: Arc<dyn AuditSink>,
    /// When the process started: the first receive logs the time since, the
    /// start-up time. [`Worker::new`] sets it to now; the daemon passes the
    /// instant `main` began.
    pub process_started: Instant,
    /// Counts successful receives; the CloudWatch heartbeat follows it.
    pub receives: Arc<crate::telemetry::cloudwatch::ReceiveProgress>,
    /// The trust gate, built from `settings.trust`. [`Worker::new`] gives
    /// it no certificate source (every SNS signature is refused); the
    /// daemon and the test worker set one with [`Worker::with_signing_certs`].
    pub trust: Arc<TrustGate>,
    /// Deletes finished messages, batching those that finish together.
    pub deleter: Arc<deleter::BatchDeleter>,
    /// Sends heartbeats, batching those of messages in flight together.
    pub heartbeats: Arc<batch::VisibilityBatcher>,
}

impl Worker {
    pub fn new(
        queue: Arc<dyn Queue>,
        dead_letters: Arc<dyn Queue>,
        live: Effects,
        rules: watch::Receiver<Arc<RuleSet>>,
        state: Arc<dyn StateStore>,
        settings: Settings,
    ) -> Worker {
        let dry = live.dry_run();
        let deleter = Arc::new(deleter::BatchDeleter::new(
            Arc::clone(&queue),
            deleter::LINGER,
        ));
        let heartbeats = Arc::new(batch::VisibilityBatcher::new(
            Arc::clone(&queue),
            batch::LINGER,
            settings.heartbeat_timeout(),
        ));
        let trust = Arc::new(TrustGate::new(
            settings.trust.clone(),
            Arc::new(NoSigningCerts),
        ));
        Worker {
            queue,
            dead_letters,
            live,
            dry,
            rules,
            state,
            owner: replica_id(),
            settings,
            clock: Arc::new(Utc::now),
            audit: Arc::new(NoAudit),
            process_started: Instant::now(),
            receives: Arc::default(),
            trust,
            deleter,
            heartbeats,
        }
    }

    /// This worker, fetching SNS signing certificates from `certs`.
    pub fn with_signing_certs(mut self, certs: Arc<dyn SigningCerts>) -> Worker {
        self.trust = Arc::new(TrustGate::new(self.settings.trust.clone(), certs));
        self
    }

    /// Runs the pollers until `shutdown`, then waits for in-flight messages
    /// (the caller bounds that wait with the grace period).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, tracker: TaskTracker) {
        let permits = Arc::new(Semaphore::new(self.settings.max_in_flight as usize));
        let mut pollers = Vec::new();
        for poller in 0..self.settings.pollers {
            let worker = Arc::clone(&self);
            let shutdown = shutdown.clone();
            let tracker = tracker.clone();
            let permits = Arc::clone(&permits);
            pollers.push(tokio::spawn(async move {
                worker.poll_loop(poller, shutdown, tracker, permits).await
            }));
        }
        for p in pollers {
            let _ = p.await;
        }
    }

    async fn poll_loop(
        self: Arc<Self>,
        poller: u32,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        permits: Arc<Semaphore>,
    ) {
        let mut failures: u32 = 0;
        let mut first_receive = true;
        // The last receive came back with as many messages as it asked for.
        let mut backlog = false;
        info!(poller, queue_url = self.queue.url(), "Poller started.");
        while !shutdown.is_cancelled() {
            // Take as many in-flight slots as one receive may fill (1-10);
            // while the queue has a backlog, wait a moment for those of
            // the messages about to finish.
            let first = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = shutdown.cancelled() => break,
            };
            let want = self.settings.max_in_flight as usize;
            let mut slots = slots::fill(&permits, first, want, slots::gather(backlog)).await;
            // A shutdown while the slots were gathered: no new long poll,
            // which would hold the shutdown up for its whole wait.
            if shutdown.is_cancelled() {
                break;
            }
            let max = u8::try_from(slots.len()).unwrap_or(10);
            if first_receive {
                first_receive = false;
                info!(
                    poller,
                    since_start_ms = self.process_started.elapsed().as_millis() as u64,
                    "Sending the first ReceiveMessage."
                );
            }
            let receive =
                self.queue
                    .receive(max, self.settings.wait, self.settings.receive_visibility());
            tokio::pin!(receive);
            let received = tokio::select! {
                r = &mut receive => r,
                () = shutdown.cancelled() => {
                    // Dropping the long poll would not cancel it on the
                    // server: SQS could still hand it a message, which
                    // would then stay invisible for the whole visibility
                    // timeout. Let it finish, and release what it brings.
                    self.drain_receive(poller, receive).await;
                    break;
                }
            };
            let messages = match received {
                Ok(m) => {
                    failures = 0;
                    backlog = m.len() >= slots.len();
                    self.receives.succeeded();
                    MessagesReceived { count: m.len() }.emit();
                    m
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(200u64 << failures.min(6));
                    warn!(%error, poller, retry_in_ms = pause.as_millis() as u64, "ReceiveMessage failed; will poll again.");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            for msg in messages {
                let Some(slot) = slots.pop() else { break };
                let worker = Arc::clone(&self);
                let shutdown = shutdown.clone();
                metrics().in_flight.inc();
                tracker.spawn(async move {
                    worker.process(msg, &shutdown).await;
                    metrics().in_flight.dec();
                    drop(slot);
                });
            }
        }
        info!(poller, "Poller stopped receiving.");
    }

    /// Lets a receive outstanding at shutdown finish — it started at most
    /// `wait` ago, so it is given `wait` plus [`DRAIN_MARGIN`] — and makes
    /// whatever it brings visible again at once.
    async fn drain_receive(
        &self,
        poller: u32,
        receive: impl std::future::Future<Output = Result<Vec<QueueMessage>, crate::aws::AwsError>>,
    ) {
        info!(
            poller,
            "Shutting down: letting the outstanding ReceiveMessage finish."
        );
        let messages = match tokio::time::timeout(self.settings.wait + DRAIN_MARGIN, receive).await
        {
            Ok(Ok(m)) => m,
            Ok(Err(error)) => {
                info!(%error, poller, "The last ReceiveMessage failed; nothing to release.");
                return;
            }
            Err(_) => {
                warn!(poller, "The last ReceiveMessage did not finish in time; a message it got returns when its visibility times out.");
                return;
            }
        };
        MessagesReceived {
            count: messages.len(),
        }
        .emit();
        for msg in messages {
            MessageReleased.emit();
            if let Err(error) = self
                .queue
                .change_visibility(&msg.receipt_handle, Duration::ZERO)
                .await
            {
                warn!(%error, sqs_message_id = %msg.message_id, "Could not release a message received at shutdown; it returns when its visibility times out.");
            }
        }
    }

    /// Handles one message start to finish: heartbeat, decide, dispose.
    pub async fn process(&self, msg: QueueMessage, shutdown: &CancellationToken) -> MessageOutcome {
        let span = info_span!(
            "message",
            sqs_message_id = %msg.message_id,
            sns_message_id = tracing::field::Empty,
            alarm_name = tracing::field::Empty,
            receive_count = msg.receive_count,
        );
        async {
            let started = Instant::now();
            let _in_flight = metrics().in_flight_since.start(started);
            let heartbeat = self.start_heartbeat(&msg);
            let handled = self.handle_watched(&msg, shutdown, &heartbeat.lost).await;
            heartbeat.stop.cancel();
            if handled.disposition != Disposition::Ack {
                // A heartbeat still out could land after the release or
                // the retry's backoff and undo it: wait for its answer
                // (bounded by its timeout). A deleted message needs no
                // such care.
                let _ = heartbeat.task.await;
            }
            // reflex's own processing: everything but AWS calls and waits.
            let outside: u64 = handled
                .reports
                .iter()
                .map(|r| r.aws_us + r.waited_us)
                .sum::<u64>()
                + handled.certificate_fetch.as_micros() as u64;
            let own_us = (started.elapsed().as_micros() as u64).saturating_sub(outside);
            record_metrics(&handled, own_us, (self.clock)());
            // The decision is on record before the message is deleted,
            // dead-lettered or released.
            self.audit.record(&AuditRecord::message(
                (self.clock)(),
                &msg,
                &handled,
                started.elapsed(),
            ));
            self.dispose(&msg, &handled).await;
            info!(
                disposition = handled.disposition.label(),
                actions = handled.reports.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                own_us,
                "Message handled."
            );
            handled
        }
        .instrument(span)
        .await
    }

    /// Keeps the message invisible while it is being worked on: at once
    /// (the receive asked for [`Settings::receive_visibility`] only), then
    /// every `heartbeat`, its visibility is extended to `visibility_timeout`
    /// from then, batched with the heartbeats of the other messages in
    /// flight ([`batch::VisibilityBatcher`]: a failed entry is a failed
    /// heartbeat). Each extension may take [`Settings::heartbeat_timeout`];
    /// one that fails or times out is retried after a short pause, until
    /// one gets through or the visibility it last had runs out: a retry
    /// goes out while at least half that timeout is left, and is given up
    /// when the visibility runs out (a call answered later might have
    /// landed after it). Then the message is as good as visible to another
    /// consumer: `lost` is cancelled, and the heartbeat stops.
    fn start_heartbeat(&self, msg: &QueueMessage) -> Heartbeat {
        let stop = CancellationToken::new();
        let lost = CancellationToken::new();
        let heartbeats = Arc::clone(&self.heartbeats);
        let receipt = msg.receipt_handle.clone();
        let every = self.settings.heartbeat;
        let received_with = self.settings.receive_visibility();
        let extend_to = self.settings.visibility_timeout;
        let call_timeout = self.settings.heartbeat_timeout();
        let (stopped, lost_tx) = (stop.clone(), lost.clone());
        let task = tokio::spawn(
            async move {
                use tokio::time::Instant;
                // SQS hid the message when it handed it out, just before
                // this, for `receive_visibility`; an extension counts from
                // when it was sent. The first goes out at once.
                let mut expires = Instant::now() + received_with;
                let mut next = Instant::now();
                loop {
                    tokio::select! {
                        biased;
                        () = stopped.cancelled() => return,
                        () = tokio::time::sleep_until(next) => {}
                    }
                    let mut pause = HEARTBEAT_RETRY_FIRST;
                    let mut attempts: u32 = 0;
                    loop {
                        attempts += 1;
                        let sent = Instant::now();
                        // Not abandoned when the message finishes: the
                        // caller waits for it before releasing.
                        let limit = call_timeout.min(expires.saturating_duration_since(sent));
                        let result =
                            tokio::time::timeout(limit, heartbeats.change(&receipt, extend_to))
                                .await;
                        let error = match result {
                            Ok(Ok(())) => {
                                if attempts > 1 {
                                    info!(attempts, "Heartbeat got through after a retry.");
                                }
                                expires = sent + extend_to;
                                next = sent + every;
                                break;
                            }
                            Ok(Err(error)) => error.to_string(),
                            Err(_) => format!(
                                "no reply within {}",
                                humantime::format_duration(limit)
                            ),
                        };
                        // A retry needs at least half a call's time before
                        // the visibility runs out, and is cut short there.
                        let give_up_at = expires.checked_sub(call_timeout / 2).unwrap_or(expires);
                        if Instant::now() + pause >= give_up_at {
                            VisibilityLost {
                                attempts,
                                error: &error,
                            }
                            .emit();
                            lost_tx.cancel();
                            return;
                        }
                        if stopped.is_cancelled() {
                            return;
                        }
                        warn!(%error, attempts, retry_in_ms = pause.as_millis() as u64, "Heartbeat could not extend the message's visibility; retrying.");
                        tokio::select! {
                            biased;
                            () = stopped.cancelled() => return,
                            () = tokio::time::sleep(pause) => {}
                        }
                        pause = (pause * 2).min(HEARTBEAT_RETRY_MAX);
                    }
                }
            }
            .in_current_span(),
        );
        Heartbeat { stop, lost, task }
    }

    /// Decides what happens to a message, running its actions. Pure of
    /// queue effects: [`dispose`](Self::dispose) carries the decision out.
    pub async fn handle(&self, msg: &QueueMessage, shutdown: &CancellationToken) -> MessageOutcome {
        self.handle_watched(msg, shutdown, &CancellationToken::new())
            .await
    }

    /// [`handle`](Self::handle), starting no further action once
    /// `visibility_lost` is cancelled (the running one always finishes).
    async fn handle_watched(
        &self,
        msg: &QueueMessage,
        shutdown: &CancellationToken,
        visibility_lost: &CancellationToken,
    ) -> MessageOutcome {
        if shutdown.is_cancelled() {
            return MessageOutcome::unevaluated(Disposition::Release);
        }
        let rejected = |poison: Poison| {
            MessageRejected {
                code: poison.code.as_str(),
                reason: &poison.reason,
            }
            .emit();
            MessageOutcome::unevaluated(decide_poison(&poison))
        };
        let event = match decode_str(&msg.body) {
            Ok(e) => e,
            Err(poison) => return rejected(poison),
        };
        let (admission, certificate_fetch) =
            self.trust.admit(&msg.body, &event, (self.clock)()).await;
        match admission {
            Admission::Admitted => {}
            Admission::Refused(poison) => {
                return MessageOutcome {
                    certificate_fetch,
                    ..rejected(poison)
                }
            }
            Admission::Unavailable(error) => {
                let after = self.settings.backoff.after(msg.receive_count);
                warn!(%error, retry_in_s = after.as_secs(), "The SNS signing certificate could not be fetched; the message will be retried.");
                return MessageOutcome {
                    certificate_fetch,
                    ..MessageOutcome::unevaluated(Disposition::Retry { after })
                };
            }
        }
        let span = tracing::Span::current();
        span.record(
            "sns_message_id",
            event.sns_message_id.as_deref().unwrap_or("-"),
        );
        span.record("alarm_name", event.alarm_name.as_str());
        // The message finishes under the rules it started with.
        let rules = Arc::clone(&self.rules.borrow());
        let now = (self.clock)();
        let options = EvalOptions {
            max_event_age: Some(self.settings.max_event_age),
            dry_run: self.settings.dry_run,
        };
        let plan = evaluate_with(&rules, &event, now, options);
        info!(
            rules_version = rules.version(),
            new_state = %event.new_state,
            matched = ?plan.matches.iter().map(|m| m.rule.name.as_str()).collect::<Vec<_>>(),
            "Alarm event evaluated."
        );
        for s in &plan.skipped {
            info!(rule = %s.rule, reason = %s.reason, "Rule matched but skipped.");
        }
        let mut reports: Vec<ActionReport> = Vec::new();
        let planned: usize = plan.matches.iter().map(|m| m.actions.len()).sum();
        'matches: for m in &plan.matches {
            RuleMatched { rule: &m.rule.name }.emit();
            let mut rule_rate_checked = None;
            for (index, action) in m.actions.iter().enumerate() {
                // Another consumer may hold the message now: start nothing
                // more (its claim stops a double action on a redelivery).
                if visibility_lost.is_cancelled() {
                    break 'matches;
                }
                let ctx = ActionContext {
                    event: &event,
                    matched: m,
                    earlier: &reports,
                    shutdown,
                };
                let report = self
                    .execute(&ctx, index, action, &mut rule_rate_checked)
                    .await;
                // Recorded the moment it finishes: a crash later in this
                // message cannot lose it.
                self.audit.record(&AuditRecord::action(
                    (self.clock)(),
                    &msg.message_id,
                    &event,
                    rules.version(),
                    m.dry_run,
                    &report,
                ));
                reports.push(report);
            }
        }
        let not_started = planned - reports.len();
        let lost = visibility_lost.is_cancelled();
        let disposition = if not_started > 0 {
            warn!(
                not_started,
                "The message's visibility was lost; its remaining actions were not started and it will be released."
            );
            decide_unfinished(&reports, msg.receive_count, self.settings.backoff)
        } else {
            decide(&reports, msg.receive_count, self.settings.backoff)
        };
        MessageOutcome {
            certificate_fetch,
            visibility_lost: lost,
            event: Some(event),
            reports,
            disposition,
            rules_version: Some(rules.version().to_string()),
            rules_source: rules.source().map(str::to_string),
            matched: plan.matches.iter().map(|m| m.rule.name.clone()).collect(),
            skipped: plan.skipped,
        }
    }

    /// Carries a disposition out. A message is deleted only after its
    /// outcome is logged, and dead-lettered only if the DLQ send succeeded.
    pub async fn dispose(&self, msg: &QueueMessage, handled: &MessageOutcome) {
        let receipt = &msg.receipt_handle;
        match &handled.disposition {
            Disposition::Ack => match self.deleter.delete(receipt).await {
                Ok(()) => MessageDeleted.emit(),
                // The message comes back; its finished actions are
                // remembered, so it will not act twice.
                Err(error) => {
                    error!(%error, "DeleteMessage failed; the message will be redelivered.")
                }
            },
            Disposition::Retry { after } => {
                MessageRetried { after: *after }.emit();
                if let Err(error) = self.queue.change_visibility(receipt, *after).await {
                    warn!(%error, "ChangeMessageVisibility failed; the message returns when its visibility times out.");
                }
            }
            Disposition::Release => {
                MessageReleased.emit();
                if let Err(error) = self.queue.change_visibility(receipt, Duration::ZERO).await {
                    warn!(%error, "Could not release the message; it returns when its visibility times out.");
                }
            }
            Disposition::DeadLetter { code, reason } => {
                let attributes = dead_letter_attributes(msg, *code, reason, self.queue.url());
                match self.dead_letters.send(&msg.body, &attributes).await {
                    Ok(dlq_message_id) => {
                        MessageDeadLettered {
                            code: code.as_str(),
                            dlq_message_id: &dlq_message_id,
                        }
                        .emit();
                        match self.deleter.delete(receipt).await {
                            Ok(()) => MessageDeleted.emit(),
                            Err(error) => {
                                error!(%error, "DeleteMessage failed after dead-lettering; the message will be redelivered.")
                            }
                        }
                    }
                    Err(error) => {
                        let after = self.settings.backoff.after(msg.receive_count);
                        error!(%error, code = %code, retry_in_s = after.as_secs(), "Could not send to the dead-letter queue; keeping the message.");
                        if let Err(error) = self.queue.change_visibility(receipt, after).await {
                            warn!(%error, "ChangeMessageVisibility failed too.");
                        }
                    }
                }
            }
        }
    }
}

/// Records a handled message's timings (its actions were counted as
/// they finished).
fn record_metrics(handled: &MessageOutcome, own_us: u64, now: DateTime<Utc>) {
    let m = metrics();
    m.processing_seconds.observe(own_us as f64 / 1e6);
    for report in &handled.reports {
        if let (crate::outcome::Outcome::Done, Some(event)) = (&report.outcome, &handled.event) {
            let ms = now
                .signed_duration_since(event.state_change_time)
                .num_milliseconds();
            m.alarm_to_action_seconds.observe(ms.max(0) as f64 / 1000.0);
        }
    }
}

/// The message attributes a dead-lettered message carries (the contract
/// is [`crate::dead_letter::DeadLetterAttributes`]; `reflex dlq` reads it back).
pub fn dead_letter_attributes(
    msg: &QueueMessage,
    code: crate::dead_letter::DeadLetterCode,
    reason: &str,
    source_queue: &str,
) -> BTreeMap<String, String> {
    crate::dead_letter::DeadLetterAttributes::new(
        code,
        reason,
        &msg.message_id,
        msg.receive_count,
        source_queue,
        msg.first_received_at.or(msg.sent_at),
    )
    .to_attributes()
}
