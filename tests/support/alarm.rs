//! CloudWatch alarms for tests: one definition that yields both the real
//! alarm in moto (for reflex's DescribeAlarms re-check) and the notification
//! JSON CloudWatch would have published to SNS (which moto never publishes).

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

pub const ACCOUNT_ID: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// The `Region` field of a notification is the display name, not the code.
pub const REGION_DISPLAY: &str = "US East (N. Virginia)";

/// A metric alarm, spelled the way PutMetricAlarm takes it.
#[derive(Clone, Debug)]
pub struct AlarmDef {
    pub name: String,
    pub description: Option<String>,
    pub namespace: String,
    pub metric_name: String,
    /// `(name, value)` pairs.
    pub dimensions: Vec<(String, String)>,
    /// PutMetricAlarm spelling (`Average`, `Maximum`, ...); notifications
    /// carry it upper-cased.
    pub statistic: String,
    pub period_seconds: i32,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: i32,
    pub comparison_operator: String,
    pub threshold: f64,
    pub treat_missing_data: String,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
}

impl AlarmDef {
    /// An alarm on any metric: one 60 s period of the average above 0.
    pub fn new(
        name: &str,
        namespace: &str,
        metric_name: &str,
        dimensions: &[(&str, &str)],
    ) -> Self {
        AlarmDef {
            name: name.to_owned(),
            description: None,
            namespace: namespace.to_owned(),
            metric_name: metric_name.to_owned(),
            dimensions: dimensions
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            statistic: "Average".to_owned(),
            period_seconds: 60,
            evaluation_periods: 1,
            datapoints_to_alarm: 1,
            comparison_operator: "GreaterThanThreshold".to_owned(),
            threshold: 0.0,
            treat_missing_data: "missing".to_owned(),
            alarm_actions: Vec::new(),
            ok_actions: Vec::new(),
            insufficient_data_actions: Vec::new(),
        }
    }

    /// The classic-ELB alarm reflex remediates: `UnHealthyHostCount` maximum
    /// above 0 for `LoadBalancerName = elb_name`.
    pub fn elb_unhealthy_hosts(name: &str, elb_name: &str) -> Self {
        let mut def = AlarmDef::new(
            name,
            "AWS/ELB",
            "UnHealthyHostCount",
            &[("LoadBalancerName", elb_name)],
        );
        def.statistic = "Maximum".to_owned();
        def.description = Some(format!("Unhealthy hosts behind {elb_name}"));
        def
    }

    /// Sets the SNS topics the alarm notifies in every state, as a real
    /// alarm wired to the pipeline would.
    pub fn notifying(mut self, topic_arn: &str) -> Self {
        self.alarm_actions = vec![topic_arn.to_owned()];
        self.ok_actions = vec![topic_arn.to_owned()];
        self
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{}",
            self.name
        )
    }

    /// The notification for a transition happening now.
    pub fn notification(&self, new_state: &str, old_state: &str) -> Value {
        self.notification_at(new_state, old_state, Utc::now())
    }

    /// The JSON CloudWatch publishes to SNS (the SNS `Message`) for a
    /// transition at `at`, field for field as real notifications carry it,
    /// including the odd `TreatMissingData` rendering and `"Unit": null`.
    pub fn notification_at(&self, new_state: &str, old_state: &str, at: DateTime<Utc>) -> Value {
        let dimensions: Vec<Value> = self
            .dimensions
            .iter()
            .map(|(name, value)| json!({ "value": value, "name": name }))
            .collect();
        json!({
            "AlarmName": self.name,
            "AlarmDescription": self.description,
            "AWSAccountId": ACCOUNT_ID,
            "AlarmConfigurationUpdatedTimestamp": cloudwatch_time(at - Duration::minutes(10)),
            "NewStateValue": new_state,
            "NewStateReason": self.state_reason(new_state, at),
            "StateChangeTime": cloudwatch_time(at),
            "Region": REGION_DISPLAY,
            "AlarmArn": self.arn(),
            "OldStateValue": old_state,
            "OKActions": self.ok_actions,
            "AlarmActions": self.alarm_actions,
            "InsufficientDataActions": self.insufficient_data_actions,
            "Trigger": {
                "MetricName": self.metric_name,
                "Namespace": self.namespace,
                "StatisticType": "Statistic",
                "Statistic": self.statistic.to_uppercase(),
                "Unit": null,
                "Dimensions": dimensions,
                "Period": self.period_seconds,
                "EvaluationPeriods": self.evaluation_periods,
                "DatapointsToAlarm": self.datapoints_to_alarm,
                "ComparisonOperator": self.comparison_operator,
                "Threshold": self.threshold,
                "TreatMissingData": format!("- TreatMissingData: {}", self.treat_missing_data),
                "EvaluateLowSampleCountPercentile": "",
            }
        })
    }

    /// CloudWatch's own wording, e.g. `Threshold Crossed: 1 out of the last
    /// 1 datapoints [1.0 (12/01/26 16:29:00)] was greater than the threshold
    /// (0.0) (minimum 1 datapoint for OK -> ALARM transition).`
    fn state_reason(&self, new_state: &str, at: DateTime<Utc>) -> String {
        let (relation, above) = match self.comparison_operator.as_str() {
            "GreaterThanOrEqualToThreshold" => ("greater than or equal to", true),
            "LessThanThreshold" => ("less than", false),
            "LessThanOrEqualToThreshold" => ("less than or equal to", false),
            _ => ("greater than", true),
        };
        let breaching = new_state == "ALARM";
        let value = if above == breaching {
            self.threshold + 1.0
        } else {
            self.threshold - 1.0
        };
        let stamp =
            (at - Duration::seconds(i64::from(self.period_seconds))).format("%d/%m/%y %H:%M:%S");
        match new_state {
            "INSUFFICIENT_DATA" if self.evaluation_periods == 1 => "Insufficient Data: 1 datapoint was unknown.".to_owned(),
            "INSUFFICIENT_DATA" => format!("Insufficient Data: {} datapoints were unknown.", self.evaluation_periods),
            _ => format!(
                "Threshold Crossed: {dp} out of the last {ep} datapoints [{value:?} ({stamp})] was {not}{relation} the threshold ({threshold:?}) (minimum {dp} datapoint for {from} -> {new_state} transition).",
                dp = self.datapoints_to_alarm,
                ep = self.evaluation_periods,
                not = if breaching { "" } else { "not " },
                threshold = self.threshold,
                from = if breaching { "OK" } else { "ALARM" },
            ),
        }
    }
}

/// The notification for an alarm on any metric, e.g.
/// `alarm_notification("web-unhealthy", "AWS/ELB", "UnHealthyHostCount",
/// &[("LoadBalancerName", "web")], "ALARM", "OK")`.
pub fn alarm_notification(
    alarm_name: &str,
    namespace: &str,
    metric_name: &str,
    dimensions: &[(&str, &str)],
    new_state: &str,
    old_state: &str,
) -> Value {
    AlarmDef::new(alarm_name, namespace, metric_name, dimensions).notification(new_state, old_state)
}

/// The SNS subject CloudWatch sets: `ALARM: "name" in US East (N. Virginia)`.
pub fn alarm_subject(notification: &Value) -> String {
    let field = |name: &str| {
        notification
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let region = notification
        .get("Region")
        .and_then(Value::as_str)
        .unwrap_or(REGION_DISPLAY);
    format!(
        "{}: \"{}\" in {region}",
        field("NewStateValue"),
        field("AlarmName")
    )
}

/// `2026-01-12T16:30:42.236+0000`: milliseconds and a colon-less offset,
/// which is not RFC 3339 and is what notifications carry.
pub fn cloudwatch_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}
