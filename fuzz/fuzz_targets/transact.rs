//! A Transact request from protobuf bytes to the prepared transaction the sequencer gets
//! (`service::transact_request`, then `engine::prepare::prepare`: names, JSON, limits,
//! the idempotency hash), under small limits so that the limit paths are reached.
#![no_main]

use graven::model::Limits;
use graven::pb::TransactRequest;
use prost::Message as _;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_document_bytes: 256,
        max_transaction_operations: 8,
        max_transaction_bytes: 1024,
        max_page_size: 10,
        ..Limits::default()
    };
    if let Ok(request) = TransactRequest::decode(data) {
        if let Ok((_, request)) = graven::service::transact_request(request) {
            let _ = graven::engine::prepare::prepare(request, &limits, "fuzz");
        }
    }
});
