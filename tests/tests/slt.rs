//! Runs every `tests/slt/**/*.slt` file over pgwire, each against its own fresh in-process server.
//! Errors reach the files as "SQLSTATE: message", so `statement error 42P01` checks the code.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bowman_tests::TestServer;
use sqllogictest::{DBOutput, DefaultColumnType};
use tokio_postgres::SimpleQueryMessage;

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

struct Pg {
    client: tokio_postgres::Client,
}

#[async_trait]
impl sqllogictest::AsyncDB for Pg {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let messages = self.client.simple_query(sql).await.map_err(|e| match e.as_db_error() {
            Some(db) => SltError(format!("{}: {}", db.code().code(), db.message())),
            None => SltError(e.to_string()),
        })?;
        let mut rows = Vec::new();
        let mut columns = 0;
        let mut saw_rows = false;
        let mut affected = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(desc) => {
                    saw_rows = true;
                    columns = desc.len();
                }
                SimpleQueryMessage::Row(row) => {
                    saw_rows = true;
                    columns = row.len();
                    rows.push((0..row.len()).map(|i| row.get(i).map(|v| if v.is_empty() { "(empty)".to_string() } else { v.to_string() }).unwrap_or_else(|| "NULL".to_string())).collect());
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        if saw_rows {
            Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; columns], rows })
        } else {
            Ok(DBOutput::StatementComplete(affected))
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "bowman"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("slt dir").flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "slt") {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    // BOWMAN_SLT=name runs only the files whose path contains `name`.
    if let Ok(only) = std::env::var("BOWMAN_SLT") {
        files.retain(|f| f.to_string_lossy().contains(&only));
    }
    assert!(!files.is_empty(), "no .slt files under {}", root.display());
    let mut failures = Vec::new();
    for file in &files {
        let server = TestServer::start().await;
        let addr = server.pg_addr;
        let scratch = tempfile::tempdir().unwrap();
        let mut runner = sqllogictest::Runner::new(move || async move { Ok(Pg { client: bowman_tests::connect(addr).await }) });
        runner.with_column_validator(|_, _| true);
        // __SCRATCH__ is an empty directory for tables with a LOCATION.
        runner.set_var("SCRATCH".to_string(), scratch.path().display().to_string());
        match runner.run_file_async(file).await {
            Ok(()) => eprintln!("ok   {}", file.display()),
            Err(e) => {
                eprintln!("FAIL {}\n{e}", file.display());
                failures.push(format!("{}: {e}", file.display()));
            }
        }
        server.stop().await;
    }
    assert!(failures.is_empty(), "{} of {} sqllogictest files failed:\n{}", failures.len(), files.len(), failures.join("\n\n"));
}

/// tests/slt-remote/conformance.slt once per SQL-database connector, over identical tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_connector_conformance() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt-remote/conformance.slt");
    let mut runs: Vec<(&str, String, String, String)> = Vec::new(); // connector, url, namespace, extra
    let mut cleanup_pg = None;
    let mut cleanup_my = None;
    if let Some(pg) = bowman_tests::pg_url() {
        let schema = bowman_tests::unique_name("bowman_conf");
        cleanup_pg = Some((bowman_tests::remote::seed_postgres(&pg, &schema).await, schema.clone()));
        runs.push(("postgres", pg.clone(), schema.clone(), String::new()));
        // Redshift's wire path is PostgreSQL's; PostgreSQL stands in for it.
        runs.push(("redshift", pg.clone(), schema, ", connect_timeout '10'".into()));
    }
    if let Some(my) = bowman_tests::mysql_url() {
        let db = bowman_tests::unique_name("bowman_conf");
        cleanup_my = Some((bowman_tests::remote::seed_mysql(&my, &db).await, db.clone()));
        runs.push(("mysql", my, db, String::new()));
    }
    let mut failures = Vec::new();
    for (connector, url, ns, extra) in runs {
        // Each run starts from the same sink.
        if let Some((c, schema)) = &cleanup_pg {
            if connector != "mysql" {
                c.batch_execute(&format!("TRUNCATE {schema}.sink")).await.unwrap();
            }
        }
        let server = TestServer::start().await;
        let addr = server.pg_addr;
        let mut runner = sqllogictest::Runner::new(move || async move { Ok(Pg { client: bowman_tests::connect(addr).await }) });
        runner.with_column_validator(|_, _| true);
        let unreachable = if connector == "mysql" { "mysql://root@127.0.0.1:1/test" } else { "postgres://postgres@127.0.0.1:1/postgres" };
        for (k, v) in [
            ("CONNECTOR", connector.to_string()),
            ("URL", url.clone()),
            ("PEOPLE", format!("{ns}.people")),
            ("SINK", format!("{ns}.sink")),
            ("MISSING", format!("{ns}.no_such_table")),
            ("EXTRA", extra.clone()),
            ("UNREACHABLE", unreachable.to_string()),
            ("SLOW_QUERY", if connector == "mysql" { "SELECT SLEEP(5) AS s" } else { "SELECT 1 AS s FROM pg_sleep(5)" }.to_string()),
        ] {
            runner.set_var(k.to_string(), v);
        }
        match runner.run_file_async(&file).await {
            Ok(()) => eprintln!("ok   {connector}: {}", file.display()),
            Err(e) => {
                eprintln!("FAIL {connector}: {}\n{e}", file.display());
                failures.push(format!("{connector}: {e}"));
            }
        }
        server.stop().await;
    }
    if let Some((c, schema)) = cleanup_pg {
        let _ = c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await;
    }
    if let Some((mut c, db)) = cleanup_my {
        use mysql_async::prelude::Queryable;
        let _ = c.query_drop(format!("DROP DATABASE {db}")).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// tests/slt-remote/stores.slt once per non-SQL store (Kafka on Tansu, Redis, Cassandra on the
/// CQL stand-in), each over an empty source it fills and one that stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_connector_conformance() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt-remote/stores.slt");
    let columns = "(id INT, name STRING, qty BIGINT, price DOUBLE, ok BOOLEAN, born DATE, seen TIMESTAMP)";
    let ns = bowman_tests::unique_name("conf");
    // connector, columns, options of `items`, options of `nothing`
    let mut runs: Vec<(&str, String, String, String)> = Vec::new();
    if let Some(bootstrap) = bowman_tests::kafka_bootstrap() {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin client");
        let (items, nothing) = (format!("{ns}_items"), format!("{ns}_nothing"));
        let topics = [NewTopic::new(&items, 3, TopicReplication::Fixed(1)), NewTopic::new(&nothing, 2, TopicReplication::Fixed(1))];
        for r in admin.create_topics(&topics, &AdminOptions::new()).await.expect("create topics") {
            r.expect("topic created");
        }
        runs.push((
            "kafka",
            columns.into(),
            format!("bootstrap_servers '{bootstrap}', topic '{items}'"),
            format!("bootstrap_servers '{bootstrap}', topic '{nothing}'"),
        ));
    }
    if let Some(url) = bowman_tests::redis_url() {
        runs.push((
            "redis",
            columns.into(),
            format!("url '{url}', key_parts '{ns}:items:{{id}}', value_format 'hash'"),
            format!("url '{url}', key_parts '{ns}:nothing:{{id}}', value_format 'hash'"),
        ));
    }
    if let Some(addr) = bowman_tests::cql_stand_in() {
        use scylla::client::session_builder::SessionBuilder;
        let session = SessionBuilder::new().known_node(&addr).build().await.expect("connect to the CQL server");
        session
            .query_unpaged(format!("CREATE KEYSPACE {ns} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"), &[])
            .await
            .expect("keyspace");
        for t in ["items", "nothing"] {
            session
                .query_unpaged(
                    format!("CREATE TABLE {ns}.{t} (id int PRIMARY KEY, name text, qty bigint, price double, ok boolean, born date, seen timestamp)"),
                    &[],
                )
                .await
                .expect("table");
        }
        runs.push((
            "cassandra",
            String::new(),
            format!("contact_points '{addr}', keyspace '{ns}', table 'items'"),
            format!("contact_points '{addr}', keyspace '{ns}', table 'nothing'"),
        ));
    }
    let mut failures = Vec::new();
    for (connector, columns, items, nothing) in runs {
        let server = TestServer::start().await;
        let addr = server.pg_addr;
        let mut runner = sqllogictest::Runner::new(move || async move { Ok(Pg { client: bowman_tests::connect(addr).await }) });
        runner.with_column_validator(|_, _| true);
        for (k, v) in [("CONNECTOR", connector.to_string()), ("COLUMNS", columns), ("ITEMS", items), ("NOTHING", nothing)] {
            runner.set_var(k.to_string(), v);
        }
        match runner.run_file_async(&file).await {
            Ok(()) => eprintln!("ok   {connector}: {}", file.display()),
            Err(e) => {
                eprintln!("FAIL {connector}: {}\n{e}", file.display());
                failures.push(format!("{connector}: {e}"));
            }
        }
        server.stop().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
