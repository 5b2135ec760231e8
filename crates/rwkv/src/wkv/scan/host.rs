//! The scan on the host, over plain slices: the work split into tasks (one batch row and
//! one channel block each; channels are independent, so tasks share nothing), run on
//! rayon's pool, and the hand-written backward.
//!
//! Rayon rather than threads of our own: Burn's ndarray backend runs its own operations
//! on rayon's global pool, so the scan shares those workers instead of adding as many
//! threads again, and calling it from inside a rayon task (nested parallelism) just lets
//! that worker join in.

use rayon::prelude::*;

use super::rows::{self, Part, RowsMut};
use super::simd::{self, Lanes, pair};

pub use super::simd::{Real, exp_f32};

/// Sizes of one call.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    /// Batch B.
    pub batch: usize,
    /// Time T.
    pub time: usize,
    /// Channels C.
    pub channels: usize,
}

/// Below this many `B·T·C` elements the whole scan runs on the calling thread: handing
/// work to the pool costs more than it saves.
const SERIAL_BELOW: usize = 1 << 16;

/// Splits `B × C` into tasks (batch row `plane`, channels `c0..c0 + width`), in
/// increasing `(plane, c0)` order: about one task per worker of the current rayon pool,
/// and a single task for small problems. Returns whether to run them in parallel.
///
/// Not finer: a task walks T rows of its block, C elements apart, and narrow blocks lose
/// more than load balancing gains (4 blocks of 64 channels per worker measured about 4×
/// slower than 1 of 256 at B=1, C=512, T=4096 on 2 cores).
fn tasks(d: Dims) -> (Vec<Part>, bool) {
    let parallel = d.batch * d.time * d.channels >= SERIAL_BELOW;
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let per_batch = threads.div_ceil(d.batch).max(1);
    let width = d.channels.div_ceil(per_batch).max(1);
    let mut out = Vec::new();
    for plane in 0..d.batch {
        let mut c0 = 0;
        while c0 < d.channels {
            let w = width.min(d.channels - c0);
            out.push(Part {
                plane,
                c0,
                width: w,
            });
            c0 += w;
        }
    }
    let parallel = parallel && out.len() > 1;
    (out, parallel)
}

/// `f` over every item, on rayon's pool when `parallel`; results in item order.
fn map<T: Send, R: Send>(
    items: Vec<T>,
    parallel: bool,
    f: impl Fn(T) -> R + Sync + Send,
) -> Vec<R> {
    if parallel {
        items.into_par_iter().map(f).collect()
    } else {
        items.into_iter().map(f).collect()
    }
}

/// The inputs of task `t`, from the whole `[C]` and `[B, T, C]` arrays.
fn lanes<'a, F>(d: Dims, t: Part, w: &'a [F], u: &'a [F], k: &'a [F], v: &'a [F]) -> Lanes<'a, F> {
    let (c0, cw) = (t.c0, t.width);
    let first = t.plane * d.time * d.channels + c0;
    Lanes {
        w: &w[c0..c0 + cw],
        u: &u[c0..c0 + cw],
        k: &k[first..],
        v: &v[first..],
        stride: d.channels,
        time: d.time,
    }
}

/// The initial state `[aa, bb, pp]` of task `t` from the `[B, 3, C]` array.
fn initial_state<F: Real>(d: Dims, t: Part, s0: &[F]) -> [Vec<F>; 3] {
    let c = d.channels;
    let st = t.plane * 3 * c + t.c0;
    [0, 1, 2].map(|r| s0[st + r * c..st + r * c + t.width].to_vec())
}

/// Forward over whole host arrays (`w`, `u` `[C]`; `k`, `v` `[B, T, C]`; `s0` `[B, 3, C]`);
/// returns the packed `[B, T + 3, C]` output.
pub fn forward_slices<F: Real>(d: Dims, w: &[F], u: &[F], k: &[F], v: &[F], s0: &[F]) -> Vec<F> {
    let (parts, parallel) = tasks(d);
    let mut out = vec![F::ZERO; d.batch * (d.time + 3) * d.channels];
    let views = rows::split(&mut out, d.time + 3, d.channels, &parts);
    let work: Vec<_> = parts.into_iter().zip(views).collect();
    map(work, parallel, |(t, mut y)| {
        let mut state = initial_state(d, t, s0);
        simd::steps(lanes(d, t, w, u, k, v), &mut y, &mut state, None);
        for (r, s) in state.iter().enumerate() {
            y.row(d.time + r).copy_from_slice(s);
        }
    });
    out
}

/// Gradients of one task: writes `gk`, `gv` (`[T, width]` rows) and `gs0` (`[3, width]`
/// rows) through the views and returns `(gw, gu)`, `[width]` each, summed over time.
#[allow(clippy::too_many_arguments)]
fn backward_task<F: Real>(
    d: Dims,
    t: Part,
    ins: [&[F]; 5],
    grad: &[F],
    gk: &mut RowsMut<'_, F>,
    gv: &mut RowsMut<'_, F>,
    gs: &mut RowsMut<'_, F>,
) -> (Vec<F>, Vec<F>) {
    let [w, u, k, v, s0] = ins;
    let (c, cw, c0, time) = (d.channels, t.width, t.c0, d.time);
    // Rerun the forward for the state before every step; its outputs are recomputed in
    // the loop below, so one scratch row takes them.
    let mut scratch = vec![F::ZERO; cw];
    let mut trace = vec![F::ZERO; time * 3 * cw];
    let mut state = initial_state(d, t, s0);
    let x = lanes(d, t, w, u, k, v);
    simd::steps(
        x,
        &mut RowsMut::scratch(&mut scratch),
        &mut state,
        Some(&mut trace),
    );

    let g = t.plane * (time + 3) * c + c0;
    let mut ga = grad[g + time * c..g + time * c + cw].to_vec();
    let mut gb = grad[g + (time + 1) * c..g + (time + 1) * c + cw].to_vec();
    let mut gp = grad[g + (time + 2) * c..g + (time + 2) * c + cw].to_vec();
    let (mut gw, mut gu) = (vec![F::ZERO; cw], vec![F::ZERO; cw]);
    let (w, u) = (x.w, x.u);
    for step in (0..time).rev() {
        let base = step * 3 * cw;
        let row = step * c;
        let (gk, gv) = (gk.row(step), gv.row(step));
        for j in 0..cw {
            let (a, b, p) = (
                trace[base + j],
                trace[base + cw + j],
                trace[base + 2 * cw + j],
            );
            let (kt, vt) = (x.k[row + j], x.v[row + j]);
            let gy = grad[g + step * c + j];
            // output y = (e1 a + e2 v) / den; y does not depend on the shift q.
            let uk = u[j] + kt;
            let (e1, e2, _) = pair(p, uk);
            let den = e1 * b + e2;
            let yv = (e1 * a + e2 * vt) / den;
            let gy_den = gy / den;
            // update a' = f1 a + f2 v, b' = f1 b + f2, p' = q2 = max(p + w, k)
            let pw = p + w[j];
            let (f1, f2, _) = pair(pw, kt);
            let a2 = f1 * a + f2 * vt;
            let b2 = f1 * b + f2;
            let (ga2, gb2, gp2) = (ga[j], gb[j], gp[j]);
            // d/dq2 of (a', b', p') with f1, f2 depending on q2: a' → -a', b' → -b', p' → 1
            let gq2 = gp2 - ga2 * a2 - gb2 * b2;
            let through_decay = (ga2 * a + gb2 * b) * f1; // d(a',b')/d(p+w) with q2 fixed
            let (to_pw, to_k) = if pw >= kt {
                (gq2, F::ZERO)
            } else {
                (F::ZERO, gq2)
            };
            let g_uk = gy_den * e2 * (vt - yv);
            gk[j] = g_uk + (ga2 * vt + gb2) * f2 + to_k;
            gv[j] = gy_den * e2 + ga2 * f2;
            gu[j] = gu[j] + g_uk;
            gw[j] = gw[j] + through_decay + to_pw;
            ga[j] = gy_den * e1 + ga2 * f1;
            gb[j] = -(gy_den * yv * e1) + gb2 * f1;
            gp[j] = gy_den * e1 * (a - yv * b) + through_decay + to_pw;
        }
    }
    for (r, s) in [ga, gb, gp].iter().enumerate() {
        gs.row(r).copy_from_slice(s);
    }
    (gw, gu)
}

/// Backward over whole host arrays: given the gradient of the packed output
/// `[B, T + 3, C]`, returns `[gw, gu, gk, gv, gstate]`.
pub fn backward_slices<F: Real>(d: Dims, ins: [&[F]; 5], grad: &[F]) -> [Vec<F>; 5] {
    let (parts, parallel) = tasks(d);
    let (c, time) = (d.channels, d.time);
    let mut gk = vec![F::ZERO; d.batch * time * c];
    let mut gv = vec![F::ZERO; d.batch * time * c];
    let mut gs = vec![F::ZERO; d.batch * 3 * c];
    let views = rows::split(&mut gk, time, c, &parts)
        .into_iter()
        .zip(rows::split(&mut gv, time, c, &parts))
        .zip(rows::split(&mut gs, 3, c, &parts));
    let work: Vec<_> = parts.iter().copied().zip(views).collect();
    let sums = map(work, parallel, |(t, ((mut gk, mut gv), mut gs))| {
        backward_task(d, t, ins, grad, &mut gk, &mut gv, &mut gs)
    });
    // gw and gu sum over the batch; adding in task order keeps the result independent of
    // how many tasks there were.
    let mut gw = vec![F::ZERO; c];
    let mut gu = vec![F::ZERO; c];
    for (t, (lw, lu)) in parts.iter().zip(sums) {
        for j in 0..t.width {
            gw[t.c0 + j] = gw[t.c0 + j] + lw[j];
            gu[t.c0 + j] = gu[t.c0 + j] + lu[j];
        }
    }
    [gw, gu, gk, gv, gs]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_util::SplitMix64;

    /// Loss = Σ r·out over the packed output; compares the analytic backward with
    /// central differences in f64.
    #[test]
    fn backward_matches_finite_differences() {
        let d = Dims {
            batch: 2,
            time: 5,
            channels: 3,
        };
        let mut rng = SplitMix64::new(11);
        let n = d.batch * d.time * d.channels;
        let w: Vec<f64> = rng.fill(3, |r| -r.range(0.05, 3.0));
        let u = rng.fill(3, |r| r.range(-2.0, 2.0));
        let k = rng.fill(n, |r| r.range(-3.0, 3.0));
        let v = rng.fill(n, |r| r.range(-2.0, 2.0));
        let mut s0 = Vec::new();
        for _ in 0..d.batch {
            s0.extend(rng.fill(3, |r| r.range(-1.0, 1.0)));
            s0.extend(rng.fill(3, |r| r.range(0.5, 2.0)));
            s0.extend(rng.fill(3, |r| r.range(-1.0, 1.0)));
        }
        let r = rng.fill(d.batch * (d.time + 3) * d.channels, |r| r.range(-1.0, 1.0));
        let loss = |ins: &[Vec<f64>; 5]| -> f64 {
            let out = forward_slices(d, &ins[0], &ins[1], &ins[2], &ins[3], &ins[4]);
            out.iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        let ins = [w, u, k, v, s0];
        let grads = backward_slices(d, [&ins[0], &ins[1], &ins[2], &ins[3], &ins[4]], &r);
        for which in 0..5 {
            for idx in 0..ins[which].len() {
                let h = 1e-6;
                let mut plus = ins.clone();
                plus[which][idx] += h;
                let mut minus = ins.clone();
                minus[which][idx] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                let an = grads[which][idx];
                assert!(
                    (fd - an).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "input {which}[{idx}]: fd {fd} vs analytic {an}"
                );
            }
        }
    }

    /// Inputs with `B·T·C` above the serial threshold and a channel count that does not
    /// divide evenly.
    fn big() -> (Dims, [Vec<f32>; 5], Vec<f32>) {
        let d = Dims {
            batch: 3,
            time: 50,
            channels: 509,
        };
        let mut rng = SplitMix64::new(5);
        let (c, n) = (d.channels, d.batch * d.time * d.channels);
        let f = |rng: &mut SplitMix64, n: usize, lo: f64, hi: f64| -> Vec<f32> {
            rng.fill(n, |r| r.range(lo, hi))
                .into_iter()
                .map(|x| x as f32)
                .collect()
        };
        let w = f(&mut rng, c, -3.0, -0.01);
        let u = f(&mut rng, c, -2.0, 2.0);
        let k = f(&mut rng, n, -3.0, 3.0);
        let v = f(&mut rng, n, -2.0, 2.0);
        let mut s0 = Vec::new();
        for _ in 0..d.batch {
            s0.extend(f(&mut rng, c, -1.0, 1.0));
            s0.extend(f(&mut rng, c, 0.5, 2.0));
            s0.extend(f(&mut rng, c, -1.0, 1.0));
        }
        let grad = f(&mut rng, d.batch * (d.time + 3) * c, -1.0, 1.0);
        (d, [w, u, k, v, s0], grad)
    }

    fn run_big(threads: usize) -> (Vec<f32>, [Vec<f32>; 5]) {
        let (d, ins, grad) = big();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| {
            let [w, u, k, v, s0] = &ins;
            let out = forward_slices(d, w, u, k, v, s0);
            let grads = backward_slices(d, [w, u, k, v, s0], &grad);
            (out, grads)
        })
    }

    /// Channels are independent and the batch sums run in a fixed order, so the split
    /// into tasks (which follows the pool size) must not change a single bit.
    #[test]
    fn results_do_not_depend_on_the_task_split() {
        let (d, _, _) = big();
        assert!(d.batch * d.time * d.channels >= SERIAL_BELOW);
        let one = run_big(1);
        for threads in [2, 3, 8] {
            let many = run_big(threads);
            assert!(one.0 == many.0, "forward differs with {threads} threads");
            for i in 0..5 {
                assert!(
                    one.1[i] == many.1[i],
                    "gradient {i} differs with {threads} threads"
                );
            }
        }
    }

    /// The scan runs inside model code that may itself be on a rayon worker: nesting must
    /// neither deadlock nor change results.
    #[test]
    fn nested_in_rayon_tasks() {
        let (d, ins, _) = big();
        let [w, u, k, v, s0] = &ins;
        let alone = forward_slices(d, w, u, k, v, s0);
        let nested: Vec<Vec<f32>> = (0..4)
            .into_par_iter()
            .map(|_| forward_slices(d, w, u, k, v, s0))
            .collect();
        assert!(nested.iter().all(|o| *o == alone));
    }
}
