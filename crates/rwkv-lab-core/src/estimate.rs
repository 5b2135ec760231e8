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

/// What a device can hold, checked before a measurement runs: the memory budget (total
/// working memory) and, on GPUs, the largest single buffer the device allocates (wgpu:
/// the adapter's `max_storage_buffer_binding_size`, as CubeCL reads it: 128 MiB on
/// lavapipe, up to 2 GiB on most Vulkan drivers; CUDA: a quarter of device memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Bytes of working memory a measurement may use.
    pub memory_budget: u64,
    /// Bytes of the largest single buffer; None where there is no such limit (CPU).
    pub max_buffer: Option<u64>,
}

impl DeviceLimits {
    /// Limits of a CPU backend: the budget only.
    pub fn budget(memory_budget: u64) -> Self {
        DeviceLimits {
            memory_budget,
            max_buffer: None,
        }
    }

    /// None when a measurement estimated at `total` bytes of working memory, whose largest
    /// tensor is `largest` bytes, fits; otherwise why it must be skipped (the sentence
    /// recorded in the row's note).
    pub fn check(&self, total: u64, largest: u64) -> Option<String> {
        let show = |b: u64| lab_util::fmt_bytes(b as f64);
        if let Some(max) = self.max_buffer.filter(|&m| largest > m) {
            return Some(format!(
                "its largest tensor is estimated at {}, more than the device's largest single \
                 buffer ({})",
                show(largest),
                show(max)
            ));
        }
        (total > self.memory_budget).then(|| {
            format!(
                "estimated at {}, more than the memory budget of {}",
                show(total),
                show(self.memory_budget)
            )
        })
    }
}

/// The largest single tensor of the WKV operator on `[b, t, c]` inputs: the `[B, T, T, C]`
/// weights of the parallel form, the `[B, T/L, C, L, L]` block weights of `chunked:L`, the
/// scan's packed `[B, T + 3, C]` output, the recurrence's `[B, T, C]` output.
pub fn wkv_largest_bytes(mode: WkvMode, b: usize, t: usize, c: usize, elem: usize) -> u64 {
    let (b, t, c, e) = (b as u64, t as u64, c as u64, elem as u64);
    match mode {
        WkvMode::Parallel => product(&[b, t, t, c, e]),
        WkvMode::Chunked { len } => product(&[b, t, (len as u64).min(t), c, e]),
        WkvMode::Scan => product(&[b, t.saturating_add(3), c, e]),
        WkvMode::Recurrent => product(&[b, t, c, e]),
    }
}

/// The largest single tensor of one RWKV forward of `config` over `[b, t]` tokens in
/// `mode`: the embedding and head matrices (`V·C`), the logits (`B·T·V`), the channel
/// mix's hidden layer (`B·T·F`) or the WKV operator's own ([`wkv_largest_bytes`]).
pub fn rwkv_largest_bytes(
    config: &rwkv::RwkvConfig,
    b: usize,
    t: usize,
    mode: WkvMode,
    elem: usize,
) -> u64 {
    let (v, c, f) = (
        config.vocab_size as u64,
        config.d_model as u64,
        config.d_ffn as u64,
    );
    let (bu, tu, e) = (b as u64, t as u64, elem as u64);
    [
        product(&[v, c, e]),
        product(&[bu, tu, v, e]),
        product(&[bu, tu, f, e]),
        wkv_largest_bytes(mode, b, t, config.d_model, elem),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}

/// The largest single tensor of one prefill of the scaling spec: RWKV's
/// ([`rwkv_largest_bytes`]) or the transformer's, whose `[B, H, T, T]` scores (explicit
/// attention) or `[B, T, 4C]` MLP hidden layer and logits are the largest.
pub fn prefill_largest_bytes(spec: &ScalingSpec, subject: Subject, t: usize, elem: usize) -> u64 {
    let m = &spec.model;
    let b = spec.batch.get();
    match subject {
        Subject::Rwkv(mode) => {
            let config = rwkv::RwkvConfig::rwkv4(m.vocab.get(), m.d_model.get(), m.n_layers.get());
            rwkv_largest_bytes(&config, b, t, mode, elem)
        }
        Subject::Transformer(_) => {
            let (bu, tu, c, v, h, e) = (
                b as u64,
                t as u64,
                m.d_model.get() as u64,
                m.vocab.get() as u64,
                m.n_heads.get() as u64,
                elem as u64,
            );
            [
                product(&[bu, h, tu, tu, e]),
                product(&[bu, tu, 4, c, e]),
                product(&[bu, tu, v, e]),
                product(&[v, c, e]),
            ]
            .into_iter()
            .max()
            .unwrap_or(0)
        }
    }
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

    #[test]
    fn largest_tensor_and_the_device_limits() {
        // the bench-wkv case lavapipe could not allocate (C = 768, T = 1024, chunked:64):
        // [1, 16, 768, 64, 64] f32 = 192 MiB > 128 MiB; C = 512 is exactly 128 MiB and ran
        let chunk = WkvMode::Chunked { len: 64 };
        assert_eq!(wkv_largest_bytes(chunk, 1, 1024, 768, 4), 192 << 20);
        assert_eq!(wkv_largest_bytes(chunk, 1, 1024, 512, 4), 128 << 20);
        assert_eq!(
            wkv_largest_bytes(WkvMode::Parallel, 1, 1024, 512, 4),
            2048 << 20
        );
        let lavapipe = DeviceLimits {
            memory_budget: 1 << 40,
            max_buffer: Some(128 << 20),
        };
        assert_eq!(lavapipe.check(1 << 30, 128 << 20), None);
        let why = lavapipe.check(1 << 30, 192 << 20).unwrap();
        assert!(why.contains("largest single buffer"), "{why}");
        let why = DeviceLimits::budget(1 << 20).check(2 << 20, 1).unwrap();
        assert!(why.contains("memory budget"), "{why}");
        // the 169M shape's largest tensor at T = 1: the embedding, 50,277 x 768 f32
        let config = rwkv::RwkvConfig::rwkv4(50_277, 768, 12);
        assert_eq!(
            rwkv_largest_bytes(&config, 1, 1, WkvMode::Scan, 4),
            50_277 * 768 * 4
        );
        assert_eq!(
            rwkv_largest_bytes(&config, 1, 4096, WkvMode::Scan, 4),
            4096 * 50_277 * 4
        );
    }
}
