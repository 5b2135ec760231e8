//! Property tests of the WKV operator: every formulation equals the recurrence on outputs
//! and final state, from the empty state and from random states, for random shapes and
//! extreme inputs; splitting and carrying the state equals one pass; batch rows are
//! independent.
//!
//! Tolerances
//! - f64: 1e-9 of the scale `max(1, max |reference|)`.
//! - f32: `32 · ε₃₂ · (1 + max|k| + max|u| + max|pp₀|)` of the same scale, where
//!   ε₃₂ = 2⁻²³. Why: every formulation evaluates the same softmax weights `e^{ℓ - m}`; a
//!   logit of magnitude |ℓ| is only known to ≈ ε·|ℓ| in f32, and the logits that matter lie
//!   within a few units of the largest one, whose magnitude is bounded by
//!   |k| + |u| + |pp₀| (a decayed term that is large in magnitude is negligible). The
//!   relative error of y is therefore a small multiple of ε·(|k| + |u| + |pp₀|). The
//!   largest multiple seen over 20 000 random cases (`f32_error_survey`, half of them
//!   extreme, every formulation against the f64 recurrence) was 8.5; 32 leaves a 4× margin
//!   while a real defect (a mis-weighted state term, an off-by-one decay) shows up as
//!   errors orders of magnitude larger. The same bound is used against the f64 oracle.

use proptest::prelude::*;
use rwkv::wkv::{WkvBackend, WkvMode};

use crate::common::*;

const TOL64: f64 = 1e-9;

fn check_formulations<B: WkvBackend>(
    case: &WkvCase,
    tol: f64,
    oracle: &WkvOut,
) -> Result<(), TestCaseError> {
    let rec = run::<B>(case, WkvMode::Recurrent);
    compare("recurrent vs f64 recurrent", &rec, oracle, tol)?;
    for mode in formulations(case.time) {
        let got = run::<B>(case, mode);
        compare(&format!("{mode} vs recurrent"), &got, &rec, tol)?;
        compare(&format!("{mode} vs f64 recurrent"), &got, oracle, tol)?;
    }
    Ok(())
}

fn shapes() -> impl Strategy<Value = (usize, usize, usize, u64, bool, bool)> {
    (
        1usize..=3,
        1usize..=48,
        1usize..=16,
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn formulations_agree_f64((b, t, c, seed, extreme, with_state) in shapes()) {
        let case = random_case(seed, b, t, c, extreme, with_state);
        let oracle = run::<F64>(&case, WkvMode::Recurrent);
        check_formulations::<F64>(&case, TOL64, &oracle)?;
    }

    #[test]
    fn formulations_agree_f32((b, t, c, seed, extreme, with_state) in shapes()) {
        let case = random_case(seed, b, t, c, extreme, with_state);
        let oracle = run::<F64>(&case, WkvMode::Recurrent);
        check_formulations::<F32>(&case, tol32(&case), &oracle)?;
    }

    /// Splitting at any point and carrying the state equals one pass, for every formulation.
    #[test]
    fn split_and_carry_equals_one_pass((b, t, c, seed, extreme, with_state) in shapes(), at in any::<proptest::sample::Index>()) {
        prop_assume!(t >= 2);
        let case = random_case(seed, b, t, c, extreme, with_state);
        let split = 1 + at.index(t - 1);
        for mode in std::iter::once(WkvMode::Recurrent).chain(formulations(t)) {
            let whole = run::<F64>(&case, mode);
            let first = run_range::<F64>(&case, mode, 0..split, None);
            let second = run_range::<F64>(&case, mode, split..t, Some([first.aa.clone(), first.bb.clone(), first.pp.clone()]));
            let mut y = Vec::with_capacity(whole.y.len());
            for row in 0..b {
                y.extend_from_slice(&first.y[row * split * c..(row + 1) * split * c]);
                y.extend_from_slice(&second.y[row * (t - split) * c..(row + 1) * (t - split) * c]);
            }
            let joined = WkvOut { y, ..second };
            compare(&format!("{mode} split at {split}"), &joined, &whole, TOL64)?;
        }
    }

    /// Each batch row alone gives the same result as inside the batch.
    #[test]
    fn batch_rows_are_independent((b, t, c, seed, extreme, with_state) in shapes()) {
        prop_assume!(b >= 2);
        let case = random_case(seed, b, t, c, extreme, with_state);
        for mode in [WkvMode::Recurrent, WkvMode::Parallel, WkvMode::Chunked { len: 3 }, WkvMode::Scan] {
            let all = run::<F64>(&case, mode);
            for row in 0..b {
                let n = t * c;
                let single = WkvCase {
                    batch: 1,
                    k: case.k[row * n..(row + 1) * n].to_vec(),
                    v: case.v[row * n..(row + 1) * n].to_vec(),
                    state: case.state.as_ref().map(|s| s.clone().map(|x| x[row * c..(row + 1) * c].to_vec())),
                    ..case.clone()
                };
                let one = run::<F64>(&single, mode);
                let part = WkvOut {
                    y: all.y[row * n..(row + 1) * n].to_vec(),
                    aa: all.aa[row * c..(row + 1) * c].to_vec(),
                    bb: all.bb[row * c..(row + 1) * c].to_vec(),
                    pp: all.pp[row * c..(row + 1) * c].to_vec(),
                };
                compare(&format!("{mode} row {row}"), &one, &part, 1e-12)?;
            }
        }
    }
}

/// Pinned cases: the degenerate shapes and the most extreme corners, every time.
#[test]
fn pinned_extreme_corners() {
    for (b, t, c) in [(1, 1, 1), (3, 48, 16), (2, 47, 5), (1, 2, 1)] {
        for seed in 0..4 {
            for with_state in [false, true] {
                let mut case = random_case(seed, b, t, c, true, with_state);
                // push decays and bonuses to the ends of their ranges
                for (i, x) in case.time_decay.iter_mut().enumerate() {
                    *x = if i % 2 == 0 { 8.0 } else { -8.0 };
                }
                for (i, x) in case.u.iter_mut().enumerate() {
                    *x = if i % 2 == 0 { 10.0 } else { -10.0 };
                }
                let oracle = run::<F64>(&case, WkvMode::Recurrent);
                check_formulations::<F64>(&case, TOL64, &oracle).unwrap();
                check_formulations::<F32>(&case, tol32(&case), &oracle).unwrap();
            }
        }
    }
}

/// Survey behind the f32 tolerance: the largest error of any f32 formulation against the
/// f64 recurrence, in units of `ε₃₂ · (1 + max|k| + max|u| + max|pp₀|)` of the scale.
/// `cargo test --release --test all f32_error_survey -- --ignored --nocapture`
#[test]
#[ignore = "survey; prints the figure behind the f32 tolerance"]
fn f32_error_survey() {
    let n: u64 = std::env::var("SURVEY_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut worst = (0f64, 0u64);
    for seed in 0..n {
        let mut r = lab_util::SplitMix64::new(seed ^ 0xABCD);
        let (b, t, c) = (
            1 + r.below(3) as usize,
            1 + r.below(48) as usize,
            1 + r.below(16) as usize,
        );
        let case = random_case(seed, b, t, c, seed % 2 == 0, seed % 3 == 0);
        let oracle = run::<F64>(&case, WkvMode::Recurrent);
        let unit = tol32(&case) / 32.0;
        for mode in std::iter::once(WkvMode::Recurrent).chain(formulations(t)) {
            let got = run::<F32>(&case, mode);
            let (gm, gl) = got.canonical();
            let (wm, wl) = oracle.canonical();
            let e = scaled_err(&got.y, &oracle.y)
                .max(scaled_err(&gm, &wm))
                .max(scaled_err(&gl, &wl));
            if e / unit > worst.0 {
                worst = (e / unit, seed);
            }
        }
    }
    println!(
        "f32 survey: {n} cases, worst error = {:.2} units (seed {})",
        worst.0, worst.1
    );
    assert!(worst.0 <= 32.0);
}
