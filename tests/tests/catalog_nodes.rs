//! Two Bowman servers on one PostgreSQL catalog (and one warehouse), as a deployment with
//! several nodes runs them: what an INSERT on one node costs the other, and overwrites of the
//! same partition from both nodes at once.
//!
//! Needs PostgreSQL (`BOWMAN_TEST_PG_URL`, or one on 127.0.0.1:5432); each test creates its own
//! catalog database and drops it afterwards.

use std::time::Duration;

use bowman_server::config::SecretKeySource;
use bowman_tests::{TestServer, config_for, pg_url, unique_name};
use tokio_postgres::{Client, NoTls};

/// Two in-process servers sharing a fresh catalog database and a warehouse directory.
struct Nodes {
    a: TestServer,
    b: TestServer,
    admin: Client,
    database: String,
    _dir: tempfile::TempDir,
}

impl Nodes {
    async fn start(prefix: &str) -> Option<Nodes> {
        let admin_url = pg_url()?;
        let (admin, conn) = tokio_postgres::connect(&admin_url, NoTls).await.expect("PostgreSQL answers");
        tokio::spawn(conn);
        let database = unique_name(prefix);
        admin.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
        let url = format!("{}/{database}", admin_url.rsplit_once('/').unwrap().0);
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("warehouse").display().to_string();
        let key = bowman_catalog::SecretKeys::generate();
        let node = |name: &str| {
            let mut config = config_for(&dir.path().join(name));
            config.catalog = url.clone();
            config.warehouse = warehouse.clone();
            config.secret_keys = SecretKeySource::Given(key.clone());
            config
        };
        let a = TestServer::start_with(node("a")).await;
        let b = TestServer::start_with(node("b")).await;
        Some(Nodes { a, b, admin, database, _dir: dir })
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database)).await.unwrap();
    }
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_on_one_node_reloads_only_its_table_on_the_other() {
    let Some(nodes) = Nodes::start("bowman_nodes_reload").await else { return };
    let (a, b) = (nodes.a.client().await, nodes.b.client().await);
    a.batch_execute(
        "CREATE TABLE t1 (v BIGINT) USING parquet;
         CREATE TABLE t2 (v BIGINT) USING parquet;
         INSERT INTO t1 VALUES (1);
         INSERT INTO t2 VALUES (10);",
    )
    .await
    .unwrap();
    // Node B has both tables loaded, and a statement prepared over t2.
    assert_eq!(count(&b, "SELECT count(*) FROM t1").await, 1);
    assert_eq!(count(&b, "SELECT count(*) FROM t2").await, 1);
    let over_t2 = b.prepare("SELECT count(*) FROM t2 WHERE v > $1").await.unwrap();
    assert_eq!(b.query_one(&over_t2, &[&0i64]).await.unwrap().get::<_, i64>(0), 1);

    let before = nodes.b.catalog_tables_reloaded();
    a.batch_execute("INSERT INTO t1 VALUES (2), (3)").await.unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM t2").await, 1);
    assert_eq!(nodes.b.catalog_tables_reloaded(), before, "a SELECT on t2 reloaded tables after an INSERT into t1 on the other node");
    assert_eq!(b.query_one(&over_t2, &[&0i64]).await.unwrap().get::<_, i64>(0), 1);
    assert_eq!(nodes.b.catalog_tables_reloaded(), before, "the statement prepared over t2 reloaded tables");
    assert_eq!(count(&b, "SELECT count(*) FROM t1").await, 3, "node B sees node A's rows");
    assert_eq!(nodes.b.catalog_tables_reloaded(), before + 1, "a SELECT on t1 reloads t1 alone");
    assert_eq!(count(&b, "SELECT count(*) FROM t1").await, 3);
    assert_eq!(nodes.b.catalog_tables_reloaded(), before + 1, "t1 is current now");

    // A commit to t2: B's prepared statement over t2 is planned again and sees it.
    a.batch_execute("INSERT INTO t2 VALUES (11)").await.unwrap();
    assert_eq!(b.query_one(&over_t2, &[&0i64]).await.unwrap().get::<_, i64>(0), 2);
    assert_eq!(nodes.b.catalog_tables_reloaded(), before + 2);
    // DDL on one node reaches the other (which reloads the catalog for it).
    a.batch_execute("CREATE TABLE t3 (v BIGINT) USING parquet").await.unwrap();
    b.batch_execute("INSERT INTO t3 VALUES (7)").await.unwrap();
    assert_eq!(count(&a, "SELECT sum(v) FROM t3").await, 7);
    nodes.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_of_one_partition_from_two_nodes_at_once_one_commits_the_other_gets_40001() {
    let Some(nodes) = Nodes::start("bowman_nodes_overwrite").await else { return };
    let (a, b) = (nodes.a.client().await, nodes.b.client().await);
    a.batch_execute(
        "CREATE TABLE t (v BIGINT, node STRING, dt STRING) USING parquet PARTITIONED BY (dt);
         INSERT INTO t VALUES (0, 'seed', '1'), (0, 'seed', '2');",
    )
    .await
    .unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM t").await, 2);
    let overwrite = |node: &str, n: i64| format!("INSERT OVERWRITE TABLE t PARTITION (dt='1') SELECT value, '{node}' FROM generate_series(1, {n})");
    // Each round starts both overwrites at once; they overlap when both planned before either
    // committed (writes long enough make that the rule; a round where they did not overlap
    // runs one after the other and both succeed).
    let mut conflicts = 0;
    for (round, n) in [200_000i64, 400_000, 800_000, 1_600_000].into_iter().enumerate() {
        let (na, nb) = (n, n + 1);
        let (sa, sb) = (overwrite("a", na), overwrite("b", nb));
        let (ra, rb) = tokio::join!(a.batch_execute(&sa), b.batch_execute(&sb));
        let rows = a.query("SELECT node, count(*) FROM t WHERE dt = '1' GROUP BY node", &[]).await.unwrap();
        let held: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        match (&ra, &rb) {
            (Ok(()), Err(e)) | (Err(e), Ok(())) => {
                conflicts += 1;
                assert_eq!(e.code().map(|c| c.code()), Some("40001"), "round {round}: {e:?}");
                let winner = if ra.is_ok() { ("a".to_string(), na) } else { ("b".to_string(), nb) };
                assert_eq!(held, vec![winner], "round {round}: the table holds exactly the committed overwrite");
            }
            (Ok(()), Ok(())) => {
                // One after the other: the second one's rows replaced the first's.
                assert_eq!(held.len(), 1, "round {round}: a mix of two overwrites: {held:?}");
                assert!(held == vec![("a".to_string(), na)] || held == vec![("b".to_string(), nb)], "round {round}: {held:?}");
            }
            (Err(x), Err(y)) => panic!("round {round}: both overwrites failed: {x:?} / {y:?}"),
        }
        // Both nodes see the same rows; the other partition is untouched; both connections work.
        let on_b = b.query("SELECT node, count(*) FROM t WHERE dt = '1' GROUP BY node", &[]).await.unwrap();
        assert_eq!(on_b.iter().map(|r| (r.get(0), r.get(1))).collect::<Vec<(String, i64)>>(), held);
        assert_eq!(count(&b, "SELECT count(*) FROM t WHERE dt = '2'").await, 1);
        assert_eq!(count(&a, "SELECT count(*) FROM t WHERE dt = '2'").await, 1);
        if conflicts > 0 {
            break;
        }
    }
    assert!(conflicts > 0, "the overwrites never overlapped: no round showed the conflict");
    // After a conflict the statement succeeds when run again.
    b.batch_execute(&overwrite("b", 5)).await.unwrap();
    assert_eq!(count(&a, "SELECT count(*) FROM t WHERE dt = '1' AND node = 'b'").await, 5);

    // Appends carry no expectation: two at once both commit.
    let append = |node: &str, n: i64| format!("INSERT INTO t SELECT value, '{node}', '3' FROM generate_series(1, {n})");
    let (sa, sb) = (append("a", 100_000), append("b", 100_001));
    let (ra, rb) = tokio::join!(a.batch_execute(&sa), b.batch_execute(&sb));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM t WHERE dt = '3'").await, 200_001);
    assert_eq!(count(&a, "SELECT count(*) FROM t WHERE dt = '3'").await, 200_001);
    nodes.stop().await;
}
