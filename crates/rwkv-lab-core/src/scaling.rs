//! The scaling study: time and peak memory versus sequence length, prefill and
//! token-by-token generation, for every RWKV formulation and both transformer attention
//! paths. Measures and records; never plots.
//!
//! Every timing: warm-up runs first, a device sync before the clock stops, `repeats` timed
//! runs summarised by median, min and max. Peak memory: the counting allocator's peak above
//! the level before the call (CPU). A measurement whose estimated working memory exceeds
//! the budget is recorded as `skipped` with the estimate instead of being run.

use std::collections::HashSet;
use std::time::Instant;

use burn::tensor::{Element, Int, Tensor, TensorData, backend::Backend};
use gpt_baseline::AttentionPath;
use lab_util::SplitMix64;
use rwkv::{WkvBackend, WkvMode};
use rwkv_report::Record;

use crate::meter::PeakMeter;
use crate::models::Models;
use crate::records::RecordsError;
use crate::spec::{Attention, ScalingSpec};

/// Where and how a run happens.
#[derive(Debug, Clone)]
pub struct Context {
    /// Backend name.
    pub backend: String,
    /// `f32` or `f64`.
    pub dtype: String,
    /// Git revision of the measuring code.
    pub git_rev: String,
    /// Bytes above which a measurement is skipped.
    pub memory_budget: u64,
}

/// Errors that stop a study (failures of single measurements are recorded instead).
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// The models could not be built.
    #[error("building the models: {0}")]
    Build(String),
    /// Records could not be written.
    #[error(transparent)]
    Records(#[from] RecordsError),
}

/// What the runner reports while it works (the CLI turns it into a progress bar).
#[derive(Debug)]
pub enum Progress<'a> {
    /// The number of measurements planned (after `--resume` removed the recorded ones).
    Planned(usize),
    /// A measurement starts.
    Started(&'a str),
    /// A measurement produced these rows.
    Finished(&'a [Record]),
}

/// Which model and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// RWKV in a WKV formulation.
    Rwkv(WkvMode),
    /// The transformer with an attention path.
    Transformer(Attention),
}

impl Subject {
    fn model(&self) -> &'static str {
        match self {
            Subject::Rwkv(_) => "rwkv",
            Subject::Transformer(_) => "transformer",
        }
    }

    fn variant(&self) -> String {
        match self {
            Subject::Rwkv(m) => m.to_string(),
            Subject::Transformer(Attention::Explicit) => "explicit".into(),
            Subject::Transformer(Attention::Fused) => "fused".into(),
        }
    }
}

fn path_of(a: Attention) -> AttentionPath {
    match a {
        Attention::Explicit => AttentionPath::Explicit,
        Attention::Fused => AttentionPath::Fused,
    }
}

/// One generation run: per-token latencies, peaks and state bytes after each token.
type GenerationRun = (Vec<f64>, Vec<Option<u64>>, Vec<u64>);

/// One planned measurement.
#[derive(Debug, Clone)]
enum Plan {
    Prefill { subject: Subject, t: usize },
    Generate { model: &'static str },
}

/// Estimated working memory of a prefill in bytes (largest live intermediates).
pub fn prefill_estimate(spec: &ScalingSpec, subject: Subject, t: usize, elem: usize) -> u64 {
    let m = &spec.model;
    let (b, c, v, h) = (
        spec.batch.get() as u64,
        m.d_model.get() as u64,
        m.vocab.get() as u64,
        m.n_heads.get() as u64,
    );
    let (t, e) = (t as u64, elem as u64);
    let activations = b * t * (16 * c + v) * e;
    match subject {
        Subject::Rwkv(WkvMode::Parallel) => activations + 4 * b * c * t * t * e,
        Subject::Rwkv(WkvMode::Chunked { len }) => {
            activations + 4 * b * c * t * (len as u64).min(t) * e
        }
        Subject::Rwkv(_) => activations + 4 * b * t * c * e,
        Subject::Transformer(_) => activations + 3 * b * h * t * t * e,
    }
}

fn ids<B: Backend>(
    seed: u64,
    batch: usize,
    time: usize,
    vocab: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let mut rng = SplitMix64::new(seed ^ (time as u64).wrapping_mul(0x9E37));
    let v: Vec<i64> = (0..batch * time)
        .map(|_| rng.below(vocab as u64) as i64)
        .collect();
    Tensor::from_data(TensorData::new(v, [batch, time]), device)
}

fn stats(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

struct Runner<'a, B: WkvBackend> {
    meter: &'a dyn PeakMeter,
    spec: &'a ScalingSpec,
    ctx: &'a Context,
    device: &'a B::Device,
    models: Models<B>,
    elem: usize,
    rwkv_params: u64,
    transformer_params: u64,
    rwkv_non_embedding: u64,
    transformer_non_embedding: u64,
}

impl<B: WkvBackend> Runner<'_, B> {
    fn record(
        &self,
        kind: &str,
        model: &str,
        variant: String,
        seq_len: usize,
        position: usize,
    ) -> Record {
        let m = &self.spec.model;
        Record {
            study: self.spec.study.clone(),
            kind: kind.into(),
            model: model.into(),
            variant,
            backend: self.ctx.backend.clone(),
            dtype: self.ctx.dtype.clone(),
            batch: self.spec.batch.get(),
            seq_len,
            position,
            d_model: m.d_model.get(),
            n_layers: m.n_layers.get(),
            vocab: m.vocab.get(),
            params: if model == "rwkv" {
                self.rwkv_params
            } else {
                self.transformer_params
            },
            repeats: self.spec.repeats.get(),
            median_s: None,
            min_s: None,
            max_s: None,
            cumulative_s: None,
            peak_bytes: None,
            state_bytes: None,
            status: "ok".into(),
            estimate_bytes: None,
            note: String::new(),
            git_rev: self.ctx.git_rev.clone(),
            params_non_embedding: Some(if model == "rwkv" {
                self.rwkv_non_embedding
            } else {
                self.transformer_non_embedding
            }),
        }
    }

    fn sync(&self) -> Result<(), String> {
        B::sync(self.device).map_err(|e| format!("device sync failed: {e:?}"))
    }

    /// One prefill run: returns the state / cache bytes.
    fn prefill_once(&self, subject: Subject, tokens: Tensor<B, 2, Int>) -> Result<u64, String> {
        let bytes = match subject {
            Subject::Rwkv(mode) => {
                let (logits, state) = self
                    .models
                    .rwkv
                    .forward(tokens, None, mode)
                    .map_err(|e| e.to_string())?;
                self.sync()?;
                drop(logits);
                let [b, c] = state.layers[0].dims();
                (5 * state.layers.len() * b * c * self.elem) as u64
            }
            Subject::Transformer(a) => {
                let (logits, cache) = self
                    .models
                    .transformer
                    .prefill(tokens, path_of(a))
                    .map_err(|e| e.to_string())?;
                self.sync()?;
                drop(logits);
                cache.bytes() as u64
            }
        };
        Ok(bytes)
    }

    fn prefill(&self, subject: Subject, t: usize) -> Record {
        let mut r = self.record("prefill", subject.model(), subject.variant(), t, 0);
        let est = prefill_estimate(self.spec, subject, t, self.elem);
        r.estimate_bytes = Some(est);
        if let Some(limit) = self.spec.max_seq_len(&subject.variant()).filter(|l| t > *l) {
            r.status = "skipped".into();
            r.note = format!(
                "T = {t} is beyond the spec's max_seq_len {limit} for {}",
                subject.variant()
            );
            return r;
        }
        if est > self.ctx.memory_budget {
            r.status = "skipped".into();
            r.note = format!("estimated {est} bytes > budget {}", self.ctx.memory_budget);
            return r;
        }
        let tokens = ids::<B>(
            self.spec.seed,
            self.spec.batch.get(),
            t,
            self.spec.model.vocab.get(),
            self.device,
        );
        let run = || -> Result<(Vec<f64>, u64, Option<u64>), String> {
            for _ in 0..self.spec.warmup {
                self.prefill_once(subject, tokens.clone())?;
            }
            let (mut times, mut state, mut peak) = (Vec::new(), 0, None::<u64>);
            for _ in 0..self.spec.repeats.get() {
                let base = self.meter.begin();
                let start = Instant::now();
                state = self.prefill_once(subject, tokens.clone())?;
                times.push(start.elapsed().as_secs_f64());
                peak = self.meter.peak(base).map(|p| p.max(peak.unwrap_or(0)));
            }
            Ok((times, state, peak))
        };
        match run() {
            Ok((times, state, peak)) => {
                let (med, min, max) = stats(times);
                (r.median_s, r.min_s, r.max_s) = (Some(med), Some(min), Some(max));
                r.state_bytes = Some(state);
                r.peak_bytes = peak;
            }
            Err(e) => {
                r.status = "error".into();
                r.note = e;
            }
        }
        r
    }

    /// Prompt, then `new_tokens` single steps; rows at every `record_every`-th position.
    fn generate(&self, model: &'static str) -> Vec<Record> {
        let g = self
            .spec
            .generation
            .as_ref()
            .expect("planned only with a generation spec");
        let (prompt_len, n, every) = (g.prompt_len.get(), g.new_tokens.get(), g.record_every.get());
        let (batch, vocab) = (self.spec.batch.get(), self.spec.model.vocab.get());
        let prompt = ids::<B>(self.spec.seed, batch, prompt_len, vocab, self.device);
        let feed: Vec<Tensor<B, 1, Int>> = {
            let all = ids::<B>(self.spec.seed ^ 0xFEED, batch, n, vocab, self.device);
            (0..n)
                .map(|i| all.clone().slice([0..batch, i..i + 1]).reshape([batch]))
                .collect()
        };
        let variant = if model == "rwkv" { "rnn" } else { "kv-cache" };
        // latencies[repeat][i], peaks[repeat][i], state bytes after token i
        let run_once = |steps: usize| -> Result<GenerationRun, String> {
            let (mut lat, mut peaks, mut states) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            if model == "rwkv" {
                let (_, mut state) = self
                    .models
                    .rwkv
                    .forward(prompt.clone(), None, WkvMode::Parallel)
                    .map_err(|e| e.to_string())?;
                self.sync()?;
                let [b, c] = state.layers[0].dims();
                let bytes = (5 * state.layers.len() * b * c * self.elem) as u64;
                for tok in &feed[..steps] {
                    let base = self.meter.begin();
                    let start = Instant::now();
                    let logits = self
                        .models
                        .rwkv
                        .step(tok.clone(), &mut state)
                        .map_err(|e| e.to_string())?;
                    self.sync()?;
                    lat.push(start.elapsed().as_secs_f64());
                    peaks.push(self.meter.peak(base));
                    drop(logits);
                    states.push(bytes);
                }
            } else {
                let t = &self.models.transformer;
                let (_, mut cache) = t
                    .prefill(prompt.clone(), AttentionPath::Explicit)
                    .map_err(|e| e.to_string())?;
                self.sync()?;
                for tok in &feed[..steps] {
                    let base = self.meter.begin();
                    let start = Instant::now();
                    let logits = t.step(tok.clone(), &mut cache).map_err(|e| e.to_string())?;
                    self.sync()?;
                    lat.push(start.elapsed().as_secs_f64());
                    peaks.push(self.meter.peak(base));
                    drop(logits);
                    states.push(cache.bytes() as u64);
                }
            }
            Ok((lat, peaks, states))
        };
        let mut runs = Vec::new();
        // warm-up runs generate at most 64 tokens: enough to warm caches and allocators
        for i in 0..self.spec.warmup + self.spec.repeats.get() {
            let steps = if i < self.spec.warmup { n.min(64) } else { n };
            match run_once(steps) {
                Ok(r) if i >= self.spec.warmup => runs.push(r),
                Ok(_) => {}
                Err(e) => {
                    let mut r = self.record("generate", model, variant.into(), prompt_len + n, n);
                    r.status = "error".into();
                    r.note = e;
                    return vec![r];
                }
            }
        }
        let mut rows = Vec::new();
        let cumulative: Vec<Vec<f64>> = runs
            .iter()
            .map(|(lat, _, _)| {
                lat.iter()
                    .scan(0.0, |acc, x| {
                        *acc += x;
                        Some(*acc)
                    })
                    .collect()
            })
            .collect();
        for i in 0..n {
            let pos = i + 1;
            if !(pos == 1 || pos % every == 0 || pos == n) {
                continue;
            }
            let mut r = self.record("generate", model, variant.into(), prompt_len + pos, pos);
            let (med, min, max) = stats(runs.iter().map(|(lat, _, _)| lat[i]).collect());
            (r.median_s, r.min_s, r.max_s) = (Some(med), Some(min), Some(max));
            r.cumulative_s = Some(stats(cumulative.iter().map(|c| c[i]).collect()).0);
            r.peak_bytes = runs.iter().filter_map(|(_, p, _)| p[i]).max();
            r.state_bytes = Some(runs[0].2[i]);
            rows.push(r);
        }
        rows
    }
}

/// Runs every measurement of `spec` not in `done` (keys of recorded rows), handing each
/// row to `sink` as soon as it exists.
pub fn run<B: WkvBackend>(
    spec: &ScalingSpec,
    device: &B::Device,
    ctx: &Context,
    meter: &dyn PeakMeter,
    done: &HashSet<String>,
    sink: &mut dyn FnMut(&Record) -> Result<(), RecordsError>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), ScalingError> {
    let seq_lens = spec.seq_lens();
    let generation = spec.generation.as_ref();
    let max_positions = seq_lens
        .iter()
        .copied()
        .filter(|_| !spec.prefill.transformer.is_empty())
        .chain(generation.map(|g| g.prompt_len.get() + g.new_tokens.get()))
        .max()
        .unwrap_or(1);
    let models = Models::<B>::build(spec, max_positions, device).map_err(ScalingError::Build)?;
    let (v, c) = (
        spec.model.vocab.get() as u64,
        spec.model.d_model.get() as u64,
    );
    let rwkv_params = models.rwkv.num_params() as u64;
    let transformer_params = models.transformer.num_params() as u64;
    let runner = Runner {
        meter,
        spec,
        ctx,
        device,
        rwkv_params,
        transformer_params,
        // token embedding + head (RWKV); token embedding + positional table + head (transformer)
        rwkv_non_embedding: rwkv_params - 2 * v * c,
        transformer_non_embedding: transformer_params - 2 * v * c - max_positions as u64 * c,
        models,
        elem: <B::FloatElem as Element>::dtype().size(),
    };

    // plan, leaving out what is already recorded
    let mut plan = Vec::new();
    for &t in &seq_lens {
        for f in &spec.prefill.rwkv {
            plan.push(Plan::Prefill {
                subject: Subject::Rwkv(f.0),
                t,
            });
        }
        for a in &spec.prefill.transformer {
            plan.push(Plan::Prefill {
                subject: Subject::Transformer(*a),
                t,
            });
        }
    }
    if generation.is_some() {
        plan.push(Plan::Generate { model: "rwkv" });
        plan.push(Plan::Generate {
            model: "transformer",
        });
    }
    let key_of = |p: &Plan| -> String {
        match p {
            Plan::Prefill { subject, t } => runner
                .record("prefill", subject.model(), subject.variant(), *t, 0)
                .key(),
            Plan::Generate { model } => {
                let g = generation.expect("generation planned");
                let n = g.new_tokens.get();
                let variant = if *model == "rwkv" { "rnn" } else { "kv-cache" };
                runner
                    .record("generate", model, variant.into(), g.prompt_len.get() + n, n)
                    .key()
            }
        }
    };
    plan.retain(|p| !done.contains(&key_of(p)));
    progress(Progress::Planned(plan.len()));

    for p in plan {
        let rows = match p {
            Plan::Prefill { subject, t } => {
                progress(Progress::Started(&format!(
                    "prefill {} {} T={t}",
                    subject.model(),
                    subject.variant()
                )));
                vec![runner.prefill(subject, t)]
            }
            Plan::Generate { model } => {
                progress(Progress::Started(&format!("generate {model}")));
                runner.generate(model)
            }
        };
        for r in &rows {
            sink(r)?;
        }
        progress(Progress::Finished(&rows));
    }
    Ok(())
}
