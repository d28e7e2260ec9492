//! Queue calls batched: the requests that arrive within a few milliseconds
//! of each other (up to 10, SQS's limit) go out as one batch call, and each
//! gets its own result back. Used for deletes ([`super::deleter`]) and for
//! heartbeats ([`VisibilityBatcher`]): the messages of one receive start,
//! extend and finish together, so they cost one call where they cost one
//! each.
//!
//! Each batch is sent on its own task: a batch whose reply is lost (a
//! lossy network) holds up only its own entries, never the batches after
//! it. An entry whose batch failed, or that the reply does not mention, is
//! a failed call for its caller, handled as a failed single call would be.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::aws::{AwsError, Queue};

/// Most entries SQS takes in one batch.
pub const MAX_BATCH: usize = 10;
/// How long a request may wait for others to join its batch.
pub const LINGER: Duration = Duration::from_millis(5);

/// One result per entry, in order.
pub type BatchFuture = Pin<Box<dyn Future<Output = Vec<Result<(), AwsError>>> + Send>>;
/// Sends one batch of entries on a queue.
pub type SendBatch<E> = fn(Arc<dyn Queue>, Vec<E>) -> BatchFuture;

type Request<E> = (E, oneshot::Sender<Result<(), AwsError>>);

/// Collects requests of one kind for one queue and sends them in batches.
pub struct Batcher<E> {
    queue: Arc<dyn Queue>,
    linger: Duration,
    /// How long a batch call may take before it is dropped (its entries
    /// fail), if less than the SDK's own deadline.
    bound: Option<Duration>,
    operation: &'static str,
    send: SendBatch<E>,
    /// Started on first use, inside the runtime.
    tx: OnceLock<mpsc::UnboundedSender<Request<E>>>,
}

impl<E: Send + 'static> Batcher<E> {
    /// A batcher sending with `send`; `operation` names the batch call in
    /// the errors it makes up itself.
    pub fn new(
        queue: Arc<dyn Queue>,
        linger: Duration,
        operation: &'static str,
        send: SendBatch<E>,
    ) -> Self {
        Batcher {
            queue,
            linger,
            bound: None,
            operation,
            send,
            tx: OnceLock::new(),
        }
    }

    /// This batcher, dropping a batch call after `bound`: its entries fail
    /// as timed out, and the SDK makes no further attempt of it.
    pub fn bounded(mut self, bound: Duration) -> Self {
        self.bound = Some(bound);
        self
    }

    /// Sends `entry` with those that arrive with it; its own result.
    pub async fn submit(&self, entry: E) -> Result<(), AwsError> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(
                Arc::clone(&self.queue),
                rx,
                (self.linger, self.bound),
                self.operation,
                self.send,
            ));
            tx
        });
        let operation = self.operation;
        let lost = || AwsError::transient("sqs", operation, "the batcher stopped");
        let (done, result) = oneshot::channel();
        if tx.send((entry, done)).is_err() {
            return Err(lost());
        }
        result.await.unwrap_or_else(|_| Err(lost()))
    }
}

/// The batching loop: waits for a request, gathers those that arrive
/// within `linger` (up to [`MAX_BATCH`]), sends them on a task of their
/// own, and goes back to waiting at once.
async fn run<E: Send + 'static>(
    queue: Arc<dyn Queue>,
    mut rx: mpsc::UnboundedReceiver<Request<E>>,
    (linger, bound): (Duration, Option<Duration>),
    operation: &'static str,
    send: SendBatch<E>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let (entries, replies): (Vec<E>, Vec<_>) = batch.into_iter().unzip();
        let count = entries.len();
        let sent = send(Arc::clone(&queue), entries);
        tokio::spawn(async move {
            let results = match bound {
                None => sent.await,
                Some(bound) => match tokio::time::timeout(bound, sent).await {
                    Ok(results) => results,
                    Err(_) => vec![Err(AwsError::timeout("sqs", operation, bound)); count],
                },
            };
            let mut results = results.into_iter();
            for reply in replies {
                let result = results.next().unwrap_or_else(|| {
                    Err(AwsError::transient(
                        "sqs",
                        operation,
                        "no result for this entry",
                    ))
                });
                // The caller may have given up waiting (a heartbeat's own
                // timeout): nobody to tell.
                let _ = reply.send(result);
            }
        });
    }
}

/// Changes message visibilities in batches (`ChangeMessageVisibilityBatch`):
/// the heartbeats of the messages in flight together.
pub struct VisibilityBatcher(Batcher<(String, Duration)>);

impl VisibilityBatcher {
    /// `bound`: how long a heartbeat may take
    /// ([`super::Settings::heartbeat_timeout`]); a batch call is dropped
    /// then, so that no SDK retry of it lands after its callers gave up.
    pub fn new(queue: Arc<dyn Queue>, linger: Duration, bound: Duration) -> Self {
        VisibilityBatcher(
            Batcher::new(
                queue,
                linger,
                "ChangeMessageVisibilityBatch",
                |queue, entries| {
                    Box::pin(async move { queue.change_visibility_batch(&entries).await })
                },
            )
            .bounded(bound),
        )
    }

    /// Makes one message invisible for `timeout` from now, batched with
    /// the changes that come with it.
    pub async fn change(&self, receipt_handle: &str, timeout: Duration) -> Result<(), AwsError> {
        self.0.submit((receipt_handle.to_owned(), timeout)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeAws;

    #[tokio::test(start_paused = true)]
    async fn changes_that_come_together_share_one_call_and_keep_their_own_results() {
        let fake = FakeAws::new();
        let batcher = Arc::new(VisibilityBatcher::new(
            Arc::new(fake.clone()),
            LINGER,
            Duration::from_secs(6),
        ));
        // The first entry takes a failure as a single call would.
        fake.fail_next(
            "sqs:ChangeMessageVisibility",
            AwsError::permanent("sqs", "ChangeMessageVisibility", "ReceiptHandleIsInvalid"),
        );
        let mut tasks = Vec::new();
        for (i, r) in ["a", "b", "c"].into_iter().enumerate() {
            let batcher = Arc::clone(&batcher);
            tasks.push(tokio::spawn(async move {
                // In order, within the linger.
                tokio::time::sleep(Duration::from_millis(i as u64)).await;
                batcher.change(r, Duration::from_secs(60)).await
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("task"));
        }
        let first_error = results.iter().position(Result::is_err);
        assert_eq!(first_error, Some(0), "{results:?}");
        assert!(results[1].is_ok() && results[2].is_ok(), "{results:?}");
        let s = fake.state();
        assert_eq!(s.calls, ["sqs:ChangeMessageVisibilityBatch"], "one call");
        assert_eq!(
            s.visibility_changes,
            [("b".to_string(), 60), ("c".to_string(), 60)]
        );
    }

    /// A batch whose reply never comes holds up only its own entries: the
    /// next batch goes out and is answered; the stalled one fails at its
    /// bound.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_batch_does_not_hold_up_the_next() {
        let fake = FakeAws::new();
        let batcher = Arc::new(VisibilityBatcher::new(
            Arc::new(fake.clone()),
            LINGER,
            Duration::from_secs(6),
        ));
        fake.stall_next("sqs:ChangeMessageVisibilityBatch", 1);
        let started = tokio::time::Instant::now();
        let stalled = {
            let batcher = Arc::clone(&batcher);
            tokio::spawn(async move {
                let a = batcher.change("a", Duration::from_secs(60));
                let b = batcher.change("b", Duration::from_secs(60));
                tokio::join!(a, b)
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = tokio::time::timeout(
            Duration::from_secs(1),
            batcher.change("c", Duration::from_secs(60)),
        )
        .await;
        assert_eq!(next, Ok(Ok(())), "answered while the first batch hangs");
        assert!(!stalled.is_finished());
        // The stalled batch is dropped at its bound: both entries failed,
        // as timed out.
        let (a, b) = stalled.await.expect("task");
        for r in [a, b] {
            let e = r.expect_err("no reply");
            assert!(e.timed_out && e.transient, "{e:?}");
        }
        assert!(started.elapsed() <= Duration::from_secs(7));
        assert_eq!(
            fake.state().calls,
            [
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:ChangeMessageVisibility"
            ]
        );
    }
}
