//! The EventBridge "CloudWatch Alarm State Change" event, sent to the queue
//! by an EventBridge rule or carried in an SNS envelope.

use super::fields::{
    arn_region_account, non_empty, optional_state, owned, required_name, required_state,
    state_time, Envelope,
};
use super::metric::{MetricInfo, MetricQuery};
use super::parser::Parser;
use super::wire::{Body, Detail};
use super::{parse_aws_time, AlarmEvent, AlarmKind, EventFormat, Poison, PoisonCode};

/// Decodes a body that looks like an EventBridge event.
pub(super) fn decode(
    body: Body,
    format: EventFormat,
    envelope: Envelope<'_>,
    parser: Parser,
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
    let detail = parser.detail(detail.0).map_err(|e| {
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
        let stats: Vec<_> = queries
            .into_iter()
            .filter_map(|q| {
                let m = q.metric_stat?.metric?;
                Some(MetricQuery {
                    returns_data: q.return_data.unwrap_or(true),
                    namespace: m.namespace,
                    name: m.name,
                    dimensions: m.dimensions.unwrap_or_default(),
                })
            })
            .collect();
        let math = stats.len() > 1 || has_expression;
        metric.set_from_queries(stats);
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
