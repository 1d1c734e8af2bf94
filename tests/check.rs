//! `graven check`: a clean data folder passes; each kind of tampering done straight to the
//! redb file is found and the first bad index or row is named.

use std::path::{Path, PathBuf};
use std::process::Output;

use graven_verify::{Checkpoint, Signer, open_checkpoint};
use redb::ReadableTable;

use crate::util::{ServerProcess, bench_command, graven_command};
use crate::util::{delete, insert, start, update};

// The key spaces of docs/FORMAT.md §9, as someone editing a file by hand would write them
// (from the documented layout, not from graven's code).
const META: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");
const LEAVES: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("leaves");
const DOCS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("docs");
/// The version slot of a document's current-state row.
const CURRENT: u64 = u64::MAX;

/// A leaves key: the journal index, u64 big-endian.
fn leaf_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// A docs key: `table || 0x00 || id || 0x00 || u64 BE version`.
fn doc_key(table: &str, id: &str, version: u64) -> Vec<u8> {
    [
        table.as_bytes(),
        &[0],
        id.as_bytes(),
        &[0],
        &version.to_be_bytes(),
    ]
    .concat()
}

/// A docs value: `u64 BE version || u64 BE index || u8 live`.
fn doc_row(version: u64, index: u64, live: bool) -> Vec<u8> {
    [
        &version.to_be_bytes()[..],
        &index.to_be_bytes(),
        &[u8::from(live)],
    ]
    .concat()
}

/// Builds a stopped data folder with two ledgers. `books` (table `books`, `authors`):
///
/// | index | tx | revision |
/// |------:|---:|----------|
/// | 0 | 0 | insert b1 |
/// | 1 | 1 | insert b2 |
/// | 2, 3, 4 | 2 | insert b3, insert b4, update b1 |
/// | 5 | 3 | update b2 |
/// | 6 | 4 | delete b3 |
/// | 7, 8, 9 | 5 | update b1, delete b4, insert authors/a1 |
/// | 10 | 6 | insert b5 |
///
/// `notes` holds one insert.
async fn clean_folder() -> tempfile::TempDir {
    let mut s = start().await;
    s.ledger("books", &["books", "authors"]).await;
    s.ledger("notes", &["notes"]).await;
    let txs = vec![
        vec![insert("books", "b1", r#"{"title":"one"}"#)],
        vec![insert("books", "b2", r#"{"title":"two"}"#)],
        vec![
            insert("books", "b3", r#"{"title":"three"}"#),
            insert("books", "b4", r#"{"title":"four"}"#),
            update("books", "b1", r#"{"title":"one","v":2}"#, Some(0)),
        ],
        vec![update("books", "b2", r#"{"title":"two","v":2}"#, None)],
        vec![delete("books", "b3", Some(0))],
        vec![
            update("books", "b1", r#"{"title":"one","v":3}"#, Some(1)),
            delete("books", "b4", None),
            insert("authors", "a1", r#"{"name":"A"}"#),
        ],
        vec![insert("books", "b5", r#"{"title":"five"}"#)],
    ];
    for ops in txs {
        s.transact("books", ops).await.expect("transact");
    }
    s.transact("notes", vec![insert("notes", "n1", r#"{"x":1}"#)])
        .await
        .expect("transact");
    // An index on books.title (index id 0): entries for b1, b2 and b5.
    crate::query::query(&mut s, "books", "CREATE INDEX ON books (title)", &[])
        .await
        .expect("create index");
    crate::query::wait_online(&mut s, "books", "books").await;
    let crate::util::TestServer { engine, dir, .. } = s;
    engine.close();
    drop(engine);
    dir
}

/// A copy of a data folder, to tamper with.
fn copy_folder(from: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for dirent in std::fs::read_dir(from).expect("read dir") {
            let dirent = dirent.expect("dirent");
            let target = to.join(dirent.file_name());
            if dirent.file_type().expect("file type").is_dir() {
                copy(&dirent.path(), &target);
            } else {
                std::fs::copy(dirent.path(), &target).expect("copy");
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    copy(from, dir.path());
    dir
}

fn db_path(data: &Path, ledger: &str) -> PathBuf {
    data.join("ledgers").join(ledger).join("ledger.redb")
}

/// Runs `graven check --data DATA` with extra arguments.
fn check(data: &Path, extra: &[&str]) -> Output {
    graven_command()
        .arg("check")
        .arg("--data")
        .arg(data)
        .args(extra)
        .output()
        .expect("running graven check")
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies the clean folder, applies `tamper` to the `books` database in one write
/// transaction, runs the check and asserts exit 1 with `needle` on stderr; `notes` is still
/// checked and passes.
fn assert_found(
    clean: &Path,
    what: &str,
    needle: &str,
    tamper: impl FnOnce(&redb::WriteTransaction),
) {
    let copy = copy_folder(clean);
    {
        let db = redb::Database::open(db_path(copy.path(), "books")).expect("open redb");
        let txn = db.begin_write().expect("write txn");
        tamper(&txn);
        txn.commit().expect("commit");
    }
    let out = check(copy.path(), &[]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(1), "{what}: stderr {err}");
    assert!(
        err.contains(&format!("ledger books: {needle}")),
        "{what}: stderr should name {needle:?}: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{what}: one problem line: {err}");
    let text = stdout(&out);
    assert!(text.contains("books: FAILED"), "{what}: {text}");
    assert!(
        text.contains("notes: ok"),
        "{what}: the next ledger is checked: {text}"
    );
}

/// Reads, changes and writes back one `leaves` row.
fn edit_leaf(txn: &redb::WriteTransaction, index: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut leaves = txn.open_table(LEAVES).expect("leaves");
    let mut row = leaves
        .get(leaf_key(index).as_slice())
        .expect("get")
        .expect("row")
        .value()
        .to_vec();
    edit(&mut row);
    leaves
        .insert(leaf_key(index).as_slice(), row.as_slice())
        .expect("insert");
}

/// Replaces the stored latest checkpoint.
fn set_checkpoint(txn: &redb::WriteTransaction, note: &str) {
    let mut meta = txn.open_table(META).expect("meta");
    meta.insert(b"checkpoint".as_slice(), note.as_bytes())
        .expect("insert");
}

fn stored_checkpoint(txn: &redb::WriteTransaction, signer: &Signer) -> Checkpoint {
    let meta = txn.open_table(META).expect("meta");
    let note = String::from_utf8(
        meta.get(b"checkpoint".as_slice())
            .expect("get")
            .expect("row")
            .value()
            .to_vec(),
    )
    .expect("UTF-8");
    open_checkpoint(note.as_bytes(), &[signer.verifier()])
        .expect("clean checkpoint verifies")
        .checkpoint
}

#[tokio::test]
async fn a_clean_folder_passes_and_every_tampering_is_named() {
    let clean = clean_folder().await;
    let data = clean.path();

    // Clean: exit 0, a summary per ledger.
    let out = check(data, &[]);
    assert_eq!(code(&out), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("books: ok: 11 entries, 6 documents (4 live), checkpoint size 11"),
        "{text}"
    );
    assert!(text.contains("notes: ok: 1 entries"), "{text}");
    let out = check(data, &["--json", "--ledger", "books"]);
    assert_eq!(code(&out), Some(0), "stderr: {}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "only the ledger named");
    assert_eq!(lines[0]["ledger"], "books");
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(lines[0]["entries"], 11);
    assert_eq!(lines[0]["documents"], 6);
    assert_eq!(lines[0]["size"], 11);

    let key_text = std::fs::read_to_string(data.join("ledgers/books/signing.key")).expect("key");
    let signer = Signer::parse(&key_text).expect("key parses");

    // A byte of an entry (its commit time): the leaf hash no longer matches.
    assert_found(
        data,
        "entry byte",
        "index 5: stored leaf hash does not match the entry",
        |txn| edit_leaf(txn, 5, |row| row[4 + 25] ^= 1),
    );
    // A byte of an entry's principal (entry offset 47 for table "books", id "b1"), with
    // the leaf hash re-computed into the row: the stored leaf hash matches, the node above
    // it does not.
    assert_found(
        data,
        "entry re-hashed",
        "index 5: stored level 1 tree hash does not match",
        |txn| {
            edit_leaf(txn, 4, |row| {
                let len = u32::from_be_bytes(row[..4].try_into().unwrap()) as usize;
                row[4 + 47] ^= 1;
                let leaf = graven_verify::leaf_hash(&row[4..4 + len]);
                row[4 + len..4 + len + 32].copy_from_slice(&leaf.0);
            })
        },
    );
    // A body byte (the body ends the row).
    assert_found(
        data,
        "body byte",
        "index 4: the body does not hash to the entry's body hash",
        |txn| {
            edit_leaf(txn, 4, |row| {
                let at = row.len() - 3;
                row[at] ^= 1;
            })
        },
    );
    // A body removed, and a body added to a delete.
    assert_found(
        data,
        "body removed",
        "index 0: the body is missing",
        |txn| {
            edit_leaf(txn, 0, |row| {
                let len = u32::from_be_bytes(row[..4].try_into().unwrap()) as usize;
                row.truncate(4 + len + 32);
            })
        },
    );
    assert_found(
        data,
        "body for a delete",
        "index 6: a delete has a body",
        |txn| edit_leaf(txn, 6, |row| row.extend_from_slice(b"{}")),
    );
    // A row cut inside its tree hashes.
    assert_found(
        data,
        "short row",
        "index 3: the journal row is malformed (too short for its entry and 3 tree hashes)",
        |txn| {
            edit_leaf(txn, 3, |row| {
                let len = u32::from_be_bytes(row[..4].try_into().unwrap()) as usize;
                row.truncate(4 + len + 2 * 32 + 5);
            })
        },
    );
    // A stored tree hash: index 3 stores its leaf, [2, 4) and [0, 4).
    assert_found(
        data,
        "tree hash",
        "index 3: stored level 2 tree hash does not match",
        |txn| {
            edit_leaf(txn, 3, |row| {
                let len = u32::from_be_bytes(row[..4].try_into().unwrap()) as usize;
                row[4 + len + 3 * 32 - 1] ^= 1;
            })
        },
    );
    // An entry row deleted, in the middle and at the end.
    assert_found(
        data,
        "row deleted",
        "index 7: the journal row is missing",
        |txn| {
            let mut leaves = txn.open_table(LEAVES).expect("leaves");
            leaves.remove(leaf_key(7).as_slice()).expect("remove");
        },
    );
    assert_found(
        data,
        "last row deleted",
        "index 10: missing: the journal has 10 entries, the signed checkpoint covers 11",
        |txn| {
            let mut leaves = txn.open_table(LEAVES).expect("leaves");
            leaves.remove(leaf_key(10).as_slice()).expect("remove");
        },
    );
    // Two entry rows swapped (each with its own hashes): 4 and 8 both store one hash, so
    // the leaf hashes match and the transaction order gives it away.
    assert_found(
        data,
        "rows swapped",
        "index 4: transaction 5, position 1",
        |txn| {
            let mut leaves = txn.open_table(LEAVES).expect("leaves");
            let a = leaves
                .get(leaf_key(4).as_slice())
                .expect("get")
                .expect("row")
                .value()
                .to_vec();
            let b = leaves
                .get(leaf_key(8).as_slice())
                .expect("get")
                .expect("row")
                .value()
                .to_vec();
            leaves
                .insert(leaf_key(4).as_slice(), b.as_slice())
                .expect("insert");
            leaves
                .insert(leaf_key(8).as_slice(), a.as_slice())
                .expect("insert");
        },
    );
    // The checkpoint signed by another key with the same name.
    assert_found(
        data,
        "foreign checkpoint",
        "meta: the latest checkpoint is not signed by the ledger's key",
        |txn| {
            let head = stored_checkpoint(txn, &signer);
            let other = Signer::generate(signer.name()).expect("keygen");
            set_checkpoint(txn, &head.sign(&other).expect("sign"));
        },
    );
    // The checkpoint re-signed by the ledger's own key with another size, or another root.
    assert_found(
        data,
        "checkpoint size",
        "index 10: beyond the signed checkpoint, which covers 10 entries",
        |txn| {
            let mut head = stored_checkpoint(txn, &signer);
            head.size -= 1;
            set_checkpoint(txn, &head.sign(&signer).expect("sign"));
        },
    );
    assert_found(data, "checkpoint root", "the journal's root", |txn| {
        let mut head = stored_checkpoint(txn, &signer);
        head.root = graven_verify::EMPTY_ROOT;
        set_checkpoint(txn, &head.sign(&signer).expect("sign"));
    });
    // A checkpoint with a different origin (signed by a key of that name).
    assert_found(
        data,
        "checkpoint origin",
        "meta: the latest checkpoint",
        |txn| {
            let mut head = stored_checkpoint(txn, &signer);
            head.origin = "elsewhere/books".into();
            let other = Signer::generate("elsewhere/books").expect("keygen");
            set_checkpoint(txn, &head.sign(&other).expect("sign"));
        },
    );
    // A revision row pointing at the wrong index.
    assert_found(
        data,
        "docs row",
        r#"docs row ("books", "b2", version 1): points at index 3, whose entry is ("books", "b4", version 0)"#,
        |txn| {
            let mut docs = txn.open_table(DOCS).expect("docs");
            docs.insert(
                doc_key("books", "b2", 1).as_slice(),
                doc_row(1, 3, true).as_slice(),
            )
            .expect("insert");
        },
    );
    // A current-state row pointing at an older revision.
    assert_found(
        data,
        "current row",
        r#"docs row ("books", "b1", current): holds version 1; versions are not dense: expected version 2"#,
        |txn| {
            let mut docs = txn.open_table(DOCS).expect("docs");
            docs.insert(
                doc_key("books", "b1", CURRENT).as_slice(),
                doc_row(1, 4, true).as_slice(),
            )
            .expect("insert");
        },
    );
    // A deleted document shown live.
    assert_found(
        data,
        "live flag",
        r#"docs row ("books", "b3", current): says live true, the entry at index 6 is a delete"#,
        |txn| {
            let mut docs = txn.open_table(DOCS).expect("docs");
            docs.insert(
                doc_key("books", "b3", CURRENT).as_slice(),
                doc_row(1, 6, true).as_slice(),
            )
            .expect("insert");
        },
    );
    // A revision row removed, and the current row moved back onto the one before: every
    // row is right, but the latest entry has none.
    assert_found(
        data,
        "revision row removed",
        r#"index 7: no docs row ("books", "b1", version 2) points at it"#,
        |txn| {
            let mut docs = txn.open_table(DOCS).expect("docs");
            docs.remove(doc_key("books", "b1", 1).as_slice())
                .expect("remove");
            docs.insert(
                doc_key("books", "b1", CURRENT).as_slice(),
                doc_row(1, 4, true).as_slice(),
            )
            .expect("insert");
        },
    );
    // Index entries: one removed, one holding another value, one naming an old revision.
    let entry = |value: &str, id: &str| {
        let mut key = 0u32.to_be_bytes().to_vec();
        key.push(0x04);
        key.extend_from_slice(value.as_bytes());
        key.extend_from_slice(&[0, 0]);
        key.extend_from_slice(id.as_bytes());
        key
    };
    const ENTRIES: redb::TableDefinition<&[u8], &[u8]> =
        redb::TableDefinition::new("index_entries");
    assert_found(
        data,
        "index entry removed",
        r#"index title of table "books": 2 entries for 3 documents with a value"#,
        |txn| {
            let mut entries = txn.open_table(ENTRIES).expect("index entries");
            let gone = entries
                .remove(entry("two", "b2").as_slice())
                .expect("remove");
            assert!(gone.is_some(), "the entry was there");
        },
    );
    assert_found(
        data,
        "index entry changed",
        r#"index title of table "books": the entry of document "b1" does not hold its value"#,
        |txn| {
            let mut entries = txn.open_table(ENTRIES).expect("index entries");
            let row = entries
                .remove(entry("one", "b1").as_slice())
                .expect("remove")
                .expect("the entry was there")
                .value()
                .to_vec();
            entries
                .insert(entry("uno", "b1").as_slice(), row.as_slice())
                .expect("insert");
        },
    );
    // An entry's value: the document's current version and journal index (b1's is
    // version 2 at 7), here moved back to version 1 at 4.
    assert_found(
        data,
        "index entry naming an old revision",
        r#"index title of table "books": the entry of document "b1" names version 1 at journal index 4, but the current is version 2 at 7"#,
        |txn| {
            let mut entries = txn.open_table(ENTRIES).expect("index entries");
            let old = [1u64.to_be_bytes(), 4u64.to_be_bytes()].concat();
            entries
                .insert(entry("one", "b1").as_slice(), old.as_slice())
                .expect("insert");
        },
    );
    // The state map: a node's stored hash changed, a node removed, the root changed. The
    // first row in key order is the root's node (depth 0, the all-zero prefix).
    const STATE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");
    let root_node = [0u8; 33];
    assert_found(
        data,
        "state map node changed",
        &format!(
            "the state map's node at depth 0 ({}) differs from the journal's",
            "0".repeat(64)
        ),
        |txn| {
            let mut nodes = txn.open_table(STATE).expect("state");
            let mut row = nodes
                .get(root_node.as_slice())
                .expect("get")
                .expect("the root is a node")
                .value()
                .to_vec();
            *row.last_mut().expect("bytes") ^= 1;
            nodes
                .insert(root_node.as_slice(), row.as_slice())
                .expect("insert");
        },
    );
    assert_found(
        data,
        "state map node removed",
        "the state map has ",
        |txn| {
            let mut nodes = txn.open_table(STATE).expect("state");
            let last = nodes
                .last()
                .expect("last")
                .expect("a node")
                .0
                .value()
                .to_vec();
            nodes.remove(last.as_slice()).expect("remove");
        },
    );
    assert_found(
        data,
        "state map root changed",
        "the state map's stored root is not the journal's",
        |txn| {
            let mut meta = txn.open_table(META).expect("meta");
            let mut row = meta
                .get(b"state_root".as_slice())
                .expect("get")
                .expect("a root")
                .value()
                .to_vec();
            *row.last_mut().expect("bytes") ^= 1;
            meta.insert(b"state_root".as_slice(), row.as_slice())
                .expect("insert");
        },
    );
    // A row for the current version besides the current-state row.
    assert_found(
        data,
        "current version row",
        r#"docs row ("books", "b5", current): holds version 0; versions are not dense: expected version 1"#,
        |txn| {
            let mut docs = txn.open_table(DOCS).expect("docs");
            docs.insert(
                doc_key("books", "b5", 0).as_slice(),
                doc_row(0, 10, true).as_slice(),
            )
            .expect("insert");
        },
    );
}

#[tokio::test]
async fn check_refuses_to_run_on_a_folder_in_use_or_missing() {
    let mut s = start().await;
    s.ledger("books", &["books"]).await;
    // The server holds the database's lock.
    let out = check(s.dir.path(), &[]);
    assert_eq!(code(&out), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "ledger books: cannot check: the ledger is in use (is graven serve running? \
             `graven check --online` checks a running server)"
        ),
        "{}",
        stderr(&out)
    );
    s.engine.close();
    let out = check(s.dir.path(), &[]);
    assert_eq!(code(&out), Some(0), "stderr: {}", stderr(&out));
    // An unknown ledger, a missing folder.
    let out = check(s.dir.path(), &["--ledger", "nope"]);
    assert_eq!(code(&out), Some(2));
    assert!(
        stderr(&out).contains("ledger \"nope\" does not exist"),
        "{}",
        stderr(&out)
    );
    let out = check(&s.dir.path().join("missing"), &[]);
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    let out = graven_command()
        .args(["check", "--bogus"])
        .output()
        .expect("run");
    assert_eq!(code(&out), Some(2));
}

/// The server's own start-up check: a ledger whose stored tree does not match its latest
/// signed checkpoint is not served, and the error says how to find out more.
#[tokio::test]
async fn the_server_refuses_a_ledger_whose_tree_does_not_match_its_checkpoint() {
    let clean = clean_folder().await;
    let key_text =
        std::fs::read_to_string(clean.path().join("ledgers/books/signing.key")).expect("key");
    let signer = Signer::parse(&key_text).expect("key parses");
    type Tamper<'a> = Box<dyn Fn(&redb::WriteTransaction) + 'a>;
    let tampered: [(&str, Tamper<'_>); 2] = [
        // A right-edge tree hash changed: the size 11 range reads leaves 7, 9 and 10.
        (
            "tree hash",
            Box::new(|txn| {
                edit_leaf(txn, 10, |row| {
                    let len = u32::from_be_bytes(row[..4].try_into().unwrap()) as usize;
                    row[4 + len] ^= 1;
                })
            }),
        ),
        // The checkpoint replaced by a validly signed one of another root.
        (
            "checkpoint",
            Box::new(|txn| {
                let mut head = stored_checkpoint(txn, &signer);
                head.root = graven_verify::EMPTY_ROOT;
                set_checkpoint(txn, &head.sign(&signer).expect("sign"));
            }),
        ),
    ];
    for (what, tamper) in tampered {
        let copy = copy_folder(clean.path());
        {
            let db = redb::Database::open(db_path(copy.path(), "books")).expect("open redb");
            let txn = db.begin_write().expect("write txn");
            tamper(&txn);
            txn.commit().expect("commit");
        }
        let err = graven::engine::Engine::open(graven::engine::Config::new(copy.path()))
            .err()
            .unwrap_or_else(|| panic!("{what}: a tampered ledger was opened"));
        let msg = err.to_string();
        assert!(
            msg.contains("opening ledger \"books\"")
                && msg.contains("does not match the latest signed checkpoint")
                && msg.contains("graven check --data"),
            "{what}: {msg}"
        );
    }
}

/// Runs `graven --server URL check --online` with extra arguments.
fn check_online(url: &str, extra: &[&str]) -> Output {
    graven_command()
        .args(["--server", url, "check", "--online"])
        .args(extra)
        .output()
        .expect("running graven check --online")
}

/// The ledger's size, as `graven ledger describe` reports it.
fn described_size(url: &str, ledger: &str) -> u64 {
    let out = graven_command()
        .args(["--server", url, "ledger", "describe", ledger])
        .output()
        .expect("running graven ledger describe");
    assert!(out.status.success(), "describe: {}", stderr(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("describe JSON");
    info["size"].as_u64().expect("size")
}

/// `graven check --online`: the running server checks each ledger in one read snapshot
/// while writes go on, and finds what the start-up check (the tree's right edge only)
/// lets through: a changed body, a signing key replaced under the running server.
#[tokio::test]
async fn the_online_check_reads_a_snapshot_of_a_running_server() {
    let clean = clean_folder().await;
    let logs = tempfile::tempdir().expect("temp dir");

    // Tampered before the start: a body byte of index 4 (the server starts, as its check
    // reads only the right edge); then, while it runs, notes' signing.key replaced.
    let copy = copy_folder(clean.path());
    {
        let db = redb::Database::open(db_path(copy.path(), "books")).expect("open redb");
        let txn = db.begin_write().expect("write txn");
        edit_leaf(&txn, 4, |row| *row.last_mut().expect("a body") ^= 1);
        txn.commit().expect("commit");
    }
    let server = ServerProcess::start(copy.path(), &logs.path().join("tampered.log"));
    let out = check_online(&server.url, &[]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(1), "stderr: {err}");
    assert_eq!(
        err.trim(),
        "ledger books: index 4: the body does not hash to the entry's body hash"
    );
    assert!(stdout(&out).contains("notes: ok"), "{}", stdout(&out));
    let other = Signer::generate("graven.local/notes").expect("key");
    std::fs::write(
        copy.path().join("ledgers/notes/signing.key"),
        other.to_private_key(),
    )
    .expect("replace the key");
    let out = check_online(&server.url, &[]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(1), "stderr: {err}");
    assert!(
        err.contains("ledger books: index 4: the body does not hash to the entry's body hash"),
        "{err}"
    );
    assert!(
        err.contains("ledger notes: signing.key on disk is not the key the server signs with"),
        "{err}"
    );
    assert!(stdout(&out).contains("books: FAILED"), "{}", stdout(&out));
    // One ledger at a time, and unknown ones refused (exit 2).
    let out = check_online(&server.url, &["--ledger", "nope", "--json"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(r#""status":"error""#),
        "{}",
        stdout(&out)
    );
    drop(server);

    // Clean, and checked while 4 clients write: the check sees one consistent state, of a
    // size between the ledger's before and after.
    let copy = copy_folder(clean.path());
    let mut server = ServerProcess::start(copy.path(), &logs.path().join("clean.log"));
    let bench = |args: &[&str]| {
        bench_command()
            .args(["--server", &server.url, "--ledger", "books"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("running graven-bench")
    };
    // Enough entries that the check takes a while.
    let status = bench(&["--workload", "w3", "--count", "8", "--ops", "1000"])
        .wait()
        .expect("bench");
    assert!(status.success());
    let mut writers = bench(&["--workload", "w2", "--clients", "4", "--duration", "4"]);
    let start = described_size(&server.url, "books");
    while described_size(&server.url, "books") < start + 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let before = described_size(&server.url, "books");
    let out = check_online(&server.url, &["--ledger", "books", "--json"]);
    let after = described_size(&server.url, "books");
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON line");
    let checked = result["entries"].as_u64().expect("entries");
    assert!(
        (before..=after).contains(&checked) && checked >= 8_011,
        "checked {checked} entries, the ledger had {before} before and {after} after"
    );
    assert!(writers.wait().expect("bench").success());
    assert!(
        described_size(&server.url, "books") > checked,
        "writes went on"
    );
    server.stop();
    let out = check(copy.path(), &[]);
    assert_eq!(code(&out), Some(0), "offline after: {}", stderr(&out));
}
