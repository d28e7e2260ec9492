//! `reflex iam-policy`: the least-privilege policy for a rule set, in the
//! shape of the Terraform module's daemon policy.

use std::path::PathBuf;

use clap::Args;

use super::exit;
use crate::iam::{parse_queue_url, policy, queue_arn_from_url, Scope};
use crate::reload::{RulesSource, S3Source};

#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// Rule file or directory (repeatable). Default: rules/.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Ignore the rules: grant what every action kind needs.
    #[arg(long, conflicts_with = "rules")]
    pub all_actions: bool,
    /// The AWS partition of the ARNs: aws, aws-cn, aws-us-gov... Default:
    /// the one the queue URL's host implies, else aws.
    #[arg(long, value_name = "PARTITION")]
    pub partition: Option<String>,
    /// The region to pin ARNs and DescribeInstances to. Default: the queue
    /// URL's region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// The account ID to pin ARNs to. Default: the queue URL's account.
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub account: Option<String>,
    /// The alarm queue's URL, to scope the SQS statements.
    #[arg(long)]
    pub queue_url: Option<String>,
    /// The dead-letter queue's URL.
    #[arg(long = "dlq-url")]
    pub dead_letter_queue_url: Option<String>,
    /// The tag key every instance reflex may change must carry.
    #[arg(long, default_value = "reflex:managed")]
    pub tag_key: String,
    /// The value that tag must have.
    #[arg(long, default_value = "true")]
    pub tag_value: String,
    /// A classic load balancer reflex may deregister from (repeatable).
    /// Without it, a rule whose load balancer is a template is granted every
    /// load balancer of the account and region.
    #[arg(long = "load-balancer", value_name = "NAME")]
    pub load_balancers: Vec<String>,
    /// A target group reflex may deregister from (repeatable). Without it,
    /// a rule whose target group is a template is granted every target
    /// group of the account and region that carries the managed tag.
    #[arg(long = "target-group-arn", value_name = "ARN")]
    pub target_group_arns: Vec<String>,
    /// An Auto Scaling group the `asg_set_unhealthy` and `asg_terminate`
    /// methods may act through (repeatable). Without it, every group of
    /// the account and region that carries the managed tag.
    #[arg(long = "auto-scaling-group", value_name = "NAME")]
    pub auto_scaling_group_names: Vec<String>,
    /// An SNS topic reflex may publish to (repeatable), e.g. the operators'.
    /// Without it, a templated topic is granted every topic.
    #[arg(long = "notification-topic-arn", value_name = "ARN")]
    pub notification_topic_arns: Vec<String>,
    /// A CloudWatch namespace reflex may put metrics in, besides `reflex`
    /// (repeatable). Without it, a templated namespace is granted every one.
    #[arg(long = "metric-namespace", value_name = "NAMESPACE")]
    pub metric_namespaces: Vec<String>,
    /// The DynamoDB state table's name, when the state backend is dynamodb.
    #[arg(long = "state-table", value_name = "TABLE")]
    pub state_table: Option<String>,
    /// An `s3://bucket/prefix/` rules source: grant listing that prefix and
    /// reading its objects (the rules themselves still come from --rules,
    /// a local copy of the same files). Default: the config's `[rules]
    /// source`, if it is one.
    #[arg(long = "rules-source", value_name = "s3://BUCKET/PREFIX/")]
    pub rules_source: Option<String>,
    /// A `reflex.toml`: its queues, rules directory and `[state]` (with
    /// `backend = "dynamodb"`, the state table's actions on that table only).
    /// Flags given beside it win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: &IamPolicyArgs) -> u8 {
    let config = match &args.config {
        None => None,
        Some(path) => {
            let overrides = crate::config::Overrides {
                queue_url: args.queue_url.clone(),
                dead_letter_queue_url: args.dead_letter_queue_url.clone(),
                state: crate::state::config::StateOverrides::from_env(),
                ..Default::default()
            };
            match crate::config::Config::load(Some(path), overrides) {
                Ok(c) => Some(c),
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    return exit::USAGE;
                }
            }
        }
    };
    // The config's queues and state table, unless a flag says otherwise.
    let queue_url = args
        .queue_url
        .clone()
        .or_else(|| config.as_ref().map(|c| c.queue_url.clone()));
    let dead_letter_queue_url = args
        .dead_letter_queue_url
        .clone()
        .or_else(|| config.as_ref().map(|c| c.dead_letter_queue_url.clone()));
    let state_table = args.state_table.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.state.dynamodb_table())
            .map(str::to_string)
    });
    let rules = if args.all_actions {
        None
    } else {
        let paths = if let (true, Some(c)) = (args.rules.is_empty(), &config) {
            match &c.rules {
                RulesSource::Local(path) => vec![path.clone()],
                RulesSource::S3(s3) => {
                    eprintln!("error: the configuration's rules come from {}; pass --rules with a local copy of the same files (or --all-actions)", s3.url());
                    return exit::USAGE;
                }
            }
        } else if args.rules.is_empty() {
            vec![PathBuf::from("rules")]
        } else {
            args.rules.clone()
        };
        match (super::RulesArg { rules: paths }).load() {
            Ok(r) => Some(r),
            Err(code) => return code,
        }
    };
    let queue = queue_url.as_deref().map(|u| (u, parse_queue_url(u)));
    if let Some((url, None)) = queue {
        eprintln!("error: --queue-url {url:?} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)");
        return exit::USAGE;
    }
    let parsed = queue.and_then(|(_, q)| q);
    let partition = args
        .partition
        .clone()
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|q| q.partition)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "aws".to_string());
    let region = args
        .region
        .clone()
        .or_else(|| parsed.as_ref().and_then(|q| q.region.clone()));
    let account = args
        .account
        .clone()
        .or_else(|| parsed.as_ref().map(|q| q.account.clone()));
    // ARNs from URLs, in the partition and region decided above (an
    // emulator's URL names no region).
    let arn = |url: &str| -> Option<String> {
        let q = parse_queue_url(url)?;
        let region = q.region.or_else(|| region.clone())?;
        Some(format!(
            "arn:{partition}:sqs:{region}:{}:{}",
            q.account, q.name
        ))
    };
    let dead_letter_queue_arn = match dead_letter_queue_url.as_deref() {
        Some(url) => match arn(url) {
            Some(a) => Some(a),
            None => {
                eprintln!("error: --dlq-url {url:?} is not an SQS queue URL, or names no region (pass --region)");
                return exit::USAGE;
            }
        },
        None => None,
    };
    let queue_arn = queue_url
        .as_deref()
        .and_then(|u| arn(u).or_else(|| queue_arn_from_url(u)));
    let rules_s3 = match (&args.rules_source, config.as_ref().map(|c| &c.rules)) {
        (Some(url), _) => match S3Source::parse(url) {
            Ok(s3) => Some((s3.bucket, s3.prefix)),
            Err(e) => {
                eprintln!("error: --rules-source: {e}");
                return exit::USAGE;
            }
        },
        (None, Some(RulesSource::S3(s3))) => Some((s3.bucket.clone(), s3.prefix.clone())),
        _ => None,
    };
    let scope = Scope {
        partition,
        region,
        account,
        queue_arn,
        dead_letter_queue_arn,
        tag_key: args.tag_key.clone(),
        tag_value: args.tag_value.clone(),
        load_balancer_names: args.load_balancers.clone(),
        target_group_arns: args.target_group_arns.clone(),
        auto_scaling_group_names: args.auto_scaling_group_names.clone(),
        notification_topic_arns: args.notification_topic_arns.clone(),
        metric_namespaces: args.metric_namespaces.clone(),
        state_table,
        rules_s3,
    };
    let generated = policy(rules.as_ref(), &scope);
    for warning in &generated.warnings {
        eprintln!("note: {warning}");
    }
    match serde_json::to_string_pretty(&generated.document) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot print the policy: {e}");
            exit::USAGE
        }
    }
}
