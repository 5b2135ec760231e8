//! Comparing one run of a model with the arrays of a reference file, each with a
//! tolerance that knows how precisely that array was computed (see [`rwkv::verify`]).

use rwkv::verify::{
    Algorithm, Bound, CANONICAL_PARTS, Comparison, Conditioning, Precision, QuantityKind,
    RunOutput, Tolerance,
};

use crate::reference::Reference;

/// Tolerances for comparisons against reference arrays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RefTolerances {
    /// Condition-aware, from the precision of the run and of each array
    /// ([`array_precision`]) and the conditioning of the input.
    Derived,
    /// One fixed tolerance: absolute on logits (`max_abs ≤ tol`), scaled on the state.
    Uniform(f64),
}

/// How precisely a reference array was computed, by its name:
/// - `logits_exact_f64`: float64 throughout, explicit softmax form (block class);
/// - `logits_whole`, `logits_split`, `final_state_*`: Hugging Face `transformers` with the
///   model in float64, but its WKV state `(aa, bb, pp)` and keys rounded to float32 at every
///   step: float32, [`Algorithm::F32State`];
/// - `blinkdl_*`: BlinkDL's runtime with strategy `cpu fp32`: float32, recurrent class.
pub fn array_precision(key: &str) -> Option<Precision> {
    if key == "logits_exact_f64" {
        Some(Precision::f64(Algorithm::Block))
    } else if key.starts_with("logits_") || key.starts_with("final_state_") {
        Some(Precision::f32(Algorithm::F32State))
    } else if key.starts_with("blinkdl_") {
        Some(Precision::f32(Algorithm::Recurrent))
    } else {
        None
    }
}

/// A run to compare with a reference: its name, its outputs and how it computed them.
#[derive(Debug, Clone, Copy)]
pub struct RunView<'a> {
    /// Shown as `a`.
    pub name: &'a str,
    /// Logits and canonical final state.
    pub output: &'a RunOutput,
    /// Precision and algorithm class of the run.
    pub precision: Precision,
}

/// The reference's final state (`final_state_0..4`, HF layout `[B, C, L]`: ffn shift, att
/// shift, aa, bb, pp) in the order of [`rwkv::verify::canonical_state`]: per layer the att
/// shift, `aa/bb`, `pp + ln bb` and the ffn shift, each `[B, C]`. None unless all five
/// arrays are present (their shapes were checked by [`Reference::check`]).
pub fn reference_canonical_state(r: &Reference, n_layers: usize) -> Option<Vec<f64>> {
    let s: Vec<&[f64]> = (0..5)
        .map(|i| {
            r.get(&format!("final_state_{i}"))
                .map(|t| t.data.as_slice())
        })
        .collect::<Option<_>>()?;
    let (b, l) = (r.batch, n_layers);
    let c = s[0].len() / (b * l).max(1);
    let mut out = Vec::with_capacity(4 * b * c * l);
    let at = |bi: usize, ci: usize, li: usize| bi * c * l + ci * l + li;
    for li in 0..l {
        for part in 0..4 {
            for bi in 0..b {
                for ci in 0..c {
                    let j = at(bi, ci, li);
                    out.push(match part {
                        0 => s[1][j],
                        1 => s[2][j] / s[3][j],
                        2 => s[4][j] + s[3][j].ln(),
                        _ => s[0][j],
                    });
                }
            }
        }
    }
    Some(out)
}

/// The name of a state part in the reference file's terms.
fn part_key(part: usize) -> &'static str {
    [
        "final_state_1",
        "final_state_2/final_state_3",
        "final_state_4+ln(final_state_3)",
        "final_state_0",
    ][part]
}

/// Part `part` (see [`CANONICAL_PARTS`]) of a canonical state of `n_layers` layers.
fn state_part(state: &[f64], n_layers: usize, part: usize) -> Vec<f64> {
    let n = state.len() / (4 * n_layers).max(1);
    (0..n_layers)
        .flat_map(|l| {
            state[(4 * l + part) * n..(4 * l + part + 1) * n]
                .iter()
                .copied()
        })
        .collect()
}

fn tolerance(
    kind: QuantityKind,
    run: Precision,
    key: &str,
    cond: &Conditioning,
    tol: RefTolerances,
) -> Tolerance {
    match (tol, kind) {
        (RefTolerances::Uniform(t), QuantityKind::Logits) => Tolerance::Absolute(t),
        (RefTolerances::Uniform(t), QuantityKind::State) => Tolerance::Scaled(t),
        (RefTolerances::Derived, _) => {
            let theirs = array_precision(key).unwrap_or(Precision::f32(Algorithm::Recurrent));
            Tolerance::Derived(Bound::new(kind, run, theirs, cond))
        }
    }
}

/// Compares a whole-sequence run (tokens `[B, T]` of the reference) with every array of
/// the reference it applies to: `logits_exact_f64`, `logits_whole`, the BlinkDL logits of
/// sequence 0, and (when `reference_state` is given, from [`reference_canonical_state`])
/// the four parts of the final state.
pub fn compare_whole(
    run: RunView<'_>,
    reference: &Reference,
    reference_state: Option<&[f64]>,
    n_layers: usize,
    cond: &Conditioning,
    tol: RefTolerances,
) -> Vec<Comparison> {
    let mut out = Vec::new();
    let logits = &run.output.logits;
    let per_sequence = logits.len() / reference.batch.max(1);
    for key in ["logits_exact_f64", "logits_whole"] {
        if let Some(r) = reference.get(key) {
            let t = tolerance(QuantityKind::Logits, run.precision, key, cond, tol);
            out.push(Comparison::new(run.name, key, "logits", logits, &r.data, t));
        }
    }
    for key in ["blinkdl_seq_logits0", "blinkdl_rnn_logits0"] {
        if let Some(r) = reference.get(key) {
            let t = tolerance(QuantityKind::Logits, run.precision, key, cond, tol);
            out.push(Comparison::new(
                run.name,
                key,
                "logits[0]",
                &logits[..per_sequence.min(logits.len())],
                &r.data,
                t,
            ));
        }
    }
    if let Some(theirs) = reference_state {
        // the order the reference README lists them: ffn shift, att shift, aa/bb, pp+ln bb
        for part in [3, 0, 1, 2] {
            let key = part_key(part);
            let t = tolerance(QuantityKind::State, run.precision, key, cond, tol);
            out.push(Comparison::new(
                run.name,
                key,
                CANONICAL_PARTS[part],
                &state_part(&run.output.state, n_layers, part),
                &state_part(theirs, n_layers, part),
                t,
            ));
        }
    }
    out
}

/// Compares a run split at the reference's `split` with `logits_split` (if present).
pub fn compare_split(
    run: RunView<'_>,
    reference: &Reference,
    cond: &Conditioning,
    tol: RefTolerances,
) -> Option<Comparison> {
    let r = reference.get("logits_split")?;
    let t = tolerance(
        QuantityKind::Logits,
        run.precision,
        "logits_split",
        cond,
        tol,
    );
    Some(Comparison::new(
        run.name,
        "logits_split",
        "logits",
        &run.output.logits,
        &r.data,
        t,
    ))
}
