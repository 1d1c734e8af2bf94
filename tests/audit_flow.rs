//! The auditor's and the consumer's flows with the real binaries: `graven export` then
//! `graven-verify audit`, `graven tail` piped to `graven-verify stream`, and the
//! compliance job's `graven-verify consistency --state` loop.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::{ServerProcess, graven_command, graven_ok, verify_bin};

fn verify(args: &[&str]) -> Output {
    Command::new(verify_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running graven-verify")
}

/// Pipes `input` through `graven-verify stream --key KEY`.
fn verify_stream(key: &str, input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut stream = Command::new(verify_bin())
        .args(["stream", "--key", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graven-verify stream");
    let mut stdin = stream.stdin.take().expect("stdin");
    stdin.write_all(input).expect("feeding the stream");
    drop(stdin);
    stream.wait_with_output().expect("stream output")
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("writing a test file");
}

#[test]
fn export_audit_tail_stream_and_the_checkpoint_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let server = ServerProcess::start(&d.join("data"), &d.join("server.log"));
    graven_ok(&server.url, &["ledger", "create", "books"]);
    graven_ok(&server.url, &["table", "create", "books", "orders"]);
    graven_ok(&server.url, &["table", "create", "books", "outbox"]);
    let key = d.join("books.vkey");
    write(&key, graven_ok(&server.url, &["key", "books"]).as_bytes());
    let state = d.join("state");
    let state_arg = state.to_str().expect("utf-8 path");
    let key_arg = key.to_str().expect("utf-8 path");

    // The compliance job's loop: fetch a proof from the size it keeps, verify it against
    // the kept checkpoint, and keep the new one. Round 1 starts from the empty tree.
    let proof = d.join("proof");
    let advance = |kept: u64| -> u64 {
        let text = graven_ok(
            &server.url,
            &["proof", "consistency", "books", &kept.to_string()],
        );
        write(&proof, text.as_bytes());
        let out = verify(&[
            "consistency",
            "--json",
            "--key",
            key_arg,
            "--state",
            state_arg,
            proof.to_str().expect("path"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["size"].as_u64().expect("size")
    };
    let mut kept = advance(0);
    let tx = d.join("tx.json");
    for i in 0..40 {
        write(
            &tx,
            format!(
                r#"{{"operations":[{{"insert":{{"table":"orders","id":"o{i}","document":{{"n":{i}}}}}}},
                {{"insert":{{"table":"outbox","id":"e{i}","document":{{"order":"o{i}"}}}}}}]}}"#
            )
            .as_bytes(),
        );
        graven_ok(
            &server.url,
            &["transact", "books", tx.to_str().expect("path")],
        );
        if i % 10 == 3 {
            graven_ok(
                &server.url,
                &["update", "books", "orders", &format!("o{i}"), r#"{"n":-1}"#],
            );
        }
        if i % 10 == 7 {
            graven_ok(
                &server.url,
                &["delete", "books", "outbox", &format!("e{i}")],
            );
        }
        if i % 13 == 0 {
            kept = advance(kept);
        }
    }
    kept = advance(kept);
    assert_eq!(kept, 88, "the kept checkpoint follows the ledger");
    // A proof from an older size than the one kept is refused: the chain never goes back.
    write(
        &proof,
        graven_ok(&server.url, &["proof", "consistency", "books", "10"]).as_bytes(),
    );
    let out = verify(&[
        "consistency",
        "--key",
        key_arg,
        "--state",
        state_arg,
        proof.to_str().expect("path"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Full and partial exports audit clean.
    let full = d.join("full.export");
    graven_ok(
        &server.url,
        &["export", "books", "--out", full.to_str().expect("path")],
    );
    let out = verify(&["audit", "--key", key_arg, full.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("entries 88"), "{summary}");
    let part = d.join("part.export");
    graven_ok(
        &server.url,
        &[
            "export",
            "books",
            "--out",
            part.to_str().expect("path"),
            "--from",
            "17",
            "--to",
            "60",
        ],
    );
    let out = verify(&["audit", "--key", key_arg, part.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An export is never overwritten by accident, and no temporary file is left behind.
    let again = graven_command()
        .args([
            "--server",
            &server.url,
            "export",
            "books",
            "--out",
            full.to_str().expect("path"),
        ])
        .output()
        .expect("running graven");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // One flipped byte in the middle of the export is caught, and named.
    let mut bytes = std::fs::read(&full).expect("read export");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = d.join("tampered.export");
    write(&tampered, &bytes);
    let out = verify(&["audit", "--key", key_arg, tampered.to_str().expect("path")]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a tampered export must not audit clean"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("index"),
        "the error names the index"
    );

    // The change stream of the outbox table, verified as it goes.
    let tail = graven_command()
        .args([
            "--server",
            &server.url,
            "tail",
            "books",
            "--from",
            "0",
            "--to",
            "88",
            "--table",
            "outbox",
        ])
        .output()
        .expect("running graven tail");
    assert!(tail.status.success());
    let out = verify_stream(key_arg, &tail.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = verified.lines().collect();
    // 40 outbox inserts and 4 deletes, every one covered by a checkpoint.
    assert_eq!(lines.len(), 44, "{verified}");
    assert!(lines.iter().all(|l| l.contains("\"table\":\"outbox\"")));

    // A forged revision in the piped stream is caught.
    let forged =
        String::from_utf8_lossy(&tail.stdout).replacen("\"order\":\"o5\"", "\"order\":\"o6\"", 1);
    let out = verify_stream(key_arg, forged.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
