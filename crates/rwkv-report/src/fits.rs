//! Log-log least-squares fits: the exponent `k` of `y ≈ a·x^k`.
//!
//! Scaling exponents are asymptotic claims, and small sizes are dominated by fixed costs
//! (dispatch, the O(d²) projections), so fits use only the upper half of each series' x
//! range: the points whose x is at least the median of the distinct x values.

use serde::Serialize;

/// A fitted power law `y ≈ exp(intercept) · x^slope` over the points listed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    /// The exponent: slope of ln(y) on ln(x).
    pub slope: f64,
    /// Intercept of ln(y) on ln(x).
    pub intercept: f64,
    /// Coefficient of determination of the log-log line (1 when every point lies on it).
    pub r2: f64,
    /// Points used.
    pub n_points: usize,
    /// Smallest x used.
    pub x_min: f64,
    /// Largest x used.
    pub x_max: f64,
}

impl Fit {
    /// The fitted line at `x`.
    pub fn predict(&self, x: f64) -> f64 {
        (self.intercept + self.slope * x.ln()).exp()
    }
}

/// The usable points of a series: finite and positive in both coordinates.
fn usable(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|&(x, y)| x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0)
        .collect()
}

/// The median of the distinct x values of the usable points (None when there are none).
pub fn median_distinct_x(points: &[(f64, f64)]) -> Option<f64> {
    let mut xs: Vec<f64> = usable(points).iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    match xs.len() {
        0 => None,
        n if n % 2 == 1 => Some(xs[n / 2]),
        n => Some(0.5 * (xs[n / 2 - 1] + xs[n / 2])),
    }
}

/// The points of the upper half of the x range: usable points with x ≥ the median distinct x.
pub fn upper_half(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let Some(median) = median_distinct_x(points) else {
        return Vec::new();
    };
    usable(points)
        .into_iter()
        .filter(|p| p.0 >= median)
        .collect()
}

/// The fewest distinct x values a fit needs. A line through two points fits them exactly
/// (R² = 1 whatever the data), so a two-point "fit" would report a perfect exponent it
/// never tested; from three on, R² measures something.
pub const MIN_FIT_POINTS: usize = 3;

/// The number of distinct x values among the usable points.
pub fn distinct_x(points: &[(f64, f64)]) -> usize {
    let mut xs: Vec<f64> = usable(points).iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.len()
}

/// Least-squares fit of ln(y) on ln(x) over every usable point (missing, zero, negative or
/// non-finite values are ignored). None with fewer than [`MIN_FIT_POINTS`] distinct x.
pub fn fit_loglog_all(points: &[(f64, f64)]) -> Option<Fit> {
    let pts = usable(points);
    if distinct_x(&pts) < MIN_FIT_POINTS {
        return None;
    }
    let n = pts.len() as f64;
    let lx: Vec<f64> = pts.iter().map(|p| p.0.ln()).collect();
    let ly: Vec<f64> = pts.iter().map(|p| p.1.ln()).collect();
    let mx = lx.iter().sum::<f64>() / n;
    let my = ly.iter().sum::<f64>() / n;
    let sxx: f64 = lx.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum();
    let syy: f64 = ly.iter().map(|y| (y - my) * (y - my)).sum();
    if sxx <= f64::EPSILON * n {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = lx
        .iter()
        .zip(&ly)
        .map(|(x, y)| (y - (intercept + slope * x)).powi(2))
        .sum();
    // A constant series (syy = 0) is fitted exactly by slope 0: R² = 1.
    let r2 = if syy <= 1e-24 * n {
        1.0
    } else {
        (1.0 - ss_res / syy).clamp(0.0, 1.0)
    };
    let x_min = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    Some(Fit {
        slope,
        intercept,
        r2,
        n_points: pts.len(),
        x_min,
        x_max,
    })
}

/// Least-squares fit of ln(y) on ln(x) over the upper half of the x range (points with
/// x ≥ the median distinct x), ignoring missing or non-positive values. None with fewer
/// than [`MIN_FIT_POINTS`] distinct x in that half (so a series needs at least 5 distinct
/// x values).
pub fn fit_loglog(points: &[(f64, f64)]) -> Option<Fit> {
    fit_loglog_all(&upper_half(points))
}

/// [`fit_loglog`] of a series whose y values may be missing.
pub fn fit_loglog_opt(points: &[(f64, Option<f64>)]) -> Option<Fit> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|&(x, y)| y.map(|y| (x, y)))
        .collect();
    fit_loglog(&pts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn power(a: f64, k: f64, xs: &[f64]) -> Vec<(f64, f64)> {
        xs.iter().map(|&x| (x, a * x.powf(k))).collect()
    }

    const TS: [f64; 7] = [64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

    #[test]
    fn exact_power_laws() {
        for k in [0.0, 0.5, 1.0, 2.0, 3.0] {
            let f = fit_loglog(&power(3e-6, k, &TS)).unwrap();
            assert!((f.slope - k).abs() < 1e-12, "k={k}: {f:?}");
            assert!((f.r2 - 1.0).abs() < 1e-12, "k={k}: {f:?}");
            assert!(
                (f.predict(100.0) - 3e-6 * 100f64.powf(k)).abs() < 1e-9 * 100f64.powf(k).max(1.0)
            );
        }
    }

    #[test]
    fn uses_upper_half_only() {
        // Flat (overhead-dominated) at small x, quadratic at large x.
        let pts: Vec<(f64, f64)> = TS
            .iter()
            .map(|&x| (x, if x < 512.0 { 1.0 } else { (x / 512.0).powi(2) }))
            .collect();
        let f = fit_loglog(&pts).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-12, "{f:?}");
        assert_eq!(f.n_points, 4);
        assert_eq!((f.x_min, f.x_max), (512.0, 4096.0));
        // Even count of distinct x: median between the middle two.
        let f = fit_loglog(&power(1.0, 1.0, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])).unwrap();
        assert_eq!((f.n_points, f.x_min, f.x_max), (3, 4.0, 6.0));
        // Repeated x values count once for the median but every point is fitted.
        let pts = [
            (1.0, 1.0),
            (2.0, 2.0),
            (3.0, 3.0),
            (3.0, 3.0),
            (4.0, 4.0),
            (5.0, 5.0),
        ];
        assert_eq!(median_distinct_x(&pts), Some(3.0));
        assert_eq!(fit_loglog(&pts).unwrap().n_points, 4);
    }

    #[test]
    fn too_few_points() {
        assert!(fit_loglog(&[]).is_none());
        assert!(fit_loglog(&[(1.0, 1.0)]).is_none());
        // Two distinct x: the upper half holds one point.
        assert!(fit_loglog(&[(1.0, 1.0), (2.0, 2.0)]).is_none());
        // A fit needs three points: two would fit exactly (R² = 1) whatever they are.
        let line = |n: usize| power(1.0, 1.0, &TS[..n]);
        assert!(fit_loglog_all(&line(2)).is_none());
        assert_eq!(fit_loglog_all(&line(3)).unwrap().n_points, 3);
        // Four distinct x: two in the upper half, no fit; five: three, a fit.
        assert!(fit_loglog(&line(4)).is_none());
        assert_eq!(fit_loglog(&line(5)).unwrap().n_points, 3);
        // Repeats of one x do not make a fit.
        assert!(fit_loglog_all(&[(2.0, 1.0), (2.0, 1.5), (4.0, 3.0)]).is_none());
        // Missing, zero, negative and non-finite values are ignored.
        let pts = [
            (1.0, 1.0),
            (2.0, 0.0),
            (4.0, -1.0),
            (8.0, f64::NAN),
            (0.0, 3.0),
            (16.0, 16.0),
        ];
        assert!(fit_loglog(&pts).is_none());
        let opt = [
            (1.0, Some(1.0)),
            (2.0, None),
            (4.0, Some(4.0)),
            (8.0, Some(8.0)),
            (16.0, Some(16.0)),
            (32.0, Some(32.0)),
        ];
        assert!((fit_loglog_opt(&opt).unwrap().slope - 1.0).abs() < 1e-12);
        // All points at one x.
        assert!(fit_loglog_all(&[(2.0, 1.0), (2.0, 3.0)]).is_none());
    }

    #[test]
    fn constant_series_has_zero_slope_and_r2_one() {
        let f = fit_loglog(&power(4096.0, 0.0, &TS)).unwrap();
        assert_eq!(f.slope, 0.0);
        assert_eq!(f.r2, 1.0);
    }

    #[test]
    fn noisy_data() {
        // Deterministic ±5% multiplicative noise around x^1.5 (xorshift).
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut noise = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            1.0 + 0.1 * ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        };
        let pts: Vec<(f64, f64)> = (0..40)
            .map(|i| 2f64.powf(6.0 + i as f64 * 0.15))
            .map(|x| (x, 1e-7 * x.powf(1.5) * noise()))
            .collect();
        let f = fit_loglog(&pts).unwrap();
        assert!((f.slope - 1.5).abs() < 0.05, "{f:?}");
        assert!(f.r2 > 0.98 && f.r2 < 1.0, "{f:?}");
        assert_eq!(f.n_points, 20);
        // Pure noise around a constant: slope near 0, poor R².
        let pts: Vec<(f64, f64)> = (1..=40).map(|i| (i as f64 * 10.0, noise())).collect();
        let f = fit_loglog(&pts).unwrap();
        assert!(f.slope.abs() < 0.2, "{f:?}");
        assert!(f.r2 < 0.5, "{f:?}");
    }
}
