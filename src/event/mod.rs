//! Decoding SQS message bodies into one domain type, [`AlarmEvent`].
//!
//! Three wire formats reach a queue: an SNS envelope (the default SNS→SQS
//! subscription), a raw CloudWatch alarm notification (SNS raw message
//! delivery), and an EventBridge "CloudWatch Alarm State Change" event. An SNS
//! envelope may carry either of the other two in its `Message`. Decoding is
//! lenient where AWS is (nulls, display-name regions, `+0000` offsets) and
//! strict where safety needs it (an alarm name and a known state). Anything
//! else is [`Poison`]. Pure: no I/O, no clock.
//!
//! # Layout
//!
//! - `types`: [`AlarmEvent`] and its parts; `poison`: [`Poison`] and its
//!   stable codes; `time`: AWS timestamps.
//! - `dispatch`: the checks every body passes, then which format it is.
//! - One decoder per format: `sns` (the envelope), `cloudwatch` (the alarm
//!   notification), `eventbridge` (the state-change event). `metric`
//!   flattens their metric queries, `fields` holds their shared checks.
//! - `wire`: the serde shapes of all three; `envelope`: the fast scanner of
//!   SNS envelopes.
//! - [`reference`]: the plain serde path, which [`decode`] must agree with.

mod cloudwatch;
mod dispatch;
mod envelope;
mod eventbridge;
mod fields;
mod metric;
mod poison;
pub mod reference;
mod sns;
mod time;
mod types;
mod wire;

pub use poison::{Poison, PoisonCode, MAX_BODY_BYTES};
pub use time::{format_millis, parse_aws_time};
pub use types::{AlarmEvent, AlarmKind, AlarmState, EventFormat};

/// Decodes one SQS message body.
pub fn decode(body: &[u8]) -> Result<AlarmEvent, Poison> {
    decode_str(dispatch::text(body)?)
}

/// Decodes one SQS message body that is already known to be UTF-8.
pub fn decode_str(text: &str) -> Result<AlarmEvent, Poison> {
    dispatch::check_text(text)?;
    match envelope::scan(text) {
        Some(sns) => sns::decode_scanned(sns),
        None => dispatch::decode_object(text),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SNS: &[&str] = &[
        include_str!("../../tests/fixtures/sns/elb-unhealthy-hosts.json"),
        include_str!("../../tests/fixtures/sns/escaped-name.json"),
        include_str!("../../tests/fixtures/sns/eventbridge-composite.json"),
        include_str!(
            "../../tests/fixtures/poison/sns_not_notification--subscription-confirmation.json"
        ),
        include_str!("../../tests/fixtures/poison/missing_field--sns-no-message.json"),
    ];

    #[test]
    fn the_fast_path_takes_the_sns_fixtures() {
        for body in SNS {
            let sns = envelope::scan(body).expect("the fast path reads it");
            assert_eq!(sns::decode_scanned(sns), dispatch::decode_object(body));
        }
    }

    proptest! {
        /// Whatever the fast path accepts, it decodes as serde does.
        #[test]
        fn fast_and_general_paths_agree(
            which in 0..SNS.len(),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0..3usize, prop::sample::select(
                    vec!["", "\\", "\\\"", "\"", ",", "}", "{", ":", " ", "\\u0041", "x", "null", "\\n", "é"],
                )),
                1..4,
            ),
        ) {
            let mut body = SNS[which].to_string();
            for (at, delete, insert) in edits {
                let mut i = at.index(body.len() + 1);
                while !body.is_char_boundary(i) {
                    i -= 1;
                }
                let mut end = (i + delete).min(body.len());
                while !body.is_char_boundary(end) {
                    end += 1;
                }
                body.replace_range(i..end, insert);
            }
            if let Some(sns) = envelope::scan(&body) {
                prop_assert_eq!(sns::decode_scanned(sns), dispatch::decode_object(&body));
            }
        }
    }
}
