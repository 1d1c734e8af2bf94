//! Server-side proof generation, in-process (no gRPC): inclusion and consistency proofs
//! read from real ledgers of 10K and 10M revisions, and a read of a document with its
//! proof: how proving grows with the journal (`O(log n)` stored hashes).
//!
//! The ledgers are built once (about two minutes) under `target/bench-data/` and reused.
//! Run: `cargo bench --bench server`.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use graven::engine::prepare::prepare;
use graven::engine::{Config, Engine, Ledger};
use graven::model::{Limits, RequestOp, TransactRequest, TreeSize};

/// The journal sizes measured.
const SIZES: [u64; 2] = [10_000, 10_000_000];
const PER_TX: u64 = 10_000;

/// A ledger of `revisions` one-document inserts, in its own data folder.
fn ledger(revisions: u64) -> (Arc<Engine>, Arc<Ledger>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-data/proofs-{revisions}"));
    let engine = Arc::new(Engine::open(Config::new(&dir)).expect("engine"));
    let ledger = match engine.ledger("proofs") {
        Ok(l) if l.info().expect("info").size == revisions => return (engine.clone(), l),
        Ok(_) => {
            drop(engine);
            std::fs::remove_dir_all(&dir).expect("remove stale bench data");
            return ledger(revisions);
        }
        Err(_) => engine.create_ledger("proofs", None, false).expect("create"),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        ledger.create_table("docs").await.expect("table");
        let mut n = 0;
        while n < revisions {
            let ops = (n..(n + PER_TX).min(revisions))
                .map(|i| RequestOp::Insert {
                    table: "docs".into(),
                    id: Some(format!("{i:08}")),
                    json: format!("{{\"n\":{i}}}").into_bytes(),
                })
                .collect();
            let request = TransactRequest {
                ops,
                idempotency_key: None,
            };
            let tx = prepare(request, &Limits::default(), "bench").expect("valid");
            ledger.transact(tx).await.expect("transact");
            n += PER_TX;
        }
    });
    (engine, ledger)
}

fn proofs(c: &mut Criterion) {
    for revisions in SIZES {
        let (engine, ledger) = ledger(revisions);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            // xorshift: spread the indexes over the whole ledger.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % revisions
        };
        let mut group = c.benchmark_group(format!("server proofs at {revisions} revisions"));
        group.bench_function("prove_inclusion (latest size)", |b| {
            b.iter_batched(
                &mut next,
                |i| ledger.prove_inclusion(i, TreeSize::Latest).expect("proof"),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("prove_inclusion (older size, re-signed checkpoint)", |b| {
            b.iter_batched(
                &mut next,
                // The older tree has one leaf fewer: the index must be below its size.
                |i| {
                    ledger
                        .prove_inclusion(i % (revisions - 1), TreeSize::At(revisions - 1))
                        .expect("proof")
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("prove_consistency (random old size)", |b| {
            b.iter_batched(
                || next().max(1),
                |old| {
                    ledger
                        .prove_consistency(old, TreeSize::Latest)
                        .expect("proof")
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("get document with inclusion proof", |b| {
            b.iter_batched(
                || format!("{:08}", next()),
                |id| {
                    ledger
                        .get("docs", &id, None, Some(TreeSize::Latest))
                        .expect("get")
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
        drop(ledger);
        engine.close();
    }
}

criterion_group!(benches, proofs);
criterion_main!(benches);
