//! The least-privilege IAM policy the daemon needs for a rule set.
//!
//! `reflex iam-policy` prints it. It has the same structure as the Terraform
//! module's daemon policy (`infra/terraform/iam.tf`): the same statements,
//! resources pinned to one partition, region and account, the tag condition
//! with its required value, deregistration on named load balancers, and the
//! explicit Deny on untagged instances. `tests/terraform.rs` compares the two
//! as (effect, action, resource, condition) tuples, so a change on one side
//! without the other fails the build.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::rules::action::PoolSource;
use crate::rules::spec::Method;
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
        ActionKind::RemediatePool => &[
            "elasticloadbalancing:DescribeInstanceHealth",
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetHealth",
            "ec2:DescribeInstances",
            "cloudwatch:DescribeAlarms",
            "ec2:TerminateInstances",
            "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
            "elasticloadbalancing:DeregisterTargets",
            "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:SetInstanceHealth",
            "autoscaling:TerminateInstanceInAutoScalingGroup",
            "ssm:DescribeInstanceInformation",
            "ssm:GetCommandInvocation",
            "ssm:SendCommand",
            "sns:Publish",
        ],
        ActionKind::RunCommand => &[
            "ec2:DescribeInstances",
            "cloudwatch:DescribeAlarms",
            "ssm:DescribeInstanceInformation",
            "ssm:GetCommandInvocation",
            "ssm:SendCommand",
            "sns:Publish",
        ],
        ActionKind::Notify => &["sns:Publish"],
        ActionKind::PutMetric => &["cloudwatch:PutMetricData"],
    }
}

/// The AWS API actions one action calls: for a pool action, only those of
/// its pool kind and method (a subset of [`actions_for`] its kind).
pub fn actions_for_action<S>(action: &Action<S>) -> Vec<&'static str> {
    let Action::RemediatePool(p) = action else {
        return actions_for(action.kind()).to_vec();
    };
    let mut out = vec![
        "ec2:DescribeInstances",
        "cloudwatch:DescribeAlarms",
        "sns:Publish",
    ];
    match &p.source {
        PoolSource::ClassicElb { .. } => out.push("elasticloadbalancing:DescribeInstanceHealth"),
        PoolSource::TargetGroup { .. } => out.extend([
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetHealth",
        ]),
    }
    if p.method.through_auto_scaling() {
        out.extend(AUTO_SCALING_READS);
    }
    if p.method == Method::RunCommand {
        out.extend(SSM_READS);
    }
    out.push(match (p.method, &p.source) {
        (Method::RunCommand, _) => "ssm:SendCommand",
        (Method::Terminate, _) => "ec2:TerminateInstances",
        (Method::AsgSetUnhealthy, _) => "autoscaling:SetInstanceHealth",
        (Method::AsgTerminate, _) => "autoscaling:TerminateInstanceInAutoScalingGroup",
        (Method::Deregister, PoolSource::ClassicElb { .. }) => {
            "elasticloadbalancing:DeregisterInstancesFromLoadBalancer"
        }
        (Method::Deregister, PoolSource::TargetGroup { .. }) => {
            "elasticloadbalancing:DeregisterTargets"
        }
    });
    out
}

/// What the Auto Scaling methods read first: the instance's group, and the
/// group's suspended processes. Neither has a resource type.
pub const AUTO_SCALING_READS: &[&str] = &[
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeAutoScalingGroups",
];

/// What `run_command` reads: which instances SSM manages, and each
/// invocation's status. Neither has a resource type.
pub const SSM_READS: &[&str] = &[
    "ssm:DescribeInstanceInformation",
    "ssm:GetCommandInvocation",
];

/// The Auto Scaling writes: on groups carrying the managed tag only.
pub const AUTO_SCALING_WRITES: &[&str] = &[
    "autoscaling:SetInstanceHealth",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
];

/// EC2 actions that change an instance: always conditioned on a tag.
pub const DESTRUCTIVE_EC2_ACTIONS: &[&str] = &[
    "ec2:TerminateInstances",
    "ec2:RebootInstances",
    "ec2:StopInstances",
];

/// The item operations the DynamoDB state store makes, on its table only.
/// `TransactWriteItems` is authorized by the per-item actions it contains;
/// `Query` serves `reflex state`.
pub const DYNAMODB_STATE_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
];

/// What the policy is scoped to. Values left out (`None`, empty) widen the
/// policy to `*` in that place, and [`Policy::warnings`] says where.
#[derive(Debug, Clone)]
pub struct Scope {
    /// `aws`, `aws-cn`, `aws-us-gov`...
    pub partition: String,
    pub region: Option<String>,
    pub account: Option<String>,
    pub queue_arn: Option<String>,
    pub dead_letter_queue_arn: Option<String>,
    /// The tag every instance reflex may change must carry, and its value.
    pub tag_key: String,
    pub tag_value: String,
    /// Classic load balancers reflex may deregister from (besides those the
    /// rules name literally).
    pub load_balancer_names: Vec<String>,
    /// Target groups reflex may deregister from (besides those the rules
    /// name literally).
    pub target_group_arns: Vec<String>,
    /// Auto Scaling groups the Auto Scaling methods may act through. Empty:
    /// every group of the account and region that carries the managed tag.
    pub auto_scaling_group_names: Vec<String>,
    /// Topics reflex may publish to (besides those the rules name literally).
    pub notification_topic_arns: Vec<String>,
    /// Metric namespaces reflex may put to (besides `reflex` and those the
    /// rules name literally).
    pub metric_namespaces: Vec<String>,
    /// The DynamoDB state table's name, when the state backend is DynamoDB.
    pub state_table: Option<String>,
    /// The bucket and prefix of an `s3://` rules source: listing under the
    /// prefix and reading its objects, nothing more.
    pub rules_s3: Option<(String, String)>,
}

impl Default for Scope {
    /// The Terraform module's defaults: partition `aws`, tag
    /// `reflex:managed = true`, nothing else pinned.
    fn default() -> Self {
        Scope {
            partition: "aws".to_string(),
            region: None,
            account: None,
            queue_arn: None,
            dead_letter_queue_arn: None,
            tag_key: "reflex:managed".to_string(),
            tag_value: "true".to_string(),
            load_balancer_names: Vec::new(),
            target_group_arns: Vec::new(),
            auto_scaling_group_names: Vec::new(),
            notification_topic_arns: Vec::new(),
            metric_namespaces: Vec::new(),
            state_table: None,
            rules_s3: None,
        }
    }
}

/// A generated policy and what in it could not be pinned down.
#[derive(Debug, Clone)]
pub struct Policy {
    pub document: Value,
    /// One sentence per place the policy is wider than it could be, e.g.
    /// "no region given".
    pub warnings: Vec<String>,
}

/// Every action the daemon can call, for any rule set (the state table's
/// actions are not included: they depend on the state backend).
pub fn all_actions() -> BTreeSet<&'static str> {
    ActionKind::ALL
        .into_iter()
        .flat_map(|k| actions_for(k).iter().copied())
        .chain(BASE_ACTIONS.iter().copied())
        .collect()
}

/// The parts of an SQS queue URL: region (when the host names one),
/// account, name, and the partition its host implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrl {
    pub region: Option<String>,
    pub account: String,
    pub name: String,
    pub partition: Option<&'static str>,
}

/// Parses `https://sqs.<region>.amazonaws.com[.cn]/<account>/<name>` (and
/// the legacy `<region>.queue.amazonaws.com`, and emulator URLs such as
/// `http://localhost:4566/<account>/<name>`, which name no region).
pub fn parse_queue_url(url: &str) -> Option<QueueUrl> {
    let rest = url.split_once("://")?.1;
    let mut parts = rest.split('/');
    let host = parts.next()?;
    let account = parts.next()?;
    let name = parts.next()?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    let host = host.split(':').next().unwrap_or(host);
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split('.').next())
        .or_else(|| {
            host.split_once(".queue.")
                .map(|(r, _)| r)
                .filter(|r| !r.contains('.'))
        })
        .map(str::to_string);
    let partition = if host.ends_with(".amazonaws.com.cn") {
        Some("aws-cn")
    } else if host.ends_with(".amazonaws.com") {
        if region.as_deref().is_some_and(|r| r.starts_with("us-gov-")) {
            Some("aws-us-gov")
        } else {
            Some("aws")
        }
    } else {
        None
    };
    Some(QueueUrl {
        region,
        account: account.to_string(),
        name: name.to_string(),
        partition,
    })
}

/// Turns an SQS queue URL (`https://sqs.us-east-1.amazonaws.com/123456789012/q`)
/// into its ARN, in the partition its host implies.
pub fn queue_arn_from_url(url: &str) -> Option<String> {
    let q = parse_queue_url(url)?;
    let region = q.region?;
    Some(format!(
        "arn:{}:sqs:{region}:{}:{}",
        q.partition.unwrap_or("aws"),
        q.account,
        q.name
    ))
}

/// What the rules themselves name literally; `None` where some rule uses a
/// template, so any value is possible.
struct RuleTargets {
    topics: BTreeSet<String>,
    any_topic: bool,
    namespaces: BTreeSet<String>,
    any_namespace: bool,
    load_balancers: BTreeSet<String>,
    any_load_balancer: bool,
    target_groups: BTreeSet<String>,
    any_target_group: bool,
}

fn rule_targets(rules: Option<&RuleSet>) -> RuleTargets {
    let mut t = RuleTargets {
        topics: BTreeSet::new(),
        any_topic: rules.is_none(),
        namespaces: BTreeSet::new(),
        any_namespace: rules.is_none(),
        load_balancers: BTreeSet::new(),
        any_load_balancer: rules.is_none(),
        target_groups: BTreeSet::new(),
        any_target_group: rules.is_none(),
    };
    let Some(rules) = rules else { return t };
    let literal = |tmpl: &crate::rules::Template| tmpl.literal().map(str::to_string);
    for action in rules.rules().iter().flat_map(|r| r.actions.iter()) {
        let escalate = match action {
            Action::PutMetric(p) => {
                match literal(&p.namespace) {
                    Some(ns) => {
                        t.namespaces.insert(ns);
                    }
                    None => t.any_namespace = true,
                }
                None
            }
            Action::Notify(n) => {
                match literal(&n.topic_arn) {
                    Some(topic) => {
                        t.topics.insert(topic);
                    }
                    None => t.any_topic = true,
                }
                None
            }
            Action::TerminateOutOfService(o) | Action::DeregisterOutOfService(o) => {
                match literal(&o.load_balancer) {
                    Some(lb) => {
                        t.load_balancers.insert(lb);
                    }
                    None => t.any_load_balancer = true,
                }
                o.escalate_topic_arn.as_ref()
            }
            Action::RebootInstance(o) | Action::StopInstance(o) | Action::TerminateInstance(o) => {
                o.escalate_topic_arn.as_ref()
            }
            Action::RunCommand(c) => c.instance.escalate_topic_arn.as_ref(),
            Action::RemediatePool(p) => {
                match &p.source {
                    PoolSource::ClassicElb { load_balancer } => match literal(load_balancer) {
                        Some(lb) => {
                            t.load_balancers.insert(lb);
                        }
                        None => t.any_load_balancer = true,
                    },
                    PoolSource::TargetGroup { target_group_arn } => {
                        match literal(target_group_arn) {
                            Some(arn) => {
                                t.target_groups.insert(arn);
                            }
                            None => t.any_target_group = true,
                        }
                    }
                }
                p.escalate_topic_arn.as_ref()
            }
        };
        if let Some(topic) = escalate {
            match literal(topic) {
                Some(topic) => {
                    t.topics.insert(topic);
                }
                None => t.any_topic = true,
            }
        }
    }
    t
}

fn allow(sid: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources})
}

/// Builds the policy document for the given rules (every action kind when
/// `rules` is `None`), scoped by `scope`. Statement ids and shapes follow
/// `data.aws_iam_policy_document.daemon` in `infra/terraform/iam.tf`.
pub fn policy(rules: Option<&RuleSet>, scope: &Scope) -> Policy {
    let mut wanted: BTreeSet<&str> = BASE_ACTIONS.iter().copied().collect();
    match rules {
        Some(r) => {
            for action in r.rules().iter().flat_map(|r| r.actions.iter()) {
                wanted.extend(actions_for_action(action));
            }
        }
        None => {
            for k in ActionKind::ALL {
                wanted.extend(actions_for(k));
            }
        }
    }
    let targets = rule_targets(rules);
    let mut warnings = Vec::new();

    let partition = scope.partition.as_str();
    let region = scope.region.as_deref().unwrap_or_else(|| {
        warnings.push(
            "No --region given: instance and load-balancer ARNs match every region, and DescribeInstances is not pinned to one."
                .to_string(),
        );
        "*"
    });
    let account = scope.account.as_deref().unwrap_or_else(|| {
        warnings.push("No --account given: ARNs match every account.".to_string());
        "*"
    });
    let queue = scope.queue_arn.clone().unwrap_or_else(|| {
        warnings.push("No --queue-url given: the SQS statement covers every queue.".to_string());
        format!("arn:{partition}:sqs:{region}:{account}:*")
    });
    let dead_letter = scope.dead_letter_queue_arn.clone().unwrap_or_else(|| {
        warnings.push("No --dlq-url given: sqs:SendMessage covers every queue.".to_string());
        format!("arn:{partition}:sqs:{region}:{account}:*")
    });

    let mut statements = vec![
        allow(
            "DrainAlarmQueue",
            &[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            vec![queue],
        ),
        allow(
            "DeadLetterPoisonMessages",
            &["sqs:SendMessage"],
            vec![dead_letter],
        ),
    ];

    // The re-check asks for metric and composite alarms; composite-alarm
    // data needs DescribeAlarms on "*" (CloudWatch docs, aws/aws-cdk#29171).
    if wanted.contains("cloudwatch:DescribeAlarms") {
        statements.push(allow(
            "ReadAlarmState",
            &["cloudwatch:DescribeAlarms"],
            vec!["*".to_string()],
        ));
    }

    // PutMetricData has no resource type; the namespace condition is the scope.
    let mut namespaces: BTreeSet<String> = BTreeSet::from(["reflex".to_string()]);
    namespaces.extend(scope.metric_namespaces.iter().cloned());
    namespaces.extend(targets.namespaces.iter().cloned());
    let namespace_condition = if targets.any_namespace && scope.metric_namespaces.is_empty() {
        warnings.push(
            "A metric namespace is not a literal (or --all-actions): PutMetricData is allowed in every namespace. Pass --metric-namespace to list them."
                .to_string(),
        );
        json!({"StringLike": {"cloudwatch:namespace": ["*"]}})
    } else {
        json!({"StringEquals": {"cloudwatch:namespace": namespaces}})
    };
    statements.push(json!({"Sid": "PutOwnMetrics", "Effect": "Allow",
        "Action": ["cloudwatch:PutMetricData"], "Resource": ["*"], "Condition": namespace_condition}));

    // DescribeInstanceHealth supports no resource-level permissions; only
    // deregistration can be scoped to load balancers.
    if wanted.contains("elasticloadbalancing:DescribeInstanceHealth") {
        statements.push(allow(
            "ReadInstanceHealth",
            &["elasticloadbalancing:DescribeInstanceHealth"],
            vec!["*".to_string()],
        ));
    }
    if wanted.contains("elasticloadbalancing:DeregisterInstancesFromLoadBalancer") {
        let lb_arn = |name: &str| {
            format!("arn:{partition}:elasticloadbalancing:{region}:{account}:loadbalancer/{name}")
        };
        let mut names: BTreeSet<String> = scope.load_balancer_names.iter().cloned().collect();
        names.extend(targets.load_balancers.iter().cloned());
        let resources = if targets.any_load_balancer && scope.load_balancer_names.is_empty() {
            warnings.push(
                "A load balancer is not a literal (or --all-actions): deregistration is allowed on every load balancer. Pass --load-balancer to list them."
                    .to_string(),
            );
            vec![lb_arn("*")]
        } else {
            names.iter().map(|n| lb_arn(n)).collect()
        };
        statements.push(allow(
            "DeregisterFromManagedLoadBalancers",
            &["elasticloadbalancing:DeregisterInstancesFromLoadBalancer"],
            resources,
        ));
    }

    // DescribeTargetGroups and DescribeTargetHealth support no
    // resource-level permissions either.
    let target_reads: Vec<&str> = [
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
    ]
    .into_iter()
    .filter(|a| wanted.contains(a))
    .collect();
    if !target_reads.is_empty() {
        statements.push(allow(
            "ReadTargetHealth",
            &target_reads,
            vec!["*".to_string()],
        ));
    }
    // DeregisterTargets: on the rules' target groups (or every one), and
    // only those carrying the managed tag.
    if wanted.contains("elasticloadbalancing:DeregisterTargets") {
        let mut arns: BTreeSet<String> = scope.target_group_arns.iter().cloned().collect();
        arns.extend(targets.target_groups.iter().cloned());
        let resources = if targets.any_target_group && scope.target_group_arns.is_empty() {
            warnings.push(
                "A target group ARN is not a literal (or --all-actions): deregistration is allowed on every target group carrying the managed tag. Pass --target-group-arn to list them."
                    .to_string(),
            );
            vec![format!(
                "arn:{partition}:elasticloadbalancing:{region}:{account}:targetgroup/*"
            )]
        } else {
            arns.into_iter().collect()
        };
        statements.push(json!({"Sid": "DeregisterFromTaggedTargetGroups", "Effect": "Allow",
            "Action": ["elasticloadbalancing:DeregisterTargets"],
            "Resource": resources,
            "Condition": {"StringEquals": {format!("aws:ResourceTag/{}", scope.tag_key): [scope.tag_value.clone()]}}}));
    }

    // The Auto Scaling methods: reads on "*" (no resource type), writes on
    // the listed groups (or every group) and only while the group carries
    // the managed tag. EC2's tag condition does not reach these: the group's
    // service-linked role terminates the instance, not reflex.
    let asg_reads: Vec<&str> = AUTO_SCALING_READS
        .iter()
        .copied()
        .filter(|a| wanted.contains(a))
        .collect();
    if !asg_reads.is_empty() {
        statements.push(allow(
            "ReadAutoScalingGroups",
            &asg_reads,
            vec!["*".to_string()],
        ));
    }
    let asg_writes: Vec<&str> = AUTO_SCALING_WRITES
        .iter()
        .copied()
        .filter(|a| wanted.contains(a))
        .collect();
    if !asg_writes.is_empty() {
        let group_arn = |name: &str| {
            format!(
                "arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{name}"
            )
        };
        let resources: Vec<String> = if scope.auto_scaling_group_names.is_empty() {
            vec![group_arn("*")]
        } else {
            let names: BTreeSet<&String> = scope.auto_scaling_group_names.iter().collect();
            names.into_iter().map(|n| group_arn(n)).collect()
        };
        statements.push(json!({"Sid": "ReplaceThroughTaggedAutoScalingGroups", "Effect": "Allow",
            "Action": asg_writes,
            "Resource": resources,
            "Condition": {"StringEquals": {format!("autoscaling:ResourceTag/{}", scope.tag_key): [scope.tag_value.clone()]}}}));
    }

    // Run Command: the reads on "*" (no resource type); SendCommand on
    // instances carrying the managed tag, and on the one document reflex
    // runs (an AWS-owned document: no account in its ARN). Two
    // statements, because the document carries no tag.
    let ssm_reads: Vec<&str> = SSM_READS
        .iter()
        .copied()
        .filter(|a| wanted.contains(a))
        .collect();
    if !ssm_reads.is_empty() {
        statements.push(allow(
            "ReadCommandStatus",
            &ssm_reads,
            vec!["*".to_string()],
        ));
    }
    if wanted.contains("ssm:SendCommand") {
        statements.push(json!({"Sid": "RunCommandOnTaggedInstances", "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": [format!("arn:{partition}:ec2:{region}:{account}:instance/*")],
            "Condition": {"StringEquals": {format!("ssm:resourceTag/{}", scope.tag_key): [scope.tag_value.clone()]}}}));
        statements.push(allow(
            "RunShellScriptDocument",
            &["ssm:SendCommand"],
            vec![format!(
                "arn:{partition}:ssm:{region}::document/{}",
                crate::rules::action::RUN_SHELL_SCRIPT
            )],
        ));
    }

    // DescribeInstances has no resource type; pin it to the region.
    if wanted.contains("ec2:DescribeInstances") {
        let mut statement = allow(
            "DescribeInstances",
            &["ec2:DescribeInstances"],
            vec!["*".to_string()],
        );
        if let Some(region) = &scope.region {
            statement["Condition"] = json!({"StringEquals": {"ec2:Region": [region]}});
        }
        statements.push(statement);
    }

    // The destructive actions, on tagged instances only, and an explicit
    // Deny on every other instance, which wins over any Allow attached to
    // the role later. StringNotEquals is true when the tag is missing.
    let tag_condition = format!("ec2:ResourceTag/{}", scope.tag_key);
    let ec2: Vec<&str> = DESTRUCTIVE_EC2_ACTIONS
        .iter()
        .copied()
        .filter(|a| wanted.contains(a))
        .collect();
    if !ec2.is_empty() {
        statements.push(json!({"Sid": "RemediateTaggedInstances", "Effect": "Allow",
            "Action": ec2,
            "Resource": [format!("arn:{partition}:ec2:{region}:{account}:instance/*")],
            "Condition": {"StringEquals": {tag_condition.clone(): [scope.tag_value]}}}));
        statements.push(json!({"Sid": "DenyUntaggedInstances", "Effect": "Deny",
            "Action": DESTRUCTIVE_EC2_ACTIONS,
            "Resource": ["*"],
            "Condition": {"StringNotEquals": {tag_condition: [scope.tag_value]}}}));
    }

    if wanted.contains("sns:Publish") {
        let mut topics: BTreeSet<String> = scope.notification_topic_arns.iter().cloned().collect();
        topics.extend(targets.topics.iter().cloned());
        let resources = if targets.any_topic && scope.notification_topic_arns.is_empty() {
            warnings.push(
                "A notification topic is not a literal (or --all-actions): sns:Publish is allowed on every topic. Pass --notification-topic-arn to list them."
                    .to_string(),
            );
            vec!["*".to_string()]
        } else {
            topics.into_iter().collect()
        };
        if !resources.is_empty() {
            statements.push(allow("NotifyOperators", &["sns:Publish"], resources));
        }
    }

    if let Some(table) = &scope.state_table {
        statements.push(allow(
            "StateTable",
            DYNAMODB_STATE_ACTIONS,
            vec![format!(
                "arn:{partition}:dynamodb:{region}:{account}:table/{table}"
            )],
        ));
    }

    // An s3:// rules source: ListBucket on the bucket, only for keys under
    // the prefix; GetObject on the objects under it.
    if let Some((bucket, prefix)) = &scope.rules_s3 {
        statements.push(json!({"Sid": "ListRuleFiles", "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [format!("arn:{partition}:s3:::{bucket}")],
            "Condition": {"StringLike": {"s3:prefix": [format!("{prefix}*")]}}}));
        statements.push(allow(
            "ReadRuleFiles",
            &["s3:GetObject"],
            vec![format!("arn:{partition}:s3:::{bucket}/{prefix}*")],
        ));
    }

    Policy {
        document: json!({"Version": "2012-10-17", "Statement": statements}),
        warnings,
    }
}

/// The set of actions a policy document allows (Deny statements excluded).
pub fn granted_actions(policy: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for st in policy["Statement"].as_array().into_iter().flatten() {
        if st["Effect"] != "Allow" {
            continue;
        }
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

    fn pinned() -> Scope {
        Scope {
            region: Some("eu-west-1".into()),
            account: Some("123456789012".into()),
            queue_arn: Some("arn:aws:sqs:eu-west-1:123456789012:reflex".into()),
            dead_letter_queue_arn: Some("arn:aws:sqs:eu-west-1:123456789012:reflex-dlq".into()),
            load_balancer_names: vec!["web".into()],
            target_group_arns: vec![
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123abcd"
                    .into(),
            ],
            notification_topic_arns: vec!["arn:aws:sns:eu-west-1:123456789012:oncall".into()],
            metric_namespaces: vec!["reflex".into()],
            ..Scope::default()
        }
    }

    fn statement<'a>(p: &'a Policy, sid: &str) -> &'a Value {
        p.document["Statement"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["Sid"] == sid))
            .unwrap_or_else(|| panic!("no statement {sid} in {}", p.document))
    }

    #[test]
    fn all_kinds_policy_grants_exactly_all_actions() {
        let p = policy(None, &Scope::default());
        let granted = granted_actions(&p.document);
        let all: BTreeSet<String> = all_actions().into_iter().map(str::to_string).collect();
        assert_eq!(granted, all);
    }

    #[test]
    fn pinned_scope_leaves_no_wildcard_where_a_resource_type_exists() {
        let p = policy(None, &pinned());
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            statement(&p, "RemediateTaggedInstances")["Resource"],
            json!(["arn:aws:ec2:eu-west-1:123456789012:instance/*"])
        );
        assert_eq!(
            statement(&p, "RemediateTaggedInstances")["Condition"],
            json!({"StringEquals": {"ec2:ResourceTag/reflex:managed": ["true"]}})
        );
        assert_eq!(
            statement(&p, "DeregisterFromManagedLoadBalancers")["Resource"],
            json!(["arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/web"])
        );
        assert_eq!(
            statement(&p, "DescribeInstances")["Condition"],
            json!({"StringEquals": {"ec2:Region": ["eu-west-1"]}})
        );
        assert_eq!(
            statement(&p, "NotifyOperators")["Resource"],
            json!(["arn:aws:sns:eu-west-1:123456789012:oncall"])
        );
        let deny = statement(&p, "DenyUntaggedInstances");
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(
            deny["Condition"],
            json!({"StringNotEquals": {"ec2:ResourceTag/reflex:managed": ["true"]}})
        );
        // Composite alarms need "*".
        assert_eq!(statement(&p, "ReadAlarmState")["Resource"], json!(["*"]));
    }

    #[test]
    fn partition_and_state_table_are_inputs() {
        let scope = Scope {
            partition: "aws-cn".into(),
            region: Some("cn-north-1".into()),
            state_table: Some("reflex-state".into()),
            ..pinned()
        };
        let p = policy(None, &scope);
        assert_eq!(
            statement(&p, "RemediateTaggedInstances")["Resource"],
            json!(["arn:aws-cn:ec2:cn-north-1:123456789012:instance/*"])
        );
        let table = statement(&p, "StateTable");
        assert_eq!(
            table["Resource"],
            json!(["arn:aws-cn:dynamodb:cn-north-1:123456789012:table/reflex-state"])
        );
        assert_eq!(table["Action"], json!(DYNAMODB_STATE_ACTIONS));
        assert!(
            !granted_actions(&policy(None, &pinned()).document)
                .iter()
                .any(|a| a.starts_with("dynamodb:")),
            "no DynamoDB permission without a state table"
        );
    }

    #[test]
    fn unpinned_scope_says_where_it_is_wide() {
        let p = policy(None, &Scope::default());
        assert_eq!(
            statement(&p, "RemediateTaggedInstances")["Resource"],
            json!(["arn:aws:ec2:*:*:instance/*"])
        );
        for needle in [
            "--region",
            "--account",
            "--queue-url",
            "--dlq-url",
            "--load-balancer",
        ] {
            assert!(
                p.warnings.iter().any(|w| w.contains(needle)),
                "no warning mentions {needle}: {:?}",
                p.warnings
            );
        }
    }

    #[test]
    fn queue_arns() {
        assert_eq!(
            queue_arn_from_url("https://sqs.eu-west-1.amazonaws.com/123456789012/reflex")
                .as_deref(),
            Some("arn:aws:sqs:eu-west-1:123456789012:reflex")
        );
        assert_eq!(
            queue_arn_from_url("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/reflex")
                .as_deref(),
            Some("arn:aws-cn:sqs:cn-north-1:123456789012:reflex")
        );
        assert_eq!(
            queue_arn_from_url("https://eu-west-1.queue.amazonaws.com/123456789012/reflex")
                .as_deref(),
            Some("arn:aws:sqs:eu-west-1:123456789012:reflex")
        );
        assert_eq!(queue_arn_from_url("not a url"), None);
        let local = parse_queue_url("http://127.0.0.1:5000/123456789012/reflex").expect("parses");
        assert_eq!(local.region, None);
        assert_eq!(local.account, "123456789012");
        assert_eq!(
            queue_arn_from_url("http://127.0.0.1:5000/123456789012/reflex"),
            None
        );
    }

    #[test]
    fn the_state_table_is_granted_only_when_used() {
        let base = Scope {
            region: Some("eu-west-1".into()),
            account: Some("123456789012".into()),
            ..Default::default()
        };
        let without = granted_actions(&policy(None, &base).document);
        assert!(without.iter().all(|a| !a.starts_with("dynamodb:")));
        let arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/reflex-state";
        let with = policy(
            None,
            &Scope {
                state_table: Some("reflex-state".into()),
                ..base
            },
        )
        .document;
        let shared: Vec<&serde_json::Value> = with["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["Sid"] == "StateTable")
            .collect();
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0]["Resource"], serde_json::json!([arn]));
        let granted = granted_actions(&with);
        let dynamo: BTreeSet<&str> = granted
            .iter()
            .map(String::as_str)
            .filter(|a| a.starts_with("dynamodb:"))
            .collect();
        assert_eq!(dynamo, DYNAMODB_STATE_ACTIONS.iter().copied().collect());
    }

    #[test]
    fn a_pool_rule_gets_only_its_method_and_tagged_target_groups() {
        let rules = r#"
[[rule]]
name = "tg"
[rule.match]
alarm_name = "web"
dimensions.TargetGroup = { exists = true }
[[rule.actions]]
type = "remediate_pool"
method = "deregister"
"#;
        let set = crate::rules::load_sources(vec![(
            std::path::PathBuf::from("t.toml"),
            rules.to_string(),
        )])
        .unwrap_or_else(|e| panic!("{e:?}"));
        let p = policy(Some(&set), &pinned());
        let granted = granted_actions(&p.document);
        assert!(granted.contains("elasticloadbalancing:DeregisterTargets"));
        assert!(granted.contains("elasticloadbalancing:DescribeTargetHealth"));
        assert!(
            !granted.contains("ec2:TerminateInstances")
                && !granted.contains("elasticloadbalancing:DescribeInstanceHealth"),
            "{granted:?}"
        );
        assert_eq!(
            statement(&p, "DeregisterFromTaggedTargetGroups")["Condition"],
            json!({"StringEquals": {"aws:ResourceTag/reflex:managed": ["true"]}})
        );
        assert_eq!(
            statement(&p, "DeregisterFromTaggedTargetGroups")["Resource"],
            json!(["arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123abcd"])
        );
    }
}
