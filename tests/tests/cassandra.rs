//! USING cassandra against the CQL stand-in (tests/cql-server, BOWMAN_TEST_CQL) and, for what the
//! stand-in cannot do, a real Cassandra or ScyllaDB named by BOWMAN_TEST_CASSANDRA.

use std::time::{Duration, Instant};

use bowman_tests::{TestServer, config_for, cql_stand_in, real_cassandra, text_column, unique_name};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

async fn cql(addr: &str) -> Session {
    SessionBuilder::new().known_node(addr).build().await.expect("the driver connects to the CQL server")
}

async fn run(s: &Session, stmt: &str) {
    s.query_unpaged(stmt, &[]).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
}

/// A keyspace of its own for one test.
async fn keyspace(s: &Session, prefix: &str) -> String {
    let ks = unique_name(prefix);
    run(s, &format!("CREATE KEYSPACE {ks} WITH REPLICATION = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")).await;
    ks
}

/// A Bowman server whose [cassandra] contact_points is `addr`.
async fn bowman(addr: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    config.cassandra.insert("contact_points".into(), addr.to_string());
    (TestServer::start_with(config).await, dir)
}

/// Lines of the stand-in's query log (scripts/test sets BOWMAN_TEST_CQL_QUERY_LOG) that name `ks`.
fn logged(ks: &str) -> Option<Vec<String>> {
    let path = std::env::var("BOWMAN_TEST_CQL_QUERY_LOG").ok().filter(|p| !p.is_empty())?;
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().filter(|l| l.contains(ks)).map(str::to_string).collect())
}

async fn explain(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c.simple_query(&format!("EXPLAIN {sql}")).await.expect("explain");
    text_column(&rows, 1).join("\n")
}

async fn explain_analyze(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c.simple_query(&format!("EXPLAIN ANALYZE {sql}")).await.expect("explain analyze");
    text_column(&rows, 1).join("\n")
}

fn metric(plan: &str, name: &str) -> Option<u64> {
    let at = plan.find(&format!("{name}="))? + name.len() + 1;
    plan[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}

/// The stand-in serves what the driver needs: node metadata with a token ring, schema metadata,
/// prepared statements, batches, paging; and it answers token-range queries exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_in_serves_the_driver() {
    let Some(addr) = cql_stand_in() else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "standin").await;
    run(&s, &format!("CREATE TABLE {ks}.t (id int PRIMARY KEY, name text)")).await;
    let ins = s.prepare(format!("INSERT INTO {ks}.t (id, name) VALUES (?, ?)")).await.unwrap();
    for i in 0..200 {
        s.execute_unpaged(&ins, (i, format!("n{i}"))).await.unwrap();
    }
    s.refresh_metadata().await.unwrap();
    let state = s.get_cluster_state();
    assert_eq!(state.replica_locator().ring().len(), 8, "the stand-in owns eight vnode tokens");
    let table = &state.get_keyspace(&ks).expect("keyspace metadata").tables["t"];
    assert_eq!(table.partition_key, vec!["id".to_string()]);

    // token ranges cover every row exactly once
    let q = s.prepare(format!("SELECT id FROM {ks}.t WHERE token(id) > ? AND token(id) <= ?")).await.unwrap();
    let mut bounds: Vec<i64> = state.replica_locator().ring().iter().map(|(t, _)| t.value()).collect();
    bounds.sort();
    bounds.insert(0, i64::MIN);
    bounds.push(i64::MAX);
    let mut seen = Vec::new();
    let mut nonempty = 0;
    for w in bounds.windows(2) {
        let r = s.execute_unpaged(&q, (w[0], w[1])).await.unwrap().into_rows_result().unwrap();
        let ids: Vec<i32> = r.rows::<(i32,)>().unwrap().map(|r| r.unwrap().0).collect();
        nonempty += !ids.is_empty() as usize;
        seen.extend(ids);
    }
    seen.sort();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    assert!(nonempty > 4, "rows spread over the ranges: {nonempty}");

    // a panic in the engine (decimal) answers an error; the server goes on
    run(&s, &format!("CREATE TABLE {ks}.d (id int PRIMARY KEY, v decimal)")).await;
    assert!(s.query_unpaged(format!("INSERT INTO {ks}.d (id, v) VALUES (1, 1.5)"), &[]).await.is_err());
    let r = s.query_unpaged(format!("SELECT name FROM {ks}.t WHERE id = 7"), &[]).await.unwrap().into_rows_result().unwrap();
    assert_eq!(r.rows::<(String,)>().unwrap().next().unwrap().unwrap().0, "n7");

    // USE, a batch, a paged full scan, DELETE
    s.use_keyspace(&ks, false).await.unwrap();
    let mut batch = scylla::statement::batch::Batch::new(scylla::statement::batch::BatchType::Unlogged);
    batch.append_statement("INSERT INTO t (id, name) VALUES (?, ?)");
    batch.append_statement("INSERT INTO t (id, name) VALUES (?, ?)");
    s.batch(&batch, ((500, "five hundred"), (501, "five hundred one"))).await.unwrap();
    let mut scan = scylla::statement::unprepared::Statement::new("SELECT id FROM t");
    scan.set_page_size(17);
    let pager = s.query_iter(scan, &[]).await.unwrap();
    let ids: Vec<(i32,)> = futures::TryStreamExt::try_collect(pager.rows_stream::<(i32,)>().unwrap()).await.unwrap();
    assert_eq!(ids.len(), 202);
    run(&s, "DELETE FROM t WHERE id = 500").await;
    let r = s.query_unpaged("SELECT id FROM t WHERE id = 500", &[]).await.unwrap().into_rows_result().unwrap();
    assert_eq!(r.rows_num(), 0);
}

/// The data team's statement: only `table` and `keyspace` in double quotes, the contact points
/// from the server's configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_style_view_uses_server_contact_points() {
    let Some(addr) = cql_stand_in() else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "spark").await;
    run(&s, &format!("CREATE TABLE {ks}.people (id int PRIMARY KEY, name text, visits bigint)")).await;
    let ins = s.prepare(format!("INSERT INTO {ks}.people (id, name, visits) VALUES (?, ?, ?)")).await.unwrap();
    for (i, n, v) in [(1, "ann", 10i64), (2, "bob", 20), (3, "cy", 30)] {
        s.execute_unpaged(&ins, (i, n, v)).await.unwrap();
    }
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!(
        r#"CREATE TEMPORARY VIEW people USING org.apache.spark.sql.cassandra OPTIONS (table "people", keyspace "{ks}")"#
    ))
    .await
    .unwrap();
    let rows = c.simple_query("SELECT id, name, visits FROM people ORDER BY id").await.unwrap();
    assert_eq!(text_column(&rows, 1), vec!["ann", "bob", "cy"]);
    assert_eq!(text_column(&rows, 2), vec!["10", "20", "30"]);
    let rows = c.simple_query("SELECT sum(visits), count(*) FROM people WHERE name <> 'bob'").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["40"]);
    assert_eq!(text_column(&rows, 1), vec!["2"]);
    server.stop().await;
}

/// INSERT INTO a Cassandra table, then a scan returns the same rows; NULLs are left unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_select_round_trip() {
    let Some(addr) = cql_stand_in() else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "write").await;
    run(&s, &format!("CREATE TABLE {ks}.events (day text, seq int, who text, amount double, ok boolean, at timestamp, PRIMARY KEY (day, seq))")).await;
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TABLE events USING cassandra OPTIONS (keyspace '{ks}', table 'events', consistency 'LOCAL_ONE')")).await.unwrap();
    let n = c
        .execute(
            // Cassandra's column order: partition key, clustering columns, the rest by name
            "INSERT INTO events VALUES
               ('mon', 1, 1.5, TIMESTAMP '2024-01-01 10:00:00', true, 'ann'),
               ('mon', 2, 2.25, TIMESTAMP '2024-01-01 11:30:00', false, 'bob'),
               ('tue', 1, 3.0, TIMESTAMP '2024-01-02 09:15:00', true, NULL)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    // a column list in any order
    let n = c
        .execute("INSERT INTO events (who, day, seq, at) VALUES ('cy', 'wed', 7, CAST('2024-01-03 00:00:00' AS TIMESTAMP))", &[])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let rows = c.simple_query("SELECT day, seq, who, amount, ok, CAST(at AS STRING) FROM events ORDER BY day, seq").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["mon", "mon", "tue", "wed"]);
    assert_eq!(text_column(&rows, 1), vec!["1", "2", "1", "7"]);
    assert_eq!(text_column(&rows, 2), vec!["ann", "bob", "cy"], "NULL who stays NULL");
    let oks = text_column(&rows, 4);
    assert_eq!(oks.len(), 3, "{oks:?}");
    assert!(oks[0] == oks[2] && oks[0] != oks[1], "{oks:?}");
    let amounts: Vec<f64> = text_column(&rows, 3).iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(amounts, vec![1.5, 2.25, 3.0]);
    assert_eq!(text_column(&rows, 5).len(), 4);
    assert!(text_column(&rows, 5)[1].starts_with("2024-01-01T11:30:00") || text_column(&rows, 5)[1].starts_with("2024-01-01 11:30:00"), "{:?}", text_column(&rows, 5));
    // the rows are in Cassandra, as the driver sees them
    let r = s.query_unpaged(format!("SELECT who FROM {ks}.events WHERE day = 'mon'"), &[]).await.unwrap().into_rows_result().unwrap();
    assert_eq!(r.rows_num(), 2);
    // INSERT INTO ... SELECT from one Cassandra table into another returns the same rows
    run(&s, &format!("CREATE TABLE {ks}.copy (day text, seq int, who text, amount double, ok boolean, at timestamp, PRIMARY KEY (day, seq))")).await;
    c.batch_execute(&format!("CREATE TABLE events_copy USING cassandra OPTIONS (keyspace '{ks}', table 'copy')")).await.unwrap();
    let n = c.execute("INSERT INTO events_copy SELECT * FROM events WHERE seq > 0", &[]).await.unwrap();
    assert_eq!(n, 4);
    let all = "SELECT day, seq, who, amount, ok, CAST(at AS STRING) FROM {} ORDER BY day, seq";
    let a = c.simple_query(&all.replace("{}", "events")).await.unwrap();
    let b = c.simple_query(&all.replace("{}", "events_copy")).await.unwrap();
    for i in 0..6 {
        assert_eq!(text_column(&a, i), text_column(&b, i), "column {i}");
    }
    // a NULL is sent unset: the stored value stays (the stand-in also keeps it for a written
    // NULL, so write_nulls 'true' is tested against a real Cassandra only)
    c.execute("INSERT INTO events (day, seq, who) VALUES ('mon', 1, NULL)", &[]).await.unwrap();
    // (no `seq = 1` here: the stand-in answers clustering restrictions wrongly)
    let rows = c.simple_query("SELECT seq, who FROM events WHERE day = 'mon' ORDER BY seq").await.unwrap();
    assert_eq!(text_column(&rows, 1), vec!["ann", "bob"]);
    if let Some(log) = logged(&ks) {
        assert!(log.iter().any(|l| l.starts_with("PREPARE INSERT INTO") && l.contains("VALUES (?, ?, ?, ?, ?, ?)")), "{log:?}");
        // the two 'mon' rows went in one batch of their partition
        assert!(log.iter().filter(|l| l.starts_with("BATCH INSERT INTO")).count() >= 2, "{log:?}");
    }
    server.stop().await;
}

/// `=` and `IN` on the partition key read partitions directly: no token-range scan runs. A full
/// scan runs as the ring's token ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_reads_and_token_range_scans() {
    let Some(addr) = cql_stand_in() else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "reads").await;
    run(&s, &format!("CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)")).await;
    let ins = s.prepare(format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)")).await.unwrap();
    for i in 0..100 {
        s.execute_unpaged(&ins, (i, format!("v{i}"))).await.unwrap();
    }
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TEMPORARY VIEW kv USING cassandra OPTIONS (keyspace '{ks}', table 'kv', page_size '7')")).await.unwrap();

    let before = logged(&ks).map(|l| l.len());
    let plan = explain(&c, "SELECT v FROM kv WHERE k = 42").await;
    assert!(plan.contains(&format!("cql=SELECT v FROM {ks}.kv WHERE k = ?")), "{plan}");
    assert!(plan.contains("partition_reads=1"), "{plan}");
    let rows = c.simple_query("SELECT v FROM kv WHERE k = 42").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["v42"]);
    let analyzed = explain_analyze(&c, "SELECT v FROM kv WHERE k IN (3, 5, 5, 1000)").await;
    assert_eq!(metric(&analyzed, "partition_reads"), Some(3), "{analyzed}");
    assert_eq!(metric(&analyzed, "token_ranges").unwrap_or(0), 0, "{analyzed}");
    let rows = c.simple_query("SELECT v FROM kv WHERE k IN (3, 5, 5, 1000) ORDER BY v").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["v3", "v5"]);
    if let (Some(before), Some(log)) = (before, logged(&ks)) {
        let new = &log[before..];
        assert!(new.iter().all(|l| !l.contains("token(")), "a partition lookup ran a token-range scan: {new:?}");
        assert!(new.iter().any(|l| l.starts_with("EXECUTE SELECT v FROM") && l.contains("WHERE k = ?")), "{new:?}");
    }

    // a filter on a regular column is DataFusion's, over a full scan
    let before = logged(&ks).map(|l| l.len());
    let analyzed = explain_analyze(&c, "SELECT k FROM kv WHERE v = 'v9'").await;
    assert_eq!(metric(&analyzed, "token_ranges"), Some(9), "eight ring tokens make nine ranges: {analyzed}");
    assert_eq!(metric(&analyzed, "partition_reads").unwrap_or(0), 0, "{analyzed}");
    assert!(metric(&analyzed, "pages").unwrap() >= 9, "{analyzed}");
    assert!(!analyzed.contains("ALLOW FILTERING"), "{analyzed}");
    let rows = c.simple_query("SELECT count(*), count(DISTINCT k), min(k), max(k) FROM kv").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["100"]);
    assert_eq!(text_column(&rows, 1), vec!["100"]);
    if let (Some(before), Some(log)) = (before, logged(&ks)) {
        let scans = log[before..].iter().filter(|l| l.starts_with("EXECUTE") && l.contains("token(k) > ? AND token(k) <= ?")).count();
        assert!(scans >= 9, "{:?}", &log[before..]);
    }
    // an IN list past in_limit is a token-range scan with the filter in Bowman
    c.batch_execute(&format!("CREATE TEMPORARY VIEW kv2 USING cassandra OPTIONS (keyspace '{ks}', table 'kv', in_limit '2')")).await.unwrap();
    let analyzed = explain_analyze(&c, "SELECT v FROM kv2 WHERE k IN (3, 5, 7)").await;
    assert_eq!(metric(&analyzed, "token_ranges"), Some(9), "{analyzed}");
    let rows = c.simple_query("SELECT v FROM kv2 WHERE k IN (3, 5, 7) ORDER BY v").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["v3", "v5", "v7"]);
    // LIMIT reaches the CQL when no filter is left to DataFusion
    let plan = explain(&c, "SELECT k FROM kv LIMIT 5").await;
    assert!(plan.contains("LIMIT 5"), "{plan}");
    let rows = c.simple_query("SELECT k FROM kv LIMIT 5").await.unwrap();
    assert_eq!(text_column(&rows, 0).len(), 5);
    server.stop().await;
}

/// A composite partition key: both columns fixed is a partition read; one of them is a scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_partition_key() {
    let Some(addr) = cql_stand_in() else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "composite").await;
    run(&s, &format!("CREATE TABLE {ks}.m (a text, b int, v bigint, PRIMARY KEY ((a, b)))")).await;
    let ins = s.prepare(format!("INSERT INTO {ks}.m (a, b, v) VALUES (?, ?, ?)")).await.unwrap();
    for a in ["x", "y"] {
        for b in 0..5 {
            s.execute_unpaged(&ins, (a, b, (b * 10) as i64)).await.unwrap();
        }
    }
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TEMPORARY VIEW m USING cassandra OPTIONS (keyspace '{ks}', table 'm')")).await.unwrap();
    let plan = explain(&c, "SELECT v FROM m WHERE a IN ('x', 'y') AND b = 3").await;
    assert!(plan.contains("partition_reads=2"), "{plan}");
    let rows = c.simple_query("SELECT a, v FROM m WHERE a IN ('x', 'y') AND b = 3 ORDER BY a").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["x", "y"]);
    assert_eq!(text_column(&rows, 1), vec!["30", "30"]);
    let plan = explain(&c, "SELECT v FROM m WHERE b = 3").await;
    assert!(plan.contains("token_ranges=") && plan.contains("token(a, b)"), "{plan}");
    let rows = c.simple_query("SELECT count(*) FROM m WHERE b = 3").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["2"]);
    server.stop().await;
}

/// A node that is down: 08001 within 10 s, and the client's connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_is_08001_quickly() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (server, _dir) = bowman(&dead).await;
    let c = server.client().await;
    let t = Instant::now();
    let e = c
        .batch_execute(r#"CREATE TEMPORARY VIEW gone USING org.apache.spark.sql.cassandra OPTIONS (table "t", keyspace "ks")"#)
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert_eq!(code(&e), "08001", "{e:?}");
    assert!(format!("{:?}", e).contains(&dead), "{e:?}");
    let rows = c.simple_query("SELECT 1 + 1").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["2"]);
    // a password never shows in the error
    let e = c
        .batch_execute(&format!(
            "CREATE TEMPORARY VIEW gone2 USING cassandra OPTIONS (keyspace 'ks', table 't', contact_points '{dead}', username 'u', password 'hunter2secret')"
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "08001", "{e:?}");
    assert!(!format!("{e:?}").contains("hunter2secret"));
    server.stop().await;
}

/// A private stand-in this test can stop: (child, host:port).
fn own_stand_in() -> Option<(std::process::Child, String)> {
    use std::io::BufRead;
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("bowman-cql-test-server");
    if !bin.exists() {
        eprintln!("not run: {} is not built (cargo build -p bowman-cql-test-server)", bin.display());
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(bin)
        .args(["--listen", &addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take()?).read_line(&mut line).ok()?;
    assert!(line.starts_with("listening on"), "{line}");
    Some((child, addr))
}

/// The node goes down after Bowman connected: the next statement fails with 08001 within
/// 10 s, and the client's connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_that_dies_is_08001_quickly() {
    let Some((mut child, addr)) = own_stand_in() else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "dies").await;
    run(&s, &format!("CREATE TABLE {ks}.t (id int PRIMARY KEY, v text)")).await;
    run(&s, &format!("INSERT INTO {ks}.t (id, v) VALUES (1, 'one')")).await;
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TABLE t USING cassandra OPTIONS (keyspace '{ks}', table 't')")).await.unwrap();
    let rows = c.simple_query("SELECT v FROM t").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["one"]);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(s);
    for sql in ["SELECT v FROM t", "SELECT v FROM t WHERE id = 1", "INSERT INTO t VALUES (2, 'two')"] {
        let t = Instant::now();
        let e = c.simple_query(sql).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10), "{sql} took {:?}", t.elapsed());
        assert_eq!(code(&e), "08001", "{sql}: {e:?}");
    }
    let rows = c.simple_query("SELECT 40 + 2").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["42"]);
    server.stop().await;
}

/// Bad option values are 22023 with a message naming the option; identifiers cannot inject CQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_options_are_22023() {
    let (server, _dir) = bowman("127.0.0.1:1").await;
    let c = server.client().await;
    for (opts, word) in [
        ("keyspace 'ks\"; DROP KEYSPACE x; --', table 't'", "keyspace"),
        ("keyspace 'ks', table ''", "table"),
        ("keyspace 'ks', table 't', page_size 'lots'", "page_size"),
        ("keyspace 'ks', table 't', page_size '-5'", "page_size"),
        ("keyspace 'ks', table 't', consistency 'SOME'", "consistency"),
        ("keyspace 'ks', table 't', contact_points 'host:70000'", "contact point"),
        ("keyspace 'ks', table 't', write_nulls 'maybe'", "write_nulls"),
        ("keyspace 'ks', table 't', colour 'blue'", "colour"),
        ("table 't'", "keyspace"),
    ] {
        let e = c.batch_execute(&format!("CREATE TEMPORARY VIEW h USING cassandra OPTIONS ({opts})")).await.unwrap_err();
        assert_eq!(code(&e), "22023", "{opts}: {e:?}");
        assert!(format!("{e:?}").contains(word), "{opts}: {e:?}");
    }
    server.stop().await;
}

/// An unknown table is a clear error, and the stand-in keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_is_reported() {
    let Some(addr) = cql_stand_in() else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "missing").await;
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    let e = c.batch_execute(&format!("CREATE TEMPORARY VIEW nope USING cassandra OPTIONS (keyspace '{ks}', table 'nope')")).await.unwrap_err();
    assert!(format!("{e:?}").contains("no table"), "{e:?}");
    server.stop().await;
}

// ---- a real Cassandra or ScyllaDB only: what the stand-in gets wrong -------------------------

/// Clustering prefix with a range on the last column is pushed when the partition key is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustering_ranges_are_pushed() {
    let Some(addr) = real_cassandra("clustering_ranges_are_pushed") else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "ck").await;
    run(&s, &format!("CREATE TABLE {ks}.ts (p int, c1 int, c2 int, v text, PRIMARY KEY (p, c1, c2))")).await;
    let ins = s.prepare(format!("INSERT INTO {ks}.ts (p, c1, c2, v) VALUES (?, ?, ?, ?)")).await.unwrap();
    for c1 in 0..3 {
        for c2 in 0..10 {
            s.execute_unpaged(&ins, (1, c1, c2, format!("{c1}-{c2}"))).await.unwrap();
        }
    }
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TEMPORARY VIEW ts USING cassandra OPTIONS (keyspace '{ks}', table 'ts')")).await.unwrap();
    let q = "SELECT v FROM ts WHERE p = 1 AND c1 = 2 AND c2 > 3 AND c2 <= 6 ORDER BY v";
    let plan = explain(&c, q).await;
    assert!(plan.contains("WHERE p = ? AND c1 = ? AND c2 > ? AND c2 <= ?"), "{plan}");
    assert!(!plan.contains("FilterExec"), "{plan}");
    let rows = c.simple_query(q).await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["2-4", "2-5", "2-6"]);
    // a range on c2 without c1 fixed stays in DataFusion
    let plan = explain(&c, "SELECT v FROM ts WHERE p = 1 AND c2 = 3").await;
    assert!(plan.contains("FilterExec"), "{plan}");
    server.stop().await;
}

/// Every CQL type the stand-in cannot store, read and written through Bowman.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips() {
    let Some(addr) = real_cassandra("every_type_round_trips") else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "types").await;
    run(&s, &format!("CREATE TYPE {ks}.addr (street text, no int)")).await;
    run(
        &s,
        &format!(
            "CREATE TABLE {ks}.all (id int PRIMARY KEY, d decimal, vi varint, si smallint, ti tinyint, tu timeuuid, u uuid,
             dt date, tm time, du duration, ip inet, b blob, l list<int>, st set<text>, m map<text, int>,
             a frozen<addr>, tp tuple<int, text>)"
        ),
    )
    .await;
    run(&s, &format!("CREATE TABLE {ks}.cnt (id int PRIMARY KEY, n counter)")).await;
    run(
        &s,
        &format!(
            "INSERT INTO {ks}.all (id, d, vi, si, ti, tu, u, dt, tm, du, ip, b, l, st, m, a, tp) VALUES
             (1, 12.345, 123456789012345678901234567890, 7, -3, 50554d6e-29bb-11e5-b345-feff819cdc9f,
              123e4567-e89b-12d3-a456-426614174000, '2024-02-29', '13:14:15.123456789', 1mo2d3h, '10.1.2.3', 0xcafe,
              [1, 2, 3], {{'a', 'b'}}, {{'x': 1}}, {{street: 'Main', no: 5}}, (4, 'four'))"
        ),
    )
    .await;
    run(&s, &format!("UPDATE {ks}.cnt SET n = n + 5 WHERE id = 1")).await;
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TEMPORARY VIEW alltypes USING cassandra OPTIONS (keyspace '{ks}', table 'all');
         CREATE TEMPORARY VIEW cnt USING cassandra OPTIONS (keyspace '{ks}', table 'cnt');"
    ))
    .await
    .unwrap();
    let rows = c
        .simple_query(
            "SELECT CAST(d AS STRING), CAST(vi AS STRING), si, ti, tu, u, CAST(dt AS STRING), CAST(tm AS STRING), ip,
                    l[1], st[2], m['x'], a['street'], a['no'], tp['1'] FROM alltypes",
        )
        .await
        .unwrap();
    let got: Vec<String> = (0..15).map(|i| text_column(&rows, i)[0].clone()).collect();
    assert!(got[0].starts_with("12.345"), "{got:?}");
    assert_eq!(got[1], "123456789012345678901234567890");
    assert_eq!(&got[2..4], &["7", "-3"]);
    assert_eq!(got[4], "50554d6e-29bb-11e5-b345-feff819cdc9f");
    assert_eq!(got[6], "2024-02-29");
    assert!(got[7].starts_with("13:14:15.123456789"), "{got:?}");
    assert_eq!(got[8], "10.1.2.3");
    assert_eq!(&got[9..], &["1", "b", "1", "Main", "5", "four"]);
    let rows = c.simple_query("SELECT n FROM cnt").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["5"]);
    // and back: INSERT ... SELECT copies every column
    run(&s, &format!("CREATE TABLE {ks}.copy (id int PRIMARY KEY, d decimal, vi varint, si smallint, ti tinyint, tu timeuuid, u uuid, dt date, tm time, du duration, ip inet, b blob, l list<int>, st set<text>, m map<text, int>, a frozen<addr>, tp tuple<int, text>)")).await;
    c.batch_execute(&format!("CREATE TEMPORARY VIEW copy USING cassandra OPTIONS (keyspace '{ks}', table 'copy')")).await.unwrap();
    c.execute("INSERT INTO copy SELECT * FROM alltypes", &[]).await.unwrap();
    let a = c.simple_query("SELECT * FROM alltypes").await.unwrap();
    let b = c.simple_query("SELECT * FROM copy").await.unwrap();
    for i in 0..17 {
        assert_eq!(text_column(&a, i), text_column(&b, i), "column {i}");
    }
    server.stop().await;
}

/// NULLs are written as unset values (no tombstone) unless write_nulls is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_are_unset_unless_asked() {
    let Some(addr) = real_cassandra("nulls_are_unset_unless_asked") else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "nulls").await;
    run(&s, &format!("CREATE TABLE {ks}.t (id int PRIMARY KEY, a text, b text)")).await;
    run(&s, &format!("INSERT INTO {ks}.t (id, a, b) VALUES (1, 'keep', 'keep')")).await;
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TEMPORARY VIEW t1 USING cassandra OPTIONS (keyspace '{ks}', table 't');
         CREATE TEMPORARY VIEW t2 USING cassandra OPTIONS (keyspace '{ks}', table 't', write_nulls 'true');"
    ))
    .await
    .unwrap();
    c.execute("INSERT INTO t1 SELECT 1, CAST(NULL AS STRING), 'new'", &[]).await.unwrap();
    let rows = c.simple_query("SELECT a, b FROM t1").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["keep"], "an unset value leaves the old one");
    c.execute("INSERT INTO t2 SELECT 1, CAST(NULL AS STRING), 'new'", &[]).await.unwrap();
    let rows = c.simple_query("SELECT count(a) FROM t2").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["0"]);
    server.stop().await;
}


/// Scan throughput through the stand-in (a number for the report, and a check that a larger
/// table reads completely over many pages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reads_a_larger_table_completely() {
    let Some(addr) = cql_stand_in() else { return };
    let s = cql(&addr).await;
    let ks = keyspace(&s, "bulk").await;
    run(&s, &format!("CREATE TABLE {ks}.b (id bigint PRIMARY KEY, name text, score double)")).await;
    let (server, _dir) = bowman(&addr).await;
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TABLE b USING cassandra OPTIONS (keyspace '{ks}', table 'b', page_size '1000')")).await.unwrap();
    let n = 20_000;
    let t = Instant::now();
    let written = c
        .execute(&format!("INSERT INTO b SELECT value, concat('name-', CAST(value AS STRING)), value * 0.5 FROM range({n})"), &[])
        .await
        .unwrap();
    assert_eq!(written, n);
    let write = t.elapsed();
    let t = Instant::now();
    let rows = c.simple_query("SELECT count(*), count(DISTINCT id), sum(id), max(length(name)) FROM b").await.unwrap();
    let read = t.elapsed();
    assert_eq!(text_column(&rows, 0), vec![n.to_string()]);
    assert_eq!(text_column(&rows, 1), vec![n.to_string()]);
    assert_eq!(text_column(&rows, 2), vec![(n * (n - 1) / 2).to_string()]);
    eprintln!(
        "cassandra stand-in: wrote {n} rows in {write:?} ({:.0} rows/s), scanned them in {read:?} ({:.0} rows/s)",
        n as f64 / write.as_secs_f64(),
        n as f64 / read.as_secs_f64()
    );
    server.stop().await;
}
