//! The key-set check: every parameter of the table present with an accepted shape, nothing
//! else; a later block that disagrees with block 0 on C or F is named as such.

use std::collections::BTreeSet;

use rwkv::{BlockParam, ParamSpec, RwkvConfig, RwkvParam};

use crate::error::{CheckpointError, Result, and_more};
use crate::keys::Renamed;
use crate::layout;

/// Checks `t` against the parameters of `config` (inferred from `t`).
pub(crate) fn check_keys(t: &Renamed, config: &RwkvConfig) -> Result<()> {
    let expected = config.params();
    let missing: Vec<&ParamSpec> = expected
        .iter()
        .filter(|s| !t.tensors.contains_key(&s.key))
        .collect();
    if let Some(first) = missing.first() {
        return Err(CheckpointError::MissingKey {
            path: t.path.clone(),
            key: t.file_key(&first.key),
            more: and_more(missing.len() - 1),
        });
    }
    let known: BTreeSet<&String> = expected.iter().map(|s| &s.key).collect();
    let unexpected: Vec<&String> = t
        .unknown
        .iter()
        .chain(
            t.tensors
                .iter()
                .filter(|(name, _)| !known.contains(name))
                .map(|(_, (key, _))| key),
        )
        .collect();
    if let Some(first) = unexpected.first() {
        return Err(CheckpointError::UnexpectedKey {
            path: t.path.clone(),
            key: (*first).clone(),
            more: and_more(unexpected.len() - 1),
        });
    }
    for spec in &expected {
        let (key, snapshot) = &t.tensors[&spec.key];
        check_shape(&t.path, key, spec, &snapshot.shape, config)?;
    }
    Ok(())
}

/// An accepted shape, or a clear error: "inconsistent layers" when a later block disagrees
/// with block 0 on C or F, a shape error else.
fn check_shape(
    path: &str,
    key: &str,
    spec: &ParamSpec,
    got: &[usize],
    config: &RwkvConfig,
) -> Result<()> {
    if layout::accepts(spec, got) {
        return Ok(());
    }
    let expected = layout::file_shape(spec);
    let (c, f) = (config.d_model, config.d_ffn);
    let later_block = spec.param.layer().is_some_and(|l| l > 0);
    let same_rank =
        got.len() == expected.len() || (spec.param.is_token_shift_mix() && !got.is_empty());
    if later_block && same_rank {
        let inconsistent =
            |dim: &'static str, got: usize, expected: usize| CheckpointError::Inconsistent {
                path: path.into(),
                key: key.into(),
                dim,
                got,
                expected,
            };
        // F is the first file dimension of ffn.key and the second of ffn.value
        match spec.param {
            RwkvParam::Block {
                param: BlockParam::FfnKey,
                ..
            } if got[0] != f => return Err(inconsistent("d_ffn", got[0], f)),
            RwkvParam::Block {
                param: BlockParam::FfnValue,
                ..
            } if got[1] != f => return Err(inconsistent("d_ffn", got[1], f)),
            _ => {}
        }
        if let Some(&other) = got.iter().find(|&&x| x != c && x != 1 && x != f) {
            return Err(inconsistent("d_model", other, c));
        }
    }
    Err(CheckpointError::Shape {
        path: path.into(),
        key: key.into(),
        expected,
        got: got.to_vec(),
    })
}
