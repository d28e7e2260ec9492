//! The CloudWatch alarm notification: what SNS sends for a metric, metric
//! math, anomaly-detection or composite alarm, either raw (SNS raw message
//! delivery) or as an envelope's `Message`.

use super::fields::{
    arn_region_account, non_empty, optional_state, owned, required_name, required_state,
    state_time, Envelope,
};
use super::metric::{MetricInfo, MetricQuery};
use super::wire::{Body, Dimension, Trigger};
use super::{AlarmEvent, AlarmKind, EventFormat, Poison};

/// Decodes a body that looks like an alarm notification.
pub(super) fn decode(
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
    let composite = body.alarm_rule.is_some();
    let metric = body.trigger.map_or_else(
        || MetricInfo::without_metric(composite),
        |t| metric_of_trigger(t, composite),
    );
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

fn metric_of_trigger(trigger: Trigger, composite: bool) -> MetricInfo {
    let mut info = MetricInfo::without_metric(composite);
    info.threshold = trigger.threshold;
    info.comparison_operator = owned(trigger.comparison_operator);
    let anomaly = trigger.threshold_metric_id.is_some();
    if let Some(queries) = trigger.metrics {
        info.kind = if anomaly {
            AlarmKind::AnomalyDetection
        } else {
            AlarmKind::MetricMath
        };
        info.set_from_queries(queries.into_iter().filter_map(|q| {
            let m = q.metric_stat?.metric?;
            Some(MetricQuery {
                returns_data: q.return_data.unwrap_or(true),
                namespace: m.namespace,
                name: m.metric_name,
                dimensions: pairs(m.dimensions),
            })
        }));
    } else {
        info.set_metric(
            trigger.namespace,
            trigger.metric_name,
            pairs(trigger.dimensions),
        );
        if anomaly {
            info.kind = AlarmKind::AnomalyDetection;
        }
    }
    info
}

fn pairs(
    dims: Option<Vec<Dimension<'_>>>,
) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    dims.into_iter().flatten().map(|d| (d.name, d.value))
}
