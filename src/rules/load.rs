//! Reading rule files and directories into a [`RuleSet`], reporting every
//! problem in every file at once, each as `file:line:col: message`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::IntoDeserializer;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::compile::compile_rule;
use super::source::{toml_message, SourceError, SourceFile};
use super::spec::RuleSpec;
use super::{Rule, RuleSet};

/// Loads every `*.toml` file in the given files and directories (directories
/// are walked recursively, in sorted order).
pub fn load_paths(paths: &[PathBuf]) -> Result<RuleSet, Vec<SourceError>> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files, &mut errors);
    }
    files.sort();
    files.dedup();
    if files.is_empty() && errors.is_empty() {
        let shown: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
        errors.push(SourceError {
            file: paths.first().cloned().unwrap_or_default(),
            line: 1,
            column: 1,
            message: format!("no rule files (*.toml) found in {}", shown.join(", ")),
        });
    }
    let mut sources = Vec::new();
    for file in files {
        match std::fs::read(&file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => sources.push((file, text)),
                Err(e) => errors.push(SourceError {
                    file,
                    line: 1,
                    column: 1,
                    message: format!(
                        "file is not UTF-8 (at byte {})",
                        e.utf8_error().valid_up_to()
                    ),
                }),
            },
            Err(e) => errors.push(io_error(&file, &e)),
        }
    }
    match load_sources(sources) {
        Ok(set) if errors.is_empty() => Ok(set),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> SourceError {
    SourceError {
        file: path.to_path_buf(),
        line: 1,
        column: 1,
        message: format!("cannot read: {e}"),
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<SourceError>) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return errors.push(io_error(path, &e)),
    };
    if meta.is_file() {
        return out.push(path.to_path_buf());
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => return errors.push(io_error(path, &e)),
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let name = child
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue; // editor swap files, .git, ...
        }
        if child.is_dir() {
            collect_files(&child, out, errors);
        } else if name.ends_with(".toml") {
            out.push(child);
        }
    }
}

/// Loads rules from (path, text) pairs, in the order given.
pub fn load_sources(sources: Vec<(PathBuf, String)>) -> Result<RuleSet, Vec<SourceError>> {
    let mut errors = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen: HashMap<String, (PathBuf, usize, usize)> = HashMap::new();
    let mut hasher = Sha256::new();
    for (path, text) in sources {
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        let file = SourceFile::new(&path, text);
        for (spec, name_span) in parse_file(&file, &mut errors) {
            let name = spec.name.get_ref().clone();
            let (line, column) = file.line_col(name_span);
            if let Some((first_file, first_line, first_col)) = seen.get(&name) {
                errors.push(SourceError {
                    file: file.path.clone(),
                    line,
                    column,
                    message: format!(
                        "duplicate rule name `{name}` (first defined at {}:{first_line}:{first_col})",
                        first_file.display()
                    ),
                });
                continue;
            }
            seen.insert(name, (file.path.clone(), line, column));
            if let Some(rule) = compile_rule(spec, &file, &mut errors) {
                rules.push(rule);
            }
        }
    }
    if !errors.is_empty() {
        errors.sort();
        return Err(errors);
    }
    let digest = hasher.finalize();
    Ok(RuleSet::new(rules, hex::encode(&digest[..8])))
}

/// Parses one file into rule specs. Each `[[rule]]` table is deserialized on
/// its own, so a mistake in one rule does not hide mistakes in the next.
fn parse_file(file: &SourceFile, errors: &mut Vec<SourceError>) -> Vec<(RuleSpec, usize)> {
    let doc: toml_edit::ImDocument<&str> = match toml_edit::ImDocument::parse(file.text.as_str()) {
        Ok(d) => d,
        Err(e) => {
            errors.push(file.error(e.span(), toml_message(file, e.span(), e.message())));
            return Vec::new();
        }
    };
    let mut tables: Vec<toml_edit::Item> = Vec::new();
    for (key, item) in doc.as_table().iter() {
        if key != "rule" {
            let span = doc.as_table().key(key).and_then(|k| k.span());
            errors.push(file.error(
                span,
                format!("unknown top-level key `{key}`; a rule file holds only `[[rule]]` tables"),
            ));
            continue;
        }
        match item {
            toml_edit::Item::ArrayOfTables(a) => {
                tables.extend(a.iter().map(|t| toml_edit::Item::Table(t.clone())))
            }
            toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
                tables.extend(a.iter().map(|v| toml_edit::Item::Value(v.clone())))
            }
            other => errors.push(file.error(
                other.span(),
                "`rule` must be an array of tables: write `[[rule]]`",
            )),
        }
    }
    let mut specs = Vec::new();
    for item in tables {
        let start = item.span().map_or(0, |s| s.start);
        let value = match item.into_value() {
            Ok(v) => v,
            Err(item) => {
                errors.push(file.error(item.span(), "a rule must be a table"));
                continue;
            }
        };
        match RuleSpec::deserialize(value.into_deserializer()) {
            Ok(spec) => {
                let at = spec.name.span().start;
                specs.push((spec, at));
            }
            Err(e) => {
                let span = e.span().or(Some(start..start));
                let message = toml_message(file, span.clone(), e.message());
                errors.push(file.error(span, message));
            }
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `rules` fuzz target: a NUL in a comment of a rule file
    /// failed the load with an empty message.
    #[test]
    fn a_control_character_in_a_rule_file_is_a_located_error_with_a_message() {
        let file = SourceFile::new(
            Path::new("fuzz.toml"),
            "[[rule]]\nname = \"x\"\n# \0 more\n".to_string(),
        );
        let mut errors = Vec::new();
        assert!(parse_file(&file, &mut errors).is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (3, 3), "{}", errors[0]);
        assert!(errors[0].message.contains("U+0000"), "{}", errors[0]);
    }

    fn load(text: &str) -> Result<RuleSet, Vec<SourceError>> {
        load_sources(vec![(PathBuf::from("t.toml"), text.to_string())])
    }

    fn errors(text: &str) -> Vec<String> {
        load(text)
            .expect_err("should not load")
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    const GOOD: &str = r#"
[[rule]]
name = "web"
[rule.match]
alarm_name = "web-unhealthy"
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "terminate_out_of_service"
max_instances = 2
"#;

    #[test]
    fn loads_a_good_rule_with_defaults() {
        let set = load(GOOD).expect("loads");
        assert_eq!(set.rules().len(), 1);
        assert_eq!(set.version().len(), 16);
        let rule = &set.rules()[0];
        assert!(rule.enabled && !rule.dry_run);
        assert_eq!(rule.line, 3);
    }

    #[test]
    fn reports_every_error_with_line_and_column() {
        let errs = errors(
            r#"
[[rule]]
name = "a"
bogus = 1
[rule.match]
alarm_name = "x"
[[rule.actions]]
type = "notify"
topic_arn = "arn"

[[rule]]
name = "b"
[rule.match]
new_state = "ALRAM"
[[rule.actions]]
type = "terminate_out_of_service"
max_percent = 150
"#,
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("t.toml:4:1: unknown field `bogus`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("t.toml:14:13:") && errs[1].contains("ALRAM"),
            "{}",
            errs[1]
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:17:15:") && e.contains("max_percent")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("dimension `LoadBalancerName`")),
            "{errs:#?}"
        );
    }

    #[test]
    fn unknown_action_kind_and_template_field() {
        let errs = errors(
            r#"[[rule]]
name = "a"
match.alarm_name = "x"
actions = [ { type = "explode" } ]
[[rule]]
name = "b"
match.alarm_name = "x"
actions = [ { type = "notify", topic_arn = "arn", subject = "{{ alarm.nmae }}" } ]
"#,
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:4:") && e.contains("unknown variant `explode`")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:8:") && e.contains("alarm.nmae")),
            "{errs:#?}"
        );
    }

    #[test]
    fn duplicate_names_across_files() {
        let errs = load_sources(vec![
            (PathBuf::from("a.toml"), GOOD.to_string()),
            (PathBuf::from("b.toml"), GOOD.to_string()),
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .to_string()
                .starts_with("b.toml:3:8: duplicate rule name `web` (first defined at a.toml:3:8)"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn instance_actions_need_an_instance_id_from_the_match() {
        let errs = errors("[[rule]]\nname = \"r\"\nmatch.metric_name = \"StatusCheckFailed_System\"\nactions = [{ type = \"reboot_instance\" }]\n");
        assert!(errs[0].contains("dimension `InstanceId`"), "{errs:#?}");
    }

    #[test]
    fn syntax_errors_and_zero_rates() {
        let errs = errors("[[rule]\nname = 1\n");
        assert!(errs[0].starts_with("t.toml:1:"), "{errs:#?}");
        let errs = errors(&format!("{GOOD}[rule.limits]\nrate = \"0/hour\"\n"));
        assert!(
            errs[0].starts_with("t.toml:11:8:") && errs[0].contains("at least 1"),
            "{errs:#?}"
        );
    }

    #[test]
    fn version_is_a_content_hash() {
        let a = load(GOOD).unwrap();
        let b = load(GOOD).unwrap();
        let c = load(&GOOD.replace("max_instances = 2", "max_instances = 3")).unwrap();
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
    }
}
