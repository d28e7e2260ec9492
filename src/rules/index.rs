//! An index over the fields rules pin to exact values, so that finding the
//! rules an event might match costs a few hash look-ups, not a scan.
//!
//! Each rule is filed under one key, the most selective field it pins:
//! alarm name, then metric name, then namespace, then new state. Rules that
//! pin none of these are always candidates.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Rule, StringMatcher};
use crate::event::{AlarmEvent, AlarmState};

/// Rule indices by pinned value.
type Bucket = HashMap<String, Vec<u32>>;

#[derive(Debug, Default)]
pub struct Index {
    by_alarm_name: HashMap<String, Vec<u32>>,
    by_metric_name: HashMap<String, Vec<u32>>,
    by_namespace: HashMap<String, Vec<u32>>,
    by_new_state: HashMap<String, Vec<u32>>,
    always: Vec<u32>,
}

impl Index {
    pub fn build(rules: &[Arc<Rule>]) -> Index {
        let mut index = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 4 billion rules");
            let m = &rule.matcher;
            let keyed: [(&Option<StringMatcher>, &mut Bucket); 4] = [
                (&m.alarm_name, &mut index.by_alarm_name),
                (&m.metric_name, &mut index.by_metric_name),
                (&m.namespace, &mut index.by_namespace),
                (&m.new_state, &mut index.by_new_state),
            ];
            let mut filed = false;
            for (matcher, map) in keyed {
                if let Some(values) = matcher.as_ref().and_then(StringMatcher::pinned_values) {
                    for v in values {
                        let slot = map.entry(v.clone()).or_default();
                        if slot.last() != Some(&i) {
                            slot.push(i);
                        }
                    }
                    filed = true;
                    break;
                }
            }
            if !filed {
                index.always.push(i);
            }
        }
        index
    }

    /// Indices of the rules that might match, ascending.
    pub fn candidates(&self, e: &AlarmEvent) -> Vec<u32> {
        fn get<'a>(map: &'a HashMap<String, Vec<u32>>, key: Option<&str>) -> &'a [u32] {
            key.and_then(|k| map.get(k)).map_or(&[], Vec::as_slice)
        }
        let lists: [&[u32]; 5] = [
            get(&self.by_alarm_name, Some(&e.alarm_name)),
            get(&self.by_metric_name, e.metric_name.as_deref()),
            get(&self.by_namespace, e.namespace.as_deref()),
            get(&self.by_new_state, Some(AlarmState::as_str(e.new_state))),
            &self.always,
        ];
        let mut out: Vec<u32> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
        for l in lists {
            out.extend_from_slice(l);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
