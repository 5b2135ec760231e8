//! Dimension inference: the model configuration a file's tensors imply (V and C from the
//! embedding, L from the block numbers, F from block 0's channel-mix key, `ln0` from block 0).

use std::collections::BTreeSet;

use rwkv::{BlockParam, RwkvConfig, RwkvParam, Variant};

use crate::error::{CheckpointError, Result};
use crate::keys::Renamed;

/// The config of `t` (LayerNorm epsilon at its default; `config.json` may set it).
pub(crate) fn infer_config(t: &Renamed) -> Result<RwkvConfig> {
    let path = || t.path.clone();
    let missing = |name: &str, more: String| CheckpointError::MissingKey {
        path: path(),
        key: t.file_key(name),
        more,
    };
    let emb = RwkvParam::Embedding.key();
    let [vocab, d_model] = match t.shape(&emb) {
        Some(&[v, c]) => [v, c],
        Some(other) => {
            return Err(CheckpointError::Shape {
                path: path(),
                key: t.file_key(&emb),
                expected: vec![0, 0],
                got: other.to_vec(),
            });
        }
        None => return Err(missing(&emb, String::new())),
    };
    let blocks: BTreeSet<usize> = t
        .tensors
        .keys()
        .filter_map(|k| rwkv::split_block_key(k).0)
        .collect();
    let n_layers = blocks.len();
    if n_layers == 0 {
        return Err(CheckpointError::Invalid {
            path: path(),
            reason: "no `blocks.N.` tensors: not an RWKV model".into(),
        });
    }
    let block = |layer, param| RwkvParam::Block { layer, param }.key();
    if let Some(gap) = (0..n_layers).find(|l| !blocks.contains(l)) {
        let last = blocks.iter().next_back().copied().unwrap_or(0);
        return Err(missing(
            &block(gap, BlockParam::AttKey),
            format!(" (block {gap} is absent while block {last} exists)"),
        ));
    }
    let ffn_key = block(0, BlockParam::FfnKey);
    let d_ffn = match t.shape(&ffn_key) {
        Some(&[f, _]) => f,
        Some(other) => {
            return Err(CheckpointError::Shape {
                path: path(),
                key: t.file_key(&ffn_key),
                expected: vec![4 * d_model, d_model],
                got: other.to_vec(),
            });
        }
        None => return Err(missing(&ffn_key, String::new())),
    };
    let ln0 = [BlockParam::Ln0Weight, BlockParam::Ln0Bias]
        .iter()
        .any(|&p| t.tensors.contains_key(&block(0, p)));
    Ok(
        RwkvConfig::new(vocab, d_model, n_layers, d_ffn).with_variant(Variant {
            ln0,
            ..Variant::default()
        }),
    )
}
