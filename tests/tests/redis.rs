//! USING redis against a real server: the machine's Redis (shared, so every test uses its own
//! key prefix) and private `redis-server`s for command counters, passwords and outages.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bowman_tests::{TestServer, redis_url, text_column, unique_name};
use redis::AsyncCommands;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
}

/// Every column of every row, NULL as `NULL`.
async fn all(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let r = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    r.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).unwrap_or("NULL").to_string()).collect::<Vec<_>>().join("|"))
            }
            _ => None,
        })
        .collect()
}

async fn plan(c: &tokio_postgres::Client, sql: &str) -> String {
    let r = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut out = text_column(&r, 1);
    out.extend(text_column(&r, 0));
    out.join("\n")
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// A redis-server of the test's own, killed when dropped.
struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    fn start(extra: &[&str]) -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipping: no redis-server binary");
            return None;
        };
        let r = PrivateRedis { child: Some(child), port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `cmdstat_<name>:calls=N` from INFO commandstats (0 when the command never ran).
async fn calls(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// INSERT INTO ... SELECT then a scan gives the same rows; ttl_seconds sets each key's expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_round_trip_with_key_parts_and_ttl() {
    let Some(url) = redis_url() else { return };
    let p = unique_name("bt_hash");
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE users (id BIGINT, name STRING, city STRING, score DOUBLE, born DATE) USING redis
           OPTIONS (url '{url}', key_parts '{p}:user:{{id}}', value_format 'hash', ttl_seconds '300');
         CREATE TABLE forever (id BIGINT, name STRING) USING redis OPTIONS (url '{url}', key_parts '{p}:nottl:{{id}}');
         INSERT INTO users SELECT * FROM (VALUES (1, 'ada', 'London', 1.5, DATE '1815-12-10'),
                                                 (2, 'grace', NULL, -2.25, DATE '1906-12-09'),
                                                 (3, 'alan', 'Wilmslow', NULL, NULL)) AS v(id, name, city, score, born);
         INSERT INTO forever VALUES (7, 'x');"
    ))
    .await
    .unwrap();
    assert_eq!(
        all(&c, "SELECT id, name, city, score, born FROM users ORDER BY id").await,
        vec!["1|ada|London|1.5|1815-12-10", "2|grace|NULL|-2.25|1906-12-09", "3|alan|Wilmslow|NULL|NULL"]
    );
    let mut r = redis_conn(&url).await;
    let fields: std::collections::HashMap<String, String> = r.hgetall(format!("{p}:user:2")).await.unwrap();
    assert_eq!(fields.get("name").map(String::as_str), Some("grace"));
    assert!(!fields.contains_key("city"), "a NULL is an absent field: {fields:?}");
    assert!(!fields.contains_key("id"), "key parts live in the key only: {fields:?}");
    let ttl: i64 = r.ttl(format!("{p}:user:1")).await.unwrap();
    assert!((1..=300).contains(&ttl), "ttl_seconds 300 gives a TTL, got {ttl}");
    let ttl: i64 = r.ttl(format!("{p}:nottl:7")).await.unwrap();
    assert_eq!(ttl, -1, "without ttl_seconds keys do not expire");

    // INSERT of an existing key replaces the row (no stale fields).
    c.batch_execute("INSERT INTO users VALUES (3, 'turing', NULL, NULL, NULL)").await.unwrap();
    assert_eq!(all(&c, "SELECT name, city FROM users WHERE id = 3").await, vec!["turing|NULL"]);
    assert_eq!(all(&c, "SELECT count(*) FROM users").await, vec!["3"]);

    // Expiry is honoured: a one-second TTL, then the key is gone from the table.
    c.batch_execute(&format!(
        "CREATE TABLE brief (id BIGINT, v STRING) USING redis OPTIONS (url '{url}', key_parts '{p}:brief:{{id}}', ttl_seconds '1');
         INSERT INTO brief VALUES (1, 'a'), (2, 'b');"
    ))
    .await
    .unwrap();
    assert_eq!(all(&c, "SELECT count(*) FROM brief").await, vec!["2"]);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(all(&c, "SELECT count(*) FROM brief").await, vec!["0"]);
    let _: () = redis::cmd("DEL").arg(format!("{p}:user:1")).arg(format!("{p}:user:2")).arg(format!("{p}:user:3")).arg(format!("{p}:nottl:7")).query_async(&mut r).await.unwrap();
}

/// `WHERE key = ...` / `IN (...)`, on the key column or on every key_parts column, reads those
/// keys directly: the server's own counters show no SCAN; EXPLAIN says which it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_filters_read_directly_without_scan() {
    let Some(redis) = PrivateRedis::start(&[]) else { return };
    let url = redis.url();
    let mut r = redis_conn(&url).await;
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.hset_multiple(format!("user:{i}"), &[("name", format!("n{i}")), ("city", format!("c{}", i % 7))]).ignore();
        pipe.hset(format!("order:eu:{i}"), "total", i * 10).ignore();
    }
    let _: () = pipe.query_async(&mut r).await.unwrap();

    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE users (id BIGINT, name STRING, city STRING) USING redis OPTIONS (url '{url}', key_parts 'user:{{id}}', value_format 'hash');
         CREATE TABLE keyed (_key STRING, name STRING) USING redis OPTIONS (url '{url}', key_pattern 'user:*');
         CREATE TABLE orders (region STRING, id INT, total BIGINT) USING redis OPTIONS (url '{url}', key_parts 'order:{{region}}:{{id}}');"
    ))
    .await
    .unwrap();

    let before = calls(&mut r, "scan").await;
    assert_eq!(all(&c, "SELECT id, name, city FROM users WHERE id = 3").await, vec!["3|n3|c3"]);
    assert_eq!(all(&c, "SELECT id, name FROM users WHERE id IN (1, 2, 9999) ORDER BY id").await, vec!["1|n1", "2|n2"]);
    assert_eq!(all(&c, "SELECT name FROM keyed WHERE _key = 'user:5'").await, vec!["n5"]);
    assert_eq!(all(&c, "SELECT name FROM keyed WHERE _key IN ('user:6', 'user:nope')").await, vec!["n6"]);
    assert_eq!(
        all(&c, "SELECT region, id, total FROM orders WHERE region = 'eu' AND id IN (4, 5) ORDER BY id").await,
        vec!["eu|4|40", "eu|5|50"]
    );
    assert_eq!(calls(&mut r, "scan").await, before, "key filters must not SCAN");
    assert!(calls(&mut r, "hgetall").await >= 7);
    assert_eq!(calls(&mut r, "keys").await, 0, "Bowman never sends KEYS");

    let direct = plan(&c, "EXPLAIN SELECT name FROM users WHERE id IN (1, 2)").await;
    assert!(direct.contains("direct reads, no SCAN: keys=2 [user:1, user:2]"), "{direct}");
    assert!(!direct.contains("SCAN MATCH"), "{direct}");
    let scan = plan(&c, "EXPLAIN SELECT name FROM users WHERE name = 'n1'").await;
    assert!(scan.contains("SCAN MATCH user:* COUNT 1000"), "{scan}");
    let analyzed = plan(&c, "EXPLAIN ANALYZE SELECT name FROM users WHERE id = 1").await;
    assert!(analyzed.contains("scan_calls=0") && analyzed.contains("direct_keys=1"), "{analyzed}");

    // A filter on only some key parts, or on a value, scans (and is still right).
    assert_eq!(all(&c, "SELECT count(*) FROM orders WHERE region = 'eu'").await, vec!["200"]);
    assert_eq!(all(&c, "SELECT count(*), sum(id) FROM users WHERE city = 'c0'").await, vec![format!("29|{}", (0..200).filter(|i| i % 7 == 0).sum::<i64>())]);
    let after = calls(&mut r, "scan").await;
    assert!(after > before, "a full read SCANs");
    let analyzed = plan(&c, "EXPLAIN ANALYZE SELECT count(*) FROM users").await;
    assert!(analyzed.contains("keys_scanned=200"), "{analyzed}");
}

/// A key of another type and a field that does not parse: a NULL row with the reason in
/// `_error` when the table declares one, else (or with strict) an error with a SQLSTATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_and_bad_fields() {
    let Some(url) = redis_url() else { return };
    let p = unique_name("bt_bad");
    let mut r = redis_conn(&url).await;
    let _: () = r.hset_multiple(format!("{p}:1"), &[("age", "41"), ("name", "ok")]).await.unwrap();
    let _: () = r.hset_multiple(format!("{p}:2"), &[("age", "forty"), ("name", "bad age")]).await.unwrap();
    let _: () = r.set(format!("{p}:3"), "I am a string").await.unwrap();

    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE lenient (id BIGINT, age INT, name STRING, _error STRING) USING redis OPTIONS (url '{url}', key_parts '{p}:{{id}}');
         CREATE TABLE plain (id BIGINT, age INT, name STRING) USING redis OPTIONS (url '{url}', key_parts '{p}:{{id}}');
         CREATE TABLE strict (id BIGINT, age INT, name STRING, _error STRING) USING redis OPTIONS (url '{url}', key_parts '{p}:{{id}}', strict 'true');"
    ))
    .await
    .unwrap();
    let got = all(&c, "SELECT id, age, name, _error FROM lenient ORDER BY id").await;
    assert_eq!(got[0], "1|41|ok|NULL");
    assert!(got[1].starts_with("2|NULL|bad age|age: 'forty' is not a valid Int32"), "{got:?}");
    assert!(got[2].starts_with(&format!("3|NULL|NULL|key {p}:3 is not a hash (WRONGTYPE")), "{got:?}");
    assert_eq!(all(&c, "SELECT count(*) FROM lenient WHERE _error IS NULL").await, vec!["1"]);
    // Direct reads decode the same way.
    assert!(all(&c, "SELECT _error FROM lenient WHERE id = 3").await[0].contains("WRONGTYPE"));

    let e = c.simple_query("SELECT * FROM plain WHERE id = 3").await.unwrap_err();
    assert_eq!(code(&e), "42809", "{e:?}");
    assert!(message(&e).contains("is not a hash"), "{}", message(&e));
    let e = c.simple_query("SELECT * FROM plain WHERE id = 2").await.unwrap_err();
    assert_eq!(code(&e), "22P02", "{e:?}");
    assert!(message(&e).contains("'forty'"), "{}", message(&e));
    let e = c.simple_query("SELECT * FROM strict").await.unwrap_err();
    assert!(["22P02", "42809"].contains(&code(&e).as_str()), "{e:?}");
    // Strict checks the whole row; without _error only what the query reads.
    let e = c.simple_query("SELECT name FROM strict WHERE id = 2").await.unwrap_err();
    assert_eq!(code(&e), "22P02", "{e:?}");
    assert_eq!(all(&c, "SELECT name FROM plain WHERE id = 2").await, vec!["bad age"]);
    assert_eq!(all(&c, "SELECT name FROM strict WHERE id = 1").await, vec!["ok"]);
    // The connection goes on.
    assert_eq!(all(&c, "SELECT name FROM plain WHERE id = 1").await, vec!["ok"]);
    let _: () = redis::cmd("DEL").arg(format!("{p}:1")).arg(format!("{p}:2")).arg(format!("{p}:3")).query_async(&mut r).await.unwrap();
}

/// A server that is down: 08001 within 10 s, at CREATE and at SELECT, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_08001_quickly() {
    let Some(mut redis) = PrivateRedis::start(&[]) else { return };
    let url = redis.url();
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE t (_key STRING, value STRING) USING redis OPTIONS (url '{url}', key_pattern 'k:*', value_format 'string');
         INSERT INTO t VALUES ('k:1', 'one');"
    ))
    .await
    .unwrap();
    assert_eq!(all(&c, "SELECT * FROM t").await, vec!["k:1|one"]);
    redis.stop();
    for sql in ["SELECT * FROM t", "SELECT * FROM t WHERE _key = 'k:1'", "INSERT INTO t VALUES ('k:2', 'two')"] {
        let start = Instant::now();
        let e = c.simple_query(sql).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10), "{sql} took {:?}", start.elapsed());
        assert_eq!(code(&e), "08001", "{sql}: {e:?}");
        assert!(message(&e).contains("cannot reach Redis at 127.0.0.1"), "{}", message(&e));
        assert_eq!(all(&c, "SELECT 1 + 1").await, vec!["2"], "the session is usable after {sql}");
    }
    let start = Instant::now();
    let e = c.batch_execute(&format!("CREATE TABLE u (_key STRING, value STRING) USING redis OPTIONS (url '{url}', key_pattern '*', value_format 'string')")).await.unwrap_err();
    assert_eq!(code(&e), "08001", "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // A host that never answers: the connect timeout, not a hang.
    let start = Instant::now();
    let e = c
        .batch_execute("CREATE TABLE v (_key STRING, value STRING) USING redis OPTIONS (url 'redis://10.255.255.1:6379', key_pattern '*', value_format 'string', connect_timeout '2')")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "08001", "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    assert_eq!(all(&c, "SELECT 2 + 2").await, vec!["4"]);
}

/// A password in the URL is a secret: the server needs it, and it shows up nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_password_is_a_secret() {
    let Some(redis) = PrivateRedis::start(&["--requirepass", "hunter2-Secret"]) else { return };
    let server = TestServer::start().await;
    let c = server.client().await;
    let url = format!("redis://:hunter2-Secret@127.0.0.1:{}/0", redis.port);
    c.batch_execute(&format!(
        "CREATE TABLE s (_key STRING, value STRING) USING redis OPTIONS (url '{url}', key_pattern 's:*', value_format 'string');
         INSERT INTO s VALUES ('s:1', 'x');"
    ))
    .await
    .unwrap();
    assert_eq!(all(&c, "SELECT value FROM s").await, vec!["x"]);
    let mut shown = all(&c, "SHOW CREATE TABLE s").await.join("\n");
    shown.push_str(&plan(&c, "EXPLAIN SELECT * FROM s").await);
    shown.push_str(&plan(&c, "EXPLAIN SELECT * FROM s WHERE _key = 's:1'").await);
    shown.push_str(&plan(&c, "EXPLAIN INSERT INTO s VALUES ('s:2', 'y')").await);
    assert!(shown.contains("127.0.0.1"), "{shown}");
    assert!(!shown.contains("hunter2"), "the password leaked: {shown}");
    // Wrong password: 28000, without echoing either password.
    let e = c
        .batch_execute(&format!(
            "CREATE TABLE w (_key STRING, value STRING) USING redis OPTIONS (url 'redis://:not-it-123@127.0.0.1:{}', key_pattern '*', value_format 'string')",
            redis.port
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "28000", "{e:?}");
    assert!(!message(&e).contains("not-it-123") && !message(&e).contains("hunter2"), "{}", message(&e));
    // The statement history keeps the statements with the password masked.
    let history = all(&c, "SELECT query, coalesce(error, '') FROM system.queries").await.join("\n");
    assert!(history.contains("CREATE TABLE s"), "{history}");
    assert!(!history.contains("hunter2") && !history.contains("not-it-123"), "{history}");
}

/// string, json, zset and stream tables: round trips, and stream entry-id pushdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_json_zset_and_stream_tables() {
    let Some(url) = redis_url() else { return };
    let p = unique_name("bt_fmt");
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE kv (k BIGINT, v INT) USING redis OPTIONS (url '{url}', key_parts '{p}:kv:{{k}}', value_format 'string');
         INSERT INTO kv VALUES (1, 10), (2, 20);
         CREATE TABLE docs (id STRING, title STRING, pages INT, tags STRING, ok BOOLEAN) USING redis
           OPTIONS (url '{url}', key_parts '{p}:doc:{{id}}', value_format 'json');
         INSERT INTO docs VALUES ('a', 'Alpha', 12, NULL, true), ('b', 'Beta \"quoted\"', NULL, 'x', false);
         CREATE TABLE board USING redis OPTIONS (url '{url}', key_pattern '{p}:board:*', value_format 'zset');
         INSERT INTO board VALUES ('{p}:board:1', 'ann', 3.5), ('{p}:board:1', 'bob', 1), ('{p}:board:2', 'cid', 7);
         CREATE TABLE events (_key STRING, _id STRING, _ms BIGINT, kind STRING, n INT) USING redis
           OPTIONS (url '{url}', key_pattern '{p}:ev:*', value_format 'stream');
         INSERT INTO events VALUES ('{p}:ev:a', '1000-1', NULL, 'start', 1), ('{p}:ev:a', '2000-0', NULL, 'mid', 2),
                                   ('{p}:ev:a', '3000-5', NULL, 'end', 3), ('{p}:ev:b', '1500-0', NULL, 'other', 9);"
    ))
    .await
    .unwrap();
    assert_eq!(all(&c, "SELECT k, v FROM kv ORDER BY k").await, vec!["1|10", "2|20"]);
    assert_eq!(all(&c, "SELECT v + 1 FROM kv WHERE k = 2").await, vec!["21"]);
    assert_eq!(
        all(&c, "SELECT id, title, pages, tags, ok FROM docs ORDER BY id").await,
        vec!["a|Alpha|12|NULL|t", "b|Beta \"quoted\"|NULL|x|f"]
    );
    let mut r = redis_conn(&url).await;
    let raw: String = r.get(format!("{p}:doc:a")).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(json["pages"], serde_json::json!(12), "numbers stay numbers: {raw}");
    assert_eq!(
        all(&c, "SELECT _key, member, score FROM board ORDER BY score").await,
        vec![format!("{p}:board:1|bob|1.0"), format!("{p}:board:1|ann|3.5"), format!("{p}:board:2|cid|7.0")]
    );
    assert_eq!(
        all(&c, "SELECT _key, _id, _ms, kind, n FROM events ORDER BY _key, _id").await,
        vec![
            format!("{p}:ev:a|1000-1|1000|start|1"),
            format!("{p}:ev:a|2000-0|2000|mid|2"),
            format!("{p}:ev:a|3000-5|3000|end|3"),
            format!("{p}:ev:b|1500-0|1500|other|9")
        ]
    );
    let q = format!("SELECT kind FROM events WHERE _key = '{p}:ev:a' AND _ms >= 1500 AND _ms < 3000");
    assert_eq!(all(&c, &q).await, vec!["mid"]);
    let shown = plan(&c, &format!("EXPLAIN {q}")).await;
    assert!(shown.contains("xrange=[1500-0, 2999]") && shown.contains("direct reads"), "{shown}");
    assert_eq!(all(&c, "SELECT kind FROM events WHERE _id = '3000-5'").await, vec!["end"]);
    assert_eq!(all(&c, "SELECT count(*) FROM events WHERE _ms > 5000").await, vec!["0"]);
    let mut del = redis::cmd("DEL");
    for k in ["kv:1", "kv:2", "doc:a", "doc:b", "board:1", "board:2", "ev:a", "ev:b"] {
        del.arg(format!("{p}:{k}"));
    }
    let _: () = del.query_async(&mut r).await.unwrap();
}

/// A larger key space: SCAN in batches with pipelined reads gives every key once; LIMIT stops early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_scan_reads_every_key_once() {
    let Some(url) = redis_url() else { return };
    let p = unique_name("bt_big");
    let mut r = redis_conn(&url).await;
    let n = 20_000i64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.hset_multiple(format!("{p}:{i}"), &[("a", i.to_string()), ("b", format!("v{i}"))]).ignore();
        }
        let _: () = pipe.query_async(&mut r).await.unwrap();
    }
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE big (id BIGINT, a BIGINT, b STRING) USING redis OPTIONS (url '{url}', key_parts '{p}:{{id}}', scan_count '500', batch_size '700')"
    ))
    .await
    .unwrap();
    let start = Instant::now();
    assert_eq!(
        all(&c, "SELECT count(*), count(DISTINCT id), sum(a), sum(id) FROM big WHERE b IS NOT NULL").await,
        vec![format!("{n}|{n}|{s}|{s}", s = n * (n - 1) / 2)]
    );
    eprintln!("scan of {n} hashes: {:?}", start.elapsed());
    assert_eq!(all(&c, "SELECT count(*) FROM (SELECT * FROM big LIMIT 10)").await, vec!["10"]);
    // Clean up through a SCAN of our own.
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{p}:*")).arg("COUNT").arg(5000).query_async(&mut r).await.unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(&keys).query_async(&mut r).await.unwrap();
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
}

/// Hostile or malformed options: 22023 with a message that names the option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_22023() {
    let Some(url) = redis_url() else { return };
    let server = TestServer::start().await;
    let c = server.client().await;
    let cases = [
        ("ttl_seconds '-1'", "ttl_seconds"),
        ("ttl_seconds 'abc'", "ttl_seconds"),
        ("ttl_seconds '0'", "ttl_seconds"),
        ("ttl_seconds '99999999999999999999999'", "ttl_seconds"),
        ("ttl_seconds '1e9'", "ttl_seconds"),
        ("value_format 'list'", "value_format"),
        ("key_parts 'user:{id'", "key_parts"),
        ("key_parts '{id}{name}'", "key_parts"),
        ("key_parts 'user:{nosuch}'", "nosuch"),
        ("key_pattern ''", "key_pattern"),
        ("key_pattern 'a\tb'", "key_pattern"),
        ("scan_count '0'", "scan_count"),
        ("batch_size '1000000000'", "batch_size"),
        ("connect_timeout 'NaN'", "connect_timeout"),
        ("strict 'maybe'", "strict"),
        ("colour 'red'", "colour"),
    ];
    for (opt, needle) in cases {
        let sql = format!("CREATE TABLE t (id BIGINT, name STRING) USING redis OPTIONS (url '{url}', key_pattern 'x:*', {opt})");
        let sql = sql.replace("key_pattern 'x:*', key_pattern", "key_pattern");
        let e = c.batch_execute(&sql).await.unwrap_err();
        assert_eq!(code(&e), "22023", "{opt}: {e:?}");
        assert!(message(&e).contains(needle), "{opt}: {}", message(&e));
    }
    for bad_url in ["http://127.0.0.1:6379", "redis://127.0.0.1:6379/notanumber", "not a url"] {
        let e = c
            .batch_execute(&format!("CREATE TABLE t (_key STRING, v STRING) USING redis OPTIONS (url '{bad_url}', key_pattern '*')"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), "22023", "{bad_url}: {e:?}");
    }
    let e = c.batch_execute("CREATE TABLE t (a STRING) USING redis OPTIONS (key_pattern '*')").await.unwrap_err();
    assert_eq!(code(&e), "22023");
    assert!(message(&e).contains("url"), "{}", message(&e));
    let e = c
        .batch_execute(&format!("CREATE TABLE z (_key STRING, member STRING, rank INT) USING redis OPTIONS (url '{url}', key_pattern 'z:*', value_format 'zset')"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023", "{e:?}");
    assert_eq!(all(&c, "SELECT 1").await, vec!["1"]);
}

/// Bowman's hash scan against a plain client doing SCAN + pipelined HGETALL on the same
/// private server: prints both times (the benchmark proper runs release builds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_scan_keeps_up_with_a_plain_client() {
    let Some(redis) = PrivateRedis::start(&[]) else { return };
    let url = redis.url();
    let mut r = redis_conn(&url).await;
    let n = 50_000i64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.hset_multiple(format!("h:{i}"), &[("a", i.to_string()), ("b", format!("name-{i}")), ("c", "x".repeat(20))]).ignore();
        }
        let _: () = pipe.query_async(&mut r).await.unwrap();
    }
    // The plain client: SCAN pages, each page's HGETALLs in one pipeline, values parsed.
    let plain = async {
        let start = Instant::now();
        let (mut cursor, mut rows, mut sum) = (0u64, 0i64, 0i64);
        loop {
            let (next, keys): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg("h:*").arg("COUNT").arg(1000).query_async(&mut r).await.unwrap();
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.hgetall(k);
            }
            let maps: Vec<std::collections::HashMap<String, String>> = pipe.query_async(&mut r).await.unwrap();
            for m in maps {
                rows += 1;
                sum += m["a"].parse::<i64>().unwrap();
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        assert_eq!((rows, sum), (n, n * (n - 1) / 2));
        start.elapsed()
    };
    let plain = plain.await;
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!("CREATE TABLE h (_key STRING, a BIGINT, b STRING, c STRING) USING redis OPTIONS (url '{url}', key_pattern 'h:*')"))
        .await
        .unwrap();
    let start = Instant::now();
    assert_eq!(all(&c, "SELECT count(*), sum(a), count(b), count(c) FROM h").await, vec![format!("{n}|{}|{n}|{n}", n * (n - 1) / 2)]);
    let bowman = start.elapsed();
    eprintln!(
        "{n} hashes: plain client {plain:?}, Bowman {bowman:?}: Bowman at {:.2}x the plain client's speed",
        plain.as_secs_f64() / bowman.as_secs_f64()
    );
}

/// A frozen server (it accepts connections, answers nothing): 08001 within connect_timeout,
/// not a hang; once it thaws the same session reads again. A write into a key of the wrong
/// type is 42809.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_and_wrong_type_writes() {
    let Some(redis) = PrivateRedis::start(&[]) else { return };
    let url = redis.url();
    let mut r = redis_conn(&url).await;
    let _: () = r.set("z:1", "a string").await.unwrap();
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE z USING redis OPTIONS (url '{url}', key_pattern 'z:*', value_format 'zset', connect_timeout '2', response_timeout '2')"
    ))
    .await
    .unwrap();
    let e = c.batch_execute("INSERT INTO z VALUES ('z:1', 'm', 1.0)").await.unwrap_err();
    assert_eq!(code(&e), "42809", "{e:?}");
    c.batch_execute("INSERT INTO z VALUES ('z:2', 'm', 1.0)").await.unwrap();

    let pid = redis.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let start = Instant::now();
    let e = c.simple_query("SELECT * FROM z WHERE _key = 'z:2'").await.unwrap_err();
    let took = start.elapsed();
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    assert!(["08001", "08006"].contains(&code(&e).as_str()), "{e:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(all(&c, "SELECT member, score FROM z WHERE _key = 'z:2'").await, vec!["m|1.0"]);
}

/// Without declared columns the table's columns come from the format and a sample of its keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_inferred_from_a_sample() {
    let Some(url) = redis_url() else { return };
    let p = unique_name("bt_infer");
    let mut r = redis_conn(&url).await;
    let _: () = r.hset_multiple(format!("{p}:h:1"), &[("name", "ann"), ("age", "40")]).await.unwrap();
    let _: () = r.hset_multiple(format!("{p}:h:2"), &[("name", "bob"), ("city", "Oslo")]).await.unwrap();
    let _: () = r.set(format!("{p}:j:1"), r#"{"n": 1, "x": 1.5, "ok": true, "s": "a"}"#).await.unwrap();
    let _: () = r.set(format!("{p}:j:2"), r#"{"n": 2, "x": 2, "ok": false, "s": {"deep": 1}}"#).await.unwrap();
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE h USING redis OPTIONS (url '{url}', key_parts '{p}:h:{{id}}');
         CREATE TABLE j USING redis OPTIONS (url '{url}', key_pattern '{p}:j:*', value_format 'json');"
    ))
    .await
    .unwrap();
    assert_eq!(
        all(&c, "SELECT id, age, city, name, _error FROM h ORDER BY id").await,
        vec!["1|40|NULL|ann|NULL", "2|NULL|Oslo|bob|NULL"]
    );
    assert_eq!(all(&c, "SELECT name FROM h WHERE id = '2'").await, vec!["bob"]);
    assert_eq!(
        all(&c, "SELECT n + 1, x * 2, NOT ok, s FROM j ORDER BY n").await,
        vec!["2|3.0|f|a", "3|4.0|t|{\"deep\":1}"]
    );
    let _: () = redis::cmd("DEL").arg(format!("{p}:h:1")).arg(format!("{p}:h:2")).arg(format!("{p}:j:1")).arg(format!("{p}:j:2")).query_async(&mut r).await.unwrap();
}
