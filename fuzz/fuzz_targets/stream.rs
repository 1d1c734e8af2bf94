//! Change-stream lines (`graven tail` output) through `StreamVerifier`, one line at a time,
//! with the seeds' key.
#![no_main]

use graven_verify::Verifier;
use graven_verify::stream::StreamVerifier;

/// The key that signed the seeds (its private half was discarded).
const VKEY: &str = "graven.local/fuzz+d2f64780+AZTrpxs0axWg0Siicujg9tEdrv/0xqeF2ozLKYPikUvi";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut verifier = StreamVerifier::new(vec![Verifier::parse(VKEY).expect("the seeds' key")]);
    for line in text.lines() {
        if verifier.push_line(line).is_err() {
            return;
        }
    }
});
