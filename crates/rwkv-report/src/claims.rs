//! The complexity claims checked, their target bands, and the verdict of each fitted series.
//!
//! Claims come from the RWKV paper (Peng et al. 2023, Table 1): RWKV time O(T·d) and
//! inference memory O(d); Transformer time O(T²·d) and memory O(T² + T·d); and its
//! cumulative text-generation time figure (linear for RWKV, super-linear for transformers).

use std::fmt;

use serde::Serialize;

use crate::fits::{Fit, MIN_FIT_POINTS, distinct_x, fit_loglog, upper_half};
use crate::series::{Quantity, Series, SeriesKey};
use lab_records::Model::{Rwkv, Transformer};

/// The range of fitted exponents that counts as agreeing with a claim.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Band {
    /// `|k - center| <= tol`.
    Within {
        /// Claimed exponent.
        center: f64,
        /// Allowed deviation.
        tol: f64,
    },
    /// `k >= min`.
    AtLeast(f64),
    /// `k <= max`.
    AtMost(f64),
    /// `k > min`.
    Above(f64),
}

impl Band {
    /// Whether `k` is in the band.
    pub fn contains(&self, k: f64) -> bool {
        match *self {
            Band::Within { center, tol } => (k - center).abs() <= tol + 1e-12,
            Band::AtLeast(min) => k >= min,
            Band::AtMost(max) => k <= max,
            Band::Above(min) => k > min,
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Band::Within { center, tol } => write!(f, "{center:.1} ± {tol:.2}"),
            Band::AtLeast(min) => write!(f, "≥ {min:.2}"),
            Band::AtMost(max) => write!(f, "≤ {max:.2}"),
            Band::Above(min) => write!(f, "> {min:.2}"),
        }
    }
}

/// A claimed scaling exponent for one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    /// The claimed exponent, as shown (`1`, `2`, `0`, `> 1`).
    pub exponent: &'static str,
    /// The complexity and where it comes from, e.g. `O(T·d) (paper, Table 1)`.
    pub basis: &'static str,
    /// Fitted exponents that count as agreeing; None: shown for reference, no verdict.
    pub band: Option<Band>,
}

/// The claim for a series of `quantity` of `key`'s model and variant, if any.
pub fn claim_for(quantity: Quantity, key: &SeriesKey) -> Option<Claim> {
    let linear_form =
        key.chunk_len().is_some() || key.method == "scan" || key.method == "recurrent";
    let c = |exponent, basis, band| {
        Some(Claim {
            exponent,
            basis,
            band,
        })
    };
    match (quantity, key.model, key.method.as_str()) {
        (Quantity::PrefillTime, Rwkv, _) if linear_form => c(
            "1",
            "O(T·d) (paper, Table 1)",
            Some(Band::Within {
                center: 1.0,
                tol: 0.1,
            }),
        ),
        (Quantity::PrefillTime, Rwkv, "parallel") => c(
            "2",
            "O(T²·d): the quadratic parallel form, not the paper's RNN claim",
            Some(Band::AtLeast(1.7)),
        ),
        (Quantity::PrefillTime, Transformer, "explicit" | "fused") => {
            c("2", "O(T²·d) (paper, Table 1)", Some(Band::AtLeast(1.7)))
        }
        (Quantity::PrefillMemory, Rwkv, _) if linear_form => c(
            "1",
            "activations O(T·d)",
            Some(Band::Within {
                center: 1.0,
                tol: 0.1,
            }),
        ),
        (Quantity::PrefillMemory, Rwkv, "parallel") => {
            c("2", "O(T²·d): `[T, T]` weights per channel", None)
        }
        (Quantity::PrefillMemory, Transformer, "explicit") => c(
            "2",
            "O(T² + T·d) (paper, Table 1): scores materialised",
            Some(Band::AtLeast(1.7)),
        ),
        (Quantity::PrefillMemory, Transformer, "fused") => c(
            "1–2",
            "O(T·d) if the fused op streams the scores, O(T²) if not",
            None,
        ),
        (Quantity::GenerationLatency, Rwkv, _) => c("0", "O(d) per token (RNN mode)", None),
        (Quantity::GenerationLatency, Transformer, _) => {
            c("→ 1", "O(d² + T·d) per token with a KV cache", None)
        }
        (Quantity::GenerationCumulative, Rwkv, _) => c(
            "1",
            "linear (paper, text-generation figure)",
            Some(Band::Within {
                center: 1.0,
                tol: 0.1,
            }),
        ),
        (Quantity::GenerationCumulative, Transformer, _) => c(
            "> 1",
            "super-linear (paper, text-generation figure)",
            Some(Band::Above(1.1)),
        ),
        (Quantity::StateBytes, Rwkv, _) => c(
            "0",
            "O(d) inference memory (paper, Table 1)",
            Some(Band::AtMost(0.05)),
        ),
        (Quantity::StateBytes, Transformer, _) => c(
            "1",
            "KV cache O(T·d) (paper, Table 1)",
            Some(Band::Within {
                center: 1.0,
                tol: 0.1,
            }),
        ),
        _ => None,
    }
}

/// Below this R² a verdict carries a warning.
pub const POOR_R2: f64 = 0.9;

/// The outcome of checking one fitted series against its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The fitted exponent is in the target band.
    Pass,
    /// It is not.
    Fail,
    /// No fit: fewer than [`MIN_FIT_POINTS`] distinct x in the fitted range. Neither pass
    /// nor fail, and no R².
    NoFit,
    /// No target band for this series (shown for reference).
    NoTarget,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::NoFit => "no fit",
            Verdict::NoTarget => "no target",
        })
    }
}

/// One row of the exponent table: a series, its fit, its claim and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitRow {
    /// What was fitted.
    pub quantity: Quantity,
    /// Whose series.
    pub key: SeriesKey,
    /// The series' label.
    pub label: String,
    /// Points measured (all of them; the fit uses the upper half).
    pub n_measured: usize,
    /// Distinct x in the upper half of the x range (the fit needs [`MIN_FIT_POINTS`]).
    pub n_in_range: usize,
    /// The fit over the upper half of the x range.
    pub fit: Option<Fit>,
    /// The claim checked.
    pub claim: Option<Claim>,
    /// The verdict.
    pub verdict: Verdict,
}

impl FitRow {
    /// Fits a series and checks it against its claim.
    pub fn new(series: &Series) -> FitRow {
        let fit = fit_loglog(&series.points);
        let claim = claim_for(series.quantity, &series.key);
        let verdict = match (&claim, &fit) {
            (
                Some(Claim {
                    band: Some(band), ..
                }),
                Some(fit),
            ) => {
                if band.contains(fit.slope) {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                }
            }
            (_, None) => Verdict::NoFit,
            _ => Verdict::NoTarget,
        };
        FitRow {
            quantity: series.quantity,
            key: series.key.clone(),
            label: series.label.clone(),
            n_measured: series.points.len(),
            n_in_range: distinct_x(&upper_half(&series.points)),
            fit,
            claim,
            verdict,
        }
    }

    /// Whether the fit is poor (R² below [`POOR_R2`]).
    pub fn poor_fit(&self) -> bool {
        self.fit.is_some_and(|f| f.r2 < POOR_R2)
    }
}

impl fmt::Display for FitRow {
    /// One line for a terminal: `prefill time vs T  rwkv scan  k = 1.02 (R² 0.999, 4 points, T 512–4096)  claim 1, target 1.0 ± 0.10: pass`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.quantity.describe(), self.label)?;
        match &self.fit {
            Some(fit) => write!(
                f,
                "k = {:.2} (R² {:.3}, {} points, {} {}–{})",
                fit.slope,
                fit.r2,
                fit.n_points,
                self.quantity.x_symbol(),
                fit.x_min,
                fit.x_max
            )?,
            None => write!(
                f,
                "no fit ({} points measured, {} in the upper half of the range; a fit needs {MIN_FIT_POINTS})",
                self.n_measured, self.n_in_range
            )?,
        }
        if let Some(claim) = &self.claim {
            write!(f, "; claim {}", claim.exponent)?;
            if let Some(band) = claim.band {
                write!(f, ", target {band}")?;
            }
        }
        write!(f, ": {}", self.verdict)?;
        if self.poor_fit() {
            write!(f, " (poor fit)")?;
        }
        Ok(())
    }
}

/// Fits every series and checks each against its claim.
pub fn fit_rows(series: &[Series]) -> Vec<FitRow> {
    series.iter().map(FitRow::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_records::Model;

    fn key(model: Model, method: &str) -> SeriesKey {
        SeriesKey {
            model,
            method: method.into(),
            batch: 1,
            backend: "ndarray".into(),
            dtype: "f32".into(),
            prompt_len: None,
        }
    }

    fn series(q: Quantity, model: Model, method: &str, k: f64) -> Series {
        let points = [64.0, 128.0, 256.0, 512.0, 1024.0]
            .iter()
            .map(|&x: &f64| (x, 1e-6 * x.powf(k)))
            .collect();
        Series {
            quantity: q,
            key: key(model, method),
            label: format!("{model} {method}"),
            points,
        }
    }

    #[test]
    fn claims_and_bands() {
        let k = |m, v| key(m, v);
        let band = |q, m, v| claim_for(q, &k(m, v)).and_then(|c| c.band);
        assert_eq!(
            band(Quantity::PrefillTime, Rwkv, "chunked:64"),
            Some(Band::Within {
                center: 1.0,
                tol: 0.1
            })
        );
        assert_eq!(
            band(Quantity::PrefillTime, Rwkv, "scan"),
            Some(Band::Within {
                center: 1.0,
                tol: 0.1
            })
        );
        assert_eq!(
            claim_for(Quantity::PrefillTime, &k(Rwkv, "parallel"))
                .unwrap()
                .exponent,
            "2"
        );
        assert_eq!(
            band(Quantity::PrefillTime, Transformer, "explicit"),
            Some(Band::AtLeast(1.7))
        );
        assert_eq!(
            claim_for(Quantity::PrefillTime, &k(Transformer, "fused"))
                .unwrap()
                .exponent,
            "2"
        );
        assert_eq!(
            band(Quantity::GenerationCumulative, Rwkv, "rnn"),
            Some(Band::Within {
                center: 1.0,
                tol: 0.1
            })
        );
        assert_eq!(
            claim_for(Quantity::GenerationCumulative, &k(Transformer, "kv-cache"))
                .unwrap()
                .exponent,
            "> 1"
        );
        assert_eq!(
            band(Quantity::StateBytes, Rwkv, "rnn"),
            Some(Band::AtMost(0.05))
        );
        assert_eq!(
            claim_for(Quantity::StateBytes, &k(Transformer, "kv-cache"))
                .unwrap()
                .exponent,
            "1"
        );
        assert_eq!(
            claim_for(Quantity::PrefillMemory, &k(Transformer, "explicit"))
                .unwrap()
                .exponent,
            "2"
        );
        assert_eq!(
            claim_for(Quantity::PrefillMemory, &k(Rwkv, "scan"))
                .unwrap()
                .exponent,
            "1"
        );
        assert!(claim_for(Quantity::PrefillTime, &k(Rwkv, "other")).is_none());

        assert!(
            Band::Within {
                center: 1.0,
                tol: 0.1
            }
            .contains(1.1)
        );
        assert!(
            !Band::Within {
                center: 1.0,
                tol: 0.1
            }
            .contains(1.11)
        );
        assert!(Band::AtLeast(1.7).contains(1.7) && !Band::AtLeast(1.7).contains(1.69));
        assert!(Band::AtMost(0.05).contains(-0.2) && !Band::AtMost(0.05).contains(0.06));
        assert!(!Band::Above(1.1).contains(1.1) && Band::Above(1.1).contains(1.2));
        assert_eq!(
            Band::Within {
                center: 1.0,
                tol: 0.1
            }
            .to_string(),
            "1.0 ± 0.10"
        );
        assert_eq!(Band::AtLeast(1.7).to_string(), "≥ 1.70");
    }

    #[test]
    fn verdicts() {
        let row = FitRow::new(&series(Quantity::PrefillTime, Rwkv, "scan", 1.03));
        assert_eq!(row.verdict, Verdict::Pass);
        assert!((row.fit.unwrap().slope - 1.03).abs() < 1e-9);
        assert_eq!(
            FitRow::new(&series(Quantity::PrefillTime, Rwkv, "scan", 1.5)).verdict,
            Verdict::Fail
        );
        assert_eq!(
            FitRow::new(&series(Quantity::PrefillTime, Transformer, "explicit", 1.9)).verdict,
            Verdict::Pass
        );
        assert_eq!(
            FitRow::new(&series(Quantity::PrefillTime, Transformer, "explicit", 1.2)).verdict,
            Verdict::Fail
        );
        assert_eq!(
            FitRow::new(&series(Quantity::StateBytes, Rwkv, "rnn", 0.0)).verdict,
            Verdict::Pass
        );
        assert_eq!(
            FitRow::new(&series(
                Quantity::GenerationCumulative,
                Transformer,
                "kv-cache",
                1.0
            ))
            .verdict,
            Verdict::Fail
        );
        assert_eq!(
            FitRow::new(&series(Quantity::GenerationLatency, Rwkv, "rnn", 0.0)).verdict,
            Verdict::NoTarget
        );
        // three or four points leave two in the upper half: two points fit any line
        // exactly, so there is no fit, no R² and no pass mark
        let mut short = series(Quantity::PrefillTime, Rwkv, "scan", 1.0);
        for (n, in_range) in [(4, 2), (3, 2), (2, 1)] {
            short.points.truncate(n);
            let row = FitRow::new(&short);
            assert_eq!((row.verdict, row.fit), (Verdict::NoFit, None), "{n}");
            let text = row.to_string();
            assert!(
                text.contains(&format!(
                    "no fit ({n} points measured, {in_range} in the upper"
                )) && !text.contains("R²")
                    && !text.contains("pass"),
                "{text}"
            );
        }
        let line = FitRow::new(&series(Quantity::PrefillTime, Rwkv, "scan", 1.0)).to_string();
        assert!(
            line.contains("k = 1.00")
                && line.contains("target 1.0 ± 0.10: pass")
                && line.contains("T 256–1024"),
            "{line}"
        );
    }
}
