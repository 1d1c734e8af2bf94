//! `graven-bench`, every workload, briefly, against a real `graven serve`: the JSON
//! contract scripts depend on. No timing is asserted (the machine may be busy).

use std::process::{Output, Stdio};

use serde_json::Value;

use crate::util::{Postgres, ServerProcess, bench_command};

/// Runs `graven-bench --server URL ARGS`.
fn bench(url: &str, args: &[&str]) -> Output {
    bench_command()
        .args(["--server", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running graven-bench")
}

/// Runs a short bench (1 s, 2 clients, JSON) and returns its report, checking the fields
/// every workload has.
fn bench_json(url: &str, workload: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--workload", workload, "--clients", "2", "--json"];
    // A run of `--count` steps ends when they are done, however slow the storage.
    if !extra.contains(&"--count") {
        args.extend(["--duration", "1"]);
    }
    args.extend_from_slice(extra);
    let out = bench(url, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "graven-bench {args:?}: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}\nstderr: {stderr}"));
    for field in [
        "throughput",
        "revisions_per_sec",
        "p50_ms",
        "p99_ms",
        "errors",
    ] {
        assert!(
            report[field].is_number(),
            "{workload}: field {field} missing or not a number: {report}"
        );
    }
    assert_eq!(report["workload"], workload, "{report}");
    assert_eq!(report["clients"], 2, "{report}");
    assert_eq!(
        report["errors"], 0,
        "{workload}: errors: {report}\nstderr: {stderr}"
    );
    assert!(
        report["throughput"].as_f64().expect("a numeric throughput") > 0.0,
        "{workload}: nothing measured: {report}"
    );
    report
}

fn num(report: &Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("field {field} missing: {report}"))
}

fn start_server() -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&dir.path().join("data"), &dir.path().join("server.log"));
    (dir, server)
}

#[test]
fn w1_and_w2_insert_transactions() {
    let (_dir, server) = start_server();
    for workload in ["w1", "w2"] {
        let report = bench_json(&server.url, workload, &[]);
        // One revision per transaction.
        let (tps, rps) = (
            num(&report, "throughput"),
            num(&report, "revisions_per_sec"),
        );
        assert!((rps - tps).abs() <= 1e-6 * tps.max(1.0), "{report}");
        assert!(num(&report, "transactions") > 0.0, "{report}");
    }
}

#[test]
fn w3_bulk_ingest_reports_revisions() {
    let (_dir, server) = start_server();
    let report = bench_json(&server.url, "w3", &[]);
    let (tps, rps) = (
        num(&report, "throughput"),
        num(&report, "revisions_per_sec"),
    );
    assert!(
        (rps - 100.0 * tps).abs() <= 1e-6 * rps.max(1.0),
        "revisions_per_sec should be 100 × throughput: {report}"
    );
}

#[test]
fn w4_counts_committed_and_aborted() {
    let (_dir, server) = start_server();
    let report = bench_json(&server.url, "w4", &[]);
    let committed = report["committed"].as_u64().expect("committed");
    let aborted = report["aborted"].as_u64().expect("aborted");
    assert!(committed > 0, "{report}");
    assert!(committed + aborted >= committed, "{report}");
    assert_eq!(report["transactions"].as_u64(), Some(committed), "{report}");
}

#[test]
fn w5_reads_with_proofs_and_reuses_a_ledger() {
    let (_dir, server) = start_server();
    let report = bench_json(&server.url, "w5", &["--preload", "200"]);
    assert_eq!(report["preloaded"], 200, "{report}");
    assert!(report["reads"].as_u64().unwrap() > 0, "{report}");
    let ledger = report["ledger"].as_str().expect("ledger name").to_owned();

    // Again on the same ledger: its documents are reused, nothing is preloaded.
    let again = bench_json(
        &server.url,
        "w5",
        &["--preload", "200", "--ledger", &ledger],
    );
    assert_eq!(again["preloaded"], 0, "{again}");
    assert_eq!(again["ledger"], ledger.as_str(), "{again}");

    // An unknown ledger is an error, not a new ledger.
    let out = bench(
        &server.url,
        &[
            "--workload",
            "w5",
            "--duration",
            "1",
            "--ledger",
            "no-such-ledger",
        ],
    );
    assert!(!out.status.success(), "an unknown --ledger should fail");
}

#[test]
fn count_ops_and_reads_shape_a_run() {
    let (_dir, server) = start_server();
    let report = bench_json(
        &server.url,
        "w2",
        &["--count", "60", "--ops", "3", "--reads", "50"],
    );
    let (tx, reads) = (num(&report, "transactions"), num(&report, "reads"));
    // --count bounds the steps of all clients together; none failed (bench_json).
    assert_eq!(tx + reads, 60.0, "{report}");
    // Reads start once a client has written; half of the later steps read.
    assert!(reads > 0.0 && tx > 0.0, "{report}");
    assert_eq!(num(&report, "revisions"), 3.0 * tx, "{report}");

    for (args, why) in [
        (&["--workload", "w4", "--ops", "2"][..], "--ops"),
        (&["--workload", "w2", "--reads", "101"][..], "--reads"),
        (&["--workload", "w5", "--reads", "10"][..], "--reads"),
        (&["--workload", "w2", "--count", "0"][..], "--count"),
    ] {
        let out = bench(&server.url, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should be refused");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

#[test]
fn postgres_peer_runs_the_workloads() {
    let Some(pg) = Postgres::start_or_skip("postgres_peer_runs_the_workloads") else {
        return;
    };
    // No graven server is needed (nor contacted) with --postgres.
    let unused = "http://127.0.0.1:9";
    let report = bench_json(unused, "w3", &["--postgres", &pg.url, "--count", "6"]);
    assert_eq!(report["target"], "postgres", "{report}");
    assert_eq!(num(&report, "revisions"), 600.0, "{report}");
    let report = bench_json(unused, "w4", &["--postgres", &pg.url, "--count", "40"]);
    let (committed, aborted) = (num(&report, "committed"), num(&report, "aborted"));
    assert_eq!(committed + aborted, 40.0, "{report}");
    let report = bench_json(
        unused,
        "w5",
        &["--postgres", &pg.url, "--preload", "300", "--no-chain"],
    );
    assert_eq!(report["target"], "postgres-no-chain", "{report}");
    assert_eq!(report["preloaded"], 300, "{report}");
    assert!(num(&report, "reads") > 0.0, "{report}");
}

#[test]
fn raw_redb_w3_works_and_w5_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No server is needed (nor contacted) with --raw-redb.
    let unused = "http://127.0.0.1:9";
    let file = dir.path().join("raw.redb");
    let report = bench_json(
        unused,
        "w3",
        &["--raw-redb", file.to_str().expect("utf-8 path")],
    );
    assert_eq!(report["target"], "redb", "{report}");
    let (tps, rps) = (
        num(&report, "throughput"),
        num(&report, "revisions_per_sec"),
    );
    assert!((rps - 100.0 * tps).abs() <= 1e-6 * rps.max(1.0), "{report}");

    let out = bench(
        unused,
        &[
            "--workload",
            "w5",
            "--duration",
            "1",
            "--raw-redb",
            dir.path().join("w5.redb").to_str().expect("utf-8 path"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "w5 --raw-redb should fail");
    assert!(
        stderr.contains("--raw-redb") && stderr.contains("w5"),
        "the error should say why: {stderr}"
    );
}
