//! C2SP checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed head of a log.
//!
//! The note text of a checkpoint is three lines, then optional extension lines:
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <base64 of the 32-byte root hash>
//! ```
//!
//! graven never writes extension lines; when parsing a checkpoint from another log they
//! are accepted (they are covered by the signature) and ignored.

use std::fmt;

use crate::hash::Hash;
use crate::note::{self, NoteError, Signer, Verifier};

/// A malformed text (checkpoint, proof) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

pub(crate) fn format_error(why: impl Into<String>) -> FormatError {
    FormatError(why.into())
}

/// Parses an ASCII decimal with no sign, no leading zeros (except `0` itself) and no
/// overflow: the canonical form C2SP requires for sizes and indexes.
pub fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// The head of a log: its origin, its size and the root hash at that size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique name (for graven, `<server name>/<ledger>`; also the key name).
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// The RFC 6962 root hash of those leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// Parses checkpoint note text (the part before the signatures).
    pub fn parse(text: &str) -> Result<Checkpoint, FormatError> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| format_error("checkpoint text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(format_error("checkpoint origin line is empty"));
        }
        let size = lines
            .next()
            .and_then(parse_decimal)
            .ok_or_else(|| format_error("checkpoint size is not a canonical decimal number"))?;
        let root = lines
            .next()
            .and_then(Hash::from_base64)
            .ok_or_else(|| format_error("checkpoint root is not the base64 of 32 bytes"))?;
        if lines.any(str::is_empty) {
            return Err(format_error("empty extension line in checkpoint"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// The note text: origin, size and root, one per line. No extension lines.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        )
    }

    /// Signs the checkpoint as a note. The signer's name should equal the origin.
    pub fn sign(&self, signer: &Signer) -> Result<String, NoteError> {
        note::sign(&self.to_text(), &[signer])
    }
}

/// A checkpoint whose note carried a valid signature by a known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The names of the known keys whose signatures verified.
    pub verified_by: Vec<String>,
}

/// Why a signed checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note's signatures did not check out (or the note is malformed).
    Note(NoteError),
    /// The signed text is not a checkpoint.
    Format(FormatError),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Note(e) => write!(f, "checkpoint note: {e}"),
            CheckpointError::Format(e) => write!(f, "checkpoint: {e}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// Opens a signed checkpoint note with the known keys and parses its text.
pub fn open_checkpoint(
    note: &[u8],
    known: &[Verifier],
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let opened = note::open(note, known).map_err(CheckpointError::Note)?;
    let checkpoint = Checkpoint::parse(&opened.text).map_err(CheckpointError::Format)?;
    Ok(VerifiedCheckpoint {
        checkpoint,
        verified_by: opened.verified_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::EMPTY_ROOT;

    #[test]
    fn format_then_parse_round_trips() {
        let c = Checkpoint {
            origin: "example.com/log".into(),
            size: 20852163,
            root: EMPTY_ROOT,
        };
        assert_eq!(
            c.to_text(),
            "example.com/log\n20852163\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        assert_eq!(Checkpoint::parse(&c.to_text()), Ok(c));
    }

    #[test]
    fn non_canonical_sizes_are_rejected() {
        for size in [
            "007",
            "",
            "-1",
            "+1",
            "1.0",
            " 1",
            "18446744073709551616",
            "0x10",
        ] {
            let text = format!("o\n{size}\n{}\n", EMPTY_ROOT.to_base64());
            assert!(Checkpoint::parse(&text).is_err(), "size {size:?}");
        }
        let zero = format!("o\n0\n{}\n", EMPTY_ROOT.to_base64());
        assert_eq!(Checkpoint::parse(&zero).map(|c| c.size), Ok(0));
    }

    #[test]
    fn extension_lines_are_accepted_and_ignored() {
        let text = format!("o\n1\n{}\nextension\n", EMPTY_ROOT.to_base64());
        assert_eq!(Checkpoint::parse(&text).map(|c| c.size), Ok(1));
        let empty_ext = format!("o\n1\n{}\n\n", EMPTY_ROOT.to_base64());
        assert!(Checkpoint::parse(&empty_ext).is_err());
    }

    #[test]
    fn bad_roots_and_origins_are_rejected() {
        assert!(Checkpoint::parse("o\n1\nAAAA\n").is_err());
        assert!(Checkpoint::parse(&format!("\n1\n{}\n", EMPTY_ROOT.to_base64())).is_err());
        assert!(Checkpoint::parse(&format!("o\n1\n{}", EMPTY_ROOT.to_base64())).is_err());
        assert!(Checkpoint::parse("o\n1\n").is_err());
    }

    #[test]
    fn signed_checkpoint_opens_with_its_key_only() {
        let s = Signer::generate("example.com/log").expect("keygen");
        let c = Checkpoint {
            origin: "example.com/log".into(),
            size: 3,
            root: EMPTY_ROOT,
        };
        let signed = c.sign(&s).expect("sign");
        let opened = open_checkpoint(signed.as_bytes(), &[s.verifier()]).expect("open");
        assert_eq!(opened.checkpoint, c);
        let other = Signer::generate("example.com/log").expect("keygen");
        assert_eq!(
            open_checkpoint(signed.as_bytes(), &[other.verifier()]),
            Err(CheckpointError::Note(NoteError::Unverified))
        );
    }
}
