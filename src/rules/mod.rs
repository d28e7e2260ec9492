//! Reaction rules: the TOML format ([`spec`]), loading with located errors
//! ([`load`]), compiled rules and the index that keeps matching cost flat as
//! the rule count grows ([`index`]). Pure: no I/O except reading rule files in
//! [`load`], no clock.

pub mod action;
mod compile;
pub mod index;
pub mod limits;
pub mod load;
pub mod matcher;
pub mod source;
pub mod spec;
pub mod template;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use action::{Action, PlannedAction};
pub use compile::{
    DEFAULT_MAX_INSTANCES, DEFAULT_MAX_PERCENT, DEFAULT_MIN_INSTANCE_AGE, DEFAULT_MIN_IN_SERVICE,
};
pub use limits::Rate;
pub use load::{load_paths, load_sources};
pub use matcher::{NumberMatcherSpec, StringMatcher};
pub use source::SourceError;
pub use spec::ActionKind;
pub use template::Template;

use crate::event::AlarmEvent;

/// A checked, compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub dry_run: bool,
    pub matcher: RuleMatcher,
    pub actions: Vec<Action<Template>>,
    pub limits: Limits,
    /// Where the rule is defined.
    pub file: PathBuf,
    pub line: usize,
}

/// How often and how late a rule may act.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub cooldown: Option<Duration>,
    pub rate: Option<Rate>,
    pub max_event_age: Option<Duration>,
}

/// The compiled match block: every condition present must hold.
#[derive(Debug, Default)]
pub struct RuleMatcher {
    pub alarm_name: Option<StringMatcher>,
    pub alarm_arn: Option<StringMatcher>,
    pub account: Option<StringMatcher>,
    pub region: Option<StringMatcher>,
    pub new_state: Option<StringMatcher>,
    pub old_state: Option<StringMatcher>,
    pub namespace: Option<StringMatcher>,
    pub metric_name: Option<StringMatcher>,
    pub topic_arn: Option<StringMatcher>,
    pub description: Option<StringMatcher>,
    pub dimensions: Vec<(String, StringMatcher)>,
    pub threshold: Option<NumberMatcherSpec>,
}

impl RuleMatcher {
    /// Whether the match block has no condition at all.
    pub fn is_empty(&self) -> bool {
        self.alarm_name.is_none()
            && self.alarm_arn.is_none()
            && self.account.is_none()
            && self.region.is_none()
            && self.new_state.is_none()
            && self.old_state.is_none()
            && self.namespace.is_none()
            && self.metric_name.is_none()
            && self.topic_arn.is_none()
            && self.description.is_none()
            && self.dimensions.is_empty()
            && self.threshold.is_none()
    }

    /// Whether every event this matches has the dimension `name`.
    pub fn guarantees_dimension(&self, name: &str) -> bool {
        self.dimensions
            .iter()
            .any(|(d, m)| d == name && m.requires_presence())
    }

    /// Whether the event satisfies every condition.
    pub fn matches(&self, e: &AlarmEvent) -> bool {
        fn test(m: &Option<StringMatcher>, v: Option<&str>) -> bool {
            m.as_ref().is_none_or(|m| m.matches(v))
        }
        test(&self.alarm_name, Some(&e.alarm_name))
            && test(&self.new_state, Some(e.new_state.as_str()))
            && test(&self.metric_name, e.metric_name.as_deref())
            && test(&self.namespace, e.namespace.as_deref())
            && test(&self.old_state, e.old_state.map(|s| s.as_str()))
            && test(&self.alarm_arn, e.alarm_arn.as_deref())
            && test(&self.account, e.account_id.as_deref())
            && test(&self.region, e.region.as_deref())
            && test(&self.topic_arn, e.topic_arn.as_deref())
            && test(&self.description, e.description.as_deref())
            && self
                .dimensions
                .iter()
                .all(|(d, m)| m.matches(e.dimension(d)))
            && self
                .threshold
                .as_ref()
                .is_none_or(|t| t.matches(e.threshold))
    }
}

/// A validated set of rules, with its index and version.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    index: index::Index,
    version: String,
    /// Where the set came from, when that is not the local directory the
    /// configuration names (an `s3://` prefix): recorded in the audit trail.
    source: Option<String>,
}

impl RuleSet {
    /// Builds a rule set from compiled rules (in their stable order) and the
    /// content hash of their sources.
    pub fn new(rules: Vec<Rule>, version: String) -> Self {
        let rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        let index = index::Index::build(&rules);
        RuleSet {
            rules,
            index,
            version,
            source: None,
        }
    }

    /// The same set, marked as coming from `source` (an `s3://` prefix).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Where the set came from, if marked ([`RuleSet::with_source`]).
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The rules, in load order (files sorted by path, rules in file order).
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// A content hash of the rule files: the same files, the same version.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The rules that might match `event`, in load order: a superset of the
    /// matching rules, found without looking at every rule.
    pub fn candidates(&self, event: &AlarmEvent) -> impl Iterator<Item = &Arc<Rule>> {
        self.index
            .candidates(event)
            .into_iter()
            .map(|i| &self.rules[i as usize])
    }

    /// Every action kind any rule uses.
    pub fn action_kinds(&self) -> std::collections::BTreeSet<ActionKind> {
        self.rules
            .iter()
            .flat_map(|r| r.actions.iter().map(Action::kind))
            .collect()
    }
}
