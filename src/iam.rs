//! The least-privilege IAM policy the daemon needs for a rule set.
//!
//! `reflex iam-policy` prints it; the Terraform module's role must grant
//! exactly these actions (a test compares them), so adding an action kind here
//! without updating the Terraform fails the build.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::rules::{Action, ActionKind, RuleSet};

/// Actions the daemon always needs, whatever the rules: consume the queue,
/// dead-letter poison, publish its own metrics.
pub const BASE_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:SendMessage",
    "cloudwatch:PutMetricData",
];

/// The AWS API actions one action kind calls.
pub const fn actions_for(kind: ActionKind) -> &'static [&'static str] {
    match kind {
        ActionKind::TerminateOutOfService => &[
            "elasticloadbalancing:DescribeInstanceHealth",
            "ec2:DescribeInstances",
            "cloudwatch:DescribeAlarms",
            "ec2:TerminateInstances",
            "sns:Publish",
        ],
        ActionKind::DeregisterOutOfService => &[
            "elasticloadbalancing:DescribeInstanceHealth",
            "ec2:DescribeInstances",
            "cloudwatch:DescribeAlarms",
            "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
            "sns:Publish",
        ],
        ActionKind::RebootInstance => &[
            "ec2:DescribeInstances",
            "ec2:RebootInstances",
            "sns:Publish",
        ],
        ActionKind::StopInstance => &["ec2:DescribeInstances", "ec2:StopInstances", "sns:Publish"],
        ActionKind::TerminateInstance => &[
            "ec2:DescribeInstances",
            "ec2:TerminateInstances",
            "sns:Publish",
        ],
        ActionKind::Notify => &["sns:Publish"],
        ActionKind::PutMetric => &["cloudwatch:PutMetricData"],
    }
}

/// EC2 actions that change an instance: always conditioned on a tag.
pub const DESTRUCTIVE_EC2_ACTIONS: &[&str] = &[
    "ec2:TerminateInstances",
    "ec2:RebootInstances",
    "ec2:StopInstances",
];

/// What the policy is scoped to. `None` means "any" (`*`), for printing a
/// policy before the resources exist.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub queue_arn: Option<String>,
    pub dead_letter_queue_arn: Option<String>,
    /// The tag every instance reflex may change must carry.
    pub tag_key: String,
    pub tag_value: Option<String>,
    /// The DynamoDB state table, when `[state] backend = "dynamodb"`: its
    /// ARN, or `None` for a config without a shared store.
    pub state_table_arn: Option<String>,
}

/// The DynamoDB actions the shared state store calls (TransactWriteItems
/// is authorised per item, as PutItem/UpdateItem/ConditionCheckItem).
pub const STATE_TABLE_ACTIONS: &[&str] = &[
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
];

/// The ARN of the state table, in the queue's region and account when the
/// queue's ARN is known (`*` otherwise).
pub fn state_table_arn(table: &str, queue_arn: Option<&str>) -> String {
    let (region, account) = queue_arn
        .and_then(|arn| {
            let mut p = arn.split(':').skip(3);
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .unwrap_or_else(|| ("*".to_string(), "*".to_string()));
    format!("arn:aws:dynamodb:{region}:{account}:table/{table}")
}

/// Every action the daemon can call, for any rule set.
pub fn all_actions() -> BTreeSet<&'static str> {
    ActionKind::ALL
        .into_iter()
        .flat_map(|k| actions_for(k).iter().copied())
        .chain(BASE_ACTIONS.iter().copied())
        .collect()
}

/// Turns an SQS queue URL (`https://sqs.us-east-1.amazonaws.com/123456789012/q`)
/// into its ARN.
pub fn queue_arn_from_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let mut parts = rest.split('/');
    let host = parts.next()?;
    let account = parts.next()?;
    let name = parts.next()?;
    let region = host.strip_prefix("sqs.")?.split('.').next()?;
    Some(format!("arn:aws:sqs:{region}:{account}:{name}"))
}

/// Builds the policy document for the given action kinds (all kinds when
/// `rules` is `None`).
pub fn policy(rules: Option<&RuleSet>, scope: &Scope) -> Value {
    let kinds: BTreeSet<ActionKind> = match rules {
        Some(r) => r.action_kinds(),
        None => ActionKind::ALL.into_iter().collect(),
    };
    let mut wanted: BTreeSet<&str> = BASE_ACTIONS.iter().copied().collect();
    for k in &kinds {
        wanted.extend(actions_for(*k));
    }
    let any = |o: &Option<String>| o.clone().unwrap_or_else(|| "*".to_string());
    let mut statements = vec![
        json!({"Sid": "ConsumeAlarmQueue", "Effect": "Allow",
               "Action": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
               "Resource": any(&scope.queue_arn)}),
        json!({"Sid": "DeadLetterPoison", "Effect": "Allow",
               "Action": ["sqs:SendMessage"], "Resource": any(&scope.dead_letter_queue_arn)}),
    ];
    let mut namespaces: BTreeSet<String> = BTreeSet::from(["reflex".to_string()]);
    let mut topics: BTreeSet<String> = BTreeSet::new();
    let mut any_topic = false;
    if let Some(rules) = rules {
        for action in rules.rules().iter().flat_map(|r| r.actions.iter()) {
            let mut literal = |t: &crate::rules::Template| t.literal().map(str::to_string);
            match action {
                Action::PutMetric(p) => match literal(&p.namespace) {
                    Some(ns) => {
                        namespaces.insert(ns);
                    }
                    None => {
                        namespaces.insert("*".to_string());
                    }
                },
                Action::Notify(n) => match literal(&n.topic_arn) {
                    Some(t) => {
                        topics.insert(t);
                    }
                    None => any_topic = true,
                },
                Action::TerminateOutOfService(o) | Action::DeregisterOutOfService(o) => {
                    match o.escalate_topic_arn.as_ref().map(&mut literal) {
                        Some(Some(t)) => {
                            topics.insert(t);
                        }
                        Some(None) => any_topic = true,
                        None => {}
                    }
                }
                Action::RebootInstance(o)
                | Action::StopInstance(o)
                | Action::TerminateInstance(o) => {
                    match o.escalate_topic_arn.as_ref().map(&mut literal) {
                        Some(Some(t)) => {
                            topics.insert(t);
                        }
                        Some(None) => any_topic = true,
                        None => {}
                    }
                }
            }
        }
    } else {
        any_topic = true;
        namespaces.insert("*".to_string());
    }
    let namespace_condition = if namespaces.contains("*") {
        json!({"StringLike": {"cloudwatch:namespace": "*"}})
    } else {
        json!({"StringEquals": {"cloudwatch:namespace": namespaces}})
    };
    statements.push(json!({"Sid": "PublishMetrics", "Effect": "Allow",
        "Action": ["cloudwatch:PutMetricData"], "Resource": "*", "Condition": namespace_condition}));
    if wanted.contains("cloudwatch:DescribeAlarms") {
        statements.push(json!({"Sid": "ReadAlarms", "Effect": "Allow",
            "Action": ["cloudwatch:DescribeAlarms"], "Resource": "*"}));
    }
    if wanted.contains("ec2:DescribeInstances") {
        statements.push(json!({"Sid": "DescribeInstances", "Effect": "Allow",
            "Action": ["ec2:DescribeInstances"], "Resource": "*"}));
    }
    // DescribeInstanceHealth supports no resource-level permissions; only
    // deregistration can be scoped to load balancers.
    if wanted.contains("elasticloadbalancing:DescribeInstanceHealth") {
        statements.push(json!({"Sid": "ReadLoadBalancerHealth", "Effect": "Allow",
            "Action": ["elasticloadbalancing:DescribeInstanceHealth"], "Resource": "*"}));
    }
    if wanted.contains("elasticloadbalancing:DeregisterInstancesFromLoadBalancer") {
        statements.push(
            json!({"Sid": "DeregisterFromLoadBalancers", "Effect": "Allow",
            "Action": ["elasticloadbalancing:DeregisterInstancesFromLoadBalancer"],
            "Resource": "arn:aws:elasticloadbalancing:*:*:loadbalancer/*"}),
        );
    }
    let ec2: Vec<&str> = DESTRUCTIVE_EC2_ACTIONS
        .iter()
        .copied()
        .filter(|a| wanted.contains(a))
        .collect();
    if !ec2.is_empty() {
        let tag_condition = format!("ec2:ResourceTag/{}", scope.tag_key);
        let condition = match &scope.tag_value {
            Some(v) => json!({"StringEquals": {tag_condition: v}}),
            None => json!({"Null": {tag_condition: "false"}}),
        };
        statements.push(json!({"Sid": "ChangeTaggedInstances", "Effect": "Allow",
            "Action": ec2, "Resource": "arn:aws:ec2:*:*:instance/*", "Condition": condition}));
    }
    if wanted.contains("sns:Publish") && (any_topic || !topics.is_empty()) {
        let resource = if any_topic { json!("*") } else { json!(topics) };
        statements.push(json!({"Sid": "Notify", "Effect": "Allow",
            "Action": ["sns:Publish"], "Resource": resource}));
    }
    if let Some(table) = &scope.state_table_arn {
        statements.push(json!({"Sid": "SharedState", "Effect": "Allow",
            "Action": STATE_TABLE_ACTIONS, "Resource": table}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The set of actions a policy document grants.
pub fn granted_actions(policy: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for st in policy["Statement"].as_array().into_iter().flatten() {
        match &st["Action"] {
            Value::String(a) => {
                out.insert(a.clone());
            }
            Value::Array(a) => out.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string))),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_kinds_policy_grants_exactly_all_actions() {
        let p = policy(
            None,
            &Scope {
                tag_key: "reflex:managed".into(),
                ..Default::default()
            },
        );
        let granted = granted_actions(&p);
        let all: BTreeSet<String> = all_actions().into_iter().map(str::to_string).collect();
        assert_eq!(granted, all);
    }

    #[test]
    fn queue_arns() {
        assert_eq!(
            queue_arn_from_url("https://sqs.eu-west-1.amazonaws.com/123456789012/reflex")
                .as_deref(),
            Some("arn:aws:sqs:eu-west-1:123456789012:reflex")
        );
        assert_eq!(queue_arn_from_url("not a url"), None);
    }

    #[test]
    fn the_state_table_is_granted_only_when_used() {
        let base = Scope {
            tag_key: "reflex:managed".into(),
            ..Default::default()
        };
        let without = granted_actions(&policy(None, &base));
        assert!(without.iter().all(|a| !a.starts_with("dynamodb:")));
        let arn = state_table_arn("reflex-state", Some("arn:aws:sqs:eu-west-1:123456789012:q"));
        assert_eq!(
            arn,
            "arn:aws:dynamodb:eu-west-1:123456789012:table/reflex-state"
        );
        assert_eq!(state_table_arn("t", None), "arn:aws:dynamodb:*:*:table/t");
        let with = policy(
            None,
            &Scope {
                state_table_arn: Some(arn.clone()),
                ..base
            },
        );
        let shared: Vec<&serde_json::Value> = with["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["Sid"] == "SharedState")
            .collect();
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0]["Resource"], arn);
        let granted = granted_actions(&with);
        let dynamo: Vec<&str> = granted
            .iter()
            .map(String::as_str)
            .filter(|a| a.starts_with("dynamodb:"))
            .collect();
        assert_eq!(dynamo, STATE_TABLE_ACTIONS);
    }
}
