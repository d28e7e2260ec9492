//! Deleting finished messages in batches: the messages that finish within
//! a few milliseconds of each other are deleted with one
//! `DeleteMessageBatch` (up to 10), so draining a queue costs about one
//! delete call per receive instead of one per message. Each message still
//! gets its own result: an entry that failed is handled like a failed
//! `DeleteMessage` (the message comes back; its claims keep it from acting
//! twice).

use std::sync::Arc;
use std::time::Duration;

use super::batch::Batcher;
use crate::aws::{AwsError, Queue};

pub use super::batch::{LINGER, MAX_BATCH};

/// Collects deletes for one queue and sends them in batches.
pub struct BatchDeleter(Batcher<String>);

impl BatchDeleter {
    pub fn new(queue: Arc<dyn Queue>, linger: Duration) -> Self {
        BatchDeleter(Batcher::new(
            queue,
            linger,
            "DeleteMessageBatch",
            |queue, receipts| Box::pin(async move { queue.delete_batch(&receipts).await }),
        ))
    }

    /// Deletes one message, batched with those that finish with it.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), AwsError> {
        self.0.submit(receipt_handle.to_owned()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeAws;

    /// A queue that records each batch it is asked to delete and fails the
    /// receipts named `bad-*`.
    #[derive(Default)]
    struct Batches {
        fake: FakeAws,
        seen: std::sync::Mutex<Vec<Vec<String>>>,
    }

    #[async_trait::async_trait]
    impl Queue for Batches {
        async fn receive(
            &self,
            max: u8,
            wait: Duration,
            visibility: Duration,
        ) -> Result<Vec<crate::aws::QueueMessage>, AwsError> {
            self.fake.receive(max, wait, visibility).await
        }
        async fn delete(&self, r: &str) -> Result<(), AwsError> {
            self.fake.delete(r).await
        }
        async fn delete_batch(&self, receipts: &[String]) -> Vec<Result<(), AwsError>> {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(receipts.to_vec());
            receipts
                .iter()
                .map(|r| {
                    if r.starts_with("bad") {
                        Err(AwsError::permanent(
                            "sqs",
                            "DeleteMessageBatch",
                            "ReceiptHandleIsInvalid",
                        ))
                    } else {
                        Ok(())
                    }
                })
                .collect()
        }
        async fn change_visibility(&self, r: &str, t: Duration) -> Result<(), AwsError> {
            self.fake.change_visibility(r, t).await
        }
        async fn send(
            &self,
            body: &str,
            attributes: &std::collections::BTreeMap<String, String>,
        ) -> Result<String, AwsError> {
            self.fake.send(body, attributes).await
        }
        async fn ping(&self) -> Result<(), AwsError> {
            self.fake.ping().await
        }
        fn url(&self) -> &str {
            self.fake.url()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deletes_that_finish_together_share_one_call_and_keep_their_own_results() {
        let queue = Arc::new(Batches::default());
        let deleter = Arc::new(BatchDeleter::new(queue.clone(), LINGER));
        let mut tasks = Vec::new();
        for r in ["a", "b", "bad-c", "d"] {
            let deleter = Arc::clone(&deleter);
            tasks.push(tokio::spawn(async move { deleter.delete(r).await }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("task").is_ok());
        }
        assert_eq!(results, [true, true, false, true]);
        assert_eq!(
            *queue.seen.lock().unwrap(),
            vec![vec!["a", "b", "bad-c", "d"]],
            "one batch for four messages"
        );
        // Twelve at once: ten, then two. A later one waits at most LINGER.
        let mut tasks = Vec::new();
        for i in 0..12 {
            let deleter = Arc::clone(&deleter);
            tasks.push(tokio::spawn(async move {
                deleter.delete(&format!("m{i}")).await
            }));
        }
        for t in tasks {
            assert!(t.await.expect("task").is_ok());
        }
        let seen = queue.seen.lock().unwrap().clone();
        assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [4, 10, 2]);
        let started = tokio::time::Instant::now();
        deleter.delete("alone").await.expect("deleted");
        assert!(started.elapsed() <= LINGER, "{:?}", started.elapsed());
    }
}
