//! Peek and hold: the one way both `inspect` and `redrive` walk a DLQ (see
//! the [module docs](super)).

use std::collections::HashSet;
use std::time::Duration;

use super::DeadLetter;
use crate::aws::{AwsError, Queue};

/// Long-poll wait of each receive: long enough that an empty answer means
/// the queue has no visible message (a short poll samples only some of the
/// SQS servers and can come back empty from a non-empty queue).
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// Walks a DLQ with peek and hold (see the module docs).
pub(super) struct Walker<'a> {
    dlq: &'a dyn Queue,
    visibility: Duration,
    seen: HashSet<String>,
    /// Receipt handles to release when the walk ends.
    held: Vec<String>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(dlq: &'a dyn Queue, visibility: Duration) -> Self {
        Walker {
            dlq,
            visibility,
            seen: HashSet::new(),
            held: Vec::new(),
        }
    }

    /// Up to `max` messages not seen before in this walk; empty when the DLQ
    /// has no more. A round of only messages already seen also ends the walk:
    /// their visibility ran out (the walk took longer than the visibility
    /// timeout), or SQS delivered a duplicate.
    pub(super) async fn next(&mut self, max: usize) -> Result<Vec<DeadLetter>, AwsError> {
        let max = u8::try_from(max.clamp(1, 10)).unwrap_or(10);
        let batch = self.dlq.receive(max, RECEIVE_WAIT, self.visibility).await?;
        let mut fresh = Vec::new();
        for m in batch {
            if self.seen.insert(m.message_id.clone()) {
                fresh.push(DeadLetter::from(m));
            } else {
                self.held.push(m.receipt_handle);
            }
        }
        Ok(fresh)
    }

    pub(super) fn hold(&mut self, receipt_handle: &str) {
        self.held.push(receipt_handle.to_string());
    }

    /// Makes every held message visible again; returns how many could not
    /// be (they come back when their visibility times out).
    pub(super) async fn release(self) -> usize {
        let mut failures = 0;
        for receipt in &self.held {
            if self
                .dlq
                .change_visibility(receipt, Duration::ZERO)
                .await
                .is_err()
            {
                failures += 1;
            }
        }
        failures
    }
}
