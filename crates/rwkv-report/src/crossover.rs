//! Where RWKV prefill becomes faster than the transformer's.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::series::{Series, SeriesKey};

/// Where the ratio RWKV time / transformer time crosses 1, over the T both ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossoverKind {
    /// RWKV faster at every common T.
    AlwaysFaster,
    /// RWKV faster at no common T.
    Never,
    /// RWKV slower at `lower`, faster at `upper` and at every measured T above; the
    /// crossover `t` is interpolated linearly in ln(ratio) vs ln(T).
    At {
        /// Interpolated crossover.
        t: f64,
        /// Largest measured T where RWKV is not faster.
        lower: f64,
        /// Next measured T (RWKV faster from here on).
        upper: f64,
    },
    /// RWKV faster at some T but not at the largest common T.
    NotAtLargest {
        /// The T where RWKV was faster.
        faster_at: Vec<f64>,
    },
}

/// Finds the crossover from `(T, rwkv_time / transformer_time)` points (any order;
/// non-positive or non-finite ratios are ignored). None without points.
pub fn find_crossover(ratios: &[(f64, f64)]) -> Option<CrossoverKind> {
    let mut pts: Vec<(f64, f64)> = ratios
        .iter()
        .copied()
        .filter(|&(t, r)| t > 0.0 && r > 0.0 && t.is_finite() && r.is_finite())
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if pts.is_empty() {
        return None;
    }
    let faster = |r: f64| r < 1.0;
    if pts.iter().all(|p| faster(p.1)) {
        return Some(CrossoverKind::AlwaysFaster);
    }
    if pts.iter().all(|p| !faster(p.1)) {
        return Some(CrossoverKind::Never);
    }
    let last = pts.len() - 1;
    if !faster(pts[last].1) {
        return Some(CrossoverKind::NotAtLargest {
            faster_at: pts.iter().filter(|p| faster(p.1)).map(|p| p.0).collect(),
        });
    }
    // The last point where RWKV is not faster; every point after it is faster.
    let i = pts
        .iter()
        .rposition(|p| !faster(p.1))
        .expect("some point is not faster");
    let ((t0, r0), (t1, r1)) = (pts[i], pts[i + 1]);
    let (l0, l1) = (r0.ln(), r1.ln()); // l0 >= 0 > l1
    let frac = l0 / (l0 - l1);
    let t = if frac <= 0.0 {
        t0
    } else {
        (t0.ln() + frac * (t1.ln() - t0.ln())).exp()
    };
    Some(CrossoverKind::At {
        t,
        lower: t0,
        upper: t1,
    })
}

/// Times at one T.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioAt {
    /// Sequence length.
    pub t: f64,
    /// Transformer seconds.
    pub transformer_s: f64,
    /// Fastest RWKV seconds at this T.
    pub rwkv_s: f64,
    /// The RWKV formulation that was fastest.
    pub rwkv_method: String,
}

impl RatioAt {
    /// Transformer time / RWKV time: above 1 when RWKV is faster.
    pub fn speedup(&self) -> f64 {
        self.transformer_s / self.rwkv_s
    }
}

/// RWKV's best prefill against one transformer prefill series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossover {
    /// The transformer series (attention path `explicit` or `fused`).
    pub transformer: SeriesKey,
    /// Its label.
    pub label: String,
    /// Where RWKV (fastest variant at each T) becomes faster; None without a common T.
    pub kind: Option<CrossoverKind>,
    /// Every common T, ascending.
    pub points: Vec<RatioAt>,
}

impl Crossover {
    /// The comparison at the largest T both ran.
    pub fn at_largest(&self) -> Option<&RatioAt> {
        self.points.last()
    }

    /// One sentence describing the crossover (markdown).
    pub fn describe(&self) -> String {
        let range = match (self.points.first(), self.points.last()) {
            (Some(a), Some(b)) => format!("T = {}–{}", fmt_t(a.t), fmt_t(b.t)),
            _ => String::new(),
        };
        match &self.kind {
            None => "no sequence length where both ran".to_string(),
            Some(CrossoverKind::AlwaysFaster) => {
                format!("RWKV faster at every measured T ({range})")
            }
            Some(CrossoverKind::Never) => {
                format!("never within the measured range ({range}): RWKV slower at every T")
            }
            Some(CrossoverKind::At { t, lower, upper }) => format!(
                "RWKV faster from T ≈ {} on (interpolated on the log scale between measured T = {} and T = {})",
                fmt_t(t.round()),
                fmt_t(*lower),
                fmt_t(*upper)
            ),
            Some(CrossoverKind::NotAtLargest { faster_at }) => format!(
                "no lasting crossover: RWKV faster only at T = {}, slower at the largest measured T",
                faster_at
                    .iter()
                    .map(|t| fmt_t(*t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

fn fmt_t(t: f64) -> String {
    lab_util::fmt_count(t.round() as u64)
}

/// The fallback partner of transformer series `tf` when no RWKV series ran under its
/// exact conditions: a transformer whose products ran in TF32 while RWKV's ran in f32 (a
/// CUDA study under the default `--matmul f32`, docs/design.md §18) is compared with the
/// f32 RWKV series of the same batch and backend, its label naming `tf32`.
fn tf32_partner(s: &Series, tf: &Series) -> bool {
    s.key.is_rwkv()
        && tf.key.dtype == "tf32"
        && s.key.dtype == "f32"
        && s.key.batch == tf.key.batch
        && s.key.backend == tf.key.backend
}

/// Compares, for each transformer prefill-time series of variant `explicit` or `fused`, the
/// fastest RWKV variant at each T (same batch, backend and dtype; else [`tf32_partner`]) with it.
pub fn crossovers(prefill_time: &[Series]) -> Vec<Crossover> {
    prefill_time
        .iter()
        .filter(|s| s.key.is_transformer() && matches!(s.key.method.as_str(), "explicit" | "fused"))
        .map(|tf| {
            let mut best: BTreeMap<u64, (f64, String)> = BTreeMap::new();
            let exact = |s: &Series| s.key.is_rwkv() && s.key.same_conditions(&tf.key);
            let any_exact = prefill_time.iter().any(exact);
            for s in prefill_time.iter().filter(|s| {
                if any_exact {
                    exact(s)
                } else {
                    tf32_partner(s, tf)
                }
            }) {
                for &(t, y) in &s.points {
                    let e = best
                        .entry(t as u64)
                        .or_insert((f64::INFINITY, String::new()));
                    if y < e.0 {
                        *e = (y, s.key.method.clone());
                    }
                }
            }
            let points: Vec<RatioAt> = tf
                .points
                .iter()
                .filter(|p| p.1 > 0.0)
                .filter_map(|&(t, tf_s)| {
                    best.get(&(t as u64))
                        .filter(|b| b.0 > 0.0)
                        .map(|(rwkv_s, v)| RatioAt {
                            t,
                            transformer_s: tf_s,
                            rwkv_s: *rwkv_s,
                            rwkv_method: v.clone(),
                        })
                })
                .collect();
            let ratios: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (p.t, p.rwkv_s / p.transformer_s))
                .collect();
            Crossover {
                transformer: tf.key.clone(),
                label: tf.label.clone(),
                kind: find_crossover(&ratios),
                points,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{prefill_time, tests::prefill};
    use lab_records::Model::{Rwkv, Transformer};

    #[test]
    fn interpolates_on_log_scale() {
        // ratio = T / 1000 on a log grid: crosses 1 at exactly T = 1000.
        let pts: Vec<(f64, f64)> = [256.0, 512.0, 1024.0, 2048.0]
            .iter()
            .map(|&t| (t, 1000.0 / t))
            .collect();
        match find_crossover(&pts).unwrap() {
            CrossoverKind::At { t, lower, upper } => {
                assert!((t - 1000.0).abs() < 1e-6, "{t}");
                assert_eq!((lower, upper), (512.0, 1024.0));
            }
            k => panic!("{k:?}"),
        }
        // Ratio exactly 1 at a measured T: RWKV is not faster there, so the crossover is at it.
        match find_crossover(&[(100.0, 2.0), (200.0, 1.0), (400.0, 0.5)]).unwrap() {
            CrossoverKind::At { t, lower, upper } => {
                assert_eq!((t, lower, upper), (200.0, 200.0, 400.0))
            }
            k => panic!("{k:?}"),
        }
        // Order of the input does not matter.
        let rev: Vec<(f64, f64)> = pts.iter().rev().copied().collect();
        assert_eq!(find_crossover(&rev), find_crossover(&pts));
    }

    #[test]
    fn always_never_and_mixed() {
        assert_eq!(
            find_crossover(&[(1.0, 0.5), (2.0, 0.9)]),
            Some(CrossoverKind::AlwaysFaster)
        );
        assert_eq!(
            find_crossover(&[(1.0, 1.5), (2.0, 1.0)]),
            Some(CrossoverKind::Never)
        );
        assert_eq!(find_crossover(&[]), None);
        assert_eq!(
            find_crossover(&[(1.0, 0.5), (2.0, 2.0), (4.0, 3.0)]),
            Some(CrossoverKind::NotAtLargest {
                faster_at: vec![1.0]
            })
        );
        // Faster, slower, then faster for good: the last crossing counts.
        match find_crossover(&[(1.0, 0.5), (2.0, 2.0), (4.0, 0.5)]).unwrap() {
            CrossoverKind::At { lower, upper, t } => {
                assert_eq!((lower, upper), (2.0, 4.0));
                assert!((t - 2f64.powf(1.5)).abs() < 1e-9);
            }
            k => panic!("{k:?}"),
        }
    }

    /// A CUDA study under the default `--matmul f32`: the transformer's rows are `tf32`,
    /// RWKV's `f32`; the crossover pairs them (and says `tf32` in its label). f64 RWKV rows
    /// are never paired with an f32 or TF32 transformer.
    #[test]
    fn a_tf32_transformer_is_compared_with_f32_rwkv_only() {
        let mut rs = Vec::new();
        for t in [128usize, 256, 512] {
            let tf = t as f64;
            let mut r = prefill(Rwkv, "scan", t, 2e-4 * tf, 0);
            r.dtype = "f32".into();
            rs.push(r);
            let mut r = prefill(Transformer, "explicit", t, 1e-6 * tf * tf, 0);
            r.dtype = "tf32".into();
            rs.push(r);
        }
        let cs = crossovers(&prefill_time(&rs));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].label, "transformer explicit tf32");
        assert_eq!(cs[0].points.len(), 3);
        // ratio RWKV / transformer = 2e-4·T / (1e-6·T²) = 200 / T: 1 at T = 200
        match cs[0].kind.clone().unwrap() {
            CrossoverKind::At { t, lower, upper } => {
                assert!((t - 200.0).abs() < 1e-6, "{t}");
                assert_eq!((lower, upper), (128.0, 256.0));
            }
            k => panic!("{k:?}"),
        }
        // the same with the RWKV rows in f64: no partner
        for r in rs.iter_mut().filter(|r| r.model == Rwkv) {
            r.dtype = "f64".into();
        }
        let cs = crossovers(&prefill_time(&rs));
        assert!(cs[0].points.is_empty() && cs[0].kind.is_none());
    }

    #[test]
    fn from_series_uses_best_rwkv_variant() {
        let mut rs = Vec::new();
        for t in [128usize, 256, 512, 1024, 2048] {
            let tf = t as f64;
            rs.push(prefill(Rwkv, "parallel", t, 1e-7 * tf * tf, 0));
            rs.push(prefill(Rwkv, "scan", t, 1e-4 * tf, 0));
            rs.push(prefill(Transformer, "explicit", t, 2e-7 * tf * tf, 0));
        }
        // The fused transformer only ran at small T.
        rs.push(prefill(Transformer, "fused", 128, 1.0, 0));
        let cs = crossovers(&prefill_time(&rs));
        assert_eq!(cs.len(), 2);
        let c = &cs[0];
        assert_eq!(c.label, "transformer explicit");
        // parallel (1e-7 T²) is faster than scan (1e-4 T) below T = 1000 and 2x faster than
        // the transformer there; scan beats the transformer (2e-7 T²) above T = 500.
        assert_eq!(c.points[0].rwkv_method, "parallel");
        assert_eq!(c.kind, Some(CrossoverKind::AlwaysFaster));
        let last = c.at_largest().unwrap();
        assert_eq!((last.t, last.rwkv_method.as_str()), (2048.0, "scan"));
        assert!((last.speedup() - 2e-7 * 2048.0 / 1e-4).abs() < 1e-9);
        assert!(
            c.describe()
                .starts_with("RWKV faster at every measured T (T = 128–2,048)"),
            "{}",
            c.describe()
        );
        assert_eq!(cs[1].kind, Some(CrossoverKind::AlwaysFaster));
        let described = |kind| {
            Crossover {
                kind: Some(kind),
                ..c.clone()
            }
            .describe()
        };
        assert_eq!(
            described(CrossoverKind::Never),
            "never within the measured range (T = 128–2,048): RWKV slower at every T"
        );
        assert_eq!(
            described(CrossoverKind::At {
                t: 700.4,
                lower: 512.0,
                upper: 1024.0
            }),
            "RWKV faster from T ≈ 700 on (interpolated on the log scale between measured T = 512 and T = 1,024)"
        );
        assert!(
            described(CrossoverKind::NotAtLargest {
                faster_at: vec![64.0, 128.0]
            })
            .contains("faster only at T = 64, 128")
        );
        assert_eq!(
            Crossover {
                kind: None,
                points: vec![],
                ..c.clone()
            }
            .describe(),
            "no sequence length where both ran"
        );
        assert_eq!(cs[1].points.len(), 1);
    }
}
