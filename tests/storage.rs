//! The storage interface's contract (src/storage/backend.rs), checked on every backend by
//! one suite: the embedded redb backend and PostgreSQL (a throwaway cluster).

use std::ops::Bound;

use graven::storage::postgres::PostgresBackend;
use graven::storage::redb::RedbBackend;
use graven::storage::{Backend, Batch, Claim, ErrorKind, Holder, Read, Space, View};

use crate::util::Postgres;

/// The key spaces the suite uses.
const SPACES: &[&str] = &["first", "second"];
const A: Space = Space(0);
const B: Space = Space(1);

fn put(puts: &[(Space, &[u8], &[u8])]) -> Batch {
    Batch {
        puts: puts
            .iter()
            .map(|(s, k, v)| (*s, k.to_vec(), v.to_vec()))
            .collect(),
        ..Batch::default()
    }
}

fn keys(view: &dyn View, space: Space, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Vec<u8>> {
    view.range(space, start, end)
        .expect("range")
        .map(|row| row.expect("row").0)
        .collect()
}

/// Everything the interface promises, on `backend` (empty, opened with [`SPACES`]).
fn contract(backend: &dyn Backend) {
    use Bound::{Excluded, Included, Unbounded};
    let empty = backend.view().expect("view");
    assert_eq!(empty.get(A, b"k").expect("get"), None);
    assert_eq!(empty.last_key(A).expect("last"), None);
    assert_eq!(empty.len(A).expect("len"), 0);
    assert!(keys(&*empty, A, Unbounded, Unbounded).is_empty());

    // One batch over two key spaces; bytewise order, shorter first on a common prefix.
    let rows: [&[u8]; 6] = [
        b"\x01",
        b"\x01\x00",
        b"\x01\x01",
        b"\x02",
        b"\xff",
        b"\xff\xff",
    ];
    let mut batch = put(&[(B, b"other", b"space")]);
    for k in rows.iter().rev() {
        batch
            .puts
            .push((A, k.to_vec(), [b"v".as_slice(), k].concat()));
    }
    backend.commit(batch).expect("commit");
    let view = backend.view().expect("view");
    assert_eq!(
        keys(&*view, A, Unbounded, Unbounded),
        rows.map(<[u8]>::to_vec)
    );
    assert_eq!(
        view.get(A, b"\x01\x00").expect("get"),
        Some(b"v\x01\x00".to_vec())
    );
    assert_eq!(
        view.get(A, b"other").expect("get"),
        None,
        "key spaces are apart"
    );
    assert_eq!(view.get(B, b"other").expect("get"), Some(b"space".to_vec()));
    assert_eq!(view.len(A).expect("len"), 6);
    assert_eq!(view.last_key(A).expect("last"), Some(b"\xff\xff".to_vec()));
    assert_eq!(
        keys(&*view, A, Included(b"\x01\x00"), Excluded(b"\x02")),
        [b"\x01\x00".to_vec(), b"\x01\x01".to_vec()]
    );
    assert_eq!(
        keys(&*view, A, Excluded(b"\x01"), Included(b"\x02")),
        [b"\x01\x00".to_vec(), b"\x01\x01".to_vec(), b"\x02".to_vec()]
    );
    assert_eq!(
        keys(&*view, A, Excluded(b"\xff\xff"), Unbounded),
        Vec::<Vec<u8>>::new()
    );
    // The empty view taken before the commit still shows nothing: views are snapshots.
    assert_eq!(empty.get(A, b"\x01").expect("get"), None);
    assert_eq!(empty.len(A).expect("len"), 0);
    drop(empty);

    // A later put of a key wins; the view taken before does not see it.
    backend
        .commit(put(&[(A, b"\x02", b"new")]))
        .expect("overwrite");
    assert_eq!(view.get(A, b"\x02").expect("get"), Some(b"v\x02".to_vec()));
    let now = backend.view().expect("view");
    assert_eq!(now.get(A, b"\x02").expect("get"), Some(b"new".to_vec()));

    // The condition: the last key of a key space, or none.
    let mut stale = put(&[(A, b"\x03", b"lost")]);
    stale.expect_last = Some((A, Some(b"\x02".to_vec())));
    let e = backend
        .commit(stale)
        .expect_err("the last key is \\xff\\xff");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let mut empty_b = put(&[(A, b"\x04", b"lost too")]);
    empty_b.expect_last = Some((B, None));
    assert_eq!(
        backend.commit(empty_b).expect_err("B is not empty").kind(),
        ErrorKind::Conflict
    );
    let after = backend.view().expect("view");
    assert_eq!(
        after.get(A, b"\x03").expect("get"),
        None,
        "a refused batch writes nothing"
    );
    assert_eq!(
        after.get(A, b"\x04").expect("get"),
        None,
        "a refused batch writes nothing"
    );
    let mut good = put(&[(A, b"\xff\xff\x00", b"next"), (B, b"b", b"too")]);
    good.expect_last = Some((A, Some(b"\xff\xff".to_vec())));
    backend.commit(good).expect("the condition holds");
    let after = backend.view().expect("view");
    assert_eq!(
        after.last_key(A).expect("last"),
        Some(b"\xff\xff\x00".to_vec())
    );
    assert_eq!(after.get(B, b"b").expect("get"), Some(b"too".to_vec()));

    // Long ranges come back whole and in order (PostgreSQL reads them in pages).
    let many: Vec<Vec<u8>> = (0u32..2_500)
        .map(|i| [b"m".as_slice(), &i.to_be_bytes()].concat())
        .collect();
    let mut batch = Batch {
        defer_durability: true,
        ..Batch::default()
    };
    batch.puts = many.iter().map(|k| (B, k.clone(), k.clone())).collect();
    backend.commit(batch).expect("bulk");
    backend
        .commit(Batch::default())
        .expect("an empty batch, durable");
    let view = backend.view().expect("view");
    let start = [b"m".as_slice(), &0u32.to_be_bytes()].concat();
    let end = b"n".as_slice();
    assert_eq!(keys(&*view, B, Included(&start), Excluded(end)), many);
    assert_eq!(view.len(B).expect("len"), 2_502);
}

#[test]
fn the_redb_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = RedbBackend::create(&dir.path().join("t.redb"), 1 << 20, SPACES).expect("create");
    contract(&backend);
    // Reopened, everything committed is there.
    drop(backend);
    let backend = RedbBackend::open(&dir.path().join("t.redb"), 1 << 20, SPACES).expect("open");
    assert_eq!(backend.view().expect("view").len(B).expect("len"), 2_502);
}

#[test]
fn the_postgres_backend_keeps_the_contract() {
    let Some(pg) = Postgres::start_or_skip("the_postgres_backend_keeps_the_contract") else {
        return;
    };
    let backend = PostgresBackend::connect(&pg.url, "one", SPACES).expect("connect");
    contract(&backend);
    // Another ledger in the same database sees none of it.
    let other = PostgresBackend::connect(&pg.url, "two", SPACES).expect("connect");
    assert_eq!(other.view().expect("view").len(A).expect("len"), 0);
    // A second connection to the first ledger sees everything committed.
    let again = PostgresBackend::connect(&pg.url, "one", SPACES).expect("connect");
    assert_eq!(again.view().expect("view").len(B).expect("len"), 2_502);
    assert!(
        RedbBackend::create(
            &tempfile::tempdir().expect("dir").path().join("x"),
            1 << 20,
            SPACES
        )
        .expect("redb")
        .leases()
        .is_none(),
        "one process opens a redb file: it has no leases"
    );
    leases(&pg.url);
}

/// The write lease, as two servers (two backends of one ledger) see it: one holds it at
/// a time; the other learns who, and for how long; a lapsed or released lease goes to the
/// next claimant with a greater epoch; and a batch fenced by a lease that is no longer
/// the ledger's is refused, writing nothing, while one fenced by the current lease lands.
fn leases(url: &str) {
    use std::time::Duration;
    let a = PostgresBackend::connect(url, "leased", SPACES).expect("connect");
    let b = PostgresBackend::connect(url, "leased", SPACES).expect("connect");
    let (la, lb) = (a.leases().expect("leases"), b.leases().expect("leases"));
    let server_a = Holder {
        id: "a",
        address: "http://a",
    };
    let server_b = Holder {
        id: "b",
        address: "http://b",
    };
    assert_eq!(
        la.holder().expect("holder"),
        None,
        "nobody holds a new ledger's lease"
    );
    let Claim::Granted(first) = la.claim(server_a, Duration::from_secs(30)).expect("claim") else {
        panic!("a free lease is granted");
    };
    match lb.claim(server_b, Duration::from_secs(30)).expect("claim") {
        Claim::Held { address, remaining } => {
            assert_eq!(address, "http://a");
            assert!(
                remaining > Duration::from_secs(20) && remaining <= Duration::from_secs(30),
                "{remaining:?}"
            );
        }
        other => panic!("a held lease is not granted to another: {other:?}"),
    }
    assert_eq!(
        la.holder().expect("holder").map(|h| h.0).as_deref(),
        Some("http://a")
    );
    let mut fenced = put(&[(A, b"a1", b"by a")]);
    fenced.fence = Some(first);
    a.commit(fenced)
        .expect("the holder commits under its lease");

    // A lease that lapses goes to the next claimant, under a new epoch.
    assert!(la.renew(first, Duration::from_millis(1)).expect("renew"));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        la.holder().expect("holder"),
        None,
        "a lapsed lease has no holder"
    );
    let Claim::Granted(second) = lb.claim(server_b, Duration::from_secs(30)).expect("claim") else {
        panic!("a lapsed lease is granted");
    };
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
    assert!(
        !la.renew(first, Duration::from_secs(30)).expect("renew"),
        "a lost lease does not renew"
    );
    let mut stale = put(&[(A, b"a2", b"by a, late")]);
    stale.fence = Some(first);
    let e = a.commit(stale).expect_err("fenced out");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("write lease"), "{e}");
    assert_eq!(
        b.view().expect("view").get(A, b"a2").expect("get"),
        None,
        "nothing written"
    );
    let mut current = put(&[(A, b"b1", b"by b")]);
    current.fence = Some(second);
    b.commit(current).expect("the new holder commits");

    // Released, it is free at once.
    lb.release(second).expect("release");
    assert_eq!(lb.holder().expect("holder"), None);
    let Claim::Granted(third) = la.claim(server_a, Duration::from_secs(30)).expect("claim") else {
        panic!("a released lease is granted");
    };
    assert!(third.epoch > second.epoch);
}

/// Two writers on two connections race to extend one key space, each committing "my key
/// after the last one I saw": every key is written exactly once, by the writer whose
/// condition held; the other is refused with Conflict and tries again. This is what keeps
/// two servers from both extending one ledger's tree.
#[test]
fn racing_writers_on_postgres_never_both_extend_the_journal() {
    let Some(pg) =
        Postgres::start_or_skip("racing_writers_on_postgres_never_both_extend_the_journal")
    else {
        return;
    };
    const EACH: u64 = 40;
    let writers: Vec<_> = (0u8..2)
        .map(|w| {
            let url = pg.url.clone();
            std::thread::spawn(move || {
                let backend = PostgresBackend::connect(&url, "race", SPACES).expect("connect");
                let (mut won, mut refused) = (0, 0);
                while won < EACH {
                    let last = backend.view().expect("view").last_key(A).expect("last");
                    let next = last.as_deref().map_or(0, |k| {
                        u64::from_be_bytes(k.try_into().expect("8 bytes")) + 1
                    });
                    let mut batch = put(&[(A, &next.to_be_bytes(), &[w])]);
                    batch.expect_last = Some((A, last));
                    match backend.commit(batch) {
                        Ok(()) => won += 1,
                        Err(e) if e.kind() == ErrorKind::Conflict => refused += 1,
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
                refused
            })
        })
        .collect();
    let refused: u64 = writers.into_iter().map(|t| t.join().expect("writer")).sum();
    let backend = PostgresBackend::connect(&pg.url, "race", SPACES).expect("connect");
    let view = backend.view().expect("view");
    let rows: Vec<(Vec<u8>, Vec<u8>)> = view
        .range(A, Bound::Unbounded, Bound::Unbounded)
        .expect("range")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(
        rows.len() as u64,
        2 * EACH,
        "every commit that returned Ok is there"
    );
    for (i, (key, value)) in rows.iter().enumerate() {
        assert_eq!(key, &(i as u64).to_be_bytes(), "dense keys");
        assert_eq!(value.len(), 1, "one writer's value");
    }
    for w in 0u8..2 {
        let mine = rows.iter().filter(|(_, v)| v == &[w]).count() as u64;
        assert_eq!(mine, EACH, "writer {w}'s commits, none overwritten");
    }
    eprintln!("racing writers: {refused} commits refused as stale");
}

/// The PostgreSQL backend is called from the tasks of another runtime too (the gRPC
/// handlers read on tokio's workers): its queries run on a runtime of its own, so a
/// current-thread runtime's task can read and commit without blocking that runtime's
/// own futures forever or panicking.
#[tokio::test]
async fn the_postgres_backend_works_from_async_tasks() {
    let Some(pg) = Postgres::start_or_skip("the_postgres_backend_works_from_async_tasks") else {
        return;
    };
    let backend = PostgresBackend::connect(&pg.url, "async", SPACES).expect("connect");
    backend
        .commit(put(&[(A, b"k", b"v")]))
        .expect("commit from a task");
    let view = backend.view().expect("view from a task");
    assert_eq!(view.get(A, b"k").expect("get"), Some(b"v".to_vec()));
    assert_eq!(
        keys(&*view, A, Bound::Unbounded, Bound::Unbounded),
        [b"k".to_vec()]
    );
}

/// `read_many` answers in the order asked, over spaces, a key asked twice twice, a missing
/// one `None`, a last key as `last_key` has it, on every backend (PostgreSQL sends every
/// read at once, and many keys of one space as one query).
#[test]
fn read_many_answers_in_order_on_both_backends() {
    let check = |backend: &dyn Backend| {
        backend
            .commit(put(&[
                (A, b"a", b"1"),
                (A, b"b", b"2"),
                (B, b"a", b"other"),
            ]))
            .expect("commit");
        let view = backend.view().expect("view");
        // Few keys of a space (a point read each on PostgreSQL) and many (one query there).
        for n in [1, 3, 20] {
            let mut reads: Vec<Read> = [&b"b"[..], b"none", b"a", b"b"]
                .iter()
                .cycle()
                .take(4 * n)
                .map(|k| Read::Get(A, k.to_vec()))
                .collect();
            let mut expected: Vec<Option<Vec<u8>>> = [
                Some(b"2".to_vec()),
                None,
                Some(b"1".to_vec()),
                Some(b"2".to_vec()),
            ]
            .into_iter()
            .cycle()
            .take(4 * n)
            .collect();
            reads.insert(1, Read::Get(B, b"a".to_vec()));
            expected.insert(1, Some(b"other".to_vec()));
            reads.insert(2, Read::Last(A));
            expected.insert(2, Some(b"b".to_vec()));
            reads.push(Read::Get(B, b"b".to_vec()));
            expected.push(None);
            reads.push(Read::Last(B));
            expected.push(Some(b"a".to_vec()));
            assert_eq!(view.read_many(&reads).expect("read_many"), expected, "{n}");
        }
        assert_eq!(
            view.read_many(&[]).expect("none asked"),
            Vec::<Option<Vec<u8>>>::new()
        );
    };
    let dir = tempfile::tempdir().expect("temp dir");
    check(&RedbBackend::create(&dir.path().join("t.redb"), 1 << 20, SPACES).expect("create"));
    if let Some(pg) = Postgres::start_or_skip("read_many_answers_in_order_on_both_backends") {
        check(&PostgresBackend::connect(&pg.url, "many", SPACES).expect("connect"));
    }
}
