//! Benchmarks of graven-verify's hashing and proof checking.
//!
//! Run with `cargo bench --bench verify`; results and the machine they were measured on
//! are recorded in BENCHMARKS.md. Hashing is measured side by side with raw `sha2` on the
//! same bytes, so the ratio shows the cost of our wrapping, not of SHA-256.
//!
//! Proof checks are measured in trees far too large to build (2^32 leaves): the proofs
//! come from a *virtual* tree in which every complete subtree that the proof does not look
//! inside has an arbitrary hash, and every other node is computed by the RFC 6962
//! definition. That is a real Merkle tree as far as any checker can tell, so the proofs
//! must (and, before timing, are asserted to) verify.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use graven_verify::hash::{Hash, leaf_hash, node_hash};
use graven_verify::tree::{
    CompactRange, HashReader, check_consistency, check_inclusion, prove_consistency,
    prove_inclusion, split_stored_hash_index,
};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// Hashing.
// ---------------------------------------------------------------------------------------

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("leaf_hash");
    for size in [64usize, 256, 1024] {
        let entry: Vec<u8> = (0..size).map(|i| i as u8).collect();
        // What leaf_hash hashes, laid out in one buffer in advance for raw sha2.
        let mut prefixed = vec![0x00];
        prefixed.extend_from_slice(&entry);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("graven", size), &entry, |b, e| {
            b.iter(|| leaf_hash(black_box(e)))
        });
        group.bench_with_input(BenchmarkId::new("sha2", size), &prefixed, |b, p| {
            b.iter(|| Sha256::digest(black_box(p)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("node_hash");
    let (left, right) = (leaf_hash(b"left"), leaf_hash(b"right"));
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    group.throughput(Throughput::Elements(1));
    group.bench_function("graven", |b| {
        b.iter(|| node_hash(black_box(&left), black_box(&right)))
    });
    group.bench_function("sha2", |b| b.iter(|| Sha256::digest(black_box(&buf))));
    // Not a target, a diagnosis: raw sha2 again, but assembling the 65-byte message from
    // the two hashes on every call as node_hash must. The gap between "sha2" and this is
    // the cost of building the message, not of hashing it.
    group.bench_function("sha2_assembling", |b| {
        b.iter(|| {
            let (l, r) = (black_box(&left), black_box(&right));
            let mut m = [0u8; 65];
            m[0] = 0x01;
            m[1..33].copy_from_slice(&l.0);
            m[33..].copy_from_slice(&r.0);
            Sha256::digest(m)
        })
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// A virtual tree.
// ---------------------------------------------------------------------------------------

/// RFC 6962's split point: the largest power of two smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The hash of leaves `[lo, hi)` in a virtual tree: a complete subtree with none of the
/// `cuts` strictly inside it gets an arbitrary hash (derived from its bounds); any other
/// range is the node over its two RFC 6962 halves. Only ranges along the cuts are ever
/// split, so this costs `O(log^2 n)` hashes however large the tree.
fn virtual_hash(lo: u64, hi: u64, cuts: &[u64]) -> Hash {
    let cut_inside = cuts.iter().any(|&c| lo < c && c < hi);
    if hi - lo == 1 || ((hi - lo).is_power_of_two() && !cut_inside) {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&lo.to_be_bytes());
        id[8..].copy_from_slice(&hi.to_be_bytes());
        return leaf_hash(&id);
    }
    let k = split(hi - lo);
    node_hash(
        &virtual_hash(lo, lo + k, cuts),
        &virtual_hash(lo + k, hi, cuts),
    )
}

/// The stored hashes of a virtual tree, so the library's own provers can run on it: the
/// stored hash at any index is the virtual hash of the complete subtree it stands for.
struct VirtualTree<'a> {
    cuts: &'a [u64],
}

impl HashReader for VirtualTree<'_> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(indexes
            .iter()
            .map(|&i| {
                let (record, level) = split_stored_hash_index(i);
                let lo = (record >> level) << level;
                virtual_hash(lo, lo + (1 << level), self.cuts)
            })
            .collect())
    }
}

/// Leaf hash, audit path and root for leaf `index` of a virtual tree of `size` leaves.
fn virtual_inclusion(index: u64, size: u64) -> (Hash, Vec<Hash>, Hash) {
    let cuts = [index, index + 1];
    let proof = prove_inclusion(index, size, &VirtualTree { cuts: &cuts }).expect("prove");
    (
        virtual_hash(index, index + 1, &cuts),
        proof,
        virtual_hash(0, size, &cuts),
    )
}

/// Proof, old root and new root from `old` to `new` leaves of a virtual tree.
fn virtual_consistency(old: u64, new: u64) -> (Vec<Hash>, Hash, Hash) {
    let cuts = [old];
    let proof = prove_consistency(old, new, &VirtualTree { cuts: &cuts }).expect("prove");
    (
        proof,
        virtual_hash(0, old, &cuts),
        virtual_hash(0, new, &cuts),
    )
}

// ---------------------------------------------------------------------------------------
// Proofs.
// ---------------------------------------------------------------------------------------

fn checking(c: &mut Criterion) {
    let mut group = c.benchmark_group("check");

    let (index, size) = ((1u64 << 31) + 12345, 1u64 << 32);
    let (leaf, proof, root) = virtual_inclusion(index, size);
    assert_eq!(proof.len(), 32);
    assert_eq!(check_inclusion(&proof, index, size, &leaf, &root), Ok(()));
    let mut wrong = proof.clone();
    wrong[17].0[0] ^= 1;
    assert!(check_inclusion(&wrong, index, size, &leaf, &root).is_err());
    group.bench_function("inclusion_2^32", |b| {
        b.iter(|| {
            check_inclusion(
                black_box(&proof),
                black_box(index),
                black_box(size),
                black_box(&leaf),
                black_box(&root),
            )
        })
    });

    // A ragged old size and a new size that is not a power of two either: the longest
    // kind of consistency proof.
    let (old, new) = ((1u64 << 31) + 12345, (1u64 << 32) + 777);
    let (proof, old_root, new_root) = virtual_consistency(old, new);
    assert_eq!(
        check_consistency(&proof, old, new, &old_root, &new_root),
        Ok(())
    );
    let mut wrong = proof.clone();
    wrong[3].0[0] ^= 1;
    assert!(check_consistency(&wrong, old, new, &old_root, &new_root).is_err());
    group.bench_function(format!("consistency_{old}_to_{new}"), |b| {
        b.iter(|| {
            check_consistency(
                black_box(&proof),
                black_box(old),
                black_box(new),
                black_box(&old_root),
                black_box(&new_root),
            )
        })
    });
    group.finish();
}

fn proving(c: &mut Criterion) {
    const LEAVES: u64 = 1 << 20;
    let mut range = CompactRange::new();
    let mut stored: Vec<Hash> = Vec::with_capacity(2 * LEAVES as usize);
    for i in 0..LEAVES {
        range.append_stored(leaf_hash(&i.to_be_bytes()), |_, h| stored.push(h));
    }
    let root = range.root();
    let index = 700_001;
    let proof = prove_inclusion(index, LEAVES, &stored).expect("prove");
    assert_eq!(
        check_inclusion(
            &proof,
            index,
            LEAVES,
            &leaf_hash(&index.to_be_bytes()),
            &root
        ),
        Ok(())
    );

    let mut group = c.benchmark_group("prove_from_vec");
    let mut i = 0u64;
    group.bench_function("inclusion_1M", |b| {
        b.iter(|| {
            // A different leaf each time, spread over the log.
            i = (i + 104_729) % LEAVES;
            prove_inclusion(black_box(i), LEAVES, &stored)
        })
    });
    group.bench_function("consistency_1M", |b| {
        b.iter(|| {
            i = (i + 104_729) % LEAVES;
            prove_consistency(black_box(i + 1), LEAVES, &stored)
        })
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// The state map.
// ---------------------------------------------------------------------------------------

/// The state map of a million documents in memory (what an audit keeps): a revision's
/// update and hashing, a proof, and its check; then the check of a proof as deep as one
/// at ten million documents, whose cost depends only on its length.
fn state(c: &mut Criterion) {
    use graven_verify::map::{
        Lookup, MapProof, Terminal, check_map_proof, map_key, map_leaf_hash, map_node_hash,
    };
    use graven_verify::map_nodes::{Map, MemoryNodes};
    const DOCS: u64 = 1_000_000;
    let mut map = Map::new(MemoryNodes::default());
    for i in 0..DOCS {
        map.set(&map_key("docs", &format!("doc-{i}")), Some(i))
            .expect("set");
        if i % 4096 == 4095 {
            map.root().expect("root");
        }
    }
    let root = map.root().expect("root");
    let key = map_key("docs", "doc-700001");
    let proof = map.prove(&key).expect("prove");
    assert_eq!(
        check_map_proof(&root, &key, &proof),
        Ok(Lookup::Current(700_001))
    );
    eprintln!(
        "state map of {DOCS} keys: a proof has {} siblings",
        proof.siblings.len()
    );

    let mut group = c.benchmark_group("state_map_1M");
    let mut i = 0u64;
    group.bench_function("update_and_root", |b| {
        b.iter(|| {
            i = (i + 104_729) % DOCS;
            map.set(&map_key("docs", &format!("doc-{i}")), Some(DOCS + i))
                .expect("set");
            map.root().expect("root")
        })
    });
    group.bench_function("prove", |b| {
        b.iter(|| {
            i = (i + 104_729) % DOCS;
            map.prove(&map_key("docs", &format!("doc-{i}")))
                .expect("prove")
        })
    });
    let root = map.root().expect("root");
    let proof = map.prove(&key).expect("prove");
    group.bench_function("check", |b| {
        b.iter(|| check_map_proof(black_box(&root), &key, black_box(&proof)))
    });
    group.finish();

    // At ten million documents a path is about log2(10^7) + 1.3 = 24.6 long; 27 covers
    // nearly every key. Any siblings make a valid proof of the root they fold to.
    let siblings: Vec<Hash> = (0..27u32).map(|d| leaf_hash(&d.to_be_bytes())).collect();
    let mut folded = map_leaf_hash(&key, 5);
    for (d, s) in siblings.iter().enumerate().rev() {
        folded = if graven_verify::map::bit(&key, d) {
            map_node_hash(s, &folded)
        } else {
            map_node_hash(&folded, s)
        };
    }
    let deep = MapProof {
        siblings,
        terminal: Terminal::Leaf { key, index: 5 },
    };
    assert_eq!(
        check_map_proof(&folded, &key, &deep),
        Ok(Lookup::Current(5))
    );
    eprintln!("a proof of 27 siblings is {} bytes", deep.encode().len());
    let mut group = c.benchmark_group("state_map_10M");
    group.bench_function("check_27_siblings", |b| {
        b.iter(|| check_map_proof(black_box(&folded), &key, black_box(&deep)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: the figures in BENCHMARKS.md come from a 2-core machine and the whole
    // suite should finish in a couple of minutes.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = hashing, checking, proving, state
}
criterion_main!(benches);
