//! The one builder of CloudWatch alarm notifications for tests: the JSON
//! CloudWatch publishes (raw delivery), or that JSON in an SNS envelope.

use serde_json::{json, Value};

/// The account every test resource is in.
pub const ACCOUNT_ID: &str = "123456789012";

/// An alarm notification. Defaults: `web-unhealthy` going OK -> ALARM at
/// `2026-01-12T16:30:42.236+0000` on `AWS/ELB` `UnHealthyHostCount` with
/// `LoadBalancerName = web`, reason `Threshold Crossed`.
#[derive(Debug, Clone)]
pub struct AlarmBody {
    alarm_name: String,
    namespace: String,
    metric_name: String,
    dimensions: Vec<(String, String)>,
    new_state: String,
    old_state: String,
    reason: String,
    /// CloudWatch's form: `2026-01-12T16:30:42.236+0000`.
    state_change_time: String,
}

impl Default for AlarmBody {
    fn default() -> Self {
        AlarmBody::new("web-unhealthy")
    }
}

impl AlarmBody {
    /// An alarm named `alarm_name` on the default ELB metric.
    pub fn new(alarm_name: &str) -> Self {
        AlarmBody {
            alarm_name: alarm_name.to_string(),
            namespace: "AWS/ELB".to_string(),
            metric_name: "UnHealthyHostCount".to_string(),
            dimensions: vec![("LoadBalancerName".to_string(), "web".to_string())],
            new_state: "ALARM".to_string(),
            old_state: "OK".to_string(),
            reason: "Threshold Crossed".to_string(),
            state_change_time: "2026-01-12T16:30:42.236+0000".to_string(),
        }
    }

    /// Replaces the dimensions.
    pub fn dimensions(mut self, dimensions: &[(&str, &str)]) -> Self {
        self.dimensions = dimensions
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self
    }

    pub fn metric(mut self, namespace: &str, metric_name: &str) -> Self {
        self.namespace = namespace.to_string();
        self.metric_name = metric_name.to_string();
        self
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = reason.to_string();
        self
    }

    /// The transition time, in CloudWatch's `+0000` form.
    pub fn changed_at(mut self, state_change_time: &str) -> Self {
        self.state_change_time = state_change_time.to_string();
        self
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:cloudwatch:us-east-1:{ACCOUNT_ID}:alarm:{}",
            self.alarm_name
        )
    }

    /// The notification JSON CloudWatch publishes.
    pub fn notification(&self) -> Value {
        let dims: Vec<Value> = self
            .dimensions
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        json!({
            "AlarmName": self.alarm_name,
            "AlarmArn": self.arn(),
            "AWSAccountId": ACCOUNT_ID,
            "NewStateValue": self.new_state,
            "OldStateValue": self.old_state,
            "NewStateReason": self.reason,
            "StateChangeTime": self.state_change_time,
            "Region": "US East (N. Virginia)",
            "Trigger": {
                "MetricName": self.metric_name,
                "Namespace": self.namespace,
                "Dimensions": dims,
                "Threshold": 1.0
            }
        })
    }

    /// The body of a raw-delivery SQS message.
    pub fn raw(&self) -> String {
        self.notification().to_string()
    }

    /// The body SNS delivers to SQS: the notification in an envelope from
    /// `topic_arn` with SNS message id `sns_message_id`, signed (version 1,
    /// SNS's default) by the tests' signer, whose certificate the fakes
    /// serve.
    pub fn sns(&self, topic_arn: &str, sns_message_id: &str) -> String {
        super::signing::test_signer().sign_envelope(
            &self.sns_unsigned(topic_arn, sns_message_id),
            crate::trust::SignatureVersion::V1,
        )
    }

    /// [`sns`](Self::sns) without the signature fields: what no SNS topic
    /// delivers, but anyone who can send to the queue can.
    pub fn sns_unsigned(&self, topic_arn: &str, sns_message_id: &str) -> String {
        json!({
            "Type": "Notification",
            "MessageId": sns_message_id,
            "TopicArn": topic_arn,
            "Subject": self.new_state,
            "Message": self.raw(),
            "Timestamp": "2026-01-12T16:30:42.300Z"
        })
        .to_string()
    }
}
