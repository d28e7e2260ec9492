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
}

pub fn run(args: &IamPolicyArgs) -> u8 {
    let rules = if args.all_actions {
        None
    } else {
        let paths = if args.rules.is_empty() {
            vec![PathBuf::from("rules")]
        } else {
            args.rules.clone()
        };
        match (super::RulesArg { rules: paths }).load() {
            Ok(r) => Some(r),
            Err(code) => return code,
        }
    };
    let scope = Scope {
        queue_arn: args.queue_url.as_deref().and_then(queue_arn_from_url),
        dead_letter_queue_arn: args
            .dead_letter_queue_url
            .as_deref()
            .and_then(queue_arn_from_url),
        tag_key: args.tag_key.clone(),
        tag_value: args.tag_value.clone(),
    };
    let doc = policy(rules.as_ref(), &scope);
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    exit::OK
}
