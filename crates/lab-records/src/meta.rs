//! `meta.json`: what a run was, and the comparison `--resume` makes with it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::row::StudyKind;

/// What a run was: written as `meta.json` next to `records.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The kind of study (absent in older files: `scaling`).
    #[serde(default)]
    pub kind: StudyKind,
    /// The command line that produced the records.
    pub command: String,
    /// The resolved spec, as YAML text.
    pub spec: String,
    /// Seed of parameters and data.
    pub seed: u64,
    /// Backend.
    pub backend: String,
    /// Device description.
    pub device: String,
    /// What the memory figures of the records count (the meter's description; absent in
    /// older files).
    #[serde(default)]
    pub memory: String,
    /// Precision.
    pub dtype: String,
    /// Git revision.
    pub git_rev: String,
    /// `name version` of the crates that matter (burn, rwkv-lab).
    pub versions: Vec<String>,
    /// CPU model, cores, memory.
    pub machine: String,
    /// UTC start time (RFC 3339).
    pub started: String,
    /// UTC end time, empty while running or if interrupted.
    pub finished: String,
}

impl Meta {
    /// The settings in which `now` differs from this recorded run: study kind, backend,
    /// precision and the resolved spec (compared by `spec_diff`, which names the fields).
    /// Empty when a run may be resumed with `now`.
    pub fn differences(
        &self,
        now: &Meta,
        spec_diff: &dyn Fn(&str, &str) -> Vec<String>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, old: &str, new: &str| {
            if old != new {
                out.push(format!("{name} is {old} in the recorded run, {new} now"));
            }
        };
        field("study kind", self.kind.as_str(), now.kind.as_str());
        field("backend", &self.backend, &now.backend);
        field("dtype", &self.dtype, &now.dtype);
        out.extend(spec_diff(&self.spec, &now.spec));
        out
    }
}

/// Differences between two spec texts, line by line (for specs that cannot be parsed
/// into values): the first differing line and how many lines differ.
pub fn text_differences(recorded: &str, now: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (recorded.lines().collect(), now.lines().collect());
    let n = a.len().max(b.len());
    let differing: Vec<usize> = (0..n).filter(|&i| a.get(i) != b.get(i)).collect();
    let Some(&first) = differing.first() else {
        return Vec::new();
    };
    let show = |l: Option<&&str>| l.map_or("(no line)".to_string(), |l| format!("`{}`", l.trim()));
    vec![format!(
        "spec line {} is {} in the recorded run, {} now ({} line(s) differ)",
        first + 1,
        show(a.get(first)),
        show(b.get(first)),
        differing.len()
    )]
}

/// Differences between two parsed specs, one per field, named by its path
/// (`model.d_model is 512 in the recorded run, 256 now`).
pub fn value_differences(recorded: &Value, now: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(recorded, now, "spec", &mut out);
    out
}

fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            let null = Value::Null;
            for k in keys {
                let p = if path == "spec" {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    &p,
                    out,
                );
            }
        }
        _ if a != b => out.push(format!(
            "{path} is {} in the recorded run, {} now",
            compact(a),
            compact(b)
        )),
        _ => {}
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::Null => "absent".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_meta_without_kind_or_memory_loads_as_scaling() {
        let old = r#"{"command":"c","spec":"s","seed":0,"backend":"ndarray","device":"d",
            "dtype":"f32","git_rev":"g","versions":[],"machine":"m","started":"t","finished":""}"#;
        let m: Meta = serde_json::from_str(old).unwrap();
        assert_eq!((m.kind, m.memory.as_str()), (StudyKind::Scaling, ""));
        let json = serde_json::to_string(&Meta {
            kind: StudyKind::Ablation,
            ..m
        })
        .unwrap();
        assert!(json.starts_with(r#"{"kind":"ablation","#), "{json}");
    }

    #[test]
    fn differences_name_the_setting_and_both_values() {
        let a = Meta {
            backend: "ndarray".into(),
            dtype: "f32".into(),
            spec: "seed: 0\nmodel:\n  d_model: 512\n".into(),
            ..Default::default()
        };
        assert!(a.differences(&a.clone(), &text_differences).is_empty());
        let b = Meta {
            dtype: "f64".into(),
            spec: "seed: 0\nmodel:\n  d_model: 256\n".into(),
            ..a.clone()
        };
        let d = a.differences(&b, &text_differences);
        assert_eq!(
            d,
            [
                "dtype is f32 in the recorded run, f64 now",
                "spec line 3 is `d_model: 512` in the recorded run, `d_model: 256` now (1 line(s) differ)"
            ]
        );
        let x: Value =
            serde_json::json!({"model": {"d_model": 512, "vocab": 256}, "seq_lens": [1, 2]});
        let y: Value = serde_json::json!({"model": {"d_model": 256, "vocab": 256}, "seq_lens": [1], "quick": {}});
        assert_eq!(
            value_differences(&x, &y),
            [
                "model.d_model is 512 in the recorded run, 256 now",
                "quick is absent in the recorded run, {} now",
                "seq_lens is [1,2] in the recorded run, [1] now"
            ]
        );
    }
}
