//! Current-state proofs: `verify_current` says exactly what a replay of the journal says
//! (every document of small ledgers, at every size that commits to a state), refuses stale
//! and false answers and any one bit changed, and `graven-verify current` exits 0, 1 or 2
//! with one line, `--entry` and `--state` included.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{Ledger, TempDir, fails, ok, run};
use graven_verify::current::{CurrentError, CurrentProof, ProvenEntry, Revision, verify_current};
use graven_verify::entry::{Entry, Operation, State};
use graven_verify::hash::Hash;
use graven_verify::map::{MapError, Terminal, map_key};
use graven_verify::map_nodes::{Map, MemoryNodes};
use graven_verify::note::Signer;
use graven_verify::proof::VerifyError;
use graven_verify::state::StateDir;

/// Every (table, id) the ledger ever wrote, and one it never did.
fn documents(l: &Ledger) -> Vec<(String, String)> {
    let mut docs: BTreeSet<(String, String)> = l
        .revs
        .iter()
        .map(|r| (r.entry.table.clone(), r.entry.id.clone()))
        .collect();
    docs.insert(("orders".into(), "never-written".into()));
    docs.into_iter().collect()
}

fn current_error(result: Result<impl std::fmt::Debug, VerifyError>) -> CurrentError {
    match result {
        Err(VerifyError::Current(e)) => e,
        other => panic!("expected a current-state error, got {other:?}"),
    }
}

#[test]
fn every_answer_of_small_ledgers_is_the_replayed_state() {
    // Ledgers of 1 to 20 transactions, and one upgraded from format 1 after 5.
    let mut ledgers: Vec<Ledger> = (1..=20)
        .map(|txs| Ledger::generate("current.example/small", txs))
        .collect();
    ledgers.push(Ledger::generate_upgraded("current.example/upgraded", 5, 14));
    let mut checked = (0, 0);
    for l in &ledgers {
        let keys = [l.signer.verifier()];
        let docs = documents(l);
        for size in 1..=l.size() {
            let mut prover = l.prover(size);
            let last = &l.revs[size as usize - 1].entry;
            let live = l.live_at(size);
            for (table, id) in &docs {
                let proof = prover.current(table, id);
                assert_eq!(CurrentProof::parse(&proof.to_text()).as_ref(), Ok(&proof));
                let result = verify_current(&proof, &keys);
                match last.state {
                    State::Root(_) => {}
                    State::Pending | State::Untracked => {
                        // The checkpoint ends inside a transaction, or before the ledger
                        // committed to its state: there is no state to prove from.
                        assert_eq!(
                            current_error(result),
                            CurrentError::NoStateRoot {
                                index: size - 1,
                                format1: last.state == State::Untracked,
                            }
                        );
                        continue;
                    }
                }
                let answer = result.unwrap_or_else(|e| panic!("size {size} {id}: {e}"));
                assert_eq!(answer.head.checkpoint, l.checkpoint(size));
                assert_eq!((&answer.table, &answer.id), (table, id));
                let want = live.get(&(table.clone(), id.clone())).map(|&i| Revision {
                    index: i,
                    entry: l.revs[i as usize].entry.clone(),
                    bytes: l.revs[i as usize].bytes.clone(),
                });
                match &want {
                    Some(_) => checked.0 += 1,
                    None => checked.1 += 1,
                }
                assert_eq!(answer.current, want, "size {size} table {table} id {id}");
            }
        }
    }
    // Both answers were exercised, many times.
    assert!(checked.0 > 1000 && checked.1 > 1000, "{checked:?}");
}

/// A ledger where `d-1` is inserted, updated and then deleted, `d-2` inserted and updated,
/// among other documents (the comments give each revision's index).
fn history() -> Ledger {
    let mut l = Ledger::new("current.example/history");
    let body = |s: &str| Some(format!("{{\"v\":\"{s}\"}}").into_bytes());
    l.push_tx(&[("t", "d-1", Operation::Insert, 0, body("1.0"))]); // 0
    l.push_tx(&[
        ("t", "d-2", Operation::Insert, 0, body("2.0")), // 1
        ("t", "d-3", Operation::Insert, 0, body("3.0")), // 2
    ]);
    l.push_tx(&[("t", "d-1", Operation::Update, 1, body("1.1"))]); // 3
    l.push_tx(&[("t", "d-2", Operation::Update, 1, body("2.1"))]); // 4
    l.push_tx(&[("t", "d-4", Operation::Insert, 0, body("4.0"))]); // 5
    l.push_tx(&[("t", "d-1", Operation::Delete, 2, None)]); // 6
    l.push_tx(&[("t", "d-5", Operation::Insert, 0, body("5.0"))]); // 7
    l
}

#[test]
fn stale_and_false_answers_are_refused() {
    let l = history();
    let keys = [l.signer.verifier()];
    let n = l.size();
    let mut at_n = l.prover(n);
    let mut at_4 = l.prover(4);
    let mut at_5 = l.prover(5);

    // Version 0 of d-2 was current at size 4 (checkpoint after index 3).
    let old = at_4.current("t", "d-2");
    let answer = verify_current(&old, &keys).expect("old answer at its own checkpoint");
    assert_eq!(answer.current.map(|r| r.index), Some(1));
    // Moved to the newest checkpoint, its map proof no longer leads to the state root.
    let mut stale = at_n.current("t", "d-2");
    stale.map = old.map.clone();
    stale.revision = Some(at_n.proven(1));
    assert!(matches!(
        current_error(verify_current(&stale, &keys)),
        CurrentError::Map(MapError::RootMismatch { .. })
    ));
    // The true map proof with the old revision: the map names index 4, not 1.
    let mut stale = at_n.current("t", "d-2");
    stale.revision = Some(at_n.proven(1));
    assert_eq!(
        current_error(verify_current(&stale, &keys)),
        CurrentError::RevisionIndex { proof: 1, map: 4 }
    );
    // The map proof's leaf changed to name the old index.
    let mut stale = at_n.current("t", "d-2");
    stale.map.terminal = Terminal::Leaf {
        key: map_key("t", "d-2"),
        index: 1,
    };
    stale.revision = Some(at_n.proven(1));
    assert!(matches!(
        current_error(verify_current(&stale, &keys)),
        CurrentError::Map(MapError::RootMismatch { .. })
    ));

    // d-1, deleted at 6: its last live revision, proved at size 5, does not hold at n.
    let deleted = at_n.current("t", "d-1");
    assert_eq!(
        verify_current(&deleted, &keys).expect("absent").current,
        None
    );
    let mut alive = at_5.current("t", "d-1");
    assert!(alive.revision.is_some());
    alive.state = deleted.state.clone();
    alive.checkpoint = deleted.checkpoint.clone();
    assert!(matches!(
        current_error(verify_current(&alive, &keys)),
        CurrentError::Map(MapError::RootMismatch { .. })
    ));

    // Absence of a live document: the absence proof from before its insert, or an empty
    // terminal in place of its leaf, or another absent key's proof.
    let mut absent = at_5.current("t", "d-4");
    assert_eq!(
        verify_current(&absent, &keys).expect("absent").current,
        None
    );
    absent.state = at_n.proven(n - 1);
    absent.checkpoint = at_n.current("t", "d-4").checkpoint;
    assert!(verify_current(&absent, &keys).is_err());
    let mut absent = at_n.current("t", "d-4");
    absent.revision = None;
    absent.map.terminal = Terminal::Empty;
    assert!(matches!(
        current_error(verify_current(&absent, &keys)),
        CurrentError::Map(MapError::RootMismatch { .. })
    ));
    let mut absent = at_n.current("t", "never");
    absent.id = "d-4".into();
    assert!(verify_current(&absent, &keys).is_err());

    // The revision left out, or one added to an absence proof or to a document current
    // at the state entry itself.
    let mut missing = at_n.current("t", "d-2");
    missing.revision = None;
    assert_eq!(
        current_error(verify_current(&missing, &keys)),
        CurrentError::MissingRevision { index: 4 }
    );
    let mut extra = at_n.current("t", "d-1");
    extra.revision = Some(at_n.proven(3));
    assert_eq!(
        current_error(verify_current(&extra, &keys)),
        CurrentError::UnexpectedRevision { index: 3 }
    );
    let mut extra = at_n.current("t", "d-5");
    assert_eq!(extra.revision, None, "d-5 is current at the state entry");
    assert!(
        verify_current(&extra, &keys)
            .expect("current")
            .current
            .is_some()
    );
    extra.revision = Some(at_n.proven(n - 1));
    assert_eq!(
        current_error(verify_current(&extra, &keys)),
        CurrentError::UnexpectedRevision { index: n - 1 }
    );

    // A state entry other than the checkpoint's last, though included.
    let mut early = at_n.current("t", "d-2");
    early.state = at_n.proven(n - 2);
    assert_eq!(
        current_error(verify_current(&early, &keys)),
        CurrentError::StateIndex {
            index: n - 2,
            size: n
        }
    );
    // An entry not in the tree.
    let mut forged = at_n.current("t", "d-2");
    let mut e = l.revs[4].entry.clone();
    e.principal = "mallory".into();
    forged.revision.as_mut().expect("revision").entry = e.encode().expect("encode");
    assert!(matches!(
        current_error(verify_current(&forged, &keys)),
        CurrentError::NotIncluded {
            what: "revision",
            index: 4,
            ..
        }
    ));

    // Another key, and an empty ledger.
    let other = Signer::generate(l.origin()).expect("keygen");
    assert!(matches!(
        verify_current(&at_n.current("t", "d-2"), &[other.verifier()]),
        Err(VerifyError::Checkpoint(_))
    ));
    let mut empty = at_n.current("t", "d-2");
    empty.checkpoint = l.signed(0);
    assert_eq!(
        current_error(verify_current(&empty, &keys)),
        CurrentError::EmptyLedger
    );
}

/// A lying ledger: its last entry carries the root of a map in which `(t, id)` names the
/// entry at `index`, and the proof of `(t, id)` is made from that map.
fn lie(id: &str, index: u64) -> (Ledger, CurrentProof) {
    let mut l = history();
    let mut map = Map::new(MemoryNodes::default());
    for (i, r) in l.revs.iter().enumerate() {
        let live = (r.entry.operation != Operation::Delete).then_some(i as u64);
        map.set(&map_key(&r.entry.table, &r.entry.id), live)
            .expect("set");
    }
    map.set(&map_key("t", id), Some(index)).expect("set");
    let mut e = l.revs.last().expect("a revision").entry.clone();
    e.tx_id += 1;
    e.id = "d-6".into();
    e.version = 0;
    e.operation = Operation::Insert;
    map.set(&map_key("t", "d-6"), Some(l.size())).expect("set");
    e.state = State::Root(map.root().expect("root"));
    let body = l.revs.last().expect("a revision").body.clone();
    l.push_raw(e, body);
    let mut proof = l.prover(l.size()).current("t", "d-6");
    proof.id = id.into();
    proof.map = map.prove(&map_key("t", id)).expect("prove");
    proof.revision = Some(l.prover(l.size()).proven(index));
    (l, proof)
}

#[test]
fn a_map_naming_a_delete_or_another_document_is_refused() {
    // d-1's own delete.
    let (l, proof) = lie("d-1", 6);
    assert_eq!(
        current_error(verify_current(&proof, &[l.signer.verifier()])),
        CurrentError::Deleted { index: 6 }
    );
    // d-3's insert, for a document never written.
    let (l, proof) = lie("liar", 2);
    assert_eq!(
        current_error(verify_current(&proof, &[l.signer.verifier()])),
        CurrentError::OtherDocument {
            index: 2,
            table: "t".into(),
            id: "d-3".into()
        }
    );
}

/// Every proof of `l` at its full size that one bit of the file can make: each bit of
/// the entries, the hashes, the map proof's bytes, the indexes and the checkpoint note
/// flipped in turn. `None` where the flipped note is no longer UTF-8 text.
fn one_bit_changes(proof: &CurrentProof) -> Vec<Option<CurrentProof>> {
    fn flips(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
        (0..bytes.len() * 8).map(move |bit| {
            let mut b = bytes.to_vec();
            b[bit / 8] ^= 0x80 >> (bit % 8);
            b
        })
    }
    let mut out = Vec::new();
    let mut sections = vec![("state", proof.state.clone())];
    if let Some(r) = &proof.revision {
        sections.push(("revision", r.clone()));
    }
    for (name, section) in &sections {
        let with = |s: ProvenEntry| {
            let mut p = proof.clone();
            match *name {
                "state" => p.state = s,
                _ => p.revision = Some(s),
            }
            Some(p)
        };
        for entry in flips(&section.entry) {
            out.push(with(ProvenEntry {
                entry,
                ..section.clone()
            }));
        }
        for bit in 0..64 {
            out.push(with(ProvenEntry {
                index: section.index ^ (1 << bit),
                ..section.clone()
            }));
        }
        for (h, hash) in section.hashes.iter().enumerate() {
            for flipped in flips(&hash.0) {
                let mut s = section.clone();
                s.hashes[h] = Hash(flipped.try_into().expect("32 bytes"));
                out.push(with(s));
            }
        }
    }
    for bytes in flips(&proof.map.encode()) {
        // Bytes that are no longer a map proof are refused when the file is read.
        out.push(
            graven_verify::map::MapProof::decode(&bytes)
                .ok()
                .map(|map| CurrentProof {
                    map,
                    ..proof.clone()
                }),
        );
    }
    for bytes in flips(proof.checkpoint.as_bytes()) {
        out.push(
            String::from_utf8(bytes)
                .ok()
                .map(|checkpoint| CurrentProof {
                    checkpoint,
                    ..proof.clone()
                }),
        );
    }
    out
}

#[test]
fn any_one_bit_changed_fails() {
    let l = history();
    let keys = [l.signer.verifier()];
    let mut prover = l.prover(l.size());
    // Current at an earlier index (a revision section), current at the state entry, and
    // absent (deleted, and never written).
    for id in ["d-2", "d-5", "d-1", "never"] {
        let proof = prover.current("t", id);
        verify_current(&proof, &keys).expect("the unchanged proof verifies");
        let changes = one_bit_changes(&proof);
        assert!(changes.len() > 2000, "{id}: {} changes", changes.len());
        for (n, changed) in changes.iter().enumerate() {
            if let Some(p) = changed {
                assert_ne!(p, &proof);
                let result = verify_current(p, &keys);
                assert!(
                    result.is_err(),
                    "{id}: change {n} still verifies: {result:?}"
                );
            }
        }
        // The same in the text: every bit outside the table and id lines (which ask
        // another question) makes the file unreadable or the proof fail.
        let text = proof.to_text();
        let ask = text.match_indices('\n').nth(2).expect("three lines").0;
        for bit in ask * 8..text.len() * 8 {
            let mut bytes = text.clone().into_bytes();
            bytes[bit / 8] ^= 0x80 >> (bit % 8);
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            if let Ok(p) = CurrentProof::parse(&changed) {
                let result = verify_current(&p, &keys);
                assert!(result.is_err(), "{id}: text bit {bit} still verifies");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// graven-verify current
// ---------------------------------------------------------------------------------------

/// The history ledger's files in a scratch directory: its key, and proofs at its full size.
struct Files {
    l: Ledger,
    dir: TempDir,
    key: std::path::PathBuf,
}

impl Files {
    fn new(test: &str) -> Files {
        let l = history();
        let dir = TempDir::new(&format!("current-{test}"));
        let key = dir.write("key.vkey", l.vkey());
        Files { l, dir, key }
    }

    fn proof(&self, size: u64, id: &str) -> std::path::PathBuf {
        let text = self.l.prover(size).current("t", id).to_text();
        self.dir.write(&format!("proof-{size}-{id}"), text)
    }

    fn entry(&self, index: usize) -> std::path::PathBuf {
        self.dir
            .write(&format!("entry-{index}"), &self.l.revs[index].bytes)
    }
}

#[test]
fn current_prints_what_the_proof_shows() {
    let f = Files::new("print");
    let n = f.l.size();
    let root = f.l.checkpoint(n).root.to_hex();
    let line = ok(&run(&[&"current", &"--key", &f.key, &f.proof(n, "d-2")]));
    assert_eq!(
        line,
        format!(
            "verified current: table \"t\" id \"d-2\" version 1 at index 4, checkpoint origin current.example/history size {n} root {root}"
        )
    );
    let line = ok(&run(&[&"current", &"--key", &f.key, &f.proof(n, "d-1")]));
    assert_eq!(
        line,
        format!(
            "verified absent: table \"t\" id \"d-1\", checkpoint origin current.example/history size {n} root {root}"
        )
    );
    let json = ok(&run(&[
        &"current",
        &"--key",
        &f.key,
        &"--json",
        &f.proof(n, "d-2"),
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let e = &f.l.revs[4].entry;
    assert_eq!(v["verified"], "current");
    assert_eq!(v["origin"], "current.example/history");
    assert_eq!(
        (v["table"].as_str(), v["id"].as_str()),
        (Some("t"), Some("d-2"))
    );
    assert_eq!(
        (v["index"].as_u64(), v["version"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(v["operation"], "update");
    assert_eq!(v["tx"], e.tx_id);
    assert_eq!(v["commit_micros"], e.commit_time_micros);
    assert_eq!(v["principal"], "alice");
    assert_eq!(v["body_hash"], e.body_hash.expect("a body").to_hex());
    assert_eq!(
        (v["size"].as_u64(), v["root"].as_str()),
        (Some(n), Some(root.as_str()))
    );
    assert_eq!(
        v["signed_by"],
        serde_json::json!(["current.example/history"])
    );
    let json = ok(&run(&[
        &"current",
        &"--key",
        &f.key,
        &"--json",
        &f.proof(n, "never"),
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["verified"], "absent");
    assert!(
        v.get("index").is_none() && v.get("version").is_none(),
        "{v}"
    );
    // From standard input too.
    let text = f.l.prover(n).current("t", "d-2").to_text();
    let r = common::run_with_stdin(&[&"current", &"--key", &f.key, &"-"], text.as_bytes());
    assert!(ok(&r).starts_with("verified current: "));
}

#[test]
fn current_exit_codes() {
    let f = Files::new("exit");
    let n = f.l.size();
    // Not verified (1): another key, a tampered proof, a checkpoint committing to no state.
    let other = f.dir.write(
        "other.vkey",
        format!(
            "{}\n",
            Signer::generate(f.l.origin())
                .expect("keygen")
                .verifier()
                .to_vkey()
        ),
    );
    let err = fails(&run(&[&"current", &"--key", &other, &f.proof(n, "d-2")]), 1);
    assert!(err.contains("checkpoint note"), "{err}");
    let mut p = f.l.prover(n).current("t", "d-2");
    p.map.terminal = Terminal::Leaf {
        key: map_key("t", "d-2"),
        index: 1,
    };
    let file = f.dir.write("tampered", p.to_text());
    let err = fails(&run(&[&"current", &"--key", &f.key, &file]), 1);
    assert!(
        err.starts_with("graven-verify: the state proof leads to root "),
        "{err}"
    );
    let mut upgraded = Ledger::generate_upgraded("current.example/upgraded", 4, 6);
    upgraded.signer = Signer::parse(&f.l.signer.to_private_key()).expect("key");
    assert_eq!(upgraded.revs[0].entry.state, State::Untracked);
    let file = f.dir.write(
        "format1",
        upgraded.prover(1).current("orders", "d-1").to_text(),
    );
    let err = fails(&run(&[&"current", &"--key", &f.key, &file]), 1);
    assert!(
        err.contains("is of format 1") && err.contains("does not commit to a state"),
        "{err}"
    );
    // Malformed or unusable input (2).
    let file = f.dir.write("bad", "graven.dev/current-proof@v2\n");
    let err = fails(&run(&[&"current", &"--key", &f.key, &file]), 2);
    assert!(err.contains("graven.dev/current-proof@v1"), "{err}");
    let err = fails(&run(&[&"current", &f.proof(n, "d-2")]), 2);
    assert!(err.contains("missing --key"), "{err}");
    let err = fails(&run(&[&"current", &"--key", &f.key]), 2);
    assert!(err.contains("missing the file"), "{err}");
    let err = fails(
        &run(&[
            &"current",
            &"--key",
            &f.key,
            &"--old",
            &"x",
            &f.proof(n, "d-2"),
        ]),
        2,
    );
    assert!(err.contains("--old"), "{err}");
    let missing = f.dir.path("nothing");
    let err = fails(
        &run(&[
            &"current",
            &"--key",
            &f.key,
            &"--entry",
            &missing,
            &f.proof(n, "d-2"),
        ]),
        2,
    );
    assert!(err.contains("cannot read entry"), "{err}");
}

#[test]
fn current_with_entry_needs_that_exact_live_revision() {
    let f = Files::new("entry");
    let n = f.l.size();
    let proof = f.proof(n, "d-2");
    // The live revision of d-2 is index 4.
    let line = ok(&run(&[
        &"current",
        &"--key",
        &f.key,
        &"--entry",
        &f.entry(4),
        &proof,
    ]));
    assert!(line.starts_with("verified current: table \"t\" id \"d-2\" version 1 at index 4"));
    // Its older revision, another document's, or anything else.
    let err = fails(
        &run(&[
            &"current",
            &"--key",
            &f.key,
            &"--entry",
            &f.entry(1),
            &proof,
        ]),
        1,
    );
    assert_eq!(
        err,
        format!(
            "graven-verify: the entry is version 0 of table \"t\" id \"d-2\", not the current revision: that is version 1 at index 4 (checkpoint size {n})"
        )
    );
    let err = fails(
        &run(&[
            &"current",
            &"--key",
            &f.key,
            &"--entry",
            &f.entry(2),
            &proof,
        ]),
        1,
    );
    assert!(
        err.contains("the entry is an entry of table \"t\" id \"d-3\", not the current"),
        "{err}"
    );
    let junk = f.dir.write("junk", b"junk");
    let err = fails(
        &run(&[&"current", &"--key", &f.key, &"--entry", &junk, &proof]),
        1,
    );
    assert!(err.contains("the entry is not an entry"), "{err}");
    // A document the proof shows absent: deleted after its revision at index 3.
    let err = fails(
        &run(&[
            &"current",
            &"--key",
            &f.key,
            &"--entry",
            &f.entry(3),
            &f.proof(n, "d-1"),
        ]),
        1,
    );
    assert_eq!(
        err,
        format!(
            "graven-verify: the entry is version 1 of table \"t\" id \"d-1\", but the proof shows table \"t\" id \"d-1\" absent at checkpoint size {n}"
        )
    );
}

#[test]
fn current_with_state_refuses_stale_and_forked_answers() {
    let f = Files::new("state");
    let n = f.l.size();
    let state_dir = f.dir.path("state");
    let state = StateDir::new(&state_dir);
    let stored = |what: &str| {
        fs::read_to_string(state.path(f.l.origin())).unwrap_or_else(|e| panic!("{what}: {e}"))
    };
    let current = |proof: &std::path::Path| {
        run(&[&"current", &"--key", &f.key, &"--state", &state_dir, &proof])
    };

    // Nothing stored: verified, with a note; DIR is not created.
    let r = current(&f.proof(n, "d-2"));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stderr,
        format!(
            "graven-verify: {} holds no checkpoint of origin {}: nothing to compare the proof's with\n",
            state_dir.display(),
            f.l.origin()
        )
    );
    assert!(!state_dir.exists());

    // The same checkpoint stored: verified, silently.
    state.store(f.l.origin(), &f.l.signed(n)).expect("store");
    ok(&current(&f.proof(n, "d-2")));
    assert_eq!(stored("same"), f.l.signed(n));

    // A newer one stored: an answer at an older checkpoint may be stale.
    let err = fails(&current(&f.proof(4, "d-2")), 1);
    assert_eq!(
        err,
        format!(
            "graven-verify: stale: {} holds a checkpoint of size {n}, newer than the proof's size 4; the answer may no longer be current",
            state.path(f.l.origin()).display()
        )
    );
    assert_eq!(stored("stale"), f.l.signed(n));

    // An older one stored: verified, with a note, and DIR not advanced.
    state.store(f.l.origin(), &f.l.signed(4)).expect("store");
    let r = current(&f.proof(n, "d-2"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("holds an older checkpoint (size 4)"),
        "{r:?}"
    );
    assert_eq!(stored("older"), f.l.signed(4));

    // A checkpoint of the same size with another root, signed by the same key: a fork.
    let mut forked = history();
    forked.signer = Signer::parse(&f.l.signer.to_private_key()).expect("key");
    let mut e: Entry = forked.revs[2].entry.clone();
    e.principal = "mallory".into();
    forked.revs[2].bytes = e.encode().expect("encode");
    assert_ne!(forked.checkpoint(n).root, f.l.checkpoint(n).root);
    state.store(f.l.origin(), &forked.signed(n)).expect("store");
    let err = fails(&current(&f.proof(n, "d-2")), 1);
    assert_eq!(
        err,
        format!(
            "graven-verify: fork: the checkpoint in {} has size {n} like the proof's but a different root",
            state.path(f.l.origin()).display()
        )
    );
    assert_eq!(stored("fork"), forked.signed(n));

    // A state file that does not open with the keys is an input error.
    state.store(f.l.origin(), "garbage").expect("store");
    let err = fails(&current(&f.proof(n, "d-2")), 2);
    assert!(err.contains("state file"), "{err}");
    assert_eq!(stored("garbage"), "garbage");
}
