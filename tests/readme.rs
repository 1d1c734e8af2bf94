//! The README's five-minute walk-through, run as written against a real server, so the
//! commands a newcomer copies cannot rot.

use std::path::Path;
use std::process::Command;

use crate::util::{ServerProcess, verify_bin};

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

#[test]
fn readme_walkthrough_runs_as_written() {
    let readme = include_str!("../README.md");
    let script = section_script(readme, "## Five minutes with graven");
    assert!(
        script.contains("graven-verify inclusion"),
        "the walk-through verifies a proof"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&dir.path().join("data"), &dir.path().join("server.log"));
    // `graven` and `graven-verify` from this build, first on the PATH.
    let bins = verify_bin().parent().expect("binary folder").to_owned();
    assert!(Path::new(env!("CARGO_BIN_EXE_graven")).starts_with(&bins));
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("GRAVEN_SERVER", &server.url)
        .env("GRAVEN_LOG", "warn")
        .output()
        .expect("running sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README walk-through failed\nscript:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
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
