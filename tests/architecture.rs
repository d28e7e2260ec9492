//! The one-way layering of reflex's modules, enforced.
//!
//! ```text
//! event, rules → plan → safety, outcome, disposition → aws → audit, telemetry → worker → config → daemon → cli → main
//! ```
//!
//! Every top-level module of `src/` (a file `src/x.rs` or a folder `src/x/`,
//! plus `main` for `src/main.rs`) has a row in [`LAYERS`], lowest layer
//! first. A module may import from:
//!
//! - any module in a **lower** layer;
//! - a module of its **own** layer only if the pair is listed in [`PEERS`],
//!   with the reason (so the order inside a layer is explicit and cannot
//!   form a loop unnoticed);
//! - never a module in a higher layer.
//!
//! | layer | modules | what lives there |
//! |---|---|---|
//! | 0 input | `event`, `rules`, `trust` | decoding alarm messages, SNS signature verification, the rule format; pure |
//! | 1 plan | `plan`, `fleet`, `target`, `dead_letter`, `iam`, `schema` | rules × event → plan; the domain types the guards decide on; dead-letter codes and attributes; the IAM policy and JSON Schema derived from the rule format; pure |
//! | 2 decision | `safety`, `outcome`, `disposition` | the guards, what became of an action, what becomes of a message; pure but for the guard state |
//! | 3 effects | `aws`, `state` | one trait per AWS capability and its implementations; the durable state store and its backends |
//! | 4 records | `audit`, `telemetry` | the audit trail; metrics, logs-as-events, `/metrics` |
//! | 5 worker | `worker`, `reload`, `dlq` | the consumer that sequences effects; live rule reload; DLQ inspect and redrive |
//! | 6 config | `config` | `reflex.toml` → the checked configuration and the worker's settings |
//! | 7 daemon | `daemon` | `reflex run` wiring, signals, shutdown, the start-up error |
//! | 8 cli | `cli` | arguments of every command, the offline commands, exit codes |
//! | 9 main | `main` | the binary |
//!
//! Rows for modules that do not exist (yet) are allowed: `trust`, `state`,
//! `fleet`, `target` and `dead_letter` are declared ahead of the branches
//! that add them. A module that exists without a row fails the test with
//! "add a row for …".
//!
//! **How imports are found.** Each `.rs` file under `src/` is read with
//! comments, string and character literals skipped. Every path that starts
//! with `crate::` (or `reflex::` in `src/main.rs`, which is its own crate)
//! names the top-level module it reaches, including each item of a
//! `crate::{a::X, b::Y}` group; a path that starts with `super::` is
//! resolved against the file's module (and any inline `mod x { … }`
//! around it) and counts when it climbs out into another top-level module.
//! Test modules count too: they are compiled into the same crate. Intra-doc
//! links (`[`crate::x`]` in comments) do not: they are no code dependency.
//! `src/lib.rs` only declares the modules and is not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, lowest first: (name, modules).
const LAYERS: &[(&str, &[&str])] = &[
    ("input", &["event", "rules", "trust"]),
    (
        "plan",
        &["plan", "fleet", "target", "dead_letter", "iam", "schema"],
    ),
    ("decision", &["safety", "outcome", "disposition"]),
    ("effects", &["aws", "state"]),
    ("records", &["audit", "telemetry"]),
    ("worker", &["worker", "reload", "dlq"]),
    ("config", &["config"]),
    ("daemon", &["daemon"]),
    ("cli", &["cli"]),
    ("main", &["main"]),
];

/// Imports allowed inside one layer: (importer, imported, why). The reverse
/// of a listed pair stays forbidden.
const PEERS: &[(&str, &str, &str)] = &[
    ("rules", "event", "rules match on the decoded AlarmEvent"),
    ("trust", "event", "verification reads the decoded envelope types"),
    ("trust", "rules", "what is trusted comes from the checked settings"),
    (
        "outcome",
        "safety",
        "an action's outcome names the guard that stopped it",
    ),
    (
        "disposition",
        "outcome",
        "a message's disposition is decided from its actions' outcomes",
    ),
    (
        "disposition",
        "safety",
        "a suppressed action's outcome carries the guard trip (the tests build one)",
    ),
    (
        "aws",
        "state",
        "the DynamoDB state backend sits in aws/ (SDK types stay there) and implements state's trait",
    ),
];

/// One reference from a file to another top-level module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    file: String,
    line: usize,
    text: String,
    from: String,
    to: String,
}

fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, modules))| modules.contains(&module))
        .map(|(i, (name, _))| (i, *name))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: each `src/x.rs` (but `lib.rs`) and `src/x/`.
fn top_level_modules() -> BTreeSet<String> {
    let entries = std::fs::read_dir(src_dir())
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", src_dir().display()));
    let mut modules = BTreeSet::new();
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_dir() {
            modules.insert(name.to_string());
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" {
                modules.insert(stem.to_string());
            }
        }
    }
    modules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every cross-module reference in `src/`.
fn all_imports() -> Vec<Import> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut imports = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src/");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts == ["lib.rs"] {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let shown = format!("src/{}", parts.join("/"));
        imports.extend(imports_of(&shown, &module_path(&parts), &text));
    }
    imports
}

/// The module path of a file: `aws/mod.rs` → `[aws]`, `aws/sdk.rs` →
/// `[aws, sdk]`, `main.rs` → `[main]`.
fn module_path(parts: &[String]) -> Vec<String> {
    let mut path: Vec<String> = parts.to_vec();
    if let Some(last) = path.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" {
            path.push(stem.to_string());
        }
    }
    path
}

// ---- a small lexer: enough of Rust to find paths outside comments and literals

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

fn lex(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 1;
    // Skips a "…" string starting at `i` (the opening quote); returns the
    // index after the closing quote.
    fn skip_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
        i += 1;
        while i < c.len() {
            match c[i] {
                '\\' => {
                    if c.get(i + 1) == Some(&'\n') {
                        *line += 1;
                    }
                    i += 2;
                }
                '"' => return i + 1,
                '\n' => {
                    *line += 1;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        i
    }
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 1;
            i += 2;
            while i < c.len() && depth > 0 {
                if c[i] == '\n' {
                    line += 1;
                }
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i, &mut line);
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw = matches!(word.as_str(), "r" | "br" | "cr");
            if raw && matches!(c.get(i), Some('#') | Some('"')) {
                // r"…", r#"…"#: no escapes; ends at a quote and as many #.
                let mut hashes = 0;
                while c.get(i) == Some(&'#') {
                    hashes += 1;
                    i += 1;
                }
                if c.get(i) != Some(&'"') {
                    // r#ident, a raw identifier.
                    continue;
                }
                i += 1;
                'raw: while i < c.len() {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                        i += 1 + hashes;
                        break 'raw;
                    }
                    i += 1;
                }
            } else if matches!(word.as_str(), "b" | "c") && c.get(i) == Some(&'"') {
                i = skip_string(&c, i, &mut line);
            } else if word == "b" && c.get(i) == Some(&'\'') {
                // b'x' or b'\n'
                i += 1;
                if c.get(i) == Some(&'\\') {
                    i += 1;
                }
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else {
                toks.push((Tok::Ident(word), line));
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            toks.push((Tok::PathSep, line));
            i += 2;
        } else {
            toks.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    toks
}

/// The references in one file. `module` is the file's module path; `file`
/// is how to name it in a failure.
fn imports_of(file: &str, module: &[String], text: &str) -> Vec<Import> {
    let toks = lex(text);
    let lines: Vec<&str> = text.lines().collect();
    let from = module.first().cloned().unwrap_or_default();
    let is_main = module == ["main"];
    let root = if is_main { "reflex" } else { "crate" };
    // Inline modules open around the current token: (name, brace depth at
    // which their body opened).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let found = |to: &str, line: usize, out: &mut Vec<Import>| {
        if to != from && to != "self" && to != "super" && to != "crate" {
            out.push(Import {
                file: file.to_string(),
                line,
                text: lines
                    .get(line.saturating_sub(1))
                    .map_or(String::new(), |l| l.trim().to_string()),
                from: from.clone(),
                to: to.to_string(),
            });
        }
    };
    let ident = |k: usize| match toks.get(k) {
        Some((Tok::Ident(w), _)) => Some(w.as_str()),
        _ => None,
    };
    let mut k = 0;
    while k < toks.len() {
        let (tok, line) = &toks[k];
        match tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth + 1) {
                    inline.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(name), Some((Tok::Punct('{'), _))) = (ident(k + 1), toks.get(k + 2)) {
                    inline.push((name.to_string(), depth + 1));
                }
            }
            _ => {}
        }
        // Only the start of a path: not `a::crate`, not `$crate` twice.
        let starts_path = k == 0 || !matches!(toks[k - 1].0, Tok::PathSep);
        let first = ident(k);
        if starts_path && toks.get(k + 1).map(|t| &t.0) == Some(&Tok::PathSep) {
            // Where the path's next segment is resolved from: the crate root
            // (`prefix` empty) or inside a top-level module (its name).
            let mut next = k + 2;
            let prefix: Option<Vec<String>> = if first == Some(root) {
                Some(vec![])
            } else if first == Some("super") {
                let mut base: Vec<String> = module.to_vec();
                base.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut n = 1;
                while ident(next) == Some("super")
                    && toks.get(next + 1).map(|t| &t.0) == Some(&Tok::PathSep)
                {
                    n += 1;
                    next += 2;
                }
                if is_main || n > base.len() {
                    None
                } else {
                    base.truncate(base.len() - n);
                    Some(base)
                }
            } else {
                None
            };
            match prefix {
                Some(p) if !p.is_empty() => found(&p[0], *line, &mut out),
                Some(_) => match toks.get(next) {
                    Some((Tok::Ident(name), l)) => found(name, *l, &mut out),
                    Some((Tok::Punct('{'), _)) => {
                        // A group: the first segment of each item.
                        let mut inner = 0usize;
                        let mut item_start = true;
                        let mut j = next + 1;
                        while let Some((t, l)) = toks.get(j) {
                            match t {
                                Tok::Punct('{') => inner += 1,
                                Tok::Punct('}') if inner == 0 => break,
                                Tok::Punct('}') => inner -= 1,
                                Tok::Punct(',') if inner == 0 => {
                                    item_start = true;
                                    j += 1;
                                    continue;
                                }
                                Tok::Ident(name) if item_start && inner == 0 => {
                                    found(name, *l, &mut out)
                                }
                                _ => {}
                            }
                            item_start = false;
                            j += 1;
                        }
                    }
                    _ => {}
                },
                None => {}
            }
        }
        k += 1;
    }
    // Two paths to one module on one line are one import.
    out.dedup_by(|a, b| a.line == b.line && a.to == b.to);
    out
}

/// Why `import` runs against the table, if it does.
fn violation(import: &Import) -> Option<String> {
    let (Some((from, from_name)), Some((to, to_name))) =
        (layer_of(&import.from), layer_of(&import.to))
    else {
        // A module without a row fails `every_module_has_a_row`.
        return None;
    };
    let why = if to > from {
        "which is above it"
    } else if to == from
        && !PEERS
            .iter()
            .any(|(a, b, _)| *a == import.from && *b == import.to)
    {
        "in the same layer, and the pair is not in PEERS"
    } else {
        return None;
    };
    Some(format!(
        "{}:{}: `{}`: {} (layer {from} {from_name}) imports {} (layer {to} {to_name}), {why}",
        import.file, import.line, import.text, import.from, import.to
    ))
}

#[test]
fn every_module_has_a_row() {
    let missing: Vec<String> = top_level_modules()
        .into_iter()
        .filter(|m| layer_of(m).is_none())
        .map(|m| format!("add a row for `{m}` (a top-level module of src/) to LAYERS in tests/architecture.rs"))
        .collect();
    assert!(missing.is_empty(), "\n{}\n", missing.join("\n"));
}

#[test]
fn the_table_names_each_module_once() {
    let mut seen = BTreeSet::new();
    for (_, modules) in LAYERS {
        for m in *modules {
            assert!(seen.insert(*m), "`{m}` has two rows in LAYERS");
        }
    }
    for (a, b, why) in PEERS {
        assert_eq!(
            layer_of(a).map(|l| l.0),
            layer_of(b).map(|l| l.0),
            "PEERS lists {a} → {b} ({why}), which are not in one layer"
        );
        assert!(
            !PEERS.iter().any(|(x, y, _)| x == b && y == a),
            "PEERS lists both {a} → {b} and {b} → {a}: a loop"
        );
    }
}

#[test]
fn imports_point_down_the_layers() {
    let imports = all_imports();
    assert!(
        imports.iter().any(|i| i.from == "worker"),
        "the scan found no import from the worker: it is not reading src/"
    );
    let bad: Vec<String> = imports.iter().filter_map(violation).collect();
    assert!(
        bad.is_empty(),
        "\n{} import(s) run against the layering (table in tests/architecture.rs):\n{}\n",
        bad.len(),
        bad.join("\n")
    );
}

// ---- the scanner itself

fn edges(file_module: &[&str], text: &str) -> Vec<(String, usize)> {
    let module: Vec<String> = file_module.iter().map(|s| s.to_string()).collect();
    imports_of("src/x.rs", &module, text)
        .into_iter()
        .map(|i| (i.to, i.line))
        .collect()
}

#[test]
fn the_scanner_finds_paths_groups_and_climbing_supers() {
    let text = r#"use crate::audit::AuditSink;
use crate::{
    event::AlarmEvent,
    plan::{self, Plan},
};
fn f() { let _ = crate::outcome::Outcome::Done; }
use super::super::rules::Rate;
use super::sibling::Thing;
"#;
    assert_eq!(
        edges(&["worker", "actions", "pool"], text),
        vec![
            ("audit".to_string(), 1),
            ("event".to_string(), 3),
            ("plan".to_string(), 4),
            ("outcome".to_string(), 6),
        ],
        "super::super from worker/actions/pool.rs stays in worker; crate:: paths count"
    );
    assert_eq!(
        edges(
            &["cli", "run"],
            "use super::super::daemon::StartupError;\nuse super::exit;\n"
        ),
        vec![("daemon".to_string(), 1)],
        "super::super from cli/run.rs reaches the crate root"
    );
    assert_eq!(
        edges(&["audit"], "use super::worker::X;\n"),
        vec![("worker".to_string(), 1)],
        "super:: from a top-level file is the crate root"
    );
}

#[test]
fn the_scanner_skips_comments_literals_and_its_own_module() {
    let text = r##"// use crate::daemon::x;
/// See [`crate::cli::exit`].
/* crate::config::Config /* nested */ crate::main */
const A: &str = "crate::daemon::run";
const B: &str = r#"crate::cli "quoted" crate::daemon"#;
const C: char = '{';
const D: u8 = b'"';
fn f<'a>(x: &'a str) -> &'a str { x }
use crate::worker::Settings;
pub(crate) fn g() {}
use crate::event::Poison;
"##;
    assert_eq!(
        edges(&["worker"], text),
        vec![("event".to_string(), 11)],
        "only real code paths, and not the file's own module"
    );
}

#[test]
fn the_scanner_resolves_super_inside_inline_modules() {
    let text = "mod tests {\n    use super::*;\n    use super::super::cli::Cli;\n}\nuse super::daemon::run;\n";
    assert_eq!(
        edges(&["config"], text),
        vec![("cli".to_string(), 3), ("daemon".to_string(), 5)],
        "in config.rs, `mod tests`'s super is config, its super::super the crate root"
    );
    assert_eq!(
        edges(
            &["main"],
            "use reflex::cli::{exit, Cli};\nuse reflex::{daemon, worker::Settings};\n"
        ),
        vec![
            ("cli".to_string(), 1),
            ("daemon".to_string(), 2),
            ("worker".to_string(), 2)
        ],
        "main.rs is its own crate and reaches the library as `reflex::`"
    );
}

#[test]
fn an_upward_import_is_reported_with_file_line_and_import() {
    let import = Import {
        file: "src/audit.rs".into(),
        line: 30,
        text: "use crate::worker::Handled;".into(),
        from: "audit".into(),
        to: "worker".into(),
    };
    assert_eq!(
        violation(&import).as_deref(),
        Some("src/audit.rs:30: `use crate::worker::Handled;`: audit (layer 4 records) imports worker (layer 5 worker), which is above it")
    );
    let peer = Import {
        from: "event".into(),
        to: "rules".into(),
        ..import.clone()
    };
    assert!(
        violation(&peer).is_some_and(|v| v.contains("not in PEERS")),
        "event → rules is the reverse of a listed pair"
    );
    let down = Import {
        from: "worker".into(),
        to: "audit".into(),
        ..import
    };
    assert_eq!(violation(&down), None, "worker → audit points down");
}
