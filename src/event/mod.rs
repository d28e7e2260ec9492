//! Decoding SQS message bodies into one domain type, [`AlarmEvent`].
//!
//! Three wire formats reach a queue: an SNS envelope (the default SNS→SQS
//! subscription), a raw CloudWatch alarm notification (SNS raw message
//! delivery), and an EventBridge "CloudWatch Alarm State Change" event. An SNS
//! envelope may carry either of the other two in its `Message`. Decoding is
//! lenient where AWS is (nulls, display-name regions, `+0000` offsets) and
//! strict where safety needs it (an alarm name and a known state). Anything
//! else is [`Poison`]. Pure: no I/O, no clock.

mod envelope;
mod poison;
mod time;
mod wire;

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use poison::{Poison, PoisonCode, MAX_BODY_BYTES};
pub use time::{format_millis, parse_aws_time};

use wire::{Body, Detail, Dimension, Trigger};

/// The state of a CloudWatch alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AlarmState {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ALARM")]
    Alarm,
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl AlarmState {
    pub const ALL: [AlarmState; 3] = [
        AlarmState::Ok,
        AlarmState::Alarm,
        AlarmState::InsufficientData,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for AlarmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which wire format the event arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// An SNS envelope whose `Message` holds the alarm.
    Sns,
    /// A bare CloudWatch alarm notification (SNS raw message delivery).
    Raw,
    /// An EventBridge "CloudWatch Alarm State Change" event.
    EventBridge,
}

/// What sort of alarm changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// One metric, with a static threshold.
    Metric,
    /// A metric-math expression over several metric queries.
    MetricMath,
    /// A threshold taken from an anomaly-detection band.
    AnomalyDetection,
    /// A composite alarm: a rule over other alarms, no metric of its own.
    Composite,
}

/// One alarm state change, whatever format it arrived in.
///
/// Fields the alarm does not have are `None`: a composite alarm has no
/// namespace, an EventBridge event has no SNS message id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEvent {
    pub alarm_name: String,
    pub alarm_arn: Option<String>,
    pub account_id: Option<String>,
    /// The region code (`eu-south-1`), taken from the alarm ARN.
    pub region: Option<String>,
    pub description: Option<String>,
    pub new_state: AlarmState,
    pub old_state: Option<AlarmState>,
    pub state_reason: Option<String>,
    #[serde(serialize_with = "time::serialize_millis")]
    pub state_change_time: DateTime<Utc>,
    pub kind: AlarmKind,
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    pub dimensions: BTreeMap<String, String>,
    pub threshold: Option<f64>,
    pub comparison_operator: Option<String>,
    /// The rule of a composite alarm, e.g. `ALARM(a) OR ALARM(b)`.
    pub alarm_rule: Option<String>,
    pub format: EventFormat,
    pub sns_message_id: Option<String>,
    pub topic_arn: Option<String>,
    pub subject: Option<String>,
}

impl AlarmEvent {
    /// The value a dimension of the alarm's metric has, if any.
    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.dimensions.get(name).map(String::as_str)
    }

    /// Identifies this state transition, whichever message delivered it: two
    /// deliveries of the same transition have the same key.
    pub fn transition_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.alarm_arn.as_deref().unwrap_or(&self.alarm_name),
            self.new_state,
            self.state_change_time.timestamp_millis()
        )
    }
}

/// Decodes one SQS message body.
pub fn decode(body: &[u8]) -> Result<AlarmEvent, Poison> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Poison::new(
            PoisonCode::TooLarge,
            format!(
                "body is {} bytes; the SQS limit is {MAX_BODY_BYTES}",
                body.len()
            ),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        Poison::new(
            PoisonCode::InvalidUtf8,
            format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    decode_str(text)
}

/// Decodes one SQS message body that is already known to be UTF-8.
pub fn decode_str(text: &str) -> Result<AlarmEvent, Poison> {
    if text.len() > MAX_BODY_BYTES {
        return Err(Poison::new(
            PoisonCode::TooLarge,
            format!(
                "body is {} bytes; the SQS limit is {MAX_BODY_BYTES}",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Err(Poison::new(PoisonCode::EmptyBody, "body is empty"));
    }
    // serde reads a struct from a JSON array too (field by position), so an
    // array must be turned away before it can pass for an envelope.
    if !starts_with_brace(text) {
        return Err(not_an_object(text));
    }
    match envelope::scan(text) {
        Some(sns) => decode_scanned(sns),
        None => decode_object(text),
    }
}

/// An SNS envelope read by the fast path.
fn decode_scanned(sns: envelope::SnsEnvelope<'_>) -> Result<AlarmEvent, Poison> {
    let envelope = Envelope {
        message_id: sns.message_id,
        topic_arn: sns.topic_arn,
        subject: sns.subject,
        timestamp: sns.timestamp,
    };
    decode_sns(sns.sns_type.as_deref(), sns.message, envelope)
}

/// Any JSON object, read by serde: the general path.
fn decode_object(text: &str) -> Result<AlarmEvent, Poison> {
    let body: Body = serde_json::from_str(text).map_err(|e| json_poison(&e))?;
    if body.looks_like_sns() {
        let envelope = Envelope {
            message_id: body.message_id,
            topic_arn: body.topic_arn,
            subject: body.subject,
            timestamp: body.timestamp,
        };
        decode_sns(body.sns_type.as_deref(), body.message, envelope)
    } else if body.looks_like_eventbridge() {
        decode_eventbridge(body, EventFormat::EventBridge, Envelope::default())
    } else if body.looks_like_alarm() {
        decode_alarm(body, EventFormat::Raw, Envelope::default())
    } else {
        Err(Poison::new(
            PoisonCode::UnrecognisedShape,
            "JSON object is neither an SNS envelope, a CloudWatch alarm notification nor an EventBridge alarm event",
        ))
    }
}

/// The SNS fields that travel with an alarm carried in an envelope.
#[derive(Default)]
struct Envelope<'a> {
    message_id: Option<Cow<'a, str>>,
    topic_arn: Option<Cow<'a, str>>,
    subject: Option<Cow<'a, str>>,
    /// Parsed only if the alarm has no time of its own.
    timestamp: Option<Cow<'a, str>>,
}

impl Envelope<'_> {
    fn time(&self) -> Option<DateTime<Utc>> {
        self.timestamp.as_deref().and_then(parse_aws_time)
    }
}

fn decode_sns(
    sns_type: Option<&str>,
    message: Option<Cow<'_, str>>,
    envelope: Envelope<'_>,
) -> Result<AlarmEvent, Poison> {
    let kind = sns_type.unwrap_or("Notification");
    if kind != "Notification" {
        return Err(Poison::new(
            PoisonCode::SnsNotNotification,
            format!("SNS envelope of Type {kind:?} is not an alarm notification"),
        ));
    }
    let Some(message) = message else {
        return Err(Poison::new(
            PoisonCode::MissingField,
            "SNS notification has no Message",
        ));
    };
    let not_alarm = |detail: &str| {
        Poison::new(
            PoisonCode::SnsMessageNotAlarm,
            format!("SNS Message is not a CloudWatch alarm: {detail}"),
        )
    };
    if !starts_with_brace(&message) {
        return Err(not_alarm("it is not a JSON object"));
    }
    let inner: Body = match serde_json::from_str(&message) {
        Ok(inner) => inner,
        Err(e) if e.is_data() => {
            return Err(Poison::new(
                PoisonCode::InvalidField,
                format!("alarm in SNS Message: {e}"),
            ))
        }
        Err(e) => return Err(not_alarm(&e.to_string())),
    };
    if inner.looks_like_sns() {
        Err(not_alarm("it is another SNS envelope"))
    } else if inner.looks_like_eventbridge() {
        decode_eventbridge(inner, EventFormat::Sns, envelope)
    } else if inner.looks_like_alarm() {
        decode_alarm(inner, EventFormat::Sns, envelope)
    } else {
        Err(not_alarm("no alarm fields"))
    }
}

fn decode_alarm(
    body: Body,
    format: EventFormat,
    envelope: Envelope<'_>,
) -> Result<AlarmEvent, Poison> {
    let alarm_name = required_name(body.alarm_name)?;
    let new_state = required_state(body.new_state.as_deref(), "NewStateValue")?;
    let old_state = optional_state(body.old_state.as_deref(), "OldStateValue")?;
    let state_change_time =
        state_time(body.state_change_time.as_deref(), "StateChangeTime", || {
            envelope.time()
        })?;
    let alarm_arn = owned(body.alarm_arn);
    let (arn_region, arn_account) = arn_region_account(alarm_arn.as_deref());
    let metric = body
        .trigger
        .map(|t| metric_of_trigger(t, body.alarm_rule.is_some()))
        .unwrap_or_else(|| MetricInfo::without_metric(body.alarm_rule.is_some()));
    Ok(AlarmEvent {
        alarm_name,
        account_id: arn_account.or_else(|| owned(body.account_id)),
        region: arn_region,
        alarm_arn,
        description: non_empty(body.alarm_description),
        new_state,
        old_state,
        state_reason: non_empty(body.new_state_reason),
        state_change_time,
        kind: metric.kind,
        namespace: metric.namespace,
        metric_name: metric.metric_name,
        dimensions: metric.dimensions,
        threshold: metric.threshold,
        comparison_operator: metric.comparison_operator,
        alarm_rule: non_empty(body.alarm_rule),
        format,
        sns_message_id: owned(envelope.message_id),
        topic_arn: owned(envelope.topic_arn),
        subject: owned(envelope.subject),
    })
}

fn decode_eventbridge(
    body: Body,
    format: EventFormat,
    envelope: Envelope<'_>,
) -> Result<AlarmEvent, Poison> {
    let detail_type = body.detail_type.as_deref().unwrap_or_default();
    let source = body.source.as_deref().unwrap_or_default();
    if detail_type != "CloudWatch Alarm State Change" || source != "aws.cloudwatch" {
        let reason = format!(
            "EventBridge event {detail_type:?} from {source:?} is not a CloudWatch alarm state change"
        );
        return Err(match format {
            EventFormat::Sns => Poison::new(PoisonCode::SnsMessageNotAlarm, reason),
            _ => Poison::new(PoisonCode::UnrecognisedShape, reason),
        });
    }
    let Some(detail) = body.detail else {
        return Err(Poison::new(
            PoisonCode::MissingField,
            "EventBridge alarm event has no detail",
        ));
    };
    // Parsed only now: the detail of any other event has another shape.
    let detail: Detail = serde_json::from_str(detail.get()).map_err(|e| {
        Poison::new(
            PoisonCode::InvalidField,
            format!("EventBridge alarm event detail: {e}"),
        )
    })?;
    let Detail {
        alarm_name,
        state,
        previous_state,
        configuration,
    } = detail;
    let alarm_name = required_name(alarm_name)?;
    let state = state.unwrap_or_default();
    let new_state = required_state(state.value.as_deref(), "detail.state.value")?;
    let old_state = optional_state(
        previous_state.as_ref().and_then(|p| p.value.as_deref()),
        "detail.previousState.value",
    )?;
    let event_time = body.time.as_deref();
    let state_change_time =
        state_time(state.timestamp.as_deref(), "detail.state.timestamp", || {
            event_time
                .and_then(parse_aws_time)
                .or_else(|| envelope.time())
        })?;
    let alarm_arn = body
        .resources
        .and_then(|r| r.into_iter().find(|a| a.contains(":alarm:")))
        .map(|a| a.into_owned());
    let (arn_region, arn_account) = arn_region_account(alarm_arn.as_deref());
    let config = configuration.unwrap_or_default();
    let composite = config.alarm_rule.is_some();
    let mut metric = MetricInfo::without_metric(composite);
    if let Some(queries) = config.metrics {
        let has_expression = queries.iter().any(|q| q.expression.is_some());
        let mut stats: Vec<_> = queries
            .into_iter()
            .filter_map(|q| {
                let m = q.metric_stat?.metric?;
                Some((q.return_data.unwrap_or(true), m))
            })
            .collect();
        let math = stats.len() > 1 || has_expression;
        // The primary metric is the first one whose data the alarm uses.
        stats.sort_by_key(|(returns, _)| !returns);
        for (_, m) in stats {
            if metric.namespace.is_none() {
                metric.namespace = owned(m.namespace);
                metric.metric_name = owned(m.name);
            }
            for (k, v) in m.dimensions.unwrap_or_default() {
                metric
                    .dimensions
                    .entry(k.into_owned())
                    .or_insert_with(|| v.into_owned());
            }
        }
        metric.kind = if config.threshold_metric_id.is_some() {
            AlarmKind::AnomalyDetection
        } else if math {
            AlarmKind::MetricMath
        } else if composite {
            AlarmKind::Composite
        } else {
            AlarmKind::Metric
        };
    }
    metric.threshold = config.threshold;
    Ok(AlarmEvent {
        alarm_name,
        account_id: arn_account.or_else(|| owned(body.account)),
        region: arn_region.or_else(|| owned(body.region)),
        alarm_arn,
        description: non_empty(config.description),
        new_state,
        old_state,
        state_reason: non_empty(state.reason),
        state_change_time,
        kind: metric.kind,
        namespace: metric.namespace,
        metric_name: metric.metric_name,
        dimensions: metric.dimensions,
        threshold: metric.threshold,
        comparison_operator: None,
        alarm_rule: non_empty(config.alarm_rule),
        format,
        sns_message_id: owned(envelope.message_id),
        topic_arn: owned(envelope.topic_arn),
        subject: owned(envelope.subject),
    })
}

/// The metric part of an alarm, whatever kind it is.
struct MetricInfo {
    kind: AlarmKind,
    namespace: Option<String>,
    metric_name: Option<String>,
    dimensions: BTreeMap<String, String>,
    threshold: Option<f64>,
    comparison_operator: Option<String>,
}

impl MetricInfo {
    fn without_metric(composite: bool) -> Self {
        MetricInfo {
            kind: if composite {
                AlarmKind::Composite
            } else {
                AlarmKind::Metric
            },
            namespace: None,
            metric_name: None,
            dimensions: BTreeMap::new(),
            threshold: None,
            comparison_operator: None,
        }
    }
}

fn metric_of_trigger(trigger: Trigger, composite: bool) -> MetricInfo {
    let mut info = MetricInfo::without_metric(composite);
    info.threshold = trigger.threshold;
    info.comparison_operator = owned(trigger.comparison_operator);
    if let Some(queries) = trigger.metrics {
        info.kind = if trigger.threshold_metric_id.is_some() {
            AlarmKind::AnomalyDetection
        } else {
            AlarmKind::MetricMath
        };
        let mut stats: Vec<_> = queries
            .into_iter()
            .filter_map(|q| Some((q.return_data.unwrap_or(true), q.metric_stat?.metric?)))
            .collect();
        // The primary metric is the first one whose data the alarm uses.
        stats.sort_by_key(|(returns, _)| !returns);
        for (_, m) in stats {
            if info.namespace.is_none() {
                info.namespace = owned(m.namespace);
                info.metric_name = owned(m.metric_name);
            }
            add_dimensions(&mut info.dimensions, m.dimensions);
        }
    } else {
        info.namespace = owned(trigger.namespace);
        info.metric_name = owned(trigger.metric_name);
        add_dimensions(&mut info.dimensions, trigger.dimensions);
        if trigger.threshold_metric_id.is_some() {
            info.kind = AlarmKind::AnomalyDetection;
        }
    }
    info
}

fn add_dimensions(into: &mut BTreeMap<String, String>, dims: Option<Vec<Dimension>>) {
    for d in dims.unwrap_or_default() {
        into.entry(d.name.into_owned())
            .or_insert_with(|| d.value.into_owned());
    }
}

fn owned(s: Option<std::borrow::Cow<'_, str>>) -> Option<String> {
    s.map(|s| s.into_owned())
}

fn non_empty(s: Option<std::borrow::Cow<'_, str>>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty()).map(|s| s.into_owned())
}

fn required_name(name: Option<std::borrow::Cow<'_, str>>) -> Result<String, Poison> {
    match name {
        Some(n) if !n.trim().is_empty() => Ok(n.into_owned()),
        Some(_) => Err(Poison::new(PoisonCode::InvalidField, "alarm name is empty")),
        None => Err(Poison::new(
            PoisonCode::MissingField,
            "alarm has no name (AlarmName / detail.alarmName)",
        )),
    }
}

fn required_state(value: Option<&str>, field: &str) -> Result<AlarmState, Poison> {
    match value {
        None => Err(Poison::new(
            PoisonCode::MissingField,
            format!("alarm has no {field}"),
        )),
        Some(v) => parse_state(v, field),
    }
}

fn optional_state(value: Option<&str>, field: &str) -> Result<Option<AlarmState>, Poison> {
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

fn state_time(
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
/// `arn:aws:cloudwatch:eu-south-1:123456789012:alarm:web`.
fn arn_region_account(arn: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(arn) = arn else { return (None, None) };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(_service), Some(region), Some(account)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return (None, None);
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    (nonempty(region), nonempty(account))
}

fn starts_with_brace(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Why a body that does not start with `{` is poison.
fn not_an_object(text: &str) -> Poison {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Poison::new(
            PoisonCode::UnrecognisedShape,
            "body is JSON, but not an object",
        ),
        Err(e) => Poison::new(PoisonCode::NotJson, format!("body is not JSON: {e}")),
    }
}

/// Why an object did not parse: a field of the wrong type, or broken JSON.
fn json_poison(e: &serde_json::Error) -> Poison {
    if e.is_data() {
        Poison::new(PoisonCode::InvalidField, e.to_string())
    } else {
        Poison::new(PoisonCode::NotJson, format!("body is not JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SNS: &[&str] = &[
        include_str!("../../tests/fixtures/sns/elb-unhealthy-hosts.json"),
        include_str!("../../tests/fixtures/sns/escaped-name.json"),
        include_str!("../../tests/fixtures/sns/eventbridge-composite.json"),
        include_str!(
            "../../tests/fixtures/poison/sns_not_notification--subscription-confirmation.json"
        ),
        include_str!("../../tests/fixtures/poison/missing_field--sns-no-message.json"),
    ];

    #[test]
    fn the_fast_path_takes_the_sns_fixtures() {
        for body in SNS {
            let sns = envelope::scan(body).expect("the fast path reads it");
            assert_eq!(decode_scanned(sns), decode_object(body));
        }
    }

    proptest! {
        /// Whatever the fast path accepts, it decodes as serde does.
        #[test]
        fn fast_and_general_paths_agree(
            which in 0..SNS.len(),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0..3usize, prop::sample::select(
                    vec!["", "\\", "\\\"", "\"", ",", "}", "{", ":", " ", "\\u0041", "x", "null", "\\n", "é"],
                )),
                1..4,
            ),
        ) {
            let mut body = SNS[which].to_string();
            for (at, delete, insert) in edits {
                let mut i = at.index(body.len() + 1);
                while !body.is_char_boundary(i) {
                    i -= 1;
                }
                let mut end = (i + delete).min(body.len());
                while !body.is_char_boundary(end) {
                    end += 1;
                }
                body.replace_range(i..end, insert);
            }
            if let Some(sns) = envelope::scan(&body) {
                prop_assert_eq!(decode_scanned(sns), decode_object(&body));
            }
        }
    }
}
