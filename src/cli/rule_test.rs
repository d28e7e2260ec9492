//! `reflex test`: rule unit tests. A test file (TOML) holds `[[case]]`s, each
//! a message body and what the rules must make of it:
//!
//! ```toml
//! [[case]]
//! name = "stopped web node is terminated"
//! body_file = "../tests/fixtures/sns/elb-unhealthy.json"   # or body = '''...'''
//! now = "event"                 # optional: RFC 3339, or `event` (the default)
//! [case.expect]
//! matched = ["terminate-out-of-service"]
//! skipped = []                  # optional
//! [[case.expect.actions]]       # optional; each key given must equal the plan's
//! rule = "terminate-out-of-service"
//! type = "terminate_out_of_service"
//! load_balancer = "web"
//! ```
//!
//! or `[case.expect] poison = "not_json"`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use super::explain::resolve_now;
use super::{exit, RulesArg};
use crate::event::decode;
use crate::plan::evaluate;
use crate::rules::source::{parse_toml, SourceFile};
use crate::rules::RuleSet;

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub rules: RulesArg,
    /// Test files or directories of them.
    #[arg(default_value = "rule-tests")]
    pub fixtures: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    body: Option<String>,
    body_file: Option<PathBuf>,
    now: Option<String>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    poison: Option<String>,
    #[serde(default)]
    matched: Option<Vec<String>>,
    skipped: Option<Vec<String>>,
    actions: Option<Vec<toml::Table>>,
}

pub fn run(args: &TestArgs) -> u8 {
    let rules = match args.rules.load() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut files = Vec::new();
    for p in &args.fixtures {
        if let Err(e) = collect(p, &mut files) {
            eprintln!("error: {}: {e}", p.display());
            return exit::USAGE;
        }
    }
    files.sort();
    let (mut passed, mut failed) = (0u32, 0u32);
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return exit::USAGE;
            }
        };
        let source = SourceFile::new(file, text);
        let tests: TestFile = match parse_toml(&source) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e}");
                return exit::USAGE;
            }
        };
        for case in &tests.case {
            match run_case(&rules, file, case) {
                Ok(()) => {
                    passed += 1;
                    println!("ok   {}::{}", file.display(), case.name);
                }
                Err(why) => {
                    failed += 1;
                    println!("FAIL {}::{}\n     {why}", file.display(), case.name);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        if passed == 0 && failed == 0 {
            eprintln!("error: no test cases found");
        }
        exit::FAILED
    } else {
        exit::OK
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
    Ok(())
}

fn run_case(rules: &RuleSet, file: &Path, case: &Case) -> Result<(), String> {
    let body = match (&case.body, &case.body_file) {
        (Some(b), None) => b.clone().into_bytes(),
        (None, Some(f)) => {
            let path = file.parent().unwrap_or(Path::new(".")).join(f);
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        _ => return Err("give exactly one of `body` and `body_file`".to_string()),
    };
    let event = match (decode(&body), &case.expect.poison) {
        (Err(p), Some(want)) if p.code.as_str() == want => return Ok(()),
        (Err(p), _) => return Err(format!("body is poison: {p}")),
        (Ok(_), Some(want)) => {
            return Err(format!("expected poison {want:?}, but the body decoded"))
        }
        (Ok(e), None) => e,
    };
    let now = resolve_now(Some(case.now.as_deref().unwrap_or("event")), &event)?;
    let plan = evaluate(rules, &event, now);
    let matched: Vec<&str> = plan.matches.iter().map(|m| m.rule.name.as_str()).collect();
    if let Some(want) = &case.expect.matched {
        if matched != *want {
            return Err(format!("matched {matched:?}, expected {want:?}"));
        }
    }
    if let Some(want) = &case.expect.skipped {
        let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.rule.as_str()).collect();
        if skipped != *want {
            return Err(format!("skipped {skipped:?}, expected {want:?}"));
        }
    }
    if let Some(want) = &case.expect.actions {
        let planned: Vec<(String, Value)> = plan
            .matches
            .iter()
            .flat_map(|m| {
                m.actions.iter().map(|a| {
                    (
                        m.rule.name.clone(),
                        serde_json::to_value(a).unwrap_or(Value::Null),
                    )
                })
            })
            .collect();
        if planned.len() != want.len() {
            return Err(format!(
                "{} actions planned, expected {}",
                planned.len(),
                want.len()
            ));
        }
        for (i, (expected, (rule, actual))) in want.iter().zip(&planned).enumerate() {
            for (key, value) in expected {
                let value = serde_json::to_value(value).unwrap_or(Value::Null);
                let got = if key == "rule" {
                    Value::String(rule.clone())
                } else {
                    actual.get(key).cloned().unwrap_or(Value::Null)
                };
                if got != value {
                    return Err(format!("action {i} `{key}` is {got}, expected {value}"));
                }
            }
        }
    }
    Ok(())
}
