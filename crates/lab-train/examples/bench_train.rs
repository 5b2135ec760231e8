//! Training throughput of RWKV (and the matched transformer) on this machine's CPU.
//!
//! `cargo run --release -p lab-train --features flex --example bench_train [-- STEPS [MODE [ARCHS [WIDTHS]]]]`
//!
//! Environment: `BENCH_BACKEND=flex` (default ndarray; the example needs `--features flex`),
//! `BENCH_MICRO_BATCHES=M` (row slices per step, each on its own thread; default 1, the
//! CLI's default is 4), `MIMALLOC_PURGE_DELAY=-1` to match the CLI's allocator setting.
//!
//! Shapes from issue 7: vocabulary 256, 4 layers, batch 16 × 256 tokens, d_model 128 and 256.

use burn::backend::{Autodiff, NdArray};
use lab_train::bench::bench;
use lab_train::{TrainConfig, variant_arch};
use rwkv::{RwkvConfig, WkvMode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = Autodiff<NdArray<f32>>;
type F = Autodiff<burn::backend::Flex>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let mode: WkvMode = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(WkvMode::Scan);
    let archs: Vec<&str> = match args.get(3) {
        Some(a) => a.split(',').collect(),
        None => vec!["full", "transformer"],
    };
    let flex = std::env::var("BENCH_BACKEND").as_deref() == Ok("flex");
    let (batch, seq_len) = (16, 256);
    let micro_batches: usize = match std::env::var("BENCH_MICRO_BATCHES") {
        Ok(v) => v.parse()?,
        Err(_) => 1,
    };
    println!(
        "training throughput, batch {batch} x {seq_len} tokens, vocab 256, 4 layers, wkv {mode}, {steps} timed steps after 1 warm-up step, {} backend, {micro_batches} micro-batches",
        if flex { "flex" } else { "ndarray" }
    );
    let widths: Vec<usize> = match args.get(4) {
        Some(a) => a.split(',').map(|w| w.parse()).collect::<Result<_, _>>()?,
        None => vec![128, 256],
    };
    for d_model in widths {
        let base = RwkvConfig::rwkv4(256, d_model, 4);
        for name in &archs {
            let arch = variant_arch(name, &base, seq_len)?;
            let cfg = TrainConfig {
                batch,
                seq_len,
                wkv_mode: mode,
                micro_batches,
                ..TrainConfig::default()
            };
            let r = if flex {
                bench::<F>(&arch, &cfg, 1, steps, &Default::default())?
            } else {
                bench::<B>(&arch, &cfg, 1, steps, &Default::default())?
            };
            println!(
                "d_model {d_model:>4} {name:<12} {:>9} params  {:>8.3} s/step  {:>9.0} tokens/s",
                r.num_params, r.step_s, r.tokens_per_s
            );
        }
    }
    Ok(())
}
