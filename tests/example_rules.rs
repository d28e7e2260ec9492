//! Every rule file in `rules/` loads and validates, holds the rules it is
//! documented to hold, and is exercised by `rule-tests/`. Users copy these
//! files, so the safety guards they show are pinned here too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reflex::rules::{load_paths, Action, RuleSet};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load() -> RuleSet {
    load_paths(&[repo().join("rules")]).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("rules/ does not load:\n{}", lines.join("\n"))
    })
}

/// The rules each example file must define, by file name.
const EXPECTED: &[(&str, &[&str])] = &[
    ("alb-replace-through-asg.toml", &["alb-replace-through-asg"]),
    (
        "ec2-reboot-on-system-check.toml",
        &["ec2-reboot-on-system-check"],
    ),
    (
        "elb-deregister-out-of-service.toml",
        &["elb-deregister-out-of-service"],
    ),
    (
        "elb-terminate-out-of-service.toml",
        &["elb-terminate-out-of-service"],
    ),
    ("notify-any-alarm.toml", &["notify-any-alarm"]),
    (
        "ssm-restart-app-on-process-down.toml",
        &["ssm-restart-app-on-process-down"],
    ),
];

#[test]
fn every_rule_file_loads_with_the_expected_rules() {
    let set = load();
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in set.rules() {
        let file = rule
            .file
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        by_file.entry(file).or_default().push(rule.name.clone());
    }
    let want: BTreeMap<String, Vec<String>> = EXPECTED
        .iter()
        .map(|(f, names)| (f.to_string(), names.iter().map(|n| n.to_string()).collect()))
        .collect();
    assert_eq!(by_file, want);

    // Every *.toml in rules/ is accounted for (an empty file would load no
    // rule and slip past the map above).
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo().join("rules"))
        .expect("list rules/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    let listed: BTreeSet<String> = EXPECTED.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn each_file_loads_on_its_own() {
    for (file, names) in EXPECTED {
        let set = load_paths(&[repo().join("rules").join(file)])
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let got: Vec<&str> = set.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(got, *names, "{file}");
    }
}

#[test]
fn elb_terminate_rule_has_the_documented_guards() {
    let set = load();
    let rule = set.get("elb-terminate-out-of-service").expect("rule");
    assert!(rule.enabled && !rule.dry_run);
    assert!(rule.matcher.guarantees_dimension("LoadBalancerName"));
    let [Action::TerminateOutOfService(a)] = rule.actions.as_slice() else {
        panic!(
            "expected one terminate_out_of_service action: {:?}",
            rule.actions
        );
    };
    assert_eq!(a.max_instances, 1);
    assert_eq!(a.max_percent, 25);
    assert_eq!(a.min_in_service, 2);
    assert_eq!(a.min_instance_age, Duration::from_secs(600));
    assert_eq!(a.confirm_after, Some(Duration::from_secs(30)));
    let tag = a.require_tag.as_ref().expect("require_tag");
    assert_eq!(
        (tag.key.as_str(), tag.value.as_deref()),
        ("reflex:managed", Some("true"))
    );
    assert_eq!(rule.limits.cooldown, Some(Duration::from_secs(600)));
    assert_eq!(
        rule.limits.rate.map(|r| r.to_string()),
        Some("5/hour".into())
    );
    assert_eq!(rule.limits.max_event_age, Some(Duration::from_secs(900)));
}

#[test]
fn ec2_reboot_rule_reboots_the_alarms_instance() {
    let set = load();
    let rule = set.get("ec2-reboot-on-system-check").expect("rule");
    assert!(rule.matcher.guarantees_dimension("InstanceId"));
    let [Action::RebootInstance(a)] = rule.actions.as_slice() else {
        panic!("expected one reboot_instance action: {:?}", rule.actions);
    };
    assert!(a.require_tag.is_some());
}

#[test]
fn notify_rule_publishes_to_the_documented_topic() {
    let set = load();
    let rule = set.get("notify-any-alarm").expect("rule");
    let [Action::Notify(n)] = rule.actions.as_slice() else {
        panic!("expected one notify action: {:?}", rule.actions);
    };
    assert_eq!(
        n.topic_arn.literal(),
        Some("arn:aws:sns:us-east-1:123456789012:reflex-notifications")
    );
}

/// What users copy should be safe to copy: every destructive action requires
/// a tag, and its rule limits how often and how late it acts.
#[test]
fn destructive_example_rules_are_guarded() {
    let set = load();
    let mut destructive = 0;
    for rule in set.rules() {
        for action in &rule.actions {
            if !action.kind().is_destructive() {
                continue;
            }
            destructive += 1;
            let tag = match action {
                Action::TerminateOutOfService(a) | Action::DeregisterOutOfService(a) => {
                    &a.require_tag
                }
                Action::RebootInstance(a)
                | Action::StopInstance(a)
                | Action::TerminateInstance(a) => &a.require_tag,
                Action::RemediatePool(a) => &a.require_tag,
                Action::RunCommand(a) => &a.instance.require_tag,
                Action::Notify(_) | Action::PutMetric(_) => unreachable!("not destructive"),
            };
            assert!(
                tag.is_some(),
                "{}: {} has no require_tag",
                rule.name,
                action.kind()
            );
            let l = &rule.limits;
            assert!(
                l.cooldown.is_some() && l.rate.is_some() && l.max_event_age.is_some(),
                "{}: a destructive rule needs cooldown, rate and max_event_age: {l:?}",
                rule.name
            );
        }
    }
    assert!(destructive >= 3, "only {destructive} destructive actions");
}

/// Every example rule is named in some `rule-tests/` case, as matched or
/// skipped, so no example ships unexercised.
#[test]
fn every_example_rule_is_exercised_by_rule_tests() {
    let dir = repo().join("rule-tests");
    let mut named = BTreeSet::new();
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list rule-tests/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert!(!files.is_empty(), "no rule tests in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let doc: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for case in doc["case"].as_array().expect("[[case]]") {
            let expect = &case["expect"];
            for key in ["matched", "skipped"] {
                for name in expect
                    .get(key)
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                {
                    named.insert(name.as_str().expect("a rule name").to_string());
                }
            }
        }
    }
    for rule in load().rules() {
        assert!(
            named.contains(&rule.name),
            "rule {} is in no rule-tests/ case",
            rule.name
        );
    }
}
