//! Peak-memory metering on the CPU: a counting wrapper around the global allocator.
//!
//! The binary installs it (`#[global_allocator] static A: CountingAlloc<MiMalloc> = ...`);
//! this module only counts. When it is not installed, [`installed`] is false and callers
//! record no memory figure rather than a wrong one.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static CURRENT: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Counts live heap bytes (all threads) and their running peak.
pub struct CountingAlloc<A>(pub A);

#[inline]
fn grow(n: usize) {
    let now = CURRENT.fetch_add(n as u64, Relaxed) + n as u64;
    PEAK.fetch_max(now, Relaxed);
}

#[inline]
fn shrink(n: usize) {
    CURRENT.fetch_sub(n as u64, Relaxed);
}

// SAFETY: every call is forwarded to the wrapped allocator unchanged; the wrapper only
// updates counters.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            ACTIVE.store(true, Relaxed);
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            ACTIVE.store(true, Relaxed);
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grow(new_size - layout.size());
            } else {
                shrink(layout.size() - new_size);
            }
        }
        p
    }
}

/// Whether a [`CountingAlloc`] is the global allocator of this process.
pub fn installed() -> bool {
    ACTIVE.load(Relaxed)
}

/// Live heap bytes now.
pub fn current() -> u64 {
    CURRENT.load(Relaxed)
}

/// Measures the peak of live bytes above the level at [`PeakScope::start`].
#[derive(Debug, Clone, Copy)]
pub struct PeakScope {
    base: u64,
}

impl PeakScope {
    /// Starts a scope: the peak is reset to the current level.
    pub fn start() -> Self {
        let base = CURRENT.load(Relaxed);
        PEAK.store(base, Relaxed);
        Self { base }
    }

    /// Peak bytes allocated above the starting level since [`PeakScope::start`], or `None`
    /// when no counting allocator is installed.
    pub fn peak(&self) -> Option<u64> {
        installed().then(|| PEAK.load(Relaxed).saturating_sub(self.base))
    }
}

/// Peak memory of a measured call, however the backend can tell it.
pub trait PeakMeter {
    /// Called right before the call; returns the baseline to pass to [`PeakMeter::peak`].
    fn begin(&self) -> u64;
    /// Peak bytes above the baseline since [`PeakMeter::begin`], if this meter can tell.
    fn peak(&self, base: u64) -> Option<u64>;
    /// What it measures, for records and summaries.
    fn describe(&self) -> &'static str;
}

/// Host memory through the counting allocator (CPU backends).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostMeter;

impl PeakMeter for HostMeter {
    fn begin(&self) -> u64 {
        let base = CURRENT.load(Relaxed);
        PEAK.store(base, Relaxed);
        base
    }

    fn peak(&self, base: u64) -> Option<u64> {
        installed().then(|| PEAK.load(Relaxed).saturating_sub(base))
    }

    fn describe(&self) -> &'static str {
        "peak heap bytes allocated during the call (counting global allocator)"
    }
}

/// No memory figure (a backend whose memory this process cannot see).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMeter;

impl PeakMeter for NoMeter {
    fn begin(&self) -> u64 {
        0
    }

    fn peak(&self, _: u64) -> Option<u64> {
        None
    }

    fn describe(&self) -> &'static str {
        "not metered"
    }
}
