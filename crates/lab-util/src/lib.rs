//! Small utilities shared by the rwkv-lab crates (the model, the baseline transformer, the
//! measuring and reporting crates), so that none of them depends on another only for these:
//! a seeded generator, tensor creation options that pin the float type, and number formatting.

/// Creation options that pin the backend's own float type.
///
/// Burn 0.21 keys a device's default dtype by device *type*: `NdArray<f32>` and
/// `NdArray<f64>` share `NdArrayDevice`, so whichever touches it first decides what
/// `Tensor::zeros` or `from_data` produce for both. Every tensor this crate creates goes
/// through this function so that `NdArray<f64>` really computes in f64 (and `f32` in f32),
/// whatever else the process has run.
pub fn float_opts<B: burn::tensor::backend::Backend>(
    device: &B::Device,
) -> burn::tensor::TensorCreationOptions<B> {
    use burn::tensor::Element;
    burn::tensor::TensorCreationOptions::new(device.clone())
        .with_dtype(<B::FloatElem as Element>::dtype())
}

/// Seeded SplitMix64 generator (Steele, Lea & Flood 2014): tiny, fast, and stable across
/// versions, unlike a dependency's generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * core::f64::consts::PI * u2).cos()
    }

    /// `n` values from `f`.
    pub fn fill(&mut self, n: usize, mut f: impl FnMut(&mut Self) -> f64) -> Vec<f64> {
        (0..n).map(|_| f(self)).collect()
    }

    /// Integer uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `1234567` → `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds with a unit chosen for readability: `1.23 s`, `45.6 ms`, `789 µs`, `12.0 ns`.
pub fn fmt_seconds(s: f64) -> String {
    let a = s.abs();
    let (v, unit) = if a >= 1.0 || a == 0.0 {
        (s, "s")
    } else if a >= 1e-3 {
        (s * 1e3, "ms")
    } else if a >= 1e-6 {
        (s * 1e6, "µs")
    } else {
        (s * 1e9, "ns")
    };
    format!("{} {unit}", sig3(v))
}

/// Bytes in binary units: `512 B`, `1.50 KiB`, `3.25 MiB`, `2.00 GiB`.
pub fn fmt_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v.abs() >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", v.round())
    } else {
        format!("{} {}", sig3(v), UNITS[i])
    }
}

/// Three significant digits, no exponent (for values in [0.001, 10000)).
pub fn sig3(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if a >= 100.0 || (a >= 1.0 && (v - v.round()).abs() < 1e-9 * a) {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `6G`, `512M`, `1.5GiB`, `1000000` → bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.trim().parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0f64.powi(2),
        "g" | "gb" | "gib" => 1024.0f64.powi(3),
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    (value >= 0.0 && value.is_finite()).then_some((value * mult) as u64)
}

/// `x · W (+ b)` of a [`burn::nn::Linear`] for `x` of any rank `[.., d_in]`, computed as one
/// 2-D product over the flattened leading dimensions (`[rows, d_in] · [d_in, d_out]`).
///
/// Why not `Linear::forward`: Burn 0.21 sends a 3-D input to a *batched* product against
/// the weight broadcast to `[1, d_in, d_out]`, and on wgpu, when the product is fused with
/// element-wise work on both its input and its output and each batch has a single row
/// (`[B ≥ 2, 1, d_in]`: RNN-mode steps), the result is wrong by O(1) on Mesa's lavapipe
/// (docs/design.md §16; minimal reproduction in the wgpu suite,
/// `crates/rwkv-gpu-tests/tests/wgpu_suite.rs`). One 2-D product avoids that path and is the
/// better product on every backend (one GEMM instead of B).
pub fn linear<B: burn::tensor::backend::Backend, const D: usize>(
    layer: &burn::nn::Linear<B>,
    x: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    linear_with(layer, x, burn::tensor::Tensor::matmul)
}

/// [`linear`] with the 2-D product `[rows, d_in] · [d_in, d_out]` computed by `matmul`
/// (rwkv's precision-aware product, `rwkv::matmul::matmul`).
pub fn linear_with<B: burn::tensor::backend::Backend, const D: usize>(
    layer: &burn::nn::Linear<B>,
    x: burn::tensor::Tensor<B, D>,
    matmul: impl FnOnce(
        burn::tensor::Tensor<B, 2>,
        burn::tensor::Tensor<B, 2>,
    ) -> burn::tensor::Tensor<B, 2>,
) -> burn::tensor::Tensor<B, D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let [_, d_out] = layer.weight.dims();
    let y = matmul(x.reshape([rows, d_in]), layer.weight.val());
    let y = match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze::<2>(),
        None => y,
    };
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

/// `num / den` with a gradient as exact as the division itself, in every precision.
///
/// Burn 0.21's autodiff differentiates `num / den` with respect to `num` as
/// `grad · recip(den)`, and burn-ndarray's float32 `recip` is the CPU's approximate
/// reciprocal instruction: measured relative error 2.9e-4 with AVX2 (`rcp_ps`, 12 bits) and
/// about 6e-5 with AVX-512 (`rcp14`). Every float32 gradient through a division (the WKV
/// ratio, LayerNorm, softmax, sigmoid) inherited that error. Here the quotient is
/// `num · (1 / den)` with an untracked `1`, whose backward uses only true divisions and
/// products; the forward rounds twice instead of once (≤ 1.5 ulp).
pub fn div<B: burn::tensor::backend::Backend, const D: usize>(
    num: burn::tensor::Tensor<B, D>,
    den: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    num * den.ones_like().div(den)
}

/// Layer normalisation with `ln`'s parameters (Burn's own formula: biased variance over the
/// last dimension, `epsilon` inside the square root; Burn keeps `ln`'s epsilon private, so
/// the caller passes the one it configured), through [`div`] so that its float32 gradient
/// is exact; Burn's `LayerNorm::forward` divides (see [`div`] for why that matters).
pub fn layer_norm<B: burn::tensor::backend::Backend, const D: usize>(
    ln: &burn::nn::LayerNorm<B>,
    x: burn::tensor::Tensor<B, D>,
    epsilon: f64,
) -> burn::tensor::Tensor<B, D> {
    let mean = x.clone().mean_dim(D - 1);
    let centered = x - mean;
    let var = (centered.clone() * centered.clone()).mean_dim(D - 1);
    let denom = (var + epsilon).sqrt();
    let mut shape = [1usize; D];
    shape[D - 1] = ln.gamma.dims()[0];
    let scaled = div(centered, denom) * ln.gamma.val().reshape(shape);
    match &ln.beta {
        Some(beta) => scaled + beta.val().reshape(shape),
        None => scaled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_uniform() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<f64> = (0..1000).map(|_| a.uniform()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert!(
            xs.iter()
                .zip((0..1000).map(|_| b.uniform()))
                .all(|(x, y)| *x == y)
        );
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1,000");
        assert_eq!(fmt_count(1234567), "1,234,567");
        assert_eq!(fmt_seconds(1.5), "1.50 s");
        assert_eq!(fmt_seconds(0.0456), "45.6 ms");
        assert_eq!(fmt_seconds(0.000789), "789 µs");
        assert_eq!(fmt_bytes(512.0), "512 B");
        assert_eq!(fmt_bytes(1536.0), "1.50 KiB");
        assert_eq!(fmt_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3 GiB");
        assert_eq!(fmt_bytes(64.0 * 1024.0), "64 KiB");
        assert_eq!(fmt_seconds(0.01), "10 ms");
        assert_eq!(fmt_seconds(0.0), "0 s");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("2K"), Some(2048));
        assert_eq!(parse_bytes("1.5G"), Some(1610612736));
        assert_eq!(parse_bytes("3Q"), None);
    }

    /// Gradients through [`div`] and [`layer_norm`] are exact in float32 (≤ a few ulp),
    /// where Burn's plain division differentiates through ndarray's approximate `recip`
    /// (2.9e-4 relative error measured with AVX2, about 6e-5 with AVX-512: this test fails
    /// with `num / den` on any CPU with SIMD).
    #[test]
    fn division_gradients_are_exact_in_f32() {
        use burn::backend::{Autodiff, NdArray};
        use burn::tensor::{Tensor, TensorData};
        type A = Autodiff<NdArray<f32>>;
        let dev = Default::default();
        let n = 4096;
        let den: Vec<f32> = (0..n).map(|i| 0.1 + i as f32 * 0.013).collect();
        let num: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let t = |v: &[f32]| Tensor::<A, 1>::from_data(TensorData::new(v.to_vec(), [n]), &dev);
        let (a, b) = (t(&num).require_grad(), t(&den).require_grad());
        let grads = div(a.clone(), b.clone()).sum().backward();
        let ga: Vec<f32> = a.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let gb: Vec<f32> = b.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let mut worst = 0f64;
        for i in 0..n {
            let (x, y) = (num[i] as f64, den[i] as f64);
            worst = worst.max((ga[i] as f64 * y - 1.0).abs());
            worst = worst.max((gb[i] as f64 / (-x / (y * y)) - 1.0).abs());
        }
        assert!(worst < 1e-6, "d(num/den): worst relative error {worst:e}");

        // LayerNorm: the same gradient as in float64, to float32 precision.
        fn ln_grad<B: burn::tensor::backend::AutodiffBackend>(x: &[f64]) -> Vec<f64> {
            let dev = Default::default();
            let ln = burn::nn::LayerNormConfig::new(8).init::<B>(&dev);
            let t = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [x.len() / 8, 8]), &dev)
                .require_grad();
            let w = Tensor::<B, 2>::from_data(
                TensorData::new(
                    (0..x.len()).map(|i| (i % 5) as f64 - 2.0).collect(),
                    [x.len() / 8, 8],
                ),
                &dev,
            );
            let g = (layer_norm(&ln, t.clone(), 1e-5) * w).sum().backward();
            t.grad(&g)
                .unwrap()
                .into_data()
                .convert::<f64>()
                .to_vec()
                .unwrap()
        }
        let mut r = SplitMix64::new(3);
        let x = r.fill(8 * 64, |r| r.range(-3.0, 3.0));
        let g32 = ln_grad::<A>(&x);
        let g64 = ln_grad::<Autodiff<NdArray<f64>>>(&x);
        let scale = g64.iter().fold(1f64, |m, v| m.max(v.abs()));
        let err = g32
            .iter()
            .zip(&g64)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        assert!(err < 5e-6, "LayerNorm gradient: scaled error {err:e}");
    }
}
