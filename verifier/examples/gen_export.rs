//! Writes a synthetic export file for benchmarking `graven-verify audit`.
//!
//! ```text
//! cargo run --release -p graven-verify --example gen_export -- REVISIONS OUT_FILE
//! ```
//!
//! Writes `OUT_FILE` (a full export of REVISIONS revisions: transactions of 1 to 4
//! revisions over 4 tables, about a third inserts, some deletes, bodies of 100 to 200
//! bytes of JSON, entries of format 2 with the state root on each transaction's last) and
//! `OUT_FILE.vkey`, the verifier key that signed its checkpoint.

use std::fs::File;
use std::io::BufWriter;

use graven_verify::checkpoint::Checkpoint;
use graven_verify::entry::{Entry, Operation, State};
use graven_verify::export::ExportWriter;
use graven_verify::hash::{Hash, leaf_hash};
use graven_verify::map::map_key;
use graven_verify::map_nodes::{Map, MemoryNodes};
use graven_verify::note::Signer;
use graven_verify::tree::CompactRange;
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .ok_or("usage: gen_export REVISIONS OUT_FILE")?
        .parse()?;
    let out = args.next().ok_or("usage: gen_export REVISIONS OUT_FILE")?;
    let origin = "bench.example/ledger";
    let signer = Signer::generate(origin)?;
    let tables = ["orders", "customers", "invoices", "shipments"];
    let mut w = ExportWriter::new(
        BufWriter::new(File::create(&out)?),
        origin,
        0,
        n,
        &CompactRange::new(),
    )?;
    let mut range = CompactRange::new();
    // The state map, for the root each transaction's last revision carries.
    let mut map = Map::new(MemoryNodes::default());
    // Live documents: (table, id number, version); a simple xorshift picks among them.
    let mut live: Vec<(usize, u64, u64)> = Vec::new();
    let mut created = 0u64;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut index, mut tx) = (0u64, 0u64);
    let mut clock = 1_795_320_859_058_645u64;
    while index < n {
        let size = (1 + rand() % 4).min(n - index) as u32;
        clock += 1 + rand() % 2000;
        let mut used: Vec<u64> = Vec::new();
        let mut revisions = Vec::new();
        for position in 0..size {
            let r = rand();
            let pick = (live.len() > 100 && r % 3 != 0)
                .then(|| (r >> 8) as usize % live.len())
                .filter(|&i| !used.contains(&live[i].1));
            let (table, id, version, op) = match pick {
                Some(i) if r % 17 == 0 => {
                    let (t, id, v) = live.swap_remove(i);
                    (t, id, v + 1, Operation::Delete)
                }
                Some(i) => {
                    live[i].2 += 1;
                    let (t, id, v) = live[i];
                    (t, id, v, Operation::Update)
                }
                None => {
                    created += 1;
                    let t = (r >> 20) as usize % tables.len();
                    live.push((t, created, 0));
                    (t, created, 0, Operation::Insert)
                }
            };
            used.push(id);
            let body = (op != Operation::Delete).then(|| {
                let pad = "x".repeat((r >> 32) as usize % 80);
                format!(
                    r#"{{"amount":{},"currency":"EUR","customer":"c-{}","id":"{}-{id}","note":"{pad}","status":"open","version":{version}}}"#,
                    r % 100_000,
                    r % 5000,
                    tables[table],
                )
                .into_bytes()
            });
            map.set(
                &map_key(tables[table], &format!("{}-{id}", tables[table])),
                (op != Operation::Delete).then_some(index),
            )?;
            let entry = Entry {
                operation: op,
                tx_id: tx,
                tx_position: position,
                tx_revisions: size,
                commit_time_micros: clock,
                version,
                table: tables[table].to_owned(),
                id: format!("{}-{id}", tables[table]),
                principal: "svc-billing".to_owned(),
                body_hash: body.as_deref().map(|b| Hash(Sha256::digest(b).into())),
                state: State::Pending,
            };
            revisions.push((entry, body));
            index += 1;
        }
        if let Some((last, _)) = revisions.last_mut() {
            last.state = State::Root(map.root()?);
        }
        for (entry, body) in revisions {
            let entry = entry.encode()?;
            range.append(leaf_hash(&entry));
            w.record(&entry, body.as_deref())?;
        }
        tx += 1;
    }
    let note = Checkpoint {
        origin: origin.to_owned(),
        size: n,
        root: range.root(),
    }
    .sign(&signer)?;
    w.finish(&note)?;
    std::fs::write(
        format!("{out}.vkey"),
        format!("{}\n", signer.verifier().to_vkey()),
    )?;
    eprintln!("wrote {n} revisions, {created} documents, to {out}");
    Ok(())
}
