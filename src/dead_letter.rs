//! The dead-letter contract: why a message went to the DLQ
//! ([`DeadLetterCode`]) and the SQS message attributes it carries there
//! ([`DeadLetterAttributes`]). The worker writes them and `reflex dlq`
//! reads them back through these same types, so the attribute names and
//! code strings are written once, here. Pure: no I/O, no clock.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::event::{format_millis, parse_aws_time, PoisonCode};

/// Why a message was sent to the dead-letter queue: the stable string of
/// [`as_str`](Self::as_str) is the `ReasonCode` attribute, the metric label
/// and the audit record's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterCode {
    /// The body could not become an alarm event.
    Poison(PoisonCode),
    /// Every failed action failed permanently; an operator can redrive the
    /// message after a fix.
    ActionFailed,
    /// SQS's redrive policy moved the message after `maxReceiveCount`
    /// receives: reflex never chose to, and wrote no `ReasonCode`.
    MaxReceiveCount,
}

impl DeadLetterCode {
    /// Every code: the poison codes, then reflex's own.
    pub fn all() -> impl Iterator<Item = DeadLetterCode> {
        PoisonCode::ALL
            .into_iter()
            .map(DeadLetterCode::Poison)
            .chain([
                DeadLetterCode::ActionFailed,
                DeadLetterCode::MaxReceiveCount,
            ])
    }

    /// The code as written in DLQ attributes, logs, metrics and audit records.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterCode::Poison(p) => p.as_str(),
            DeadLetterCode::ActionFailed => "action_failed",
            DeadLetterCode::MaxReceiveCount => "max_receive_count",
        }
    }
}

impl From<PoisonCode> for DeadLetterCode {
    fn from(p: PoisonCode) -> Self {
        DeadLetterCode::Poison(p)
    }
}

impl fmt::Display for DeadLetterCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a [`DeadLetterCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dead-letter code {0:?}")]
pub struct UnknownCode(pub String);

impl FromStr for DeadLetterCode {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, UnknownCode> {
        match s {
            "action_failed" => Ok(DeadLetterCode::ActionFailed),
            "max_receive_count" => Ok(DeadLetterCode::MaxReceiveCount),
            _ => PoisonCode::parse(s)
                .map(DeadLetterCode::Poison)
                .ok_or_else(|| UnknownCode(s.to_string())),
        }
    }
}

/// `code == "not_json"` reads as it did when codes were strings.
impl PartialEq<str> for DeadLetterCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for DeadLetterCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for DeadLetterCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for DeadLetterCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A `ReasonCode` as read from a DLQ message: one this version knows, or
/// one it does not (written by a newer reflex, or by hand), kept verbatim
/// so `reflex dlq` can still group and redrive it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    Known(DeadLetterCode),
    Unknown(String),
}

impl ReasonCode {
    pub fn as_str(&self) -> &str {
        match self {
            ReasonCode::Known(c) => c.as_str(),
            ReasonCode::Unknown(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        s.parse()
            .map_or_else(|_| ReasonCode::Unknown(s.to_string()), ReasonCode::Known)
    }
}

impl From<DeadLetterCode> for ReasonCode {
    fn from(c: DeadLetterCode) -> Self {
        ReasonCode::Known(c)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SQS message attribute names of the contract.
pub mod attribute {
    pub const REASON_CODE: &str = "ReasonCode";
    pub const REASON_TEXT: &str = "ReasonText";
    pub const ORIGINAL_MESSAGE_ID: &str = "OriginalMessageId";
    pub const RECEIVE_COUNT: &str = "ReceiveCount";
    pub const SOURCE_QUEUE_URL: &str = "SourceQueueUrl";
    pub const FIRST_RECEIVED_AT: &str = "FirstReceivedAt";
}

/// Longest `ReasonText` written, in bytes (SQS caps all attributes of a
/// message together; the body is the message, the reason only a hint).
pub const MAX_REASON_BYTES: usize = 1024;

/// The attributes of a dead-lettered message. The worker writes every field
/// it knows ([`to_attributes`](Self::to_attributes)); reading
/// ([`from_attributes`](Self::from_attributes)) tolerates any of them
/// missing or empty, as on messages SQS moved itself, which carry none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterAttributes {
    /// `ReasonCode`; read as [`DeadLetterCode::MaxReceiveCount`] when absent.
    pub code: ReasonCode,
    /// `ReasonText`: a sentence for people.
    pub reason: Option<String>,
    /// `OriginalMessageId`: the message id in the source queue.
    pub original_message_id: Option<String>,
    /// `SourceQueueUrl`: the queue reflex took it from.
    pub source_queue_url: Option<String>,
    /// `ReceiveCount`: receives from the source queue before it was given up.
    pub receive_count: Option<u32>,
    /// `FirstReceivedAt`: when the source queue first handed it out.
    pub first_received_at: Option<DateTime<Utc>>,
}

impl DeadLetterAttributes {
    /// The attributes reflex writes when it gives up on a message; `reason`
    /// is cut to [`MAX_REASON_BYTES`] on a character boundary.
    pub fn new(
        code: DeadLetterCode,
        reason: &str,
        original_message_id: &str,
        receive_count: u32,
        source_queue_url: &str,
        first_received_at: Option<DateTime<Utc>>,
    ) -> Self {
        let mut cut = reason.len().min(MAX_REASON_BYTES);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        DeadLetterAttributes {
            code: code.into(),
            reason: Some(reason[..cut].to_string()),
            original_message_id: Some(original_message_id.to_string()),
            source_queue_url: Some(source_queue_url.to_string()),
            receive_count: Some(receive_count),
            first_received_at,
        }
    }

    /// The SQS message-attribute map.
    pub fn to_attributes(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([(
            attribute::REASON_CODE.to_string(),
            self.code.as_str().to_string(),
        )]);
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                a.insert(k.to_string(), v);
            }
        };
        put(attribute::REASON_TEXT, self.reason.clone());
        put(
            attribute::ORIGINAL_MESSAGE_ID,
            self.original_message_id.clone(),
        );
        put(
            attribute::RECEIVE_COUNT,
            self.receive_count.map(|c| c.to_string()),
        );
        put(attribute::SOURCE_QUEUE_URL, self.source_queue_url.clone());
        put(
            attribute::FIRST_RECEIVED_AT,
            self.first_received_at.as_ref().map(format_millis),
        );
        a
    }

    /// Reads the attributes back. Missing or empty ones are `None`; an
    /// unparseable count or time is `None` too: reading a DLQ never fails.
    pub fn from_attributes(attributes: &BTreeMap<String, String>) -> Self {
        let attr = |k: &str| attributes.get(k).filter(|v| !v.is_empty()).cloned();
        DeadLetterAttributes {
            code: attr(attribute::REASON_CODE)
                .map_or(ReasonCode::Known(DeadLetterCode::MaxReceiveCount), |c| {
                    ReasonCode::parse(&c)
                }),
            reason: attr(attribute::REASON_TEXT),
            original_message_id: attr(attribute::ORIGINAL_MESSAGE_ID),
            source_queue_url: attr(attribute::SOURCE_QUEUE_URL),
            receive_count: attr(attribute::RECEIVE_COUNT).and_then(|c| c.parse().ok()),
            first_received_at: attr(attribute::FIRST_RECEIVED_AT).and_then(|t| parse_aws_time(&t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time() -> DateTime<Utc> {
        parse_aws_time("2026-01-12T16:31:00.123Z").expect("a time")
    }

    #[test]
    fn attributes_round_trip_through_the_sqs_map() {
        for code in DeadLetterCode::all() {
            let written = DeadLetterAttributes::new(
                code,
                "expected value at line 1",
                "sqs-1",
                3,
                "https://sqs.us-east-1.amazonaws.com/123456789012/alarms",
                Some(time()),
            );
            let map = written.to_attributes();
            assert_eq!(map[attribute::REASON_CODE], code.as_str());
            assert_eq!(
                map[attribute::FIRST_RECEIVED_AT],
                "2026-01-12T16:31:00.123Z"
            );
            let read = DeadLetterAttributes::from_attributes(&map);
            assert_eq!(read, written);
            assert_eq!(read.code, ReasonCode::Known(code));
            assert_eq!(read.reason.as_deref(), Some("expected value at line 1"));
            assert_eq!(read.original_message_id.as_deref(), Some("sqs-1"));
            assert_eq!(read.receive_count, Some(3));
            assert_eq!(read.first_received_at, Some(time()));
        }
    }

    #[test]
    fn the_map_has_exactly_the_contract_s_names() {
        let map = DeadLetterAttributes::new(
            DeadLetterCode::ActionFailed,
            "denied",
            "m",
            1,
            "q",
            Some(time()),
        )
        .to_attributes();
        let names: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "FirstReceivedAt",
                "OriginalMessageId",
                "ReasonCode",
                "ReasonText",
                "ReceiveCount",
                "SourceQueueUrl"
            ]
        );
        let without_time =
            DeadLetterAttributes::new(DeadLetterCode::ActionFailed, "denied", "m", 1, "q", None)
                .to_attributes();
        assert!(!without_time.contains_key(attribute::FIRST_RECEIVED_AT));
    }

    #[test]
    fn messages_sqs_moved_itself_read_as_max_receive_count() {
        let read = DeadLetterAttributes::from_attributes(&BTreeMap::new());
        assert_eq!(
            read.code,
            ReasonCode::Known(DeadLetterCode::MaxReceiveCount)
        );
        assert_eq!(
            (read.reason, read.original_message_id, read.source_queue_url),
            (None, None, None)
        );
        assert_eq!((read.receive_count, read.first_received_at), (None, None));
        // Empty values count as missing; garbage numbers and times as absent.
        let read = DeadLetterAttributes::from_attributes(&BTreeMap::from([
            ("ReasonCode".to_string(), String::new()),
            ("ReceiveCount".to_string(), "many".to_string()),
            ("FirstReceivedAt".to_string(), "yesterday".to_string()),
        ]));
        assert_eq!(read.code.as_str(), "max_receive_count");
        assert_eq!((read.receive_count, read.first_received_at), (None, None));
    }

    #[test]
    fn unknown_codes_are_kept_verbatim() {
        let read = DeadLetterAttributes::from_attributes(&BTreeMap::from([(
            "ReasonCode".to_string(),
            "from_the_future".to_string(),
        )]));
        assert_eq!(read.code, ReasonCode::Unknown("from_the_future".into()));
        assert_eq!(read.to_attributes()["ReasonCode"], "from_the_future");
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let a = DeadLetterAttributes::new(DeadLetterCode::ActionFailed, &reason, "m", 1, "q", None);
        let cut = a.reason.expect("a reason");
        assert_eq!(cut.len(), MAX_REASON_BYTES);
        assert!(reason.starts_with(&cut));
    }

    #[test]
    fn every_code_has_one_stable_string_that_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for code in DeadLetterCode::all() {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(code.as_str().parse::<DeadLetterCode>(), Ok(code));
            assert_eq!(code.to_string(), code.as_str());
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{code}\""));
            assert_eq!(
                serde_json::from_str::<DeadLetterCode>(&json).expect("deserializes"),
                code
            );
        }
        assert_eq!(seen.len(), PoisonCode::ALL.len() + 2);
        assert!(seen.contains("action_failed") && seen.contains("max_receive_count"));
        assert!("exploded".parse::<DeadLetterCode>().is_err());
        assert!(serde_json::from_str::<DeadLetterCode>("\"exploded\"").is_err());
    }
}
