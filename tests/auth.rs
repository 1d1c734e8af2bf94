//! Authentication and roles, in-process: every rule of `src/auth.rs` as a client meets it.

use std::sync::Arc;

use graven::auth::{Auth, token_hash_hex};
use graven::pb;
use graven_verify::Entry;
use tonic::{Code, Request};

use crate::util::{connect_with_auth, insert, tx};

/// ops: admin everywhere; orders: writer on shop, reader elsewhere; auditor: reader on
/// shop only.
fn auth() -> Arc<Auth> {
    let text = format!(
        r#"
[[principal]]
name = "ops"
token_sha256 = "{}"
roles = {{ "*" = "admin" }}

[[principal]]
name = "orders"
token_sha256 = "{}"
roles = {{ shop = "writer", "*" = "reader" }}

[[principal]]
name = "auditor"
token_sha256 = "{}"
roles = {{ shop = "reader" }}
"#,
        token_hash_hex("ops-secret"),
        token_hash_hex("orders-secret"),
        token_hash_hex("auditor-secret"),
    );
    Arc::new(Auth::parse(&text).expect("auth file"))
}

/// A request with `token` as its bearer token (none for "").
fn as_<T>(token: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    if !token.is_empty() {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    r
}

struct Clients {
    admin: pb::admin_client::AdminClient<tonic::transport::Channel>,
    docs: pb::documents_client::DocumentsClient<tonic::transport::Channel>,
    proofs: pb::proofs_client::ProofsClient<tonic::transport::Channel>,
    stream: pb::stream_client::StreamClient<tonic::transport::Channel>,
    _dir: tempfile::TempDir,
}

async fn start() -> Clients {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = graven::server::open_engine(graven::engine::Config::new(dir.path()))
        .await
        .expect("engine");
    let channel = connect_with_auth(engine, Some(auth())).await;
    Clients {
        admin: pb::admin_client::AdminClient::new(channel.clone()),
        docs: pb::documents_client::DocumentsClient::new(channel.clone()),
        proofs: pb::proofs_client::ProofsClient::new(channel.clone()),
        stream: pb::stream_client::StreamClient::new(channel),
        _dir: dir,
    }
}

fn create(name: &str) -> pb::CreateLedgerRequest {
    pb::CreateLedgerRequest {
        name: name.into(),
        signing_key: String::new(),
        deletion_protection_off: true,
    }
}

fn table(ledger: &str, table: &str) -> pb::CreateTableRequest {
    pb::CreateTableRequest {
        ledger: ledger.into(),
        table: table.into(),
    }
}

fn checkpoint_req(ledger: &str) -> pb::GetCheckpointRequest {
    pb::GetCheckpointRequest {
        ledger: ledger.into(),
        size: None,
    }
}

fn get(ledger: &str, id: &str) -> pb::GetDocumentRequest {
    pb::GetDocumentRequest {
        ledger: ledger.into(),
        table: "orders".into(),
        id: id.into(),
        version: None,
        proof: Some(pb::ProofRequest { tree_size: 0 }),
    }
}

fn assert_code<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, what: &str) -> String {
    match r {
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {s:?}");
            for secret in ["ops-secret", "orders-secret", "auditor-secret", "wrong"] {
                assert!(!s.message().contains(secret), "{what}: a token in {s:?}");
            }
            s.message().to_owned()
        }
        Ok(v) => panic!("{what}: expected {code:?}, got {v:?}"),
    }
}

#[tokio::test]
async fn tokens_and_roles_decide_every_request() {
    let mut c = start().await;

    // Without a token, or with one nobody has: UNAUTHENTICATED, whatever the request.
    for token in ["", "wrong", "Bearer ops-secret"] {
        assert_code(
            c.admin
                .list_ledgers(as_(token, pb::ListLedgersRequest {}))
                .await,
            Code::Unauthenticated,
            "list without a valid token",
        );
        assert_code(
            c.admin.create_ledger(as_(token, create("shop"))).await,
            Code::Unauthenticated,
            "create without a valid token",
        );
    }

    // The admin sets up two ledgers; a writer and a reader may not.
    for (token, who) in [("orders-secret", "orders"), ("auditor-secret", "auditor")] {
        let msg = assert_code(
            c.admin.create_ledger(as_(token, create("shop"))).await,
            Code::PermissionDenied,
            "create by a non-admin",
        );
        assert!(
            msg.contains(who) && msg.contains("\"shop\"") && msg.contains("admin"),
            "{msg}"
        );
    }
    for ledger in ["shop", "hr"] {
        c.admin
            .create_ledger(as_("ops-secret", create(ledger)))
            .await
            .expect("admin creates");
        c.admin
            .create_table(as_("ops-secret", table(ledger, "orders")))
            .await
            .expect("admin creates a table");
    }

    // The writer writes, and the journal records who.
    let receipt = c
        .docs
        .transact(as_(
            "orders-secret",
            tx("shop", vec![insert("orders", "o-1", r#"{"qty":1}"#)], ""),
        ))
        .await
        .expect("writer transacts")
        .into_inner();
    let index = receipt.results[0].index.expect("index");
    let entry = c
        .proofs
        .get_entry(as_(
            "auditor-secret",
            pb::GetEntryRequest {
                ledger: "shop".into(),
                index,
            },
        ))
        .await
        .expect("reader reads the entry")
        .into_inner();
    assert_eq!(
        Entry::decode(&entry.entry).expect("entry").principal,
        "orders",
        "the principal of the write is in its entry"
    );

    // The reader reads with a proof, and may not write: nothing changes.
    let before = c
        .proofs
        .get_checkpoint(as_("auditor-secret", checkpoint_req("shop")))
        .await
        .expect("reader gets the checkpoint")
        .into_inner();
    let doc = c
        .docs
        .get_document(as_("auditor-secret", get("shop", "o-1")))
        .await
        .expect("reader reads")
        .into_inner();
    assert!(doc.revision.and_then(|r| r.proof).is_some());
    let msg = assert_code(
        c.docs
            .transact(as_(
                "auditor-secret",
                tx("shop", vec![insert("orders", "o-2", r#"{"qty":2}"#)], ""),
            ))
            .await,
        Code::PermissionDenied,
        "reader writes",
    );
    assert!(
        msg.contains("auditor") && msg.contains("writer") && msg.contains("reader"),
        "{msg}"
    );
    let after = c
        .proofs
        .get_checkpoint(as_("ops-secret", checkpoint_req("shop")))
        .await
        .expect("checkpoint")
        .into_inner();
    assert_eq!(
        before.checkpoint, after.checkpoint,
        "a refused write changes nothing"
    );

    // A writer may not change the ledger itself or its tables.
    assert_code(
        c.admin
            .delete_ledger(as_(
                "orders-secret",
                pb::DeleteLedgerRequest {
                    name: "shop".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "writer deletes the ledger",
    );
    assert_code(
        c.admin
            .create_table(as_("orders-secret", table("shop", "more")))
            .await,
        Code::PermissionDenied,
        "writer creates a table",
    );
    assert_code(
        c.admin
            .drop_table(as_(
                "orders-secret",
                pb::DropTableRequest {
                    ledger: "shop".into(),
                    table: "orders".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "writer drops a table",
    );
    // The online check reads the whole ledger: an admin's, not a writer's.
    let check = |token: &str| {
        as_(
            token,
            pb::CheckLedgerRequest {
                name: "shop".into(),
            },
        )
    };
    assert_code(
        c.admin.check_ledger(check("orders-secret")).await,
        Code::PermissionDenied,
        "writer checks the ledger",
    );
    let mut events = c
        .admin
        .check_ledger(check("ops-secret"))
        .await
        .expect("admin checks the ledger")
        .into_inner();
    let mut result = None;
    while let Some(e) = events.message().await.expect("check events") {
        if let Some(pb::check_ledger_event::Kind::Result(r)) = e.kind {
            result = Some(r);
        }
    }
    let result = result.expect("a result");
    assert!(result.ok, "{}", result.problem);
    assert_eq!(result.size, after.size, "the check saw the whole ledger");
    // Its "*" reader role lets it read hr, not write there.
    c.proofs
        .get_checkpoint(as_("orders-secret", checkpoint_req("hr")))
        .await
        .expect("reader elsewhere");
    assert_code(
        c.docs
            .transact(as_(
                "orders-secret",
                tx("hr", vec![insert("orders", "x", "{}")], ""),
            ))
            .await,
        Code::PermissionDenied,
        "writer on shop writes hr",
    );

    // The auditor has no role on hr: it cannot read it, or see it listed.
    let msg = assert_code(
        c.proofs
            .get_checkpoint(as_("auditor-secret", checkpoint_req("hr")))
            .await,
        Code::PermissionDenied,
        "no role",
    );
    assert!(msg.contains("no role"), "{msg}");
    let listed = |r: pb::ListLedgersResponse| -> Vec<String> {
        r.ledgers.into_iter().map(|l| l.name).collect()
    };
    let seen = listed(
        c.admin
            .list_ledgers(as_("auditor-secret", pb::ListLedgersRequest {}))
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(seen, vec!["shop".to_owned()]);
    let mut all = listed(
        c.admin
            .list_ledgers(as_("ops-secret", pb::ListLedgersRequest {}))
            .await
            .expect("list")
            .into_inner(),
    );
    all.sort();
    assert_eq!(all, vec!["hr".to_owned(), "shop".to_owned()]);

    // The change stream is a read.
    assert_code(
        c.stream
            .subscribe(as_(
                "auditor-secret",
                pb::SubscribeRequest {
                    ledger: "hr".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
        "stream without a role",
    );
    let mut events = c
        .stream
        .subscribe(as_(
            "auditor-secret",
            pb::SubscribeRequest {
                ledger: "shop".into(),
                from_index: Some(0),
                to_index: Some(1),
                ..Default::default()
            },
        ))
        .await
        .expect("reader subscribes")
        .into_inner();
    assert!(events.message().await.expect("event").is_some());

    // The admin may delete.
    c.admin
        .delete_ledger(as_(
            "ops-secret",
            pb::DeleteLedgerRequest { name: "hr".into() },
        ))
        .await
        .expect("admin deletes");
}

/// The command line against `graven serve --auth FILE`: the token comes from GRAVEN_TOKEN
/// or GRAVEN_TOKEN_FILE, a missing one is refused, and `graven token` makes working pairs.
#[test]
fn the_cli_sends_its_token_from_the_environment() {
    use crate::util::{ServerProcess, graven_command};
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("temp dir");
    // A token made by `graven token`: the token on stdout, the file entry on stderr.
    let out = graven_command()
        .args(["token", "ci-writer"])
        .stdin(Stdio::null())
        .output()
        .expect("graven token");
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let entry = String::from_utf8(out.stderr).expect("utf-8");
    assert!(entry.contains(&token_hash_hex(&token)), "{entry}");
    assert!(
        !entry.contains(&token),
        "the file entry holds the hash, not the token"
    );
    let file = dir.path().join("auth.toml");
    let text = entry.replace("roles = { }", r#"roles = { "*" = "admin" }"#);
    std::fs::write(&file, text).expect("auth file");

    let auth = file.to_str().expect("utf-8 path");
    let server = ServerProcess::start_with(
        &dir.path().join("data"),
        &dir.path().join("server.log"),
        &[("GRAVEN_AUTH", auth), ("GRAVEN_LOG", "trace")],
        &[("GRAVEN_TOKEN", token.as_str())],
    );
    let graven = |env: &[(&str, &str)], args: &[&str]| {
        graven_command()
            .args(["--server", &server.url])
            .args(args)
            .env_remove("GRAVEN_TOKEN")
            .env_remove("GRAVEN_TOKEN_FILE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("graven")
    };
    let with_token = [("GRAVEN_TOKEN", token.as_str())];

    let refused = graven(&[], &["ledger", "create", "shop"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Unauthenticated"), "{err}");

    let ok = graven(&with_token, &["ledger", "create", "shop"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = graven(&with_token, &["table", "create", "shop", "orders"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // The same token from a file.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let from_file = [("GRAVEN_TOKEN_FILE", token_file.to_str().expect("utf-8"))];
    let ok = graven(
        &from_file,
        &["insert", "shop", "orders", "--id", "o-1", r#"{"qty":1}"#],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let entry = graven(&from_file, &["entry", "shop", "0"]);
    assert!(entry.status.success());
    assert_eq!(
        Entry::decode(&entry.stdout).expect("entry").principal,
        "ci-writer",
        "the journal names the token's principal"
    );

    // The server's log (at its most verbose here) never shows the token.
    let log = std::fs::read_to_string(dir.path().join("server.log")).expect("log");
    assert!(!log.contains(&token), "the token is in the server log");
}
