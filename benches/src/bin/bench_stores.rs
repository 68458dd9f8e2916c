//! `bench-stores`: full-scan rows/s of Bowman's Kafka, Redis and Cassandra tables next to the
//! plain client reading the same data in the same run, with the answers checked.
//!
//! - Kafka: a bare rdkafka consumer (partitions assigned, no group, large fetches) reading each
//!   partition of a 3-partition topic of JSON events to its end; Bowman runs
//!   `SELECT count(*), sum(user_id), count(action) FROM events`, so every message is decoded.
//! - Redis: SCAN MATCH with a count hint and pipelined HGETALL over hashes; Bowman sums a field.
//! - Cassandra: a paged scylla-driver scan of the table (the CQL stand-in, or a real
//!   Cassandra/Scylla given by `--cassandra`); Bowman sums a column.
//!
//! Each side runs `--repeat` times, alternating, and the best run counts. Services it starts
//! (Tansu, a private redis-server, the CQL stand-in, Bowman) are stopped when it ends.
//! Run it through `scripts/bench-stores`, which builds the release binaries.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[derive(Parser)]
#[command(name = "bench-stores", about = "Bowman's Kafka, Redis and Cassandra scans next to their plain clients")]
struct Args {
    /// The release `bowman` binary.
    #[arg(long)]
    bowman: PathBuf,
    /// The `tansu` broker binary.
    #[arg(long)]
    tansu: PathBuf,
    /// The CQL stand-in (`bowman-cql-test-server`), unless `--cassandra` names a real node.
    #[arg(long)]
    cql_server: Option<PathBuf>,
    /// A real Cassandra/Scylla (`host:port`) to use instead of the stand-in.
    #[arg(long)]
    cassandra: Option<String>,
    /// Kafka messages (3 partitions).
    #[arg(long, default_value_t = 1_000_000)]
    kafka_rows: u64,
    /// Redis hashes.
    #[arg(long, default_value_t = 300_000)]
    redis_rows: u64,
    /// Cassandra rows.
    #[arg(long, default_value_t = 200_000)]
    cassandra_rows: u64,
    /// Runs of each side; the best counts.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Only these stores (comma separated: kafka,redis,cassandra).
    #[arg(long, default_value = "kafka,redis,cassandra")]
    only: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when the benchmark ends.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(what: &'static str, cmd: &mut Command) -> Service {
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    Service(child)
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One measured side: rows read, the checked answer, seconds of the best run.
struct Side {
    rows: u64,
    check: i64,
    secs: f64,
}

fn report(store: &str, peer: &str, bare: &Side, bowman: &Side) {
    assert_eq!(bare.rows, bowman.rows, "{store}: Bowman read {} rows, {peer} {}", bowman.rows, bare.rows);
    assert_eq!(bare.check, bowman.check, "{store}: Bowman's checksum {} differs from {peer}'s {}", bowman.check, bare.check);
    let b = bare.rows as f64 / bare.secs;
    let w = bowman.rows as f64 / bowman.secs;
    println!(
        "{store:<10} {:>9} rows  {peer}: {:>10.0} rows/s ({:.3} s)  Bowman: {:>10.0} rows/s ({:.3} s)  ratio {:.2}x",
        bare.rows, b, bare.secs, w, bowman.secs, w / b
    );
}

async fn best<F, Fut>(repeat: usize, mut f: F) -> Side
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u64, i64)>,
{
    let mut out: Option<Side> = None;
    for _ in 0..repeat {
        let t = Instant::now();
        let (rows, check) = f().await;
        let secs = t.elapsed().as_secs_f64();
        if out.as_ref().is_none_or(|o| secs < o.secs) {
            out = Some(Side { rows, check, secs });
        }
    }
    out.expect("at least one run")
}

async fn bowman_scan(client: &tokio_postgres::Client, sql: &str) -> (u64, i64) {
    let row = client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let work = std::env::temp_dir().join(format!("bowman-bench-stores-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let mut services = Vec::new();

    // Bowman, on its embedded default.
    let pg_port = free_port();
    let mut bowman_cmd = Command::new(&args.bowman);
    bowman_cmd
        .env("BOWMAN_DATA_DIR", work.join("bowman"))
        .env("BOWMAN_PG_ADDR", format!("127.0.0.1:{pg_port}"))
        .env("BOWMAN_FLIGHT_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("BOWMAN_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9");

    let mut kafka = None;
    if only.contains(&"kafka") {
        let port = free_port();
        services.push(spawn(
            "tansu",
            Command::new(&args.tansu).args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--storage-engine",
                "memory://tansu/",
            ]),
        ));
        wait_port(port, "tansu");
        kafka = Some(format!("127.0.0.1:{port}"));
    }
    let mut redis_url = None;
    if only.contains(&"redis") {
        let port = free_port();
        services.push(spawn(
            "redis-server",
            Command::new("redis-server").args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"]),
        ));
        wait_port(port, "redis-server");
        redis_url = Some(format!("redis://127.0.0.1:{port}"));
    }
    let mut cassandra = None;
    if only.contains(&"cassandra") {
        cassandra = Some(match &args.cassandra {
            Some(addr) => addr.clone(),
            None => {
                let bin = args.cql_server.clone().expect("--cql-server or --cassandra");
                let port = free_port();
                services.push(spawn("CQL stand-in", Command::new(bin).args(["--listen", &format!("127.0.0.1:{port}")])));
                wait_port(port, "CQL stand-in");
                format!("127.0.0.1:{port}")
            }
        });
    }
    let bowman = spawn("bowman", &mut bowman_cmd);
    wait_port(pg_port, "bowman");
    let (client, conn) = tokio_postgres::connect(&format!("host=127.0.0.1 port={pg_port} user=bowman"), tokio_postgres::NoTls)
        .await
        .expect("connect to Bowman");
    tokio::spawn(conn);

    println!("machine: {} cores; best of {} runs each", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), args.repeat);
    if let Some(bootstrap) = &kafka {
        bench_kafka(&client, bootstrap, args.kafka_rows, args.repeat).await;
    }
    if let Some(url) = &redis_url {
        bench_redis(&client, url, args.redis_rows, args.repeat).await;
    }
    if let Some(addr) = &cassandra {
        bench_cassandra(&client, addr, args.cassandra_rows, args.repeat).await;
    }
    drop(bowman);
    drop(services);
    let _ = std::fs::remove_dir_all(&work);
}

async fn bench_kafka(client: &tokio_postgres::Client, bootstrap: &str, rows: u64, repeat: usize) {
    let topic = "bench_events";
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let results = admin
        .create_topics(&[NewTopic::new(topic, 3, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create topic");
    for r in results {
        r.expect("topic created");
    }
    eprintln!("kafka: producing {rows} JSON events");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut expect_sum = 0i64;
    for i in 0..rows {
        let value = format!(r#"{{"user_id":{i},"action":"click","page":"/p/{}","amount":{}.5}}"#, i % 1000, i % 97);
        expect_sum += i as i64;
        let key = (i % 3).to_string();
        let mut record = BaseRecord::to(topic).key(&key).payload(&value).partition((i % 3) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");

    client
        .batch_execute(&format!(
            "CREATE TABLE bench_events (user_id BIGINT, action STRING, page STRING, amount DOUBLE) USING kafka \
             OPTIONS (bootstrap_servers '{bootstrap}', topic '{topic}', value_format 'json')"
        ))
        .await
        .expect("create kafka table");

    let bare = best(repeat, || {
        let bootstrap = bootstrap.to_string();
        async move { tokio::task::spawn_blocking(move || bare_kafka(&bootstrap, topic)).await.unwrap() }
    })
    .await;
    let bowman = best(repeat, || bowman_scan(client, "SELECT count(*), sum(user_id) FROM bench_events WHERE action IS NOT NULL")).await;
    assert_eq!(bare.check, expect_sum, "the bare consumer's key sum");
    report("kafka", "rdkafka consumer", &bare, &bowman);
}

/// Each partition from its start to the end it had when the read began, as a bare consumer
/// reads it: partitions assigned (no group), large fetches, position checked against the end.
fn bare_kafka(bootstrap: &str, topic: &str) -> (u64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-bare")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.min.messages", "200000")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut rows, mut sum, mut done) = (0u64, 0i64, 0);
    while done < 3 {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                rows += 1;
                let v = m.payload().unwrap_or_default();
                // user_id, the first field, as the check (what Bowman sums).
                let s = std::str::from_utf8(v).unwrap();
                let start = s.find(':').unwrap() + 1;
                let end = s[start..].find(',').unwrap() + start;
                sum += s[start..end].parse::<i64>().unwrap();
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => done += 1,
            Some(Err(e)) => panic!("bare consumer: {e}"),
            None => panic!("bare consumer: no message for 10 s"),
        }
    }
    (rows, sum)
}

async fn bench_redis(client: &tokio_postgres::Client, url: &str, rows: u64, repeat: usize) {
    let redis = redis::Client::open(url).expect("redis url");
    let mut con = redis.get_multiplexed_async_connection().await.expect("redis");
    eprintln!("redis: writing {rows} hashes");
    let mut expect = 0i64;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.hset_multiple(format!("bench:user:{i}"), &[("name", format!("user {i}")), ("city", "Detroit".into()), ("score", (i % 1000).to_string())]).ignore();
            expect += (i % 1000) as i64;
        }
        let () = pipe.query_async(&mut con).await.expect("hset");
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE bench_users (id BIGINT, name STRING, city STRING, score BIGINT) USING redis \
             OPTIONS (url '{url}', key_parts 'bench:user:{{id}}', value_format 'hash')"
        ))
        .await
        .expect("create redis table");
    let bare = best(repeat, || {
        let redis = redis.clone();
        async move { bare_redis(&redis).await }
    })
    .await;
    let bowman = best(repeat, || bowman_scan(client, "SELECT count(*), sum(score) FROM bench_users WHERE city IS NOT NULL")).await;
    assert_eq!(bare.check, expect, "SCAN + HGETALL's score sum");
    report("redis", "SCAN+HGETALL", &bare, &bowman);
}

/// SCAN MATCH with a count hint; each SCAN page's keys fetched with one pipeline of HGETALLs,
/// the next page scanned while the previous one's pipeline is in flight.
async fn bare_redis(redis: &redis::Client) -> (u64, i64) {
    let mut scan = redis.get_multiplexed_async_connection().await.unwrap();
    let fetch = redis.get_multiplexed_async_connection().await.unwrap();
    let mut cursor: u64 = 0;
    let mut seen = std::collections::HashSet::new();
    let mut pending = futures::stream::FuturesUnordered::new();
    let (mut rows, mut sum) = (0u64, 0i64);
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg("bench:user:*").arg("COUNT").arg(1000).query_async(&mut scan).await.unwrap();
        let keys: Vec<String> = keys.into_iter().filter(|k| seen.insert(k.clone())).collect();
        if !keys.is_empty() {
            let mut con = fetch.clone();
            pending.push(async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.hgetall(k);
                }
                let maps: Vec<std::collections::HashMap<String, String>> = pipe.query_async(&mut con).await.unwrap();
                maps
            });
        }
        while pending.len() > 4 {
            for m in pending.next().await.unwrap() {
                rows += 1;
                sum += m["score"].parse::<i64>().unwrap();
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    while let Some(maps) = pending.next().await {
        for m in maps {
            rows += 1;
            sum += m["score"].parse::<i64>().unwrap();
        }
    }
    (rows, sum)
}

async fn bench_cassandra(client: &tokio_postgres::Client, addr: &str, rows: u64, repeat: usize) {
    use scylla::client::session_builder::SessionBuilder;
    let session = SessionBuilder::new().known_node(addr).build().await.expect("connect to CQL");
    session
        .query_unpaged("CREATE KEYSPACE IF NOT EXISTS bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", &[])
        .await
        .expect("keyspace");
    session
        .query_unpaged("CREATE TABLE IF NOT EXISTS bench.users (id bigint PRIMARY KEY, name text, score bigint)", &[])
        .await
        .expect("table");
    session.await_schema_agreement().await.ok();
    eprintln!("cassandra: writing {rows} rows");
    let insert = session.prepare("INSERT INTO bench.users (id, name, score) VALUES (?, ?, ?)").await.expect("prepare");
    let mut expect = 0i64;
    let mut inflight = futures::stream::FuturesUnordered::new();
    for i in 0..rows as i64 {
        expect += i % 1000;
        let (s, p) = (&session, &insert);
        inflight.push(async move { s.execute_unpaged(p, (i, format!("user {i}"), i % 1000)).await.expect("insert") });
        if inflight.len() >= 64 {
            inflight.next().await;
        }
    }
    while inflight.next().await.is_some() {}
    client
        .batch_execute(&format!("CREATE TABLE bench_cql USING cassandra OPTIONS (contact_points '{addr}', keyspace 'bench', table 'users')"))
        .await
        .expect("create cassandra table");
    let bare = best(repeat, || bare_cassandra(&session)).await;
    let bowman = best(repeat, || bowman_scan(client, "SELECT count(*), sum(score) FROM bench_cql WHERE name IS NOT NULL")).await;
    assert_eq!(bare.check, expect, "the driver scan's score sum");
    report("cassandra", "scylla paged scan", &bare, &bowman);
}

/// A paged full scan, rows deserialized as typed tuples, as the driver's docs show.
async fn bare_cassandra(session: &scylla::client::session::Session) -> (u64, i64) {
    let mut stmt = scylla::statement::unprepared::Statement::new("SELECT id, name, score FROM bench.users");
    stmt.set_page_size(5000);
    let pager = session.query_iter(stmt, &[]).await.expect("scan");
    let mut rows_stream = pager.rows_stream::<(i64, Option<String>, Option<i64>)>().expect("types");
    let (mut rows, mut sum) = (0u64, 0i64);
    while let Some(r) = rows_stream.next().await {
        let (_, name, score) = r.expect("row");
        assert!(name.is_some());
        rows += 1;
        sum += score.unwrap_or_default();
    }
    (rows, sum)
}
