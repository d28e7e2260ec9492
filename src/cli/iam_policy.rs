//! `reflex iam-policy`: the least-privilege policy for a rule set.

use std::path::PathBuf;

use clap::Args;

use super::exit;
use crate::iam::{policy, queue_arn_from_url, Scope};

#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// Rule file or directory (repeatable). Default: rules/.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Ignore the rules: grant what every action kind needs.
    #[arg(long, conflicts_with = "rules")]
    pub all_actions: bool,
    /// The alarm queue's URL, to scope the SQS statements.
    #[arg(long)]
    pub queue_url: Option<String>,
    /// The dead-letter queue's URL.
    #[arg(long = "dlq-url")]
    pub dead_letter_queue_url: Option<String>,
    /// The tag key every instance reflex may change must carry.
    #[arg(long, default_value = "reflex:managed")]
    pub tag_key: String,
    /// The tag value it must have (default: any value).
    #[arg(long)]
    pub tag_value: Option<String>,
    /// A `reflex.toml`: its queues, rules directory and `[state]` (with
    /// `backend = "dynamodb"`, the state table's actions on that table).
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
    let rules = if args.all_actions {
        None
    } else {
        let paths = if let (true, Some(c)) = (args.rules.is_empty(), &config) {
            vec![c.rules_dir.clone()]
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
    let queue_url = config.as_ref().map(|c| c.queue_url.as_str());
    let dlq_url = config.as_ref().map(|c| c.dead_letter_queue_url.as_str());
    let queue_arn = queue_url
        .or(args.queue_url.as_deref())
        .and_then(queue_arn_from_url);
    let scope = Scope {
        state_table_arn: config
            .as_ref()
            .and_then(|c| c.state.dynamodb_table())
            .map(|t| crate::iam::state_table_arn(t, queue_arn.as_deref())),
        queue_arn,
        dead_letter_queue_arn: dlq_url
            .or(args.dead_letter_queue_url.as_deref())
            .and_then(queue_arn_from_url),
        tag_key: args.tag_key.clone(),
        tag_value: args.tag_value.clone(),
    };
    let doc = policy(rules.as_ref(), &scope);
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    exit::OK
}
