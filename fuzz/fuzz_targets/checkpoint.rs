//! Signed notes and checkpoints: signature lines, key ids and Ed25519 (`note::open`,
//! `open_checkpoint` with the seeds' key), the checkpoint body, and key text. A parsed
//! checkpoint prints back to text that parses to the same checkpoint.
#![no_main]

use graven_verify::{Checkpoint, Signer, Verifier, note, open_checkpoint};

/// The key that signed the seeds (its private half was discarded).
const VKEY: &str = "graven.local/fuzz+d2f64780+AZTrpxs0axWg0Siicujg9tEdrv/0xqeF2ozLKYPikUvi";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = Verifier::parse(VKEY).expect("the seeds' key");
    let _ = open_checkpoint(data, std::slice::from_ref(&key));
    let _ = note::open(data, &[]);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Checkpoint::parse(text) {
            assert_eq!(Checkpoint::parse(&c.to_text()).as_ref(), Ok(&c));
        }
        let _ = Verifier::parse(text);
        let _ = Signer::parse(text);
        let _ = note::parse_verifier_list(text);
    }
});
