//! The timestamp formats AWS writes into alarm notifications.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses RFC 3339 and CloudWatch's `2026-01-12T16:30:42.236+0000`
/// (an offset without a colon, which RFC 3339 forbids).
pub fn parse_aws_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    parse_utc_fast(s).or_else(|| parse_general(s))
}

fn parse_general(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The form AWS nearly always writes, `YYYY-MM-DDTHH:MM:SS[.fff]` in UTC
/// (`Z`, `+0000` or `+00:00`), without chrono's format interpreter, which
/// cost more than the rest of decoding an alarm. `None` for anything else,
/// which [`parse_general`] then handles.
fn parse_utc_fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if !separators.iter().all(|&(i, c)| b.get(i) == Some(&c)) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if second > 59 {
        return None; // a leap second: chrono's business
    }
    let mut i = 19;
    let mut nanos = 0;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(i + 1..i + 1 + digits)? * 10u32.pow(9 - digits as u32);
        i += 1 + digits;
    }
    if !matches!(&b[i..], b"Z" | b"+0000" | b"+00:00") {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    Some(
        date.and_hms_nano_opt(hour, minute, second, nanos)?
            .and_utc(),
    )
}

/// Formats a time as `2026-01-12T16:30:42.236Z`.
pub fn format_millis(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn serialize_millis<S: serde::Serializer>(
    t: &DateTime<Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_millis(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloudwatch_offset_without_colon() {
        let t = parse_aws_time("2026-01-12T16:30:42.236+0000").expect("parses");
        assert_eq!(format_millis(&t), "2026-01-12T16:30:42.236Z");
    }

    /// The fast path agrees with chrono wherever it answers.
    #[test]
    fn fast_path_agrees_with_chrono() {
        for s in [
            "2026-01-12T16:30:42.236+0000",
            "2026-01-12T16:30:42Z",
            "2026-01-12T16:30:42.1Z",
            "2026-01-12T16:30:42.123456789+00:00",
            "2024-02-29T23:59:59.999Z",
            "2019-10-02T17:04:40.989+0000",
        ] {
            let fast = parse_utc_fast(s);
            assert!(fast.is_some(), "{s} takes the fast path");
            assert_eq!(fast, parse_general(s), "{s}");
        }
        for s in [
            "2026-01-12T16:30:42.236+0200",
            "2026-01-12 16:30:42Z",
            "2026-01-12t16:30:42Z",
            "2026-02-30T16:30:42Z",
            "2026-01-12T24:00:00Z",
            "2026-01-12T16:30:60Z",
            "2026-01-12T16:30:42.Z",
            "2026-01-12T16:30:42.1234567890Z",
            "2026-01-12T16:30:42",
            "+2026-01-12T16:30:42Z",
            "2026-1-12T16:30:42Z",
            "２０２６-01-12T16:30:42Z",
        ] {
            assert_eq!(parse_utc_fast(s), None, "{s} is left to chrono");
        }
    }

    #[test]
    fn parses_rfc3339_and_converts_offsets() {
        let t = parse_aws_time("2026-01-12T18:30:42+02:00").expect("parses");
        assert_eq!(format_millis(&t), "2026-01-12T16:30:42.000Z");
        assert!(parse_aws_time("yesterday").is_none());
    }

    proptest::proptest! {
        #[test]
        fn fast_path_never_disagrees(
            date in (0u32..=9999, 0u32..=13, 0u32..=32),
            time in (0u32..=24, 0u32..=60, 0u32..=60),
            fraction in r"(\.[0-9]{0,10})?",
            offset in r"Z|\+0000|\+00:00|\+0130|-00:00|",
        ) {
            let s = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{offset}",
                date.0, date.1, date.2, time.0, time.1, time.2
            );
            if let Some(fast) = parse_utc_fast(&s) {
                proptest::prop_assert_eq!(Some(fast), parse_general(&s), "{}", s);
            }
        }
    }
}
