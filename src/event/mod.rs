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
//! - `wire`: the shapes of all three, as serde structs. They are read either
//!   by serde ([`reference`], the plain path) or by `fast` (a small strict
//!   reader over `json`, which leaves to serde whatever it is not sure of);
//!   [`decode`] takes the fast path and must agree with [`reference`] on
//!   every input.

mod cloudwatch;
mod dispatch;
mod eventbridge;
mod fast;
mod fields;
mod json;
mod metric;
mod parser;
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
    dispatch::decode_object(text, parser::Parser::Fast)
}
