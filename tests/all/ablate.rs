//! The ablation study (issue 7 §4–§6): spec errors, the grid and its shards, the runner end
//! to end (records, summary, plots), interrupt-then-resume, and merging shard folders.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Autodiff, NdArray};
use lab_records::{AblationRow, Status, StudyDir};
use proptest::prelude::*;
use rwkv_lab_core::ablation::{AblationSpec, Context, Event, Shard, grid, run_study, select};

use crate::common::proptest_config;

type B = Autodiff<NdArray<f32>>;

/// A tiny MQAR study: two variants, two seeds, eight steps (seconds).
const TINY: &str = "\
study: tiny
model: { d_model: 8, n_layers: 1 }
task:
  mqar:
    vocab_size: 32
    input_seq_len: 16
    num_kv_pairs: 2
    num_train_examples: 64
    num_test_examples: 16
train:
  steps: 8
  batch: 4
  lr: 1.0e-2
  warmup_steps: 1
  weight_decay: 0.1
  grad_clip: 1.0
  eval_interval: 2
  eval_batches: 1
seeds: [0, 1]
variants:
  - name: full
  - name: no_decay
";

fn parse(text: &str) -> Result<AblationSpec, String> {
    AblationSpec::parse(text, "spec.yaml", None).map_err(|e| e.to_string())
}

fn err(text: &str) -> String {
    parse(text).expect_err("the spec should be refused")
}

#[test]
fn spec_errors_name_file_line_and_field() {
    parse(TINY).unwrap();
    // unknown field: serde_yaml's location, and the field
    let e = err(&TINY.replace("  eval_batches: 1", "  eval_batches: 1\n  eval_bathces: 2"));
    assert!(
        e.starts_with("spec.yaml:19:") && e.contains("unknown field `eval_bathces`"),
        "{e}"
    );
    // unknown variant: its line, and the valid names
    let e = err(&TINY.replace("name: no_decay", "name: no_decy"));
    assert!(
        e.starts_with("spec.yaml:22:")
            && e.contains("unknown variant `no_decy`")
            && e.contains("no_token_shift")
            && e.contains("transformer"),
        "{e}"
    );
    // more micro-batches than rows: the field, its line, and the bound
    let e = err(&TINY.replace("  batch: 4", "  batch: 4\n  micro_batches: 5"));
    assert!(
        e.starts_with("spec.yaml:13:")
            && e.contains("train.micro_batches")
            && e.contains("must not exceed batch = 4"),
        "{e}"
    );
    // kv pairs too large: the field, its line, and the bound
    let e = err(&TINY.replace("num_kv_pairs: 2", "num_kv_pairs: 5"));
    assert!(
        e.starts_with("spec.yaml:7:")
            && e.contains("task.mqar.num_kv_pairs")
            && e.contains("at most 4 pairs"),
        "{e}"
    );
    // missing corpus: the field, its line, and where it was looked for
    let corpus = TINY
        .replace(
            "  mqar:\n    vocab_size: 32\n    input_seq_len: 16\n    num_kv_pairs: 2\n    num_train_examples: 64\n    num_test_examples: 16\n",
            "  corpus:\n    path: no/such/corpus.txt\n",
        )
        .replace("  batch: 4\n", "  batch: 4\n  seq_len: 16\n");
    let e = err(&corpus);
    assert!(
        e.starts_with("spec.yaml:5:")
            && e.contains("task.corpus.path")
            && e.contains("corpus file not found")
            && e.contains("no/such/corpus.txt"),
        "{e}"
    );
    // a sweep the task cannot run, a study without `full`, a bad quick profile
    let e = err(&format!("{TINY}sweep:\n  seq_len_kv_pairs: [[16, 8]]\n"));
    assert!(
        e.contains("sweep.seq_len_kv_pairs") && e.contains("[16, 8]"),
        "{e}"
    );
    let e = err(&TINY.replace("  - name: full\n", ""));
    assert!(e.contains("variants") && e.contains("no `full`"), "{e}");
    let e = err(&format!("{TINY}quick:\n  variants: [full, relu_ffn]\n"));
    assert!(
        e.contains("quick.variants") && e.contains("`relu_ffn` is not a variant"),
        "{e}"
    );
    // bad shards
    for (s, why) in [
        ("4/4", "K = 4 is not below N = 4"),
        ("1-4", "no `/`"),
        ("0/0", "N must be at least 1"),
        ("a/2", "whole numbers"),
    ] {
        let e = s.parse::<Shard>().unwrap_err();
        assert!(e.contains(why) && e.contains("--shard"), "{s}: {e}");
    }
    assert_eq!(
        "3/4".parse::<Shard>().unwrap(),
        Shard { index: 3, count: 4 }
    );
}

#[test]
fn shipped_specs_parse_with_every_variant_and_a_quick_profile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["ablation-shakespeare.yaml", "ablation-mqar.yaml"] {
        let spec = AblationSpec::load(root.join("experiments").join(name)).unwrap();
        let names: Vec<&str> = spec.variants.0.iter().map(|v| v.name.0.as_str()).collect();
        assert_eq!(names, rwkv_lab_core::ablation::VARIANT_NAMES, "{name}");
        assert!(spec.seeds.0.len() >= 3, "{name}");
        let quick = spec.quick(name).unwrap();
        assert!(quick.quick.is_none() && grid(&quick).unwrap().len() <= grid(&spec).unwrap().len());
    }
    let smoke = AblationSpec::load(root.join("experiments/ablation-smoke.yaml")).unwrap();
    assert_eq!(grid(&smoke).unwrap().len(), 2);
}

#[test]
fn zoology_spec_parses_and_shards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = AblationSpec::load(root.join("experiments/ablation-mqar-zoology.yaml")).unwrap();
    let all = grid(&spec).unwrap();
    // 2 variants × 1 seed × 3 (seq, pairs) × 4 widths × 4 learning rates
    assert_eq!(all.len(), 96);
    let first = &all[0];
    assert_eq!(
        first.grid.key.setting,
        "input_seq_len=64,num_kv_pairs=4,d_model=64,lr=0.0001"
    );
    assert_eq!(first.task.vocab_size(), 8192);
    assert_eq!((first.train.seq_len, first.base.n_layers), (64, 2));
    let last = &all[95];
    assert_eq!(last.grid.key.variant, "transformer");
    assert_eq!(
        (last.train.seq_len, last.base.d_model, last.train.lr),
        (256, 512, 1e-2)
    );
    let mut seen = vec![0; 96];
    for k in 0..16 {
        let shard = Shard {
            index: k,
            count: 16,
        };
        for p in select(all.clone(), Some(shard)) {
            seen[p.grid.index] += 1;
        }
    }
    assert!(seen.iter().all(|&n| n == 1));
}

proptest! {
    #![proptest_config(proptest_config())]
    /// Every run of the grid lands in exactly one shard, whatever the grid and N.
    #[test]
    fn shards_cover_the_grid_exactly_once(
        n_variants in 1usize..4, n_seeds in 1usize..4, n_widths in 1usize..4, n in 1usize..9,
    ) {
        let variants = ["full", "no_bonus", "transformer"][..n_variants]
            .iter().map(|v| format!("  - name: {v}\n")).collect::<String>();
        let seeds: Vec<String> = (0..n_seeds).map(|s| s.to_string()).collect();
        let widths: Vec<String> = (0..n_widths).map(|w| (8 * (w + 1)).to_string()).collect();
        let text = TINY
            .replace("  - name: full\n  - name: no_decay\n", &variants)
            .replace("seeds: [0, 1]", &format!("seeds: [{}]", seeds.join(", ")))
            + &format!("sweep:\n  d_model: [{}]\n", widths.join(", "));
        let spec = parse(&text).unwrap();
        let all = grid(&spec).unwrap();
        prop_assert_eq!(all.len(), n_variants * n_seeds * n_widths);
        let mut ids: Vec<String> = Vec::new();
        for k in 0..n {
            ids.extend(select(all.clone(), Some(Shard { index: k, count: n }))
                .into_iter().map(|p| p.grid.id));
        }
        let mut expected: Vec<String> = all.iter().map(|p| p.grid.id.clone()).collect();
        ids.sort();
        expected.sort();
        prop_assert_eq!(ids, expected);
    }
}

fn ctx() -> Context {
    Context {
        backend: "ndarray".into(),
        git_rev: "test".into(),
        command: "test".into(),
    }
}

/// Runs `spec` in `dir` on ndarray; `stop_after` sets the stop flag after that many steps
/// in all.
fn run(
    spec: &AblationSpec,
    dir: &Path,
    shard: Option<Shard>,
    resume: bool,
    stop_after: Option<u64>,
) -> rwkv_lab_core::ablation::StudyOutcome {
    run_on::<B>(spec, dir, shard, resume, stop_after)
}

/// [`run`] on backend `A`.
fn run_on<A>(
    spec: &AblationSpec,
    dir: &Path,
    shard: Option<Shard>,
    resume: bool,
    stop_after: Option<u64>,
) -> rwkv_lab_core::ablation::StudyOutcome
where
    A: burn::tensor::backend::AutodiffBackend + rwkv::WkvBackend,
    A::InnerBackend: rwkv::WkvBackend,
{
    let study = StudyDir::for_writing(dir).unwrap();
    let stop = AtomicBool::new(false);
    let mut steps = 0;
    let mut progress = |e: Event<'_>| {
        if let Event::Step { .. } = e {
            steps += 1;
            if stop_after.is_some_and(|n| steps >= n) {
                stop.store(true, Ordering::SeqCst);
            }
        }
    };
    run_study::<A>(
        &study,
        spec,
        shard,
        &ctx(),
        resume,
        &stop,
        &Default::default(),
        &mut progress,
    )
    .unwrap()
}

/// The rows without the columns that depend on the clock.
fn timeless(dir: &Path) -> Vec<AblationRow> {
    let mut rows: Vec<AblationRow> = StudyDir::open(dir).unwrap().read_rows().unwrap();
    for r in &mut rows {
        r.wall_s = 0.0;
        r.tokens_per_s = None;
    }
    rows
}

/// The same rows: every column equal, the losses and the metric within 1e-4 relative. The
/// engine's f32 sums on ndarray are not bit-identical from one training to the next even in
/// one process (differences of about 1e-7 relative seen in the first evaluation of a run
/// trained twice without any resume), so exact equality would test the backend.
fn same_rows(a: &[AblationRow], b: &[AblationRow]) {
    assert_eq!(a.len(), b.len());
    let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1e-3),
        (x, y) => x == y,
    };
    for (x, y) in a.iter().zip(b) {
        let strip = |r: &AblationRow| AblationRow {
            train_loss: None,
            val_loss: None,
            val_metric: None,
            ..r.clone()
        };
        assert_eq!(strip(x), strip(y));
        assert!(
            close(x.train_loss, y.train_loss)
                && close(x.val_loss, y.val_loss)
                && close(x.val_metric, y.val_metric),
            "{x:?}\n{y:?}"
        );
    }
}

#[test]
fn tiny_study_end_to_end_and_resume_equals_uninterrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parse(TINY).unwrap();
    let whole = tmp.path().join("whole");
    let out = run(&spec, &whole, None, false, None);
    assert_eq!((out.runs, out.finished, out.interrupted), (4, 4, false));
    let rows = timeless(&whole);
    // 4 runs × evaluations at steps 2, 4, 6, 8
    assert_eq!(rows.len(), 16);
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Ok && r.metric_name == "query_accuracy")
    );
    assert!(whole.join("checkpoints/no_decay-seed1").is_dir());
    let report = rwkv_report::render(&whole).unwrap();
    let summary = std::fs::read_to_string(&report.summary).unwrap();
    assert!(
        summary.contains("| no_decay | 2 |") && summary.contains("(n=2)"),
        "{summary}"
    );
    assert!(summary.contains("None: every planned run finished."));
    for f in ["curves_mqar.png", "curves_mqar.svg"] {
        assert!(
            std::fs::metadata(whole.join(f)).unwrap().len() > 1000,
            "{f}"
        );
    }

    // interrupted after 11 steps (inside the second run), then resumed twice
    let parts = tmp.path().join("parts");
    let first = run(&spec, &parts, None, false, Some(11));
    assert!(first.interrupted && first.finished == 1);
    let meta = StudyDir::open(&parts)
        .unwrap()
        .read_meta()
        .unwrap()
        .unwrap();
    assert!(meta.finished.is_empty());
    // the resolved plan records the micro-batches the runs trained with (the default here)
    assert!(meta.spec.contains("micro_batches: 4"), "{}", meta.spec);
    let second = run(&spec, &parts, None, true, Some(5));
    assert!(second.interrupted);
    let third = run(&spec, &parts, None, true, None);
    assert_eq!((third.finished, third.interrupted), (4, false));
    same_rows(&timeless(&parts), &rows);
    // a resumed finished study trains nothing and adds no row
    run(&spec, &parts, None, true, None);
    same_rows(&timeless(&parts), &rows);
}

/// On flex, the training default, an interrupted and resumed study records exactly, bit for
/// bit, what an uninterrupted one records (the TINY spec trains 4 micro-batches of one row,
/// on threads).
#[cfg(feature = "flex")]
#[test]
fn tiny_study_resumes_bit_identically_on_flex() {
    type F = Autodiff<burn::backend::Flex>;
    let tmp = tempfile::tempdir().unwrap();
    let spec = parse(TINY).unwrap();
    let whole = tmp.path().join("whole");
    run_on::<F>(&spec, &whole, None, false, None);
    let rows = timeless(&whole);
    assert_eq!(rows.len(), 16);
    let parts = tmp.path().join("parts");
    assert!(run_on::<F>(&spec, &parts, None, false, Some(11)).interrupted);
    assert!(run_on::<F>(&spec, &parts, None, true, Some(5)).interrupted);
    let last = run_on::<F>(&spec, &parts, None, true, None);
    assert_eq!((last.finished, last.interrupted), (4, false));
    assert_eq!(timeless(&parts), rows);
}

#[test]
fn report_of_shard_folders_merges_and_lists_missing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parse(&TINY.replace("steps: 8", "steps: 2")).unwrap();
    let root = tmp.path().join("shards");
    // shard 0 of 3 trains runs 0 and 3; shard 1 (run 1) and shard 2 (run 2) never ran
    let s0 = root.join("shard-0");
    let out = run(&spec, &s0, Some(Shard { index: 0, count: 3 }), false, None);
    assert_eq!(out.runs, 2);
    let s1 = root.join("shard-1");
    run(&spec, &s1, Some(Shard { index: 1, count: 3 }), false, None);
    let sources = rwkv_report::ablation::find_studies(&[root.clone()]).unwrap();
    assert_eq!(sources.len(), 2);
    let merged = StudyDir::for_writing(&root.join("merged")).unwrap();
    // a merge a while after the shards: the merged study keeps the shards' times
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let report = rwkv_report::ablation::merge(&sources, &merged, "report").unwrap();
    assert_eq!(report.n_records, 3);
    let meta = |d: &Path| StudyDir::open(d).unwrap().read_meta().unwrap().unwrap();
    let (m0, m1, mm) = (meta(&s0), meta(&s1), meta(&root.join("merged")));
    assert_eq!(mm.started, m0.started.clone().min(m1.started.clone()));
    assert_eq!(mm.finished, m0.finished.clone().max(m1.finished.clone()));
    assert!(!mm.finished.is_empty());
    let summary = std::fs::read_to_string(&report.summary).unwrap();
    assert!(
        summary.contains("| no_decay seed 0 | missing (not run) |")
            && summary.contains("3 records; 4 planned runs, 3 finished"),
        "{summary}"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("no_decay seed 0"))
    );
    // merging again adds nothing, and the merged folder is not merged into itself
    let sources = rwkv_report::ablation::find_studies(&[root.clone()]).unwrap();
    assert_eq!(sources.len(), 3);
    let again = rwkv_report::ablation::merge(&sources, &merged, "report").unwrap();
    assert_eq!(again.n_records, 3);
}

#[test]
fn a_failing_run_is_recorded_and_the_study_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parse(&TINY.replace("steps: 8", "steps: 4")).unwrap();
    let dir = tmp.path().join("s");
    // a file where the checkpoints folder goes: every checkpoint write fails
    StudyDir::for_writing(&dir).unwrap();
    std::fs::write(dir.join("checkpoints"), "in the way").unwrap();
    let out = run(&spec, &dir, None, false, None);
    assert_eq!((out.runs, out.finished, out.failed.len()), (4, 0, 4));
    let rows: Vec<AblationRow> = StudyDir::open(&dir).unwrap().read_rows().unwrap();
    let errors: Vec<&AblationRow> = rows.iter().filter(|r| r.status == Status::Error).collect();
    // each run recorded its first evaluation, then failed writing its checkpoint
    assert_eq!((errors.len(), rows.len()), (4, 8));
    assert!(
        errors.iter().all(|r| r.note.contains("checkpoints")),
        "{errors:?}"
    );
    let report = rwkv_report::render(&dir).unwrap();
    let summary = std::fs::read_to_string(&report.summary).unwrap();
    assert!(summary.contains("| full seed 0 | failed |"), "{summary}");
    // the obstacle removed, --resume trains the failed runs again
    std::fs::remove_file(dir.join("checkpoints")).unwrap();
    let again = run(&spec, &dir, None, true, None);
    assert_eq!((again.finished, again.failed.len()), (4, 0));
    let summary = std::fs::read_to_string(rwkv_report::render(&dir).unwrap().summary).unwrap();
    assert!(
        summary.contains("None: every planned run finished."),
        "{summary}"
    );
}

#[test]
fn paired_difference_ci_on_known_numbers() {
    use rwkv_report::ablation::{paired, t975};
    // variant − full = 0.1, 0.2, 0.3, 0.2: mean 0.2, sd sqrt(0.02/3), t(0.975, 3) = 3.182
    let p = paired(&[(0.6, 0.5), (0.7, 0.5), (0.9, 0.6), (0.5, 0.3)]).unwrap();
    assert_eq!(p.n, 4);
    assert!((p.mean - 0.2).abs() < 1e-12);
    let h = 3.182 * (0.02f64 / 3.0).sqrt() / 2.0;
    assert!((p.half_width.unwrap() - h).abs() < 1e-12);
    assert_eq!(t975(2), 4.303);
}

#[test]
fn a_width_sweep_plots_the_metric_against_d_model() {
    let tmp = tempfile::tempdir().unwrap();
    let text = TINY
        .replace("steps: 8", "steps: 2")
        .replace("seeds: [0, 1]", "seeds: [0]")
        + "sweep:\n  d_model: [8, 16]\n";
    let spec = parse(&text).unwrap();
    let dir = tmp.path().join("sweep");
    let out = run(&spec, &dir, None, false, None);
    assert_eq!((out.runs, out.finished), (4, 4));
    let rows = timeless(&dir);
    let settings: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.setting.as_str()).collect();
    assert!(
        settings.iter().any(|s| s.contains("d_model=8"))
            && settings.iter().any(|s| s.contains("d_model=16")),
        "{settings:?}"
    );
    rwkv_report::render(&dir).unwrap();
    let plots: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("_vs_d_model."))
        .collect();
    for ext in ["png", "svg"] {
        let f = plots
            .iter()
            .find(|n| n.ends_with(ext))
            .unwrap_or_else(|| panic!("no .{ext} metric-vs-d_model plot in {plots:?}"));
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 1000, "{f}");
    }
    // the plot has one line per variant over both widths: the SVG names both variants
    let svg = plots.iter().find(|n| n.ends_with("svg")).unwrap();
    let svg = std::fs::read_to_string(dir.join(svg)).unwrap();
    assert!(svg.contains("full") && svg.contains("no_decay"));
}

/// A run whose loss turns NaN gets a `diverged` row and the study goes on (issue 7, bad
/// input), end to end through the runner, the records and the report. The NaN comes from
/// the run's own checkpoint: the study is interrupted after the first run saved step 2, a
/// NaN is written into that checkpoint's head weight (file level, through the checkpoint
/// API), and `--resume` continues it: its step 3 loss is NaN.
#[test]
fn a_diverged_run_is_recorded_and_the_others_finish() {
    use burn::module::{Module, Param};
    use burn::optim::{AdamWConfig, Optimizer};
    use lab_train::checkpoint;
    use lab_train::train::LabModel;

    let tmp = tempfile::tempdir().unwrap();
    let spec = parse(TINY).unwrap();
    let dir = tmp.path().join("s");
    let first = run(&spec, &dir, None, false, Some(3));
    assert_eq!(first.finished, 0, "stopped inside the first run");
    let plan = &grid(&spec).unwrap()[0];
    let ckpt = dir.join("checkpoints").join(&plan.grid.id);
    let saved: checkpoint::CkptState = serde_json::from_slice(
        &std::fs::read(
            checkpoint::latest(&ckpt)
                .unwrap()
                .unwrap()
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(saved.step, 2);

    // the checkpoint, with one NaN in the head
    let device = Default::default();
    let loaded = checkpoint::load::<B>(&ckpt, &saved.fingerprint, &device)
        .unwrap()
        .unwrap();
    let arch = lab_train::variant_arch(&plan.variant_name, &plan.base, plan.train.seq_len).unwrap();
    let mut model = LabModel::<B>::init(&arch, plan.train.seed, &device)
        .unwrap()
        .load_record(loaded.model);
    let LabModel::Rwkv(m) = &mut model else {
        panic!("the first run is an RWKV variant")
    };
    let w = m.head.weight.val();
    let dims = w.dims();
    let mut host = w.into_data().convert::<f32>().into_vec::<f32>().unwrap();
    host[0] = f32::NAN;
    m.head.weight = Param::from_tensor(burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(host, dims),
        &device,
    ));
    let adam = || AdamWConfig::new().init::<B, LabModel<B>>();
    // rewritten under the same step (`save` never replaces an existing step's folder)
    std::fs::remove_dir_all(checkpoint::latest(&ckpt).unwrap().unwrap()).unwrap();
    checkpoint::save(
        &ckpt,
        &loaded.state,
        &model,
        &adam().load_record(loaded.optim_decay),
        &adam().load_record(loaded.optim_plain),
    )
    .unwrap();

    let out = run(&spec, &dir, None, true, None);
    assert_eq!(out.diverged, vec![plan.grid.id.clone()]);
    assert_eq!((out.runs, out.finished, out.failed.len()), (4, 3, 0));
    let rows: Vec<AblationRow> = StudyDir::open(&dir).unwrap().read_rows().unwrap();
    let diverged: Vec<&AblationRow> = rows
        .iter()
        .filter(|r| r.status == Status::Diverged)
        .collect();
    assert_eq!(diverged.len(), 1, "{rows:?}");
    assert_eq!(
        (
            diverged[0].variant.as_str(),
            diverged[0].seed,
            diverged[0].step
        ),
        ("full", 0, 3)
    );
    assert!(diverged[0].note.contains("NaN"), "{:?}", diverged[0]);
    // its step-2 row, recorded before the interruption, is kept
    assert!(
        rows.iter()
            .any(|r| r.variant == "full" && r.seed == 0 && r.step == 2 && r.status == Status::Ok)
    );
    // the others finished: their final rows are there
    for (variant, seed) in [("full", 1), ("no_decay", 0), ("no_decay", 1)] {
        assert!(
            rows.iter().any(|r| r.variant == variant
                && r.seed == seed
                && r.step == 8
                && r.status == Status::Ok),
            "{variant} seed {seed}: {rows:?}"
        );
    }
    let summary = std::fs::read_to_string(rwkv_report::render(&dir).unwrap().summary).unwrap();
    assert!(summary.contains("| full seed 0 | diverged |"), "{summary}");
    // a second resume leaves the diverged run diverged and trains nothing
    let again = run(&spec, &dir, None, true, None);
    assert_eq!(again.diverged, vec![plan.grid.id.clone()]);
    assert_eq!(
        StudyDir::open(&dir)
            .unwrap()
            .read_rows::<AblationRow>()
            .unwrap()
            .len(),
        rows.len()
    );
}
