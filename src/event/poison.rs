//! Why a message body could not become an [`AlarmEvent`](super::AlarmEvent).
//!
//! A poison message is never acted on and never dropped: the worker sends it to
//! the dead-letter queue with [`PoisonCode::as_str`] as a message attribute, so
//! the codes are a stable, machine-readable contract.

use std::fmt;

/// Largest SQS message body, in bytes (256 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The stable reason codes for poison messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoisonCode {
    /// The body is larger than the SQS limit of 256 KiB.
    TooLarge,
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// The body is empty or only white space.
    EmptyBody,
    /// The body is not JSON.
    NotJson,
    /// The body is JSON, but neither an SNS envelope, a CloudWatch alarm
    /// notification nor an EventBridge alarm event.
    UnrecognisedShape,
    /// An SNS envelope whose `Type` is not `Notification`
    /// (for example `SubscriptionConfirmation`).
    SnsNotNotification,
    /// An SNS notification whose `Message` is not an alarm.
    SnsMessageNotAlarm,
    /// An alarm without a field reflex cannot do without.
    MissingField,
    /// An alarm field with a value reflex does not accept
    /// (an unknown state, an unparseable time, a wrong type).
    InvalidField,
    /// An SNS notification from a topic that is not in `trusted_topic_arns`.
    UntrustedTopic,
    /// An SNS notification whose signature does not verify: a forged or
    /// altered envelope, or a signing certificate from anywhere but SNS.
    BadSignature,
    /// A message in a format that carries no signature (an unsigned SNS
    /// envelope, raw delivery, EventBridge) while trusted topics are set and
    /// the format is not explicitly accepted.
    UnsignedRefused,
    /// An accepted unsigned format from an account or source that is not
    /// trusted (`trust.trusted_accounts`).
    UntrustedSource,
}

impl PoisonCode {
    /// Every code, for documentation and metrics pre-registration.
    pub const ALL: [PoisonCode; 13] = [
        PoisonCode::TooLarge,
        PoisonCode::InvalidUtf8,
        PoisonCode::EmptyBody,
        PoisonCode::NotJson,
        PoisonCode::UnrecognisedShape,
        PoisonCode::SnsNotNotification,
        PoisonCode::SnsMessageNotAlarm,
        PoisonCode::MissingField,
        PoisonCode::InvalidField,
        PoisonCode::UntrustedTopic,
        PoisonCode::BadSignature,
        PoisonCode::UnsignedRefused,
        PoisonCode::UntrustedSource,
    ];

    /// The codes of the trust checks (the worker's, after decoding): no
    /// body is poison by these codes on its own.
    pub const TRUST: [PoisonCode; 4] = [
        PoisonCode::UntrustedTopic,
        PoisonCode::BadSignature,
        PoisonCode::UnsignedRefused,
        PoisonCode::UntrustedSource,
    ];

    /// The code as written in DLQ attributes, logs, metrics and `explain`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PoisonCode::TooLarge => "too_large",
            PoisonCode::InvalidUtf8 => "invalid_utf8",
            PoisonCode::EmptyBody => "empty_body",
            PoisonCode::NotJson => "not_json",
            PoisonCode::UnrecognisedShape => "unrecognised_shape",
            PoisonCode::SnsNotNotification => "sns_not_notification",
            PoisonCode::SnsMessageNotAlarm => "sns_message_not_alarm",
            PoisonCode::MissingField => "missing_field",
            PoisonCode::InvalidField => "invalid_field",
            PoisonCode::UntrustedTopic => "untrusted_topic",
            PoisonCode::BadSignature => "bad_signature",
            PoisonCode::UnsignedRefused => "unsigned_refused",
            PoisonCode::UntrustedSource => "untrusted_source",
        }
    }

    /// Parses a code as written by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for PoisonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A body that cannot be decoded: the code, and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Poison {
    pub code: PoisonCode,
    pub reason: String,
}

impl Poison {
    pub fn new(code: PoisonCode, reason: impl Into<String>) -> Self {
        Poison {
            code,
            reason: reason.into(),
        }
    }
}
