//! The SNS envelope: the default SNS → SQS subscription. Its `Message` is a
//! JSON string holding a CloudWatch alarm notification or, when the topic is
//! an EventBridge rule's target, an EventBridge event.

use std::borrow::Cow;

use super::fields::Envelope;
use super::wire::Body;
use super::{cloudwatch, dispatch, envelope, eventbridge};
use super::{AlarmEvent, EventFormat, Poison, PoisonCode};

/// An envelope read by the fast scanner ([`envelope::scan`]).
pub(super) fn decode_scanned(sns: envelope::SnsEnvelope<'_>) -> Result<AlarmEvent, Poison> {
    let context = Envelope {
        message_id: sns.message_id,
        topic_arn: sns.topic_arn,
        subject: sns.subject,
        timestamp: sns.timestamp,
    };
    decode(sns.sns_type.as_deref(), sns.message, context)
}

/// An envelope read by serde, as the general [`Body`].
pub(super) fn decode_body(body: Body<'_>) -> Result<AlarmEvent, Poison> {
    let context = Envelope {
        message_id: body.message_id,
        topic_arn: body.topic_arn,
        subject: body.subject,
        timestamp: body.timestamp,
    };
    decode(body.sns_type.as_deref(), body.message, context)
}

fn decode(
    sns_type: Option<&str>,
    message: Option<Cow<'_, str>>,
    context: Envelope<'_>,
) -> Result<AlarmEvent, Poison> {
    let kind = sns_type.unwrap_or("Notification");
    if kind != "Notification" {
        return Err(Poison::new(
            PoisonCode::SnsNotNotification,
            format!("SNS envelope of Type {kind:?} is not an alarm notification"),
        ));
    }
    let Some(message) = message else {
        return Err(Poison::new(
            PoisonCode::MissingField,
            "SNS notification has no Message",
        ));
    };
    let not_alarm = |detail: &str| {
        Poison::new(
            PoisonCode::SnsMessageNotAlarm,
            format!("SNS Message is not a CloudWatch alarm: {detail}"),
        )
    };
    if !dispatch::starts_with_brace(&message) {
        return Err(not_alarm("it is not a JSON object"));
    }
    let inner: Body = match serde_json::from_str(&message) {
        Ok(inner) => inner,
        Err(e) if e.is_data() => {
            return Err(Poison::new(
                PoisonCode::InvalidField,
                format!("alarm in SNS Message: {e}"),
            ))
        }
        Err(e) => return Err(not_alarm(&e.to_string())),
    };
    if inner.looks_like_sns() {
        Err(not_alarm("it is another SNS envelope"))
    } else if inner.looks_like_eventbridge() {
        eventbridge::decode(inner, EventFormat::Sns, context)
    } else if inner.looks_like_alarm() {
        cloudwatch::decode(inner, EventFormat::Sns, context)
    } else {
        Err(not_alarm("no alarm fields"))
    }
}
