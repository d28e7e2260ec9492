//! The JSON Schema of the rule format, generated from the same serde types
//! that parse rule files (`reflex schema`; shipped as
//! `schema/reflex-rules.schema.json`).

use serde_json::{json, Value};

use crate::rules::spec::{ActionKind, RuleFileSpec};

/// The schema, with per-kind parameter lists taken from [`ActionKind::params`],
/// the same table rule validation uses.
pub fn rule_schema() -> Value {
    let schema = schemars::schema_for!(RuleFileSpec);
    let mut v = serde_json::to_value(schema).unwrap_or_else(|_| json!({}));
    let per_kind: Vec<Value> = ActionKind::ALL
        .iter()
        .map(|k| {
            let mut allowed = vec!["type"];
            allowed.extend(k.params());
            json!({
                "if": {"properties": {"type": {"const": k.as_str()}}, "required": ["type"]},
                "then": {"propertyNames": {"enum": allowed}}
            })
        })
        .collect();
    if let Some(action) = v.pointer_mut("/definitions/ActionSpec") {
        action["allOf"] = Value::Array(per_kind);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_every_action_kind_and_constrains_params() {
        let s = rule_schema();
        let text = s.to_string();
        for k in ActionKind::ALL {
            assert!(text.contains(k.as_str()), "schema lacks {k}");
        }
        let all_of = s
            .pointer("/definitions/ActionSpec/allOf")
            .and_then(Value::as_array);
        assert_eq!(all_of.map(Vec::len), Some(ActionKind::ALL.len()));
    }
}
