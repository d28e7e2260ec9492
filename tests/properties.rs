//! Properties of the pure core, checked on generated inputs:
//!
//! - the decoder never panics, on arbitrary bytes or on valid bodies mangled
//!   byte by byte or value by value, always gives the same answer, and
//!   gives the answer of the reference (plain serde) decoder;
//! - [`reflex::plan::evaluate`] is deterministic;
//! - a disabled rule never matches, and every rule whose conditions hold is
//!   either matched or skipped (the index never loses one);
//! - string matchers and templates never panic, whatever the pattern and the
//!   value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use reflex::event::{decode, AlarmEvent, AlarmKind, AlarmState, EventFormat};
use reflex::plan::evaluate;
use reflex::rules::matcher::{OneOrMany, OperatorsSpec, StringMatcherSpec};
use reflex::rules::{load_sources, RuleSet, StringMatcher, Template};

/// Valid bodies to mangle: every format and alarm kind.
const VALID: &[&str] = &[
    include_str!("fixtures/sns/elb-unhealthy-hosts.json"),
    include_str!("fixtures/sns/metric-math.json"),
    include_str!("fixtures/sns/anomaly-detection.json"),
    include_str!("fixtures/sns/composite.json"),
    include_str!("fixtures/sns/eventbridge-single-metric.json"),
    include_str!("fixtures/sns/escaped-name.json"),
    include_str!("fixtures/raw/elb-unhealthy-hosts.json"),
    include_str!("fixtures/raw/composite.json"),
    include_str!("fixtures/eventbridge/single-metric.json"),
    include_str!("fixtures/eventbridge/metric-math.json"),
    include_str!("fixtures/eventbridge/anomaly-detection.json"),
    include_str!("fixtures/eventbridge/composite.json"),
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- decoder ---

/// Decodes twice: no panic (proptest reports one), the same answer both times,
/// and the answer of the reference decoder (the same event, or poison with
/// the same code).
fn decode_is_total_and_deterministic(body: &[u8]) -> Result<(), TestCaseError> {
    let first = decode(body);
    let second = decode(body);
    prop_assert_eq!(&first, &second);
    if let Err(p) = &first {
        prop_assert!(!p.reason.is_empty(), "poison {} without a reason", p.code);
    }
    let reference = reflex::event::reference::decode(body);
    match (&first, &reference) {
        (Err(fast), Err(slow)) => prop_assert_eq!(
            fast.code,
            slow.code,
            "fast: {}; reference: {}; body: {}",
            fast,
            slow,
            String::from_utf8_lossy(body)
        ),
        _ => prop_assert_eq!(
            &first,
            &reference,
            "the fast and reference decoders disagree on {}",
            String::from_utf8_lossy(body)
        ),
    }
    Ok(())
}

/// Byte-level damage to a valid body.
#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(usize),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let interesting = select(vec![
        b'{', b'}', b'[', b']', b'"', b'\\', b':', b',', b'0', b'n', b' ', 0xff, 0xc3, 0x00,
    ]);
    prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), 1..64usize).prop_map(|(a, n)| ByteEdit::Delete(a, n)),
        (
            any::<usize>(),
            prop::collection::vec(prop_oneof![interesting.clone(), any::<u8>()], 1..8)
        )
            .prop_map(|(a, b)| ByteEdit::Insert(a, b)),
        (any::<usize>(), prop_oneof![interesting, any::<u8>()])
            .prop_map(|(a, b)| ByteEdit::Replace(a, b)),
        (any::<usize>(), 1..200usize).prop_map(|(a, n)| ByteEdit::Duplicate(a, n)),
    ]
}

fn apply_byte_edit(body: &mut Vec<u8>, edit: &ByteEdit) {
    if body.is_empty() {
        return;
    }
    let at = |i: usize| i % body.len();
    match edit {
        ByteEdit::Truncate(i) => body.truncate(at(*i)),
        ByteEdit::Delete(i, n) => {
            let start = at(*i);
            let end = (start + n).min(body.len());
            body.drain(start..end);
        }
        ByteEdit::Insert(i, bytes) => {
            let start = at(*i);
            body.splice(start..start, bytes.iter().copied());
        }
        ByteEdit::Replace(i, b) => {
            let i = at(*i);
            body[i] = *b;
        }
        ByteEdit::Duplicate(i, n) => {
            let start = at(*i);
            let end = (start + n).min(body.len());
            let copy = body[start..end].to_vec();
            body.splice(end..end, copy);
        }
    }
}

/// Arbitrary JSON values, biased towards what alarms contain.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        select(vec![
            "ALARM",
            "OK",
            "INSUFFICIENT_DATA",
            "alarm",
            "",
            " ",
            "2026-01-12T16:30:42.236+0000",
            "2026-13-45T99:99:99Z",
            "arn:aws:cloudwatch:eu-south-1:123456789012:alarm:x",
            "arn:::",
            "Notification",
            "SubscriptionConfirmation",
            "CloudWatch Alarm State Change",
            "aws.cloudwatch",
            "{\"AlarmName\":\"x\"}",
            "[1]",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                select(vec![
                    "AlarmName",
                    "NewStateValue",
                    "Trigger",
                    "Dimensions",
                    "name",
                    "value",
                    "Metrics",
                    "MetricStat",
                    "detail",
                    "state",
                    "value",
                    "x",
                ])
                .prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Value-level damage: replace or remove the value at a path picked by `pick`.
#[derive(Debug, Clone)]
enum ValueEdit {
    Replace(Vec<usize>, Value),
    Remove(Vec<usize>),
}

fn value_edit() -> impl Strategy<Value = ValueEdit> {
    let path = prop::collection::vec(any::<usize>(), 1..6);
    prop_oneof![
        (path.clone(), json_value()).prop_map(|(p, v)| ValueEdit::Replace(p, v)),
        path.prop_map(ValueEdit::Remove),
    ]
}

/// Follows `path` (each step an index into the current object's keys or
/// array's items, modulo their count) and edits there. An SNS `Message`
/// string holding JSON is descended into and re-encoded, so the damage can
/// reach the alarm inside the envelope.
fn apply_value_edit(v: &mut Value, path: &[usize], edit: &ValueEdit) {
    let Some((&step, rest)) = path.split_first() else {
        return;
    };
    let last = rest.is_empty();
    match v {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).cloned().expect("in range");
            if last {
                match edit {
                    ValueEdit::Replace(_, new) => {
                        map.insert(key, new.clone());
                    }
                    ValueEdit::Remove(_) => {
                        map.remove(&key);
                    }
                }
                return;
            }
            let child = map.get_mut(&key).expect("present");
            if let Value::String(s) = child {
                if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                    apply_value_edit(&mut inner, rest, edit);
                    *s = inner.to_string();
                    return;
                }
            }
            apply_value_edit(child, rest, edit);
        }
        Value::Array(items) if !items.is_empty() => {
            let i = step % items.len();
            if last {
                match edit {
                    ValueEdit::Replace(_, new) => items[i] = new.clone(),
                    ValueEdit::Remove(_) => {
                        items.remove(i);
                    }
                }
                return;
            }
            apply_value_edit(&mut items[i], rest, edit);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_is_total_and_deterministic(&body)?;
    }

    #[test]
    fn decoder_never_panics_on_json_like_text(
        body in r#"[\{\}\[\]":, 0-9a-zA-Z\\]{0,200}"#
    ) {
        decode_is_total_and_deterministic(body.as_bytes())?;
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_json(v in json_value()) {
        decode_is_total_and_deterministic(v.to_string().as_bytes())?;
    }

    #[test]
    fn decoder_never_panics_on_damaged_bodies(
        which in 0..VALID.len(),
        edits in prop::collection::vec(byte_edit(), 1..4),
    ) {
        let mut body = VALID[which].as_bytes().to_vec();
        for edit in &edits {
            apply_byte_edit(&mut body, edit);
        }
        decode_is_total_and_deterministic(&body)?;
    }

    #[test]
    fn decoder_never_panics_on_mutated_values(
        which in 0..VALID.len(),
        edits in prop::collection::vec(value_edit(), 1..4),
    ) {
        let mut v: Value = serde_json::from_str(VALID[which]).expect("fixture is JSON");
        for edit in &edits {
            let path = match edit {
                ValueEdit::Replace(p, _) | ValueEdit::Remove(p) => p.clone(),
            };
            apply_value_edit(&mut v, &path, edit);
        }
        let body = v.to_string();
        decode_is_total_and_deterministic(body.as_bytes())?;
        // Whatever survives decoding is a usable event.
        if let Ok(e) = decode(body.as_bytes()) {
            prop_assert!(!e.alarm_name.trim().is_empty());
            if let Some(region) = &e.region {
                prop_assert!(!region.is_empty());
            }
        }
    }
}

// ------------------------------------------------------------ rule engine ---

/// Small alphabets, so generated rules and events often meet.
const NAMES: &[&str] = &["web", "web-1", "web-2", "api", "api-1", "db", "Web", ""];
const NAMESPACES: &[&str] = &["AWS/ELB", "AWS/EC2", "AWS/SQS"];
const METRICS: &[&str] = &[
    "UnHealthyHostCount",
    "CPUUtilization",
    "StatusCheckFailed_System",
];
const STATES: &[&str] = &["OK", "ALARM", "INSUFFICIENT_DATA"];

/// A string condition as TOML, over `values`.
fn condition(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    let v = select(values);
    prop_oneof![
        v.clone().prop_map(|s| format!("{s:?}")),
        prop::collection::vec(v.clone(), 1..3).prop_map(|vs| format!("{vs:?}")),
        v.clone()
            .prop_map(|s| format!("{{ prefix = {:?} }}", &s[..s.len().min(3)])),
        v.clone()
            .prop_map(|s| format!("{{ suffix = {:?} }}", &s[s.len().saturating_sub(2)..])),
        v.clone()
            .prop_map(|s| format!("{{ glob = \"{}*\" }}", &s[..s.len().min(2)])),
        v.clone()
            .prop_map(|s| format!("{{ regex = \"^{}\" }}", &s[..s.len().min(2)])),
        v.clone()
            .prop_map(|s| format!("{{ anything_but = {s:?} }}")),
        any::<bool>().prop_map(|b| format!("{{ exists = {b} }}")),
    ]
}

/// Conditions on states must name real states, so only the value forms.
fn state_condition() -> impl Strategy<Value = String> {
    let v = select(STATES);
    prop_oneof![
        v.clone().prop_map(|s| format!("{s:?}")),
        prop::collection::vec(v.clone(), 1..3).prop_map(|vs| format!("{vs:?}")),
        v.prop_map(|s| format!("{{ anything_but = {s:?} }}")),
    ]
}

#[derive(Debug, Clone)]
struct RuleGen {
    enabled: bool,
    alarm_name: Option<String>,
    new_state: Option<String>,
    old_state: Option<String>,
    namespace: Option<String>,
    metric_name: Option<String>,
    dimension: Option<String>,
    max_event_age_minutes: Option<u32>,
}

fn rule_gen() -> impl Strategy<Value = RuleGen> {
    (
        any::<bool>(),
        prop::option::of(condition(NAMES)),
        prop::option::of(state_condition()),
        prop::option::of(state_condition()),
        prop::option::of(condition(NAMESPACES)),
        prop::option::of(condition(METRICS)),
        prop::option::of(condition(NAMES)),
        prop::option::of(0..120u32),
    )
        .prop_map(|(enabled, a, n, o, ns, m, d, age)| RuleGen {
            enabled,
            // A match block may not be empty.
            alarm_name: if [&a, &n, &o, &ns, &m, &d].iter().all(|c| c.is_none()) {
                Some("{ exists = true }".to_string())
            } else {
                a
            },
            new_state: n,
            old_state: o,
            namespace: ns,
            metric_name: m,
            dimension: d,
            max_event_age_minutes: age,
        })
}

fn rule_toml(i: usize, r: &RuleGen) -> String {
    let mut t = format!(
        "[[rule]]\nname = \"r{i}\"\nenabled = {}\n[rule.match]\n",
        r.enabled
    );
    for (key, cond) in [
        ("alarm_name", &r.alarm_name),
        ("new_state", &r.new_state),
        ("old_state", &r.old_state),
        ("namespace", &r.namespace),
        ("metric_name", &r.metric_name),
        ("dimensions.LoadBalancerName", &r.dimension),
    ] {
        if let Some(c) = cond {
            t.push_str(&format!("{key} = {c}\n"));
        }
    }
    t.push_str(
        "[[rule.actions]]\ntype = \"notify\"\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n\
         subject = \"{{ alarm.name }} in {{ alarm.region }}\"\n",
    );
    if let Some(m) = r.max_event_age_minutes {
        t.push_str(&format!("[rule.limits]\nmax_event_age = \"{m}m\"\n"));
    }
    t
}

fn rule_set(rules: &[RuleGen]) -> RuleSet {
    let text: String = rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule_toml(i, r))
        .collect::<Vec<_>>()
        .join("\n");
    load_sources(vec![(PathBuf::from("gen.toml"), text.clone())])
        .unwrap_or_else(|e| panic!("generated rules do not load: {e:?}\n{text}"))
}

fn state() -> impl Strategy<Value = AlarmState> {
    select(AlarmState::ALL.to_vec())
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 12, 16, 30, 42)
        .single()
        .expect("valid time")
}

fn event() -> impl Strategy<Value = AlarmEvent> {
    (
        select(NAMES).prop_filter("alarm names are never empty", |n| !n.is_empty()),
        state(),
        prop::option::of(state()),
        prop::option::of(select(NAMESPACES)),
        prop::option::of(select(METRICS)),
        prop::option::of(select(NAMES)),
        -3_600i64..86_400,
    )
        .prop_map(|(name, new, old, ns, metric, lb, offset)| {
            let mut dimensions = BTreeMap::new();
            if let Some(lb) = lb {
                dimensions.insert("LoadBalancerName".to_string(), lb.to_string());
            }
            AlarmEvent {
                alarm_name: name.to_string(),
                alarm_arn: Some(format!(
                    "arn:aws:cloudwatch:eu-south-1:123456789012:alarm:{name}"
                )),
                account_id: Some("123456789012".into()),
                region: Some("eu-south-1".into()),
                description: None,
                new_state: new,
                old_state: old,
                state_reason: Some("Threshold Crossed".into()),
                state_change_time: base_time() + Duration::seconds(offset),
                kind: AlarmKind::Metric,
                namespace: ns.map(String::from),
                metric_name: metric.map(String::from),
                dimensions,
                threshold: Some(1.0),
                comparison_operator: None,
                alarm_rule: None,
                format: EventFormat::Sns,
                sns_message_id: Some("m-1".into()),
                topic_arn: Some("arn:aws:sns:eu-south-1:123456789012:reflex-alarms".into()),
                subject: None,
            }
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn evaluate_is_deterministic(
        rules in prop::collection::vec(rule_gen(), 1..24),
        event in event(),
        now_offset in 0i64..7_200,
    ) {
        let set = rule_set(&rules);
        let now = base_time() + Duration::seconds(now_offset);
        let a = serde_json::to_string(&evaluate(&set, &event, now)).expect("serialize");
        let b = serde_json::to_string(&evaluate(&set, &event, now)).expect("serialize");
        prop_assert_eq!(&a, &b);
        // Loading the same text again gives the same plan too.
        let again = rule_set(&rules);
        let c = serde_json::to_string(&evaluate(&again, &event, now)).expect("serialize");
        prop_assert_eq!(&a, &c);
    }

    #[test]
    fn disabled_rules_never_match_and_no_matching_rule_is_lost(
        rules in prop::collection::vec(rule_gen(), 1..24),
        event in event(),
        now_offset in 0i64..7_200,
    ) {
        let set = rule_set(&rules);
        let now = base_time() + Duration::seconds(now_offset);
        let plan = evaluate(&set, &event, now);
        for m in &plan.matches {
            prop_assert!(m.rule.enabled, "disabled rule {} matched", m.rule.name);
            prop_assert!(m.rule.matcher.matches(&event));
        }
        // The index may skip rules, but never one whose conditions hold:
        // every such rule is matched or skipped, in load order.
        let expected: Vec<&str> = set
            .rules()
            .iter()
            .filter(|r| r.matcher.matches(&event))
            .map(|r| r.name.as_str())
            .collect();
        let mut seen: Vec<&str> = plan
            .matches
            .iter()
            .map(|m| m.rule.name.as_str())
            .chain(plan.skipped.iter().map(|s| s.rule.as_str()))
            .collect();
        let order = |n: &&str| set.rules().iter().position(|r| r.name == *n);
        seen.sort_by_key(order);
        prop_assert_eq!(seen, expected);
        for s in &plan.skipped {
            let rule = set.get(&s.rule).expect("skipped rule exists");
            prop_assert_eq!(rule.enabled, s.reason != "disabled");
        }
    }

    #[test]
    fn string_matchers_never_panic(
        equals in prop::option::of(".{0,8}"),
        any_of in prop::option::of(prop::collection::vec(".{0,6}", 0..3)),
        glob in prop::option::of(r"[a-z*?\[\]{},!\\-]{0,10}"),
        prefix in prop::option::of(".{0,4}"),
        suffix in prop::option::of(".{0,4}"),
        regex in prop::option::of(r"[a-z.*+?()\[\]{}|^$\\0-9]{0,12}"),
        anything_but in prop::option::of(".{0,6}"),
        exists in prop::option::of(any::<bool>()),
        values in prop::collection::vec(prop::option::of(".{0,16}"), 1..8),
    ) {
        let spec = StringMatcherSpec::Operators(OperatorsSpec {
            equals,
            any_of,
            glob,
            prefix,
            suffix,
            regex,
            anything_but: anything_but.map(OneOrMany::One),
            exists,
        });
        // A bad pattern is an error with a message, never a panic.
        match StringMatcher::compile(&spec) {
            Ok(m) => {
                for v in &values {
                    let first = m.matches(v.as_deref());
                    prop_assert_eq!(first, m.matches(v.as_deref()));
                    if v.is_none() && m.requires_presence() {
                        prop_assert!(!first);
                    }
                }
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn exact_and_list_matchers_match_exactly(
        wanted in prop::collection::vec(".{0,8}", 1..4),
        value in ".{0,8}",
    ) {
        let m = StringMatcher::compile(&StringMatcherSpec::AnyOf(wanted.clone())).expect("compiles");
        prop_assert_eq!(m.matches(Some(&value)), wanted.contains(&value));
        let m = StringMatcher::compile(&StringMatcherSpec::Exact(value.clone())).expect("compiles");
        prop_assert!(m.matches(Some(&value)));
        prop_assert!(!m.matches(None));
    }

    #[test]
    fn templates_never_panic(src in r"[a-z.{} ]{0,40}|.{0,40}", event in event()) {
        if let Ok(t) = Template::parse(&src) {
            let a = t.render(&event, "rule");
            prop_assert_eq!(a, t.render(&event, "rule"));
        }
    }

    #[test]
    fn rule_loading_never_panics(text in r#"[\[\]a-z_.="{} 0-9\n]{0,200}"#) {
        let first = load_sources(vec![(PathBuf::from("x.toml"), text.clone())]);
        let second = load_sources(vec![(PathBuf::from("x.toml"), text)]);
        match (first, second) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a.version(), b.version()),
            (Err(a), Err(b)) => {
                prop_assert_eq!(&a, &b);
                for e in &a {
                    prop_assert!(e.line >= 1 && e.column >= 1);
                    prop_assert!(!e.to_string().contains('\n'), "{}", e);
                }
            }
            _ => prop_assert!(false, "loading the same text twice differed"),
        }
    }
}
