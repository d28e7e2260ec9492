//! The domain type every wire format decodes to, and its parts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

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
    #[serde(serialize_with = "super::time::serialize_millis")]
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
