//! End-to-end tests of the `graven-verify` binary: exit codes (0 verified, 1 not verified,
//! 2 bad usage or malformed input), its one line of output, and its one line of error.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use graven_verify::checkpoint::Checkpoint;
use graven_verify::hash::{Hash, leaf_hash};
use graven_verify::note::{Signer, Verifier};
use graven_verify::proof::{ConsistencyProof, InclusionProof};
use graven_verify::tree::{CompactRange, prove_consistency, prove_inclusion, tree_hash};

const BIN: &str = env!("CARGO_BIN_EXE_graven-verify");

/// The example key and note of the C2SP signed-note specification
/// (https://c2sp.org/signed-note): validly signed, but not a checkpoint.
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

/// A scratch directory under the system temp dir, unique to the test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("graven-verify-cli-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).expect("write temp file");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What a run of the binary produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_in(dir: Option<&Path>, args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &[u8]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().expect("spawn graven-verify");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().expect("exited normally, not by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    run_in(None, args, b"")
}

/// Asserts success: exit 0, exactly one line on stdout, nothing on stderr. Returns the line.
fn ok(r: &Run) -> String {
    assert_eq!(r.code, 0, "expected success: {r:?}");
    assert!(r.stderr.is_empty(), "stderr on success: {r:?}");
    one_line(&r.stdout, r).to_owned()
}

/// Asserts failure with `code`: nothing on stdout, exactly one line on stderr, and no panic.
fn fails(r: &Run, code: i32) -> String {
    assert_eq!(r.code, code, "expected exit {code}: {r:?}");
    assert!(r.stdout.is_empty(), "stdout on failure: {r:?}");
    assert!(!r.stderr.contains("panicked"), "panic: {r:?}");
    let line = one_line(&r.stderr, r);
    assert!(line.starts_with("graven-verify: "), "{r:?}");
    line.to_owned()
}

fn one_line<'a>(s: &'a str, r: &Run) -> &'a str {
    let line = s
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final newline: {r:?}"));
    assert!(!line.contains('\n'), "more than one line: {r:?}");
    line
}

/// A small log signed by a fresh key: entries, stored hashes, and helpers to make files.
struct Log {
    signer: Signer,
    entries: Vec<Vec<u8>>,
    stored: Vec<Hash>,
}

impl Log {
    fn new(origin: &str, size: usize) -> Log {
        let signer = Signer::generate(origin).expect("keygen");
        let entries: Vec<Vec<u8>> = (0..size)
            .map(|i| format!("entry number {i}").into_bytes())
            .collect();
        let mut range = CompactRange::new();
        let mut stored = Vec::new();
        for e in &entries {
            range.append_stored(leaf_hash(e), |_, h| stored.push(h));
        }
        Log {
            signer,
            entries,
            stored,
        }
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint {
            origin: self.signer.name().to_owned(),
            size,
            root: tree_hash(size, &self.stored).expect("root"),
        }
    }

    fn signed(&self, size: u64) -> String {
        self.checkpoint(size).sign(&self.signer).expect("sign")
    }

    fn vkey(&self) -> String {
        format!("{}\n", self.signer.verifier().to_vkey())
    }

    fn inclusion(&self, index: u64, size: u64) -> InclusionProof {
        InclusionProof {
            extra: None,
            index,
            hashes: prove_inclusion(index, size, &self.stored).expect("prove"),
            checkpoint: self.signed(size),
        }
    }

    fn consistency(&self, old: u64, new: u64) -> ConsistencyProof {
        ConsistencyProof {
            old_size: old,
            hashes: prove_consistency(old, new, &self.stored).expect("prove"),
            checkpoint: self.signed(new),
        }
    }
}

// ---------------------------------------------------------------------------------------
// keygen
// ---------------------------------------------------------------------------------------

#[test]
fn keygen_writes_a_private_file_once_and_prints_its_vkey() {
    let dir = TempDir::new("keygen");
    let key = dir.path("log.key");
    let r = run(&[&"keygen", &"--out", &key, &"example.com/log"]);
    // Success: the vkey on stdout, and on stderr only a note of where the key went.
    assert_eq!(r.code, 0, "{r:?}");
    let vkey = one_line(&r.stdout, &r);
    assert_eq!(
        r.stderr,
        format!("graven-verify: wrote private key to {}\n", key.display())
    );
    let verifier = Verifier::parse(vkey).expect("printed vkey parses");
    assert_eq!(verifier.name(), "example.com/log");

    let text = fs::read_to_string(&key).expect("key file");
    let signer = Signer::parse(&text).expect("key file parses");
    assert_eq!(
        signer.verifier(),
        verifier,
        "the file holds the printed key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }

    // A second run must not overwrite the key.
    let r = run(&[&"keygen", &"--out", &key, &"example.com/log"]);
    fails(&r, 2);
    assert_eq!(fs::read_to_string(&key).expect("key file"), text);
}

#[test]
fn keygen_default_file_name_and_bad_names() {
    let dir = TempDir::new("keygen-default");
    let r = run_in(Some(&dir.0), &[&"keygen", &"example.com/log"], b"");
    // Success prints the vkey on stdout and a note on stderr saying where the key went.
    assert_eq!(r.code, 0, "{r:?}");
    let vkey = one_line(&r.stdout, &r);
    assert!(r.stderr.contains("example.com_log.key"), "{r:?}");
    let text = fs::read_to_string(dir.path("example.com_log.key")).expect("default key file");
    assert_eq!(
        Signer::parse(&text).expect("parses").verifier().to_vkey(),
        vkey
    );

    for bad in ["a+b", "two words", ""] {
        let r = run_in(Some(&dir.0), &[&"keygen", &bad], b"");
        fails(&r, 2);
    }
    fails(&run_in(Some(&dir.0), &[&"keygen"], b""), 2);
}

// ---------------------------------------------------------------------------------------
// checkpoint
// ---------------------------------------------------------------------------------------

#[test]
fn checkpoint_verifies_and_reports() {
    let dir = TempDir::new("checkpoint-ok");
    let log = Log::new("example.com/log", 5);
    let keys = dir.write("keys", log.vkey());
    let cp = dir.write("cp", log.signed(5));
    let root = log.checkpoint(5).root.to_hex();

    let r = run(&[&"checkpoint", &"--key", &keys, &cp]);
    let line = ok(&r);
    assert_eq!(
        line,
        format!("verified checkpoint: origin example.com/log size 5 root {root}")
    );

    let r = run(&[&"checkpoint", &"--key", &keys, &"--json", &cp]);
    let json: serde_json::Value = serde_json::from_str(&ok(&r)).expect("JSON output");
    assert_eq!(json["verified"], "checkpoint");
    assert_eq!(json["origin"], "example.com/log");
    assert_eq!(json["size"], 5);
    assert_eq!(json["root"], root.as_str());
    assert_eq!(json["signed_by"], serde_json::json!(["example.com/log"]));

    // Standard input, and a key file with comments and several keys.
    let other = Signer::generate("other.example").expect("keygen");
    let keys = dir.write(
        "keys2",
        format!(
            "# trusted keys\n\n{}\n{}",
            other.verifier().to_vkey(),
            log.vkey()
        ),
    );
    let r = run_in(
        None,
        &[&"checkpoint", &"--key", &keys, &"-"],
        log.signed(5).as_bytes(),
    );
    assert!(ok(&r).starts_with("verified checkpoint: origin example.com/log size 5"));
}

#[test]
fn checkpoint_not_verified_exits_1() {
    let dir = TempDir::new("checkpoint-bad");
    let log = Log::new("example.com/log", 5);
    let cp = dir.write("cp", log.signed(5));

    // A different key with the same name: the signature is not by a known key.
    let impostor = Signer::generate("example.com/log").expect("keygen");
    let wrong_keys = dir.write("wrong", impostor.verifier().to_vkey());
    let msg = fails(&run(&[&"checkpoint", &"--key", &wrong_keys, &cp]), 1);
    assert!(msg.contains("no signature by a known key"), "{msg}");

    // The right key, a changed size: the signature no longer verifies.
    let keys = dir.write("keys", log.vkey());
    let tampered = log.signed(5).replacen("\n5\n", "\n6\n", 1);
    assert_ne!(tampered, log.signed(5));
    let tampered = dir.write("tampered", tampered);
    let msg = fails(&run(&[&"checkpoint", &"--key", &keys, &tampered]), 1);
    assert!(msg.contains("invalid signature"), "{msg}");
}

#[test]
fn malformed_or_missing_input_exits_2() {
    let dir = TempDir::new("checkpoint-malformed");
    let log = Log::new("example.com/log", 5);
    let keys = dir.write("keys", log.vkey());
    let cp = dir.write("cp", log.signed(5));
    let garbage = dir.write("garbage", "this is not a signed note\n");
    let binary = dir.write("binary", [0xff, 0xfe, 0x00, b'\n']);
    let missing = dir.path("does-not-exist");

    fails(&run(&[&"checkpoint", &"--key", &keys, &garbage]), 2);
    fails(&run(&[&"checkpoint", &"--key", &keys, &binary]), 2);
    let msg = fails(&run(&[&"checkpoint", &"--key", &keys, &missing]), 2);
    assert!(msg.contains("does-not-exist"), "{msg}");
    // A missing or malformed key file is bad input too, not a failed verification.
    fails(&run(&[&"checkpoint", &"--key", &missing, &cp]), 2);
    fails(&run(&[&"checkpoint", &"--key", &garbage, &cp]), 2);
    let empty_keys = dir.write("empty-keys", "# no keys here\n");
    fails(&run(&[&"checkpoint", &"--key", &empty_keys, &cp]), 2);
}

#[test]
fn spec_example_note_is_signed_but_not_a_checkpoint() {
    let dir = TempDir::new("spec-note");
    let keys = dir.write("keys", format!("{SPEC_VKEY}\n"));
    let note = dir.write("note", SPEC_NOTE);
    // The signature is valid, so this is not "not verified" (1): the input is simply not a
    // checkpoint (2).
    let msg = fails(&run(&[&"checkpoint", &"--key", &keys, &note]), 2);
    assert!(msg.contains("checkpoint"), "{msg}");
    // One changed byte in the message makes it "not verified" instead.
    let note = dir.write(
        "altered",
        SPEC_NOTE.replacen("example message", "exampel message", 1),
    );
    fails(&run(&[&"checkpoint", &"--key", &keys, &note]), 1);
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = TempDir::new("usage");
    let log = Log::new("example.com/log", 1);
    let keys = dir.write("keys", log.vkey());
    let cp = dir.write("cp", log.signed(1));

    fails(&run(&[]), 2);
    fails(&run(&[&"frobnicate"]), 2);
    fails(&run(&[&"checkpoint", &cp]), 2); // no --key
    fails(&run(&[&"checkpoint", &"--key", &keys]), 2); // no file
    fails(&run(&[&"checkpoint", &"--key"]), 2); // --key without a value
    fails(&run(&[&"checkpoint", &"--key", &keys, &"--bogus", &cp]), 2);
    fails(&run(&[&"checkpoint", &"--key", &keys, &cp, &cp]), 2); // two files
    fails(
        &run(&[&"checkpoint", &"--key", &keys, &"--entry", &cp, &cp]),
        2,
    );
    fails(&run(&[&"inclusion", &"--key", &keys, &cp]), 2); // no --entry
    fails(&run(&[&"consistency", &"--key", &keys, &cp]), 2); // no --old

    for args in [
        &[&"--help" as &dyn AsRef<std::ffi::OsStr>][..],
        &[&"-h"],
        &[&"help"],
        &[&"checkpoint", &"--help"],
        &[&"keygen", &"-h"],
    ] {
        let r = run(args);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.starts_with("graven-verify"), "{r:?}");
        assert!(r.stdout.contains("Usage:"), "{r:?}");
        assert!(r.stderr.is_empty(), "{r:?}");
    }
    let r = run(&[&"--version"]);
    assert!(ok(&r).starts_with("graven-verify "));
}

// ---------------------------------------------------------------------------------------
// inclusion
// ---------------------------------------------------------------------------------------

#[test]
fn inclusion_of_every_leaf() {
    let dir = TempDir::new("inclusion-ok");
    let log = Log::new("example.com/log", 7);
    let keys = dir.write("keys", log.vkey());
    let root = log.checkpoint(7).root.to_hex();
    for size in [1u64, 6, 7] {
        for index in 0..size {
            let entry = dir.write("entry", &log.entries[index as usize]);
            let proof = dir.write("proof", log.inclusion(index, size).to_text());
            let r = run(&[&"inclusion", &"--key", &keys, &"--entry", &entry, &proof]);
            let line = ok(&r);
            assert!(
                line.starts_with(&format!(
                    "verified inclusion: origin example.com/log index {index} size {size} root "
                )),
                "{line}"
            );
            if size == 7 {
                assert!(line.ends_with(&root), "{line}");
            }
        }
    }

    // JSON, and the proof on standard input.
    let entry = dir.write("entry", &log.entries[4]);
    let r = run_in(
        None,
        &[
            &"inclusion",
            &"--key",
            &keys,
            &"--entry",
            &entry,
            &"--json",
            &"-",
        ],
        log.inclusion(4, 7).to_text().as_bytes(),
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&r)).expect("JSON");
    assert_eq!(json["verified"], "inclusion");
    assert_eq!(json["index"], 4);
    assert_eq!(json["size"], 7);
    assert_eq!(json["root"], root.as_str());
}

#[test]
fn inclusion_failures() {
    let dir = TempDir::new("inclusion-bad");
    let log = Log::new("example.com/log", 7);
    let keys = dir.write("keys", log.vkey());
    let good = log.inclusion(2, 7);
    let proof = dir.write("proof", good.to_text());

    // Another entry, or the right entry with a byte appended.
    for wrong in [&log.entries[3][..], b"entry number 2\n", b""] {
        let entry = dir.write("wrong-entry", wrong);
        let msg = fails(
            &run(&[&"inclusion", &"--key", &keys, &"--entry", &entry, &proof]),
            1,
        );
        assert!(msg.contains("proof failed"), "{msg}");
    }

    let entry = dir.write("entry", &log.entries[2]);
    // Each proof hash replaced by another valid hash.
    for i in 0..good.hashes.len() {
        let mut bad = good.clone();
        bad.hashes[i].0[31] ^= 1;
        let file = dir.write("tampered", bad.to_text());
        fails(
            &run(&[&"inclusion", &"--key", &keys, &"--entry", &entry, &file]),
            1,
        );
    }
    // Another index; a proof hash dropped.
    let mut bad = good.clone();
    bad.index = 3;
    let file = dir.write("index", bad.to_text());
    fails(
        &run(&[&"inclusion", &"--key", &keys, &"--entry", &entry, &file]),
        1,
    );
    let mut bad = good.clone();
    bad.hashes.pop();
    let file = dir.write("short", bad.to_text());
    fails(
        &run(&[&"inclusion", &"--key", &keys, &"--entry", &entry, &file]),
        1,
    );
    // An index beyond the checkpoint's tree: fails to verify (the proof is well formed).
    let mut bad = good.clone();
    bad.index = 7;
    let file = dir.write("beyond", bad.to_text());
    fails(
        &run(&[&"inclusion", &"--key", &keys, &"--entry", &entry, &file]),
        1,
    );
    // A checkpoint signed by someone else.
    let other = Log::new("example.com/log", 7);
    let mut bad = good.clone();
    bad.checkpoint = other.signed(7);
    let file = dir.write("other-key", bad.to_text());
    fails(
        &run(&[&"inclusion", &"--key", &keys, &"--entry", &entry, &file]),
        1,
    );
    // Malformed proof texts; a missing entry file.
    for text in [
        String::new(),
        good.to_text().replacen("index 2", "index two", 1),
        good.to_text()
            .replacen("c2sp.org/tlog-proof@v1", "tlog-proof", 1),
        log.signed(7),
    ] {
        let file = dir.write("malformed", text);
        fails(
            &run(&[&"inclusion", &"--key", &keys, &"--entry", &entry, &file]),
            2,
        );
    }
    let missing = dir.path("missing-entry");
    fails(
        &run(&[&"inclusion", &"--key", &keys, &"--entry", &missing, &proof]),
        2,
    );
}

// ---------------------------------------------------------------------------------------
// consistency
// ---------------------------------------------------------------------------------------

#[test]
fn consistency_verifies() {
    let dir = TempDir::new("consistency-ok");
    let log = Log::new("example.com/log", 7);
    let keys = dir.write("keys", log.vkey());
    for (old, new) in [(1, 7), (3, 7), (4, 7), (6, 7), (7, 7), (3, 5)] {
        let old_cp = dir.write("old", log.signed(old));
        let proof = dir.write("proof", log.consistency(old, new).to_text());
        let r = run(&[&"consistency", &"--key", &keys, &"--old", &old_cp, &proof]);
        let root = log.checkpoint(new).root.to_hex();
        assert_eq!(
            ok(&r),
            format!(
                "verified consistency: origin example.com/log old size {old} size {new} root {root}"
            )
        );
    }
    // JSON, and the proof on standard input.
    let old_cp = dir.write("old", log.signed(3));
    let r = run_in(
        None,
        &[
            &"consistency",
            &"--key",
            &keys,
            &"--old",
            &old_cp,
            &"--json",
            &"-",
        ],
        log.consistency(3, 7).to_text().as_bytes(),
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&r)).expect("JSON");
    assert_eq!(json["verified"], "consistency");
    assert_eq!(json["old_size"], 3);
    assert_eq!(json["size"], 7);
}

#[test]
fn consistency_failures() {
    let dir = TempDir::new("consistency-bad");
    let log = Log::new("example.com/log", 7);
    let fork = Log::new("example.org/other", 7);
    let keys = dir.write("keys", format!("{}{}", log.vkey(), fork.vkey()));
    let old_cp = dir.write("old", log.signed(3));
    let good = log.consistency(3, 7);

    // The proof claims another old size than the old checkpoint's.
    let proof = dir.write("proof4", log.consistency(4, 7).to_text());
    let msg = fails(
        &run(&[&"consistency", &"--key", &keys, &"--old", &old_cp, &proof]),
        1,
    );
    assert!(msg.contains("old checkpoint has size 3"), "{msg}");

    // Two different logs, each checkpoint validly signed by a trusted key.
    let other_old = dir.write("other-old", fork.signed(3));
    let proof = dir.write("proof", good.to_text());
    let msg = fails(
        &run(&[
            &"consistency",
            &"--key",
            &keys,
            &"--old",
            &other_old,
            &proof,
        ]),
        1,
    );
    assert!(msg.contains("origins differ"), "{msg}");

    // A tampered proof hash.
    let mut bad = good.clone();
    bad.hashes[0].0[0] ^= 0x80;
    let file = dir.write("tampered", bad.to_text());
    fails(
        &run(&[&"consistency", &"--key", &keys, &"--old", &old_cp, &file]),
        1,
    );

    // A new checkpoint that does not extend the old one: same origin and key, other entries.
    let mut forked = Log::new("example.com/log", 7);
    forked.signer = log.signer.clone();
    forked.entries[1] = b"rewritten history".to_vec();
    let mut range = CompactRange::new();
    forked.stored.clear();
    for e in &forked.entries {
        range.append_stored(leaf_hash(e), |_, h| forked.stored.push(h));
    }
    let file = dir.write("fork", forked.consistency(3, 7).to_text());
    fails(
        &run(&[&"consistency", &"--key", &keys, &"--old", &old_cp, &file]),
        1,
    );

    // An old checkpoint that does not verify.
    let old_tampered = dir.write("old-tampered", log.signed(3).replacen("\n3\n", "\n2\n", 1));
    let msg = fails(
        &run(&[
            &"consistency",
            &"--key",
            &keys,
            &"--old",
            &old_tampered,
            &proof,
        ]),
        1,
    );
    assert!(msg.starts_with("graven-verify: old checkpoint"), "{msg}");

    // Malformed proofs and a missing old checkpoint.
    for text in [
        String::new(),
        good.to_text().replacen("old 3", "old 03", 1),
        good.to_text().replacen("old 3\n", "", 1),
        format!("old 3\n{}", log.signed(7)),
    ] {
        let file = dir.write("malformed", text);
        fails(
            &run(&[&"consistency", &"--key", &keys, &"--old", &old_cp, &file]),
            2,
        );
    }
    let missing = dir.path("missing");
    fails(
        &run(&[&"consistency", &"--key", &keys, &"--old", &missing, &proof]),
        2,
    );
}
