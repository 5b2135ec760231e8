//! The one timing loop of every measurement (the scaling study, `bench-wkv`): untimed
//! warm-up runs first, a device sync before the clock stops (GPU backends queue work and
//! return at once), then the repeats summarised by median, min and max, with the peak
//! memory of the calls from a [`PeakMeter`].

use std::num::NonZeroUsize;
use std::time::Instant;

use crate::meter::PeakMeter;

/// Median, min and max of timed runs, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// The middle run (the upper one of the two middle runs of an even count).
    pub median: f64,
    /// The fastest run.
    pub min: f64,
    /// The slowest run.
    pub max: f64,
}

impl Stats {
    /// The statistics of `samples`; None when there are none.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut xs = samples.to_vec();
        xs.sort_by(f64::total_cmp);
        Some(Stats {
            median: *xs.get(xs.len() / 2)?,
            min: *xs.first()?,
            max: *xs.last()?,
        })
    }
}

/// What [`time_repeated`] measured.
#[derive(Debug, Clone)]
pub struct Timed<T> {
    /// Median, min, max of the repeats.
    pub stats: Stats,
    /// Every timed run in seconds, in the order they ran.
    pub runs: Vec<f64>,
    /// The largest peak of the repeats, if the meter can tell.
    pub peak: Option<u64>,
    /// What the last timed call returned.
    pub last: T,
}

/// One timed call: the meter's baseline, the clock, `f`, `sync`, the clock; returns the
/// seconds, the peak memory above the baseline (if the meter can tell) and `f`'s value,
/// which is dropped only after the clock stopped.
pub fn time_once<T, E>(
    meter: &dyn PeakMeter,
    sync: &mut dyn FnMut() -> Result<(), E>,
    f: &mut dyn FnMut() -> Result<T, E>,
) -> Result<(f64, Option<u64>, T), E> {
    let base = meter.begin();
    let start = Instant::now();
    let out = f()?;
    sync()?;
    let secs = start.elapsed().as_secs_f64();
    Ok((secs, meter.peak(base), out))
}

/// `warmup` untimed calls (each synced), then `repeats` timed ones (see [`time_once`]).
pub fn time_repeated<T, E>(
    warmup: usize,
    repeats: NonZeroUsize,
    meter: &dyn PeakMeter,
    mut sync: impl FnMut() -> Result<(), E>,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<Timed<T>, E> {
    for _ in 0..warmup {
        let out = f()?;
        sync()?;
        drop(out);
    }
    let mut runs = Vec::with_capacity(repeats.get());
    let mut peak: Option<u64> = None;
    let mut last = None;
    for i in 0..repeats.get() {
        let (secs, p, out) = time_once(meter, &mut sync, &mut f)?;
        runs.push(secs);
        // a meter that cannot tell once cannot tell at all: no figure rather than a partial one
        peak = if i == 0 {
            p
        } else {
            p.zip(peak).map(|(a, b)| a.max(b))
        };
        last = Some(out);
    }
    Ok(Timed {
        stats: Stats::of(&runs).expect("at least one repeat"),
        runs,
        peak,
        last: last.expect("at least one repeat"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::NoMeter;

    #[test]
    fn stats_and_repeats() {
        assert_eq!(Stats::of(&[]), None);
        let s = Stats::of(&[3.0, 1.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 4.0));
        let (mut calls, mut syncs) = (0, 0);
        let t = time_repeated::<usize, ()>(
            2,
            NonZeroUsize::new(3).unwrap(),
            &NoMeter,
            || {
                syncs += 1;
                Ok(())
            },
            || {
                calls += 1;
                Ok(calls)
            },
        )
        .unwrap();
        assert_eq!(
            (calls, syncs, t.last, t.runs.len(), t.peak),
            (5, 5, 5, 3, None)
        );
        assert!(t.stats.min <= t.stats.median && t.stats.median <= t.stats.max);
        // an error stops the loop and is returned
        let e =
            time_repeated::<(), &str>(0, NonZeroUsize::MIN, &NoMeter, || Err("sync"), || Ok(()));
        assert_eq!(e.err(), Some("sync"));
    }
}
