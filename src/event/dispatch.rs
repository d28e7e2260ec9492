//! Format dispatch: the checks every body passes first (size, UTF-8, a JSON
//! object), then which of the three formats it is, by the fields it has.

use super::fields::Envelope;
use super::parser::{starts_with_brace, Parser};
use super::{cloudwatch, eventbridge, sns};
use super::{AlarmEvent, EventFormat, Poison, PoisonCode, MAX_BODY_BYTES};

fn check_size(len: usize) -> Result<(), Poison> {
    if len > MAX_BODY_BYTES {
        return Err(Poison::new(
            PoisonCode::TooLarge,
            format!("body is {len} bytes; the SQS limit is {MAX_BODY_BYTES}"),
        ));
    }
    Ok(())
}

/// The body as text: not too large, and UTF-8.
pub(super) fn text(body: &[u8]) -> Result<&str, Poison> {
    check_size(body.len())?;
    std::str::from_utf8(body).map_err(|e| {
        Poison::new(
            PoisonCode::InvalidUtf8,
            format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// Turns away text that cannot be any format: too large, empty, or not a
/// JSON object.
pub(super) fn check_text(text: &str) -> Result<(), Poison> {
    check_size(text.len())?;
    if text.trim().is_empty() {
        return Err(Poison::new(PoisonCode::EmptyBody, "body is empty"));
    }
    // serde reads a struct from a JSON array too (field by position), so an
    // array must be turned away before it can pass for an envelope.
    if !starts_with_brace(text) {
        return Err(not_an_object(text));
    }
    Ok(())
}

/// Any JSON object, read and sent to the decoder of its format.
pub(super) fn decode_object(text: &str, parser: Parser) -> Result<AlarmEvent, Poison> {
    let body = parser.body(text).map_err(|e| json_poison(&e))?;
    if body.looks_like_sns() {
        sns::decode(body, parser)
    } else if body.looks_like_eventbridge() {
        eventbridge::decode(body, EventFormat::EventBridge, Envelope::default(), parser)
    } else if body.looks_like_alarm() {
        cloudwatch::decode(body, EventFormat::Raw, Envelope::default())
    } else {
        Err(Poison::new(
            PoisonCode::UnrecognisedShape,
            "JSON object is neither an SNS envelope, a CloudWatch alarm notification nor an EventBridge alarm event",
        ))
    }
}

/// Why a body that does not start with `{` is poison.
fn not_an_object(text: &str) -> Poison {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Poison::new(
            PoisonCode::UnrecognisedShape,
            "body is JSON, but not an object",
        ),
        Err(e) => Poison::new(PoisonCode::NotJson, format!("body is not JSON: {e}")),
    }
}

/// Why an object did not parse: a field of the wrong type, or broken JSON.
fn json_poison(e: &serde_json::Error) -> Poison {
    if e.is_data() {
        Poison::new(PoisonCode::InvalidField, e.to_string())
    } else {
        Poison::new(PoisonCode::NotJson, format!("body is not JSON: {e}"))
    }
}
