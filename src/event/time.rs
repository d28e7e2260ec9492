//! The timestamp formats AWS writes into alarm notifications.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses RFC 3339 and CloudWatch's `2026-01-12T16:30:42.236+0000`
/// (an offset without a colon, which RFC 3339 forbids).
pub fn parse_aws_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
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

    #[test]
    fn parses_rfc3339_and_converts_offsets() {
        let t = parse_aws_time("2026-01-12T18:30:42+02:00").expect("parses");
        assert_eq!(format_millis(&t), "2026-01-12T16:30:42.000Z");
        assert!(parse_aws_time("yesterday").is_none());
    }
}
