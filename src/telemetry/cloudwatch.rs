//! A small set of metrics put to CloudWatch (namespace `reflex`, dimension
//! `Queue`), batched once a minute, off the message path: the heartbeat the
//! "reflex is not running" alarm watches, and per-minute counts. A failure
//! here never affects message handling.
//!
//! The heartbeat says "reflex is receiving", not "the process is up": it is
//! put only for an interval in which a `ReceiveMessage` succeeded (the
//! worker reports each one to [`ReceiveProgress`]), so a poll loop that is
//! stuck or denied stops it. The first put comes one interval after start,
//! so a task that crash-loops faster than that puts none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::metrics;
use crate::aws::{Datum, MetricPublisher};

/// Counter totals, to publish per-interval differences.
#[derive(Default, Clone, Copy)]
struct Snapshot {
    received: u64,
    deleted: u64,
    retried: u64,
    dead_lettered: u64,
    actions_done: u64,
    actions_suppressed: u64,
    actions_failed: u64,
}

fn totals() -> Snapshot {
    let m = metrics();
    Snapshot {
        received: m.messages_received.get(),
        deleted: m.messages_deleted.get(),
        retried: m.messages_retried.get(),
        dead_lettered: m.totals.dead_lettered.get(),
        actions_done: m.totals.actions_done.get(),
        actions_suppressed: m.totals.actions_suppressed.get(),
        actions_failed: m.totals.actions_failed.get(),
    }
}

/// Successful `ReceiveMessage` calls (an empty long poll counts: the queue
/// answered). Shared by the pollers, which count, and [`publish`], which
/// reads.
#[derive(Debug, Default)]
pub struct ReceiveProgress(AtomicU64);

impl ReceiveProgress {
    /// A `ReceiveMessage` call succeeded.
    pub fn succeeded(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// How many have succeeded so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Puts the last interval's counts every `every`, starting one interval
/// after the call, with `Heartbeat` only when a receive succeeded in that
/// interval.
pub async fn publish(
    sink: Arc<dyn MetricPublisher>,
    queue: String,
    every: Duration,
    receives: Arc<ReceiveProgress>,
    shutdown: CancellationToken,
) {
    // Not `interval`, whose first tick is immediate: a task restarted in a
    // loop would put a heartbeat on every start.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = totals();
    let mut last_receives = receives.count();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let receives_now = receives.count();
        let receiving = receives_now != last_receives;
        last_receives = receives_now;
        let now = totals();
        let datum = |name: &str, value: u64| Datum {
            metric_name: name.to_string(),
            value: value as f64,
            unit: Some("Count".to_string()),
            dimensions: vec![("Queue".to_string(), queue.clone())],
        };
        let heartbeat = receiving.then(|| datum("Heartbeat", 1));
        let counts = [
            datum(
                "MessagesReceived",
                now.received.saturating_sub(last.received),
            ),
            datum("MessagesDeleted", now.deleted.saturating_sub(last.deleted)),
            datum("MessagesRetried", now.retried.saturating_sub(last.retried)),
            datum(
                "MessagesDeadLettered",
                now.dead_lettered.saturating_sub(last.dead_lettered),
            ),
            datum(
                "ActionsDone",
                now.actions_done.saturating_sub(last.actions_done),
            ),
            datum(
                "ActionsSuppressed",
                now.actions_suppressed
                    .saturating_sub(last.actions_suppressed),
            ),
            datum(
                "ActionsFailed",
                now.actions_failed.saturating_sub(last.actions_failed),
            ),
        ];
        let data: Vec<Datum> = heartbeat.into_iter().chain(counts).collect();
        if !receiving {
            warn!(
                interval_s = every.as_secs(),
                "No ReceiveMessage succeeded in the last interval; no heartbeat is put."
            );
        }
        last = now;
        if let Err(error) = sink.put("reflex", &data).await {
            warn!(%error, "Could not put reflex's metrics to CloudWatch.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeAws;

    fn heartbeats(aws: &FakeAws) -> usize {
        aws.state()
            .metrics
            .iter()
            .filter(|(ns, d)| ns == "reflex" && d.metric_name == "Heartbeat")
            .count()
    }

    fn puts(aws: &FakeAws) -> usize {
        aws.state()
            .calls
            .iter()
            .filter(|c| *c == "cloudwatch:PutMetricData")
            .count()
    }

    /// Lets the publisher run until it waits again.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_only_for_intervals_with_a_successful_receive() {
        let aws = FakeAws::new();
        let receives = Arc::new(ReceiveProgress::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(publish(
            Arc::new(aws.clone()),
            "q".to_string(),
            Duration::from_secs(60),
            Arc::clone(&receives),
            shutdown.clone(),
        ));
        settle().await;
        assert_eq!(puts(&aws), 0, "nothing is put at start-up");

        tokio::time::advance(Duration::from_secs(59)).await;
        settle().await;
        assert_eq!(puts(&aws), 0, "nothing before the first interval is over");

        // Interval 1: no receive succeeded.
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        assert_eq!(puts(&aws), 1, "the counts are put every interval");
        assert_eq!(
            heartbeats(&aws),
            0,
            "no heartbeat without a successful receive"
        );

        // Interval 2: one did.
        receives.succeeded();
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(heartbeats(&aws), 1);

        // Interval 3: none again.
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(puts(&aws), 3);
        assert_eq!(heartbeats(&aws), 1, "a heartbeat is not carried over");

        shutdown.cancel();
        task.await.expect("the publisher stops on shutdown");
    }
}
