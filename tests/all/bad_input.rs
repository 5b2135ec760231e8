//! Bad input gets a typed error with a clear message, never a panic or a wrong answer.

use burn::tensor::{Int, Tensor, TensorData};
use rwkv::verify::canonical_state;
use rwkv::wkv::{self, WkvMode, WkvState};
use rwkv::{RwkvConfig, RwkvError};

use crate::common::*;

fn dev() -> burn::backend::ndarray::NdArrayDevice {
    Default::default()
}

fn zeros<const D: usize>(shape: [usize; D]) -> Tensor<F64, D> {
    Tensor::zeros(shape, lab_util::float_opts::<F64>(&dev()))
}

fn call(
    mode: WkvMode,
    w: [usize; 1],
    u: [usize; 1],
    k: [usize; 3],
    v: [usize; 3],
    s: Option<[usize; 2]>,
) -> Result<(), RwkvError> {
    let state = s.map(|s| WkvState {
        aa: zeros(s),
        bb: zeros(s),
        pp: zeros(s),
    });
    wkv::wkv(mode, zeros(w), zeros(u), zeros(k), zeros(v), state).map(|_| ())
}

#[test]
fn wkv_rejects_bad_shapes() {
    assert_eq!(
        call(WkvMode::Scan, [4], [4], [1, 0, 4], [1, 0, 4], None),
        Err(RwkvError::EmptySequence)
    );
    assert_eq!(
        call(WkvMode::Parallel, [4], [4], [0, 3, 4], [0, 3, 4], None),
        Err(RwkvError::EmptyBatch)
    );
    assert_eq!(
        call(
            WkvMode::Chunked { len: 0 },
            [4],
            [4],
            [1, 3, 4],
            [1, 3, 4],
            None
        ),
        Err(RwkvError::ZeroChunkLen)
    );
    let e = call(WkvMode::Recurrent, [4], [4], [1, 3, 4], [1, 2, 4], None).unwrap_err();
    assert!(
        matches!(&e, RwkvError::Shape { what, .. } if what == "v"),
        "{e}"
    );
    assert!(
        e.to_string().contains("expected [1, 3, 4], got [1, 2, 4]"),
        "{e}"
    );
    let e = call(WkvMode::Scan, [3], [4], [1, 3, 4], [1, 3, 4], None).unwrap_err();
    assert!(
        matches!(&e, RwkvError::Shape { what, .. } if what == "w"),
        "{e}"
    );
    let e = call(WkvMode::Scan, [4], [5], [1, 3, 4], [1, 3, 4], None).unwrap_err();
    assert!(
        matches!(&e, RwkvError::Shape { what, .. } if what == "u"),
        "{e}"
    );
    let e = call(
        WkvMode::Parallel,
        [4],
        [4],
        [2, 3, 4],
        [2, 3, 4],
        Some([1, 4]),
    )
    .unwrap_err();
    assert!(
        matches!(&e, RwkvError::Shape { what, .. } if what == "state.aa"),
        "{e}"
    );
}

#[test]
fn mode_names_parse_or_fail_clearly() {
    assert_eq!("scan".parse::<WkvMode>(), Ok(WkvMode::Scan));
    assert_eq!(
        "Chunked:16".parse::<WkvMode>(),
        Ok(WkvMode::Chunked { len: 16 })
    );
    assert_eq!("chunked:0".parse::<WkvMode>(), Err(RwkvError::ZeroChunkLen));
    let e = "fast".parse::<WkvMode>().unwrap_err();
    assert!(e.to_string().contains("unknown WKV mode `fast`"), "{e}");
    for m in WkvMode::all(5) {
        assert_eq!(m.to_string().parse::<WkvMode>(), Ok(m));
    }
}

/// The one token check and the one mode check, called directly (the model, the operator
/// and `FromStr` go through them).
#[test]
fn token_and_mode_checks_are_callable_on_their_own() {
    let cfg = RwkvConfig::new(10, 4, 1, 8);
    assert_eq!(cfg.check_tokens(&[0, 9, 3, 4], [2, 2]), Ok(()));
    assert_eq!(
        cfg.check_tokens(&[0, 9, 3, 10], [2, 2]),
        Err(RwkvError::TokenOutOfRange {
            token: 10,
            batch: 1,
            position: 1,
            vocab_size: 10
        })
    );
    assert!(matches!(
        cfg.check_tokens(&[5, -3], [1, 2]),
        Err(RwkvError::TokenOutOfRange {
            token: -3,
            position: 1,
            ..
        })
    ));
    assert_eq!(cfg.check_tokens(&[], [0, 3]), Err(RwkvError::EmptyBatch));
    assert_eq!(cfg.check_tokens(&[], [1, 0]), Err(RwkvError::EmptySequence));
    let e = cfg.check_tokens(&[1, 2, 3], [2, 2]).unwrap_err();
    assert!(
        matches!(&e, RwkvError::Shape { what, .. } if what == "tokens"),
        "{e}"
    );

    assert_eq!(WkvMode::chunked(0), Err(RwkvError::ZeroChunkLen));
    assert_eq!(WkvMode::chunked(7), Ok(WkvMode::Chunked { len: 7 }));
    assert_eq!(
        WkvMode::Chunked { len: 0 }.validate(),
        Err(RwkvError::ZeroChunkLen)
    );
    for m in WkvMode::all(3) {
        assert_eq!(m.validate(), Ok(()));
    }
}

fn model() -> rwkv::Rwkv<F64> {
    random_model::<F64>(3, 10, 4, 2, 8, rwkv::Variant::default())
}

fn toks(ids: Vec<i64>, b: usize, t: usize) -> Tensor<F64, 2, Int> {
    Tensor::from_data(TensorData::new(ids, [b, t]), &dev())
}

#[test]
fn model_rejects_bad_tokens_and_states() {
    let m = model();
    assert_eq!(
        m.forward(toks(vec![], 1, 0), None, WkvMode::Scan)
            .unwrap_err(),
        RwkvError::EmptySequence
    );
    assert_eq!(
        m.forward(toks(vec![], 0, 3), None, WkvMode::Scan)
            .unwrap_err(),
        RwkvError::EmptyBatch
    );
    let e = m
        .forward(toks(vec![1, 2, 3, 4, 10, 5], 2, 3), None, WkvMode::Parallel)
        .unwrap_err();
    assert_eq!(
        e,
        RwkvError::TokenOutOfRange {
            token: 10,
            batch: 1,
            position: 1,
            vocab_size: 10
        }
    );
    assert!(
        e.to_string().contains(
            "token id 10 at [batch 1, position 1] is out of range for vocabulary size 10"
        )
    );
    let e = m
        .forward(toks(vec![-1], 1, 1), None, WkvMode::Parallel)
        .unwrap_err();
    assert!(matches!(e, RwkvError::TokenOutOfRange { token: -1, .. }));
    assert_eq!(
        m.forward(toks(vec![1, 2], 1, 2), None, WkvMode::Chunked { len: 0 })
            .unwrap_err(),
        RwkvError::ZeroChunkLen
    );

    let wrong_layers = random_state::<F64>(1, 3, 1, 4);
    let e = m
        .forward(toks(vec![1, 2], 1, 2), Some(wrong_layers), WkvMode::Scan)
        .unwrap_err();
    assert_eq!(
        e,
        RwkvError::StateLayers {
            expected: 2,
            got: 3
        }
    );
    let wrong_batch = random_state::<F64>(1, 2, 2, 4);
    let e = m
        .forward(toks(vec![1, 2], 1, 2), Some(wrong_batch), WkvMode::Scan)
        .unwrap_err();
    assert!(
        matches!(&e, RwkvError::Shape { what, .. } if what == "state.layers[0].att_shift"),
        "{e}"
    );
    let wrong_width = random_state::<F64>(1, 2, 1, 5);
    assert!(
        m.forward(toks(vec![1, 2], 1, 2), Some(wrong_width), WkvMode::Scan)
            .is_err()
    );
}

#[test]
fn failed_step_leaves_state_unchanged() {
    let m = model();
    let mut state = random_state::<F64>(2, 2, 2, 4);
    let before = canonical_state(&state);
    let bad = Tensor::<F64, 1, Int>::from_data(TensorData::new(vec![3i64, 99], [2]), &dev());
    assert!(matches!(
        m.step(bad, &mut state),
        Err(RwkvError::TokenOutOfRange { token: 99, .. })
    ));
    assert_eq!(canonical_state(&state), before);
    let wrong_batch = Tensor::<F64, 1, Int>::from_data(TensorData::new(vec![3i64], [1]), &dev());
    assert!(m.step(wrong_batch, &mut state).is_err());
    assert_eq!(canonical_state(&state), before);
}

#[test]
fn config_errors_name_the_field() {
    for (cfg, field) in [
        (RwkvConfig::new(0, 4, 1, 8), "vocab_size"),
        (RwkvConfig::new(5, 0, 1, 8), "d_model"),
        (RwkvConfig::new(5, 4, 0, 8), "n_layers"),
        (RwkvConfig::new(5, 4, 1, 0), "d_ffn"),
        (
            RwkvConfig::new(5, 4, 1, 8).with_layer_norm_eps(0.0),
            "layer_norm_eps",
        ),
    ] {
        let e = cfg.init::<F64>(&dev()).unwrap_err();
        assert!(
            matches!(e, RwkvError::Config { field: f, .. } if f == field),
            "{e}"
        );
        assert!(e.to_string().contains(field));
    }
}

/// The model's sigmoid keeps f64 precision (Burn's own casts to f32) and stays finite,
/// with finite gradients, at extreme inputs.
#[test]
fn sigmoid_is_exact_and_finite() {
    use burn::backend::Autodiff;
    let xs: [f64; 9] = [-1000.0, -40.0, -1.0, -1e-9, 0.0, 0.5, 3.0, 40.0, 1000.0];
    let t = Tensor::<Autodiff<F64>, 1>::from_data(
        TensorData::new(xs.to_vec(), [xs.len()]),
        lab_util::float_opts::<Autodiff<F64>>(&dev()),
    )
    .require_grad();
    let y = rwkv::model::sigmoid(t.clone());
    let got = rwkv::verify::to_f64(y.clone());
    for (x, g) in xs.iter().zip(&got) {
        let want = if *x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            x.exp() / (1.0 + x.exp())
        };
        assert!(
            (g - want).abs() <= 1e-16 * want.max(1e-300).max(1.0) || (g / want - 1.0).abs() < 1e-15,
            "σ({x}) = {g}, want {want}"
        );
    }
    let grads = y.sum().backward();
    let g = rwkv::verify::to_f64(t.grad(&grads).unwrap());
    assert!(g.iter().all(|v| v.is_finite() && *v >= 0.0), "{g:?}");
    assert!((g[4] - 0.25).abs() < 1e-15);
}

/// On flex the model's sigmoid is the backend's own (`WkvBackend::native_sigmoid`): the
/// same two-sided form in f32, with Burn's node `g·σ·(1−σ)` backward. Values within a few
/// ulp of the f64 formula, derivatives within `ulp(1)` of the exact `σ(x)·σ(−x)`, finite
/// everywhere.
#[cfg(feature = "flex")]
#[test]
fn flex_sigmoid_is_the_two_sided_form_with_an_exact_derivative() {
    use burn::backend::{Autodiff, Flex};
    type A = Autodiff<Flex>;
    assert!(<A as rwkv::WkvBackend>::native_sigmoid());
    let xs: Vec<f32> = vec![
        -1000.0, -90.0, -40.0, -3.0, -1e-3, 0.0, 0.7, 5.0, 17.0, 40.0, 1000.0,
    ];
    let device = Default::default();
    let t = Tensor::<A, 1>::from_data(
        TensorData::new(xs.clone(), [xs.len()]),
        lab_util::float_opts::<A>(&device),
    )
    .require_grad();
    let y = rwkv::model::sigmoid(t.clone());
    let got = rwkv::verify::to_f64(y.clone());
    let grads = y.sum().backward();
    let dg = rwkv::verify::to_f64(t.grad(&grads).unwrap());
    for ((x, s), d) in xs.iter().zip(&got).zip(&dg) {
        let x = *x as f64;
        let want = if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            x.exp() / (1.0 + x.exp())
        };
        assert!(
            (s - want).abs() <= 4.0 * f32::EPSILON as f64 * want.max(f32::MIN_POSITIVE as f64),
            "σ({x}) = {s}, want {want}"
        );
        let exact = want * (1.0 - want);
        assert!(
            d.is_finite() && (d - exact).abs() <= f32::EPSILON as f64,
            "σ'({x}) = {d}, want {exact}"
        );
    }
}
