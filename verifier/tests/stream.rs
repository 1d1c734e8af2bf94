//! `graven-verify stream`: a clean change stream is verified and echoed revision by
//! revision; tampering exits 1 naming the index or checkpoint, malformed input exits 2,
//! and nothing unverified ever reaches stdout.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{Ledger, Run, TempDir, one_error, run_with_stdin, stream_text};
use graven_verify::stream::{MAX_PENDING_REVISIONS, StreamError, StreamVerifier};

fn ledger() -> Ledger {
    Ledger::generate("stream.example/demo", 40)
}

fn verify(l: &Ledger, lines: &[String], test: &str) -> Run {
    let dir = TempDir::new(&format!("stream-{test}"));
    let key = dir.write("key.vkey", l.vkey());
    run_with_stdin(&[&"stream", &"--key", &key], stream_text(lines).as_bytes())
}

/// The revision lines of `lines`, as the verifier must echo them.
fn revisions(lines: &[String]) -> String {
    let kept: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with(r#"{"type":"revision""#))
        .cloned()
        .collect();
    stream_text(&kept)
}

/// Asserts exit `code` with one error line and exactly `stdout` written before it.
fn fails_after(r: &Run, code: i32, stdout: &str) -> String {
    assert_eq!(r.code, code, "expected exit {code}: {r:?}");
    assert_eq!(r.stdout, stdout, "{r:?}");
    one_error(r)
}

#[test]
fn clean_stream_is_echoed() {
    let l = ledger();
    let lines = l.tail(0, l.size(), 7, None);
    let r = verify(&l, &lines, "clean");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    assert_eq!(r.stdout, revisions(&lines));
}

#[test]
fn stream_from_a_frontier_verifies() {
    let l = ledger();
    for from in [1, 13, 32, l.size()] {
        let lines = l.tail(from, l.size(), 5, None);
        assert!(lines[0].contains("frontier"));
        let r = verify(&l, &lines, &format!("frontier-{from}"));
        assert_eq!(r.code, 0, "from {from}: {r:?}");
        assert_eq!(r.stdout, revisions(&lines));
    }
}

#[test]
fn skipped_entries_are_folded_not_echoed() {
    let l = ledger();
    let lines = l.tail(3, l.size(), 4, Some("orders"));
    assert!(lines.iter().any(|l| l.contains("skipped")));
    let r = verify(&l, &lines, "skipped");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, revisions(&lines));
    assert!(r.stdout.lines().all(|l| l.contains(r#""table":"users""#)));
}

#[test]
fn uncovered_revisions_are_dropped_and_counted() {
    let l = ledger();
    let mut lines = l.tail(0, 20, 10, None);
    let covered = revisions(&lines);
    lines.push(l.revision_line(20));
    lines.push(l.revision_line(21));
    let r = verify(&l, &lines, "uncovered");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, covered);
    assert_eq!(
        r.stderr,
        "graven-verify: 2 revisions after the last checkpoint (size 20) were not covered by one and were not written\n"
    );
}

/// The index of the line of revision `index` in a stream made by `tail(0, ..)`.
fn line_of(lines: &[String], index: u64) -> usize {
    let tag = format!(r#""index":{index},"#);
    lines
        .iter()
        .position(|l| l.contains(&tag))
        .expect("line of index")
}

#[test]
fn tampered_entry_is_caught() {
    let l = ledger();
    let lines = l.tail(0, l.size(), 10, None);
    let first_batch = revisions(&lines[..line_of(&lines, 10)]);
    // A different principal in the entry, and in the line's field: only the root tells.
    let mut bad = lines.clone();
    let i = line_of(&lines, 15);
    let mut entry = l.revs[15].entry.clone();
    entry.principal = "mallory".into();
    let bytes = entry.encode().expect("encode");
    bad[i] = lines[i]
        .replace(&BASE64.encode(&l.revs[15].bytes), &BASE64.encode(&bytes))
        .replace(r#""principal":"alice""#, r#""principal":"mallory""#);
    let err = fails_after(&verify(&l, &bad, "entry"), 1, &first_batch);
    assert_eq!(
        err,
        "graven-verify: checkpoint of size 20: its root does not match the stream's entries"
    );
    // The decoded field alone changed: the line no longer matches its entry.
    let mut bad = lines.clone();
    bad[i] = lines[i].replace(r#""principal":"alice""#, r#""principal":"mallory""#);
    let err = fails_after(&verify(&l, &bad, "field"), 1, &first_batch);
    assert_eq!(
        err,
        "graven-verify: index 15: \"principal\" does not match the entry"
    );
}

#[test]
fn tampered_document_is_caught() {
    let l = ledger();
    let lines = l.tail(0, l.size(), 10, None);
    let i = (12..l.size())
        .find(|&i| l.revs[i as usize].body.is_some())
        .expect("a body");
    let at = line_of(&lines, i);
    let mut bad = lines.clone();
    bad[at] = lines[at].replace(r#""n":"#, r#""n":1"#);
    assert_ne!(bad[at], lines[at]);
    let first_batch = revisions(&lines[..line_of(&lines, 10)]);
    let err = fails_after(&verify(&l, &bad, "document"), 1, &first_batch);
    assert_eq!(
        err,
        format!("graven-verify: index {i}: document does not match its entry's body hash")
    );
    // Same JSON value, different bytes: still not the canonical bytes that were hashed.
    let mut bad = lines.clone();
    bad[at] = lines[at].replace(r#""document":{"#, r#""document":{ "#);
    let err = fails_after(&verify(&l, &bad, "document-space"), 1, &first_batch);
    assert!(err.contains("document does not match"), "{err}");
}

#[test]
fn forged_checkpoints_are_caught() {
    let l = ledger();
    let lines = l.tail(0, 30, 10, None);
    let cp = line_of(&lines, 20) - 1; // the checkpoint of size 20
    assert!(lines[cp].contains("checkpoint"));
    let first_batch = revisions(&lines[..line_of(&lines, 10)]);
    // Signed by another key.
    let mut other = Ledger::new("stream.example/demo");
    other.revs = l.revs.clone();
    let mut bad = lines.clone();
    bad[cp] = other.checkpoint_line(20);
    let err = fails_after(&verify(&l, &bad, "cp-key"), 1, &first_batch);
    assert!(err.contains("checkpoint after index 20"), "{err}");
    // Root altered in the signed text.
    let mut bad = lines.clone();
    let root = l.checkpoint(20).root.to_base64();
    let fake = l.checkpoint(19).root.to_base64();
    bad[cp] = lines[cp].replace(&root, &fake);
    assert_ne!(bad[cp], lines[cp]);
    let err = fails_after(&verify(&l, &bad, "cp-root"), 1, &first_batch);
    assert!(err.contains("invalid signature"), "{err}");
    // Properly signed, but of the wrong tree (a lying server).
    let mut bad = lines.clone();
    let mut c = l.checkpoint(20);
    c.root = l.checkpoint(19).root;
    let note = c.sign(&l.signer).expect("sign");
    bad[cp] = serde_json::json!({"type": "checkpoint", "checkpoint": note}).to_string();
    let err = fails_after(&verify(&l, &bad, "cp-lie"), 1, &first_batch);
    assert_eq!(
        err,
        "graven-verify: checkpoint of size 20: its root does not match the stream's entries"
    );
    // A size that is not the number of entries so far.
    let mut bad = lines.clone();
    bad[cp] = l.checkpoint_line(19);
    let err = fails_after(&verify(&l, &bad, "cp-size"), 1, &first_batch);
    assert!(
        err.contains("checkpoint of size 19 arrives after 20 entries"),
        "{err}"
    );
    // Another origin, signed by a trusted key.
    let mut renamed = Ledger::new("stream.example/other");
    renamed.revs = l.revs.clone();
    let dir = TempDir::new("stream-cp-origin");
    let key = dir.write("keys", format!("{}{}", l.vkey(), renamed.vkey()));
    let mut bad = lines.clone();
    bad[cp] = renamed.checkpoint_line(20);
    let r = run_with_stdin(&[&"stream", &"--key", &key], stream_text(&bad).as_bytes());
    let err = fails_after(&r, 1, &first_batch);
    assert!(err.contains("differs from the stream's"), "{err}");
}

#[test]
fn gaps_and_repeats_are_caught() {
    let l = ledger();
    let lines = l.tail(0, 30, 10, None);
    let first_batch = revisions(&lines[..line_of(&lines, 10)]);
    let mut gap = lines.clone();
    gap.remove(line_of(&lines, 14));
    let err = fails_after(&verify(&l, &gap, "gap"), 1, &first_batch);
    assert_eq!(err, "graven-verify: index 15: expected index 14 (gap)");
    let mut repeat = lines.clone();
    let at = line_of(&lines, 14);
    repeat.insert(at + 1, lines[at].clone());
    let err = fails_after(&verify(&l, &repeat, "repeat"), 1, &first_batch);
    assert_eq!(err, "graven-verify: index 14: expected index 15 (repeated)");
}

#[test]
fn malformed_streams_exit_2() {
    let l = ledger();
    let lines = l.tail(0, 20, 10, None);
    let first_batch = revisions(&lines[..line_of(&lines, 10)]);
    let at = line_of(&lines, 12);
    let cases: Vec<(&str, String, &str)> = vec![
        ("json", "{not json".into(), "not a JSON object"),
        (
            "type",
            r#"{"type":"nonsense"}"#.into(),
            "unknown event type",
        ),
        (
            "duplicate",
            lines[at].replacen(r#""table":"#, r#""table":"x","table":"#, 1),
            "duplicate member",
        ),
        (
            "unknown-member",
            lines[at].replacen(r#"{"type""#, r#"{"extra":1,"type""#, 1),
            "unexpected member \"extra\"",
        ),
        (
            "missing",
            lines[at].replacen(r#""tx":"#, r#""tx_id":"#, 1),
            "unexpected member",
        ),
        (
            "frontier-late",
            l.frontier_line(12),
            "a frontier event must come first",
        ),
        (
            "base64",
            lines[at].replacen(r#""entry":""#, r#""entry":"!"#, 1),
            "\"entry\" is not base64",
        ),
    ];
    for (test, line, want) in cases {
        let mut bad = lines.clone();
        bad[at] = line;
        let err = fails_after(&verify(&l, &bad, test), 2, &first_batch);
        assert!(err.contains(&format!("line {}: ", at + 1)), "{test}: {err}");
        assert!(err.contains(want), "{test}: {err}");
    }
}

#[test]
fn a_stream_starting_after_0_needs_its_frontier() {
    let l = ledger();
    let lines = l.tail(5, 20, 10, None);
    let r = verify(&l, &lines[1..], "no-frontier");
    let err = fails_after(&r, 2, "");
    assert_eq!(
        err,
        "graven-verify: line 1: the stream starts at index 5 without a frontier event"
    );
    let huge = r#"{"type":"frontier","size":18446744073709551615,"subtrees":[]}"#.to_owned();
    let err = fails_after(&verify(&l, &[huge], "huge-frontier"), 2, "");
    assert!(err.contains("above the largest log size"), "{err}");
    // A false frontier cannot produce the signed root.
    let mut bad = lines.clone();
    bad[0] = l.frontier_line(5).replace(
        &l.frontier(5).subtrees()[1].to_base64(),
        &graven_verify::hash::EMPTY_ROOT.to_base64(),
    );
    assert_ne!(bad[0], lines[0]);
    let err = fails_after(&verify(&l, &bad, "false-frontier"), 1, "");
    assert!(err.contains("its root does not match"), "{err}");
}

#[test]
fn too_many_revisions_without_a_checkpoint() {
    // Through the library, with a ledger just over the limit.
    // Format 1 entries from a frontier: neither the builder nor the verifier has a state
    // to recompute (which takes long in a debug build at this size).
    let n = MAX_PENDING_REVISIONS as u64 / 2 + 2;
    let l = Ledger::generate_upgraded("stream.example/big", n, n);
    assert!(l.size() > MAX_PENDING_REVISIONS as u64 + 1);
    let mut v = StreamVerifier::new(vec![l.signer.verifier()]);
    v.push_line(&l.frontier_line(1)).expect("frontier");
    let mut result = Ok(Vec::new());
    for i in 1..=MAX_PENDING_REVISIONS as u64 + 1 {
        result = v.push_line(&l.revision_line(i));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(
        result,
        Err(StreamError::Failed(format!(
            "index {}: more than {MAX_PENDING_REVISIONS} revisions or 256 MiB wait for a checkpoint",
            MAX_PENDING_REVISIONS + 1
        )))
    );
}

#[test]
fn empty_input_is_fine_and_usage_is_checked() {
    let l = ledger();
    let r = verify(&l, &[], "empty");
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    let r = run_with_stdin(&[&"stream"], b"");
    let err = fails_after(&r, 2, "");
    assert!(err.contains("missing --key"), "{err}");
}

#[test]
fn state_roots_are_checked_from_index_0_only() {
    let l = ledger();
    // From 0: every root checked, nothing said.
    let mut v = StreamVerifier::new(vec![l.signer.verifier()]);
    for line in l.tail(0, l.size(), 7, None) {
        v.push_line(&line).expect("verifies");
    }
    assert_eq!(v.state_roots_checked(), 40, "one per transaction");
    assert_eq!(v.state_unchecked(), None);
    // From a frontier: not checked, and said at the end.
    let r = verify(&l, &l.tail(13, l.size(), 5, None), "roots-frontier");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stderr,
        "graven-verify: state roots were not checked: the stream starts at index 13, and the state before it is not known\n"
    );
    // With a table filtered out: checked up to the first skipped entry.
    let lines = l.tail(0, l.size(), 5, Some("users"));
    let first_skipped = (0..l.size())
        .find(|&i| l.revs[i as usize].entry.table == "users")
        .expect("a users revision");
    let checked = l.revs[..first_skipped as usize]
        .iter()
        .filter(|r| matches!(r.entry.state, graven_verify::State::Root(_)))
        .count();
    let r = verify(&l, &lines, "roots-skipped");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stderr,
        format!(
            "graven-verify: state roots were checked up to index {first_skipped} only ({checked} checked): the entry at index {first_skipped} was skipped, so the state after it is not known\n"
        )
    );
}

#[test]
fn a_wrong_state_root_fails_the_stream() {
    let mut l = ledger();
    let size = l.size();
    // One more transaction, whose root is the state before it.
    let mut e = l.revs.last().expect("a revision").entry.clone();
    e.tx_id += 1;
    e.tx_position = 0;
    e.tx_revisions = 1;
    e.id = "late".into();
    e.version = 0;
    e.operation = graven_verify::Operation::Insert;
    let body = Some(b"{\"late\":true}".to_vec());
    e.body_hash = Some(common::body_hash(b"{\"late\":true}"));
    let before = l.state_root();
    e.state = graven_verify::State::Root(before);
    l.push_raw(e, body);
    let lines = l.tail(0, l.size(), 10, None);
    // What the checkpoints before the bad transaction's verified.
    let verified = revisions(&lines[..line_of(&lines, size / 10 * 10)]);
    let err = fails_after(&verify(&l, &lines, "wrong-root"), 1, &verified);
    assert!(
        err.starts_with(&format!(
            "graven-verify: index {size}: state root {} does not match the state after the transaction (",
            before.to_hex()
        )),
        "{err}"
    );
    // The same stream from a frontier cannot tell.
    let r = verify(&l, &l.tail(5, l.size(), 10, None), "wrong-root-frontier");
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn a_format_1_entry_after_format_2_fails_the_stream() {
    let mut l = ledger();
    l.format1 = true;
    l.push_tx(&[(
        "orders",
        "old",
        graven_verify::Operation::Insert,
        0,
        Some(b"{}".to_vec()),
    )]);
    let lines = l.tail(30, l.size(), 100, None);
    let err = fails_after(&verify(&l, &lines, "format-back"), 1, "");
    assert_eq!(
        err,
        format!(
            "graven-verify: index {}: a format 1 entry after the format 2 entry at index 30 (a ledger never goes back to format 1)",
            l.size() - 1
        )
    );
}
