//! The command-line contract, end to end: the real `graven` client commands against a
//! `graven serve` child process on a loopback port, and the auditor's flow with the real
//! `graven-verify` on what they print.
//!
//! Contract: receipts and documents are one JSON object per line; checkpoints, keys and
//! proofs are the exact texts graven-verify reads; entries are raw bytes; errors are one
//! line on stderr with exit status 1; usage errors exit 2.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use graven_verify::{Entry, Operation};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::util::{ServerProcess, free_port, graven_command, verify_bin};

/// Runs `cmd` with `stdin` (empty when `None`) and returns what it did.
fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning a command");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).expect("writing stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("waiting for a command")
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "{args:?} exited with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts the command failed with `code`, printed nothing on stdout, and exactly one line
/// on stderr containing every one of `needles`. Returns that line.
#[track_caller]
fn assert_fails(args: &[&str], out: &Output, code: i32, needles: &[&str]) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", describe(args, out));
    assert!(out.stdout.is_empty(), "{}", describe(args, out));
    let stderr = String::from_utf8(out.stderr.clone()).expect("UTF-8 stderr");
    assert_eq!(
        stderr.trim_end_matches('\n').lines().count(),
        1,
        "one line on stderr: {}",
        describe(args, out)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr should contain {needle:?}: {}",
            describe(args, out)
        );
    }
    stderr
}

/// The `graven` client pointed at one server, with a folder for files.
struct Graven {
    url: String,
    files: PathBuf,
}

impl Graven {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = graven_command();
        cmd.args(["--server", &self.url]).args(args);
        cmd
    }

    fn output(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(self.command(args), stdin)
    }

    /// Runs a command that must succeed silently on stderr; returns stdout.
    #[track_caller]
    fn ok_bytes(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let out = self.output(args, stdin);
        assert!(out.status.success(), "{}", describe(args, &out));
        assert!(out.stderr.is_empty(), "{}", describe(args, &out));
        out.stdout
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok_bytes(args, None)).expect("UTF-8 stdout")
    }

    /// A command that prints one JSON object on one line.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        self.json_stdin(args, None)
    }

    #[track_caller]
    fn json_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Value {
        let out = String::from_utf8(self.ok_bytes(args, stdin)).expect("UTF-8 stdout");
        assert_eq!(out.lines().count(), 1, "one line from {args:?}: {out}");
        assert!(out.ends_with('\n'), "{args:?}: {out:?}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed {out:?}: {e}"))
    }

    /// Lines of a command's output.
    #[track_caller]
    fn lines(&self, args: &[&str]) -> Vec<String> {
        self.ok(args).lines().map(str::to_owned).collect()
    }

    #[track_caller]
    fn fails(&self, args: &[&str], code: i32, needles: &[&str]) -> String {
        let out = self.output(args, None);
        assert_fails(args, &out, code, needles)
    }

    /// Runs a command and saves its stdout, byte for byte, as `name`.
    #[track_caller]
    fn save(&self, args: &[&str], name: &str) -> PathBuf {
        let path = self.files.join(name);
        std::fs::write(&path, self.ok_bytes(args, None)).expect("writing a file");
        path
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.files.join(name);
        std::fs::write(&path, contents).expect("writing a file");
        path
    }
}

/// Runs graven-verify.
fn verify(args: &[&Path]) -> Output {
    let mut cmd = Command::new(verify_bin());
    cmd.args(args);
    run(cmd, None)
}

fn verify_args<'a>(args: &[&'a Path]) -> Vec<&'a str> {
    args.iter().map(|p| p.to_str().unwrap_or("?")).collect()
}

/// graven-verify exits 0 with one `verified ...` line on stdout and nothing on stderr.
#[track_caller]
fn assert_verified(args: &[&Path], kind: &str) -> String {
    let out = verify(args);
    let shown = verify_args(args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&shown, &out));
    assert!(out.stderr.is_empty(), "{}", describe(&shown, &out));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        stdout.starts_with(&format!("verified {kind}: ")) && stdout.lines().count() == 1,
        "{shown:?}: {stdout}"
    );
    stdout
}

/// graven-verify exits 1 (not verified) with one line on stderr.
#[track_caller]
fn assert_not_verified(args: &[&Path]) {
    let out = verify(args);
    assert_fails(&verify_args(args), &out, 1, &["graven-verify: "]);
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// The size on the second line of a checkpoint note.
fn checkpoint_size(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a checkpoint: {note:?}"))
}

/// A `graven get` / `graven history` line, with the document as the exact text printed.
#[derive(Debug, serde::Deserialize)]
struct Printed {
    id: String,
    version: u64,
    index: u64,
    operation: String,
    table: String,
    tx: u64,
    document: Option<Box<RawValue>>,
}

fn printed(line: &str) -> Printed {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn document_text(p: &Printed) -> Option<&str> {
    p.document.as_ref().map(|d| d.get())
}

#[track_caller]
fn u64_field(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field:?} should be a number in {v}"))
}

#[test]
fn help_and_usage_errors() {
    // --help for the program and every subcommand exits 0 with text on stdout.
    let helps: &[&[&str]] = &[
        &["--help"],
        &["help"],
        &["serve", "--help"],
        &["ledger", "--help"],
        &["ledger", "create", "--help"],
        &["ledger", "list", "--help"],
        &["ledger", "describe", "--help"],
        &["ledger", "update", "--help"],
        &["ledger", "delete", "--help"],
        &["table", "--help"],
        &["table", "create", "--help"],
        &["table", "list", "--help"],
        &["table", "drop", "--help"],
        &["insert", "--help"],
        &["update", "--help"],
        &["delete", "--help"],
        &["get", "--help"],
        &["history", "--help"],
        &["transact", "--help"],
        &["checkpoint", "--help"],
        &["key", "--help"],
        &["entry", "--help"],
        &["proof", "--help"],
        &["proof", "inclusion", "--help"],
        &["proof", "consistency", "--help"],
    ];
    for args in helps {
        let out = run(
            {
                let mut c = graven_command();
                c.args(*args);
                c
            },
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", describe(args, &out));
        assert!(!out.stdout.is_empty(), "{}", describe(args, &out));
    }
    let out = run(
        {
            let mut c = graven_command();
            c.args(["transact", "--help"]);
            c
        },
        None,
    );
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["operations", "insert", "check", "idempotency_key"] {
        assert!(
            help.contains(word),
            "transact --help should explain {word:?}"
        );
    }

    // Bad arguments exit 2 with a message on stderr, without contacting any server.
    let bad: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["--no-such-flag", "ledger", "list"],
        &["get", "only-a-ledger"],
        &["insert", "ledger"],
        &["entry", "ledger", "not-a-number"],
        &["get", "l", "t", "id", "--version", "-1"],
        &["proof", "inclusion", "l", "1", "--size", "x"],
        &["ledger", "update", "l", "--deletion-protection", "maybe"],
    ];
    for args in bad {
        let out = run(
            {
                let mut c = graven_command();
                c.args(["--server", "http://127.0.0.1:9"]).args(*args);
                c
            },
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{}", describe(args, &out));
        assert!(out.stdout.is_empty(), "{}", describe(args, &out));
        assert!(!out.stderr.is_empty(), "{}", describe(args, &out));
    }

    // graven-verify: --help exits 0; bad usage exits 2.
    let out = verify(&[p("--help")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("inclusion"));
    let out = verify(&[p("inclusion"), p("proof.txt")]);
    assert_fails(&["inclusion", "proof.txt"], &out, 2, &["--key"]);
    let out = verify(&[p("no-such-command")]);
    assert_eq!(out.status.code(), Some(2));

    // A storage URL that cannot be used: refused before anything starts, the setting
    // named, the password not repeated.
    let data = tempfile::tempdir().expect("temp dir");
    for (query, named) in [
        ("sslmode=verify-full", "sslrootcert=FILE"),
        (
            "sslmode=verify-ca&sslrootcert=/no/such/ca.pem",
            "sslrootcert /no/such/ca.pem",
        ),
        ("sslmode=sometimes", "sslmode \"sometimes\""),
    ] {
        let url = format!("postgresql://u:hunter2@127.0.0.1:9/db?{query}");
        let out = run(
            {
                let mut c = graven_command();
                c.args(["serve", "--listen", "127.0.0.1:0", "--data"])
                    .arg(data.path())
                    .env("GRAVEN_STORAGE", &url);
                c
            },
            None,
        );
        let args = ["serve", query];
        let text = assert_fails(&args, &out, 1, &["storage URL", named]);
        assert!(!text.contains("hunter2"), "{text}");
    }

    // No server listening: one line, exit 1.
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = run(
        {
            let mut c = graven_command();
            c.args(["--server", &url, "ledger", "list"]);
            c
        },
        None,
    );
    assert_fails(
        &["ledger", "list"],
        &out,
        1,
        &["graven: error: ", "connect"],
    );
}

#[test]
fn commands_and_auditor_flow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).expect("files folder");
    let server = ServerProcess::start(&dir.path().join("data"), &dir.path().join("server.log"));
    let g = Graven {
        url: server.url.clone(),
        files,
    };

    // ---- Ledgers.
    let info = g.json(&["ledger", "create", "books"]);
    assert_eq!(info["name"], "books");
    assert_eq!(info["origin"], "graven.local/books");
    assert_eq!(u64_field(&info, "size"), 0);
    assert_eq!(info["deletion_protection"], true, "on by default");
    let vkey = info["vkey"].as_str().expect("vkey").to_owned();
    assert!(vkey.starts_with("graven.local/books+"), "{vkey}");
    let zero = g.save(&["checkpoint", "books"], "zero.checkpoint");
    assert_eq!(
        std::fs::read_to_string(&zero).expect("checkpoint"),
        info["checkpoint"].as_str().expect("checkpoint")
    );
    g.fails(
        &["ledger", "create", "books"],
        1,
        &["graven: error: ", "AlreadyExists", "books"],
    );
    g.fails(
        &["ledger", "create", "Not_Valid!"],
        1,
        &["InvalidArgument", "ledger name"],
    );
    let scratch = g.json(&["ledger", "create", "scratch", "--no-deletion-protection"]);
    assert_eq!(scratch["deletion_protection"], false);
    assert_eq!(g.lines(&["ledger", "list"]), ["books", "scratch"]);
    let described = g.json(&["ledger", "describe", "books"]);
    assert_eq!(described["name"], "books");
    assert_eq!(described["vkey"], vkey.as_str());
    g.fails(
        &["ledger", "describe", "nosuch"],
        1,
        &["NotFound", "nosuch"],
    );

    // ---- Tables.
    assert_eq!(g.ok(&["table", "create", "books", "items"]), "");
    g.ok(&["table", "create", "books", "extra"]);
    let tables: BTreeSet<String> = g.lines(&["table", "list", "books"]).into_iter().collect();
    assert_eq!(tables, BTreeSet::from(["extra".into(), "items".into()]));
    g.fails(
        &["table", "create", "books", "items"],
        1,
        &["AlreadyExists", "items"],
    );
    g.ok(&["table", "drop", "books", "extra"]);
    assert_eq!(g.lines(&["table", "list", "books"]), ["items"]);
    g.fails(
        &["table", "drop", "books", "extra"],
        1,
        &["NotFound", "extra"],
    );
    g.fails(
        &["insert", "books", "extra", "{}"],
        1,
        &["NotFound", "extra"],
    );
    g.fails(&["table", "list", "nosuch"], 1, &["NotFound"]);

    // ---- Inserts: receipts, canonical documents, entries.
    let written = r#"{ "year": 1965, "title": "Dune", "tags": ["sf", "classic"], "price": 9.50 }"#;
    let canonical = r#"{"price":9.5,"tags":["sf","classic"],"title":"Dune","year":1965}"#;
    let r = g.json(&["insert", "books", "items", "--id", "b1", written]);
    assert_eq!(r["id"], "b1");
    assert_eq!(r["table"], "items");
    assert_eq!(u64_field(&r, "version"), 0);
    assert_eq!(u64_field(&r, "revisions"), 1);
    assert_eq!(r["replayed"], false);
    let b1_index = u64_field(&r, "index");
    assert_eq!(u64_field(&r, "first_index"), b1_index);
    let b1_tx = u64_field(&r, "tx");
    assert_eq!(r["results"].as_array().map(Vec::len), Some(1));
    let receipt_checkpoint = r["checkpoint"].as_str().expect("checkpoint").to_owned();
    assert!(checkpoint_size(&receipt_checkpoint) > b1_index);
    let vkey_file = g.save(&["key", "books"], "books.vkey");
    assert_eq!(
        std::fs::read_to_string(&vkey_file).expect("vkey"),
        format!("{vkey}\n")
    );
    let receipt_file = g.file("receipt.checkpoint", receipt_checkpoint.as_bytes());
    assert_verified(
        &[p("checkpoint"), p("--key"), &vkey_file, &receipt_file],
        "checkpoint",
    );

    let got = g.ok(&["get", "books", "items", "b1"]);
    let got = printed(got.trim_end());
    assert_eq!(
        (got.id.as_str(), got.version, got.index, got.tx),
        ("b1", 0, b1_index, b1_tx)
    );
    assert_eq!(
        (got.table.as_str(), got.operation.as_str()),
        ("items", "insert")
    );
    assert_eq!(
        document_text(&got),
        Some(canonical),
        "canonical form, verbatim"
    );
    let entry = g.ok_bytes(&["entry", "books", &b1_index.to_string()], None);
    let e = Entry::decode(&entry).expect("the entry decodes");
    assert_eq!(
        (
            e.table.as_str(),
            e.id.as_str(),
            e.version,
            e.tx_id,
            e.operation
        ),
        ("items", "b1", 0, b1_tx, Operation::Insert)
    );
    assert_eq!(
        e.body_hash.map(|h| h.0),
        Some(<[u8; 32]>::from(Sha256::digest(canonical.as_bytes()))),
        "the entry commits to the canonical document"
    );

    // A generated id; a document from standard input.
    let r = g.json(&["insert", "books", "items", r#"{"title":"Anonymous"}"#]);
    let generated = r["id"].as_str().expect("id");
    assert!(
        generated.len() == 32 && generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated}"
    );
    let r = g.json_stdin(
        &["insert", "books", "items", "--id", "b2", "-"],
        Some(b"{\"title\": \"Solaris\", \"author\": \"Lem\"}\n"),
    );
    assert_eq!(
        (r["id"].as_str(), u64_field(&r, "version")),
        (Some("b2"), 0)
    );
    let got = printed(g.ok(&["get", "books", "items", "b2"]).trim_end());
    assert_eq!(
        document_text(&got),
        Some(r#"{"author":"Lem","title":"Solaris"}"#)
    );
    g.fails(
        &["insert", "books", "items", "--id", "b1", "{}"],
        1,
        &["AlreadyExists", "b1"],
    );
    g.fails(
        &["insert", "books", "items", "{not json"],
        1,
        &["InvalidArgument", "json"],
    );
    g.fails(
        &["insert", "books", "items", "[1, 2]"],
        1,
        &["InvalidArgument"],
    );

    // The early checkpoint, for the consistency checks below.
    let early = g.save(&["checkpoint", "books"], "early.checkpoint");
    let early_text = std::fs::read_to_string(&early).expect("checkpoint");
    let early_size = checkpoint_size(&early_text);
    assert_eq!(early_size, 3);

    // ---- Updates and expected versions.
    let r = g.json(&[
        "update",
        "books",
        "items",
        "b1",
        r#"{"title":"Dune","price":10}"#,
        "--expect-version",
        "0",
    ]);
    assert_eq!(
        (r["id"].as_str(), u64_field(&r, "version")),
        (Some("b1"), 1)
    );
    let stale = g.fails(
        &[
            "update",
            "books",
            "items",
            "b1",
            r#"{"title":"stale"}"#,
            "--expect-version",
            "0",
        ],
        1,
        &["FailedPrecondition", "update", "b1", "version"],
    );
    assert!(stale.starts_with("graven: error: "), "{stale}");
    let r = g.json_stdin(
        &["update", "books", "items", "b1", "-"],
        Some(br#"{"title":"Dune","price":11}"#),
    );
    assert_eq!(u64_field(&r, "version"), 2);
    g.fails(
        &["update", "books", "items", "nosuch", "{}"],
        1,
        &["NotFound", "update", "nosuch"],
    );
    let got = printed(
        g.ok(&["get", "books", "items", "b1", "--version", "1"])
            .trim_end(),
    );
    assert_eq!(got.version, 1);
    assert_eq!(document_text(&got), Some(r#"{"price":10,"title":"Dune"}"#));
    let got = printed(g.ok(&["get", "books", "items", "b1"]).trim_end());
    assert_eq!(got.version, 2);
    assert_eq!(document_text(&got), Some(r#"{"price":11,"title":"Dune"}"#));
    g.fails(
        &["get", "books", "items", "b1", "--version", "9"],
        1,
        &["NotFound", "version 9"],
    );

    // ---- Deletes.
    g.fails(
        &["delete", "books", "items", "b2", "--expect-version", "5"],
        1,
        &["FailedPrecondition", "delete", "b2"],
    );
    let r = g.json(&["delete", "books", "items", "b2", "--expect-version", "0"]);
    assert_eq!(
        (r["id"].as_str(), u64_field(&r, "version")),
        (Some("b2"), 1)
    );
    g.fails(&["get", "books", "items", "b2"], 1, &["NotFound", "b2"]);
    g.fails(&["delete", "books", "items", "b2"], 1, &["NotFound", "b2"]);
    let got = printed(
        g.ok(&["get", "books", "items", "b2", "--version", "1"])
            .trim_end(),
    );
    assert_eq!(
        (got.operation.as_str(), document_text(&got)),
        ("delete", None)
    );

    // ---- History: JSON lines, oldest first.
    let history: Vec<Printed> = g
        .lines(&["history", "books", "items", "b1"])
        .iter()
        .map(|l| printed(l))
        .collect();
    let versions: Vec<u64> = history.iter().map(|h| h.version).collect();
    assert_eq!(versions, [0, 1, 2]);
    assert!(history.windows(2).all(|w| w[0].index < w[1].index));
    assert_eq!(document_text(&history[0]), Some(canonical));
    let ops: Vec<String> = g
        .lines(&["history", "books", "items", "b2"])
        .iter()
        .map(|l| printed(l).operation)
        .collect();
    assert_eq!(ops, ["insert", "delete"]);
    g.fails(&["history", "books", "items", "nosuch"], 1, &["NotFound"]);

    // ---- Transactions from a file and from standard input.
    let tx1 = g.file(
        "tx1.json",
        br#"{"operations": [
            {"insert": {"table": "items", "id": "b3", "document": {"title": "Ubik"}}},
            {"update": {"table": "items", "id": "b1", "document": {"title": "Dune", "price": 12},
                        "expect_version": 2}},
            {"check": {"table": "items", "id": "b2", "not_exists": true}}
        ], "idempotency_key": "tx-1"}"#,
    );
    let tx1 = tx1.to_str().expect("path");
    let r = g.json(&["transact", "books", tx1]);
    assert_eq!(u64_field(&r, "revisions"), 2);
    assert_eq!(r["replayed"], false);
    let results = r["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 3);
    let first = u64_field(&r, "first_index");
    assert_eq!(
        (
            results[0]["id"].as_str(),
            u64_field(&results[0], "version"),
            u64_field(&results[0], "index")
        ),
        (Some("b3"), 0, first)
    );
    assert_eq!(
        (
            results[1]["id"].as_str(),
            u64_field(&results[1], "version"),
            u64_field(&results[1], "index")
        ),
        (Some("b1"), 3, first + 1)
    );
    assert!(results[2]["index"].is_null(), "a check writes nothing");
    // The same file again: the same receipt, replayed.
    let again = g.json(&["transact", "books", tx1]);
    assert_eq!(again["replayed"], true);
    assert_eq!(again["tx"], r["tx"]);
    assert_eq!(again["results"], r["results"]);
    assert_eq!(again["checkpoint"], r["checkpoint"]);

    let r = g.json_stdin(
        &["transact", "books", "-"],
        Some(
            br#"{"operations": [
                {"insert": {"table": "items", "id": "b4", "document": {"n": 1}}},
                {"check": {"table": "items", "id": "b1", "version": 3}}]}"#,
        ),
    );
    assert_eq!(u64_field(&r, "revisions"), 1);
    let failing = g.file(
        "failing.json",
        br#"{"operations": [
            {"insert": {"table": "items", "id": "b5", "document": {"n": 5}}},
            {"check": {"table": "items", "id": "b1", "version": 0}}]}"#,
    );
    g.fails(
        &["transact", "books", failing.to_str().expect("path")],
        1,
        &["FailedPrecondition", "check", "b1"],
    );
    g.fails(&["get", "books", "items", "b5"], 1, &["NotFound"]);
    let malformed = g.file("malformed.json", br#"{"ops": []}"#);
    g.fails(
        &["transact", "books", malformed.to_str().expect("path")],
        1,
        &["operations"],
    );
    // Regressions: a mistyped expected version was ignored (an unconditional update), and
    // an empty --id wrote under a generated one. Both are refused and write nothing.
    let before = g.ok(&["checkpoint", "books"]);
    let mistyped = g.file(
        "mistyped.json",
        br#"{"operations": [{"update": {"table": "items", "id": "b1", "document": {}, "expect_version": "3"}}]}"#,
    );
    g.fails(
        &["transact", "books", mistyped.to_str().expect("path")],
        1,
        &["operations[0].update.expect_version", "invalid type"],
    );
    g.fails(
        &["insert", "books", "items", "--id", "", "{}"],
        1,
        &["--id must not be empty"],
    );
    assert_eq!(
        g.ok(&["checkpoint", "books"]),
        before,
        "nothing was written"
    );
    // The checkpoint of an earlier size: the same bytes as when it was the latest.
    assert_eq!(
        g.ok(&["checkpoint", "books", "--size", &early_size.to_string()]),
        early_text
    );

    // ---- More revisions: inserts, updates, deletes, to about 25.
    for i in 10..18 {
        let id = format!("b{i}");
        g.json(&[
            "insert",
            "books",
            "items",
            "--id",
            &id,
            &format!(r#"{{"i":{i}}}"#),
        ]);
        if i % 2 == 0 {
            g.json(&[
                "update",
                "books",
                "items",
                &id,
                &format!(r#"{{"i":{i},"even":true}}"#),
                "--expect-version",
                "0",
            ]);
        }
        if i % 4 == 0 {
            g.json(&["delete", "books", "items", &id]);
        }
    }
    let latest = g.save(&["checkpoint", "books"], "latest.checkpoint");
    let latest_text = std::fs::read_to_string(&latest).expect("checkpoint");
    let size = checkpoint_size(&latest_text);
    assert!((20..=30).contains(&size), "{size} revisions");
    let described = g.json(&["ledger", "describe", "books"]);
    assert_eq!(u64_field(&described, "size"), size);
    assert_eq!(described["checkpoint"], latest_text.as_str());
    assert_verified(
        &[p("checkpoint"), p("--key"), &vkey_file, &latest],
        "checkpoint",
    );

    // ---- The auditor's flow, for every revision: key, entry, proof, graven-verify.
    for index in 0..size {
        let i = index.to_string();
        let entry = g.save(&["entry", "books", &i], "entry");
        let e = Entry::decode(&std::fs::read(&entry).expect("entry"))
            .unwrap_or_else(|err| panic!("entry {index}: {err}"));
        // The entry is the one `get` reports for that version.
        let got = printed(
            g.ok(&[
                "get",
                "books",
                &e.table,
                &e.id,
                "--version",
                &e.version.to_string(),
            ])
            .trim_end(),
        );
        assert_eq!((got.index, got.tx), (index, e.tx_id), "entry {index}");
        let proof = g.save(&["proof", "inclusion", "books", &i], "proof");
        let line = assert_verified(
            &[
                p("inclusion"),
                p("--key"),
                &vkey_file,
                p("--entry"),
                &entry,
                &proof,
            ],
            "inclusion",
        );
        assert!(
            line.contains(&format!(" index {index} size {size} ")),
            "{line}"
        );
        // Against the smallest tree that holds it, and the early checkpoint's tree.
        let mut older = vec![index + 1];
        if index < early_size {
            older.push(early_size);
        }
        for at in older {
            let proof = g.save(
                &["proof", "inclusion", "books", &i, "--size", &at.to_string()],
                "proof-older",
            );
            let line = assert_verified(
                &[
                    p("inclusion"),
                    p("--key"),
                    &vkey_file,
                    p("--entry"),
                    &entry,
                    &proof,
                ],
                "inclusion",
            );
            assert!(line.contains(&format!(" size {at} ")), "{line}");
            if at == early_size {
                let text = std::fs::read_to_string(&proof).expect("proof");
                assert!(
                    text.ends_with(&early_text),
                    "a checkpoint of the same size is the same note"
                );
            }
        }
    }

    // ---- Consistency: the early checkpoint (and the empty one) to now, and to a middle.
    let proof = g.save(
        &["proof", "consistency", "books", &early_size.to_string()],
        "consistency",
    );
    let line = assert_verified(
        &[
            p("consistency"),
            p("--key"),
            &vkey_file,
            p("--old"),
            &early,
            &proof,
        ],
        "consistency",
    );
    assert!(
        line.contains(&format!("old size {early_size} size {size} ")),
        "{line}"
    );
    let proof = g.save(&["proof", "consistency", "books", "0"], "consistency-0");
    assert_verified(
        &[
            p("consistency"),
            p("--key"),
            &vkey_file,
            p("--old"),
            &zero,
            &proof,
        ],
        "consistency",
    );
    let middle = (early_size + size) / 2;
    let proof = g.save(
        &[
            "proof",
            "consistency",
            "books",
            &early_size.to_string(),
            "--size",
            &middle.to_string(),
        ],
        "consistency-middle",
    );
    let line = assert_verified(
        &[
            p("consistency"),
            p("--key"),
            &vkey_file,
            p("--old"),
            &early,
            &proof,
        ],
        "consistency",
    );
    assert!(line.contains(&format!(" size {middle} ")), "{line}");
    // The same proof against the receipt's checkpoint (another size) does not verify.
    let proof_from_3 = g.save(
        &[
            "proof",
            "consistency",
            "books",
            &(early_size + 1).to_string(),
        ],
        "consistency-wrong-old",
    );
    assert_not_verified(&[
        p("consistency"),
        p("--key"),
        &vkey_file,
        p("--old"),
        &early,
        &proof_from_3,
    ]);

    // ---- Tampering is caught: exit 1.
    let entry = g.save(&["entry", "books", &b1_index.to_string()], "b1.entry");
    let proof = g.save(
        &["proof", "inclusion", "books", &b1_index.to_string()],
        "b1.proof",
    );
    let mut bytes = std::fs::read(&entry).expect("entry");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let tampered = g.file("tampered.entry", &bytes);
    assert_not_verified(&[
        p("inclusion"),
        p("--key"),
        &vkey_file,
        p("--entry"),
        &tampered,
        &proof,
    ]);
    // Another entry (a real one, at another index) does not verify at b1's index either.
    let other = g.save(
        &["entry", "books", &(b1_index + 1).to_string()],
        "other.entry",
    );
    assert_not_verified(&[
        p("inclusion"),
        p("--key"),
        &vkey_file,
        p("--entry"),
        &other,
        &proof,
    ]);
    // Another ledger's key does not verify this ledger's checkpoints.
    let scratch_key = g.save(&["key", "scratch"], "scratch.vkey");
    assert_not_verified(&[
        p("inclusion"),
        p("--key"),
        &scratch_key,
        p("--entry"),
        &entry,
        &proof,
    ]);
    assert_not_verified(&[p("checkpoint"), p("--key"), &scratch_key, &latest]);
    // A checkpoint whose size was edited no longer carries a valid signature.
    let edited = latest_text.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    assert_ne!(edited, latest_text);
    let edited = g.file("edited.checkpoint", edited.as_bytes());
    assert_not_verified(&[p("checkpoint"), p("--key"), &vkey_file, &edited]);

    // ---- Out-of-range questions are one-line errors.
    let size_arg = size.to_string();
    g.fails(&["entry", "books", &size_arg], 1, &["OutOfRange"]);
    g.fails(
        &["proof", "inclusion", "books", &size_arg],
        1,
        &["OutOfRange"],
    );
    g.fails(
        &["proof", "consistency", "books", &(size + 1).to_string()],
        1,
        &["OutOfRange"],
    );

    // ---- Dropping a table keeps its documents; creating it again brings them back.
    g.ok(&["table", "drop", "books", "items"]);
    g.fails(&["get", "books", "items", "b1"], 1, &["NotFound", "items"]);
    g.ok(&["table", "create", "books", "items"]);
    let got = printed(g.ok(&["get", "books", "items", "b1"]).trim_end());
    assert_eq!(got.version, 3);

    // ---- Deleting ledgers: refused while deletion protection is on.
    g.fails(
        &["ledger", "delete", "books"],
        1,
        &["FailedPrecondition", "deletion protection"],
    );
    assert!(g.lines(&["ledger", "list"]).contains(&"books".to_owned()));
    let updated = g.json(&[
        "ledger",
        "update",
        "books",
        "--deletion-protection",
        "false",
    ]);
    assert_eq!(updated["deletion_protection"], false);
    assert_eq!(g.ok(&["ledger", "delete", "books"]), "");
    assert_eq!(g.lines(&["ledger", "list"]), ["scratch"]);
    g.fails(&["ledger", "describe", "books"], 1, &["NotFound", "books"]);
    g.fails(&["get", "books", "items", "b1"], 1, &["NotFound", "books"]);
    g.ok(&["ledger", "delete", "scratch"]);
    assert_eq!(g.ok(&["ledger", "list"]), "");
    drop(server);
}

/// `graven query`: a statement as an argument, from standard input (`-`), a file of
/// statements as one transaction, parameters, pages, errors.
#[test]
fn query_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).expect("files folder");
    let server = ServerProcess::start(&dir.path().join("data"), &dir.path().join("server.log"));
    let g = Graven {
        url: server.url.clone(),
        files,
    };
    g.json(&["ledger", "create", "q"]);
    g.ok(&["query", "q", "CREATE TABLE t"]);
    // A file of statements: one transaction, rows of every statement in order.
    let script = g.file(
        "load.sql",
        b"INSERT INTO t << {'n': 1}, {'n': 2} >>;\n-- a comment\nINSERT INTO t VALUE {'n': ?};\n",
    );
    let script = script.to_str().expect("path").to_owned();
    let ids = g.lines(&["query", "q", "--file", &script, "-p", "3"]);
    assert_eq!(ids.len(), 3, "{ids:?}");
    let rows = g.lines(&[
        "query",
        "q",
        "SELECT VALUE t.n FROM t ORDER BY t.n",
        "--page-size",
        "2",
    ]);
    assert_eq!(rows, ["1", "2", "3"], "every page printed");
    // From standard input.
    let out = g.output(
        &["query", "q", "-"],
        Some(b"SELECT COUNT(*) FROM t WHERE n > ?"),
    );
    assert_fails(
        &["query", "q", "-"],
        &out,
        1,
        &["1 parameter(s) (?), 0 given"],
    );
    let out = g.output(
        &["query", "q", "-", "-p", "1"],
        Some(b"SELECT COUNT(*) FROM t WHERE n > ?"),
    );
    assert!(
        out.status.success(),
        "{}",
        describe(&["query", "q", "-"], &out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"_1":2}"#);
    // Errors: one line, exit 1, naming where.
    g.fails(
        &["query", "q", "SELECT * FROM t WHERE"],
        1,
        &["InvalidArgument", "line 1, column 22"],
    );
    g.fails(
        &["query", "q", "SELECT * FROM nope"],
        1,
        &["NotFound", "nope"],
    );
    let usage = g.output(&["query", "q"], None);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "{}",
        describe(&["query", "q"], &usage)
    );
    assert!(String::from_utf8_lossy(&usage.stderr).contains("<STATEMENT>"));
}
