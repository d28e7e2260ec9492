//! An index over the fields rules pin, so that finding the rules an event
//! might match costs a few hash look-ups, not a scan.
//!
//! Each rule is filed under one key, the most selective condition it has:
//! an exact alarm name, then an exact dimension value, then an exact metric
//! name, then an alarm-name prefix (from `prefix`, or the literal start of a
//! `glob`), then an exact namespace, then an exact new state. Rules with none
//! of these are always candidates. An event looks up its alarm name, each of
//! its dimensions, its metric name, each prefix length in use, its namespace
//! and its state: a number of look-ups that does not grow with the rules.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::{Rule, StringMatcher};
use crate::event::{AlarmEvent, AlarmState};

/// A hash map with a cheap hash. SipHash's protection against collisions
/// chosen by an attacker is not needed here: the keys are the rules' own
/// values, and an event only looks them up. A message does about ten look-ups.
type HashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// FxHash's multiply-rotate over eight bytes at a time.
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Default)]
pub struct Index {
    by_alarm_name: HashMap<String, Vec<u32>>,
    /// Dimension name → dimension value → rules.
    by_dimension: HashMap<String, HashMap<String, Vec<u32>>>,
    by_metric_name: HashMap<String, Vec<u32>>,
    by_alarm_prefix: HashMap<String, Vec<u32>>,
    /// The distinct lengths (bytes) of the keys of `by_alarm_prefix`.
    prefix_lengths: Vec<usize>,
    by_namespace: HashMap<String, Vec<u32>>,
    by_new_state: HashMap<String, Vec<u32>>,
    always: Vec<u32>,
}

fn file_under(map: &mut HashMap<String, Vec<u32>>, values: &[String], i: u32) {
    for v in values {
        let slot = map.entry(v.clone()).or_default();
        if slot.last() != Some(&i) {
            slot.push(i);
        }
    }
}

fn pinned(m: &Option<StringMatcher>) -> Option<&[String]> {
    m.as_ref().and_then(StringMatcher::pinned_values)
}

impl Index {
    pub fn build(rules: &[Arc<Rule>]) -> Index {
        let mut index = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 4 billion rules");
            let m = &rule.matcher;
            if let Some(values) = pinned(&m.alarm_name) {
                file_under(&mut index.by_alarm_name, values, i);
            } else if let Some((name, values)) = m
                .dimensions
                .iter()
                .find_map(|(d, dm)| Some((d, dm.pinned_values()?)))
            {
                let map = index.by_dimension.entry(name.clone()).or_default();
                file_under(map, values, i);
            } else if let Some(values) = pinned(&m.metric_name) {
                file_under(&mut index.by_metric_name, values, i);
            } else if let Some(prefix) = m
                .alarm_name
                .as_ref()
                .and_then(StringMatcher::required_prefix)
            {
                file_under(&mut index.by_alarm_prefix, &[prefix.to_string()], i);
            } else if let Some(values) = pinned(&m.namespace) {
                file_under(&mut index.by_namespace, values, i);
            } else if let Some(values) = pinned(&m.new_state) {
                file_under(&mut index.by_new_state, values, i);
            } else {
                index.always.push(i);
            }
        }
        index.prefix_lengths = index.by_alarm_prefix.keys().map(String::len).collect();
        index.prefix_lengths.sort_unstable();
        index.prefix_lengths.dedup();
        index
    }

    /// Indices of the rules that might match, ascending.
    pub fn candidates(&self, e: &AlarmEvent) -> Vec<u32> {
        fn get<'a>(map: &'a HashMap<String, Vec<u32>>, key: Option<&str>) -> &'a [u32] {
            key.and_then(|k| map.get(k)).map_or(&[], Vec::as_slice)
        }
        let mut out: Vec<u32> = Vec::new();
        out.extend_from_slice(get(&self.by_alarm_name, Some(&e.alarm_name)));
        if !self.by_dimension.is_empty() {
            for (name, value) in &e.dimensions {
                if let Some(by_value) = self.by_dimension.get(name) {
                    out.extend_from_slice(get(by_value, Some(value)));
                }
            }
        }
        out.extend_from_slice(get(&self.by_metric_name, e.metric_name.as_deref()));
        let name = e.alarm_name.as_str();
        for &len in &self.prefix_lengths {
            if len > name.len() {
                break;
            }
            if name.is_char_boundary(len) {
                out.extend_from_slice(get(&self.by_alarm_prefix, Some(&name[..len])));
            }
        }
        out.extend_from_slice(get(&self.by_namespace, e.namespace.as_deref()));
        out.extend_from_slice(get(
            &self.by_new_state,
            Some(AlarmState::as_str(e.new_state)),
        ));
        out.extend_from_slice(&self.always);
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::event::decode;
    use crate::rules::load_sources;

    const EVENT: &str = r#"{"AlarmName":"team7-web-unhealthy","NewStateValue":"ALARM",
        "StateChangeTime":"2026-01-12T16:30:42.236+0000",
        "Trigger":{"MetricName":"UnHealthyHostCount","Namespace":"AWS/ELB",
        "Dimensions":[{"name":"LoadBalancerName","value":"lb-7"}]}}"#;

    /// Many rules on prefixes, globs and dimensions: the event's candidates
    /// are the few that can match, not all of them.
    #[test]
    fn prefixes_globs_and_dimensions_are_selective() {
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!(
                "[[rule]]\nname = \"p{i}\"\nmatch.alarm_name = {{ prefix = \"team{i}-\" }}\nmatch.new_state = \"ALARM\"\n\
                 actions = [{{ type = \"notify\", topic_arn = \"t\" }}]\n\
                 [[rule]]\nname = \"g{i}\"\nmatch.alarm_name = {{ glob = \"team{i}-*-unhealthy\" }}\n\
                 actions = [{{ type = \"notify\", topic_arn = \"t\" }}]\n\
                 [[rule]]\nname = \"d{i}\"\nmatch.metric_name = \"UnHealthyHostCount\"\nmatch.dimensions.LoadBalancerName = \"lb-{i}\"\n\
                 actions = [{{ type = \"notify\", topic_arn = \"t\" }}]\n"
            ));
        }
        text.push_str(
            "[[rule]]\nname = \"by-regex\"\nmatch.alarm_name = { regex = \"web\" }\n\
             actions = [{ type = \"notify\", topic_arn = \"t\" }]\n",
        );
        let set = load_sources(vec![(PathBuf::from("t.toml"), text)]).expect("loads");
        let event = decode(EVENT.as_bytes()).expect("decodes");
        let names: Vec<&str> = set.candidates(&event).map(|r| r.name.as_str()).collect();
        // "team7-" is a prefix of the name; "team70-" ... are not.
        assert_eq!(names, ["p7", "g7", "d7", "by-regex"]);
        let matching: Vec<&str> = set
            .rules()
            .iter()
            .filter(|r| r.matcher.matches(&event))
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(matching, names);
    }
}
