//! The hand-checked vectors of docs/design.md §11 (one channel, computed in float64 by hand),
//! for every formulation, in f32 and f64, to 1e-6.

use rwkv::wkv::{WkvBackend, WkvMode};
use rwkv::{RwkvConfig, init};

use crate::common::*;

struct Vector {
    k: [f64; 4],
    v: [f64; 4],
    time_decay: f64,
    u: f64,
    y: [f64; 4],
    state: [f64; 3],
}

fn vectors() -> Vec<Vector> {
    vec![
        Vector {
            k: [0.1, -0.4, 2.0, 1.0],
            v: [1.0, -2.0, 0.5, 3.0],
            time_decay: 0.5,
            u: 0.3,
            y: [1.0, -0.350498008, 0.355435466, 1.290107935],
            state: [3.246010712, 1.534723295, 1.0],
        },
        Vector {
            k: [0.1, -0.4, 2.0, 1.0],
            v: [1.0, -2.0, 0.5, 3.0],
            time_decay: -5.0,
            u: 0.3f64.ln(),
            y: [1.0, 0.538158682, 0.217193003, 0.592297747],
            state: [1.578448747, 1.608041887, 1.993262053],
        },
        // a naive (un-shifted) exponentiation overflows here
        Vector {
            k: [100.0, 200.0, -100.0, 90.0],
            v: [1.0, 2.0, 3.0, 4.0],
            time_decay: 0.5,
            u: 0.3,
            y: [1.0, 2.0, 2.0, 2.0],
            state: [2.0, 1.0, 196.702557459],
        },
    ]
}

fn modes() -> Vec<WkvMode> {
    let mut m = vec![WkvMode::Recurrent, WkvMode::Parallel, WkvMode::Scan];
    m.extend([1, 2, 3, 4, 5].map(|len| WkvMode::Chunked { len }));
    m
}

fn check<B: WkvBackend>(tol: f64) {
    for (n, vec) in vectors().iter().enumerate() {
        let case = WkvCase {
            batch: 1,
            time: 4,
            channels: 1,
            time_decay: vec![vec.time_decay],
            u: vec![vec.u],
            k: vec.k.to_vec(),
            v: vec.v.to_vec(),
            state: None,
        };
        for mode in modes() {
            let out = run::<B>(&case, mode);
            for (t, (got, want)) in out.y.iter().zip(vec.y).enumerate() {
                assert!(
                    (got - want).abs() <= tol,
                    "vector {n}, {mode}, y[{t}]: {got} vs {want}"
                );
            }
            // every formulation returns the same triple (pp is the running maximum)
            let got = [out.aa[0], out.bb[0], out.pp[0]];
            for (i, (g, w)) in got.iter().zip(vec.state).enumerate() {
                assert!(
                    (g - w).abs() <= tol * w.abs().max(1.0),
                    "vector {n}, {mode}, state[{i}]: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn hand_checked_vectors_f64() {
    check::<F64>(1e-6);
}

#[test]
fn hand_checked_vectors_f32() {
    check::<F32>(1e-6);
}

/// docs/design.md §11: C = 8, L = 3, layer 1, read back from a built model's parameters.
#[test]
fn init_vectors_in_built_model() {
    let dev = Default::default();
    let model = RwkvConfig::rwkv4(5, 8, 3).init::<F64>(&dev).unwrap();
    let td = rwkv::verify::to_f64(model.blocks[1].att.time_decay.val());
    let want = [
        -5.0, -4.421628, -3.525658, -2.451285, -1.241724, 0.079455, 1.496984, 3.0,
    ];
    assert_close("time_decay", &td, &want, 1e-6);
    let mr = rwkv::verify::to_f64(model.blocks[1].att.time_mix_r.val());
    let want = [
        0.0, 0.5, 0.629961, 0.721125, 0.793701, 0.854988, 0.908560, 0.956466,
    ];
    assert_close("att.time_mix_r", &mr, &want, 1e-6);
    let tf = rwkv::verify::to_f64(model.blocks[2].att.time_first.val());
    assert_close("time_first", &tf, &init::rwkv4_time_first(8), 1e-12);
    // zero-initialised matrices and the small embedding
    let zero = rwkv::verify::to_f64(model.blocks[0].att.key.weight.val());
    assert!(zero.iter().all(|x| *x == 0.0));
    let emb = rwkv::verify::to_f64(model.emb.weight.val());
    assert!(emb.iter().all(|x| x.abs() <= 1e-4) && emb.iter().any(|x| *x != 0.0));
}

#[test]
fn parameter_count_matches_formula() {
    let dev = Default::default();
    for (v, c, l) in [(11, 8, 1), (50, 16, 3), (7, 4, 2)] {
        let cfg = RwkvConfig::rwkv4(v, c, l);
        let model = cfg.init::<F32>(&dev).unwrap();
        // docs/design.md §2: 2VC + 13C²L + C(11L + 4)
        let formula = 2 * v * c + 13 * c * c * l + c * (11 * l + 4);
        assert_eq!(model.num_params(), formula);
        assert_eq!(cfg.num_params(), formula);
    }
}
