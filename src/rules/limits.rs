//! Humane durations (`"10m"`) and rates (`"5/hour"`) as written in rule and
//! config files.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Parses a humane duration: `"30s"`, `"10m"`, `"1h 30m"`, `"0s"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"30s\", \"10m\", \"2h\""))
}

/// Formats a duration the way it is written in rule files.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serializes a duration as a humane string, for plans and audit records.
pub fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// Serializes an optional duration as a humane string or null.
pub fn serialize_opt_duration<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// At most `count` executions per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// Parses `"5/hour"`, `"1/minute"`, `"10/day"`, `"3/10m"`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let help = "write a rate as COUNT/PERIOD, e.g. \"5/hour\", \"1/minute\", \"3/10m\"";
        let (count, per) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid rate {s:?}: {help}"))?;
        let count: i64 = count
            .trim()
            .parse()
            .map_err(|_| format!("invalid rate {s:?}: the count is not a whole number; {help}"))?;
        if count <= 0 {
            return Err(format!(
                "invalid rate {s:?}: the count must be at least 1 (to forbid an action, disable the rule)"
            ));
        }
        let count = u32::try_from(count)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| format!("invalid rate {s:?}: the count is too large"))?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => parse_duration(other).map_err(|e| format!("invalid rate {s:?}: {e}"))?,
        };
        if per.is_zero() {
            return Err(format!(
                "invalid rate {s:?}: the period must be longer than zero"
            ));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per.as_secs() {
            1 => write!(f, "{}/second", self.count),
            60 => write!(f, "{}/minute", self.count),
            3600 => write!(f, "{}/hour", self.count),
            86_400 => write!(f, "{}/day", self.count),
            _ => write!(f, "{}/{}", self.count, format_duration(self.per)),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let r = Rate::parse("5/hour").unwrap();
        assert_eq!((r.count.get(), r.per), (5, Duration::from_secs(3600)));
        assert_eq!(r.to_string(), "5/hour");
        assert_eq!(Rate::parse("3/10m").unwrap().per, Duration::from_secs(600));
        for bad in [
            "0/hour",
            "-1/hour",
            "five/hour",
            "5",
            "5/0s",
            "5/fortnightish",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("ten minutes").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
    }
}
