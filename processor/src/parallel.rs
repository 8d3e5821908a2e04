//! Partitions are independent engines, so a round's records and a flush's engine work can run on
//! several threads at once, each partition on one thread at a time (its records stay in offset
//! order). Threads are scoped to the call: nothing outlives a round, and a panic in one is
//! re-raised in the caller as if the work had run there.

use std::sync::Mutex;

/// How many threads `engine_threads = 0` means: one per core.
pub fn threads(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `items.map(f)` on up to `threads` threads; results in the order of `items`. Each thread takes
/// the next item when it is done with one, so a busy partition does not hold up the others.
pub fn map_on_threads<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if threads.min(items.len()) <= 1 {
        return items.into_iter().map(f).collect();
    }
    map_on_threads_beside(items, threads, f, || false)
}

/// How long the calling thread of `map_on_threads_beside` waits before calling `beside` again.
const BESIDE_PAUSE: std::time::Duration = std::time::Duration::from_micros(200);

/// `map_on_threads`, while the calling thread, instead of only waiting for the others, calls
/// `beside` until the items are done or it returns `false` (it has nothing more to do), with a
/// short pause between calls. `beside` does work that must not wait for `f` and needs none of
/// what `f` borrows: taking the next records from the consumer while a slice is applied.
pub fn map_on_threads_beside<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> R + Sync,
    mut beside: impl FnMut() -> bool,
) -> Vec<R> {
    let threads = threads.min(items.len()).max(1);
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let (queue, f) = (&queue, &f);
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some((i, item)) = next else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        while !workers.iter().all(|w| w.is_finished()) && beside() {
            std::thread::sleep(BESIDE_PAUSE);
        }
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    debug_assert_eq!(done.len(), n);
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_of_the_items_and_uses_several_threads() {
        for threads in [1, 2, 3, 8] {
            for n in [0, 1, 2, 5, 40] {
                let items: Vec<u64> = (0..n).collect();
                let ids = Mutex::new(std::collections::HashSet::new());
                let out = map_on_threads(items, threads, |x| {
                    ids.lock().unwrap().insert(std::thread::current().id());
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    x * x
                });
                assert_eq!(out, (0..n).map(|x| x * x).collect::<Vec<_>>());
                let used = ids.into_inner().unwrap().len();
                assert!(used <= threads.max(1));
                if threads > 1 && n >= 5 {
                    assert!(used > 1, "{threads} threads, {n} items: all on one thread");
                }
            }
        }
    }

    #[test]
    fn items_are_mutable_borrows_of_the_callers_state() {
        let mut states = vec![0u64; 6];
        let items: Vec<(usize, &mut u64)> = states.iter_mut().enumerate().collect();
        map_on_threads(items, 3, |(i, s)| *s += i as u64 * 10);
        assert_eq!(states, [0, 10, 20, 30, 40, 50]);
    }

    #[test]
    #[should_panic(expected = "partition 3")]
    fn a_panic_in_a_thread_reaches_the_caller() {
        map_on_threads((0..6).collect(), 2, |x: i32| assert!(x != 3, "partition {x}"));
    }

    #[test]
    fn beside_runs_on_the_calling_thread_while_the_items_are_worked_on() {
        let caller = std::thread::current().id();
        let (mut calls, mut on_caller) = (0, true);
        let out = map_on_threads_beside(
            (0..4u64).collect(),
            2,
            |x| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                x + 1
            },
            || {
                calls += 1;
                on_caller &= std::thread::current().id() == caller;
                true
            },
        );
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(on_caller);
        // 40 ms of work on each thread, a call every 0.2 ms or so.
        assert!(calls > 10, "beside called {calls} times");
    }

    #[test]
    fn beside_is_not_called_again_once_it_says_it_is_done() {
        let mut calls = 0;
        let out = map_on_threads_beside(
            vec![1u64],
            2,
            |x| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                x
            },
            || {
                calls += 1;
                calls < 3
            },
        );
        assert_eq!(out, [1]);
        assert_eq!(calls, 3);
    }
}
