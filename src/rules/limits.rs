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

/// A pool's short-circuit: when more of the pool is bad than this, the
/// cause is shared (a bad deploy, a dependency outage) and replacing
/// instances would only churn the fleet, so nothing is done. A count of
/// members, or a percentage of the registered members (rounded down, as
/// Cluster API's MachineHealthCheck `maxUnhealthy` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxUnhealthy {
    Count(u32),
    Percent(u32),
}

impl MaxUnhealthy {
    /// The default, `"50%"`: with more than half a pool bad, the cause is
    /// almost certainly shared; with half or less, one-at-a-time
    /// replacement (the default `max_instances = 1`) is still safe.
    pub const DEFAULT: MaxUnhealthy = MaxUnhealthy::Percent(50);

    /// Parses `"40%"` or `"3"` (a whole number of members).
    pub fn parse(s: &str) -> Result<MaxUnhealthy, String> {
        let help = "write a count (e.g. 3) or a percentage of the pool (e.g. \"40%\")";
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let n: u32 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid max_unhealthy {s:?}: {help}"))?;
            if n > 100 {
                return Err(format!(
                    "invalid max_unhealthy {s:?}: a percentage is at most 100%"
                ));
            }
            Ok(MaxUnhealthy::Percent(n))
        } else {
            t.parse()
                .map(MaxUnhealthy::Count)
                .map_err(|_| format!("invalid max_unhealthy {s:?}: {help}"))
        }
    }

    /// How many bad members a pool of `registered` may have before the
    /// short-circuit trips.
    pub fn allowed(self, registered: usize) -> usize {
        match self {
            MaxUnhealthy::Count(n) => n as usize,
            MaxUnhealthy::Percent(p) => (registered as u64 * u64::from(p) / 100) as usize,
        }
    }
}

impl fmt::Display for MaxUnhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxUnhealthy::Count(n) => write!(f, "{n}"),
            MaxUnhealthy::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for MaxUnhealthy {
    /// A count as a number, a percentage as `"40%"`: as written.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxUnhealthy::Count(n) => s.serialize_u32(*n),
            MaxUnhealthy::Percent(_) => s.serialize_str(&self.to_string()),
        }
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
    fn max_unhealthy_is_a_count_or_a_percentage() {
        assert_eq!(MaxUnhealthy::parse("40%"), Ok(MaxUnhealthy::Percent(40)));
        assert_eq!(MaxUnhealthy::parse(" 3 "), Ok(MaxUnhealthy::Count(3)));
        assert!(MaxUnhealthy::parse("101%").is_err());
        assert!(MaxUnhealthy::parse("-1").is_err());
        assert!(MaxUnhealthy::parse("lots").is_err());
        assert_eq!(MaxUnhealthy::Percent(50).allowed(3), 1);
        assert_eq!(MaxUnhealthy::Percent(50).allowed(8), 4);
        assert_eq!(MaxUnhealthy::Count(2).allowed(100), 2);
        assert_eq!(MaxUnhealthy::DEFAULT.to_string(), "50%");
        assert_eq!(
            serde_json::to_value(MaxUnhealthy::Count(2)).ok(),
            Some(serde_json::json!(2))
        );
    }

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
