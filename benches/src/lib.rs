//! Benchmarks live here: `benches/engine.rs` (criterion) and `src/bin/load_ingest.rs` (a load
//! run against a whole local stack). Figures are reported in docs/performance.md.
