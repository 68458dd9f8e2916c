//! The sweeper, with the real binary: what an overwrite retired and what a killed write left
//! is deleted after a `kill -9` and a restart, and with two servers on one PostgreSQL catalog
//! neither deletes the other's write in progress, while either collects what a dead one left.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bowman_tests::{BinServer, commit_dirs, connect};

/// Wait until `cond` holds, at most `timeout`.
async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

async fn totals(c: &tokio_postgres::Client, table: &str) -> (i64, i64) {
    let row = c.query_one(&format!("SELECT count(*), coalesce(sum(v), 0) FROM {table}"), &[]).await.unwrap();
    (row.get(0), row.get(1))
}

const CREATE: &str = "CREATE TABLE k (v BIGINT, dt STRING) USING parquet PARTITIONED BY (dt)";

fn fill(n: u64) -> String {
    format!("SELECT value, concat('p', CAST(value % 4 AS STRING)) FROM generate_series(1, {n})")
}

/// An INSERT that runs for minutes and puts files on disk long before it ends (small write
/// buffers; a file appears once its first row group, about a million rows, is complete: the
/// table's Parquet options are those it was opened with, so the SET of the row group size is
/// not what makes it appear).
fn long_insert() -> String {
    format!(
        "SET datafusion.execution.parquet.max_row_group_size = 1000;
         SET datafusion.execution.objectstore_writer_buffer_size = 1024;
         INSERT INTO k {}",
        fill(200_000_000)
    )
}

/// A query that runs far longer than any test: while it runs, a server whose catalog nobody
/// else uses keeps what later commits retire (the query may still read it).
const ENDLESS: &str = "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_an_overwrite_leaves_only_live_directories_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("warehouse").join("k");
    let server = BinServer::spawn(dir.path(), &[]);
    let c = connect(server.pg_addr).await;
    c.batch_execute(&format!("{CREATE}; INSERT INTO k {}", fill(1000))).await.unwrap();
    let old = commit_dirs(&table);
    assert_eq!(old.len(), 4, "{old:?}");
    // A reader that started before the overwrite holds its retired directories.
    let reader = connect(server.pg_addr).await;
    let reading = tokio::spawn(async move { reader.simple_query(ENDLESS).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.batch_execute(&format!("INSERT OVERWRITE TABLE k PARTITION (dt) {}", fill(200))).await.unwrap();
    let after = commit_dirs(&table);
    assert_eq!(after.len(), 8, "the retired directories stay while the reader runs: {after:?}");
    assert!(!reading.is_finished(), "the reader ended before the kill");
    server.kill9();

    let server = BinServer::spawn(dir.path(), &[]);
    let c = connect(server.pg_addr).await;
    let new: BTreeSet<String> = after.difference(&old).cloned().collect();
    assert!(
        wait_for(Duration::from_secs(20), || commit_dirs(&table) == new).await,
        "after the restart's sweep: {:?}, expected only the live {new:?}",
        commit_dirs(&table)
    );
    assert_eq!(totals(&c, "k").await, (200, 200 * 201 / 2), "the table lost the overwrite's rows");
    let _ = reading.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_killed_midway_is_collected_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("warehouse").join("k");
    let server = BinServer::spawn(dir.path(), &[]);
    let c = connect(server.pg_addr).await;
    c.batch_execute(&format!("{CREATE}; INSERT INTO k {}", fill(1000))).await.unwrap();
    let live = commit_dirs(&table);
    let writer = tokio::spawn(async move { c.batch_execute(&long_insert()).await });
    assert!(
        wait_for(Duration::from_secs(240), || commit_dirs(&table).len() > live.len()).await,
        "the long INSERT wrote no directory"
    );
    assert!(!writer.is_finished(), "the INSERT ended before the kill: {:?}", writer.await);
    server.kill9();
    let _ = writer.await;
    let orphans: BTreeSet<String> = commit_dirs(&table).difference(&live).cloned().collect();
    assert!(!orphans.is_empty());

    let server = BinServer::spawn(dir.path(), &[]);
    let c = connect(server.pg_addr).await;
    assert!(
        wait_for(Duration::from_secs(20), || commit_dirs(&table) == live).await,
        "the killed write's directories stayed: {:?}",
        commit_dirs(&table).difference(&live).collect::<Vec<_>>()
    );
    assert_eq!(totals(&c, "k").await, (1000, 1000 * 1001 / 2));
    // The server still writes afterwards.
    c.batch_execute(&format!("INSERT INTO k {}", fill(10))).await.unwrap();
    assert_eq!(totals(&c, "k").await, (1010, 1000 * 1001 / 2 + 55));
}

/// A new, empty PostgreSQL database for one test's catalog, and its URL.
async fn fresh_catalog(base: &str, prefix: &str) -> String {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls).await.expect("connect to BOWMAN_TEST_PG_URL");
    tokio::spawn(conn);
    let name = bowman_tests::unique_name(prefix).to_lowercase();
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let (head, _) = base.rsplit_once('/').expect("a database in BOWMAN_TEST_PG_URL");
    format!("{head}/{name}")
}

/// Two servers on one PostgreSQL catalog and one warehouse, sweeping often.
struct Pair {
    _dirs: [tempfile::TempDir; 3],
    warehouse: std::path::PathBuf,
    env: Vec<(String, String)>,
    data: [std::path::PathBuf; 2],
}

impl Pair {
    async fn new(prefix: &str, extra: &[(&str, &str)]) -> Option<Pair> {
        let pg = bowman_tests::pg_url()?;
        let catalog = fresh_catalog(&pg, prefix).await;
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let warehouse = dirs[2].path().join("warehouse");
        let key = dirs[2].path().join("secret.key");
        let mut env: Vec<(String, String)> = vec![
            ("BOWMAN_CATALOG".into(), catalog),
            ("BOWMAN_WAREHOUSE".into(), warehouse.display().to_string()),
            ("BOWMAN_SECRET_KEY_FILE".into(), key.display().to_string()),
            ("BOWMAN_SWEEP_INTERVAL".into(), "200ms".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let data = [dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf()];
        Some(Pair { _dirs: dirs, warehouse, env, data })
    }

    fn spawn(&self, node: usize) -> BinServer {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        BinServer::spawn(&self.data[node], &env)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_progress_on_one_node_survives_the_other_nodes_sweeper() {
    let Some(pair) = Pair::new("sweep_intent", &[("BOWMAN_WRITE_LEASE", "3s")]).await else { return };
    let a = pair.spawn(0);
    let ca = connect(a.pg_addr).await;
    ca.batch_execute(&format!("{CREATE}; INSERT INTO k {}", fill(1000))).await.unwrap();
    let table = pair.warehouse.join("k");
    let live = commit_dirs(&table);
    assert_eq!(live.len(), 4, "{live:?}");
    let b = pair.spawn(1);
    let cb = connect(b.pg_addr).await;
    assert_eq!(totals(&cb, "k").await, (1000, 1000 * 1001 / 2));

    let writer = tokio::spawn(async move { ca.batch_execute(&long_insert()).await });
    assert!(
        wait_for(Duration::from_secs(240), || commit_dirs(&table).len() > live.len()).await,
        "the long INSERT on node A wrote no directory"
    );
    let writing: BTreeSet<String> = commit_dirs(&table).difference(&live).cloned().collect();
    // Many of B's passes, and more than twice the lease A renews.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!writer.is_finished(), "the INSERT ended too soon: {:?}", writer.await);
    let now = commit_dirs(&table);
    assert!(writing.is_subset(&now), "node B deleted node A's write in progress: had {writing:?}, now {now:?}");
    assert_eq!(totals(&cb, "k").await, (1000, 1000 * 1001 / 2), "node B sees the write before it commits");

    // Once A is dead its lease runs out, and B collects the write.
    a.kill9();
    let _ = writer.await;
    assert!(
        wait_for(Duration::from_secs(20), || commit_dirs(&table) == live).await,
        "node B left the dead write's directories: {:?}",
        commit_dirs(&table).difference(&live).collect::<Vec<_>>()
    );
    assert_eq!(totals(&cb, "k").await, (1000, 1000 * 1001 / 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_dead_node_retired_is_deleted_by_the_other_after_retention() {
    let Some(pair) = Pair::new("sweep_retired", &[("BOWMAN_FILE_RETENTION", "3s")]).await else { return };
    retired_by_a_dead_node_goes_after(&pair, Duration::from_secs(3), None).await;
}

/// Node A overwrites and is killed at once; node B keeps what A retired for `retention`, then
/// deletes it, and the table reads the new contents. `shown`: what A's `SHOW file_retention`
/// must say first.
async fn retired_by_a_dead_node_goes_after(pair: &Pair, retention: Duration, shown: Option<&str>) {
    let a = pair.spawn(0);
    let b = pair.spawn(1);
    let ca = connect(a.pg_addr).await;
    if let Some(expected) = shown {
        let value: String = ca.query_one("SHOW file_retention", &[]).await.unwrap().get(0);
        assert_eq!(value, expected);
    }
    ca.batch_execute(&format!("{CREATE}; INSERT INTO k {}", fill(1000))).await.unwrap();
    let table = pair.warehouse.join("k");
    let old = commit_dirs(&table);
    assert_eq!(old.len(), 4, "{old:?}");
    // The commit retires the old directories at some moment between these two instants.
    let started = Instant::now();
    ca.batch_execute(&format!("INSERT OVERWRITE TABLE k PARTITION (dt) {}", fill(200))).await.unwrap();
    let committed = Instant::now();
    a.kill9();
    let after = commit_dirs(&table);
    assert!(committed.elapsed() < retention, "the kill came after the retention");
    assert_eq!(after.len(), 8, "the retired directories are kept for file_retention: {after:?}");
    let new: BTreeSet<String> = after.difference(&old).cloned().collect();
    assert!(
        wait_for(Duration::from_secs(20), || commit_dirs(&table) == new).await,
        "node B left what dead node A retired: {:?}",
        commit_dirs(&table)
    );
    assert!(started.elapsed() >= retention, "deleted before file_retention");
    let cb = connect(b.pg_addr).await;
    assert_eq!(totals(&cb, "k").await, (200, 200 * 201 / 2));
}

/// The server's retention is its `file_retention` setting (`[settings]`, or here
/// `BOWMAN_SETTING_FILE_RETENTION`), the same value sessions start with: retired directories of
/// a node that died stay that long for readers on the other node, then go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_file_retention_setting_is_what_the_sweeper_keeps_retired_files_for() {
    let Some(pair) = Pair::new("sweep_setting", &[("BOWMAN_SETTING_FILE_RETENTION", "4s")]).await else { return };
    retired_by_a_dead_node_goes_after(&pair, Duration::from_secs(4), Some("4s")).await;
}
