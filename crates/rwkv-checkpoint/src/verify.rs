//! Checking a loaded model against a reference file: every formulation and RNN mode
//! against the arrays third-party implementations computed.

use burn::tensor::{Int, Tensor, TensorData};
use rwkv::verify::{Comparison, to_f64};
use rwkv::{Rwkv, RwkvState, WkvBackend, WkvMode};

use crate::error::{CheckpointError, Result};
use crate::reference::Reference;

/// Tolerances for comparisons against reference arrays (absolute on logits, scaled on the
/// canonical state). Defaults follow the reference README: a float32 implementation lands
/// within about 1e-5 of `logits_exact_f64` and `logits_whole`; a float64 one within 1e-9 of
/// `logits_exact_f64` and 1e-7 of `logits_whole` / `logits_split` (HF keeps its WKV state
/// in float32); BlinkDL's runtime is float32 (1.1e-6 from HF on `tiny`); HF's final states
/// are float32 buffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefTolerances {
    /// Against `logits_exact_f64`.
    pub exact: f64,
    /// Against `logits_whole` and `logits_split`.
    pub hf: f64,
    /// Against `blinkdl_seq_logits0` and `blinkdl_rnn_logits0`.
    pub blinkdl: f64,
    /// Against `final_state_*` (canonical form, scaled criterion).
    pub state: f64,
}

impl RefTolerances {
    /// The defaults for a float32 or float64 run.
    pub fn for_precision(f64_run: bool) -> Self {
        if f64_run {
            Self {
                exact: 1e-9,
                hf: 1e-7,
                blinkdl: 1e-5,
                state: 1e-5,
            }
        } else {
            Self {
                exact: 1e-5,
                hf: 1e-5,
                blinkdl: 1e-5,
                state: 1e-5,
            }
        }
    }

    /// The same tolerance everywhere.
    pub fn uniform(tol: f64) -> Self {
        Self {
            exact: tol,
            hf: tol,
            blinkdl: tol,
            state: tol,
        }
    }
}

/// One run's logits `[B, T, V]` and final state in the HF layout (5 arrays `[B, C, L]`).
struct Run {
    name: String,
    logits: Vec<f64>,
    state: Option<[Vec<f64>; 5]>,
}

/// The state as HF's five `[B, C, L]` arrays: ffn shift, att shift, aa, bb, pp.
fn hf_state<B: burn::tensor::backend::Backend>(s: &RwkvState<B>) -> [Vec<f64>; 5] {
    let l_total = s.layers.len();
    let [b, c] = s.layers[0].dims();
    let mut out: [Vec<f64>; 5] = std::array::from_fn(|_| vec![0.0; b * c * l_total]);
    for (l, layer) in s.layers.iter().enumerate() {
        let parts = [
            to_f64(layer.ffn_shift.clone()),
            to_f64(layer.att_shift.clone()),
            to_f64(layer.wkv.aa.clone()),
            to_f64(layer.wkv.bb.clone()),
            to_f64(layer.wkv.pp.clone()),
        ];
        for (k, p) in parts.iter().enumerate() {
            for bi in 0..b {
                for ci in 0..c {
                    out[k][bi * c * l_total + ci * l_total + l] = p[bi * c + ci];
                }
            }
        }
    }
    out
}

/// `(aa/bb, pp + ln bb)` of HF-layout state arrays.
fn canonical(s: &[Vec<f64>; 5]) -> (Vec<f64>, Vec<f64>) {
    let mean = s[2].iter().zip(&s[3]).map(|(a, b)| a / b).collect();
    let logden = s[4].iter().zip(&s[3]).map(|(p, b)| p + b.ln()).collect();
    (mean, logden)
}

/// The reference's tokens as a tensor.
pub fn reference_tokens<B: WkvBackend>(r: &Reference, device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(r.tokens.clone(), [r.batch, r.time]), device)
}

/// Runs every formulation (whole sequence and split at the reference's split) and RNN
/// mode, and compares them with every array the reference holds.
pub fn verify_reference<B: WkvBackend>(
    model: &Rwkv<B>,
    reference: &Reference,
    chunk_len: usize,
    tol: RefTolerances,
) -> Result<Vec<Comparison>> {
    reference.check(&model.config)?;
    let path = reference.path.display().to_string();
    let model_err = |source| CheckpointError::Model {
        path: path.clone(),
        source,
    };
    let device = model.emb.weight.device();
    let tokens = reference_tokens::<B>(reference, &device);
    let time = reference.time;
    let modes = [
        WkvMode::Recurrent,
        WkvMode::Parallel,
        WkvMode::Chunked { len: chunk_len },
        WkvMode::Scan,
    ];

    let mut whole = Vec::new();
    for mode in modes {
        let (logits, state) = model
            .forward(tokens.clone(), None, mode)
            .map_err(model_err)?;
        whole.push(Run {
            name: mode.to_string(),
            logits: to_f64(logits),
            state: Some(hf_state(&state)),
        });
    }
    // one RNN pass serves the whole-sequence comparisons (with its state) and the split ones
    let (rnn_logits, rnn_state) =
        rwkv::verify::rnn_forward(model, tokens.clone(), None).map_err(model_err)?;
    let rnn_logits = to_f64(rnn_logits);
    whole.push(Run {
        name: "rnn".into(),
        logits: rnn_logits.clone(),
        state: Some(hf_state(&rnn_state)),
    });

    let mut split_runs = Vec::new();
    if let Some(split) = reference.split {
        for mode in modes {
            let r =
                rwkv::verify::run_split(model, tokens.clone(), split, mode).map_err(model_err)?;
            split_runs.push(Run {
                name: format!("split@{split}({mode})"),
                logits: r.logits,
                state: None,
            });
        }
        split_runs.push(Run {
            name: "rnn".into(),
            logits: rnn_logits,
            state: None,
        });
    }

    let v = model.config.vocab_size;
    let mut out = Vec::new();
    let get = |k: &str| reference.get(k).map(|t| t.data.as_slice());
    for run in &whole {
        for (key, t) in [("logits_exact_f64", tol.exact), ("logits_whole", tol.hf)] {
            if let Some(r) = get(key) {
                out.push(Comparison::absolute(
                    &run.name,
                    key,
                    "logits",
                    &run.logits,
                    r,
                    t,
                ));
            }
        }
        for key in ["blinkdl_seq_logits0", "blinkdl_rnn_logits0"] {
            if let Some(r) = get(key) {
                out.push(Comparison::absolute(
                    &run.name,
                    key,
                    "logits[0]",
                    &run.logits[..time * v],
                    r,
                    tol.blinkdl,
                ));
            }
        }
        if let Some(ours) = &run.state {
            if let (Some(s0), Some(s1)) = (get("final_state_0"), get("final_state_1")) {
                out.push(Comparison::new(
                    &run.name,
                    "final_state_0",
                    "ffn shift",
                    &ours[0],
                    s0,
                    tol.state,
                ));
                out.push(Comparison::new(
                    &run.name,
                    "final_state_1",
                    "att shift",
                    &ours[1],
                    s1,
                    tol.state,
                ));
            }
            if let (Some(s2), Some(s3), Some(s4)) = (
                get("final_state_2"),
                get("final_state_3"),
                get("final_state_4"),
            ) {
                let theirs = canonical(&[vec![], vec![], s2.to_vec(), s3.to_vec(), s4.to_vec()]);
                let mine = canonical(ours);
                out.push(Comparison::new(
                    &run.name,
                    "final_state_2/final_state_3",
                    "aa/bb",
                    &mine.0,
                    &theirs.0,
                    tol.state,
                ));
                out.push(Comparison::new(
                    &run.name,
                    "final_state_4+ln(final_state_3)",
                    "pp+ln bb",
                    &mine.1,
                    &theirs.1,
                    tol.state,
                ));
            }
        }
    }
    if let Some(r) = get("logits_split") {
        for run in &split_runs {
            out.push(Comparison::absolute(
                &run.name,
                "logits_split",
                "logits",
                &run.logits,
                r,
                tol.hf,
            ));
        }
    }
    Ok(out)
}
