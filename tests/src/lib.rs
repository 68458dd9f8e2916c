//! Test harness: Bowman servers started in-process (port 0) or as the real `bowman` binary,
//! and clients that talk to them over real connections.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bowman_server::{Config, Server, ServeArgs};

pub mod remote;

/// The commit directories under a partitioned table's location (`dt=p0/_commit=...`), in
/// order; none when the location does not exist.
pub fn commit_dirs(table: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(parts) = std::fs::read_dir(table) else { return out };
    for part in parts {
        let part = part.unwrap().path();
        if !part.is_dir() {
            continue;
        }
        for d in std::fs::read_dir(&part).unwrap() {
            let name = d.unwrap().file_name().to_string_lossy().to_string();
            if name.starts_with("_commit=") {
                out.insert(format!("{}/{name}", part.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    out
}

/// Where test servers look for cloud instance credentials: a closed loopback port.
pub const LOOPBACK_METADATA: &str = "http://127.0.0.1:9";

/// A server running inside the test process.
pub struct TestServer {
    server: Option<Server>,
    pub pg_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    pub http_addr: SocketAddr,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub fn config_for(data_dir: &Path) -> Config {
    let args = ServeArgs {
        data_dir: Some(data_dir.to_path_buf()),
        pg_addr: Some("127.0.0.1:0".parse().unwrap()),
        flight_addr: Some("127.0.0.1:0".parse().unwrap()),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    Config::load(&args).expect("test config")
}

impl TestServer {
    /// A fresh server on a new, empty data directory.
    pub async fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir).await;
        s._tmp = Some(tmp);
        s
    }

    /// A server on an existing data directory (to test what survives a restart).
    pub async fn start_in(data_dir: &Path) -> TestServer {
        Self::start_with(config_for(data_dir)).await
    }

    pub async fn start_with(mut config: Config) -> TestServer {
        // An S3 client without credentials asks the cloud's instance-metadata address for some:
        // in tests that is loopback, so nothing ever leaves the machine.
        config.s3.entry("metadata_endpoint".into()).or_insert_with(|| LOOPBACK_METADATA.into());
        let data_dir = config.data_dir.clone();
        let server = Server::start(config).await.expect("server starts");
        TestServer {
            pg_addr: server.pg_addr,
            flight_addr: server.flight_addr,
            http_addr: server.http_addr,
            server: Some(server),
            data_dir,
            _tmp: None,
        }
    }

    /// Calls made to object storage by this server so far.
    pub fn store_calls(&self) -> bowman_server::StoreCallCounts {
        self.server.as_ref().expect("running").engine.store_calls().snapshot()
    }

    /// How many tables this server's catalog reloaded from its store so far.
    pub fn catalog_tables_reloaded(&self) -> u64 {
        self.server.as_ref().expect("running").engine.catalog().tables_reloaded()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(self.pg_addr).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

pub async fn connect(addr: SocketAddr) -> tokio_postgres::Client {
    let url = format!("host={} port={} user=bowman dbname=bowman", addr.ip(), addr.port());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect to bowman");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The `bowman` binary of this build (built by `cargo build -p bowman-server` or `cargo test --workspace`).
pub fn bowman_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BOWMAN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("bowman");
    assert!(bin.exists(), "{} not found: build it with `cargo build -p bowman-server` first", bin.display());
    bin
}

/// The real `bowman` binary in a child process.
pub struct BinServer {
    pub child: Child,
    pub pg_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

impl BinServer {
    pub fn spawn(data_dir: &Path, extra_env: &[(&str, &str)]) -> BinServer {
        Self::spawn_logging(data_dir, extra_env, None)
    }

    /// Like [`BinServer::spawn`], with the server's log (stderr) written to `log`.
    pub fn spawn_logging(data_dir: &Path, extra_env: &[(&str, &str)], log: Option<&Path>) -> BinServer {
        let mut cmd = Command::new(bowman_bin());
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("log file")),
            None => Stdio::inherit(),
        };
        cmd.args(["serve", "--pg-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("AWS_METADATA_ENDPOINT", LOOPBACK_METADATA);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn bowman");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut pg = None;
        let mut http = None;
        while pg.is_none() || http.is_none() {
            let line = lines.next().expect("bowman exited before listening").expect("read stdout");
            if let Some(a) = line.strip_prefix("pgwire listening on ") {
                pg = Some(a.trim().parse().expect("pg addr"));
            } else if let Some(a) = line.strip_prefix("http listening on ") {
                http = Some(a.trim().parse().expect("http addr"));
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        BinServer { child, pg_addr: pg.unwrap(), http_addr: http.unwrap() }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGKILL, and reap.
    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Wait for exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid())
    }
}

/// Resident set size of a process in KiB, from /proc (0 once it is gone).
pub fn rss_kib_of(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for BinServer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// S3 test settings, exported by scripts/test after it starts SeaweedFS.
#[derive(Debug, Clone)]
pub struct S3Env {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

impl S3Env {
    /// `None` when no S3 server was started (then S3 tests say so and skip, unless
    /// `BOWMAN_TEST_REQUIRE_SERVICES=1`, as in scripts/test and CI, makes that a failure).
    pub fn from_env() -> Option<S3Env> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (get("BOWMAN_TEST_S3_ENDPOINT"), get("BOWMAN_TEST_S3_ACCESS_KEY"), get("BOWMAN_TEST_S3_SECRET_KEY"), get("BOWMAN_TEST_S3_BUCKET")) {
            (Some(endpoint), Some(access_key), Some(secret_key), Some(bucket)) => Some(S3Env { endpoint, access_key, secret_key, bucket }),
            _ => {
                assert!(
                    std::env::var("BOWMAN_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "BOWMAN_TEST_S3_* is not set but services are required: run scripts/test"
                );
                eprintln!("skipping: no S3 server (run scripts/test to start SeaweedFS)");
                None
            }
        }
    }

    /// OPTIONS (...) text for a table on this server.
    pub fn options(&self) -> String {
        format!(
            "endpoint '{}', allow_http 'true', region 'us-east-1', access_key_id '{}', secret_access_key '{}'",
            self.endpoint, self.access_key, self.secret_key
        )
    }

    /// A fresh prefix so tests never see each other's objects.
    pub fn unique_prefix(&self, name: &str) -> String {
        format!(
            "s3://{}/{}-{}-{}",
            self.bucket,
            name,
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        )
    }
}

/// Run psql (the real client) with the given script; returns (stdout, stderr, success).
/// Asynchronous, so an in-process server on the same runtime keeps serving meanwhile.
pub async fn psql(addr: SocketAddr, script: &str, extra_args: &[&str]) -> (String, String, bool) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("psql")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-U", "bowman", "-d", "bowman", "-X", "-q", "-v", "VERBOSITY=verbose"])
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql is installed (scripts/test installs postgresql-client)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned(), out.status.success())
}

/// Column `idx` of every row of a simple-protocol result, as text.
pub fn text_column(messages: &[tokio_postgres::SimpleQueryMessage], idx: usize) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(idx).map(str::to_string),
            _ => None,
        })
        .collect()
}

/// A database server the connector tests use, named by an environment variable (scripts/test
/// sets them), falling back to the project machine's own server. `None` (skip) when neither
/// answers, unless `BOWMAN_TEST_REQUIRE_SERVICES=1` makes that a failure.
fn service_url(var: &str, fallback: &str, what: &str) -> Option<String> {
    if let Ok(url) = std::env::var(var) {
        if !url.is_empty() {
            return Some(url);
        }
    }
    let addr = fallback.split('@').nth(1).and_then(|h| h.split('/').next()).unwrap_or_default().to_string();
    if std::net::TcpStream::connect_timeout(&addr.parse().expect("fallback address"), Duration::from_secs(1)).is_ok() {
        return Some(fallback.to_string());
    }
    assert!(
        std::env::var("BOWMAN_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{var} is not set and no {what} answers on {addr}, but services are required: run scripts/test"
    );
    eprintln!("skipping: no {what} (set {var} or run scripts/test)");
    None
}

/// PostgreSQL for the connector tests (Aurora PostgreSQL and Redshift stand-in).
pub fn pg_url() -> Option<String> {
    service_url("BOWMAN_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres", "PostgreSQL")
}

/// MySQL/MariaDB for the connector tests (Aurora MySQL stand-in).
pub fn mysql_url() -> Option<String> {
    service_url("BOWMAN_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test", "MySQL")
}

/// A name no other test run uses (schemas and databases on shared servers).
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// What scripts/test sets up for TLS to the remote databases: a CA that signed the private
/// servers' certificates (for 127.0.0.1 and localhost), a CA that signed nothing, a PostgreSQL
/// role that may only connect over TLS, and a MariaDB that refuses connections without TLS.
pub struct TlsEnv {
    pub ca: String,
    pub other_ca: String,
    pub pg_tls_only_url: String,
    pub mysql_tls_url: String,
}

impl TlsEnv {
    /// `None` (skip) when scripts/test did not set these, unless services are required.
    pub fn from_env() -> Option<TlsEnv> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            get("BOWMAN_TEST_TLS_CA"),
            get("BOWMAN_TEST_TLS_OTHER_CA"),
            get("BOWMAN_TEST_PG_TLS_ONLY_URL"),
            get("BOWMAN_TEST_MYSQL_TLS_URL"),
        ) {
            (Some(ca), Some(other_ca), Some(pg_tls_only_url), Some(mysql_tls_url)) => {
                Some(TlsEnv { ca, other_ca, pg_tls_only_url, mysql_tls_url })
            }
            _ => {
                assert!(
                    std::env::var("BOWMAN_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "BOWMAN_TEST_TLS_CA / BOWMAN_TEST_TLS_OTHER_CA / BOWMAN_TEST_PG_TLS_ONLY_URL / BOWMAN_TEST_MYSQL_TLS_URL \
                     are not set, but services are required: run scripts/test"
                );
                eprintln!("skipping: no TLS test servers (run scripts/test)");
                None
            }
        }
    }
}

/// A service address the test command (scripts/test) names in `var`, else `fallback` when it
/// answers there; `None` (skip, with a printed reason) when neither, unless
/// `BOWMAN_TEST_REQUIRE_SERVICES=1` makes that a failure.
fn service_addr(var: &str, fallback: Option<&str>, what: &str) -> Option<String> {
    if let Ok(v) = std::env::var(var) {
        if !v.trim().is_empty() {
            return Some(v.trim().to_string());
        }
    }
    if let Some(addr) = fallback {
        if let Ok(sock) = addr.parse::<SocketAddr>() {
            if std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).is_ok() {
                return Some(addr.to_string());
            }
        }
    }
    assert!(
        std::env::var("BOWMAN_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{var} is not set and no {what} answers, but services are required: run scripts/test"
    );
    eprintln!("skipping: no {what} (set {var} or run scripts/test)");
    None
}

/// The Kafka-compatible broker (Tansu) scripts/test starts: `host:port` bootstrap servers.
pub fn kafka_bootstrap() -> Option<String> {
    service_addr("BOWMAN_TEST_KAFKA", None, "Kafka broker")
}

/// Redis for the connector tests: `redis://host:port`, the machine's own server by default.
pub fn redis_url() -> Option<String> {
    service_addr("BOWMAN_TEST_REDIS", Some("127.0.0.1:6379"), "Redis").map(|a| {
        if a.contains("://") { a } else { format!("redis://{a}") }
    })
}

/// The CQL stand-in scripts/test starts (tests/cql-server, on the kassandra engine): `host:port`.
pub fn cql_stand_in() -> Option<String> {
    service_addr("BOWMAN_TEST_CQL", None, "CQL test server")
}

/// A real Cassandra or ScyllaDB, `host:port`, when `BOWMAN_TEST_CASSANDRA` names one. Tests of
/// what the stand-in cannot do (clustering ranges, decimals, collections, counters, UDTs) run
/// only then; otherwise they print why they did not run. Never required by scripts/test, since no
/// Cassandra installs on its machines.
pub fn real_cassandra(test: &str) -> Option<String> {
    match std::env::var("BOWMAN_TEST_CASSANDRA") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        _ => {
            eprintln!("not run: {test} needs a real Cassandra or ScyllaDB (set BOWMAN_TEST_CASSANDRA=host:port); the kassandra stand-in gets it wrong");
            None
        }
    }
}
