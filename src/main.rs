//! `rwkv-lab`: research toolkit and equivalence verifier for RWKV-4.

mod backend;
mod cmd_ablate;
mod cmd_bench;
mod cmd_compare;
mod cmd_convert;
mod cmd_cpu_bench;
mod cmd_generate;
mod cmd_scale;
mod cmd_verify;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse; with the system allocator, every large tensor of
/// the parallel and chunked forms is a fresh mapping, and page faults cost more than the
/// arithmetic (measured: 57 s of system time in a 94 s `bench-wkv`). The counting wrapper
/// gives `scale` its peak-memory figures (two relaxed atomics per allocation).
#[global_allocator]
static GLOBAL: rwkv_lab_core::meter::CountingAlloc<mimalloc::MiMalloc> =
    rwkv_lab_core::meter::CountingAlloc(mimalloc::MiMalloc);

#[derive(Debug, Parser)]
#[command(
    name = "rwkv-lab",
    version,
    about = "Research toolkit and equivalence verifier for RWKV-4 (Peng et al., 2023), on Burn",
    after_help = "\
Examples:
  rwkv-lab reproduce                            quick equivalence checks + quick scaling study
  rwkv-lab verify --random                      every WKV formulation vs the recurrence (f32, CPU)
  rwkv-lab verify --random --dtype f64 --json   the same in float64, as JSON
  rwkv-lab verify --checkpoint MODEL [--reference FILE]   a checkpoint, against third-party outputs
  rwkv-lab generate --checkpoint MODEL --tokens 1,2,3     continue a prompt (token ids)
  rwkv-lab generate --checkpoint HF_FOLDER --prompt TEXT  continue a text (tokenizer.json)
  rwkv-lab convert --checkpoint MODEL.pth --out DIR       BlinkDL -> Hugging Face (and back)
  rwkv-lab bench-wkv                            time of each formulation vs sequence length
  rwkv-lab bench                                CPU decode, prefill and GEMM speed per backend
  rwkv-lab scale --config experiments/scaling.yaml   time and memory vs T, RWKV vs transformer
  rwkv-lab compare-backends --backends ndarray:f64,ndarray --quick   backends side by side
  rwkv-lab ablate --config experiments/ablation-mqar.yaml --quick   which part of RWKV matters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Precision of the model's matrix products where the device would round f32 to TF32
    /// (CUDA on A100/H100/H200): `f32` keeps full f32 (the default; verify's tolerances
    /// assume it), `fast` lets CUDA use TF32 tensor cores (about 1e-3 relative error per
    /// product, measured by `compare-backends --backends ...,cuda,cuda:tf32`). No effect
    /// on the CPU backends and wgpu, which always compute in f32.
    #[arg(long, global = true, value_enum, default_value_t = MatmulArg::F32)]
    matmul: MatmulArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MatmulArg {
    F32,
    Fast,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that every WKV formulation, RNN mode and state carrying agree with the recurrence.
    Verify(cmd_verify::VerifyArgs),
    /// Continue a prompt with a checkpoint: prompt in GPT mode, new tokens in RNN mode.
    Generate(cmd_generate::GenerateArgs),
    /// Write a checkpoint in the other layout (BlinkDL <-> Hugging Face), checked by identical logits.
    Convert(cmd_convert::ConvertArgs),
    /// Time the WKV formulations against each other for several sequence lengths.
    BenchWkv(cmd_bench::BenchArgs),
    /// CPU speed: decode ms/token, prefill tokens/s and dense-product GFLOP/s per backend.
    Bench(cmd_cpu_bench::CpuBenchArgs),
    /// Scaling study: time and peak memory versus sequence length, RWKV vs transformer.
    Scale(cmd_scale::ScaleArgs),
    /// The same weights and tokens on several backends: prefill and decode times side by side, output differences.
    CompareBackends(cmd_compare::CompareArgs),
    /// Ablation study: train RWKV variants and the baseline from a YAML spec, with seeds and shards.
    Ablate(cmd_ablate::AblateArgs),
    /// Re-render plots and summary.md of a study folder from its records (or merge ablation shards).
    Report(cmd_ablate::ReportArgs),
    /// Quick equivalence checks, the quick scaling study and an ablation smoke test, then where the reports are.
    Reproduce(cmd_scale::ReproduceArgs),
}

/// The last panic's message and location, recorded by the panic hook so that a panic
/// inside a backend (e.g. wgpu finding no adapter) becomes one clear error line.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Takes the message of the last panic, if any.
pub fn take_panic_message() -> String {
    LAST_PANIC
        .lock()
        .ok()
        .and_then(|mut p| p.take())
        .unwrap_or_else(|| "unknown panic".into())
}

/// mimalloc hands freed pages back to the OS after a 10 ms delay (its `purge_delay`), and
/// the next training step faults them in again, zeroed by the kernel: `perf` put 17–37% of a
/// training step (d_model 256, ndarray) in `clear_page_erms`. Turning purging off, as
/// `MIMALLOC_PURGE_DELAY=-1` does, cut the system time of 7 such steps from 6.1 s to 1.8 s;
/// tokens/s (scripts/bench_train_compare.sh): the transformer at d_model 256 +43%, RWKV
/// +13–23% in one run and within noise (−3 to −6%) in another. Freed memory stays with the
/// process for reuse; peak-memory figures come from the counting wrapper, not from
/// resident memory, so they do not change. A `MIMALLOC_PURGE_DELAY` set in the
/// environment wins.
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_purge_delay` in `mi_option_e`: 15 in mimalloc v3, which libmimalloc-sys
    /// 0.1.49 builds by default (its symbols, `mi_theap_*`, are what `perf` shows), as in v2.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    // SAFETY: `mi_option_set` is mimalloc's public C API, linked in with the global
    // allocator; it stores an option value and is safe to call at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

fn main() -> ExitCode {
    keep_freed_pages();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut p) = LAST_PANIC.lock() {
            *p = Some(format!("{msg}{at}"));
        }
    }));
    let cli = Cli::parse();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(code) => code,
        Err(_) => {
            eprintln!(
                "error: internal error: {}; please report it",
                take_panic_message()
            );
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> ExitCode {
    rwkv::set_matmul_precision(match cli.matmul {
        MatmulArg::F32 => rwkv::MatmulPrecision::F32,
        MatmulArg::Fast => rwkv::MatmulPrecision::Fast,
    });
    let result = match cli.command {
        Command::Verify(args) => cmd_verify::run(args).map(|pass| {
            if pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
        Command::Generate(args) => cmd_generate::run(args).map(|pass| {
            if pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
        Command::Convert(args) => cmd_convert::run(args).map(|same| {
            if same {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
        Command::BenchWkv(args) => cmd_bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => cmd_cpu_bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Scale(args) => cmd_scale::run_scale(&args).map(|_| ExitCode::SUCCESS),
        Command::CompareBackends(args) => cmd_compare::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Ablate(args) => cmd_ablate::run(&args).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
        Command::Report(args) => cmd_ablate::report(&args).map(|()| ExitCode::SUCCESS),
        Command::Reproduce(args) => cmd_scale::run_reproduce(&args).map(|pass| {
            if pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cli_parses_documented_examples() {
        for line in [
            "rwkv-lab verify --random",
            "rwkv-lab verify --random --dtype f64 --d-model 128 --n-layers 4 --seq-len 256 --chunk-len 32",
            "rwkv-lab verify --random --json",
            "rwkv-lab bench-wkv",
            "rwkv-lab bench",
            "rwkv-lab bench --only decode --checkpoint m.pth --steps 32",
            "rwkv-lab bench --only prefill --seq-lens 512,1024,4096 --modes scan,chunked:64",
            "rwkv-lab bench --backends ndarray --only gemm,decode --repeats 5",
            "rwkv-lab generate --checkpoint m.pth --tokens 1 --step-engine model",
            "rwkv-lab bench-wkv --seq-lens 128,512 --channels 256 --repeats 9 --memory-budget 2G",
            "rwkv-lab verify --checkpoint m.pth --reference r.safetensors --dtype f64 --ref-tol 1e-6",
            "rwkv-lab verify --checkpoint m.pth --tokens 1,2,3 --json",
            "rwkv-lab verify --checkpoint dir --random-tokens 64 --backend ndarray",
            "rwkv-lab generate --checkpoint m.pth --tokens 1,2,3 --max-new 8",
            "rwkv-lab scale --config experiments/scaling.yaml --quick --out /tmp/x --memory-budget 2G",
            "rwkv-lab scale --resume",
            "rwkv-lab report reports/scaling/x",
            "rwkv-lab report a/shard-0 a/shard-1 --out a/all",
            "rwkv-lab ablate --config experiments/ablation-mqar.yaml --quick",
            "rwkv-lab ablate --config x.yaml --resume --shard 0/4 --out o --backend ndarray",
            "rwkv-lab reproduce",
            "rwkv-lab compare-backends --quick",
            "rwkv-lab compare-backends --backends ndarray:f64,ndarray,cuda,wgpu --config c.yaml --out o --memory-budget 4G",
            "rwkv-lab generate --checkpoint m.pth --tokens 1 --max-new 8 --temperature 0.8 --top-p 0.9 --seed 3 --check",
            "rwkv-lab generate --checkpoint dir --prompt Hello --tokenizer t.json --memory-budget 1G --prompt-mode scan",
            "rwkv-lab convert --checkpoint m.pth --out dir",
            "rwkv-lab convert --checkpoint dir --out m.safetensors --to blinkdl --dtype f64 --check-tokens 4",
        ] {
            let cli = Cli::try_parse_from(line.split_whitespace())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            if let Command::BenchWkv(b) = cli.command {
                assert!(!b.seq_lens.is_empty() && !b.chunk_lens.is_empty());
            }
        }
        for bad in [
            "rwkv-lab verify --random --chunk-len 0",
            "rwkv-lab verify --random --seq-len 0",
            "rwkv-lab bench-wkv --seq-lens 8,0",
            "rwkv-lab generate --checkpoint m.pth --tokens 1 --temperature -1",
            "rwkv-lab generate --checkpoint m.pth --tokens 1 --top-p 0",
            "rwkv-lab generate --checkpoint m.pth --tokens 1 --memory-budget 0",
            "rwkv-lab generate --checkpoint m.pth",
            "rwkv-lab generate --checkpoint m.pth --tokens 1 --prompt x",
            "rwkv-lab ablate --config x.yaml --shard 4/4",
            "rwkv-lab ablate --config x.yaml --shard 1-4",
            "rwkv-lab ablate --config x.yaml --shard 0/0",
            "rwkv-lab report",
            "rwkv-lab compare-backends --backends tpu",
            "rwkv-lab compare-backends --backends ndarray:f16",
            "rwkv-lab bench --only speed",
            "rwkv-lab bench --modes fast",
            "rwkv-lab bench --steps 0",
            "rwkv-lab generate --checkpoint m.pth --tokens 1 --step-engine fast",
        ] {
            assert!(
                Cli::try_parse_from(bad.split_whitespace()).is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
