//! Benchmarks live here: `benches/engine.rs` (criterion) and `src/bin/load_ingest.rs` (a load
//! run against a whole local stack). Figures are reported in docs/performance.md.

use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};

/// A global allocator that counts live heap bytes, for the engine's state size:
/// `#[global_allocator] static A: benches::Counting = benches::Counting;` in the binary. It
/// allocates through mimalloc, as the processor does: with glibc's malloc the engine's many small
/// lists made the benches measure an allocator the processor does not run.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Heap bytes allocated and not yet freed, when `Counting` is the global allocator.
pub fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// The generated community the engine benches use: `members` members in 4 groups over 180 days,
/// as the JSON records the processor reads.
pub fn community_records(community_id: &str, seed: u64, members: usize) -> Vec<Vec<u8>> {
    let spec = generator::Spec {
        community_id: community_id.into(),
        seed,
        members,
        groups: 4,
        days: 180,
        ..Default::default()
    };
    generator::generate(&spec).iter().map(|e| e.to_json_bytes()).collect()
}

/// A stack for a load run, its processors with `extra` in their environment and with the
/// processor's defaults for how a round is taken: test stacks apply rounds in small slices and
/// send the archive in small pieces, so that small test loads take a replay's path.
pub fn load_stack(name: &str, extra: &[(&str, &str)]) -> anyhow::Result<e2e_tests::Stack> {
    let flush = processor::config::FlushConfig::default();
    let (slice, piece) = (flush.apply_slice_records.to_string(), flush.archive_piece_bytes.to_string());
    let mut env = vec![
        ("PROCESSOR_FLUSH__APPLY_SLICE_RECORDS", slice.as_str()),
        ("PROCESSOR_FLUSH__ARCHIVE_PIECE_BYTES", piece.as_str()),
    ];
    env.extend_from_slice(extra);
    e2e_tests::Stack::start_with(name, 4, &env)
}

/// The processor's default round of a replay (`flush.replay_max_records`), as text.
pub fn default_replay_round() -> String {
    processor::config::FlushConfig::default().replay_max_records.to_string()
}

/// The processor's default time between a replay's writes (`flush.replay_interval_ms`), as text.
pub fn default_replay_interval() -> String {
    processor::config::FlushConfig::default().replay_interval_ms.to_string()
}
