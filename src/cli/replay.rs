//! `reflex replay`: backtest rules against history ("what would have fired
//! last month"). Streams its input, so memory stays flat for any file size.
//! Each event is evaluated at its own state-change time, as it would have
//! been when it arrived.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{exit, RulesArg};
use crate::event::decode;
use crate::plan::evaluate;
use crate::rules::RuleSet;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub rules: RulesArg,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Message bodies, one per line (`-` for stdin).
    pub input: PathBuf,
}

/// What a replay found.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct ReplayCounts {
    pub total: u64,
    pub decoded: u64,
    pub poison: BTreeMap<String, u64>,
    /// Events that matched at least one rule that would act.
    pub matched: u64,
    pub by_rule: BTreeMap<String, u64>,
    pub by_action: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
}

impl ReplayCounts {
    /// Accounts for one message body.
    pub fn add(&mut self, rules: &RuleSet, body: &[u8]) {
        self.total += 1;
        let event = match decode(body) {
            Ok(e) => e,
            Err(p) => {
                *self.poison.entry(p.code.as_str().to_string()).or_default() += 1;
                return;
            }
        };
        self.decoded += 1;
        let plan = evaluate(rules, &event, event.state_change_time);
        if !plan.matches.is_empty() {
            self.matched += 1;
        }
        for m in &plan.matches {
            *self.by_rule.entry(m.rule.name.clone()).or_default() += 1;
            for a in &m.actions {
                *self
                    .by_action
                    .entry(a.kind().as_str().to_string())
                    .or_default() += 1;
            }
        }
        for s in &plan.skipped {
            *self.skipped.entry(s.rule.clone()).or_default() += 1;
        }
    }
}

pub fn run(args: &ReplayArgs) -> u8 {
    let rules = match args.rules.load() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let reader: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(&args.input) {
            Ok(f) => Box::new(BufReader::with_capacity(1 << 16, f)),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", args.input.display());
                return exit::USAGE;
            }
        }
    };
    let mut summary = ReplayCounts::default();
    let mut reader = reader;
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: reading {}: {e}", args.input.display());
                return exit::USAGE;
            }
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.add(&rules, &line);
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    } else {
        print_human(&summary);
    }
    exit::OK
}

fn print_human(s: &ReplayCounts) {
    println!("total    {}", s.total);
    println!("decoded  {}", s.decoded);
    println!("poison   {}", s.poison.values().sum::<u64>());
    for (code, n) in &s.poison {
        println!("  {code:<24} {n}");
    }
    println!("matched  {}", s.matched);
    println!("by rule:");
    for (rule, n) in &s.by_rule {
        println!("  {rule:<40} {n}");
    }
    println!("by action:");
    for (kind, n) in &s.by_action {
        println!("  {kind:<40} {n}");
    }
    if !s.skipped.is_empty() {
        println!("skipped (matched, but disabled or stale):");
        for (rule, n) in &s.skipped {
            println!("  {rule:<40} {n}");
        }
    }
}
