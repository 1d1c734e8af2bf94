//! RFC 6962 hashing: the one definition of how entries and nodes are hashed.
//!
//! Everything else in graven (the server's tree storage, proofs, audits) calls these
//! functions; nothing hashes tree nodes on its own.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1, RFC 9162 §2.1.1).
///
/// `e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`
pub const EMPTY_ROOT: Hash = Hash([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// Domain-separation prefix of a leaf hash (RFC 6962 §2.1: `MTH({d(0)}) = SHA-256(0x00 || d(0))`).
pub const LEAF_PREFIX: u8 = 0x00;

/// Domain-separation prefix of an interior node hash
/// (RFC 6962 §2.1: `MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`).
pub const NODE_PREFIX: u8 = 0x01;

/// The hash of one leaf: `SHA-256(0x00 || entry)` (RFC 6962 §2.1).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    sha256_prefixed(LEAF_PREFIX, entry)
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)` (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    use sha2::block_api::compress256;
    // The 65-byte message is two blocks: 0x01 || left || right[..31], then right[31],
    // the 0x80 padding byte, zeros and the length, 520 bits (FIPS 180-4 §5.1.1). Each
    // 16-byte lane is built in a register and stored whole, so the compression function's
    // 16-byte loads read back whole stores (a byte-shifted copy would stall them).
    let lane = |bytes: &[u8]| u128::from_le_bytes(bytes.try_into().unwrap_or_default());
    let (l0, l1) = (lane(&left.0[..16]), lane(&left.0[16..]));
    let (r0, r1) = (lane(&right.0[..16]), lane(&right.0[16..]));
    let mut blocks = [[0u8; 64]; 2];
    let lanes = [
        (l0 << 8) | u128::from(NODE_PREFIX),
        (l1 << 8) | (l0 >> 120),
        (r0 << 8) | (l1 >> 120),
        (r1 << 8) | (r0 >> 120),
        (r1 >> 120) | (0x80 << 8),
    ];
    for (i, v) in lanes.into_iter().enumerate() {
        blocks[i / 4][(i % 4) * 16..(i % 4) * 16 + 16].copy_from_slice(&v.to_le_bytes());
    }
    blocks[1][56..].copy_from_slice(&520u64.to_be_bytes());
    let mut state = SHA256_INIT;
    compress256(&mut state, &blocks);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Hash(out)
}

/// SHA-256 initial hash value, FIPS 180-4 §5.3.3.
const SHA256_INIT: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// `SHA-256(prefix || data)`, feeding sha2's compression function directly.
///
/// Equivalent to `Sha256::new().chain_update([prefix]).chain_update(data).finalize()`
/// (the tests check every length up to 300 bytes), and as fast as hashing a prebuilt
/// `prefix || data` buffer. The padded message is FIPS 180-4 §5.1.1's: the message, a
/// 0x80 byte, zeros, and the message length in bits as a 64-bit big-endian integer ending
/// the last 64-byte block. Blocks lying wholly inside `data` are hashed in place; the
/// others (the first, which holds the prefix byte, and the last ones, which hold the
/// padding) are assembled in 16-byte lanes, each built in a register and stored whole.
/// Copying the data in at a one-byte offset instead makes the compression function's
/// 16-byte loads straddle partial stores, which stalls them: it cost a third of the time
/// of a 65-byte node hash.
fn sha256_prefixed(prefix: u8, data: &[u8]) -> Hash {
    use sha2::block_api::compress256;
    let len = data.len() + 1; // bytes in the message
    let padded = (len + 9).div_ceil(64) * 64; // bytes after padding
    let bit_len = ((len as u64) * 8).to_be_bytes();
    let load = |at: usize| u128::from_le_bytes(data[at..at + 16].try_into().unwrap_or_default());
    // The length sits in the last 8 bytes of the last lane.
    let length_lane = u128::from(u64::from_le_bytes(bit_len)) << 64;
    // Bytes `at..at + 16` of the padded message, as a little-endian u128.
    let lane = |at: usize| -> u128 {
        let mut v = if at >= 1 && at + 16 <= len {
            load(at - 1)
        } else if at == 0 && len >= 17 {
            (load(0) << 8) | u128::from(prefix)
        } else if at < len {
            // The message ends inside this lane: its last `avail` bytes, then 0x80.
            let avail = len - at;
            let tail = if at >= 1 && data.len() >= 16 {
                load(data.len() - 16) >> (8 * (16 - avail))
            } else {
                // A message of under 17 bytes: byte by byte.
                let byte = |i: usize| if i == 0 { prefix } else { data[i - 1] };
                (at..len)
                    .rev()
                    .fold(0, |acc, i| (acc << 8) | u128::from(byte(i)))
            };
            if avail < 16 {
                tail | (0x80 << (8 * avail))
            } else {
                tail
            }
        } else if at == len {
            0x80
        } else {
            0
        };
        if at + 16 == padded {
            v |= length_lane;
        }
        v
    };
    let block = |b: usize| -> [u8; 64] {
        let mut out = [0u8; 64];
        for (k, chunk) in out.chunks_exact_mut(16).enumerate() {
            chunk.copy_from_slice(&lane(64 * b + 16 * k).to_le_bytes());
        }
        out
    };
    let mut state = SHA256_INIT;
    // Blocks 1..whole hold message bytes only: data[63..], hashed in place.
    let whole = (len / 64).max(1);
    let (in_place, _) = data[63.min(data.len())..].as_chunks::<64>();
    // The assembled blocks: the first, and the one or two that end the padded message.
    let mut assembled = [[0u8; 64]; 3];
    let last = padded / 64;
    if whole == 1 {
        for (b, slot) in assembled[..last].iter_mut().enumerate() {
            *slot = block(b);
        }
        compress256(&mut state, &assembled[..last]);
    } else {
        compress256(&mut state, &[block(0)]);
        compress256(&mut state, &in_place[..whole - 1]);
        for (slot, b) in assembled.iter_mut().zip(whole..last) {
            *slot = block(b);
        }
        compress256(&mut state, &assembled[..last - whole]);
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Hash(out)
}

impl Hash {
    /// The standard base64 form (RFC 4648 §4, padded) used in checkpoints and proofs.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Parses the standard padded base64 form of exactly 32 bytes; rejects anything else,
    /// including non-canonical encodings.
    pub fn from_base64(text: &str) -> Option<Hash> {
        // 32 bytes are always 44 characters; checking first bounds the work on garbage.
        if text.len() != 44 {
            return None;
        }
        let bytes = BASE64.decode(text).ok()?;
        Some(Hash(bytes.try_into().ok()?))
    }

    /// Lower-case hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn from_hex(text: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, Hash(Sha256::digest([]).into()));
    }

    #[test]
    fn prefixed_hashing_equals_sha2_for_every_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=data.len() {
            for prefix in [LEAF_PREFIX, NODE_PREFIX] {
                let mut h = Sha256::new();
                h.update([prefix]);
                h.update(&data[..len]);
                let want = Hash(h.finalize().into());
                assert_eq!(sha256_prefixed(prefix, &data[..len]), want, "length {len}");
            }
        }
        for len in [1000, 4097, 65_536 + 3] {
            let big: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut h = Sha256::new();
            h.update([LEAF_PREFIX]);
            h.update(&big);
            assert_eq!(leaf_hash(&big), Hash(h.finalize().into()), "length {len}");
        }
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut msg = vec![NODE_PREFIX];
        msg.extend_from_slice(&a.0);
        msg.extend_from_slice(&b.0);
        assert_eq!(node_hash(&a, &b), Hash(Sha256::digest(&msg).into()));
    }

    #[test]
    fn prefixes_separate_leaves_from_nodes() {
        let a = leaf_hash(b"a");
        // A node over (a, a) and a leaf over the 64 bytes a||a must differ: that is the point
        // of the 0x00/0x01 prefixes (second-preimage resistance, RFC 9162 §2.1.1).
        let mut concat = [0u8; 64];
        concat[..32].copy_from_slice(&a.0);
        concat[32..].copy_from_slice(&a.0);
        assert_ne!(node_hash(&a, &a), leaf_hash(&concat));
    }

    #[test]
    fn hex_and_base64_round_trip() {
        let h = leaf_hash(b"graven");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(Hash::from_base64(&h.to_base64()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
        assert_eq!(Hash::from_base64("AAAA"), None);
    }

    #[test]
    fn non_canonical_base64_is_rejected() {
        // In a 32-byte encoding the 43rd character carries 4 data bits and 2 spare bits that
        // must be zero. Setting a spare bit leaves the decoded bytes unchanged, so only a
        // strict decoder notices.
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bytes = EMPTY_ROOT.to_base64().into_bytes();
        let pos = ALPHABET.iter().position(|&c| c == bytes[42]).unwrap_or(0);
        assert_eq!(pos & 0b11, 0, "a canonical encoding has zero spare bits");
        bytes[42] = ALPHABET[pos | 1];
        let tampered = String::from_utf8(bytes).unwrap_or_default();
        assert_eq!(Hash::from_base64(&tampered), None);
    }
}
