//! Offline proof files: what a log hands out and an auditor checks with only a public key.
//!
//! * [`InclusionProof`]: the `c2sp.org/tlog-proof@v1` text (<https://c2sp.org/tlog-proof>),
//!   an entry's index and audit path followed by a signed checkpoint.
//! * [`ConsistencyProof`]: the body of a tlog-witness `add-checkpoint` request
//!   (<https://c2sp.org/tlog-witness>), an old size and a consistency proof followed by the
//!   new signed checkpoint. The same bytes can be sent to a public witness.
//!
//! ```text
//! c2sp.org/tlog-proof@v1          old 3
//! index 2                         <base64 hash>
//! <base64 hash>                   <base64 hash>
//! <base64 hash>
//!                                 <signed checkpoint note>
//! <signed checkpoint note>
//! ```
//!
//! [`verify_inclusion`] and [`verify_consistency`] do the whole check of such a file.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{
    CheckpointError, FormatError, VerifiedCheckpoint, format_error, open_checkpoint, parse_decimal,
};
use crate::hash::{Hash, leaf_hash};
use crate::note::Verifier;
use crate::tree::{ProofError, check_consistency, check_inclusion};

/// The first line of a tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The most hashes a proof file may carry: a proof in a tree of `2^64` leaves has at most
/// 64 (consistency proofs at most 2 × 64).
pub const MAX_PROOF_HASHES: usize = 128;

/// Reads base64 hash lines until the blank line, then returns the hashes and the rest
/// (the checkpoint note, verbatim).
fn hashes_then_note(mut lines: &str) -> Result<(Vec<Hash>, &str), FormatError> {
    let mut hashes = Vec::new();
    loop {
        let (line, rest) = lines
            .split_once('\n')
            .ok_or_else(|| format_error("missing blank line before the checkpoint"))?;
        lines = rest;
        if line.is_empty() {
            break;
        }
        if hashes.len() == MAX_PROOF_HASHES {
            return Err(format_error("too many proof hashes"));
        }
        hashes.push(
            Hash::from_base64(line)
                .ok_or_else(|| format_error("proof line is not the base64 of a 32-byte hash"))?,
        );
    }
    if lines.is_empty() {
        return Err(format_error("missing checkpoint"));
    }
    Ok((hashes, lines))
}

fn push_hashes(out: &mut String, hashes: &[Hash]) {
    for h in hashes {
        out.push_str(&h.to_base64());
        out.push('\n');
    }
}

/// A `c2sp.org/tlog-proof@v1` inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Opaque, unauthenticated extra data (the `extra` line), if any.
    pub extra: Option<Vec<u8>>,
    /// The index of the entry in the log.
    pub index: u64,
    /// The audit path, from the leaf's sibling up.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl InclusionProof {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<InclusionProof, FormatError> {
        let rest = text
            .strip_prefix(TLOG_PROOF_HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or_else(|| format_error("not a c2sp.org/tlog-proof@v1 proof"))?;
        let (mut line, mut rest) = rest
            .split_once('\n')
            .ok_or_else(|| format_error("missing index line"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                BASE64
                    .decode(b64)
                    .map_err(|_| format_error("extra data is not base64"))?,
            );
            (line, rest) = rest
                .split_once('\n')
                .ok_or_else(|| format_error("missing index line"))?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| format_error("index line must be `index <canonical decimal>`"))?;
        let (hashes, checkpoint) = hashes_then_note(rest)?;
        Ok(InclusionProof {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", BASE64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        push_hashes(&mut out, &self.hashes);
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }
}

/// A consistency proof in the form of a tlog-witness `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The size of the older tree.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub hashes: Vec<Hash>,
    /// The newer signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl ConsistencyProof {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<ConsistencyProof, FormatError> {
        let (line, rest) = text
            .split_once('\n')
            .ok_or_else(|| format_error("missing `old` line"))?;
        let old_size = line
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or_else(|| format_error("first line must be `old <canonical decimal>`"))?;
        let (hashes, checkpoint) = hashes_then_note(rest)?;
        Ok(ConsistencyProof {
            old_size,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        push_hashes(&mut out, &self.hashes);
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }
}

/// Why a proof file did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// A checkpoint did not open (bad or missing signature, or malformed).
    Checkpoint(CheckpointError),
    /// The proof does not prove its claim.
    Proof(ProofError),
    /// The two checkpoints of a consistency proof name different logs.
    OriginMismatch {
        /// The old checkpoint's origin.
        old: String,
        /// The new checkpoint's origin.
        new: String,
    },
    /// The proof's `old N` is not the old checkpoint's size.
    OldSizeMismatch {
        /// The size the proof file claims.
        proof: u64,
        /// The old checkpoint's size.
        checkpoint: u64,
    },
    /// A current-state proof does not prove its answer (docs/FORMAT.md §13).
    Current(crate::current::CurrentError),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Checkpoint(e) => e.fmt(f),
            VerifyError::Proof(e) => e.fmt(f),
            VerifyError::OriginMismatch { old, new } => {
                write!(
                    f,
                    "origins differ: old checkpoint {old:?}, new checkpoint {new:?}"
                )
            }
            VerifyError::OldSizeMismatch { proof, checkpoint } => write!(
                f,
                "proof is from size {proof} but the old checkpoint has size {checkpoint}"
            ),
            VerifyError::Current(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks that `entry` (the raw leaf bytes) is in the log at the proof's index, under a
/// checkpoint signed by one of `known`. Returns the verified checkpoint.
pub fn verify_inclusion(
    proof: &InclusionProof,
    entry: &[u8],
    known: &[Verifier],
) -> Result<VerifiedCheckpoint, VerifyError> {
    let head =
        open_checkpoint(proof.checkpoint.as_bytes(), known).map_err(VerifyError::Checkpoint)?;
    let c = &head.checkpoint;
    check_inclusion(
        &proof.hashes,
        proof.index,
        c.size,
        &leaf_hash(entry),
        &c.root,
    )
    .map_err(VerifyError::Proof)?;
    Ok(head)
}

/// Checks that the proof's checkpoint extends `old_checkpoint` (a signed note); both must
/// be signed by one of `known` and name the same origin. Returns the new checkpoint.
pub fn verify_consistency(
    proof: &ConsistencyProof,
    old_checkpoint: &[u8],
    known: &[Verifier],
) -> Result<(VerifiedCheckpoint, VerifiedCheckpoint), VerifyError> {
    let old = open_checkpoint(old_checkpoint, known).map_err(VerifyError::Checkpoint)?;
    let new =
        open_checkpoint(proof.checkpoint.as_bytes(), known).map_err(VerifyError::Checkpoint)?;
    let (o, n) = (&old.checkpoint, &new.checkpoint);
    if o.origin != n.origin {
        return Err(VerifyError::OriginMismatch {
            old: o.origin.clone(),
            new: n.origin.clone(),
        });
    }
    if proof.old_size != o.size {
        return Err(VerifyError::OldSizeMismatch {
            proof: proof.old_size,
            checkpoint: o.size,
        });
    }
    check_consistency(&proof.hashes, o.size, n.size, &o.root, &n.root)
        .map_err(VerifyError::Proof)?;
    Ok((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::hash::EMPTY_ROOT;
    use crate::note::Signer;

    fn note() -> String {
        let s = Signer::generate("example.com/log").expect("keygen");
        Checkpoint {
            origin: "example.com/log".into(),
            size: 5,
            root: EMPTY_ROOT,
        }
        .sign(&s)
        .expect("sign")
    }

    #[test]
    fn inclusion_proof_round_trips_with_and_without_extra() {
        for extra in [None, Some(b"context".to_vec())] {
            let p = InclusionProof {
                extra,
                index: 3,
                hashes: vec![leaf_hash(b"a"), leaf_hash(b"b")],
                checkpoint: note(),
            };
            assert_eq!(InclusionProof::parse(&p.to_text()), Ok(p));
        }
    }

    #[test]
    fn consistency_proof_round_trips_including_empty() {
        for hashes in [vec![], vec![leaf_hash(b"a")]] {
            let p = ConsistencyProof {
                old_size: 0,
                hashes,
                checkpoint: note(),
            };
            assert_eq!(ConsistencyProof::parse(&p.to_text()), Ok(p));
        }
    }

    #[test]
    fn spec_example_layout_parses() {
        // The shape of the example in c2sp.org/tlog-proof (signatures elided there, so a
        // placeholder note here: parsing does not open it).
        let text = "c2sp.org/tlog-proof@v1\nextra YWdl\nindex 73894\n\
            gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n\
            B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\n\
            example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\
            \u{2014} example.com/fancylog AAAA\n";
        let p = InclusionProof::parse(text).expect("parse");
        assert_eq!(p.index, 73894);
        assert_eq!(p.hashes.len(), 2);
        assert_eq!(p.extra.as_deref(), Some(&b"age"[..]));
        assert!(p.checkpoint.starts_with("example.com/fancylog\n109482\n"));
    }

    #[test]
    fn malformed_proofs_are_rejected() {
        let n = note();
        for bad in [
            String::new(),
            "c2sp.org/tlog-proof@v1\n".to_owned(),
            format!("c2sp.org/tlog-proof@v2\nindex 1\n\n{n}"),
            format!("c2sp.org/tlog-proof@v1\nindex 01\n\n{n}"),
            format!("c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\n{n}"),
            "c2sp.org/tlog-proof@v1\nindex 1\n\n".to_owned(),
            "c2sp.org/tlog-proof@v1\nindex 1\n".to_owned(),
        ] {
            assert!(InclusionProof::parse(&bad).is_err(), "{bad:?}");
        }
        for bad in [
            String::new(),
            format!("old -1\n\n{n}"),
            format!("old 1\n{n}"),
            format!("new 1\n\n{n}"),
        ] {
            assert!(ConsistencyProof::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
