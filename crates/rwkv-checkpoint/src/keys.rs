//! Key names: BlinkDL (the canonical names, those of the parameter table in
//! [`rwkv::params`]) and Hugging Face `RwkvForCausalLM`, renamed in either direction by one
//! table; the keys that give away other RWKV generations; and the renaming of a file's keys
//! (the "key renaming" step of loading).

use std::collections::BTreeMap;

use burn_store::TensorSnapshot;

use crate::error::{CheckpointError, Result};

/// The renaming table, `(BlinkDL, Hugging Face)`: read left to right for BlinkDL → HF and
/// right to left for HF → BlinkDL. An entry ending in `.` renames a prefix, any other a
/// whole name; the first entry that matches applies.
const TOP_LEVEL: &[(&str, &str)] = &[
    ("head.weight", "head.weight"),
    ("emb.", "rwkv.embeddings."),
    ("ln_out.", "rwkv.ln_out."),
    (BLOCKS.0, BLOCKS.1),
];

/// The block prefix; what follows `blocks.N.` is renamed by [`IN_BLOCK`] (or kept).
const BLOCKS: (&str, &str) = ("blocks.", "rwkv.blocks.");

/// Names inside `blocks.N.`; whole names before the prefixes they start with.
const IN_BLOCK: &[(&str, &str)] = &[
    ("att.time_mix_k", "attention.time_mix_key"),
    ("att.time_mix_v", "attention.time_mix_value"),
    ("att.time_mix_r", "attention.time_mix_receptance"),
    ("ffn.time_mix_k", "feed_forward.time_mix_key"),
    ("ffn.time_mix_r", "feed_forward.time_mix_receptance"),
    ("ln0.", "pre_ln."),
    ("att.", "attention."),
    ("ffn.", "feed_forward."),
];

/// Renames `key` from one side of a table to the other (`to_hf`: BlinkDL → HF). `None` when
/// no top-level entry matches or the block number is not a number.
fn rename(key: &str, to_hf: bool) -> Option<String> {
    let side = |&(blinkdl, hf): &(&'static str, &'static str)| {
        if to_hf { (blinkdl, hf) } else { (hf, blinkdl) }
    };
    let apply = |table: &[(&'static str, &'static str)], name: &str| {
        table.iter().map(side).find_map(|(from, to)| {
            let rest = if from.ends_with('.') {
                name.strip_prefix(from)?
            } else {
                (name == from).then_some("")?
            };
            Some(format!("{to}{rest}"))
        })
    };
    let (from_blocks, to_blocks) = side(&BLOCKS);
    if let Some(rest) = key.strip_prefix(from_blocks) {
        let (n, name) = rest.split_once('.')?;
        n.parse::<usize>().ok()?;
        let name = apply(IN_BLOCK, name).unwrap_or_else(|| name.to_string());
        return Some(format!("{to_blocks}{n}.{name}"));
    }
    apply(TOP_LEVEL, key)
}

/// HF name → BlinkDL name; `None` when the key is not an HF RWKV-4 name.
pub fn hf_to_blinkdl(key: &str) -> Option<String> {
    rename(key, false)
}

/// BlinkDL name → HF name (a key outside the table is returned unchanged).
pub fn blinkdl_to_hf(key: &str) -> String {
    rename(key, true).unwrap_or_else(|| key.to_string())
}

/// Keys that only later RWKV generations have: `(generation, key suffix)`.
const OTHER_GENERATIONS: &[(&str, &str)] = &[
    ("7", ".w0"),
    ("7", ".a0"),
    ("7", ".v0"),
    ("7", ".k_k"),
    ("7", ".k_a"),
    ("7", ".r_k"),
    ("7", ".x_r"),
    ("7", ".g1"),
    ("6", ".time_maa_x"),
    ("6", ".time_maa_w"),
    ("6", ".time_maa_k"),
    ("6", ".time_maa_w1"),
    ("6", ".time_decay_w1"),
    ("5/6", ".time_faaaa"),
    ("5/6", ".ln_x.weight"),
    ("5/6", ".ln_x.bias"),
    ("5", ".time_mix_g"),
    ("5/6", ".gate.weight"),
];

/// The first key that marks a later RWKV generation, if any.
pub fn other_generation<'a>(
    keys: impl IntoIterator<Item = &'a String>,
) -> Option<(&'static str, String)> {
    let keys: Vec<&String> = keys.into_iter().collect();
    for (version, suffix) in OTHER_GENERATIONS {
        if let Some(k) = keys
            .iter()
            .find(|k| k.ends_with(suffix) || k.as_str() == &suffix[1..])
        {
            return Some((version, (*k).clone()));
        }
    }
    None
}

/// A file's tensors under their BlinkDL names, each with the name it has in the file.
pub(crate) struct Renamed {
    /// The file, for messages.
    pub path: String,
    /// Whether the file uses Hugging Face names.
    pub hf: bool,
    /// BlinkDL name → (name in the file, tensor).
    pub tensors: BTreeMap<String, (String, TensorSnapshot)>,
    /// Names in the file that have no BlinkDL name.
    pub unknown: Vec<String>,
}

impl Renamed {
    /// Rejects later RWKV generations, then renames HF keys (a file whose keys start with
    /// `rwkv.`) to BlinkDL ones.
    pub fn new(path: &str, raw: BTreeMap<String, TensorSnapshot>) -> Result<Self> {
        if let Some((version, key)) = other_generation(raw.keys()) {
            return Err(CheckpointError::OtherVersion {
                path: path.into(),
                version,
                key,
            });
        }
        let hf = raw.keys().any(|k| k.starts_with("rwkv."));
        let mut tensors = BTreeMap::new();
        let mut unknown = Vec::new();
        for (key, snapshot) in raw {
            let name = if hf {
                hf_to_blinkdl(&key)
            } else {
                Some(key.clone())
            };
            match name {
                Some(name) => {
                    tensors.insert(name, (key, snapshot));
                }
                None => unknown.push(key),
            }
        }
        Ok(Self {
            path: path.into(),
            hf,
            tensors,
            unknown,
        })
    }

    /// The name a BlinkDL key has (or would have) in this file, for messages.
    pub fn file_key(&self, name: &str) -> String {
        if self.hf {
            blinkdl_to_hf(name)
        } else {
            name.to_string()
        }
    }

    /// The shape of the tensor named `name` (BlinkDL), if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(_, s)| s.shape.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let cfg = rwkv::RwkvConfig::new(5, 4, 3, 16);
        for spec in cfg.params() {
            let k = spec.key;
            let hf = blinkdl_to_hf(&k);
            assert_eq!(
                hf_to_blinkdl(&hf).as_deref(),
                Some(k.as_str()),
                "{k} -> {hf}"
            );
            assert!(hf.starts_with("rwkv.") || hf == "head.weight", "{hf}");
        }
        for (blinkdl, hf) in [
            ("blocks.0.ln0.weight", "rwkv.blocks.0.pre_ln.weight"),
            (
                "blocks.2.att.time_mix_k",
                "rwkv.blocks.2.attention.time_mix_key",
            ),
            (
                "blocks.1.ffn.time_mix_r",
                "rwkv.blocks.1.feed_forward.time_mix_receptance",
            ),
            (
                "blocks.2.ffn.key.weight",
                "rwkv.blocks.2.feed_forward.key.weight",
            ),
            ("blocks.0.ln1.bias", "rwkv.blocks.0.ln1.bias"),
            ("emb.weight", "rwkv.embeddings.weight"),
            ("ln_out.bias", "rwkv.ln_out.bias"),
            ("head.weight", "head.weight"),
        ] {
            assert_eq!(blinkdl_to_hf(blinkdl), hf);
            assert_eq!(hf_to_blinkdl(hf).as_deref(), Some(blinkdl));
        }
        // unknown names inside a block are kept (and later reported as unexpected)
        assert_eq!(
            hf_to_blinkdl("rwkv.blocks.0.attention.bonus_bias").as_deref(),
            Some("blocks.0.att.bonus_bias")
        );
        assert_eq!(hf_to_blinkdl("rwkv.something"), None);
        assert_eq!(hf_to_blinkdl("rwkv.blocks.x.ln1.weight"), None);
        assert_eq!(hf_to_blinkdl("head.bias"), None);
        assert_eq!(blinkdl_to_hf("something.else"), "something.else");
    }

    #[test]
    fn later_generations_are_recognised() {
        let k = |s: &str| vec![s.to_string()];
        assert_eq!(
            other_generation(&k("blocks.0.att.time_faaaa")).unwrap().0,
            "5/6"
        );
        assert_eq!(
            other_generation(&k("blocks.3.att.time_maa_x")).unwrap().0,
            "6"
        );
        assert_eq!(other_generation(&k("blocks.0.att.w0")).unwrap().0, "7");
        assert_eq!(
            other_generation(&k("rwkv.blocks.0.attention.ln_x.weight"))
                .unwrap()
                .0,
            "5/6"
        );
        assert!(other_generation(&k("blocks.0.att.time_first")).is_none());
    }
}
