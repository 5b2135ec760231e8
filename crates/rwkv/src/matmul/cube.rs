//! Full-f32 products on the CubeCL backends (docs/design.md §18).
//!
//! Burn 0.21's matmul autotunes over `cubek-matmul` 0.2's kernels. Those that run on tensor
//! cores (`cmma`/`mma`, with or without TMA) call `adjust_dtypes`
//! (`definition/blueprint.rs`), which stages f32 operands as TF32 whenever the device
//! supports the type: CUDA on sm80+ does, wgpu does not. [`f32_matmul`] autotunes, with a
//! tuner of its own, over the kernels that use no tensor cores — the vector–matrix and
//! matrix–vector ones (for `m = 1`), the unit-tiled ones at both tile sizes, the naive one
//! as the last resort — which keep f32 operands and f32 accumulation throughout.

use burn::tensor::DType;
use burn_cubecl::kernel::matmul::init_matmul_output;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeRuntime, CubeTuneId};
use cubecl::prelude::CubePrimitive;
use cubecl::tf32;
use cubecl::tune::{LocalTuner, Tunable, TunableSet, TuneGroup, local_tuner};
use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems, MatmulKind, MatmulSetupError};
use cubek::matmul::launch::{MatmulAutotuneKey, Strategy};
use cubek::matmul::routines::{
    BlueprintStrategy, TileSizeSelection, double_unit::DoubleUnitSelectionArgs,
    simple_unit::SimpleUnitSelectionArgs,
};
use cubek::std::InputBinding;

/// Whether Burn's own matmul on this client may stage f32 operands as TF32.
pub fn uses_tf32<R: CubeRuntime>(tensor_client: &cubecl::client::ComputeClient<R>) -> bool {
    tensor_client
        .properties()
        .supports_type(tf32::as_type_native_unchecked().storage_type())
}

fn launch<R: CubeRuntime>(
    strategy: &Strategy,
    lhs: CubeTensor<R>,
    rhs: CubeTensor<R>,
    out: CubeTensor<R>,
) -> Result<(), MatmulSetupError> {
    let client = out.client.clone();
    let lhs_dtype = lhs.dtype;
    let rhs_dtype = rhs.dtype;
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: lhs_dtype.into(),
        rhs: rhs_dtype.into(),
        out: out.dtype.into(),
    });
    cubek::matmul::launch::launch_ref(
        strategy,
        &client,
        InputBinding::new(lhs.binding(), lhs_dtype.into()),
        InputBinding::new(rhs.binding(), rhs_dtype.into()),
        out.binding(),
        &mut dtypes,
    )
}

fn key<R: CubeRuntime>(
    (lhs, rhs, out): &(CubeTensor<R>, CubeTensor<R>, CubeTensor<R>),
) -> MatmulAutotuneKey {
    MatmulAutotuneKey::generate(
        &lhs.client,
        lhs.meta.shape(),
        rhs.meta.shape(),
        lhs.meta.strides(),
        rhs.meta.strides(),
        lhs.dtype.into(),
        rhs.dtype.into(),
        out.dtype.into(),
        None,
        None,
    )
}

fn inputs<R: CubeRuntime>(
    _key: &MatmulAutotuneKey,
    (lhs, rhs, out): &(CubeTensor<R>, CubeTensor<R>, CubeTensor<R>),
) -> (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) {
    (lhs.clone(), rhs.clone(), out.copy())
}

/// Which candidates the tuner tries first for a key (cubecl tries the highest priority
/// group first, and a lower one only when every kernel of the higher one fails to set
/// up): every candidate is compiled before it is timed (NVRTC on CUDA), so the set tried
/// per shape is kept small.
#[derive(Debug, Clone, Copy)]
enum Family {
    /// `m = 1` or `n = 1` (decoding): the vector kernels.
    Vector,
    /// Unit-tiled kernels, large tiles first.
    Unit { large_tiles: bool },
    /// The naive kernel: only if nothing else sets up.
    Naive,
}

/// The kernels [`f32_matmul`] chooses among: none of them runs on tensor cores.
pub fn f32_strategies() -> Vec<Strategy> {
    f32_candidates().into_iter().map(|(s, _)| s).collect()
}

fn f32_candidates() -> Vec<(Strategy, Family)> {
    let mut all = vec![
        (Strategy::Naive, Family::Naive),
        (
            Strategy::SimpleVecMat(BlueprintStrategy::Inferred(().into())),
            Family::Vector,
        ),
        (
            Strategy::DoubleVecMat(BlueprintStrategy::Inferred(().into())),
            Family::Vector,
        ),
        (
            Strategy::GemvPlaneParallel(BlueprintStrategy::Inferred(Default::default())),
            Family::Vector,
        ),
        (
            Strategy::GemvUnitPerpendicular(BlueprintStrategy::Inferred(Default::default())),
            Family::Vector,
        ),
    ];
    for (tile_size, large_tiles) in [
        (TileSizeSelection::MaxTileSize, true),
        (TileSizeSelection::MinTileSize, false),
    ] {
        all.push((
            Strategy::SimpleUnit(BlueprintStrategy::Inferred(SimpleUnitSelectionArgs {
                tile_size,
            })),
            Family::Unit { large_tiles },
        ));
        all.push((
            Strategy::DoubleUnit(BlueprintStrategy::Inferred(DoubleUnitSelectionArgs {
                tile_size,
            })),
            Family::Unit { large_tiles },
        ));
    }
    all
}

fn is_vector(key: &MatmulAutotuneKey) -> bool {
    matches!(key.analysis.kind, MatmulKind::VecMat | MatmulKind::MatVec)
}

/// `lhs · rhs` (`[.., m, k] × [.., k, n]`, f32 in, f32 out) on the fastest of
/// [`f32_strategies`] for its shape and layout, measured once per key on the device (the
/// autotune of `cubecl`, as Burn's matmul does).
pub fn f32_matmul<R: CubeRuntime>(lhs: CubeTensor<R>, rhs: CubeTensor<R>) -> CubeTensor<R> {
    static TUNER: LocalTuner<MatmulAutotuneKey, CubeTuneId> = local_tuner!();
    let out_dtype: DType = lhs.dtype;
    let out = init_matmul_output(&lhs, &rhs, out_dtype);
    let client = lhs.client.clone();
    let tunables = TUNER.init(|| {
        // group priorities: vector kernels and large unit tiles first (both for m = 1),
        // small unit tiles next, the naive kernel last
        let vector =
            TuneGroup::<MatmulAutotuneKey>::new(
                "vector",
                |key| {
                    if is_vector(key) { 2 } else { -1 }
                },
            );
        let unit = TuneGroup::<MatmulAutotuneKey>::new("unit", |_| 2);
        let naive = TuneGroup::<MatmulAutotuneKey>::new("naive", |_| 0);
        let mut set = TunableSet::new(key::<R>, inputs::<R>);
        for (strategy, family) in f32_candidates() {
            let name = strategy.to_string();
            let tunable = Tunable::new(&name, move |(lhs, rhs, out)| {
                launch::<R>(&strategy, lhs, rhs, out).map_err(|err| format!("{err:?}"))
            });
            set = set.with(match family {
                Family::Vector => tunable.group(&vector, |_| 1),
                Family::Unit { large_tiles } => {
                    tunable.group(&unit, move |_| if large_tiles { 1 } else { 0 })
                }
                Family::Naive => tunable.group(&naive, |_| 0),
            });
        }
        set
    });
    TUNER.execute(
        &CubeTuneId::new(&lhs.client, &lhs.device),
        &client,
        tunables,
        (lhs, rhs, out.clone()),
    );
    out
}

/// `lhs · rhs` on one given kernel of [`f32_strategies`] (tests: every candidate must agree
/// with the float64 product, not only the one the tuner picks on the test machine).
pub fn matmul_with<R: CubeRuntime>(
    strategy: &Strategy,
    lhs: CubeTensor<R>,
    rhs: CubeTensor<R>,
) -> Result<CubeTensor<R>, String> {
    let out = init_matmul_output(&lhs, &rhs, lhs.dtype);
    launch::<R>(strategy, lhs, rhs, out.clone()).map_err(|err| format!("{err:?}"))?;
    Ok(out)
}
