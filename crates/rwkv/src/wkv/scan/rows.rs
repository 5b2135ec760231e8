//! Disjoint mutable views of one packed buffer, one per task: the only `unsafe` memory
//! access of the scan.
//!
//! The kernels' outputs are row-major `[planes, rows, cols]` (`[B, T + 3, C]` for the
//! forward output, `[B, T, C]` and `[B, 3, C]` for gradients). A task owns one batch row
//! (plane) and one channel range `c0..c0 + width`, so what it writes is `rows` segments of
//! `width` elements, `cols` apart, interleaved with the other tasks' segments. Safe Rust
//! can split a slice into contiguous pieces (`split_at_mut`, `chunks_mut`) but not into
//! interleaved strided ones, and copying each task's result into place afterwards costs a
//! pass over the whole output. Hence [`RowsMut`]: a raw pointer whose disjointness
//! [`split`] establishes once, behind a safe API.

use core::marker::PhantomData;

/// The rows of one task: row `r < rows` is the `width` elements at `ptr + r·stride`.
///
/// Behaves like a `&'a mut` borrow of those elements: [`split`] hands out views whose
/// segments never overlap, and [`RowsMut::row`] takes `&mut self`, so at most one slice
/// of a view is live at a time.
pub(super) struct RowsMut<'a, F> {
    ptr: *mut F,
    stride: usize,
    width: usize,
    rows: usize,
    _borrow: PhantomData<&'a mut [F]>,
}

// SAFETY: a `RowsMut` is a unique borrow of its elements (see the type's docs), so sending
// it to another thread is sending a `&mut [F]`, which is `Send` when `F: Send`. It is not
// `Sync`: no access through `&RowsMut` exists, and none is needed.
unsafe impl<F: Send> Send for RowsMut<'_, F> {}

impl<'a, F> RowsMut<'a, F> {
    /// A view in which every row is all of `buf` (stride 0): for outputs that are computed
    /// but not kept (the backward pass reruns the forward only for its state trace).
    pub(super) fn scratch(buf: &'a mut [F]) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            stride: 0,
            width: buf.len(),
            rows: usize::MAX,
            _borrow: PhantomData,
        }
    }

    /// Row `r` (`width` elements).
    ///
    /// # Panics
    /// If `r` is not below the view's row count.
    #[inline(always)]
    pub(super) fn row(&mut self, r: usize) -> &mut [F] {
        assert!(r < self.rows, "row {r} of a {}-row view", self.rows);
        // SAFETY: `r < rows`, so by the construction in `split` (or `scratch`, where the
        // offset is 0) the segment `ptr + r·stride .. + width` lies inside the borrowed
        // buffer and belongs to this view alone; `&mut self` keeps it the only live slice
        // of this view for the returned lifetime.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), self.width) }
    }
}

/// One task's part of a `[planes, rows, cols]` buffer: plane `plane`, columns
/// `c0..c0 + width`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Part {
    /// Plane (batch row).
    pub plane: usize,
    /// First column (channel).
    pub c0: usize,
    /// Number of columns.
    pub width: usize,
}

/// Splits `buf`, laid out `[planes, rows, cols]`, into one view per part, in order.
///
/// # Panics
/// If a part leaves the buffer or the parts are not in increasing, non-overlapping
/// `(plane, c0)` order: the checks that make the views disjoint, so a caller's bug stops
/// here instead of becoming aliased writes.
pub(super) fn split<'a, F>(
    buf: &'a mut [F],
    rows: usize,
    cols: usize,
    parts: &[Part],
) -> Vec<RowsMut<'a, F>> {
    let plane_len = rows.checked_mul(cols).expect("plane size overflows");
    let mut end: Option<(usize, usize)> = None; // (plane, first free column) of the last part
    for p in parts {
        assert!(
            p.c0.checked_add(p.width).is_some_and(|e| e <= cols),
            "columns {}..+{} outside 0..{cols}",
            p.c0,
            p.width
        );
        assert!(
            p.plane
                .checked_add(1)
                .and_then(|n| n.checked_mul(plane_len))
                .is_some_and(|e| e <= buf.len()),
            "plane {} outside a buffer of {} elements",
            p.plane,
            buf.len()
        );
        if let Some((plane, free)) = end {
            assert!(
                p.plane > plane || (p.plane == plane && p.c0 >= free),
                "parts overlap or are out of order"
            );
        }
        end = Some((p.plane, p.c0 + p.width));
    }
    let base = buf.as_mut_ptr();
    parts
        .iter()
        .map(|p| RowsMut {
            // A view without rows is never read, so it needs no position (and with
            // `rows = 0`, `c0` is not bounded by the buffer's length).
            ptr: if rows == 0 {
                base
            } else {
                // SAFETY: checked above: `plane·rows·cols + c0 ≤ (plane + 1)·rows·cols ≤
                // len`, so the pointer stays inside `buf` or one past its end.
                unsafe { base.add(p.plane * plane_len + p.c0) }
            },
            stride: cols,
            width: p.width,
            rows,
            _borrow: PhantomData,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_cover_their_parts_only() {
        let (planes, rows, cols) = (2, 3, 5);
        let mut buf = vec![0u32; planes * rows * cols];
        let parts = [
            Part {
                plane: 0,
                c0: 0,
                width: 2,
            },
            Part {
                plane: 0,
                c0: 2,
                width: 3,
            },
            Part {
                plane: 1,
                c0: 1,
                width: 4,
            },
        ];
        for (i, mut view) in split(&mut buf, rows, cols, &parts).into_iter().enumerate() {
            for r in 0..rows {
                view.row(r).fill(i as u32 + 1);
            }
        }
        let want = [
            [1, 1, 2, 2, 2],
            [1, 1, 2, 2, 2],
            [1, 1, 2, 2, 2],
            [0, 3, 3, 3, 3],
            [0, 3, 3, 3, 3],
            [0, 3, 3, 3, 3],
        ];
        assert_eq!(buf, want.concat());
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_parts_are_refused() {
        let mut buf = vec![0f32; 10];
        let parts = [
            Part {
                plane: 0,
                c0: 0,
                width: 3,
            },
            Part {
                plane: 0,
                c0: 2,
                width: 3,
            },
        ];
        split(&mut buf, 2, 5, &parts);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn parts_outside_the_buffer_are_refused() {
        let mut buf = vec![0f32; 10];
        split(
            &mut buf,
            2,
            5,
            &[Part {
                plane: 1,
                c0: 0,
                width: 5,
            }],
        );
    }

    #[test]
    #[should_panic(expected = "row 2")]
    fn rows_past_the_end_are_refused() {
        let mut buf = vec![0f32; 10];
        let mut views = split(
            &mut buf,
            2,
            5,
            &[Part {
                plane: 0,
                c0: 0,
                width: 5,
            }],
        );
        views[0].row(2);
    }

    #[test]
    fn views_without_rows_need_no_buffer() {
        let mut buf: Vec<f32> = Vec::new();
        let views = split(
            &mut buf,
            0,
            5,
            &[Part {
                plane: 0,
                c0: 2,
                width: 3,
            }],
        );
        assert_eq!(views.len(), 1);
    }
}
