//! The one allocator setting the processor changes. mimalloc hands memory that stayed free for a
//! second back to the kernel (its "purge delay", 1,000 ms). The processor frees and allocates
//! about the same memory again every round (records, encoded rows, sort copies), so each round
//! paid for fresh pages: the kernel zeroes them, and on a virtual machine that gives freed memory
//! back to its host (virtio-balloon free page reporting, as on this project's machines) first
//! touching them again costs about twenty times the zeroing itself. Kept, the memory is reused.
//! The price is that the process's resident memory stays at its peak, which is what a processor
//! must be given anyway (docs/operations.md).
//!
//! mimalloc also serves the C allocations (libmimalloc-sys's `override` feature defines `malloc`
//! and `free` in the binary): librdkafka allocates every fetched record and its buffers with
//! `malloc`, and glibc kept those in arenas of their own, which added about a quarter to a
//! replay's peak memory (docs/performance.md, session 19).

//!
//! And transparent huge pages are turned off for the process, unless `MIMALLOC_ALLOW_THP` says
//! otherwise. mimalloc asks for them on its memory, so that the first touch of every 2 MiB of
//! fresh memory faulted in and zeroed a whole huge page; librdkafka's fetch thread, receiving
//! into fresh buffers, spent most of its time there. Off, a replay took about a tenth less of the
//! machine, the engines' flush included (docs/performance.md, session 24).

use libmimalloc_sys::{mi_option_get, mi_option_set_default, mi_option_t};

/// `mi_option_purge_delay` in mimalloc 2 and 3 (`include/mimalloc.h`); the crate does not export
/// the option constants. The test below checks it is the option `MIMALLOC_PURGE_DELAY` sets.
const PURGE_DELAY: mi_option_t = 15;

/// mimalloc's environment variable for the same setting, which wins over this default.
pub const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Makes mimalloc keep freed memory (purge delay -1) unless `MIMALLOC_PURGE_DELAY` is set. Call
/// first thing in `main`, before other threads start. Returns the delay in effect, in ms.
pub fn keep_freed_memory() -> i64 {
    // SAFETY: mimalloc's option functions are plain C calls; they are not thread safe, hence
    // "before other threads start". Reading the option first makes mimalloc read its environment,
    // so that `set_default` leaves a value given there alone.
    unsafe {
        let _ = mi_option_get(PURGE_DELAY);
        mi_option_set_default(PURGE_DELAY, -1);
        mi_option_get(PURGE_DELAY) as i64
    }
}

/// mimalloc's environment variable for transparent huge pages; set, it decides (mimalloc reads it
/// as it starts, and `0` turns them off itself).
pub const ALLOW_THP_ENV: &str = "MIMALLOC_ALLOW_THP";

/// `PR_SET_THP_DISABLE` and `PR_GET_THP_DISABLE` (`linux/prctl.h`).
#[cfg(target_os = "linux")]
const PR_SET_THP_DISABLE: std::ffi::c_int = 41;
#[cfg(target_os = "linux")]
const PR_GET_THP_DISABLE: std::ffi::c_int = 42;

#[cfg(target_os = "linux")]
extern "C" {
    fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
}

/// Turns transparent huge pages off for the whole process (what is mapped already and what will
/// be) unless `MIMALLOC_ALLOW_THP` is set. Returns whether they are off.
pub fn no_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls with integer arguments.
        unsafe {
            if std::env::var_os(ALLOW_THP_ENV).is_none() {
                let _ = prctl(
                    PR_SET_THP_DISABLE,
                    1 as std::ffi::c_ulong,
                    0 as std::ffi::c_ulong,
                    0 as std::ffi::c_ulong,
                    0 as std::ffi::c_ulong,
                );
            }
            prctl(
                PR_GET_THP_DISABLE,
                0 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
            ) == 1
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "PROCESSOR_ALLOCATOR_TEST_CHILD";

    extern "C" {
        fn malloc(size: usize) -> *mut std::ffi::c_void;
        fn free(p: *mut std::ffi::c_void);
    }

    /// What C code (librdkafka) allocates comes from mimalloc's heap, not glibc's arenas.
    #[test]
    fn c_allocations_are_served_by_mimalloc() {
        for size in [16, 4096, 1 << 20, 64 << 20] {
            // SAFETY: a plain allocation, checked for null, freed once.
            unsafe {
                let p = malloc(size);
                assert!(!p.is_null());
                assert!(libmimalloc_sys::mi_is_in_heap_region(p), "malloc({size}) is not mimalloc's");
                free(p);
            }
        }
    }

    /// Run again as a child process with the variable set, since mimalloc reads its environment once.
    #[test]
    fn freed_memory_is_kept_unless_the_environment_sets_a_delay() {
        if let Ok(expected) = std::env::var(CHILD) {
            assert_eq!(keep_freed_memory(), expected.parse::<i64>().unwrap());
            return;
        }
        if std::env::var_os(PURGE_DELAY_ENV).is_none() {
            assert_eq!(keep_freed_memory(), -1);
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "allocator::tests::freed_memory_is_kept_unless_the_environment_sets_a_delay"])
            .env(PURGE_DELAY_ENV, "4321")
            .env(CHILD, "4321")
            .status()
            .unwrap();
        assert!(status.success(), "the child saw another purge delay than its environment's");
    }

    /// Off by default; `MIMALLOC_ALLOW_THP=1` keeps them (a child process, as mimalloc reads its
    /// environment once and the setting is the process's).
    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_unless_the_environment_allows_them() {
        if let Ok(expected) = std::env::var(CHILD) {
            assert_eq!(no_huge_pages(), expected == "off");
            return;
        }
        for (allow, expected) in [(None, "off"), (Some("1"), "on"), (Some("0"), "off")] {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap());
            child.args(["--exact", "allocator::tests::huge_pages_are_off_unless_the_environment_allows_them"]);
            child.env_remove(ALLOW_THP_ENV).env(CHILD, expected);
            if let Some(v) = allow {
                child.env(ALLOW_THP_ENV, v);
            }
            assert!(child.status().unwrap().success(), "{ALLOW_THP_ENV}={allow:?}: huge pages not {expected}");
        }
    }
}
