//! End-to-end tests over real connections: psql, tokio-postgres (extended protocol, binary
//! results), the bowman binary (restart, kill -9, SIGTERM, memory), S3 on SeaweedFS.

use std::time::Duration;

use bowman_tests::{BinServer, S3Env, TestServer, connect, psql, text_column};
use tokio_postgres::types::Type;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

#[tokio::test]
async fn psql_creates_inserts_and_prunes_partitions() {
    let server = TestServer::start().await;
    let (out, err, ok) = psql(
        server.pg_addr,
        "CREATE DATABASE ev;
         CREATE TABLE ev.t (id INT, v STRING, dt DATE) USING parquet PARTITIONED BY (dt);
         INSERT INTO ev.t VALUES (1, 'a', '2018-03-05'), (2, 'b', '2018-03-06');
         \\pset format unaligned
         SELECT id, v FROM ev.t WHERE dt = '2018-03-05';
         EXPLAIN SELECT * FROM ev.t WHERE dt = '2018-03-05';",
        &["-v", "ON_ERROR_STOP=1"],
    )
    .await;
    assert!(ok, "psql failed: {err}");
    assert!(out.contains("id|v\n1|a\n(1 row)"), "{out}");
    // Only the 2018-03-05 partition's directory is in the scan.
    let plan = out.split("plan_type").nth(1).expect("explain output");
    assert!(plan.contains("dt=2018-03-05"), "{plan}");
    assert!(!plan.contains("dt=2018-03-06"), "{plan}");
    server.stop().await;
}

#[tokio::test]
async fn psql_errors_carry_sqlstate_and_session_continues() {
    let server = TestServer::start().await;
    let (out, err, _) = psql(
        server.pg_addr,
        "SELEC 1;\nSELECT * FROM nope;\nSELECT 42 AS answer;",
        &[],
    )
    .await;
    assert!(err.contains("ERROR:  42601"), "{err}");
    assert!(err.contains("LINE 1: SELEC 1;"), "psql shows the position: {err}");
    assert!(err.contains("ERROR:  42P01"), "{err}");
    assert!(out.contains("42"), "{out}");
    server.stop().await;
}

#[tokio::test]
async fn extended_protocol_typed_parameters_round_trip_in_binary() {
    let server = TestServer::start().await;
    let c = server.client().await;
    let date = chrono::NaiveDate::from_ymd_opt(2018, 3, 5).unwrap();
    let ts = date.and_hms_micro_opt(10, 11, 12, 123456).unwrap();
    let row = c
        .query_one(
            "SELECT $1::INT, $2::BIGINT, $3::DOUBLE, $4::TEXT, $5::BOOLEAN, $6::DATE, $7::TIMESTAMP, $8::INT",
            &[&7i32, &(1i64 << 40), &0.1f64, &"é'\"x", &true, &date, &ts, &None::<i32>],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
    assert_eq!(row.get::<_, i64>(1), 1i64 << 40);
    assert_eq!(row.get::<_, f64>(2), 0.1);
    assert_eq!(row.get::<_, String>(3), "é'\"x");
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, chrono::NaiveDate>(5), date);
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(6), ts);
    assert_eq!(row.get::<_, Option<i32>>(7), None);
    server.stop().await;
}

#[tokio::test]
async fn prepared_statements_are_reused_and_infer_parameter_types() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute("CREATE TABLE nums (n BIGINT, label STRING); INSERT INTO nums VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        .await
        .unwrap();
    let stmt = c.prepare("SELECT label FROM nums WHERE n = $1").await.unwrap();
    assert_eq!(stmt.params(), &[Type::INT8], "parameter type inferred from the column");
    for (n, want) in [(1i64, "one"), (3, "three"), (2, "two")] {
        let rows = c.query(&stmt, &[&n]).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, String>(0), want);
    }
    let insert = c.prepare("INSERT INTO nums VALUES ($1, $2)").await.unwrap();
    assert_eq!(c.execute(&insert, &[&4i64, &"four"]).await.unwrap(), 1);
    let count: i64 = c.query_one("SELECT count(*) FROM nums", &[]).await.unwrap().get(0);
    assert_eq!(count, 4);
    server.stop().await;
}

#[tokio::test]
async fn result_columns_have_postgres_type_oids() {
    let server = TestServer::start().await;
    let c = server.client().await;
    let stmt = c
        .prepare(
            "SELECT CAST(1 AS SMALLINT) AS i2, CAST(1 AS INT) AS i4, CAST(1 AS BIGINT) AS i8, CAST(1 AS REAL) AS f4,
                    CAST(1 AS DOUBLE) AS f8, 'x' AS t, true AS b, DATE '2020-01-01' AS d,
                    TIMESTAMP '2020-01-01 00:00:00' AS ts, CAST(1.5 AS DECIMAL(10,2)) AS n,
                    CAST('ab' AS BYTEA) AS bin, CAST('12:00:00' AS TIME) AS tm",
        )
        .await
        .unwrap();
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::TEXT,
            Type::BOOL,
            Type::DATE,
            Type::TIMESTAMP,
            Type::NUMERIC,
            Type::BYTEA,
            Type::TIME
        ]
    );
    // And the values decode in binary format.
    let row = c.query_one(&stmt, &[]).await.unwrap();
    assert_eq!(row.get::<_, i16>(0), 1);
    assert_eq!(row.get::<_, f32>(3), 1.0);
    assert_eq!(row.get::<_, Vec<u8>>(10), b"ab".to_vec());
    server.stop().await;
}

#[tokio::test]
async fn every_error_has_its_sqlstate_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let c = server.client().await;
    let cases = [
        ("SELEC 1", "42601"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT no_such_column FROM (SELECT 1 AS a)", "42703"),
        ("CREATE TABLE d (a INT)", ""),
        ("CREATE TABLE d (a INT)", "42P07"),
        ("USE no_such_db", "3F000"),
        ("CREATE MATERIALIZED VIEW v AS SELECT 1", "0A000"),
        ("CREATE VIEW d AS SELECT 1", "42P07"),
        ("DROP VIEW d", "42809"),
        ("DROP TABLE IF EXISTS no_such_table", ""),
        ("SELECT 1 / 0", "22012"),
        ("SELECT CAST('abc' AS INT)", "22P02"),
        ("CREATE TABLE x (a INT) USING nosuchformat", "42704"),
        ("CREATE TABLE y (a INT) LOCATION '/nonexistent/place'", "58P01"),
    ];
    for (sql, want) in cases {
        match c.batch_execute(sql).await {
            Ok(()) => assert!(want.is_empty(), "{sql} succeeded, wanted {want}"),
            Err(e) => assert_eq!(code(&e), want, "{sql}: {e:?}"),
        }
        // Same connection, next statement.
        let one: i64 = c.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
    // Extended protocol errors too.
    let err = c.prepare("SELECT * FROM nope WHERE a = $1").await.unwrap_err();
    assert_eq!(code(&err), "42P01");
    assert_eq!(c.query_one("SELECT 2::INT", &[]).await.unwrap().get::<_, i32>(0), 2);
    server.stop().await;
}

#[tokio::test]
async fn malformed_parquet_is_a_clear_error() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.parquet"), b"this is not parquet at all").unwrap();
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TABLE broken (a INT) USING parquet LOCATION '{}'", dir.path().display())).await.unwrap();
    let err = c.query("SELECT * FROM broken", &[]).await.unwrap_err();
    assert_eq!(code(&err), "XX001", "{err:?}");
    assert!(err.as_db_error().unwrap().message().to_lowercase().contains("parquet"), "{err:?}");
    // Inference over the same file fails the same way, at CREATE.
    let err = c.batch_execute(&format!("CREATE TABLE broken2 USING parquet LOCATION '{}'", dir.path().display())).await.unwrap_err();
    assert_eq!(code(&err), "XX001", "{err:?}");
    assert_eq!(c.query_one("SELECT 3::INT", &[]).await.unwrap().get::<_, i32>(0), 3);
    server.stop().await;
}

#[tokio::test]
async fn catalog_and_data_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE DATABASE keep; CREATE TABLE keep.t (a INT, dt STRING) PARTITIONED BY (dt);
         INSERT INTO keep.t VALUES (1, 'x'), (2, 'y')",
    )
    .await
    .unwrap();
    drop(c);
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    let rows = c.simple_query("SHOW TABLES IN keep").await.unwrap();
    assert_eq!(text_column(&rows, 1), vec!["t".to_string()]);
    let n: i64 = c.query_one("SELECT count(*) FROM keep.t WHERE dt = 'y'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    server.stop().await;
}

#[tokio::test]
async fn kill_9_at_any_moment_leaves_a_consistent_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::spawn(dir.path(), &[]);
    let c = connect(server.pg_addr).await;
    c.batch_execute("CREATE DATABASE crash; CREATE TABLE crash.t (a INT); INSERT INTO crash.t VALUES (1), (2)").await.unwrap();
    // DDL racing the kill: whatever committed must be whole, whatever did not must be absent.
    let addr = server.pg_addr;
    let racer = tokio::spawn(async move {
        let c = connect(addr).await;
        for i in 0..1000 {
            if c.batch_execute(&format!("CREATE TABLE crash.r{i} (a INT, b STRING)")).await.is_err() {
                break;
            }
        }
    });
    // Kill once a few racing tables have committed, mid-stream of further DDL.
    let watcher = connect(addr).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tables = watcher.simple_query("SHOW TABLES IN crash").await.unwrap();
        if text_column(&tables, 1).len() >= 4 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    let _ = racer.await;

    let server = BinServer::spawn(dir.path(), &[]);
    let c = connect(server.pg_addr).await;
    let n: i64 = c.query_one("SELECT count(*) FROM crash.t", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    // Every table the catalog lists is fully usable.
    let tables = c.simple_query("SHOW TABLES IN crash").await.unwrap();
    let names = text_column(&tables, 1);
    assert!(names.len() > 1, "some racing CREATE TABLEs committed before the kill: {names:?}");
    for name in names {
        c.batch_execute(&format!("SELECT * FROM crash.{name}")).await.unwrap();
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = BinServer::spawn(dir.path(), &[]);
    let idle = connect(server.pg_addr).await;
    idle.batch_execute("SELECT 1").await.unwrap();
    // A statement in flight when SIGTERM arrives still completes.
    let busy = connect(server.pg_addr).await;
    let running = tokio::spawn(async move { busy.query("SELECT count(*) FROM generate_series(1, 3000000)", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.signal(libc::SIGTERM);
    let result = running.await.unwrap();
    assert!(result.is_ok(), "in-flight statement was cut off: {result:?}");
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(20))).await.unwrap();
    let status = status.expect("bowman exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    drop(idle);
}

#[tokio::test]
async fn health_endpoint_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut s = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_million_rows_stream_without_buffering() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::spawn(dir.path(), &[]);
    let c = connect(server.pg_addr).await;
    c.batch_execute("SELECT 1").await.unwrap();
    let baseline = server.rss_kib();
    let pid_rss = {
        let pid = server.pid();
        move || bowman_tests::rss_kib_of(pid)
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(pid_rss());
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    // The real client. (psql itself holds the whole result; the server must not.)
    let addr = server.pg_addr;
    let counted = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("psql")
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-U", "bowman", "-X", "-A", "-t", "-c"])
            .arg("SELECT value, value * 2 AS twice FROM generate_series(1, 10000000)")
            .output()
            .expect("psql");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout.iter().filter(|b| **b == b'\n').count()
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = handle.join().unwrap();
    assert_eq!(counted, 10_000_000);
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("server RSS: baseline {} MiB, peak {} MiB, growth {growth_mib} MiB", baseline / 1024, peak / 1024);
    assert!(growth_mib < 500, "server memory grew by {growth_mib} MiB while streaming");
}

#[tokio::test]
async fn s3_partitioned_parquet_table() {
    let Some(s3) = S3Env::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    let location = s3.unique_prefix("events");
    c.batch_execute(&format!(
        "CREATE DATABASE lake;
         CREATE TABLE lake.events (user_id BIGINT, kind STRING, dt DATE) USING parquet PARTITIONED BY (dt)
           LOCATION '{location}' OPTIONS ({})",
        s3.options()
    ))
    .await
    .unwrap();
    c.batch_execute("INSERT INTO lake.events VALUES (1, 'a', '2018-03-05'), (2, 'b', '2018-03-06'), (3, 'c', '2018-03-05')")
        .await
        .unwrap();
    let rows = c.query("SELECT user_id FROM lake.events WHERE dt = '2018-03-05' ORDER BY user_id", &[]).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), vec![1, 3]);
    let explain = c.simple_query("EXPLAIN SELECT * FROM lake.events WHERE dt = '2018-03-05'").await.unwrap();
    let plan: String = text_column(&explain, 1).concat();
    assert!(plan.contains("dt=2018-03-05") && !plan.contains("dt=2018-03-06"), "{plan}");

    // The secret never comes back.
    let create = c.simple_query("SHOW CREATE TABLE lake.events").await.unwrap();
    let text: String = text_column(&create, 0).concat();
    assert!(text.contains(&location) && !text.contains(&s3.secret_key), "{text}");
    assert_eq!(
        text,
        format!(
            "CREATE TABLE lake.events (\n  user_id BIGINT,\n  kind STRING,\n  dt DATE)\nUSING parquet\nOPTIONS (\n  'access_key_id' = '{}',\n  'allow_http' = 'true',\n  'endpoint' = '{}',\n  'region' = 'us-east-1')\nPARTITIONED BY (dt)\nLOCATION '{location}'",
            s3.access_key, s3.endpoint
        )
    );

    // A restart finds the table, its options and its data.
    drop(c);
    server.stop().await;
    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    let n: i64 = c.query_one("SELECT count(*) FROM lake.events", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);

    // A second table over the same prefix infers the schema from S3.
    c.batch_execute(&format!(
        "CREATE TABLE lake.inferred USING parquet PARTITIONED BY (dt) LOCATION '{location}' OPTIONS ({})",
        s3.options()
    ))
    .await
    .unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM lake.inferred WHERE dt = '2018-03-06'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    server.stop().await;
}

#[tokio::test]
async fn s3_bad_endpoint_bucket_and_credentials_are_clear_errors() {
    let Some(s3) = S3Env::from_env() else { return };
    let server = TestServer::start().await;
    let c = server.client().await;
    let cases = [
        // Nothing listens on port 1.
        (
            format!(
                "CREATE TABLE t1 (a INT) LOCATION 's3://{}/x' OPTIONS (endpoint 'http://127.0.0.1:1', allow_http 'true', region 'us-east-1', access_key_id 'k', secret_access_key 's')",
                s3.bucket
            ),
            "08001",
        ),
        (format!("CREATE TABLE t2 (a INT) LOCATION 's3://no-such-bucket-bowman/x' OPTIONS ({})", s3.options()), "58P01"),
        (
            format!(
                "CREATE TABLE t3 (a INT) LOCATION 's3://{}/x' OPTIONS (endpoint '{}', allow_http 'true', region 'us-east-1', access_key_id '{}', secret_access_key 'wrong-secret')",
                s3.bucket, s3.endpoint, s3.access_key
            ),
            "28000",
        ),
    ];
    for (sql, want) in cases {
        let err = c.batch_execute(&sql).await.unwrap_err();
        assert_eq!(code(&err), want, "{sql}: {err:?}");
        let msg = err.as_db_error().unwrap().message().to_string();
        assert!(!msg.contains("wrong-secret") && !msg.contains(&s3.secret_key), "secret leaked: {msg}");
    }
    assert_eq!(c.query_one("SELECT 1::INT", &[]).await.unwrap().get::<_, i32>(0), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribute_by_partition_writes_one_sorted_file_per_partition() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE daily (user_id BIGINT, payload STRING, dt STRING) USING parquet PARTITIONED BY (dt);
         INSERT INTO daily PARTITION (dt)
           SELECT (value * 7919) % 100000 AS user_id, CAST(value AS STRING) AS payload,
                  concat('2018-03-0', CAST(value % 5 + 1 AS STRING)) AS dt
           FROM generate_series(1, 200000)
           DISTRIBUTE BY dt SORT BY user_id",
    )
    .await
    .unwrap();
    let table_dir = server.data_dir().join("warehouse").join("daily");
    let mut partitions: Vec<_> = std::fs::read_dir(&table_dir).unwrap().flatten().map(|e| e.path()).collect();
    partitions.sort();
    assert_eq!(partitions.len(), 5, "{partitions:?}");
    c.batch_execute("SET datafusion.execution.target_partitions = 1").await.unwrap();
    // An unpartitioned write of the same rows makes one file too.
    c.batch_execute("CREATE TABLE flat USING parquet AS SELECT * FROM daily").await.unwrap();
    let flat = files_under(&server.data_dir().join("warehouse").join("flat"));
    assert_eq!(flat.len(), 1, "{flat:?}");
    for (i, dir) in partitions.iter().enumerate() {
        let files = files_under(dir);
        assert_eq!(files.len(), 1, "one file in {}: {files:?}", dir.display());
        // Read the file back in storage order and check it is sorted by user_id.
        c.batch_execute(&format!("CREATE TABLE part{i} USING parquet LOCATION '{}'", dir.display())).await.unwrap();
        let rows = c.query(&format!("SELECT user_id FROM part{i}"), &[]).await.unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids.len(), 40_000);
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "{} is not sorted by user_id", dir.display());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_writes_report_progress_as_notices() {
    let server = TestServer::start().await;
    let (_, err, ok) = psql(
        server.pg_addr,
        "SET progress_interval = '20ms';
         CREATE TABLE progress (v BIGINT, k STRING) USING parquet PARTITIONED BY (k);
         INSERT INTO progress SELECT value, CAST(value % 3 AS STRING) FROM generate_series(1, 3000000) SORT BY value;",
        &["-v", "ON_ERROR_STOP=1"],
    )
    .await;
    assert!(ok, "{err}");
    let notices: Vec<&str> = err.lines().filter(|l| l.starts_with("NOTICE:")).collect();
    assert!(!notices.is_empty(), "no progress reported: {err}");
    assert!(notices.iter().all(|n| n.contains("INSERT INTO progress") && n.contains("rows read")), "{notices:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_with_57014_and_the_session_goes_on() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute("SET statement_timeout = '300ms'").await.unwrap();
    // Long while producing rows (streaming) ...
    let started = std::time::Instant::now();
    let err = c.simple_query("SELECT count(*) FROM generate_series(1, 2000000000)").await.unwrap_err();
    assert_eq!(code(&err), "57014", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // ... and long before the first row, over the extended protocol.
    let err = c.query("SELECT max(value) FROM generate_series(1, 2000000000)", &[]).await.unwrap_err();
    assert_eq!(code(&err), "57014", "{err:?}");
    assert_eq!(err.as_db_error().unwrap().message(), "canceling statement due to statement timeout");
    c.batch_execute("SET statement_timeout = 0").await.unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM generate_series(1, 1000)", &[]).await.unwrap().get(0);
    assert_eq!(n, 1000);
    server.stop().await;
}

/// Every file below `dir`, recursively, sorted.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

fn snapshot_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    files_under(dir).into_iter().map(|p| { let b = std::fs::read(&p).unwrap(); (p, b) }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_overwrite_leaves_other_partitions_byte_for_byte() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "SET file_retention = '0ms';
         CREATE TABLE ow (v BIGINT, dt STRING) USING parquet PARTITIONED BY (dt);
         INSERT INTO ow SELECT value, concat('d', CAST(value % 3 AS STRING)) FROM generate_series(1, 30000);",
    )
    .await
    .unwrap();
    let root = server.data_dir().join("warehouse").join("ow");
    let before0 = snapshot_files(&root.join("dt=d0"));
    let before1 = snapshot_files(&root.join("dt=d1"));
    let old2 = files_under(&root.join("dt=d2"));
    let calls_before = server.store_calls();
    c.batch_execute("INSERT OVERWRITE TABLE ow PARTITION (dt) SELECT value, 'd2' FROM generate_series(1, 5)").await.unwrap();
    assert_eq!(snapshot_files(&root.join("dt=d0")), before0, "partition d0 changed");
    assert_eq!(snapshot_files(&root.join("dt=d1")), before1, "partition d1 changed");
    let rows = c.query("SELECT dt, count(*), sum(v) FROM ow GROUP BY dt ORDER BY dt", &[]).await.unwrap();
    let got: Vec<(String, i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got[2], ("d2".to_string(), 5, 15));
    assert_eq!((got[0].1, got[1].1), (10000, 10000));
    // The replaced files go once the retention period (0 here) has passed; no file was renamed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while old2.iter().any(|p| p.exists()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(old2.iter().all(|p| !p.exists()), "replaced files still there: {old2:?}");
    // Neither the overwrite nor a compaction ever copies or renames an object.
    c.batch_execute("OPTIMIZE ow").await.unwrap();
    let calls = server.store_calls();
    assert!(
        calls.puts + calls.multipart_puts > calls_before.puts + calls_before.multipart_puts,
        "the writes went through the counted store"
    );
    assert_eq!((calls.copies, calls.renames), (calls_before.copies, calls_before.renames), "a commit copied or renamed objects");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_the_old_or_the_new_partitions_never_a_mix() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE flip (v BIGINT, dt STRING) USING parquet PARTITIONED BY (dt);
         INSERT INTO flip SELECT value, concat('p', CAST(value % 4 AS STRING)) FROM generate_series(1, 40000);",
    )
    .await
    .unwrap();
    let totals = |n: i64| (n, n * (n + 1) / 2);
    let a = totals(40000);
    let b = totals(20000);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let addr = server.pg_addr;
        tokio::spawn(async move {
            let r = connect(addr).await;
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let row = r.query_one("SELECT count(*), sum(v) FROM flip", &[]).await.unwrap();
                seen.insert((row.get::<_, i64>(0), row.get::<_, i64>(1)));
            }
            seen
        })
    };
    for i in 0..20 {
        let n = if i % 2 == 0 { 20000 } else { 40000 };
        c.batch_execute(&format!(
            "INSERT OVERWRITE TABLE flip PARTITION (dt) SELECT value, concat('p', CAST(value % 4 AS STRING)) FROM generate_series(1, {n})"
        ))
        .await
        .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert!(seen.iter().all(|t| *t == a || *t == b), "a reader saw a mix: {seen:?} (allowed {a:?} or {b:?})");
    // Liveness: the reader read while the overwrites ran, not only before or after them.
    assert!(seen.contains(&a) && seen.contains(&b), "the reader should have seen both contents, saw {seen:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_overwrites_restarts_to_the_old_or_the_new_contents() {
    let dir = tempfile::tempdir().unwrap();
    let totals = |n: i64| (n, n * (n + 1) / 2);
    {
        let server = BinServer::spawn(dir.path(), &[]);
        let c = connect(server.pg_addr).await;
        c.batch_execute(
            "CREATE TABLE k (v BIGINT, dt STRING) USING parquet PARTITIONED BY (dt);
             INSERT INTO k SELECT value, concat('p', CAST(value % 4 AS STRING)) FROM generate_series(1, 100000);",
        )
        .await
        .unwrap();
    }
    let (big, small) = (totals(100000), totals(60000));
    let mut before = big;
    let mut target = None;
    let mut outcomes = Vec::new();
    let mut round = 0u64;
    // Rounds until both outcomes occurred (and at least 20), the kill at a different point of
    // the write each round: before it commits, and after.
    while round < 20 || !(outcomes.contains(&"old") && outcomes.contains(&"new")) {
        assert!(round < 80, "after {round} rounds the kill never landed both before and after a commit: {outcomes:?}");
        let server = BinServer::spawn(dir.path(), &[]);
        let c = connect(server.pg_addr).await;
        let row = c.query_one("SELECT count(*), sum(v) FROM k", &[]).await.unwrap();
        let now = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        if let Some(t) = target {
            assert!(now == before || now == t, "round {round}: {now:?} is neither the old {before:?} nor the new contents {t:?}");
            outcomes.push(if now == t { "new" } else { "old" });
        }
        // Always write the other contents, so old and new can be told apart.
        let n = if now == big { 60000 } else { 100000 };
        before = now;
        target = Some(if n == 60000 { small } else { big });
        let writer = tokio::spawn(async move {
            c.batch_execute(&format!(
                "INSERT OVERWRITE TABLE k PARTITION (dt) SELECT value, concat('p', CAST(value % 4 AS STRING)) FROM generate_series(1, {n})"
            ))
            .await
        });
        tokio::time::sleep(Duration::from_millis((round * 97) % 1500)).await;
        server.kill9();
        let _ = writer.await;
        round += 1;
    }
    // The killed writes left commit directories that never became live; the next start deletes
    // them (and what the last overwrites retired), keeping one live directory per partition.
    let server = BinServer::spawn(dir.path(), &[]);
    let c = connect(server.pg_addr).await;
    let row = c.query_one("SELECT count(*), sum(v) FROM k", &[]).await.unwrap();
    let now = (row.get::<_, i64>(0), row.get::<_, i64>(1));
    assert!(now == before || Some(now) == target, "{now:?}");
    let commit_dirs = || bowman_tests::commit_dirs(&dir.path().join("warehouse").join("k"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while commit_dirs().len() != 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = commit_dirs();
    assert_eq!(left.len(), 4, "dead writes' commit directories stayed after {round} kills: {} of them: {left:?}", left.len());
    let row = c.query_one("SELECT count(*), sum(v) FROM k", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), now, "clearing dead writes changed the table");
    eprintln!("kill -9 outcomes over {round} rounds: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_compacts_each_partition_into_one_file() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute("SET file_retention = '0ms'; CREATE TABLE small (v BIGINT, dt STRING) USING parquet PARTITIONED BY (dt)")
        .await
        .unwrap();
    for i in 0..5 {
        c.batch_execute(&format!(
            "INSERT INTO small SELECT value + {}, concat('p', CAST(value % 2 AS STRING)) FROM generate_series(1, 1000)",
            i * 1000
        ))
        .await
        .unwrap();
    }
    let root = server.data_dir().join("warehouse").join("small");
    let live_files = |part: &str| -> usize {
        // Files of live commit directories only: retired ones are deleted after file_retention.
        files_under(&root.join(part)).len()
    };
    assert_eq!(live_files("dt=p0"), 5);
    let before: (i64, i64) = {
        let r = c.query_one("SELECT count(*), sum(v) FROM small", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    let tag = c.execute("OPTIMIZE small WHERE dt = 'p0' SORT BY (v)", &[]).await.unwrap();
    assert_eq!(tag, 2500);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while live_files("dt=p0") != 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(live_files("dt=p0"), 1);
    assert_eq!(live_files("dt=p1"), 5, "the other partition is untouched");
    c.batch_execute("OPTIMIZE small").await.unwrap();
    let after: (i64, i64) = {
        let r = c.query_one("SELECT count(*), sum(v) FROM small", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(before, after);
    let err = c.batch_execute("OPTIMIZE small WHERE v > 10").await.unwrap_err();
    assert_eq!(code(&err), "22023", "{err:?}");
    let err = c.batch_execute("OPTIMIZE small ZORDER BY (v)").await.unwrap_err();
    assert_eq!(code(&err), "0A000", "{err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_warehouse_managed_tables_overwrite_atomically() {
    let Some(s3) = S3Env::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = bowman_tests::config_for(dir.path());
    config.warehouse = s3.unique_prefix("warehouse");
    config.s3 = [
        ("endpoint", s3.endpoint.as_str()),
        ("allow_http", "true"),
        ("region", "us-east-1"),
        ("access_key_id", s3.access_key.as_str()),
        ("secret_access_key", s3.secret_key.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let server = TestServer::start_with(config).await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE m (v BIGINT, dt STRING) PARTITIONED BY (dt);
         INSERT INTO m SELECT value, concat('p', CAST(value % 3 AS STRING)) FROM generate_series(1, 3000);",
    )
    .await
    .unwrap();
    let before = server.store_calls();
    c.batch_execute("INSERT OVERWRITE TABLE m PARTITION (dt) SELECT value, 'p1' FROM generate_series(1, 10); OPTIMIZE m")
        .await
        .unwrap();
    let rows = c.query("SELECT dt, count(*) FROM m GROUP BY dt ORDER BY dt", &[]).await.unwrap();
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("p0".into(), 1000), ("p1".into(), 10), ("p2".into(), 1000)]);
    let after = server.store_calls();
    assert_eq!((after.copies, after.renames), (before.copies, before.renames), "S3 saw a copy or a rename");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_partition_overwrite_on_s3_is_one_version_without_renames() {
    let Some(s3) = S3Env::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    let location = s3.unique_prefix("delta");
    c.batch_execute(&format!(
        "CREATE TABLE d (v BIGINT, dt STRING) USING delta PARTITIONED BY (dt) LOCATION '{location}' OPTIONS ({});
         INSERT INTO d SELECT value, concat('p', CAST(value % 3 AS STRING)) FROM generate_series(1, 3000);",
        s3.options()
    ))
    .await
    .unwrap();
    let before = server.store_calls();
    c.batch_execute("INSERT OVERWRITE TABLE d PARTITION (dt) SELECT value, 'p1' FROM generate_series(1, 10)")
        .await
        .unwrap();
    let after = server.store_calls();
    assert_eq!((after.copies, after.renames), (before.copies, before.renames), "S3 saw a copy or a rename");

    let rows = c.query("SELECT dt, count(*) FROM d GROUP BY dt ORDER BY dt", &[]).await.unwrap();
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("p0".into(), 1000), ("p1".into(), 10), ("p2".into(), 1000)]);
    // Version 0 created the table, 1 appended, 2 is the overwrite: nothing after it.
    let n: i64 = c.query_one("SELECT count(*) FROM d VERSION AS OF 1 WHERE dt = 'p1'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1000);
    let n: i64 = c.query_one("SELECT count(*) FROM d VERSION AS OF 2", &[]).await.unwrap().get(0);
    assert_eq!(n, 2010);
    assert!(c.query("SELECT count(*) FROM d VERSION AS OF 3", &[]).await.is_err());

    // The secret stays out of SHOW CREATE TABLE, and a restart reopens the table from S3.
    let create: String = text_column(&c.simple_query("SHOW CREATE TABLE d").await.unwrap(), 0).concat();
    assert!(create.contains("USING delta") && !create.contains(&s3.secret_key), "{create}");
    drop(c);
    server.stop().await;
    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    let n: i64 = c.query_one("SELECT count(*) FROM d", &[]).await.unwrap().get(0);
    assert_eq!(n, 2010);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_dynamic_overwrite_adds_one_log_entry_and_keeps_other_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    let location = dir.path().join("lake").join("d");
    std::fs::create_dir_all(&location).unwrap();
    c.batch_execute(&format!(
        "CREATE TABLE d (v BIGINT, dt STRING) USING delta PARTITIONED BY (dt) LOCATION '{}';
         INSERT INTO d SELECT value, concat('p', CAST(value % 4 AS STRING)) FROM generate_series(1, 4000);",
        location.display()
    ))
    .await
    .unwrap();
    let log = location.join("_delta_log");
    let entries = |dir: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(entries(&log).len(), 2);
    let untouched: Vec<_> = ["dt=p0", "dt=p3"].iter().flat_map(|p| snapshot_files(&location.join(p))).collect();
    c.batch_execute("INSERT OVERWRITE TABLE d PARTITION (dt) SELECT value, concat('p', CAST(1 + value % 2 AS STRING)) FROM generate_series(1, 6)")
        .await
        .unwrap();
    assert_eq!(entries(&log).len(), 3, "one commit for the overwrite");
    let still: Vec<_> = ["dt=p0", "dt=p3"].iter().flat_map(|p| snapshot_files(&location.join(p))).collect();
    assert_eq!(untouched, still, "partitions the overwrite did not produce are unchanged");
    let rows = c.query("SELECT dt, count(*) FROM d GROUP BY dt ORDER BY dt", &[]).await.unwrap();
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("p0".into(), 1000), ("p1".into(), 3), ("p2".into(), 3), ("p3".into(), 1000)]);
    server.stop().await;
}

/// Two writers racing for the same Delta versions on S3: each commit is a put-if-absent of the
/// next log entry, so a loser retries on top of the winner and no append is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_delta_appends_on_s3_lose_nothing() {
    let Some(s3) = S3Env::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    let location = s3.unique_prefix("delta-race");
    c.batch_execute(&format!(
        "CREATE TABLE r (writer INT, n INT, dt STRING) USING delta PARTITIONED BY (dt) LOCATION '{location}' OPTIONS ({})",
        s3.options()
    ))
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for writer in 0..2 {
        let c = server.client().await;
        tasks.push(tokio::spawn(async move {
            for n in 0..8 {
                c.batch_execute(&format!("INSERT INTO r VALUES ({writer}, {n}, 'd{}')", n % 2)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = c.query("SELECT writer, count(*) FROM r GROUP BY writer ORDER BY writer", &[]).await.unwrap();
    let got: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(0, 8), (1, 8)]);
    // 1 + 16 versions: every append got its own.
    let n: i64 = c.query_one("SELECT count(*) FROM r VERSION AS OF 16", &[]).await.unwrap().get(0);
    assert_eq!(n, 16);
    assert!(c.query("SELECT count(*) FROM r VERSION AS OF 17", &[]).await.is_err());
    server.stop().await;
}

/// psql's describe commands run their own pg_catalog queries; each must answer with Bowman's
/// databases (PostgreSQL schemas) and tables.
#[tokio::test]
async fn psql_describe_commands_show_bowman_databases_and_tables() {
    let server = TestServer::start().await;
    let (out, err, ok) = psql(
        server.pg_addr,
        "CREATE TABLE t1 (id BIGINT, name STRING, dt DATE) PARTITIONED BY (dt);
         CREATE DATABASE lake;
         CREATE TABLE lake.ev (a INT, b DOUBLE) USING json;
         \\pset format unaligned
         \\echo ==dt
         \\dt
         \\echo ==dt-lake
         \\dt lake.*
         \\echo ==d-t1
         \\d t1
         \\echo ==dn
         \\dn
         \\echo ==l
         \\l
         \\echo ==df
         \\df pg_catalog.abs",
        &["-v", "ON_ERROR_STOP=1"],
    )
    .await;
    assert!(ok, "psql failed: {err}\n{out}");
    let section = |name: &str| -> String {
        out.split(&format!("=={name}\n")).nth(1).map(|s| s.split("\n==").next().unwrap_or_default().to_string()).unwrap_or_default()
    };
    // Without a pattern, \dt lists the current database only, as PostgreSQL lists the search path;
    // the default database is the schema public.
    assert!(section("dt").contains("public|t1|table|"), "{out}");
    assert!(!section("dt").contains("ev"), "{out}");
    assert!(section("dt-lake").contains("lake|ev|table|"), "{out}");
    let d = section("d-t1");
    assert!(d.contains("id|bigint") && d.contains("name|text") && d.contains("dt|date"), "{d}");
    assert!(section("dn").contains("public|") && section("dn").contains("lake|"), "{out}");
    assert!(!section("dn").contains("default|"), "one name for the default database: {out}");
    assert!(section("l").contains("bowman|"), "{out}");
    assert!(section("df").contains("pg_catalog|abs|int8|int8|func"), "{out}");
    server.stop().await;
}

/// Views as psql shows them: `\dv` lists them (and `\dt` does not), `\d v` shows a view's
/// columns, `pg_get_viewdef` (what `\d+ v` shows) its definition; `SHOW CREATE VIEW` prints Spark's form; DROP TABLE on a
/// view and DROP VIEW on a table fail with 42809; a view over a dropped table fails with 42P01
/// naming the table. The session goes on after each error.
#[tokio::test]
async fn psql_shows_views_and_their_definitions() {
    let server = TestServer::start().await;
    let (out, err, ok) = psql(
        server.pg_addr,
        "CREATE TABLE rides (id BIGINT, city STRING, fare DOUBLE);
         INSERT INTO rides VALUES (1, 'Detroit', 3.5), (2, 'Flint', 1.0);
         CREATE VIEW public.by_city (town, n COMMENT 'rides') AS SELECT city, count(*) FROM rides GROUP BY city;
         CREATE DATABASE lake;
         CREATE VIEW lake.cheap AS SELECT id FROM default.rides WHERE fare < 2;
         \\pset format unaligned
         \\echo ==dv
         \\dv
         \\echo ==dt
         \\dt
         \\echo ==dv-lake
         \\dv lake.*
         \\echo ==d-view
         \\d by_city
         \\echo ==viewdef
         SELECT pg_catalog.pg_get_viewdef('lake.cheap'::pg_catalog.regclass, true);
         \\echo ==show
         SHOW CREATE VIEW by_city;
         \\echo ==select
         SELECT town, n FROM by_city ORDER BY town;",
        &["-v", "ON_ERROR_STOP=1"],
    )
    .await;
    assert!(ok, "psql failed: {err}\n{out}");
    let section = |name: &str| -> String {
        out.split(&format!("=={name}\n")).nth(1).map(|s| s.split("\n==").next().unwrap_or_default().to_string()).unwrap_or_default()
    };
    assert!(section("dv").contains("public|by_city|view|"), "{out}");
    assert!(!section("dv").contains("rides"), "{out}");
    assert!(section("dt").contains("public|rides|table|") && !section("dt").contains("by_city"), "{out}");
    assert!(section("dv-lake").contains("lake|cheap|view|"), "{out}");
    let d = section("d-view");
    assert!(d.contains("View \"public.by_city\""), "{d}");
    assert!(d.contains("town|text") && d.contains("n|bigint"), "{d}");
    // What `\d+ v` asks for its "View definition:" footer (`\d+` itself also needs
    // col_description, outside this test).
    assert!(section("viewdef").contains("SELECT id FROM default.rides WHERE fare < 2"), "{out}");
    assert!(
        section("show").contains("CREATE VIEW default.by_city (\n  town,\n  n COMMENT 'rides')\nAS SELECT city, count(*) FROM rides GROUP BY city"),
        "{out}"
    );
    assert!(section("select").contains("town|n\nDetroit|1\nFlint|1"), "{out}");

    let (out, err, _) = psql(
        server.pg_addr,
        "DROP TABLE by_city;\nDROP VIEW rides;\nDROP TABLE rides;\nSELECT * FROM lake.cheap;\nSELECT 'still here' AS state;",
        &[],
    )
    .await;
    assert_eq!(err.matches("ERROR:  42809").count(), 2, "{err}");
    assert!(err.contains("\"default.by_city\" is not a table"), "{err}");
    assert!(err.contains("\"default.rides\" is not a view"), "{err}");
    assert!(err.contains("ERROR:  42P01") && err.contains("rides"), "{err}");
    assert!(out.contains("still here"), "{out}");
    server.stop().await;
}

/// A CancelRequest stops a long query within a second, whether it is still running before its
/// first row or already streaming, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_long_query_within_a_second() {
    let server = TestServer::start().await;
    let c = server.client().await;
    for query in [
        // Aggregates: all the work happens before the first row.
        "SELECT count(*) FROM generate_series(1, 100000000000)",
        // Streaming: rows flow while the query runs.
        "SELECT value FROM generate_series(1, 100000000000)",
    ] {
        let token = c.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            let sent = std::time::Instant::now();
            token.cancel_query(tokio_postgres::NoTls).await.unwrap();
            sent
        });
        let started = std::time::Instant::now();
        let err = c.simple_query(query).await.expect_err("the query should be canceled");
        let ended = std::time::Instant::now();
        let sent = canceller.await.unwrap();
        assert_eq!(code(&err), "57014", "{err:?}");
        assert!(ended.duration_since(sent) < std::time::Duration::from_secs(1), "took {:?} after the cancel", ended.duration_since(sent));
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        let one: i64 = c.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
    server.stop().await;
}

/// With users configured, pgwire asks for SCRAM-SHA-256: the right password gets in (also over
/// TLS, as psql's sslmode=require and verify-full do), a wrong one or an unknown user gets 28P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_passwords_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    // A test CA and a server certificate it signs (clients verify against the CA).
    let (cert, key, ca) = (dir.path().join("cert.pem"), dir.path().join("key.pem"), dir.path().join("ca.pem"));
    let ext = dir.path().join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl").current_dir(dir.path()).args(args).output().expect("openssl is installed");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    };
    openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=bowman-test-ca", "-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "server.csr"]);
    openssl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "30", "-extfile", "ext.cnf", "-out", "cert.pem"]);
    let mut config = bowman_tests::config_for(&dir.path().join("data"));
    config.users.insert("analyst", bowman_server::auth::ScramSecret::from_password("correct horse"));
    config.tls = Some((cert.clone(), key));
    let server = TestServer::start_with(config).await;
    let url = |user: &str, password: &str| {
        format!("host=127.0.0.1 port={} user={user} password='{password}' dbname=bowman", server.pg_addr.port())
    };

    let (client, conn) = tokio_postgres::connect(&url("analyst", "correct horse"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let n: i64 = client.query_one("SELECT 41::BIGINT + 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 42);
    for (user, password) in [("analyst", "wrong"), ("nobody", "correct horse")] {
        let err = tokio_postgres::connect(&url(user, password), tokio_postgres::NoTls).await.err().expect("refused");
        assert_eq!(code(&err), "28P01", "{err:?}");
    }

    for mode in ["sslmode=require".to_string(), format!("sslmode=verify-full sslrootcert={}", ca.display())] {
        let out = std::process::Command::new("psql")
            .arg(format!("host=localhost port={} user=analyst dbname=bowman {mode}", server.pg_addr.port()))
            .args(["-X", "-A", "-t", "-c", "SELECT ssl FROM (SELECT 'tls' AS ssl)"])
            .env("PGPASSWORD", "correct horse")
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tls");
    }
    // psql reports the connection as encrypted.
    let out = std::process::Command::new("psql")
        .arg(format!("host=localhost port={} user=analyst dbname=bowman sslmode=require", server.pg_addr.port()))
        .args(["-X", "-c", "\\conninfo"])
        .env("PGPASSWORD", "correct horse")
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("SSL connection"), "{info}");

    // Flight SQL serves the same certificate: basic auth over TLS.
    let pem = std::fs::read(&ca).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", server.flight_addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut flight = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    flight.handshake("analyst", "correct horse").await.unwrap();
    let info = flight.execute("SELECT 1 AS one".into(), None).await.unwrap();
    assert_eq!(info.endpoint.len(), 1);
    server.stop().await;
}

/// Flight SQL with users configured: basic auth in the handshake returns a bearer token; calls
/// without one, or a wrong password, are refused with UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_basic_auth_returns_a_bearer_token() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use futures::TryStreamExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = bowman_tests::config_for(dir.path());
    config.users.insert("scientist", bowman_server::auth::ScramSecret::from_password("pa55"));
    let server = TestServer::start_with(config).await;
    let flight_addr = server.flight_addr;
    let channel = || async move {
        tonic::transport::Endpoint::from_shared(format!("http://{flight_addr}")).unwrap().connect().await.unwrap()
    };

    let mut anonymous = FlightSqlServiceClient::new(channel().await);
    let err = anonymous.execute("SELECT 1".into(), None).await.expect_err("no token");
    assert!(err.to_string().contains("Unauthenticated") || err.to_string().contains("log in"), "{err}");
    let mut wrong = FlightSqlServiceClient::new(channel().await);
    assert!(wrong.handshake("scientist", "nope").await.is_err());

    let mut client = FlightSqlServiceClient::new(channel().await);
    client.handshake("scientist", "pa55").await.unwrap();
    let info = client.execute("SELECT 40 + 2 AS answer".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<_> = client.do_get(ticket).await.unwrap().try_collect().await.unwrap();
    let value = batches[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0);
    assert_eq!(value, 42);
    server.stop().await;
}

/// The PostgreSQL JDBC driver's DatabaseMetaData (as DBeaver, Metabase and Tableau call it):
/// getSchemas, getTables, getColumns, getTypeInfo, and a parameterised query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_database_metadata() {
    let jar = std::env::var("BOWMAN_TEST_JDBC_JAR").unwrap_or_else(|_| "/usr/share/java/postgresql.jar".into());
    let have_java = std::process::Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    if !have_java || !std::path::Path::new(&jar).exists() {
        assert!(
            std::env::var("BOWMAN_TEST_REQUIRE_SERVICES").is_err(),
            "java and the PostgreSQL JDBC driver ({jar}) are required: scripts/test installs them"
        );
        eprintln!("skipping: no java or no JDBC driver at {jar}");
        return;
    }
    let server = TestServer::start().await;
    let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jdbc").join("MetaDataCheck.java");
    let out = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(&jar)
        .arg(&program)
        .arg(format!("jdbc:postgresql://127.0.0.1:{}/bowman", server.pg_addr.port()))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("ok"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await;
}

/// ROLLBACK cannot undo what a transaction block wrote (each statement commits when it runs),
/// so after writes psql shows a WARNING saying so; a ROLLBACK after reads says nothing.
#[tokio::test]
async fn psql_rollback_after_writes_warns_that_they_were_committed() {
    let server = TestServer::start().await;
    let (out, err, ok) = psql(
        server.pg_addr,
        "CREATE TABLE rb (a INT);
         BEGIN; SELECT count(*) FROM rb; ROLLBACK;
         \\echo ==after-read
         BEGIN; INSERT INTO rb VALUES (1); INSERT INTO rb VALUES (2); ROLLBACK;
         SELECT count(*) AS n FROM rb;",
        &["-v", "ON_ERROR_STOP=1"],
    )
    .await;
    assert!(ok, "{err}\n{out}");
    assert_eq!(err.matches("WARNING:").count(), 1, "{err}");
    assert!(err.contains("ROLLBACK did not undo 2 write statements") && err.contains("committed"), "{err}");
    // The rows are there, as the warning says.
    assert!(out.contains("==after-read") && out.contains(" n \n---\n 2\n(1 row)"), "{out}");
    server.stop().await;
}

/// COPY ... TO STDOUT in text and CSV, as psql's \copy and drivers' copy_expert use it.
#[tokio::test]
async fn copy_to_stdout_in_text_and_csv() {
    let server = TestServer::start().await;
    let (out, err, ok) = psql(
        server.pg_addr,
        "CREATE TABLE ct (id INT, s STRING, ok BOOLEAN, ts TIMESTAMP, d DATE);
         INSERT INTO ct VALUES (1, 'a,b \"q\"', true, TIMESTAMP '2018-03-05 10:11:12', DATE '2018-03-05'),
                               (2, NULL, false, NULL, NULL),
                               (3, E'tab\\there', NULL, TIMESTAMP '2018-03-05 10:11:12.5', DATE '2018-03-06');
         COPY (SELECT * FROM ct ORDER BY id) TO STDOUT;
         \\echo ==csv
         COPY (SELECT id, s FROM ct ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER);
         \\echo ==copy-table
         \\copy ct (id) to stdout",
        &["-v", "ON_ERROR_STOP=1"],
    )
    .await;
    assert!(ok, "{err}\n{out}");
    let (text, rest) = out.split_once("==csv\n").unwrap();
    assert_eq!(
        text,
        "1\ta,b \"q\"\tt\t2018-03-05 10:11:12\t2018-03-05\n2\t\\N\tf\t\\N\t\\N\n3\ttab\\there\t\\N\t2018-03-05 10:11:12.5\t2018-03-06\n"
    );
    let (csv, table) = rest.split_once("==copy-table\n").unwrap();
    assert_eq!(csv, "id,s\n1,\"a,b \"\"q\"\"\"\n2,\n3,tab\there\n");
    let mut ids: Vec<&str> = table.lines().collect();
    ids.sort();
    assert_eq!(ids, vec!["1", "2", "3"]);

    server.stop().await;
}

/// COPY ... FROM STDIN in text and CSV (psql's \copy from, drivers' copy_from), committed like
/// INSERT; a bad value fails the whole COPY (22P02) and nothing is loaded.
#[tokio::test]
async fn copy_from_stdin_in_text_and_csv() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("rows.txt");
    std::fs::write(&text, "1\ta\\tb\tt\t2018-03-05 10:11:12\t2018-03-05\n2\t\\N\tf\t\\N\t2018-03-06\n").unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "id,s,d\n3,\"x,y\",2018-03-05\n4,,2018-03-06\n").unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "5\tfine\t2018-03-05\nnot-a-number\tx\t2018-03-05\n").unwrap();
    let (out, err, ok) = psql(
        server.pg_addr,
        &format!(
            "CREATE TABLE ci (id INT, s STRING, ok BOOLEAN, ts TIMESTAMP, d DATE) PARTITIONED BY (d);
             \\copy ci from '{}'
             \\copy ci (id, s, d) from '{}' with (format csv, header)
             \\pset format unaligned
             SELECT id, s, ok, ts, d FROM ci ORDER BY id;",
            text.display(),
            csv.display()
        ),
        &["-v", "ON_ERROR_STOP=1"],
    )
    .await;
    assert!(ok, "{err}\n{out}");
    assert!(
        // (Timestamps print with microseconds over pgwire's text format: a known arrow-pg gap.)
        out.contains("1|a\tb|t|2018-03-05 10:11:12.000000|2018-03-05\n2||f||2018-03-06\n3|x,y|||2018-03-05\n4||||2018-03-06\n"),
        "{out}"
    );
    let (_, err, ok) = psql(server.pg_addr, &format!("\\copy ci (id, s, d) from '{}'", bad.display()), &["-v", "ON_ERROR_STOP=1"]).await;
    assert!(!ok && err.contains("22P02"), "{err}");
    let c = server.client().await;
    let n: i64 = c.query_one("SELECT count(*) FROM ci", &[]).await.unwrap().get(0);
    assert_eq!(n, 4, "the failed COPY loaded nothing");
    server.stop().await;
}

/// CREATE USER ... PASSWORD keeps a SCRAM hash in the catalog; once users exist the server asks
/// for passwords (from the next start when it began without any), ALTER USER changes one and
/// DROP USER removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_user_in_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let c = server.client().await;
    c.batch_execute("CREATE USER analyst WITH CREATEROLE PASSWORD 'first pass'; CREATE ROLE etl WITH LOGIN PASSWORD 'etl'").await.unwrap();
    let e = c.batch_execute("CREATE USER analyst PASSWORD 'again'").await.unwrap_err();
    assert_eq!(code(&e), "42710");
    c.batch_execute("CREATE USER IF NOT EXISTS analyst PASSWORD 'again'").await.unwrap();
    drop(c);
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let url = |user: &str, password: &str| {
        format!("host=127.0.0.1 port={} user={user} password='{password}' dbname=bowman", server.pg_addr.port())
    };
    let connect = |u: String| async move {
        let (client, conn) = tokio_postgres::connect(&u, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok::<_, tokio_postgres::Error>(client)
    };
    let err = connect(url("analyst", "wrong")).await.err().expect("refused");
    assert_eq!(code(&err), "28P01");
    let c = connect(url("analyst", "first pass")).await.unwrap();
    c.batch_execute("ALTER USER analyst WITH PASSWORD 'second pass'; DROP USER etl").await.unwrap();
    assert_eq!(code(&connect(url("analyst", "first pass")).await.err().unwrap()), "28P01");
    assert_eq!(code(&connect(url("etl", "etl")).await.err().unwrap()), "28P01");
    let c2 = connect(url("analyst", "second pass")).await.unwrap();
    let e = c2.batch_execute("DROP USER etl").await.unwrap_err();
    assert_eq!(code(&e), "42704");
    c2.batch_execute("DROP USER IF EXISTS etl").await.unwrap();
    drop((c, c2));
    server.stop().await;
}

/// `CREATE FUNCTION geodata USING geodata` is kept in the catalog: after a restart the function
/// answers again without being registered, with the known answer for Detroit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geodata_function_survives_restart() {
    let layers = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/geodata");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let query = "SELECT g.country, g.country_code, g.state, g.state_code, g.county, g.city, g.zip_code, g.dma_name, g.dma_number
                 FROM (SELECT geodata(-83.1186093, 42.3677203) AS g)";
    let expected = vec![
        "United States of America", "US", "Michigan", "MI", "Wayne", "Detroit", "48206", "Detroit", "505",
    ];
    let answer = |rows: &[tokio_postgres::SimpleQueryMessage]| -> Vec<String> { (0..9).flat_map(|i| text_column(rows, i)).collect() };

    let mut server = BinServer::spawn(&data, &[]);
    let c = connect(server.pg_addr).await;
    c.batch_execute(&format!(
        "CREATE FUNCTION geodata USING geodata OPTIONS (countries '{l}/world_countries.csv', states '{l}/us_states.csv',
           counties '{l}/us_counties.csv', zip_points '{l}/us_zip_codes.csv', dma '{l}/dma.csv')",
        l = layers.display()
    ))
    .await
    .unwrap();
    assert_eq!(answer(&c.simple_query(query).await.unwrap()), expected);
    // The known answer through psql itself.
    let (out, err, ok) = psql(
        server.pg_addr,
        "SELECT g.county, g.state, g.city, g.zip_code, g.country_code FROM (SELECT geodata(-83.1186093, 42.3677203) AS g);",
        &["-A", "-t"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Wayne|Michigan|Detroit|48206|US");
    // Field access on the call itself, as Spark writes it: in the SELECT list, WHERE and GROUP BY.
    let (out, err, ok) = psql(
        server.pg_addr,
        "SELECT geodata(lon, lat).city, geodata(lon, lat).state_code FROM (VALUES (-83.1186093, 42.3677203)) AS p(lon, lat);
         SELECT geodata(lon, lat).state, count(*) FROM (VALUES (-83.1186093, 42.3677203), (-84.5555, 42.7325), (-40.0, 30.0)) AS p(lon, lat)
           WHERE geodata(lon, lat).country_code = 'US' GROUP BY geodata(lon, lat).state;
         SELECT geodata(-83.1186093, 42.3677203).CITY;",
        &["-A", "-t"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Detroit|MI\nMichigan|2\nDetroit");
    let e = c.simple_query("SELECT geodata(-83.1186093, 42.3677203).no_such_field").await.unwrap_err();
    assert!(e.as_db_error().is_some_and(|d| d.message().contains("no_such_field")), "{e:?}");
    assert_eq!(answer(&c.simple_query(query).await.unwrap()), expected, "the connection is still usable");
    // Reading several fields of one geodata(...) computes it once per row: the physical plan
    // holds one call, not one per field.
    let rows = c
        .simple_query(
            "EXPLAIN SELECT g.dma_name, g.dma_number, g.city, g.state, g.zip_code
             FROM (SELECT geodata(x, y) AS g FROM (VALUES (-83.1186093, 42.3677203)) AS p(x, y))",
        )
        .await
        .unwrap();
    let physical: String = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("physical_plan") => r.get(1).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(physical.matches("geodata(").count(), 1, "{physical}");
    // So do several fields read off the same call.
    let rows = c
        .simple_query(
            "EXPLAIN SELECT geodata(x, y).city, geodata(x, y).state, geodata(x, y).zip_code
             FROM (VALUES (-83.1186093, 42.3677203)) AS p(x, y)",
        )
        .await
        .unwrap();
    let physical: String = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("physical_plan") => r.get(1).map(str::to_string),
            _ => None,
        })
        .collect();
    // (The output columns are named after the call; the call itself reads the VALUES columns.)
    assert_eq!(physical.matches("geodata(column").count(), 1, "{physical}");
    let e = c.batch_execute("CREATE FUNCTION geodata USING geodata OPTIONS (states '/nonexistent.csv')").await.unwrap_err();
    assert_eq!(code(&e), "42723", "{e:?}");
    let e = c.batch_execute("CREATE FUNCTION other USING geodata OPTIONS (states '/nonexistent/layer.csv')").await.unwrap_err();
    assert_eq!(code(&e), "58P01", "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("/nonexistent/layer.csv"), "{e:?}");
    drop(c);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));

    let server = BinServer::spawn(&data, &[]);
    let c = connect(server.pg_addr).await;
    assert_eq!(answer(&c.simple_query(query).await.unwrap()), expected);
    c.batch_execute("DROP FUNCTION geodata").await.unwrap();
    assert!(c.simple_query(query).await.is_err());
}

/// A table with no credentials anywhere makes the S3 client ask the cloud's instance-metadata
/// address; test servers point it at loopback, so the statement fails at once with a connection
/// error and nothing is sent off the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_table_without_credentials_fails_fast_on_loopback() {
    let server = TestServer::start().await;
    let c = server.client().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let err = c
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE nocreds STORED AS PARQUET LOCATION 's3://nobody/x/' \
             OPTIONS (endpoint 'http://127.0.0.1:{closed}', allow_http 'true', region 'us-east-1')"
        ))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: {err:?}", started.elapsed());
    assert!(code(&err).starts_with("08"), "{err:?}");
    assert!(!format!("{err:?}").contains("169.254"), "{err:?}");
    assert_eq!(c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i64>(0), 1);
    server.stop().await;
}

/// The plan lines of an EXPLAIN, joined.
async fn explain(c: &tokio_postgres::Client, sql: &str) -> String {
    let messages = c.simple_query(sql).await.unwrap();
    text_column(&messages, 1).join("\n")
}

/// EXPLAIN shows what a Spark-style write runs: the exchange that picks each row's writer, the
/// sort within each writer, the parallel writers with the replace mode, and the commit; EXPLAIN
/// ANALYZE runs it (as PostgreSQL's does) and reports the rows and files written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_insert_overwrite_shows_exchange_sort_write_and_commit() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE staging (user_id BIGINT, column_b STRING, dt DATE) USING json;
         INSERT INTO staging VALUES (3, 'c', DATE '2018-03-05'), (1, 'a', DATE '2018-03-05'), (2, 'b', DATE '2018-03-06'),
                                    (5, 'e', DATE '2018-03-07'), (4, 'd', DATE '2018-03-06');
         CREATE TABLE events (user_id BIGINT, column_b STRING, dt DATE) USING parquet PARTITIONED BY (dt);
         SET datafusion.execution.target_partitions = 2",
    )
    .await
    .unwrap();
    let insert = "INSERT OVERWRITE TABLE events PARTITION (dt) SELECT user_id, column_b, dt FROM staging DISTRIBUTE BY dt SORT BY user_id";
    let plan = explain(&c, &format!("EXPLAIN {insert}")).await;
    for line in [
        "BowmanWrite: table=default.events, replace=the partitions written (dynamic overwrite), partition_by=[dt], distribute_by=[dt]",
        "CommitExec: table=default.events, replace=the partitions written (dynamic overwrite), catalog transaction",
        "TrackedWriteExec: table=default.events",
        "writers=2",
        "SortExec: expr=[user_id@0 ASC NULLS LAST], preserve_partitioning=[true]",
        "RepartitionExec: partitioning=Hash([dt@2], 2)",
    ] {
        assert!(plan.contains(line), "no {line:?} in\n{plan}");
    }
    // The exchange comes before the sort, the sort before the writers, the writers before the commit.
    let at = |s: &str| plan.find(s).unwrap();
    assert!(at("CommitExec") < at("TrackedWriteExec") && at("TrackedWriteExec") < at("SortExec") && at("SortExec") < at("RepartitionExec: partitioning=Hash"), "{plan}");
    let n: i64 = c.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "EXPLAIN wrote rows");

    let analyzed = explain(&c, &format!("EXPLAIN ANALYZE {insert}")).await;
    let commit = analyzed.lines().find(|l| l.contains("CommitExec")).unwrap_or_default();
    assert!(commit.contains("rows_written=5") && commit.contains("files_written=3"), "{analyzed}");
    assert_eq!(analyzed.matches("CommitExec").count(), 1, "{analyzed}");
    let rows = c.query("SELECT user_id FROM events ORDER BY user_id", &[]).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    // Plain INSERT INTO a tracked table is the same write, appending.
    let plan = explain(&c, "EXPLAIN INSERT INTO events VALUES (6, 'f', DATE '2018-03-09')").await;
    assert!(plan.contains("CommitExec: table=default.events, replace=nothing (append)"), "{plan}");
    server.stop().await;
}

/// A write finds what it wrote from its writers, never by listing the table: an INSERT into a
/// table of 10,000 files lists nothing, and readers see the new row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_into_a_table_of_ten_thousand_files_lists_nothing() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE big (v BIGINT, p BIGINT) USING parquet PARTITIONED BY (p);
         INSERT INTO big PARTITION (p) SELECT value, value FROM generate_series(1, 10000)",
    )
    .await
    .unwrap();
    assert_eq!(files_under(&server.data_dir().join("warehouse").join("big")).len(), 10_000);
    let before = server.store_calls();
    c.batch_execute("INSERT INTO big VALUES (1, 20000)").await.unwrap();
    c.batch_execute("INSERT INTO big PARTITION (p = 20001) SELECT 2").await.unwrap();
    c.batch_execute("INSERT OVERWRITE TABLE big PARTITION (p) SELECT 3, 20002").await.unwrap();
    let after = server.store_calls();
    assert_eq!(after.lists, before.lists, "the writes listed the table");
    assert!(after.puts + after.multipart_puts > before.puts + before.multipart_puts, "nothing was written");
    let rows = c.query("SELECT p, v FROM big WHERE p >= 20000 ORDER BY p", &[]).await.unwrap();
    let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(20000, 1), (20001, 2), (20002, 3)]);
    server.stop().await;
}

/// `SET` of a name Bowman does not know is 42704 with PostgreSQL's message and a hint naming
/// the closest setting; the session goes on, and another client is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_setting_is_42704_with_a_hint_and_the_session_goes_on() {
    let server = TestServer::start().await;
    let c = server.client().await;
    let other = server.client().await;
    let err = c.batch_execute("SET file_retension = '1s'").await.unwrap_err();
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "42704", "{err:?}");
    assert_eq!(db.message(), "unrecognized configuration parameter \"file_retension\"");
    assert_eq!(db.hint(), Some("Perhaps you meant \"file_retention\"."));
    let n: i64 = other.query_one("SELECT count(*) FROM generate_series(1, 10)", &[]).await.unwrap().get(0);
    assert_eq!(n, 10);

    // Under Spark's prefix the detail says which Spark names Bowman takes.
    let err = c.batch_execute("SET spark.sql.ansi.enabled = true").await.unwrap_err();
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "42704");
    assert!(db.detail().is_some_and(|d| d.contains("spark.sql.sources.partitionOverwriteMode")), "{db:?}");

    // A bad value names the setting and says what it takes.
    let err = c.batch_execute("SET bowman.statement_timeout = 'soon'").await.unwrap_err();
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "22023");
    assert_eq!(db.message(), "invalid value for parameter \"bowman.statement_timeout\": \"soon\"");
    assert!(db.hint().is_some_and(|h| h.contains("500ms")), "{db:?}");

    // The session still works, and the settings that were refused changed nothing.
    c.batch_execute("SET file_retention = '1s'").await.unwrap();
    let rows = c.simple_query("SHOW ALL").await.unwrap();
    let shown: std::collections::BTreeMap<String, String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((r.get(0).unwrap().to_string(), r.get(1).unwrap().to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(shown.get("file_retention").map(String::as_str), Some("1s"));
    assert_eq!(shown.get("statement_timeout").map(String::as_str), Some("0"));
    assert_eq!(shown.get("target_file_size").map(String::as_str), Some("0"));
    assert!(!shown.contains_key("file_retension") && !shown.contains_key("spark.sql.ansi.enabled"), "{shown:?}");
    server.stop().await;
}

/// bowman.toml's `[settings]` are where sessions start and where RESET returns; an unknown
/// name there stops the server from starting, naming the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_wide_settings_from_bowman_toml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bowman.toml");
    std::fs::write(&file, "[settings]\nstatement_timeout = \"300ms\"\n\"spark.sql.files.maxRecordsPerFile\" = 1000\n").unwrap();
    let args = bowman_server::ServeArgs {
        config: Some(file.clone()),
        data_dir: Some(dir.path().join("data")),
        pg_addr: Some("127.0.0.1:0".parse().unwrap()),
        flight_addr: Some("127.0.0.1:0".parse().unwrap()),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let server = TestServer::start_with(bowman_server::Config::load(&args).unwrap()).await;
    let c = server.client().await;
    let show = |name: &'static str| {
        let c = &c;
        async move { text_column(&c.simple_query(&format!("SHOW {name}")).await.unwrap(), 0)[0].clone() }
    };
    assert_eq!(show("statement_timeout").await, "300ms");
    assert_eq!(show("max_records_per_file").await, "1000");
    // The server's timeout applies to every session ...
    let err = c.simple_query("SELECT count(*) FROM generate_series(1, 2000000000)").await.unwrap_err();
    assert_eq!(code(&err), "57014", "{err:?}");
    // ... until a session changes it; RESET returns to the server's value, not the built-in one.
    c.batch_execute("SET statement_timeout = 0; SET max_records_per_file = 5").await.unwrap();
    assert_eq!(show("statement_timeout").await, "0");
    c.batch_execute("RESET statement_timeout; RESET ALL").await.unwrap();
    assert_eq!(show("statement_timeout").await, "300ms");
    assert_eq!(show("max_records_per_file").await, "1000");
    server.stop().await;

    std::fs::write(&file, "[settings]\nno_such_setting = 1\n").unwrap();
    let err = bowman_server::Config::load(&args).unwrap_err().to_string();
    assert!(err.contains("[settings] no_such_setting") && err.contains("unrecognized configuration parameter"), "{err}");
}

/// Over Flight SQL the SQLSTATE's class picks the gRPC status, and the hint follows the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_errors_carry_sqlstate_and_hint() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    let server = TestServer::start().await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.flight_addr)).unwrap().connect().await.unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    let status = |e: arrow_flight::error::FlightError| match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => panic!("not a gRPC status: {other}"),
    };
    let err = status(client.execute("SET no_such_setting = 1".into(), None).await.expect_err("an unknown setting"));
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let (first, hint) = err.message().split_once('\n').expect("a hint after the message");
    assert_eq!(first, "unrecognized configuration parameter \"no_such_setting\" (SQLSTATE 42704)");
    assert!(hint.starts_with("HINT: SHOW ALL lists the settings"), "{hint}");
    let err = status(client.execute("SELECT * FROM no_such_table".into(), None).await.expect_err("a missing table"));
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("(SQLSTATE 42P01)"), "{err:?}");
    // The connection is still good.
    let info = client.execute("SELECT 1 AS one".into(), None).await.unwrap();
    assert_eq!(info.endpoint.len(), 1);
    server.stop().await;
}

/// Rows of one Parquet file, and the values of its first column (a BIGINT), in file order.
fn parquet_longs(path: &std::path::Path) -> Vec<i64> {
    use parquet::file::reader::FileReader;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        let (_, field) = row.get_column_iter().next().unwrap();
        match field {
            parquet::record::Field::Long(v) => out.push(*v),
            other => panic!("{path:?}: first column is {other:?}"),
        }
    }
    out
}

/// `max_records_per_file` (a table option or a setting, Spark's name too) and
/// `target_file_size` roll files within each writer: every file holds at most so many rows
/// (about so many bytes), rows stay sorted across a directory's files, readers see every row
/// once, and EXPLAIN shows the limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_roll_files_at_max_records_per_file_and_target_file_size() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE rolled (v BIGINT, dt STRING) USING parquet PARTITIONED BY (dt) OPTIONS (max_records_per_file '1000');
         SET datafusion.execution.target_partitions = 2",
    )
    .await
    .unwrap();
    let insert = "INSERT OVERWRITE TABLE rolled PARTITION (dt) SELECT value AS v, concat('p', CAST(value % 2 AS STRING)) AS dt FROM generate_series(1, 10000) DISTRIBUTE BY dt SORT BY v";
    let plan = explain(&c, &format!("EXPLAIN {insert}")).await;
    assert!(plan.contains("max_records_per_file=1000"), "{plan}");
    let analyzed = explain(&c, &format!("EXPLAIN ANALYZE {insert}")).await;
    let commit = analyzed.lines().find(|l| l.contains("CommitExec")).unwrap_or_default();
    assert!(commit.contains("rows_written=10.00 K") && commit.contains("files_written=10,"), "{analyzed}");
    let root = server.data_dir().join("warehouse").join("rolled");
    for part in ["dt=p0", "dt=p1"] {
        let files: Vec<_> = files_under(&root.join(part)).into_iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")).collect();
        // One write (EXPLAIN ANALYZE's; EXPLAIN wrote nothing), so one directory per partition.
        let live: Vec<_> = {
            let mut by_dir: std::collections::BTreeMap<std::path::PathBuf, Vec<std::path::PathBuf>> = Default::default();
            for f in files {
                by_dir.entry(f.parent().unwrap().to_path_buf()).or_default().push(f);
            }
            by_dir.into_values().last().unwrap()
        };
        assert_eq!(live.len(), 5, "{part}: {live:?}");
        let mut values: Vec<(i64, Vec<i64>)> = live.iter().map(|f| { let v = parquet_longs(f); (v[0], v) }).collect();
        values.sort();
        for (_, v) in &values {
            assert!(v.len() <= 1000 && !v.is_empty(), "{part}: a file of {} rows", v.len());
        }
        let all: Vec<i64> = values.into_iter().flat_map(|(_, v)| v).collect();
        assert_eq!(all.len(), 5000, "{part}");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{part}: rows are not sorted across the files");
    }
    let row = c.query_one("SELECT count(*), sum(v), count(DISTINCT v) FROM rolled", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)), (10000, 50005000, 10000));

    // The setting, under Spark's name, on a table without the option; no limit, one file.
    c.batch_execute(
        "CREATE TABLE flat (v BIGINT, s STRING) USING parquet;
         SET spark.sql.files.maxRecordsPerFile = 2500;
         INSERT INTO flat SELECT value, 'x' FROM generate_series(1, 10000);
         RESET spark.sql.files.maxRecordsPerFile;
         INSERT INTO flat SELECT value, 'y' FROM generate_series(1, 10000)",
    )
    .await
    .unwrap();
    let parquet_files = |table: &str| -> Vec<std::path::PathBuf> {
        files_under(&server.data_dir().join("warehouse").join(table)).into_iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")).collect()
    };
    let mut sizes: Vec<usize> = parquet_files("flat").iter().map(|f| parquet_longs(f).len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![2500, 2500, 2500, 2500, 10000], "the setting's write rolls at 2500 rows, the next one does not");

    // target_file_size: files of about that size (estimated from the encoded rows), none
    // far above it.
    c.batch_execute(
        "CREATE TABLE sized (v BIGINT, s STRING) USING parquet;
         SET target_file_size = '64kB';
         INSERT INTO sized SELECT value, md5(CAST(value AS STRING)) FROM generate_series(1, 50000);
         RESET target_file_size",
    )
    .await
    .unwrap();
    let files = parquet_files("sized");
    let bytes: Vec<u64> = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).collect();
    let total: u64 = bytes.iter().sum();
    assert!(files.len() >= (total / (96 << 10)) as usize && files.len() > 4 && files.len() <= 4 * (total / (64 << 10) + 1) as usize, "{bytes:?}");
    assert!(bytes.iter().all(|b| *b <= 96 << 10), "a file far above 64kB: {bytes:?}");
    let n: i64 = c.query_one("SELECT count(DISTINCT v) FROM sized", &[]).await.unwrap().get(0);
    assert_eq!(n, 50000);

    // A bad limit is refused when the table is made, and the session goes on.
    let e = c.batch_execute("CREATE TABLE bad (v BIGINT) USING parquet OPTIONS (target_file_size 'huge')").await.unwrap_err();
    assert_eq!(code(&e), "22023", "{e:?}");
    let e = c.batch_execute("CREATE TABLE bad (v BIGINT) USING parquet OPTIONS (max_records_per_file 'many')").await.unwrap_err();
    assert_eq!(code(&e), "22023", "{e:?}");
    assert_eq!(c.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get::<_, i64>(0), 1);
    server.stop().await;
}

/// OPTIMIZE is a plan like any write: EXPLAIN shows its writers and its commit (a rewrite that
/// fails if the partitions changed since read), EXPLAIN ANALYZE runs it and counts its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_optimize_shows_the_rewrite_and_its_commit() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute("CREATE TABLE small (v BIGINT, dt STRING) USING parquet PARTITIONED BY (dt)").await.unwrap();
    for i in 0..3 {
        c.batch_execute(&format!("INSERT INTO small SELECT value + {}, concat('p', CAST(value % 2 AS STRING)) FROM generate_series(1, 100)", i * 100))
            .await
            .unwrap();
    }
    let plan = explain(&c, "EXPLAIN OPTIMIZE small WHERE dt = 'p0' SORT BY (v)").await;
    for line in [
        "BowmanWrite: table=default.small, replace=the partitions rewritten, if unchanged since read (OPTIMIZE), partition_by=[dt], distribute_by=[dt], sort_by=[",
        "CommitExec: table=default.small, replace=the partitions rewritten, if unchanged since read (OPTIMIZE), catalog transaction",
        "TrackedWriteExec: table=default.small",
        "SortExec: expr=[v@0 ASC",
    ] {
        assert!(plan.contains(line), "no {line:?} in\n{plan}");
    }
    let before: i64 = c.query_one("SELECT count(*) FROM small WHERE dt = 'p0'", &[]).await.unwrap().get(0);
    let analyzed = explain(&c, "EXPLAIN ANALYZE OPTIMIZE small WHERE dt = 'p0'").await;
    let commit = analyzed.lines().find(|l| l.contains("CommitExec")).unwrap_or_default();
    assert!(commit.contains(&format!("rows_written={before}")) && commit.contains("files_written=1"), "{analyzed}");
    let after: i64 = c.query_one("SELECT count(*) FROM small WHERE dt = 'p0'", &[]).await.unwrap().get(0);
    assert_eq!(after, before);
    // Not for a table Bowman cannot rewrite, and the session goes on.
    let e = c.batch_execute("EXPLAIN OPTIMIZE no_such_table").await.unwrap_err();
    assert_eq!(code(&e), "42P01", "{e:?}");
    assert_eq!(c.query_one("SELECT 2::BIGINT", &[]).await.unwrap().get::<_, i64>(0), 2);

    // CREATE TABLE ... AS SELECT is a write whose commit creates the table: EXPLAIN shows it
    // and creates nothing; EXPLAIN ANALYZE makes the table and counts what it wrote.
    let ctas = "CREATE TABLE copy USING parquet PARTITIONED BY (dt) AS SELECT v, dt FROM small";
    let plan = explain(&c, &format!("EXPLAIN {ctas}")).await;
    for line in ["BowmanWrite: table=default.copy, replace=nothing (append), partition_by=[dt]", "CommitExec: table=default.copy", "TrackedWriteExec: table=default.copy"] {
        assert!(plan.contains(line), "no {line:?} in\n{plan}");
    }
    let e = c.query_one("SELECT count(*) FROM copy", &[]).await.unwrap_err();
    assert_eq!(code(&e), "42P01", "EXPLAIN created the table: {e:?}");
    assert!(!server.data_dir().join("warehouse").join("copy").exists(), "EXPLAIN made the table's directory");
    let analyzed = explain(&c, &format!("EXPLAIN ANALYZE {ctas}")).await;
    assert!(analyzed.lines().any(|l| l.contains("CommitExec") && l.contains("rows_written=300")), "{analyzed}");
    let n: i64 = c.query_one("SELECT count(*) FROM copy", &[]).await.unwrap().get(0);
    assert_eq!(n, 300);
    // Statements that are catalog changes or commands are not plans: a clear 0A000, not a
    // syntax error or DataFusion's plan of something Bowman does not run.
    for stmt in ["EXPLAIN CREATE TABLE t (a INT) USING parquet", "EXPLAIN DROP TABLE small", "EXPLAIN SHOW TABLES", "EXPLAIN ANALYZE DESCRIBE small"] {
        let e = c.batch_execute(stmt).await.unwrap_err();
        assert_eq!(code(&e), "0A000", "{stmt}: {e:?}");
    }
    let n: i64 = c.query_one("SELECT count(*) FROM small", &[]).await.unwrap().get(0);
    assert_eq!(n, 300, "EXPLAIN DROP TABLE dropped the table");
    server.stop().await;
}

/// The codec of each column chunk of a Parquet file.
fn parquet_codecs(path: &std::path::Path) -> Vec<String> {
    use parquet::file::reader::FileReader;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let meta = reader.metadata();
    meta.row_groups().iter().flat_map(|g| g.columns().iter().map(|c| format!("{:?}", c.compression()))).collect()
}

/// `SET datafusion.execution.parquet.*` reaches the files Bowman writes (the writer takes the
/// session's settings when the write is planned), under a table's own `compression` option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_parquet_settings_reach_the_writer_under_the_tables_own_options() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE plain (v BIGINT) USING parquet;
         CREATE TABLE gz (v BIGINT) USING parquet OPTIONS (compression 'gzip(6)');
         SET datafusion.execution.parquet.compression = 'snappy';
         INSERT INTO plain SELECT value FROM generate_series(1, 1000);
         INSERT INTO gz SELECT value FROM generate_series(1, 1000);
         RESET ALL;
         SET datafusion.execution.parquet.compression = 'uncompressed';
         INSERT INTO plain SELECT value FROM generate_series(1, 1000)",
    )
    .await
    .unwrap();
    let codecs = |table: &str| -> Vec<Vec<String>> {
        let mut files: Vec<_> = files_under(&server.data_dir().join("warehouse").join(table))
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
            .collect();
        files.sort_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap());
        files.iter().map(|f| parquet_codecs(f)).collect()
    };
    let plain = codecs("plain");
    assert_eq!(plain.len(), 2, "{plain:?}");
    assert!(plain[0].iter().all(|c| c == "SNAPPY"), "{plain:?}");
    assert!(plain[1].iter().all(|c| c == "UNCOMPRESSED"), "{plain:?}");
    let gz = codecs("gz");
    assert!(gz.len() == 1 && gz[0].iter().all(|c| c.starts_with("GZIP")), "the table's option wins: {gz:?}");
    let n: i64 = c.query_one("SELECT count(*) FROM plain", &[]).await.unwrap().get(0);
    assert_eq!(n, 2000);
    server.stop().await;
}
