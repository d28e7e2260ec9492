//! Fake queues and dead letters for the `dlq` tests.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::{DeadLetter, InspectOptions, RedriveOptions, RedriveScope};
use crate::aws::fake::FakeAws;
use crate::aws::QueueMessage;
use crate::event::format_millis;

pub const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/alarms";
pub const DLQ: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/alarms-dlq";

pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("a time")
}

pub fn message(id: &str, code: Option<&str>, source: Option<&str>, t: i64) -> QueueMessage {
    let mut attributes = BTreeMap::new();
    if let Some(code) = code {
        attributes.insert("ReasonCode".to_string(), code.to_string());
        attributes.insert("ReasonText".to_string(), format!("why {id}"));
        attributes.insert("OriginalMessageId".to_string(), format!("orig-{id}"));
        attributes.insert("ReceiveCount".to_string(), "1".to_string());
        attributes.insert("FirstReceivedAt".to_string(), format_millis(&at(t)));
    }
    if let Some(source) = source {
        attributes.insert("SourceQueueUrl".to_string(), source.to_string());
    }
    QueueMessage {
        message_id: id.to_string(),
        receipt_handle: format!("rh-{id}"),
        body: format!("body of {id}"),
        receive_count: 1,
        sent_at: Some(at(t + 1000)),
        first_received_at: None,
        attributes,
    }
}

/// A fake DLQ holding `messages`, and a fake alarm queue.
pub fn queues(messages: Vec<QueueMessage>) -> (FakeAws, FakeAws) {
    let dlq = FakeAws::new().other_queue(DLQ);
    dlq.state()
        .queue
        .extend(messages.into_iter().map(|m| (m, true)));
    (dlq, FakeAws::new().other_queue(QUEUE))
}

pub fn letter(id: &str, code: Option<&str>, source: Option<&str>, t: i64) -> DeadLetter {
    DeadLetter::from(message(id, code, source, t))
}

pub fn visible(q: &FakeAws) -> usize {
    q.state().queue.iter().filter(|(_, v)| *v).count()
}

pub fn scope(codes: &[&str]) -> RedriveScope {
    RedriveScope {
        codes: codes.iter().map(|c| c.to_string()).collect(),
        target_url: QUEUE.to_string(),
        any_source: false,
    }
}

pub fn options(codes: &[&str]) -> RedriveOptions {
    RedriveOptions {
        scope: scope(codes),
        max: None,
        dry_run: false,
        visibility: Duration::from_secs(60),
    }
}

pub fn inspect_options() -> InspectOptions {
    InspectOptions {
        max: 1000,
        samples: 2,
        body_chars: 7,
        visibility: Duration::from_secs(60),
    }
}
