//! `rwkv-lab compare-backends` end to end on the CPU: float64 ndarray as the reference,
//! f32 ndarray compared with it (the comparison every machine can run); records, report,
//! re-render, skips, and the output-folder rules.

use lab_records::{BackendRow, Measured, Status, StudyDir};

use crate::scaling::cli_out as cli;

/// A small spec: two T, three formulations, parallel limited, a decode model.
const SPEC: &str = "
study: cmp-test
repeats: 3
warmup: 1
prefill:
  model: { vocab: 40, d_model: 16, n_layers: 2 }
  seq_lens: [8, 32]
  modes: [scan, chunked:8, parallel]
  max_seq_len: { parallel: 8 }
decode:
  model: { vocab: 40, d_model: 16, n_layers: 2 }
  steps: 4
  warmup: 2
matmul:
  shapes: [[8, 16, 40]]
";

#[test]
fn f32_against_float64_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), SPEC).unwrap();
    let args = [
        "compare-backends",
        "--backends",
        "ndarray:f64,ndarray",
        "--config",
        "c.yaml",
        "--out",
        "cmp",
    ];
    let (code, out, err) = cli(&args, dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("summary.md"), "{out}");
    let study = StudyDir::open(&dir.path().join("cmp")).unwrap();
    let rows: Vec<BackendRow> = study.read_rows().unwrap();
    // per backend: one product, 2 T x 3 formulations, then decode through the model's two
    // steps (recurrence and scan) and, in f32 only, the CPU decoder
    assert_eq!(rows.len(), 2 + 2 * 6 + 2 * 2 + 1, "{rows:#?}");
    let (reference, f32_rows): (Vec<&BackendRow>, Vec<&BackendRow>) =
        rows.iter().partition(|r| r.dtype == "f64");
    assert!(
        reference
            .iter()
            .all(|r| r.max_abs_diff.is_none() && r.reference == "ndarray:f64")
    );
    let skipped: Vec<&&BackendRow> = f32_rows
        .iter()
        .filter(|r| r.status == Status::Skipped)
        .collect();
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].note.contains("max_seq_len 8 for parallel"),
        "{}",
        skipped[0].note
    );
    for r in f32_rows.iter().filter(|r| r.is_ok()) {
        // f32 rounding against float64 on the same (f32-rounded) weights: small, not zero
        let d = r.max_abs_diff.unwrap();
        assert!(d > 0.0 && d < 1e-4, "{r:?}");
        assert!(r.median_s.unwrap() > 0.0 && r.tokens_per_s.unwrap() > 0.0);
    }
    for engine in ["model", "model-scan", "cpu-decoder"] {
        assert!(
            f32_rows
                .iter()
                .any(|r| r.measured == Measured::Decode && r.method == engine && r.is_ok()),
            "{engine}"
        );
    }
    let summary = std::fs::read_to_string(study.file("summary.md")).unwrap();
    for want in [
        "## Matrix products",
        "| 8 × 16 × 40 | ndarray |",
        "## Prefill",
        "| 32 | scan |",
        "ndarray ×",
        "## Decode",
        "| ndarray | model-scan |",
        "cpu-decoder",
        "## Output differences from ndarray:f64",
        "## Skipped and failed",
    ] {
        assert!(summary.contains(want), "{want} missing:\n{summary}");
    }
    for plot in ["prefill_time.svg", "prefill_speedup.png"] {
        assert!(study.file(plot).is_file(), "{plot}");
    }
    // the report re-renders from the records alone
    std::fs::remove_file(study.file("summary.md")).unwrap();
    let (code, _, err) = cli(&["report", "cmp"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(study.file("summary.md")).unwrap(),
        summary
    );
    // a second run into the same folder is refused, and the records are kept
    let (code, _, err) = cli(&args, dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(study.read_rows::<BackendRow>().unwrap().len(), rows.len());
}

#[test]
fn over_the_budget_is_recorded_as_skipped_and_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), SPEC).unwrap();
    // the weights and the T = 8 forwards fit in 60 KiB (about 42 KiB); the T = 32 ones do not
    let (code, _, err) = cli(
        &[
            "compare-backends",
            "--backends",
            "ndarray",
            "--config",
            "c.yaml",
            "--out",
            "o",
            "--memory-budget",
            "60K",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let rows: Vec<BackendRow> = StudyDir::open(&dir.path().join("o"))
        .unwrap()
        .read_rows()
        .unwrap();
    let over: Vec<&BackendRow> = rows
        .iter()
        .filter(|r| r.note.contains("more than the memory budget"))
        .collect();
    assert!(
        !over.is_empty()
            && over
                .iter()
                .all(|r| r.status == Status::Skipped && r.median_s.is_none())
    );
    assert!(rows.iter().any(|r| r.is_ok()), "{rows:#?}");

    for (args, want) in [
        (vec!["--backends", "ndarray,ndarray"], "twice"),
        (vec!["--backends", "tpu"], "not a backend"),
        (vec!["--backends", "wgpu:f64"], "does not support f64"),
        (vec!["--config", "missing.yaml"], "missing.yaml"),
    ] {
        let mut a = vec!["compare-backends", "--out", "never"];
        a.extend(args);
        let (code, _, err) = cli(&a, dir.path());
        assert_ne!(code, 0);
        assert!(err.contains(want), "{want}: {err}");
        assert!(
            !dir.path().join("never").exists(),
            "nothing written on a bad command"
        );
    }
    // a folder with the user's files is never written into
    std::fs::create_dir(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/notes.txt"), "mine").unwrap();
    let (code, _, err) = cli(
        &[
            "compare-backends",
            "--backends",
            "ndarray",
            "--config",
            "c.yaml",
            "--out",
            "mine",
        ],
        dir.path(),
    );
    assert_eq!(code, 2);
    assert!(err.contains("not made by rwkv-lab"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("mine")).unwrap().count(),
        1
    );
}
