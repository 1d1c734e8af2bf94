//! Statements (docs/QUERY.md) through ExecuteStatement: AWS's QLDB getting-started
//! tutorial (vehicle registration) as written for QLDB, indexes built in the background,
//! EXPLAIN, pages, limits, and serializable transactions under concurrent clients.

use graven::engine::Config;
use graven::pb;
use serde_json::{Value, json};
use tonic::Code;

use crate::util::*;

/// Runs one statement text with JSON parameters; the rows as JSON values.
pub async fn query(
    s: &mut TestServer,
    ledger: &str,
    text: &str,
    params: &[Value],
) -> Result<Vec<Value>, tonic::Status> {
    execute(s, ledger, text, params).await.map(|r| rows(&r))
}

/// Runs one statement text; the whole response.
pub async fn execute(
    s: &mut TestServer,
    ledger: &str,
    text: &str,
    params: &[Value],
) -> Result<pb::ExecuteStatementResponse, tonic::Status> {
    s.docs
        .execute_statement(request(ledger, text, params))
        .await
        .map(|r| r.into_inner())
}

pub fn request(ledger: &str, text: &str, params: &[Value]) -> pb::ExecuteStatementRequest {
    pb::ExecuteStatementRequest {
        ledger: ledger.into(),
        statements: vec![pb::StatementText {
            text: text.into(),
            parameters: params.iter().map(Value::to_string).collect(),
        }],
        ..Default::default()
    }
}

pub fn rows(r: &pb::ExecuteStatementResponse) -> Vec<Value> {
    r.rows
        .iter()
        .map(|row| serde_json::from_str(&row.json).expect("rows are JSON"))
        .collect()
}

/// Waits until every index of `table` is online.
pub async fn wait_online(s: &mut TestServer, ledger: &str, table: &str) {
    for _ in 0..6000 {
        let tables = s
            .admin
            .list_tables(pb::ListTablesRequest {
                ledger: ledger.into(),
            })
            .await
            .expect("list tables")
            .into_inner()
            .tables;
        let t = tables.iter().find(|t| t.name == table).expect("table");
        if t.indexes.iter().all(|i| i.state == "online") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the indexes of {table} did not come online within 60 s");
}

fn id_of(rows: &[Value]) -> String {
    match rows {
        [row] => row["documentId"].as_str().expect("documentId").to_owned(),
        other => panic!("expected one row, got {other:?}"),
    }
}

/// The QLDB developer guide's getting-started sample (tables Vehicle,
/// VehicleRegistration, Person, DriversLicense), its statements as the guide writes them,
/// checked against the results the guide shows.
#[tokio::test]
async fn the_qldb_vehicle_registration_tutorial_runs_as_written() {
    let mut s = start().await;
    s.ledger("vehicle-registration", &[]).await;
    let l = "vehicle-registration";
    for t in ["VehicleRegistration", "Vehicle", "Person", "DriversLicense"] {
        query(&mut s, l, &format!("CREATE TABLE {t}"), &[])
            .await
            .expect("create table");
    }
    for (t, path) in [
        ("Person", "GovId"),
        ("Vehicle", "VIN"),
        ("VehicleRegistration", "VIN"),
        ("VehicleRegistration", "LicensePlateNumber"),
        ("DriversLicense", "PersonId"),
        ("DriversLicense", "LicenseNumber"),
    ] {
        query(&mut s, l, &format!("CREATE INDEX ON {t} ({path})"), &[])
            .await
            .expect("create index");
    }

    // The sample data, inserted with parameters as the sample application does.
    let people = [
        json!({"FirstName": "Raul", "LastName": "Lewis", "DOB": "1963-08-19",
               "GovId": "LEWISR261LL", "GovIdType": "Driver License",
               "Address": "1719 University Street, Seattle, WA, 98109"}),
        json!({"FirstName": "Brent", "LastName": "Logan", "DOB": "1967-07-03",
               "GovId": "LOGANB486CG", "GovIdType": "Driver License",
               "Address": "43 Stockert Hollow Road, Everett, WA, 98203"}),
        json!({"FirstName": "Alexis", "LastName": "Pena", "DOB": "1974-02-10",
               "GovId": "744 849 301", "GovIdType": "SSN",
               "Address": "4058 Melrose Street, Spokane Valley, WA, 99206"}),
        json!({"FirstName": "Melvin", "LastName": "Parker", "DOB": "1976-05-22",
               "GovId": "P626-168-229-765", "GovIdType": "Passport",
               "Address": "4362 Ryder Avenue, Seattle, WA, 98101"}),
        json!({"FirstName": "Salvatore", "LastName": "Spencer", "DOB": "1997-11-15",
               "GovId": "S152-780-97-415-0", "GovIdType": "Passport",
               "Address": "4450 Honeysuckle Lane, Seattle, WA, 98101"}),
    ];
    let mut person_ids = Vec::new();
    for p in &people {
        let r = query(&mut s, l, "INSERT INTO Person ?", std::slice::from_ref(p))
            .await
            .expect("insert");
        person_ids.push(id_of(&r));
    }
    let licenses = [
        ("LEWISR261LL", "Learner", "2016-12-20", "2020-11-15"),
        ("LOGANB486CG", "Probationary", "2016-04-06", "2020-11-15"),
        ("744 849 301", "Full", "2017-12-06", "2022-10-15"),
        ("P626-168-229-765", "Learner", "2017-08-16", "2021-11-15"),
        (
            "S152-780-97-415-0",
            "Probationary",
            "2015-08-15",
            "2021-08-21",
        ),
    ];
    for ((number, kind, from, to), person) in licenses.iter().zip(&person_ids) {
        let doc = json!({"LicenseNumber": number, "LicenseType": kind, "ValidFromDate": from,
                         "ValidToDate": to, "PersonId": person});
        query(&mut s, l, "INSERT INTO DriversLicense ?", &[doc])
            .await
            .expect("insert");
    }
    let registrations = [
        (
            "1N4AL11D75C109151",
            "LEWISR261LL",
            "Seattle",
            90.25,
            "2017-08-21",
            "2020-05-11",
        ),
        (
            "KM8SRDHF6EU074761",
            "CA762X",
            "Kent",
            130.75,
            "2017-09-14",
            "2020-06-25",
        ),
        (
            "3HGGK5G53FM761765",
            "CD820Z",
            "Everett",
            442.30,
            "2011-03-17",
            "2021-03-24",
        ),
        (
            "1HVBBAANXWH544237",
            "LS477D",
            "Tacoma",
            42.20,
            "2011-10-26",
            "2023-09-25",
        ),
        (
            "1C4RJFAG0FC625797",
            "TH393F",
            "Olympia",
            30.45,
            "2013-09-02",
            "2024-03-19",
        ),
    ];
    // The sample inserts them all in one statement: a bag of structs.
    let bag: Vec<Value> = registrations
        .iter()
        .zip(&person_ids)
        .map(|((vin, plate, city, fine, from, to), person)| {
            json!({"VIN": vin, "LicensePlateNumber": plate, "State": "WA", "City": city,
                   "PendingPenaltyTicketAmount": fine, "ValidFromDate": from,
                   "ValidToDate": to,
                   "Owners": {"PrimaryOwner": {"PersonId": person}, "SecondaryOwners": []}})
        })
        .collect();
    let inserted = query(
        &mut s,
        l,
        "INSERT INTO VehicleRegistration ?",
        &[Value::Array(bag)],
    )
    .await
    .expect("insert bag");
    assert_eq!(inserted.len(), 5, "one documentId per document");
    let vehicles = [
        ("1N4AL11D75C109151", "Sedan", 2011, "Audi", "A5", "Silver"),
        (
            "KM8SRDHF6EU074761",
            "Sedan",
            2015,
            "Tesla",
            "Model S",
            "Blue",
        ),
        (
            "3HGGK5G53FM761765",
            "Motorcycle",
            2011,
            "Ducati",
            "Monster 1200",
            "Yellow",
        ),
        ("1HVBBAANXWH544237", "Semi", 2009, "Ford", "F 150", "Black"),
        (
            "1C4RJFAG0FC625797",
            "Sedan",
            2019,
            "Mercedes",
            "CLK 350",
            "White",
        ),
    ];
    for (vin, kind, year, make, model, color) in vehicles {
        query(
            &mut s,
            l,
            &format!(
                "INSERT INTO Vehicle VALUE {{'VIN': '{vin}', 'Type': '{kind}', 'Year': {year}, \
                 'Make': '{make}', 'Model': '{model}', 'Color': '{color}'}}"
            ),
            &[],
        )
        .await
        .expect("insert vehicle");
    }
    for t in ["Person", "Vehicle", "VehicleRegistration", "DriversLicense"] {
        wait_online(&mut s, l, t).await;
    }

    // "Query the tables": a lookup by an indexed field.
    let found = query(
        &mut s,
        l,
        "SELECT * FROM Vehicle AS v WHERE v.VIN = '1N4AL11D75C109151'",
        &[],
    )
    .await
    .expect("select");
    assert_eq!(
        found,
        vec![
            json!({"VIN": "1N4AL11D75C109151", "Type": "Sedan", "Year": 2011,
                    "Make": "Audi", "Model": "A5", "Color": "Silver"})
        ]
    );
    let plan = query(
        &mut s,
        l,
        "EXPLAIN SELECT * FROM Vehicle AS v WHERE v.VIN = '1N4AL11D75C109151'",
        &[],
    )
    .await
    .expect("explain");
    assert_eq!(plan[0]["access"], "index equality");
    assert_eq!(plan[0]["index"], "VIN");

    // The vehicles a person owns: a join on the indexed VIN.
    let owned = query(
        &mut s,
        l,
        "SELECT Vehicle FROM Vehicle INNER JOIN VehicleRegistration AS r \
         ON Vehicle.VIN = r.VIN WHERE r.Owners.PrimaryOwner.PersonId = ?",
        &[json!(person_ids[0])],
    )
    .await
    .expect("join");
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0]["Vehicle"]["Make"], "Audi");
    let joined = query(
        &mut s,
        l,
        "SELECT v.VIN, r.City FROM VehicleRegistration AS r INNER JOIN Vehicle AS v \
         ON v.VIN = r.VIN WHERE r.City = 'Kent'",
        &[],
    )
    .await
    .expect("join");
    assert_eq!(
        joined,
        vec![json!({"VIN": "KM8SRDHF6EU074761", "City": "Kent"})]
    );
    let plan = query(
        &mut s,
        l,
        "EXPLAIN SELECT v.VIN FROM VehicleRegistration AS r INNER JOIN Vehicle AS v \
         ON v.VIN = r.VIN WHERE r.City = 'Kent'",
        &[],
    )
    .await
    .expect("explain join");
    assert_eq!(plan[0]["access"], "scan", "City has no index");
    assert_eq!(plan[1]["access"], "index equality", "the join looks VIN up");

    // "Modify documents": renew a driver's license, add a secondary owner, transfer the
    // primary owner (the statements of the sample application).
    let renewed = query(
        &mut s,
        l,
        "UPDATE DriversLicense AS d SET d.ValidFromDate = ?, d.ValidToDate = ? \
         WHERE d.PersonId = ?",
        &[
            json!("2019-01-01"),
            json!("2023-01-01"),
            json!(person_ids[0]),
        ],
    )
    .await
    .expect("renew");
    assert_eq!(renewed.len(), 1);
    let reg_id = query(
        &mut s,
        l,
        "SELECT r_id FROM VehicleRegistration AS r BY r_id WHERE r.VIN = ?",
        &[json!("1N4AL11D75C109151")],
    )
    .await
    .expect("by id");
    let reg_id = reg_id[0]["r_id"].as_str().expect("r_id").to_owned();
    query(
        &mut s,
        l,
        "FROM VehicleRegistration AS r WHERE r.VIN = ? \
         INSERT INTO r.Owners.SecondaryOwners VALUE { 'PersonId' : ? }",
        &[json!("1N4AL11D75C109151"), json!(person_ids[1])],
    )
    .await
    .expect("add secondary owner");
    query(
        &mut s,
        l,
        "UPDATE VehicleRegistration AS r SET r.Owners.PrimaryOwner.PersonId = ? \
         WHERE r.VIN = ?",
        &[json!(person_ids[2]), json!("1N4AL11D75C109151")],
    )
    .await
    .expect("transfer");
    let now = query(
        &mut s,
        l,
        "SELECT r.Owners FROM VehicleRegistration AS r WHERE r.VIN = '1N4AL11D75C109151'",
        &[],
    )
    .await
    .expect("owners");
    assert_eq!(
        now,
        vec![
            json!({"Owners": {"PrimaryOwner": {"PersonId": person_ids[2]},
                               "SecondaryOwners": [{"PersonId": person_ids[1]}]}})
        ]
    );

    // "View the revision history": every revision of the registration, with metadata.
    let history = query(
        &mut s,
        l,
        "SELECT h.data.Owners.PrimaryOwner.PersonId AS owner, h.metadata.version AS v \
         FROM history(VehicleRegistration) AS h WHERE h.metadata.id = ?",
        &[json!(reg_id)],
    )
    .await
    .expect("history");
    assert_eq!(
        history,
        vec![
            json!({"owner": person_ids[0], "v": 0}),
            json!({"owner": person_ids[0], "v": 1}),
            json!({"owner": person_ids[2], "v": 2}),
        ]
    );
    let plan = query(
        &mut s,
        l,
        "EXPLAIN SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id = ?",
        &[json!(reg_id)],
    )
    .await
    .expect("explain history");
    assert_eq!(plan[0]["access"], "document history");

    // The committed view: data and metadata.
    let committed = query(
        &mut s,
        l,
        "SELECT * FROM _ql_committed_VehicleRegistration AS r WHERE r.data.VIN = ?",
        &[json!("1N4AL11D75C109151")],
    )
    .await
    .expect("committed view");
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0]["metadata"]["id"], json!(reg_id));
    assert_eq!(committed[0]["metadata"]["version"], 2);
    assert_eq!(committed[0]["data"]["City"], "Seattle");
    assert!(
        committed[0]["metadata"]["txTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // Deregister a driver's license.
    let gone = query(
        &mut s,
        l,
        "DELETE FROM DriversLicense AS d WHERE d.LicenseNumber = ?",
        &[json!("LEWISR261LL")],
    )
    .await
    .expect("delete");
    assert_eq!(gone.len(), 1);
    let count = query(&mut s, l, "SELECT COUNT(*) FROM DriversLicense", &[])
        .await
        .expect("count");
    assert_eq!(count, vec![json!({"_1": 4})]);
    // Its history ends with the delete, which has no data.
    let last = query(
        &mut s,
        l,
        "SELECT VALUE h.metadata.operation FROM history(DriversLicense) AS h",
        &[],
    )
    .await
    .expect("history");
    assert_eq!(last.iter().filter(|o| **o == json!("delete")).count(), 1);
}

#[tokio::test]
async fn selects_cover_the_language() {
    let mut s = start().await;
    s.ledger("l", &["t", "u"]).await;
    let docs = [
        json!({"k": 1, "name": "alpha", "tags": ["a", "b"], "n": {"x": 10}}),
        json!({"k": 2, "name": "beta", "tags": [], "n": {"x": 20}}),
        json!({"k": 3, "name": "gamma", "n": null}),
        json!({"k": 4, "name": "delta", "tags": ["c"]}),
    ];
    for d in &docs {
        query(
            &mut s,
            "l",
            "INSERT INTO t VALUE ?",
            std::slice::from_ref(d),
        )
        .await
        .expect("insert");
    }
    query(
        &mut s,
        "l",
        "INSERT INTO u << {'k': 1, 'v': 'one'}, {'k': 3, 'v': 'three'} >>",
        &[],
    )
    .await
    .expect("insert");
    let q = |text: &'static str| text;
    let cases: Vec<(&str, Vec<Value>)> = vec![
        (
            q("SELECT VALUE t.k FROM t WHERE t.k BETWEEN 2 AND 3 ORDER BY t.k"),
            vec![json!(2), json!(3)],
        ),
        (
            q("SELECT VALUE t.name FROM t WHERE t.name LIKE '%ta' ORDER BY t.name"),
            vec![json!("beta"), json!("delta")],
        ),
        (
            q("SELECT VALUE t.k FROM t WHERE t.n IS NULL ORDER BY t.k"),
            vec![json!(3), json!(4)],
        ),
        (
            q("SELECT VALUE t.k FROM t WHERE t.n IS MISSING"),
            vec![json!(4)],
        ),
        (
            q(
                "SELECT VALUE t.k FROM t WHERE t.tags IS NOT MISSING AND t.k IN (1, 4, 9) ORDER BY t.k DESC",
            ),
            vec![json!(4), json!(1)],
        ),
        (
            q("SELECT VALUE t.k * 10 + 1 FROM t WHERE NOT t.k <> 2"),
            vec![json!(21)],
        ),
        (
            q("SELECT VALUE t.name || '!' FROM t WHERE t.k = 1"),
            vec![json!("alpha!")],
        ),
        (
            q("SELECT t.n.x AS x FROM t WHERE t.n.x > 15"),
            vec![json!({"x": 20})],
        ),
        (
            q("SELECT VALUE tag FROM t AS t, t.tags AS tag ORDER BY tag"),
            vec![json!("a"), json!("b"), json!("c")],
        ),
        (
            q("SELECT t.name, i FROM t AS t, t.tags AS tag AT i WHERE tag = 'b'"),
            vec![json!({"name": "alpha", "i": 1})],
        ),
        (
            q("SELECT t.name, u.v FROM t INNER JOIN u ON t.k = u.k ORDER BY t.k"),
            vec![
                json!({"name": "alpha", "v": "one"}),
                json!({"name": "gamma", "v": "three"}),
            ],
        ),
        (
            q("SELECT t.k, u.v FROM t LEFT JOIN u ON t.k = u.k WHERE t.k < 3 ORDER BY t.k"),
            vec![json!({"k": 1, "v": "one"}), json!({"k": 2, "v": null})],
        ),
        (
            q(
                "SELECT COUNT(*) AS n, SUM(t.k) AS s, AVG(t.k) AS a, MIN(t.name) AS lo, MAX(t.k) AS hi FROM t",
            ),
            vec![json!({"n": 4, "s": 10, "a": 2.5, "lo": "alpha", "hi": 4})],
        ),
        (q("SELECT COUNT(t.n) AS c FROM t"), vec![json!({"c": 2})]),
        (
            q("SELECT VALUE t.k FROM t ORDER BY t.k LIMIT 2 OFFSET 1"),
            vec![json!(2), json!(3)],
        ),
        (
            q("SELECT DISTINCT VALUE t.k % 2 FROM t ORDER BY t.k % 2"),
            vec![json!(0), json!(1)],
        ),
        (
            q("SELECT VALUE UPPER(t.name) FROM t WHERE CHAR_LENGTH(t.name) = 4"),
            vec![json!("BETA")],
        ),
        (
            q("SELECT VALUE CASE WHEN t.k > 2 THEN 'big' ELSE 'small' END FROM t WHERE t.k = 3"),
            vec![json!("big")],
        ),
        (
            q("SELECT VALUE CAST(t.k AS STRING) FROM t WHERE t.k = 2"),
            vec![json!("2")],
        ),
        (
            q("SELECT VALUE k FROM t WHERE name = 'beta'"),
            vec![json!(2)],
        ),
    ];
    for (text, expected) in cases {
        let got = query(&mut s, "l", text, &[])
            .await
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(got, expected, "{text}");
    }
}

#[tokio::test]
async fn updates_and_deletes_return_ids_and_change_documents() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    let a = id_of(
        &query(
            &mut s,
            "l",
            "INSERT INTO t VALUE {'a': 1, 'b': {'c': [1, 2]}}",
            &[],
        )
        .await
        .expect("insert"),
    );
    let changed = query(
        &mut s,
        "l",
        "UPDATE t AS x SET x.a = x.a + 1, x.b.d = 'new' REMOVE x.b.c[0] WHERE x.a = 1",
        &[],
    )
    .await
    .expect("update");
    assert_eq!(changed, vec![json!({"documentId": a})]);
    let now = query(&mut s, "l", "SELECT * FROM t", &[])
        .await
        .expect("select");
    assert_eq!(now, vec![json!({"a": 2, "b": {"c": [2], "d": "new"}})]);
    // No match: nothing written, no rows.
    let none = execute(&mut s, "l", "UPDATE t SET a = 0 WHERE a = 99", &[])
        .await
        .expect("update");
    assert!(none.rows.is_empty() && none.receipt.is_none());
    // Statements of one request are one transaction: the second sees the first's insert,
    // and one receipt covers both.
    let r = s
        .docs
        .execute_statement(pb::ExecuteStatementRequest {
            ledger: "l".into(),
            statements: vec![pb::StatementText {
                text:
                    "INSERT INTO t VALUE {'a': 10}; UPDATE t AS x SET x.seen = true WHERE x.a = 10"
                        .into(),
                parameters: vec![],
            }],
            ..Default::default()
        })
        .await
        .expect("two statements")
        .into_inner();
    let receipt = r.receipt.expect("a receipt");
    assert_eq!(
        receipt.revisions, 1,
        "the insert and its update are one revision"
    );
    let ten = query(
        &mut s,
        "l",
        "SELECT VALUE x.seen FROM t AS x WHERE x.a = 10",
        &[],
    )
    .await
    .expect("select");
    assert_eq!(ten, vec![json!(true)]);
    let deleted = query(&mut s, "l", "DELETE FROM t AS x WHERE x.a = 2", &[])
        .await
        .expect("delete");
    assert_eq!(deleted, vec![json!({"documentId": a})]);
    // The first statement's failure leaves nothing written.
    let before = query(&mut s, "l", "SELECT COUNT(*) FROM t", &[])
        .await
        .expect("count");
    let failed = execute(
        &mut s,
        "l",
        "INSERT INTO t VALUE {'z': 1}; INSERT INTO nope VALUE {'z': 2}",
        &[],
    )
    .await;
    assert_code(failed, Code::NotFound, "table \"nope\" does not exist");
    let after = query(&mut s, "l", "SELECT COUNT(*) FROM t", &[])
        .await
        .expect("count");
    assert_eq!(before, after);
}

#[tokio::test]
async fn an_index_built_on_a_full_table_serves_queries_once_online() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    // More documents than one build step takes, in several transactions.
    for chunk in 0..6 {
        let bag: Vec<Value> = (0..1000)
            .map(|i| json!({"n": chunk * 1000 + i, "group": format!("g{}", i % 7), "deep": {"v": i % 10}}))
            .collect();
        query(&mut s, "l", "INSERT INTO t ?", &[Value::Array(bag)])
            .await
            .expect("insert");
    }
    query(&mut s, "l", "CREATE INDEX ON t (deep.v)", &[])
        .await
        .expect("create index");
    // Writes go on while it builds; they are indexed too.
    query(
        &mut s,
        "l",
        "INSERT INTO t VALUE {'n': -1, 'deep': {'v': 3}}",
        &[],
    )
    .await
    .expect("insert");
    wait_online(&mut s, "l", "t").await;
    let list = s
        .admin
        .list_tables(pb::ListTablesRequest { ledger: "l".into() })
        .await
        .expect("list")
        .into_inner();
    let index = &list.tables[0].indexes[0];
    assert_eq!(
        (index.path.as_str(), index.state.as_str()),
        ("deep.v", "online")
    );
    let plan = query(
        &mut s,
        "l",
        "EXPLAIN SELECT * FROM t WHERE t.deep.v = 3",
        &[],
    )
    .await
    .expect("explain");
    assert_eq!(plan[0]["access"], "index equality");
    let count = query(
        &mut s,
        "l",
        "SELECT COUNT(*) FROM t WHERE t.deep.v = 3",
        &[],
    )
    .await
    .expect("count");
    assert_eq!(count, vec![json!({"_1": 601})]);
    let range = query(
        &mut s,
        "l",
        "SELECT COUNT(*) FROM t WHERE t.deep.v >= 8",
        &[],
    )
    .await
    .expect("count");
    assert_eq!(range, vec![json!({"_1": 1200})]);
    // An update moves a document between values; a delete takes it out.
    query(&mut s, "l", "UPDATE t SET deep.v = 42 WHERE n = -1", &[])
        .await
        .expect("update");
    let moved = query(
        &mut s,
        "l",
        "SELECT VALUE t.n FROM t WHERE t.deep.v = 42",
        &[],
    )
    .await
    .expect("select");
    assert_eq!(moved, vec![json!(-1)]);
    query(&mut s, "l", "DELETE FROM t WHERE deep.v = 42", &[])
        .await
        .expect("delete");
    let none = query(&mut s, "l", "SELECT * FROM t WHERE t.deep.v = 42", &[])
        .await
        .expect("select");
    assert!(none.is_empty());
    // Dropped: queries scan again, and a new index on the path can be made.
    query(&mut s, "l", "DROP INDEX ON t (deep.v)", &[])
        .await
        .expect("drop index");
    let plan = query(
        &mut s,
        "l",
        "EXPLAIN SELECT * FROM t WHERE t.deep.v = 3",
        &[],
    )
    .await
    .expect("explain");
    assert_eq!(plan[0]["access"], "scan");
    query(&mut s, "l", "CREATE INDEX ON t (deep.v)", &[])
        .await
        .expect("again");
    assert_code(
        query(&mut s, "l", "CREATE INDEX ON t (deep.v)", &[]).await,
        Code::AlreadyExists,
        "already has an index",
    );
}

#[tokio::test]
async fn bad_statements_are_refused_with_where_and_why() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    let cases: Vec<(&str, Vec<Value>, Code, &str)> = vec![
        (
            "SELECT * FROM t WHERE",
            vec![],
            Code::InvalidArgument,
            "line 1, column 22",
        ),
        (
            "SELECT *\n  FROM t\n  WHERE a = = 1",
            vec![],
            Code::InvalidArgument,
            "line 3",
        ),
        (
            "SELECT * FROM t GROUP BY a",
            vec![],
            Code::InvalidArgument,
            "GROUP BY",
        ),
        (
            "SELECT * FROM nope",
            vec![],
            Code::NotFound,
            "table \"nope\" does not exist",
        ),
        (
            "SELECT * FROM t WHERE a = ?",
            vec![],
            Code::InvalidArgument,
            "1 parameter",
        ),
        (
            "SELECT * FROM t WHERE a = ?",
            vec![json!(1), json!(2)],
            Code::InvalidArgument,
            "2 given",
        ),
        (
            "SELECT nosuch(a) FROM t",
            vec![],
            Code::InvalidArgument,
            "nosuch",
        ),
        (
            "INSERT INTO t VALUE 5",
            vec![],
            Code::InvalidArgument,
            "not a struct",
        ),
        ("DROP INDEX ON t (a)", vec![], Code::NotFound, "no index"),
        (
            "CREATE TABLE t; SELECT 1 FROM t",
            vec![],
            Code::InvalidArgument,
            "alone",
        ),
        (
            "SELECT * FROM t LIMIT -1",
            vec![],
            Code::InvalidArgument,
            "LIMIT",
        ),
    ];
    for (text, params, code, needle) in cases {
        assert_code(query(&mut s, "l", text, &params).await, code, needle);
    }
    // 64 indexes a table may have; the 65th is refused.
    for i in 0..64 {
        query(&mut s, "l", &format!("CREATE INDEX ON t (f{i})"), &[])
            .await
            .expect("index");
    }
    assert_code(
        query(&mut s, "l", "CREATE INDEX ON t (f64)", &[]).await,
        Code::ResourceExhausted,
        "64 indexes, the most a table may have",
    );
    // A parameter that is not JSON names itself.
    let mut bad = request("l", "SELECT * FROM t WHERE a = ?", &[]);
    bad.statements[0].parameters = vec!["{oops".into()];
    assert_code(
        s.docs.execute_statement(bad).await,
        Code::InvalidArgument,
        "parameters[0]",
    );
    // Too long a statement.
    let long = format!("SELECT * FROM t WHERE a = '{}'", "x".repeat(200 << 10));
    assert_code(
        query(&mut s, "l", &long, &[]).await,
        Code::ResourceExhausted,
        "statements[0].text",
    );
}

#[tokio::test]
async fn a_statement_reading_too_many_documents_is_told_to_use_an_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(dir.path());
    config.limits.max_examined_documents = 50;
    let mut s = start_with(config, dir).await;
    s.ledger("l", &["t"]).await;
    let bag: Vec<Value> = (0..60).map(|i| json!({"n": i})).collect();
    query(&mut s, "l", "INSERT INTO t ?", &[Value::Array(bag)])
        .await
        .expect("insert");
    assert_code(
        query(&mut s, "l", "SELECT * FROM t WHERE t.n = 7", &[]).await,
        Code::ResourceExhausted,
        "CREATE INDEX ON t",
    );
    // A write past the limit writes nothing.
    let size = |s: &TestServer| {
        s.engine
            .ledger("l")
            .expect("ledger")
            .info()
            .expect("info")
            .size
    };
    let before = size(&s);
    assert_code(
        query(&mut s, "l", "UPDATE t SET m = 1 WHERE n > 10", &[]).await,
        Code::ResourceExhausted,
        "more than 50 documents",
    );
    assert_eq!(size(&s), before);
    query(&mut s, "l", "CREATE INDEX ON t (n)", &[])
        .await
        .expect("index");
    wait_online(&mut s, "l", "t").await;
    let found = query(&mut s, "l", "SELECT VALUE t.n FROM t WHERE t.n = 7", &[])
        .await
        .expect("indexed");
    assert_eq!(found, vec![json!(7)]);
}

#[tokio::test]
async fn reads_come_a_page_at_a_time_and_a_change_between_pages_aborts() {
    let mut s = start().await;
    s.ledger("l", &["t", "other"]).await;
    let bag: Vec<Value> = (0..250).map(|i| json!({"n": i})).collect();
    query(&mut s, "l", "INSERT INTO t ?", &[Value::Array(bag)])
        .await
        .expect("insert");
    let text = "SELECT VALUE t.n FROM t ORDER BY t.n";
    let mut all = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut r = request("l", text, &[]);
        r.page_size = 100;
        r.page_token = token;
        let page = s
            .docs
            .execute_statement(r)
            .await
            .expect("page")
            .into_inner();
        all.extend(rows(&page));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        // A write elsewhere does not disturb the pages.
        query(&mut s, "l", "INSERT INTO other VALUE {'x': 1}", &[])
            .await
            .expect("insert");
    }
    assert_eq!(pages, 3);
    assert_eq!(all, (0..250).map(|i| json!(i)).collect::<Vec<_>>());
    // A write to what the pages read does.
    let mut r = request("l", text, &[]);
    r.page_size = 100;
    let first = s
        .docs
        .execute_statement(r.clone())
        .await
        .expect("page")
        .into_inner();
    query(&mut s, "l", "INSERT INTO t VALUE {'n': -5}", &[])
        .await
        .expect("insert");
    r.page_token = first.next_page_token;
    assert_code(
        s.docs.execute_statement(r).await,
        Code::Aborted,
        "run the query again",
    );
    // A token belongs to its statement.
    let mut r = request("l", "SELECT * FROM other", &[]);
    r.page_token = first_token(&mut s).await;
    assert_code(
        s.docs.execute_statement(r).await,
        Code::InvalidArgument,
        "page_token",
    );
}

async fn first_token(s: &mut TestServer) -> String {
    let mut r = request("l", "SELECT VALUE t.n FROM t ORDER BY t.n", &[]);
    r.page_size = 10;
    s.docs
        .execute_statement(r)
        .await
        .expect("page")
        .into_inner()
        .next_page_token
}

#[tokio::test]
async fn proofs_come_with_rows_that_are_stored_revisions() {
    let mut s = start().await;
    let info = s.ledger("l", &["t"]).await;
    query(&mut s, "l", "INSERT INTO t VALUE {'a': 1}", &[])
        .await
        .expect("insert");
    let mut r = request("l", "SELECT * FROM t", &[]);
    r.proof = true;
    let out = s
        .docs
        .execute_statement(r)
        .await
        .expect("select")
        .into_inner();
    let row = &out.rows[0];
    let proof = row.proof.as_ref().expect("a proof");
    let verifier = graven_verify::Verifier::parse(&info.vkey).expect("vkey");
    let text = graven_verify::proof::InclusionProof {
        extra: None,
        index: proof.index,
        hashes: hashes(&proof.hashes),
        checkpoint: proof.checkpoint.clone(),
    };
    graven_verify::proof::verify_inclusion(&text, &row.entry, &[verifier])
        .expect("the proof verifies");
    let entry = graven_verify::Entry::decode(&row.entry).expect("entry");
    use sha2::Digest as _;
    let digest: [u8; 32] = sha2::Sha256::digest(row.json.as_bytes()).into();
    assert_eq!(
        entry.body_hash.expect("a body hash").0,
        digest,
        "the entry records the row"
    );
    // A projection is not a stored revision: no proof.
    let mut r = request("l", "SELECT t.a FROM t", &[]);
    r.proof = true;
    let out = s
        .docs
        .execute_statement(r)
        .await
        .expect("select")
        .into_inner();
    assert!(out.rows[0].proof.is_none() && out.rows[0].index.is_none());
}

/// A small deterministic generator (xorshift), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A value of a random type: the types an index must keep apart.
    fn value(&mut self, depth: u32) -> Option<Value> {
        Some(match self.below(if depth > 1 { 6 } else { 9 }) {
            0 => return None,
            1 => Value::Null,
            2 => json!(self.below(2) == 0),
            // The ends of what a document may hold (integers up to ±2^53), and a large
            // double.
            3 if self.below(5) == 0 => [
                json!(9_007_199_254_740_992u64),
                json!(-9_007_199_254_740_992i64),
                json!(1e300),
            ][self.below(3) as usize]
                .clone(),
            3 => json!(self.below(7) as i64 - 3),
            4 => json!((self.below(13) as f64 - 6.0) / 2.0),
            5 => json!(["a", "b", "ab", "", "B", "ä"][self.below(6) as usize]),
            6 => Value::Array(
                (0..self.below(3))
                    .filter_map(|_| self.value(depth + 1))
                    .collect(),
            ),
            _ => {
                let mut m = serde_json::Map::new();
                for k in ["c", "d"] {
                    if let Some(v) = self.value(depth + 1) {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m)
            }
        })
    }

    /// A literal for a condition, as statement text.
    fn literal(&mut self) -> String {
        match self.value(2) {
            None | Some(Value::Null) => "1".into(),
            Some(Value::String(s)) => format!("'{s}'"),
            Some(v) => v.to_string(),
        }
    }
}

/// Random queries over random documents give the same rows through an index as by a
/// scan: the same documents in two tables, one with indexes on the paths the conditions
/// name (top-level, nested, a list position), one without.
#[tokio::test]
async fn queries_give_the_same_rows_with_and_without_an_index() {
    let mut s = start().await;
    s.ledger("l", &["indexed", "plain"]).await;
    let seed = std::env::var("GRAVEN_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let mut rng = Rng(seed);
    let mut docs = Vec::new();
    for i in 0..300 {
        let mut doc = serde_json::Map::new();
        doc.insert("i".into(), json!(i));
        for field in ["a", "b", "arr"] {
            let v = match field {
                "arr" => Some(Value::Array(
                    (0..rng.below(3)).filter_map(|_| rng.value(1)).collect(),
                )),
                _ => rng.value(0),
            };
            if let Some(v) = v {
                doc.insert(field.into(), v);
            }
        }
        docs.push(Value::Object(doc));
    }
    for t in ["indexed", "plain"] {
        query(
            &mut s,
            "l",
            &format!("INSERT INTO {t} ?"),
            &[Value::Array(docs.clone())],
        )
        .await
        .expect("insert");
    }
    for path in ["a", "b.c", "arr[0]", "b"] {
        query(
            &mut s,
            "l",
            &format!("CREATE INDEX ON indexed ({path})"),
            &[],
        )
        .await
        .expect("index");
    }
    wait_online(&mut s, "l", "indexed").await;
    // Writes after the build: the index must follow them too.
    for t in ["indexed", "plain"] {
        query(
            &mut s,
            "l",
            &format!("UPDATE {t} AS x SET x.a = 'moved' WHERE x.i < 20"),
            &[],
        )
        .await
        .expect("update");
        query(
            &mut s,
            "l",
            &format!("DELETE FROM {t} AS x WHERE x.i >= 290"),
            &[],
        )
        .await
        .expect("delete");
    }
    let paths = ["x.a", "x.b.c", "x.arr[0]", "x.b"];
    let mut used_index = 0;
    for round in 0..300 {
        let condition = |rng: &mut Rng| {
            let p = paths[rng.below(4) as usize];
            match rng.below(6) {
                0 => format!("{p} = {}", rng.literal()),
                1 => format!("{p} < {}", rng.literal()),
                2 => format!("{p} >= {}", rng.literal()),
                3 => format!("{p} BETWEEN {} AND {}", rng.literal(), rng.literal()),
                4 => format!("{p} IN ({}, {})", rng.literal(), rng.literal()),
                _ => format!("{} > {p}", rng.literal()),
            }
        };
        let mut filter = condition(&mut rng);
        match rng.below(3) {
            0 => filter = format!("{filter} AND {}", condition(&mut rng)),
            1 => filter = format!("{filter} OR {}", condition(&mut rng)),
            _ => {}
        }
        // Half the rounds return whole documents: through an index that answers the whole
        // WHERE, they go out as stored, unparsed.
        let whole = round % 2 == 1;
        let text = |t: &str| {
            let what = if whole { "*" } else { "VALUE x.i" };
            format!("SELECT {what} FROM {t} AS x WHERE {filter}")
        };
        let mut got = Vec::new();
        for t in ["indexed", "plain"] {
            let mut r = query(&mut s, "l", &text(t), &[])
                .await
                .unwrap_or_else(|e| panic!("round {round}: {}: {e}", text(t)));
            r.sort_by_key(|v| if whole { v["i"].as_i64() } else { v.as_i64() });
            got.push(r);
        }
        assert_eq!(
            got[0],
            got[1],
            "round {round} (seed {seed}): {}",
            text("indexed")
        );
        let plan = query(&mut s, "l", &format!("EXPLAIN {}", text("indexed")), &[])
            .await
            .expect("explain");
        if plan[0]["access"]
            .as_str()
            .is_some_and(|a| a.starts_with("index"))
        {
            used_index += 1;
        }
    }
    assert!(
        used_index > 100,
        "only {used_index} of 300 queries used an index"
    );
}
