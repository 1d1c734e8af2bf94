//! Hostile and bad input over the API, in-process: each case of docs/BAD_INPUT.md that
//! `api` does not already cover. Every refused request must get the documented code and a
//! message naming the field or operation, and change nothing: the same signed checkpoint,
//! ledgers, tables and files afterwards, and the server still answering.

use graven::engine::Config;
use graven::pb;
use graven::pb::check::Condition;
use graven::pb::operation::Kind;
use tonic::Code;

use crate::util::*;

const L: &str = "h";

/// Everything a refused request must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct State {
    checkpoint: pb::GetCheckpointResponse,
    ledgers: Vec<(String, u64)>,
    tables: Vec<String>,
    folders: Vec<String>,
}

/// A server with ledger `h`, table `t`, and a few revisions: `d1` at version 1, `gone`
/// deleted.
async fn fixture() -> TestServer {
    let dir = tempfile::tempdir().expect("dir");
    fixture_with(Config::new(dir.path()), dir).await
}

async fn fixture_with(config: Config, dir: tempfile::TempDir) -> TestServer {
    let mut s = start_with(config, dir).await;
    s.ledger(L, &["t"]).await;
    s.transact(
        L,
        vec![insert("t", "d1", r#"{"v":0}"#), insert("t", "gone", "{}")],
    )
    .await
    .expect("setup");
    s.transact(
        L,
        vec![
            update("t", "d1", r#"{"v":1}"#, Some(0)),
            delete("t", "gone", None),
        ],
    )
    .await
    .expect("setup");
    s
}

async fn state(s: &mut TestServer) -> State {
    let checkpoint = s
        .proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: L.into(),
            size: None,
        })
        .await
        .expect("checkpoint")
        .into_inner();
    let ledgers = s
        .admin
        .list_ledgers(pb::ListLedgersRequest {})
        .await
        .expect("list ledgers")
        .into_inner()
        .ledgers
        .into_iter()
        .map(|l| (l.name, l.size))
        .collect();
    let tables = s
        .admin
        .list_tables(pb::ListTablesRequest { ledger: L.into() })
        .await
        .expect("list tables")
        .into_inner()
        .tables
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut folders: Vec<String> = std::fs::read_dir(s.dir.path().join("ledgers"))
        .expect("ledgers folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    State {
        checkpoint,
        ledgers,
        tables,
        folders,
    }
}

/// Runs each refused request in turn: the code, the needle in the message, and no change.
macro_rules! refused {
    ($s:expr, [$(($call:expr, $code:expr, $needle:expr)),* $(,)?]) => {{
        let before = state(&mut $s).await;
        $(
            let what = stringify!($call);
            let result = $call;
            match result {
                Ok(v) => panic!("{what}: expected {:?} ({}), got {v:?}", $code, $needle),
                Err(status) => {
                    assert_eq!(status.code(), $code, "{what}: message {:?}", status.message());
                    assert!(
                        status.message().contains($needle),
                        "{what}: message {:?} should contain {:?}",
                        status.message(),
                        $needle
                    );
                }
            }
            assert_eq!(state(&mut $s).await, before, "{what} changed the server's state");
        )*
    }};
}

fn two_ops_second_json(json: &[u8]) -> pb::TransactRequest {
    let mut request = tx(
        L,
        vec![insert("t", "fine", "{}"), update("t", "d1", "{}", Some(1))],
        "",
    );
    if let Some(Kind::Update(u)) = request.operations[1].kind.as_mut() {
        u.json = json.to_vec();
    }
    request
}

#[tokio::test]
async fn malformed_json_is_refused_naming_the_operation() {
    let mut s = fixture().await;
    let cases: Vec<(&[u8], &str)> = vec![
        (b"", "invalid JSON"),
        (b"   ", "invalid JSON"),
        (b"null", "must be a JSON object"),
        (b"true", "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b"\"text\"", "must be a JSON object"),
        (b"[]", "must be a JSON object"),
        (b"{", "invalid JSON"),
        (b"{\"a\"}", "invalid JSON"),
        (b"{\"a\":1,}", "invalid JSON"),
        (b"{'a':1}", "invalid JSON"),
        (b"{a:1}", "invalid JSON"),
        (b"{\"a\":1}{}", "invalid JSON"),
        (b"{\"a\":1} // comment", "invalid JSON"),
        (b"{/* comment */}", "invalid JSON"),
        (b"{\"a\":NaN}", "invalid JSON"),
        (b"{\"a\":Infinity}", "invalid JSON"),
        (b"{\"a\":01}", "invalid JSON"),
        (b"{\"a\":.5}", "invalid JSON"),
        (b"{\"a\":0x10}", "invalid JSON"),
        (b"{\"a\":\"\\x41\"}", "invalid JSON"),
        (b"{\"a\":\"\\ud800\"}", "invalid JSON"),
        (b"{\"a\":\"\\udc00\\ud800\"}", "invalid JSON"),
        (b"{\"a\":\"tab\there\"}", "invalid JSON"),
        (b"{\"a\":\"nul\0\"}", "invalid JSON"),
        (b"\xef\xbb\xbf{}", "invalid JSON"),
        (b"{\"a\":\"\xff\"}", "not UTF-8"),
        (b"{\"a\":\"\xc0\xaf\"}", "not UTF-8"),
        (b"{\"a\":\"\xed\xa0\x80\"}", "not UTF-8"),
        (b"{\"\xfe\":1}", "not UTF-8"),
        // UTF-16LE: valid UTF-8 (NUL bytes), not JSON.
        (b"{\x00\"\x00a\x00\"\x00:\x001\x00}\x00", "invalid JSON"),
        (
            b"{\"a\":1,\"b\":{\"c\":2,\"c\":3}}",
            "duplicate member name \"c\"",
        ),
        (b"{\"a\":1,\"\\u0061\":2}", "duplicate member name \"a\""),
    ];
    for (json, why) in cases {
        let shown = String::from_utf8_lossy(json).into_owned();
        let before = state(&mut s).await;
        let result = s.docs.transact(two_ops_second_json(json)).await;
        let status = result.expect_err(&shown);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{shown:?}: {status:?}"
        );
        assert!(
            status.message().starts_with("operations[1].json: ") && status.message().contains(why),
            "{shown:?}: message {:?} should name operations[1].json and say {why:?}",
            status.message()
        );
        assert_eq!(state(&mut s).await, before, "{shown:?} changed the state");
    }
}

#[tokio::test]
async fn deep_nesting_and_extreme_numbers() {
    let mut s = fixture().await;
    let nest = |depth: usize| format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
    let nest_objects =
        |depth: usize| format!("{}{}{}", "{\"a\":".repeat(depth), "1", "}".repeat(depth));
    let digits = format!("{{\"a\":{}}}", "9".repeat(10_000));
    let cases: Vec<(String, &str)> = vec![
        (nest(200), "recursion limit"),
        (nest(1_000_000), "recursion limit"),
        (nest_objects(200), "recursion limit"),
        (
            format!("{{\"a\":{}", "[".repeat(500_000)),
            "recursion limit",
        ),
        ("{\"a\":9007199254740993}".into(), "2^53"),
        ("{\"a\":-9007199254740993}".into(), "2^53"),
        // Beyond u64 as well: integers, however long, are never rounded to a double.
        ("{\"a\":[1,{\"b\":18446744073709551616}]}".into(), "2^53"),
        ("{\"a\":-99999999999999999999}".into(), "2^53"),
        // A double that RFC 8785 writes as an integer beyond 2^53 (1e20 is
        // 100000000000000000000): its canonical form could not be sent back.
        (
            "{\"a\":{\"b\":1e20}}".into(),
            "number at $.a.b is an integer beyond ±2^53",
        ),
        ("{\"a\":1e400}".into(), "out of range"),
        ("{\"a\":-1e400}".into(), "out of range"),
        (digits, "out of range"),
    ];
    for (json, why) in cases {
        let shown: String = json.chars().take(60).collect();
        let before = state(&mut s).await;
        let status = s
            .transact(L, vec![insert("t", "deep", &json)])
            .await
            .expect_err(&shown);
        assert_eq!(status.code(), Code::InvalidArgument, "{shown}: {status:?}");
        assert!(
            status.message().starts_with("operations[0].json: ") && status.message().contains(why),
            "{shown}: message {:?} should name operations[0].json and say {why:?}",
            status.message()
        );
        assert_eq!(state(&mut s).await, before, "{shown} changed the state");
    }

    // Within the limits: accepted, stored in canonical form. Numbers are IEEE doubles
    // (RFC 8785): the limits of a double apply, and a value too small for one is 0.
    for (json, stored) in [
        (nest(100), nest(100)),
        (
            r#"{"max":9007199254740992,"min":-9007199254740992}"#.to_owned(),
            r#"{"max":9007199254740992,"min":-9007199254740992}"#.to_owned(),
        ),
        (
            r#"{"big":1.7976931348623157e308,"tiny":5e-324,"under":1e-400,"neg":-0.0}"#.into(),
            r#"{"big":1.7976931348623157e+308,"neg":0,"tiny":5e-324,"under":0}"#.into(),
        ),
        (
            r#"{"long":0.10000000000000000000000000000001}"#.into(),
            r#"{"long":0.1}"#.into(),
        ),
    ] {
        let r = s
            .transact(L, vec![insert("t", "", &json)])
            .await
            .unwrap_or_else(|e| panic!("{json}: {e:?}"));
        let got = s
            .docs
            .get_document(pb::GetDocumentRequest {
                ledger: L.into(),
                table: "t".into(),
                id: r.results[0].id.clone(),
                ..Default::default()
            })
            .await
            .expect("read back")
            .into_inner()
            .revision
            .expect("revision");
        assert_eq!(String::from_utf8_lossy(&got.json), stored, "{json}");
    }
}

#[tokio::test]
async fn oversize_documents_and_transactions() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Config::new(dir.path());
    config.limits.max_document_bytes = 1000;
    let mut s = fixture_with(config, dir).await;
    let padded = |spaces: usize, body: &str| format!("{{{}{body}}}", " ".repeat(spaces));
    refused!(
        s,
        [
            // More than 4 times the limit is refused before it is parsed.
            (
                s.transact(L, vec![insert("t", "big", &padded(4001, ""))])
                    .await,
                Code::ResourceExhausted,
                "operations[0].json: 4003 bytes is far over the document limit of 1000 bytes"
            ),
            // The limit is on the canonical form, which can be longer than the input
            // (907 bytes here: 1e300 is 1e+300 in RFC 8785).
            (
                s.transact(
                    L,
                    vec![
                        insert("t", "ok", "{}"),
                        insert(
                            "t",
                            "big",
                            &format!("{{\"a\":[{}]}}", ["1e300"; 150].join(","))
                        )
                    ]
                )
                .await,
                Code::ResourceExhausted,
                "operations[1].json: the document is 1057 bytes of canonical JSON, over the \
                 limit of 1000 bytes"
            ),
        ]
    );
    // ... and padding that canonicalizes away does not count.
    s.transact(L, vec![insert("t", "padded", &padded(3500, "\"a\":1"))])
        .await
        .expect("3.5 kB of input that is 7 bytes of canonical JSON");

    // The default limits: 10,000 operations, and the gRPC message limit of 20 MiB.
    let mut s = fixture().await;
    let ops: Vec<Kind> = (0..10_001)
        .map(|i| insert("t", &format!("n{i}"), "{}"))
        .collect();
    let huge = format!("{{\"s\":\"{}\"}}", "x".repeat(21 << 20));
    refused!(
        s,
        [
            (
                s.transact(L, ops).await,
                Code::ResourceExhausted,
                "operations: 10001 operations is over the limit of 10000"
            ),
            // Refused by tonic before graven sees it, as OUT_OF_RANGE, which the server
            // turns into gRPC's code for a message over a limit.
            (
                s.transact(L, vec![insert("t", "huge", &huge)]).await,
                Code::ResourceExhausted,
                "the request is over the server's message limit"
            ),
        ]
    );
}

#[tokio::test]
async fn empty_long_and_odd_names() {
    let mut s = fixture().await;
    let create = |name: &str| pb::CreateLedgerRequest {
        name: name.into(),
        ..Default::default()
    };
    let table = |name: &str| pb::CreateTableRequest {
        ledger: L.into(),
        table: name.into(),
    };
    let get = |table: &str, id: &str| pb::GetDocumentRequest {
        ledger: L.into(),
        table: table.into(),
        id: id.into(),
        ..Default::default()
    };
    let history = |table: &str, id: &str| pb::HistoryRequest {
        ledger: L.into(),
        table: table.into(),
        id: id.into(),
        ..Default::default()
    };
    let long_id = "x".repeat(257);
    let long_accents = "é".repeat(129); // 258 bytes
    let long_table = "t".repeat(129);
    let long_ledger = "l".repeat(1000);
    let long_key = "k".repeat(257);
    for name in [
        "ledgér",
        " h",
        "h ",
        "h\n",
        "H",
        "-h",
        "_h",
        ".",
        "..",
        "x/../y",
        "a\\b",
        "nul\0",
        &long_ledger,
    ] {
        refused!(
            s,
            [(
                s.admin.create_ledger(create(name)).await,
                Code::InvalidArgument,
                "ledger name"
            )]
        );
    }
    for name in ["", "a-b", "a.b", "a b", "tåble", "t\0", &long_table] {
        refused!(
            s,
            [
                (
                    s.admin.create_table(table(name)).await,
                    Code::InvalidArgument,
                    "table name"
                ),
                (
                    s.docs.get_document(get(name, "d1")).await,
                    Code::InvalidArgument,
                    "table name"
                ),
                (
                    s.transact(L, vec![insert(name, "x", "{}")]).await,
                    Code::InvalidArgument,
                    "operations[0].table"
                ),
            ]
        );
    }
    for id in [
        "",
        "a\nb",
        "tab\t",
        "del\u{7f}",
        "c1\u{85}",
        &long_id,
        &long_accents,
    ] {
        refused!(
            s,
            [
                (
                    s.transact(L, vec![update("t", id, "{}", None)]).await,
                    Code::InvalidArgument,
                    "operations[0].id"
                ),
                (
                    s.transact(
                        L,
                        vec![
                            insert("t", "ok", "{}"),
                            check("t", id, Condition::Exists(true))
                        ]
                    )
                    .await,
                    Code::InvalidArgument,
                    "operations[1].id"
                ),
                (
                    s.docs.get_document(get("t", id)).await,
                    Code::InvalidArgument,
                    "document id"
                ),
                (
                    s.docs.history(history("t", id)).await,
                    Code::InvalidArgument,
                    "document id"
                ),
            ]
        );
    }
    // A signing key that does not parse is refused without echoing it (the id is off by
    // one digit, so the key material itself is well-formed).
    let signer = graven_verify::Signer::generate("graven.local/keyed").expect("key");
    let text = signer.to_private_key();
    // `PRIVATE+KEY+<name>+<key id>+<base64 material>`; the material's own base64 may hold
    // '+' (splitting at the last '+' once gave a one-letter "material" that the message
    // did contain, by chance: a flaky assertion).
    let material = text.splitn(5, '+').nth(4).expect("material").to_owned();
    let id = text.split('+').nth(3).expect("key id").to_owned();
    let wrong_id = format!("{:08x}", u32::from_str_radix(&id, 16).expect("hex") ^ 1);
    let bad_key = text.replace(&format!("+{id}+"), &format!("+{wrong_id}+"));
    let before = state(&mut s).await;
    let status = s
        .admin
        .create_ledger(pb::CreateLedgerRequest {
            name: "keyed".into(),
            signing_key: bad_key,
            deletion_protection_off: true,
        })
        .await
        .expect_err("a key whose id does not match");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("signing_key: "), "{status:?}");
    assert!(
        !status.message().contains(&material),
        "the error must not echo the private key: {status:?}"
    );
    assert_eq!(state(&mut s).await, before);

    // An empty id on an insert asks the server for one; elsewhere it is refused.
    refused!(
        s,
        [(
            s.transact(L, vec![delete("t", "", None)]).await,
            Code::InvalidArgument,
            "operations[0].id"
        )]
    );
    // A ledger name that is not one is refused as such by every RPC, before any lookup.
    refused!(
        s,
        [
            (
                s.proofs
                    .get_checkpoint(pb::GetCheckpointRequest {
                        ledger: "../h".into(),
                        size: None,
                    })
                    .await,
                Code::InvalidArgument,
                "ledger name \"../h\""
            ),
            (
                s.transact("H", vec![insert("t", "x", "{}")]).await,
                Code::InvalidArgument,
                "ledger name \"H\""
            ),
            (
                s.docs
                    .transact(tx(L, vec![insert("t", "x", "{}")], &long_key))
                    .await,
                Code::InvalidArgument,
                "idempotency_key"
            ),
            (
                pb::stream_client::StreamClient::new(s.channel.clone())
                    .subscribe(pb::SubscribeRequest {
                        ledger: L.into(),
                        tables: vec!["t".into(), "bad-name".into()],
                        ..Default::default()
                    })
                    .await,
                Code::InvalidArgument,
                "tables: table name \"bad-name\""
            ),
        ]
    );

    // Odd but valid: names at their limits, and ids that look like paths or are not ASCII
    // are plain keys, stored and read back exactly, with no file of their own.
    let before = state(&mut s).await;
    let longest_ledger = "l".repeat(63);
    s.admin
        .create_ledger(create(&longest_ledger))
        .await
        .expect("a 63-character ledger name");
    let longest_table = "T".repeat(128);
    s.admin
        .create_table(table(&longest_table))
        .await
        .expect("a 128-character table name");
    let odd_ids = [
        "../../etc/passwd",
        "a/b",
        "C:\\x",
        "with space",
        "😀",
        "zero\u{200b}width",
        "'; DROP TABLE t; --",
        &"x".repeat(256),
        &"é".repeat(128),
    ];
    for id in odd_ids {
        s.transact(L, vec![insert(&longest_table, id, r#"{"odd":true}"#)])
            .await
            .unwrap_or_else(|e| panic!("{id:?}: {e:?}"));
        let got = s
            .docs
            .get_document(get(&longest_table, id))
            .await
            .unwrap_or_else(|e| panic!("{id:?}: {e:?}"))
            .into_inner()
            .revision
            .expect("revision");
        assert_eq!(got.id, id);
    }
    let after = state(&mut s).await;
    assert_eq!(
        after.checkpoint.size,
        before.checkpoint.size + odd_ids.len() as u64
    );
    let mut expected_folders = before.folders.clone();
    expected_folders.push(longest_ledger);
    expected_folders.sort();
    assert_eq!(
        after.folders, expected_folders,
        "one folder per ledger, nothing else"
    );
}

#[tokio::test]
async fn unknown_ledgers_and_tables_on_every_rpc() {
    let mut s = fixture().await;
    let n = || "nope".to_string();
    let mut stream = pb::stream_client::StreamClient::new(s.channel.clone());
    refused!(
        s,
        [
            (
                s.admin
                    .update_ledger(pb::UpdateLedgerRequest {
                        name: n(),
                        deletion_protection: Some(false)
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.admin
                    .delete_ledger(pb::DeleteLedgerRequest { name: n() })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.admin
                    .create_table(pb::CreateTableRequest {
                        ledger: n(),
                        table: "t".into()
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.admin
                    .list_tables(pb::ListTablesRequest { ledger: n() })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.admin
                    .drop_table(pb::DropTableRequest {
                        ledger: n(),
                        table: "t".into()
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.admin
                    .check_ledger(pb::CheckLedgerRequest { name: n() })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.docs
                    .get_document(pb::GetDocumentRequest {
                        ledger: n(),
                        table: "t".into(),
                        id: "d1".into(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.docs
                    .history(pb::HistoryRequest {
                        ledger: n(),
                        table: "t".into(),
                        id: "d1".into(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.docs
                    .scan(pb::ScanRequest {
                        ledger: n(),
                        table: "t".into(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.proofs
                    .get_checkpoint(pb::GetCheckpointRequest {
                        ledger: n(),
                        size: None,
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.proofs.get_key(pb::GetKeyRequest { ledger: n() }).await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.proofs
                    .get_entry(pb::GetEntryRequest {
                        ledger: n(),
                        index: 0
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.proofs
                    .prove_inclusion(pb::ProveInclusionRequest {
                        ledger: n(),
                        index: 0,
                        tree_size: 1
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                s.proofs
                    .prove_consistency(pb::ProveConsistencyRequest {
                        ledger: n(),
                        old_size: 0,
                        new_size: 1
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            (
                stream
                    .subscribe(pb::SubscribeRequest {
                        ledger: n(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                "ledger \"nope\""
            ),
            // A table that does not exist, and one that was never a document's.
            (
                s.docs
                    .get_document(pb::GetDocumentRequest {
                        ledger: L.into(),
                        table: "zz".into(),
                        id: "d1".into(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                "table \"zz\" does not exist"
            ),
            (
                s.docs
                    .history(pb::HistoryRequest {
                        ledger: L.into(),
                        table: "zz".into(),
                        id: "d1".into(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                "table \"zz\" does not exist"
            ),
            (
                s.docs
                    .scan(pb::ScanRequest {
                        ledger: L.into(),
                        table: "zz".into(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                "table \"zz\" does not exist"
            ),
            (
                s.transact(
                    L,
                    vec![
                        insert("t", "x", "{}"),
                        check("zz", "d1", Condition::NotExists(true))
                    ]
                )
                .await,
                Code::NotFound,
                "operation 1 (check): table \"zz\" does not exist"
            ),
            (
                s.docs
                    .history(pb::HistoryRequest {
                        ledger: L.into(),
                        table: "t".into(),
                        id: "never".into(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                "document \"never\" does not exist in table \"t\""
            ),
        ]
    );
}

#[tokio::test]
async fn out_of_range_sizes_indexes_and_tokens() {
    let mut s = fixture().await;
    let max = u64::MAX;
    let inclusion = |index, tree_size| pb::ProveInclusionRequest {
        ledger: L.into(),
        index,
        tree_size,
    };
    let consistency = |old_size, new_size| pb::ProveConsistencyRequest {
        ledger: L.into(),
        old_size,
        new_size,
    };
    let get = |version: Option<u64>, proof: Option<u64>| pb::GetDocumentRequest {
        ledger: L.into(),
        table: "t".into(),
        id: "d1".into(),
        version,
        proof: proof.map(|tree_size| pb::ProofRequest { tree_size }),
    };
    let history = |page_size: u32, page_token: &str| pb::HistoryRequest {
        ledger: L.into(),
        table: "t".into(),
        id: "d1".into(),
        page_size,
        page_token: page_token.into(),
        proof: None,
    };
    let scan = |page_token: &str| pb::ScanRequest {
        ledger: L.into(),
        table: "t".into(),
        page_token: page_token.into(),
        ..Default::default()
    };
    let subscribe = |from: Option<u64>, to: Option<u64>| pb::SubscribeRequest {
        ledger: L.into(),
        from_index: from,
        to_index: to,
        tables: vec![],
    };
    let mut stream = pb::stream_client::StreamClient::new(s.channel.clone());
    refused!(
        s,
        [
            (
                s.proofs
                    .get_entry(pb::GetEntryRequest {
                        ledger: L.into(),
                        index: max
                    })
                    .await,
                Code::OutOfRange,
                "beyond the journal (size 4)"
            ),
            (
                s.proofs.prove_inclusion(inclusion(max, 0)).await,
                Code::OutOfRange,
                "out of range"
            ),
            (
                s.proofs.prove_inclusion(inclusion(0, max)).await,
                Code::OutOfRange,
                "out of range"
            ),
            (
                s.proofs.prove_inclusion(inclusion(max, max)).await,
                Code::OutOfRange,
                "out of range"
            ),
            (
                s.proofs.prove_consistency(consistency(max, 0)).await,
                Code::OutOfRange,
                "out of range"
            ),
            (
                s.proofs.prove_consistency(consistency(0, max)).await,
                Code::OutOfRange,
                "out of range"
            ),
            (
                s.proofs.prove_consistency(consistency(max, max)).await,
                Code::OutOfRange,
                "out of range"
            ),
            (
                s.docs.get_document(get(None, Some(max))).await,
                Code::OutOfRange,
                "proof tree_size 18446744073709551615 is out of range"
            ),
            // u64::MAX is the storage key of a document's current state: never a version.
            (
                s.docs.get_document(get(Some(max), None)).await,
                Code::NotFound,
                "no version 18446744073709551615"
            ),
            (
                s.docs.history(history(u32::MAX, "")).await,
                Code::ResourceExhausted,
                "page_size 4294967295"
            ),
            (
                s.docs.history(history(0, "18446744073709551616")).await,
                Code::InvalidArgument,
                "page_token"
            ),
            (
                s.docs.history(history(0, "-1")).await,
                Code::InvalidArgument,
                "page_token"
            ),
            (
                s.docs.history(history(0, "+1")).await,
                Code::InvalidArgument,
                "page_token"
            ),
            (
                s.docs.history(history(0, " 1")).await,
                Code::InvalidArgument,
                "page_token"
            ),
            (
                s.docs.scan(scan("f")).await,
                Code::InvalidArgument,
                "page_token"
            ),
            (
                s.docs.scan(scan("ff")).await,
                Code::InvalidArgument,
                "page_token"
            ),
            (
                s.docs.scan(scan("é1")).await,
                Code::InvalidArgument,
                "page_token"
            ),
            (
                stream.subscribe(subscribe(Some(max), None)).await,
                Code::OutOfRange,
                "from_index 18446744073709551615 is beyond the journal"
            ),
            (
                stream.subscribe(subscribe(None, Some(0))).await,
                Code::InvalidArgument,
                "to_index 0 is below the first index 4"
            ),
            // Versions at the edge of u64 are conditions that fail, not overflows.
            (
                s.transact(L, vec![update("t", "d1", "{}", Some(max))])
                    .await,
                Code::FailedPrecondition,
                "expected version 18446744073709551615, current version is 1"
            ),
            (
                s.transact(
                    L,
                    vec![
                        insert("t", "x", "{}"),
                        check("t", "d1", Condition::Version(max))
                    ]
                )
                .await,
                Code::FailedPrecondition,
                "operation 1 (check)"
            ),
        ]
    );
    // The largest history token is a valid, empty page, not an error.
    let page = s
        .docs
        .history(history(0, "18446744073709551615"))
        .await
        .expect("history from the last possible version")
        .into_inner();
    assert!(page.revisions.is_empty() && page.next_page_token.is_empty());

    // An empty ledger has nothing to prove.
    s.ledger("empty", &[]).await;
    assert_code(
        s.proofs
            .prove_inclusion(pb::ProveInclusionRequest {
                ledger: "empty".into(),
                index: 0,
                tree_size: 0,
            })
            .await,
        Code::OutOfRange,
        "below the tree size 0 (the ledger size)",
    );
}

#[tokio::test]
async fn duplicate_ids_in_one_transaction() {
    let mut s = fixture().await;
    refused!(
        s,
        [
            (
                s.transact(
                    L,
                    vec![insert("t", "x", "{}"), insert("t", "x", "{\"again\":1}")]
                )
                .await,
                Code::InvalidArgument,
                "operations[1]: document \"x\" in table \"t\" is already written by operations[0]"
            ),
            (
                s.transact(
                    L,
                    vec![
                        insert("t", "y", "{}"),
                        delete("t", "d1", None),
                        delete("t", "d1", Some(2))
                    ]
                )
                .await,
                Code::InvalidArgument,
                "operations[2]: document \"d1\" in table \"t\" is already written by operations[1]"
            ),
            (
                s.transact(
                    L,
                    vec![
                        update("t", "d1", "{}", Some(1)),
                        check("t", "d1", Condition::Version(1)),
                        delete("t", "d1", Some(2))
                    ]
                )
                .await,
                Code::InvalidArgument,
                "operations[2]: document \"d1\" in table \"t\" is already written by operations[0]"
            ),
        ]
    );
    // Not duplicates: the same id in two tables, and a check of a document written in the
    // same transaction (checks see the state before it).
    s.admin
        .create_table(pb::CreateTableRequest {
            ledger: L.into(),
            table: "u".into(),
        })
        .await
        .expect("table u");
    let r = s
        .transact(
            L,
            vec![
                insert("t", "same", "{}"),
                insert("u", "same", "{}"),
                check("t", "d1", Condition::Version(1)),
                update("t", "d1", "{}", Some(1)),
            ],
        )
        .await
        .expect("distinct documents");
    assert_eq!(r.revisions, 3);
}

#[tokio::test]
async fn missing_operation_kinds_and_conditions() {
    let mut s = fixture().await;
    let mut no_kind = tx(L, vec![insert("t", "x", "{}")], "");
    no_kind.operations.push(pb::Operation { kind: None });
    let no_condition = tx(
        L,
        vec![
            insert("t", "x", "{}"),
            Kind::Check(pb::Check {
                table: "t".into(),
                id: "d1".into(),
                condition: None,
            }),
        ],
        "",
    );
    refused!(
        s,
        [
            (
                s.docs.transact(no_kind).await,
                Code::InvalidArgument,
                "operations[1]: no operation set"
            ),
            (
                s.docs.transact(no_condition).await,
                Code::InvalidArgument,
                "operations[1].condition"
            ),
            (
                s.transact(
                    L,
                    vec![
                        insert("t", "x", "{}"),
                        check("t", "d1", Condition::NotExists(false))
                    ]
                )
                .await,
                Code::InvalidArgument,
                "operations[1].condition"
            ),
        ]
    );
}

/// Protobuf bytes sent as they are: for requests no generated client can build.
#[derive(Clone, Copy)]
struct Raw;

struct RawCodec<M>(std::marker::PhantomData<M>);

impl<M: prost::Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<M> {
    type Encode = Vec<u8>;
    type Decode = M;
    type Encoder = Raw;
    type Decoder = RawCodec<M>;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> RawCodec<M> {
        RawCodec(std::marker::PhantomData)
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl<M: prost::Message + Default> tonic::codec::Decoder for RawCodec<M> {
    type Item = M;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<M>, tonic::Status> {
        M::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// A length-delimited protobuf field: `(number << 3) | 2`, length, bytes.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2, bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

async fn raw_call<M: prost::Message + Default + Send + Sync + 'static>(
    s: &TestServer,
    path: &'static str,
    body: Vec<u8>,
) -> Result<M, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(s.channel.clone());
    grpc.ready().await.expect("channel ready");
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec::<M>(std::marker::PhantomData),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn invalid_utf8_in_string_fields() {
    let mut s = fixture().await;
    let get = |ledger: &[u8], table: &[u8], id: &[u8]| {
        [field(1, ledger), field(2, table), field(3, id)].concat()
    };
    // An Insert whose table is not UTF-8, inside an Operation, inside a TransactRequest.
    let insert = [field(1, b"t\xff"), field(2, b"x"), field(3, b"{}")].concat();
    let operation = field(1, &insert);
    let transact = [field(1, L.as_bytes()), field(2, &operation)].concat();
    // The request cannot be decoded, so graven never sees it: tonic answers INTERNAL for
    // a request that does not parse, which the server turns into INVALID_ARGUMENT (the
    // request can never succeed; INTERNAL is a storage failure); the message names the
    // field.
    refused!(
        s,
        [
            (
                raw_call::<pb::GetDocumentResponse>(
                    &s,
                    "/graven.v1.Documents/GetDocument",
                    get(L.as_bytes(), b"t", b"d\xff")
                )
                .await,
                Code::InvalidArgument,
                "GetDocumentRequest.id"
            ),
            (
                raw_call::<pb::GetDocumentResponse>(
                    &s,
                    "/graven.v1.Documents/GetDocument",
                    get(b"h\xc0\xaf", b"t", b"d1")
                )
                .await,
                Code::InvalidArgument,
                "GetDocumentRequest.ledger"
            ),
            (
                raw_call::<pb::Receipt>(&s, "/graven.v1.Documents/Transact", transact).await,
                Code::InvalidArgument,
                "Insert.table"
            ),
            (
                raw_call::<pb::LedgerInfo>(
                    &s,
                    "/graven.v1.Admin/CreateLedger",
                    field(1, b"new\xed\xa0\x80")
                )
                .await,
                Code::InvalidArgument,
                "CreateLedgerRequest.name"
            ),
            // Not protobuf at all.
            (
                raw_call::<pb::Receipt>(
                    &s,
                    "/graven.v1.Documents/Transact",
                    vec![0xff, 0xff, 0xff]
                )
                .await,
                Code::InvalidArgument,
                "failed to decode"
            ),
        ]
    );
    // The same bytes, valid, go through the same raw path: the failures above are the
    // encoding, not the harness.
    let ok: pb::GetDocumentResponse = raw_call(
        &s,
        "/graven.v1.Documents/GetDocument",
        get(L.as_bytes(), b"t", b"d1"),
    )
    .await
    .expect("a well-formed raw request");
    assert_eq!(ok.revision.expect("revision").version, 1);
}

#[tokio::test]
async fn requests_after_shutdown_are_refused_and_change_nothing() {
    let mut s = fixture().await;
    let before = state(&mut s).await;
    s.engine.close();
    let mut stream = pb::stream_client::StreamClient::new(s.channel.clone());
    let needle = "shutting down";
    let code = Code::Unavailable;
    let results: Vec<(&str, Result<(), tonic::Status>)> = vec![
        (
            "CreateLedger",
            s.admin
                .create_ledger(pb::CreateLedgerRequest {
                    name: "late".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "ListLedgers",
            s.admin
                .list_ledgers(pb::ListLedgersRequest {})
                .await
                .map(drop),
        ),
        (
            "UpdateLedger",
            s.admin
                .update_ledger(pb::UpdateLedgerRequest {
                    name: L.into(),
                    deletion_protection: Some(true),
                })
                .await
                .map(drop),
        ),
        (
            "DeleteLedger",
            s.admin
                .delete_ledger(pb::DeleteLedgerRequest { name: L.into() })
                .await
                .map(drop),
        ),
        (
            "CreateTable",
            s.admin
                .create_table(pb::CreateTableRequest {
                    ledger: L.into(),
                    table: "late".into(),
                })
                .await
                .map(drop),
        ),
        (
            "DropTable",
            s.admin
                .drop_table(pb::DropTableRequest {
                    ledger: L.into(),
                    table: "t".into(),
                })
                .await
                .map(drop),
        ),
        (
            "GetDocument",
            s.docs
                .get_document(pb::GetDocumentRequest {
                    ledger: L.into(),
                    table: "t".into(),
                    id: "d1".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "Scan",
            s.docs
                .scan(pb::ScanRequest {
                    ledger: L.into(),
                    table: "t".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "GetCheckpoint",
            s.proofs
                .get_checkpoint(pb::GetCheckpointRequest {
                    ledger: L.into(),
                    size: None,
                })
                .await
                .map(drop),
        ),
        (
            "ProveConsistency",
            s.proofs
                .prove_consistency(pb::ProveConsistencyRequest {
                    ledger: L.into(),
                    old_size: 1,
                    new_size: 0,
                })
                .await
                .map(drop),
        ),
        (
            "Subscribe",
            stream
                .subscribe(pb::SubscribeRequest {
                    ledger: L.into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
    ];
    for (what, result) in results {
        let status = result.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(status.message().contains(needle), "{what}: {status:?}");
    }
    // Reopen the same data folder: nothing was written.
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().expect("dir"));
    drop(s);
    let mut s = start_with(Config::new(dir.path()), dir).await;
    assert_eq!(
        state(&mut s).await,
        before,
        "nothing changed across the shutdown"
    );
}

/// Regression: error messages quoted the whole bad value, so a 100,000-byte id, ledger
/// name, page token or duplicated member name made a status message larger than grpcio's
/// default 16 KiB header limit, and the client saw `RESOURCE_EXHAUSTED: Stream removed`
/// instead of the INVALID_ARGUMENT meant. Messages now quote at most a short prefix.
#[tokio::test]
async fn long_values_are_quoted_short() {
    let mut s = fixture().await;
    let long = "x".repeat(100_000);
    let get = |ledger: &str, id: &str| pb::GetDocumentRequest {
        ledger: ledger.into(),
        table: "t".into(),
        id: id.into(),
        version: None,
        proof: None,
    };
    let duplicate = format!("{{\"{long}\": 1, \"{long}\": 2}}");
    let results = [
        s.docs.get_document(get(L, &long)).await.map(|_| ()),
        s.docs.get_document(get(&long, "d1")).await.map(|_| ()),
        s.docs
            .history(pb::HistoryRequest {
                ledger: L.into(),
                table: "t".into(),
                id: "d1".into(),
                page_size: 0,
                page_token: long.clone(),
                proof: None,
            })
            .await
            .map(|_| ()),
        s.docs
            .scan(pb::ScanRequest {
                ledger: L.into(),
                table: "t".into(),
                page_size: 0,
                page_token: long.clone(),
                proof: None,
            })
            .await
            .map(|_| ()),
        s.transact(L, vec![insert("t", "dup", &duplicate)])
            .await
            .map(|_| ()),
        s.transact(L, vec![insert(&long, "x", "{}")])
            .await
            .map(|_| ()),
    ];
    for (i, r) in results.into_iter().enumerate() {
        let status = r.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "case {i}: {status:?}");
        assert!(
            status.message().len() < 400,
            "case {i}: a {}-byte message",
            status.message().len()
        );
        assert!(
            status.message().contains("… (100000 bytes)"),
            "case {i}: the value's length is named: {}",
            status.message()
        );
    }
}

/// Statements (ExecuteStatement) that can never run, or break a limit: each refused with
/// its code, naming where and what, and nothing written.
#[tokio::test]
async fn bad_statements_change_nothing() {
    use crate::query::request;
    use serde_json::json;

    let mut s = fixture().await;
    let run = |text: &str, params: &[serde_json::Value]| request(L, text, params);
    let mut docs = s.docs.clone();
    let deep = format!(
        "SELECT * FROM t WHERE {}1{}",
        "(".repeat(200),
        ")".repeat(200)
    );
    let mut not_json = run("SELECT * FROM t WHERE v = ?", &[]);
    not_json.statements[0].parameters = vec!["{oops".into()];
    let mut no_statements = run("", &[]);
    no_statements.statements.clear();
    let many_params = pb::ExecuteStatementRequest {
        ledger: L.into(),
        statements: vec![pb::StatementText {
            text: "SELECT * FROM t".into(),
            parameters: vec!["1".into(); 1001],
        }],
        ..Default::default()
    };
    let mut bad_token = run("SELECT * FROM t", &[]);
    bad_token.page_token = "zz".into();
    refused!(
        s,
        [
            (
                docs.execute_statement(run("SELECT * FROM t WHERE", &[]))
                    .await,
                Code::InvalidArgument,
                "statements[0]: line 1, column 22"
            ),
            (
                docs.execute_statement(run("INSERT INTO t VALUE {'a': 1};\nUPDATE t SET = 2", &[]))
                    .await,
                Code::InvalidArgument,
                "line 2, column 14"
            ),
            (
                docs.execute_statement(run("SELECT * FROM t GROUP BY v", &[]))
                    .await,
                Code::InvalidArgument,
                "GROUP BY"
            ),
            (
                docs.execute_statement(run("INSERT INTO t (a) VALUES (1)", &[]))
                    .await,
                Code::InvalidArgument,
                "VALUE"
            ),
            (
                docs.execute_statement(run(&deep, &[])).await,
                Code::InvalidArgument,
                "128"
            ),
            (
                docs.execute_statement(run("INSERT INTO nope VALUE {'a': 1}", &[]))
                    .await,
                Code::NotFound,
                "table \"nope\" does not exist"
            ),
            (
                docs.execute_statement(run("INSERT INTO t VALUE {'a': 1}; DELETE FROM nope", &[]))
                    .await,
                Code::NotFound,
                "nope"
            ),
            (
                docs.execute_statement(run("INSERT INTO t VALUE ?", &[json!([1])]))
                    .await,
                Code::InvalidArgument,
                "value 0 is a number, not a struct"
            ),
            (
                docs.execute_statement(run("INSERT INTO t VALUE ?", &[]))
                    .await,
                Code::InvalidArgument,
                "1 parameter(s)"
            ),
            (
                docs.execute_statement(not_json).await,
                Code::InvalidArgument,
                "statements[0].parameters[0]"
            ),
            (
                docs.execute_statement(many_params).await,
                Code::ResourceExhausted,
                "statements[0].parameters"
            ),
            (
                docs.execute_statement(no_statements).await,
                Code::InvalidArgument,
                "statements"
            ),
            (
                docs.execute_statement(run("SELECT lower(v, v) FROM t", &[]))
                    .await,
                Code::InvalidArgument,
                "lower takes 1"
            ),
            (
                docs.execute_statement(run("SELECT CAST(v AS BLOB) FROM t", &[]))
                    .await,
                Code::InvalidArgument,
                "CAST to blob"
            ),
            (
                docs.execute_statement(run("UPDATE t AS x SET x.v[5] = 1", &[]))
                    .await,
                Code::InvalidArgument,
                "SET v[5]: no such place"
            ),
            (
                docs.execute_statement(run("UPDATE t AS x SET x = 5", &[]))
                    .await,
                Code::InvalidArgument,
                "must stay a struct"
            ),
            (
                docs.execute_statement(run("DROP INDEX \"v\" ON t", &[]))
                    .await,
                Code::NotFound,
                "no index"
            ),
            (
                docs.execute_statement(run("CREATE INDEX ON nope (v)", &[]))
                    .await,
                Code::NotFound,
                "nope"
            ),
            (
                docs.execute_statement(run("DROP TABLE t; DROP TABLE u", &[]))
                    .await,
                Code::InvalidArgument,
                "alone"
            ),
            (
                docs.execute_statement(bad_token).await,
                Code::InvalidArgument,
                "page_token"
            ),
            (
                docs.execute_statement(run("SELECT * FROM t OFFSET 'x'", &[]))
                    .await,
                Code::InvalidArgument,
                "OFFSET"
            ),
            (
                docs.execute_statement(run("EXPLAIN CREATE TABLE x", &[]))
                    .await,
                Code::InvalidArgument,
                "EXPLAIN"
            ),
            (
                docs.execute_statement(run(
                    "SELECT * FROM t WHERE x = '\u{0}' AND y = `{{a: 1}}`",
                    &[]
                ))
                .await,
                Code::InvalidArgument,
                "Ion literal"
            ),
        ]
    );
}
