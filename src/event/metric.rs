//! The metric part of an alarm, and the one place that flattens a list of
//! metric queries (metric math, anomaly detection) into it, whichever format
//! the list came in.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::fields::owned;
use super::AlarmKind;

/// The metric part of an alarm, whatever kind it is.
pub(super) struct MetricInfo {
    pub kind: AlarmKind,
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    pub dimensions: BTreeMap<String, String>,
    pub threshold: Option<f64>,
    pub comparison_operator: Option<String>,
}

/// One query of a list that reads a metric (has a `MetricStat`), as either
/// format writes it. `D` yields the metric's dimensions as name and value.
pub(super) struct MetricQuery<'a, D> {
    /// `ReturnData`: whether the alarm uses this query's data (absent means
    /// yes).
    pub returns_data: bool,
    pub namespace: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub dimensions: D,
}

impl MetricInfo {
    pub fn without_metric(composite: bool) -> Self {
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

    /// A single metric, named by the alarm itself.
    pub fn set_metric<'a>(
        &mut self,
        namespace: Option<Cow<'a, str>>,
        name: Option<Cow<'a, str>>,
        dimensions: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    ) {
        self.namespace = owned(namespace);
        self.metric_name = owned(name);
        self.add_dimensions(dimensions);
    }

    /// Namespace, metric and dimensions from the queries that read a metric,
    /// in the alarm's order: all three from the primary metric, the first
    /// whose data the alarm returns, or else the first. Never a union: the
    /// dimensions of a metric-math alarm over two instances name one
    /// instance, the primary one, not a mix of both.
    pub fn set_from_queries<'a, D>(&mut self, queries: impl IntoIterator<Item = MetricQuery<'a, D>>)
    where
        D: IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    {
        let mut first = None;
        for q in queries {
            if q.returns_data {
                first = Some(q);
                break;
            }
            if first.is_none() {
                first = Some(q);
            }
        }
        if let Some(q) = first {
            self.set_metric(q.namespace, q.name, q.dimensions);
        }
    }

    /// Adds dimensions; of two with one name, the first stays.
    fn add_dimensions<'a>(&mut self, dims: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>) {
        for (name, value) in dims {
            self.dimensions
                .entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Dims = Vec<(Cow<'static, str>, Cow<'static, str>)>;

    fn query(
        returns_data: bool,
        name: &'static str,
        dims: &[(&'static str, &'static str)],
    ) -> MetricQuery<'static, Dims> {
        MetricQuery {
            returns_data,
            namespace: Some(Cow::Borrowed("AWS/EC2")),
            name: Some(Cow::Borrowed(name)),
            dimensions: dims
                .iter()
                .map(|&(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
                .collect(),
        }
    }

    fn primary(
        queries: Vec<MetricQuery<'static, Dims>>,
    ) -> (Option<String>, Vec<(String, String)>) {
        let mut info = MetricInfo::without_metric(false);
        info.set_from_queries(queries);
        (info.metric_name, info.dimensions.into_iter().collect())
    }

    #[test]
    fn the_primary_metric_is_the_first_returned_else_the_first() {
        let a = || query(false, "a", &[("InstanceId", "i-a")]);
        let b = |returns| query(returns, "b", &[("InstanceId", "i-b"), ("Asg", "web")]);
        let dims = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            primary(vec![a(), b(false)]),
            (Some("a".to_string()), dims(&[("InstanceId", "i-a")]))
        );
        assert_eq!(
            primary(vec![a(), b(true)]),
            (
                Some("b".to_string()),
                dims(&[("Asg", "web"), ("InstanceId", "i-b")])
            )
        );
        assert_eq!(primary(vec![]), (None, vec![]));
    }
}
