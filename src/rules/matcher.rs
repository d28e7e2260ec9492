//! Match operators: what a rule can say about one field of an alarm event.
//!
//! [`StringMatcherSpec`] is the form written in TOML (a value, a list, or a
//! table of operators); [`StringMatcher`] is its compiled form, with globs and
//! regexes built once at load time.

use std::fmt;

use schemars::gen::SchemaGenerator;
use schemars::schema::Schema;
use schemars::JsonSchema;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A string condition as written in a rule file.
#[derive(Debug, Clone, PartialEq)]
pub enum StringMatcherSpec {
    /// `field = "value"`: exactly this value.
    Exact(String),
    /// `field = ["a", "b"]`: any of these values.
    AnyOf(Vec<String>),
    /// `field = { glob = "web-*", ... }`: every operator given must hold.
    Operators(OperatorsSpec),
}

/// Operators on a string field. Several operators in one table must all hold.
/// Every operator except `exists = false` requires the field to be present.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorsSpec {
    /// Exactly this value.
    pub equals: Option<String>,
    /// Any of these values.
    pub any_of: Option<Vec<String>>,
    /// A shell-style glob: `*` any run of characters, `?` one character,
    /// `[abc]` a class.
    pub glob: Option<String>,
    /// Starts with this.
    pub prefix: Option<String>,
    /// Ends with this.
    pub suffix: Option<String>,
    /// A regular expression (Rust `regex` syntax), unanchored unless you
    /// anchor it with `^...$`.
    pub regex: Option<String>,
    /// Present, and none of these values.
    pub anything_but: Option<OneOrMany>,
    /// `true`: the field is present. `false`: the field is absent.
    pub exists: Option<bool>,
}

/// A single string or a list of strings.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for StringMatcherSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringMatcherSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a list of strings, or a table of match operators")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringMatcherSpec::Exact(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    values.push(v);
                }
                Ok(StringMatcherSpec::AnyOf(values))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                OperatorsSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(StringMatcherSpec::Operators)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for StringMatcherSpec {
    fn schema_name() -> String {
        "StringMatcher".to_string()
    }

    fn json_schema(gen: &mut SchemaGenerator) -> Schema {
        let mut schema = schemars::schema::SchemaObject::default();
        schema.metadata().description = Some(
            "A value (exact match), a list (any of), or a table of operators that must all hold."
                .to_string(),
        );
        schema.subschemas().one_of = Some(vec![
            gen.subschema_for::<String>(),
            gen.subschema_for::<Vec<String>>(),
            gen.subschema_for::<OperatorsSpec>(),
        ]);
        Schema::Object(schema)
    }
}

/// Numeric comparisons (on the alarm threshold). All given must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberMatcherSpec {
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
    /// Equal.
    pub eq: Option<f64>,
}

impl NumberMatcherSpec {
    pub fn is_empty(&self) -> bool {
        self == &NumberMatcherSpec::default()
    }

    /// Whether a value (absent values never match) satisfies every bound.
    pub fn matches(&self, value: Option<f64>) -> bool {
        let Some(v) = value else { return false };
        self.gt.is_none_or(|b| v > b)
            && self.gte.is_none_or(|b| v >= b)
            && self.lt.is_none_or(|b| v < b)
            && self.lte.is_none_or(|b| v <= b)
            && self.eq.is_none_or(|b| v == b)
    }
}

/// One compiled test on a string field.
#[derive(Debug, Clone)]
enum Test {
    Equals(String),
    AnyOf(Vec<String>),
    Glob(globset::GlobMatcher),
    Prefix(String),
    Suffix(String),
    Regex(regex::Regex),
    AnythingBut(Vec<String>),
    Exists(bool),
}

/// A compiled string condition: every test must hold.
#[derive(Debug, Clone)]
pub struct StringMatcher {
    tests: Vec<Test>,
}

impl StringMatcher {
    /// Compiles a spec, or says what is wrong with it.
    pub fn compile(spec: &StringMatcherSpec) -> Result<Self, String> {
        let tests = match spec {
            StringMatcherSpec::Exact(v) => vec![Test::Equals(v.clone())],
            StringMatcherSpec::AnyOf(vs) => {
                if vs.is_empty() {
                    return Err("an empty list matches nothing".to_string());
                }
                vec![Test::AnyOf(vs.clone())]
            }
            StringMatcherSpec::Operators(ops) => {
                let mut tests = Vec::new();
                if let Some(v) = &ops.equals {
                    tests.push(Test::Equals(v.clone()));
                }
                if let Some(vs) = &ops.any_of {
                    if vs.is_empty() {
                        return Err("`any_of` is empty, so it matches nothing".to_string());
                    }
                    tests.push(Test::AnyOf(vs.clone()));
                }
                if let Some(g) = &ops.glob {
                    let glob = globset::GlobBuilder::new(g)
                        .literal_separator(false)
                        .build()
                        .map_err(|e| format!("invalid glob {g:?}: {e}"))?;
                    tests.push(Test::Glob(glob.compile_matcher()));
                }
                if let Some(p) = &ops.prefix {
                    tests.push(Test::Prefix(p.clone()));
                }
                if let Some(s) = &ops.suffix {
                    tests.push(Test::Suffix(s.clone()));
                }
                if let Some(r) = &ops.regex {
                    let re = regex::Regex::new(r).map_err(|e| format!("invalid regex: {e}"))?;
                    tests.push(Test::Regex(re));
                }
                if let Some(vs) = &ops.anything_but {
                    tests.push(Test::AnythingBut(vs.clone().into_vec()));
                }
                if let Some(e) = ops.exists {
                    if !e && !tests.is_empty() {
                        return Err(
                            "`exists = false` cannot be combined with other operators".to_string()
                        );
                    }
                    tests.push(Test::Exists(e));
                }
                if tests.is_empty() {
                    return Err("empty operator table: give at least one of equals, any_of, glob, prefix, suffix, regex, anything_but, exists".to_string());
                }
                tests
            }
        };
        Ok(StringMatcher { tests })
    }

    /// Whether the field's value (`None` when absent) satisfies every test.
    pub fn matches(&self, value: Option<&str>) -> bool {
        self.tests.iter().all(|t| match (t, value) {
            (Test::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Test::Equals(e), Some(v)) => e == v,
            (Test::AnyOf(es), Some(v)) => es.iter().any(|e| e == v),
            (Test::Glob(g), Some(v)) => g.is_match(v),
            (Test::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Test::Suffix(s), Some(v)) => v.ends_with(s.as_str()),
            (Test::Regex(r), Some(v)) => r.is_match(v),
            (Test::AnythingBut(es), Some(v)) => es.iter().all(|e| e != v),
        })
    }

    /// Whether a match implies the field is present.
    pub fn requires_presence(&self) -> bool {
        self.tests.iter().any(|t| !matches!(t, Test::Exists(false)))
    }

    /// The exact values this matcher pins the field to, if it pins it:
    /// used to index rules so matching cost does not grow with the rule count.
    pub fn pinned_values(&self) -> Option<&[String]> {
        self.tests.iter().find_map(|t| match t {
            Test::Equals(v) => Some(std::slice::from_ref(v)),
            Test::AnyOf(vs) => Some(vs.as_slice()),
            _ => None,
        })
    }

    /// A non-empty prefix every matching value starts with, if the matcher
    /// implies one (`prefix`, or the literal start of a `glob`): used to
    /// index rules by alarm-name prefix.
    pub fn required_prefix(&self) -> Option<&str> {
        self.tests.iter().find_map(|t| match t {
            Test::Prefix(p) if !p.is_empty() => Some(p.as_str()),
            Test::Glob(g) => {
                let pattern = g.glob().glob();
                let end = pattern
                    .find(['*', '?', '[', '{', '\\'])
                    .unwrap_or(pattern.len());
                (end > 0).then(|| &pattern[..end])
            }
            _ => None,
        })
    }

    /// Every literal value named by `equals`, `any_of` and `anything_but`,
    /// for checks such as "is this a real alarm state".
    pub fn literal_values(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for t in &self.tests {
            match t {
                Test::Equals(v) => out.push(v.as_str()),
                Test::AnyOf(vs) | Test::AnythingBut(vs) => {
                    out.extend(vs.iter().map(String::as_str))
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(f: impl FnOnce(&mut OperatorsSpec)) -> StringMatcher {
        let mut o = OperatorsSpec::default();
        f(&mut o);
        StringMatcher::compile(&StringMatcherSpec::Operators(o)).expect("compiles")
    }

    #[test]
    fn exact_and_any_of() {
        let m = StringMatcher::compile(&StringMatcherSpec::Exact("web".into())).unwrap();
        assert!(m.matches(Some("web")));
        assert!(!m.matches(Some("web2")));
        assert!(!m.matches(None));
        let m = StringMatcher::compile(&StringMatcherSpec::AnyOf(vec!["a".into(), "b".into()]))
            .unwrap();
        assert!(m.matches(Some("b")));
        assert!(!m.matches(Some("c")));
        assert_eq!(m.pinned_values().map(|v| v.len()), Some(2));
    }

    #[test]
    fn glob_prefix_suffix_regex() {
        assert!(ops(|o| o.glob = Some("web-*-unhealthy".into())).matches(Some("web-eu-unhealthy")));
        assert!(!ops(|o| o.glob = Some("web-*".into())).matches(Some("api-1")));
        assert!(ops(|o| o.prefix = Some("web-".into())).matches(Some("web-1")));
        assert!(!ops(|o| o.suffix = Some("-prod".into())).matches(Some("web-dev")));
        assert!(ops(|o| o.regex = Some("^i-[0-9a-f]+$".into())).matches(Some("i-0abc")));
        assert!(!ops(|o| o.regex = Some("^i-[0-9a-f]+$".into())).matches(Some("x-0abc")));
    }

    #[test]
    fn operators_combine_with_and() {
        let m = ops(|o| {
            o.prefix = Some("web-".into());
            o.suffix = Some("-prod".into());
        });
        assert!(m.matches(Some("web-1-prod")));
        assert!(!m.matches(Some("web-1-dev")));
    }

    #[test]
    fn required_prefixes_for_the_index() {
        let prefix = |f: fn(&mut OperatorsSpec)| ops(f).required_prefix().map(str::to_string);
        assert_eq!(
            prefix(|o| o.prefix = Some("web-".into())),
            Some("web-".into())
        );
        assert_eq!(
            prefix(|o| o.glob = Some("web-*-x".into())),
            Some("web-".into())
        );
        assert_eq!(
            prefix(|o| o.glob = Some("ab[cd]".into())),
            Some("ab".into())
        );
        assert_eq!(
            prefix(|o| o.glob = Some("exact".into())),
            Some("exact".into())
        );
        assert_eq!(prefix(|o| o.glob = Some("*-web".into())), None);
        assert_eq!(prefix(|o| o.prefix = Some(String::new())), None);
        assert_eq!(prefix(|o| o.suffix = Some("-web".into())), None);
    }

    #[test]
    fn anything_but_and_exists() {
        let m = ops(|o| o.anything_but = Some(OneOrMany::One("ALARM".into())));
        assert!(m.matches(Some("OK")));
        assert!(!m.matches(Some("ALARM")));
        assert!(!m.matches(None), "anything_but requires presence");
        assert!(ops(|o| o.exists = Some(true)).matches(Some("")));
        assert!(!ops(|o| o.exists = Some(true)).matches(None));
        assert!(ops(|o| o.exists = Some(false)).matches(None));
        assert!(!ops(|o| o.exists = Some(false)).requires_presence());
    }

    #[test]
    fn bad_specs_are_rejected() {
        let bad = |o: OperatorsSpec| StringMatcher::compile(&StringMatcherSpec::Operators(o));
        assert!(bad(OperatorsSpec::default()).is_err());
        assert!(bad(OperatorsSpec {
            regex: Some("(".into()),
            ..Default::default()
        })
        .unwrap_err()
        .contains("invalid regex"));
        assert!(StringMatcher::compile(&StringMatcherSpec::AnyOf(vec![])).is_err());
    }

    #[test]
    fn numbers() {
        let m = NumberMatcherSpec {
            gte: Some(1.0),
            lt: Some(5.0),
            ..Default::default()
        };
        assert!(m.matches(Some(1.0)));
        assert!(!m.matches(Some(5.0)));
        assert!(!m.matches(None));
    }
}
