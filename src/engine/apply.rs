//! The rules a transaction must pass against the ledger's state, as pure functions of the
//! operations and the documents' states: the sequencer reads the states, these decide.
//!
//! * The shape: at least one revision, each document written at most once.
//! * Each operation against its document's state before the transaction: an insert needs a
//!   document never written (ids are not reused), an update or delete a live one at the
//!   expected version if one is given, a check its condition.

use std::collections::HashMap;

use crate::error::{Error, Quote, Result};
use crate::model::{Condition, Op};
use crate::storage::DocRow;

/// The operation's name in messages.
pub(super) fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Insert { .. } => "insert",
        Op::Update { .. } => "update",
        Op::Delete { .. } => "delete",
        Op::Check { .. } => "check",
    }
}

/// The shape rules: at least one insert, update or delete, and each document written at
/// most once. A transaction that breaks them writes nothing and uses no transaction id.
pub(super) fn check_shape(ops: &[Op]) -> Result<()> {
    let mut written: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if op.operation().is_some()
            && let Some(j) = written.insert(op.target(), i)
        {
            let (table, id) = op.target();
            return Err(Error::invalid(format!(
                "operations[{i}]: document {} in table {} is already written by \
                 operations[{j}]; write each document at most once per transaction",
                Quote(id),
                Quote(table)
            )));
        }
    }
    if written.is_empty() {
        return Err(Error::invalid(
            "operations: a transaction needs at least one insert, update or delete",
        ));
    }
    Ok(())
}

/// Checks operation `i` against its document's state before the transaction (`None`:
/// never written).
pub(super) fn check_op(i: usize, op: &Op, state: Option<DocRow>) -> Result<()> {
    let (table, id) = op.target();
    let what = || {
        format!(
            "operation {i} ({}): document {} in table {}",
            op_name(op),
            Quote(id),
            Quote(table)
        )
    };
    let live = state.filter(|s| s.live);
    match op {
        Op::Insert { .. } => match state {
            None => Ok(()),
            Some(s) if s.live => Err(Error::exists(format!("{} already exists", what()))),
            Some(s) => Err(Error::exists(format!(
                "{} was deleted at version {}; ids are not reused",
                what(),
                s.version
            ))),
        },
        Op::Update {
            expected_version, ..
        }
        | Op::Delete {
            expected_version, ..
        } => {
            let Some(s) = live else {
                return Err(Error::not_found(format!("{} does not exist", what())));
            };
            match expected_version {
                Some(v) if *v != s.version => Err(Error::precondition(format!(
                    "{}: expected version {v}, current version is {}",
                    what(),
                    s.version
                ))),
                _ => Ok(()),
            }
        }
        Op::Check { condition, .. } => {
            let holds = match condition {
                Condition::Version(v) => live.is_some_and(|s| s.version == *v),
                Condition::Exists => live.is_some(),
                Condition::NotExists => live.is_none(),
            };
            if holds {
                return Ok(());
            }
            let found = match live {
                Some(s) => format!("it is at version {}", s.version),
                None => "it does not exist".to_owned(),
            };
            let wanted = match condition {
                Condition::Version(v) => format!("expected version {v}"),
                Condition::Exists => "expected it to exist".to_owned(),
                Condition::NotExists => "expected it not to exist".to_owned(),
            };
            Err(Error::precondition(format!(
                "{}: {wanted}, {found}",
                what()
            )))
        }
    }
}

/// The version a write that passed [`check_op`] gives its document: 0 for an insert, one
/// more than the current version otherwise.
pub(super) fn next_version(op: &Op, state: Option<DocRow>) -> Result<u64> {
    match (op, state) {
        (Op::Insert { .. }, _) => Ok(0),
        (_, Some(s)) => Ok(s.version + 1),
        (_, None) => Err(Error::internal(format!(
            "{} of a missing document passed its checks",
            op_name(op)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn state(version: u64, live: bool) -> Option<DocRow> {
        Some(DocRow {
            version,
            index: 9,
            live,
        })
    }

    fn op(kind: &str, id: &str, expected: Option<u64>) -> Op {
        let (table, id) = ("t".to_owned(), id.to_owned());
        match kind {
            "insert" => Op::Insert {
                table,
                id,
                body: b"{}".to_vec(),
            },
            "update" => Op::Update {
                table,
                id,
                body: b"{}".to_vec(),
                expected_version: expected,
            },
            _ => Op::Delete {
                table,
                id,
                expected_version: expected,
            },
        }
    }

    fn check(id: &str, condition: Condition) -> Op {
        Op::Check {
            table: "t".into(),
            id: id.into(),
            condition,
        }
    }

    #[test]
    fn each_operation_against_each_state() {
        use ErrorKind::*;
        // (operation, state before, outcome: Ok or the kind and a part of the message)
        type Case = (Op, Option<DocRow>, Result<(), (ErrorKind, &'static str)>);
        let cases: Vec<Case> = vec![
            (op("insert", "a", None), None, Ok(())),
            (
                op("insert", "a", None),
                state(0, true),
                Err((AlreadyExists, "already exists")),
            ),
            (
                op("insert", "a", None),
                state(2, false),
                Err((AlreadyExists, "deleted at version 2; ids are not reused")),
            ),
            (
                op("update", "a", None),
                None,
                Err((NotFound, "does not exist")),
            ),
            (
                op("update", "a", None),
                state(1, false),
                Err((NotFound, "does not exist")),
            ),
            (op("update", "a", None), state(1, true), Ok(())),
            (op("update", "a", Some(1)), state(1, true), Ok(())),
            (
                op("update", "a", Some(0)),
                state(1, true),
                Err((
                    FailedPrecondition,
                    "expected version 0, current version is 1",
                )),
            ),
            (op("delete", "a", Some(4)), state(4, true), Ok(())),
            (
                op("delete", "a", Some(3)),
                state(4, true),
                Err((FailedPrecondition, "expected version 3")),
            ),
            (
                op("delete", "a", None),
                state(4, false),
                Err((NotFound, "does not exist")),
            ),
            (check("a", Condition::Exists), state(0, true), Ok(())),
            (
                check("a", Condition::Exists),
                state(0, false),
                Err((
                    FailedPrecondition,
                    "expected it to exist, it does not exist",
                )),
            ),
            (check("a", Condition::NotExists), None, Ok(())),
            (check("a", Condition::NotExists), state(0, false), Ok(())),
            (
                check("a", Condition::NotExists),
                state(3, true),
                Err((
                    FailedPrecondition,
                    "expected it not to exist, it is at version 3",
                )),
            ),
            (check("a", Condition::Version(3)), state(3, true), Ok(())),
            (
                check("a", Condition::Version(3)),
                state(3, false),
                Err((FailedPrecondition, "expected version 3, it does not exist")),
            ),
        ];
        for (n, (op, before, want)) in cases.into_iter().enumerate() {
            let got = check_op(5, &op, before);
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err((kind, needle))) => {
                    assert_eq!(e.kind, kind, "case {n}: {e}");
                    assert!(e.message.contains(needle), "case {n}: {e}");
                    assert!(
                        e.message.starts_with(&format!(
                            "operation 5 ({}): document \"a\" in table \"t\"",
                            op_name(&op)
                        )),
                        "case {n}: {e}"
                    );
                }
                (got, want) => panic!("case {n}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn versions_follow_the_state() {
        assert_eq!(next_version(&op("insert", "a", None), None).ok(), Some(0));
        assert_eq!(
            next_version(&op("update", "a", None), state(4, true)).ok(),
            Some(5)
        );
        assert_eq!(
            next_version(&op("delete", "a", None), state(0, true)).ok(),
            Some(1)
        );
        let e = next_version(&op("update", "a", None), None).expect_err("no state");
        assert_eq!(e.kind, ErrorKind::Internal);
    }

    #[test]
    fn the_shape_rules() {
        assert!(check_shape(&[op("insert", "a", None), check("a", Condition::Exists)]).is_ok());
        let e = check_shape(&[check("a", Condition::Exists)]).expect_err("no write");
        assert!(
            e.message.contains("at least one insert, update or delete"),
            "{e}"
        );
        let e = check_shape(&[
            op("insert", "a", None),
            op("insert", "b", None),
            op("update", "a", None),
        ])
        .expect_err("twice");
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.starts_with(
                "operations[2]: document \"a\" in table \"t\" is already written by operations[0]"
            ),
            "{e}"
        );
    }
}
