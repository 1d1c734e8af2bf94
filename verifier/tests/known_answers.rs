//! Known-answer tests: the RFC 6962 test vectors shared by the certificate-transparency
//! implementations, checked against both our provers and our checkers.
//!
//! Source: the Go module github.com/transparency-dev/merkle (Apache-2.0), which carries the
//! vectors of the original C++ certificate-transparency code:
//!
//! * `testonly/constants.go`: `LeafInputs`, `NodeHashes` (every complete subtree of the
//!   8-leaf tree, by level), `RootHashes` (sizes 0 to 8) and `EmptyRootHash`;
//! * `proof/verify_test.go`: `inclusionProofs` (whose leaf numbers are 1-based: `{6, 8}` is
//!   our index 5) and `consistencyProofs`.
//!
//! The one vector not in those files, consistency 2 -> 8, was worked out by hand from
//! RFC 9162 §2.1.4.1 and is marked below.

use graven_verify::hash::{EMPTY_ROOT, Hash, leaf_hash};
use graven_verify::tree::{
    CompactRange, check_consistency, check_inclusion, prove_consistency, prove_inclusion,
    stored_hash_index, tree_hash,
};
use sha2::{Digest, Sha256};

/// `LeafInputs()`: the entries, hex-encoded.
const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// `NodeHashes()`: level 0 is the leaf hashes, level 3 the root of all 8.
const NODE_HASHES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// `RootHashes()[1..]`: the root of the first `n` leaves is `ROOTS[n - 1]`.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// `EmptyRootHash()`: SHA-256 of the empty string.
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// `inclusionProofs`, as (0-based index, size, audit path).
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// `consistencyProofs`, as (old size, new size, proof), plus 2 -> 8.
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    // Not in verify_test.go. RFC 9162 §2.1.4.1: SUBPROOF(2, D[0:8], true)
    // = SUBPROOF(2, D[0:4], true) : MTH(D[4:8]) = [MTH(D[2:4]), MTH(D[4:8])]
    // = [NodeHashes[1][1], NodeHashes[2][1]].
    (
        2,
        8,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
];

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap_or_else(|| panic!("bad hex in test vector: {hex}"))
}

fn hashes(hexes: &[&str]) -> Vec<Hash> {
    hexes.iter().map(|x| h(x)).collect()
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The 8-leaf tree: leaf hashes and every stored hash, built with `append_stored`.
fn build() -> (Vec<Hash>, Vec<Hash>) {
    let mut range = CompactRange::new();
    let mut stored = Vec::new();
    let mut leaves = Vec::new();
    for input in LEAF_INPUTS {
        let leaf = leaf_hash(&decode_hex(input));
        leaves.push(leaf);
        range.append_stored(leaf, |_, hash| stored.push(hash));
    }
    (leaves, stored)
}

#[test]
fn empty_tree() {
    assert_eq!(EMPTY_ROOT, h(EMPTY));
    assert_eq!(EMPTY_ROOT.0, <[u8; 32]>::from(Sha256::digest(b"")));
    assert_eq!(tree_hash(0, &Vec::<Hash>::new()).ok(), Some(h(EMPTY)));
    assert_eq!(CompactRange::new().root(), h(EMPTY));
}

#[test]
fn leaf_and_node_hashes_match_and_sit_at_their_stored_indexes() {
    let (leaves, stored) = build();
    assert_eq!(leaves, hashes(NODE_HASHES[0]));
    for (level, row) in NODE_HASHES.iter().enumerate() {
        for (n, hex) in row.iter().enumerate() {
            let index = stored_hash_index(level as u8, n as u64);
            assert_eq!(stored[index as usize], h(hex), "level {level} node {n}");
        }
    }
    // 8 leaves store 8 + 4 + 2 + 1 hashes, and nothing else.
    assert_eq!(stored.len(), 15);
}

#[test]
fn roots_for_sizes_1_to_8() {
    let (leaves, stored) = build();
    let mut range = CompactRange::new();
    for (n, hex) in ROOTS.iter().enumerate() {
        let size = n as u64 + 1;
        range.append(leaves[n]);
        assert_eq!(tree_hash(size, &stored).ok(), Some(h(hex)), "size {size}");
        assert_eq!(range.root(), h(hex), "compact range at size {size}");
    }
}

#[test]
fn inclusion_vectors_are_produced_and_accepted() {
    let (leaves, stored) = build();
    for &(index, size, proof) in INCLUSION {
        let expected = hashes(proof);
        let root = h(ROOTS[size as usize - 1]);
        let produced = prove_inclusion(index, size, &stored).expect("prove_inclusion");
        assert_eq!(produced, expected, "prove_inclusion({index}, {size})");
        assert_eq!(
            check_inclusion(&expected, index, size, &leaves[index as usize], &root),
            Ok(()),
            "check_inclusion({index}, {size})"
        );
    }
}

#[test]
fn consistency_vectors_are_produced_and_accepted() {
    let (_, stored) = build();
    for &(old, new, proof) in CONSISTENCY {
        let expected = hashes(proof);
        let (old_root, new_root) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
        let produced = prove_consistency(old, new, &stored).expect("prove_consistency");
        assert_eq!(produced, expected, "prove_consistency({old}, {new})");
        assert_eq!(
            check_consistency(&expected, old, new, &old_root, &new_root),
            Ok(()),
            "check_consistency({old}, {new})"
        );
    }
}
