//! End to end: a synthetic study folder → `render` → summary.md and eight plots.

use std::fs;
use std::path::Path;

use lab_records::Model::{Rwkv, Transformer};
use lab_records::{
    Conditions, Kind, Measurement, Model, ParamCount, RecordsError, Status, StudyDir,
};
use rwkv_report::{CrossoverKind, Meta, Quantity, ReportError, ScalingRecord, Verdict, render};

fn base(kind: Kind, model: Model, method: &str, seq_len: usize, position: usize) -> ScalingRecord {
    let run = Conditions {
        study: "scaling".into(),
        backend: "ndarray".into(),
        dtype: "f32".into(),
        batch: 1,
        d_model: 128,
        n_layers: 4,
        vocab: 512,
        repeats: 5,
        git_rev: "40c9f9e".into(),
    };
    let what = Measurement::new(kind, model, method, seq_len, position);
    let total = if model == Rwkv { 1_250_000 } else { 1_200_000 };
    ScalingRecord {
        estimate_bytes: Some(1 << 20),
        ..ScalingRecord::new(
            &run,
            what,
            ParamCount {
                total,
                non_embedding: None,
            },
        )
    }
}

/// RWKV ~ T¹, transformer ~ T² (with a little deterministic jitter), a skipped row, and
/// generation with RWKV linear / transformer quadratic cumulative time.
fn synthetic() -> Vec<ScalingRecord> {
    let jitter = |i: usize| 1.0 + 0.01 * [0.3, -0.5, 0.8, -0.2, 0.1, -0.7, 0.4][i % 7];
    let mut rs = Vec::new();
    for (i, t) in [64usize, 128, 256, 512, 1024, 2048, 4096]
        .into_iter()
        .enumerate()
    {
        let x = t as f64;
        for (variant, c) in [("chunked:64", 2.0e-5), ("scan", 3.0e-5)] {
            let s = c * x * jitter(i);
            rs.push(ScalingRecord {
                median_s: Some(s),
                min_s: Some(0.95 * s),
                max_s: Some(1.1 * s),
                peak_bytes: Some(4096 * t as u64),
                state_bytes: Some(20_480),
                ..base(Kind::Prefill, Rwkv, variant, t, 0)
            });
        }
        let s = 1.0e-7 * x * x * jitter(i + 3);
        rs.push(ScalingRecord {
            median_s: Some(s),
            min_s: Some(s),
            max_s: Some(s),
            peak_bytes: Some(16 * (t * t) as u64 + 64 * t as u64),
            state_bytes: Some(4096 * t as u64),
            ..base(Kind::Prefill, Transformer, "explicit", t, 0)
        });
    }
    rs.push(ScalingRecord {
        status: Status::Skipped,
        estimate_bytes: Some(80 << 30),
        note: "estimated 80 GiB exceeds the 16 GiB budget".into(),
        ..base(Kind::Prefill, Transformer, "explicit", 65536, 0)
    });
    let prompt = 16;
    for n in 1..=64usize {
        let x = n as f64;
        rs.push(ScalingRecord {
            median_s: Some(1e-3),
            cumulative_s: Some(1e-3 * x),
            state_bytes: Some(20_480),
            peak_bytes: Some(8192),
            ..base(Kind::Generate, Rwkv, "rnn", prompt + n, n)
        });
        rs.push(ScalingRecord {
            median_s: Some(1e-4 * x),
            cumulative_s: Some(5e-5 * x * (x + 1.0)),
            state_bytes: Some(4096 * (prompt + n) as u64),
            peak_bytes: Some(8192),
            ..base(Kind::Generate, Transformer, "kv-cache", prompt + n, n)
        });
    }
    rs
}

/// A temporary study folder (marked as made by rwkv-lab).
fn study_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    StudyDir::for_writing(dir.path()).unwrap();
    dir
}

fn write_meta(dir: &Path, meta: &Meta) {
    let text = serde_json::to_string_pretty(meta).unwrap();
    fs::write(dir.join("meta.json"), text).unwrap();
}

fn write_csv(dir: &Path, records: &[ScalingRecord]) {
    let mut w = csv::Writer::from_path(dir.join("records.csv")).unwrap();
    for r in records {
        w.serialize(r).unwrap();
    }
    w.flush().unwrap();
}

/// The fitted exponent in summary.md's row for (measurement, series).
fn exponent(md: &str, measurement: &str, series: &str) -> f64 {
    let prefix = format!("| {measurement} | `{series}` | ");
    let line = md
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no row {prefix:?} in\n{md}"));
    line[prefix.len()..]
        .split(" |")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn renders_summary_and_plots() {
    let dir = study_dir();
    write_csv(dir.path(), &synthetic());
    let meta = Meta {
        command: "rwkv-lab study run experiments/scaling.yaml --out runs/scaling".into(),
        spec: "name: scaling\n".into(),
        seed: 42,
        backend: "ndarray".into(),
        device: "Cpu".into(),
        dtype: "f32".into(),
        git_rev: "40c9f9e".into(),
        versions: vec!["burn 0.21.0".into()],
        machine: "test machine".into(),
        started: "2026-01-01T00:00:00Z".into(),
        finished: "2026-01-01T01:00:00Z".into(),
        ..Default::default()
    };
    write_meta(dir.path(), &meta);

    let out = render(dir.path()).unwrap();
    let names: Vec<String> = out
        .files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "summary.md",
            "prefill_time.png",
            "prefill_time.svg",
            "prefill_memory.png",
            "prefill_memory.svg",
            "generation_latency.png",
            "generation_latency.svg",
            "generation_cumulative.png",
            "generation_cumulative.svg",
        ]
    );
    for path in out.files() {
        let bytes = fs::read(path).unwrap();
        assert!(!bytes.is_empty(), "{} is empty", path.display());
        match path.extension().unwrap().to_str().unwrap() {
            "png" => assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{} is not a PNG",
                path.display()
            ),
            "svg" => assert!(
                String::from_utf8_lossy(&bytes).contains("<svg"),
                "{} is not an SVG",
                path.display()
            ),
            _ => {}
        }
    }
    assert!(
        out.has_meta && out.warnings.is_empty(),
        "{:?}",
        out.warnings
    );
    assert_eq!(out.n_records, synthetic().len());

    let md = fs::read_to_string(&out.summary).unwrap();
    for (measurement, series, want) in [
        ("prefill time vs T", "rwkv chunked:64", 1.0),
        ("prefill time vs T", "rwkv scan", 1.0),
        ("prefill time vs T", "transformer explicit", 2.0),
        ("prefill peak memory vs T", "rwkv scan", 1.0),
        ("prefill peak memory vs T", "transformer explicit", 2.0),
        ("cumulative generation time vs tokens", "rwkv rnn", 1.0),
        ("state / KV-cache bytes vs context", "rwkv rnn", 0.0),
        (
            "state / KV-cache bytes vs context",
            "transformer kv-cache",
            1.0,
        ),
    ] {
        let k = exponent(&md, measurement, series);
        assert!(
            (k - want).abs() <= 0.05,
            "{measurement}, {series}: k = {k}, want {want}\n{md}"
        );
    }
    assert!(
        exponent(
            &md,
            "cumulative generation time vs tokens",
            "transformer kv-cache"
        ) > 1.5
    );

    // Every checked claim passes on this data.
    assert!(
        out.fits.iter().all(|f| f.verdict != Verdict::Fail),
        "{:#?}",
        out.fits
    );
    assert!(
        out.fits
            .iter()
            .any(|f| f.quantity == Quantity::PrefillTime && f.verdict == Verdict::Pass)
    );
    assert!(!md.contains("❌"), "{md}");

    // Crossover: chunked:64 (2e-5 T) vs explicit (1e-7 T²) cross at T ≈ 200.
    let c = &out.crossovers[0];
    match c.kind {
        Some(CrossoverKind::At { t, lower, upper }) => {
            assert!((150.0..260.0).contains(&t), "{t}");
            assert_eq!((lower, upper), (128.0, 256.0));
        }
        ref k => panic!("{k:?}"),
    }
    assert!(md.contains("RWKV faster from T ≈ "), "{md}");
    assert!(md.contains("At the largest T both ran (T = 4,096)"), "{md}");

    // Provenance, parameters, the skipped row.
    for needle in [
        "`rwkv-lab study run experiments/scaling.yaml --out runs/scaling`",
        "re-render with `rwkv-lab report DIR`",
        "| Finished (UTC) | 2026-01-01T01:00:00Z |",
        "RWKV has 4.2% more parameters than the transformer",
        "| skipped | prefill | `transformer` | `explicit` | 1 | 65,536 | — | 80 GiB | estimated 80 GiB exceeds the 16 GiB budget |",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }

    // The fits print as terminal lines.
    let line = out
        .fits
        .iter()
        .find(|f| f.label == "rwkv scan")
        .unwrap()
        .to_string();
    assert!(
        line.starts_with("prefill time vs T: rwkv scan: k = 1.0"),
        "{line}"
    );

    // Re-rendering overwrites in place.
    render(dir.path()).unwrap();
}

/// The memory plot says what was measured (from meta.json), each axis has one unit stated
/// in its title, and series with the same values are named as such.
#[test]
fn plots_state_units_and_what_is_measured() {
    let dir = study_dir();
    let mut records = synthetic();
    // the fused path measured exactly what the explicit one did (as on a CPU backend
    // whose fused attention falls back to the explicit one)
    let fused: Vec<ScalingRecord> = records
        .iter()
        .filter(|r| r.kind == Kind::Prefill && r.method == "explicit")
        .map(|r| ScalingRecord {
            method: "fused".into(),
            ..r.clone()
        })
        .collect();
    records.extend(fused);
    write_csv(dir.path(), &records);
    let meta = Meta {
        backend: "wgpu".into(),
        memory: "device memory reserved by the allocator".into(),
        ..Default::default()
    };
    write_meta(dir.path(), &meta);
    render(dir.path()).unwrap();
    let svg = |stem: &str| fs::read_to_string(dir.path().join(format!("{stem}.svg"))).unwrap();
    let memory = svg("prefill_memory");
    assert!(
        memory.contains("measured: device memory reserved by the allocator"),
        "{memory}"
    );
    assert!(
        memory.contains("same values as transformer explicit"),
        "{memory}"
    );
    // synthetic peaks span about 300 KiB to 256 MiB: one unit, in the axis title only
    assert!(memory.contains("peak memory (MiB)"), "{memory}");
    assert!(
        !memory.contains(" MiB<") && !memory.contains(" KiB<"),
        "{memory}"
    );
    let time = svg("prefill_time");
    assert!(time.contains("median time per forward (ms)"), "{time}");
    assert!(!time.contains(" ms<") && !time.contains(" µs<"), "{time}");
    assert!(!time.contains("measured:"), "{time}");
    let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.contains("| Memory figures | device memory reserved by the allocator |"),
        "{md}"
    );
}

#[test]
fn meta_is_optional() {
    let dir = study_dir();
    write_csv(dir.path(), &synthetic());
    let out = render(dir.path()).unwrap();
    assert!(!out.has_meta);
    // returned for the caller to print (the library never prints)
    assert!(
        out.warnings.len() == 1 && out.warnings[0].contains("meta.json: not found"),
        "{:?}",
        out.warnings
    );
    let md = fs::read_to_string(&out.summary).unwrap();
    assert!(
        md.contains("| Command | unknown |") && md.contains("| Machine | unknown |"),
        "{md}"
    );
}

#[test]
fn only_skipped_rows_still_render() {
    let dir = study_dir();
    let skipped: Vec<ScalingRecord> = [1024usize, 2048, 4096]
        .into_iter()
        .map(|t| ScalingRecord {
            status: Status::Skipped,
            note: "over budget".into(),
            ..base(Kind::Prefill, Transformer, "explicit", t, 0)
        })
        .collect();
    write_csv(dir.path(), &skipped);
    let out = render(dir.path()).unwrap();
    assert!(out.fits.is_empty() && out.crossovers.is_empty());
    for path in out.files() {
        assert!(fs::metadata(path).unwrap().len() > 0, "{}", path.display());
    }
    let md = fs::read_to_string(&out.summary).unwrap();
    assert!(
        md.contains("No series to fit") && md.contains("No transformer prefill timings"),
        "{md}"
    );
    assert_eq!(md.matches("| skipped | prefill |").count(), 3, "{md}");
}

#[test]
fn errors_name_the_file() {
    let dir = study_dir();
    let csv = dir.path().join("records.csv");

    let e = render(dir.path()).unwrap_err();
    assert!(
        matches!(e, ReportError::Records(RecordsError::NotFound { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("records.csv: not found"), "{e}");

    // Header only.
    write_csv(dir.path(), &synthetic()[..1]);
    let header = fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    fs::write(&csv, format!("{header}\n")).unwrap();
    let e = render(dir.path()).unwrap_err();
    assert!(
        matches!(e, ReportError::Records(RecordsError::Empty { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("records.csv: no records"), "{e}");
    fs::write(&csv, "").unwrap();
    assert!(matches!(
        render(dir.path()).unwrap_err(),
        ReportError::Records(RecordsError::Empty { .. })
    ));

    // A malformed third row (line 4): a number that is not one.
    write_csv(dir.path(), &synthetic()[..4]);
    let text = fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut fields: Vec<&str> = lines[3].split(',').collect();
    fields[7] = "12x8";
    lines[3] = fields.join(",");
    fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let e = render(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            ReportError::Records(RecordsError::Csv { line: Some(4), .. })
        ),
        "{e:?}"
    );
    assert!(
        msg.contains("records.csv: line 4: field 8 (`seq_len`)"),
        "{msg}"
    );

    // A row with a missing field.
    lines[3] = "scaling,prefill,rwkv".into();
    fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let msg = render(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("line 4: expected 25 fields"), "{msg}");

    // Malformed meta.json.
    write_csv(dir.path(), &synthetic());
    fs::write(dir.path().join("meta.json"), "{ not json").unwrap();
    let e = render(dir.path()).unwrap_err();
    assert!(
        matches!(e, ReportError::Records(RecordsError::Meta { .. }))
            && e.to_string().contains("meta.json"),
        "{e}"
    );
}

#[test]
fn foreign_folders_are_refused_and_left_alone() {
    // A folder rwkv-lab did not make, even one holding a records.csv: nothing is written.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("thesis.tex"), "mine").unwrap();
    write_csv(dir.path(), &synthetic());
    fs::write(dir.path().join("summary.md"), "my notes").unwrap();
    let e = render(dir.path()).unwrap_err();
    assert!(
        matches!(e, ReportError::Records(RecordsError::NotAStudy { .. }))
            && e.to_string().contains("not a study folder"),
        "{e}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("summary.md")).unwrap(),
        "my notes"
    );
    assert!(!dir.path().join("prefill_time.png").exists());
    assert!(render(&dir.path().join("missing")).is_err());
}
