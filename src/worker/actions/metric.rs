//! Put one CloudWatch data point.

use super::{Findings, Run};
use crate::aws::Datum;
use crate::outcome::Outcome;
use crate::rules::action::PutMetric;

/// Puts `p`'s data point.
pub(super) async fn put_metric(
    run: &Run<'_>,
    p: &PutMetric<String>,
    findings: &mut Findings,
) -> Outcome {
    let datum = Datum {
        metric_name: p.metric_name.clone(),
        value: p.value,
        unit: p.unit.clone(),
        dimensions: p.dimensions.clone(),
    };
    let result = findings
        .aws(run.effects.metrics.put(&p.namespace, &[datum]))
        .await;
    findings.changed(run, result)
}
