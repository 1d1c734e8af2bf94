//! `c2sp.org/tlog-proof@v1` inclusion proofs and tlog-witness `add-checkpoint` consistency
//! bodies: parsing (a parsed proof prints back to the same proof), and verification of
//! whatever parses against the seeds' entry, old checkpoint and key.
#![no_main]

use graven_verify::proof::{verify_consistency, verify_inclusion};
use graven_verify::{ConsistencyProof, InclusionProof, Verifier};

/// The key that signed the seeds (its private half was discarded).
const VKEY: &str = "graven.local/fuzz+d2f64780+AZTrpxs0axWg0Siicujg9tEdrv/0xqeF2ozLKYPikUvi";
/// The entry `seeds/tlog_proof/incl-1.txt` proves, and the checkpoint `cons-2.txt` extends.
const ENTRY: &[u8] = include_bytes!("../seeds/entry/entry-1.bin");
const OLD: &[u8] = include_bytes!("../seeds/checkpoint/cp2.txt");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = Verifier::parse(VKEY).expect("the seeds' key");
    if let Ok(p) = InclusionProof::parse(text) {
        assert_eq!(InclusionProof::parse(&p.to_text()).as_ref(), Ok(&p));
        let _ = verify_inclusion(&p, ENTRY, std::slice::from_ref(&key));
    }
    if let Ok(p) = ConsistencyProof::parse(text) {
        assert_eq!(ConsistencyProof::parse(&p.to_text()).as_ref(), Ok(&p));
        let _ = verify_consistency(&p, OLD, std::slice::from_ref(&key));
    }
});
