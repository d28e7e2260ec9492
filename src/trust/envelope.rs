//! The fields of an SNS notification that its signature covers, and the
//! string SNS signs.

use std::borrow::Cow;

use serde::Deserialize;

/// The signed fields of an SNS envelope, borrowed from the body where they
/// hold no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SignedEnvelope<'a> {
    #[serde(rename = "Type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(rename = "MessageId", borrow, default)]
    pub message_id: Option<Cow<'a, str>>,
    #[serde(rename = "TopicArn", borrow, default)]
    pub topic_arn: Option<Cow<'a, str>>,
    #[serde(rename = "Subject", borrow, default)]
    pub subject: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    pub message: Option<Cow<'a, str>>,
    #[serde(rename = "Timestamp", borrow, default)]
    pub timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "SignatureVersion", borrow, default)]
    pub signature_version: Option<Cow<'a, str>>,
    #[serde(rename = "Signature", borrow, default)]
    pub signature: Option<Cow<'a, str>>,
    #[serde(rename = "SigningCertURL", borrow, default)]
    pub signing_cert_url: Option<Cow<'a, str>>,
}

/// The signature algorithms SNS uses, by `SignatureVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    /// `"1"`: SHA1withRSA, the default for SNS topics.
    V1,
    /// `"2"`: SHA256withRSA.
    V2,
}

impl SignatureVersion {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1" => Some(SignatureVersion::V1),
            "2" => Some(SignatureVersion::V2),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            SignatureVersion::V1 => "1",
            SignatureVersion::V2 => "2",
        }
    }
}

/// Whether the string to sign holds the `Subject` line. SNS includes it
/// whenever the envelope has a Subject; [`Subject::Omitted`] exists only for
/// the emulator leniency (see `worker::trust`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    IncludedWhenPresent,
    Omitted,
}

impl<'a> SignedEnvelope<'a> {
    /// Reads the signed fields of an envelope. `None` when the body is not
    /// a JSON object with string fields (the decoder has already accepted
    /// it, so this only happens for values of the wrong type).
    pub fn parse(body: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }

    /// Whether the envelope carries any of the signature fields.
    pub fn is_signed(&self) -> bool {
        self.signature.is_some()
            || self.signature_version.is_some()
            || self.signing_cert_url.is_some()
    }

    /// The region of `TopicArn` (`arn:<partition>:sns:<region>:<account>:<name>`).
    pub fn topic_region(&self) -> Option<&str> {
        arn_part(self.topic_arn.as_deref()?, 3)
    }

    /// The partition of `TopicArn` (`aws`, `aws-cn`, `aws-us-gov`…).
    pub fn topic_partition(&self) -> Option<&str> {
        arn_part(self.topic_arn.as_deref()?, 1)
    }

    /// The string SNS signs for a Notification: `Message`, `MessageId`,
    /// `Subject` (only when present), `Timestamp`, `TopicArn`, `Type`, each
    /// as its name on one line and its value on the next. `None` when a
    /// field it needs is missing.
    pub fn string_to_sign(&self, subject: Subject) -> Option<String> {
        let mut out = String::with_capacity(self.message.as_deref().map_or(0, str::len) + 512);
        let mut line = |name: &str, value: &str| {
            out.push_str(name);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        };
        line("Message", self.message.as_deref()?);
        line("MessageId", self.message_id.as_deref()?);
        if let (Some(s), Subject::IncludedWhenPresent) = (self.subject.as_deref(), subject) {
            line("Subject", s);
        }
        line("Timestamp", self.timestamp.as_deref()?);
        line("TopicArn", self.topic_arn.as_deref()?);
        line("Type", self.kind.as_deref()?);
        Some(out)
    }
}

/// The `index`th colon-separated part of an ARN, when it is not empty.
fn arn_part(arn: &str, index: usize) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    parts.nth(index - 1).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{
      "Type" : "Notification",
      "MessageId" : "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
      "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
      "Subject" : "My First Message",
      "Message" : "Hello world!\nline \"two\"",
      "Timestamp" : "2012-05-02T00:54:06.655Z",
      "SignatureVersion" : "1",
      "Signature" : "EXAMPLE==",
      "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
      "UnsubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe"
    }"#;

    #[test]
    fn string_to_sign_follows_the_documented_order() {
        let env = SignedEnvelope::parse(BODY).expect("parses");
        assert_eq!(
            env.string_to_sign(Subject::IncludedWhenPresent).as_deref(),
            Some(
                "Message\nHello world!\nline \"two\"\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
                 Subject\nMy First Message\nTimestamp\n2012-05-02T00:54:06.655Z\n\
                 TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nNotification\n"
            )
        );
        let without = env.string_to_sign(Subject::Omitted).expect("complete");
        assert!(!without.contains("Subject"), "{without}");
        assert!(env.is_signed());
        assert_eq!(env.topic_region(), Some("us-west-2"));
        assert_eq!(env.topic_partition(), Some("aws"));
    }

    #[test]
    fn no_subject_line_without_a_subject_and_none_without_a_field() {
        let body = BODY.replace("\"Subject\" : \"My First Message\",", "");
        let env = SignedEnvelope::parse(&body).expect("parses");
        let s = env
            .string_to_sign(Subject::IncludedWhenPresent)
            .expect("complete");
        assert!(!s.contains("Subject"), "{s}");
        let body = BODY.replace("\"Timestamp\" : \"2012-05-02T00:54:06.655Z\",", "");
        let env = SignedEnvelope::parse(&body).expect("parses");
        assert_eq!(env.string_to_sign(Subject::IncludedWhenPresent), None);
    }

    #[test]
    fn unsigned_envelopes_and_odd_arns() {
        let env =
            SignedEnvelope::parse(r#"{"Type":"Notification","TopicArn":"nope","Message":"{}"}"#)
                .expect("parses");
        assert!(!env.is_signed());
        assert_eq!(env.topic_region(), None);
        assert_eq!(SignatureVersion::parse("3"), None);
        assert_eq!(SignatureVersion::parse("2"), Some(SignatureVersion::V2));
    }
}
