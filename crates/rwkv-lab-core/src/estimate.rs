//! Working-memory estimates, checked against a memory budget before anything is run: a
//! measurement estimated above the budget is recorded (or reported) as skipped instead.
//!
//! Each estimate counts the largest live intermediates, in elements of the float type,
//! times its size. Products saturate rather than wrap, so an absurd size is an absurd
//! estimate (and a skip), never a small one.

use lab_records::Model;
use rwkv::WkvMode;

use crate::scaling::Subject;
use crate::spec::ScalingSpec;

/// The product of `factors`, saturating at `u64::MAX`.
fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |acc, &x| acc.saturating_mul(x))
}

/// The WKV operator alone on `[b, t, c]` inputs: inputs, outputs and the recurrence's
/// carried vectors (linear forms), plus the `[T, T]` (parallel) or `[L, L]` per block
/// (chunked) weights of each channel.
pub fn wkv_bytes(mode: WkvMode, b: usize, t: usize, c: usize, elem: usize) -> u64 {
    let (b, t, c, e) = (b as u64, t as u64, c as u64, elem as u64);
    match mode {
        WkvMode::Recurrent => product(&[8, b, t, c, e]),
        WkvMode::Scan => product(&[6, b, t, c, e]),
        WkvMode::Parallel => product(&[4, b, c, t, t, e]).saturating_add(product(&[6, b, t, c, e])),
        WkvMode::Chunked { len } => {
            let l = (len as u64).min(t);
            product(&[4, b, c, t, l, e]).saturating_add(product(&[8, b, t, c, e]))
        }
    }
}

/// The activations of one forward of either model over `[b, t]` tokens: about 16 vectors
/// of width C per token (the block's projections, the 4C MLP) and the `[b, t, V]` logits.
fn activation_bytes(spec: &ScalingSpec, t: usize, elem: usize) -> u64 {
    let m = &spec.model;
    let (c, v) = (m.d_model.get() as u64, m.vocab.get() as u64);
    let per_token = (16u64.saturating_mul(c)).saturating_add(v);
    product(&[spec.batch.get() as u64, t as u64, per_token, elem as u64])
}

/// One prefill of `t` tokens: activations plus the sequence mixing (the WKV operator, or
/// the transformer's `[H, T, T]` scores, softmax and mask).
pub fn prefill_bytes(spec: &ScalingSpec, subject: Subject, t: usize, elem: usize) -> u64 {
    let m = &spec.model;
    let b = spec.batch.get();
    let mixing = match subject {
        Subject::Rwkv(mode) => wkv_bytes(mode, b, t, m.d_model.get(), elem),
        Subject::Transformer(_) => product(&[
            3,
            b as u64,
            m.n_heads.get() as u64,
            t as u64,
            t as u64,
            elem as u64,
        ]),
    };
    activation_bytes(spec, t, elem).saturating_add(mixing)
}

/// One generation run of the spec (`prompt_len` prompt tokens, then `new_tokens` steps):
/// the larger of the prompt's prefill (RWKV: the parallel form; the transformer: explicit
/// attention) and a step at the full context, which holds the state or the whole KV cache
/// (`2·L·B·T·C` values) and, for the transformer, one row of scores per head.
pub fn generation_bytes(spec: &ScalingSpec, model: Model, elem: usize) -> u64 {
    let Some(g) = spec.generation.as_ref() else {
        return 0;
    };
    let m = &spec.model;
    let (prompt, context) = (g.prompt_len.get(), g.prompt_len.get() + g.new_tokens.get());
    let (b, c, l, h, e) = (
        spec.batch.get() as u64,
        m.d_model.get() as u64,
        m.n_layers.get() as u64,
        m.n_heads.get() as u64,
        elem as u64,
    );
    let (prompt_subject, carried) = if model == Model::Rwkv {
        (Subject::Rwkv(WkvMode::Parallel), product(&[5, l, b, c, e]))
    } else {
        let cache = product(&[2, l, b, context as u64, c, e]);
        let scores = product(&[3, b, h, context as u64, e]);
        (
            Subject::Transformer(crate::spec::Attention::Explicit),
            cache.saturating_add(scores),
        )
    };
    let step = activation_bytes(spec, 1, elem).saturating_add(carried);
    prefill_bytes(spec, prompt_subject, prompt, elem).max(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadratic_forms_grow_as_t_squared_and_sizes_saturate() {
        let (p1, p2) = (
            wkv_bytes(WkvMode::Parallel, 1, 1000, 64, 4),
            wkv_bytes(WkvMode::Parallel, 1, 2000, 64, 4),
        );
        assert!(p2 > 3 * p1 && p2 < 5 * p1);
        let (s1, s2) = (
            wkv_bytes(WkvMode::Scan, 1, 1000, 64, 4),
            wkv_bytes(WkvMode::Scan, 1, 2000, 64, 4),
        );
        assert_eq!(s2, 2 * s1);
        assert_eq!(
            wkv_bytes(WkvMode::Chunked { len: 4096 }, 1, 100, 8, 4),
            wkv_bytes(WkvMode::Chunked { len: 100 }, 1, 100, 8, 4)
        );
        assert_eq!(
            wkv_bytes(WkvMode::Parallel, 1 << 20, 1 << 30, 1 << 20, 8),
            u64::MAX
        );
    }
}
