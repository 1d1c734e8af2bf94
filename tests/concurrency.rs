//! Many clients racing on the same documents with expected versions: every acknowledged
//! update is in the history, versions are dense, and each conflict has exactly one winner.

use std::collections::{BTreeMap, HashSet};

use graven::pb;
use tonic::Code;

use crate::util::*;

const DOCS: usize = 4;
const CLIENTS: usize = 24;
const ATTEMPTS: usize = 25;

fn counter(json: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(json).expect("stored JSON");
    v["count"].as_u64().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_set_counters_lose_no_update() {
    let mut s = start().await;
    s.ledger("l", &["c"]).await;
    for d in 0..DOCS {
        s.transact(
            "l",
            vec![insert(
                "c",
                &format!("doc{d}"),
                r#"{"count":0,"by":"init"}"#,
            )],
        )
        .await
        .expect("insert");
    }

    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let mut docs = s.docs.clone();
        tasks.push(tokio::spawn(async move {
            // (doc, version written, journal index)
            let mut wins: Vec<(String, u64, u64)> = Vec::new();
            let mut conflicts = 0;
            for attempt in 0..ATTEMPTS {
                let id = format!("doc{}", (client + attempt) % DOCS);
                let current = docs
                    .get_document(pb::GetDocumentRequest {
                        ledger: "l".into(),
                        table: "c".into(),
                        id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("get")
                    .into_inner()
                    .revision
                    .expect("revision");
                let next = format!(
                    r#"{{"count":{},"by":"client{client}-attempt{attempt}"}}"#,
                    counter(&current.json) + 1
                );
                let result = docs
                    .transact(tx(
                        "l",
                        vec![update("c", &id, &next, Some(current.version))],
                        "",
                    ))
                    .await;
                match result {
                    Ok(r) => {
                        let r = r.into_inner();
                        let res = &r.results[0];
                        assert_eq!(res.version, current.version + 1);
                        wins.push((id, res.version, res.index.expect("index")));
                    }
                    Err(status) => {
                        assert_eq!(
                            status.code(),
                            Code::FailedPrecondition,
                            "{}",
                            status.message()
                        );
                        conflicts += 1;
                    }
                }
            }
            (client, wins, conflicts)
        }));
    }

    let mut winners: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut indexes = HashSet::new();
    let mut total_wins = 0;
    for task in tasks {
        let (client, wins, _conflicts) = task.await.expect("client task");
        for (id, version, index) in wins {
            total_wins += 1;
            assert!(
                indexes.insert(index),
                "journal index {index} acknowledged twice"
            );
            let previous = winners.insert((id.clone(), version), format!("client{client}"));
            assert!(
                previous.is_none(),
                "two clients both won version {version} of {id}: exactly one winner per conflict"
            );
        }
    }
    assert!(total_wins >= DOCS, "some updates must commit");

    let mut final_total = 0;
    for d in 0..DOCS {
        let id = format!("doc{d}");
        let history = s
            .docs
            .history(pb::HistoryRequest {
                ledger: "l".into(),
                table: "c".into(),
                id: id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("history")
            .into_inner();
        let versions: Vec<u64> = history.revisions.iter().map(|r| r.version).collect();
        let expected: Vec<u64> = (0..versions.len() as u64).collect();
        assert_eq!(versions, expected, "versions of {id} are dense");
        for rev in &history.revisions[1..] {
            // Each revision counts one more than the one before: no lost update.
            assert_eq!(counter(&rev.json), rev.version, "{id} v{}", rev.version);
            let by: serde_json::Value = serde_json::from_slice(&rev.json).expect("json");
            let winner = winners
                .get(&(id.clone(), rev.version))
                .unwrap_or_else(|| panic!("{id} v{} has no acknowledged writer", rev.version));
            assert!(
                by["by"]
                    .as_str()
                    .expect("by")
                    .starts_with(&format!("{winner}-")),
                "{id} v{} was written by its acknowledged winner",
                rev.version
            );
        }
        final_total += history.revisions.len() - 1;
    }
    assert_eq!(
        final_total, total_wins,
        "every acknowledged update is in the history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_writers_of_one_version_have_one_winner() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    s.transact("l", vec![insert("t", "hot", r#"{"v":0}"#)])
        .await
        .expect("insert");
    for round in 0..5u64 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for client in 0..16 {
            let mut docs = s.docs.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                docs.transact(tx(
                    "l",
                    vec![update(
                        "t",
                        "hot",
                        &format!(r#"{{"v":{client}}}"#),
                        Some(round),
                    )],
                    "",
                ))
                .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => won += 1,
                Err(status) => assert_eq!(status.code(), Code::FailedPrecondition),
            }
        }
        assert_eq!(
            won, 1,
            "round {round}: exactly one writer of version {round} wins"
        );
    }
}

/// 16 clients run statements as transactions, retrying when ABORTED: an UPDATE that
/// increments a counter it reads loses no increment; a transaction that counts what a
/// WHERE matches (through an index, and by a scan) and inserts a row that would match
/// sees exactly the rows committed before it, so the counts, in commit order, are
/// 0, 1, 2, ...: no phantom.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statements_are_serializable_under_sixteen_clients() {
    use crate::query::{query, rows, wait_online};
    use serde_json::json;

    const CLIENTS: usize = 16;
    const EACH: usize = 6;
    let mut s = start().await;
    s.ledger("l", &["counter", "shift", "log"]).await;
    query(
        &mut s,
        "l",
        "INSERT INTO counter VALUE {'name': 'c', 'n': 0}",
        &[],
    )
    .await
    .expect("insert");
    query(&mut s, "l", "CREATE INDEX ON shift (day)", &[])
        .await
        .expect("index");
    wait_online(&mut s, "l", "shift").await;

    // The statements of each kind of transaction, and what a commit returns.
    let increment = "UPDATE counter AS c SET c.n = c.n + 1 WHERE c.name = 'c'";
    // `day` is indexed: the count reads an index range. `log` has no index: a scan.
    let on_call = "SELECT COUNT(*) AS seen FROM shift AS s WHERE s.day = 'mon'; \
                   INSERT INTO shift VALUE {'day': 'mon', 'by': ?}";
    let other_day = "SELECT COUNT(*) AS seen FROM shift AS s WHERE s.day = 'tue'; \
                     INSERT INTO shift VALUE {'day': 'tue', 'by': ?}";
    let logged = "SELECT COUNT(*) AS seen FROM log; INSERT INTO log VALUE {'by': ?}";
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let mut docs = s.docs.clone();
        tasks.push(tokio::spawn(async move {
            let mut done: Vec<(&str, u64, u64)> = Vec::new(); // (kind, seen, first index)
            let mut aborted = 0u32;
            for round in 0..EACH {
                for (kind, text) in [
                    ("inc", increment),
                    ("mon", on_call),
                    ("tue", other_day),
                    ("log", logged),
                ] {
                    let params = if kind == "inc" {
                        vec![]
                    } else {
                        vec![json!(format!("{client}-{round}"))]
                    };
                    loop {
                        match docs
                            .execute_statement(crate::query::request("l", text, &params))
                            .await
                        {
                            Ok(r) => {
                                let r = r.into_inner();
                                let receipt = r.receipt.clone().expect("a write's receipt");
                                let seen = rows(&r)
                                    .first()
                                    .and_then(|row| row["seen"].as_u64())
                                    .unwrap_or(0);
                                done.push((kind, seen, receipt.first_index));
                                break;
                            }
                            Err(e) if e.code() == Code::Aborted => aborted += 1,
                            Err(e) => panic!("{kind}: {e}"),
                        }
                    }
                }
            }
            (done, aborted)
        }));
    }
    let mut done = Vec::new();
    let mut aborted = 0;
    for t in tasks {
        let (d, a) = t.await.expect("client");
        done.extend(d);
        aborted += a;
    }
    let total = (CLIENTS * EACH) as u64;
    // No lost update.
    let n = query(&mut s, "l", "SELECT VALUE c.n FROM counter AS c", &[])
        .await
        .expect("n");
    assert_eq!(n, vec![json!(total)]);
    // No phantom: in commit order, each transaction saw every earlier one of its kind.
    for kind in ["mon", "tue", "log"] {
        let mut seen: Vec<(u64, u64)> = done
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, seen, index)| (*index, *seen))
            .collect();
        seen.sort_unstable();
        let counts: Vec<u64> = seen.iter().map(|(_, c)| *c).collect();
        assert_eq!(counts, (0..total).collect::<Vec<_>>(), "{kind}");
    }
    // Every transaction eventually committed; how many tries the contention cost.
    eprintln!(
        "{} transactions committed after {aborted} aborted tries",
        4 * total
    );
}
