//! A small set of metrics put to CloudWatch (namespace `reflex`, dimension
//! `Queue`), batched once a minute, off the message path: the heartbeat the
//! "reflex is not running" alarm watches, and per-minute counts. A failure
//! here never affects message handling.

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

/// Puts `Heartbeat` and the last interval's counts every `every`.
pub async fn publish(
    sink: Arc<dyn MetricPublisher>,
    queue: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let mut last = totals();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = totals();
        let datum = |name: &str, value: u64| Datum {
            metric_name: name.to_string(),
            value: value as f64,
            unit: Some("Count".to_string()),
            dimensions: vec![("Queue".to_string(), queue.clone())],
        };
        let data = [
            datum("Heartbeat", 1),
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
        last = now;
        if let Err(error) = sink.put("reflex", &data).await {
            warn!(%error, "Could not put reflex's metrics to CloudWatch.");
        }
    }
}
