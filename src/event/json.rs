//! A small, strict JSON reader for the fast paths ([`super::envelope`],
//! [`super::fast`]).
//!
//! It reads JSON as the specification writes it and answers `None` ("not
//! sure") on anything else, and on some valid JSON it does not bother with
//! (`\u` escapes, nesting deeper than [`MAX_DEPTH`]). A caller that gets
//! `None` hands the whole body to serde, which decides; so for every input
//! this reader accepts, serde_json must accept it too and read the same
//! values. It never allocates except to unescape a string that has escapes.

use std::borrow::Cow;

/// The deepest nesting read here; deeper values go to serde (whose limit is
/// 128).
const MAX_DEPTH: u32 = 64;

/// Reads JSON text; with `ESCAPED`, JSON text that is itself the content of
/// a JSON string (an SNS `Message`), without unescaping it first.
///
/// In escaped mode every `"` of the inner JSON is written `\"`, a backslash
/// `\\`, a line break `\n`: the reader takes `\"` as its quote and stops at
/// the raw `"` that closes the outer string. A string with no escapes of its
/// own is then still borrowed straight from the body, and the `Message` is
/// never copied.
pub(super) struct Reader<'a, const ESCAPED: bool = false> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Reader {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
        }
    }
}

impl<'a, const ESCAPED: bool> Reader<'a, ESCAPED> {
    /// Reads the JSON inside the string value that comes next with `read`,
    /// in escaped mode, and moves past the string; `None` (and nothing
    /// consumed) if the next value is not a string or `read` says `None`, and
    /// always in escaped mode (one level is enough for SNS).
    pub fn escaped<T>(
        &mut self,
        read: impl FnOnce(&mut Reader<'a, true>) -> Option<T>,
    ) -> Option<T> {
        if ESCAPED || self.peek()? != b'"' {
            return None;
        }
        let mut inner = Reader::<true> {
            text: self.text,
            bytes: self.bytes,
            pos: self.pos + 1,
            depth: 0,
        };
        let value = read(&mut inner)?;
        if !inner.at_end() {
            return None;
        }
        self.pos = inner.pos + 1;
        Some(value)
    }

    /// Where the reader is, to come back to with [`Self::rewind`].
    pub fn mark(&self) -> usize {
        self.pos
    }

    pub fn rewind(&mut self, mark: usize) {
        self.pos = mark;
    }

    #[inline]
    fn skip_ws(&mut self) {
        if ESCAPED {
            loop {
                match self.bytes.get(self.pos) {
                    Some(b' ') => self.pos += 1,
                    Some(b'\\') => match self.bytes.get(self.pos + 1) {
                        Some(b'n' | b'r' | b't') => self.pos += 2,
                        _ => break,
                    },
                    _ => break,
                }
            }
        } else {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
        }
    }

    /// The next byte that is not white space, without consuming it. In
    /// escaped mode a quote (`\"`) reads as `"`, and the raw `"` that ends
    /// the outer string as 0, which starts no value.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        let b = *self.bytes.get(self.pos)?;
        if ESCAPED {
            return Some(match b {
                b'"' => 0,
                b'\\' if self.bytes.get(self.pos + 1) == Some(&b'"') => b'"',
                b => b,
            });
        }
        Some(b)
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// Whether only white space is left, as serde_json requires after the
    /// value (in escaped mode: before the quote that ends the outer string).
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        if ESCAPED {
            self.bytes.get(self.pos) == Some(&b'"')
        } else {
            self.pos == self.bytes.len()
        }
    }

    /// A string, unescaped; borrowed when it has no escapes.
    #[inline]
    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        if ESCAPED {
            self.escaped_string()
        } else {
            self.string_sized(false)
        }
    }

    /// A string in escaped mode: from `\"` to `\"`. Borrowed when it holds
    /// no other backslash; unescaped twice (the outer string's escapes, then
    /// its own) when it does.
    fn escaped_string(&mut self) -> Option<Cow<'a, str>> {
        self.skip_ws();
        let b = self.bytes;
        if b.get(self.pos..self.pos + 2)? != b"\\\"" {
            return None;
        }
        let start = self.pos + 2;
        let i = find_special(b, start);
        if b.get(i..i + 2)? == b"\\\"" {
            self.pos = i + 2;
            return self.text.get(start..i).map(Cow::Borrowed);
        }
        let mut out = String::new();
        let mut j = start;
        loop {
            let i = find_special(b, j);
            out.push_str(self.text.get(j..i)?);
            if *b.get(i)? != b'\\' {
                return None; // the outer string's end, or a control character
            }
            let (c, len) = match *b.get(i + 1)? {
                b'"' => {
                    self.pos = i + 2;
                    return Some(Cow::Owned(out));
                }
                b'/' => ('/', 2),
                // A backslash of the inner string: its escape follows, as a
                // plain byte or escaped again.
                b'\\' => match (*b.get(i + 2)?, b.get(i + 3)) {
                    (b'\\', Some(b'"')) => ('"', 4),
                    (b'\\', Some(b'\\')) => ('\\', 4),
                    (b'\\', Some(b'/')) => ('/', 4),
                    (b'/', _) => ('/', 3),
                    (b'b', _) => ('\u{8}', 3),
                    (b'f', _) => ('\u{c}', 3),
                    (b'n', _) => ('\n', 3),
                    (b'r', _) => ('\r', 3),
                    (b't', _) => ('\t', 3),
                    _ => return None,
                },
                // `\n` and the like are control characters in the inner
                // string; `\u` is left to serde.
                _ => return None,
            };
            out.push(c);
            j = i + len;
        }
    }

    /// [`Self::string`]; `long` when the string is likely most of the rest of
    /// the text (an SNS `Message`), so its buffer is sized once.
    pub fn string_sized(&mut self, long: bool) -> Option<Cow<'a, str>> {
        if ESCAPED {
            return self.escaped_string();
        }
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

    /// `null` (`Some(None)`) or what `value` reads.
    #[inline]
    pub fn or_null<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Some(None)
        } else {
            value(self).map(Some)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    pub fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    /// A number's text, checked against the JSON grammar
    /// (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
    pub fn number(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let start = self.pos;
        let b = self.bytes;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i + 1),
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            i = end;
        }
        self.pos = i;
        self.text.get(start..i)
    }

    /// A number read as serde_json reads an `f64`: a short decimal
    /// (`1.0`, `-12.25`) here, anything else by serde_json itself.
    pub fn f64(&mut self) -> Option<f64> {
        let text = self.number()?;
        short_decimal(text).or_else(|| serde_json::from_str(text).ok())
    }

    /// The members of an object: `member` is called with each key, and
    /// must read the value.
    #[inline]
    pub fn object(&mut self, mut member: impl FnMut(&mut Self, &str) -> Option<()>) -> Option<()> {
        self.members(|r, key| member(r, &key))
    }

    /// [`Self::object`], with the keys as they were read (borrowed when
    /// they have no escapes).
    pub fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.enter()?;
        if self.peek()? == b'}' {
            self.pos += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => break,
                _ => return None,
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Some(())
    }

    /// The items of an array: `item` is called for each, and must read it.
    pub fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.enter()?;
        if self.peek()? == b']' {
            self.pos += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => break,
                _ => return None,
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Some(())
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Skips any value, checking it is well formed.
    pub fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|r, _| r.skip()),
            b'[' => self.array(Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// Skips any value and returns its text, as serde_json's `RawValue` does
    /// (`None` in escaped mode, where the text is not the value's).
    pub fn raw(&mut self) -> Option<&'a str> {
        if ESCAPED {
            return None;
        }
        self.skip_ws();
        let start = self.pos;
        self.skip()?;
        self.text.get(start..self.pos)
    }
}

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A JSON number without an exponent and with at most 15 digits, as an
/// `f64`: its digits as an integer (exact, below 2^53) divided by a power of
/// ten (exact), one correctly rounded division. That is what serde_json
/// computes for such a number, so the result is the same bit for bit; `None`
/// for anything else. (serde_json's general parser costs more than the rest
/// of an alarm's trigger.)
fn short_decimal(text: &str) -> Option<f64> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0;
    let mut fraction: Option<usize> = None;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                count += 1;
                if let Some(f) = &mut fraction {
                    *f += 1;
                }
            }
            b'.' if fraction.is_none() => fraction = Some(0),
            _ => return None,
        }
        if count > 15 {
            return None;
        }
    }
    let value = mantissa as f64 / POW10[fraction.unwrap_or(0)];
    Some(if negative { -value } else { value })
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut r = Reader::new(literal);
            let ours = r.string().expect("reads");
            let theirs: String = serde_json::from_str(literal).expect("valid JSON");
            assert_eq!(ours, theirs, "{literal}");
            assert!(r.at_end());
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

    /// Skips a whole text as one value, or says `None`.
    fn skips(text: &str) -> Option<()> {
        let mut r = Reader::new(text);
        r.skip()?;
        r.at_end().then_some(())
    }

    #[test]
    fn skips_what_serde_json_accepts_and_nothing_it_rejects() {
        for text in [
            "0",
            "-0",
            "1.5",
            "-12.25e+3",
            "1E9",
            "1e-2",
            "true",
            "false",
            "null",
            r#""""#,
            "[]",
            "{}",
            " [ 1 , [ ] , { } ] ",
            r#"{"a":{"b":[null,true,"x\n"]}}"#,
            "123456789012345678901234567890",
        ] {
            assert!(skips(text).is_some(), "{text}");
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
                "{text}"
            );
        }
        for text in [
            "",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nulll",
            "[1,]",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "[1 2]",
            r#"{1:2}"#,
            "\"a\u{1}\"",
            r#""\q""#,
            "[",
            "{",
            r#"{"a":"#,
            "NaN",
            "Infinity",
            "1 2",
        ] {
            assert!(skips(text).is_none(), "{text:?} read as a value");
        }
        // Valid, but left to serde.
        assert!(skips(r#""\u0041""#).is_none());
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(skips(&deep).is_none());
    }

    #[test]
    fn raw_is_the_value_s_text() {
        let mut r = Reader::new(r#"{"detail" :  {"a": [1, 2]} , "x": 1}"#);
        let mut raw = None;
        r.object(|r, key| {
            if key == "detail" {
                raw = Some(r.raw()?);
                Some(())
            } else {
                r.skip()
            }
        })
        .expect("reads");
        assert_eq!(raw, Some(r#"{"a": [1, 2]}"#));
    }

    #[test]
    fn short_decimals_are_read_as_serde_json_reads_them() {
        for text in [
            "0",
            "-0",
            "1.0",
            "0.1",
            "0.3",
            "2.675",
            "-12.25",
            "123456789012345",
            "1.23456789012345",
            "0.00000000000001",
            "999999999999999",
            "7.1",
        ] {
            let theirs: f64 = serde_json::from_str(text).expect("a number");
            let ours = short_decimal(text).expect("short");
            assert_eq!(ours.to_bits(), theirs.to_bits(), "{text}");
        }
        for text in ["1e3", "1234567890123456", "0.1234567890123456", "1E-2"] {
            assert_eq!(short_decimal(text), None, "{text}");
        }
    }

    proptest::proptest! {
        /// Every number the reader reads is the `f64` serde_json reads.
        #[test]
        fn numbers_read_as_serde_json_reads_them(text in r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?([eE][+-]?[0-9]{1,3})?") {
            let mut r = Reader::new(&text);
            let ours = r.f64();
            let theirs: Option<f64> = serde_json::from_str(&text).ok();
            proptest::prop_assert_eq!(ours.map(f64::to_bits), theirs.map(f64::to_bits), "{}", text);
        }

        /// Any string, as serde_json writes it, reads back as itself.
        #[test]
        fn round_trips_what_serde_json_writes(text in r#"(.|[\\"/\n\r\t\u{8}\u{c}]|\\\\"){0,64}"#) {
            let literal = serde_json::to_string(&text).expect("serialize");
            let mut r = Reader::new(&literal);
            match r.string() {
                Some(back) => {
                    proptest::prop_assert_eq!(back.as_ref(), text.as_str());
                    proptest::prop_assert!(r.at_end());
                }
                // Only `\u00XX` escapes (other control characters) go to serde.
                None => proptest::prop_assert!(literal.contains("\\u")),
            }
        }

        /// Whatever the reader skips as one value, serde_json reads as one.
        #[test]
        fn accepts_only_what_serde_json_accepts(text in r#"[\[\]{}",:0-9eE.+\- tfrulnas\\]{0,24}"#) {
            if skips(&text).is_some() {
                proptest::prop_assert!(
                    serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(),
                    "{:?}", text
                );
            }
        }
    }
}
