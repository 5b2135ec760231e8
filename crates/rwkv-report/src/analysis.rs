//! Everything computed from the records: series, fits with verdicts, crossovers.

use serde::Serialize;

use crate::claims::{FitRow, Verdict, fit_rows};
use crate::crossover::{Crossover, crossovers};
use crate::series::{Quantity, Series, extract};
use lab_records::ScalingRecord;

/// The series, fits and crossovers of a set of records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Every series, grouped by quantity in [`Quantity::ALL`] order.
    pub series: Vec<Series>,
    /// One fit per series, same order.
    pub fits: Vec<FitRow>,
    /// RWKV's best prefill against each transformer prefill series (`explicit`, `fused`).
    pub crossovers: Vec<Crossover>,
}

impl Analysis {
    /// Extracts, fits and compares.
    pub fn new(records: &[ScalingRecord]) -> Analysis {
        let series: Vec<Series> = Quantity::ALL
            .iter()
            .flat_map(|&q| extract(records, q))
            .collect();
        let fits = fit_rows(&series);
        let prefill: Vec<Series> = series
            .iter()
            .filter(|s| s.quantity == Quantity::PrefillTime)
            .cloned()
            .collect();
        Analysis {
            series,
            fits,
            crossovers: crossovers(&prefill),
        }
    }

    /// The series of one quantity.
    pub fn series_of(&self, quantity: Quantity) -> Vec<&Series> {
        self.series
            .iter()
            .filter(|s| s.quantity == quantity)
            .collect()
    }

    /// (passed, checked): fits with a target band, and how many of them pass.
    pub fn tally(&self) -> (usize, usize) {
        let checked = self
            .fits
            .iter()
            .filter(|f| matches!(f.verdict, Verdict::Pass | Verdict::Fail))
            .count();
        let passed = self
            .fits
            .iter()
            .filter(|f| f.verdict == Verdict::Pass)
            .count();
        (passed, checked)
    }
}
