//! Documents as the server takes them: `json::canonicalize_document` never panics, and
//! its output is a fixed point (the canonical form of a canonical document is itself).
#![no_main]

use graven::json::canonicalize_document;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(canonical) = canonicalize_document(data) {
        assert_eq!(canonicalize_document(&canonical).as_ref(), Ok(&canonical));
    }
});
