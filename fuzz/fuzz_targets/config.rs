//! The config loader: any `reflex.toml` text is a config or a list of
//! errors, each located (line and column inside the text), never a panic.
//! The same steps as `Config::load`, without the file read.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use reflex::config::{Config, ConfigSpec, Overrides};
use reflex::rules::source::{parse_toml, SourceError, SourceFile};

fn check(errors: &[SourceError], lines: usize) {
    assert!(!errors.is_empty(), "failed without an error");
    for e in errors {
        assert_eq!(e.file, Path::new("reflex.toml"), "{e}");
        assert!(e.line >= 1 && e.line <= lines, "{e}: line out of range");
        assert!(e.column >= 1, "{e}: column out of range");
        assert!(!e.message.trim().is_empty(), "{e}: no message");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    let file = SourceFile::new(Path::new("reflex.toml"), text.to_string());
    match parse_toml::<ConfigSpec>(&file) {
        Ok(spec) => {
            if let Err(errors) = Config::from_spec(spec, &file, Overrides::default()) {
                check(&errors, lines);
            }
        }
        Err(e) => check(&[e], lines),
    }
});
