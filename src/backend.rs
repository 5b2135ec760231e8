//! The one place that names concrete backends: `--backend` and `--dtype` → a type.

use anyhow::{Result, bail};
use clap::ValueEnum;
use rwkv::WkvBackend;

/// Compute backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// CPU, pure Rust (ndarray); f32 and f64. Always available.
    Ndarray,
    /// CPU, Burn's newer pure-Rust backend; f32. Needs `--features flex`.
    Flex,
    /// GPU through wgpu (Vulkan/Metal/DX12); f32. Needs `--features wgpu`.
    Wgpu,
    /// NVIDIA GPU through CUDA; f32. Needs `--features cuda`.
    Cuda,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Ndarray => "ndarray",
            BackendKind::Flex => "flex",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

/// Float precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    F32,
    F64,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }
}

/// Work that runs on any backend.
pub trait Job {
    type Output;
    fn run<B: WkvBackend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `job` on the backend and precision asked for, or explains why it can't.
pub fn dispatch<J: Job>(kind: BackendKind, dtype: Dtype, job: J) -> Result<J::Output> {
    match (kind, dtype) {
        (BackendKind::Ndarray, Dtype::F32) => {
            job.run::<burn::backend::NdArray<f32>>(Default::default())
        }
        (BackendKind::Ndarray, Dtype::F64) => {
            job.run::<burn::backend::NdArray<f64>>(Default::default())
        }
        #[cfg(feature = "flex")]
        (BackendKind::Flex, Dtype::F32) => job.run::<burn::backend::Flex>(Default::default()),
        #[cfg(feature = "wgpu")]
        (BackendKind::Wgpu, Dtype::F32) => job.run::<burn::backend::Wgpu>(Default::default()),
        #[cfg(feature = "cuda")]
        (BackendKind::Cuda, Dtype::F32) => job.run::<burn::backend::Cuda>(Default::default()),
        (kind, dtype) => {
            let compiled = match kind {
                BackendKind::Ndarray => true,
                BackendKind::Flex => cfg!(feature = "flex"),
                BackendKind::Wgpu => cfg!(feature = "wgpu"),
                BackendKind::Cuda => cfg!(feature = "cuda"),
            };
            if !compiled {
                bail!(
                    "backend `{0}` is not compiled into this binary; rebuild with `cargo run --release --features {0} -- ...`",
                    kind.name()
                )
            }
            bail!(
                "backend `{}` does not support {}; use `--dtype f32`, or `--backend ndarray` for f64",
                kind.name(),
                dtype.name()
            )
        }
    }
}
