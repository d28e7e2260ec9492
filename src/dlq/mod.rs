//! The dead-letter queue tools behind `reflex dlq`: see what is in the DLQ
//! without consuming it ([`inspect()`]), and move messages back to the alarm
//! queue once the cause is fixed ([`redrive()`]). Everything goes through the
//! [`Queue`] trait, so the logic is tested with fakes; the grouping and the
//! selection are pure.
//!
//! Both walk the DLQ the same way, *peek and hold*: receive in batches of up
//! to ten with a visibility timeout long enough for the whole walk, keep
//! every message that is not moved invisible until the walk ends, then
//! release them all (visibility 0). Releasing each batch at once would not
//! work: SQS would hand the same messages out again on the next receive and
//! the walk would never get past them. A crash mid-walk loses nothing: held
//! messages come back on their own when the visibility timeout runs out.
//!
//! A redriven message is sent with its **body unchanged**, and deleted from
//! the DLQ only after the send succeeded: at worst a message is in both
//! queues (reflex's dedup makes the second delivery harmless), never in
//! neither.
//!
//! The files follow the jobs: [`walk`] (peek and hold), [`inspect`]
//! (grouping by reason code), [`redrive`] (selection and moving). The
//! attributes read here are the contract of [`crate::dead_letter`].

use chrono::{DateTime, Utc};

use crate::aws::QueueMessage;
use crate::dead_letter::{DeadLetterAttributes, DeadLetterCode, ReasonCode};

pub mod inspect;
pub mod redrive;
mod walk;

#[cfg(test)]
mod fixtures;

pub use inspect::{group, inspect, Group, InspectOptions, Inspection, Sample};
pub use redrive::{
    redrive, redrive_attributes, Moved, Problem, RedriveOptions, RedriveReport, RedriveScope,
    Verdict, REDRIVEN_FROM, REDRIVEN_MESSAGE_ID,
};

/// The group of DLQ messages without a `ReasonCode` attribute: SQS's redrive
/// policy moved them after `maxReceiveCount` receives, reflex never chose to.
pub const NO_REASON_CODE: &str = DeadLetterCode::MaxReceiveCount.as_str();

/// What a [`NO_REASON_CODE`] group means, for people reading a report.
pub const NO_REASON_NOTE: &str = "no ReasonCode: SQS moved these after maxReceiveCount receives; \
     each receive failed transiently (throttling, AWS errors or timeouts, a guard kept it busy) \
     and it never succeeded; search reflex's logs for the message id";

/// One message in the DLQ, with the attributes reflex put on it
/// ([`DeadLetterAttributes`], written by the worker).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message id in the DLQ.
    pub message_id: String,
    pub receipt_handle: String,
    /// The original body, byte for byte.
    pub body: String,
    /// `ReasonCode`, or [`NO_REASON_CODE`].
    pub code: ReasonCode,
    /// `ReasonText`.
    pub reason: Option<String>,
    /// `OriginalMessageId`: the message id in the source queue.
    pub original_message_id: Option<String>,
    /// `SourceQueueUrl`: the queue reflex took it from.
    pub source_queue_url: Option<String>,
    /// `ReceiveCount`: receives from the source queue before it was given up.
    pub receive_count: Option<u32>,
    /// `FirstReceivedAt`, or when SQS first enqueued the message if absent.
    pub first_received_at: Option<DateTime<Utc>>,
}

impl From<QueueMessage> for DeadLetter {
    fn from(m: QueueMessage) -> Self {
        let a = DeadLetterAttributes::from_attributes(&m.attributes);
        DeadLetter {
            code: a.code,
            reason: a.reason,
            original_message_id: a.original_message_id,
            source_queue_url: a.source_queue_url,
            receive_count: a.receive_count,
            first_received_at: a.first_received_at.or(m.sent_at),
            message_id: m.message_id,
            receipt_handle: m.receipt_handle,
            body: m.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    #[test]
    fn dead_letter_reads_reflex_attributes() {
        let l = letter("m1", Some("not_json"), Some(QUEUE), 5);
        assert_eq!(l.code.as_str(), "not_json");
        assert_eq!(l.reason.as_deref(), Some("why m1"));
        assert_eq!(l.original_message_id.as_deref(), Some("orig-m1"));
        assert_eq!(l.receive_count, Some(1));
        assert_eq!(l.first_received_at, Some(at(5)));
        assert_eq!(l.body, "body of m1");
    }

    #[test]
    fn sqs_redriven_messages_group_as_max_receive_count() {
        let l = letter("m1", None, None, 5);
        assert_eq!(l.code.as_str(), NO_REASON_CODE);
        assert_eq!(l.code, ReasonCode::Known(DeadLetterCode::MaxReceiveCount));
        assert_eq!(l.reason, None);
        // No FirstReceivedAt: when SQS first enqueued it.
        assert_eq!(l.first_received_at, Some(at(1005)));
    }
}
