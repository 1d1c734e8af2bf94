//! RFC 6962 hashing: the one definition of how entries and nodes are hashed.
//!
//! Everything else in graven (the server's tree storage, proofs, audits) calls these
//! functions; nothing hashes tree nodes on its own.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

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
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)` (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous 65-byte message: sha2 hashes it in one call, as fast as raw SHA-256.
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    Hash(Sha256::digest(buf).into())
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
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        s
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn from_hex(text: &str) -> Option<Hash> {
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
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

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, Hash(Sha256::digest([]).into()));
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
