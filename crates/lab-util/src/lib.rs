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
}
