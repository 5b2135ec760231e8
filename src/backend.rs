//! The one place that names concrete backends: `--backend` and `--dtype` → a type.

use anyhow::{Result, bail};
use clap::ValueEnum;
use rwkv::WkvBackend;
use rwkv_lab_core::meter::{HostMeter, PeakMeter};

/// Compute backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// CPU, pure Rust (ndarray); f32 and f64. Always available.
    Ndarray,
    /// CPU, Burn's newer pure-Rust backend; f32. In the default build (feature `flex`).
    Flex,
    /// GPU through wgpu (Vulkan/Metal/DX12); f32. Needs `--features wgpu`.
    Wgpu,
    /// NVIDIA GPU through CUDA; f32. Needs `--features cuda`.
    Cuda,
}

impl BackendKind {
    /// The backend `ablate` trains on when none is named: flex where it is compiled in (the
    /// default build). Measured on the development CPU (docs/design.md §14 item 13): 1.3–1.6x
    /// ndarray's training tokens/s, gradients within 2e-6 of float64 where ndarray's reach
    /// 4e-4, and bit-identical reruns (ndarray's reductions are not), so resume is exact.
    pub const TRAINING_DEFAULT: BackendKind = if cfg!(feature = "flex") {
        BackendKind::Flex
    } else {
        BackendKind::Ndarray
    };

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

    /// Bytes of one value.
    pub fn element_bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// A backend the CLI can run, with the way its peak memory is metered.
pub trait Metered: WkvBackend {
    /// A meter for one measured call on `device`.
    fn meter(device: &Self::Device) -> Box<dyn PeakMeter>;

    /// The largest single buffer `device` can allocate, in bytes; None where there is no
    /// such limit below the memory budget (CPU backends).
    fn max_buffer(_device: &Self::Device) -> Option<u64> {
        None
    }
}

impl Metered for burn::backend::NdArray<f32> {
    fn meter(_: &Self::Device) -> Box<dyn PeakMeter> {
        Box::new(HostMeter)
    }
}

impl Metered for burn::backend::NdArray<f64> {
    fn meter(_: &Self::Device) -> Box<dyn PeakMeter> {
        Box::new(HostMeter)
    }
}

#[cfg(feature = "flex")]
impl Metered for burn::backend::Flex {
    fn meter(_: &Self::Device) -> Box<dyn PeakMeter> {
        Box::new(HostMeter)
    }
}

/// Device memory of a CubeCL backend: the allocator is cleaned up before the call, so the
/// memory it has reserved afterwards is the high-water mark of the call (pools only grow
/// until a cleanup), padding and fragmentation included.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
struct CubeMeter<R: burn::cubecl::Runtime, B: burn::tensor::backend::Backend<Device = R::Device>> {
    device: R::Device,
    _backend: std::marker::PhantomData<B>,
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl<R: burn::cubecl::Runtime, B: burn::tensor::backend::Backend<Device = R::Device>> PeakMeter
    for CubeMeter<R, B>
{
    fn begin(&self) -> u64 {
        let _ = B::sync(&self.device);
        B::memory_cleanup(&self.device);
        R::client(&self.device)
            .memory_usage()
            .map(|u| u.bytes_in_use)
            .unwrap_or(0)
    }

    fn peak(&self, base: u64) -> Option<u64> {
        R::client(&self.device)
            .memory_usage()
            .ok()
            .map(|u| u.bytes_reserved.saturating_sub(base))
    }

    fn describe(&self) -> &'static str {
        "device memory reserved by the CubeCL allocator after the call, above the bytes in use before it"
    }
}

/// The largest allocation CubeCL makes on `device` (its `max_page_size`): wgpu reads the
/// adapter's `max_storage_buffer_binding_size` (128 MiB on lavapipe; a quarter of device
/// memory where Vulkan has 64-bit indexing), CUDA a quarter of device memory. A tensor
/// above it cannot be allocated ("Memory page 0 doesn't exist" on wgpu).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn cube_max_buffer<R: burn::cubecl::Runtime>(device: &R::Device) -> Option<u64> {
    Some(R::client(device).properties().memory.max_page_size)
}

#[cfg(feature = "wgpu")]
impl Metered for burn::backend::Wgpu {
    fn meter(device: &Self::Device) -> Box<dyn PeakMeter> {
        Box::new(CubeMeter::<burn::backend::wgpu::WgpuRuntime, Self> {
            device: device.clone(),
            _backend: Default::default(),
        })
    }

    fn max_buffer(device: &Self::Device) -> Option<u64> {
        cube_max_buffer::<burn::backend::wgpu::WgpuRuntime>(device)
    }
}

#[cfg(feature = "cuda")]
impl Metered for burn::backend::Cuda {
    fn meter(device: &Self::Device) -> Box<dyn PeakMeter> {
        Box::new(CubeMeter::<burn::cubecl::cuda::CudaRuntime, Self> {
            device: device.clone(),
            _backend: Default::default(),
        })
    }

    fn max_buffer(device: &Self::Device) -> Option<u64> {
        cube_max_buffer::<burn::cubecl::cuda::CudaRuntime>(device)
    }
}

/// Work that runs on any backend.
pub trait Job {
    type Output;
    fn run<B: Metered>(self, device: B::Device) -> Result<Self::Output>;
}

/// Fails with a clear message unless this binary can run `kind` in `dtype` (checked before
/// a command writes anything). It asks the one table of runnable pairs, [`dispatch_inner`],
/// with a job that does nothing (building a default device handle allocates nothing).
pub fn ensure_available(kind: BackendKind, dtype: Dtype) -> Result<()> {
    struct Probe;
    impl Job for Probe {
        type Output = ();
        fn run<B: Metered>(self, _: B::Device) -> Result<()> {
            Ok(())
        }
    }
    dispatch_inner(kind, dtype, Probe)
}

/// Runs `job` on the backend and precision asked for, or explains why it can't. A panic
/// inside the backend (no GPU adapter, a driver error) becomes an error naming the backend.
pub fn dispatch<J: Job>(kind: BackendKind, dtype: Dtype, job: J) -> Result<J::Output> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch_inner(kind, dtype, job))).unwrap_or_else(|_| {
        let hint = match kind {
            BackendKind::Wgpu => "; wgpu needs a GPU with a Vulkan/Metal/DX12 driver (on Linux the Vulkan loader libvulkan1)",
            BackendKind::Cuda => "; cuda needs an NVIDIA GPU and its driver (libcuda)",
            _ => "",
        };
        bail!("backend `{}` failed: {}{hint}", kind.name(), crate::take_panic_message())
    })
}

/// The pairs this binary can run, each with its type; any other pair is an error that says
/// why (the only availability check: [`ensure_available`] asks this table too).
fn dispatch_inner<J: Job>(kind: BackendKind, dtype: Dtype, job: J) -> Result<J::Output> {
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
        (kind, Dtype::F64) if kind != BackendKind::Ndarray => bail!(
            "backend `{}` does not support f64; use `--dtype f32`, or `--backend ndarray` for f64",
            kind.name()
        ),
        (kind, _) => bail!(
            "backend `{0}` is not compiled into this binary; rebuild with `cargo run --release --features {0} -- ...`",
            kind.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_comes_from_the_dispatch_table() {
        ensure_available(BackendKind::Ndarray, Dtype::F64).unwrap();
        let e = ensure_available(BackendKind::Wgpu, Dtype::F64).unwrap_err();
        assert!(e.to_string().contains("does not support f64"), "{e}");
        if !cfg!(feature = "cuda") {
            let e = dispatch(BackendKind::Cuda, Dtype::F32, NeverRun).unwrap_err();
            assert!(
                e.to_string().contains("not compiled into this binary"),
                "{e}"
            );
        }
    }

    /// A job that must not start.
    struct NeverRun;
    impl Job for NeverRun {
        type Output = ();
        fn run<B: Metered>(self, _: B::Device) -> Result<()> {
            unreachable!("an unavailable backend never runs the job")
        }
    }
}
