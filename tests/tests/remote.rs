//! The SQL-database connectors against real servers: PostgreSQL (Aurora PostgreSQL and the
//! Redshift wire path), MariaDB (Aurora MySQL) and S3 (SeaweedFS), over pgwire.
//! The per-connector SQL conformance file runs from tests/slt.rs.

use std::sync::Arc;
use std::time::Duration;

use bowman_tests::{BinServer, S3Env, TestServer, TlsEnv, connect, mysql_url, pg_url, psql, text_column, unique_name};
use mysql_async::prelude::Queryable;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

async fn explain(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client.simple_query(&format!("EXPLAIN {sql}")).await.expect("explain");
    text_column(&rows, 1).join("\n")
}

/// The acceptance query: one statement joins a Parquet table on S3, a PostgreSQL table and a
/// MariaDB table; EXPLAIN shows each remote statement with its filters and LIMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_joins_s3_postgres_and_mysql() {
    let (Some(pg), Some(my), Some(s3)) = (pg_url(), mysql_url(), S3Env::from_env()) else { return };
    let ns = unique_name("bowman_fed");
    let pgc = bowman_tests::remote::seed_postgres(&pg, &ns).await;
    let mut myc = bowman_tests::remote::seed_mysql(&my, &ns).await;
    myc.query_drop(format!(
        "CREATE TABLE {ns}.orders (id INT PRIMARY KEY, person_id INT, amount DECIMAL(10,2));
         INSERT INTO {ns}.orders VALUES (1, 1, 5.00), (2, 1, 7.50), (3, 3, 1.25), (4, 4, 99.00), (5, 5, 0.50)"
    ))
    .await
    .unwrap();

    let server = TestServer::start().await;
    let c = server.client().await;
    let location = s3.unique_prefix("fed-visits");
    c.batch_execute(&format!(
        "CREATE TABLE visits (person_id INT, page STRING) USING parquet LOCATION '{location}' OPTIONS ({});
         INSERT INTO visits VALUES (1, 'home'), (1, 'cart'), (3, 'home'), (4, 'help'), (9, 'home');
         CREATE TABLE people USING postgres OPTIONS (url '{pg}', dbtable '{ns}.people');
         CREATE TABLE orders USING mysql OPTIONS (url '{my}', dbtable '{ns}.orders');",
        s3.options()
    ))
    .await
    .unwrap();

    let query = "SELECT p.name, v.page, o.amount
                 FROM visits v
                 JOIN (SELECT id, name FROM people WHERE visits >= 10 AND name <> 'nobody' LIMIT 100) p ON p.id = v.person_id
                 JOIN (SELECT person_id, amount FROM orders WHERE amount > 1 LIMIT 50) o ON o.person_id = p.id
                 ORDER BY p.name, v.page, o.amount";
    let rows = c.simple_query(query).await.unwrap();
    let got: Vec<String> = (0..3)
        .map(|i| text_column(&rows, i))
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![String::new(); text_column(&rows, 0).len()], |mut acc, col| {
            for (a, v) in acc.iter_mut().zip(col) {
                if !a.is_empty() {
                    a.push('|');
                }
                a.push_str(&v);
            }
            acc
        });
    assert_eq!(
        got,
        vec![
            "Zoë ☃|help|99.00",
            "alice|cart|5.00",
            "alice|cart|7.50",
            "alice|home|5.00",
            "alice|home|7.50",
            "o'hara \\ -- /* x|home|1.25",
        ]
    );

    let plan = explain(&c, query).await;
    let pg_sql = plan.lines().find(|l| l.contains("RemoteScanExec: postgres")).unwrap_or_else(|| panic!("{plan}"));
    assert!(pg_sql.contains(r#"WHERE ("visits" >= 10) AND ("name" <> 'nobody') LIMIT 100"#), "{pg_sql}");
    let my_sql = plan.lines().find(|l| l.contains("RemoteScanExec: mysql")).unwrap_or_else(|| panic!("{plan}"));
    assert!(my_sql.contains("WHERE (`amount` > 1") && my_sql.contains("LIMIT 50"), "{my_sql}");

    server.stop().await;
    pgc.batch_execute(&format!("DROP SCHEMA {ns} CASCADE")).await.unwrap();
    myc.query_drop(format!("DROP DATABASE {ns}")).await.unwrap();
}

/// With a 1M-row PostgreSQL table and a 1%-selective filter, PostgreSQL returns exactly the
/// matching rows (pg_stat_statements counts what it sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_filter_fetches_only_matching_rows() {
    let Some(pg) = pg_url() else { return };
    let (pgc, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let stats = pgc.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await;
    let probe = pgc.simple_query("SELECT count(*) FROM pg_stat_statements").await;
    if stats.is_err() || probe.is_err() {
        assert!(
            std::env::var("BOWMAN_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "pg_stat_statements is not loaded in {pg}: scripts/test starts PostgreSQL with it"
        );
        eprintln!("skipping: pg_stat_statements is not loaded");
        return;
    }
    let ns = unique_name("bowman_sel");
    pgc.batch_execute(&format!(
        "CREATE SCHEMA {ns};
         CREATE TABLE {ns}.events AS SELECT g AS id, g % 100 AS bucket, md5(g::text) AS payload FROM generate_series(1, 1000000) g;"
    ))
    .await
    .unwrap();

    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TABLE events USING postgres OPTIONS (url '{pg}', dbtable '{ns}.events')")).await.unwrap();
    pgc.batch_execute("SELECT pg_stat_statements_reset()").await.unwrap();
    let rows = c.simple_query("SELECT id, payload FROM events WHERE bucket = 42").await.unwrap();
    let matching = text_column(&rows, 0).len();
    assert_eq!(matching, 10_000);

    let sent = pgc
        .query(
            &format!("SELECT sum(rows)::bigint, string_agg(query, ' | ') FROM pg_stat_statements WHERE query LIKE '%{ns}%events%'"),
            &[],
        )
        .await
        .unwrap();
    let fetched: i64 = sent[0].get(0);
    let queries: String = sent[0].get(1);
    assert_eq!(fetched as usize, matching, "PostgreSQL sent {fetched} rows for {matching} matches: {queries}");
    assert!(queries.contains("WHERE"), "{queries}");

    server.stop().await;
    pgc.batch_execute(&format!("DROP SCHEMA {ns} CASCADE")).await.unwrap();
}

/// Passwords (in OPTIONS, inside a URL, or from `${env:...}`) appear in no output: not SHOW
/// CREATE TABLE, DESCRIBE EXTENDED, information_schema, pg_catalog, errors or the server log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_shown_and_errors_carry_sqlstates() {
    let (Some(pg), Some(my)) = (pg_url(), mysql_url()) else { return };
    let ns = unique_name("bowman_sec");
    let pgc = bowman_tests::remote::seed_postgres(&pg, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bowman.log");
    let secret_env = "env-secret-9d1c";
    let server = BinServer::spawn_logging(
        &dir.path().join("data"),
        &[("BOWMAN_LOG", "debug"), ("BOWMAN_TEST_SECRET", secret_env)],
        Some(&log),
    );
    let c = connect(server.pg_addr).await;

    // The private PostgreSQL trusts loopback, so any password is accepted: the URL's is stored apart.
    let with_url_password = pg.replacen("postgres://postgres@", "postgres://postgres:url-secret-77a1@", 1);
    assert_ne!(with_url_password, pg, "test URL has the expected form");
    c.batch_execute(&format!(
        "CREATE TABLE a USING postgres OPTIONS (url '{with_url_password}', dbtable '{ns}.people');
         CREATE TABLE b USING postgres OPTIONS (url '{pg}', dbtable '{ns}.people', password 'opt-secret-3b2f');
         CREATE TABLE e USING postgres OPTIONS (url '{pg}', dbtable '{ns}.people', password '${{env:BOWMAN_TEST_SECRET}}');"
    ))
    .await
    .unwrap();
    for t in ["a", "b", "e"] {
        let rows = c.simple_query(&format!("SELECT count(*) FROM {t}")).await.unwrap();
        assert_eq!(text_column(&rows, 0), vec!["5"]);
    }

    // Failures: unreachable (08001), bad credentials (28P01 from MySQL, PostgreSQL's own 28000
    // for an unknown role), a missing table (42P01); each names table and host.
    let e = c
        .batch_execute("CREATE TABLE down USING postgres OPTIONS (url 'postgres://u:down-secret-55@127.0.0.1:1/x', dbtable 't', connect_timeout '3')")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "08001");
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(msg.contains("127.0.0.1:1") && msg.contains("down"), "{msg}");
    let e = c
        .batch_execute(&format!("CREATE TABLE m USING mysql OPTIONS (url '{my}', dbtable 'x', password 'wrong-secret-1f')"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "28P01", "{e:?}");
    let no_role = pg.replacen("postgres://postgres@", "postgres://no_such_role_x@", 1);
    let e = c
        .batch_execute(&format!("CREATE TABLE r USING postgres OPTIONS (url '{no_role}', dbtable '{ns}.people', password 'role-secret-2e')"))
        .await
        .unwrap_err();
    assert!(code(&e).starts_with("28"), "{e:?}");

    let (out, err, _) = psql(
        server.pg_addr,
        "SHOW CREATE TABLE a; SHOW CREATE TABLE b; SHOW CREATE TABLE e; DESCRIBE EXTENDED a; DESCRIBE EXTENDED b;
         SELECT * FROM information_schema.tables; SELECT * FROM information_schema.columns;
         SELECT relname, reloptions FROM pg_catalog.pg_class;
         CREATE TABLE again USING postgres OPTIONS (url 'postgres://u:psql-secret-8c@127.0.0.1:1/x', dbtable 't', connect_timeout '2');",
        &[],
    )
    .await;
    assert!(out.contains("dbtable"), "SHOW CREATE TABLE shows the options: {out}");
    let everything = format!("{out}\n{err}\n{e:?}");
    drop(c);
    let mut server = server;
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(30));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("remote database connection failed"), "the failed connections are logged: {logged}");
    for secret in ["url-secret-77a1", "opt-secret-3b2f", secret_env, "down-secret-55", "wrong-secret-1f", "role-secret-2e", "psql-secret-8c"]
    {
        assert!(!everything.contains(secret), "{secret} shown to the client:\n{everything}");
        assert!(!logged.contains(secret), "{secret} in the server log:\n{logged}");
    }
    pgc.batch_execute(&format!("DROP SCHEMA {ns} CASCADE")).await.unwrap();
}

/// Redshift's UNLOAD path: the statement is checked in the connector's unit tests (no Redshift
/// is reachable here); reading what UNLOAD leaves on S3 is checked here on prepared Parquet
/// files, which are deleted once read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_unload_output_is_read_from_s3_and_removed() {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path;

    let Some(s3) = S3Env::from_env() else { return };
    let _ = rustls_provider();
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&s3.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&s3.bucket)
            .with_access_key_id(&s3.access_key)
            .with_secret_access_key(&s3.secret_key)
            .build()
            .unwrap(),
    );
    let prefix = format!("redshift-unload-{}", unique_name("t"));
    // UNLOAD names columns after the query's expressions and splits output into slices.
    let unload_schema = Arc::new(Schema::new(vec![Field::new("?column?", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]));
    for (slice, ids) in [("0000_part_00.parquet", vec![1i64, 2]), ("0001_part_00.parquet", vec![3i64])] {
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let batch = RecordBatch::try_new(
            unload_schema.clone(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, unload_schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        store.put(&Path::from(format!("{prefix}/{slice}")), buf.into()).await.unwrap();
    }
    let table_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true), Field::new("name", DataType::Utf8, true)]));
    let stream = bowman_connector_redshift::read_unloaded(store.clone(), Path::from(prefix.as_str()), table_schema.clone(), "dw.t".into());
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
    assert!(batches.iter().all(|b| b.schema() == table_schema));
    let left: Vec<_> = store.list(Some(&Path::from(prefix.as_str()))).try_collect().await.unwrap();
    assert!(left.is_empty(), "UNLOAD files are deleted after reading: {left:?}");
}

fn rustls_provider() -> Result<(), Arc<rustls::crypto::CryptoProvider>> {
    rustls::crypto::aws_lc_rs::default_provider().install_default()
}

/// The type mapping of docs/sql-databases.md, per source: what DESCRIBE says and what comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_types_map_as_documented() {
    let (Some(pg), Some(my)) = (pg_url(), mysql_url()) else { return };
    let ns = unique_name("bowman_types");
    let (pgc, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    pgc.batch_execute(&format!(
        "CREATE SCHEMA {ns};
         CREATE TYPE {ns}.mood AS ENUM ('sad', 'happy');
         CREATE TABLE {ns}.t (i2 smallint, n numeric, n52 numeric(5,2), ts timestamp, tstz timestamptz, d date, tm time,
           j json, jb jsonb, u uuid, b bytea, arr text[], iarr int[], m {ns}.mood, f4 real, o oid);
         INSERT INTO {ns}.t VALUES (-3, 12345.6789, 123.45, '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15+02', '2024-02-29',
           '23:59:58', '{{\"a\": 1}}', '{{\"b\": [1, 2]}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\xdeadbeef', '{{x,NULL,\"y z\"}}',
           '{{1,2,3}}', 'happy', 1.5, 42);"
    ))
    .await
    .unwrap();
    let mut myc = mysql_async::Conn::from_url(my.as_str()).await.unwrap();
    myc.query_drop(format!("CREATE DATABASE {ns}")).await.unwrap();
    myc.query_drop("SET SESSION sql_mode = ''").await.unwrap();
    myc.query_drop(format!(
        "CREATE TABLE {ns}.t (tu TINYINT UNSIGNED, bu BIGINT UNSIGNED, flag TINYINT(1), bits BIT(10), y YEAR, d DATE, dt DATETIME(6),
           ts TIMESTAMP(3) NULL, tm TIME, j JSON, e ENUM('a','b'), vb VARBINARY(8), amt DECIMAL(12,4) UNSIGNED)"
    ))
    .await
    .unwrap();
    myc.query_drop(format!(
        "INSERT INTO {ns}.t VALUES (255, 18446744073709551615, 1, b'1000000001', 2024, '0000-00-00', '2024-02-29 13:14:15.123456',
           '2024-02-29 13:14:15.5', '23:59:58', '{{\"a\": 1}}', 'b', x'DEADBEEF', 12345678.9012)"
    ))
    .await
    .unwrap();

    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE p USING postgres OPTIONS (url '{pg}', dbtable '{ns}.t');
         CREATE TABLE m USING mysql OPTIONS (url '{my}', dbtable '{ns}.t');"
    ))
    .await
    .unwrap();
    let describe = |t: &'static str| {
        let c = &c;
        async move {
            let rows = c.simple_query(&format!("DESCRIBE {t}")).await.unwrap();
            text_column(&rows, 0).into_iter().zip(text_column(&rows, 1)).map(|(n, t)| format!("{n} {t}")).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        describe("p").await,
        vec![
            "i2 SMALLINT", "n DECIMAL(38,18)", "n52 DECIMAL(5,2)", "ts TIMESTAMP", "tstz TIMESTAMP_LTZ", "d DATE", "tm TIME",
            "j STRING", "jb STRING", "u STRING", "b BINARY", "arr ARRAY<STRING>", "iarr ARRAY<INT>", "m STRING", "f4 FLOAT", "o BIGINT",
        ]
    );
    assert_eq!(
        describe("m").await,
        vec![
            "tu SMALLINT", "bu DECIMAL(20,0)", "flag BOOLEAN", "bits BIGINT", "y SMALLINT", "d DATE", "dt TIMESTAMP",
            "ts TIMESTAMP_LTZ", "tm TIME", "j STRING", "e STRING", "vb BINARY", "amt DECIMAL(12,4)",
        ]
    );
    let rows = c
        .simple_query(
            "SELECT i2, n, n52, CAST(ts AS STRING), CAST(tstz AS STRING), d, CAST(tm AS STRING), j, jb, u, encode(b, 'hex'),
                    array_to_string(arr, '|', 'NULL'), cardinality(iarr), m, f4, o FROM p",
        )
        .await
        .unwrap();
    let got: Vec<String> = (0..16).flat_map(|i| text_column(&rows, i)).collect();
    assert_eq!(
        got,
        vec![
            "-3", "12345.678900000000000000", "123.45", "2024-02-29T13:14:15.123456", "2024-02-29T11:14:15Z", "2024-02-29",
            "23:59:58", "{\"a\": 1}", "{\"b\": [1, 2]}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "deadbeef", "x|NULL|y z", "3",
            "happy", "1.5", "42",
        ]
    );
    let rows = c
        .simple_query(
            "SELECT tu, bu, flag, bits, y, d IS NULL, CAST(dt AS STRING), CAST(ts AS STRING), CAST(tm AS STRING), j, e,
                    encode(vb, 'hex'), amt FROM m",
        )
        .await
        .unwrap();
    let got: Vec<String> = (0..13).flat_map(|i| text_column(&rows, i)).collect();
    assert_eq!(
        got,
        vec![
            "255", "18446744073709551615", "t", "513", "2024", "t", "2024-02-29T13:14:15.123456", "2024-02-29T13:14:15.500Z",
            "23:59:58", "{\"a\": 1}", "b", "deadbeef", "12345678.9012",
        ]
    );
    server.stop().await;
    pgc.batch_execute(&format!("DROP SCHEMA {ns} CASCADE")).await.unwrap();
    myc.query_drop(format!("DROP DATABASE {ns}")).await.unwrap();
}

/// A query option whose answer says whether its own connection to PostgreSQL is encrypted.
const PG_SSL_QUERY: &str = "SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// TLS to PostgreSQL (Aurora PostgreSQL enforces it): sslmode as libpq and pgjdbc spell it, in
/// the URL or the OPTIONS; verify-full checks the CA and the host name and fails with 08001
/// otherwise, leaving the session usable; a role the server only admits over TLS connects with
/// sslmode require and is refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server() {
    let (Some(pg), Some(tls)) = (pg_url(), TlsEnv::from_env()) else { return };
    let ns = unique_name("bowman_tls");
    let pgc = bowman_tests::remote::seed_postgres(&pg, &ns).await;
    let server = TestServer::start().await;
    let c = server.client().await;
    let ca = &tls.ca;
    let port = pg.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap().to_string();
    let ssl_of = |name: &str, url: String, extra: &str| {
        format!("CREATE TABLE {name} USING postgres OPTIONS (url '{url}', query '{PG_SSL_QUERY}'{extra})")
    };
    for (name, url, extra, encrypted) in [
        ("t_require", format!("{pg}?sslmode=require"), String::new(), "true"),
        ("t_full", pg.clone(), format!(", sslmode 'verify-full', sslrootcert '{ca}'"), "true"),
        ("t_full_url", format!("{pg}?sslmode=verify-full&sslrootcert={ca}"), String::new(), "true"),
        ("t_full_localhost", format!("postgres://postgres@localhost:{port}/postgres"), format!(", sslmode 'verify-full', sslrootcert '{ca}'"), "true"),
        ("t_jdbc", format!("jdbc:postgresql://127.0.0.1:{port}/postgres?user=postgres&sslmode=verify-ca&sslrootcert={ca}"), String::new(), "true"),
        // libpq's and pgjdbc's default is prefer: encrypted when the server offers it.
        ("t_default", pg.clone(), String::new(), "true"),
        ("t_disable", pg.clone(), ", sslmode 'disable'".to_string(), "false"),
        // verify-ca checks the chain only: a name the certificate does not hold is accepted.
        ("t_ca_other_name", format!("postgres://postgres@wrong-name.invalid:{port}/postgres?hostaddr=127.0.0.1"), format!(", sslmode 'verify-ca', sslrootcert '{ca}'"), "true"),
    ] {
        c.batch_execute(&ssl_of(name, url, &extra)).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let rows = c.simple_query(&format!("SELECT ssl FROM {name}")).await.unwrap();
        assert_eq!(text_column(&rows, 0), vec![encrypted], "{name}");
    }
    // A real table over verify-full, read and written.
    c.batch_execute(&format!(
        "CREATE TABLE people USING postgres OPTIONS (url '{pg}', dbtable '{ns}.people', sslmode 'verify-full', sslrootcert '{ca}');
         CREATE TABLE sink USING postgres OPTIONS (url '{pg}', dbtable '{ns}.sink', sslmode 'verify-full', sslrootcert '{ca}');
         INSERT INTO sink SELECT id, name, score, born FROM people WHERE id <= 2;"
    ))
    .await
    .unwrap();
    let rows = c.simple_query("SELECT count(*) FROM people").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["5"]);
    let n: i64 = pgc.query_one(&format!("SELECT count(*) FROM {ns}.sink"), &[]).await.unwrap().get(0);
    assert_eq!(n, 2);

    // An untrusted CA, and a host name the certificate does not hold: 08001, a message that
    // says what is wrong, and the session goes on.
    let e = c
        .batch_execute(&ssl_of("bad_ca", pg.clone(), &format!(", sslmode 'verify-full', sslrootcert '{}'", tls.other_ca)))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "08001", "{e:?}");
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(msg.contains("trusted CA") && msg.contains("bad_ca"), "{msg}");
    let e = c
        .batch_execute(&ssl_of(
            "bad_name",
            format!("postgres://postgres@wrong-name.invalid:{port}/postgres?hostaddr=127.0.0.1"),
            &format!(", sslmode 'verify-full', sslrootcert '{ca}'"),
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "08001", "{e:?}");
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(msg.contains("does not name this host"), "{msg}");
    // A CA file that does not exist, and a mode that does not: the options are wrong (22023).
    let e = c.batch_execute(&ssl_of("no_ca", pg.clone(), ", sslmode 'verify-full', sslrootcert '/nonexistent/ca.pem'")).await.unwrap_err();
    assert_eq!(code(&e), "22023", "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("/nonexistent/ca.pem"), "{e:?}");
    let e = c.batch_execute(&ssl_of("bad_mode", pg.clone(), ", sslmode 'sometimes'")).await.unwrap_err();
    assert_eq!(code(&e), "22023", "{e:?}");
    let rows = c.simple_query("SELECT count(*) FROM people").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["5"], "the session is still usable");

    // A server that admits this role only over TLS (pg_hba hostssl), as Aurora PostgreSQL 15+
    // does every connection: refused without TLS, served with it.
    let only = &tls.pg_tls_only_url;
    let e = c.batch_execute(&ssl_of("plain_refused", only.clone(), ", sslmode 'disable'")).await.unwrap_err();
    assert!(code(&e).starts_with("28"), "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("no encryption"), "{e:?}");
    c.batch_execute(&ssl_of("tls_only", format!("{only}?sslmode=require"), "")).await.unwrap();
    let rows = c.simple_query("SELECT ssl FROM tls_only").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["true"]);
    // The Redshift connector speaks the same protocol, with the same options.
    c.batch_execute(&format!(
        "CREATE TABLE rs USING redshift OPTIONS (url 'jdbc:redshift://127.0.0.1:{port}/postgres', user 'bowman_tls_only',
           query '{PG_SSL_QUERY}', sslmode 'verify-full', sslrootcert '{ca}')"
    ))
    .await
    .unwrap();
    let rows = c.simple_query("SELECT ssl FROM rs").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["true"]);
    pgc.batch_execute(&format!("DROP SCHEMA {ns} CASCADE")).await.unwrap();
}

/// TLS to MariaDB/MySQL: sslMode as the mysql client and Connector/J spell it; a server that
/// requires secure transport refuses plain connections and serves TLS ones; VERIFY_IDENTITY
/// with an untrusted CA fails with 08001 and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_over_tls_verifies_the_server() {
    let Some(tls) = TlsEnv::from_env() else { return };
    let _ = rustls_provider();
    let my = &tls.mysql_tls_url;
    let ns = unique_name("bowman_tls");
    let seed_opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(my).unwrap())
        .ssl_opts(mysql_async::SslOpts::default().with_root_certs(vec![std::path::PathBuf::from(&tls.ca).into()]));
    let mut myc = mysql_async::Conn::new(seed_opts).await.expect("connect to the TLS MariaDB");
    myc.query_drop(format!("CREATE DATABASE {ns}; CREATE TABLE {ns}.t (id INT PRIMARY KEY, name VARCHAR(20)); INSERT INTO {ns}.t VALUES (1, 'a'), (2, 'b')"))
        .await
        .unwrap();
    let port = my.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap().to_string();
    let ca = &tls.ca;
    let server = TestServer::start().await;
    let c = server.client().await;
    let cipher = "SELECT VARIABLE_VALUE AS cipher FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = ''SSL_CIPHER''";

    // Refused without TLS.
    let e = c
        .batch_execute(&format!("CREATE TABLE plain USING mysql OPTIONS (url '{my}', dbtable '{ns}.t')"))
        .await
        .unwrap_err();
    assert!(["28P01", "08004"].contains(&code(&e).as_str()), "{e:?}");
    for (name, url, extra) in [
        ("t_required", my.clone(), ", sslMode 'REQUIRED'".to_string()),
        ("t_identity", my.clone(), format!(", sslMode 'VERIFY_IDENTITY', sslrootcert '{ca}'")),
        ("t_identity_url", format!("{my}?ssl-mode=VERIFY_IDENTITY&serverSslCert={ca}"), String::new()),
        ("t_localhost", format!("mysql://root@localhost:{port}/test"), format!(", ssl_mode 'verify_identity', sslrootcert '{ca}'")),
        ("t_jdbc", format!("jdbc:mysql://127.0.0.1:{port}/test?user=root&useSSL=true&requireSSL=true"), String::new()),
        (
            "t_jdbc_verify",
            format!("jdbc:mysql://127.0.0.1:{port}/test?user=root&useSSL=true&verifyServerCertificate=true&trustCertificateKeyStoreUrl=file:{ca}"),
            String::new(),
        ),
    ] {
        c.batch_execute(&format!("CREATE TABLE {name} USING mysql OPTIONS (url '{url}', query '{cipher}'{extra})"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let rows = c.simple_query(&format!("SELECT cipher FROM {name}")).await.unwrap();
        let got = text_column(&rows, 0);
        // SSL_CIPHER is empty on a connection without TLS.
        assert!(got.len() == 1 && !got[0].is_empty(), "{name}: not encrypted: {got:?}");
    }
    c.batch_execute(&format!("CREATE TABLE t USING mysql OPTIONS (url '{my}', dbtable '{ns}.t', sslMode 'VERIFY_IDENTITY', sslrootcert '{ca}')"))
        .await
        .unwrap();
    c.batch_execute("INSERT INTO t VALUES (3, 'c')").await.unwrap();
    let rows = c.simple_query("SELECT count(*), max(name) FROM t").await.unwrap();
    assert_eq!((text_column(&rows, 0), text_column(&rows, 1)), (vec!["3".to_string()], vec!["c".to_string()]));

    let e = c
        .batch_execute(&format!(
            "CREATE TABLE bad_ca USING mysql OPTIONS (url '{my}', dbtable '{ns}.t', sslMode 'VERIFY_IDENTITY', sslrootcert '{}')",
            tls.other_ca
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "08001", "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("bad_ca"), "{e:?}");
    let rows = c.simple_query("SELECT count(*) FROM t").await.unwrap();
    assert_eq!(text_column(&rows, 0), vec!["3"], "the session is still usable");
    myc.query_drop(format!("DROP DATABASE {ns}")).await.unwrap();
}

/// Redshift's `forward_spark_s3_credentials 'true'`, as the data team's table statement has it:
/// the UNLOAD gets the server's own S3 credentials (here from the AWS_* environment, with a
/// session token), and the secret never shows in an error, the server log (at debug, driver
/// logging included), SHOW CREATE TABLE, DESCRIBE or the catalog's files. PostgreSQL stands in
/// for Redshift: it receives the UNLOAD (its log shows what was sent) and cannot run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_forwards_the_servers_s3_credentials() {
    let (Some(pg), Some(s3)) = (pg_url(), S3Env::from_env()) else { return };
    let ns = unique_name("bowman_fwd");
    let pgc = bowman_tests::remote::seed_postgres(&pg, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bowman.log");
    let key_id = format!("AKIAFWD{}", std::process::id());
    let (secret, token) = ("fwd-secret-4c1e9b", "fwd-token-77b2d0");
    let server = BinServer::spawn_logging(
        &dir.path().join("data"),
        &[
            ("BOWMAN_LOG", "debug"),
            ("AWS_ACCESS_KEY_ID", key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_SESSION_TOKEN", token),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT", s3.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ],
        Some(&log),
    );
    let c = connect(server.pg_addr).await;
    let rs_url = pg.replacen("postgres://postgres@", "jdbc:redshift://", 1);
    let tempdir = format!("s3a://{}/redshift-tmp/{ns}", s3.bucket);
    c.batch_execute(&format!(
        "CREATE TABLE sales USING com.databricks.spark.redshift
         OPTIONS (url '{rs_url}', user 'postgres', dbtable '{ns}.people', tempdir '{tempdir}', forward_spark_s3_credentials 'true')"
    ))
    .await
    .unwrap();
    // The read becomes an UNLOAD with the forwarded keys; the stand-in refuses the statement.
    let e = c.simple_query("SELECT count(*) FROM sales").await.unwrap_err();
    assert_eq!(code(&e), "42601", "PostgreSQL received the UNLOAD: {e:?}");
    assert!(e.as_db_error().unwrap().message().contains("UNLOAD"), "{e:?}");
    if let Ok(pg_log) = std::env::var("BOWMAN_TEST_PG_LOG") {
        let sent = std::fs::read_to_string(pg_log).unwrap();
        assert!(
            sent.contains(&format!("ACCESS_KEY_ID '{key_id}' SECRET_ACCESS_KEY '{secret}' SESSION_TOKEN '{token}'")),
            "the UNLOAD carries the server's credentials"
        );
    }
    // Both ways of giving credentials at once, or a bad value: the options are wrong.
    let e = c
        .batch_execute(&format!(
            "CREATE TABLE both USING redshift OPTIONS (url '{rs_url}', user 'postgres', dbtable '{ns}.people', tempdir '{tempdir}',
               forward_spark_s3_credentials 'true', aws_iam_role 'arn:aws:iam::1:role/r')"
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023", "{e:?}");
    let e = c
        .batch_execute(&format!(
            "CREATE TABLE bad USING redshift OPTIONS (url '{rs_url}', user 'postgres', dbtable '{ns}.people', tempdir '{tempdir}', forward_spark_s3_credentials 'yes please')"
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023", "{e:?}");

    let (out, err, _) = psql(
        server.pg_addr,
        "SHOW CREATE TABLE sales; DESCRIBE EXTENDED sales; SELECT * FROM information_schema.tables;
         SELECT relname, reloptions FROM pg_catalog.pg_class; SELECT * FROM sales;",
        &[],
    )
    .await;
    assert!(out.contains("forward_spark_s3_credentials"), "SHOW CREATE TABLE shows the option: {out}");
    let shown = format!("{out}\n{err}\n{e:?}");
    drop(c);
    let mut server = server;
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(30));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("redshift unload"), "the UNLOAD is logged, without its credentials: {logged}");
    let mut stored = Vec::new();
    let mut dirs = vec![dir.path().join("data")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                stored.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    for s in [secret, token] {
        assert!(!shown.contains(s), "{s} shown to the client:\n{shown}");
        assert!(!logged.contains(s), "{s} in the server log:\n{logged}");
        assert!(!stored.contains(s), "{s} stored in the catalog");
    }
    pgc.batch_execute(&format!("DROP SCHEMA {ns} CASCADE")).await.unwrap();
}

/// Out-of-range timeouts and pool sizes in a remote table's OPTIONS are refused with 22023 and
/// the allowed range; they used to panic the connection task (the client lost its connection
/// with no SQLSTATE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_remote_options_are_22023_with_the_range() {
    let (Some(pg), Some(my)) = (pg_url(), mysql_url()) else { return };
    let server = TestServer::start().await;
    let c = server.client().await;
    for (connector, url) in [("postgres", &pg), ("mysql", &my)] {
        for (option, value) in [
            ("connect_timeout", "1e100"),
            ("connect_timeout", "-5"),
            ("querytimeout", "1e300"),
            ("liveness_interval", "1e100"),
            ("pool_size", "18446744073709551615"),
            ("pool_size", "18446744073709551614"),
            ("pool_size", "0"),
        ] {
            let err = c
                .batch_execute(&format!(
                    "CREATE TABLE bad_{option} USING {connector} OPTIONS (url '{url}', dbtable 'nums', {option} '{value}')"
                ))
                .await
                .unwrap_err();
            assert_eq!(code(&err), "22023", "{connector} {option} '{value}': {err:?}");
            let message = err.as_db_error().unwrap().message().to_string();
            assert!(message.contains(option) && message.contains("between"), "{message}");
            // The same connection goes on, and another client is answered.
            assert_eq!(c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i64>(0), 1);
            assert_eq!(server.client().await.query_one("SELECT 2", &[]).await.unwrap().get::<_, i64>(0), 2);
        }
    }
    server.stop().await;
}
