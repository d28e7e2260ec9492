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

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

type Str<'a> = Option<Cow<'a, str>>;

/// Reads a [`Str`], borrowing from the input when the string has no escapes.
/// (serde's own `Option<Cow<str>>` always copies; most alarm strings have
/// no escapes, and decoding is on the hot path.)
fn opt_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Str<'a>, D::Error> {
    struct OptStr;
    impl<'de> Visitor<'de> for OptStr {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(CowStr).map(Some)
        }
    }
    struct CowStr;
    impl<'de> Visitor<'de> for CowStr {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    d.deserialize_option(OptStr)
}

#[derive(Deserialize, Default)]
pub(super) struct Body<'a> {
    // --- SNS envelope ---
    #[serde(rename = "Type", borrow, default, deserialize_with = "opt_str")]
    pub sns_type: Str<'a>,
    #[serde(rename = "Message", borrow, default, deserialize_with = "opt_str")]
    pub message: Str<'a>,
    /// The body inside `Message`, when the fast path read it in place (then
    /// `message` is `None`); serde never sets it.
    #[serde(skip)]
    pub inner: Option<Box<Body<'a>>>,
    #[serde(rename = "MessageId", borrow, default, deserialize_with = "opt_str")]
    pub message_id: Str<'a>,
    #[serde(rename = "TopicArn", borrow, default, deserialize_with = "opt_str")]
    pub topic_arn: Str<'a>,
    #[serde(rename = "Subject", borrow, default, deserialize_with = "opt_str")]
    pub subject: Str<'a>,
    #[serde(rename = "Timestamp", borrow, default, deserialize_with = "opt_str")]
    pub timestamp: Str<'a>,

    // --- CloudWatch alarm notification ---
    #[serde(rename = "AlarmName", borrow, default, deserialize_with = "opt_str")]
    pub alarm_name: Str<'a>,
    #[serde(
        rename = "AlarmDescription",
        borrow,
        default,
        deserialize_with = "opt_str"
    )]
    pub alarm_description: Str<'a>,
    #[serde(rename = "AWSAccountId", borrow, default, deserialize_with = "opt_str")]
    pub account_id: Str<'a>,
    #[serde(
        rename = "NewStateValue",
        borrow,
        default,
        deserialize_with = "opt_str"
    )]
    pub new_state: Str<'a>,
    #[serde(
        rename = "OldStateValue",
        borrow,
        default,
        deserialize_with = "opt_str"
    )]
    pub old_state: Str<'a>,
    #[serde(
        rename = "NewStateReason",
        borrow,
        default,
        deserialize_with = "opt_str"
    )]
    pub new_state_reason: Str<'a>,
    #[serde(
        rename = "StateChangeTime",
        borrow,
        default,
        deserialize_with = "opt_str"
    )]
    pub state_change_time: Str<'a>,
    #[serde(rename = "AlarmArn", borrow, default, deserialize_with = "opt_str")]
    pub alarm_arn: Str<'a>,
    #[serde(rename = "AlarmRule", borrow, default, deserialize_with = "opt_str")]
    pub alarm_rule: Str<'a>,
    #[serde(rename = "Trigger", borrow, default)]
    pub trigger: Option<Trigger<'a>>,

    // --- EventBridge event ---
    #[serde(rename = "detail-type", borrow, default, deserialize_with = "opt_str")]
    pub detail_type: Str<'a>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub source: Str<'a>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub account: Str<'a>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub region: Str<'a>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub time: Str<'a>,
    #[serde(borrow, default)]
    pub resources: Option<Vec<Cow<'a, str>>>,
    /// Kept raw until `detail-type` says it is an alarm event: other events
    /// have details of other shapes, which are not errors.
    #[serde(borrow, default)]
    pub detail: Option<RawJson<'a>>,
}

/// A JSON value kept as its text, borrowed from the body (what serde_json's
/// `RawValue` holds, as a plain `&str` the fast path can make too).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct RawJson<'a>(pub &'a str);

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de serde_json::value::RawValue>::deserialize(d).map(|raw| RawJson(raw.get()))
    }
}

impl Body<'_> {
    pub fn looks_like_sns(&self) -> bool {
        self.sns_type.is_some()
            || (self.topic_arn.is_some() && (self.message.is_some() || self.inner.is_some()))
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
    #[serde(rename = "MetricName", borrow, default, deserialize_with = "opt_str")]
    pub metric_name: Str<'a>,
    #[serde(rename = "Namespace", borrow, default, deserialize_with = "opt_str")]
    pub namespace: Str<'a>,
    #[serde(rename = "Dimensions", borrow, default)]
    pub dimensions: Option<Vec<Dimension<'a>>>,
    #[serde(rename = "Threshold", default)]
    pub threshold: Option<f64>,
    #[serde(
        rename = "ComparisonOperator",
        borrow,
        default,
        deserialize_with = "opt_str"
    )]
    pub comparison_operator: Str<'a>,
    #[serde(
        rename = "ThresholdMetricId",
        borrow,
        default,
        deserialize_with = "opt_str"
    )]
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
    #[serde(rename = "MetricName", borrow, default, deserialize_with = "opt_str")]
    pub metric_name: Str<'a>,
    #[serde(rename = "Namespace", borrow, default, deserialize_with = "opt_str")]
    pub namespace: Str<'a>,
    #[serde(rename = "Dimensions", borrow, default)]
    pub dimensions: Option<Vec<Dimension<'a>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Detail<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
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
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub value: Str<'a>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub reason: Str<'a>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub timestamp: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct DetailConfiguration<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub description: Str<'a>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub alarm_rule: Str<'a>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
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
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub namespace: Str<'a>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub name: Str<'a>,
    #[serde(borrow, default)]
    pub dimensions: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}
