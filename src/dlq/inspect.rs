//! `reflex dlq inspect`: what is in the DLQ, grouped by reason code, with
//! samples; nothing consumed.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::walk::Walker;
use super::{DeadLetter, NO_REASON_CODE, NO_REASON_NOTE};
use crate::aws::{AwsError, Queue};
use crate::event::format_millis;

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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::NO_REASON_NOTE;
    use super::*;
    use crate::event::format_millis;
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
}
