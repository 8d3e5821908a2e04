//! The engine on generated communities, JSON decoding included (what the processor does per
//! record): events/s on one core, and the cost of a flush. `cargo bench -p benches --bench engine`.
//!
//! `engine/1M members` is the measure: an engine (one partition) already holding
//! 1,000,000 members (10 communities of 100,000, loaded before timing, about two minutes) takes
//! one more community of 20,000 members per iteration, decoded from JSON, applied and flushed.
//! The state size per member after the load is printed (a counting allocator is this bench's
//! global allocator). The smaller benches start from an empty engine each iteration.

use benches::{community_records, live_bytes, Counting};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use engine::{Configs, Engine};
use schemas::{parse_event, parse_event_view, Limits};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn apply_all(e: &mut Engine, records: &[Vec<u8>], limits: &Limits) -> usize {
    for r in records {
        e.apply_view(&parse_event_view(r, None, limits).unwrap().view());
    }
    e.flush(&|_| None).rows()
}

fn small_communities(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    for members in [2_000usize, 20_000] {
        let records = community_records("bench", 0, members);
        group.throughput(Throughput::Elements(records.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode+apply+flush", members), &records, |b, records| {
            b.iter(|| apply_all(&mut Engine::new(Configs::default()), records, &limits))
        });
        group.bench_with_input(BenchmarkId::new("typed decode only", members), &records, |b, records| {
            b.iter(|| records.iter().map(|r| parse_event_view(r, None, &limits).unwrap().view().ts_ms).sum::<i64>())
        });
        // The validator the typed decoder falls back to (and ingest uses): a `serde_json::Value`
        // tree, then the rules.
        group.bench_with_input(BenchmarkId::new("validator decode only", members), &records, |b, records| {
            b.iter(|| records.iter().map(|r| parse_event(r, None, &limits).unwrap().ts_ms).sum::<i64>())
        });
    }
    group.finish();
}

fn one_million_members(c: &mut Criterion) {
    const LOADED: usize = 10;
    const MEMBERS: usize = 100_000;
    const ADDED: usize = 20_000;
    let limits = Limits::default();
    let before = live_bytes();
    let mut engine = Engine::new(Configs::default());
    for i in 0..LOADED {
        apply_all(&mut engine, &community_records(&format!("c{i}"), i as u64, MEMBERS), &limits);
    }
    let state = live_bytes() - before;
    eprintln!(
        "engine/1M members: state after loading {} members: {} MiB, {} bytes/member",
        LOADED * MEMBERS,
        state >> 20,
        state / (LOADED * MEMBERS) as isize
    );
    // Every iteration adds a new community: records generated outside the timing.
    let events_per_community = community_records("probe", 0, ADDED).len();
    let mut next = 0u64;
    let mut group = c.benchmark_group("engine/1M members");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(events_per_community as u64));
    group.bench_function(BenchmarkId::new("decode+apply+flush of 20,000 more members", ADDED), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                next += 1;
                // Same shape as the probe (seed 0), so every iteration has the same event count.
                let records = community_records(&format!("added{next}"), 0, ADDED);
                let started = Instant::now();
                std::hint::black_box(apply_all(&mut engine, &records, &limits));
                timed += started.elapsed();
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, small_communities, one_million_members);
criterion_main!(benches);
