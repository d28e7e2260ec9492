//! How the JSON of a body is read — the fast reader or serde only — shared
//! by the dispatch and by the decoders of the formats that nest a body.

use super::fast;
use super::wire::{Body, Detail};

/// How the JSON of a body is read: the two paths of [`super::decode`] and
/// [`super::reference::decode`]. Everything after reading is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parser {
    /// [`fast`], and serde where it is not sure.
    Fast,
    /// serde only.
    Reference,
}

impl Parser {
    /// A body, an SNS `Message` or any object that may be one of the formats.
    pub fn body(self, text: &str) -> Result<Body<'_>, serde_json::Error> {
        if self == Parser::Fast {
            if let Some(body) = fast::body(text) {
                return Ok(body);
            }
        }
        serde_json::from_str(text)
    }

    /// An EventBridge alarm event's `detail`.
    pub fn detail(self, text: &str) -> Result<Detail<'_>, serde_json::Error> {
        if self == Parser::Fast {
            if let Some(detail) = fast::detail(text) {
                return Ok(detail);
            }
        }
        serde_json::from_str(text)
    }
}

/// Whether a text may be a JSON object (leading whitespace allowed).
pub(super) fn starts_with_brace(text: &str) -> bool {
    text.trim_start().starts_with('{')
}
