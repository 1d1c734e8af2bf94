//! `graven-verify consistency --state DIR`: the newest verified checkpoint per origin is
//! kept in DIR and each proof must extend it; stale and forked proofs are rejected.

mod common;

use std::fs;

use common::{Ledger, Run, TempDir, fails, ok, run};
use graven_verify::hash::{Hash, leaf_hash};
use graven_verify::proof::ConsistencyProof;
use graven_verify::state::StateDir;
use graven_verify::tree::{CompactRange, prove_consistency};

/// A ledger and all its stored hashes, to prove consistency from.
struct Log {
    ledger: Ledger,
    stored: Vec<Hash>,
}

impl Log {
    fn new(ledger: Ledger) -> Log {
        let mut range = CompactRange::new();
        let mut stored = Vec::new();
        for r in &ledger.revs {
            range.append_stored(leaf_hash(&r.bytes), |_, h| stored.push(h));
        }
        Log { ledger, stored }
    }

    fn proof(&self, old: u64, new: u64) -> String {
        ConsistencyProof {
            old_size: old,
            hashes: prove_consistency(old, new, &self.stored).expect("prove"),
            checkpoint: self.ledger.signed(new),
        }
        .to_text()
    }
}

fn consistency(dir: &TempDir, key: &std::path::Path, proof: &str, old: Option<&str>) -> Run {
    let proof_file = dir.write("proof", proof);
    let state = dir.path("state");
    match old {
        None => run(&[
            &"consistency",
            &"--key",
            &key,
            &"--state",
            &state,
            &proof_file,
        ]),
        Some(old) => {
            let old_file = dir.write("old", old);
            run(&[
                &"consistency",
                &"--key",
                &key,
                &"--state",
                &state,
                &"--old",
                &old_file,
                &proof_file,
            ])
        }
    }
}

fn stored(dir: &TempDir, origin: &str) -> Option<String> {
    StateDir::new(dir.path("state"))
        .load(origin)
        .expect("load")
        .map(|b| String::from_utf8(b).expect("UTF-8"))
}

#[test]
fn state_advances_with_each_proof() {
    let log = Log::new(Ledger::generate("state.example/log", 30));
    let origin = log.ledger.origin().to_owned();
    let dir = TempDir::new("state-loop");
    let key = dir.write("key.vkey", log.ledger.vkey());
    // Nothing stored: a proof from 0 starts the state.
    let line = ok(&consistency(&dir, &key, &log.proof(0, 5), None));
    assert!(line.contains("old size 0 size 5"), "{line}");
    assert_eq!(stored(&dir, &origin), Some(log.ledger.signed(5)));
    let file = dir.path("state").join(format!(
        "{}.checkpoint",
        "state.example/log"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    assert!(file.exists(), "{}", file.display());
    // Each next proof from the stored size is accepted and advances the state.
    for (old, new) in [(5, 9), (9, 9), (9, 20), (20, log.ledger.size())] {
        let line = ok(&consistency(&dir, &key, &log.proof(old, new), None));
        assert!(
            line.contains(&format!("old size {old} size {new}")),
            "{line}"
        );
        assert_eq!(stored(&dir, &origin), Some(log.ledger.signed(new)));
    }
}

#[test]
fn stale_and_forked_proofs_are_rejected() {
    let log = Log::new(Ledger::generate("state.example/log", 30));
    let origin = log.ledger.origin().to_owned();
    let dir = TempDir::new("state-stale");
    let key = dir.write("key.vkey", log.ledger.vkey());
    ok(&consistency(&dir, &key, &log.proof(0, 10), None));
    ok(&consistency(&dir, &key, &log.proof(10, 20), None));
    // A proof from an older checkpoint than the stored one.
    let err = fails(&consistency(&dir, &key, &log.proof(10, 30), None), 1);
    assert_eq!(
        err,
        "graven-verify: proof is from size 10 but the old checkpoint has size 20"
    );
    // A fork: the same key signs a different history from index 15 on.
    let mut forked = Ledger::generate("state.example/log", 30);
    forked.signer =
        graven_verify::note::Signer::parse(&log.ledger.signer.to_private_key()).expect("key");
    let mut entry = forked.revs[15].entry.clone();
    entry.principal = "mallory".into();
    forked.revs[15].bytes = entry.encode().expect("encode");
    let fork = Log::new(forked);
    let err = fails(&consistency(&dir, &key, &fork.proof(20, 30), None), 1);
    assert_eq!(err, "graven-verify: proof failed");
    // With --old the fork's own old checkpoint verifies the proof, but the state holds a
    // different checkpoint of that size: a fork.
    let r = consistency(
        &dir,
        &key,
        &fork.proof(20, 30),
        Some(&fork.ledger.signed(20)),
    );
    let err = fails(&r, 1);
    assert!(err.contains("fork"), "{err}");
    // The state never moved.
    assert_eq!(stored(&dir, &origin), Some(log.ledger.signed(20)));
    // The genuine log goes on.
    ok(&consistency(&dir, &key, &log.proof(20, 25), None));
    assert_eq!(stored(&dir, &origin), Some(log.ledger.signed(25)));
}

#[test]
fn old_and_state_together() {
    let log = Log::new(Ledger::generate("state.example/log", 30));
    let origin = log.ledger.origin().to_owned();
    let dir = TempDir::new("state-old");
    let key = dir.write("key.vkey", log.ledger.vkey());
    // Nothing stored and a proof from 7: --old is needed.
    let err = fails(&consistency(&dir, &key, &log.proof(7, 12), None), 2);
    assert!(err.contains("must be from size 0, or give --old"), "{err}");
    // --old seeds the state.
    ok(&consistency(
        &dir,
        &key,
        &log.proof(7, 12),
        Some(&log.ledger.signed(7)),
    ));
    assert_eq!(stored(&dir, &origin), Some(log.ledger.signed(12)));
    // --old equal to the stored checkpoint: updated.
    ok(&consistency(
        &dir,
        &key,
        &log.proof(12, 15),
        Some(&log.ledger.signed(12)),
    ));
    assert_eq!(stored(&dir, &origin), Some(log.ledger.signed(15)));
    // An older --old: verified, but the state is not replaced by a chain that does not
    // start at it (nor ever by a smaller checkpoint).
    for (old, new) in [(3, 10), (3, 20)] {
        let r = consistency(
            &dir,
            &key,
            &log.proof(old, new),
            Some(&log.ledger.signed(old)),
        );
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stderr.starts_with("graven-verify: state not updated"),
            "{r:?}"
        );
        assert_eq!(stored(&dir, &origin), Some(log.ledger.signed(15)));
    }
    // Without --state, --old is still required.
    let proof = dir.write("p", log.proof(0, 3));
    let err = fails(&run(&[&"consistency", &"--key", &key, &proof]), 2);
    assert!(err.contains("missing --old or --state"), "{err}");
}

#[test]
fn unreadable_state_is_an_input_error() {
    let log = Log::new(Ledger::generate("state.example/log", 10));
    let dir = TempDir::new("state-bad");
    let key = dir.write("key.vkey", log.ledger.vkey());
    let state = StateDir::new(dir.path("state"));
    state.store(log.ledger.origin(), "garbage").expect("store");
    let err = fails(&consistency(&dir, &key, &log.proof(0, 5), None), 2);
    assert!(err.contains("state file"), "{err}");
    fs::remove_dir_all(dir.path("state")).expect("remove");
}
