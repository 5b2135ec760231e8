//! The memory plan of a verification: every part estimated before anything is allocated,
//! with checked arithmetic (`None` means "beyond 64 bits", which never fits a budget).

use rwkv::WkvMode;
use serde::Serialize;

use super::{ORACLE, show_bytes};

fn mul(xs: &[u64]) -> Option<u64> {
    xs.iter().try_fold(1u64, |a, &x| a.checked_mul(x))
}

fn add(xs: &[Option<u64>]) -> Option<u64> {
    xs.iter().try_fold(0u64, |a, x| a.checked_add((*x)?))
}

/// Estimated memory of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunEstimate {
    /// Run name (as in the comparisons' `a`), or `model`, `oracle`.
    pub name: String,
    /// Peak bytes while it runs, everything resident included (None: overflows).
    pub bytes: Option<u64>,
    /// Whether it fits the budget.
    pub fits: bool,
}

/// The memory estimate of a verification, made before anything is allocated.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryPlan {
    /// The budget.
    pub budget: u64,
    /// Bytes per element of the run's float type.
    pub element_bytes: u64,
    /// The model's parameters.
    pub model: Option<u64>,
    /// Every run, in order (the float64 oracle first when there is one).
    pub runs: Vec<RunEstimate>,
}

impl MemoryPlan {
    /// The estimate of a run by name.
    pub fn get(&self, name: &str) -> Option<&RunEstimate> {
        self.runs.iter().find(|r| r.name == name)
    }

    /// Why the run `name` is skipped, if it does not fit.
    pub fn skip_reason(&self, name: &str) -> Option<String> {
        let r = self.get(name)?;
        (!r.fits).then(|| {
            format!(
                "estimated {} > memory budget {}",
                show_bytes(r.bytes),
                lab_util::fmt_bytes(self.budget as f64)
            )
        })
    }
}

/// Parameter count `2VC + L(5C² + 2CF) + 11LC + 4C` with checked arithmetic (RWKV-4 with
/// `ln0`; see [`rwkv::RwkvConfig::num_params`]).
pub fn checked_params(vocab: usize, c: usize, layers: usize, ffn: usize) -> Option<u64> {
    let (v, c, l, f) = (vocab as u64, c as u64, layers as u64, ffn as u64);
    let per_layer = add(&[mul(&[5, c, c]), mul(&[2, c, f]), mul(&[11, c])]);
    add(&[
        mul(&[2, v, c]),
        per_layer.and_then(|p| p.checked_mul(l)),
        mul(&[4, c]),
    ])
}

/// Dimensions the estimate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// V.
    pub vocab: usize,
    /// C.
    pub d_model: usize,
    /// L.
    pub n_layers: usize,
    /// F.
    pub d_ffn: usize,
    /// B.
    pub batch: usize,
    /// T.
    pub time: usize,
    /// Chunk length.
    pub chunk_len: usize,
}

/// Working memory of one whole-sequence pass in `mode` (bytes, element size `e`): the
/// activations of a block (about 16 `[B, T, C]` and 3 `[B, T, F]` tensors live at once),
/// the logits and their host copy, and what the WKV formulation adds: `[B, C, T, T]` logits
/// (parallel, about 4 live), `[B, C, T, L]` (chunked), `[B, T, C]` (recurrent, scan).
fn pass_bytes(d: Dims, mode: Option<WkvMode>, e: u64) -> Option<u64> {
    let (b, t, c, f, v) = (
        d.batch as u64,
        d.time as u64,
        d.d_model as u64,
        d.d_ffn as u64,
        d.vocab as u64,
    );
    let act = mul(&[b, t, add(&[mul(&[16, c]), mul(&[3, f]), mul(&[2, v])])?, e]);
    let host = mul(&[b, t, v, e + 8]); // into_data copy, then f64 conversion
    let wkv = match mode {
        Some(WkvMode::Parallel) => mul(&[4, b, c, t, t, e]),
        Some(WkvMode::Chunked { len }) => mul(&[4, b, c, t, (len as u64).min(t), e]),
        Some(WkvMode::Recurrent) => mul(&[8, b, t, c, e]),
        Some(WkvMode::Scan) => mul(&[6, b, t, c, e]),
        // RNN mode: one token per step, the T logits [B, V] stacked at the end
        None => mul(&[2, b, t, v, e]),
    };
    add(&[act, host, wkv])
}

/// The memory plan of a verification: model, the float64 oracle (when `oracle`), and
/// every run by name, each with everything resident at that time (the model, the host
/// copies of the recurrent run's and the oracle's outputs).
pub fn plan(d: Dims, element_bytes: u64, oracle: bool, budget: u64) -> MemoryPlan {
    let e = element_bytes;
    let params = checked_params(d.vocab, d.d_model, d.n_layers, d.d_ffn);
    // building a model holds the largest parameter as f64 on the host, twice, while converting
    let largest = mul(&[
        (d.vocab.max(d.d_ffn) as u64),
        d.d_model as u64,
        16 + element_bytes,
    ]);
    let model = params.and_then(|p| p.checked_mul(e));
    let logits_host = mul(&[d.batch as u64, d.time as u64, d.vocab as u64, 8]);
    let state_host = mul(&[4, d.batch as u64, d.d_model as u64, d.n_layers as u64, 8]);
    let output = add(&[logits_host, state_host]);
    let fits = |b: Option<u64>| b.is_some_and(|b| b <= budget);
    let mut runs = Vec::new();
    let mut resident = vec![];
    if oracle {
        let model64 = params.and_then(|p| p.checked_mul(8));
        let bytes = add(&[
            model64,
            mul(&[(d.vocab.max(d.d_ffn) as u64), d.d_model as u64, 24]),
            pass_bytes(d, Some(WkvMode::Recurrent), 8),
        ]);
        runs.push(RunEstimate {
            name: ORACLE.into(),
            bytes,
            fits: fits(bytes),
        });
        if fits(bytes) {
            resident.push(output);
        }
    }
    resident.push(model);
    runs.push(RunEstimate {
        name: "model".into(),
        bytes: add(&[add(&resident), largest]),
        fits: fits(add(&[add(&resident), largest])),
    });
    // the recurrent run's output stays for the comparisons
    let base = add(&[add(&resident), pass_bytes(d, Some(WkvMode::Recurrent), e)]);
    runs.push(RunEstimate {
        name: WkvMode::Recurrent.to_string(),
        bytes: base,
        fits: fits(base),
    });
    resident.push(output);
    let chunked = WkvMode::Chunked { len: d.chunk_len };
    let mut named: Vec<(String, Option<WkvMode>)> = [WkvMode::Parallel, chunked, WkvMode::Scan]
        .iter()
        .map(|m| (m.to_string(), Some(*m)))
        .collect();
    named.push(("rnn".into(), None));
    // the conditioning pass: the chunked form plus one layer's keys
    named.push(("conditioning".into(), Some(chunked)));
    for (name, mode) in named {
        let bytes = add(&[add(&resident), pass_bytes(d, mode, e)]);
        runs.push(RunEstimate {
            name,
            bytes,
            fits: fits(bytes),
        });
    }
    MemoryPlan {
        budget,
        element_bytes,
        model,
        runs,
    }
}
