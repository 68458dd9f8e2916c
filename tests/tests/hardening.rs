//! One statement must never stall, crash or wedge the server: the real `bowman` binary (the
//! build the README runs), hostile statements from one client, and another client that must be
//! answered within a second throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bowman_tests::{BinServer, connect};

/// These tests measure latency under load, so they must not load the machine for each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// CPU time (user + system) the process has used, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

/// Share of one core the process used over `window`.
fn cpu_share(pid: i32, window: Duration) -> f64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let after = cpu_ticks(pid);
    (after - before) as f64 / 100.0 / window.as_secs_f64()
}

/// Wait until the process's CPU use falls below a fifth of a core; how long that took.
fn until_idle(pid: i32, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if cpu_share(pid, Duration::from_millis(250)) < 0.2 {
            return Some(started.elapsed());
        }
    }
    None
}

/// A second client that runs `SELECT 1` every 100 ms and records the slowest answer.
struct Pinger {
    stop: Arc<AtomicBool>,
    slowest_ms: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Pinger {
    async fn start(addr: std::net::SocketAddr) -> Pinger {
        let client = connect(addr).await;
        let stop = Arc::new(AtomicBool::new(false));
        let slowest_ms = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let (s, m, f) = (stop.clone(), slowest_ms.clone(), failures.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    other => {
                        eprintln!("the other client's SELECT 1 failed: {other:?}");
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                }
                m.fetch_max(t.elapsed().as_millis() as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Pinger { stop, slowest_ms, failures, task }
    }

    /// Stop and return (slowest answer, failures).
    async fn finish(self) -> (Duration, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        (Duration::from_millis(self.slowest_ms.load(Ordering::SeqCst)), self.failures.load(Ordering::SeqCst))
    }
}

/// A new connection's `SELECT 1`, timed from connect.
async fn fresh_select_1(addr: std::net::SocketAddr) -> Duration {
    let t = Instant::now();
    let client = tokio::time::timeout(Duration::from_secs(10), connect(addr)).await.expect("a new connection is answered");
    tokio::time::timeout(Duration::from_secs(10), client.simple_query("SELECT 1")).await.expect("SELECT 1 is answered").expect("SELECT 1");
    t.elapsed()
}

async fn health(addr: std::net::SocketAddr) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("http connects");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut body)).await.expect("/health answers").unwrap();
    assert!(body.contains("200 OK"), "{body}");
    t.elapsed()
}

/// 10^9 rows to add up (a bare `count(*)` would come from the row counts, without joining).
const CROSS_JOIN_9: &str = "SELECT sum(a.x + i.x) FROM t a, t b, t c, t d, t e, t f, t g, t h, t i";

async fn ten_row_table(client: &tokio_postgres::Client) {
    client
        .batch_execute("CREATE TABLE t (x INT, s STRING) USING parquet; INSERT INTO t SELECT CAST(value AS INT) AS x, CAST(value AS STRING) AS s FROM generate_series(1, 10)")
        .await
        .expect("table t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_join_leaves_the_server_answering_and_stops_when_canceled() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = BinServer::spawn(dir.path(), &[("BOWMAN_SHUTDOWN_TIMEOUT", "3")]);
    let pid = server.pid();
    let admin = connect(server.pg_addr).await;
    ten_row_table(&admin).await;

    // 10^9 rows, counted: minutes of work on two cores.
    let heavy = Arc::new(connect(server.pg_addr).await);
    let cancel = heavy.cancel_token();
    let running = {
        let heavy = heavy.clone();
        tokio::spawn(async move { heavy.simple_query(CROSS_JOIN_9).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!running.is_finished(), "the cross join finished too soon to test anything");
    assert!(cpu_share(pid, Duration::from_millis(500)) > 0.5, "the cross join is not running");

    // New clients, /health and other sessions are answered meanwhile.
    for _ in 0..3 {
        let took = fresh_select_1(server.pg_addr).await;
        assert!(took < Duration::from_secs(1), "a new connection's SELECT 1 took {took:?} during the join");
        let took = health(server.http_addr).await;
        assert!(took < Duration::from_secs(1), "/health took {took:?} during the join");
        let t = Instant::now();
        admin.simple_query("SELECT count(*) FROM t").await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "another session's query took {:?}", t.elapsed());
    }

    // The CancelRequest stops it within a second, and the CPU goes idle.
    let t = Instant::now();
    cancel.cancel_query(tokio_postgres::NoTls).await.expect("cancel request sent");
    let result = tokio::time::timeout(Duration::from_secs(5), running).await.expect("the join stops after the cancel").unwrap();
    let stopped = t.elapsed();
    assert_eq!(code(&result.expect_err("canceled")), "57014");
    assert!(stopped < Duration::from_secs(1), "the cancel took {stopped:?}");
    let idle = until_idle(pid, Duration::from_secs(2)).expect("the server's CPU use falls to idle within 2 s of the cancel");
    assert!(idle < Duration::from_secs(2));
    // The same connection works afterwards.
    assert_eq!(heavy.query_one("SELECT 1::INT", &[]).await.unwrap().get::<_, i32>(0), 1);

    // statement_timeout stops a nested-loop join, and the CPU goes idle too.
    admin
        .batch_execute("CREATE TABLE big (s STRING) USING parquet; INSERT INTO big SELECT CAST(value AS STRING) AS s FROM generate_series(1, 60000)")
        .await
        .unwrap();
    heavy.batch_execute("SET statement_timeout = '1s'").await.unwrap();
    let t = Instant::now();
    let err = heavy.simple_query("SELECT count(*) FROM big a, big b WHERE a.s < b.s").await.expect_err("timed out");
    assert_eq!(code(&err), "57014");
    // One poll of a range join can compute for seconds in a debug build (the join works a
    // whole probe batch against the whole build side before it returns): the timeout fires at
    // the join's next yield, and the CPU must go idle then.
    assert!(t.elapsed() < Duration::from_secs(8), "statement_timeout 1s fired after {:?}", t.elapsed());
    until_idle(pid, Duration::from_secs(2)).expect("the server's CPU use falls to idle within 2 s of the timeout");
    heavy.batch_execute("RESET statement_timeout").await.unwrap();

    // SIGTERM during a heavy join exits within the shutdown timeout (3 s here).
    let running = {
        let heavy = heavy.clone();
        tokio::spawn(async move { heavy.simple_query(CROSS_JOIN_9).await })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let t = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(6)).expect("the server exits after SIGTERM");
    assert!(t.elapsed() < Duration::from_secs(5), "SIGTERM took {:?} (shutdown timeout 3 s)", t.elapsed());
    assert!(status.success(), "{status:?}");
    let _ = running.await;
}

/// Statements that would overflow a stack, wedge the server or drop the connection, with the
/// SQLSTATE each must get. `None` accepts success or 54001 (statements near the depth limit).
fn hostile_statements() -> Vec<(&'static str, String, Option<&'static str>)> {
    let plus = |n: usize| format!("SELECT {}", vec!["1"; n].join(" + "));
    let ors = |n: usize| format!("SELECT count(*) FROM t WHERE {}", (0..n).map(|i| format!("x = {i}")).collect::<Vec<_>>().join(" OR "));
    let ands = |n: usize| format!("SELECT count(*) FROM t WHERE {}", vec!["x > 0"; n].join(" AND "));
    let union = |n: usize| vec!["SELECT 1 AS a"; n].join(" UNION ALL ");
    let array_type = |n: usize| format!("CREATE TABLE deep_type (a {}INT{}) USING parquet", "ARRAY<".repeat(n), ">".repeat(n));
    let ctes = (1..2000).map(|i| format!("c{i} AS (SELECT x FROM c{})", i - 1)).collect::<Vec<_>>().join(", ");
    vec![
        ("5,000 chained :: casts", format!("SELECT 1{}", "::BIGINT".repeat(5000)), Some("54001")),
        ("5,000 chained IS NOT NULL", format!("SELECT 1{}", " IS NOT NULL".repeat(5000)), Some("54001")),
        ("100,000-term +", plus(100_000), Some("54001")),
        ("50,000-term AND", ands(50_000), Some("54001")),
        ("20,000-term OR", ors(20_000), Some("54001")),
        ("3,000-way UNION ALL", union(3000), Some("54001")),
        ("ARRAY<...> 5,000 deep", array_type(5000), Some("54001")),
        ("20,000-term ||", format!("SELECT {}", vec!["'a'"; 20_000].join(" || ")), Some("54001")),
        ("2,000 chained CTEs", format!("WITH c0 AS (SELECT x FROM t), {ctes} SELECT count(*) FROM c1999"), Some("54001")),
        ("lpad to 2^31-1", "SELECT lpad('x', 2147483647)".into(), Some("54000")),
        ("repeat to 2^40", "SELECT repeat('abcd', 274877906944)".into(), Some("54000")),
        ("SHOW TABLES LIKE 5,000 *", format!("SHOW TABLES LIKE '{}x'", "*".repeat(5000)), Some("")),
        ("a 2,000-byte identifier", format!("SELECT 1 AS {}", "x".repeat(2000)), Some("42622")),
        ("statement_timeout past INT_MAX ms", "SET statement_timeout = '213503982334601d'".into(), Some("22023")),
        ("progress_interval past u64", "SET progress_interval = '18446744073709551615d'".into(), Some("22023")),
        ("file_retention past INT_MAX ms", "SET file_retention = '99999999999999999d'".into(), Some("22023")),
        // What a debug build overflowed on before: within the limits, these run.
        ("120-term +", plus(120), Some("")),
        ("250 chained ::BIGINT", format!("SELECT 1{}", "::BIGINT".repeat(250)), Some("")),
        ("500 ORs", ors(500), Some("")),
        ("ARRAY<...> 50 deep", array_type(50), Some("")),
        ("1,000-arm UNION ALL", union(1000), None),
        ("999-term + (at the limit)", plus(999), None),
        ("a 100,000-digit DECIMAL", "SELECT CAST(repeat('9', 100000) AS DECIMAL(38,0))".into(), Some("22P02")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_statements_get_sqlstates_and_everyone_else_is_answered() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::spawn(dir.path(), &[]);
    let client = connect(server.pg_addr).await;
    ten_row_table(&client).await;
    let pinger = Pinger::start(server.pg_addr).await;
    let mut wrong = Vec::new();
    for (what, sql, expected) in hostile_statements() {
        let t = Instant::now();
        eprintln!("hostile statement: {what}");
        let result = tokio::time::timeout(Duration::from_secs(60), client.simple_query(&sql)).await;
        let got = match result {
            Err(_) => "no answer within 60 s".to_string(),
            Ok(Ok(_)) => String::new(),
            Ok(Err(e)) => code(&e),
        };
        let ok = match expected {
            Some(code) => got == code,
            None => got.is_empty() || got == "54001",
        };
        if !ok {
            wrong.push(format!("{what}: expected {expected:?}, got {got:?} after {:?}", t.elapsed()));
        }
        // The same connection keeps working.
        let alive = tokio::time::timeout(Duration::from_secs(10), client.simple_query("SELECT 1")).await;
        assert!(matches!(alive, Ok(Ok(_))), "after {what} the connection no longer answers: {alive:?} ({wrong:?})");
    }
    let (slowest, failures) = pinger.finish().await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(failures, 0, "the other client's SELECT 1 failed {failures} times");
    assert!(slowest < Duration::from_secs(1), "the other client waited {slowest:?} for SELECT 1");
    // Still the same process, still serving new clients.
    assert!(server.child.id() as i32 > 0);
    fresh_select_1(server.pg_addr).await;
}
