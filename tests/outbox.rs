//! The outbox relay of examples/outbox-relay.sh: every event handed on exactly once, in
//! journal order, across a restart of the relay.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{ServerProcess, graven_command, graven_ok, verify_bin};

fn place_orders(server: &ServerProcess, dir: &Path, range: std::ops::Range<u32>) {
    let file = dir.join("order.json");
    for i in range {
        std::fs::write(
            &file,
            format!(
                r#"{{"operations":[{{"insert":{{"table":"orders","id":"o-{i}","document":{{"qty":{i}}}}}}},
                {{"insert":{{"table":"outbox","id":"evt-{i}","document":{{"order":"o-{i}"}}}}}}]}}"#
            ),
        )
        .expect("order file");
        graven_ok(
            &server.url,
            &["transact", "shop", file.to_str().expect("path")],
        );
    }
}

/// Starts the relay in its own process group, so stopping it stops its whole pipeline.
fn relay(server: &ServerProcess, dir: &Path) -> Child {
    let bins = verify_bin().parent().expect("binary folder").to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/outbox-relay.sh");
    Command::new("sh")
        .arg(script)
        .args(["shop", "shop.vkey", "delivered.jsonl"])
        .current_dir(dir)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bins.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("GRAVEN_SERVER", &server.url)
        .env("GRAVEN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("starting the relay")
}

fn stop(mut relay: Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", relay.id())])
        .status();
    let _ = relay.wait();
}

fn delivered(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("delivered.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each delivered line is JSON"))
        .collect()
}

fn wait_for(dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered(dir).len() < n {
        assert!(
            Instant::now() < deadline,
            "the relay delivered {} of {n}",
            delivered(dir).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_relay_hands_on_each_event_once_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let server = ServerProcess::start(&d.join("data"), &d.join("server.log"));
    graven_ok(&server.url, &["ledger", "create", "shop"]);
    graven_ok(&server.url, &["table", "create", "shop", "orders"]);
    graven_ok(&server.url, &["table", "create", "shop", "outbox"]);
    let key = graven_command()
        .args(["--server", &server.url, "key", "shop"])
        .output()
        .expect("key");
    std::fs::write(d.join("shop.vkey"), key.stdout).expect("vkey file");

    place_orders(&server, d, 0..5);
    let first = relay(&server, d);
    wait_for(d, 5);
    stop(first);
    place_orders(&server, d, 5..12);
    let second = relay(&server, d);
    wait_for(d, 12);
    // Give a buggy relay the chance to deliver something twice.
    place_orders(&server, d, 12..13);
    wait_for(d, 13);
    std::thread::sleep(Duration::from_millis(300));
    stop(second);

    let events = delivered(d);
    assert_eq!(events.len(), 13, "each event once");
    let mut last = None;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["table"], "outbox");
        assert_eq!(e["document"]["order"], format!("o-{i}"), "in commit order");
        let index = e["index"].as_u64().expect("index");
        assert!(last.is_none_or(|l| index > l), "indexes only grow");
        last = Some(index);
    }
}
