//! Whole-model equivalence: GPT-mode `forward` in every WKV formulation equals repeated
//! RNN-mode `step`, from the empty state and from random states; splitting a sequence
//! and carrying the state equals one pass (also across formulations); batch rows are
//! independent; the model is causal. Random small models with randomised parameters and
//! random ablation switches.
//!
//! Tolerances (of `max(1, max |reference|)`): f64 1e-9 (the proof that the formulations
//! compute the same function); f32 2e-5 plus 8× the f32 recurrence's own distance from the
//! exact float64 run on the same input (see `common::f32_tolerance`: tiny random models can be
//! ill-conditioned, and the float64 test carries the exactness).

use proptest::prelude::*;
use rwkv::verify::{run_gpt, run_split};
use rwkv::{WkvBackend, WkvMode};

use crate::common::*;

fn modes(time: usize) -> Vec<WkvMode> {
    let mut m = vec![WkvMode::Recurrent, WkvMode::Parallel, WkvMode::Scan];
    for len in [1, 2, 3, 7, time] {
        m.push(WkvMode::Chunked { len });
    }
    m
}

fn cases() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        1usize..=3,
        1usize..=16,
        1usize..=20,
        1usize..=16,
        1usize..=3,
        1usize..=24,
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(
            |(seed, batch, time, vocab, c, layers, ffn, bits, with_state)| Case {
                seed,
                batch,
                time,
                vocab,
                c,
                layers,
                ffn,
                bits,
                with_state,
            },
        )
}

/// Every formulation's GPT-mode forward equals repeated RNN-mode steps on backend `B`,
/// within `tol` of the logits and the state; `tol` is `(logits, state)`.
fn gpt_equals_rnn<B: WkvBackend>(case: &Case, tol: (f64, f64)) -> Result<(), TestCaseError> {
    gpt_equals_rnn_in::<B>(case, tol, &modes(case.time))
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn forward_equals_repeated_step_f64(case in cases()) {
        gpt_equals_rnn::<F64>(&case, (1e-9, 1e-9))?;
    }

    #[test]
    fn forward_equals_repeated_step_f32(case in cases()) {
        gpt_equals_rnn::<F32>(&case, f32_tolerance(&case))?;
    }

    /// Split anywhere, carry the state (into the same or another formulation): equals one pass.
    #[test]
    fn split_and_carry_equals_one_pass(case in cases(), at in any::<proptest::sample::Index>(), second in 0usize..4) {
        prop_assume!(case.time >= 2);
        let (model, ids, _) = setup::<F64>(&case);
        let split = 1 + at.index(case.time - 1);
        let toks = || tokens::<F64>(&ids, case.batch, case.time);
        let whole = run_gpt(&model, toks(), None, WkvMode::Recurrent).unwrap();
        for mode in modes(case.time) {
            let got = run_split(&model, toks(), split, mode).unwrap();
            prop_assert!(scaled_err(&got.logits, &whole.logits) <= 1e-9, "{mode} split at {split}: logits");
            prop_assert!(scaled_err(&got.state, &whole.state) <= 1e-9, "{mode} split at {split}: state");
        }
        // first part in one formulation, second in another: the state is interchangeable
        let other = [WkvMode::Parallel, WkvMode::Scan, WkvMode::Chunked { len: 2 }, WkvMode::Recurrent][second];
        let b = case.batch;
        let (l1, s) = model.forward(toks().slice([0..b, 0..split]), None, WkvMode::Chunked { len: 3 }).unwrap();
        let (l2, s) = model.forward(toks().slice([0..b, split..case.time]), Some(s), other).unwrap();
        let logits = rwkv::verify::to_f64(burn::tensor::Tensor::cat(vec![l1, l2], 1));
        prop_assert!(scaled_err(&logits, &whole.logits) <= 1e-9, "chunked:3 then {other}");
        prop_assert!(scaled_err(&rwkv::verify::canonical_state(&s), &whole.state) <= 1e-9);
    }

    /// Changing tokens after position t never changes logits up to t.
    #[test]
    fn causal(case in cases(), at in any::<proptest::sample::Index>()) {
        prop_assume!(case.time >= 2 && case.vocab >= 2);
        let (model, ids, state) = setup::<F64>(&case);
        let t = at.index(case.time - 1); // positions 0..=t are kept
        let mut changed = ids.clone();
        for row in 0..case.batch {
            for pos in t + 1..case.time {
                let i = row * case.time + pos;
                changed[i] = (changed[i] + 1) % case.vocab as i64;
            }
        }
        let v = case.vocab;
        for mode in modes(case.time) {
            let a = run_gpt(&model, tokens::<F64>(&ids, case.batch, case.time), state.clone(), mode).unwrap();
            let b = run_gpt(&model, tokens::<F64>(&changed, case.batch, case.time), state.clone(), mode).unwrap();
            for row in 0..case.batch {
                let r = row * case.time * v..(row * case.time + t + 1) * v;
                prop_assert!(scaled_err(&a.logits[r.clone()], &b.logits[r]) <= 1e-12, "{mode}: output at <= {t} changed");
            }
        }
    }

    /// Each batch row alone gives what it gives inside the batch.
    #[test]
    fn batch_rows_are_independent(case in cases()) {
        prop_assume!(case.batch >= 2);
        let (model, ids, _) = setup::<F64>(&case);
        let (t, v) = (case.time, case.vocab);
        for mode in [WkvMode::Parallel, WkvMode::Chunked { len: 2 }, WkvMode::Scan] {
            let all = run_gpt(&model, tokens::<F64>(&ids, case.batch, t), None, mode).unwrap();
            for row in 0..case.batch {
                let one = run_gpt(&model, tokens::<F64>(&ids[row * t..(row + 1) * t], 1, t), None, mode).unwrap();
                let part = &all.logits[row * t * v..(row + 1) * t * v];
                prop_assert!(scaled_err(&one.logits, part) <= 1e-12, "{mode}: row {row}");
            }
        }
    }
}
