//! The rule loader: any text is a rule set or a list of errors, each located
//! (file, line and column inside the text), never a panic. A rule set that
//! loads is evaluated against real events, which runs its matchers and
//! renders its templates.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reflex::event::{decode, AlarmEvent};
use reflex::plan::evaluate;
use reflex::rules::load_sources;

fn events() -> &'static [AlarmEvent] {
    static EVENTS: OnceLock<Vec<AlarmEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        [
            &include_bytes!("../../tests/fixtures/sns/elb-unhealthy-hosts.json")[..],
            include_bytes!("../../tests/fixtures/raw/ec2-status-check-failed.json"),
            include_bytes!("../../tests/fixtures/eventbridge/composite.json"),
            include_bytes!("../../tests/fixtures/sns/escaped-name.json"),
        ]
        .iter()
        .filter_map(|b| decode(b).ok())
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = PathBuf::from("fuzz.toml");
    let lines = text.split('\n').count();
    match load_sources(vec![(file.clone(), text.to_string())]) {
        Ok(set) => {
            for event in events() {
                let plan = evaluate(&set, event, event.state_change_time);
                for m in &plan.matches {
                    assert!(set.get(&m.rule.name).is_some(), "matched an unknown rule");
                }
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "failed without an error");
            for e in &errors {
                assert_eq!(e.file, file, "{e}");
                assert!(e.line >= 1 && e.line <= lines, "{e}: line out of range");
                assert!(e.column >= 1, "{e}: column out of range");
                assert!(!e.message.trim().is_empty(), "{e}: no message");
            }
        }
    }
});
