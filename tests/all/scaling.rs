//! The scaling study end to end on a tiny spec: rows for every planned measurement,
//! budget skips, resume without duplicates, and clear errors for bad specs and backends.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use lab_records::Model::{Rwkv, Transformer};
use lab_records::{Kind, Model, Row, ScalingRecord, Status, StudyDir, read_rows};
use rwkv_lab_core::ScalingSpec;
use rwkv_lab_core::scaling::{self, Context, Progress};

use crate::common::*;

const TINY: &str = "
study: tiny
seed: 1
repeats: 3
warmup: 0
model: { vocab: 19, d_model: 16, n_layers: 1, n_heads: 2 }
prefill:
  seq_lens: [8, 16, 32]
  rwkv: [parallel, 'chunked:4', scan]
  transformer: [explicit, fused]
  max_seq_len: { parallel: 16 }
generation: { prompt_len: 4, new_tokens: 10, record_every: 4 }
";

fn ctx(budget: u64) -> Context {
    Context {
        backend: "ndarray".into(),
        dtype: "f32".into(),
        git_rev: "test".into(),
        memory_budget: budget,
        max_buffer: None,
        command: "test".into(),
    }
}

/// Runs (or resumes) the study into the folder `dir`; returns the rows it produced.
fn run_into(spec: &ScalingSpec, dir: &Path, budget: u64, resume: bool) -> Vec<ScalingRecord> {
    run_with_warnings(spec, dir, budget, resume).0
}

/// [`run_into`], also returning the warnings the runner reported.
fn run_with_warnings(
    spec: &ScalingSpec,
    dir: &Path,
    budget: u64,
    resume: bool,
) -> (Vec<ScalingRecord>, Vec<String>) {
    let study = StudyDir::for_writing(dir).unwrap();
    let (mut rows, mut warnings) = (Vec::new(), Vec::new());
    scaling::run_study::<F32>(
        &study,
        spec,
        &Default::default(),
        &ctx(budget),
        &rwkv_lab_core::meter::HostMeter,
        resume,
        &mut |p| match p {
            Progress::Finished(r) => rows.extend_from_slice(r),
            Progress::Warning(w) => warnings.push(w.to_string()),
            _ => {}
        },
    )
    .unwrap();
    (rows, warnings)
}

#[test]
fn tiny_study_records_every_measurement() {
    let spec = ScalingSpec::parse(TINY, "tiny.yaml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.csv");
    let rows = run_into(&spec, dir.path(), u64::MAX, false);
    let prefill: Vec<&ScalingRecord> = rows.iter().filter(|r| r.kind == Kind::Prefill).collect();
    assert_eq!(prefill.len(), 3 * 5);
    // parallel beyond its max_seq_len is skipped with a note, the rest ran
    let skipped: Vec<&&ScalingRecord> = prefill
        .iter()
        .filter(|r| r.status == Status::Skipped)
        .collect();
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].method == "parallel"
            && skipped[0].seq_len == 32
            && skipped[0].note.contains("max_seq_len")
    );
    for r in prefill.iter().filter(|r| r.status == Status::Ok) {
        let (med, min, max) = (r.median_s.unwrap(), r.min_s.unwrap(), r.max_s.unwrap());
        assert!(min > 0.0 && min <= med && med <= max, "{r:?}");
        assert!(r.state_bytes.unwrap() > 0 && r.estimate_bytes.unwrap() > 0);
        assert_eq!(r.repeats, 3);
    }
    // KV cache grows with T, the RWKV state does not
    let state = |m: Model, v: &str, t: usize| {
        prefill
            .iter()
            .find(|r| r.model == m && r.method == v && r.seq_len == t)
            .unwrap()
            .state_bytes
            .unwrap()
    };
    assert_eq!(state(Rwkv, "scan", 8), state(Rwkv, "scan", 32));
    assert_eq!(
        state(Transformer, "explicit", 32),
        4 * state(Transformer, "explicit", 8)
    );
    // generation: positions 1, 4, 8, 10 for each model; cumulative time increasing
    for model in [Rwkv, Transformer] {
        let g: Vec<&ScalingRecord> = rows
            .iter()
            .filter(|r| r.kind == Kind::Generate && r.model == model)
            .collect();
        assert_eq!(
            g.iter().map(|r| r.position).collect::<Vec<_>>(),
            vec![1, 4, 8, 10],
            "{model}"
        );
        assert!(
            g.windows(2)
                .all(|w| w[0].cumulative_s.unwrap() < w[1].cumulative_s.unwrap())
        );
        assert_eq!(g[3].seq_len, 4 + 10);
    }
    // the params differ by model and match the models' own counts
    let p = |m: Model| rows.iter().find(|r| r.model == m).unwrap().params;
    assert_eq!(
        p(Rwkv) as usize,
        rwkv::RwkvConfig::rwkv4(19, 16, 1).num_params()
    );
    assert!(p(Transformer) > 0);
    // what was written is what was produced
    assert_eq!(read_rows::<ScalingRecord>(&path).unwrap(), rows);
}

#[test]
fn budget_skips_and_resume_continues_without_duplicates() {
    let spec = ScalingSpec::parse(TINY, "tiny.yaml").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("full");
    // a budget between the T=16 and T=32 transformer estimates skips only the largest
    let est = |t| {
        scaling::prefill_estimate(
            &spec,
            scaling::Subject::Transformer(rwkv_lab_core::spec::Attention::Explicit),
            t,
            4,
        )
    };
    let budget = (est(16) + est(32)) / 2;
    let rows = run_into(&spec, &dir, budget, false);
    let over: Vec<&ScalingRecord> = rows.iter().filter(|r| r.note.contains("budget")).collect();
    assert!(
        over.iter()
            .all(|r| r.estimate_bytes.unwrap() > budget && r.median_s.is_none())
    );
    assert!(
        over.iter()
            .any(|r| r.model == Transformer && r.seq_len == 32)
    );
    // a new run into the same folder is refused; a resumed one measures nothing new
    let study = StudyDir::for_writing(&dir).unwrap();
    let meta = lab_records::read_meta(&study.meta_path()).unwrap().unwrap();
    assert!(
        study
            .start::<ScalingRecord>(meta, false, &lab_records::text_differences)
            .is_err()
    );
    let again = run_into(&spec, &dir, budget, true);
    assert!(again.is_empty(), "{again:?}");
    // an interrupted run (only the first 4 rows on disk) resumes where it stopped
    let partial = tmp.path().join("partial");
    interrupted_copy(&dir, &partial, 4, 0);
    let rest = run_into(&spec, &partial, budget, true);
    let all: Vec<ScalingRecord> = read_rows(&partial.join("records.csv")).unwrap();
    assert_eq!(all.len(), rows.len());
    let keys: HashSet<String> = all.iter().map(Row::key).collect();
    assert_eq!(keys.len(), all.len(), "no duplicate measurement");
    assert_eq!(rest.len(), rows.len() - 4);
}

/// A copy of the study folder `from` as a run stopped after `rows` rows had been flushed,
/// and `torn` bytes of the next one.
fn interrupted_copy(from: &Path, to: &Path, rows: usize, torn: usize) {
    StudyDir::for_writing(to).unwrap();
    std::fs::copy(from.join("meta.json"), to.join("meta.json")).unwrap();
    let text = std::fs::read_to_string(from.join("records.csv")).unwrap();
    let mut kept: String = text
        .lines()
        .take(1 + rows)
        .map(|l| format!("{l}\n"))
        .collect();
    kept += &text.lines().nth(1 + rows).unwrap_or("")[..torn];
    std::fs::write(to.join("records.csv"), kept).unwrap();
}

/// Runs the binary in `dir`: exit code, stdout, stderr.
pub(crate) fn cli_out(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rwkv-lab"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Runs the binary in `dir`: exit code and stderr.
fn cli(args: &[&str], dir: &Path) -> (i32, String) {
    let (code, _, err) = cli_out(args, dir);
    (code, err)
}

/// `rwkv-lab scale --config CONFIG --out OUT EXTRA...` in `dir`: exit code and stderr.
fn scale(dir: &Path, config: &Path, out: &str, extra: &[&str]) -> (i32, String) {
    let config = config.to_str().unwrap();
    let mut args = vec!["scale", "--config", config, "--out", out];
    args.extend_from_slice(extra);
    cli(&args, dir)
}

#[test]
fn cli_rejects_bad_specs_and_backends() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        (
            TINY.replace("seed: 1", "seeed: 1"),
            "unknown field `seeed`",
            "line 3",
        ),
        (
            TINY.replace("seq_lens: [8, 16, 32]", "seq_lens: []"),
            "prefill.seq_lens",
            "line 8",
        ),
        (
            TINY.replace("d_model: 16", "d_model: 0"),
            "model.d_model",
            "line 6",
        ),
        (
            TINY.replace("repeats: 3", "repeats: three"),
            "repeats",
            "line 4",
        ),
        // the quick profile cannot bypass the three-repeat minimum
        (
            format!("{TINY}quick: {{ repeats: 1 }}\n"),
            "quick.repeats",
            "at least 3",
        ),
        (
            TINY.replace("seed: 1", "seed: 1\nmemory_budget: 0"),
            "memory_budget",
            "more than 0 bytes",
        ),
    ];
    for (i, (text, needle, line)) in bad.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&p, text).unwrap();
        let (code, err) = scale(dir.path(), &p, "out", &[]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(needle) && err.contains(line) && !err.contains("panicked"),
            "{err}"
        );
        assert!(!dir.path().join("out/records.csv").exists());
    }
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, TINY).unwrap();
    if !cfg!(feature = "cuda") {
        let (code, err) = scale(dir.path(), &good, "o2", &["--backend", "cuda"]);
        assert_eq!(code, 2);
        assert!(err.contains("not compiled into this binary"), "{err}");
    }
    let (code, err) = cli(&["scale", "--config", "missing.yaml"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("missing.yaml"), "{err}");
    // --quick on a spec without a quick section is not silently the full study
    let (code, err) = scale(dir.path(), &good, "o3", &["--quick"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("quick: --quick asks for") && err.contains("good.yaml"),
        "{err}"
    );
    let (code, err) = scale(dir.path(), &good, "o4", &["--memory-budget", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--memory-budget") && err.contains("more than 0"),
        "{err}"
    );
    for out in ["o3", "o4"] {
        assert!(!dir.path().join(out).exists(), "{out}");
    }
}

#[test]
fn budget_covers_generation() {
    let spec = ScalingSpec::parse(TINY, "tiny.yaml").unwrap();
    let est = |m| rwkv_lab_core::estimate::generation_bytes(&spec, m, 4);
    let (big, small) = if est(Rwkv) > est(Transformer) {
        (Rwkv, Transformer)
    } else {
        (Transformer, Rwkv)
    };
    assert_ne!(est(big), est(small));
    let tmp = tempfile::tempdir().unwrap();
    let budget = est(big) - 1;
    let rows = run_into(&spec, tmp.path(), budget, false);
    let generated = |m: Model| -> Vec<&ScalingRecord> {
        rows.iter()
            .filter(|r| r.kind == Kind::Generate && r.model == m)
            .collect()
    };
    // over the budget: one skipped row at the last position, with the estimate
    let skipped = generated(big);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let r = skipped[0];
    assert!(r.status == Status::Skipped && r.note.contains("budget") && r.position == 10);
    assert_eq!(r.estimate_bytes, Some(est(big)));
    assert!(r.median_s.is_none());
    // within it: measured, every row carrying the estimate
    let ran = generated(small);
    assert_eq!(ran.len(), 4);
    assert!(
        ran.iter()
            .all(|r| r.status == Status::Ok && r.estimate_bytes == Some(est(small)))
    );
}

#[test]
fn cli_scale_writes_records_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, TINY).unwrap();
    let (code, err) = scale(dir.path(), &good, "study", &[]);
    assert_eq!(code, 0, "{err}");
    let study = dir.path().join("study");
    for f in [
        "records.csv",
        "meta.json",
        "summary.md",
        "prefill_time.png",
        "prefill_time.svg",
        "generation_cumulative.svg",
    ] {
        assert!(study.join(f).is_file(), "{f}");
    }
    // the binary installs the counting allocator: every measured row has a peak
    let rows: Vec<ScalingRecord> = read_rows(&study.join("records.csv")).unwrap();
    assert!(
        rows.iter()
            .filter(|r| r.status == Status::Ok)
            .all(|r| r.peak_bytes.is_some_and(|p| p > 0)),
        "{rows:?}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(study.join("meta.json")).unwrap()).unwrap();
    assert!(meta["finished"].as_str().unwrap().ends_with('Z'));
    assert!(meta["spec"].as_str().unwrap().contains("d_model: 16"));
    // interrupted or not, a second run refuses to overwrite; --resume adds nothing
    let (code, err) = scale(dir.path(), &good, "study", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--resume"), "{err}");
    let before = std::fs::read_to_string(study.join("records.csv")).unwrap();
    let (code, err) = scale(dir.path(), &good, "study", &["--resume"]);
    assert_eq!(code, 0);
    // said even though stderr is not a terminal here (the progress bar is hidden)
    assert!(err.contains("nothing left to measure"), "{err}");
    assert_eq!(
        std::fs::read_to_string(study.join("records.csv")).unwrap(),
        before
    );
    // the report re-renders from the records alone
    std::fs::remove_file(study.join("summary.md")).unwrap();
    let (code, err) = cli(&["report", "study"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(study.join("summary.md").is_file());
    assert!(!err.contains("warning"), "{err}");
    // without meta.json it still renders, and says what is missing
    std::fs::remove_file(study.join("meta.json")).unwrap();
    let (code, err) = cli(&["report", "study"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ") && err.contains("meta.json: not found"),
        "{err}"
    );
}

/// TINY with a `quick:` section (what `reproduce` runs).
fn tiny_with_quick() -> String {
    format!("{TINY}quick: {{ new_tokens: 6 }}\n")
}

#[test]
fn cli_outputs_never_touch_files_they_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, tiny_with_quick()).unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("thesis.tex"), "\\section{mine}").unwrap();
    let config = good.to_str().unwrap();

    let (code, err) = cli(&["scale", "--config", config, "--out", "mine"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not made by rwkv-lab"), "{err}");
    let (code, err) = cli(&["report", "mine"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a study folder"), "{err}");
    // reproduce writes a new run folder inside, each time
    for _ in 0..2 {
        let (code, err) = cli(
            &["reproduce", "--out", "mine", "--config", config],
            dir.path(),
        );
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(mine.join("thesis.tex")).unwrap(),
        "\\section{mine}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&mine)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "thesis.tex");
    for run in &names[..2] {
        assert!(run.starts_with("run-"), "{run}");
        assert!(mine.join(run).join("scaling-quick/summary.md").is_file());
    }
}

#[test]
fn cli_defaults_work_from_any_folder() {
    // A folder without the repository's experiments/ or tests/fixtures/.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, tiny_with_quick()).unwrap();
    let (code, out, err) = cli_out(
        &[
            "reproduce",
            "--out",
            "o",
            "--config",
            good.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let checks: Vec<&str> = out.lines().filter(|l| l.contains(" verify ")).collect();
    assert_eq!(checks.len(), 4, "{out}");
    assert!(checks.iter().all(|l| l.starts_with("PASS ")), "{out}");
    assert_eq!(
        checks.iter().filter(|l| l.contains("--checkpoint")).count(),
        2,
        "{out}"
    );
    // the built-in spec: a budget of one byte skips every measurement, so this is quick
    let (code, err) = cli(
        &["scale", "--quick", "--memory-budget", "1", "--out", "q"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::read_to_string(dir.path().join("q/meta.json")).unwrap();
    assert!(
        meta.contains("d_model: 256") && meta.contains("seq_lens"),
        "{meta}"
    );
    // generation included: nothing ran
    let rows: Vec<ScalingRecord> = read_rows(&dir.path().join("q/records.csv")).unwrap();
    assert!(rows.iter().any(|r| r.kind == Kind::Generate));
    assert!(rows.iter().all(|r| r.status == Status::Skipped), "{rows:?}");
}

/// Every key once, and as many rows as a run that was never stopped.
fn assert_complete(dir: &Path, expected: usize) {
    let all: Vec<ScalingRecord> = read_rows(&dir.join("records.csv")).unwrap();
    let keys: HashSet<String> = all.iter().map(Row::key).collect();
    assert_eq!(keys.len(), all.len(), "a measurement recorded twice");
    assert_eq!(all.len(), expected);
}

#[test]
fn resume_repairs_a_torn_line_and_continues_generation_per_position() {
    let spec = ScalingSpec::parse(TINY, "tiny.yaml").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let rows = run_into(&spec, &full, u64::MAX, false);
    let first_generate = rows.iter().position(|r| r.kind == Kind::Generate).unwrap();
    // stopped while RWKV's generation rows were being flushed: two of its four are on disk
    let stopped = tmp.path().join("stopped");
    interrupted_copy(&full, &stopped, first_generate + 2, 0);
    let (rest, warnings) = run_with_warnings(&spec, &stopped, u64::MAX, true);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(rest.len(), rows.len() - first_generate - 2, "{rest:?}");
    assert_complete(&stopped, rows.len());
    // stopped in the middle of writing a row: the torn line is dropped, with a warning,
    // and that measurement runs again
    let torn = tmp.path().join("torn");
    interrupted_copy(&full, &torn, 6, 30);
    let (rest, warnings) = run_with_warnings(&spec, &torn, u64::MAX, true);
    assert!(
        warnings.len() == 1 && warnings[0].contains("incomplete"),
        "{warnings:?}"
    );
    assert_eq!(rest.len(), rows.len() - 6);
    assert_complete(&torn, rows.len());
}

#[test]
fn cli_resume_refuses_another_run_and_keeps_meta() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, TINY).unwrap();
    let (code, err) = scale(dir.path(), &good, "s", &[]);
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::read(dir.path().join("s/meta.json")).unwrap();
    let records = std::fs::read(dir.path().join("s/records.csv")).unwrap();
    let (code, err) = scale(dir.path(), &good, "s", &["--resume", "--dtype", "f64"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot resume") && err.contains("dtype is f32 in the recorded run, f64 now"),
        "{err}"
    );
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, TINY.replace("d_model: 16", "d_model: 8")).unwrap();
    let (code, err) = scale(dir.path(), &other, "s", &["--resume"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("model.d_model is 16 in the recorded run, 8 now"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.path().join("s/meta.json")).unwrap(), meta);
    assert_eq!(
        std::fs::read(dir.path().join("s/records.csv")).unwrap(),
        records
    );
    // a torn last line: warned about on the terminal, measured again
    let n = records.len();
    std::fs::write(dir.path().join("s/records.csv"), &records[..n - 10]).unwrap();
    let (code, err) = scale(dir.path(), &good, "s", &["--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning:") && err.contains("incomplete"),
        "{err}"
    );
    let rows = records.iter().filter(|&&b| b == b'\n').count() - 1;
    assert_complete(&dir.path().join("s"), rows);
}
