//! The README's walk-throughs, run as written against real servers, so the commands a
//! newcomer copies cannot rot: the five minutes on one server, and several servers on
//! one PostgreSQL.

use std::path::Path;
use std::process::Command;

use crate::util::{Postgres, ServerProcess, free_port, verify_bin};

/// The shell code blocks of the README section headed `heading`, joined.
fn section_script(readme: &str, heading: &str) -> String {
    let section = readme
        .split(heading)
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let mut script = String::new();
    let mut in_block = false;
    for line in section.lines() {
        match line.trim_end() {
            "```sh" => in_block = true,
            "```" => in_block = false,
            code if in_block => {
                script.push_str(code);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

/// The PATH with `graven` and `graven-verify` from this build first.
fn path_with_bins() -> String {
    let bins = verify_bin().parent().expect("binary folder").to_owned();
    assert!(Path::new(env!("CARGO_BIN_EXE_graven")).starts_with(&bins));
    format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs a README script with the workspace's binaries against a fresh server; its stdout
/// (the test fails, showing everything, if the script does).
fn run_on_a_server(script: &str, what: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&dir.path().join("data"), &dir.path().join("server.log"));
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir.path())
        .env("PATH", path_with_bins())
        .env("GRAVEN_SERVER", &server.url)
        .env("GRAVEN_LOG", "warn")
        .output()
        .expect("running sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the README's {what} failed\nscript:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let readme = include_str!("../README.md");
    let script = section_script(readme, "## Five minutes with graven");
    assert!(
        script.contains("graven-verify inclusion"),
        "the walk-through verifies a proof"
    );

    let stdout = run_on_a_server(&script, "the walk-through");
    for expected in [
        "\"id\":\"o-1\"",
        "verified inclusion: origin graven.local/shop index 1 size 3 root ",
        "verified consistency: origin graven.local/shop old size 3 size 4 root ",
        "verified export: origin graven.local/shop entries 4",
        "shop: ok: 4 entries, 3 documents (3 live), checkpoint size 4, root ",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
}

#[test]
fn readme_queries_run_as_written() {
    let readme = include_str!("../README.md");
    let script = section_script(readme, "## Queries");
    let stdout = run_on_a_server(&script, "the queries");
    // The outputs the section shows, as it shows them.
    for line in section_outputs(readme, "## Queries") {
        let shown = line.replace("...", "");
        if shown.trim().is_empty() || line.starts_with("{\"documentId\"") {
            continue;
        }
        let parts: Vec<&str> = line.split("...").filter(|p| !p.is_empty()).collect();
        assert!(
            stdout
                .lines()
                .any(|out| parts.iter().all(|p| out.contains(p))),
            "the README shows {line:?}; the output was:\n{stdout}"
        );
    }
}

/// The `# {...}` output lines of the README section headed `heading`, in its shell blocks.
fn section_outputs(readme: &str, heading: &str) -> Vec<String> {
    section_script(readme, heading)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# {").map(|rest| format!("{{{rest}")))
        .map(|l| l.split(", one line").next().unwrap_or(&l).to_owned())
        .collect()
}

#[test]
fn readme_several_servers_run_as_written() {
    let Some(pg) = Postgres::start_or_skip("readme_several_servers_run_as_written") else {
        return;
    };
    let readme = include_str!("../README.md");
    // The README's ports, made free ones; and no server left behind, whatever happens.
    let script = section_script(readme, "## Several servers")
        .replace("7421", &free_port().to_string())
        .replace("7422", &free_port().to_string());
    assert!(
        script.contains("kill -9 $A"),
        "the walk-through kills a server"
    );
    let script = format!("trap 'kill $A $B $TAIL 2>/dev/null || true' EXIT\n{script}");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path_with_bins())
        .env("GRAVEN_STORAGE", &pg.url)
        .env("GRAVEN_LOG", "warn")
        .env_remove("GRAVEN_SERVER")
        .env_remove("GRAVEN_DATA")
        .output()
        .expect("running sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the walk-through failed\nscript:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `ledger create` and the two `ledger describe`s print the ledger.
    let describes: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.contains("\"writer\""))
        .skip(1)
        .map(|l| serde_json::from_str(l).expect("describe prints JSON"))
        .collect();
    assert_eq!(describes.len(), 2, "{stdout}");
    let writer = |i: usize| describes[i]["writer"].as_str().expect("writer").to_owned();
    assert_ne!(
        writer(0),
        writer(1),
        "the second server took over: {stdout}"
    );
    assert_eq!(describes[1]["size"], 3, "{stdout}");
    let stream = std::fs::read_to_string(dir.path().join("stream.jsonl")).expect("stream");
    let ids: Vec<String> = stream
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|v| v["type"] == "revision")
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        ids,
        ["o-1", "o-2", "o-3"],
        "the stream on the second server: {stream}"
    );
}
