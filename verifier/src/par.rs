//! Work spread over the machine's cores, for the whole-store passes
//! (`verify`) that hash every range: ranges are independent, and a 2-core
//! machine halves the time.

/// Worker threads: the machine's cores, at most 16.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, 16)
}

/// `f(state, i)` for every `i` in `0..n` on [`threads`] workers, each with
/// its own `init()` state; results in index order. The first error stops the
/// others at their next item and is returned (the lowest index among those
/// that failed); `lost()` is the error when a worker panicked.
pub fn map<S, T: Send, E: Send>(
    n: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) -> Result<T, E> + Sync,
    lost: impl FnOnce() -> E,
) -> Result<Vec<T>, E> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || {
        let mut st = init();
        let mut out = Vec::new();
        // Each index is taken once: at most n iterations overall.
        while !failed.load(Relaxed) {
            let i = next.fetch_add(1, Relaxed);
            if i >= n {
                break;
            }
            let r = f(&mut st, i);
            failed.fetch_or(r.is_err(), Relaxed);
            out.push((i, r));
        }
        out
    };
    let mut all: Vec<(usize, Result<T, E>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads().min(n)).map(|_| s.spawn(worker)).collect();
        let mut all = worker();
        for h in handles {
            // A worker that panicked took its items with it; they are
            // reported missing below.
            all.extend(h.join().unwrap_or_default());
        }
        all
    });
    all.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(n);
    for (i, r) in all {
        if i != out.len() {
            break;
        }
        out.push(r?);
    }
    if out.len() != n {
        return Err(lost());
    }
    Ok(out)
}
