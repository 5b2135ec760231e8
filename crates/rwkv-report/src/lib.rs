//! Fits, plots and summaries of rwkv-lab studies. Everything here works from the
//! files a study wrote (`records.csv`, `meta.json`), so reports can be re-rendered.
//!
//! [`render()`] is the entry point: it reads `DIR/records.csv` and `DIR/meta.json`, and writes
//! `DIR/summary.md` and the plots (`prefill_time`, `prefill_memory`, `generation_latency`,
//! `generation_cumulative`, each `.png` and `.svg`). Library code returns typed errors
//! ([`ReportError`]) and never prints.

pub mod ablation;
pub mod analysis;
pub mod backends;
pub mod claims;
pub mod crossover;
pub mod error;
pub mod fits;
pub mod plots;
pub mod render;
pub mod series;
pub mod summary;

pub use analysis::Analysis;
pub use claims::{Band, Claim, FitRow, Verdict, claim_for};
pub use crossover::{Crossover, CrossoverKind, find_crossover};
pub use error::ReportError;
pub use fits::{Fit, fit_loglog};
pub use lab_records::{Meta, ScalingRecord};
pub use render::{RenderOutput, load_records, render};
pub use series::{Quantity, Series, SeriesKey};
pub use summary::render_summary;
