//! The reference decoder: the plain serde path, with no fast path in front.
//!
//! [`decode`](super::decode) must agree with it on every input (the same
//! event, or poison with the same code); the fixture tests, the property
//! tests and the `decode` fuzz target check that. Slower, and kept for that.

use super::dispatch;
use super::parser::Parser;
use super::{AlarmEvent, Poison};

/// Decodes one SQS message body the plain way.
pub fn decode(body: &[u8]) -> Result<AlarmEvent, Poison> {
    decode_str(dispatch::text(body)?)
}

/// [`decode`] for a body already known to be UTF-8.
pub fn decode_str(text: &str) -> Result<AlarmEvent, Poison> {
    dispatch::check_text(text)?;
    dispatch::decode_object(text, Parser::Reference)
}
