//! The dead-letter queue tools behind `reflex dlq`: see what is in the DLQ
//! without consuming it ([`inspect`]), and move messages back to the alarm
//! queue once the cause is fixed ([`redrive`]). Everything goes through the
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{AwsError, Queue, QueueMessage};
use crate::event::{format_millis, parse_aws_time};

/// The group of DLQ messages without a `ReasonCode` attribute: SQS's redrive
/// policy moved them after `maxReceiveCount` receives, reflex never chose to.
pub const NO_REASON_CODE: &str = "max_receive_count";

/// What a [`NO_REASON_CODE`] group means, for people reading a report.
pub const NO_REASON_NOTE: &str = "no ReasonCode: SQS moved these after maxReceiveCount receives; \
     each receive failed transiently (throttling, AWS errors or timeouts, a guard kept it busy) \
     and it never succeeded; search reflex's logs for the message id";

/// Long-poll wait of each receive: long enough that an empty answer means
/// the queue has no visible message (a short poll samples only some of the
/// SQS servers and can come back empty from a non-empty queue).
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// Attribute carried by a redriven message: the DLQ it came from.
pub const REDRIVEN_FROM: &str = "RedrivenFrom";
/// Attribute carried by a redriven message: its message id in the DLQ.
pub const REDRIVEN_MESSAGE_ID: &str = "RedrivenMessageId";

/// One message in the DLQ, with the attributes reflex put on it
/// (see [`crate::worker::dead_letter_attributes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message id in the DLQ.
    pub message_id: String,
    pub receipt_handle: String,
    /// The original body, byte for byte.
    pub body: String,
    /// `ReasonCode`, or [`NO_REASON_CODE`].
    pub code: String,
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
        let attr = |k: &str| m.attributes.get(k).filter(|v| !v.is_empty()).cloned();
        DeadLetter {
            code: attr("ReasonCode").unwrap_or_else(|| NO_REASON_CODE.to_string()),
            reason: attr("ReasonText"),
            original_message_id: attr("OriginalMessageId"),
            source_queue_url: attr("SourceQueueUrl"),
            receive_count: attr("ReceiveCount").and_then(|c| c.parse().ok()),
            first_received_at: attr("FirstReceivedAt")
                .and_then(|t| parse_aws_time(&t))
                .or(m.sent_at),
            message_id: m.message_id,
            receipt_handle: m.receipt_handle,
            body: m.body,
        }
    }
}

/// Walks a DLQ with peek and hold (see the module docs).
struct Walker<'a> {
    dlq: &'a dyn Queue,
    visibility: Duration,
    seen: HashSet<String>,
    /// Receipt handles to release when the walk ends.
    held: Vec<String>,
}

impl<'a> Walker<'a> {
    fn new(dlq: &'a dyn Queue, visibility: Duration) -> Self {
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
    async fn next(&mut self, max: usize) -> Result<Vec<DeadLetter>, AwsError> {
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

    fn hold(&mut self, receipt_handle: &str) {
        self.held.push(receipt_handle.to_string());
    }

    /// Makes every held message visible again; returns how many could not
    /// be (they come back when their visibility times out).
    async fn release(self) -> usize {
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

/// Knobs of [`inspect`].
#[derive(Debug, Clone, Copy)]
pub struct InspectOptions {
    /// Most messages to look at.
    pub max: usize,
    /// Samples shown per group.
    pub samples: usize,
    /// Longest body shown in a sample, in characters.
    pub body_chars: usize,
    /// How long messages stay hidden while the walk runs.
    pub visibility: Duration,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    pub dlq_url: String,
    /// Messages looked at.
    pub scanned: usize,
    /// The walk reached the end of the DLQ (false: it stopped at `max`).
    pub complete: bool,
    /// Messages that could not be released at the end; they become visible
    /// again when their visibility timeout runs out.
    pub release_failures: usize,
    /// Most messages first.
    pub groups: Vec<Group>,
}

/// The DLQ messages with one reason code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub code: String,
    pub count: usize,
    /// What the code means, when it is not obvious.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    /// Earliest and latest `FirstReceivedAt` in the group.
    pub earliest: Option<String>,
    pub latest: Option<String>,
    pub samples: Vec<Sample>,
}

/// One message of a group, as shown to a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub message_id: String,
    pub original_message_id: Option<String>,
    pub reason: Option<String>,
    pub receive_count: Option<u32>,
    pub source_queue_url: Option<String>,
    pub first_received_at: Option<String>,
    /// The body, cut to the sample length.
    pub body: String,
    pub body_truncated: bool,
}

/// Groups messages by reason code: most messages first, then by code; the
/// first `samples` messages of each group (in walk order) as samples.
pub fn group(letters: &[DeadLetter], samples: usize, body_chars: usize) -> Vec<Group> {
    let mut by_code: HashMap<&str, Vec<&DeadLetter>> = HashMap::new();
    for l in letters {
        by_code.entry(l.code.as_str()).or_default().push(l);
    }
    let mut groups: Vec<Group> = by_code
        .into_iter()
        .map(|(code, members)| {
            let times = members.iter().filter_map(|l| l.first_received_at);
            Group {
                code: code.to_string(),
                count: members.len(),
                note: (code == NO_REASON_CODE).then_some(NO_REASON_NOTE),
                earliest: times.clone().min().as_ref().map(format_millis),
                latest: times.max().as_ref().map(format_millis),
                samples: members
                    .iter()
                    .take(samples)
                    .map(|l| sample(l, body_chars))
                    .collect(),
            }
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
    groups
}

fn sample(l: &DeadLetter, body_chars: usize) -> Sample {
    let (body, body_truncated) = match l.body.char_indices().nth(body_chars) {
        Some((cut, _)) => (l.body[..cut].to_string(), true),
        None => (l.body.clone(), false),
    };
    Sample {
        message_id: l.message_id.clone(),
        original_message_id: l.original_message_id.clone(),
        reason: l.reason.clone(),
        receive_count: l.receive_count,
        source_queue_url: l.source_queue_url.clone(),
        first_received_at: l.first_received_at.as_ref().map(format_millis),
        body,
        body_truncated,
    }
}

/// Looks at up to `max` DLQ messages and groups them by reason code,
/// consuming none: every message received is released at the end, also when
/// a receive fails.
pub async fn inspect(dlq: &dyn Queue, options: &InspectOptions) -> Result<Inspection, AwsError> {
    let mut walker = Walker::new(dlq, options.visibility);
    let mut letters: Vec<DeadLetter> = Vec::new();
    let walked = loop {
        let room = options.max.saturating_sub(letters.len());
        if room == 0 {
            break Ok(false);
        }
        match walker.next(room).await {
            Ok(batch) if batch.is_empty() => break Ok(true),
            Ok(batch) => {
                for l in batch {
                    walker.hold(&l.receipt_handle);
                    letters.push(l);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let release_failures = walker.release().await;
    let complete = walked?;
    Ok(Inspection {
        dlq_url: dlq.url().to_string(),
        scanned: letters.len(),
        complete,
        release_failures,
        groups: group(&letters, options.samples, options.body_chars),
    })
}

/// Which DLQ messages a redrive moves, and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
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
}

impl Selection {
    /// Decides one message. A message without `SourceQueueUrl` (moved by
    /// SQS's redrive policy) is taken to come from the target.
    pub fn verdict(&self, l: &DeadLetter) -> Verdict {
        if !self.codes.is_empty() && !self.codes.contains(&l.code) {
            return Verdict::OtherCode;
        }
        match &l.source_queue_url {
            Some(source)
                if !self.any_source
                    && source.trim_end_matches('/') != self.target_url.trim_end_matches('/') =>
            {
                Verdict::OtherSource(source.clone())
            }
            _ => Verdict::Move,
        }
    }
}

/// Knobs of [`redrive`].
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    pub selection: Selection,
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
    /// Left in the DLQ: another source queue (use `--to` to move them).
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
            match options.selection.verdict(&l) {
                Verdict::OtherCode => {
                    report.skipped += 1;
                    walker.hold(&l.receipt_handle);
                    continue;
                }
                Verdict::OtherSource(_) => {
                    report.refused += 1;
                    walker.hold(&l.receipt_handle);
                    continue;
                }
                Verdict::Move => report.selected += 1,
            }
            let mut moved = Moved {
                message_id: l.message_id.clone(),
                code: l.code.clone(),
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
    use super::*;
    use crate::aws::fake::FakeAws;
    use chrono::TimeZone;

    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/alarms";
    const DLQ: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/alarms-dlq";

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("a time")
    }

    fn message(id: &str, code: Option<&str>, source: Option<&str>, t: i64) -> QueueMessage {
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
    fn queues(messages: Vec<QueueMessage>) -> (FakeAws, FakeAws) {
        let dlq = FakeAws::new().other_queue(DLQ);
        dlq.state()
            .queue
            .extend(messages.into_iter().map(|m| (m, true)));
        (dlq, FakeAws::new().other_queue(QUEUE))
    }

    fn letter(id: &str, code: Option<&str>, source: Option<&str>, t: i64) -> DeadLetter {
        DeadLetter::from(message(id, code, source, t))
    }

    fn visible(q: &FakeAws) -> usize {
        q.state().queue.iter().filter(|(_, v)| *v).count()
    }

    fn selection(codes: &[&str]) -> Selection {
        Selection {
            codes: codes.iter().map(|c| c.to_string()).collect(),
            target_url: QUEUE.to_string(),
            any_source: false,
        }
    }

    fn options(codes: &[&str]) -> RedriveOptions {
        RedriveOptions {
            selection: selection(codes),
            max: None,
            dry_run: false,
            visibility: Duration::from_secs(60),
        }
    }

    fn inspect_options() -> InspectOptions {
        InspectOptions {
            max: 1000,
            samples: 2,
            body_chars: 7,
            visibility: Duration::from_secs(60),
        }
    }

    #[test]
    fn dead_letter_reads_reflex_attributes() {
        let l = letter("m1", Some("not_json"), Some(QUEUE), 5);
        assert_eq!(l.code, "not_json");
        assert_eq!(l.reason.as_deref(), Some("why m1"));
        assert_eq!(l.original_message_id.as_deref(), Some("orig-m1"));
        assert_eq!(l.receive_count, Some(1));
        assert_eq!(l.first_received_at, Some(at(5)));
        assert_eq!(l.body, "body of m1");
    }

    #[test]
    fn sqs_redriven_messages_group_as_max_receive_count() {
        let l = letter("m1", None, None, 5);
        assert_eq!(l.code, NO_REASON_CODE);
        assert_eq!(l.reason, None);
        // No FirstReceivedAt: when SQS first enqueued it.
        assert_eq!(l.first_received_at, Some(at(1005)));
    }

    #[test]
    fn groups_by_code_with_counts_times_and_samples() {
        let letters = vec![
            letter("a1", Some("untrusted_topic"), Some(QUEUE), 30),
            letter("b1", Some("not_json"), Some(QUEUE), 10),
            letter("a2", Some("untrusted_topic"), Some(QUEUE), 10),
            letter("c1", None, None, 0),
            letter("a3", Some("untrusted_topic"), Some(QUEUE), 20),
        ];
        let groups = group(&letters, 2, 7);
        let codes: Vec<(&str, usize)> = groups.iter().map(|g| (g.code.as_str(), g.count)).collect();
        assert_eq!(
            codes,
            [
                ("untrusted_topic", 3),
                ("max_receive_count", 1),
                ("not_json", 1)
            ]
        );
        let g = &groups[0];
        assert_eq!(g.earliest.as_deref(), Some(format_millis(&at(10)).as_str()));
        assert_eq!(g.latest.as_deref(), Some(format_millis(&at(30)).as_str()));
        let ids: Vec<&str> = g.samples.iter().map(|s| s.message_id.as_str()).collect();
        assert_eq!(ids, ["a1", "a2"]);
        assert_eq!(g.samples[0].body, "body of");
        assert!(g.samples[0].body_truncated);
        assert_eq!(g.samples[0].reason.as_deref(), Some("why a1"));
        assert_eq!(g.note, None);
        assert_eq!(groups[1].note, Some(NO_REASON_NOTE));
    }

    #[test]
    fn bodies_are_cut_on_character_boundaries() {
        let mut l = letter("m", Some("x"), None, 0);
        l.body = "ééééé".to_string();
        let s = sample(&l, 2);
        assert_eq!((s.body.as_str(), s.body_truncated), ("éé", true));
        let s = sample(&l, 5);
        assert_eq!((s.body.as_str(), s.body_truncated), ("ééééé", false));
    }

    #[test]
    fn selection_by_code_and_source() {
        let s = selection(&["untrusted_topic"]);
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
        let anywhere = Selection {
            any_source: true,
            ..s.clone()
        };
        assert_eq!(
            anywhere.verdict(&letter("c", Some("untrusted_topic"), Some(other), 0)),
            Verdict::Move
        );
        // Every code; no SourceQueueUrl (SQS redrive) counts as the target.
        assert_eq!(
            selection(&[]).verdict(&letter("d", None, None, 0)),
            Verdict::Move
        );
        assert_eq!(
            selection(&["max_receive_count"]).verdict(&letter("d", None, None, 0)),
            Verdict::Move
        );
    }

    #[tokio::test]
    async fn inspect_sees_every_message_and_consumes_none() {
        let messages = (0..25)
            .map(|i| message(&format!("m{i:02}"), Some(["a", "b"][i % 2]), Some(QUEUE), 0))
            .collect();
        let (dlq, _) = queues(messages);
        let found = inspect(&dlq, &inspect_options()).await.expect("inspects");
        assert_eq!(found.scanned, 25);
        assert!(found.complete);
        assert_eq!(found.release_failures, 0);
        let codes: Vec<(&str, usize)> = found
            .groups
            .iter()
            .map(|g| (g.code.as_str(), g.count))
            .collect();
        assert_eq!(codes, [("a", 13), ("b", 12)]);
        let s = dlq.state();
        assert!(s.deleted.is_empty(), "{:?}", s.deleted);
        assert_eq!(s.queue.len(), 25);
        assert!(s.queue.iter().all(|(_, v)| *v), "all visible again");
        assert_eq!(s.visibility_changes.len(), 25);
        assert!(s.visibility_changes.iter().all(|(_, t)| *t == 0));
    }

    #[tokio::test]
    async fn inspect_stops_at_max_and_still_releases() {
        let messages = (0..25)
            .map(|i| message(&format!("m{i:02}"), Some("a"), Some(QUEUE), 0))
            .collect();
        let (dlq, _) = queues(messages);
        let found = inspect(
            &dlq,
            &InspectOptions {
                max: 12,
                ..inspect_options()
            },
        )
        .await
        .expect("inspects");
        assert_eq!((found.scanned, found.complete), (12, false));
        assert_eq!(visible(&dlq), 25);
    }

    #[tokio::test]
    async fn inspect_releases_what_it_held_when_a_receive_fails() {
        let messages = (0..15)
            .map(|i| message(&format!("m{i:02}"), Some("a"), Some(QUEUE), 0))
            .collect();
        let (dlq, _) = queues(messages);
        // A walk whose second receive fails.
        let mut walker = Walker::new(&dlq, Duration::from_secs(60));
        let batch = walker.next(10).await.expect("first batch");
        for l in &batch {
            walker.hold(&l.receipt_handle);
        }
        assert_eq!(visible(&dlq), 5);
        dlq.fail_next(
            "sqs:ReceiveMessage",
            AwsError::transient("sqs", "ReceiveMessage", "boom"),
        );
        assert!(walker.next(10).await.is_err());
        assert_eq!(walker.release().await, 0);
        assert_eq!(visible(&dlq), 15);

        dlq.fail_next(
            "sqs:ReceiveMessage",
            AwsError::transient("sqs", "ReceiveMessage", "boom"),
        );
        assert!(inspect(&dlq, &inspect_options()).await.is_err());
        assert_eq!(visible(&dlq), 15);
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
