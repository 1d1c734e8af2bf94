//! graven on PostgreSQL (`graven serve --storage URL`): the engine's API, a restart, a
//! deletion, the tamper check and an import, on a throwaway cluster.
use graven::engine::Config;
use graven::pb;
use graven::storage::Location;
use graven::storage::postgres::PostgresBackend;
use graven_verify::{Verifier, open_checkpoint};

use crate::util::{
    Postgres, ServerProcess, TestServer, graven_command, graven_ok, insert, start_with, update,
};

/// Parses a checkpoint note with the ledger's key: (size, root).
fn head(note: &str, key: &Verifier) -> (u64, graven_verify::Hash) {
    let c = open_checkpoint(note.as_bytes(), std::slice::from_ref(key))
        .expect("checkpoint verifies")
        .checkpoint;
    (c.size, c.root)
}

/// The ledger's latest signed checkpoint.
async fn latest_checkpoint(s: &mut TestServer, ledger: &str) -> String {
    s.proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: ledger.into(),
            size: None,
        })
        .await
        .expect("checkpoint")
        .into_inner()
        .checkpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_on_postgres_keeps_its_ledgers_across_restarts() {
    let Some(pg) =
        Postgres::start_or_skip("the_engine_on_postgres_keeps_its_ledgers_across_restarts")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || {
        let mut c = Config::new(dir.path().join("keys"));
        c.storage = Location::Postgres(pg.url.clone());
        c
    };
    let mut s = start_with(config(), tempfile::tempdir().expect("temp dir")).await;
    s.ledger("shop", &["orders"]).await;
    let r = s
        .transact("shop", vec![insert("orders", "o1", r#"{"n":1}"#)])
        .await
        .expect("insert");
    s.transact("shop", vec![update("orders", "o1", r#"{"n":2}"#, Some(0))])
        .await
        .expect("update");
    let key = Verifier::parse(
        &s.proofs
            .get_key(pb::GetKeyRequest {
                ledger: "shop".into(),
            })
            .await
            .expect("key")
            .into_inner()
            .vkey,
    )
    .expect("vkey");
    assert_eq!(head(&r.checkpoint, &key).0, 1);
    let doc = s
        .docs
        .get_document(pb::GetDocumentRequest {
            ledger: "shop".into(),
            table: "orders".into(),
            id: "o1".into(),
            version: None,
            proof: Some(pb::ProofRequest { tree_size: 0 }),
        })
        .await
        .expect("get")
        .into_inner()
        .revision
        .expect("revision");
    assert_eq!(
        (doc.version, doc.json.as_slice()),
        (1, br#"{"n":2}"#.as_slice())
    );
    let proof = doc.proof.expect("a proof");
    let (size, root) = head(&proof.checkpoint, &key);
    let hashes: Vec<graven_verify::Hash> = proof
        .hashes
        .iter()
        .map(|h| graven_verify::Hash(h.as_slice().try_into().expect("32 bytes")))
        .collect();
    graven_verify::check_inclusion(
        &hashes,
        doc.index,
        size,
        &graven_verify::leaf_hash(&doc.entry),
        &root,
    )
    .expect("the inclusion proof verifies");
    let before = latest_checkpoint(&mut s, "shop").await;

    // A restart reads the tree's edge back from PostgreSQL and checks it against the
    // signed checkpoint; writes continue the same tree.
    s.engine.close();
    drop(s);
    let mut s = start_with(config(), tempfile::tempdir().expect("temp dir")).await;
    let after = latest_checkpoint(&mut s, "shop").await;
    assert_eq!(after, before);
    let r = s
        .transact("shop", vec![insert("orders", "o2", "{}")])
        .await
        .expect("insert after the restart");
    assert_eq!(r.first_index, 2);

    // The online check runs on a PostgreSQL snapshot.
    let mut admin = s.admin.clone();
    let mut events = admin
        .check_ledger(pb::CheckLedgerRequest {
            name: "shop".into(),
        })
        .await
        .expect("check")
        .into_inner();
    let mut result = None;
    while let Some(e) = events.message().await.expect("event") {
        if let Some(pb::check_ledger_event::Kind::Result(r)) = e.kind {
            result = Some(r);
        }
    }
    let result = result.expect("a result");
    assert!(result.ok, "{}", result.problem);
    assert_eq!((result.entries, result.documents), (3, 2));

    // Deleted, its rows go: a new ledger of the name starts empty.
    s.admin
        .delete_ledger(pb::DeleteLedgerRequest {
            name: "shop".into(),
        })
        .await
        .expect("delete");
    let info = s.ledger("shop", &[]).await;
    assert_eq!(info.size, 0);
}

/// The command line on PostgreSQL: serve, write, export, the offline check with
/// --storage, and an import of the export into PostgreSQL beside the original.
#[test]
fn serve_check_and_import_on_postgres() {
    let Some(pg) = Postgres::start_or_skip("serve_check_and_import_on_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let storage = [("GRAVEN_STORAGE", pg.url.as_str())];
    let mut server = ServerProcess::start_with(&data, &log, &storage, &[]);
    let g = |args: &[&str]| graven_ok(&server.url, args);
    g(&["ledger", "create", "shop", "--no-deletion-protection"]);
    g(&["table", "create", "shop", "orders"]);
    for i in 0..5 {
        g(&["insert", "shop", "orders", "--id", &format!("o{i}"), "{}"]);
    }
    let export = dir.path().join("shop.export");
    g(&["export", "shop", "--out", export.to_str().expect("path")]);
    let online = g(&["check", "--online"]);
    assert!(online.contains("shop: ok: 5 entries"), "{online}");
    server.stop();

    let offline = |extra: &[&str]| {
        graven_command()
            .args(["check", "--data"])
            .arg(&data)
            .args(extra)
            .env("GRAVEN_STORAGE", &pg.url)
            .output()
            .expect("graven check")
    };
    let out = offline(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("shop: ok: 5 entries"));

    let key = data.join("ledgers/shop/signing.key");
    let import = || {
        graven_command()
            .arg("import")
            .arg(&export)
            .arg("--signing-key")
            .arg(&key)
            .args(["--ledger", "copy", "--data"])
            .arg(&data)
            .env("GRAVEN_STORAGE", &pg.url)
            .output()
            .expect("graven import")
    };
    let out = import();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second import of the same name is refused and leaves the first as it was.
    let again = import();
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let server = ServerProcess::start_with(&data, &log, &storage, &[]);
    let g = |args: &[&str]| graven_ok(&server.url, args);
    assert_eq!(g(&["checkpoint", "copy"]).lines().nth(1), Some("5"));
    assert_eq!(
        g(&["checkpoint", "shop"]).lines().nth(2),
        g(&["checkpoint", "copy"]).lines().nth(2)
    );
    assert!(g(&["get", "copy", "orders", "o3"]).contains(r#""id":"o3""#));
}

/// PostgreSQL crashes and comes back under a running graven: meanwhile requests get
/// UNAVAILABLE naming the storage; then graven reconnects by itself, reads the journal
/// back (a commit in flight at the crash may or may not have happened) and writes go on,
/// with every acknowledged transaction there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_after_postgres_restarts() {
    let Some(pg) = Postgres::start_or_skip("writes_resume_after_postgres_restarts") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(dir.path().join("keys"));
    config.storage = Location::Postgres(pg.url.clone());
    let mut s = start_with(config, tempfile::tempdir().expect("temp dir")).await;
    s.ledger("shop", &["orders"]).await;
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let id = format!("before-{i}");
        s.transact("shop", vec![insert("orders", &id, "{}")])
            .await
            .expect("insert");
        acknowledged.push(id);
    }

    pg.crash();
    let refused = s
        .transact("shop", vec![insert("orders", "during", "{}")])
        .await
        .expect_err("PostgreSQL is down");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("PostgreSQL"), "{refused:?}");
    let read = s
        .proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: "shop".into(),
            size: None,
        })
        .await
        .expect_err("reads too");
    assert_eq!(read.code(), tonic::Code::Unavailable, "{read:?}");

    pg.start_again();
    let mut attempts = 0;
    let r = loop {
        match s
            .transact("shop", vec![insert("orders", "after", "{}")])
            .await
        {
            Ok(r) => break r,
            Err(e) if e.code() == tonic::Code::Unavailable && attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("after the restart: {e:?}"),
        }
    };
    acknowledged.push("after".into());
    // The refused insert may have committed before the crash cut it off, or not.
    assert!((10..=11).contains(&r.first_index), "{}", r.first_index);
    for id in &acknowledged {
        s.docs
            .get_document(pb::GetDocumentRequest {
                ledger: "shop".into(),
                table: "orders".into(),
                id: id.clone(),
                version: None,
                proof: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{id} was acknowledged: {e:?}"));
    }
}

/// gRPC health follows the storage: NOT_SERVING while PostgreSQL does not answer, SERVING
/// again once it does, with nobody restarting graven.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_postgres_is_down() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let Some(pg) = Postgres::start_or_skip("health_is_not_serving_while_postgres_is_down") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(dir.path().join("keys"));
    config.storage = Location::Postgres(pg.url.clone());
    let s = start_with(config, tempfile::tempdir().expect("temp dir")).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let mut status = async || {
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "graven.v1.Documents".into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status
    };
    let mut wait_for = async |want: ServingStatus| {
        for _ in 0..100 {
            if status().await == want as i32 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("health did not become {want:?} within 10 s");
    };
    wait_for(ServingStatus::Serving).await;
    pg.crash();
    wait_for(ServingStatus::NotServing).await;
    pg.start_again();
    wait_for(ServingStatus::Serving).await;
}

/// Every server that may write a ledger holds its key in its own folder, never in the
/// database; a server whose key is not the ledger's (its signed checkpoint does not verify
/// with it) refuses to open the ledger, so it can never write with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_key_refuses_the_ledger() {
    let Some(pg) = Postgres::start_or_skip("a_server_with_another_key_refuses_the_ledger") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    let config = || {
        let mut c = Config::new(&keys);
        c.storage = Location::Postgres(pg.url.clone());
        c
    };
    let mut s = start_with(config(), tempfile::tempdir().expect("temp dir")).await;
    let info = s.ledger("shop", &[]).await;
    s.engine.close();
    drop(s);
    // The same key name, another key.
    let other = graven_verify::Signer::generate(&info.origin).expect("key");
    let key_file = keys.join("ledgers/shop/signing.key");
    std::fs::write(&key_file, format!("{}\n", other.to_private_key())).expect("replace the key");
    let err = graven::server::open_engine(config())
        .await
        .err()
        .expect("the ledger does not open");
    assert!(
        format!("{err:#}").contains("not signed by the ledger's key"),
        "{err:#}"
    );
}

/// TLS to PostgreSQL, with libpq's `sslmode`s, against a server that refuses connections
/// without TLS: each mode connects or is refused as libpq's would be; then a server
/// stores a ledger there over `verify-full`.
#[test]
fn tls_to_postgresql_as_sslmode_says() {
    let certs = tempfile::tempdir().expect("temp dir");
    crate::tls::certificates(certs.path());
    let Some(pg) = Postgres::start_tls_or_skip("tls_to_postgresql_as_sslmode_says", certs.path())
    else {
        return;
    };
    let file = |name: &str| certs.path().join(name).to_str().expect("utf-8").to_owned();
    let (ca, other_ca) = (file("ca.pem"), file("other-ca.pem"));
    let ping = |query: &str| PostgresBackend::ping(&format!("{}?{query}", pg.url));
    let refused = |query: &str| match ping(query) {
        Ok(()) => panic!("{query}: connected"),
        Err(e) => e.to_string(),
    };
    // Encrypted: prefer (the default), require, and both CA checks with the right CA.
    for query in [
        String::new(),
        "sslmode=require".into(),
        format!("sslmode=verify-ca&sslrootcert={ca}"),
        format!("sslmode=verify-full&sslrootcert={ca}"),
        format!("sslmode=require&sslrootcert={ca}"),
    ] {
        ping(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
    }
    // Without TLS, the server refuses (pg_hba.conf: hostnossl ... reject).
    let e = refused("sslmode=disable");
    assert!(
        e.contains("pg_hba.conf") || e.contains("no encryption"),
        "{e}"
    );
    // A certificate from a CA not given is refused, by the modes that check it.
    for mode in ["require", "verify-ca", "verify-full"] {
        let e = refused(&format!("sslmode={mode}&sslrootcert={other_ca}"));
        assert!(e.to_lowercase().contains("certificate"), "{mode}: {e}");
    }
    // verify-full checks the name too: the certificate names 127.0.0.1, not localhost.
    let by_name = pg.url.replace("127.0.0.1", "localhost");
    let name_ping =
        |mode: &str| PostgresBackend::ping(&format!("{by_name}?sslmode={mode}&sslrootcert={ca}"));
    if let Ok(addresses) = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 1))
        && addresses
            .into_iter()
            .any(|a| a.ip().is_loopback() && a.is_ipv4())
    {
        name_ping("verify-ca").expect("verify-ca ignores the name");
        let e = name_ping("verify-full").expect_err("verify-full checks the name");
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    }

    // A server on it, over verify-full.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("{}?sslmode=verify-full&sslrootcert={ca}", pg.url);
    let storage = [("GRAVEN_STORAGE", url.as_str())];
    let server = ServerProcess::start_with(
        &dir.path().join("data"),
        &dir.path().join("server.log"),
        &storage,
        &[],
    );
    for args in [
        &["ledger", "create", "shop"][..],
        &["table", "create", "shop", "orders"],
        &["insert", "shop", "orders", "--id", "o1", "{}"],
    ] {
        graven_ok(&server.url, args);
    }
}
