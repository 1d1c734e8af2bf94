//! `graven-verify audit` and the export file reader/writer: clean exports pass, every kind
//! of tampering is caught and named (exit 1 with the index, or the checkpoint), and
//! malformed files exit 2 naming the byte offset.

mod common;

use common::{Ledger, TempDir, fails, ok, record_offset, run, run_with_stdin, skip_record};
use graven_verify::entry::{Entry, Operation};
use graven_verify::export::{ExportReader, ExportWriter};
use graven_verify::note::Signer;
use graven_verify::tree::CompactRange;

fn ledger() -> Ledger {
    Ledger::generate("audit.example/demo", 60)
}

/// Runs the audit of `export` with the ledger's key.
fn audit(l: &Ledger, export: &[u8], test: &str) -> common::Run {
    let dir = TempDir::new(test);
    let key = dir.write("key.vkey", l.vkey());
    let file = dir.write("export", export);
    run(&[&"audit", &"--key", &key, &file])
}

#[test]
fn reader_round_trips_what_the_writer_wrote() {
    let l = ledger();
    let (from, to) = (7, l.size() - 3);
    let bytes = l.export(from, to);
    let mut reader = ExportReader::new(&bytes[..]).expect("header");
    assert_eq!(reader.header().origin, l.origin());
    assert_eq!((reader.header().from, reader.header().to), (from, to));
    assert_eq!(reader.header().frontier, l.frontier(from));
    let records: Vec<_> = reader.by_ref().map(|r| r.expect("record")).collect();
    assert_eq!(records.len() as u64, to - from);
    for r in &records {
        let rev = &l.revs[r.index as usize];
        assert_eq!(r.entry, rev.bytes);
        assert_eq!(r.body(), rev.body.as_deref());
    }
    assert_eq!(reader.finish().expect("trailer"), l.signed(to));
}

#[test]
fn writer_insists_on_the_exact_number_of_records() {
    let l = ledger();
    let frontier = l.frontier(2);
    let mut w = ExportWriter::new(Vec::new(), l.origin(), 2, 4, &frontier).expect("header");
    w.record(b"a", None).expect("record");
    assert!(w.finish("note").is_err(), "one record missing");
    let mut w = ExportWriter::new(Vec::new(), l.origin(), 2, 3, &frontier).expect("header");
    w.record(b"a", Some(b"{}")).expect("record");
    assert!(w.record(b"b", None).is_err(), "one record too many");
    assert!(ExportWriter::new(Vec::new(), l.origin(), 3, 4, &frontier).is_err());
    assert!(ExportWriter::new(Vec::new(), l.origin(), 4, 2, &CompactRange::new()).is_err());
    assert!(ExportWriter::new(Vec::new(), "", 0, 0, &CompactRange::new()).is_err());
}

#[test]
fn clean_full_export_passes() {
    let l = ledger();
    let r = audit(&l, &l.export(0, l.size()), "full");
    let line = ok(&r);
    let root = l.checkpoint(l.size()).root.to_hex();
    assert!(
        line.starts_with("verified export: origin audit.example/demo "),
        "{line}"
    );
    assert!(line.contains(&format!("entries {} (indexes 0 to {})", l.size(), l.size())));
    assert!(line.contains("tables 2 "), "{line}");
    assert!(line.ends_with(&format!("root {root}")), "{line}");
}

#[test]
fn clean_partial_exports_pass() {
    let l = ledger();
    // Starting and ending inside transactions, so documents first appear at any version.
    for (from, to) in [
        (1, l.size()),
        (10, 50),
        (l.size(), l.size()),
        (0, 0),
        (33, 34),
    ] {
        let r = audit(&l, &l.export(from, to), &format!("partial-{from}-{to}"));
        let line = ok(&r);
        assert!(
            line.contains(&format!("(indexes {from} to {to})")),
            "{line}"
        );
    }
}

#[test]
fn json_summary_and_stdin() {
    let l = ledger();
    let dir = TempDir::new("json");
    let key = dir.write("key.vkey", l.vkey());
    let export = l.export(0, l.size());
    let r = run_with_stdin(&[&"audit", &"--key", &key, &"--json", &"-"], &export);
    let v: serde_json::Value = serde_json::from_str(&ok(&r)).expect("JSON");
    assert_eq!(v["verified"], "export");
    assert_eq!(v["origin"], "audit.example/demo");
    assert_eq!(v["entries"], l.size());
    assert_eq!(v["to"], l.size());
    assert_eq!(v["bytes"], export.len() as u64);
    assert_eq!(v["tables"], 2);
    let docs: std::collections::HashSet<_> = l.revs.iter().map(|r| &r.entry.id).collect();
    assert_eq!(v["documents"], docs.len() as u64);
    assert_eq!(v["root"], l.checkpoint(l.size()).root.to_hex());
}

/// The first record of a non-delete at or after `at`, and its offset in the full export.
fn body_record(l: &Ledger, export: &[u8], at: usize) -> (usize, usize) {
    let i = (at..l.revs.len())
        .find(|&i| l.revs[i].body.is_some())
        .expect("a revision with a body");
    (i, record_offset(export, i))
}

#[test]
fn flipped_byte_in_a_body_names_its_index() {
    let l = ledger();
    let mut export = l.export(0, l.size());
    let (i, at) = body_record(&l, &export, 20);
    let entry_len = l.revs[i].bytes.len();
    export[at + 4 + entry_len + 1 + 4 + 3] ^= 1;
    let err = fails(&audit(&l, &export, "body"), 1);
    assert_eq!(
        err,
        format!("graven-verify: index {i}: body does not match its entry's hash")
    );
}

#[test]
fn flipped_byte_in_an_entry_is_caught() {
    let l = ledger();
    let export = l.export(0, l.size());
    let (i, at) = body_record(&l, &export, 25);
    let len = l.revs[i].bytes.len();
    // In the body hash: the entry still decodes, its body no longer matches.
    let mut e = export.clone();
    e[at + 4 + len - 5] ^= 0x40;
    let err = fails(&audit(&l, &e, "entry-hash"), 1);
    assert_eq!(
        err,
        format!("graven-verify: index {i}: body does not match its entry's hash")
    );
    // In the principal: everything decodes and matches, only the root gives it away.
    let mut e = export.clone();
    e[at + 4 + len - 34] ^= 0x01;
    let err = fails(&audit(&l, &e, "entry-principal"), 1);
    assert!(
        err.contains(&format!("checkpoint of size {}: its root", l.size())),
        "{err}"
    );
    // In the format version: the entry no longer decodes.
    let mut e = export.clone();
    e[at + 4] = 9;
    let err = fails(&audit(&l, &e, "entry-version"), 1);
    assert_eq!(
        err,
        format!("graven-verify: index {i}: invalid entry: unknown format version")
    );
}

#[test]
fn tampered_checkpoint_is_not_verified() {
    let l = ledger();
    let export = l.export(0, l.size());
    let note_len = l.signed(l.size()).len();
    // A byte of the root line, then a byte of the signature.
    let origin_line = l.origin().len() + 1 + l.size().to_string().len() + 1;
    for (test, at) in [
        ("cp-root", export.len() - note_len + origin_line + 5),
        ("cp-sig", export.len() - 10),
    ] {
        let mut e = export.clone();
        e[at] = if e[at] == b'A' { b'B' } else { b'A' };
        let err = fails(&audit(&l, &e, test), 1);
        assert!(err.contains("trailer checkpoint"), "{err}");
    }
    // Signed by someone else.
    let other = Ledger::new("audit.example/demo");
    let err = fails(&audit(&other, &export, "cp-key"), 1);
    assert!(err.contains("trailer checkpoint"), "{err}");
}

#[test]
fn dropped_or_swapped_records_name_the_index() {
    let l = ledger();
    let export = l.export(0, l.size());
    // The first revision of a transaction of several revisions.
    let i = (1..l.revs.len())
        .find(|&i| l.revs[i].entry.tx_position == 0 && l.revs[i].entry.tx_revisions == 3)
        .expect("a three-revision transaction");
    let (start, end) = (record_offset(&export, i), record_offset(&export, i + 1));
    let mut dropped = export[..start].to_vec();
    dropped.extend_from_slice(&export[end..]);
    let err = fails(&audit(&l, &dropped, "dropped"), 1);
    assert!(
        err.starts_with(&format!("graven-verify: index {i}: ")),
        "{err}"
    );

    // Two whole transactions swapped (the one at i and the one before it).
    let j = (0..i)
        .rev()
        .find(|&j| l.revs[j].entry.tx_position == 0)
        .expect("previous transaction");
    let after = record_offset(&export, i + 3);
    let mut swapped = export[..record_offset(&export, j)].to_vec();
    swapped.extend_from_slice(&export[start..after]);
    swapped.extend_from_slice(&export[record_offset(&export, j)..start]);
    swapped.extend_from_slice(&export[after..]);
    let err = fails(&audit(&l, &swapped, "swapped-tx"), 1);
    assert!(
        err.starts_with(&format!("graven-verify: index {j}: ")),
        "{err}"
    );

    // Two revisions of one transaction swapped.
    let mid = record_offset(&export, i + 1);
    let mut swapped = export[..start].to_vec();
    swapped.extend_from_slice(&export[mid..record_offset(&export, i + 2)]);
    swapped.extend_from_slice(&export[start..mid]);
    swapped.extend_from_slice(&export[record_offset(&export, i + 2)..]);
    let err = fails(&audit(&l, &swapped, "swapped-rev"), 1);
    assert!(
        err.starts_with(&format!("graven-verify: index {i}: ")),
        "{err}"
    );
}

#[test]
fn truncated_files_exit_2_naming_the_offset() {
    let l = ledger();
    let export = l.export(5, l.size());
    let dir = TempDir::new("truncated");
    let key = dir.write("key.vkey", l.vkey());
    for cut in [0, 3, 8, 20, 40, export.len() / 2, export.len() - 1] {
        let file = dir.write("export", &export[..cut]);
        let err = fails(&run(&[&"audit", &"--key", &key, &file]), 2);
        assert!(
            err.starts_with("graven-verify: malformed export: byte offset "),
            "cut at {cut}: {err}"
        );
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
}

#[test]
fn malformed_files_exit_2() {
    let l = ledger();
    let export = l.export(0, l.size());
    let dir = TempDir::new("malformed");
    let key = dir.write("key.vkey", l.vkey());
    let check = |name: &str, bytes: &[u8], want: &str| {
        let file = dir.write(name, bytes);
        let err = fails(&run(&[&"audit", &"--key", &key, &file]), 2);
        assert!(err.contains(want), "{name}: {err}");
    };
    let mut e = export.clone();
    e[0] = b'X';
    check("magic", &e, "bad magic");
    let mut e = export.clone();
    e[11] = 2;
    check("version", &e, "unsupported export format version 2");
    let mut e = export.clone();
    let at = record_offset(&export, 3);
    let flag_at = at + 4 + l.revs[3].bytes.len();
    e[flag_at] = 2;
    check("flag", &e, "body flag is 2, not 0 or 1");
    let mut e = export.clone();
    e[at..at + 4].copy_from_slice(&(17u32 << 20).to_be_bytes());
    check("entry-len", &e, "entry length 17825792 is above the limit");
    let mut e = export.clone();
    e.push(0);
    check("trailing", &e, "bytes after the trailer");
    let mut e = export.clone();
    let k_at = 14 + l.origin().len() + 16;
    e[k_at] = 1;
    check("frontier", &e, "the frontier has 1 hashes");
    let mut e = export.clone();
    let to_at = 14 + l.origin().len() + 8;
    e[to_at..to_at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
    check("huge", &e, "above the largest log size");
    check("missing", b"", "truncated");
    let missing = dir.path("does-not-exist");
    let err = fails(&run(&[&"audit", &"--key", &key, &missing]), 2);
    assert!(err.contains("cannot read export"), "{err}");
}

#[test]
fn appended_forged_record_is_caught() {
    let l = ledger();
    let export = l.export(0, l.size());
    let trailer_at = record_offset(&export, l.revs.len());
    // A forged record between the last record and the trailer.
    let mut forged = Ledger::generate("audit.example/demo", 61);
    let extra = forged.revs.pop().expect("a revision");
    let mut record = Vec::new();
    record.extend_from_slice(&(extra.bytes.len() as u32).to_be_bytes());
    record.extend_from_slice(&extra.bytes);
    match &extra.body {
        Some(body) => {
            record.push(1);
            record.extend_from_slice(&(body.len() as u32).to_be_bytes());
            record.extend_from_slice(body);
        }
        None => record.push(0),
    }
    let mut e = export[..trailer_at].to_vec();
    e.extend_from_slice(&record);
    e.extend_from_slice(&export[trailer_at..]);
    fails(&audit(&l, &e, "forged-same-header"), 2);
    // ... with the header's end index raised to match: the checkpoint does not cover it.
    let to_at = 14 + l.origin().len() + 8;
    e[to_at..to_at + 8].copy_from_slice(&(l.size() + 1).to_be_bytes());
    let err = fails(&audit(&l, &e, "forged-header"), 1);
    assert_eq!(
        err,
        format!(
            "graven-verify: checkpoint: size {} but the export ends at index {}",
            l.size(),
            l.size() + 1
        )
    );
    assert_eq!(skip_record(&e, trailer_at), trailer_at + record.len());
}

#[test]
fn other_origin_in_the_header_is_caught() {
    let l = ledger();
    let mut w = ExportWriter::new(
        Vec::new(),
        "audit.example/other",
        0,
        l.size(),
        &CompactRange::new(),
    )
    .expect("header");
    for r in &l.revs {
        w.record(&r.bytes, r.body.as_deref()).expect("record");
    }
    let e = w.finish(&l.signed(l.size())).expect("finish");
    let err = fails(&audit(&l, &e, "origin"), 1);
    assert!(err.contains("is not the export header's"), "{err}");
}

/// A ledger whose journal breaks a rule; the signer signs it anyway (a lying server).
fn lying(build: impl FnOnce(&mut Ledger)) -> Ledger {
    let mut l = Ledger::new("audit.example/liar");
    let body = |s: &str| Some(format!("{{\"v\":\"{s}\"}}").into_bytes());
    l.push_tx(&[("t", "a", Operation::Insert, 0, body("a0"))]);
    l.push_tx(&[
        ("t", "b", Operation::Insert, 0, body("b0")),
        ("t", "a", Operation::Update, 1, body("a1")),
    ]);
    build(&mut l);
    l.push_tx(&[("t", "c", Operation::Insert, 0, body("c0"))]);
    l
}

fn entry(l: &Ledger, op: Operation, id: &str, version: u64, body: &Option<Vec<u8>>) -> Entry {
    let last = &l.revs.last().expect("a revision").entry;
    Entry {
        operation: op,
        tx_id: last.tx_id + 1,
        tx_position: 0,
        tx_revisions: 1,
        commit_time_micros: last.commit_time_micros + 1,
        version,
        table: "t".into(),
        id: id.into(),
        principal: "mallory".into(),
        body_hash: body.as_deref().map(common::body_hash),
        state: graven_verify::State::Root(graven_verify::Hash::default()),
    }
}

#[test]
fn version_gap_is_caught() {
    let l = lying(|l| {
        let body = Some(b"{\"v\":\"a3\"}".to_vec());
        let e = entry(l, Operation::Update, "a", 3, &body);
        l.push_entry(e, body);
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "gap"), 1);
    assert_eq!(
        err,
        "graven-verify: index 3: document version 3 follows version 1 at index 2 (versions must be dense)"
    );
    // A partial export that starts after the first revisions of "a" still sees the gap.
    let err = fails(&audit(&l, &l.export(2, l.size()), "gap-partial"), 1);
    assert!(
        err.starts_with("graven-verify: index 3: document version 3"),
        "{err}"
    );
    // But one starting at index 3 cannot know: "a" may start at any version there.
    ok(&audit(&l, &l.export(3, l.size()), "gap-after"));
}

#[test]
fn update_after_delete_is_caught() {
    let l = lying(|l| {
        let e = entry(l, Operation::Delete, "b", 1, &None);
        l.push_entry(e, None);
        let body = Some(b"{\"v\":\"b2\"}".to_vec());
        let e = entry(l, Operation::Update, "b", 2, &body);
        l.push_entry(e, body);
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "after-delete"), 1);
    assert_eq!(
        err,
        "graven-verify: index 4: document revised (version 2) after its delete at index 3"
    );
}

#[test]
fn first_version_other_than_0_in_a_full_export_is_caught() {
    let l = lying(|l| {
        let body = Some(b"{}".to_vec());
        let e = entry(l, Operation::Update, "z", 4, &body);
        l.push_entry(e, body);
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "first-version"), 1);
    assert!(
        err.starts_with("graven-verify: index 3: document first appears at version 4"),
        "{err}"
    );
    ok(&audit(&l, &l.export(1, l.size()), "first-version-partial"));
}

#[test]
fn non_contiguous_transaction_is_caught() {
    let l = lying(|l| {
        // Transaction 2 says it has two revisions, but transaction 3 comes after its first.
        let body = Some(b"{}".to_vec());
        let mut e = entry(l, Operation::Insert, "x", 0, &body);
        e.tx_revisions = 2;
        e.state = graven_verify::State::Pending;
        l.push_entry(e, body.clone());
        let mut e = entry(l, Operation::Insert, "y", 0, &body);
        e.tx_id += 1;
        l.push_entry(e, body);
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "tx"), 1);
    assert!(
        err.starts_with("graven-verify: index 4: transaction 4 position 0 follows transaction 2 position 0 of 2 revisions"),
        "{err}"
    );
}

#[test]
fn other_journal_rules_are_checked() {
    // Time going backwards.
    let l = lying(|l| {
        let body = Some(b"{}".to_vec());
        let mut e = entry(l, Operation::Insert, "x", 0, &body);
        e.commit_time_micros -= 10;
        l.push_entry(e, body);
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "time"), 1);
    assert!(
        err.starts_with("graven-verify: index 3: commit time"),
        "{err}"
    );
    // An insert at version 2.
    let l = lying(|l| {
        let body = Some(b"{}".to_vec());
        let e = entry(l, Operation::Insert, "x", 2, &body);
        l.push_entry(e, body);
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "insert-version"), 1);
    assert_eq!(
        err,
        "graven-verify: index 3: insert at version 2 (version 0 is exactly the insert)"
    );
    // A transaction id skipped.
    let l = lying(|l| {
        let body = Some(b"{}".to_vec());
        let mut e = entry(l, Operation::Insert, "x", 0, &body);
        e.tx_id += 1;
        l.push_entry(e, body);
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "tx-skip"), 1);
    assert!(
        err.starts_with("graven-verify: index 3: transaction 3 position 0"),
        "{err}"
    );
    // A body on a delete, and no body on an update.
    let mut l = lying(|_| {});
    l.revs.push(common::Rev {
        entry: entry(&l, Operation::Delete, "a", 2, &None),
        bytes: entry(&l, Operation::Delete, "a", 2, &None)
            .encode()
            .expect("encode"),
        body: Some(b"{}".to_vec()),
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "delete-body"), 1);
    assert_eq!(
        err,
        format!(
            "graven-verify: index {}: a delete carries a body",
            l.size() - 1
        )
    );
    let mut l = lying(|_| {});
    let body = Some(b"{}".to_vec());
    let e = entry(&l, Operation::Update, "a", 2, &body);
    l.push_entry(e, None);
    let err = fails(&audit(&l, &l.export(0, l.size()), "update-no-body"), 1);
    assert_eq!(
        err,
        format!(
            "graven-verify: index {}: the update has no body",
            l.size() - 1
        )
    );
}

#[test]
fn usage_errors_exit_2() {
    let err = fails(&run(&[&"audit", &"export"]), 2);
    assert!(err.contains("missing --key"), "{err}");
    let dir = TempDir::new("usage");
    let s = Signer::generate("x").expect("keygen");
    let key = dir.write("k", format!("{}\n", s.verifier().to_vkey()));
    let err = fails(&run(&[&"audit", &"--key", &key]), 2);
    assert!(err.contains("missing the file"), "{err}");
}

#[test]
fn state_roots_are_checked_and_counted() {
    let l = ledger();
    let txs = l
        .revs
        .iter()
        .filter(|r| matches!(r.entry.state, graven_verify::State::Root(_)))
        .count();
    assert_eq!(txs, 60, "one root per transaction");
    let line = ok(&audit(&l, &l.export(0, l.size()), "roots"));
    assert!(line.contains(" tables 2 state roots 60 size "), "{line}");
    // A partial export cannot know the state before its first entry.
    let from = 10;
    let unchecked = l.revs[from..]
        .iter()
        .filter(|r| matches!(r.entry.state, graven_verify::State::Root(_)))
        .count();
    let line = ok(&audit(
        &l,
        &l.export(from as u64, l.size()),
        "roots-partial",
    ));
    assert!(
        line.contains(&format!(
            " state roots 0 ({unchecked} not checked: the state before index {from} is not in the export) size "
        )),
        "{line}"
    );
    let dir = TempDir::new("roots-json");
    let key = dir.write("key.vkey", l.vkey());
    let file = dir.write("export", l.export(from as u64, l.size()));
    let v: serde_json::Value =
        serde_json::from_str(&ok(&run(&[&"audit", &"--key", &key, &"--json", &file])))
            .expect("JSON");
    assert_eq!(v["state_roots"], 0);
    assert_eq!(v["state_roots_unchecked"], unchecked as u64);
}

#[test]
fn a_ledger_upgraded_from_format_1_audits_clean() {
    // Format 1 entries, then format 2 ones whose roots cover the documents written before.
    let l = Ledger::generate_upgraded("audit.example/upgraded", 20, 50);
    assert_eq!(l.revs[0].entry.state, graven_verify::State::Untracked);
    let line = ok(&audit(&l, &l.export(0, l.size()), "upgraded"));
    assert!(line.contains(" state roots 30 "), "{line}");
    for from in [5, 40] {
        ok(&audit(
            &l,
            &l.export(from, l.size()),
            &format!("upgraded-{from}"),
        ));
    }
}

#[test]
fn a_wrong_state_root_is_caught() {
    // The root before the transaction (a stale root), and a root of nothing.
    for (test, stale) in [("stale-root", true), ("zero-root", false)] {
        let l = lying(|l| {
            let body = Some(b"{}".to_vec());
            let mut e = entry(l, Operation::Insert, "x", 0, &body);
            let before = l.state_root();
            e.state = graven_verify::State::Root(if stale {
                before
            } else {
                graven_verify::Hash::default()
            });
            l.push_raw(e, body);
        });
        let err = fails(&audit(&l, &l.export(0, l.size()), test), 1);
        let mut truth = Ledger::new("audit.example/truth");
        for r in &l.revs[..4] {
            truth.push_entry(r.entry.clone(), r.body.clone());
        }
        let carried = match l.revs[3].entry.state {
            graven_verify::State::Root(r) => r,
            _ => unreachable!(),
        };
        assert_eq!(
            err,
            format!(
                "graven-verify: index 3: state root {} does not match the state after the transaction ({})",
                carried.to_hex(),
                truth.state_root().to_hex()
            )
        );
        // An export that starts later cannot tell.
        ok(&audit(&l, &l.export(4, l.size()), &format!("{test}-after")));
    }
    // A root on the right transaction's last revision, but computed as if an earlier
    // revision of it were missing.
    let mut l = lying(|_| {});
    let body = Some(b"{}".to_vec());
    l.push_tx(&[
        ("t", "y", Operation::Insert, 0, body.clone()),
        ("t", "z", Operation::Insert, 0, body.clone()),
    ]);
    let mut skipped = lying(|_| {});
    skipped.push_tx(&[("t", "z", Operation::Insert, 0, body.clone())]);
    let last = l.revs.len() - 1;
    l.revs[last].entry.state = skipped.revs.last().expect("a revision").entry.state;
    l.revs[last].bytes = l.revs[last].entry.encode().expect("encode");
    let err = fails(
        &audit(&l, &l.export(0, l.size()), "missing-revision-root"),
        1,
    );
    assert!(
        err.starts_with(&format!("graven-verify: index {last}: state root ")),
        "{err}"
    );
}

#[test]
fn entry_formats_never_go_back_or_mix() {
    // A format 1 transaction after format 2 ones.
    let l = lying(|l| {
        l.format1 = true;
        l.push_tx(&[("t", "x", Operation::Insert, 0, Some(b"{}".to_vec()))]);
        l.format1 = false;
    });
    let err = fails(&audit(&l, &l.export(0, l.size()), "format-back"), 1);
    assert_eq!(
        err,
        "graven-verify: index 3: a format 1 entry after the format 2 entry at index 0 (a ledger never goes back to format 1)"
    );
    // A partial export sees it too, from the format 2 entries it holds.
    let err = fails(&audit(&l, &l.export(2, l.size()), "format-back-partial"), 1);
    assert!(err.contains("after the format 2 entry at index 2"), "{err}");
    // A transaction whose first revision is format 1 and last is format 2.
    let mut l = Ledger::new("audit.example/mixed");
    l.format1 = true;
    let body = Some(b"{}".to_vec());
    l.push_tx(&[("t", "a", Operation::Insert, 0, body.clone())]);
    l.push_tx(&[
        ("t", "b", Operation::Insert, 0, body.clone()),
        ("t", "c", Operation::Insert, 0, body.clone()),
    ]);
    l.format1 = false;
    let mut e = l.revs[2].entry.clone();
    e.state = graven_verify::State::Root(graven_verify::Hash::default());
    l.revs.pop();
    l.push_entry(e, body.clone());
    let err = fails(&audit(&l, &l.export(0, l.size()), "format-mixed"), 1);
    assert_eq!(
        err,
        "graven-verify: index 2: transaction 1 has entries of both format 1 and format 2"
    );
}
