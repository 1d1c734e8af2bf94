//! Statements as the server takes them: the parser never panics on any text, and a
//! statement that parses runs (planned, evaluated, its writes applied) against a small
//! in-memory ledger without panicking, whatever its parameters. Input: the statement text,
//! then a 0x00 byte and the parameters, one JSON value per line.
#![no_main]

use std::cell::RefCell;

use graven::error::Result;
use graven::model::PathStep;
use graven::query::exec::{Data, Doc, run};
use graven::query::parser::parse;
use graven::storage::{ValueRange, encode_value, value_at};
use serde_json::{Value, json};

/// Two tables, `t` (indexed on `a` and `b.c`) and `u`, in memory.
struct Memory {
    docs: RefCell<Vec<(String, Doc)>>,
}

impl Memory {
    fn new() -> Memory {
        let doc = |i: u64, body: Value| Doc {
            id: format!("d{i}"),
            version: 0,
            index: Some(i),
            stored: graven::json::canonical(&body).ok(),
            body,
            metadata: None,
        };
        Memory {
            docs: RefCell::new(vec![
                ("t".into(), doc(0, json!({"a": 1, "b": {"c": "x"}, "l": [1, 2, {"z": null}]}))),
                ("t".into(), doc(1, json!({"a": "1", "b": [], "n": null}))),
                ("t".into(), doc(2, json!({"a": [1], "b": {"c": 2.5}}))),
                ("u".into(), doc(3, json!({"a": 1, "k": true}))),
            ]),
        }
    }

    fn each(&self, table: &str, each: &mut dyn FnMut(Doc) -> Result<bool>) -> Result<()> {
        let docs: Vec<Doc> = self
            .docs
            .borrow()
            .iter()
            .filter(|(t, _)| t == table)
            .map(|(_, d)| d.clone())
            .collect();
        for d in docs {
            if !each(d)? {
                break;
            }
        }
        Ok(())
    }
}

impl Data for Memory {
    fn table_exists(&self, table: &str) -> Result<bool> {
        Ok(table == "t" || table == "u")
    }
    fn indexes(&self, table: &str) -> Result<Vec<Vec<PathStep>>> {
        Ok(match table {
            "t" => vec![
                vec![PathStep::Field("a".into())],
                vec![PathStep::Field("b".into()), PathStep::Field("c".into())],
            ],
            _ => vec![],
        })
    }
    fn scan(&self, table: &str, each: &mut dyn FnMut(Doc) -> Result<bool>) -> Result<()> {
        self.each(table, each)
    }
    fn lookup(
        &self,
        table: &str,
        path: &[PathStep],
        range: &ValueRange,
        _bodies: bool,
        each: &mut dyn FnMut(Doc) -> Result<bool>,
    ) -> Result<()> {
        self.each(table, &mut |d| {
            let inside = value_at(&d.body, path)
                .and_then(encode_value)
                .is_some_and(|v| range.contains(&v));
            if inside { each(d) } else { Ok(true) }
        })
    }
    fn history(
        &self,
        table: &str,
        _id: Option<&str>,
        each: &mut dyn FnMut(Doc) -> Result<bool>,
    ) -> Result<()> {
        self.each(table, &mut |mut d| {
            d.metadata = Some(json!({"id": d.id, "version": 0, "txTime": "2026-01-01T00:00:00.000000Z"}));
            each(d)
        })
    }
    fn metadata(&self, _table: &str, doc: &Doc) -> Result<Value> {
        Ok(json!({"id": doc.id, "version": doc.version}))
    }
    fn insert(&self, table: &str, body: Value) -> Result<String> {
        let mut docs = self.docs.borrow_mut();
        let id = format!("n{}", docs.len());
        docs.push((
            table.into(),
            Doc {
                id: id.clone(),
                version: 0,
                index: None,
                body,
                stored: None,
                metadata: None,
            },
        ));
        Ok(id)
    }
    fn update(&self, table: &str, doc: &Doc, body: Value) -> Result<()> {
        for (t, d) in self.docs.borrow_mut().iter_mut() {
            if t == table && d.id == doc.id {
                d.body = body.clone();
            }
        }
        Ok(())
    }
    fn delete(&self, table: &str, doc: &Doc) -> Result<()> {
        self.docs
            .borrow_mut()
            .retain(|(t, d)| !(t == table && d.id == doc.id));
        Ok(())
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (text, params) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(parsed) = parse(text) else {
        return;
    };
    let mut values: Vec<Value> = params
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect();
    values.resize(parsed.parameters, Value::Null);
    let memory = Memory::new();
    for statement in &parsed.statements {
        let _ = run(statement, &values, &memory);
    }
});
