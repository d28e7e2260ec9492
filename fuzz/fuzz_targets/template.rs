//! The template renderer: any text parses to a template or to an error at a
//! character boundary inside the text, and a template renders against any
//! event without a panic; a template without fields renders as itself.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reflex::event::{decode, AlarmEvent};
use reflex::rules::Template;

fn events() -> &'static [AlarmEvent] {
    static EVENTS: OnceLock<Vec<AlarmEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        [
            &include_bytes!("../../tests/fixtures/sns/elb-unhealthy-hosts.json")[..],
            include_bytes!("../../tests/fixtures/sns/escaped-name.json"),
            include_bytes!("../../tests/fixtures/eventbridge/composite.json"),
            include_bytes!("../../tests/fixtures/raw/insufficient-data.json"),
        ]
        .iter()
        .filter_map(|b| decode(b).ok())
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match Template::parse(src) {
        Ok(template) => {
            for event in events() {
                let out = template.render(event, "fuzz-rule");
                if let Some(literal) = template.literal() {
                    assert_eq!(out, literal, "a literal renders as itself");
                }
            }
        }
        Err(e) => {
            assert!(e.offset <= src.len(), "offset {} past the end", e.offset);
            assert!(src.is_char_boundary(e.offset), "offset {} inside a character", e.offset);
            assert!(!e.message.trim().is_empty(), "no message");
        }
    }
});
