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
    /// in the alarm's order.
    pub fn set_from_queries<'a, D>(&mut self, queries: impl IntoIterator<Item = MetricQuery<'a, D>>)
    where
        D: IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    {
        let mut queries: Vec<_> = queries.into_iter().collect();
        // The primary metric is the first one whose data the alarm uses.
        queries.sort_by_key(|q| !q.returns_data);
        for q in queries {
            if self.namespace.is_none() {
                self.namespace = owned(q.namespace);
                self.metric_name = owned(q.name);
            }
            self.add_dimensions(q.dimensions);
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
