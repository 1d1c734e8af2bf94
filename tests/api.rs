//! Every RPC of the three services, in-process, with every error code the API promises.

use graven::engine::Config;
use graven::pb;
use graven::pb::check::Condition;
use graven_verify::{
    CompactRange, Entry, Hash, Operation, Signer, Verifier, check_consistency, check_inclusion,
    leaf_hash, open_checkpoint,
};
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::util::*;

fn verifier(info: &pb::LedgerInfo) -> Verifier {
    Verifier::parse(&info.vkey).expect("vkey")
}

/// Opens a checkpoint note with the ledger's key and returns (size, root).
fn open(note: &str, key: &Verifier) -> (u64, Hash) {
    let c = open_checkpoint(note.as_bytes(), std::slice::from_ref(key))
        .expect("checkpoint verifies")
        .checkpoint;
    (c.size, c.root)
}

fn hashes(raw: &[Vec<u8>]) -> Vec<Hash> {
    raw.iter()
        .map(|h| Hash(h.as_slice().try_into().expect("32-byte hash")))
        .collect()
}

#[tokio::test]
async fn ledger_lifecycle_and_errors() {
    let mut s = start().await;
    let info = s
        .admin
        .create_ledger(pb::CreateLedgerRequest {
            name: "books".into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(info.origin, "graven.local/books");
    assert_eq!(info.size, 0);
    assert!(info.deletion_protection, "protection is on by default");
    let key = verifier(&info);
    assert_eq!(key.name(), info.origin, "the key name is the origin");
    assert_eq!(open(&info.checkpoint, &key), (0, graven_verify::EMPTY_ROOT));

    assert_code(
        s.admin
            .create_ledger(pb::CreateLedgerRequest {
                name: "books".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "books",
    );
    for bad in ["", "Books", "a/b", "../x", &"x".repeat(64)] {
        assert_code(
            s.admin
                .create_ledger(pb::CreateLedgerRequest {
                    name: bad.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "ledger name",
        );
    }
    assert_code(
        s.admin
            .describe_ledger(pb::DescribeLedgerRequest {
                name: "nope".into(),
            })
            .await,
        Code::NotFound,
        "\"nope\"",
    );

    let list = s
        .admin
        .list_ledgers(pb::ListLedgersRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.ledgers.len(), 1);
    assert_eq!(list.ledgers[0].vkey, info.vkey);

    assert_code(
        s.admin
            .delete_ledger(pb::DeleteLedgerRequest {
                name: "books".into(),
            })
            .await,
        Code::FailedPrecondition,
        "deletion protection",
    );
    let updated = s
        .admin
        .update_ledger(pb::UpdateLedgerRequest {
            name: "books".into(),
            deletion_protection: Some(false),
        })
        .await
        .expect("update")
        .into_inner();
    assert!(!updated.deletion_protection);
    s.admin
        .delete_ledger(pb::DeleteLedgerRequest {
            name: "books".into(),
        })
        .await
        .expect("delete");
    assert_code(
        s.admin
            .describe_ledger(pb::DescribeLedgerRequest {
                name: "books".into(),
            })
            .await,
        Code::NotFound,
        "books",
    );
    assert!(
        !s.dir.path().join("ledgers/books").exists(),
        "the folder is gone"
    );
}

#[tokio::test]
async fn imported_signing_key_must_match_the_origin() {
    let mut s = start().await;
    let signer = Signer::generate("graven.local/imported").expect("keygen");
    let info = s
        .admin
        .create_ledger(pb::CreateLedgerRequest {
            name: "imported".into(),
            signing_key: signer.to_private_key(),
            deletion_protection_off: false,
        })
        .await
        .expect("create with key")
        .into_inner();
    assert_eq!(info.vkey, signer.verifier().to_vkey());
    let wrong = Signer::generate("elsewhere/imported").expect("keygen");
    assert_code(
        s.admin
            .create_ledger(pb::CreateLedgerRequest {
                name: "other".into(),
                signing_key: wrong.to_private_key(),
                deletion_protection_off: false,
            })
            .await,
        Code::InvalidArgument,
        "signing_key",
    );
    assert_code(
        s.admin
            .create_ledger(pb::CreateLedgerRequest {
                name: "other2".into(),
                signing_key: "PRIVATE+KEY+garbage".into(),
                deletion_protection_off: false,
            })
            .await,
        Code::InvalidArgument,
        "signing_key",
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.dir.path().join("ledgers/imported/signing.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the signing key is owner-only");
    }
}

#[tokio::test]
async fn tables_create_list_drop_and_reactivate() {
    let mut s = start().await;
    s.ledger("l", &["orders"]).await;
    assert_code(
        s.admin
            .create_table(pb::CreateTableRequest {
                ledger: "l".into(),
                table: "orders".into(),
            })
            .await,
        Code::AlreadyExists,
        "orders",
    );
    assert_code(
        s.admin
            .create_table(pb::CreateTableRequest {
                ledger: "l".into(),
                table: "9bad".into(),
            })
            .await,
        Code::InvalidArgument,
        "table name",
    );
    s.transact("l", vec![insert("orders", "o1", r#"{"n":1}"#)])
        .await
        .expect("insert");
    let tables = s
        .admin
        .list_tables(pb::ListTablesRequest { ledger: "l".into() })
        .await
        .expect("list")
        .into_inner()
        .tables;
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].name, "orders");

    s.admin
        .drop_table(pb::DropTableRequest {
            ledger: "l".into(),
            table: "orders".into(),
        })
        .await
        .expect("drop");
    assert_code(
        s.transact("l", vec![insert("orders", "o2", "{}")]).await,
        Code::NotFound,
        "table \"orders\"",
    );
    assert_code(
        s.docs
            .get_document(pb::GetDocumentRequest {
                ledger: "l".into(),
                table: "orders".into(),
                id: "o1".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "orders",
    );
    assert_code(
        s.admin
            .drop_table(pb::DropTableRequest {
                ledger: "l".into(),
                table: "orders".into(),
            })
            .await,
        Code::NotFound,
        "orders",
    );
    // Creating it again brings its documents back: the journal never forgets.
    s.admin
        .create_table(pb::CreateTableRequest {
            ledger: "l".into(),
            table: "orders".into(),
        })
        .await
        .expect("recreate");
    let doc = s
        .docs
        .get_document(pb::GetDocumentRequest {
            ledger: "l".into(),
            table: "orders".into(),
            id: "o1".into(),
            ..Default::default()
        })
        .await
        .expect("the document is back")
        .into_inner()
        .revision
        .expect("revision");
    assert_eq!(doc.json, br#"{"n":1}"#);
}

#[tokio::test]
async fn transactions_write_revisions_with_receipts_that_prove_them() {
    let mut s = start().await;
    let info = s.ledger("l", &["a", "b"]).await;
    let key = verifier(&info);

    let r = s
        .transact(
            "l",
            vec![
                insert("a", "1", r#"{"z":1,"a":[1.0,2]}"#),
                insert("b", "", r#"{"generated":true}"#),
            ],
        )
        .await
        .expect("insert two");
    assert_eq!((r.tx_id, r.first_index, r.revisions), (0, 0, 2));
    assert_eq!(r.results[0].index, Some(0));
    assert_eq!(r.results[1].index, Some(1));
    let generated = r.results[1].id.clone();
    assert_eq!(
        generated.len(),
        32,
        "server-generated ids are 32 hex digits"
    );
    let (size, root) = open(&r.checkpoint, &key);
    assert_eq!(size, 2);

    // Each revision's entry is in the receipt's checkpoint.
    for res in &r.results {
        let index = res.index.expect("index");
        let entry = s
            .proofs
            .get_entry(pb::GetEntryRequest {
                ledger: "l".into(),
                index,
            })
            .await
            .expect("entry")
            .into_inner();
        let e = Entry::decode(&entry.entry).expect("entry decodes");
        assert_eq!(
            (e.table.as_str(), e.id.as_str()),
            (res.table.as_str(), res.id.as_str())
        );
        assert_eq!(e.principal, "anonymous");
        assert_eq!(e.body_hash, Some(Hash(Sha256::digest(&entry.json).into())));
        let proof = s
            .proofs
            .prove_inclusion(pb::ProveInclusionRequest {
                ledger: "l".into(),
                index,
                tree_size: size,
            })
            .await
            .expect("proof")
            .into_inner();
        check_inclusion(
            &hashes(&proof.hashes),
            index,
            size,
            &leaf_hash(&entry.entry),
            &root,
        )
        .expect("inclusion verifies");
    }

    // Documents are stored in canonical form (RFC 8785).
    let got = s
        .docs
        .get_document(pb::GetDocumentRequest {
            ledger: "l".into(),
            table: "a".into(),
            id: "1".into(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner()
        .revision
        .expect("revision");
    assert_eq!(got.json, br#"{"a":[1,2],"z":1}"#);

    let r = s
        .transact(
            "l",
            vec![
                update("a", "1", r#"{"v":2}"#, Some(0)),
                check("b", &generated, Condition::Version(0)),
                delete("b", &generated, None),
            ],
        )
        .await
        .expect("update, check, delete");
    assert_eq!((r.tx_id, r.first_index, r.revisions), (1, 2, 2));
    assert_eq!(r.results[0].version, 1);
    assert_eq!(r.results[1].index, None, "checks write nothing");
    assert_eq!(r.results[2].version, 1);
    assert_eq!(r.results[2].index, Some(3));
    let delete_entry = s
        .proofs
        .get_entry(pb::GetEntryRequest {
            ledger: "l".into(),
            index: 3,
        })
        .await
        .expect("entry")
        .into_inner();
    let e = Entry::decode(&delete_entry.entry).expect("decodes");
    assert_eq!(
        (e.operation, e.body_hash, e.tx_position, e.tx_revisions),
        (Operation::Delete, None, 1, 2)
    );
    assert!(delete_entry.json.is_empty());
}

#[tokio::test]
async fn failed_transactions_write_nothing_and_name_the_operation() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Config::new(dir.path());
    config.limits.max_document_bytes = 1000;
    config.limits.max_transaction_operations = 5;
    config.limits.max_transaction_bytes = 3000;
    let mut s = start_with(config, dir).await;
    s.ledger("l", &["t"]).await;
    s.transact(
        "l",
        vec![insert("t", "x", r#"{"v":0}"#), insert("t", "gone", "{}")],
    )
    .await
    .expect("setup");
    s.transact("l", vec![delete("t", "gone", None)])
        .await
        .expect("delete");
    let before = s
        .proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: "l".into(),
            size: None,
        })
        .await
        .expect("checkpoint")
        .into_inner();

    let cases: Vec<(Vec<pb::operation::Kind>, Code, &str)> = vec![
        (
            vec![insert("t", "new", "{}"), insert("t", "x", "{}")],
            Code::AlreadyExists,
            "operation 1 (insert)",
        ),
        (
            vec![insert("t", "gone", "{}")],
            Code::AlreadyExists,
            "not reused",
        ),
        (
            vec![insert("t", "new", "{}"), update("t", "nope", "{}", None)],
            Code::NotFound,
            "operation 1 (update)",
        ),
        (
            vec![delete("t", "gone", None)],
            Code::NotFound,
            "operation 0 (delete)",
        ),
        (
            vec![insert("t", "new", "{}"), update("t", "x", "{}", Some(7))],
            Code::FailedPrecondition,
            "operation 1 (update)",
        ),
        (
            vec![insert("t", "new", "{}"), delete("t", "x", Some(3))],
            Code::FailedPrecondition,
            "expected version 3",
        ),
        (
            vec![
                insert("t", "new", "{}"),
                check("t", "x", Condition::NotExists(true)),
            ],
            Code::FailedPrecondition,
            "operation 1 (check)",
        ),
        (
            vec![
                insert("t", "new", "{}"),
                check("t", "gone", Condition::Exists(true)),
            ],
            Code::FailedPrecondition,
            "expected it to exist",
        ),
        (
            vec![
                insert("t", "new", "{}"),
                check("t", "x", Condition::Version(1)),
            ],
            Code::FailedPrecondition,
            "expected version 1",
        ),
        (
            vec![insert("nope", "new", "{}")],
            Code::NotFound,
            "table \"nope\"",
        ),
        (
            vec![insert("t", "new", "[1]")],
            Code::InvalidArgument,
            "operations[0].json",
        ),
        (
            vec![insert("t", "new", "{bad")],
            Code::InvalidArgument,
            "operations[0].json",
        ),
        (
            vec![insert("t", "new", r#"{"a":1,"a":2}"#)],
            Code::InvalidArgument,
            "duplicate",
        ),
        (
            vec![insert("t", "new", r#"{"n":12345678901234567890}"#)],
            Code::InvalidArgument,
            "2^53",
        ),
        (
            vec![insert("t", "a\u{0}b", "{}")],
            Code::InvalidArgument,
            "operations[0].id",
        ),
        (
            vec![insert("t-x", "a", "{}")],
            Code::InvalidArgument,
            "operations[0].table",
        ),
        (
            vec![insert("t", "new", "{}"), update("t", "new", "{}", None)],
            Code::InvalidArgument,
            "at most once",
        ),
        (
            vec![check("t", "x", Condition::Exists(true))],
            Code::InvalidArgument,
            "at least one insert",
        ),
        (vec![], Code::InvalidArgument, "at least one operation"),
        (
            vec![insert(
                "t",
                "big",
                &format!("{{\"s\":\"{}\"}}", "x".repeat(1000)),
            )],
            Code::ResourceExhausted,
            "over the limit of 1000",
        ),
        (
            (0..6)
                .map(|i| insert("t", &format!("n{i}"), "{}"))
                .collect(),
            Code::ResourceExhausted,
            "6 operations",
        ),
        (
            (0..4)
                .map(|i| {
                    insert(
                        "t",
                        &format!("n{i}"),
                        &format!("{{\"s\":\"{}\"}}", "x".repeat(900)),
                    )
                })
                .collect(),
            Code::ResourceExhausted,
            "3000 bytes",
        ),
        (
            vec![
                check("t", "x", Condition::Exists(false)),
                insert("t", "n", "{}"),
            ],
            Code::InvalidArgument,
            "operations[0].condition",
        ),
    ];
    for (ops, code, needle) in cases {
        let shown = format!("{ops:?}");
        let result = s.transact("l", ops).await;
        assert!(result.is_err(), "{shown} should fail");
        assert_code(result, code, needle);
    }
    assert_code(
        s.transact("missing", vec![insert("t", "n", "{}")]).await,
        Code::NotFound,
        "ledger \"missing\"",
    );

    let after = s
        .proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: "l".into(),
            size: None,
        })
        .await
        .expect("checkpoint")
        .into_inner();
    assert_eq!(after, before, "no failed transaction wrote anything");
    assert_code(
        s.docs
            .get_document(pb::GetDocumentRequest {
                ledger: "l".into(),
                table: "t".into(),
                id: "new".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "\"new\"",
    );
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_receipt() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    let first = s
        .docs
        .transact(tx("l", vec![insert("t", "", r#"{"a":1}"#)], "key-1"))
        .await
        .expect("first")
        .into_inner();
    assert!(!first.replayed);
    let again = s
        .docs
        .transact(tx("l", vec![insert("t", "", r#"{"a":1}"#)], "key-1"))
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(
        pb::Receipt {
            replayed: false,
            ..again.clone()
        },
        first,
        "the retry gets the first receipt, generated id and checkpoint included"
    );
    let size = s
        .proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: "l".into(),
            size: None,
        })
        .await
        .expect("checkpoint")
        .into_inner()
        .size;
    assert_eq!(size, 1, "the retry wrote nothing");
    assert_code(
        s.docs
            .transact(tx("l", vec![insert("t", "", r#"{"a":2}"#)], "key-1"))
            .await,
        Code::FailedPrecondition,
        "idempotency key",
    );
    // A failed transaction does not use up its key.
    assert_code(
        s.docs
            .transact(tx("l", vec![update("t", "nope", "{}", None)], "key-2"))
            .await,
        Code::NotFound,
        "nope",
    );
    s.transact("l", vec![insert("t", "nope", "{}")])
        .await
        .expect("insert");
    s.docs
        .transact(tx("l", vec![update("t", "nope", "{}", None)], "key-2"))
        .await
        .expect("the key works once the transaction can commit");
}

#[tokio::test]
async fn reads_history_scan_and_read_proofs() {
    let mut s = start().await;
    let info = s.ledger("l", &["t", "other"]).await;
    let key = verifier(&info);
    for i in 0..5 {
        s.transact(
            "l",
            vec![insert("t", &format!("d{i}"), &format!("{{\"v\":{i}}}"))],
        )
        .await
        .expect("insert");
    }
    s.transact("l", vec![insert("other", "zzz", "{}")])
        .await
        .expect("other table");
    for v in 0..3u64 {
        s.transact(
            "l",
            vec![update("t", "d1", &format!("{{\"v\":{}}}", v + 10), Some(v))],
        )
        .await
        .expect("update");
    }
    s.transact("l", vec![delete("t", "d3", None)])
        .await
        .expect("delete");

    let get = |version: Option<u64>, proof: Option<u64>| pb::GetDocumentRequest {
        ledger: "l".into(),
        table: "t".into(),
        id: "d1".into(),
        version,
        proof: proof.map(|tree_size| pb::ProofRequest { tree_size }),
    };
    let current = s
        .docs
        .get_document(get(None, Some(0)))
        .await
        .expect("get")
        .into_inner()
        .revision
        .expect("rev");
    assert_eq!(
        (current.version, current.json.as_slice()),
        (3, &br#"{"v":12}"#[..])
    );
    let proof = current.proof.expect("proof asked for");
    let (size, root) = open(&proof.checkpoint, &key);
    assert_eq!(size, 10);
    check_inclusion(
        &hashes(&proof.hashes),
        current.index,
        size,
        &leaf_hash(&current.entry),
        &root,
    )
    .expect("read proof verifies");

    let old = s
        .docs
        .get_document(get(Some(0), Some(2)))
        .await
        .expect("get v0")
        .into_inner()
        .revision
        .expect("rev");
    assert_eq!(old.json, br#"{"v":1}"#);
    let proof = old.proof.expect("proof");
    assert_eq!(proof.tree_size, 2);
    let (size, root) = open(&proof.checkpoint, &key);
    check_inclusion(
        &hashes(&proof.hashes),
        old.index,
        size,
        &leaf_hash(&old.entry),
        &root,
    )
    .expect("proof at an older size verifies");

    assert_code(
        s.docs.get_document(get(Some(9), None)).await,
        Code::NotFound,
        "no version 9",
    );
    assert_code(
        s.docs.get_document(get(Some(0), Some(1))).await,
        Code::InvalidArgument,
        "tree_size 1",
    );
    assert_code(
        s.docs.get_document(get(None, Some(99))).await,
        Code::OutOfRange,
        "tree_size 99",
    );
    let mut deleted = get(None, None);
    deleted.id = "d3".into();
    assert_code(
        s.docs.get_document(deleted.clone()).await,
        Code::NotFound,
        "deleted at version 1",
    );
    deleted.version = Some(0);
    s.docs
        .get_document(deleted)
        .await
        .expect("earlier versions of deleted documents stay readable");

    // History, paged: every page size, so a page boundary falls on every version,
    // the current one included (its row is the current-state row).
    for page_size in 1..=5 {
        let mut versions = Vec::new();
        let mut token = String::new();
        loop {
            let page = s
                .docs
                .history(pb::HistoryRequest {
                    ledger: "l".into(),
                    table: "t".into(),
                    id: "d1".into(),
                    page_size,
                    page_token: token,
                    proof: None,
                })
                .await
                .expect("history")
                .into_inner();
            assert!(page.revisions.len() <= page_size as usize);
            versions.extend(page.revisions.iter().map(|r| r.version));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(versions, vec![0, 1, 2, 3], "page size {page_size}");
    }

    // Scan: live documents only, by id, paged.
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .docs
            .scan(pb::ScanRequest {
                ledger: "l".into(),
                table: "t".into(),
                page_size: 3,
                page_token: token,
                proof: Some(pb::ProofRequest { tree_size: 0 }),
            })
            .await
            .expect("scan")
            .into_inner();
        for r in &page.revisions {
            let p = r.proof.as_ref().expect("proof");
            let (size, root) = open(&p.checkpoint, &key);
            check_inclusion(
                &hashes(&p.hashes),
                r.index,
                size,
                &leaf_hash(&r.entry),
                &root,
            )
            .expect("scan proof verifies");
            ids.push(r.id.clone());
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids, vec!["d0", "d1", "d2", "d4"]);

    assert_code(
        s.docs
            .scan(pb::ScanRequest {
                ledger: "l".into(),
                table: "t".into(),
                page_size: 5000,
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "page_size",
    );
    assert_code(
        s.docs
            .scan(pb::ScanRequest {
                ledger: "l".into(),
                table: "t".into(),
                page_token: "not-hex".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_code(
        s.docs
            .history(pb::HistoryRequest {
                ledger: "l".into(),
                table: "t".into(),
                id: "d1".into(),
                page_token: "007".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
}

#[tokio::test]
async fn every_inclusion_and_consistency_proof_verifies() {
    let mut s = start().await;
    let info = s.ledger("l", &["t"]).await;
    let key = verifier(&info);
    let mut checkpoints = vec![info.checkpoint.clone()];
    for i in 0..12 {
        let r = s
            .transact("l", vec![insert("t", &format!("d{i}"), "{}")])
            .await
            .expect("insert");
        checkpoints.push(r.checkpoint);
    }
    let mut entries = Vec::new();
    for index in 0..12 {
        entries.push(
            s.proofs
                .get_entry(pb::GetEntryRequest {
                    ledger: "l".into(),
                    index,
                })
                .await
                .expect("entry")
                .into_inner()
                .entry,
        );
    }
    assert_code(
        s.proofs
            .get_entry(pb::GetEntryRequest {
                ledger: "l".into(),
                index: 12,
            })
            .await,
        Code::OutOfRange,
        "index 12",
    );
    // The journal recomputes to the signed root.
    let mut range = CompactRange::new();
    for e in &entries {
        range.append(leaf_hash(e));
    }
    assert_eq!(open(&checkpoints[12], &key), (12, range.root()));

    for size in 1..=12u64 {
        let (_, root) = open(&checkpoints[size as usize], &key);
        for index in 0..size {
            let p = s
                .proofs
                .prove_inclusion(pb::ProveInclusionRequest {
                    ledger: "l".into(),
                    index,
                    tree_size: size,
                })
                .await
                .expect("inclusion")
                .into_inner();
            assert_eq!(
                p.checkpoint, checkpoints[size as usize],
                "checkpoints are deterministic"
            );
            check_inclusion(
                &hashes(&p.hashes),
                index,
                size,
                &leaf_hash(&entries[index as usize]),
                &root,
            )
            .expect("inclusion verifies");
        }
        for old in 0..=size {
            let p = s
                .proofs
                .prove_consistency(pb::ProveConsistencyRequest {
                    ledger: "l".into(),
                    old_size: old,
                    new_size: size,
                })
                .await
                .expect("consistency")
                .into_inner();
            let (_, old_root) = open(&checkpoints[old as usize], &key);
            check_consistency(&hashes(&p.hashes), old, size, &old_root, &root)
                .expect("consistency verifies");
        }
    }
    // Past the ledger's size now is OUT_OF_RANGE (it may exist later); sizes that
    // contradict each other are INVALID_ARGUMENT. A refusal of the latest size names the
    // size it used, not 0.
    for (index, tree_size, code, needle) in [
        (
            12,
            0,
            Code::OutOfRange,
            "index 12 is out of range: it must be below the tree size 12",
        ),
        (
            3,
            3,
            Code::InvalidArgument,
            "index 3 is out of range: it must be below the tree size 3",
        ),
        (0, 13, Code::OutOfRange, "tree_size 13 is out of range"),
    ] {
        assert_code(
            s.proofs
                .prove_inclusion(pb::ProveInclusionRequest {
                    ledger: "l".into(),
                    index,
                    tree_size,
                })
                .await,
            code,
            needle,
        );
    }
    for (old_size, new_size, code) in [
        (5, 4, Code::InvalidArgument),
        (0, 13, Code::OutOfRange),
        (13, 0, Code::OutOfRange),
    ] {
        assert_code(
            s.proofs
                .prove_consistency(pb::ProveConsistencyRequest {
                    ledger: "l".into(),
                    old_size,
                    new_size,
                })
                .await,
            code,
            "out of range",
        );
    }
    let vkey = s
        .proofs
        .get_key(pb::GetKeyRequest { ledger: "l".into() })
        .await
        .expect("key")
        .into_inner()
        .vkey;
    assert_eq!(vkey, info.vkey);
}

#[tokio::test]
async fn state_survives_a_restart_and_writes_continue() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_owned();
    let (key, before) = {
        let mut s = start_with(Config::new(&path), tempfile::tempdir().expect("unused")).await;
        let info = s.ledger("l", &["t"]).await;
        for i in 0..7 {
            s.transact("l", vec![insert("t", &format!("d{i}"), "{}")])
                .await
                .expect("insert");
        }
        let cp = s
            .proofs
            .get_checkpoint(pb::GetCheckpointRequest {
                ledger: "l".into(),
                size: None,
            })
            .await
            .expect("checkpoint")
            .into_inner();
        s.engine.close();
        // Requests after shutdown are refused, not lost.
        assert_code(
            s.transact("l", vec![insert("t", "late", "{}")]).await,
            Code::Unavailable,
            "shutting down",
        );
        (verifier(&info), cp)
    };
    let mut s = start_with(Config::new(&path), dir).await;
    let after = s
        .proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: "l".into(),
            size: None,
        })
        .await
        .expect("checkpoint")
        .into_inner();
    assert_eq!(after, before, "the same signed state after a restart");
    let r = s
        .transact("l", vec![update("t", "d3", r#"{"x":1}"#, Some(0))])
        .await
        .expect("write after restart");
    assert_eq!(
        (r.tx_id, r.first_index),
        (7, 7),
        "ids continue where they stopped"
    );
    let (old_size, old_root) = open(&before.checkpoint, &key);
    let (new_size, new_root) = open(&r.checkpoint, &key);
    let p = s
        .proofs
        .prove_consistency(pb::ProveConsistencyRequest {
            ledger: "l".into(),
            old_size,
            new_size,
        })
        .await
        .expect("consistency")
        .into_inner();
    check_consistency(&hashes(&p.hashes), old_size, new_size, &old_root, &new_root)
        .expect("the tree after restart extends the one before");
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let s = start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    for service in ["graven.v1.Admin", "graven.v1.Documents", "graven.v1.Proofs"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(s.channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection response")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "graven.v1.Admin",
        "graven.v1.Documents",
        "graven.v1.Proofs",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }

    // Regression: only v1 was served, and clients that speak v1alpha (grpcio-reflection's
    // Python client among them) could not list the services.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let response = Alpha::new(s.channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("v1alpha reflection")
        .into_inner()
        .message()
        .await
        .expect("v1alpha response")
        .expect("one response");
    let Some(AlphaResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a v1alpha service list");
    };
    let alpha: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        alpha.iter().any(|n| n == "graven.v1.Documents"),
        "{alpha:?}"
    );
}

/// What a client had to work around: the checkpoint of an older size (it cut one out of
/// an inclusion proof) and a receipt's tree size (it parsed the checkpoint text).
#[tokio::test]
async fn older_checkpoints_and_receipt_tree_sizes() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    let key = Verifier::parse(
        &s.proofs
            .get_key(pb::GetKeyRequest { ledger: "l".into() })
            .await
            .expect("key")
            .into_inner()
            .vkey,
    )
    .expect("vkey");
    let mut receipts = Vec::new();
    for i in 0..5 {
        let r = s
            .transact("l", vec![insert("t", &format!("d{i}"), "{}")])
            .await
            .expect("insert");
        let (size, _) = open(&r.checkpoint, &key);
        assert_eq!(
            r.tree_size, size,
            "the receipt's tree size is its checkpoint's"
        );
        receipts.push(r);
    }
    for r in &receipts {
        let older = s
            .proofs
            .get_checkpoint(pb::GetCheckpointRequest {
                ledger: "l".into(),
                size: Some(r.tree_size),
            })
            .await
            .expect("an older checkpoint")
            .into_inner();
        assert_eq!(older.size, r.tree_size);
        assert_eq!(
            older.checkpoint, r.checkpoint,
            "the same bytes the receipt had"
        );
    }
    let empty = s
        .proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: "l".into(),
            size: Some(0),
        })
        .await
        .expect("the empty tree's checkpoint")
        .into_inner();
    assert_eq!(
        open(&empty.checkpoint, &key),
        (0, graven_verify::EMPTY_ROOT)
    );
    assert_code(
        s.proofs
            .get_checkpoint(pb::GetCheckpointRequest {
                ledger: "l".into(),
                size: Some(6),
            })
            .await,
        Code::OutOfRange,
        "size 6 is out of range: it is beyond the journal (size 5)",
    );
}

/// Regression: a retry committed in the same group-commit batch as its first attempt got
/// a checkpoint of the mid-batch size instead of the first receipt's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_in_the_same_batch_gets_the_identical_receipt() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    for round in 0..20 {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let mut docs = s.docs.clone();
            tasks.push(tokio::spawn(async move {
                docs.transact(tx(
                    "l",
                    vec![insert("t", &format!("r{round}-{i}"), "{}")],
                    "",
                ))
                .await
                .map(|r| r.into_inner())
            }));
        }
        let key = format!("key-{round}");
        let mut retries = Vec::new();
        for _ in 0..2 {
            let mut docs = s.docs.clone();
            let key = key.clone();
            retries.push(tokio::spawn(async move {
                docs.transact(tx(
                    "l",
                    vec![insert("t", &format!("{key}-doc"), "{}")],
                    &key,
                ))
                .await
                .map(|r| r.into_inner())
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("insert");
        }
        let mut receipts = Vec::new();
        for r in retries {
            receipts.push(r.await.expect("task").expect("keyed insert"));
        }
        let later = s
            .docs
            .transact(tx(
                "l",
                vec![insert("t", &format!("{key}-doc"), "{}")],
                &key,
            ))
            .await
            .expect("retry")
            .into_inner();
        let first = receipts
            .iter()
            .find(|r| !r.replayed)
            .expect("one first attempt")
            .clone();
        for r in receipts.iter().chain([&later]) {
            assert_eq!(
                pb::Receipt {
                    replayed: false,
                    ..r.clone()
                },
                first,
                "round {round}: every answer to the key is the first receipt"
            );
        }
    }
}

/// The library API enforces the transaction shape too, without using up transaction ids.
#[tokio::test]
async fn library_callers_get_the_same_shape_rules() {
    use graven::engine::prepare::prepare;
    use graven::model::{Condition as C, Limits, RequestOp, TransactRequest};
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    let ledger = s.engine.ledger("l").expect("ledger");
    let tx = |ops| {
        let request = TransactRequest {
            ops,
            idempotency_key: None,
        };
        prepare(request, &Limits::default(), "lib").expect("prepared")
    };
    let check_only = tx(vec![RequestOp::Check {
        table: "t".into(),
        id: "x".into(),
        condition: C::NotExists,
    }]);
    let err = ledger.transact(check_only).await.expect_err("no revision");
    assert_eq!(err.kind, graven::error::ErrorKind::InvalidArgument);
    let twice = tx(vec![
        RequestOp::Insert {
            table: "t".into(),
            id: Some("x".into()),
            json: b"{}".to_vec(),
        },
        RequestOp::Delete {
            table: "t".into(),
            id: "x".into(),
            expected_version: None,
        },
    ]);
    let err = ledger
        .transact(twice)
        .await
        .expect_err("one write per document");
    assert_eq!(err.kind, graven::error::ErrorKind::InvalidArgument);
    let ok = ledger
        .transact(tx(vec![RequestOp::Insert {
            table: "t".into(),
            id: Some("x".into()),
            json: b"{}".to_vec(),
        }]))
        .await
        .expect("a valid transaction");
    assert_eq!(ok.tx_id, 0, "refused transactions use no id");
}
