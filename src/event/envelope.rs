//! A fast path for the common case: an SNS envelope, as SNS delivers it to
//! SQS.
//!
//! The envelope's `Message` is the alarm as a JSON *string*, so every quote
//! in the alarm is escaped: a typical notification has 150 escapes in its
//! 1.2 KiB. serde_json restarts its string scanner at every escape, which made
//! the envelope cost more than the alarm inside it. This scanner reads the
//! flat envelope in one pass and unescapes `Message` with a plain byte loop.
//!
//! It only ever says "this is an SNS envelope with these fields" or "not sure"
//! (`None`): on anything unusual (a key it does not know, a duplicate, a
//! `\u` escape, a non-string field, broken JSON) the caller falls back to the
//! serde path, which decides, so both paths give the same result for every
//! body this one accepts.

use std::borrow::Cow;

/// The fields of an SNS envelope reflex uses.
#[derive(Debug, Default, PartialEq)]
pub(super) struct SnsEnvelope<'a> {
    pub sns_type: Option<Cow<'a, str>>,
    pub message: Option<Cow<'a, str>>,
    pub message_id: Option<Cow<'a, str>>,
    pub topic_arn: Option<Cow<'a, str>>,
    pub subject: Option<Cow<'a, str>>,
    pub timestamp: Option<Cow<'a, str>>,
}

/// The keys of an SNS envelope whose values reflex ignores. Any key outside
/// these and the fields above sends the body down the serde path.
const IGNORED_KEYS: &[&str] = &[
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "SigningCertUrl",
    "UnsubscribeURL",
    "UnsubscribeUrl",
    "SubscribeURL",
    "Token",
    "MessageAttributes",
];

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.bytes.get(self.pos) == Some(&byte)).then(|| self.pos += 1)
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    /// A JSON string starting at the current position, unescaped; borrowed
    /// when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.string_sized(false)
    }

    /// [`Self::string`]; `long` when the string is likely most of the rest of
    /// the body (the `Message`), so its buffer is sized once.
    fn string_sized(&mut self, long: bool) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let bytes = self.bytes;
        let start = self.pos;
        let i = find_special(bytes, start);
        match *bytes.get(i)? {
            b'"' => {
                self.pos = i + 1;
                return self.text.get(start..i).map(Cow::Borrowed);
            }
            b'\\' => {}
            _ => return None, // a control character
        }
        let rest = bytes.len() - start;
        let mut out: Vec<u8> = Vec::with_capacity(if long { rest } else { rest.min(128) });
        out.extend_from_slice(&bytes[start..i]);
        let end = unescape_into(bytes, i, &mut out)?;
        self.pos = end + 1;
        // Split only at ASCII bytes of valid UTF-8, so still valid.
        String::from_utf8(out).ok().map(Cow::Owned)
    }

    /// Skips any JSON value, checking it is well formed.
    fn skip_value(&mut self) -> Option<()> {
        if self.peek()? == b'"' {
            return self.string().map(drop);
        }
        let rest = self.text.get(self.pos..)?;
        let mut values =
            serde_json::Deserializer::from_str(rest).into_iter::<serde::de::IgnoredAny>();
        values.next()?.ok()?;
        self.pos += values.byte_offset();
        Some(())
    }
}

/// The high bit of each byte of `x` (little-endian) that is `"`, `\` or a
/// control character. Bits above the lowest may be false alarms (a borrow
/// runs on), the lowest never is.
#[inline]
fn special_bytes(x: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let found = (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (x.wrapping_sub(ONES * 0x20) & !x);
    found & (ONES << 7)
}

/// The eight bytes at `i`, if there are eight.
#[inline]
fn word_at(bytes: &[u8], i: usize) -> Option<[u8; 8]> {
    let mut word = [0; 8];
    word.copy_from_slice(bytes.get(i..i + 8)?);
    Some(word)
}

/// The index of the first byte at or after `i` that is `"`, `\` or a control
/// character (or the length), eight bytes at a time.
fn find_special(bytes: &[u8], mut i: usize) -> usize {
    while let Some(word) = word_at(bytes, i) {
        let found = special_bytes(u64::from_le_bytes(word));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !matches!(bytes[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

/// Unescapes a JSON string from the backslash at `i` up to its closing
/// quote, appending to `out`, and returns the index of the quote. `None` for
/// `\u` escapes (left to serde), invalid escapes and control characters.
///
/// Eight bytes at a time: each word is appended whole, then the bytes from
/// its first special one on are cut off again. That is two fixed-size moves
/// instead of a `memcpy` call per escape, and an SNS `Message` has an escape
/// every eight bytes or so.
fn unescape_into(bytes: &[u8], mut i: usize, out: &mut Vec<u8>) -> Option<usize> {
    loop {
        // At a backslash.
        out.push(match *bytes.get(i + 1)? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            _ => return None,
        });
        i += 2;
        loop {
            let Some(word) = word_at(bytes, i) else {
                // The last few bytes of the body.
                let end = find_special(bytes, i);
                out.extend_from_slice(&bytes[i..end]);
                i = end;
                break;
            };
            let found = special_bytes(u64::from_le_bytes(word));
            out.extend_from_slice(&word);
            if found == 0 {
                i += 8;
                continue;
            }
            let n = (found.trailing_zeros() / 8) as usize;
            out.truncate(out.len() - (8 - n));
            i += n;
            break;
        }
        match *bytes.get(i)? {
            b'"' => return Some(i),
            b'\\' => {}
            _ => return None,
        }
    }
}

/// Scans `text` as an SNS envelope, or says `None` ("not sure").
pub(super) fn scan(text: &str) -> Option<SnsEnvelope<'_>> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut env = SnsEnvelope::default();
    s.eat(b'{')?;
    loop {
        let key = s.string()?;
        let slot = match key.as_ref() {
            "Type" => Some(&mut env.sns_type),
            "Message" => Some(&mut env.message),
            "MessageId" => Some(&mut env.message_id),
            "TopicArn" => Some(&mut env.topic_arn),
            "Subject" => Some(&mut env.subject),
            "Timestamp" => Some(&mut env.timestamp),
            other if IGNORED_KEYS.contains(&other) => None,
            _ => return None,
        };
        s.eat(b':')?;
        match slot {
            // A duplicate is an error on the serde path.
            Some(slot) if slot.is_some() => return None,
            Some(slot) => *slot = Some(s.string_sized(key == "Message")?),
            None => s.skip_value()?,
        }
        match s.peek()? {
            b',' => s.pos += 1,
            b'}' => break,
            _ => return None,
        }
    }
    s.pos += 1;
    s.skip_ws();
    if s.pos != s.bytes.len() {
        return None;
    }
    // What the serde path calls an SNS envelope.
    let is_sns = env.sns_type.is_some() || (env.topic_arn.is_some() && env.message.is_some());
    is_sns.then_some(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_an_envelope_and_unescapes_the_message() {
        let body = r#" {
          "Type" : "Notification", "MessageId" : "m-1",
          "TopicArn" : "arn:aws:sns:eu-south-1:123456789012:t",
          "Subject" : "ALARM: \"web\" in EU (Milan)",
          "Message" : "{\"AlarmName\":\"web\"}\t\/\n\\\b\f\r",
          "Timestamp" : "2026-01-12T16:30:42.289Z",
          "SignatureVersion" : "1", "Signature" : "abc==",
          "MessageAttributes" : { "k" : { "Type" : "String", "Value" : [1, {"x": null}] } }
        } "#;
        let env = scan(body).expect("an SNS envelope");
        assert_eq!(env.sns_type.as_deref(), Some("Notification"));
        assert_eq!(
            env.message.as_deref(),
            Some("{\"AlarmName\":\"web\"}\t/\n\\\u{8}\u{c}\r")
        );
        assert!(matches!(env.message_id, Some(Cow::Borrowed("m-1"))));
        assert_eq!(
            env.subject.as_deref(),
            Some(r#"ALARM: "web" in EU (Milan)"#)
        );
        assert_eq!(env.timestamp.as_deref(), Some("2026-01-12T16:30:42.289Z"));
    }

    /// Unescaping agrees with serde_json's.
    #[test]
    fn unescapes_like_serde_json() {
        for literal in [
            r#""""#,
            r#""plain""#,
            r#""\"quoted\" and \\ back\/slash\n\r\t\b\f""#,
            r#""ünïcödé \"raw\"""#,
            r#""\\\\\"""#,
        ] {
            let mut s = Scanner {
                text: literal,
                bytes: literal.as_bytes(),
                pos: 0,
            };
            let ours = s.string().expect("scans");
            let theirs: String = serde_json::from_str(literal).expect("valid JSON");
            assert_eq!(ours, theirs, "{literal}");
            assert_eq!(s.pos, literal.len());
        }
    }

    #[test]
    fn find_special_finds_the_first_special_byte() {
        let text = "0123456789abcdef\"0123456789\u{7}x\\";
        let bytes = text.as_bytes();
        for start in 0..bytes.len() {
            let naive = (start..bytes.len())
                .find(|&i| matches!(bytes[i], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(bytes.len());
            assert_eq!(find_special(bytes, start), naive, "from {start}");
        }
        let plain = "é".repeat(20);
        assert_eq!(find_special(plain.as_bytes(), 0), plain.len());
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for body in [
            r#"{"Type":"Notification","Message":"x","AlarmName":"web"}"#,
            r#"{"Type":"Notification","Message":"x","Message":"y"}"#,
            r#"{"Type":"Notification","Message":"caf\u00e9"}"#,
            r#"{"Type":"Notification","Message":null}"#,
            r#"{"Type":"Notification","Message":"x"} trailing"#,
            r#"{"Type":"Notification","Message":"x",}"#,
            r#"{"Type":"Notification","Signature":[1,}"#,
            "{\"Type\":\"Notification\",\"Message\":\"a\u{1}b\"}",
            r#"{"Type":"Notification","Message":"x\q"}"#,
            r#"{"Type":"Notification","Message":"unterminated}"#,
            r#"{"Signature":"only ignored keys"}"#,
            r#"{}"#,
            r#"[]"#,
            "",
        ] {
            assert_eq!(scan(body), None, "{body}");
        }
    }

    proptest::proptest! {
        /// Any string, as serde_json writes it, scans back to itself.
        #[test]
        fn round_trips_what_serde_json_writes(text in r#"(.|[\\"/\n\r\t\u{8}\u{c}]|\\\\"){0,64}"#) {
            let literal = serde_json::to_string(&text).expect("serialize");
            let mut s = Scanner {
                text: &literal,
                bytes: literal.as_bytes(),
                pos: 0,
            };
            match s.string() {
                Some(back) => {
                    proptest::prop_assert_eq!(back.as_ref(), text.as_str());
                    proptest::prop_assert_eq!(s.pos, literal.len());
                }
                // Only `\u00XX` escapes (other control characters) go to serde.
                None => proptest::prop_assert!(literal.contains("\\u")),
            }
        }
    }
}
