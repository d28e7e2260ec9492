//! The fast path: reads a body, an SNS `Message` or an EventBridge `detail`
//! into the same [`wire`](super::wire) structs serde would, with the small
//! [`Reader`] instead of serde's derived code.
//!
//! Measured with callgrind on an SNS-wrapped alarm, serde's derived code
//! spent most of its instructions on the envelope (it restarts its string
//! scanner at every one of a `Message`'s ~150 escapes) and on matching and
//! skipping keys; this reads each object in one pass, matches a key once,
//! skips the fields reflex ignores (`Signature`, `SigningCertURL`,
//! `UnsubscribeURL`, the alarm's action lists, ...) without building them,
//! and borrows every string without escapes from the text.
//!
//! It answers `None` ("not sure") on anything serde might read differently:
//! a duplicate field, a value of another type, a `\u` escape, deep nesting,
//! broken JSON. The caller then asks serde, which decides, so the fast path
//! can only ever be faster, never different. Every field serde reads is read
//! here with serde's meaning (`null` is absent, an alias is the same field,
//! a duplicate map key keeps the last value).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::IgnoredAny;

use super::json::Reader;
use super::wire::{
    Body, Detail, DetailConfiguration, DetailMetric, DetailMetricQuery, DetailMetricStat,
    DetailState, Dimension, Metric, MetricQuery, MetricStat, RawJson, Trigger,
};

/// Which fields of one object have been read, so that a second one of the
/// same name is turned away (serde calls it an error).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    #[inline]
    fn first(&mut self, field: u32) -> Option<()> {
        let bit = 1 << field;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

type Str<'a> = Option<Cow<'a, str>>;

/// Reads a member's value into a field, once.
macro_rules! field {
    ($seen:ident, $bit:expr, $slot:expr, $value:expr) => {{
        $seen.first($bit)?;
        $slot = $value;
    }};
}

/// A string or `null`.
#[inline]
fn opt_str<'a, const E: bool>(r: &mut Reader<'a, E>) -> Option<Str<'a>> {
    r.or_null(Reader::string)
}

/// A whole text as a [`Body`] (an SNS envelope, an alarm notification or an
/// EventBridge event), or `None`.
pub(super) fn body(text: &str) -> Option<Body<'_>> {
    let mut r = Reader::new(text);
    let b = body_in(&mut r)?;
    r.at_end().then_some(b)
}

/// The members of a body. An envelope's own `Message` is read in place, in
/// escaped mode: the alarm inside it, without unescaping it first.
fn body_in<'a, const E: bool>(r: &mut Reader<'a, E>) -> Option<Body<'a>> {
    let mut b = Body::default();
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            // SNS envelope.
            "Type" => field!(seen, 0, b.sns_type, opt_str(r)?),
            "Message" => {
                seen.first(1)?;
                let mark = r.mark();
                match r.escaped(body_in) {
                    Some(inner) => b.inner = Some(Box::new(inner)),
                    None => {
                        // Not sure in place: unescape it; it is read again
                        // (or left to serde) on its own.
                        r.rewind(mark);
                        b.message = r.or_null(|r| r.string_sized(true))?;
                    }
                }
            }
            "MessageId" => field!(seen, 2, b.message_id, opt_str(r)?),
            "TopicArn" => field!(seen, 3, b.topic_arn, opt_str(r)?),
            "Subject" => field!(seen, 4, b.subject, opt_str(r)?),
            "Timestamp" => field!(seen, 5, b.timestamp, opt_str(r)?),
            // CloudWatch alarm notification.
            "AlarmName" => field!(seen, 6, b.alarm_name, opt_str(r)?),
            "AlarmDescription" => field!(seen, 7, b.alarm_description, opt_str(r)?),
            "AWSAccountId" => field!(seen, 8, b.account_id, opt_str(r)?),
            "NewStateValue" => field!(seen, 9, b.new_state, opt_str(r)?),
            "OldStateValue" => field!(seen, 10, b.old_state, opt_str(r)?),
            "NewStateReason" => field!(seen, 11, b.new_state_reason, opt_str(r)?),
            "StateChangeTime" => field!(seen, 12, b.state_change_time, opt_str(r)?),
            "AlarmArn" => field!(seen, 13, b.alarm_arn, opt_str(r)?),
            "AlarmRule" => field!(seen, 14, b.alarm_rule, opt_str(r)?),
            "Trigger" => field!(seen, 15, b.trigger, r.or_null(trigger)?),
            // EventBridge event.
            "detail-type" => field!(seen, 16, b.detail_type, opt_str(r)?),
            "source" => field!(seen, 17, b.source, opt_str(r)?),
            "account" => field!(seen, 18, b.account, opt_str(r)?),
            "region" => field!(seen, 19, b.region, opt_str(r)?),
            "time" => field!(seen, 20, b.time, opt_str(r)?),
            "resources" => {
                seen.first(21)?;
                b.resources = r.or_null(|r| {
                    let mut out = Vec::new();
                    r.array(|r| {
                        out.push(r.string()?);
                        Some(())
                    })?;
                    Some(out)
                })?;
            }
            "detail" => {
                seen.first(22)?;
                b.detail = r.or_null(|r| r.raw().map(RawJson))?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(b)
}

fn trigger<'a, const E: bool>(r: &mut Reader<'a, E>) -> Option<Trigger<'a>> {
    let mut t = Trigger::default();
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "MetricName" => field!(seen, 0, t.metric_name, opt_str(r)?),
            "Namespace" => field!(seen, 1, t.namespace, opt_str(r)?),
            "Dimensions" => field!(seen, 2, t.dimensions, r.or_null(dimensions)?),
            "Threshold" => field!(seen, 3, t.threshold, r.or_null(Reader::f64)?),
            "ComparisonOperator" => field!(seen, 4, t.comparison_operator, opt_str(r)?),
            "ThresholdMetricId" => field!(seen, 5, t.threshold_metric_id, opt_str(r)?),
            "Metrics" => {
                seen.first(6)?;
                t.metrics = r.or_null(|r| list(r, metric_query))?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(t)
}

/// An array, each item read by `item`.
fn list<'a, T, const E: bool>(
    r: &mut Reader<'a, E>,
    mut item: impl FnMut(&mut Reader<'a, E>) -> Option<T>,
) -> Option<Vec<T>> {
    let mut out = Vec::new();
    r.array(|r| {
        out.push(item(r)?);
        Some(())
    })?;
    Some(out)
}

/// `[{"name": ..., "value": ...}]`; `Name` and `Value` are aliases, and both
/// are required.
fn dimensions<'a, const E: bool>(r: &mut Reader<'a, E>) -> Option<Vec<Dimension<'a>>> {
    list(r, |r| {
        let (mut name, mut value) = (None, None);
        let mut seen = Seen::default();
        r.object(|r, key| {
            match key {
                "name" | "Name" => field!(seen, 0, name, Some(r.string()?)),
                "value" | "Value" => field!(seen, 1, value, Some(r.string()?)),
                _ => r.skip()?,
            }
            Some(())
        })?;
        Some(Dimension {
            name: name?,
            value: value?,
        })
    })
}

fn metric_query<'a, const E: bool>(r: &mut Reader<'a, E>) -> Option<MetricQuery<'a>> {
    let mut q = MetricQuery {
        return_data: None,
        metric_stat: None,
    };
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "ReturnData" => field!(seen, 0, q.return_data, r.or_null(Reader::bool)?),
            "MetricStat" => field!(seen, 1, q.metric_stat, r.or_null(metric_stat)?),
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(q)
}

fn metric_stat<'a, const E: bool>(r: &mut Reader<'a, E>) -> Option<MetricStat<'a>> {
    let mut metric = None;
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "Metric" => {
                seen.first(0)?;
                metric = r.or_null(|r| {
                    let mut m = Metric {
                        metric_name: None,
                        namespace: None,
                        dimensions: None,
                    };
                    let mut seen = Seen::default();
                    r.object(|r, key| {
                        match key {
                            "MetricName" => field!(seen, 0, m.metric_name, opt_str(r)?),
                            "Namespace" => field!(seen, 1, m.namespace, opt_str(r)?),
                            "Dimensions" => {
                                field!(seen, 2, m.dimensions, r.or_null(dimensions)?)
                            }
                            _ => r.skip()?,
                        }
                        Some(())
                    })?;
                    Some(m)
                })?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(MetricStat { metric })
}

/// An EventBridge alarm event's `detail`.
pub(super) fn detail(text: &str) -> Option<Detail<'_>> {
    let mut r = Reader::new(text);
    let mut d = Detail::default();
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "alarmName" => field!(seen, 0, d.alarm_name, opt_str(r)?),
            "state" => field!(seen, 1, d.state, r.or_null(detail_state)?),
            "previousState" => field!(seen, 2, d.previous_state, r.or_null(detail_state)?),
            "configuration" => field!(seen, 3, d.configuration, r.or_null(configuration)?),
            _ => r.skip()?,
        }
        Some(())
    })?;
    r.at_end().then_some(d)
}

fn detail_state<'a>(r: &mut Reader<'a>) -> Option<DetailState<'a>> {
    let mut s = DetailState::default();
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "value" => field!(seen, 0, s.value, opt_str(r)?),
            "reason" => field!(seen, 1, s.reason, opt_str(r)?),
            "timestamp" => field!(seen, 2, s.timestamp, opt_str(r)?),
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(s)
}

fn configuration<'a>(r: &mut Reader<'a>) -> Option<DetailConfiguration<'a>> {
    let mut c = DetailConfiguration::default();
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "description" => field!(seen, 0, c.description, opt_str(r)?),
            "alarmRule" => field!(seen, 1, c.alarm_rule, opt_str(r)?),
            "threshold" => field!(seen, 2, c.threshold, r.or_null(Reader::f64)?),
            "thresholdMetricId" => field!(seen, 3, c.threshold_metric_id, opt_str(r)?),
            "metrics" => {
                seen.first(4)?;
                c.metrics = r.or_null(|r| list(r, detail_metric_query))?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(c)
}

fn detail_metric_query<'a>(r: &mut Reader<'a>) -> Option<DetailMetricQuery<'a>> {
    let mut q = DetailMetricQuery {
        return_data: None,
        expression: None,
        metric_stat: None,
    };
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "returnData" => field!(seen, 0, q.return_data, r.or_null(Reader::bool)?),
            "expression" => {
                seen.first(1)?;
                q.expression = r.or_null(|r| r.skip().map(|()| IgnoredAny))?;
            }
            "metricStat" => {
                seen.first(2)?;
                q.metric_stat = r.or_null(|r| {
                    let mut metric = None;
                    let mut seen = Seen::default();
                    r.object(|r, key| {
                        match key {
                            "metric" => field!(seen, 0, metric, r.or_null(detail_metric)?),
                            _ => r.skip()?,
                        }
                        Some(())
                    })?;
                    Some(DetailMetricStat { metric })
                })?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(q)
}

fn detail_metric<'a>(r: &mut Reader<'a>) -> Option<DetailMetric<'a>> {
    let mut m = DetailMetric {
        namespace: None,
        name: None,
        dimensions: None,
    };
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "namespace" => field!(seen, 0, m.namespace, opt_str(r)?),
            "name" => field!(seen, 1, m.name, opt_str(r)?),
            "dimensions" => {
                seen.first(2)?;
                m.dimensions = r.or_null(|r| {
                    let mut map = BTreeMap::new();
                    // A repeated name keeps its last value, as serde's map does.
                    r.members(|r, key| {
                        let value = r.string()?;
                        map.insert(key, value);
                        Some(())
                    })?;
                    Some(map)
                })?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(m)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::dispatch::decode_object;
    use super::super::parser::Parser;
    use super::*;

    #[test]
    fn reads_an_envelope_and_unescapes_the_message() {
        let text = r#" {
          "Type" : "Notification", "MessageId" : "m-1",
          "TopicArn" : "arn:aws:sns:eu-south-1:123456789012:t",
          "Subject" : "ALARM: \"web\" in EU (Milan)",
          "Message" : "{\"AlarmName\":\"web\"}\t\/\n\\\b\f\r",
          "Timestamp" : "2026-01-12T16:30:42.289Z",
          "SignatureVersion" : "1", "Signature" : "abc==",
          "MessageAttributes" : { "k" : { "Type" : "String", "Value" : [1, {"x": null}] } }
        } "#;
        let b = body(text).expect("an SNS envelope");
        assert_eq!(b.sns_type.as_deref(), Some("Notification"));
        assert_eq!(
            b.message.as_deref(),
            Some("{\"AlarmName\":\"web\"}\t/\n\\\u{8}\u{c}\r")
        );
        assert!(matches!(b.message_id, Some(Cow::Borrowed("m-1"))));
        assert_eq!(b.subject.as_deref(), Some(r#"ALARM: "web" in EU (Milan)"#));
        assert_eq!(b.timestamp.as_deref(), Some("2026-01-12T16:30:42.289Z"));
    }

    #[test]
    fn reads_an_alarm_as_serde_does() {
        let text = r#"{"AlarmName":"web","Trigger":{"Threshold":1.5,"Unit":null,
            "Dimensions":[{"value":"lb","name":"LoadBalancerName"},{"Name":"Az","Value":"a"}],
            "Metrics":[{"ReturnData":false,"MetricStat":{"Metric":{"Namespace":"AWS/ELB"}}},
                       {"Expression":"m1","ReturnData":null}]}}"#;
        let b = body(text).expect("read");
        let t = b.trigger.expect("a trigger");
        assert_eq!(t.threshold, Some(1.5));
        let dims: Vec<_> = t
            .dimensions
            .expect("dimensions")
            .into_iter()
            .map(|d| (d.name, d.value))
            .collect();
        assert_eq!(
            dims,
            [
                ("LoadBalancerName".into(), "lb".into()),
                ("Az".into(), "a".into())
            ]
        );
        let metrics = t.metrics.expect("metrics");
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[0].return_data, Some(false));
        assert_eq!(metrics[1].return_data, None);
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for text in [
            r#"{"Type":"Notification","Message":"x","Message":"y"}"#,
            r#"{"Type":"Notification","Message":null,"Message":"y"}"#,
            r#"{"Type":"Notification","Message":"caf\u00e9"}"#,
            r#"{"Type":"Notification","Message":1}"#,
            r#"{"Type":"Notification","Message":"x"} trailing"#,
            r#"{"Type":"Notification","Message":"x",}"#,
            r#"{"Type":"Notification","Signature":[1,}"#,
            "{\"Type\":\"Notification\",\"Message\":\"a\u{1}b\"}",
            r#"{"Type":"Notification","Message":"x\q"}"#,
            r#"{"Type":"Notification","Message":"unterminated}"#,
            r#"{"AlarmName":"web","Trigger":[]}"#,
            r#"{"AlarmName":"web","Trigger":{"Threshold":"1"}}"#,
            r#"{"AlarmName":"web","Trigger":{"Threshold":1e999}}"#,
            r#"{"AlarmName":"web","Trigger":{"Dimensions":[{"name":"a"}]}}"#,
            r#"{"AlarmName":"web","Trigger":{"Dimensions":[{"name":"a","Name":"b","value":"c"}]}}"#,
            r#"{"AlarmName":"web","Trigger":{"Metrics":[{"ReturnData":"yes"}]}}"#,
            r#"{"detail-type":"x","resources":[null]}"#,
            r#"[]"#,
            "",
        ] {
            assert!(body(text).is_none(), "{text}");
        }
        for text in [
            r#"{"alarmName":"a","alarmName":"b"}"#,
            r#"{"configuration":{"metrics":[{"metricStat":{"metric":{"dimensions":{"a":null}}}}]}}"#,
        ] {
            assert!(detail(text).is_none(), "{text}");
        }
    }

    /// Every fixture that decodes, and every poison fixture that is JSON,
    /// takes the fast path (a silent fall back to serde would cost speed,
    /// not correctness, so only this test would notice).
    #[test]
    fn the_fixtures_take_the_fast_path() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut read = 0;
        for dir in ["sns", "raw", "eventbridge"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("fixture dir") {
                let path = entry.expect("entry").path();
                let text = std::fs::read_to_string(&path).expect("fixture");
                let b = body(&text).unwrap_or_else(|| panic!("{} left to serde", path.display()));
                let name = path.display().to_string();
                if let Some(message) = &b.message {
                    assert!(body(message).is_some(), "{name}: Message left to serde");
                }
                // An alarm notification in an envelope is read in place (an
                // EventBridge event in one has a raw `detail`, so it is not).
                if dir == "sns" && !name.contains("eventbridge") {
                    assert!(b.inner.is_some(), "{name}: Message not read in place");
                }
                read += 1;
            }
        }
        assert!(read >= 25, "only {read} fixtures");
    }

    const SNS: &[&str] = &[
        include_str!("../../tests/fixtures/sns/elb-unhealthy-hosts.json"),
        include_str!("../../tests/fixtures/sns/escaped-name.json"),
        include_str!("../../tests/fixtures/sns/eventbridge-composite.json"),
        include_str!("../../tests/fixtures/sns/metric-math.json"),
        include_str!("../../tests/fixtures/raw/anomaly-detection.json"),
        include_str!("../../tests/fixtures/eventbridge/metric-math-two-instances.json"),
        include_str!(
            "../../tests/fixtures/poison/sns_not_notification--subscription-confirmation.json"
        ),
        include_str!("../../tests/fixtures/poison/missing_field--sns-no-message.json"),
    ];

    proptest! {
        /// Bodies damaged where the fast path works hardest (around escapes,
        /// quotes and structure) decode as the reference path decodes them.
        #[test]
        fn fast_and_reference_paths_agree(
            which in 0..SNS.len(),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0..3usize, prop::sample::select(
                    vec!["", "\\", "\\\"", "\"", ",", "}", "{", "[", "]", ":", " ", "\\u0041",
                         "x", "null", "1", "-0.5e3", "true", "\\n", "é", "\\\\\\\"", "{}", "[]"],
                )),
                1..4,
            ),
        ) {
            let mut text = SNS[which].to_string();
            for (at, delete, insert) in edits {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                let mut end = (i + delete).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(i..end, insert);
            }
            let fast = decode_object(&text, Parser::Fast);
            let reference = decode_object(&text, Parser::Reference);
            match (&fast, &reference) {
                (Err(a), Err(b)) => prop_assert_eq!(a.code, b.code, "{}", text),
                _ => prop_assert_eq!(&fast, &reference, "{}", text),
            }
        }
    }
}
