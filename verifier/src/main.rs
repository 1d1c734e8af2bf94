//! `graven-verify`: the auditor's command line. Checks checkpoints, inclusion proofs,
//! consistency proofs, current-state proofs, journal exports and change streams offline
//! against public keys, and generates keys.
//!
//! Exit status: 0 verified, 1 not verified, 2 bad usage or unreadable/malformed input.
//! On success one line goes to stdout (for `stream`: the verified revision lines); on
//! failure one line to stderr. It never panics on input.

use std::fs;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use graven_verify::checkpoint::{CheckpointError, VerifiedCheckpoint, open_checkpoint};
use graven_verify::current::{CurrentAnswer, CurrentProof, Revision, verify_current};
use graven_verify::entry::Entry;
use graven_verify::export::{AuditError, AuditSummary, ExportReader, audit};
use graven_verify::hash::EMPTY_ROOT;
use graven_verify::note::{NoteError, Signer, Verifier, parse_verifier_list};
use graven_verify::proof::{
    ConsistencyProof, InclusionProof, VerifyError, verify_consistency, verify_inclusion,
};
use graven_verify::state::StateDir;
use graven_verify::stream::{MAX_LINE, StreamError, StreamVerifier};
use graven_verify::tree::check_consistency;
use lexopt::prelude::*;

const USAGE: &str = "\
graven-verify: check graven (and any C2SP) checkpoints and proofs offline

Usage:
  graven-verify checkpoint  --key VKEY_FILE [--json] CHECKPOINT_FILE
  graven-verify inclusion   --key VKEY_FILE --entry ENTRY_FILE [--json] PROOF_FILE
  graven-verify consistency --key VKEY_FILE (--old OLD_CHECKPOINT_FILE | --state DIR)
                            [--json] PROOF_FILE
  graven-verify current     --key VKEY_FILE [--entry ENTRY_FILE] [--state DIR] [--json]
                            PROOF_FILE
  graven-verify audit       --key VKEY_FILE [--json] EXPORT_FILE
  graven-verify stream      --key VKEY_FILE  < graven tail output
  graven-verify keygen [--out KEY_FILE] NAME

Commands:
  checkpoint   Check the signature of a signed checkpoint note.
  inclusion    Check that ENTRY_FILE (the raw entry bytes) is in the log, given a
               c2sp.org/tlog-proof@v1 proof that ends with a signed checkpoint.
  consistency  Check that the checkpoint in PROOF_FILE (a tlog-witness add-checkpoint
               body: `old N`, proof hashes, blank line, checkpoint) extends the old one.
               With --state DIR, the old checkpoint is the one DIR holds for the proof's
               origin (without one, the proof must be from size 0), and after success DIR
               keeps the new checkpoint instead (replaced atomically, never by a smaller
               one). With both --old and --state, --old is the old checkpoint; DIR is
               updated only if it held nothing for the origin or held that same
               checkpoint, and a different checkpoint of the same size in DIR is a fork.
  current      Check a current-state proof (graven.dev/current-proof@v1): that a
               document's live revision at the signed checkpoint is the one it names, or
               that the document has none, and print which. With --entry, verified only if
               ENTRY_FILE (the raw entry bytes) is that live revision. With --state DIR,
               not verified if DIR holds a newer checkpoint of the origin (the answer may
               be stale) or another checkpoint of the same size (a fork); DIR is only read.
  audit        Check a whole `graven export` file: every entry and body, the root against
               the signed checkpoint at its end, transactions, commit times, each
               document's versions, the order of entry formats, and, in a full export,
               every state root against the state recomputed from the entries. Memory:
               about 140 bytes per live document for the state (full exports), and a
               bounded amount for the rest, whatever the export's size.
  stream       Read `graven tail` JSON lines on stdin, check every entry, document and
               checkpoint, and write each revision line to stdout, unchanged, once a signed
               checkpoint covers it (flushed after each checkpoint). Revisions left
               uncovered at the end are dropped and counted on stderr. A stream from index
               0 has its state recomputed and every state root checked (about 140 bytes
               of memory per live document); from a later index, or after a skipped entry,
               roots are not checked, and stderr says so at the end.
  keygen       Write a new Ed25519 private key for key name NAME to KEY_FILE (default:
               NAME with unsafe characters replaced, plus .key; never overwritten) and
               print its verifier key.

Options:
  --key VKEY_FILE  Trusted verifier keys, one vkey per line (`#` starts a comment).
  --state DIR      Keep the newest verified checkpoint of each log in DIR (created if
                   missing; one file per origin, <hex of the origin>.checkpoint);
                   `current` only reads it.
  --json           Print the result as one JSON object.
  -h, --help       Print this help.
  -V, --version    Print the version.

A file argument of `-` reads standard input.

Exit status: 0 verified, 1 not verified (tampering, wrong key, failed proof),
2 bad usage or unreadable or malformed input.
";

/// The largest file read: checkpoints and proofs are a few kilobytes, entries small.
const MAX_INPUT: u64 = 64 << 20;

/// How a run ended, other than in success.
enum Failure {
    /// Exit 1: the input is well formed but does not verify.
    NotVerified(String),
    /// Exit 2: bad usage, unreadable or malformed input.
    Input(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::NotVerified(_) => 1,
            Failure::Input(_) => 2,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::NotVerified(m) | Failure::Input(m) => m,
        }
    }
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::Input(format!("{e} (see graven-verify --help)"))
    }
}

fn usage(msg: &str) -> Failure {
    Failure::Input(format!("{msg} (see graven-verify --help)"))
}

/// Reads a whole file, or standard input for `-`, up to [`MAX_INPUT`] bytes.
fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    let mut data = Vec::new();
    let result = if path == Path::new("-") {
        io::stdin().take(MAX_INPUT + 1).read_to_end(&mut data)
    } else {
        fs::File::open(path).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut data))
    };
    result.map_err(|e| Failure::Input(format!("cannot read {what} {}: {e}", path.display())))?;
    if data.len() as u64 > MAX_INPUT {
        return Err(Failure::Input(format!(
            "{what} {} is larger than {MAX_INPUT} bytes",
            path.display()
        )));
    }
    Ok(data)
}

fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    String::from_utf8(read_input(path, what)?)
        .map_err(|_| Failure::Input(format!("{what} {} is not UTF-8 text", path.display())))
}

fn read_keys(path: &Path) -> Result<Vec<Verifier>, Failure> {
    parse_verifier_list(&read_text(path, "key file")?)
        .map_err(|e| Failure::Input(format!("key file {}: {e}", path.display())))
}

/// Classifies a checkpoint failure: a bad or missing signature is "not verified"; text
/// that is not a signed checkpoint at all is malformed input.
fn checkpoint_failure(what: &str, e: CheckpointError) -> Failure {
    match e {
        CheckpointError::Note(NoteError::Unverified | NoteError::BadSignature(_)) => {
            Failure::NotVerified(format!("{what}: {e}"))
        }
        _ => Failure::Input(format!("{what}: {e}")),
    }
}

fn verify_failure(e: VerifyError) -> Failure {
    match e {
        VerifyError::Checkpoint(c) => checkpoint_failure("checkpoint", c),
        other => Failure::NotVerified(other.to_string()),
    }
}

/// The arguments shared by the checking commands.
#[derive(Default)]
struct CheckArgs {
    key: Option<PathBuf>,
    entry: Option<PathBuf>,
    old: Option<PathBuf>,
    state: Option<PathBuf>,
    json: bool,
    file: Option<PathBuf>,
}

/// Parses a checking command's arguments: `--key`, `--json`, the file, and the options
/// `allowed` names; those `required` names must be given (`old` means --old or --state).
fn parse_check_args(
    parser: &mut lexopt::Parser,
    allowed: &[&str],
    required: &[&str],
) -> Result<CheckArgs, Failure> {
    let mut args = CheckArgs::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("key") => args.key = Some(parser.value()?.into()),
            Long("entry") if allowed.contains(&"entry") => {
                args.entry = Some(parser.value()?.into())
            }
            Long("old") if allowed.contains(&"old") => args.old = Some(parser.value()?.into()),
            Long("state") if allowed.contains(&"state") => {
                args.state = Some(parser.value()?.into())
            }
            Long("json") => args.json = true,
            Short('h') | Long("help") => return Err(Failure::Input(String::new())),
            Value(v) if args.file.is_none() => args.file = Some(v.into()),
            other => return Err(other.unexpected().into()),
        }
    }
    if args.key.is_none() {
        return Err(usage("missing --key VKEY_FILE"));
    }
    for w in required {
        let missing = match *w {
            "entry" => args.entry.is_none(),
            "old" => args.old.is_none() && args.state.is_none(),
            _ => false,
        };
        if missing {
            return Err(usage(&if *w == "old" {
                "missing --old or --state".to_owned()
            } else {
                format!("missing --{w}")
            }));
        }
    }
    if args.file.is_none() {
        return Err(usage("missing the file to check"));
    }
    Ok(args)
}

/// The last fields of a JSON success report, and its closing brace: the checkpoint's
/// size and root and the keys that signed it.
fn json_head_end(head: &VerifiedCheckpoint) -> String {
    let text = |v: &str| serde_json::Value::from(v).to_string();
    let signed_by: Vec<String> = head.verified_by.iter().map(|n| text(n)).collect();
    format!(
        ",\"size\":{},\"root\":{},\"signed_by\":[{}]}}",
        head.checkpoint.size,
        text(&head.checkpoint.root.to_hex()),
        signed_by.join(",")
    )
}

/// Fields of a success report, in output order.
struct Report {
    kind: &'static str,
    index: Option<u64>,
    old_size: Option<u64>,
    head: VerifiedCheckpoint,
}

impl Report {
    fn line(&self, json: bool) -> String {
        let c = &self.head.checkpoint;
        if json {
            // Written field by field, so the order is the same however the crate is built.
            let text = |v: &str| serde_json::Value::from(v).to_string();
            let mut out = format!(
                "{{\"verified\":{},\"origin\":{}",
                text(self.kind),
                text(&c.origin)
            );
            if let Some(i) = self.index {
                out.push_str(&format!(",\"index\":{i}"));
            }
            if let Some(old) = self.old_size {
                out.push_str(&format!(",\"old_size\":{old}"));
            }
            out.push_str(&json_head_end(&self.head));
            out
        } else {
            let mut line = format!("verified {}: origin {}", self.kind, c.origin);
            if let Some(i) = self.index {
                line.push_str(&format!(" index {i}"));
            }
            if let Some(old) = self.old_size {
                line.push_str(&format!(" old size {old}"));
            }
            line.push_str(&format!(" size {} root {}", c.size, c.root.to_hex()));
            line
        }
    }
}

fn cmd_checkpoint(parser: &mut lexopt::Parser) -> Result<String, Failure> {
    let args = parse_check_args(parser, &[], &[])?;
    let keys = read_keys(args.key.as_deref().unwrap_or(Path::new("")))?;
    let file = args.file.unwrap_or_default();
    let note = read_input(&file, "checkpoint")?;
    let head = open_checkpoint(&note, &keys).map_err(|e| checkpoint_failure("checkpoint", e))?;
    Ok(Report {
        kind: "checkpoint",
        index: None,
        old_size: None,
        head,
    }
    .line(args.json))
}

fn cmd_inclusion(parser: &mut lexopt::Parser) -> Result<String, Failure> {
    let args = parse_check_args(parser, &["entry"], &["entry"])?;
    let keys = read_keys(args.key.as_deref().unwrap_or(Path::new("")))?;
    let entry = read_input(args.entry.as_deref().unwrap_or(Path::new("")), "entry")?;
    let file = args.file.unwrap_or_default();
    let proof = InclusionProof::parse(&read_text(&file, "proof")?)
        .map_err(|e| Failure::Input(format!("proof {}: {e}", file.display())))?;
    let head = verify_inclusion(&proof, &entry, &keys).map_err(verify_failure)?;
    Ok(Report {
        kind: "inclusion",
        index: Some(proof.index),
        old_size: None,
        head,
    }
    .line(args.json))
}

fn cmd_consistency(parser: &mut lexopt::Parser) -> Result<String, Failure> {
    let args = parse_check_args(parser, &["old", "state"], &["old"])?;
    let keys = read_keys(args.key.as_deref().unwrap_or(Path::new("")))?;
    let file = args.file.unwrap_or_default();
    let proof = ConsistencyProof::parse(&read_text(&file, "proof")?)
        .map_err(|e| Failure::Input(format!("proof {}: {e}", file.display())))?;
    let old = match &args.old {
        Some(path) => Some(read_input(path, "old checkpoint")?),
        None => None,
    };
    let (head, state_note) = match &args.state {
        None => {
            let old = old.unwrap_or_default();
            // Open the old checkpoint first on its own, so its failures name it.
            open_checkpoint(&old, &keys).map_err(|e| checkpoint_failure("old checkpoint", e))?;
            let (_, head) = verify_consistency(&proof, &old, &keys).map_err(verify_failure)?;
            (head, None)
        }
        Some(dir) => consistency_with_state(&proof, old.as_deref(), &keys, &StateDir::new(dir))?,
    };
    if let Some(note) = state_note {
        eprintln!("graven-verify: {note}");
    }
    Ok(Report {
        kind: "consistency",
        index: None,
        old_size: Some(proof.old_size),
        head,
    }
    .line(args.json))
}

/// `consistency --state DIR`: verifies from `--old` or from the checkpoint DIR holds for
/// the proof's origin, then advances DIR. Returns the new checkpoint, and a note for stderr
/// when DIR was deliberately left as it was.
fn consistency_with_state(
    proof: &ConsistencyProof,
    old: Option<&[u8]>,
    keys: &[Verifier],
    state: &StateDir,
) -> Result<(VerifiedCheckpoint, Option<String>), Failure> {
    let new = open_checkpoint(proof.checkpoint.as_bytes(), keys)
        .map_err(|e| checkpoint_failure("checkpoint", e))?;
    let origin = new.checkpoint.origin.clone();
    let path = state.path(&origin);
    let stored_note = state
        .load(&origin)
        .map_err(|e| Failure::Input(format!("cannot read state file {}: {e}", path.display())))?;
    let stored = match &stored_note {
        Some(note) => {
            let s = open_checkpoint(note, keys)
                .map_err(|e| checkpoint_failure(&format!("state file {}", path.display()), e))?;
            if s.checkpoint.origin != origin {
                return Err(Failure::Input(format!(
                    "state file {} holds a checkpoint of origin {:?}, not {origin:?}",
                    path.display(),
                    s.checkpoint.origin
                )));
            }
            Some(s.checkpoint)
        }
        None => None,
    };
    // Whether the verified chain starts at the stored checkpoint (or there is none).
    let connected = match (old, &stored_note) {
        (Some(old), _) => {
            let o =
                open_checkpoint(old, keys).map_err(|e| checkpoint_failure("old checkpoint", e))?;
            verify_consistency(proof, old, keys).map_err(verify_failure)?;
            match &stored {
                None => true,
                Some(s) if s.size == o.checkpoint.size => {
                    if s.root != o.checkpoint.root {
                        return Err(Failure::NotVerified(format!(
                            "fork: the old checkpoint and the one in {} both have size {} but different roots",
                            path.display(),
                            s.size
                        )));
                    }
                    true
                }
                Some(_) => false,
            }
        }
        (None, Some(note)) => {
            verify_consistency(proof, note, keys).map_err(verify_failure)?;
            true
        }
        (None, None) => {
            if proof.old_size != 0 {
                return Err(Failure::Input(format!(
                    "no checkpoint of origin {origin} in the state directory: the proof must be from size 0, or give --old"
                )));
            }
            let c = &new.checkpoint;
            check_consistency(&proof.hashes, 0, c.size, &EMPTY_ROOT, &c.root)
                .map_err(|e| Failure::NotVerified(e.to_string()))?;
            true
        }
    };
    let c = &new.checkpoint;
    if let Some(s) = &stored
        && s.size == c.size
        && s.root != c.root
    {
        return Err(Failure::NotVerified(format!(
            "fork: the checkpoint in {} has size {} like the new one but a different root",
            path.display(),
            s.size
        )));
    }
    let note = match &stored {
        Some(s) if s.size > c.size => Some(format!(
            "state not updated: {} holds a newer checkpoint (size {})",
            path.display(),
            s.size
        )),
        Some(s) if !connected => Some(format!(
            "state not updated: the old checkpoint is not the one in {} (size {})",
            path.display(),
            s.size
        )),
        _ => {
            state.store(&origin, &proof.checkpoint).map_err(|e| {
                Failure::Input(format!("cannot write state file {}: {e}", path.display()))
            })?;
            None
        }
    };
    Ok((new, note))
}

/// The line `current` prints for a verified answer.
fn current_line(a: &CurrentAnswer, json: bool) -> String {
    let c = &a.head.checkpoint;
    let text = |v: &str| serde_json::Value::from(v).to_string();
    if json {
        let mut out = format!(
            "{{\"verified\":{},\"origin\":{},\"table\":{},\"id\":{}",
            text(if a.current.is_some() {
                "current"
            } else {
                "absent"
            }),
            text(&c.origin),
            text(&a.table),
            text(&a.id)
        );
        if let Some(Revision { index, entry, .. }) = &a.current {
            out.push_str(&format!(
                ",\"index\":{index},\"version\":{},\"operation\":{},\"tx\":{},\"commit_micros\":{},\"principal\":{},\"body_hash\":{}",
                entry.version,
                text(entry.operation.as_str()),
                entry.tx_id,
                entry.commit_time_micros,
                text(&entry.principal),
                entry
                    .body_hash
                    .map_or_else(|| "null".to_owned(), |h| text(&h.to_hex()))
            ));
        }
        out.push_str(&json_head_end(&a.head));
        out
    } else {
        let what = match &a.current {
            Some(Revision { index, entry, .. }) => format!(
                "verified current: table {:?} id {:?} version {} at index {index}",
                a.table, a.id, entry.version
            ),
            None => format!("verified absent: table {:?} id {:?}", a.table, a.id),
        };
        format!(
            "{what}, checkpoint origin {} size {} root {}",
            c.origin,
            c.size,
            c.root.to_hex()
        )
    }
}

fn cmd_current(parser: &mut lexopt::Parser) -> Result<String, Failure> {
    let args = parse_check_args(parser, &["entry", "state"], &[])?;
    let keys = read_keys(args.key.as_deref().unwrap_or(Path::new("")))?;
    let wanted = match &args.entry {
        Some(path) => Some(read_input(path, "entry")?),
        None => None,
    };
    let file = args.file.unwrap_or_default();
    let proof = CurrentProof::parse(&read_text(&file, "proof")?)
        .map_err(|e| Failure::Input(format!("proof {}: {e}", file.display())))?;
    let answer = verify_current(&proof, &keys).map_err(verify_failure)?;
    let c = &answer.head.checkpoint;
    if let Some(wanted) = &wanted {
        let doc = format!("table {:?} id {:?}", answer.table, answer.id);
        let given = match Entry::decode(wanted) {
            Ok(e) if e.table == answer.table && e.id == answer.id => {
                format!("version {} of {doc}", e.version)
            }
            Ok(e) => format!("an entry of table {:?} id {:?}", e.table, e.id),
            Err(_) => "not an entry".to_owned(),
        };
        match &answer.current {
            Some(r) if r.bytes == *wanted => {}
            Some(Revision { index, entry, .. }) => {
                return Err(Failure::NotVerified(format!(
                    "the entry is {given}, not the current revision: that is version {} at index {index} (checkpoint size {})",
                    entry.version, c.size
                )));
            }
            None => {
                return Err(Failure::NotVerified(format!(
                    "the entry is {given}, but the proof shows {doc} absent at checkpoint size {}",
                    c.size
                )));
            }
        }
    }
    if let Some(dir) = &args.state
        && let Some(note) = current_against_state(&answer.head, &keys, dir)?
    {
        eprintln!("graven-verify: {note}");
    }
    Ok(current_line(&answer, args.json))
}

/// `current --state DIR`: compares the proof's checkpoint with the one DIR holds for its
/// origin, without changing DIR. Fails on a newer stored checkpoint (the answer may be
/// stale) or another one of the same size (a fork); returns a note for stderr when the
/// comparison says nothing.
fn current_against_state(
    head: &VerifiedCheckpoint,
    keys: &[Verifier],
    dir: &Path,
) -> Result<Option<String>, Failure> {
    let state = StateDir::new(dir);
    let c = &head.checkpoint;
    let path = state.path(&c.origin);
    let Some(note) = state
        .load(&c.origin)
        .map_err(|e| Failure::Input(format!("cannot read state file {}: {e}", path.display())))?
    else {
        return Ok(Some(format!(
            "{} holds no checkpoint of origin {}: nothing to compare the proof's with",
            dir.display(),
            c.origin
        )));
    };
    let stored = open_checkpoint(&note, keys)
        .map_err(|e| checkpoint_failure(&format!("state file {}", path.display()), e))?
        .checkpoint;
    if stored.origin != c.origin {
        return Err(Failure::Input(format!(
            "state file {} holds a checkpoint of origin {:?}, not {:?}",
            path.display(),
            stored.origin,
            c.origin
        )));
    }
    if stored.size > c.size {
        return Err(Failure::NotVerified(format!(
            "stale: {} holds a checkpoint of size {}, newer than the proof's size {}; the answer may no longer be current",
            path.display(),
            stored.size,
            c.size
        )));
    }
    if stored.size == c.size && stored.root != c.root {
        return Err(Failure::NotVerified(format!(
            "fork: the checkpoint in {} has size {} like the proof's but a different root",
            path.display(),
            stored.size
        )));
    }
    Ok((stored.size < c.size).then(|| {
        format!(
            "{} holds an older checkpoint (size {}); without a consistency proof from it, the proof's checkpoint is not known to extend it",
            path.display(),
            stored.size
        )
    }))
}

/// Prints `\r` progress on stderr when it is a terminal; quiet otherwise.
struct Progress {
    on: bool,
    start: std::time::Instant,
    last: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        let now = std::time::Instant::now();
        Progress {
            on: io::stderr().is_terminal(),
            start: now,
            last: now,
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        if !self.on {
            return;
        }
        let now = std::time::Instant::now();
        if now.duration_since(self.last).as_millis() < 200 && done < total {
            return;
        }
        self.last = now;
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let pct = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        eprint!(
            "\raudit: {done}/{total} entries ({pct:.1}%), {:.0} entries/s   ",
            done as f64 / secs
        );
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r{:78}\r", "");
        }
    }
}

fn summary_line(s: &AuditSummary, json: bool) -> String {
    let entries = s.to - s.from;
    let root = s.root.to_hex();
    if json {
        let text = |v: &str| serde_json::Value::from(v).to_string();
        let signed_by: Vec<String> = s.signed_by.iter().map(|n| text(n)).collect();
        format!(
            "{{\"verified\":\"export\",\"origin\":{},\"from\":{},\"to\":{},\"entries\":{entries},\"documents\":{},\"tables\":{},\"state_roots\":{},\"state_roots_unchecked\":{},\"bytes\":{},\"root\":{},\"signed_by\":[{}]}}",
            text(&s.origin),
            s.from,
            s.to,
            s.documents,
            s.tables,
            s.state_roots,
            s.state_roots_unchecked,
            s.bytes,
            text(&root),
            signed_by.join(",")
        )
    } else {
        let unchecked = if s.state_roots_unchecked > 0 {
            format!(
                " ({} not checked: the state before index {} is not in the export)",
                s.state_roots_unchecked, s.from
            )
        } else {
            String::new()
        };
        format!(
            "verified export: origin {} entries {entries} (indexes {} to {}) documents {} tables {} state roots {}{unchecked} size {} bytes root {root}",
            s.origin, s.from, s.to, s.documents, s.tables, s.state_roots, s.bytes
        )
    }
}

fn cmd_audit(parser: &mut lexopt::Parser) -> Result<String, Failure> {
    let args = parse_check_args(parser, &[], &[])?;
    let keys = read_keys(args.key.as_deref().unwrap_or(Path::new("")))?;
    let file = args.file.unwrap_or_default();
    let input: Box<dyn Read> =
        if file == Path::new("-") {
            Box::new(io::stdin().lock())
        } else {
            Box::new(fs::File::open(&file).map_err(|e| {
                Failure::Input(format!("cannot read export {}: {e}", file.display()))
            })?)
        };
    let reader =
        ExportReader::new(input).map_err(|e| Failure::Input(format!("malformed export: {e}")))?;
    let mut progress = Progress::new();
    let result = audit(reader, &keys, &mut |done, total| {
        progress.update(done, total)
    });
    progress.clear();
    let summary = result.map_err(|e| match e {
        AuditError::Failed(m) => Failure::NotVerified(m),
        AuditError::Checkpoint(c) => checkpoint_failure("trailer checkpoint", c),
        other => Failure::Input(other.to_string()),
    })?;
    Ok(summary_line(&summary, args.json))
}

fn cmd_stream(parser: &mut lexopt::Parser) -> Result<Option<String>, Failure> {
    let mut key: Option<PathBuf> = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("key") => key = Some(parser.value()?.into()),
            Short('h') | Long("help") => return Err(Failure::Input(String::new())),
            other => return Err(other.unexpected().into()),
        }
    }
    let key = key.ok_or_else(|| usage("missing --key VKEY_FILE"))?;
    let mut verifier = StreamVerifier::new(read_keys(&key)?);
    let mut input = io::stdin().lock();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Failure::Input(format!("cannot read standard input: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > MAX_LINE {
            return Err(Failure::Input(format!(
                "line {line_no}: longer than {MAX_LINE} bytes"
            )));
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|_| Failure::Input(format!("line {line_no}: not UTF-8")))?;
        let verified = verifier.push_line(line).map_err(|e| match e {
            StreamError::Malformed(m) => Failure::Input(m),
            StreamError::Failed(m) => Failure::NotVerified(m),
        })?;
        if verified.is_empty() {
            continue;
        }
        let written = verified
            .iter()
            .try_for_each(|l| {
                out.write_all(l.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
            })
            .and_then(|()| out.flush());
        match written {
            Ok(()) => {}
            // The consumer went away: nothing more to deliver.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(None),
            Err(e) => return Err(Failure::Input(format!("cannot write standard output: {e}"))),
        }
    }
    if let Some(note) = verifier.state_unchecked() {
        eprintln!("graven-verify: {note}");
    }
    if verifier.pending() > 0 {
        eprintln!(
            "graven-verify: {} revisions after the last checkpoint (size {}) were not covered by one and were not written",
            verifier.pending(),
            verifier
                .verified_size()
                .map_or_else(|| "none".to_owned(), |s| s.to_string())
        );
    }
    Ok(None)
}

/// A file name for a key name: letters, digits, `-` and `.` kept, the rest `_`.
fn default_key_file(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(format!("{safe}.key"))
}

/// Creates `path` for writing, refusing to overwrite, readable by the owner only.
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn cmd_keygen(parser: &mut lexopt::Parser) -> Result<String, Failure> {
    let mut out: Option<PathBuf> = None;
    let mut name: Option<String> = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("out") | Short('o') => out = Some(parser.value()?.into()),
            Short('h') | Long("help") => return Err(Failure::Input(String::new())),
            Value(v) if name.is_none() => {
                name = Some(v.into_string().map_err(|_| usage("NAME must be UTF-8"))?)
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let name = name.ok_or_else(|| usage("missing NAME"))?;
    let signer =
        Signer::generate(&name).map_err(|e| Failure::Input(format!("key name {name:?}: {e}")))?;
    let path = out.unwrap_or_else(|| default_key_file(&name));
    let mut file = create_private_file(&path)
        .map_err(|e| Failure::Input(format!("cannot create key file {}: {e}", path.display())))?;
    file.write_all(format!("{}\n", signer.to_private_key()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::Input(format!("cannot write key file {}: {e}", path.display())))?;
    eprintln!("graven-verify: wrote private key to {}", path.display());
    Ok(signer.verifier().to_vkey())
}

fn run() -> Result<Option<String>, Failure> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next()? {
        Some(Value(cmd)) => cmd.into_string().unwrap_or_default(),
        Some(Short('h') | Long("help")) => return Ok(Some(USAGE.trim_end().to_owned())),
        Some(Short('V') | Long("version")) => {
            return Ok(Some(format!("graven-verify {}", env!("CARGO_PKG_VERSION"))));
        }
        Some(other) => return Err(other.unexpected().into()),
        None => return Err(usage("missing command")),
    };
    let result = match command.as_str() {
        "checkpoint" => cmd_checkpoint(&mut parser).map(Some),
        "inclusion" => cmd_inclusion(&mut parser).map(Some),
        "consistency" => cmd_consistency(&mut parser).map(Some),
        "current" => cmd_current(&mut parser).map(Some),
        "audit" => cmd_audit(&mut parser).map(Some),
        "stream" => cmd_stream(&mut parser),
        "keygen" => cmd_keygen(&mut parser).map(Some),
        "help" => return Ok(Some(USAGE.trim_end().to_owned())),
        other => return Err(usage(&format!("unknown command {other:?}"))),
    };
    match result {
        // `--help` after a command: the empty input failure is the signal.
        Err(Failure::Input(m)) if m.is_empty() => Ok(Some(USAGE.trim_end().to_owned())),
        other => other,
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(out) => {
            if let Some(line) = out {
                // A closed stdout (`| head`) is not a verification failure.
                let _ = writeln!(io::stdout(), "{line}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("graven-verify: {}", failure.message());
            ExitCode::from(failure.code())
        }
    }
}
