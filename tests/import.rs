//! `graven import`: a whole export and the ledger's key rebuild the ledger offline, with
//! the same checkpoint, documents and history, and writes go on in the same tree; a
//! tampered, partial or foreign export is refused and leaves nothing behind. A data folder
//! is used by one process at a time.

use std::path::Path;
use std::process::Output;

use graven_verify::Signer;

use crate::util::{ServerProcess, graven_command, graven_ok, graven_on, verify_bin};

fn import(export: &Path, key: &Path, data: &Path, extra: &[&str]) -> Output {
    graven_on(data)
        .arg("import")
        .arg(export)
        .arg("--signing-key")
        .arg(key)
        .arg("--data")
        .arg(data)
        .args(extra)
        .output()
        .expect("running graven import")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names in a data folder's `ledgers/`, hidden ones included.
fn ledger_folders(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("ledgers"))
        .map(|dir| {
            dir.map(|d| {
                d.expect("dirent")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn an_export_and_its_key_restore_the_ledger() {
    let work = tempfile::tempdir().expect("temp dir");
    let w = work.path();
    let source = w.join("source");
    let mut server = ServerProcess::start(&source, &w.join("source.log"));
    let url = server.url.clone();
    graven_ok(&url, &["ledger", "create", "shop"]);
    graven_ok(&url, &["table", "create", "shop", "orders"]);
    graven_ok(&url, &["table", "create", "shop", "refunds"]);
    graven_ok(
        &url,
        &["insert", "shop", "orders", "--id", "o-1", r#"{"qty":1}"#],
    );
    graven_ok(&url, &["update", "shop", "orders", "o-1", r#"{"qty":2}"#]);
    graven_ok(
        &url,
        &["insert", "shop", "refunds", "--id", "r-1", r#"{"o":"o-1"}"#],
    );
    graven_ok(
        &url,
        &["insert", "shop", "orders", "--id", "o-2", r#"{"qty":5}"#],
    );
    graven_ok(&url, &["delete", "shop", "orders", "o-2"]);
    let history = graven_ok(&url, &["history", "shop", "orders", "o-1"]);
    let refund = graven_ok(&url, &["get", "shop", "refunds", "r-1"]);
    let export = w.join("shop.export");
    graven_ok(
        &url,
        &["export", "shop", "--out", export.to_str().expect("path")],
    );
    let partial = w.join("partial.export");
    graven_ok(
        &url,
        &[
            "export",
            "shop",
            "--out",
            partial.to_str().expect("path"),
            "--from",
            "1",
        ],
    );
    let checkpoint = graven_ok(&url, &["checkpoint", "shop"]);
    let vkey = graven_ok(&url, &["key", "shop"]);
    let key = source.join("ledgers/shop/signing.key");

    // Refused while a server uses the folder.
    let out = import(&export, &key, &source, &["--ledger", "copy"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    // As is a second server.
    let out = graven_command()
        .arg("serve")
        .arg("--data")
        .arg(&source)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("running graven serve");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is in use by another graven process"),
        "{}",
        stderr(&out)
    );
    server.stop();

    // Refusals, each leaving the target folder without a ledger.
    let target = w.join("target");
    let out = import(&partial, &key, &target, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the export begins at index 1"),
        "{}",
        stderr(&out)
    );
    let mut tampered = std::fs::read(&export).expect("read export");
    let at = tampered.len() - 200; // inside the last record or the trailer
    tampered[at] ^= 1;
    let bad = w.join("tampered.export");
    std::fs::write(&bad, &tampered).expect("write");
    let out = import(&bad, &key, &target, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("graven import: the export does not verify"),
        "{}",
        stderr(&out)
    );
    let other = w.join("other.key");
    let stranger = Signer::generate("graven.local/shop").expect("key");
    std::fs::write(&other, stranger.to_private_key()).expect("write key");
    let out = import(&export, &other, &target, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not verify with --signing-key"),
        "{}",
        stderr(&out)
    );
    let elsewhere = w.join("elsewhere.key");
    let foreign = Signer::generate("graven.local/books").expect("key");
    std::fs::write(&elsewhere, foreign.to_private_key()).expect("write key");
    let out = import(&export, &elsewhere, &target, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the export's origin"),
        "{}",
        stderr(&out)
    );
    assert!(
        ledger_folders(&target).is_empty(),
        "a refused import leaves nothing: {:?}",
        ledger_folders(&target)
    );

    // The restore.
    let out = import(&export, &key, &target, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.starts_with("imported shop: 5 entries, 3 documents (2 live), checkpoint size 5"),
        "{summary}"
    );
    assert_eq!(ledger_folders(&target), vec!["shop".to_owned()]);
    let out = import(&export, &key, &target, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    let mut restored = ServerProcess::start(&target, &w.join("target.log"));
    let url = restored.url.clone();
    assert_eq!(
        graven_ok(&url, &["checkpoint", "shop"]),
        checkpoint,
        "the same signed checkpoint"
    );
    assert_eq!(graven_ok(&url, &["key", "shop"]), vkey);
    assert_eq!(
        graven_ok(&url, &["history", "shop", "orders", "o-1"]),
        history
    );
    assert_eq!(graven_ok(&url, &["get", "shop", "refunds", "r-1"]), refund);
    let tables = graven_ok(&url, &["table", "list", "shop"]);
    assert!(
        tables.contains("orders") && tables.contains("refunds"),
        "{tables}"
    );
    // Writes continue the transaction ids and the tree: the next transaction is 5, and
    // the old checkpoint is consistent with the new one.
    let receipt = graven_ok(&url, &["insert", "shop", "orders", "--id", "o-3", "{}"]);
    assert!(receipt.contains(r#""tx":5,"index":5"#), "{receipt}");
    let old = w.join("old.checkpoint");
    std::fs::write(&old, &checkpoint).expect("write");
    let vkey_file = w.join("shop.vkey");
    std::fs::write(&vkey_file, &vkey).expect("write");
    let proof = w.join("consistency.txt");
    std::fs::write(
        &proof,
        graven_ok(&url, &["proof", "consistency", "shop", "5"]),
    )
    .expect("write");
    let out = std::process::Command::new(verify_bin())
        .arg("consistency")
        .arg("--key")
        .arg(&vkey_file)
        .arg("--old")
        .arg(&old)
        .arg(&proof)
        .output()
        .expect("running graven-verify");
    assert!(out.status.success(), "{}", stderr(&out));
    restored.stop();
}
