//! The offline subcommands, run as the real binary: exit codes, output
//! shapes and error lines are contracts scripts and CI rely on.
//!
//! Exit codes: 0 success; 1 rules invalid (`check`) or a test failed
//! (`test`); 2 usage, config or rule-load error; 3 the input is poison
//! (`explain`).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use support::{code, describe, one_json, repo, run_reflex, stderr, stdout};

fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

fn reflex_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_reflex(args, stdin)
}

fn reflex(args: &[&str]) -> Output {
    run_reflex(args, None)
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

// ------------------------------------------------------------------ check ---

#[test]
fn check_accepts_the_example_rules() {
    let out = reflex(&["check", "rules"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("ok: 6 rules in 6 files, version "),
        "{text}"
    );
    // `rules` is the default.
    let default = reflex(&["check"]);
    assert_eq!(code(&default), 0, "{}", describe(&default));
    assert_eq!(stdout(&default), text);
}

#[test]
fn check_reports_every_problem_in_every_file_with_its_location() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A TOML syntax error: the whole file is one problem.
    let syntax = dir.path().join("a-syntax.toml");
    std::fs::write(&syntax, "[[rule]\nname = \"x\"\n").expect("write");
    // Several independent mistakes in one file, each its own line.
    let many = dir.path().join("b-many.toml");
    std::fs::write(
        &many,
        r#"[[rule]]
name = "typo-in-field"
enabled = true
bogus = 1
[rule.match]
alarm_name = "x"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:t"

[[rule]]
name = "bad-values"
[rule.match]
new_state = "ALRAM"
[[rule.actions]]
type = "terminate_out_of_service"
max_percent = 150
[rule.limits]
rate = "0/hour"

[[rule]]
name = "bad-template"
[rule.match]
alarm_name = "y"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
subject = "{{ alarm.nmae }}"
"#,
    )
    .expect("write");
    let out = reflex(&["check", path_str(dir.path())]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    // Each line is `file:line:col: message`.
    let mut located = Vec::new();
    for line in &lines {
        let (file, rest) = line
            .split_once(".toml:")
            .unwrap_or_else(|| panic!("not file:line:col: message: {line}"));
        let mut parts = rest.splitn(3, ':');
        let l: usize = parts.next().and_then(|n| n.parse().ok()).expect("line");
        let c: usize = parts.next().and_then(|n| n.parse().ok()).expect("column");
        let message = parts.next().expect("message");
        assert!(
            message.starts_with(' ') && message.trim().len() > 3,
            "{line}"
        );
        located.push((format!("{file}.toml"), l, c, message.trim().to_string()));
    }
    let find = |file: &Path, line: usize, needle: &str| {
        located
            .iter()
            .any(|(f, l, _, m)| Path::new(f) == file && *l == line && m.contains(needle))
    };
    assert!(
        find(&syntax, 1, ""),
        "syntax error not at a-syntax.toml:1: {lines:#?}"
    );
    assert!(find(&many, 4, "bogus"), "{lines:#?}");
    assert!(find(&many, 14, "ALRAM"), "{lines:#?}");
    assert!(find(&many, 17, "max_percent"), "{lines:#?}");
    assert!(find(&many, 19, "at least 1"), "{lines:#?}");
    assert!(find(&many, 28, "alarm.nmae"), "{lines:#?}");
    assert!(located.len() >= 6, "{lines:#?}");
    assert!(
        stderr(&out).contains(&format!("{} problem(s) found", located.len())),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_of_a_missing_path_is_a_usage_error() {
    let out = reflex(&["check", "no/such/dir"]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        stderr(&out).starts_with("no/such/dir:1:1: "),
        "{}",
        describe(&out)
    );
}

// ---------------------------------------------------------------- explain ---

const EVENT_KEYS: &[&str] = &[
    "alarm_name",
    "alarm_arn",
    "account_id",
    "region",
    "new_state",
    "old_state",
    "state_change_time",
    "kind",
    "namespace",
    "metric_name",
    "dimensions",
    "threshold",
    "description",
    "format",
    "sns_message_id",
    "topic_arn",
];

fn explain(file: &str) -> (Output, Value) {
    let path = fixture(file);
    let out = reflex(&[
        "explain",
        "--json",
        "--now",
        "event",
        "--rules",
        "rules",
        path_str(&path),
    ]);
    let json = one_json(&out);
    (out, json)
}

#[test]
fn explain_json_has_the_documented_shape() {
    let (out, v) = explain("sns/elb-unhealthy-hosts.json");
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(
        keys(&v),
        BTreeSet::from(["outcome", "event", "matches", "skipped"])
    );
    assert_eq!(v["outcome"], "decoded");
    let e = &v["event"];
    for key in EVENT_KEYS {
        assert!(e.get(key).is_some(), "event lacks {key}: {e}");
    }
    assert_eq!(e["alarm_name"], "web-unhealthy-hosts");
    assert_eq!(
        e["alarm_arn"],
        "arn:aws:cloudwatch:eu-south-1:123456789012:alarm:web-unhealthy-hosts"
    );
    assert_eq!(e["account_id"], "123456789012");
    assert_eq!(e["region"], "eu-south-1");
    assert_eq!(e["new_state"], "ALARM");
    assert_eq!(e["old_state"], "OK");
    assert_eq!(e["state_change_time"], "2026-01-12T16:30:42.236Z");
    assert_eq!(e["namespace"], "AWS/ELB");
    assert_eq!(e["metric_name"], "UnHealthyHostCount");
    assert_eq!(e["dimensions"], json!({"LoadBalancerName": "web"}));
    assert_eq!(e["threshold"], 1.0);
    assert_eq!(e["description"], Value::Null);
    assert_eq!(e["format"], "sns");
    assert_eq!(e["sns_message_id"], "123af076-b1f0-42c0-89ee-ff89935c1296");
    assert_eq!(
        e["topic_arn"],
        "arn:aws:sns:eu-south-1:123456789012:reflex-alarms"
    );

    let matches = v["matches"].as_array().expect("matches");
    let names: Vec<&str> = matches
        .iter()
        .map(|m| m["rule"].as_str().expect("rule"))
        .collect();
    assert_eq!(names, ["elb-terminate-out-of-service", "notify-any-alarm"]);
    let m = &matches[0];
    assert_eq!(keys(m), BTreeSet::from(["rule", "dry_run", "actions"]));
    assert_eq!(m["dry_run"], false);
    assert_eq!(
        m["actions"],
        json!([{
            "type": "terminate_out_of_service",
            "load_balancer": "web",
            "max_instances": 1,
            "max_percent": 25,
            "min_in_service": 2,
            "max_unhealthy": "50%",
            "min_instance_age": "10m",
            "require_tag": {"key": "reflex:managed", "value": "true"},
            "confirm_after": "30s",
            "escalate_topic_arn": null,
        }])
    );
    assert_eq!(matches[1]["actions"][0]["type"], "notify");
    assert_eq!(
        v["skipped"],
        json!([{"rule": "elb-deregister-out-of-service", "reason": "disabled"}])
    );
}

#[test]
fn explain_json_nulls_what_the_alarm_lacks() {
    let (out, v) = explain("raw/composite.json");
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let e = &v["event"];
    assert_eq!(e["kind"], "composite");
    for key in [
        "namespace",
        "metric_name",
        "threshold",
        "sns_message_id",
        "topic_arn",
    ] {
        assert_eq!(e[key], Value::Null, "{key} of a raw composite alarm: {e}");
    }
    assert_eq!(e["dimensions"], json!({}));
    assert_eq!(e["format"], "raw");
    assert_eq!(e["region"], "eu-south-1");

    let (out, v) = explain("eventbridge/anomaly-detection.json");
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(v["event"]["format"], "eventbridge");
    assert_eq!(v["event"]["kind"], "anomaly_detection");
    assert_eq!(v["event"]["sns_message_id"], Value::Null);
    assert_eq!(v["matches"][0]["rule"], "notify-any-alarm");
}

#[test]
fn explain_reads_stdin_and_defaults_to_the_clock() {
    let body = std::fs::read(fixture("sns/elb-unhealthy-hosts.json")).expect("fixture");
    // Evaluated now, long after the alarm: every enabled rule is stale.
    let out = reflex_with_stdin(&["explain", "--json", "--rules", "rules", "-"], Some(&body));
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let v = one_json(&out);
    assert_eq!(v["matches"], json!([]));
    let reasons: Vec<&str> = v["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["reason"].as_str().expect("reason"))
        .collect();
    assert!(reasons.contains(&"disabled"), "{reasons:?}");
    assert!(
        reasons.iter().filter(|r| r.starts_with("stale: ")).count() == 2,
        "{reasons:?}"
    );
    // Human output names the event and the rules.
    let out = reflex_with_stdin(
        &["explain", "--now", "event", "--rules", "rules"],
        Some(&body),
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("web-unhealthy-hosts"), "{text}");
    assert!(
        text.contains("match elb-terminate-out-of-service"),
        "{text}"
    );
}

#[test]
fn explain_of_poison_exits_3_with_the_code() {
    for (file, want) in [
        ("poison/not_json--xml.json", "not_json"),
        (
            "poison/sns_not_notification--subscription-confirmation.json",
            "sns_not_notification",
        ),
        (
            "poison/missing_field--sns-no-new-state.json",
            "missing_field",
        ),
        (
            "poison/invalid_utf8--latin1-alarm-name.json",
            "invalid_utf8",
        ),
        ("poison/empty_body--empty.json", "empty_body"),
    ] {
        let (out, v) = explain(file);
        assert_eq!(code(&out), 3, "{file}: {}", describe(&out));
        assert_eq!(
            keys(&v),
            BTreeSet::from(["outcome", "code", "reason"]),
            "{v}"
        );
        assert_eq!(v["outcome"], "poison");
        assert_eq!(v["code"], want, "{file}");
        assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    }
    // Human output, same exit code.
    let out = reflex(&[
        "explain",
        "--rules",
        "rules",
        path_str(&fixture("poison/not_json--plain-text.json")),
    ]);
    assert_eq!(code(&out), 3, "{}", describe(&out));
    assert!(
        stdout(&out).starts_with("poison: not_json"),
        "{}",
        describe(&out)
    );
}

#[test]
fn explain_with_bad_rules_is_a_usage_error() {
    let body = path_str(&fixture("sns/elb-unhealthy-hosts.json")).to_string();
    let out = reflex(&["explain", "--json", "--rules", "no/such/rules", &body]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("r.toml"), "[[rule]]\nname = \"x\"\n").expect("write");
    let out = reflex(&["explain", "--json", "--rules", path_str(dir.path()), &body]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(stderr(&out).contains("r.toml:"), "{}", describe(&out));

    let out = reflex(&["explain", "--now", "teatime", "--rules", "rules", &body]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
}

// ----------------------------------------------------------------- replay ---

/// A fixture as one JSON line (fixtures are pretty-printed).
fn as_line(rel: &str) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(fixture(rel)).expect("fixture"))
        .expect("JSON fixture");
    serde_json::to_string(&v).expect("serialize")
}

#[test]
fn replay_summarises_a_mixed_history() {
    let mut lines = vec![
        // terminate + notify
        as_line("sns/elb-unhealthy-hosts.json"),
        as_line("raw/elb-unhealthy-hosts.json"),
        // reboot + notify
        as_line("sns/ec2-status-check-failed.json"),
        // notify only
        as_line("eventbridge/composite.json"),
        // no rule
        as_line("sns/elb-recovered-ok.json"),
        as_line("sns/insufficient-data.json"),
        // poison
        "ALARM: web-unhealthy-hosts in EU (Milan)".to_string(),
        r#"{"AlarmName":"web","NewStateValue":"#.to_string(),
        "[1, 2, 3]".to_string(),
        as_line("poison/sns_not_notification--subscription-confirmation.json"),
        as_line("poison/invalid_field--unknown-state.json"),
    ];
    // Blank lines are not messages.
    lines.insert(3, String::new());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");

    let out = reflex(&["replay", "--json", "--rules", "rules", path_str(&file)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let v = one_json(&out);
    for key in ["total", "decoded", "poison", "matched", "by_rule"] {
        assert!(v.get(key).is_some(), "summary lacks {key}: {v}");
    }
    assert_eq!(v["total"], 11);
    // The rate is on stderr, so stdout stays one JSON object.
    assert!(
        stderr(&out).contains("replayed 11 messages in "),
        "{}",
        describe(&out)
    );
    assert_eq!(v["decoded"], 6);
    assert_eq!(
        v["poison"],
        json!({
            "not_json": 2,
            "unrecognised_shape": 1,
            "sns_not_notification": 1,
            "invalid_field": 1,
        })
    );
    assert_eq!(v["matched"], 4);
    assert_eq!(
        v["by_rule"],
        json!({
            "elb-terminate-out-of-service": 2,
            "ec2-reboot-on-system-check": 1,
            "notify-any-alarm": 4,
        })
    );

    // The same from stdin, as text.
    let out = reflex_with_stdin(
        &["replay", "--rules", "rules", "-"],
        Some(std::fs::read(&file).expect("read").as_slice()),
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("total    11\ndecoded  6\npoison   5\n"),
        "{text}"
    );
}

#[test]
fn replay_of_a_missing_file_is_a_usage_error() {
    let out = reflex(&["replay", "--rules", "rules", "no/such/history.jsonl"]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
}

// ------------------------------------------------------------------- test ---

fn case_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let doc: toml::Table = std::fs::read_to_string(&p)
                .expect("read")
                .parse()
                .expect("TOML");
            doc["case"].as_array().expect("[[case]]").len()
        })
        .sum()
}

#[test]
fn rule_tests_pass() {
    let out = reflex(&["test", "--rules", "rules", "rule-tests"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let cases = case_count(&repo().join("rule-tests"));
    assert!(cases >= 15, "only {cases} rule-test cases");
    let text = stdout(&out);
    assert_eq!(
        text.lines().last(),
        Some(format!("{cases} passed, 0 failed").as_str()),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok   ")).count(),
        cases
    );
}

#[test]
fn a_failing_rule_test_exits_1_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = path_str(&fixture("sns/elb-unhealthy-hosts.json")).to_string();
    std::fs::write(
        dir.path().join("wrong.toml"),
        format!(
            r#"[[case]]
name = "right"
body_file = {body:?}
now = "event"
[case.expect]
matched = ["elb-terminate-out-of-service", "notify-any-alarm"]

[[case]]
name = "wrong load balancer"
body_file = {body:?}
[case.expect]
matched = ["elb-terminate-out-of-service", "notify-any-alarm"]
[[case.expect.actions]]
rule = "elb-terminate-out-of-service"
load_balancer = "api"
[[case.expect.actions]]
rule = "notify-any-alarm"

[[case]]
name = "expects poison that is not"
body_file = {body:?}
[case.expect]
poison = "not_json"
"#
        ),
    )
    .expect("write");
    let out = reflex(&["test", "--rules", "rules", path_str(dir.path())]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("ok   ") && text.contains("::right"), "{text}");
    assert!(
        text.contains("FAIL ") && text.contains("::wrong load balancer"),
        "{text}"
    );
    assert!(
        text.contains(r#"`load_balancer` is "web", expected "api""#),
        "{text}"
    );
    assert!(text.contains("expected poison \"not_json\""), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 2 failed"), "{text}");
}

#[test]
fn rule_tests_with_broken_rules_are_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("r.toml"), "[[rule]]\nname = 7\n").expect("write");
    let out = reflex(&["test", "--rules", path_str(dir.path()), "rule-tests"]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
}

// ----------------------------------------------------------------- schema ---

#[test]
fn schema_is_json_and_matches_the_shipped_file() {
    let out = reflex(&["schema"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert_eq!(printed["title"], "reflex rule file");
    let shipped_path = repo().join("schema/reflex-rules.schema.json");
    let shipped_text = std::fs::read_to_string(&shipped_path).expect("shipped schema");
    let shipped: Value = serde_json::from_str(&shipped_text).expect("shipped schema is JSON");
    assert!(
        printed == shipped,
        "schema/reflex-rules.schema.json is stale; regenerate it:\n  \
         cargo run -- schema > schema/reflex-rules.schema.json"
    );
    assert_eq!(
        stdout(&out),
        shipped_text,
        "regenerate with `reflex schema`"
    );
}

// ------------------------------------------------------------------- help ---

/// The subcommands `reflex --help` lists (whatever they are).
fn subcommands() -> Vec<String> {
    let out = reflex(&["--help"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = stdout(&out);
    let section = text
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Commands section:\n{text}"));
    section
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

#[test]
fn every_subcommand_has_help() {
    let commands = subcommands();
    for expected in ["check", "explain", "replay", "test", "schema", "iam-policy"] {
        assert!(
            commands.iter().any(|c| c == expected),
            "`reflex --help` does not list {expected}: {commands:?}"
        );
    }
    for command in &commands {
        let out = reflex(&[command, "--help"]);
        assert_eq!(code(&out), 0, "{command} --help: {}", describe(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!("Usage: reflex {command}")),
            "{command} --help:\n{text}"
        );
    }
}

#[test]
fn unknown_arguments_are_usage_errors() {
    for args in [
        &["check", "--bogus"][..],
        &["frobnicate"],
        &["explain", "--json", "a", "b"],
    ] {
        let out = reflex(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", describe(&out));
    }
}

/// `reflex run` that cannot start says why once and exits 2: in text, each
/// located problem is a plain `file:line:col: message` line, then one
/// `error:` line; with `--log-format json`, stderr is JSON lines only (one
/// event per problem, one for the failure). Nothing reaches AWS.
#[test]
fn run_reports_a_start_up_failure_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("reflex.toml");
    std::fs::write(
        &config,
        "queue_url = \"q\"\ndead_letter_queue_url = \"d\"\n[receive]\npolers = 2\n",
    )
    .expect("write config");
    let config = config.to_str().expect("UTF-8 path");
    let located = format!("{config}:4:1: unknown field `polers`");

    let out = reflex(&["run", "--config", config]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert_eq!(stdout(&out), "", "stdout is the audit trail's");
    let text = stderr(&out);
    assert_eq!(text.matches("unknown field `polers`").count(), 1, "{text}");
    assert!(text.lines().any(|l| l.starts_with(&located)), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("error: 1 problem(s) in the configuration")),
        "{text}"
    );

    let out = reflex(&["--log-format", "json", "run", "--config", config]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let events: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let problems = events
        .iter()
        .filter(|e| {
            e["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with(&located))
        })
        .count();
    assert_eq!(problems, 1, "{events:#?}");
    assert_eq!(
        events.iter().filter(|e| e["level"] == "ERROR").count(),
        2,
        "one event per problem, one for the failure: {events:#?}"
    );

    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("r.toml"), "[[rule]]\nname = \"x\"\nbogus = 1\n").expect("rule");
    let rules = rules.to_str().expect("UTF-8 path");
    let out = reflex(&[
        "run",
        "--queue-url",
        "q",
        "--dlq-url",
        "d",
        "--rules",
        rules,
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let text = stderr(&out);
    assert_eq!(text.matches("unknown field `bogus`").count(), 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{rules}/r.toml:3:1: unknown field `bogus`"))),
        "{text}"
    );
}

/// With `--config`, explain shows the remediation budget and the targets
/// of the matched actions it counts against.
#[test]
fn explain_shows_the_remediation_budget_from_the_config() {
    let path = fixture("sns/elb-unhealthy-hosts.json");
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reflex.example.toml");
    let out = reflex(&[
        "explain",
        "--json",
        "--now",
        "event",
        "--rules",
        "rules",
        "--config",
        path_str(&config),
        path_str(&path),
    ]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let v = one_json(&out);
    let budget = &v["remediation_budget"];
    assert_eq!(budget["budget"], "3/day", "{v}");
    let targets: Vec<&str> = budget["targets"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(targets.iter().any(|t| t.starts_with("elb:")), "{budget}");

    let out = reflex(&[
        "explain",
        "--now",
        "event",
        "--rules",
        "rules",
        "--config",
        path_str(&config),
        path_str(&path),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("remediation budget: 3/day per target"),
        "{text}"
    );
    assert!(text.contains("counts against elb:"), "{text}");
}
