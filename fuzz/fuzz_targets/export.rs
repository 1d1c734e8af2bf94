//! Export files: the header, records and trailer (`ExportReader`) and the whole audit
//! (`export::audit`) with the seeds' key.
#![no_main]

use graven_verify::Verifier;
use graven_verify::export::{ExportReader, audit};

/// The key that signed the seeds (its private half was discarded).
const VKEY: &str = "graven.local/fuzz+d2f64780+AZTrpxs0axWg0Siicujg9tEdrv/0xqeF2ozLKYPikUvi";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = Verifier::parse(VKEY).expect("the seeds' key");
    if let Ok(reader) = ExportReader::new(data) {
        let _ = audit(reader, std::slice::from_ref(&key), &mut |_, _| {});
    }
});
