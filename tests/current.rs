//! Current-state proofs with the binaries: `graven proof current` then `graven-verify
//! current`, and the answers of a server that lies (an older version, a document said to be
//! absent, a stale checkpoint), each refused.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use graven_verify::InclusionProof;
use graven_verify::current::{CurrentProof, ProvenEntry};

use crate::util::{ServerProcess, graven_ok, verify_bin};

fn verify(args: &[&str]) -> Output {
    Command::new(verify_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running graven-verify")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `graven-verify current` on `proof` with `extra` options; the exit code and stdout.
fn current(key: &Path, proof: &str, file: &Path, extra: &[&str]) -> (Option<i32>, String) {
    std::fs::write(file, proof).expect("writing the proof");
    let mut args = vec!["current", "--key", path(key)];
    args.extend_from_slice(extra);
    args.push(path(file));
    let out = verify(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_current_answer_verifies_and_every_lie_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let server = ServerProcess::start(&d.join("data"), &d.join("server.log"));
    let url = &server.url;
    graven_ok(url, &["ledger", "create", "books"]);
    graven_ok(url, &["table", "create", "books", "orders"]);
    let key = d.join("books.vkey");
    std::fs::write(&key, graven_ok(url, &["key", "books"])).expect("key");
    let file = d.join("proof");
    // Journal: 0 insert o1, 1 insert o2, 2 update o1, 3 delete o2.
    graven_ok(
        url,
        &["insert", "books", "orders", "--id", "o1", r#"{"n":1}"#],
    );
    graven_ok(
        url,
        &["insert", "books", "orders", "--id", "o2", r#"{"n":1}"#],
    );
    let old = graven_ok(url, &["proof", "current", "books", "orders", "o1"]);
    let (code, text) = current(&key, &old, &file, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("version 0"), "{text}");
    graven_ok(url, &["update", "books", "orders", "o1", r#"{"n":2}"#]);
    graven_ok(url, &["delete", "books", "orders", "o2"]);

    // The compliance job has seen the latest checkpoint.
    let state = d.join("state");
    std::fs::write(
        &file,
        graven_ok(url, &["proof", "consistency", "books", "0"]),
    )
    .expect("proof");
    let out = verify(&[
        "consistency",
        "--key",
        path(&key),
        "--state",
        path(&state),
        path(&file),
    ]);
    assert!(out.status.success(), "{out:?}");

    // The truth: o1 at version 1, o2 deleted, o3 never written.
    let now = graven_ok(url, &["proof", "current", "books", "orders", "o1"]);
    let (code, text) = current(&key, &now, &file, &["--state", path(&state)]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("version 1") && text.contains("size 4"),
        "{text}"
    );
    for gone in ["o2", "o3"] {
        let absent = graven_ok(url, &["proof", "current", "books", "orders", gone]);
        let (code, text) = current(&key, &absent, &file, &["--state", path(&state)]);
        assert_eq!(code, Some(0), "{gone}: {text}");
        assert!(text.contains("absent"), "{gone}: {text}");
    }

    // A stale answer: true at size 2, refused against a state that has seen size 4.
    let (code, text) = current(&key, &old, &file, &["--state", path(&state)]);
    assert_eq!(code, Some(1), "stale: {text}");
    let checkpoints = std::fs::read_dir(&state).expect("state").count();
    assert_eq!(checkpoints, 1, "the state is not changed by current");

    // An older version as the current one, with its true inclusion proof at size 4.
    let mut lie = CurrentProof::parse(&now).expect("parses");
    let included = InclusionProof::parse(&graven_ok(url, &["proof", "inclusion", "books", "0"]))
        .expect("inclusion");
    let entry0 = graven_command(url, &["entry", "books", "0"]);
    lie.revision = Some(ProvenEntry {
        index: 0,
        entry: entry0.clone(),
        hashes: included.hashes,
    });
    let (code, text) = current(&key, &lie.to_text(), &file, &[]);
    assert_eq!(code, Some(1), "older version: {text}");

    // A live document said to be absent: o2's proof of absence relabelled as o1's.
    let mut lie = CurrentProof::parse(&graven_ok(
        url,
        &["proof", "current", "books", "orders", "o2"],
    ))
    .expect("parses");
    lie.id = "o1".into();
    let (code, text) = current(&key, &lie.to_text(), &file, &[]);
    assert_eq!(code, Some(1), "absence of a live document: {text}");

    // --entry: the current entry passes, an older one of the document does not.
    let entry_file = d.join("entry");
    std::fs::write(&entry_file, &entry0).expect("entry");
    let (code, text) = current(&key, &now, &file, &["--entry", path(&entry_file)]);
    assert_eq!(code, Some(1), "an older entry: {text}");
    std::fs::write(&entry_file, graven_command(url, &["entry", "books", "2"])).expect("entry");
    let (code, text) = current(&key, &now, &file, &["--entry", path(&entry_file)]);
    assert_eq!(code, Some(0), "the current entry: {text}");
}

/// `graven ARGS` against `url`, its stdout as bytes (entries are binary).
fn graven_command(url: &str, args: &[&str]) -> Vec<u8> {
    let out = crate::util::graven_command()
        .args(["--server", url])
        .args(args)
        .output()
        .expect("running graven");
    assert!(out.status.success(), "graven {args:?}: {out:?}");
    out.stdout
}
