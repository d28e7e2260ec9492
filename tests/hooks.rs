//! Checking rules where users edit them. The pre-commit hooks in
//! `.pre-commit-hooks.yaml` do what a rules repository relies on: each
//! hook's `entry` and `args`, run with the reflex built here in place of the
//! one pre-commit builds, pass on this repository's `rules/` and
//! `rule-tests/`, and fail on a broken rule or a failing rule test. The hooks are run directly, as pre-commit would
//! with `pass_filenames: false`; nothing is installed and nothing goes over
//! the network. The CI example (`examples/github-actions/rules.yml`) runs the
//! same two commands, and applies only after them, only on the default
//! branch.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regex::Regex;
use serde::Deserialize;

/// One entry of `.pre-commit-hooks.yaml`: the keys the file uses, and no
/// others, so a misspelt key (which pre-commit would only warn about) fails.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hook {
    id: String,
    name: String,
    description: String,
    entry: String,
    #[serde(default)]
    args: Vec<String>,
    language: String,
    files: String,
    pass_filenames: bool,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn hooks() -> Vec<Hook> {
    let path = repo().join(".pre-commit-hooks.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a list of hooks: {e}", path.display()))
}

fn hook(id: &str) -> Hook {
    hooks()
        .into_iter()
        .find(|h| h.id == id)
        .unwrap_or_else(|| panic!(".pre-commit-hooks.yaml has no hook `{id}`"))
}

/// Runs a hook as pre-commit does: the entry split into words, then the
/// args, in the repository being checked (`dir`); no file names, since the
/// hooks check the whole set. The entry's `reflex` is the binary built here.
fn run_hook(hook: &Hook, dir: &Path) -> Output {
    let mut words = hook.entry.split_whitespace();
    assert_eq!(
        words.next(),
        Some("reflex"),
        "hook {}: the entry must run reflex, the binary `language: rust` installs",
        hook.id
    );
    Command::new(env!("CARGO_BIN_EXE_reflex"))
        .args(words)
        .args(&hook.args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("hook {}: cannot run reflex: {e}", hook.id))
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The rules repositories this repository holds: itself.
fn rules_repositories() -> [PathBuf; 1] {
    [repo().to_path_buf()]
}

#[test]
fn hooks_file_declares_check_and_test() {
    let hooks = hooks();
    let ids: Vec<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["reflex-check", "reflex-test"]);
    for h in &hooks {
        assert_eq!(
            h.language, "rust",
            "hook {}: pre-commit builds reflex from this repository (cargo install --path .)",
            h.id
        );
        assert!(
            !h.pass_filenames,
            "hook {}: must check the whole rule set, not the staged files",
            h.id
        );
        assert!(!h.name.is_empty() && !h.description.is_empty());
    }

    // Which staged files make each hook run (pre-commit searches `files`
    // in each path, as Regex::is_match does).
    let runs_on = |h: &Hook, path: &str| {
        Regex::new(&h.files)
            .unwrap_or_else(|e| panic!("hook {}: files is not a regex: {e}", h.id))
            .is_match(path)
    };
    let check = hook("reflex-check");
    let test = hook("reflex-test");
    for path in [
        "rules/web.toml",
        "rules/team/db.toml",
        "rule-tests/web.toml",
    ] {
        assert!(runs_on(&check, path), "reflex-check must run for {path}");
        assert!(runs_on(&test, path), "reflex-test must run for {path}");
    }
    assert!(
        runs_on(&test, "tests/fixtures/sns/elb-unhealthy-hosts.json"),
        "reflex-test must run when a test's message body changes"
    );
    for path in ["README.md", "main.tf"] {
        assert!(
            !runs_on(&check, path),
            "reflex-check must not run for {path}"
        );
        assert!(!runs_on(&test, path), "reflex-test must not run for {path}");
    }
}

#[test]
fn reflex_check_hook_passes_on_the_rules_repositories() {
    let check = hook("reflex-check");
    for dir in rules_repositories() {
        let out = run_hook(&check, &dir);
        let text = printed(&out);
        assert!(
            out.status.success(),
            "reflex-check failed in {}:\n{text}",
            dir.display()
        );
        assert!(
            text.contains("ok: ") && text.contains(" rules in "),
            "reflex-check in {} printed no summary:\n{text}",
            dir.display()
        );
    }
}

#[test]
fn reflex_test_hook_passes_on_the_rules_repositories() {
    let test = hook("reflex-test");
    for dir in rules_repositories() {
        let out = run_hook(&test, &dir);
        let text = printed(&out);
        assert!(
            out.status.success(),
            "reflex-test failed in {}:\n{text}",
            dir.display()
        );
        let summary = text
            .lines()
            .find(|l| l.ends_with(" passed, 0 failed"))
            .unwrap_or_else(|| {
                panic!(
                    "reflex-test in {} printed no summary:\n{text}",
                    dir.display()
                )
            });
        assert_ne!(
            summary,
            "0 passed, 0 failed",
            "reflex-test in {} ran no test case",
            dir.display()
        );
    }
}

/// A scratch rules repository: a copy of this repository's rules, and
/// whatever the test adds.
fn scratch_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for sub in ["rules", "rule-tests"] {
        std::fs::create_dir(dir.path().join(sub)).expect("create a directory");
    }
    for entry in std::fs::read_dir(repo().join("rules")).expect("the rules directory") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().expect("a file name");
        std::fs::copy(&path, dir.path().join("rules").join(name)).expect("copy a file");
    }
    dir
}

#[test]
fn reflex_check_hook_fails_on_a_broken_rule() {
    let repo = scratch_repository();
    std::fs::write(
        repo.path().join("rules/broken.toml"),
        "[[rule]]\nname = \"broken\"\nunknown_field = 1\n",
    )
    .expect("write a rule file");
    let out = run_hook(&hook("reflex-check"), repo.path());
    let text = printed(&out);
    assert!(
        !out.status.success(),
        "reflex-check passed a broken rule:\n{text}"
    );
    assert!(
        text.contains("rules/broken.toml:3:1:"),
        "reflex-check must name the file, line and column:\n{text}"
    );
}

#[test]
fn reflex_test_hook_fails_on_a_failing_rule_test() {
    let repo = scratch_repository();
    // The ELB rule matches every `*-unhealthy-hosts` alarm of a classic ELB
    // (and notify-any-alarm every alarm of the account); this case claims
    // that nothing matches.
    std::fs::write(
        repo.path().join("rule-tests/wrong.toml"),
        r#"[[case]]
name = "a wrong expectation"
body = '''
{"AlarmName":"db-unhealthy-hosts","AWSAccountId":"123456789012",
 "NewStateValue":"ALARM","NewStateReason":"Threshold Crossed","StateChangeTime":"2026-01-12T16:30:42.236+0000",
 "Region":"EU (Ireland)","AlarmArn":"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:db-unhealthy-hosts","OldStateValue":"OK",
 "Trigger":{"MetricName":"UnHealthyHostCount","Namespace":"AWS/ELB","Statistic":"MAXIMUM",
  "Dimensions":[{"value":"db","name":"LoadBalancerName"}],"Period":60,"EvaluationPeriods":3,
  "ComparisonOperator":"GreaterThanThreshold","Threshold":0.0}}
'''
[case.expect]
matched = []
"#,
    )
    .expect("write a rule test");
    let out = run_hook(&hook("reflex-test"), repo.path());
    let text = printed(&out);
    assert!(
        !out.status.success(),
        "reflex-test passed a failing case:\n{text}"
    );
    assert!(
        text.contains("FAIL rule-tests/wrong.toml::a wrong expectation")
            && text.contains(" 1 failed"),
        "reflex-test must name the failing case:\n{text}"
    );
}

// ---------------------------------------------------------------------------
// The GitHub Actions example

fn workflow() -> serde_norway::Value {
    let path = repo().join("examples/github-actions/rules.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// The `run:` commands of a job's steps, in order.
fn runs(workflow: &serde_norway::Value, job: &str) -> Vec<String> {
    workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job} has no steps"))
        .iter()
        .filter_map(|step| step["run"].as_str())
        .map(|r| r.trim().to_string())
        .collect()
}

fn str_at<'a>(v: &'a serde_norway::Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

#[test]
fn ci_example_checks_and_tests_the_rules_before_an_apply_on_the_default_branch() {
    let wf = workflow();

    // The check job runs exactly what the hooks run.
    let check_runs = runs(&wf, "check");
    for id in ["reflex-check", "reflex-test"] {
        let h = hook(id);
        let command = format!("{} {}", h.entry, h.args.join(" "));
        assert!(
            check_runs.contains(&command),
            "the CI example's check job must run `{command}` (hook {id}); it runs {check_runs:?}"
        );
    }
    assert!(
        check_runs
            .iter()
            .any(|r| r.starts_with("cargo install --locked") && r.contains("$REFLEX_REF")),
        "the CI example must install the deployed reflex version, with its Cargo.lock: {check_runs:?}"
    );

    // Only the apply job applies, after the checks, on the default branch.
    let jobs = wf["jobs"].as_mapping().expect("jobs");
    for (name, _) in jobs {
        let name = str_at(name, "a job name");
        let applies = runs(&wf, name)
            .iter()
            .any(|r| r.starts_with("terraform apply"));
        assert_eq!(
            applies,
            name == "apply",
            "job {name}: only the apply job may run terraform apply"
        );
    }
    let apply = &wf["jobs"]["apply"];
    assert_eq!(str_at(&apply["needs"], "apply.needs"), "check");
    let condition = str_at(&apply["if"], "apply.if");
    assert!(
        condition.contains("github.event_name == 'push'")
            && condition.contains("github.event.repository.default_branch"),
        "apply must run only for a push to the default branch: {condition}"
    );
    assert_eq!(
        runs(&wf, "apply").last().map(String::as_str),
        Some("terraform apply tfplan"),
        "apply must apply the plan it just made"
    );

    // AWS credentials come from OIDC, and only the jobs that need them
    // may ask for a token.
    assert_eq!(
        wf["permissions"],
        serde_norway::from_str::<serde_norway::Value>("contents: read").expect("YAML"),
        "the workflow's default permissions must be read-only"
    );
    for job in ["plan", "apply"] {
        assert_eq!(
            str_at(&wf["jobs"][job]["permissions"]["id-token"], "id-token"),
            "write",
            "job {job} assumes its role through OIDC"
        );
        let steps = wf["jobs"][job]["steps"].as_sequence().expect("steps");
        assert!(
            steps.iter().any(|s| s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
                && s["with"]["role-to-assume"].as_str().is_some()),
            "job {job} must assume a role (aws-actions/configure-aws-credentials)"
        );
    }
    assert!(
        wf["jobs"]["check"]["permissions"].is_null(),
        "the check job needs no AWS token"
    );
}
