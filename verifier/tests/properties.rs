//! Property tests of the text formats: every formatter round-trips through its parser, and
//! no parser panics, whatever it is given. Inputs are random values, random bytes, and
//! "near misses": valid texts with one mutation (truncated, a byte changed, a newline
//! inserted, a byte deleted), which reach much deeper into the parsers than noise does.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;
use graven_verify::checkpoint::{Checkpoint, open_checkpoint};
use graven_verify::hash::{Hash, leaf_hash};
use graven_verify::note::{self, NoteError, Signer, Verifier, parse_verifier_list};
use graven_verify::proof::{ConsistencyProof, InclusionProof};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// The example private key of the documentation of Go's `golang.org/x/mod/sumdb/note`
/// package: a published test key, used here so that failures reproduce.
const GO_TEST_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

fn test_signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| Signer::parse(GO_TEST_SKEY).expect("Go test key parses"))
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

/// A checkpoint origin: one non-empty line, any characters but newline.
fn origin() -> impl Strategy<Value = String> {
    "[^\n]{1,40}"
}

/// A key name as C2SP signed-note allows it: non-empty, no Unicode space, no `+`.
/// Written independently of the library's `is_valid_key_name`.
fn key_name() -> impl Strategy<Value = String> {
    // No whitespace, no control characters (which no note could carry).
    "[^+]{1,30}".prop_filter("no whitespace or control characters", |s| {
        !s.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// Note text: one or more lines without control characters, each ending in a newline.
fn note_text() -> impl Strategy<Value = String> {
    prop::collection::vec("[^\\x00-\\x1f]{0,30}", 1..6).prop_map(|lines| {
        let mut text = lines.join("\n");
        text.push('\n');
        text
    })
}

fn checkpoint() -> impl Strategy<Value = Checkpoint> {
    (origin(), any::<u64>(), hash()).prop_map(|(origin, size, root)| Checkpoint {
        origin,
        size,
        root,
    })
}

/// A signed checkpoint note by the test signer, with a valid origin for a note.
fn signed_checkpoint() -> impl Strategy<Value = (Checkpoint, String)> {
    ("[^\\x00-\\x1f]{1,40}", any::<u64>(), hash()).prop_map(|(origin, size, root)| {
        let c = Checkpoint { origin, size, root };
        let note = c.sign(test_signer()).expect("sign");
        (c, note)
    })
}

fn inclusion_proof() -> impl Strategy<Value = InclusionProof> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..48)),
        any::<u64>(),
        prop::collection::vec(hash(), 0..64),
        signed_checkpoint(),
    )
        .prop_map(|(extra, index, hashes, (_, checkpoint))| InclusionProof {
            extra,
            index,
            hashes,
            checkpoint,
        })
}

fn consistency_proof() -> impl Strategy<Value = ConsistencyProof> {
    (
        any::<u64>(),
        prop::collection::vec(hash(), 0..64),
        signed_checkpoint(),
    )
        .prop_map(|(old_size, hashes, (_, checkpoint))| ConsistencyProof {
            old_size,
            hashes,
            checkpoint,
        })
}

/// The key id of C2SP signed-note, computed here from the spec rather than by the library:
/// the first 4 bytes, big-endian, of SHA-256(name || "\n" || 0x01 || public key).
fn spec_key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n\x01");
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The private key text and vkey of `seed` under `name`, built from the spec.
fn key_texts(name: &str, seed: &[u8; 32]) -> (String, String) {
    let public = SigningKey::from_bytes(seed).verifying_key().to_bytes();
    let id = spec_key_id(name, &public);
    let material = |key: &[u8; 32]| {
        let mut m = vec![0x01];
        m.extend_from_slice(key);
        BASE64.encode(m)
    };
    (
        format!("PRIVATE+KEY+{name}+{id:08x}+{}", material(seed)),
        format!("{name}+{id:08x}+{}", material(&public)),
    )
}

/// One mutation of a valid text.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    InsertNewline(usize),
    Delete(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    prop_oneof![
        pos.prop_map(Mutation::Truncate),
        (pos, 1..=255u8).prop_map(|(p, x)| Mutation::Flip(p, x)),
        pos.prop_map(Mutation::InsertNewline),
        pos.prop_map(Mutation::Delete),
        (pos, 0..64usize).prop_map(|(p, len)| Mutation::Duplicate(p, len)),
    ]
}

/// Applies `m` to `bytes`, positions taken modulo the length.
fn mutate(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return out;
    }
    let at = |p: usize| p % out.len();
    match *m {
        Mutation::Truncate(p) => out.truncate(at(p)),
        Mutation::Flip(p, x) => {
            let i = at(p);
            out[i] ^= x;
        }
        Mutation::InsertNewline(p) => {
            let i = at(p);
            out.insert(i, b'\n');
        }
        Mutation::Delete(p) => {
            let i = at(p);
            out.remove(i);
        }
        Mutation::Duplicate(p, len) => {
            let i = at(p);
            let end = (i + len).min(out.len());
            let copy = out[i..end].to_vec();
            out.splice(i..i, copy);
        }
    }
    out
}

/// Valid texts of every kind a parser reads, to mutate.
fn valid_texts() -> Vec<String> {
    let s = test_signer();
    let c = Checkpoint {
        origin: "example.com/log".into(),
        size: 5,
        root: leaf_hash(b"root"),
    };
    let signed = c.sign(s).expect("sign");
    let hashes = vec![leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")];
    vec![
        signed.clone(),
        InclusionProof {
            extra: Some(b"extra".to_vec()),
            index: 3,
            hashes: hashes.clone(),
            checkpoint: signed.clone(),
        }
        .to_text(),
        ConsistencyProof {
            old_size: 2,
            hashes,
            checkpoint: signed,
        }
        .to_text(),
        s.verifier().to_vkey(),
        format!("# keys\n{}\n\n", s.verifier().to_vkey()),
        s.to_private_key(),
        leaf_hash(b"x").to_base64(),
        leaf_hash(b"x").to_hex(),
    ]
}

/// Feeds `bytes` to every parser. Results are discarded: the property is that none panics.
fn parse_everything(bytes: &[u8]) {
    let known = [test_signer().verifier()];
    let _ = note::open(bytes, &known);
    let _ = open_checkpoint(bytes, &known);
    let text = String::from_utf8_lossy(bytes);
    let _ = Checkpoint::parse(&text);
    let _ = InclusionProof::parse(&text);
    let _ = ConsistencyProof::parse(&text);
    let _ = Verifier::parse(&text);
    let _ = Signer::parse(&text);
    let _ = parse_verifier_list(&text);
    let _ = Hash::from_base64(&text);
    let _ = Hash::from_hex(&text);
}

// ---------------------------------------------------------------------------------------
// Round trips.
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn checkpoint_round_trips(c in checkpoint()) {
        let text = c.to_text();
        prop_assert_eq!(text.matches('\n').count(), 3);
        prop_assert_eq!(Checkpoint::parse(&text), Ok(c));
    }

    #[test]
    fn inclusion_proof_round_trips(p in inclusion_proof()) {
        prop_assert_eq!(InclusionProof::parse(&p.to_text()), Ok(p));
    }

    #[test]
    fn consistency_proof_round_trips(p in consistency_proof()) {
        prop_assert_eq!(ConsistencyProof::parse(&p.to_text()), Ok(p));
    }

    #[test]
    fn key_texts_round_trip(name in key_name(), seed in any::<[u8; 32]>()) {
        let (skey, vkey) = key_texts(&name, &seed);
        let signer = Signer::parse(&skey).expect("private key parses");
        prop_assert_eq!(signer.to_private_key(), skey.clone());
        prop_assert_eq!(signer.name(), name.as_str());
        // keygen writes the key with a final newline; parsing accepts it.
        let with_newline = format!("{skey}\n");
        prop_assert!(Signer::parse(&with_newline).is_ok());
        let verifier = Verifier::parse(&vkey).expect("vkey parses");
        prop_assert_eq!(verifier.to_vkey(), vkey.clone());
        prop_assert_eq!(signer.verifier(), verifier);
        // In a key file a line starting with `#` is a comment, even if the rest is a vkey:
        // a commented-out key must never become trusted. So a key whose name starts with
        // `#` cannot be listed there.
        let listed = parse_verifier_list(&format!("# comment\n\n{vkey}\n"));
        if name.starts_with('#') {
            prop_assert!(listed.is_err());
        } else {
            prop_assert_eq!(listed, Ok(vec![signer.verifier()]));
        }
    }

    #[test]
    fn hashes_round_trip(h in hash()) {
        prop_assert_eq!(Hash::from_base64(&h.to_base64()), Some(h));
        prop_assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        prop_assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        prop_assert_eq!(h.to_hex().len(), 64);
        prop_assert_eq!(h.to_base64().len(), 44);
    }
}

// ---------------------------------------------------------------------------------------
// Signing.
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn signed_notes_open(text in note_text(), name in key_name(), seed in any::<[u8; 32]>()) {
        let signer = Signer::parse(&key_texts(&name, &seed).0).expect("key");
        let signed = note::sign(&text, &[&signer]).expect("sign");
        let opened = note::open(signed.as_bytes(), &[signer.verifier()]).expect("open");
        prop_assert_eq!(opened.text, text);
        prop_assert_eq!(opened.verified_by, vec![name]);
        // Another key, even with the same name, does not verify it.
        let other = Signer::parse(&key_texts(signer.name(), &[seed[0] ^ 1; 32]).0).expect("key");
        prop_assert_eq!(
            note::open(signed.as_bytes(), &[other.verifier()]),
            Err(NoteError::Unverified)
        );
    }

    #[test]
    fn any_change_to_a_signed_checkpoint_text_is_caught(
        (c, signed) in signed_checkpoint(),
        pos in any::<usize>(),
        x in 1..=255u8,
    ) {
        let known = [test_signer().verifier()];
        prop_assert_eq!(open_checkpoint(signed.as_bytes(), &known).map(|v| v.checkpoint), Ok(c.clone()));
        // The text part: everything up to and including its final newline.
        let text_len = c.to_text().len();
        let mut bytes = signed.into_bytes();
        bytes[pos % text_len] ^= x;
        prop_assert!(note::open(&bytes, &known).is_err());
        prop_assert!(open_checkpoint(&bytes, &known).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// Parsers never panic.
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_survive_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(&bytes);
    }

    #[test]
    fn parsers_survive_random_text(text in "(?s).{0,300}") {
        parse_everything(text.as_bytes());
    }

    #[test]
    fn parsers_survive_near_misses(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let texts = valid_texts();
        let mut bytes = which.get(&texts).clone().into_bytes();
        for m in &mutations {
            bytes = mutate(&bytes, m);
        }
        parse_everything(&bytes);
    }

    #[test]
    fn parsers_survive_lines_of_the_right_kind(
        lines in prop::collection::vec(
            prop_oneof![
                Just("c2sp.org/tlog-proof@v1".to_owned()),
                Just("old 3".to_owned()),
                Just("index 2".to_owned()),
                Just("extra ".to_owned()),
                Just(String::new()),
                Just("\u{2014} PeterNeumann AAAA".to_owned()),
                Just("\u{2014}".to_owned()),
                hash().prop_map(|h| h.to_base64()),
                "[0-9]{0,22}",
                "[A-Za-z0-9+/=]{0,90}",
            ],
            0..12,
        ),
        final_newline in any::<bool>(),
    ) {
        let mut text = lines.join("\n");
        if final_newline {
            text.push('\n');
        }
        parse_everything(text.as_bytes());
    }
}

#[test]
fn near_miss_inputs_are_valid_before_mutation() {
    // The near-miss property is only as good as its seeds: check that they really parse.
    let texts = valid_texts();
    let known = [test_signer().verifier()];
    assert!(open_checkpoint(texts[0].as_bytes(), &known).is_ok());
    assert!(InclusionProof::parse(&texts[1]).is_ok());
    assert!(ConsistencyProof::parse(&texts[2]).is_ok());
    assert!(Verifier::parse(&texts[3]).is_ok());
    assert_eq!(parse_verifier_list(&texts[4]).map(|k| k.len()), Ok(1));
    assert!(Signer::parse(&texts[5]).is_ok());
    assert!(Hash::from_base64(&texts[6]).is_some());
    assert!(Hash::from_hex(&texts[7]).is_some());
}

#[test]
fn commented_out_keys_stay_comments() {
    // A key file line starting with `#` is skipped even when the rest is a valid vkey,
    // including a vkey whose key name itself starts with `#`.
    let vkey = test_signer().verifier().to_vkey();
    assert!(parse_verifier_list(&format!("#{vkey}\n")).is_err());
    let (_, hash_named) = key_texts("#log", &[7; 32]);
    assert!(Verifier::parse(&hash_named).is_ok());
    assert!(parse_verifier_list(&format!("{hash_named}\n")).is_err());
    assert_eq!(
        parse_verifier_list(&format!("#{vkey}\n{vkey}\n")).map(|k| k.len()),
        Ok(1)
    );
}
