//! The JSON shapes in which a CloudWatch alarm reaches a queue, as borrowed
//! serde structs.
//!
//! One struct, [`Body`], is the union of the top-level fields of all three
//! formats (SNS envelope, raw alarm notification, EventBridge event), so a body
//! is parsed once whatever it turns out to be (an EventBridge `detail` is only
//! delimited, and parsed once `detail-type` says it is an alarm's). Fields reflex does not
//! use are not named here and serde skips them without allocating; strings are
//! borrowed from the body unless they contain escapes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

type Str<'a> = Option<Cow<'a, str>>;

#[derive(Deserialize, Default)]
pub(super) struct Body<'a> {
    // --- SNS envelope ---
    #[serde(rename = "Type", borrow, default)]
    pub sns_type: Str<'a>,
    #[serde(rename = "Message", borrow, default)]
    pub message: Str<'a>,
    #[serde(rename = "MessageId", borrow, default)]
    pub message_id: Str<'a>,
    #[serde(rename = "TopicArn", borrow, default)]
    pub topic_arn: Str<'a>,
    #[serde(rename = "Subject", borrow, default)]
    pub subject: Str<'a>,
    #[serde(rename = "Timestamp", borrow, default)]
    pub timestamp: Str<'a>,

    // --- CloudWatch alarm notification ---
    #[serde(rename = "AlarmName", borrow, default)]
    pub alarm_name: Str<'a>,
    #[serde(rename = "AlarmDescription", borrow, default)]
    pub alarm_description: Str<'a>,
    #[serde(rename = "AWSAccountId", borrow, default)]
    pub account_id: Str<'a>,
    #[serde(rename = "NewStateValue", borrow, default)]
    pub new_state: Str<'a>,
    #[serde(rename = "OldStateValue", borrow, default)]
    pub old_state: Str<'a>,
    #[serde(rename = "NewStateReason", borrow, default)]
    pub new_state_reason: Str<'a>,
    #[serde(rename = "StateChangeTime", borrow, default)]
    pub state_change_time: Str<'a>,
    #[serde(rename = "AlarmArn", borrow, default)]
    pub alarm_arn: Str<'a>,
    #[serde(rename = "AlarmRule", borrow, default)]
    pub alarm_rule: Str<'a>,
    #[serde(rename = "Trigger", borrow, default)]
    pub trigger: Option<Trigger<'a>>,

    // --- EventBridge event ---
    #[serde(rename = "detail-type", borrow, default)]
    pub detail_type: Str<'a>,
    #[serde(borrow, default)]
    pub source: Str<'a>,
    #[serde(borrow, default)]
    pub account: Str<'a>,
    #[serde(borrow, default)]
    pub region: Str<'a>,
    #[serde(borrow, default)]
    pub time: Str<'a>,
    #[serde(borrow, default)]
    pub resources: Option<Vec<Cow<'a, str>>>,
    /// Kept raw until `detail-type` says it is an alarm event: other events
    /// have details of other shapes, which are not errors.
    #[serde(borrow, default)]
    pub detail: Option<&'a serde_json::value::RawValue>,
}

impl Body<'_> {
    pub fn looks_like_sns(&self) -> bool {
        self.sns_type.is_some() || (self.topic_arn.is_some() && self.message.is_some())
    }

    pub fn looks_like_eventbridge(&self) -> bool {
        self.detail_type.is_some() || self.detail.is_some()
    }

    pub fn looks_like_alarm(&self) -> bool {
        self.alarm_name.is_some()
            || self.new_state.is_some()
            || self.alarm_arn.is_some()
            || self.trigger.is_some()
    }
}

#[derive(Deserialize, Default)]
pub(super) struct Trigger<'a> {
    #[serde(rename = "MetricName", borrow, default)]
    pub metric_name: Str<'a>,
    #[serde(rename = "Namespace", borrow, default)]
    pub namespace: Str<'a>,
    #[serde(rename = "Dimensions", borrow, default)]
    pub dimensions: Option<Vec<Dimension<'a>>>,
    #[serde(rename = "Threshold", default)]
    pub threshold: Option<f64>,
    #[serde(rename = "ComparisonOperator", borrow, default)]
    pub comparison_operator: Str<'a>,
    #[serde(rename = "ThresholdMetricId", borrow, default)]
    pub threshold_metric_id: Str<'a>,
    #[serde(rename = "Metrics", borrow, default)]
    pub metrics: Option<Vec<MetricQuery<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct Dimension<'a> {
    #[serde(alias = "Name", borrow)]
    pub name: Cow<'a, str>,
    #[serde(alias = "Value", borrow)]
    pub value: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(super) struct MetricQuery<'a> {
    #[serde(rename = "ReturnData", default)]
    pub return_data: Option<bool>,
    #[serde(rename = "MetricStat", borrow, default)]
    pub metric_stat: Option<MetricStat<'a>>,
}

#[derive(Deserialize)]
pub(super) struct MetricStat<'a> {
    #[serde(rename = "Metric", borrow, default)]
    pub metric: Option<Metric<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Metric<'a> {
    #[serde(rename = "MetricName", borrow, default)]
    pub metric_name: Str<'a>,
    #[serde(rename = "Namespace", borrow, default)]
    pub namespace: Str<'a>,
    #[serde(rename = "Dimensions", borrow, default)]
    pub dimensions: Option<Vec<Dimension<'a>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Detail<'a> {
    #[serde(borrow, default)]
    pub alarm_name: Str<'a>,
    #[serde(borrow, default)]
    pub state: Option<DetailState<'a>>,
    #[serde(borrow, default)]
    pub previous_state: Option<DetailState<'a>>,
    #[serde(borrow, default)]
    pub configuration: Option<DetailConfiguration<'a>>,
}

#[derive(Deserialize, Default)]
pub(super) struct DetailState<'a> {
    #[serde(borrow, default)]
    pub value: Str<'a>,
    #[serde(borrow, default)]
    pub reason: Str<'a>,
    #[serde(borrow, default)]
    pub timestamp: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct DetailConfiguration<'a> {
    #[serde(borrow, default)]
    pub description: Str<'a>,
    #[serde(borrow, default)]
    pub alarm_rule: Str<'a>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(borrow, default)]
    pub threshold_metric_id: Str<'a>,
    #[serde(borrow, default)]
    pub metrics: Option<Vec<DetailMetricQuery<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DetailMetricQuery<'a> {
    #[serde(default)]
    pub return_data: Option<bool>,
    /// Only its presence matters: an expression makes the alarm metric math,
    /// even over a single metric (`m1 / 60`).
    #[serde(default)]
    pub expression: Option<serde::de::IgnoredAny>,
    #[serde(borrow, default)]
    pub metric_stat: Option<DetailMetricStat<'a>>,
}

#[derive(Deserialize)]
pub(super) struct DetailMetricStat<'a> {
    #[serde(borrow, default)]
    pub metric: Option<DetailMetric<'a>>,
}

#[derive(Deserialize)]
pub(super) struct DetailMetric<'a> {
    #[serde(borrow, default)]
    pub namespace: Str<'a>,
    #[serde(borrow, default)]
    pub name: Str<'a>,
    #[serde(borrow, default)]
    pub dimensions: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}
