//! Privileges over real connections (pgwire with SCRAM, psql, Flight SQL): a non-superuser is
//! refused with 42501 until granted, whatever path the statement takes; local LOCATIONs need
//! pg_read_server_files; psql's `\dp` shows the grants. Each refusal leaves the server up, the
//! same connection usable and other clients answered.

use std::net::SocketAddr;

use bowman_tests::TestServer;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
}

async fn login(addr: SocketAddr, user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = format!("host=127.0.0.1 port={} user={user} password='{password}' dbname=bowman", addr.port());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A server whose bowman.toml has one user, `admin` (the superuser).
async fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bowman_tests::config_for(&dir.path().join("data"));
    config.users.insert("admin", bowman_server::auth::ScramSecret::from_password("admin pass"));
    config.superusers.insert("admin".to_string());
    (TestServer::start_with(config).await, dir)
}

/// `sql` fails with `expected`; then the same connection and a new one both answer.
async fn refused(addr: SocketAddr, c: &tokio_postgres::Client, sql: &str, expected: &str) -> String {
    let e = c.batch_execute(sql).await.expect_err(sql);
    assert_eq!(code(&e), expected, "{sql}: {e:?}");
    let one: i64 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "the connection goes on after {sql}");
    let other = login(addr, "admin", "admin pass").await.expect("another client is answered");
    let one: i64 = other.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    message(&e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_superuser_is_refused_until_granted() {
    let (server, _dir) = server().await;
    let addr = server.pg_addr;
    let admin = login(addr, "admin", "admin pass").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE t (a INT, s STRING);
             INSERT INTO t VALUES (1, 'x'), (2, 'y');
             CREATE VIEW v AS SELECT a FROM t;
             CREATE USER alice PASSWORD 'alice pass'",
        )
        .await
        .unwrap();
    let alice = login(addr, "alice", "alice pass").await.unwrap();

    // Roles: alice has neither SUPERUSER nor CREATEROLE.
    refused(addr, &alice, "CREATE USER mallory PASSWORD 'x'", "42501").await;
    assert_eq!(code(&login(addr, "mallory", "x").await.err().expect("mallory was not created")), "28P01");
    refused(addr, &alice, "CREATE ROLE boss SUPERUSER", "42501").await;
    refused(addr, &alice, "ALTER USER alice CREATEROLE", "42501").await;
    refused(addr, &alice, "ALTER USER alice SUPERUSER", "42501").await;
    refused(addr, &alice, "DROP USER alice", "42501").await;
    refused(addr, &alice, "GRANT pg_read_server_files TO alice", "42501").await;
    // Her own password she may change.
    alice.batch_execute("ALTER USER alice PASSWORD 'alice pass'").await.unwrap();

    // Reads, by every path a query can take.
    for sql in [
        "SELECT * FROM t",
        "SELECT count(*) FROM public.t",
        "SELECT (SELECT count(*) FROM t)",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM t)",
        "SELECT 1 WHERE 1 IN (SELECT a FROM t)",
        "WITH x AS (SELECT * FROM t) SELECT * FROM x",
        "SELECT * FROM (VALUES (1)) AS v(a) JOIN t ON v.a = t.a",
        "SELECT 1 UNION ALL SELECT a FROM t",
        "SELECT * FROM v",
        "EXPLAIN ANALYZE SELECT * FROM t",
        "COPY t TO STDOUT",
        "COPY (SELECT * FROM t) TO STDOUT",
        "DECLARE c CURSOR FOR SELECT * FROM t",
    ] {
        let m = refused(addr, &alice, sql, "42501").await;
        assert!(m.contains("permission denied"), "{sql}: {m}");
    }
    // The extended protocol (prepared statements) checks the same.
    let e = alice.query("SELECT a FROM t WHERE a > $1", &[&0i32]).await.expect_err("prepared read");
    assert_eq!(code(&e), "42501");
    // Writes and DDL.
    for sql in [
        "INSERT INTO t VALUES (3, 'z')",
        "INSERT INTO t SELECT 4, 'w'",
        "INSERT OVERWRITE TABLE t SELECT 5, 'v'",
        "DROP TABLE t",
        "DROP VIEW v",
        "ALTER TABLE t RENAME TO t2",
        "CREATE TABLE mine (a INT)",
        "CREATE DATABASE hers",
        "CREATE VIEW w AS SELECT 1 AS one",
    ] {
        refused(addr, &alice, sql, "42501").await;
    }
    let e = alice.batch_execute("COPY t FROM STDIN").await.expect_err("COPY FROM");
    assert_eq!(code(&e), "42501");

    // BI tools ask before they read.
    let row = admin
        .query_one("SELECT has_table_privilege('alice', 't', 'SELECT'), has_table_privilege('admin', 't', 'SELECT')", &[])
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0) && row.get::<_, bool>(1));
    let mine: bool = alice.query_one("SELECT has_table_privilege('t', 'SELECT')", &[]).await.unwrap().get(0);
    assert!(!mine);

    // Granting fixes each.
    admin.batch_execute("GRANT SELECT ON TABLE t TO alice").await.unwrap();
    let n: i64 = alice.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    let n: i64 = alice.query_one("WITH x AS (SELECT * FROM t) SELECT count(*) FROM x", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    let mine: bool = alice.query_one("SELECT has_table_privilege('t', 'SELECT')", &[]).await.unwrap().get(0);
    assert!(mine);
    // The view needs its own grant; its owner's privileges cover the table it reads.
    refused(addr, &alice, "SELECT * FROM v", "42501").await;
    admin.batch_execute("GRANT SELECT ON v TO alice").await.unwrap();
    let n: i64 = alice.query_one("SELECT count(*) FROM v", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    // Reading is not writing.
    refused(addr, &alice, "INSERT INTO t VALUES (3, 'z')", "42501").await;
    admin.batch_execute("GRANT INSERT ON t TO alice").await.unwrap();
    alice.batch_execute("INSERT INTO t VALUES (3, 'z')").await.unwrap();
    // An overwrite also deletes: INSERT alone is not enough.
    refused(addr, &alice, "INSERT OVERWRITE TABLE t SELECT 5, 'v'", "42501").await;
    // Still not the owner.
    refused(addr, &alice, "DROP TABLE t", "42501").await;

    // CREATE on the database lets her create tables, which she owns.
    admin.batch_execute("GRANT CREATE ON DATABASE public TO alice").await.unwrap();
    alice.batch_execute("CREATE TABLE mine (a INT); INSERT INTO mine VALUES (7); DROP TABLE mine; CREATE TABLE kept (a INT)").await.unwrap();

    // CREATEROLE lets her create users, who log in.
    admin.batch_execute("ALTER USER alice CREATEROLE").await.unwrap();
    alice.batch_execute("CREATE USER bob PASSWORD 'bob pass'").await.unwrap();
    let bob = login(addr, "bob", "bob pass").await.expect("a user created by a CREATEROLE role logs in");
    refused(addr, &bob, "SELECT * FROM t", "42501").await;
    // Membership: bob inherits what a role he is granted holds.
    admin.batch_execute("CREATE ROLE readers; GRANT SELECT ON ALL TABLES IN SCHEMA public TO readers; GRANT readers TO bob").await.unwrap();
    let n: i64 = bob.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    admin.batch_execute("REVOKE readers FROM bob").await.unwrap();
    refused(addr, &bob, "SELECT * FROM t", "42501").await;
    // A role without LOGIN cannot log in.
    admin.batch_execute("ALTER ROLE bob NOLOGIN").await.unwrap();
    assert_eq!(code(&login(addr, "bob", "bob pass").await.err().expect("NOLOGIN")), "28P01");

    // information_schema.table_privileges lists the grants.
    let rows = admin
        .simple_query(
            "SELECT grantor, grantee, privilege_type FROM information_schema.table_privileges
             WHERE table_name = 't' AND grantee = 'alice' ORDER BY privilege_type",
        )
        .await
        .unwrap();
    let found: Vec<String> = (0..3).flat_map(|i| bowman_tests::text_column(&rows, i)).collect();
    assert_eq!(found, vec!["admin", "admin", "alice", "alice", "INSERT", "SELECT"], "{found:?}");

    // Revoking takes it away again, from the next statement on.
    admin.batch_execute("REVOKE SELECT ON t FROM alice").await.unwrap();
    refused(addr, &alice, "SELECT * FROM t", "42501").await;

    // Hostile inputs to GRANT itself.
    refused(addr, &admin, "GRANT SELECT ON nope TO alice", "42P01").await;
    refused(addr, &admin, "GRANT SELECT ON t TO nobody_at_all", "42704").await;
    refused(addr, &admin, "GRANT CREATE ON t TO alice", "0LP01").await;
    refused(addr, &admin, "GRANT readers TO readers", "0LP01").await;
    refused(addr, &admin, "CREATE ROLE pg_sneaky", "42939").await;
    // alice owns a table: dropping her would leave it without an owner.
    refused(addr, &admin, "DROP ROLE alice", "2BP01").await;
    server.stop().await;
}

/// A local LOCATION (a server path or a file:// URL) reads server files: 42501 for a
/// non-superuser, for external tables, temporary views and geodata layers, until a superuser
/// grants pg_read_server_files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_locations_need_pg_read_server_files() {
    let (server, dir) = server().await;
    let addr = server.pg_addr;
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("rows.csv"), "a,b\n1,2\n").unwrap();
    let admin = login(addr, "admin", "admin pass").await.unwrap();
    admin.batch_execute("CREATE USER alice PASSWORD 'alice pass'; GRANT CREATE ON DATABASE public TO alice").await.unwrap();
    let alice = login(addr, "alice", "alice pass").await.unwrap();

    let etc = [
        "CREATE EXTERNAL TABLE etc (line STRING) USING csv LOCATION '/etc'",
        "CREATE EXTERNAL TABLE etc (line STRING) USING csv LOCATION 'file:///etc'",
        "CREATE TABLE etc (line STRING) USING csv LOCATION '/etc/'",
        "CREATE TEMPORARY VIEW etc USING csv OPTIONS (path '/etc/hostname')",
        "CREATE FUNCTION shadow USING geodata OPTIONS (states '/etc/shadow')",
        "CREATE FUNCTION shadow USING geodata OPTIONS (states 'file:///etc/passwd')",
    ];
    for sql in etc {
        let m = refused(addr, &alice, sql, "42501").await;
        assert!(m.contains("pg_read_server_files"), "{sql}: {m}");
    }
    let mine = format!("CREATE EXTERNAL TABLE rows (a INT, b INT) USING csv OPTIONS (header 'true') LOCATION '{}'", files.display());
    refused(addr, &alice, &mine, "42501").await;

    admin.batch_execute("GRANT pg_read_server_files TO alice").await.unwrap();
    alice.batch_execute(&mine).await.unwrap();
    let n: i64 = alice.query_one("SELECT sum(a + b) FROM rows", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    // Reading server files is not writing them: her table over a local directory stays
    // read-only until she may write server files too.
    refused(addr, &alice, "INSERT INTO rows VALUES (5, 6)", "42501").await;
    admin.batch_execute("GRANT pg_write_server_files TO alice").await.unwrap();
    alice.batch_execute("INSERT INTO rows VALUES (5, 6)").await.unwrap();
    let n: i64 = alice.query_one("SELECT sum(a + b) FROM rows", &[]).await.unwrap().get(0);
    assert_eq!(n, 14);
    server.stop().await;
}

/// A geodata layer pointed at a file that is not geodata fails without printing any of it (the
/// first line of `/etc/shadow` was in the message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geodata_errors_never_echo_file_contents() {
    let (server, dir) = server().await;
    let addr = server.pg_addr;
    let admin = login(addr, "admin", "admin pass").await.unwrap();
    let secret = "root:TOPSECRET-9f3e1a:19000:0:99999:7:::";
    let cases = [
        ("one_line.txt", format!("{secret}\n")),
        ("two_lines.txt", format!("{secret}\nsecond-line-SECRET-77b2\n")),
        ("points.csv", "latitude,longitude\nSECRET-lat-5c1d,10\n".to_string()),
        ("wkt.csv", "wkt,name\nPOLYGON((SECRET-wkt-3a9b)),x\n".to_string()),
        ("ragged.csv", "wkt,name\nSECRET-ragged-81f0\n".to_string()),
    ];
    for (file, text) in &cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        for layer in ["states", "zip_points"] {
            let sql = format!("CREATE FUNCTION leak USING geodata OPTIONS ({layer} '{}')", path.display());
            let m = refused(addr, &admin, &sql, "22023").await;
            for line in text.lines() {
                for word in line.split([',', ':', '(', ')']).filter(|w| w.contains("SECRET")) {
                    assert!(!m.contains(word), "{file} as {layer}: the error echoes the file: {m}");
                }
            }
        }
    }
    server.stop().await;
}

/// psql's `\dp` lists each table's grants from pg_class.relacl (`alice=r/admin`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_dp_shows_the_grants() {
    let (server, _dir) = server().await;
    let addr = server.pg_addr;
    let admin = login(addr, "admin", "admin pass").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE t (a INT); CREATE TABLE u (a INT); CREATE USER alice PASSWORD 'a'; CREATE ROLE readers;
             GRANT SELECT ON t TO alice; GRANT SELECT, INSERT ON t TO readers WITH GRANT OPTION",
        )
        .await
        .unwrap();
    let out = tokio::process::Command::new("psql")
        .arg(format!("host=127.0.0.1 port={} user=admin dbname=bowman", addr.port()))
        .args(["-X", "-c", "\\dp"])
        .env("PGPASSWORD", "admin pass")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("alice=r/admin"), "{stdout}");
    assert!(stdout.contains("readers=a*r*/admin"), "{stdout}");
    assert!(stdout.contains("admin=arwdD/admin"), "{stdout}");
    // u has no grants: PostgreSQL's default (NULL) ACL prints as nothing.
    let u_line = stdout.lines().find(|l| l.contains(" u ")).unwrap_or_default().to_string();
    assert!(!u_line.contains('='), "{stdout}");
    let relacl: Option<String> = admin
        .query_one("SELECT array_to_string(relacl, ',') FROM pg_catalog.pg_class WHERE relname = 't'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(relacl.as_deref(), Some("admin=arwdD/admin,alice=r/admin,readers=a*r*/admin"));
    server.stop().await;
}

/// Flight SQL runs each request as the user its token stands for, with the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_checks_the_same_privileges() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use futures::TryStreamExt;
    let (server, _dir) = server().await;
    let admin = login(server.pg_addr, "admin", "admin pass").await.unwrap();
    admin.batch_execute("CREATE TABLE t (a INT); INSERT INTO t VALUES (1), (2); CREATE USER alice PASSWORD 'alice pass'").await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.flight_addr)).unwrap().connect().await.unwrap();
    let mut alice = FlightSqlServiceClient::new(channel);
    alice.handshake("alice", "alice pass").await.unwrap();
    // Planning shows only the columns (metadata is visible to all); reading is refused.
    let info = alice.execute("SELECT * FROM t".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let err = match alice.do_get(ticket).await {
        Err(e) => e.to_string(),
        Ok(stream) => stream.try_collect::<Vec<_>>().await.expect_err("not granted").to_string(),
    };
    assert!(err.contains("42501") && err.contains("does not have permission"), "{err}");
    let err = alice.execute_update("INSERT INTO t VALUES (3)".into(), None).await.expect_err("not granted");
    assert!(err.to_string().contains("42501"), "{err}");
    let err = alice.execute_update("CREATE USER mallory PASSWORD 'm'".into(), None).await.expect_err("no CREATEROLE");
    assert!(err.to_string().contains("42501"), "{err}");
    // The same client goes on.
    let info = alice.execute("SELECT 1 AS one".into(), None).await.unwrap();
    assert_eq!(info.endpoint.len(), 1);

    admin.batch_execute("GRANT SELECT ON t TO alice").await.unwrap();
    let info = alice.execute("SELECT sum(a) AS s FROM t".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<_> = alice.do_get(ticket).await.unwrap().try_collect().await.unwrap();
    let s = batches[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0);
    assert_eq!(s, 3);
    server.stop().await;
}
