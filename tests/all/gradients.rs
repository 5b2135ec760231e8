//! Gradients through `parallel`, `chunked` and `scan` equal those through `recurrent`:
//! for the WKV inputs (time_decay, u, k, v and the initial state) and for every parameter
//! of a whole model, with B > 1. The scan's backward is hand-written, so this is its test
//! (besides the finite-difference unit test in `wkv::scan`).
//!
//! The loss reads the outputs and the final state in canonical form (the raw triple is
//! representation-dependent, see docs/design.md §3).

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use proptest::prelude::*;
use rwkv::verify::to_f64;
use rwkv::wkv::{WkvBackend, WkvMode};
use rwkv::{Decay, Rwkv, Variant};

use crate::common::*;

type AD64 = Autodiff<F64>;
type AD32 = Autodiff<F32>;

fn check_wkv_grads<B: AutodiffBackend + WkvBackend>(
    case: &WkvCase,
    tol: f64,
) -> Result<(), TestCaseError> {
    let oracle = wkv_grads::<B>(case, WkvMode::Recurrent);
    for g in &oracle {
        prop_assert!(all_finite(g), "recurrent gradient not finite");
    }
    for mode in [
        WkvMode::Parallel,
        WkvMode::Scan,
        WkvMode::Chunked { len: 1 },
        WkvMode::Chunked { len: 3 },
        WkvMode::Chunked { len: case.time },
    ] {
        let got = wkv_grads::<B>(case, mode);
        prop_assert_eq!(got.len(), oracle.len());
        for (i, (a, b)) in got.iter().zip(&oracle).enumerate() {
            let e = scaled_err(a, b);
            prop_assert!(
                e <= tol,
                "{}: d/d{} scaled error {:e} > {:e}",
                mode,
                NAMES[i],
                e,
                tol
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn wkv_gradients_agree_f64(b in 2usize..=3, t in 1usize..=12, c in 1usize..=6, seed in any::<u64>(), extreme in any::<bool>(), with_state in any::<bool>()) {
        let case = random_case(seed, b, t, c, extreme, with_state);
        check_wkv_grads::<AD64>(&case, 1e-9)?;
    }
}

#[test]
fn wkv_gradients_agree_f32() {
    for seed in 0..8 {
        let case = random_case(seed, 2, 10, 4, false, seed % 2 == 0);
        check_wkv_grads::<AD32>(&case, F32_GRAD_TOL).unwrap();
    }
}

/// Collects every float parameter's gradient in visiting order (`None` when a parameter
/// takes no part in the loss, e.g. a fixed decay).
struct Grads<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<Option<Vec<f64>>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Grads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push(param.val().grad(self.grads).map(to_f64));
    }
}

fn model_grads<B: AutodiffBackend + WkvBackend>(
    model: &Rwkv<B>,
    ids: &[i64],
    batch: usize,
    time: usize,
    mode: WkvMode,
) -> Vec<Option<Vec<f64>>> {
    let v = model.config.vocab_size;
    let (logits, state) = model
        .forward(tokens::<B>(ids, batch, time), None, mode)
        .unwrap();
    let mut loss = (logits * weights::<B, 3>(7, [batch, time, v])).sum();
    for (i, l) in state.layers.iter().enumerate() {
        let (mean, logden) = l.wkv.canonical();
        let [b, c] = mean.dims();
        loss = loss
            + (mean * weights::<B, 2>(10 + i as u64, [b, c])).sum()
            + (logden * weights::<B, 2>(20 + i as u64, [b, c])).sum();
    }
    let grads = loss.backward();
    let mut visitor = Grads::<B> {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

fn check_model_grads<B: AutodiffBackend + WkvBackend>(seed: u64, variant: Variant, tol: f64) {
    let (batch, time, vocab, c, layers) = (2, 7, 11, 6, 2);
    let model = random_model::<B>(seed, vocab, c, layers, 10, variant);
    let ids = random_tokens(seed, batch, time, vocab);
    let oracle = model_grads(&model, &ids, batch, time, WkvMode::Recurrent);
    assert_eq!(oracle.len(), model.num_params_tensors());
    assert!(
        oracle.iter().flatten().count() > 20,
        "most parameters get gradients"
    );
    for mode in [
        WkvMode::Parallel,
        WkvMode::Scan,
        WkvMode::Chunked { len: 3 },
    ] {
        let got = model_grads(&model, &ids, batch, time, mode);
        for (i, (a, b)) in got.iter().zip(&oracle).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => {
                    assert_close(&format!("seed {seed}, {mode}, parameter #{i}"), a, b, tol)
                }
                (None, None) => {}
                _ => panic!("{mode}: parameter #{i} has a gradient in one formulation only"),
            }
        }
    }
}

trait CountTensors {
    fn num_params_tensors(&self) -> usize;
}

impl<B: AutodiffBackend> CountTensors for Rwkv<B> {
    fn num_params_tensors(&self) -> usize {
        struct Count(usize);
        impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Count {
            fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
                self.0 += 1;
            }
        }
        let mut c = Count(0);
        self.visit(&mut c);
        c.0
    }
}

#[test]
fn model_gradients_agree_f64() {
    for seed in 0..4 {
        check_model_grads::<AD64>(seed, Variant::default(), 1e-9);
        check_model_grads::<AD64>(seed, variant_from_bits(seed as u32 * 37 + 1), 1e-9);
    }
}

#[test]
fn model_gradients_agree_f32() {
    check_model_grads::<AD32>(9, Variant::default(), F32_GRAD_TOL);
}

/// Ablation semantics: a fixed decay gets no gradient, a learned one does.
#[test]
fn fixed_decay_receives_no_gradient() {
    for (decay, expect) in [
        (Decay::Learned, true),
        (Decay::Fixed, false),
        (Decay::Off, false),
    ] {
        let model = random_model::<AD64>(
            1,
            9,
            4,
            1,
            8,
            Variant {
                decay,
                ..Variant::default()
            },
        );
        let ids = random_tokens(1, 2, 5, 9);
        let (logits, _) = model
            .forward(tokens::<AD64>(&ids, 2, 5), None, WkvMode::Scan)
            .unwrap();
        let grads = logits.sum().backward();
        let g = model.blocks[0].att.time_decay.val().grad(&grads);
        assert_eq!(g.is_some(), expect, "{decay:?}");
    }
}
