//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one or more signature lines
//! `— <key name> <base64(key id || signature)>`:
//!
//! ```text
//! This is an example message.
//!
//! — example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=
//! ```
//!
//! The key id is the first four bytes of `SHA-256(name || 0x0A || 0x01 || public key)`, read
//! big-endian. Keys travel as text: the verifier key (*vkey*)
//! `<name>+<hex key id>+<base64(0x01 || public key)>` and the private key
//! `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>` (the form of Go's
//! `golang.org/x/mod/sumdb/note`).
//!
//! [`open`] follows the spec's trust rules: signatures by unknown keys (a different name
//! or key id) are ignored; a signature by a known key must verify or the whole note is
//! rejected; at least one known key must have signed. This module never prints or formats
//! a private key except through [`Signer::to_private_key`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 keys (C2SP signed-note, "Signature types").
pub const ED25519_TYPE: u8 = 0x01;

/// The most signature lines [`open`] reads before giving up on a note (the spec requires
/// at least 16 to be accepted).
pub const MAX_SIGNATURES: usize = 100;

/// The signature line prefix: em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note or a key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteError {
    /// The note or key text does not follow the format; the string says what is wrong.
    Malformed(String),
    /// No signature by a known key: none of the keys given signed this note.
    Unverified,
    /// A signature by a known key (this name) did not verify: the note was altered or
    /// the signature forged.
    BadSignature(String),
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::Malformed(why) => write!(f, "malformed: {why}"),
            NoteError::Unverified => f.write_str("no signature by a known key"),
            NoteError::BadSignature(name) => write!(f, "invalid signature by key {name}"),
        }
    }
}

impl std::error::Error for NoteError {}

fn malformed(why: impl Into<String>) -> NoteError {
    NoteError::Malformed(why.into())
}

/// Whether `name` can be a key name: non-empty, no Unicode space, no `+` (C2SP
/// signed-note), and no control character (a note carrying one could never be opened).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The C2SP key id of an Ed25519 key: `SHA-256(name || 0x0A || 0x01 || public key)[:4]`,
/// big-endian.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Decodes `base64(0x01 || 32 bytes)`, the key material of both key texts.
fn decode_key_material(b64: &str) -> Result<[u8; 32], NoteError> {
    let raw = BASE64
        .decode(b64)
        .map_err(|_| malformed("key material is not base64"))?;
    match raw.split_first() {
        Some((&ED25519_TYPE, key)) => key
            .try_into()
            .map_err(|_| malformed("an Ed25519 key must be 32 bytes")),
        Some((t, _)) => Err(malformed(format!(
            "unsupported key type 0x{t:02x} (only Ed25519, 0x01)"
        ))),
        None => Err(malformed("empty key material")),
    }
}

/// Parses a key id written as exactly 8 hexadecimal digits.
fn parse_key_id(hex: &str) -> Result<u32, NoteError> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("key id must be 8 hexadecimal digits"));
    }
    u32::from_str_radix(hex, 16).map_err(|_| malformed("key id must be 8 hexadecimal digits"))
}

/// A public key that verifies notes: a name, a key id and an Ed25519 key.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// Parses a vkey, `<name>+<hex key id>+<base64(0x01 || public key)>`, and checks that
    /// the id is the one the name and key derive.
    pub fn parse(vkey: &str) -> Result<Verifier, NoteError> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("a verifier key is <name>+<key id>+<key>"));
        };
        if !is_valid_key_name(name) {
            return Err(malformed("invalid key name"));
        }
        let id = parse_key_id(id)?;
        let public = decode_key_material(material)?;
        if key_id(name, &public) != id {
            return Err(malformed("key id does not match the name and key"));
        }
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| malformed("not a valid Ed25519 public key"))?;
        Ok(Verifier {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The vkey text form, `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub fn to_vkey(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ED25519_TYPE);
        material.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, BASE64.encode(material))
    }

    /// Checks an Ed25519 signature over `text`.
    pub fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(text, &sig).is_ok()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({})", self.to_vkey())
    }
}

/// A private key that signs notes. Its `Debug` form shows only the public half.
#[derive(Clone)]
pub struct Signer {
    name: String,
    id: u32,
    key: SigningKey,
}

impl Signer {
    /// A new key with this name, from the operating system's random source.
    pub fn generate(name: &str) -> Result<Signer, NoteError> {
        if !is_valid_key_name(name) {
            return Err(malformed("invalid key name"));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| malformed(format!("no randomness: {e}")))?;
        Ok(Signer::from_seed(name, seed))
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Signer {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Signer {
            name: name.to_owned(),
            id,
            key,
        }
    }

    /// Parses `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>` and checks the id.
    pub fn parse(text: &str) -> Result<Signer, NoteError> {
        let text = text.trim_end_matches('\n');
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| malformed("a private key starts with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "a private key is PRIVATE+KEY+<name>+<key id>+<key>",
            ));
        };
        if !is_valid_key_name(name) {
            return Err(malformed("invalid key name"));
        }
        let id = parse_key_id(id)?;
        let signer = Signer::from_seed(name, decode_key_material(material)?);
        if signer.id != id {
            return Err(malformed("key id does not match the name and key"));
        }
        Ok(signer)
    }

    /// The private key text, `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.
    /// Keep it secret: write it only to owner-readable files.
    pub fn to_private_key(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ED25519_TYPE);
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            BASE64.encode(material)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching public key.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (which must be valid note text, see [`sign`]) and returns the signature
    /// line, newline included.
    fn signature_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut payload = Vec::with_capacity(68);
        payload.extend_from_slice(&self.id.to_be_bytes());
        payload.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, BASE64.encode(payload))
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.verifier().to_vkey())
    }
}

/// Checks the text rules shared by note text and whole notes: no ASCII control characters
/// other than newline. (UTF-8 validity is given by `&str`.)
fn check_characters(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(malformed("control character in note"));
    }
    Ok(())
}

/// Signs `text` with each signer and returns the whole signed note.
///
/// The text must be non-empty, end in a newline and contain no control characters other
/// than newline.
pub fn sign(text: &str, signers: &[&Signer]) -> Result<String, NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(malformed("note text must end with a newline"));
    }
    check_characters(text)?;
    if signers.is_empty() {
        return Err(malformed("a note needs at least one signature"));
    }
    let mut note = String::with_capacity(text.len() + 1 + 100 * signers.len());
    note.push_str(text);
    note.push('\n');
    for s in signers {
        note.push_str(&s.signature_line(text));
    }
    Ok(note)
}

/// A note whose signatures have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, final newline included.
    pub text: String,
    /// Names of the known keys whose signatures verified.
    pub verified_by: Vec<String>,
}

/// Opens a signed note: parses it and checks its signatures against the known keys.
///
/// Signatures by keys not among `known` (different name or key id) are ignored. A
/// signature by a known key that does not verify rejects the note
/// ([`NoteError::BadSignature`]); so does a note without any verified signature
/// ([`NoteError::Unverified`]).
pub fn open(note: &[u8], known: &[Verifier]) -> Result<Note, NoteError> {
    let note = std::str::from_utf8(note).map_err(|_| malformed("note is not UTF-8"))?;
    check_characters(note)?;
    // The text ends at the last blank line; it keeps its final newline.
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(malformed("signature block must end with a newline"));
    }
    let mut verified_by: Vec<String> = Vec::new();
    let mut seen: Vec<(&str, u32)> = Vec::new();
    for (count, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        if count >= MAX_SIGNATURES {
            return Err(malformed("too many signatures"));
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| malformed("signature line must start with an em dash and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("signature line must be: name, space, signature"))?;
        if !is_valid_key_name(name) || b64.is_empty() {
            return Err(malformed("invalid signature line"));
        }
        let payload = BASE64
            .decode(b64)
            .map_err(|_| malformed("signature is not base64"))?;
        if payload.len() < 5 {
            return Err(malformed("signature too short"));
        }
        let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let Some(verifier) = known.iter().find(|v| v.name == name && v.id == id) else {
            continue; // Unknown key: ignored, as the spec requires.
        };
        if seen.contains(&(name, id)) {
            continue; // The same key twice: the first signature decided.
        }
        seen.push((name, id));
        if !verifier.verify(text.as_bytes(), &payload[4..]) {
            return Err(NoteError::BadSignature(name.to_owned()));
        }
        verified_by.push(name.to_owned());
    }
    if verified_by.is_empty() {
        return Err(NoteError::Unverified);
    }
    Ok(Note {
        text: text.to_owned(),
        verified_by,
    })
}

/// Parses a file of vkeys, one per line. Blank lines and lines starting with `#` are
/// skipped; at least one key is required.
pub fn parse_verifier_list(text: &str) -> Result<Vec<Verifier>, NoteError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = Verifier::parse(line).map_err(|e| match e {
            NoteError::Malformed(why) => malformed(format!("line {}: {why}", i + 1)),
            other => other,
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(malformed("no verifier key found"));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key and note of the C2SP signed-note specification.
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    /// The test key of Go's golang.org/x/mod/sumdb/note package documentation (used as data).
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    #[test]
    fn spec_example_key_parses_and_its_id_recomputes() {
        let v = Verifier::parse(SPEC_VKEY).expect("spec vkey");
        assert_eq!(v.name(), "example.com/foo");
        assert_eq!(v.key_id(), 0x530d903a);
        assert_eq!(key_id(v.name(), v.key.as_bytes()), 0x530d903a);
        assert_eq!(v.to_vkey(), SPEC_VKEY);
    }

    #[test]
    fn spec_example_note_verifies() {
        let v = Verifier::parse(SPEC_VKEY).expect("spec vkey");
        let note = open(SPEC_NOTE.as_bytes(), &[v]).expect("spec note");
        assert_eq!(note.text, "This is an example message.\n");
        assert_eq!(note.verified_by, vec!["example.com/foo".to_owned()]);
    }

    #[test]
    fn go_private_key_matches_its_public_key() {
        let s = Signer::parse(GO_SKEY).expect("go skey");
        assert_eq!(s.verifier().to_vkey(), GO_VKEY);
        assert_eq!(s.to_private_key(), GO_SKEY);
    }

    #[test]
    fn sign_then_open_round_trips() {
        let s = Signer::generate("example.com/log").expect("keygen");
        let note = sign("hello\nworld\n", &[&s]).expect("sign");
        let opened = open(note.as_bytes(), &[s.verifier()]).expect("open");
        assert_eq!(opened.text, "hello\nworld\n");
        let again = Signer::parse(&s.to_private_key()).expect("private key round trip");
        assert_eq!(again.verifier(), s.verifier());
    }

    #[test]
    fn same_name_different_key_is_rejected() {
        let real = Signer::generate("example.com/log").expect("keygen");
        let impostor = Signer::generate("example.com/log").expect("keygen");
        let forged = sign("checkpoint\n", &[&impostor]).expect("sign");
        // The impostor's key id differs, so its signature is ignored: nothing verified.
        assert_eq!(
            open(forged.as_bytes(), &[real.verifier()]),
            Err(NoteError::Unverified)
        );
    }

    #[test]
    fn altered_text_is_rejected() {
        let s = Signer::generate("example.com/log").expect("keygen");
        let note = sign("size 5\n", &[&s]).expect("sign");
        let altered = note.replacen("size 5", "size 6", 1);
        assert_eq!(
            open(altered.as_bytes(), &[s.verifier()]),
            Err(NoteError::BadSignature("example.com/log".to_owned()))
        );
    }

    #[test]
    fn other_signatures_are_accepted_alongside_a_known_one() {
        let log = Signer::generate("example.com/log").expect("keygen");
        let witness = Signer::generate("witness.example").expect("keygen");
        let note = sign("tree\n", &[&witness, &log]).expect("sign");
        let opened = open(note.as_bytes(), &[log.verifier()]).expect("open");
        assert_eq!(opened.verified_by, vec!["example.com/log".to_owned()]);
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let s = Signer::generate("a").expect("keygen");
        let good = sign("text\n", &[&s]).expect("sign");
        let v = [s.verifier()];
        for bad in [
            "",
            "text\n",
            "text\n\n",
            "text\n\n- a AAAA\n",
            "text\n\n\u{2014} a\n",
            "text\n\n\u{2014} a !!!!\n",
            "text\r\n\n\u{2014} a AAAAAAAA\n",
            &good[..good.len() - 1],
        ] {
            assert!(
                matches!(open(bad.as_bytes(), &v), Err(NoteError::Malformed(_))),
                "{bad:?} should be malformed"
            );
        }
        assert!(open(&[0xff, b'\n', b'\n'], &v).is_err());
    }

    #[test]
    fn bad_keys_are_rejected() {
        for bad in [
            "",
            "name",
            "name+530d903a",
            "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903a+AkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "ex ample+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        ] {
            assert!(Verifier::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(Signer::parse(GO_VKEY).is_err());
        // A control character would make every note signed with the key unopenable.
        assert!(Signer::generate("log\u{1}name").is_err());
        assert!(Signer::generate("log\u{85}name").is_err());
        assert!(
            Signer::parse(
                "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
            )
            .is_err()
        );
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let s = Signer::parse(GO_SKEY).expect("go skey");
        let shown = format!("{s:?}");
        assert!(!shown.contains("AYEKFALVFGyNhPJEMzD1QIDr"));
        assert!(shown.contains(GO_VKEY));
    }
}
