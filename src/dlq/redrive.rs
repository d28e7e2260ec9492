//! `reflex dlq redrive`: move selected DLQ messages back, body unchanged,
//! deleting each from the DLQ only after its send succeeded.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::walk::Walker;
use super::DeadLetter;
use crate::aws::Queue;

/// Attribute carried by a redriven message: the DLQ it came from.
pub const REDRIVEN_FROM: &str = "RedrivenFrom";
/// Attribute carried by a redriven message: its message id in the DLQ.
pub const REDRIVEN_MESSAGE_ID: &str = "RedrivenMessageId";

/// Which DLQ messages a redrive moves, and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveScope {
    /// Reason codes to move; empty: every code.
    pub codes: Vec<String>,
    /// The queue messages are sent to.
    pub target_url: String,
    /// Move messages whose `SourceQueueUrl` is not the target (`--to`).
    /// Without it they are refused: sending alarms reflex took from one
    /// queue to another is rarely what was meant.
    pub any_source: bool,
}

/// What a redrive does with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Move,
    /// Its code was not asked for.
    OtherCode,
    /// It came from this other queue (and `any_source` is off).
    OtherSource(String),
    /// It carries no `SourceQueueUrl`: reflex did not dead-letter it, so
    /// where it came from is unknown. Never moved, `--to` or not: the DLQ
    /// must not launder a message into the alarm queue.
    NoSource,
}

impl RedriveScope {
    /// Decides one message. A message without `SourceQueueUrl` (put there
    /// by SQS's own redrive policy, or by someone else) is refused.
    pub fn verdict(&self, l: &DeadLetter) -> Verdict {
        if !self.codes.is_empty() && !self.codes.iter().any(|c| c == l.code.as_str()) {
            return Verdict::OtherCode;
        }
        match &l.source_queue_url {
            None => Verdict::NoSource,
            Some(source)
                if !self.any_source
                    && source.trim_end_matches('/') != self.target_url.trim_end_matches('/') =>
            {
                Verdict::OtherSource(source.clone())
            }
            Some(_) => Verdict::Move,
        }
    }
}

/// Knobs of [`redrive`].
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    pub scope: RedriveScope,
    /// Most messages to move; `None`: all that are selected.
    pub max: Option<usize>,
    /// Report what would move; move nothing.
    pub dry_run: bool,
    /// How long messages stay hidden while the walk runs.
    pub visibility: Duration,
}

/// What [`redrive`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RedriveReport {
    pub dlq_url: String,
    pub target_url: String,
    pub dry_run: bool,
    /// Messages looked at.
    pub received: usize,
    /// Messages chosen to move (in a dry run: that would have moved).
    pub selected: usize,
    /// Sent to the target (and deleted from the DLQ, unless counted in
    /// `not_deleted` too).
    pub moved: usize,
    /// Left in the DLQ: another reason code.
    pub skipped: usize,
    /// Left in the DLQ: another source queue (use `--to` to move them), or
    /// no `SourceQueueUrl` at all (never moved).
    pub refused: usize,
    /// Left in the DLQ: the send to the target failed.
    pub failed: usize,
    /// Sent, but DeleteMessage failed: now in both queues.
    pub not_deleted: usize,
    /// Held messages that could not be released at the end; they become
    /// visible again when their visibility timeout runs out.
    pub release_failures: usize,
    /// The walk reached the end of the DLQ (false: it stopped at `max` or on
    /// an error).
    pub complete: bool,
    /// Why the walk stopped early, if it did.
    pub error: Option<String>,
    pub moves: Vec<Moved>,
    pub problems: Vec<Problem>,
}

impl RedriveReport {
    /// Nothing failed: every selected message was moved (or, in a dry run,
    /// would have been) and the walk was not cut short by an error.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.not_deleted == 0 && self.error.is_none()
    }
}

/// One message moved (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moved {
    /// The message id in the DLQ.
    pub message_id: String,
    pub code: String,
    pub original_message_id: Option<String>,
    /// The message id in the target queue (`None` in a dry run).
    pub new_message_id: Option<String>,
}

/// One message that did not move as it should have.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub message_id: String,
    /// `send` or `delete`.
    pub step: &'static str,
    pub error: String,
}

/// The attributes a redriven message is sent with: where it came from, so
/// a second trip to the DLQ can be traced. The reason attributes are not
/// carried over: the body is the message.
pub fn redrive_attributes(l: &DeadLetter, dlq_url: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (REDRIVEN_FROM.to_string(), dlq_url.to_string()),
        (REDRIVEN_MESSAGE_ID.to_string(), l.message_id.clone()),
    ])
}

/// Moves selected DLQ messages to `target`: send the body unchanged, then
/// delete from the DLQ. Messages not moved (other code or source, failed
/// send, dry run) are held until the walk ends and then released. A
/// permanent send failure stops the walk (the next sends would fail the
/// same way); a transient one is counted and the walk goes on.
pub async fn redrive(
    dlq: &dyn Queue,
    target: &dyn Queue,
    options: &RedriveOptions,
) -> RedriveReport {
    let mut report = RedriveReport {
        dlq_url: dlq.url().to_string(),
        target_url: target.url().to_string(),
        dry_run: options.dry_run,
        ..RedriveReport::default()
    };
    let mut walker = Walker::new(dlq, options.visibility);
    'walk: loop {
        // Never receive more than can still be selected, so a message is
        // never received only to be put back for want of room.
        let room = options
            .max
            .map_or(10, |m| m.saturating_sub(report.selected));
        if room == 0 {
            break;
        }
        let batch = match walker.next(room).await {
            Ok(b) if b.is_empty() => {
                report.complete = true;
                break;
            }
            Ok(b) => b,
            Err(e) => {
                report.error = Some(e.to_string());
                break;
            }
        };
        let mut batch = batch.into_iter();
        while let Some(l) = batch.next() {
            report.received += 1;
            match options.scope.verdict(&l) {
                Verdict::OtherCode => {
                    report.skipped += 1;
                    walker.hold(&l.receipt_handle);
                    continue;
                }
                Verdict::OtherSource(_) | Verdict::NoSource => {
                    report.refused += 1;
                    walker.hold(&l.receipt_handle);
                    continue;
                }
                Verdict::Move => report.selected += 1,
            }
            let mut moved = Moved {
                message_id: l.message_id.clone(),
                code: l.code.to_string(),
                original_message_id: l.original_message_id.clone(),
                new_message_id: None,
            };
            if options.dry_run {
                walker.hold(&l.receipt_handle);
                report.moves.push(moved);
                continue;
            }
            match target
                .send(&l.body, &redrive_attributes(&l, &report.dlq_url))
                .await
            {
                Ok(new_id) => {
                    report.moved += 1;
                    moved.new_message_id = Some(new_id);
                    report.moves.push(moved);
                    if let Err(e) = dlq.delete(&l.receipt_handle).await {
                        report.not_deleted += 1;
                        report.problems.push(Problem {
                            message_id: l.message_id.clone(),
                            step: "delete",
                            error: e.to_string(),
                        });
                    }
                }
                Err(e) => {
                    report.failed += 1;
                    walker.hold(&l.receipt_handle);
                    report.problems.push(Problem {
                        message_id: l.message_id.clone(),
                        step: "send",
                        error: e.to_string(),
                    });
                    if !e.transient {
                        report.error = Some(format!("stopped after a permanent send failure: {e}"));
                        // The rest of the batch was received: put it back.
                        for rest in batch.by_ref() {
                            walker.hold(&rest.receipt_handle);
                        }
                        break 'walk;
                    }
                }
            }
        }
    }
    report.release_failures = walker.release().await;
    report
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::aws::AwsError;
    #[test]
    fn scope_by_code_and_source() {
        let s = scope(&["untrusted_topic"]);
        assert_eq!(
            s.verdict(&letter("a", Some("untrusted_topic"), Some(QUEUE), 0)),
            Verdict::Move
        );
        assert_eq!(
            s.verdict(&letter("b", Some("not_json"), Some(QUEUE), 0)),
            Verdict::OtherCode
        );
        let other = "https://sqs.us-east-1.amazonaws.com/123456789012/other";
        assert_eq!(
            s.verdict(&letter("c", Some("untrusted_topic"), Some(other), 0)),
            Verdict::OtherSource(other.to_string())
        );
        let anywhere = RedriveScope {
            any_source: true,
            ..s.clone()
        };
        assert_eq!(
            anywhere.verdict(&letter("c", Some("untrusted_topic"), Some(other), 0)),
            Verdict::Move
        );
        // No SourceQueueUrl (SQS's own redrive, or a message someone sent
        // to the DLQ): refused, even with --to.
        assert_eq!(
            scope(&[]).verdict(&letter("d", None, None, 0)),
            Verdict::NoSource
        );
        assert_eq!(
            scope(&["max_receive_count"]).verdict(&letter("d", None, None, 0)),
            Verdict::NoSource
        );
        assert_eq!(
            anywhere.verdict(&letter("e", Some("untrusted_topic"), None, 0)),
            Verdict::NoSource
        );
    }

    #[tokio::test]
    async fn redrive_moves_the_body_unchanged_then_deletes() {
        let (dlq, queue) = queues(vec![message("m1", Some("untrusted_topic"), Some(QUEUE), 0)]);
        let report = redrive(&dlq, &queue, &options(&[])).await;
        assert!(report.ok(), "{report:#?}");
        assert_eq!((report.received, report.selected, report.moved), (1, 1, 1));
        assert!(report.complete);
        assert_eq!(report.moves[0].new_message_id.as_deref(), Some("sent-1"));
        let sent = queue.state().sent.clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "body of m1");
        assert_eq!(sent[0].1[REDRIVEN_FROM], DLQ);
        assert_eq!(sent[0].1[REDRIVEN_MESSAGE_ID], "m1");
        assert!(!sent[0].1.contains_key("ReasonCode"));
        let s = dlq.state();
        assert_eq!(s.deleted, ["rh-m1"]);
        assert!(s.queue.is_empty());
        // Moved messages are deleted, not released.
        assert!(s.visibility_changes.is_empty());
    }

    #[tokio::test]
    async fn redrive_keeps_and_releases_a_message_whose_send_failed() {
        let (dlq, queue) = queues(vec![
            message("m1", Some("action_failed"), Some(QUEUE), 0),
            message("m2", Some("action_failed"), Some(QUEUE), 0),
        ]);
        queue.fail_next(
            "sqs:SendMessage",
            AwsError::transient("sqs", "SendMessage", "throttled"),
        );
        let report = redrive(&dlq, &queue, &options(&[])).await;
        assert!(!report.ok());
        assert_eq!((report.selected, report.moved, report.failed), (2, 1, 1));
        assert_eq!(report.problems[0].message_id, "m1");
        assert_eq!(report.problems[0].step, "send");
        let s = dlq.state();
        assert_eq!(s.deleted, ["rh-m2"], "the failed one is not deleted");
        assert_eq!(s.queue.len(), 1);
        assert!(s.queue[0].1, "and it is visible again");
        assert_eq!(s.visibility_changes, [("rh-m1".to_string(), 0)]);
    }

    #[tokio::test]
    async fn a_permanent_send_failure_stops_the_walk_and_releases_everything() {
        let messages = (0..5)
            .map(|i| message(&format!("m{i}"), Some("action_failed"), Some(QUEUE), 0))
            .collect();
        let (dlq, queue) = queues(messages);
        queue.fail_next(
            "sqs:SendMessage",
            AwsError::permanent("sqs", "SendMessage", "denied"),
        );
        let report = redrive(&dlq, &queue, &options(&[])).await;
        assert!(!report.ok());
        assert_eq!((report.received, report.moved, report.failed), (1, 0, 1));
        assert!(!report.complete);
        assert!(report.error.as_deref().unwrap_or("").contains("denied"));
        assert!(dlq.state().deleted.is_empty());
        assert_eq!(visible(&dlq), 5);
    }

    #[tokio::test]
    async fn a_failed_delete_after_a_send_is_reported() {
        let (dlq, queue) = queues(vec![message("m1", Some("not_json"), Some(QUEUE), 0)]);
        dlq.fail_next(
            "sqs:DeleteMessage",
            AwsError::transient("sqs", "DeleteMessage", "boom"),
        );
        let report = redrive(&dlq, &queue, &options(&[])).await;
        assert!(!report.ok());
        assert_eq!((report.moved, report.not_deleted), (1, 1));
        assert_eq!(report.problems[0].step, "delete");
        assert_eq!(queue.state().sent.len(), 1);
    }

    #[tokio::test]
    async fn redrive_filters_by_code_and_refuses_other_sources() {
        let other = "https://sqs.us-east-1.amazonaws.com/123456789012/other";
        let (dlq, queue) = queues(vec![
            message("m1", Some("untrusted_topic"), Some(QUEUE), 0),
            message("m2", Some("not_json"), Some(QUEUE), 0),
            message("m3", Some("untrusted_topic"), Some(other), 0),
            message("m4", Some("untrusted_topic"), Some(QUEUE), 0),
        ]);
        let report = redrive(&dlq, &queue, &options(&["untrusted_topic"])).await;
        assert!(report.ok(), "{report:#?}");
        assert_eq!(
            (
                report.received,
                report.moved,
                report.skipped,
                report.refused
            ),
            (4, 2, 1, 1)
        );
        let bodies: Vec<String> = queue.state().sent.iter().map(|(b, _)| b.clone()).collect();
        assert_eq!(bodies, ["body of m1", "body of m4"]);
        let left: Vec<String> = dlq
            .state()
            .queue
            .iter()
            .map(|(m, _)| m.message_id.clone())
            .collect();
        assert_eq!(left, ["m2", "m3"]);
        assert_eq!(visible(&dlq), 2);
    }

    #[tokio::test]
    async fn dry_run_moves_nothing_and_releases_everything() {
        let (dlq, queue) = queues(vec![
            message("m1", Some("untrusted_topic"), Some(QUEUE), 0),
            message("m2", Some("not_json"), Some(QUEUE), 0),
        ]);
        let report = redrive(
            &dlq,
            &queue,
            &RedriveOptions {
                dry_run: true,
                ..options(&["untrusted_topic"])
            },
        )
        .await;
        assert!(report.ok());
        assert_eq!((report.selected, report.moved, report.skipped), (1, 0, 1));
        assert_eq!(report.moves[0].message_id, "m1");
        assert_eq!(report.moves[0].new_message_id, None);
        assert!(queue.state().sent.is_empty());
        assert!(dlq.state().deleted.is_empty());
        assert_eq!(visible(&dlq), 2);
    }

    #[tokio::test]
    async fn max_limits_the_moves_and_receives_no_more_than_it_can_move() {
        let messages = (0..25)
            .map(|i| message(&format!("m{i:02}"), Some("not_json"), Some(QUEUE), 0))
            .collect();
        let (dlq, queue) = queues(messages);
        let report = redrive(
            &dlq,
            &queue,
            &RedriveOptions {
                max: Some(12),
                ..options(&[])
            },
        )
        .await;
        assert!(report.ok());
        assert_eq!((report.received, report.moved), (12, 12));
        assert!(!report.complete);
        assert_eq!(dlq.state().queue.len(), 13);
        assert_eq!(visible(&dlq), 13);
        assert!(dlq.state().visibility_changes.is_empty());
    }
}
