//! The statement lifecycle as users see it: `system.queries` (status, SQLSTATE, rows, redacted
//! text), `pg_stat_activity`, `pg_cancel_backend` / `pg_terminate_backend`, and `GET /metrics`
//! parsed as Prometheus parses it, over real pgwire connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bowman_tests::{BinServer, TestServer, connect};
use tokio_postgres::SimpleQueryMessage;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// 10^9 rows to add up (a bare `count(*)` would come from the row counts, without joining).
const CROSS_JOIN_9: &str = "SELECT sum(a.x + i.x) FROM t a, t b, t c, t d, t e, t f, t g, t h, t i";

async fn ten_row_table(client: &tokio_postgres::Client) {
    client
        .batch_execute("CREATE TABLE t (x INT, s STRING) USING parquet; INSERT INTO t SELECT CAST(value AS INT) AS x, CAST(value AS STRING) AS s FROM generate_series(1, 10)")
        .await
        .expect("table t");
}

/// One system.queries row, by the exact text of its statement.
#[derive(Debug)]
struct QueryRow {
    status: String,
    sqlstate: Option<String>,
    rows: i64,
    bytes: i64,
    protocol: String,
    pid: Option<i32>,
    user: Option<String>,
    error: Option<String>,
}

async fn query_row(client: &tokio_postgres::Client, text: &str) -> Option<QueryRow> {
    let rows = client
        .query(
            "SELECT status, sqlstate, rows, bytes, protocol, pid, \"user\", error FROM system.queries WHERE query = $1 ORDER BY id DESC",
            &[&text],
        )
        .await
        .expect("system.queries answers");
    rows.first().map(|r| QueryRow {
        status: r.get(0),
        sqlstate: r.get(1),
        rows: r.get(2),
        bytes: r.get(3),
        protocol: r.get(4),
        pid: r.get(5),
        user: r.get(6),
        error: r.get(7),
    })
}

/// Wait until the statement with this text shows as running in system.queries.
async fn until_running(client: &tokio_postgres::Client, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if query_row(client, text).await.is_some_and(|r| r.status == "running") {
            return;
        }
        assert!(Instant::now() < deadline, "{text} never showed as running in system.queries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_show_in_system_queries_with_status_sqlstate_and_rows() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    ten_row_table(&admin).await;
    let analyst = server.client().await;
    let pid = backend_pid(&analyst).await;
    assert_ne!(pid, backend_pid(&admin).await, "each connection has its own pid");

    // Succeeded: its rows and bytes, its connection's pid.
    let ok = "SELECT x AS lifecycle_ok FROM t WHERE x <= 3";
    assert_eq!(analyst.simple_query(ok).await.unwrap().iter().filter(|m| matches!(m, SimpleQueryMessage::Row(_))).count(), 3);
    let row = query_row(&admin, ok).await.expect("the query is in system.queries");
    assert_eq!((row.status.as_str(), row.sqlstate.as_deref(), row.rows), ("succeeded", None, 3), "{row:?}");
    assert!(row.bytes > 0, "{row:?}");
    assert_eq!((row.protocol.as_str(), row.pid, row.user.as_deref()), ("pgwire", Some(pid), Some("bowman")), "{row:?}");

    // Extended protocol: the prepared text, each Execute its own entry.
    let prepared = "SELECT x FROM t WHERE x > $1";
    assert_eq!(analyst.query(prepared, &[&7i32]).await.unwrap().len(), 3);
    let row = query_row(&admin, prepared).await.expect("the prepared statement is in system.queries");
    assert_eq!((row.status.as_str(), row.rows), ("succeeded", 3), "{row:?}");

    // Failed while planning, and failed while streaming: each with its SQLSTATE and message.
    let missing = "SELECT * FROM no_such_table_for_lifecycle";
    assert_eq!(code(&analyst.simple_query(missing).await.unwrap_err()), "42P01");
    let row = query_row(&admin, missing).await.expect("the failed statement is in system.queries");
    assert_eq!((row.status.as_str(), row.sqlstate.as_deref()), ("failed", Some("42P01")), "{row:?}");
    assert!(row.error.as_deref().is_some_and(|e| e.contains("no_such_table_for_lifecycle")), "{row:?}");
    let zero = "SELECT 1 / (x - x) AS lifecycle_div FROM t";
    assert_eq!(code(&analyst.simple_query(zero).await.unwrap_err()), "22012");
    let row = query_row(&admin, zero).await.expect("the failed statement is in system.queries");
    assert_eq!((row.status.as_str(), row.sqlstate.as_deref()), ("failed", Some("22012")), "{row:?}");
    // The connection is still usable after its errors.
    assert_eq!(analyst.query_one("SELECT 1::INT", &[]).await.unwrap().get::<_, i32>(0), 1);

    // statement_timeout ends a statement as a cancel does.
    let timed = format!("{CROSS_JOIN_9} /* timeout */");
    analyst.simple_query("SET statement_timeout = '300ms'").await.unwrap();
    assert_eq!(code(&analyst.simple_query(&timed).await.unwrap_err()), "57014");
    analyst.simple_query("SET statement_timeout = 0").await.unwrap();
    let row = query_row(&admin, &timed).await.expect("the timed-out statement is in system.queries");
    assert_eq!((row.status.as_str(), row.sqlstate.as_deref()), ("cancelled", Some("57014")), "{row:?}");

    // `system` is Bowman's: no database may take or drop the name.
    for ddl in ["CREATE DATABASE system", "DROP DATABASE system", "CREATE DATABASE IF NOT EXISTS SYSTEM"] {
        let e = admin.simple_query(ddl).await.unwrap_err();
        assert_eq!(code(&e), "42939", "{ddl}: {e:?}");
        assert!(e.as_db_error().unwrap().message().contains("system.queries"), "{ddl}: {e:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_shows_as_cancelled_with_57014() {
    // The real binary, as the hardening tests cancel it.
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::spawn(dir.path(), &[]);
    let admin = connect(server.pg_addr).await;
    ten_row_table(&admin).await;
    let heavy = Arc::new(connect(server.pg_addr).await);
    let cancel = heavy.cancel_token();
    let running = {
        let heavy = heavy.clone();
        tokio::spawn(async move { heavy.simple_query(CROSS_JOIN_9).await })
    };
    until_running(&admin, CROSS_JOIN_9).await;
    assert!(!running.is_finished(), "the cross join finished too soon to test anything");
    cancel.cancel_query(tokio_postgres::NoTls).await.expect("cancel request sent");
    let result = tokio::time::timeout(Duration::from_secs(5), running).await.expect("the join stops after the cancel").unwrap();
    assert_eq!(code(&result.expect_err("canceled")), "57014");
    // By the time the client has its error, the entry has ended.
    let row = query_row(&admin, CROSS_JOIN_9).await.expect("the cancelled statement is in system.queries");
    assert_eq!((row.status.as_str(), row.sqlstate.as_deref()), ("cancelled", Some("57014")), "{row:?}");
    assert_eq!(heavy.query_one("SELECT 1::INT", &[]).await.unwrap().get::<_, i32>(0), 1);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stat_activity_shows_another_session_and_pg_cancel_backend_stops_it() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    ten_row_table(&admin).await;
    let heavy = Arc::new(server.client().await);
    let heavy_pid = backend_pid(&heavy).await;
    let running = {
        let heavy = heavy.clone();
        tokio::spawn(async move { heavy.simple_query(CROSS_JOIN_9).await })
    };
    until_running(&admin, CROSS_JOIN_9).await;

    // The other session is active with its query; this one too (it is reading the view).
    let me = backend_pid(&admin).await;
    let activity = admin
        .query("SELECT pid, state, query, usename, datname, backend_type, query_start IS NOT NULL FROM pg_stat_activity ORDER BY pid", &[])
        .await
        .expect("pg_stat_activity answers");
    let other = activity.iter().find(|r| r.get::<_, Option<i32>>(0) == Some(heavy_pid)).expect("the heavy session is listed");
    assert_eq!(other.get::<_, String>(1), "active");
    assert_eq!(other.get::<_, String>(2), CROSS_JOIN_9);
    assert_eq!(other.get::<_, String>(3), "bowman");
    assert_eq!(other.get::<_, String>(4), "bowman");
    assert_eq!(other.get::<_, String>(5), "client backend");
    assert!(other.get::<_, bool>(6));
    let mine = activity.iter().find(|r| r.get::<_, Option<i32>>(0) == Some(me)).expect("this session is listed");
    assert_eq!(mine.get::<_, String>(1), "active");

    // The way psql users write it: cancel by pid from the view.
    let canceled = admin
        .query_one("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active'", &[])
        .await
        .expect("pg_cancel_backend runs");
    assert!(canceled.get::<_, bool>(0));
    // 15 s: a loaded CI machine (every test binary at once on two cores) is slow to get there.
    let result = tokio::time::timeout(Duration::from_secs(15), running).await.expect("the join stops after pg_cancel_backend").unwrap();
    assert_eq!(code(&result.expect_err("canceled")), "57014");
    let row = query_row(&admin, CROSS_JOIN_9).await.expect("the cancelled statement is in system.queries");
    assert_eq!((row.status.as_str(), row.sqlstate.as_deref()), ("cancelled", Some("57014")), "{row:?}");

    // Idle now, showing its last statement; a pid no session has gives false.
    let idle: String = admin.query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&heavy_pid]).await.unwrap().get(0);
    assert_eq!(idle, "idle");
    assert!(!admin.query_one("SELECT pg_cancel_backend(2147483000)", &[]).await.unwrap().get::<_, bool>(0));
    assert_eq!(heavy.query_one("SELECT 1::INT", &[]).await.unwrap().get::<_, i32>(0), 1);

    // pg_terminate_backend closes the connection; the caller's goes on.
    let terminated: bool = admin.query_one(&format!("SELECT pg_terminate_backend({heavy_pid})"), &[]).await.unwrap().get(0);
    assert!(terminated);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !heavy.is_closed() {
        assert!(Instant::now() < deadline, "the terminated connection is still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(heavy.simple_query("SELECT 1").await.is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed: i64 = admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&heavy_pid]).await.unwrap().get(0);
        if listed == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the closed connection is still in pg_stat_activity");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin.query_one("SELECT 1::INT", &[]).await.unwrap().get::<_, i32>(0), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_system_queries_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bowman.log");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = BinServer::spawn_logging(&data, &[("BOWMAN_LOG", "debug")], Some(&log));
    let client = connect(server.pg_addr).await;
    let create = "CREATE TABLE lifecycle_s3 (a INT) USING parquet OPTIONS (access_key_id 'AKIALIFECYCLE', secret_access_key 'wJalrLifecycleSecret0', region 'us-east-1')";
    client.batch_execute(create).await.expect("a managed table with S3 options");
    let user = "CREATE USER lifecycle_bob PASSWORD 'hunter2-lifecycle'";
    client.batch_execute(user).await.expect("CREATE USER");
    let texts: Vec<String> = client
        .query("SELECT query FROM system.queries WHERE query LIKE 'CREATE %'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    for text in &texts {
        assert!(!text.contains("wJalrLifecycleSecret0") && !text.contains("hunter2-lifecycle"), "a secret in system.queries: {text}");
    }
    assert!(texts.iter().any(|t| t.contains("secret_access_key '********'") && t.contains("'AKIALIFECYCLE'")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("PASSWORD '********'")), "{texts:?}");
    drop(client);
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("statement"), "the debug log has the statements' spans: {logged}");
    assert!(!logged.contains("wJalrLifecycleSecret0") && !logged.contains("hunter2-lifecycle"), "a secret in the log");
}

/// `GET path` on the HTTP port: (status line and headers, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("http connects");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut response)).await.expect("http answers").unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}

/// The metrics a Prometheus server would scrape, parsed by a Prometheus text-format parser.
async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let (head, body) = http_get(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the exposition parses")
}

/// The sum of a family's samples whose labels include `labels`.
fn total(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            other => panic!("unexpected value {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_exactly_the_statements_run() {
    // A fresh process: the counters are the process's, and nothing else runs statements there.
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::spawn(dir.path(), &[]);
    let before = scrape(server.http_addr).await;
    for family in [
        "bowman_statements_total",
        "bowman_statement_duration_seconds",
        "bowman_rows_returned_total",
        "bowman_bytes_returned_total",
        "bowman_object_store_calls_total",
        "bowman_catalog_commits_total",
        "bowman_catalog_conflicts_total",
        "bowman_connections",
    ] {
        assert!(before.docs.contains_key(family), "{family} has no HELP line");
    }
    assert_eq!(total(&before, "bowman_statements_total", &[]), 0.0, "no statement ran yet");
    assert_eq!(total(&before, "bowman_connections", &[("protocol", "pgwire")]), 0.0);

    // Connecting sends no statement (tokio-postgres); each simple-query statement counts, and
    // each Execute of a portal (Parse and Describe do not).
    let client = connect(server.pg_addr).await;
    client.simple_query("SELECT 1; SELECT 2").await.unwrap(); // 2
    client.batch_execute("CREATE TABLE m (a INT); INSERT INTO m VALUES (1), (2), (3)").await.unwrap(); // 2
    let select = client.prepare("SELECT a FROM m WHERE a >= $1").await.unwrap(); // Parse: 0
    assert_eq!(client.query(&select, &[&2i32]).await.unwrap().len(), 2); // 1
    assert_eq!(client.query(&select, &[&1i32]).await.unwrap().len(), 3); // 1
    assert_eq!(code(&client.simple_query("SELECT * FROM nope").await.unwrap_err()), "42P01"); // 1
    assert_eq!(code(&client.query("SELECT * FROM nope", &[]).await.unwrap_err()), "42P01"); // fails at Parse: 0
    let ran = 7.0;

    let after = scrape(server.http_addr).await;
    let moved = |labels: &[(&str, &str)]| total(&after, "bowman_statements_total", labels) - total(&before, "bowman_statements_total", labels);
    assert_eq!(moved(&[]), ran, "{:?}", after.samples.iter().filter(|s| s.metric == "bowman_statements_total").collect::<Vec<_>>());
    assert_eq!(moved(&[("protocol", "pgwire")]), ran);
    assert_eq!(moved(&[("outcome", "failed"), ("sqlstate_class", "42")]), 1.0);
    assert_eq!(moved(&[("outcome", "succeeded"), ("sqlstate_class", "00")]), ran - 1.0);
    assert_eq!(total(&after, "bowman_statement_duration_seconds", &[]), ran, "the histogram counts every statement");
    // SELECT 1, SELECT 2, the INSERT's 3, then 2 and 3 rows.
    assert_eq!(total(&after, "bowman_rows_returned_total", &[]), 10.0);
    assert!(total(&after, "bowman_bytes_returned_total", &[]) > 0.0);
    assert_eq!(total(&after, "bowman_catalog_commits_total", &[]), 1.0, "the INSERT committed once");
    assert_eq!(total(&after, "bowman_catalog_conflicts_total", &[]), 0.0);
    assert!(total(&after, "bowman_object_store_calls_total", &[("kind", "put")]) >= 1.0, "the INSERT wrote a file");
    assert_eq!(total(&after, "bowman_connections", &[("protocol", "pgwire")]), 1.0);
    drop(client);
}
