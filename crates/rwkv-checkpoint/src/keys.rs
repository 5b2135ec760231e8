//! Key names: BlinkDL (the canonical names here, mirrored by the model's parameters) and
//! Hugging Face `RwkvForCausalLM`, the expected key set of an RWKV-4 model, and the keys
//! that give away other RWKV generations.

/// HF name → BlinkDL name; `None` when the key is not an HF RWKV-4 name.
pub fn hf_to_blinkdl(key: &str) -> Option<String> {
    if key == "head.weight" {
        return Some(key.into());
    }
    let rest = key.strip_prefix("rwkv.")?;
    if let Some(r) = rest.strip_prefix("embeddings.") {
        return Some(format!("emb.{r}"));
    }
    if rest.starts_with("ln_out.") {
        return Some(rest.into());
    }
    let r = rest.strip_prefix("blocks.")?;
    let (n, r) = r.split_once('.')?;
    n.parse::<usize>().ok()?;
    let r = if let Some(x) = r.strip_prefix("pre_ln.") {
        format!("ln0.{x}")
    } else if let Some(x) = r.strip_prefix("attention.") {
        format!("att.{}", short_mix(x))
    } else if let Some(x) = r.strip_prefix("feed_forward.") {
        format!("ffn.{}", short_mix(x))
    } else {
        r.to_string()
    };
    Some(format!("blocks.{n}.{r}"))
}

/// BlinkDL name → HF name.
pub fn blinkdl_to_hf(key: &str) -> String {
    if key == "head.weight" {
        return key.into();
    }
    if let Some(r) = key.strip_prefix("emb.") {
        return format!("rwkv.embeddings.{r}");
    }
    if key.starts_with("ln_out.") {
        return format!("rwkv.{key}");
    }
    if let Some(r) = key.strip_prefix("blocks.")
        && let Some((n, r)) = r.split_once('.')
    {
        let r = if let Some(x) = r.strip_prefix("ln0.") {
            format!("pre_ln.{x}")
        } else if let Some(x) = r.strip_prefix("att.") {
            format!("attention.{}", long_mix(x))
        } else if let Some(x) = r.strip_prefix("ffn.") {
            format!("feed_forward.{}", long_mix(x))
        } else {
            r.to_string()
        };
        return format!("rwkv.blocks.{n}.{r}");
    }
    key.into()
}

fn short_mix(x: &str) -> String {
    match x {
        "time_mix_key" => "time_mix_k".into(),
        "time_mix_value" => "time_mix_v".into(),
        "time_mix_receptance" => "time_mix_r".into(),
        other => other.into(),
    }
}

fn long_mix(x: &str) -> String {
    match x {
        "time_mix_k" => "time_mix_key".into(),
        "time_mix_v" => "time_mix_value".into(),
        "time_mix_r" => "time_mix_receptance".into(),
        other => other.into(),
    }
}

/// What one parameter of an RWKV-4 model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `[V, C]`.
    Embedding,
    /// `[out, in]` in the file.
    Linear { d_out: usize, d_in: usize },
    /// `[C]`.
    Vector,
    /// `[C]`, `[1, C]` or `[1, 1, C]` (token-shift mixes).
    Mix,
}

/// Dimensions of an RWKV-4 model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// V.
    pub vocab: usize,
    /// C.
    pub d_model: usize,
    /// L.
    pub n_layers: usize,
    /// F.
    pub d_ffn: usize,
    /// Whether block 0 has `ln0`.
    pub ln0: bool,
}

/// Every key of an RWKV-4 model with these dimensions, with its role.
pub fn expected(d: Dims) -> Vec<(String, Role)> {
    let (v, c, f) = (d.vocab, d.d_model, d.d_ffn);
    let mut out = vec![("emb.weight".to_string(), Role::Embedding)];
    for l in 0..d.n_layers {
        let p = format!("blocks.{l}.");
        let mut lns = vec!["ln1", "ln2"];
        if l == 0 && d.ln0 {
            lns.insert(0, "ln0");
        }
        for ln in lns {
            out.push((format!("{p}{ln}.weight"), Role::Vector));
            out.push((format!("{p}{ln}.bias"), Role::Vector));
        }
        for m in [
            "att.time_mix_k",
            "att.time_mix_v",
            "att.time_mix_r",
            "ffn.time_mix_k",
            "ffn.time_mix_r",
        ] {
            out.push((format!("{p}{m}"), Role::Mix));
        }
        out.push((format!("{p}att.time_decay"), Role::Vector));
        out.push((format!("{p}att.time_first"), Role::Vector));
        for m in ["key", "value", "receptance", "output"] {
            out.push((
                format!("{p}att.{m}.weight"),
                Role::Linear { d_out: c, d_in: c },
            ));
        }
        out.push((
            format!("{p}ffn.key.weight"),
            Role::Linear { d_out: f, d_in: c },
        ));
        out.push((
            format!("{p}ffn.receptance.weight"),
            Role::Linear { d_out: c, d_in: c },
        ));
        out.push((
            format!("{p}ffn.value.weight"),
            Role::Linear { d_out: c, d_in: f },
        ));
    }
    out.push(("ln_out.weight".into(), Role::Vector));
    out.push(("ln_out.bias".into(), Role::Vector));
    out.push(("head.weight".into(), Role::Linear { d_out: v, d_in: c }));
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let d = Dims {
            vocab: 5,
            d_model: 4,
            n_layers: 3,
            d_ffn: 16,
            ln0: true,
        };
        for (k, _) in expected(d) {
            let hf = blinkdl_to_hf(&k);
            assert_eq!(
                hf_to_blinkdl(&hf).as_deref(),
                Some(k.as_str()),
                "{k} -> {hf}"
            );
        }
        assert_eq!(
            blinkdl_to_hf("blocks.0.ln0.weight"),
            "rwkv.blocks.0.pre_ln.weight"
        );
        assert_eq!(
            blinkdl_to_hf("blocks.2.att.time_mix_k"),
            "rwkv.blocks.2.attention.time_mix_key"
        );
        assert_eq!(
            blinkdl_to_hf("blocks.2.ffn.key.weight"),
            "rwkv.blocks.2.feed_forward.key.weight"
        );
        assert_eq!(hf_to_blinkdl("rwkv.something"), None);
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
