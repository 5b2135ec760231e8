//! The backend comparison behind `rwkv-lab compare-backends`: the same model (the same
//! random weights, rounded to f32 so that every backend, f64 ones included, computes the
//! same function) and the same tokens on each backend, timed and compared.
//!
//! Per backend, in the order given (the first is the *reference*):
//! - **prefill**: one whole-sequence forward per sequence length T and WKV formulation,
//!   timed through [`crate::timing`] (warm-up, device sync before the clock stops,
//!   median of the repeats); the last position's logits are kept;
//! - **decode**: RNN-mode steps of the decode model, each timed from the token id to its
//!   logits on the host, through the model's own step (`model`: the WKV recurrence
//!   token by token; `model-scan`: the same step with the WKV operator as the fused scan,
//!   one kernel launch per layer on the CubeCL backends) and, on f32 CPU backends,
//!   through the CPU decoder too; the `model` step's last logits are kept.
//!
//! Every kept output is compared with the reference's output for the same measurement
//! (for a prefill the same T, in the same formulation if the reference ran it, otherwise
//! in another one: the formulations compute the same function). Measurements that do not
//! fit ([`DeviceLimits`]: memory budget, the device's largest buffer) or are beyond the
//! spec's length limits are recorded as skipped with the reason; a measurement that fails
//! or panics is recorded as an error and the run goes on. Measures and records; never
//! prints or plots.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Instant;

use burn::tensor::{Element, Int, Tensor, TensorData};
use lab_records::{BackendRow, Measured, Meta, RecordsError, Status, StudyDir, StudyKind};
use lab_util::SplitMix64;
use rwkv::decode::{CpuDecoder, DecoderState};
use rwkv::generate::{forward_bytes, model_bytes};
use rwkv::{ParamSource, ParamSpec, RandomizedInit, Rwkv, RwkvConfig, WkvBackend, WkvMode};
use serde::{Deserialize, Deserializer, Serialize};

use crate::estimate::{DeviceLimits, rwkv_largest_bytes};
use crate::spec::{NonEmpty, SpecError};
use crate::timing::{Stats, time_repeated};

/// A model shape (`d_ffn = 4·d_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    /// Vocabulary size V.
    pub vocab: NonZeroUsize,
    /// Width C.
    pub d_model: NonZeroUsize,
    /// Blocks L.
    pub n_layers: NonZeroUsize,
}

impl Shape {
    /// The RWKV-4 configuration of this shape.
    pub fn config(&self) -> RwkvConfig {
        RwkvConfig::rwkv4(self.vocab.get(), self.d_model.get(), self.n_layers.get())
    }
}

/// A WKV formulation as written in the spec; unlike the scaling spec, `recurrent` (the
/// per-token oracle) is allowed: its time on each backend is part of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub WkvMode);

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<WkvMode>()
            .map(Mode)
            .map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// The prefill measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefillPart {
    /// The model timed.
    pub model: Shape,
    /// Sequence lengths T.
    pub seq_lens: NonEmpty<NonZeroUsize>,
    /// Formulations.
    pub modes: NonEmpty<Mode>,
    /// Largest T per formulation (`parallel: 1024`); longer ones are recorded as skipped.
    #[serde(default)]
    pub max_seq_len: BTreeMap<String, NonZeroUsize>,
    /// Largest T on CPU backends (ndarray, flex); longer ones are recorded as skipped
    /// (a CPU forward of a large model at long T takes minutes).
    #[serde(default)]
    pub cpu_max_seq_len: Option<NonZeroUsize>,
}

/// The decode measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodePart {
    /// The model stepped.
    pub model: Shape,
    /// Timed steps (median reported).
    pub steps: NonZeroUsize,
    /// Untimed steps first.
    #[serde(default = "four")]
    pub warmup: usize,
}

/// The dense-product measurements: each `[m, k, n]` product timed and its result compared
/// whole, which isolates the precision of a backend's matrix products.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatmulPart {
    /// `[m, k, n]` of each product.
    pub shapes: NonEmpty<[NonZeroUsize; 3]>,
}

/// Overrides applied by `--quick`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickPart {
    /// Replaces `prefill.model`.
    pub prefill_model: Option<Shape>,
    /// Replaces `prefill.seq_lens`.
    pub seq_lens: Option<NonEmpty<NonZeroUsize>>,
    /// Replaces `decode.model`.
    pub decode_model: Option<Shape>,
    /// Replaces `decode.steps`.
    pub steps: Option<NonZeroUsize>,
    /// Replaces `repeats`.
    pub repeats: Option<NonZeroUsize>,
    /// Replaces `matmul.shapes`.
    pub matmul_shapes: Option<NonEmpty<[NonZeroUsize; 3]>>,
}

/// A backend comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    /// Name written into every record.
    #[serde(default = "default_study")]
    pub study: String,
    /// Seed of the weights and tokens.
    #[serde(default)]
    pub seed: u64,
    /// Timed runs per prefill.
    #[serde(default = "three")]
    pub repeats: NonZeroUsize,
    /// Untimed runs per prefill.
    #[serde(default = "one")]
    pub warmup: usize,
    /// Skip measurements estimated above this many bytes (e.g. `6G`); default: the
    /// command's (half of RAM).
    #[serde(default)]
    pub memory_budget: Option<String>,
    /// Prefill measurements.
    pub prefill: PrefillPart,
    /// Decode measurements (omit to skip).
    #[serde(default)]
    pub decode: Option<DecodePart>,
    /// Dense products (omit to skip).
    #[serde(default)]
    pub matmul: Option<MatmulPart>,
    /// `--quick` overrides.
    #[serde(default)]
    pub quick: Option<QuickPart>,
}

fn default_study() -> String {
    "backends".into()
}

fn three() -> NonZeroUsize {
    NonZeroUsize::new(3).expect("3 > 0")
}

fn one() -> usize {
    1
}

fn four() -> usize {
    4
}

impl CompareSpec {
    /// Parses YAML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, SpecError> {
        let spec: CompareSpec = serde_yaml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.into(),
            reason: e.to_string(),
        })?;
        for (name, mode) in spec.prefill.modes.0.iter().map(|m| (m.0.to_string(), m.0)) {
            mode.validate().map_err(|e| SpecError::Invalid {
                path: path.into(),
                field: "prefill.modes".into(),
                reason: format!("{name}: {e}"),
            })?;
        }
        if let Some(k) = spec
            .prefill
            .max_seq_len
            .keys()
            .find(|k| k.parse::<WkvMode>().is_err())
        {
            return Err(SpecError::Invalid {
                path: path.into(),
                field: "prefill.max_seq_len".into(),
                reason: format!("`{k}` is not a formulation name"),
            });
        }
        Ok(spec)
    }

    /// Reads and parses a file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SpecError> {
        let (text, shown) = crate::spec::read_spec(path.as_ref())?;
        Self::parse(&text, &shown)
    }

    /// The spec with its `quick` overrides applied (an error without a `quick:` section).
    pub fn quick(&self, path: &str) -> Result<Self, SpecError> {
        let Some(q) = self.quick.clone() else {
            return Err(crate::spec::no_quick_section(path));
        };
        let mut s = self.clone();
        if let Some(m) = q.prefill_model {
            s.prefill.model = m;
        }
        if let Some(t) = q.seq_lens {
            s.prefill.seq_lens = t;
        }
        if let (Some(m), Some(d)) = (q.decode_model, s.decode.as_mut()) {
            d.model = m;
        }
        if let (Some(n), Some(d)) = (q.steps, s.decode.as_mut()) {
            d.steps = n;
        }
        if let Some(r) = q.repeats {
            s.repeats = r;
        }
        if let (Some(m), Some(part)) = (q.matmul_shapes, s.matmul.as_mut()) {
            part.shapes = m;
        }
        s.quick = None;
        Ok(s)
    }

    /// The resolved spec as YAML (for `meta.json`).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Sequence lengths, ascending and distinct.
    pub fn seq_lens(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.prefill.seq_lens.0.iter().map(|n| n.get()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The spec's memory budget in bytes, if it sets one.
    pub fn memory_budget_bytes(&self) -> Option<u64> {
        self.memory_budget
            .as_deref()
            .and_then(lab_util::parse_bytes)
    }

    /// How many rows one backend produces (for a progress bar).
    pub fn planned(&self, cpu_f32: bool) -> usize {
        let prefill = self.seq_lens().len() * self.prefill.modes.0.len();
        let decode = match (&self.decode, cpu_f32) {
            (None, _) => 0,
            (Some(_), true) => 2,
            (Some(_), false) => 1,
        };
        let matmul = self.matmul.as_ref().map_or(0, |m| m.shapes.0.len());
        matmul + prefill + decode
    }
}

/// Errors that stop a comparison (failures of single measurements are recorded instead).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Records or `meta.json` could not be written.
    #[error(transparent)]
    Records(#[from] RecordsError),
}

/// One backend run of the comparison: who it is and what its device can hold.
#[derive(Debug, Clone)]
pub struct BackendRun {
    /// Backend name (`ndarray`, `flex`, `wgpu`, `cuda`).
    pub backend: String,
    /// `f32` or `f64`.
    pub dtype: String,
    /// A CPU backend (the spec's `cpu_max_seq_len` applies; the CPU decoder runs in f32).
    pub cpu: bool,
    /// Memory budget and largest buffer.
    pub limits: DeviceLimits,
    /// The reference's label (the first backend of the run).
    pub reference: String,
    /// Git revision of the measuring code.
    pub git_rev: String,
}

impl BackendRun {
    /// `backend`, or `backend:dtype` when not f32.
    pub fn label(&self) -> String {
        lab_records::backend_label(&self.backend, &self.dtype)
    }

    fn is_reference(&self) -> bool {
        self.label() == self.reference
    }
}

/// The outputs a backend produced, by measurement: the reference's are kept for the
/// backends after it.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    prefill: HashMap<(usize, String), Vec<f64>>,
    decode: Option<Vec<f64>>,
    matmul: HashMap<String, Vec<f64>>,
}

impl Outputs {
    /// The reference output for a prefill at `t` in `mode`: that formulation's if it ran,
    /// otherwise another formulation's at the same T (named in the second value).
    fn prefill(&self, t: usize, mode: &str) -> Option<(&[f64], Option<String>)> {
        if let Some(y) = self.prefill.get(&(t, mode.to_string())) {
            return Some((y, None));
        }
        let mut others: Vec<(&(usize, String), &Vec<f64>)> = self
            .prefill
            .iter()
            .filter(|((tt, _), _)| *tt == t)
            .collect();
        others.sort_by(|a, b| a.0.1.cmp(&b.0.1));
        others
            .first()
            .map(|((_, m), y)| (y.as_slice(), Some(m.clone())))
    }
}

/// `max |y - r|` and that divided by `max |r|`; NaN when an output holds a NaN or the
/// lengths differ (a broken output is shown, never hidden by `max`).
pub fn differences(y: &[f64], r: &[f64]) -> (f64, f64) {
    if y.len() != r.len() || y.iter().chain(r).any(|x| x.is_nan()) {
        return (f64::NAN, f64::NAN);
    }
    let abs = y
        .iter()
        .zip(r)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let scale = r.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    (abs, if scale > 0.0 { abs / scale } else { abs })
}

/// The seeded random parameters, rounded to f32: every backend, f64 ones included,
/// holds exactly the same weights, so output differences come from the arithmetic alone.
struct F32Weights(RandomizedInit);

impl ParamSource for F32Weights {
    fn values(&mut self, spec: &ParamSpec) -> rwkv::error::Result<Vec<f64>> {
        Ok(self
            .0
            .values(spec)?
            .into_iter()
            .map(|x| x as f32 as f64)
            .collect())
    }
}

/// The comparison's model of `shape` on `device` (the same weights on every backend).
pub fn model<B: WkvBackend>(
    shape: &Shape,
    seed: u64,
    device: &B::Device,
) -> Result<Rwkv<B>, String> {
    shape
        .config()
        .init_from::<B>(device, &mut F32Weights(RandomizedInit::new(seed)))
        .map_err(|e| e.to_string())
}

/// The tokens of a prefill at `t` (the same on every backend).
pub fn prefill_tokens(seed: u64, t: usize, vocab: usize) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed ^ 0x9f11 ^ (t as u64).wrapping_mul(0x9E37_79B9));
    (0..t).map(|_| rng.below(vocab as u64) as i64).collect()
}

/// The tokens of the decode run.
pub fn decode_tokens(seed: u64, n: usize, vocab: usize) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed ^ 0xdec0de);
    (0..n).map(|_| rng.below(vocab as u64) as i64).collect()
}

/// The message of a caught panic.
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `f`, turning an error or a panic (a GPU backend panics on an allocation it cannot
/// make) into the error text of the row.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(format!("panicked: {}", panic_text(p))),
    }
}

/// What the runner reports while it works.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A measurement starts.
    Started(&'a str),
    /// A row was recorded.
    Finished(&'a BackendRow),
}

struct Runner<'a, B: WkvBackend> {
    spec: &'a CompareSpec,
    run: &'a BackendRun,
    device: &'a B::Device,
    reference: Option<&'a Outputs>,
    elem: usize,
    /// Set when a measurement panicked on a GPU backend: CubeCL's device thread stops after
    /// a failed allocation, and every later operation on the device fails (design §17), so
    /// the rest of the backend's measurements are recorded as skipped, with this reason.
    dead: std::cell::RefCell<Option<String>>,
}

impl<B: WkvBackend> Runner<'_, B> {
    /// Runs one measurement unless the device is dead; a panic on a GPU backend kills it.
    fn attempt<T>(&self, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        if let Some(why) = self.dead.borrow().as_ref() {
            return Err(format!(
                "not run: an earlier measurement on this device failed ({why}); after a failure the device rejects every operation"
            ));
        }
        let out = guarded(f);
        if let Err(e) = &out
            && e.starts_with("panicked")
            && !self.run.cpu
        {
            *self.dead.borrow_mut() = Some(e.clone());
        }
        out
    }

    /// The status of a failed attempt: skipped when the device was already dead.
    fn failure(row: &mut BackendRow, e: String) {
        row.status = if e.starts_with("not run:") {
            Status::Skipped
        } else {
            Status::Error
        };
        row.note = e;
    }

    /// A row of a model measurement (prefill or decode) of this shape.
    fn row(&self, measured: Measured, method: &str, seq_len: usize, shape: &Shape) -> BackendRow {
        let config = shape.config();
        let mut row = self.bare_row(measured, method, seq_len);
        (row.d_model, row.n_layers, row.vocab) =
            (config.d_model, config.n_layers, config.vocab_size);
        row.params = config.num_params() as u64;
        row
    }

    /// A row with no model shape (zeros), for the matrix products.
    fn bare_row(&self, measured: Measured, method: &str, seq_len: usize) -> BackendRow {
        BackendRow {
            study: self.spec.study.clone(),
            measured,
            backend: self.run.backend.clone(),
            dtype: self.run.dtype.clone(),
            method: method.to_string(),
            seq_len,
            d_model: 0,
            n_layers: 0,
            vocab: 0,
            params: 0,
            repeats: 0,
            median_s: None,
            min_s: None,
            max_s: None,
            tokens_per_s: None,
            reference: self.run.reference.clone(),
            max_abs_diff: None,
            max_rel_diff: None,
            estimate_bytes: None,
            largest_tensor_bytes: None,
            status: Status::Ok,
            note: String::new(),
            git_rev: self.run.git_rev.clone(),
        }
    }

    fn compare(
        &self,
        row: &mut BackendRow,
        y: &[f64],
        reference: Option<(&[f64], Option<String>)>,
    ) {
        if self.run.is_reference() {
            return;
        }
        match reference {
            Some((r, other)) => {
                let (abs, rel) = differences(y, r);
                row.max_abs_diff = Some(abs);
                row.max_rel_diff = Some(rel);
                if let Some(m) = other {
                    row.reference = format!("{} ({m})", self.run.reference);
                }
            }
            None => {
                push_note(
                    row,
                    "not compared: the reference did not run this measurement",
                );
            }
        }
    }

    /// Every prefill at `t`, in each formulation.
    fn prefills(
        &self,
        model: &Result<Rwkv<B>, String>,
        t: usize,
        out: &mut Outputs,
        progress: &mut dyn FnMut(Progress<'_>),
        sink: &mut dyn FnMut(&BackendRow) -> Result<(), RecordsError>,
    ) -> Result<(), CompareError> {
        let shape = &self.spec.prefill.model;
        let config = shape.config();
        for mode in self.spec.prefill.modes.0.iter().map(|m| m.0) {
            let name = mode.to_string();
            progress(Progress::Started(&format!(
                "{} prefill T={t} {name}",
                self.run.label()
            )));
            let mut row = self.row(Measured::Prefill, &name, t, shape);
            row.repeats = self.spec.repeats.get();
            let total = forward_bytes(&config, 1, t, mode, self.elem)
                .and_then(|f| f.checked_add(model_bytes(&config, self.elem)?))
                .unwrap_or(u64::MAX);
            let largest = rwkv_largest_bytes(&config, 1, t, mode, self.elem);
            (row.estimate_bytes, row.largest_tensor_bytes) = (Some(total), Some(largest));
            let limit = self
                .spec
                .prefill
                .max_seq_len
                .iter()
                .find(|(k, _)| k.parse::<WkvMode>().ok() == Some(mode))
                .map(|(_, v)| v.get());
            let cpu_limit = self
                .spec
                .prefill
                .cpu_max_seq_len
                .filter(|_| self.run.cpu)
                .map(|v| v.get());
            let skip = if let Some(l) = limit.filter(|&l| t > l) {
                Some(format!(
                    "T = {t} is beyond the spec's max_seq_len {l} for {name}"
                ))
            } else if let Some(l) = cpu_limit.filter(|&l| t > l) {
                Some(format!(
                    "T = {t} is beyond the spec's cpu_max_seq_len {l} (CPU backends)"
                ))
            } else {
                self.run.limits.check(total, largest)
            };
            if let Some(why) = skip {
                row.status = Status::Skipped;
                row.note = why;
            } else {
                match model {
                    Err(e) => Self::failure(&mut row, built_error(e)),
                    Ok(m) => match self.attempt(|| self.time_prefill(m, t, mode)) {
                        Ok((stats, y)) => {
                            (row.median_s, row.min_s, row.max_s) =
                                (Some(stats.median), Some(stats.min), Some(stats.max));
                            row.tokens_per_s = Some(t as f64 / stats.median);
                            self.compare(
                                &mut row,
                                &y,
                                self.reference.and_then(|r| r.prefill(t, &name)),
                            );
                            out.prefill.insert((t, name.clone()), y);
                        }
                        Err(e) => Self::failure(&mut row, e),
                    },
                }
            }
            sink(&row)?;
            progress(Progress::Finished(&row));
        }
        Ok(())
    }

    /// The timed forwards, and the last position's logits of the last one.
    fn time_prefill(
        &self,
        model: &Rwkv<B>,
        t: usize,
        mode: WkvMode,
    ) -> Result<(Stats, Vec<f64>), String> {
        let vocab = model.config.vocab_size;
        let ids = prefill_tokens(self.spec.seed, t, vocab);
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, t]), self.device);
        let timed = time_repeated(
            self.spec.warmup,
            self.spec.repeats,
            &crate::meter::NoMeter,
            || B::sync(self.device).map_err(|e| format!("device sync failed: {e:?}")),
            || {
                model
                    .forward(tokens.clone(), None, mode)
                    .map(|(logits, _)| logits)
                    .map_err(|e| e.to_string())
            },
        )?;
        let last = timed.last.slice([0..1, t - 1..t, 0..vocab]);
        Ok((timed.stats, rwkv::verify::to_f64(last)))
    }

    /// The dense products, each timed and its whole result kept.
    fn matmuls(
        &self,
        out: &mut Outputs,
        progress: &mut dyn FnMut(Progress<'_>),
        sink: &mut dyn FnMut(&BackendRow) -> Result<(), RecordsError>,
    ) -> Result<(), CompareError> {
        let Some(part) = &self.spec.matmul else {
            return Ok(());
        };
        for [m, k, n] in part.shapes.0.iter().map(|s| s.map(|x| x.get())) {
            let name = format!("{m}x{k}x{n}");
            progress(Progress::Started(&format!(
                "{} matmul {name}",
                self.run.label()
            )));
            // a product's row: m in seq_len, k in d_model, n in vocab
            let mut row = self.bare_row(Measured::Matmul, &name, m);
            (row.d_model, row.vocab) = (k, n);
            row.repeats = self.spec.repeats.get();
            let e = self.elem as u64;
            let (mu, ku, nu) = (m as u64, k as u64, n as u64);
            let largest = [mu * ku, ku * nu, mu * nu].into_iter().max().unwrap_or(0) * e;
            let total = (mu * ku + ku * nu + mu * nu) * e;
            (row.estimate_bytes, row.largest_tensor_bytes) = (Some(total), Some(largest));
            if let Some(why) = self.run.limits.check(total, largest) {
                row.status = Status::Skipped;
                row.note = why;
            } else {
                match self.attempt(|| self.time_matmul(m, k, n)) {
                    Ok((stats, y)) => {
                        (row.median_s, row.min_s, row.max_s) =
                            (Some(stats.median), Some(stats.min), Some(stats.max));
                        row.tokens_per_s = Some(m as f64 / stats.median);
                        self.compare(
                            &mut row,
                            &y,
                            self.reference
                                .and_then(|r| r.matmul.get(&name))
                                .map(|r| (r.as_slice(), None)),
                        );
                        out.matmul.insert(name, y);
                    }
                    Err(e) => Self::failure(&mut row, e),
                }
            }
            sink(&row)?;
            progress(Progress::Finished(&row));
        }
        Ok(())
    }

    /// The timed products of seeded operands in [-1, 1) (the same f32 values on every
    /// backend), and the last product: through `rwkv::matmul::matmul`, the model's own
    /// products, in the precision this backend runs under (`cuda` f32, `cuda:tf32` TF32).
    fn time_matmul(&self, m: usize, k: usize, n: usize) -> Result<(Stats, Vec<f64>), String> {
        let mut rng = SplitMix64::new(self.spec.seed ^ 0x6e33 ^ (m * 31 + k * 7 + n) as u64);
        let mut fill =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.range(-1.0, 1.0) as f32).collect() };
        let opts = || lab_util::float_opts::<B>(self.device);
        let a = Tensor::<B, 2>::from_data(TensorData::new(fill(m * k), [m, k]), opts());
        let b = Tensor::<B, 2>::from_data(TensorData::new(fill(k * n), [k, n]), opts());
        let timed = time_repeated(
            self.spec.warmup,
            self.spec.repeats,
            &crate::meter::NoMeter,
            || B::sync(self.device).map_err(|e| format!("device sync failed: {e:?}")),
            || Ok::<_, String>(rwkv::matmul::matmul(a.clone(), b.clone())),
        )?;
        Ok((timed.stats, rwkv::verify::to_f64(timed.last)))
    }

    /// The decode rows: the model's own step, and the CPU decoder on f32 CPU backends.
    fn decodes(
        &self,
        out: &mut Outputs,
        progress: &mut dyn FnMut(Progress<'_>),
        sink: &mut dyn FnMut(&BackendRow) -> Result<(), RecordsError>,
    ) -> Result<(), CompareError> {
        let Some(d) = &self.spec.decode else {
            return Ok(());
        };
        let config = d.model.config();
        let n = d.warmup + d.steps.get();
        let total = forward_bytes(&config, 1, 1, WkvMode::Recurrent, self.elem)
            .and_then(|f| f.checked_add(model_bytes(&config, self.elem)?))
            .unwrap_or(u64::MAX);
        let largest = rwkv_largest_bytes(&config, 1, 1, WkvMode::Recurrent, self.elem);
        let skip = self.run.limits.check(total, largest);
        let mut engines = vec!["model", "model-scan"];
        if self.run.cpu && self.run.dtype == "f32" {
            engines.push("cpu-decoder");
        }
        let built = if skip.is_none() {
            Some(self.attempt(|| model::<B>(&d.model, self.spec.seed, self.device)))
        } else {
            None
        };
        for engine in engines {
            progress(Progress::Started(&format!(
                "{} decode {engine}",
                self.run.label()
            )));
            let mut row = self.row(Measured::Decode, engine, n, &d.model);
            row.repeats = d.steps.get();
            (row.estimate_bytes, row.largest_tensor_bytes) = (Some(total), Some(largest));
            match (&skip, &built) {
                (Some(why), _) => {
                    row.status = Status::Skipped;
                    row.note = why.clone();
                }
                (None, Some(Err(e))) => Self::failure(&mut row, built_error(e)),
                (None, Some(Ok(m))) => match self.attempt(|| self.time_decode(m, engine, d)) {
                    Ok((stats, y)) => {
                        (row.median_s, row.min_s, row.max_s) =
                            (Some(stats.median), Some(stats.min), Some(stats.max));
                        row.tokens_per_s = Some(1.0 / stats.median);
                        self.compare(
                            &mut row,
                            &y,
                            self.reference
                                .and_then(|r| r.decode.as_deref())
                                .map(|r| (r, None)),
                        );
                        if engine == "model" {
                            out.decode = Some(y);
                        }
                    }
                    Err(e) => Self::failure(&mut row, e),
                },
                (None, None) => unreachable!("built whenever nothing skips"),
            }
            sink(&row)?;
            progress(Progress::Finished(&row));
        }
        Ok(())
    }

    /// Seconds per step of the timed steps, and the last step's logits.
    fn time_decode(
        &self,
        model: &Rwkv<B>,
        engine: &str,
        d: &DecodePart,
    ) -> Result<(Stats, Vec<f64>), String> {
        let vocab = model.config.vocab_size;
        let tokens = decode_tokens(self.spec.seed, d.warmup + d.steps.get(), vocab);
        let mut secs = Vec::with_capacity(tokens.len());
        let mut last = Vec::new();
        if let Some(mode) = match engine {
            "model" => Some(WkvMode::Recurrent),
            "model-scan" => Some(WkvMode::Scan),
            _ => None,
        } {
            let mut state = model.zero_state(1, self.device);
            let mut last_data = None;
            for &t in &tokens {
                let start = Instant::now();
                let tok =
                    Tensor::<B, 1, Int>::from_data(TensorData::new(vec![t], [1]), self.device);
                let logits = model
                    .step_with(tok, &mut state, mode)
                    .map_err(|e| e.to_string())?;
                let data = logits.into_data();
                secs.push(start.elapsed().as_secs_f64());
                last_data = Some(data);
            }
            // only the last step's logits are compared: converted once, after the loop
            if let Some(data) = last_data {
                last = data
                    .convert::<f64>()
                    .into_vec::<f64>()
                    .map_err(|e| format!("{e:?}"))?;
            }
        } else {
            let decoder = CpuDecoder::from_model(model).map_err(|e| e.to_string())?;
            let mut state: DecoderState = decoder.zero_state();
            let mut row = vec![0f32; decoder.vocab_size()];
            for &t in &tokens {
                let start = Instant::now();
                decoder
                    .step(t, &mut state, &mut row)
                    .map_err(|e| e.to_string())?;
                secs.push(start.elapsed().as_secs_f64());
            }
            last = row.iter().map(|&x| x as f64).collect();
        }
        let stats = Stats::of(&secs[d.warmup..]).ok_or("no timed step")?;
        Ok((stats, last))
    }
}

/// Everything one backend measures, each row handed to `sink` as it is made: the dense
/// products, the prefills (T ascending, each formulation), then the decode rows. `reference` holds the
/// reference backend's outputs (None while the reference itself runs); returns this
/// backend's outputs.
///
/// # Errors
/// Only a failing `sink` (writing the records); failed measurements are rows.
pub fn run_backend<B: WkvBackend>(
    spec: &CompareSpec,
    run: &BackendRun,
    device: &B::Device,
    reference: Option<&Outputs>,
    progress: &mut dyn FnMut(Progress<'_>),
    sink: &mut dyn FnMut(&BackendRow) -> Result<(), RecordsError>,
) -> Result<Outputs, CompareError> {
    let runner = Runner::<B> {
        spec,
        run,
        device,
        reference,
        elem: <B::FloatElem as Element>::dtype().size(),
        dead: Default::default(),
    };
    let mut out = Outputs::default();
    runner.matmuls(&mut out, progress, sink)?;
    let config = spec.prefill.model.config();
    let fits = run
        .limits
        .check(model_bytes(&config, runner.elem).unwrap_or(u64::MAX), 0)
        .is_none();
    // the model is built once for every T; one that does not fit skips each prefill by
    // its own estimate (which includes the weights)
    let model = if fits {
        runner.attempt(|| model::<B>(&spec.prefill.model, spec.seed, device))
    } else {
        Err("the weights alone exceed the memory budget".into())
    };
    for t in spec.seq_lens() {
        runner.prefills(&model, t, &mut out, progress, sink)?;
    }
    drop(model);
    runner.decodes(&mut out, progress, sink)?;
    Ok(out)
}

/// The `meta.json` of a comparison of `backends` (labels, the reference first).
pub fn study_meta(spec: &CompareSpec, backends: &[String], command: &str, git_rev: &str) -> Meta {
    Meta {
        kind: StudyKind::Backends,
        command: command.into(),
        spec: spec.to_yaml(),
        seed: spec.seed,
        backend: backends.join(","),
        device: String::new(),
        memory: String::new(),
        dtype: String::new(),
        git_rev: git_rev.into(),
        versions: crate::scaling::versions(),
        machine: lab_records::provenance::machine_line(),
        started: lab_records::provenance::utc_now(),
        finished: String::new(),
    }
}

/// Starts a comparison in `study` (a new run: a folder with rows is refused).
pub fn start(study: &StudyDir, meta: Meta) -> Result<lab_records::Run<BackendRow>, CompareError> {
    Ok(study.start::<BackendRow>(meta, false, &lab_records::text_differences)?)
}

/// The note of a row whose model could not be built (a dead device's reason unchanged).
fn built_error(e: &str) -> String {
    if e.starts_with("not run:") {
        e.to_string()
    } else {
        format!("the model could not be built: {e}")
    }
}

fn push_note(row: &mut BackendRow, note: &str) {
    if !row.note.is_empty() {
        row.note.push_str("; ");
    }
    row.note.push_str(note);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "
prefill:
  model: { vocab: 32, d_model: 8, n_layers: 2 }
  seq_lens: [4, 8]
  modes: [scan, parallel, recurrent]
  max_seq_len: { parallel: 4 }
  cpu_max_seq_len: 100
decode:
  model: { vocab: 32, d_model: 8, n_layers: 1 }
  steps: 3
  warmup: 1
matmul:
  shapes: [[4, 8, 16]]
quick:
  seq_lens: [4]
";

    fn run_one<B: WkvBackend>(
        dtype: &str,
        reference: Option<&Outputs>,
    ) -> (Vec<BackendRow>, Outputs) {
        let spec = CompareSpec::parse(SPEC, "test").unwrap();
        let run = BackendRun {
            backend: "ndarray".into(),
            dtype: dtype.into(),
            cpu: true,
            limits: DeviceLimits::budget(1 << 30),
            reference: "ndarray:f64".into(),
            git_rev: "test".into(),
        };
        let mut rows = Vec::new();
        let out = run_backend::<B>(
            &spec,
            &run,
            &Default::default(),
            reference,
            &mut |_| {},
            &mut |r| {
                rows.push(r.clone());
                Ok(())
            },
        )
        .unwrap();
        (rows, out)
    }

    #[test]
    fn f32_against_f64_on_the_same_weights() {
        let (ref_rows, reference) = run_one::<burn::backend::NdArray<f64>>("f64", None);
        // one product, 2 T x 3 modes, decode through the model's two steps (no CPU decoder
        // in f64)
        assert_eq!(ref_rows.len(), 9);
        assert!(ref_rows.iter().all(|r| r.max_abs_diff.is_none()));
        let skipped: Vec<_> = ref_rows
            .iter()
            .filter(|r| r.status == Status::Skipped)
            .collect();
        assert_eq!(skipped.len(), 1, "{ref_rows:?}");
        assert!(skipped[0].note.contains("max_seq_len 4 for parallel"));
        let (rows, _) = run_one::<burn::backend::NdArray<f32>>("f32", Some(&reference));
        assert_eq!(rows.len(), 10, "the CPU decoder runs in f32");
        let mm = rows
            .iter()
            .find(|r| r.measured == Measured::Matmul)
            .unwrap();
        assert_eq!(
            (mm.method.as_str(), mm.seq_len, mm.d_model, mm.vocab),
            ("4x8x16", 4, 8, 16)
        );
        for r in rows.iter().filter(|r| r.is_ok()) {
            let d = r.max_abs_diff.expect("compared");
            assert!(d > 0.0 && d < 1e-4, "{r:?}");
            assert!(r.median_s.unwrap() > 0.0);
        }
        let parallel8 = rows
            .iter()
            .find(|r| r.method == "parallel" && r.seq_len == 8)
            .unwrap();
        assert_eq!(parallel8.status, Status::Skipped);
    }

    #[test]
    fn a_differing_output_is_measured_not_hidden() {
        let (abs, rel) = differences(&[1.0, 2.5], &[1.0, 2.0]);
        assert_eq!((abs, rel), (0.5, 0.25));
        assert!(differences(&[f64::NAN], &[1.0]).0.is_nan());
        assert!(differences(&[1.0], &[1.0, 2.0]).0.is_nan());
    }

    #[test]
    fn spec_errors_name_the_field() {
        let bad = SPEC.replace("modes: [scan, parallel, recurrent]", "modes: [scan, fast]");
        let e = CompareSpec::parse(&bad, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("fast"), "{e}");
        let bad = SPEC.replace(
            "max_seq_len: { parallel: 4 }",
            "max_seq_len: { paralel: 4 }",
        );
        let e = CompareSpec::parse(&bad, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("paralel"), "{e}");
        let quick = CompareSpec::parse(SPEC, "x").unwrap().quick("x").unwrap();
        assert_eq!(quick.seq_lens(), [4]);
    }
}
