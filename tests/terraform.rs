//! Invariants of the Terraform deployment in `infra/terraform`, checked
//! offline: the `.tf` files are parsed with `hcl-rs`, since the AWS provider
//! cannot be downloaded to run `terraform validate`. Formatting and the
//! checkov scan are in `scripts/check-terraform`.
//!
//! The IAM tests run the real `reflex iam-policy` and compare its statements
//! with the Terraform daemon policy's as (effect, action, resource,
//! condition) tuples: the Terraform expressions are evaluated with `hcl-rs`
//! for given inputs (variables, partition, region, account), so a change on
//! either side without the other fails here.

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

/// The items of a list expression, looking through `concat(...)` and both
/// branches of a conditional (`c ? [...] : [...]`).
fn list_items<'a>(expr: &'a Expression, what: &str) -> Vec<&'a Expression> {
    match expr {
        Expression::Array(items) => items.iter().collect(),
        Expression::FuncCall(call) if call.name.name.as_str() == "concat" => {
            call.args.iter().flat_map(|a| list_items(a, what)).collect()
        }
        Expression::Conditional(c) => {
            let mut items = list_items(&c.true_expr, what);
            items.extend(list_items(&c.false_expr, what));
            items
        }
        other => panic!("{what}: expected a list, found `{other}`"),
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
    // Static `condition` blocks, and the `content` of `dynamic "condition"`
    // blocks (they may or may not be rendered).
    let conditions = condition_blocks(body)
        .into_iter()
        .map(|b| Condition {
            test: text(must_attr(b, "test", &what)),
            variable: text(must_attr(b, "variable", &what)),
            values: texts(must_attr(b, "values", &what)),
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

/// The bodies of a statement's `condition` blocks, static or dynamic.
fn condition_blocks(body: &Body) -> Vec<&Body> {
    body.blocks()
        .filter_map(|b| match (b.identifier(), labels(b).as_slice()) {
            ("condition", _) => Some(b.body()),
            ("dynamic", ["condition"]) => b
                .body()
                .blocks()
                .find(|c| c.identifier() == "content")
                .map(|c| c.body()),
            _ => None,
        })
        .collect()
}

/// The documents a policy document merges in through
/// `source_policy_documents = [data.aws_iam_policy_document.<name>.json]`.
fn source_documents(doc: &Block) -> Vec<String> {
    let Some(sources) = attr(doc.body(), "source_policy_documents") else {
        return Vec::new();
    };
    texts(sources)
        .into_iter()
        .map(|t| {
            t.strip_prefix("data.aws_iam_policy_document.")
                .and_then(|t| t.strip_suffix(".json"))
                .unwrap_or_else(|| {
                    panic!("source_policy_documents must name data.aws_iam_policy_document.<name>.json, found `{t}`")
                })
                .to_string()
        })
        .collect()
}

/// The statements of `data "aws_iam_policy_document" "<name>"`, including the
/// `content` of `dynamic "statement"` blocks (they may or may not be rendered,
/// so they count as granted) and the statements of its
/// `source_policy_documents`.
fn policy_document(files: &[TfFile], name: &str) -> Vec<Statement> {
    let doc = block(files, "data", "aws_iam_policy_document", name);
    let mut out = Vec::new();
    for source in source_documents(doc) {
        out.extend(policy_document(files, &source));
    }
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
    // The Terraform policy's dynamic StateTable and rule-file statements
    // count as granted; the generator grants them when given the table and
    // an s3:// rules source.
    let reflex = json_allowed_actions(&reflex_iam_policy(&[
        "--all-actions",
        "--state-table",
        "reflex-state",
        "--rules-source",
        "s3://reflex-rules-example/rules/",
    ]));
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
            "data.aws_iam_policy_document.daemon_rules_kms[0].json",
        ],
        "the daemon role's inline policies must be the daemon policy and the optional notification-key and rules-key policies"
    );

    // The key policy grants key use only, only through SNS.
    for s in policy_document(&files, "daemon_kms") {
        assert_eq!(s.effect, "Allow");
        assert_eq!(
            s.actions,
            ["kms:GenerateDataKey", "kms:Decrypt"],
            "daemon_kms may only grant key use"
        );
        assert_eq!(
            s.resources,
            ["local.notification_topic_kms_key_arns"],
            "daemon_kms may only grant the notification topics' keys (notification_topic_kms_key_arns and the operator topic's key)"
        );
        assert!(
            s.conditions.iter().any(|c| c.test == "StringEquals"
                && c.variable == "kms:ViaService"
                && c.values == ["sns.${local.region}.${local.dns_suffix}"]),
            "daemon_kms must be limited to calls through SNS (kms:ViaService)"
        );
    }

    // The rules key policy grants decryption only, of the rules bucket's
    // objects, only through S3.
    let rules_kms = policy_document(&files, "daemon_rules_kms");
    for s in &rules_kms {
        assert_eq!(s.effect, "Allow");
        assert_eq!(
            s.actions,
            ["kms:Decrypt"],
            "daemon_rules_kms may only grant decryption"
        );
        assert_eq!(
            s.resources,
            ["local.customer_kms_key_arn"],
            "daemon_rules_kms may only grant the module's key, which encrypts the rules bucket"
        );
        let conditions: Vec<(&str, &str, Vec<&str>)> = s
            .conditions
            .iter()
            .map(|c| {
                (
                    c.test.as_str(),
                    c.variable.as_str(),
                    c.values.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            conditions,
            [
                (
                    "StringEquals",
                    "kms:ViaService",
                    vec!["s3.${local.region}.${local.dns_suffix}"]
                ),
                (
                    "StringLike",
                    "kms:EncryptionContext:aws:s3:arn",
                    vec![
                        "aws_s3_bucket.rules[0].arn",
                        "${aws_s3_bucket.rules[0].arn}/${local.rules_prefix}*"
                    ]
                ),
            ],
            "daemon_rules_kms must be limited to calls through S3 (kms:ViaService) for the rules bucket (encryption context)"
        );
    }
    assert_eq!(rules_kms.len(), 1, "daemon_rules_kms has one statement");
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
    let env: Vec<(String, String)> = list_items(field(container, "environment", what), what)
        .into_iter()
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
        get("REFLEX_RULES_SOURCE"),
        "local.rules_source",
        "with rules_dir, the task must read the rules the module uploaded"
    );
    assert_eq!(get("REFLEX_RULES_CACHE"), "local.rules_cache_path");
    assert_eq!(
        get("REFLEX_RULES_REJECTED_TOPIC_ARN"),
        "var.operator_topic_arn",
        "rejected rule sets go to the operators, whom the daemon may already notify"
    );
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

    // Its rule ships from the example's own directory, through the rules
    // bucket (tests/hooks.rs runs `reflex check` and `reflex test` there).
    assert_eq!(
        text(must_attr(module_call.body(), "rules_dir", "module.reflex")),
        "${path.module}/rules"
    );
    let rules = dir.join("rules");
    let files: Vec<_> = std::fs::read_dir(&rules)
        .unwrap_or_else(|e| panic!("{}: {e}", rules.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .collect();
    assert!(
        !files.is_empty(),
        "{} holds no rule file for the module to upload",
        rules.display()
    );
    assert!(
        dir.join("rule-tests").is_dir(),
        "the example's rules need their tests in rule-tests/"
    );
}

/// A rule edit must re-upload its object, and nothing else may: the object's
/// content hash is `source_hash` (an `etag` from the file's MD5 would differ
/// from S3's SSE-KMS ETag on every plan), and every object is encrypted.
#[test]
fn rule_objects_are_hashed_by_content_and_encrypted() {
    let files = module();
    let object = block(&files, "resource", "aws_s3_object", "rule");
    let what = "aws_s3_object.rule";
    assert_eq!(
        text(must_attr(object.body(), "for_each", what)),
        r#"local.rules_from_s3 ? fileset(var.rules_dir, "**/*.toml") : toset([])"#
    );
    assert_eq!(
        text(must_attr(object.body(), "source_hash", what)),
        r#"filesha256("${var.rules_dir}/${each.value}")"#
    );
    assert!(
        attr(object.body(), "etag").is_none(),
        "{what} must not set etag: with SSE-KMS, S3's ETag is not the file's MD5"
    );
    assert_eq!(
        text(must_attr(object.body(), "server_side_encryption", what)),
        "aws:kms"
    );
    assert_eq!(
        text(must_attr(object.body(), "kms_key_id", what)),
        "local.customer_kms_key_arn"
    );

    // The bucket refuses plain HTTP for everyone.
    let deny = policy_document(&files, "rules_bucket")
        .into_iter()
        .find(|s| s.effect == "Deny" && s.actions == ["s3:*"])
        .expect("the rules bucket policy must deny s3:* without TLS");
    assert!(
        deny.conditions.iter().any(|c| c.test == "Bool"
            && c.variable == "aws:SecureTransport"
            && c.values == ["false"]),
        "the rules bucket's Deny must be on aws:SecureTransport = false"
    );
    assert_eq!(
        deny.resources,
        [
            "aws_s3_bucket.rules[0].arn",
            "${aws_s3_bucket.rules[0].arn}/*"
        ]
    );
}

// ---------------------------------------------------------------------------
// Evaluating the module for given inputs
//
// The expressions of the `.tf` files are evaluated with hcl-rs for one set of
// inputs: variable values (defaults from variables.tf, then the test's), the
// data sources (partition, region, account), and the attributes of the
// resources the daemon policy names, computed from their names as AWS would.
// The locals of the module are evaluated from the files themselves, so a
// change of a local is seen here.

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};

/// What a test deploys: the account's partition, region and account, and the
/// module's variables that differ from their defaults.
struct Deployment {
    partition: &'static str,
    dns_suffix: &'static str,
    region: &'static str,
    account: &'static str,
    vars: Vec<(&'static str, serde_json::Value)>,
}

impl Deployment {
    fn new(vars: Vec<(&'static str, serde_json::Value)>) -> Deployment {
        Deployment {
            partition: "aws",
            dns_suffix: "amazonaws.com",
            region: "eu-west-1",
            account: "123456789012",
            vars,
        }
    }

    fn var(&self, files: &[TfFile], name: &str) -> serde_json::Value {
        let vars = variable_values(files, self);
        vars.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("the module has no variable {name}"))
    }
}

fn to_hcl(v: serde_json::Value) -> hcl::Value {
    hcl::to_value(v).expect("a JSON value is an HCL value")
}

fn to_json(v: &hcl::Value) -> serde_json::Value {
    serde_json::to_value(v).expect("an HCL value is a JSON value")
}

/// The functions the module's locals and policies call.
fn functions(ctx: &mut Context) {
    fn numbers(args: &FuncArgs) -> Result<Vec<f64>, String> {
        args.iter()
            .map(|v| match v {
                hcl::Value::Number(n) => n.as_f64().ok_or_else(|| "not a number".to_string()),
                other => Err(format!("expected a number, got {other:?}")),
            })
            .collect()
    }
    fn number(x: f64) -> hcl::Value {
        if x.fract() == 0.0 && x.abs() < 9.0e15 {
            hcl::Value::from(x as i64)
        } else {
            hcl::Value::from(x)
        }
    }
    ctx.declare_func(
        "length",
        FuncDef::builder()
            .param(ParamType::Any)
            .build(|args| match &args[0] {
                hcl::Value::Array(a) => Ok(hcl::Value::from(a.len() as i64)),
                hcl::Value::Object(o) => Ok(hcl::Value::from(o.len() as i64)),
                hcl::Value::String(s) => Ok(hcl::Value::from(s.chars().count() as i64)),
                other => Err(format!("length of {other:?}")),
            }),
    );
    ctx.declare_func(
        "concat",
        FuncDef::builder()
            .variadic_param(ParamType::array_of(ParamType::Any))
            .build(|args| {
                Ok(hcl::Value::Array(
                    args.iter()
                        .flat_map(|a| a.as_array().cloned().unwrap_or_default())
                        .collect(),
                ))
            }),
    );
    ctx.declare_func(
        "distinct",
        FuncDef::builder()
            .param(ParamType::array_of(ParamType::Any))
            .build(|args| {
                let mut out: Vec<hcl::Value> = Vec::new();
                for v in args[0].as_array().cloned().unwrap_or_default() {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                Ok(hcl::Value::Array(out))
            }),
    );
    ctx.declare_func(
        "coalesce",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(|args| {
                args.iter()
                    .find(|v| !v.is_null())
                    .cloned()
                    .ok_or_else(|| "coalesce: every argument is null".to_string())
            }),
    );
    ctx.declare_func(
        "min",
        FuncDef::builder()
            .variadic_param(ParamType::Number)
            .build(|args| {
                Ok(number(
                    numbers(&args)?.into_iter().fold(f64::INFINITY, f64::min),
                ))
            }),
    );
    ctx.declare_func(
        "max",
        FuncDef::builder()
            .variadic_param(ParamType::Number)
            .build(|args| {
                Ok(number(
                    numbers(&args)?
                        .into_iter()
                        .fold(f64::NEG_INFINITY, f64::max),
                ))
            }),
    );
    ctx.declare_func(
        "jsonencode",
        FuncDef::builder().param(ParamType::Any).build(|args| {
            serde_json::to_string(&to_json(&args[0]))
                .map(hcl::Value::from)
                .map_err(|e| e.to_string())
        }),
    );
    ctx.declare_func(
        "floor",
        FuncDef::builder()
            .param(ParamType::Number)
            .build(|args| Ok(number(numbers(&args)?[0].floor()))),
    );
}

/// The module's variables: each default, overridden by the deployment's.
fn variable_values(files: &[TfFile], d: &Deployment) -> serde_json::Map<String, serde_json::Value> {
    let empty = Context::new();
    let mut vars = serde_json::Map::new();
    for b in files
        .iter()
        .flat_map(|f| f.body.blocks())
        .filter(|b| b.identifier() == "variable")
    {
        let name = labels(b)[0].to_string();
        let value = match attr(b.body(), "default") {
            Some(e) => to_json(
                &e.evaluate(&empty)
                    .unwrap_or_else(|e| panic!("variable {name}: default does not evaluate: {e}")),
            ),
            None => serde_json::Value::Null,
        };
        vars.insert(name, value);
    }
    for (name, value) in &d.vars {
        assert!(
            vars.contains_key(*name),
            "the test sets variable {name}, which the module does not declare"
        );
        vars.insert((*name).to_string(), value.clone());
    }
    vars
}

/// A context in which the module's expressions evaluate: var, data, the
/// resources the policies name, every local that can be evaluated, and the
/// functions above.
fn module_context(files: &[TfFile], d: &Deployment) -> Context<'static> {
    let vars = variable_values(files, d);
    let name = vars["name"]
        .as_str()
        .expect("var.name is a string")
        .to_string();
    let (p, r, a) = (d.partition, d.region, d.account);
    let data = serde_json::json!({
        "aws_partition": {"current": {"partition": p, "dns_suffix": d.dns_suffix}},
        "aws_region": {"current": {"id": r, "name": r}},
        "aws_caller_identity": {"current": {"account_id": a}},
    });
    // What AWS will return for the resources, computed from their names.
    let resources = serde_json::json!({
        "aws_sqs_queue": {
            "main": {"arn": format!("arn:{p}:sqs:{r}:{a}:{name}"), "name": name},
            "dead_letter": {"arn": format!("arn:{p}:sqs:{r}:{a}:{name}-dlq"), "name": format!("{name}-dlq")},
        },
        "aws_sns_topic": {"alarm": {"arn": format!("arn:{p}:sns:{r}:{a}:{name}")}},
        "aws_dynamodb_table": {"state": [{
            "arn": format!("arn:{p}:dynamodb:{r}:{a}:table/{name}-state"),
            "name": format!("{name}-state"),
        }]},
        "aws_ecs_cluster": {"reflex": {"arn": format!("arn:{p}:ecs:{r}:{a}:cluster/{name}")}},
        "aws_s3_bucket": {"rules": [{
            "arn": format!("arn:{p}:s3:::{}", rules_bucket(&name)),
            "id": rules_bucket(&name),
            "bucket": rules_bucket(&name),
        }]},
    });
    let base = |locals: &serde_json::Map<String, serde_json::Value>| {
        let mut ctx = Context::new();
        functions(&mut ctx);
        ctx.declare_var("var", to_hcl(serde_json::Value::Object(vars.clone())));
        ctx.declare_var("data", to_hcl(data.clone()));
        for (k, v) in resources.as_object().expect("an object") {
            ctx.declare_var(k.as_str(), to_hcl(v.clone()));
        }
        ctx.declare_var("local", to_hcl(serde_json::Value::Object(locals.clone())));
        ctx
    };
    // Locals may refer to each other: evaluate until nothing more evaluates.
    // Those that need what is not declared here (e.g. the ECR repository)
    // stay out; a policy that used one would fail to evaluate, loudly.
    let all_locals: Vec<(String, &Expression)> = files
        .iter()
        .flat_map(|f| f.body.blocks())
        .filter(|b| b.identifier() == "locals")
        .flat_map(|b| {
            b.body()
                .attributes()
                .map(|a| (a.key().to_string(), a.expr()))
        })
        .collect();
    let mut locals = serde_json::Map::new();
    loop {
        let ctx = base(&locals);
        let before = locals.len();
        for (key, expr) in &all_locals {
            if locals.contains_key(key) {
                continue;
            }
            if let Ok(v) = expr.evaluate(&ctx) {
                locals.insert(key.clone(), to_json(&v));
            }
        }
        if locals.len() == before {
            return base(&locals);
        }
    }
}

/// The rules bucket's name as S3 makes it from the module's bucket_prefix
/// (`<name>-rules-` and a unique suffix).
fn rules_bucket(name: &str) -> String {
    format!("{name}-rules-20260102030405060708090001")
}

fn eval(ctx: &Context, expr: &Expression, what: &str) -> serde_json::Value {
    to_json(
        &expr
            .evaluate(ctx)
            .unwrap_or_else(|e| panic!("{what}: `{expr}` does not evaluate: {e}")),
    )
}

fn strings(v: &serde_json::Value, what: &str) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        other => panic!("{what}: expected a string or a list, found {other}"),
    }
}

/// One (effect, action, resource, conditions) of a policy; conditions as
/// sorted (test, key, sorted values).
type Tuple = (String, String, String, Vec<(String, String, Vec<String>)>);

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn push_tuples(
    out: &mut BTreeSet<Tuple>,
    effect: &str,
    actions: &[String],
    resources: &[String],
    mut conditions: Vec<(String, String, Vec<String>)>,
) {
    conditions.sort();
    for action in actions {
        for resource in resources {
            out.insert((
                effect.to_string(),
                action.clone(),
                resource.clone(),
                conditions.clone(),
            ));
        }
    }
}

/// The rendered tuples of `data "aws_iam_policy_document" "<name>"` (with
/// its source documents) for the context's inputs.
fn evaluated_policy(files: &[TfFile], name: &str, ctx: &Context) -> BTreeSet<Tuple> {
    let doc = block(files, "data", "aws_iam_policy_document", name);
    let mut out = BTreeSet::new();
    for source in source_documents(doc) {
        out.extend(evaluated_policy(files, &source, ctx));
    }
    let what = format!("data.aws_iam_policy_document.{name}");
    let mut bodies: Vec<&Body> = Vec::new();
    for b in doc.body().blocks() {
        match (b.identifier(), labels(b).as_slice()) {
            ("statement", _) => bodies.push(b.body()),
            ("dynamic", ["statement"]) => {
                let for_each = eval(ctx, must_attr(b.body(), "for_each", &what), &what);
                let n = match &for_each {
                    serde_json::Value::Array(a) => a.len(),
                    serde_json::Value::Object(o) => o.len(),
                    other => panic!("{what}: for_each is {other}"),
                };
                let content = b
                    .body()
                    .blocks()
                    .find(|c| c.identifier() == "content")
                    .unwrap_or_else(|| panic!("{what}: dynamic statement without content"));
                bodies.extend(std::iter::repeat_n(content.body(), n));
            }
            _ => {}
        }
    }
    for body in bodies {
        let effect = attr(body, "effect")
            .map(|e| strings(&eval(ctx, e, &what), &what).concat())
            .unwrap_or_else(|| "Allow".to_string());
        let actions = strings(&eval(ctx, must_attr(body, "actions", &what), &what), &what);
        let resources = strings(
            &eval(ctx, must_attr(body, "resources", &what), &what),
            &what,
        );
        let mut conditions = Vec::new();
        for b in body.blocks() {
            let cond = match (b.identifier(), labels(b).as_slice()) {
                ("condition", _) => Some(b.body()),
                ("dynamic", ["condition"]) => {
                    let for_each = eval(ctx, must_attr(b.body(), "for_each", &what), &what);
                    if for_each.as_array().is_some_and(|a| !a.is_empty()) {
                        b.body()
                            .blocks()
                            .find(|c| c.identifier() == "content")
                            .map(|c| c.body())
                    } else {
                        None
                    }
                }
                _ => None,
            };
            if let Some(c) = cond {
                let one = |k: &str| strings(&eval(ctx, must_attr(c, k, &what), &what), &what);
                conditions.push((
                    one("test").concat(),
                    one("variable").concat(),
                    sorted(one("values")),
                ));
            }
        }
        push_tuples(&mut out, &effect, &actions, &resources, conditions);
    }
    out
}

/// The tuples of a JSON policy document (what `reflex iam-policy` prints).
fn json_policy_tuples(policy: &serde_json::Value) -> BTreeSet<Tuple> {
    let mut out = BTreeSet::new();
    for s in policy["Statement"].as_array().expect("a Statement list") {
        let what = format!("statement {}", s["Sid"]);
        let effect = s["Effect"].as_str().expect("Effect");
        let actions = strings(&s["Action"], &what);
        let resources = strings(&s["Resource"], &what);
        let mut conditions = Vec::new();
        if let Some(by_test) = s["Condition"].as_object() {
            for (test, keys) in by_test {
                for (key, values) in keys.as_object().expect("condition keys") {
                    conditions.push((test.clone(), key.clone(), sorted(strings(values, &what))));
                }
            }
        }
        push_tuples(&mut out, effect, &actions, &resources, conditions);
    }
    out
}

fn describe_tuples(
    only_left: &str,
    left: &BTreeSet<Tuple>,
    only_right: &str,
    right: &BTreeSet<Tuple>,
) -> String {
    let mut msg = String::new();
    for t in left.difference(right) {
        let _ = write!(msg, "\n  {only_left} only: {t:?}");
    }
    for t in right.difference(left) {
        let _ = write!(msg, "\n  {only_right} only: {t:?}");
    }
    msg
}

/// Runs `reflex iam-policy --all-actions` with the deployment's inputs and
/// compares its tuples with the Terraform daemon policy's.
fn assert_generator_matches_terraform(d: &Deployment) {
    let files = module();
    let ctx = module_context(&files, d);
    let terraform = evaluated_policy(&files, "daemon", &ctx);

    let var = |n: &str| d.var(&files, n);
    let name = var("name").as_str().expect("name").to_string();
    let host = format!("sqs.{}.{}", d.region, d.dns_suffix);
    let mut args: Vec<String> = [
        "--all-actions",
        "--partition",
        d.partition,
        "--region",
        d.region,
        "--account",
        d.account,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--queue-url".to_string(),
        format!("https://{host}/{}/{name}", d.account),
        "--dlq-url".to_string(),
        format!("https://{host}/{}/{name}-dlq", d.account),
        "--tag-key".to_string(),
        var("managed_tag_key")
            .as_str()
            .expect("tag key")
            .to_string(),
        "--tag-value".to_string(),
        var("managed_tag_value")
            .as_str()
            .expect("tag value")
            .to_string(),
    ]);
    for lb in strings(&var("load_balancer_names"), "load_balancer_names") {
        args.extend(["--load-balancer".to_string(), lb]);
    }
    for tg in strings(&var("target_group_arns"), "target_group_arns") {
        args.extend(["--target-group-arn".to_string(), tg]);
    }
    for g in strings(&var("auto_scaling_group_names"), "auto_scaling_group_names") {
        args.extend(["--auto-scaling-group".to_string(), g]);
    }
    let mut topics = vec![var("operator_topic_arn")
        .as_str()
        .expect("operator topic")
        .to_string()];
    topics.extend(strings(
        &var("notification_topic_arns"),
        "notification_topic_arns",
    ));
    for t in topics {
        args.extend(["--notification-topic-arn".to_string(), t]);
    }
    for ns in strings(&var("metric_namespaces"), "metric_namespaces") {
        args.extend(["--metric-namespace".to_string(), ns]);
    }
    if var("state_backend") == "dynamodb" {
        args.extend(["--state-table".to_string(), format!("{name}-state")]);
    }
    // With rules_dir the task reads local.rules_source (its
    // REFLEX_RULES_SOURCE), and the generator is given the same URL.
    if !var("rules_dir").is_null() {
        let source = eval_src(&ctx, "local.rules_source");
        let source = source.as_str().expect("local.rules_source is a string");
        assert_eq!(
            source,
            format!("s3://{}/rules/", rules_bucket(&name)),
            "local.rules_source must name the rules bucket's prefix"
        );
        args.extend(["--rules-source".to_string(), source.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reflex = json_policy_tuples(&reflex_iam_policy(&args));

    assert!(
        !terraform.is_empty(),
        "the Terraform daemon policy rendered no statement"
    );
    assert!(
        terraform == reflex,
        "the Terraform daemon policy (infra/terraform/iam.tf) and `reflex iam-policy {}` differ \
         as (effect, action, resource, condition) tuples:{}\nUpdate iam.tf together with src/iam.rs.",
        args.join(" "),
        describe_tuples("Terraform", &terraform, "reflex", &reflex)
    );
}

fn operator_topic(d: &Deployment) -> serde_json::Value {
    serde_json::json!(format!(
        "arn:{}:sns:{}:{}:oncall",
        d.partition, d.region, d.account
    ))
}

#[test]
fn daemon_policy_tuples_equal_reflex_iam_policy() {
    let mut d = Deployment::new(vec![]);
    d.vars = vec![
        ("operator_topic_arn", operator_topic(&d)),
        ("load_balancer_names", serde_json::json!(["web", "api"])),
        (
            "target_group_arns",
            serde_json::json!([
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123abcd"
            ]),
        ),
        ("auto_scaling_group_names", serde_json::json!(["web-asg"])),
    ];
    assert_generator_matches_terraform(&d);
}

#[test]
fn daemon_policy_tuples_equal_reflex_iam_policy_in_aws_cn_with_dynamodb_state() {
    let mut d = Deployment {
        partition: "aws-cn",
        dns_suffix: "amazonaws.com.cn",
        region: "cn-north-1",
        account: "210987654321",
        vars: vec![],
    };
    d.vars = vec![
        ("name", serde_json::json!("ops-reflex")),
        ("operator_topic_arn", operator_topic(&d)),
        (
            "notification_topic_arns",
            serde_json::json!(["arn:aws-cn:sns:cn-north-1:210987654321:team"]),
        ),
        ("load_balancer_names", serde_json::json!(["edge"])),
        (
            "target_group_arns",
            serde_json::json!([
                "arn:aws-cn:elasticloadbalancing:cn-north-1:210987654321:targetgroup/edge/0123abcd",
                "arn:aws-cn:elasticloadbalancing:cn-north-1:210987654321:targetgroup/api/4567ef01"
            ]),
        ),
        (
            "auto_scaling_group_names",
            serde_json::json!(["edge-asg", "api-asg"]),
        ),
        ("managed_tag_key", serde_json::json!("team:remediate")),
        ("managed_tag_value", serde_json::json!("yes")),
        (
            "metric_namespaces",
            serde_json::json!(["reflex", "Custom/App"]),
        ),
        ("state_backend", serde_json::json!("dynamodb")),
    ];
    assert_generator_matches_terraform(&d);
}

/// With rules_dir the daemon may list the rules prefix and read the objects
/// under it, exactly as `reflex iam-policy --rules-source` grants; in
/// aws-us-gov, so the S3 ARNs must take the partition too.
#[test]
fn daemon_policy_tuples_equal_reflex_iam_policy_with_rules_from_s3() {
    let mut d = Deployment {
        partition: "aws-us-gov",
        dns_suffix: "amazonaws.com",
        region: "us-gov-west-1",
        account: "345678901234",
        vars: vec![],
    };
    d.vars = vec![
        ("name", serde_json::json!("fleet")),
        ("operator_topic_arn", operator_topic(&d)),
        ("load_balancer_names", serde_json::json!(["web"])),
        (
            "target_group_arns",
            serde_json::json!([
                "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:345678901234:targetgroup/web/0123abcd"
            ]),
        ),
        ("auto_scaling_group_names", serde_json::json!(["web-asg"])),
        (
            "rules_dir",
            serde_json::json!("examples/elb-unhealthy-host/rules"),
        ),
    ];
    assert_generator_matches_terraform(&d);

    // And the two S3 statements are there, scoped to the bucket and prefix.
    let files = module();
    let ctx = module_context(&files, &d);
    let s3: BTreeSet<Tuple> = evaluated_policy(&files, "daemon", &ctx)
        .into_iter()
        .filter(|t| t.1.starts_with("s3:"))
        .collect();
    let bucket = format!("arn:aws-us-gov:s3:::{}", rules_bucket("fleet"));
    let expected: BTreeSet<Tuple> = [
        (
            "Allow".to_string(),
            "s3:ListBucket".to_string(),
            bucket.clone(),
            vec![(
                "StringLike".to_string(),
                "s3:prefix".to_string(),
                vec!["rules/*".to_string()],
            )],
        ),
        (
            "Allow".to_string(),
            "s3:GetObject".to_string(),
            format!("{bucket}/rules/*"),
            vec![],
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        s3, expected,
        "the daemon's S3 access must be ListBucket on the rules prefix and GetObject under it, nothing more"
    );
}

/// The daemon re-checks an alarm with DescribeAlarms for metric and
/// composite alarms; composite-alarm data needs Resource "*". No statement
/// may grant it more narrowly, and none may deny it.
#[test]
fn describe_alarms_is_never_narrower_than_the_daemon_needs() {
    let files = module();
    for d in [
        Deployment::new(vec![(
            "operator_topic_arn",
            serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
        )]),
        Deployment::new(vec![
            (
                "operator_topic_arn",
                serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
            ),
            ("load_balancer_names", serde_json::json!(["web"])),
            ("state_backend", serde_json::json!("dynamodb")),
        ]),
    ] {
        let ctx = module_context(&files, &d);
        let tuples = evaluated_policy(&files, "daemon", &ctx);
        let describe: Vec<_> = tuples
            .iter()
            .filter(|(_, action, _, _)| {
                action == "cloudwatch:DescribeAlarms" || action == "cloudwatch:*" || action == "*"
            })
            .collect();
        assert!(
            describe.iter().any(|(effect, _, resource, conditions)| effect == "Allow" && resource == "*" && conditions.is_empty()),
            "the daemon policy must allow cloudwatch:DescribeAlarms on \"*\" without conditions; it has {describe:?}"
        );
        for (effect, _, resource, conditions) in &describe {
            assert!(
                effect == "Allow" && resource == "*" && conditions.is_empty(),
                "a DescribeAlarms statement narrower than \"*\" (or a Deny) can refuse the re-check of composite alarms: {effect} on {resource} with {conditions:?}"
            );
        }
    }
    let reflex = json_policy_tuples(&reflex_iam_policy(&["--all-actions"]));
    assert!(
        reflex.iter().any(|(e, a, r, c)| e == "Allow"
            && a == "cloudwatch:DescribeAlarms"
            && r == "*"
            && c.is_empty()),
        "`reflex iam-policy` must grant DescribeAlarms on \"*\" too"
    );
}

#[test]
fn state_table_permissions_are_exactly_the_store_operations() {
    let files = module();
    let operator = (
        "operator_topic_arn",
        serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
    );
    let local = module_context(&files, &Deployment::new(vec![operator.clone()]));
    assert!(
        !evaluated_policy(&files, "daemon", &local)
            .iter()
            .any(|(_, a, _, _)| a.starts_with("dynamodb:")),
        "with the local state store the daemon gets no DynamoDB permission"
    );
    let dynamodb = module_context(
        &files,
        &Deployment::new(vec![
            operator,
            ("state_backend", serde_json::json!("dynamodb")),
        ]),
    );
    let granted: BTreeSet<_> = evaluated_policy(&files, "daemon", &dynamodb)
        .into_iter()
        .filter(|(_, a, _, _)| a.starts_with("dynamodb:"))
        .collect();
    let table = "arn:aws:dynamodb:eu-west-1:123456789012:table/reflex-state";
    let expected: BTreeSet<Tuple> = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
    ]
    .iter()
    .map(|a| {
        (
            "Allow".to_string(),
            a.to_string(),
            table.to_string(),
            Vec::new(),
        )
    })
    .collect();
    assert_eq!(
        granted, expected,
        "the daemon may use exactly the store's item operations, on the state table only"
    );

    let t = block(&files, "resource", "aws_dynamodb_table", "state");
    let what = "aws_dynamodb_table.state";
    assert_eq!(
        text(must_attr(t.body(), "billing_mode", what)),
        "PAY_PER_REQUEST"
    );
    assert_eq!(text(must_attr(t.body(), "hash_key", what)), "pk");
    assert_eq!(text(must_attr(t.body(), "range_key", what)), "sk");
    let attributes: BTreeSet<(String, String)> = t
        .body()
        .blocks()
        .filter(|b| b.identifier() == "attribute")
        .map(|b| {
            (
                text(must_attr(b.body(), "name", what)),
                text(must_attr(b.body(), "type", what)),
            )
        })
        .collect();
    assert_eq!(
        attributes,
        BTreeSet::from([
            ("pk".to_string(), "S".to_string()),
            ("sk".to_string(), "S".to_string())
        ])
    );
    let sub = |name: &str| {
        t.body()
            .blocks()
            .find(|b| b.identifier() == name)
            .unwrap_or_else(|| panic!("{what} has no {name} block"))
            .body()
    };
    assert_eq!(
        text(must_attr(sub("ttl"), "attribute_name", what)),
        "expires_at"
    );
    assert_eq!(text(must_attr(sub("ttl"), "enabled", what)), "true");
    assert_eq!(
        text(must_attr(sub("point_in_time_recovery"), "enabled", what)),
        "true"
    );
    assert_eq!(
        text(must_attr(sub("server_side_encryption"), "enabled", what)),
        "true"
    );
    assert_eq!(
        text(must_attr(
            sub("server_side_encryption"),
            "kms_key_arn",
            what
        )),
        "local.customer_kms_key_arn",
        "the state table must be encrypted with the module's key"
    );
}

#[test]
fn replicas_need_the_dynamodb_backend() {
    let files = module();
    let service = block(&files, "resource", "aws_ecs_service", "daemon");
    let precondition = service
        .body()
        .blocks()
        .filter(|b| b.identifier() == "lifecycle")
        .flat_map(|b| b.body().blocks())
        .find(|b| b.identifier() == "precondition")
        .expect("aws_ecs_service.daemon has a lifecycle precondition");
    let condition = must_attr(precondition.body(), "condition", "the precondition");
    let message = text(must_attr(
        precondition.body(),
        "error_message",
        "the precondition",
    ));
    assert!(
        message.contains("dynamodb"),
        "the message must say what to do: {message}"
    );
    let operator = (
        "operator_topic_arn",
        serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
    );
    for (count, backend, ok) in [
        (0, "local", true),
        (1, "local", true),
        (2, "local", false),
        (1, "dynamodb", true),
        (3, "dynamodb", true),
    ] {
        let ctx = module_context(
            &files,
            &Deployment::new(vec![
                operator.clone(),
                ("desired_count", serde_json::json!(count)),
                ("state_backend", serde_json::json!(backend)),
            ]),
        );
        assert_eq!(
            eval(&ctx, condition, "the precondition"),
            serde_json::json!(ok),
            "desired_count = {count} with state_backend = {backend}"
        );
    }
}

/// The "not running" alarm exists only while reflex should run, so that a
/// resume creates it afresh (from INSUFFICIENT_DATA) and it can page.
#[test]
fn heartbeat_alarm_count_follows_desired_count() {
    let files = module();
    let alarm = block(
        &files,
        "resource",
        "aws_cloudwatch_metric_alarm",
        "not_running",
    );
    let count = must_attr(
        alarm.body(),
        "count",
        "aws_cloudwatch_metric_alarm.not_running",
    );
    let operator = (
        "operator_topic_arn",
        serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
    );
    for (desired, expected) in [(0, 0), (1, 1), (3, 1)] {
        let ctx = module_context(
            &files,
            &Deployment::new(vec![
                operator.clone(),
                ("desired_count", serde_json::json!(desired)),
                ("state_backend", serde_json::json!("dynamodb")),
            ]),
        );
        assert_eq!(
            eval(&ctx, count, "count"),
            serde_json::json!(expected),
            "desired_count = {desired}"
        );
    }
    assert_eq!(
        text(must_attr(alarm.body(), "actions_enabled", "not_running")),
        "true",
        "an alarm that exists must page"
    );
    assert_eq!(
        text(must_attr(alarm.body(), "treat_missing_data", "not_running")),
        "breaching"
    );
}

#[test]
fn task_stopped_with_a_non_zero_exit_code_pages_the_operators() {
    let files = module();
    let rule = block(
        &files,
        "resource",
        "aws_cloudwatch_event_rule",
        "task_stopped",
    );
    let ctx = module_context(
        &files,
        &Deployment::new(vec![(
            "operator_topic_arn",
            serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
        )]),
    );
    let pattern = eval(
        &ctx,
        must_attr(rule.body(), "event_pattern", "event_pattern"),
        "event_pattern",
    );
    let pattern: serde_json::Value =
        serde_json::from_str(pattern.as_str().expect("jsonencode gives a string"))
            .expect("the event pattern is JSON");
    assert_eq!(pattern["source"], serde_json::json!(["aws.ecs"]));
    assert_eq!(
        pattern["detail-type"],
        serde_json::json!(["ECS Task State Change"])
    );
    assert_eq!(
        pattern["detail"]["lastStatus"],
        serde_json::json!(["STOPPED"])
    );
    assert_eq!(
        pattern["detail"]["clusterArn"],
        serde_json::json!(["arn:aws:ecs:eu-west-1:123456789012:cluster/reflex"])
    );
    assert_eq!(
        pattern["detail"]["group"],
        serde_json::json!(["service:reflex"])
    );
    assert_eq!(
        pattern["detail"]["containers"],
        serde_json::json!({"name": ["reflex"], "exitCode": [{"anything-but": 0}]})
    );
    let target = block(
        &files,
        "resource",
        "aws_cloudwatch_event_target",
        "task_stopped",
    );
    assert_eq!(
        text(must_attr(target.body(), "arn", "target")),
        "var.operator_topic_arn"
    );
    assert_eq!(
        text(must_attr(target.body(), "rule", "target")),
        "aws_cloudwatch_event_rule.task_stopped.name"
    );
}

/// The daemon's timing comes from one set of locals: the container gets the
/// queue's visibility timeout, a heartbeat well inside it, and a shutdown
/// grace that ends before ECS's SIGKILL.
#[test]
fn settings_passed_to_the_container_match_the_queue_and_the_task() {
    let files = module();
    let task = block(&files, "resource", "aws_ecs_task_definition", "daemon");
    let what = "aws_ecs_task_definition.daemon container_definitions";
    let containers = jsonencoded(must_attr(task.body(), "container_definitions", what), what);
    let Expression::Array(containers) = containers else {
        panic!("{what} must be a list of containers");
    };
    let container = &containers[0];
    let queue = block(&files, "resource", "aws_sqs_queue", "main");
    let visibility = must_attr(
        queue.body(),
        "visibility_timeout_seconds",
        "aws_sqs_queue.main",
    );
    let stop = field(container, "stopTimeout", what);
    let env_expr = |name: &str| {
        list_items(field(container, "environment", what), what)
            .into_iter()
            .find(|e| text(field(e, "name", what)) == name)
            .map(|e| field(e, "value", what))
            .unwrap_or_else(|| panic!("{what}: no {name} in the environment"))
    };
    let seconds = |v: serde_json::Value, name: &str| -> u64 {
        let s = v
            .as_str()
            .unwrap_or_else(|| panic!("{name} must be a string like \"60s\", is {v}"));
        s.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                panic!("{name} = {s:?} is not a whole number of seconds like \"60s\"")
            })
    };
    let operator = (
        "operator_topic_arn",
        serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
    );
    for longest in [1, 60, 100, 300, 21585] {
        let ctx = module_context(
            &files,
            &Deployment::new(vec![
                operator.clone(),
                ("longest_action_seconds", serde_json::json!(longest)),
            ]),
        );
        let visibility = eval(&ctx, visibility, "visibility")
            .as_u64()
            .expect("a number");
        let stop = eval(&ctx, stop, "stopTimeout").as_u64().expect("a number");
        let env_visibility = seconds(
            eval(&ctx, env_expr("REFLEX_VISIBILITY_TIMEOUT"), "env"),
            "REFLEX_VISIBILITY_TIMEOUT",
        );
        let heartbeat = seconds(
            eval(&ctx, env_expr("REFLEX_HEARTBEAT"), "env"),
            "REFLEX_HEARTBEAT",
        );
        let grace = seconds(
            eval(&ctx, env_expr("REFLEX_SHUTDOWN_GRACE"), "env"),
            "REFLEX_SHUTDOWN_GRACE",
        );
        let case = format!("longest_action_seconds = {longest}");
        assert_eq!(
            env_visibility, visibility,
            "{case}: REFLEX_VISIBILITY_TIMEOUT must be the queue's visibility timeout"
        );
        assert!(
            visibility >= 2 * longest + 30 || visibility == 43_200,
            "{case}: visibility {visibility}"
        );
        assert!(
            heartbeat >= 1 && heartbeat * 3 <= visibility,
            "{case}: heartbeat {heartbeat} must be at most a third of {visibility}"
        );
        assert!(
            stop <= 120,
            "{case}: Fargate allows a stop timeout of 120 s at most, not {stop}"
        );
        assert!(
            grace < stop,
            "{case}: the shutdown grace ({grace}) must end before ECS's SIGKILL ({stop})"
        );
        assert!(
            grace >= longest.min(115),
            "{case}: the grace ({grace}) must let the longest action finish where Fargate allows"
        );
    }
    for name in [
        "REFLEX_VISIBILITY_TIMEOUT",
        "REFLEX_HEARTBEAT",
        "REFLEX_SHUTDOWN_GRACE",
    ] {
        assert!(
            text(env_expr(name)).contains("${local."),
            "{name} must come from the module's locals, is {}",
            text(env_expr(name))
        );
    }
    assert_eq!(text(visibility), "local.visibility_timeout_seconds");
    assert_eq!(text(stop), "local.stop_timeout_seconds");

    // The health check runs the binary itself (no shell in the image),
    // against the address the daemon is told to listen on.
    let health = field(container, "healthCheck", what);
    let command = texts(field(health, "command", what));
    assert_eq!(
        command,
        [
            "CMD",
            "/usr/local/bin/reflex",
            "health",
            "--listen",
            "local.metrics_listen"
        ],
        "the ECS health check must run `reflex health` with the listen address"
    );
    assert_eq!(
        text(env_expr("REFLEX_METRICS_LISTEN")),
        "local.metrics_listen"
    );
    let ctx = module_context(&files, &Deployment::new(vec![operator]));
    let listen = eval(&ctx, env_expr("REFLEX_METRICS_LISTEN"), "listen");
    assert!(
        listen.as_str().is_some_and(|l| l.starts_with("127.0.0.1:")),
        "/readyz must stay on loopback, is {listen}"
    );
}

#[test]
fn alarm_topic_denies_publish_except_this_accounts_alarms() {
    let files = module();
    let statements = policy_document(&files, "alarm_topic");
    let deny = statements
        .iter()
        .find(|s| s.effect == "Deny" && s.actions == ["sns:Publish"] && s.conditions.iter().any(|c| c.variable == "aws:SourceArn"))
        .unwrap_or_else(|| panic!("the alarm topic's policy has no Deny of sns:Publish on aws:SourceArn: {statements:?}"));
    assert_eq!(deny.principals, [("*".to_string(), vec!["*".to_string()])]);
    assert_eq!(deny.resources, ["aws_sns_topic.alarm.arn"]);
    assert_eq!(
        deny.conditions.len(),
        1,
        "one condition, or the Deny narrows: {:?}",
        deny.conditions
    );
    let c = &deny.conditions[0];
    assert_eq!(
        c.test, "ArnNotLike",
        "a missing aws:SourceArn must be denied (negated operator)"
    );
    assert_eq!(c.values, ["local.cloudwatch_alarm_arns"]);
    let ctx = module_context(
        &files,
        &Deployment::new(vec![(
            "operator_topic_arn",
            serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
        )]),
    );
    assert_eq!(
        eval_src(&ctx, "local.cloudwatch_alarm_arns"),
        serde_json::json!("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"),
        "the topic accepts only CloudWatch alarms of this account and region"
    );
}

/// Evaluates HCL source (an expression) in a context.
fn eval_src(ctx: &Context, src: &str) -> serde_json::Value {
    let body = hcl::parse(&format!("x = {src}\n")).unwrap_or_else(|e| panic!("`{src}`: {e}"));
    let expr = attr(&body, "x").expect("the attribute just written");
    eval(ctx, expr, src)
}

fn oncall() -> (&'static str, serde_json::Value) {
    (
        "operator_topic_arn",
        serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall"),
    )
}

#[test]
fn main_queue_denies_send_except_the_alarm_topic_and_redrive_roles() {
    let files = module();
    let statements = policy_document(&files, "main_queue");
    let deny = statements
        .iter()
        .find(|s| s.effect == "Deny" && s.actions == ["sqs:SendMessage"])
        .unwrap_or_else(|| {
            panic!("the queue policy has no Deny of sqs:SendMessage: {statements:?}")
        });
    assert_eq!(deny.principals, [("*".to_string(), vec!["*".to_string()])]);
    assert_eq!(deny.resources, ["aws_sqs_queue.main.arn"]);
    assert!(
        deny.conditions.iter().any(|c| c.test == "ArnNotEquals"
            && c.variable == "aws:SourceArn"
            && c.values == ["aws_sns_topic.alarm.arn"]),
        "the Deny must apply unless aws:SourceArn is the alarm topic (ArnNotEquals): {:?}",
        deny.conditions
    );
    // The redrive roles are exempted in the same statement (conditions are
    // ANDed); a separate Allow could not override a Deny.
    assert!(
        deny.conditions.iter().any(|c| c.test == "ArnNotLike"
            && c.variable == "aws:PrincipalArn"
            && c.values == ["var.redrive_role_arns"]),
        "the redrive roles must be exempted by aws:PrincipalArn in the same Deny: {:?}",
        deny.conditions
    );
    assert_eq!(
        deny.conditions.len(),
        2,
        "no other condition may narrow the Deny: {:?}",
        deny.conditions
    );

    // Rendered: without redrive roles, the PrincipalArn condition is left
    // out, so the Deny covers every principal but the topic.
    let ctx = module_context(&files, &Deployment::new(vec![oncall()]));
    let tuples = evaluated_policy(&files, "main_queue", &ctx);
    assert!(
        tuples.contains(&(
            "Deny".to_string(),
            "sqs:SendMessage".to_string(),
            "arn:aws:sqs:eu-west-1:123456789012:reflex".to_string(),
            vec![(
                "ArnNotEquals".to_string(),
                "aws:SourceArn".to_string(),
                vec!["arn:aws:sns:eu-west-1:123456789012:reflex".to_string()]
            )]
        )),
        "{tuples:?}"
    );
}

#[test]
fn dead_letter_queue_admits_only_reflex_and_redrive() {
    let files = module();
    let policy = block(&files, "resource", "aws_sqs_queue_policy", "dead_letter");
    let what = "aws_sqs_queue_policy.dead_letter";
    assert_eq!(
        text(must_attr(policy.body(), "queue_url", what)),
        "aws_sqs_queue.dead_letter.id"
    );
    assert_eq!(
        text(must_attr(policy.body(), "policy", what)),
        "data.aws_iam_policy_document.dead_letter_queue.json"
    );
    let statements = policy_document(&files, "dead_letter_queue");
    assert!(
        statements.iter().all(|s| s.effect == "Deny"),
        "the DLQ policy only refuses; reflex's own role grants its SendMessage"
    );
    let deny = statements
        .iter()
        .find(|s| s.actions == ["sqs:SendMessage"])
        .unwrap_or_else(|| panic!("the DLQ policy has no Deny of sqs:SendMessage: {statements:?}"));
    assert_eq!(deny.principals, [("*".to_string(), vec!["*".to_string()])]);
    assert_eq!(deny.resources, ["aws_sqs_queue.dead_letter.arn"]);
    let mut conditions: Vec<(String, String, Vec<String>)> = deny
        .conditions
        .iter()
        .map(|c| (c.test.clone(), c.variable.clone(), c.values.clone()))
        .collect();
    conditions.sort();
    assert_eq!(
        conditions,
        [
            (
                "ArnNotEquals".to_string(),
                "aws:PrincipalArn".to_string(),
                vec!["aws_iam_role.daemon.arn".to_string()]
            ),
            (
                "ArnNotEquals".to_string(),
                "aws:SourceArn".to_string(),
                vec!["aws_sqs_queue.main.arn".to_string()]
            ),
        ],
        "only the reflex role and SQS redrive from the main queue may send to the DLQ"
    );
    assert!(
        statements.iter().any(|s| s.actions == ["sqs:*"]
            && s.resources == ["aws_sqs_queue.dead_letter.arn"]
            && s.conditions.iter().any(|c| c.test == "Bool"
                && c.variable == "aws:SecureTransport"
                && c.values == ["false"])),
        "the DLQ must refuse requests without TLS, like the main queue"
    );
}

/// The key's grant to CloudWatch carries the confused-deputy conditions of
/// the SNS encryption docs.
#[test]
fn kms_key_grants_cloudwatch_only_for_this_accounts_alarms_and_topic() {
    let files = module();
    let statements = policy_document(&files, "kms");
    let grant = statements
        .iter()
        .find(|s| {
            s.principals
                .iter()
                .any(|(t, ids)| t == "Service" && ids == &["cloudwatch.amazonaws.com"])
        })
        .unwrap_or_else(|| panic!("the key policy grants nothing to cloudwatch.amazonaws.com"));
    let has = |test: &str, variable: &str, value: &str| {
        grant
            .conditions
            .iter()
            .any(|c| c.test == test && c.variable == variable && c.values == [value])
    };
    assert!(
        has("StringEquals", "aws:SourceAccount", "local.account_id"),
        "{:?}",
        grant.conditions
    );
    assert!(
        has("ArnLike", "aws:SourceArn", "local.cloudwatch_alarm_arns"),
        "{:?}",
        grant.conditions
    );
    assert!(
        has(
            "StringEquals",
            "kms:EncryptionContext:aws:sns:topicArn",
            "local.alarm_topic_arn"
        ),
        "{:?}",
        grant.conditions
    );
    let ctx = module_context(&files, &Deployment::new(vec![oncall()]));
    assert_eq!(
        eval_src(&ctx, "local.alarm_topic_arn"),
        eval_src(&ctx, "aws_sns_topic.alarm.arn"),
        "the topic ARN in the key policy must be the alarm topic's"
    );
}

#[test]
fn iam_roles_survive_a_second_region_and_org_guardrails() {
    let files = module();
    for role in ["daemon", "execution"] {
        let b = block(&files, "resource", "aws_iam_role", role);
        let what = format!("aws_iam_role.{role}");
        assert_eq!(
            text(must_attr(b.body(), "path", &what)),
            "var.iam_role_path"
        );
        assert_eq!(
            text(must_attr(b.body(), "permissions_boundary", &what)),
            "var.permissions_boundary_arn"
        );
        let name = must_attr(b.body(), "name", &what);
        let names: BTreeSet<String> = ["eu-west-1", "us-east-1"]
            .into_iter()
            .map(|region| {
                let d = Deployment {
                    region,
                    ..Deployment::new(vec![oncall()])
                };
                eval(&module_context(&files, &d), name, &what)
                    .as_str()
                    .expect("a name")
                    .to_string()
            })
            .collect();
        assert_eq!(
            names.len(),
            2,
            "{what}: stacks in two regions of one account must get different role names: {names:?}"
        );
        for n in &names {
            assert!(
                n.len() <= 64,
                "{what}: {n} is longer than IAM's 64 characters"
            );
        }
        let prefixed = Deployment::new(vec![
            oncall(),
            ("iam_role_name_prefix", serde_json::json!("team-x")),
        ]);
        assert_eq!(
            eval(&module_context(&files, &prefixed), name, &what),
            serde_json::json!(format!("team-x-{role}"))
        );
    }
}

/// Endpoint host names take the partition's DNS suffix (amazonaws.com.cn in
/// aws-cn), never a hard-coded amazonaws.com; ARNs take the partition.
#[test]
fn no_hard_coded_partition_or_dns_suffix() {
    for f in module() {
        let source = std::fs::read_to_string(&f.path).expect("read");
        for (n, line) in source.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            assert!(
                !code.contains("arn:aws:"),
                "{}:{}: a hard-coded arn:aws: partition; use ${{local.partition}}",
                f.path.display(),
                n + 1
            );
            if let Some(i) = code.find(".amazonaws.com") {
                // Global service principals are "<service>.amazonaws.com" in
                // every partition; a region before the suffix makes it a
                // host name (or a regional principal), which needs the suffix
                // of the partition.
                assert!(
                    !code[..i].contains("${"),
                    "{}:{}: a regional host name with a hard-coded amazonaws.com; use ${{local.dns_suffix}}",
                    f.path.display(),
                    n + 1
                );
            }
        }
    }
}

#[test]
fn ecr_lifecycle_never_expires_a_tagged_image() {
    let files = module();
    let policy = block(&files, "resource", "aws_ecr_lifecycle_policy", "reflex");
    let ctx = module_context(&files, &Deployment::new(vec![oncall()]));
    let rendered = eval(
        &ctx,
        must_attr(policy.body(), "policy", "lifecycle"),
        "lifecycle",
    );
    let rendered: serde_json::Value =
        serde_json::from_str(rendered.as_str().expect("a JSON string")).expect("JSON");
    let rules = rendered["rules"].as_array().expect("rules");
    assert!(!rules.is_empty(), "the lifecycle policy has no rule");
    for r in rules {
        assert_eq!(
            r["selection"]["tagStatus"], "untagged",
            "a rule that may expire tagged images can expire the deployed one: {r}"
        );
    }
}

#[test]
fn egress_can_use_prefix_lists() {
    let files = module();
    let sg = block(&files, "resource", "aws_security_group", "daemon");
    let egress: Vec<&Body> = sg
        .body()
        .blocks()
        .filter(|b| b.identifier() == "dynamic" && labels(b) == ["egress"])
        .filter_map(|b| {
            b.body()
                .blocks()
                .find(|c| c.identifier() == "content")
                .map(|c| c.body())
        })
        .collect();
    let what = "aws_security_group.daemon egress";
    assert!(
        egress
            .iter()
            .any(|e| attr(e, "prefix_list_ids").map(text).as_deref()
                == Some("var.egress_prefix_list_ids")),
        "egress must allow var.egress_prefix_list_ids"
    );
    for e in &egress {
        assert_eq!(text(must_attr(e, "from_port", what)), "443");
        assert_eq!(text(must_attr(e, "to_port", what)), "443");
        assert_eq!(text(must_attr(e, "protocol", what)), "tcp");
    }
    assert!(
        sg.body().blocks().all(|b| b.identifier() != "egress"),
        "every egress rule is conditional on its input"
    );
}

/// Deregistration from target groups is granted only on the listed groups
/// and only while they carry the managed tag; without target groups there
/// is no target-group permission at all.
#[test]
fn target_group_permissions_are_listed_and_tag_conditioned() {
    let files = module();
    let topic = serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall");
    let tg = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123abcd";
    let without = Deployment::new(vec![("operator_topic_arn", topic.clone())]);
    let tuples = evaluated_policy(&files, "daemon", &module_context(&files, &without));
    assert!(
        tuples
            .iter()
            .all(|(_, action, _, _)| !action.contains("TargetGroups")
                && !action.contains("TargetHealth")
                && !action.contains("DeregisterTargets")),
        "no target_group_arns, no target-group permissions: {tuples:?}"
    );
    let with = Deployment::new(vec![
        ("operator_topic_arn", topic),
        ("target_group_arns", serde_json::json!([tg])),
    ]);
    let tuples = evaluated_policy(&files, "daemon", &module_context(&files, &with));
    let deregister: Vec<_> = tuples
        .iter()
        .filter(|(_, action, _, _)| action == "elasticloadbalancing:DeregisterTargets")
        .collect();
    assert!(!deregister.is_empty(), "{tuples:?}");
    for (effect, _, resource, conditions) in deregister {
        assert_eq!(effect, "Allow");
        assert_eq!(resource, tg);
        assert!(
            conditions
                .iter()
                .any(|(test, key, values)| test == "StringEquals"
                    && key == "aws:ResourceTag/reflex:managed"
                    && values == &["true".to_string()]),
            "DeregisterTargets must be conditioned on the managed tag: {conditions:?}"
        );
    }
}

/// The Auto Scaling writes are granted on the listed groups only, and only
/// while the group carries the managed tag (`autoscaling:ResourceTag`);
/// without groups there is no Auto Scaling permission at all.
#[test]
fn auto_scaling_permissions_are_listed_and_tag_conditioned() {
    let files = module();
    let topic = serde_json::json!("arn:aws:sns:eu-west-1:123456789012:oncall");
    let without = Deployment::new(vec![("operator_topic_arn", topic.clone())]);
    let tuples = evaluated_policy(&files, "daemon", &module_context(&files, &without));
    assert!(
        tuples
            .iter()
            .all(|(_, action, _, _)| !action.starts_with("autoscaling:")),
        "no auto_scaling_group_names, no Auto Scaling permissions: {tuples:?}"
    );
    let with = Deployment::new(vec![
        ("operator_topic_arn", topic),
        ("auto_scaling_group_names", serde_json::json!(["web-asg"])),
    ]);
    let tuples = evaluated_policy(&files, "daemon", &module_context(&files, &with));
    for write in [
        "autoscaling:SetInstanceHealth",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ] {
        let granted: Vec<_> = tuples
            .iter()
            .filter(|(_, action, _, _)| action == write)
            .collect();
        assert!(!granted.is_empty(), "{write} is not granted: {tuples:?}");
        for (effect, _, resource, conditions) in granted {
            assert_eq!(effect, "Allow");
            assert_eq!(
                resource,
                "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/web-asg"
            );
            assert!(
                conditions
                    .iter()
                    .any(|(test, key, values)| test == "StringEquals"
                        && key == "autoscaling:ResourceTag/reflex:managed"
                        && values == &["true".to_string()]),
                "{write} must be conditioned on the group's managed tag: {conditions:?}"
            );
        }
    }
    for read in [
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeAutoScalingGroups",
    ] {
        assert!(
            tuples
                .iter()
                .any(|(effect, action, resource, _)| effect == "Allow"
                    && action == read
                    && resource == "*"),
            "{read} is not granted on *: {tuples:?}"
        );
    }
}
