//! The processor's side of a flush: turning the engine's output for one partition into the
//! ClickHouse rows it writes. `cargo bench -p benches --bench rows`.
//!
//! The output is one flush of a generated community of 20,000 members (about 300,000 rows, a
//! quarter of a million of them retention cells): what a replay's round writes per partition.
//! The same community's archive rows, encoded in the order they were read, are the input of the
//! sort every archive insert gets (`processor::pieces`).

use benches::{community_records, Counting};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::{Configs, Engine, Output};
use processor::pieces::{KeyColumn, Piece};
use processor::rowbinary::EncodedRows;
use processor::rows::RawEventRow;
use processor::store::{Batch, SORT_KEYS};
use schemas::{parse_event_view, Limits};

// mimalloc, as in the processor (through the counting wrapper the engine bench uses too).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn one_flush() -> Output {
    let limits = Limits::default();
    let mut engine = Engine::new(Configs::default());
    for r in community_records("bench", 0, 20_000) {
        engine.apply_view(&parse_event_view(&r, None, &limits).unwrap().view());
    }
    engine.flush(&|_| None)
}

fn rows(c: &mut Criterion) {
    let out = one_flush();
    let mut group = c.benchmark_group("rows");
    group.sample_size(20);
    group.throughput(Throughput::Elements(out.rows() as u64));
    group.bench_function("engine output to ClickHouse rows, one flush of 20,000 members", |b| {
        b.iter_batched(|| out.clone(), |o| Batch::from_output(o, 0, 1).rows(), BatchSize::LargeInput)
    });
    // As a flush's inserts send them: each table's rows in its key's order.
    let batch = Batch::from_output(out.clone(), 0, 1);
    let pieces: Vec<(Piece, Vec<KeyColumn>)> = [
        (&batch.cohorts, "cohorts"),
        (&batch.retention, "retention"),
        (&batch.members, "member_facts"),
        (&batch.engagement, "engagement"),
        (&batch.lifecycle, "lifecycle"),
        (&batch.churn, "churn"),
    ]
    .into_iter()
    .map(|(rows, table)| {
        let key = SORT_KEYS.iter().find(|(t, _)| *t == table).expect("a key").1;
        (rows.pieces(usize::MAX).pop().expect("rows"), key.iter().map(|(_, c)| *c).collect())
    })
    .collect();
    group.bench_function("one flush's derived rows sorted by their tables' keys", |b| {
        b.iter_batched(
            || pieces.clone(),
            |ps| ps.into_iter().map(|(p, key)| p.sorted_by_key(&key).map(|c| c.len()).sum::<usize>()).sum::<usize>(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn archive_sort(c: &mut Criterion) {
    let (limits, configs) = (Limits::default(), Configs::default());
    let mut raw = EncodedRows::default();
    for (offset, r) in community_records("bench", 0, 20_000).iter().enumerate() {
        let parsed = parse_event_view(r, None, &limits).unwrap();
        raw.push(&RawEventRow::new(&parsed.view(), configs.get("bench"), 0, offset as i64));
    }
    let piece = raw.pieces(usize::MAX).pop().expect("rows");
    let mut group = c.benchmark_group("rows");
    group.sample_size(20);
    group.throughput(Throughput::Elements(piece.rows() as u64));
    group.bench_function("archive rows of 20,000 members sorted by (community_id, event_id)", |b| {
        b.iter_batched(
            || piece.clone(),
            |p| p.sorted_by_first_two_strings().map(|c| c.len()).sum::<usize>(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, rows, archive_sort);
criterion_main!(benches);
