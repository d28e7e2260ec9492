//! The SNS envelope: the default SNS → SQS subscription. Its `Message` is a
//! JSON string holding a CloudWatch alarm notification or, when the topic is
//! an EventBridge rule's target, an EventBridge event.

use super::fields::Envelope;
use super::parser::{starts_with_brace, Parser};
use super::wire::Body;
use super::{cloudwatch, eventbridge};
use super::{AlarmEvent, EventFormat, Poison, PoisonCode};

/// Decodes a body that looks like an SNS envelope.
pub(super) fn decode(body: Body<'_>, parser: Parser) -> Result<AlarmEvent, Poison> {
    let context = Envelope {
        message_id: body.message_id,
        topic_arn: body.topic_arn,
        subject: body.subject,
        timestamp: body.timestamp,
    };
    let message = body.message;
    // Only a Notification is ever acted on: another Type, a null or a
    // missing one is not an alarm (and is not what SNS signs as one).
    match body.sns_type.as_deref() {
        Some("Notification") => {}
        Some(kind) => {
            return Err(Poison::new(
                PoisonCode::SnsNotNotification,
                format!("SNS envelope of Type {kind:?} is not an alarm notification"),
            ))
        }
        None => {
            return Err(Poison::new(
                PoisonCode::SnsNotNotification,
                "SNS envelope has no Type (or a null one); only a Notification is acted on",
            ))
        }
    }
    let inner = match body.inner {
        // Read in place by the fast path: a JSON object.
        Some(inner) => *inner,
        None => read_message(message.as_deref(), parser)?,
    };
    let not_alarm = |detail: &str| {
        Poison::new(
            PoisonCode::SnsMessageNotAlarm,
            format!("SNS Message is not a CloudWatch alarm: {detail}"),
        )
    };
    if inner.looks_like_sns() {
        Err(not_alarm("it is another SNS envelope"))
    } else if inner.looks_like_eventbridge() {
        eventbridge::decode(inner, EventFormat::Sns, context, parser)
    } else if inner.looks_like_alarm() {
        cloudwatch::decode(inner, EventFormat::Sns, context)
    } else {
        Err(not_alarm("no alarm fields"))
    }
}

/// The body inside an envelope's `Message` string.
fn read_message(message: Option<&str>, parser: Parser) -> Result<Body<'_>, Poison> {
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
    if !starts_with_brace(message) {
        return Err(not_alarm("it is not a JSON object"));
    }
    match parser.body(message) {
        Ok(inner) => Ok(inner),
        Err(e) if e.is_data() => Err(Poison::new(
            PoisonCode::InvalidField,
            format!("alarm in SNS Message: {e}"),
        )),
        Err(e) => Err(not_alarm(&e.to_string())),
    }
}
