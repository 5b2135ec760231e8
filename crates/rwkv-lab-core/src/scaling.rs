//! The scaling study: time and peak memory versus sequence length, prefill and
//! token-by-token generation, for every RWKV formulation and both transformer attention
//! paths. Measures and records; never plots.
//!
//! Every timing goes through [`crate::timing`] (warm-up, a device sync before the clock
//! stops, `repeats` timed runs summarised by median, min and max). Peak memory: the
//! meter's peak above the level before the call. A measurement whose estimated working
//! memory ([`crate::estimate`]) exceeds the budget is recorded as `skipped` with the
//! estimate instead of being run; for generation, the estimate covers the whole run (one
//! `skipped` row at the last position).

use std::collections::HashSet;
use std::path::Path;

use burn::tensor::{Element, Int, Tensor, TensorData, backend::Backend};
use gpt_baseline::AttentionPath;
use lab_records::{
    Conditions, Kind, Measurement, Meta, Model, ParamCount, RecordsError, Row, ScalingRecord,
    Status, StudyDir,
};
use lab_util::SplitMix64;
use rwkv::{WkvBackend, WkvMode};

use crate::estimate::{DeviceLimits, generation_bytes, prefill_bytes, prefill_largest_bytes};
use crate::meter::PeakMeter;
use crate::models::Models;
use crate::spec::{Attention, ScalingSpec, spec_differences};
use crate::timing::{Stats, time_once, time_repeated};

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
    /// The device's largest single buffer (GPU backends): a measurement whose largest
    /// tensor is estimated above it is skipped. None: no such limit (CPU).
    pub max_buffer: Option<u64>,
    /// The command line, for `meta.json`.
    pub command: String,
}

impl Context {
    /// The memory budget and the device's largest buffer.
    pub fn limits(&self) -> DeviceLimits {
        DeviceLimits {
            memory_budget: self.memory_budget,
            max_buffer: self.max_buffer,
        }
    }
}

/// Errors that stop a study (failures of single measurements are recorded instead).
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// The models could not be built.
    #[error("building the models: {0}")]
    Build(String),
    /// Records or `meta.json` could not be written, or the run cannot be resumed.
    #[error(transparent)]
    Records(#[from] RecordsError),
}

/// What the runner reports while it works (the CLI turns it into a progress bar).
#[derive(Debug)]
pub enum Progress<'a> {
    /// Something the user should know (a repaired records file, ...).
    Warning(&'a str),
    /// The number of measurements planned (after `--resume` removed the recorded ones).
    Planned(usize),
    /// A measurement starts.
    Started(&'a str),
    /// A measurement produced these rows.
    Finished(&'a [ScalingRecord]),
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
    /// The model measured.
    pub fn model(&self) -> Model {
        match self {
            Subject::Rwkv(_) => Model::Rwkv,
            Subject::Transformer(_) => Model::Transformer,
        }
    }

    /// The formulation or attention path, as recorded (`chunked:64`, `fused`).
    pub fn method(&self) -> String {
        match self {
            Subject::Rwkv(m) => m.to_string(),
            Subject::Transformer(a) => a.name().into(),
        }
    }
}

/// How generation runs: RWKV in RNN mode, the transformer with a KV cache.
fn generation_method(model: Model) -> &'static str {
    match model {
        Model::Rwkv => "rnn",
        Model::Transformer => "kv-cache",
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
    Generate { model: Model },
}

/// Estimated working memory of a prefill in bytes (see [`crate::estimate`]).
pub fn prefill_estimate(spec: &ScalingSpec, subject: Subject, t: usize, elem: usize) -> u64 {
    prefill_bytes(spec, subject, t, elem)
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

struct Runner<'a, B: WkvBackend> {
    meter: &'a dyn PeakMeter,
    spec: &'a ScalingSpec,
    ctx: &'a Context,
    device: &'a B::Device,
    models: Models<B>,
    elem: usize,
    conditions: Conditions,
    rwkv_params: ParamCount,
    transformer_params: ParamCount,
}

impl<B: WkvBackend> Runner<'_, B> {
    fn record(
        &self,
        kind: Kind,
        model: Model,
        method: String,
        seq_len: usize,
        position: usize,
    ) -> ScalingRecord {
        let params = match model {
            Model::Rwkv => self.rwkv_params,
            Model::Transformer => self.transformer_params,
        };
        let what = Measurement::new(kind, model, method, seq_len, position);
        let mut r = ScalingRecord::new(&self.conditions, what, params);
        // The baseline's products are Burn's own whatever `--matmul` says: TF32 where the
        // device rounds f32 operands for them (CUDA on sm80+; docs/design.md §18), and the
        // rows say so.
        if model == Model::Transformer
            && r.dtype == "f32"
            && B::reduced_precision_matmul(self.device)
        {
            r.dtype = "tf32".into();
        }
        r
    }

    /// The row of the last generated token, which stands for the whole generation run.
    fn last_generation_row(&self, model: Model) -> Option<ScalingRecord> {
        let g = self.spec.generation.as_ref()?;
        let n = g.new_tokens.get();
        let method = generation_method(model).into();
        Some(self.record(Kind::Generate, model, method, g.prompt_len.get() + n, n))
    }

    fn sync(&self) -> Result<(), String> {
        B::sync(self.device).map_err(|e| format!("device sync failed: {e:?}"))
    }

    fn state_bytes(&self, layers: usize, b: usize, c: usize) -> u64 {
        // five vectors of width C per block: both token shifts, aa, bb, pp
        (5 * layers * b * c * self.elem) as u64
    }

    /// One prefill call, not synced: the logits (kept alive until the clock stops) and the
    /// state / cache bytes.
    fn prefill_once(
        &self,
        subject: Subject,
        tokens: Tensor<B, 2, Int>,
    ) -> Result<(Tensor<B, 3>, u64), String> {
        match subject {
            Subject::Rwkv(mode) => {
                let (logits, state) = self
                    .models
                    .rwkv
                    .forward(tokens, None, mode)
                    .map_err(|e| e.to_string())?;
                let [b, c] = state.layers[0].dims();
                Ok((logits, self.state_bytes(state.layers.len(), b, c)))
            }
            Subject::Transformer(a) => {
                let (logits, cache) = self
                    .models
                    .transformer
                    .prefill(tokens, path_of(a))
                    .map_err(|e| e.to_string())?;
                Ok((logits, cache.bytes() as u64))
            }
        }
    }

    fn prefill(&self, subject: Subject, t: usize) -> ScalingRecord {
        let mut r = self.record(Kind::Prefill, subject.model(), subject.method(), t, 0);
        let est = prefill_estimate(self.spec, subject, t, self.elem);
        r.estimate_bytes = Some(est);
        if let Some(limit) = self.spec.max_seq_len(&subject.method()).filter(|l| t > *l) {
            r.status = Status::Skipped;
            r.note = format!(
                "T = {t} is beyond the spec's max_seq_len {limit} for {}",
                subject.method()
            );
            return r;
        }
        let largest = prefill_largest_bytes(self.spec, subject, t, self.elem);
        if let Some(why) = self.ctx.limits().check(est, largest) {
            r.status = Status::Skipped;
            r.note = why;
            return r;
        }
        let tokens = ids::<B>(
            self.spec.seed,
            self.spec.batch.get(),
            t,
            self.spec.model.vocab.get(),
            self.device,
        );
        let timed = time_repeated(
            self.spec.warmup,
            self.spec.repeats,
            self.meter,
            || self.sync(),
            || self.prefill_once(subject, tokens.clone()),
        );
        match timed {
            Ok(timed) => {
                let s = timed.stats;
                (r.median_s, r.min_s, r.max_s) = (Some(s.median), Some(s.min), Some(s.max));
                r.state_bytes = Some(timed.last.1);
                r.peak_bytes = timed.peak;
            }
            Err(e) => {
                r.status = Status::Error;
                r.note = e;
            }
        }
        r
    }

    /// One generation run of `steps` new tokens after the prompt.
    fn generate_once(
        &self,
        model: Model,
        prompt: &Tensor<B, 2, Int>,
        feed: &[Tensor<B, 1, Int>],
    ) -> Result<GenerationRun, String> {
        let n = feed.len();
        let (mut lat, mut peaks, mut states) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut sync = || self.sync();
        match model {
            Model::Rwkv => {
                let rwkv = &self.models.rwkv;
                let (_, mut state) = rwkv
                    .forward(prompt.clone(), None, WkvMode::Parallel)
                    .map_err(|e| e.to_string())?;
                self.sync()?;
                let [b, c] = state.layers[0].dims();
                let bytes = self.state_bytes(state.layers.len(), b, c);
                for tok in feed {
                    let mut step = || {
                        rwkv.step(tok.clone(), &mut state)
                            .map_err(|e| e.to_string())
                    };
                    let (secs, peak, _logits) = time_once(self.meter, &mut sync, &mut step)?;
                    lat.push(secs);
                    peaks.push(peak);
                    states.push(bytes);
                }
            }
            Model::Transformer => {
                let t = &self.models.transformer;
                let (_, mut cache) = t
                    .prefill(prompt.clone(), AttentionPath::Explicit)
                    .map_err(|e| e.to_string())?;
                self.sync()?;
                for tok in feed {
                    let mut step = || t.step(tok.clone(), &mut cache).map_err(|e| e.to_string());
                    let (secs, peak, _logits) = time_once(self.meter, &mut sync, &mut step)?;
                    lat.push(secs);
                    peaks.push(peak);
                    states.push(cache.bytes() as u64);
                }
            }
        }
        Ok((lat, peaks, states))
    }

    /// Prompt, then `new_tokens` single steps; rows at every `record_every`-th position.
    fn generate(&self, model: Model) -> Vec<ScalingRecord> {
        let g = self
            .spec
            .generation
            .as_ref()
            .expect("planned only with a generation spec");
        let (prompt_len, n, every) = (g.prompt_len.get(), g.new_tokens.get(), g.record_every.get());
        let method = generation_method(model);
        // the whole run (prompt, then a step at the full context) against the budget, as
        // for a prefill: over it, the run is recorded as skipped and never started
        let est = generation_bytes(self.spec, model, self.elem);
        let fail = |status: Status, note: String| {
            let mut r = self
                .last_generation_row(model)
                .expect("planned only with a generation spec");
            (r.status, r.note, r.estimate_bytes) = (status, note, Some(est));
            vec![r]
        };
        // the prompt's prefill holds the largest tensors of the run
        let prompt_subject = match model {
            Model::Rwkv => Subject::Rwkv(WkvMode::Parallel),
            Model::Transformer => Subject::Transformer(Attention::Explicit),
        };
        let largest = prefill_largest_bytes(self.spec, prompt_subject, prompt_len, self.elem);
        if let Some(why) = self.ctx.limits().check(est, largest) {
            return fail(Status::Skipped, why);
        }
        let (batch, vocab) = (self.spec.batch.get(), self.spec.model.vocab.get());
        let prompt = ids::<B>(self.spec.seed, batch, prompt_len, vocab, self.device);
        let feed: Vec<Tensor<B, 1, Int>> = {
            let all = ids::<B>(self.spec.seed ^ 0xFEED, batch, n, vocab, self.device);
            (0..n)
                .map(|i| all.clone().slice([0..batch, i..i + 1]).reshape([batch]))
                .collect()
        };
        let mut runs = Vec::new();
        // warm-up runs generate at most 64 tokens: enough to warm caches and allocators
        for i in 0..self.spec.warmup + self.spec.repeats.get() {
            let steps = if i < self.spec.warmup { n.min(64) } else { n };
            match self.generate_once(model, &prompt, &feed[..steps]) {
                Ok(r) if i >= self.spec.warmup => runs.push(r),
                Ok(_) => {}
                Err(e) => return fail(Status::Error, e),
            }
        }
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
        let stats = |xs: Vec<f64>| Stats::of(&xs).expect("at least one repeat");
        let mut rows = Vec::new();
        for i in 0..n {
            let pos = i + 1;
            if !(pos == 1 || pos.is_multiple_of(every) || pos == n) {
                continue;
            }
            let mut r = self.record(Kind::Generate, model, method.into(), prompt_len + pos, pos);
            let s = stats(runs.iter().map(|(lat, _, _)| lat[i]).collect());
            (r.median_s, r.min_s, r.max_s) = (Some(s.median), Some(s.min), Some(s.max));
            r.cumulative_s = Some(stats(cumulative.iter().map(|c| c[i]).collect()).median);
            r.peak_bytes = runs.iter().filter_map(|(_, p, _)| p[i]).max();
            r.state_bytes = Some(runs[0].2[i]);
            r.estimate_bytes = Some(est);
            rows.push(r);
        }
        rows
    }
}

/// Runs every measurement of `spec` not in `done` (keys of recorded rows), handing each
/// row to `sink` as soon as it exists. A generation run counts as recorded when the row of
/// its last token is; one that runs again (a run stopped while its rows were flushed)
/// hands on only the positions not yet recorded.
pub fn run<B: WkvBackend>(
    spec: &ScalingSpec,
    device: &B::Device,
    ctx: &Context,
    meter: &dyn PeakMeter,
    done: &HashSet<String>,
    sink: &mut dyn FnMut(&ScalingRecord) -> Result<(), RecordsError>,
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
    let m = &spec.model;
    let (v, c) = (m.vocab.get() as u64, m.d_model.get() as u64);
    let rwkv_total = models.rwkv.num_params() as u64;
    let transformer_total = models.transformer.num_params() as u64;
    let runner = Runner {
        meter,
        spec,
        ctx,
        device,
        conditions: Conditions {
            study: spec.study.clone(),
            backend: ctx.backend.clone(),
            dtype: ctx.dtype.clone(),
            batch: spec.batch.get(),
            d_model: m.d_model.get(),
            n_layers: m.n_layers.get(),
            vocab: m.vocab.get(),
            repeats: spec.repeats.get(),
            git_rev: ctx.git_rev.clone(),
        },
        // token embedding + head (RWKV); token embedding + positional table + head (transformer)
        rwkv_params: ParamCount {
            total: rwkv_total,
            non_embedding: Some(rwkv_total - 2 * v * c),
        },
        transformer_params: ParamCount {
            total: transformer_total,
            non_embedding: Some(transformer_total - 2 * v * c - max_positions as u64 * c),
        },
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
        plan.push(Plan::Generate { model: Model::Rwkv });
        plan.push(Plan::Generate {
            model: Model::Transformer,
        });
    }
    let key_of = |p: &Plan| -> String {
        match p {
            Plan::Prefill { subject, t } => runner
                .record(Kind::Prefill, subject.model(), subject.method(), *t, 0)
                .key(),
            Plan::Generate { model } => runner
                .last_generation_row(*model)
                .expect("generation planned")
                .key(),
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
                    subject.method()
                )));
                vec![runner.prefill(subject, t)]
            }
            Plan::Generate { model } => {
                progress(Progress::Started(&format!("generate {model}")));
                let mut rows = runner.generate(model);
                // a run stopped while these rows were flushed has some of them already
                rows.retain(|r| !done.contains(&r.key()));
                rows
            }
        };
        for r in &rows {
            sink(r)?;
        }
        progress(Progress::Finished(&rows));
    }
    Ok(())
}

/// `name version` of what measured, for `meta.json`.
pub fn versions() -> Vec<String> {
    vec![
        "burn 0.21.0".into(),
        format!("rwkv-lab {}", env!("CARGO_PKG_VERSION")),
    ]
}

/// The `meta.json` of a scaling run of `spec` in `ctx`, whose memory figures are what
/// `memory` describes; provenance (machine, start time) gathered now.
pub fn study_meta(spec: &ScalingSpec, ctx: &Context, memory: &str) -> Meta {
    Meta {
        kind: lab_records::StudyKind::Scaling,
        command: ctx.command.clone(),
        spec: spec.to_yaml(),
        seed: spec.seed,
        backend: ctx.backend.clone(),
        device: format!(
            "{} (memory budget {}{})",
            ctx.backend,
            lab_util::fmt_bytes(ctx.memory_budget as f64),
            ctx.max_buffer
                .map(|m| format!(", largest buffer {}", lab_util::fmt_bytes(m as f64)))
                .unwrap_or_default()
        ),
        memory: memory.into(),
        dtype: ctx.dtype.clone(),
        git_rev: ctx.git_rev.clone(),
        versions: versions(),
        machine: lab_records::provenance::machine_line(),
        started: lab_records::provenance::utc_now(),
        finished: String::new(),
    }
}

/// A whole run in `study`: `meta.json` written (or, with `resume`, checked against the
/// recorded run: spec, backend, precision), every measurement not yet recorded run and
/// appended, then the end time stamped. Returns the final `meta.json`.
pub fn run_study<B: WkvBackend>(
    study: &StudyDir,
    spec: &ScalingSpec,
    device: &B::Device,
    ctx: &Context,
    meter: &dyn PeakMeter,
    resume: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Meta, ScalingError> {
    let meta = study_meta(spec, ctx, meter.describe());
    let mut run = study.start::<ScalingRecord>(meta, resume, &spec_differences)?;
    for w in &run.warnings {
        progress(Progress::Warning(w));
    }
    self::run::<B>(
        spec,
        device,
        ctx,
        meter,
        &run.done,
        &mut |r| run.writer.write(r),
        progress,
    )?;
    Ok(run.finish()?)
}

/// The default output folder of a run: `reports/scaling/<backend>-<machine>[-quick]`.
pub fn default_out(backend: &str, quick: bool) -> std::path::PathBuf {
    let q = if quick { "-quick" } else { "" };
    Path::new("reports/scaling").join(format!(
        "{backend}-{}{q}",
        lab_records::provenance::machine_slug()
    ))
}
