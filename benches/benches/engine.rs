//! The engine on a generated community, JSON decoding included (what the processor does per
//! record): events/s on one core, and the cost of a flush. `cargo bench -p benches --bench engine`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{Configs, Engine};
use schemas::{parse_event, parse_event_view, Limits};

fn community(members: usize) -> Vec<Vec<u8>> {
    let spec = generator::Spec { community_id: "bench".into(), members, groups: 4, days: 180, ..Default::default() };
    generator::generate(&spec).iter().map(|e| e.to_json_bytes()).collect()
}

fn apply_and_flush(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    for members in [2_000usize, 20_000] {
        let records = community(members);
        group.throughput(Throughput::Elements(records.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode+apply+flush", members), &records, |b, records| {
            b.iter(|| {
                let mut e = Engine::new(Configs::default());
                for r in records {
                    e.apply_view(&parse_event_view(r, None, &limits).unwrap().view());
                }
                e.flush(&|_| None).rows()
            })
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

criterion_group!(benches, apply_and_flush);
criterion_main!(benches);
