//! Templates in action parameters: `"{{ dimension.LoadBalancerName }}"`.
//!
//! Templates are parsed when rules load, so an unknown field is a load error
//! with a line and column, never a surprise at 3 a.m. Rendering is pure.

use std::fmt::Write as _;

use crate::event::{format_millis, AlarmEvent};

/// A field of the alarm event a template can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    AlarmName,
    AlarmArn,
    Account,
    Region,
    Description,
    NewState,
    OldState,
    Reason,
    StateChangeTime,
    Namespace,
    MetricName,
    Threshold,
    /// `dimension.NAME`; `instance_id` is `dimension.InstanceId`.
    Dimension(String),
    SnsMessageId,
    TopicArn,
    RuleName,
    /// The target group the alarm's `TargetGroup` dimension names, as an
    /// ARN in the alarm ARN's partition, region and account.
    TargetGroupArn,
}

impl Field {
    /// The dimension this field reads, which the rule's match must then
    /// guarantee.
    pub fn dimension(&self) -> Option<&str> {
        match self {
            Field::Dimension(d) => Some(d),
            Field::TargetGroupArn => Some("TargetGroup"),
            _ => None,
        }
    }
}

/// The ARN of the target group an `AWS/ApplicationELB` or `AWS/NetworkELB`
/// alarm is about: its `TargetGroup` dimension (`targetgroup/NAME/ID`)
/// with the partition, region and account of the alarm's ARN. `None` when
/// either is missing or malformed.
pub fn target_group_arn(event: &AlarmEvent) -> Option<String> {
    let dim = event.dimension("TargetGroup")?;
    if !dim.starts_with("targetgroup/") || dim.split('/').count() != 3 {
        return None;
    }
    let arn = event.alarm_arn.as_deref()?;
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(_service), Some(region), Some(account)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if partition.is_empty() || region.is_empty() || account.is_empty() {
        return None;
    }
    Some(format!(
        "arn:{partition}:elasticloadbalancing:{region}:{account}:{dim}"
    ))
}

/// The names a template may use, for error messages and the README.
pub const FIELD_NAMES: &[&str] = &[
    "alarm.name",
    "alarm.arn",
    "alarm.account",
    "alarm.region",
    "alarm.description",
    "alarm.new_state",
    "alarm.old_state",
    "alarm.reason",
    "alarm.state_change_time",
    "alarm.namespace",
    "alarm.metric_name",
    "alarm.threshold",
    "dimension.<Name>",
    "instance_id",
    "sns.message_id",
    "sns.topic_arn",
    "rule.name",
    "target_group_arn",
];

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "alarm.name" => Field::AlarmName,
            "alarm.arn" => Field::AlarmArn,
            "alarm.account" => Field::Account,
            "alarm.region" => Field::Region,
            "alarm.description" => Field::Description,
            "alarm.new_state" => Field::NewState,
            "alarm.old_state" => Field::OldState,
            "alarm.reason" => Field::Reason,
            "alarm.state_change_time" => Field::StateChangeTime,
            "alarm.namespace" => Field::Namespace,
            "alarm.metric_name" => Field::MetricName,
            "alarm.threshold" => Field::Threshold,
            "instance_id" => Field::Dimension("InstanceId".to_string()),
            "sns.message_id" => Field::SnsMessageId,
            "sns.topic_arn" => Field::TopicArn,
            "rule.name" => Field::RuleName,
            "target_group_arn" => Field::TargetGroupArn,
            other => {
                let dim = other.strip_prefix("dimension.")?;
                if dim.is_empty() {
                    return None;
                }
                Field::Dimension(dim.to_string())
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template that does not parse: what is wrong, and the byte offset in the
/// template string where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = src;
        let mut consumed = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError {
                    offset: consumed + open,
                    message: "`{{` is never closed with `}}`".to_string(),
                });
            };
            let name = after[..close].trim();
            let field = Field::parse(name).ok_or_else(|| TemplateError {
                offset: consumed + open,
                message: format!(
                    "unknown template field `{name}`; known fields: {}",
                    FIELD_NAMES.join(", ")
                ),
            })?;
            parts.push(Part::Field(field));
            let used = open + 2 + close + 2;
            consumed += used;
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The fields the template names.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f),
            Part::Text(_) => None,
        })
    }

    /// Fills the template in. Fields the event does not have render empty.
    pub fn render(&self, event: &AlarmEvent, rule_name: &str) -> String {
        // Values are appended straight from the event: rendering runs for
        // every action of every match, so no copies and no formatter.
        let mut out = String::with_capacity(64);
        for part in &self.parts {
            let value = match part {
                Part::Text(t) => t.as_str(),
                Part::Field(f) => {
                    fn opt(s: &Option<String>) -> &str {
                        s.as_deref().unwrap_or("")
                    }
                    match f {
                        Field::AlarmName => &event.alarm_name,
                        Field::AlarmArn => opt(&event.alarm_arn),
                        Field::Account => opt(&event.account_id),
                        Field::Region => opt(&event.region),
                        Field::Description => opt(&event.description),
                        Field::NewState => event.new_state.as_str(),
                        Field::OldState => event.old_state.map_or("", |s| s.as_str()),
                        Field::Reason => opt(&event.state_reason),
                        Field::StateChangeTime => {
                            out.push_str(&format_millis(&event.state_change_time));
                            continue;
                        }
                        Field::Namespace => opt(&event.namespace),
                        Field::MetricName => opt(&event.metric_name),
                        Field::Threshold => {
                            if let Some(t) = event.threshold {
                                let _ = write!(out, "{t}");
                            }
                            continue;
                        }
                        Field::Dimension(d) => event.dimension(d).unwrap_or_default(),
                        Field::SnsMessageId => opt(&event.sns_message_id),
                        Field::TopicArn => opt(&event.topic_arn),
                        Field::RuleName => rule_name,
                        Field::TargetGroupArn => {
                            out.push_str(&target_group_arn(event).unwrap_or_default());
                            continue;
                        }
                    }
                }
            };
            out.push_str(value);
        }
        out
    }
}

impl Template {
    /// The template's text if it names no field (a constant).
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_text() {
        let t = Template::parse("lb={{ dimension.LoadBalancerName }} in {{alarm.name}}!").unwrap();
        let fields: Vec<_> = t.fields().cloned().collect();
        assert_eq!(
            fields,
            vec![
                Field::Dimension("LoadBalancerName".into()),
                Field::AlarmName
            ]
        );
    }

    #[test]
    fn unknown_field_and_unclosed_are_errors_with_offsets() {
        let e = Template::parse("abc {{ alarm.nmae }}").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("alarm.nmae"), "{}", e.message);
        let e = Template::parse("x {{ alarm.name").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(Template::parse("{{ dimension. }}").is_err());
    }

    #[test]
    fn renders_every_field_and_empties_for_missing_ones() {
        let event = crate::event::decode(
            br#"{"AlarmName":"web","NewStateValue":"ALARM","OldStateValue":"OK",
                "StateChangeTime":"2026-01-12T16:30:42.236+0000",
                "AlarmArn":"arn:aws:cloudwatch:eu-south-1:123456789012:alarm:web",
                "NewStateReason":"Threshold Crossed",
                "Trigger":{"Namespace":"AWS/ELB","MetricName":"UnHealthyHostCount","Threshold":1.5,
                  "Dimensions":[{"name":"LoadBalancerName","value":"lb"}]}}"#,
        )
        .expect("decodes");
        let t = Template::parse(
            "{{alarm.name}}|{{alarm.arn}}|{{alarm.account}}|{{alarm.region}}|{{alarm.description}}|\
             {{alarm.new_state}}|{{alarm.old_state}}|{{alarm.reason}}|{{alarm.state_change_time}}|\
             {{alarm.namespace}}|{{alarm.metric_name}}|{{alarm.threshold}}|{{dimension.LoadBalancerName}}|\
             {{instance_id}}|{{sns.message_id}}|{{sns.topic_arn}}|{{rule.name}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&event, "r"),
            "web|arn:aws:cloudwatch:eu-south-1:123456789012:alarm:web|123456789012|eu-south-1||\
             ALARM|OK|Threshold Crossed|2026-01-12T16:30:42.236Z|\
             AWS/ELB|UnHealthyHostCount|1.5|lb||||r"
        );
    }

    #[test]
    fn instance_id_is_the_instance_dimension() {
        let t = Template::parse("{{ instance_id }}").unwrap();
        assert_eq!(
            t.fields().next(),
            Some(&Field::Dimension("InstanceId".into()))
        );
    }

    #[test]
    fn target_group_arn_comes_from_the_dimension_and_the_alarm_arn() {
        let event = |arn: &str, tg: &str| {
            crate::event::decode(
                format!(
                    r#"{{"AlarmName":"web","NewStateValue":"ALARM","OldStateValue":"OK",
                    "StateChangeTime":"2026-01-12T16:30:42.236+0000",
                    "AlarmArn":"{arn}",
                    "Trigger":{{"Namespace":"AWS/ApplicationELB","MetricName":"UnHealthyHostCount",
                      "Dimensions":[{{"name":"TargetGroup","value":"{tg}"}}]}}}}"#
                )
                .as_bytes(),
            )
            .expect("decodes")
        };
        let t = Template::parse("{{ target_group_arn }}").unwrap();
        assert_eq!(
            t.fields().next().and_then(Field::dimension),
            Some("TargetGroup")
        );
        assert_eq!(
            t.render(
                &event(
                    "arn:aws-cn:cloudwatch:cn-north-1:123456789012:alarm:web",
                    "targetgroup/web/73e2d6bc24d8a067"
                ),
                "r"
            ),
            "arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:targetgroup/web/73e2d6bc24d8a067"
        );
        // A dimension that is not a target group's renders nothing.
        assert_eq!(
            t.render(
                &event(
                    "arn:aws:cloudwatch:eu-south-1:123456789012:alarm:web",
                    "web"
                ),
                "r"
            ),
            ""
        );
    }
}
