//! Invariants of the Terraform deployment in `infra/terraform`, checked
//! offline: the `.tf` files are parsed with `hcl-rs`, since the AWS provider
//! cannot be downloaded to run `terraform validate`. Formatting and the
//! checkov scan are in `scripts/check-terraform`.
//!
//! The IAM test runs the real `reflex iam-policy` and compares its actions
//! with the Terraform daemon policy's, so a new action kind in the code
//! without the matching Terraform change fails here.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use hcl::expr::{ObjectKey, TemplateExpr};
use hcl::{Block, BlockLabel, Body, Expression};

// ---------------------------------------------------------------------------
// Loading

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn terraform_dir() -> PathBuf {
    manifest_dir().join("infra/terraform")
}

struct TfFile {
    path: PathBuf,
    body: Body,
}

fn tf_paths(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == ".terraform") {
                continue;
            }
            tf_paths(&path, out);
        } else if path.extension().is_some_and(|e| e == "tf") {
            out.push(path);
        }
    }
}

fn parse_dir(dir: &Path, recursive: bool) -> Vec<TfFile> {
    let mut paths = Vec::new();
    if recursive {
        tf_paths(dir, &mut paths);
    } else {
        for entry in std::fs::read_dir(dir).expect("read terraform dir") {
            let path = entry.expect("directory entry").path();
            if path.is_file() && path.extension().is_some_and(|e| e == "tf") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let body = hcl::parse(&text)
                .unwrap_or_else(|e| panic!("{} is not valid HCL: {e}", path.display()));
            TfFile { path, body }
        })
        .collect()
}

/// The module itself: the `.tf` files directly in `infra/terraform`.
fn module() -> Vec<TfFile> {
    let files = parse_dir(&terraform_dir(), false);
    assert!(
        !files.is_empty(),
        "no .tf files in {}",
        terraform_dir().display()
    );
    files
}

fn label(l: &BlockLabel) -> &str {
    match l {
        BlockLabel::Identifier(i) => i.as_str(),
        BlockLabel::String(s) => s.as_str(),
    }
}

fn labels(block: &Block) -> Vec<&str> {
    block.labels().iter().map(label).collect()
}

/// Every top-level block `kind "type" "name"` (kind = resource or data).
fn blocks_of<'a>(files: &'a [TfFile], kind: &str, type_: &str) -> Vec<(&'a Path, &'a Block)> {
    files
        .iter()
        .flat_map(|f| f.body.blocks().map(move |b| (f.path.as_path(), b)))
        .filter(|(_, b)| b.identifier() == kind && labels(b).first() == Some(&type_))
        .collect()
}

/// The one block `kind "type" "name"`; fails the test if it is missing or doubled.
fn block<'a>(files: &'a [TfFile], kind: &str, type_: &str, name: &str) -> &'a Block {
    let found: Vec<_> = blocks_of(files, kind, type_)
        .into_iter()
        .filter(|(_, b)| labels(b).get(1) == Some(&name))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one `{kind} \"{type_}\" \"{name}\"` in {}, found {}",
        terraform_dir().display(),
        found.len()
    );
    found[0].1
}

/// The one block `kind "name"` (variable, output, module).
fn named<'a>(files: &'a [TfFile], kind: &str, name: &str) -> &'a Block {
    let found: Vec<_> = files
        .iter()
        .flat_map(|f| f.body.blocks())
        .filter(|b| b.identifier() == kind && labels(b) == [name])
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one `{kind} \"{name}\"`, found {}",
        found.len()
    );
    found[0]
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn must_attr<'a>(body: &'a Body, key: &str, what: &str) -> &'a Expression {
    attr(body, key).unwrap_or_else(|| panic!("{what} has no `{key}` attribute"))
}

/// A string literal or template as its text (without quotes); any other
/// expression as HCL source, e.g. `aws_sqs_queue.main.arn`.
fn text(expr: &Expression) -> String {
    match expr {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(t) => match t.as_ref() {
            TemplateExpr::QuotedString(s) => s.clone(),
            TemplateExpr::Heredoc(h) => h.template.clone(),
        },
        other => other.to_string(),
    }
}

fn texts(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items.iter().map(text).collect(),
        other => vec![text(other)],
    }
}

fn key_text(key: &ObjectKey) -> String {
    match key {
        ObjectKey::Identifier(i) => i.to_string(),
        ObjectKey::Expression(e) => text(e),
        other => other.to_string(),
    }
}

/// The object inside `jsonencode({...})`.
fn jsonencoded<'a>(expr: &'a Expression, what: &str) -> &'a Expression {
    match expr {
        Expression::FuncCall(call) if call.name.name.as_str() == "jsonencode" => {
            assert_eq!(call.args.len(), 1, "{what}: jsonencode takes one argument");
            &call.args[0]
        }
        other => panic!("{what} must be jsonencode(...), found `{other}`"),
    }
}

fn field<'a>(object: &'a Expression, key: &str, what: &str) -> &'a Expression {
    match object {
        Expression::Object(o) => o
            .iter()
            .find(|(k, _)| key_text(k) == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{what} has no `{key}`")),
        other => panic!("{what} must be an object, found `{other}`"),
    }
}

// ---------------------------------------------------------------------------
// IAM policy documents (data "aws_iam_policy_document")

#[derive(Debug)]
struct Condition {
    test: String,
    variable: String,
    values: Vec<String>,
}

#[derive(Debug)]
struct Statement {
    sid: String,
    effect: String,
    actions: Vec<String>,
    resources: Vec<String>,
    principals: Vec<(String, Vec<String>)>,
    conditions: Vec<Condition>,
}

fn statement_from(body: &Body, doc: &str) -> Statement {
    let sid = attr(body, "sid").map(text).unwrap_or_default();
    let what = format!("statement {sid:?} of data.aws_iam_policy_document.{doc}");
    assert!(
        attr(body, "not_actions").is_none(),
        "{what} uses not_actions; list the actions instead so they can be reviewed"
    );
    let actions = match attr(body, "actions") {
        Some(Expression::Array(items)) => items
            .iter()
            .map(|a| match a {
                Expression::String(s) => s.clone(),
                other => panic!("{what}: every action must be a string literal, found `{other}`"),
            })
            .collect(),
        Some(other) => panic!("{what}: actions must be a list of string literals, found `{other}`"),
        None => Vec::new(),
    };
    let principals = body
        .blocks()
        .filter(|b| b.identifier() == "principals")
        .map(|b| {
            (
                text(must_attr(b.body(), "type", &what)),
                texts(must_attr(b.body(), "identifiers", &what)),
            )
        })
        .collect();
    let conditions = body
        .blocks()
        .filter(|b| b.identifier() == "condition")
        .map(|b| Condition {
            test: text(must_attr(b.body(), "test", &what)),
            variable: text(must_attr(b.body(), "variable", &what)),
            values: texts(must_attr(b.body(), "values", &what)),
        })
        .collect();
    Statement {
        effect: attr(body, "effect")
            .map(text)
            .unwrap_or_else(|| "Allow".into()),
        resources: attr(body, "resources").map(texts).unwrap_or_default(),
        sid,
        actions,
        principals,
        conditions,
    }
}

/// The statements of `data "aws_iam_policy_document" "<name>"`, including the
/// `content` of `dynamic "statement"` blocks (they may or may not be rendered,
/// so they count as granted).
fn policy_document(files: &[TfFile], name: &str) -> Vec<Statement> {
    let doc = block(files, "data", "aws_iam_policy_document", name);
    let mut out = Vec::new();
    for b in doc.body().blocks() {
        match (b.identifier(), labels(b).as_slice()) {
            ("statement", _) => out.push(statement_from(b.body(), name)),
            ("dynamic", ["statement"]) => {
                let content = b
                    .body()
                    .blocks()
                    .find(|c| c.identifier() == "content")
                    .unwrap_or_else(|| panic!("dynamic statement in {name} has no content block"));
                out.push(statement_from(content.body(), name));
            }
            _ => {}
        }
    }
    assert!(
        !out.is_empty(),
        "data.aws_iam_policy_document.{name} has no statements"
    );
    out
}

fn allowed_actions(statements: &[Statement]) -> BTreeSet<String> {
    statements
        .iter()
        .filter(|s| s.effect == "Allow")
        .flat_map(|s| s.actions.iter().cloned())
        .collect()
}

// ---------------------------------------------------------------------------
// reflex iam-policy

fn reflex_iam_policy(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .arg("iam-policy")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .expect("run the reflex binary");
    assert!(
        output.status.success(),
        "`reflex iam-policy {}` failed with {}:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "`reflex iam-policy {}` printed no JSON policy ({e}):\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The Allow actions of a JSON policy document (`Action` a string or a list).
fn json_allowed_actions(policy: &serde_json::Value) -> BTreeSet<String> {
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(s) => s.clone(),
        one @ serde_json::Value::Object(_) => vec![one.clone()],
        other => panic!("policy has no Statement list: {other}"),
    };
    let mut actions = BTreeSet::new();
    for s in statements {
        if s["Effect"] != "Allow" {
            continue;
        }
        match &s["Action"] {
            serde_json::Value::String(a) => {
                actions.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                for a in list {
                    let a = a
                        .as_str()
                        .unwrap_or_else(|| panic!("non-string action {a} in {s}"));
                    actions.insert(a.to_string());
                }
            }
            other => panic!("statement without Action: {other} in {s}"),
        }
    }
    actions
}

fn describe_difference(
    left_name: &str,
    left: &BTreeSet<String>,
    right_name: &str,
    right: &BTreeSet<String>,
) -> String {
    let mut msg = String::new();
    let only_left: Vec<_> = left.difference(right).collect();
    let only_right: Vec<_> = right.difference(left).collect();
    if !only_left.is_empty() {
        let _ = write!(msg, "\n  in {left_name} only: {only_left:?}");
    }
    if !only_right.is_empty() {
        let _ = write!(msg, "\n  in {right_name} only: {only_right:?}");
    }
    msg
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn every_tf_file_parses() {
    let files = parse_dir(&terraform_dir(), true);
    let examples: Vec<_> = files
        .iter()
        .filter(|f| f.path.components().any(|c| c.as_os_str() == "examples"))
        .collect();
    assert!(
        files.len() >= 8,
        "expected the module's files under {}",
        terraform_dir().display()
    );
    assert!(
        !examples.is_empty(),
        "expected at least one example root configuration under examples/"
    );
}

#[test]
fn main_queue_redrives_to_the_dead_letter_queue() {
    let files = module();

    let main = block(&files, "resource", "aws_sqs_queue", "main");
    let redrive = jsonencoded(
        must_attr(main.body(), "redrive_policy", "aws_sqs_queue.main"),
        "aws_sqs_queue.main redrive_policy",
    );
    assert_eq!(
        text(field(redrive, "deadLetterTargetArn", "redrive_policy")),
        "aws_sqs_queue.dead_letter.arn",
        "the main queue must redrive to the dead-letter queue"
    );
    assert_eq!(
        text(field(redrive, "maxReceiveCount", "redrive_policy")),
        "var.max_receive_count",
        "maxReceiveCount must come from var.max_receive_count"
    );
    let max_receive_count = named(&files, "variable", "max_receive_count");
    assert!(
        max_receive_count
            .body()
            .blocks()
            .any(|b| b.identifier() == "validation"),
        "variable max_receive_count must be validated"
    );

    let dlq = block(&files, "resource", "aws_sqs_queue", "dead_letter");
    assert_eq!(
        text(must_attr(
            dlq.body(),
            "message_retention_seconds",
            "aws_sqs_queue.dead_letter"
        )),
        "1209600",
        "the dead-letter queue must keep messages 14 days"
    );

    let allow = block(
        &files,
        "resource",
        "aws_sqs_queue_redrive_allow_policy",
        "dead_letter",
    );
    let what = "aws_sqs_queue_redrive_allow_policy.dead_letter";
    assert_eq!(
        text(must_attr(allow.body(), "queue_url", what)),
        "aws_sqs_queue.dead_letter.id"
    );
    let policy = jsonencoded(must_attr(allow.body(), "redrive_allow_policy", what), what);
    assert_eq!(text(field(policy, "redrivePermission", what)), "byQueue");
    assert_eq!(
        texts(field(policy, "sourceQueueArns", what)),
        ["aws_sqs_queue.main.arn"],
        "only the main queue may use the dead-letter queue"
    );

    for queue in [main, dlq] {
        let encrypted = attr(queue.body(), "sqs_managed_sse_enabled").map(text);
        let kms = attr(queue.body(), "kms_master_key_id");
        assert!(
            encrypted.as_deref() == Some("true") || kms.is_some(),
            "aws_sqs_queue.{} must be encrypted",
            labels(queue)[1]
        );
    }
}

#[test]
fn queue_policy_admits_only_the_alarm_topic() {
    let files = module();

    let policy = block(&files, "resource", "aws_sqs_queue_policy", "main");
    let what = "aws_sqs_queue_policy.main";
    assert_eq!(
        text(must_attr(policy.body(), "queue_url", what)),
        "aws_sqs_queue.main.id"
    );
    assert_eq!(
        text(must_attr(policy.body(), "policy", what)),
        "data.aws_iam_policy_document.main_queue.json"
    );

    let statements = policy_document(&files, "main_queue");
    let allows: Vec<_> = statements.iter().filter(|s| s.effect == "Allow").collect();
    assert!(
        !allows.is_empty(),
        "the queue policy allows nothing: SNS could not deliver"
    );
    for s in allows {
        assert_eq!(
            s.actions,
            ["sqs:SendMessage"],
            "statement {:?} may only allow sqs:SendMessage",
            s.sid
        );
        assert_eq!(
            s.principals,
            [("Service".to_string(), vec!["sns.amazonaws.com".to_string()])],
            "statement {:?} must name the SNS service principal and nothing else",
            s.sid
        );
        assert!(
            s.conditions.iter().any(|c| c.test == "ArnEquals"
                && c.variable == "aws:SourceArn"
                && c.values == ["aws_sns_topic.alarm.arn"]),
            "statement {:?} must be scoped to the alarm topic with ArnEquals aws:SourceArn = aws_sns_topic.alarm.arn, has {:?}",
            s.sid,
            s.conditions
        );
    }

    let sub = block(&files, "resource", "aws_sns_topic_subscription", "main");
    let what = "aws_sns_topic_subscription.main";
    assert_eq!(
        text(must_attr(sub.body(), "topic_arn", what)),
        "aws_sns_topic.alarm.arn"
    );
    assert_eq!(text(must_attr(sub.body(), "protocol", what)), "sqs");
    assert_eq!(
        text(must_attr(sub.body(), "endpoint", what)),
        "aws_sqs_queue.main.arn"
    );

    let topic = block(&files, "resource", "aws_sns_topic", "alarm");
    assert!(
        attr(topic.body(), "kms_master_key_id").is_some(),
        "the alarm topic must be encrypted with KMS"
    );
}

/// The daemon, whatever the rules say, cannot terminate, reboot or stop an
/// instance without the managed tag.
#[test]
fn destructive_ec2_actions_are_tag_conditioned() {
    let files = module();
    let tag_key = "ec2:ResourceTag/${var.managed_tag_key}";
    let tag_value = vec!["var.managed_tag_value".to_string()];
    let known = [
        "ec2:TerminateInstances",
        "ec2:RebootInstances",
        "ec2:StopInstances",
    ];

    let daemon = policy_document(&files, "daemon");
    let granted = allowed_actions(&daemon);
    for a in known {
        assert!(
            granted.contains(a),
            "the daemon policy should grant {a} (on tagged instances)"
        );
    }

    // Every policy document in the module: no wildcard actions, and any
    // mutating EC2 action carries the tag condition on instance ARNs.
    for (_, doc) in blocks_of(&files, "data", "aws_iam_policy_document") {
        let name = labels(doc)[1];
        if name == "kms" {
            continue; // a key policy: its actions are kms:* on the key itself
        }
        for s in policy_document(&files, name)
            .iter()
            .filter(|s| s.effect == "Allow")
        {
            for a in &s.actions {
                assert!(
                    !a.contains('*'),
                    "{name} statement {:?} allows the wildcard action {a}; list actions explicitly",
                    s.sid
                );
                let mutating_ec2 = a.starts_with("ec2:") && !a.starts_with("ec2:Describe");
                if !mutating_ec2 {
                    continue;
                }
                assert!(
                    s.conditions.iter().any(|c| c.test == "StringEquals"
                        && c.variable == tag_key
                        && c.values == tag_value),
                    "{name} statement {:?} allows {a} without the condition StringEquals {tag_key} = var.managed_tag_value; has {:?}",
                    s.sid,
                    s.conditions
                );
                assert!(
                    !s.resources.is_empty() && s.resources.iter().all(|r| r.contains(":instance/")),
                    "{name} statement {:?} allows {a} on {:?}; it must be scoped to instance ARNs",
                    s.sid,
                    s.resources
                );
            }
        }
    }

    // And an explicit deny on untagged instances, which wins over any Allow
    // attached to the role later.
    let denies: BTreeSet<String> = daemon
        .iter()
        .filter(|s| {
            s.effect == "Deny"
                && s.conditions.iter().any(|c| {
                    c.test == "StringNotEquals" && c.variable == tag_key && c.values == tag_value
                })
        })
        .flat_map(|s| s.actions.iter().cloned())
        .collect();
    let mutating: BTreeSet<String> = granted
        .iter()
        .filter(|a| a.starts_with("ec2:") && !a.starts_with("ec2:Describe"))
        .cloned()
        .collect();
    assert!(
        mutating.is_subset(&denies),
        "the daemon policy must deny {:?} on instances whose {tag_key} is not var.managed_tag_value (StringNotEquals); denied: {denies:?}",
        mutating.difference(&denies).collect::<Vec<_>>()
    );
}

#[test]
fn daemon_policy_actions_equal_reflex_iam_policy_all_actions() {
    let files = module();
    let terraform = allowed_actions(&policy_document(&files, "daemon"));
    let reflex = json_allowed_actions(&reflex_iam_policy(&["--all-actions"]));
    assert!(
        !reflex.is_empty(),
        "`reflex iam-policy --all-actions` printed no Allow actions"
    );
    assert!(
        terraform == reflex,
        "the Terraform daemon policy (infra/terraform/iam.tf, data.aws_iam_policy_document.daemon) \
         must allow exactly the actions of `reflex iam-policy --all-actions`:{}\n\
         Update iam.tf together with src/iam.rs.",
        describe_difference("Terraform", &terraform, "reflex", &reflex)
    );
}

#[test]
fn daemon_policy_covers_the_repository_rules() {
    let files = module();
    let terraform = allowed_actions(&policy_document(&files, "daemon"));
    let rules_dir = manifest_dir().join("rules");
    assert!(
        rules_dir.is_dir(),
        "the repository has no rules/ directory at {}",
        rules_dir.display()
    );
    let needed = json_allowed_actions(&reflex_iam_policy(&[
        "--rules",
        rules_dir.to_str().expect("utf-8 path"),
    ]));
    let missing: Vec<_> = needed.difference(&terraform).collect();
    assert!(
        missing.is_empty(),
        "the rules in rules/ need actions the Terraform daemon policy does not allow: {missing:?}"
    );
}

/// The role the task runs as carries the daemon policy and nothing else.
#[test]
fn daemon_role_has_only_the_daemon_policies() {
    let files = module();

    let task = block(&files, "resource", "aws_ecs_task_definition", "daemon");
    let what = "aws_ecs_task_definition.daemon";
    assert_eq!(
        text(must_attr(task.body(), "task_role_arn", what)),
        "aws_iam_role.daemon.arn"
    );
    assert_ne!(
        text(must_attr(task.body(), "execution_role_arn", what)),
        "aws_iam_role.daemon.arn",
        "the execution role must not be the daemon's role"
    );

    let role = block(&files, "resource", "aws_iam_role", "daemon");
    for forbidden in ["managed_policy_arns", "inline_policy"] {
        assert!(
            attr(role.body(), forbidden).is_none()
                && role.body().blocks().all(|b| b.identifier() != forbidden),
            "aws_iam_role.daemon must not use {forbidden}; its policies are the aws_iam_role_policy resources"
        );
    }
    let refers_to_daemon_role = |b: &Block| {
        ["role", "roles"].iter().any(|k| {
            attr(b.body(), k).is_some_and(|e| e.to_string().contains("aws_iam_role.daemon."))
        })
    };
    for type_ in [
        "aws_iam_role_policy_attachment",
        "aws_iam_policy_attachment",
    ] {
        let attached: Vec<_> = blocks_of(&files, "resource", type_)
            .into_iter()
            .filter(|(_, b)| refers_to_daemon_role(b))
            .collect();
        assert!(
            attached.is_empty(),
            "no managed policy may be attached to the daemon role ({type_})"
        );
    }
    let mut documents: Vec<String> = blocks_of(&files, "resource", "aws_iam_role_policy")
        .into_iter()
        .filter(|(_, b)| refers_to_daemon_role(b))
        .map(|(_, b)| text(must_attr(b.body(), "policy", "aws_iam_role_policy")))
        .collect();
    documents.sort();
    assert_eq!(
        documents,
        [
            "data.aws_iam_policy_document.daemon.json",
            "data.aws_iam_policy_document.daemon_kms[0].json",
        ],
        "the daemon role's inline policies must be the daemon policy and the optional notification-key policy"
    );

    // The key policy grants key use only, only through SNS.
    for s in policy_document(&files, "daemon_kms") {
        assert_eq!(s.effect, "Allow");
        assert_eq!(
            s.actions,
            ["kms:GenerateDataKey", "kms:Decrypt"],
            "daemon_kms may only grant key use"
        );
        assert_eq!(s.resources, ["var.notification_topic_kms_key_arns"]);
        assert!(
            s.conditions.iter().any(|c| c.test == "StringEquals"
                && c.variable == "kms:ViaService"
                && c.values == ["sns.${local.region}.amazonaws.com"]),
            "daemon_kms must be limited to calls through SNS (kms:ViaService)"
        );
    }
}

/// The container is pointed at this stack's queues and trusts only its topic.
#[test]
fn task_environment_points_at_the_stack() {
    let files = module();
    let task = block(&files, "resource", "aws_ecs_task_definition", "daemon");
    let what = "aws_ecs_task_definition.daemon container_definitions";
    let containers = jsonencoded(must_attr(task.body(), "container_definitions", what), what);
    let Expression::Array(containers) = containers else {
        panic!("{what} must be a list of containers");
    };
    assert_eq!(containers.len(), 1, "{what}: one container, reflex");
    let container = &containers[0];
    let Expression::Array(env) = field(container, "environment", what) else {
        panic!("{what}: environment must be a list");
    };
    let env: Vec<(String, String)> = env
        .iter()
        .map(|e| (text(field(e, "name", what)), text(field(e, "value", what))))
        .collect();
    let get = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{what}: no {name} in the environment"))
    };
    assert_eq!(get("REFLEX_QUEUE_URL"), "aws_sqs_queue.main.url");
    assert_eq!(get("REFLEX_DLQ_URL"), "aws_sqs_queue.dead_letter.url");
    assert_eq!(
        get("REFLEX_TRUSTED_TOPIC_ARNS"),
        "aws_sns_topic.alarm.arn",
        "reflex must trust the alarm topic, the only one the queue policy admits"
    );
    assert_eq!(get("AWS_REGION"), "local.region");
    assert_eq!(
        text(field(container, "readonlyRootFilesystem", what)),
        "true"
    );
    assert_ne!(
        text(field(container, "user", what)),
        "0",
        "the container must not run as root"
    );
}

#[test]
fn readme_documents_every_input_and_output() {
    let files = module();
    let readme_path = terraform_dir().join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", readme_path.display()));
    for kind in ["variable", "output"] {
        let names: Vec<&str> = files
            .iter()
            .flat_map(|f| f.body.blocks())
            .filter(|b| b.identifier() == kind)
            .map(|b| labels(b)[0])
            .collect();
        assert!(!names.is_empty(), "the module declares no {kind}s");
        for name in names {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "{} does not document the {kind} `{name}` in its table",
                readme_path.display()
            );
        }
        for b in files
            .iter()
            .flat_map(|f| f.body.blocks())
            .filter(|b| b.identifier() == kind)
        {
            assert!(
                attr(b.body(), "description").is_some(),
                "{kind} `{}` has no description",
                labels(b)[0]
            );
        }
    }
}

/// The example wires the real use case: a classic ELB's UnHealthyHostCount
/// alarm publishing to reflex's topic, with the load balancer managed.
#[test]
fn example_wires_an_elb_alarm_to_reflex() {
    let dir = terraform_dir().join("examples/elb-unhealthy-host");
    let files = parse_dir(&dir, false);
    let module_call = named(&files, "module", "reflex");
    assert_eq!(
        text(must_attr(module_call.body(), "source", "module.reflex")),
        "../.."
    );
    assert_eq!(
        texts(must_attr(
            module_call.body(),
            "load_balancer_names",
            "module.reflex"
        )),
        ["data.aws_elb.web.name"],
        "the example's load balancer must be one reflex manages"
    );
    let alarm = block(
        &files,
        "resource",
        "aws_cloudwatch_metric_alarm",
        "unhealthy_hosts",
    );
    let what = "aws_cloudwatch_metric_alarm.unhealthy_hosts";
    assert_eq!(text(must_attr(alarm.body(), "namespace", what)), "AWS/ELB");
    assert_eq!(
        text(must_attr(alarm.body(), "metric_name", what)),
        "UnHealthyHostCount"
    );
    assert_eq!(
        texts(must_attr(alarm.body(), "alarm_actions", what)),
        ["module.reflex.alarm_topic_arn"]
    );
}
