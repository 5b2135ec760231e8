//! The CPU decoder (`rwkv::decode::CpuDecoder`) equals the model's RNN mode: logits and
//! final state after a run of tokens (batches decoded row by row), from the empty state and
//! from random states, for random models with random ablation switches; the state converts both ways unchanged;
//! bad input is refused with the state untouched.
//!
//! Tolerance, as in `model_equiv`: the decoder's distance from the exact float64 run of the
//! model must be within `2e-5 + 8·E` (of `max(1, max |reference|)`), where `E` is the f32
//! model's own distance from float64 on the same input. The decoder is f32 arithmetic in
//! another summation order, so it must land where the f32 model lands; a wrong step (a
//! missing token shift, a transposed weight, a wrong decay) is O(1) away.

use proptest::prelude::*;
use rwkv::decode::{CpuDecoder, DecoderState, run_decoder};
use rwkv::verify::run_rnn;
use rwkv::{Rwkv, RwkvError, Variant};

use crate::common::*;
use crate::generate_text::cli;

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    batch: usize,
    time: usize,
    vocab: usize,
    c: usize,
    layers: usize,
    ffn: usize,
    bits: u32,
    with_state: bool,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        1usize..=3,
        1usize..=12,
        1usize..=20,
        1usize..=40,
        1usize..=3,
        1usize..=48,
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

fn check(case: &Case) -> Result<(), TestCaseError> {
    let variant = variant_from_bits(case.bits);
    let m32 = random_model::<F32>(
        case.seed,
        case.vocab,
        case.c,
        case.layers,
        case.ffn,
        variant.clone(),
    );
    let m64 = random_model::<F64>(
        case.seed,
        case.vocab,
        case.c,
        case.layers,
        case.ffn,
        variant,
    );
    let (b, t) = (case.batch, case.time);
    let ids = random_tokens(case.seed, b, t, case.vocab);
    let s32 = case
        .with_state
        .then(|| random_state::<F32>(case.seed, case.layers, b, case.c));
    let s64 = case
        .with_state
        .then(|| random_state::<F64>(case.seed, case.layers, b, case.c));
    let exact = run_rnn(&m64, tokens::<F64>(&ids, b, t), s64).unwrap();
    let model32 = run_rnn(&m32, tokens::<F32>(&ids, b, t), s32.clone()).unwrap();
    let dec = run_decoder(&m32, tokens::<F32>(&ids, b, t), s32).unwrap();
    prop_assert!(all_finite(&dec.logits) && all_finite(&dec.state));
    let tol = |e: f64| 2e-5 + 8.0 * e;
    let (tl, ts) = (
        tol(scaled_err(&model32.logits, &exact.logits)),
        tol(scaled_err(&model32.state, &exact.state)),
    );
    let el = scaled_err(&dec.logits, &exact.logits);
    prop_assert!(el <= tl, "logits: decoder {el:e} from exact > {tl:e}");
    let es = scaled_err(&dec.state, &exact.state);
    prop_assert!(es <= ts, "state: decoder {es:e} from exact > {ts:e}");
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn decoder_equals_rnn_mode(case in cases()) {
        check(&case)?;
    }
}

/// A model large enough that every product runs on the thread pool (C = 256, F = 1024,
/// V = 1000) and the AVX2 kernel's main loop is used: 24 tokens against the f32 model.
#[test]
fn decoder_equals_rnn_mode_at_a_threaded_size() {
    let m = random_model::<F32>(11, 1000, 256, 2, 1024, Variant::default());
    let ids = random_tokens(3, 1, 24, 1000);
    let model = run_rnn(&m, tokens::<F32>(&ids, 1, 24), None).unwrap();
    let dec = run_decoder(&m, tokens::<F32>(&ids, 1, 24), None).unwrap();
    let e = scaled_err(&dec.logits, &model.logits);
    assert!(e <= 2e-5, "logits {e:e}");
    let e = scaled_err(&dec.state, &model.state);
    assert!(e <= 2e-5, "state {e:e}");
}

#[test]
fn state_converts_both_ways_unchanged() {
    let s = random_state::<F32>(5, 3, 1, 7);
    let d = DecoderState::from_state(&s).unwrap();
    let back = d.to_state::<F32>(&Default::default());
    assert_eq!(
        rwkv::verify::canonical_state(&s),
        rwkv::verify::canonical_state(&back)
    );
    assert_eq!(DecoderState::from_state(&back).unwrap(), d);
    // one sequence only
    let two = random_state::<F32>(5, 3, 2, 7);
    assert!(matches!(
        DecoderState::from_state(&two),
        Err(RwkvError::Config { field: "batch", .. })
    ));
}

#[test]
fn bad_input_is_refused_and_the_state_kept() {
    let m: Rwkv<F32> = random_model::<F32>(2, 10, 8, 2, 16, Variant::default());
    let dec = CpuDecoder::from_model(&m).unwrap();
    let mut s = dec.zero_state();
    let mut row = vec![0.0; 10];
    dec.step(3, &mut s, &mut row).unwrap();
    let before = s.clone();
    for bad in [-1, 10, i64::MAX] {
        assert!(matches!(
            dec.step(bad, &mut s, &mut row),
            Err(RwkvError::TokenOutOfRange { token, .. }) if token == bad
        ));
    }
    let mut short = vec![0.0; 9];
    assert!(matches!(
        dec.step(1, &mut s, &mut short),
        Err(RwkvError::Shape { .. })
    ));
    let other = random_model::<F32>(2, 10, 8, 3, 16, Variant::default());
    let mut s3 = CpuDecoder::from_model(&other).unwrap().zero_state();
    assert!(matches!(
        dec.step(1, &mut s3, &mut row),
        Err(RwkvError::StateLayers {
            expected: 2,
            got: 3
        })
    ));
    assert_eq!(s, before);
}

/// `rwkv-lab bench` refuses what does not fit before allocating anything (exit 2, one line
/// naming the part), and measures a tiny model in every part with both step engines.
#[test]
fn bench_checks_sizes_first_and_measures_a_tiny_model() {
    for (args, needle) in [
        (
            &[
                "--only",
                "decode",
                "--vocab",
                "10000000",
                "--d-model",
                "100000",
            ][..],
            "the decode model and its CPU-decoder copy needs about",
        ),
        (
            &[
                "--only",
                "gemm",
                "--seq-lens",
                "100000000",
                "--prefill-d-model",
                "100000",
            ][..],
            "the 100000000x100000x100000 product needs about",
        ),
        (
            &["--only", "prefill", "--prefill-vocab", "100000000000"][..],
            "the prefill model needs about",
        ),
        (
            &["--only", "decode", "--d-model", "4611686018427387904"][..],
            "overflows",
        ),
        (&["--backends", "wgpu"][..], "wgpu"),
    ] {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        let (code, out, err) = cli(&all);
        assert_eq!(code, 2, "{all:?}: {err}");
        assert!(err.contains(needle), "{all:?}: `{err}` lacks `{needle}`");
        assert!(
            out.is_empty() && !err.contains("measuring"),
            "{all:?}: {out}{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, out, err) = cli(&[
        "bench",
        "--vocab",
        "300",
        "--d-model",
        "32",
        "--layers",
        "2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--seq-lens",
        "16",
        "--prefill-vocab",
        "50",
        "--prefill-d-model",
        "16",
        "--prefill-layers",
        "1",
        "--modes",
        "scan,parallel",
    ]);
    assert_eq!(code, 0, "{err}");
    for row in [
        "| ndarray | model |",
        "| ndarray | cpu-decoder |",
        "| 16 | ndarray | scan |",
        "| 16 | ndarray | parallel |",
        "| head (C→V) | 1x32x300 |",
        "| head (C→V) | 16x16x50 |",
    ] {
        assert!(out.contains(row), "`{row}` missing in\n{out}");
    }
}
