//! The verifier as a library (`rwkv_lab_core::verify`) and the `verify` command's contract:
//! condition-aware tolerances pass correct runs on an ill-conditioned case and still fail
//! deliberate faults; options that do not apply are rejected; sizes are checked before
//! anything is allocated.

use std::path::{Path, PathBuf};

use rwkv::verify::Status;
use rwkv_checkpoint::{Checkpoint, Reference, load, load_reference};
use rwkv_lab_core::verify::{
    Dims, Inputs, ORACLE, RandomModel, TokenChoice, VerifyError, VerifyOptions, VerifyReport,
    checked_params, plan, verify_checkpoint, verify_random,
};

use crate::common::{F32, F64};
use crate::generate_text::cli;

fn stress(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stress-k30")
        .join(name)
}

fn stress_case() -> (Checkpoint, Reference) {
    (
        load(stress("")).unwrap(),
        load_reference(stress("reference.safetensors")).unwrap(),
    )
}

fn run<B: rwkv::WkvBackend>(ckpt: &Checkpoint, reference: &Reference) -> VerifyReport {
    verify_checkpoint::<B>(
        &Default::default(),
        ckpt,
        Inputs::Reference(reference),
        &VerifyOptions::default(),
    )
    .unwrap()
}

fn failures(r: &VerifyReport) -> Vec<String> {
    r.comparisons
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| {
            format!(
                "{} vs {} {}: max_abs {:.2e} rel_rms {:.2e} tol {:.2e}",
                c.a, c.b, c.quantity, c.max_abs, c.rel_rms, c.tol
            )
        })
        .collect()
}

/// A correct run passes the stress case (|k| up to 129, decays from -3e-4 to -403, T = 200)
/// against the exact float64 forward, Hugging Face and BlinkDL, in f32 and in f64, with
/// every comparison run and every bound's terms reported.
#[test]
fn correct_runs_pass_the_stress_case() {
    let (ckpt, reference) = stress_case();
    for (report, expected) in [
        // f32 adds the CPU decoder: 2 rows vs the recurrence, 2 vs the oracle, 8 vs the reference
        (run::<F32>(&ckpt, &reference), 10 + 12 + 5 * 8 + 12),
        (run::<F64>(&ckpt, &reference), 10 + 5 * 8),
    ] {
        assert!(report.pass, "{}: {:#?}", report.dtype, failures(&report));
        assert_eq!(report.skipped, 0);
        assert_eq!(report.comparisons.len(), expected, "{}", report.dtype);
        assert_eq!(report.tolerance_rule, "derived");
        for key in [
            "logits_exact_f64",
            "logits_whole",
            "blinkdl_seq_logits0",
            "blinkdl_rnn_logits0",
            "final_state_0",
            "final_state_2/final_state_3",
        ] {
            assert!(report.comparisons.iter().any(|c| c.b == key), "{key}");
        }
        assert!(report.comparisons.iter().all(|c| c.bound.is_some()));
        // the conditioning is what the fixture was made for
        let c = &report.conditioning;
        assert_eq!(c.time, 200);
        assert!(c.layers.iter().all(|l| l.max_k > 100.0), "{c:?}");
        assert!(c.layers.iter().any(|l| l.max_w_t > 1e4), "{c:?}");
    }
}

/// The same case passes in f32 only because the tolerance knows its conditioning: the
/// fixed tolerances of the earlier verifier (1e-5 absolute against the references) fail it.
#[test]
fn fixed_tolerances_are_too_tight_for_the_stress_case() {
    let (ckpt, reference) = stress_case();
    let opts = VerifyOptions {
        ref_tol: Some(1e-5),
        ..VerifyOptions::default()
    };
    let r = verify_checkpoint::<F32>(
        &Default::default(),
        &ckpt,
        Inputs::Reference(&reference),
        &opts,
    )
    .unwrap();
    assert!(!r.pass);
    assert!(
        r.comparisons
            .iter()
            .any(|c| c.b == "logits_exact_f64" && c.status == Status::Fail)
    );
}

/// One deliberate fault, applied to the loaded checkpoint's host tensors (BlinkDL keys).
fn with_fault(ckpt: &Checkpoint, fault: &str, layer: usize) -> Checkpoint {
    let mut c = ckpt.clone();
    let p = format!("blocks.{layer}.");
    fn t<'a>(c: &'a mut Checkpoint, p: &str, k: &str) -> &'a mut rwkv_checkpoint::HostTensor {
        c.tensors.get_mut(&format!("{p}{k}")).unwrap()
    }
    match fault {
        // w = -exp(time_decay) changed by 1e-3 relative
        "decay" => {
            for x in &mut t(&mut c, &p, "att.time_decay").data {
                *x += 1e-3f64.ln_1p();
            }
        }
        // token shift off: every mix 1, so x_k = x_v = x_r = z_t
        "token shift" => {
            for k in [
                "att.time_mix_k",
                "att.time_mix_v",
                "att.time_mix_r",
                "ffn.time_mix_k",
                "ffn.time_mix_r",
            ] {
                t(&mut c, &p, k).data.fill(1.0);
            }
        }
        "bonus" => {
            for x in &mut t(&mut c, &p, "att.time_first").data {
                *x += 1e-3;
            }
        }
        "transposed" => {
            let w = t(&mut c, &p, "att.receptance.weight");
            let n = w.shape[0];
            let orig = w.data.clone();
            for i in 0..n {
                for j in 0..n {
                    w.data[i * n + j] = orig[j * n + i];
                }
            }
        }
        other => panic!("unknown fault {other}"),
    }
    c
}

fn assert_fault_detected(report: &VerifyReport, what: &str) {
    assert!(!report.pass, "{what} passed");
    // the fault is in the model, so the formulations still agree with each other ...
    assert!(
        report
            .comparisons
            .iter()
            .filter(|c| c.b == "recurrent" || c.b == ORACLE)
            .all(|c| c.status == Status::Pass),
        "{what}: {:#?}",
        failures(report)
    );
    // ... and the most accurate runs disagree with the exact float64 forward
    for mode in ["parallel", "chunked:16"] {
        assert!(
            report
                .comparisons
                .iter()
                .any(|c| c.a == mode && c.b == "logits_exact_f64" && c.status == Status::Fail),
            "{what}: {mode} vs logits_exact_f64 passed"
        );
    }
}

/// Each deliberate fault fails the same stress case, in f32 and in f64: a decay changed by
/// 1e-3 relative (in the last layer, where it moves the logits least), the token shift
/// dropped in the last layer, `u` changed by 1e-3 in the first layer, a transposed matrix.
#[test]
fn faults_fail_the_stress_case() {
    let (ckpt, reference) = stress_case();
    for (fault, layer) in [
        ("decay", 3),
        ("token shift", 3),
        ("bonus", 0),
        ("transposed", 3),
    ] {
        let bad = with_fault(&ckpt, fault, layer);
        let what = format!("{fault} in layer {layer}");
        let r32 = run::<F32>(&bad, &reference);
        assert_fault_detected(&r32, &format!("{what}, f32"));
        let r64 = run::<F64>(&bad, &reference);
        assert_fault_detected(&r64, &format!("{what}, f64"));
        // in f64 every logits comparison with the exact forward and Hugging Face fails
        assert!(
            r64.comparisons
                .iter()
                .filter(|c| c.b == "logits_exact_f64" || c.b == "logits_whole")
                .all(|c| c.status == Status::Fail),
            "{what}, f64: {:#?}",
            failures(&r64)
        );
        if fault != "bonus" {
            // a fault larger than f32 rounding fails every logits comparison with a reference
            assert!(
                r32.comparisons
                    .iter()
                    .filter(|c| c.quantity.starts_with("logits")
                        && c.b != "recurrent"
                        && c.b != ORACLE)
                    .all(|c| c.status == Status::Fail),
                "{what}, f32: {:#?}",
                failures(&r32)
            );
        }
    }
}

/// The float64 oracle and every formulation, on a random model, in f32 and f64; the f32
/// run really differs from the oracle (the backends do not share a dtype by accident).
#[test]
fn random_models_pass_in_both_precisions() {
    let model = RandomModel {
        vocab_size: 40,
        d_model: 16,
        n_layers: 2,
        d_ffn: None,
        seed: 4,
    };
    let tokens = TokenChoice::Random {
        batch: 2,
        time: 21,
        seed: 4,
    };
    let opts = VerifyOptions {
        chunk_len: 4,
        ..VerifyOptions::default()
    };
    let r32 = verify_random::<F32>(&Default::default(), &model, &tokens, &opts).unwrap();
    assert!(r32.pass, "{:#?}", failures(&r32));
    // parallel, chunked, scan, rnn, cpu-decoder, split against the recurrence, and all seven
    // against f64
    assert_eq!(r32.comparisons.len(), 12 + 14);
    let decoder: Vec<_> = r32
        .comparisons
        .iter()
        .filter(|c| c.a == "cpu-decoder")
        .collect();
    assert_eq!(decoder.len(), 4);
    assert!(decoder.iter().all(|c| c.pass && c.max_abs > 0.0));
    assert_eq!((r32.dtype, r32.backend.as_str()), ("f32", "ndarray"));
    assert!(
        r32.comparisons
            .iter()
            .any(|c| c.b == ORACLE && c.max_abs > 0.0)
    );
    let r64 = verify_random::<F64>(&Default::default(), &model, &tokens, &opts).unwrap();
    assert!(r64.pass, "{:#?}", failures(&r64));
    assert_eq!(r64.comparisons.len(), 10);
    // given ids: one sequence
    let ids = TokenChoice::Ids(vec![1, 2, 3, 39]);
    let r = verify_random::<F64>(&Default::default(), &model, &ids, &opts).unwrap();
    assert_eq!((r.batch, r.seq_len), (1, 4));
    // an id outside the vocabulary is the model's error, before anything runs
    let bad = TokenChoice::Ids(vec![1, 40]);
    let e = verify_random::<F64>(&Default::default(), &model, &bad, &opts).unwrap_err();
    assert!(e.to_string().contains("token id 40"), "{e}");
}

/// A fixed tolerance replaces the derived ones, and a wrong one fails.
#[test]
fn fixed_tolerances_apply() {
    let model = RandomModel {
        vocab_size: 30,
        d_model: 8,
        n_layers: 1,
        d_ffn: Some(16),
        seed: 1,
    };
    let tokens = TokenChoice::Random {
        batch: 1,
        time: 9,
        seed: 1,
    };
    let opts = VerifyOptions {
        tol: Some(1e-15),
        ..VerifyOptions::default()
    };
    let r = verify_random::<F32>(&Default::default(), &model, &tokens, &opts).unwrap();
    assert_eq!((r.tolerance_rule, r.tolerance), ("fixed", 1e-15));
    assert!(r.comparisons.iter().all(|c| c.bound.is_none()));
    assert!(!r.pass);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let opts = VerifyOptions {
            tol: Some(bad),
            ..VerifyOptions::default()
        };
        let e = verify_random::<F32>(&Default::default(), &model, &tokens, &opts).unwrap_err();
        assert!(
            matches!(e, VerifyError::Invalid { field: "tol", .. }),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Sizes: estimated before anything is allocated

fn dims(vocab: usize, c: usize, l: usize, b: usize, t: usize) -> Dims {
    Dims {
        vocab,
        d_model: c,
        n_layers: l,
        d_ffn: c.saturating_mul(4),
        batch: b,
        time: t,
        chunk_len: 16,
    }
}

#[test]
fn the_plan_uses_checked_arithmetic() {
    assert_eq!(
        checked_params(50, 32, 2, 128),
        Some(rwkv::RwkvConfig::new(50, 32, 2, 128).num_params() as u64)
    );
    assert_eq!(checked_params(usize::MAX, 1 << 40, 1, 1), None);
    assert_eq!(checked_params(10, 1 << 62, 1, 1), None);
    let p = plan(dims(usize::MAX, 1 << 61, 2, 2, 64), 4, true, 1 << 30);
    assert_eq!(p.model, None);
    assert!(p.runs.iter().all(|r| !r.fits));
    // the parallel form grows like B·C·T², the chunked one like B·C·T·L
    let p = plan(dims(256, 64, 2, 2, 5000), 4, true, 8 << 30);
    let par = p.get("parallel").unwrap().bytes.unwrap();
    let chk = p.get("chunked:16").unwrap().bytes.unwrap();
    assert!(par > 4 * 2 * 64 * 5000 * 5000 * 4, "{par}");
    assert!(chk < 1 << 30, "{chk}");
    assert!(!p.get("parallel").unwrap().fits && p.get("chunked:16").unwrap().fits);
}

#[test]
fn an_oversized_model_is_refused_before_allocating() {
    // 2·V·C·4 bytes = 8 TB of embeddings: refused from the estimate alone
    let model = RandomModel {
        vocab_size: 10_000_000,
        d_model: 100_000,
        n_layers: 2,
        d_ffn: None,
        seed: 0,
    };
    let tokens = TokenChoice::Random {
        batch: 2,
        time: 64,
        seed: 0,
    };
    let e = verify_random::<F32>(
        &Default::default(),
        &model,
        &tokens,
        &VerifyOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, VerifyError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("the model"), "{e}");
    // 10^8 random tokens: the logits alone are 200 GB; refused before drawing them
    let small = RandomModel {
        vocab_size: 256,
        d_model: 8,
        n_layers: 1,
        d_ffn: None,
        seed: 0,
    };
    let many = TokenChoice::Random {
        batch: 2,
        time: 100_000_000,
        seed: 0,
    };
    let e = verify_random::<F32>(
        &Default::default(),
        &small,
        &many,
        &VerifyOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("recurrent reference run"), "{e}");
    // sizes whose arithmetic overflows name the field that was given
    let huge = RandomModel {
        d_model: 1 << 62,
        ..small.clone()
    };
    let e = verify_random::<F32>(
        &Default::default(),
        &huge,
        &tokens,
        &VerifyOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("d_model"), "{e}");
    assert!(!e.to_string().contains("d_ffn"), "{e}");
}

/// A formulation over the budget is skipped with the reason, counted neither as pass nor
/// as fail; the others still run and pass.
#[test]
fn an_over_budget_formulation_is_skipped() {
    let model = RandomModel {
        vocab_size: 32,
        d_model: 16,
        n_layers: 1,
        d_ffn: None,
        seed: 2,
    };
    let (batch, time) = (2, 160);
    let tokens = TokenChoice::Random {
        batch,
        time,
        seed: 2,
    };
    let p = plan(
        Dims {
            vocab: 32,
            d_model: 16,
            n_layers: 1,
            d_ffn: 64,
            batch,
            time,
            chunk_len: 16,
        },
        4,
        true,
        u64::MAX,
    );
    let parallel = p.get("parallel").unwrap().bytes.unwrap();
    let others = p
        .runs
        .iter()
        .filter(|r| r.name != "parallel")
        .map(|r| r.bytes.unwrap())
        .max()
        .unwrap();
    assert!(others < parallel, "{p:#?}");
    let opts = VerifyOptions {
        memory_budget: parallel - 1,
        ..VerifyOptions::default()
    };
    let r = verify_random::<F32>(&Default::default(), &model, &tokens, &opts).unwrap();
    assert!(r.pass, "{:#?}", failures(&r));
    let skipped: Vec<_> = r
        .comparisons
        .iter()
        .filter(|c| c.status == Status::Skipped)
        .collect();
    assert_eq!(r.skipped, 4); // parallel vs recurrent and vs the oracle, logits and state
    assert_eq!(skipped.len(), 4);
    assert!(skipped.iter().all(|c| c.a == "parallel" && !c.pass));
    assert!(
        skipped[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("memory budget")
    );
    assert_eq!(r.passed + r.failed + r.skipped, r.comparisons.len());
}

// ---------------------------------------------------------------------------------------
// The command line

/// Exit 2 with one clear line containing `needle`, no panic, no backtrace.
fn assert_usage_error(args: &[&str], needle: &str) {
    let (code, _, err) = cli(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
    assert!(
        !err.contains("panicked") && !err.contains(".rs:"),
        "{args:?}: {err}"
    );
}

#[test]
fn options_that_do_not_apply_are_rejected() {
    let ckpt = stress("");
    let ckpt = ckpt.to_str().unwrap();
    let reference = stress("reference.safetensors");
    let reference = reference.to_str().unwrap();
    assert_usage_error(
        &["verify", "--random", "--reference", reference],
        "--reference needs --checkpoint",
    );
    assert_usage_error(
        &["verify", "--random", "--ref-tol", "1e-3"],
        "--ref-tol applies only with --reference",
    );
    for flag in ["--d-model", "--vocab", "--n-layers", "--d-ffn", "--seq-len"] {
        assert_usage_error(
            &["verify", "--checkpoint", ckpt, flag, "8"],
            &format!("{flag} describes a random model"),
        );
    }
    assert_usage_error(
        &["verify", "--random", "--tokens", "1,2", "--batch", "2"],
        "--batch applies to random tokens",
    );
    assert_usage_error(
        &[
            "verify",
            "--checkpoint",
            ckpt,
            "--reference",
            reference,
            "--batch",
            "2",
        ],
        "--batch applies to random tokens",
    );
    assert_usage_error(
        &[
            "verify",
            "--random",
            "--seq-len",
            "8",
            "--random-tokens",
            "9",
        ],
        "give one",
    );
    for value in ["-1", "0", "nan", "inf"] {
        assert_usage_error(
            &["verify", "--random", "--tol", value],
            "must be a positive number",
        );
    }
    assert_usage_error(
        &[
            "verify",
            "--checkpoint",
            ckpt,
            "--reference",
            reference,
            "--ref-tol",
            "-1e-3",
        ],
        "must be a positive number",
    );
    assert_usage_error(&["verify", "--random", "--tokens", "1,-2"], "non-negative");
    assert_usage_error(&["verify"], "nothing to verify");
}

#[test]
fn oversized_requests_fail_fast_with_the_reason() {
    assert_usage_error(
        &[
            "verify",
            "--random",
            "--d-model",
            "100000",
            "--vocab",
            "10000000",
        ],
        "memory budget",
    );
    assert_usage_error(
        &["verify", "--random", "--random-tokens", "100000000"],
        "recurrent reference run",
    );
    assert_usage_error(
        &["verify", "--random", "--d-model", "4611686018427387904"],
        "d_model",
    );
    let (_, _, err) = cli(&["verify", "--random", "--d-model", "4611686018427387904"]);
    assert!(!err.contains("d_ffn"), "{err}");
    let (code, _, err) = cli(&["verify", "--random", "--vocab", "18446744073709551615"]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("token id -"), "{err}");
    assert_usage_error(
        &["verify", "--random", "--d-model", "2305843009213693952"],
        "memory budget",
    );
    assert_usage_error(
        &["verify", "--random", "--memory-budget", "1K"],
        "memory budget",
    );
}

#[test]
fn cli_shows_skipped_formulations_and_bounds() {
    let (code, out, err) = cli(&[
        "verify",
        "--random",
        "--d-model",
        "16",
        "--n-layers",
        "1",
        "--vocab",
        "32",
        "--seq-len",
        "400",
        "--batch",
        "1",
        "--memory-budget",
        "40M",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("skipped"), "{out}");
    assert!(out.contains("estimated"), "{out}");
    assert!(out.contains("conditioning: K = "), "{out}");
    assert!(out.contains("PASS"), "{out}");
    let (code, out, _) = cli(&["verify", "--random", "--seq-len", "12", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // the fields of the earlier schema are all still there
    for k in [
        "pass",
        "backend",
        "dtype",
        "tolerance",
        "batch",
        "seq_len",
        "chunk_len",
        "reference",
        "model",
        "comparisons",
    ] {
        assert!(v.get(k).is_some(), "{k}");
    }
    let c = &v["comparisons"][0];
    for k in [
        "a",
        "b",
        "quantity",
        "max_abs",
        "rel_rms",
        "max_ref",
        "tol",
        "criterion",
        "pass",
        "status",
        "bound",
    ] {
        assert!(c.get(k).is_some(), "{k}");
    }
    for k in [
        "factor_a", "eps_a", "growth_a", "factor_b", "eps_b", "growth_b", "kappa",
    ] {
        assert!(c["bound"].get(k).is_some(), "{k}");
    }
    assert!(v["conditioning"]["layers"][0]["max_k"].as_f64().unwrap() > 0.0);
}
