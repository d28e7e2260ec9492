//! What the per-format decoders share: the checks on the fields reflex
//! cannot do without, and the SNS context an alarm carries when it arrived
//! in an envelope.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::{parse_aws_time, AlarmState, Poison, PoisonCode};

/// The SNS fields that travel with an alarm carried in an envelope (all
/// `None` for a raw notification or an EventBridge event sent straight to
/// the queue).
#[derive(Default)]
pub(super) struct Envelope<'a> {
    pub message_id: Option<Cow<'a, str>>,
    pub topic_arn: Option<Cow<'a, str>>,
    pub subject: Option<Cow<'a, str>>,
    /// Parsed only if the alarm has no time of its own.
    pub timestamp: Option<Cow<'a, str>>,
}

impl Envelope<'_> {
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.timestamp.as_deref().and_then(parse_aws_time)
    }
}

pub(super) fn owned(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned)
}

pub(super) fn non_empty(s: Option<Cow<'_, str>>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty()).map(Cow::into_owned)
}

pub(super) fn required_name(name: Option<Cow<'_, str>>) -> Result<String, Poison> {
    match name {
        Some(n) if !n.trim().is_empty() => Ok(n.into_owned()),
        Some(_) => Err(Poison::new(PoisonCode::InvalidField, "alarm name is empty")),
        None => Err(Poison::new(
            PoisonCode::MissingField,
            "alarm has no name (AlarmName / detail.alarmName)",
        )),
    }
}

pub(super) fn required_state(value: Option<&str>, field: &str) -> Result<AlarmState, Poison> {
    match value {
        None => Err(Poison::new(
            PoisonCode::MissingField,
            format!("alarm has no {field}"),
        )),
        Some(v) => parse_state(v, field),
    }
}

pub(super) fn optional_state(
    value: Option<&str>,
    field: &str,
) -> Result<Option<AlarmState>, Poison> {
    value.map(|v| parse_state(v, field)).transpose()
}

fn parse_state(v: &str, field: &str) -> Result<AlarmState, Poison> {
    AlarmState::parse(v).ok_or_else(|| {
        Poison::new(
            PoisonCode::InvalidField,
            format!("{field} is {v:?}; expected OK, ALARM or INSUFFICIENT_DATA"),
        )
    })
}

/// The alarm's state-change time, or `fallback` (the event's or the
/// envelope's time) when the alarm has none.
pub(super) fn state_time(
    value: Option<&str>,
    field: &str,
    fallback: impl FnOnce() -> Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, Poison> {
    match value {
        Some(v) => parse_aws_time(v).ok_or_else(|| {
            Poison::new(
                PoisonCode::InvalidField,
                format!("{field} {v:?} is not a timestamp"),
            )
        }),
        None => fallback().ok_or_else(|| {
            Poison::new(
                PoisonCode::MissingField,
                format!("alarm has no {field} and no envelope timestamp"),
            )
        }),
    }
}

/// Region code and account id from an ARN such as
/// `arn:aws:cloudwatch:eu-south-1:123456789012:alarm:web`: the fourth and
/// fifth of its colon-separated parts, if it starts with `arn` and has them.
pub(super) fn arn_region_account(arn: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(arn) = arn else { return (None, None) };
    // The first five colons, found in one pass (`splitn` costs more here
    // than the rest of the alarm's fields).
    let mut colons = [0; 5];
    let mut found = 0;
    for (i, b) in arn.bytes().enumerate() {
        if b == b':' {
            colons[found] = i;
            found += 1;
            if found == colons.len() {
                break;
            }
        }
    }
    if found < 4 || &arn[..colons[0]] != "arn" {
        return (None, None);
    }
    let account_end = if found == 5 { colons[4] } else { arn.len() };
    let part = |from: usize, to: usize| {
        let s = &arn[from + 1..to];
        (!s.is_empty()).then(|| s.to_string())
    };
    (part(colons[2], colons[3]), part(colons[3], account_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_and_account_are_the_fourth_and_fifth_parts() {
        let parts = |arn: &str| {
            let (r, a) = arn_region_account(Some(arn));
            (r.unwrap_or_default(), a.unwrap_or_default())
        };
        let want = |r: &str, a: &str| (r.to_string(), a.to_string());
        assert_eq!(
            parts("arn:aws:cloudwatch:eu-south-1:123456789012:alarm:web"),
            want("eu-south-1", "123456789012")
        );
        assert_eq!(
            parts("arn:aws:cloudwatch:eu-south-1:123456789012"),
            want("eu-south-1", "123456789012")
        );
        assert_eq!(
            parts("arn:aws:cloudwatch::123456789012:alarm:x"),
            want("", "123456789012")
        );
        assert_eq!(
            parts("arn:aws:cloudwatch:eu-south-1:"),
            want("eu-south-1", "")
        );
        assert_eq!(parts("arn:aws:cloudwatch:eu-south-1"), want("", ""));
        assert_eq!(
            parts("nra:aws:cloudwatch:eu-south-1:1:alarm:x"),
            want("", "")
        );
        assert_eq!(parts("arn:::é:ü:"), want("é", "ü"));
        assert_eq!(arn_region_account(None), (None, None));
    }
}
