//! Journal entries: `Entry::decode` never panics, and what it accepts is the one encoding
//! of that entry (decode then encode gives back the same bytes).
#![no_main]

use graven_verify::Entry;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(e.encode().as_deref(), Ok(data));
    }
});
