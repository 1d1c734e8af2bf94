//! Server-side proof generation, in-process (no gRPC): inclusion and consistency proofs
//! read from a real ledger of 1M revisions, and a read of a document with its proof.
//!
//! The ledger is built once (about a minute) under `target/bench-data/` and reused.
//! Run: `cargo bench --bench server`.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use graven::engine::{Config, Engine, Ledger};
use graven::model::{Op, Transaction};

const REVISIONS: u64 = 1 << 20;
const PER_TX: u64 = 10_000;

fn ledger() -> (Arc<Engine>, Arc<Ledger>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/proofs-1m");
    let engine = Arc::new(Engine::open(Config::new(&dir)).expect("engine"));
    let ledger = match engine.ledger("proofs") {
        Ok(l) if l.info().expect("info").size == REVISIONS => return (engine.clone(), l),
        Ok(_) => {
            drop(engine);
            std::fs::remove_dir_all(&dir).expect("remove stale bench data");
            return ledger();
        }
        Err(_) => engine.create_ledger("proofs", None, false).expect("create"),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        ledger.create_table("docs").await.expect("table");
        let mut n = 0;
        while n < REVISIONS {
            let ops = (n..(n + PER_TX).min(REVISIONS))
                .map(|i| Op::Insert {
                    table: "docs".into(),
                    id: format!("{i:08}"),
                    body: format!("{{\"n\":{i}}}").into_bytes(),
                })
                .collect();
            ledger
                .transact(Transaction {
                    ops,
                    idempotency: None,
                    principal: "bench".into(),
                })
                .await
                .expect("transact");
            n += PER_TX;
        }
    });
    (engine, ledger)
}

fn proofs(c: &mut Criterion) {
    let (_engine, ledger) = ledger();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift: spread the indexes over the whole ledger.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % REVISIONS
    };
    let mut group = c.benchmark_group("server proofs at 1M revisions");
    group.bench_function("prove_inclusion (latest size)", |b| {
        b.iter_batched(
            &mut next,
            |i| ledger.prove_inclusion(i, 0).expect("proof"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("prove_inclusion (older size, re-signed checkpoint)", |b| {
        b.iter_batched(
            &mut next,
            |i| ledger.prove_inclusion(i, REVISIONS - 1).expect("proof"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("prove_consistency (random old size)", |b| {
        b.iter_batched(
            || next().max(1),
            |old| ledger.prove_consistency(old, 0).expect("proof"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("get document with inclusion proof", |b| {
        b.iter_batched(
            || format!("{:08}", next()),
            |id| ledger.get("docs", &id, None, Some(0)).expect("get"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
