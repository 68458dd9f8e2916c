//! Authentication as an attacker tries it: a hand-written SCRAM exchange over a raw socket,
//! Flight SQL basic auth as every client encodes it, password guessing, connection limits,
//! what a server that started without users does once one exists, and where it listens.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bowman_tests::{TestServer, config_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

fn url(addr: SocketAddr, user: &str, password: &str) -> String {
    format!("host=127.0.0.1 port={} user={user} password='{password}' dbname=bowman", addr.port())
}

async fn login(addr: SocketAddr, user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(&url(addr, user, password), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Log in, retrying while the server still counts a connection that just closed (53300).
async fn login_soon(addr: SocketAddr, user: &str, password: &str) -> tokio_postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match login(addr, user, password).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline && code(&e) == "53300" => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{user}: {e:?}"),
        }
    }
}

async fn select_one(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT 1::BIGINT", &[]).await.expect("SELECT 1").get(0)
}

/// A server with the given users (name, password) and its config adjusted by `tune`.
async fn server_with(users: &[(&str, &str)], tune: impl FnOnce(&mut bowman_server::Config)) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    for (name, password) in users {
        config.users.insert(name, bowman_server::auth::ScramSecret::from_password(password));
    }
    tune(&mut config);
    (TestServer::start_with(config).await, dir)
}

// --- a minimal pgwire client, to send what no driver would ---

async fn send(sock: &mut tokio::net::TcpStream, tag: Option<u8>, body: &[u8]) {
    let mut msg = Vec::new();
    msg.extend(tag);
    msg.extend(((body.len() + 4) as u32).to_be_bytes());
    msg.extend(body);
    sock.write_all(&msg).await.unwrap();
}

/// The next backend message (tag, body), or None once the server closed the connection.
async fn recv(sock: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), sock.read_exact(&mut head)).await.expect("an answer").ok()?;
    let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize - 4;
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}

/// The SQLSTATE and message of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        match field.first() {
            Some(b'C') => code = String::from_utf8_lossy(&field[1..]).into_owned(),
            Some(b'M') => message = String::from_utf8_lossy(&field[1..]).into_owned(),
            _ => {}
        }
    }
    (code, message)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&key, data).as_ref().to_vec()
}

/// Run SCRAM-SHA-256 by hand for `user`/`password`; `final_nonce` turns the server's nonce
/// into the one the client-final message carries (its proof is computed over that message).
/// Returns the socket and the first message after the client-final one.
async fn scram_by_hand(
    addr: SocketAddr,
    user: &str,
    password: &str,
    final_nonce: impl FnOnce(&str) -> String,
) -> (tokio::net::TcpStream, Option<(u8, Vec<u8>)>) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut startup = 196608u32.to_be_bytes().to_vec();
    for part in ["user", user, "database", "bowman", ""] {
        startup.extend(part.as_bytes());
        startup.push(0);
    }
    send(&mut sock, None, &startup).await;
    let (tag, body) = recv(&mut sock).await.expect("AuthenticationSASL");
    assert_eq!((tag, &body[..4]), (b'R', &10u32.to_be_bytes()[..]), "the server asks for SASL");
    assert!(String::from_utf8_lossy(&body).contains("SCRAM-SHA-256"));

    let client_nonce = "rOprNGfwEbeRWgbNEkqO";
    let client_first_bare = format!("n=,r={client_nonce}");
    let mut initial = b"SCRAM-SHA-256\0".to_vec();
    let first = format!("n,,{client_first_bare}");
    initial.extend((first.len() as u32).to_be_bytes());
    initial.extend(first.as_bytes());
    send(&mut sock, Some(b'p'), &initial).await;
    let (tag, body) = recv(&mut sock).await.expect("AuthenticationSASLContinue");
    assert_eq!((tag, &body[..4]), (b'R', &11u32.to_be_bytes()[..]));
    let server_first = String::from_utf8(body[4..].to_vec()).unwrap();
    let attr = |name: &str| server_first.split(',').find_map(|p| p.strip_prefix(name)).unwrap().to_string();
    let (nonce, salt, iterations) = (attr("r="), STANDARD.decode(attr("s=")).unwrap(), attr("i=").parse::<u32>().unwrap());

    let mut salted = [0u8; 32];
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap(),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &client_key);
    let without_proof = format!("c=biws,r={}", final_nonce(&nonce));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(stored_key.as_ref(), auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
    let client_final = format!("{without_proof},p={}", STANDARD.encode(proof));
    send(&mut sock, Some(b'p'), client_final.as_bytes()).await;
    let answer = recv(&mut sock).await;
    (sock, answer)
}

/// A SCRAM client-final message must carry the nonce the server issued: one with another
/// nonce, whose proof is computed over that very message, is refused with 28P01 and the
/// connection runs nothing. The same hand-written exchange with the right nonce gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_client_final_with_another_nonce_is_refused() {
    let (server, _dir) = server_with(&[("analyst", "s3cret pass")], |c| c.auth_failure_delay = (Duration::from_millis(10), Duration::from_millis(10))).await;

    let (mut sock, answer) = scram_by_hand(server.pg_addr, "analyst", "s3cret pass", |n| format!("{n}FORGED")).await;
    let (tag, body) = answer.expect("an answer to the client-final message");
    assert_eq!(tag, b'E', "refused, not {:?}", String::from_utf8_lossy(&body));
    let (code, message) = error_fields(&body);
    assert_eq!(code, "28P01", "{message}");
    assert!(message.contains("\"analyst\""), "{message}");
    // No query runs on that connection: it is closed.
    let mut query = b"SELECT 4242 AS leaked".to_vec();
    query.push(0);
    let _ = sock.write_all(&[b'Q']).await;
    let _ = sock.write_all(&((query.len() + 4) as u32).to_be_bytes()).await;
    let _ = sock.write_all(&query).await;
    while let Some((tag, body)) = recv(&mut sock).await {
        assert!(tag != b'D' && tag != b'T', "the refused connection ran a query: {}", String::from_utf8_lossy(&body));
    }

    // A nonce of the client's own making is refused the same way.
    let (_sock, answer) = scram_by_hand(server.pg_addr, "analyst", "s3cret pass", |_| "rOprNGfwEbeRWgbNEkqO".into()).await;
    assert_eq!(answer.map(|(t, b)| (t, error_fields(&b).0)), Some((b'E', "28P01".into())));

    // The exchange itself is right: with the server's nonce it logs in and runs queries.
    let (mut sock, answer) = scram_by_hand(server.pg_addr, "analyst", "s3cret pass", |n| n.to_string()).await;
    let (tag, body) = answer.unwrap();
    assert_eq!((tag, &body[..4]), (b'R', &12u32.to_be_bytes()[..]), "SASLFinal: {:?}", String::from_utf8_lossy(&body));
    loop {
        let (tag, _) = recv(&mut sock).await.expect("ReadyForQuery");
        if tag == b'Z' {
            break;
        }
    }
    let mut query = b"SELECT 4242 AS answered".to_vec();
    query.push(0);
    send(&mut sock, Some(b'Q'), &query).await;
    let mut rows = Vec::new();
    loop {
        let (tag, body) = recv(&mut sock).await.expect("query answer");
        match tag {
            b'D' => rows.push(String::from_utf8_lossy(&body[6..]).into_owned()),
            b'Z' => break,
            b'E' => panic!("{:?}", error_fields(&body)),
            _ => {}
        }
    }
    assert_eq!(rows, vec!["4242"]);
    // The server stays up for everyone.
    let c = login(server.pg_addr, "analyst", "s3cret pass").await.unwrap();
    assert_eq!(select_one(&c).await, 1);
    server.stop().await;
}

/// A failed login names the user who tried (PostgreSQL's `password authentication failed for
/// user "analyst"`), for unknown users too, with the same SQLSTATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_name_the_user() {
    let (server, _dir) = server_with(&[("analyst", "right")], |c| c.auth_failure_delay = (Duration::from_millis(10), Duration::from_millis(10))).await;
    for user in ["analyst", "nobody"] {
        let e = login(server.pg_addr, user, "wrong").await.err().expect("refused");
        assert_eq!(code(&e), "28P01", "{e:?}");
        let message = e.as_db_error().unwrap().message().to_string();
        assert!(message.contains(&format!("\"{user}\"")), "{message}");
        assert!(!message.contains("\"\""), "{message}");
    }
    assert_eq!(select_one(&login(server.pg_addr, "analyst", "right").await.unwrap()).await, 1);
    server.stop().await;
}

/// Flight SQL basic auth takes `user:password` base64 with or without `=` padding (Go's
/// Flight client and ADBC send it without): every length is accepted with the right password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_basic_auth_accepts_every_length() {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::HandshakeRequest;
    let users: Vec<(String, String)> = (1..=6).map(|n| ("u".to_string(), "p".repeat(n))).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    for (i, (user, password)) in users.iter().enumerate() {
        config.users.insert(&format!("{user}{i}"), bowman_server::auth::ScramSecret::from_password(password));
    }
    config.auth_failure_delay = (Duration::from_millis(10), Duration::from_millis(10));
    let server = TestServer::start_with(config).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.flight_addr)).unwrap().connect().await.unwrap();
    let handshake = |credentials: String| {
        let channel = channel.clone();
        async move {
            let mut client = FlightServiceClient::new(channel);
            let mut req = tonic::Request::new(futures::stream::iter(vec![HandshakeRequest { protocol_version: 0, payload: Default::default() }]));
            req.metadata_mut().insert("authorization", format!("Basic {credentials}").parse().unwrap());
            client.handshake(req).await.map(|r| r.metadata().get("authorization").map(|v| v.to_str().unwrap().to_string()))
        }
    };
    let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD;
    for (i, (user, password)) in users.iter().enumerate() {
        let pair = format!("{user}{i}:{password}");
        for encoded in [STANDARD.encode(&pair), unpadded.encode(&pair)] {
            let token = handshake(encoded.clone()).await.unwrap_or_else(|e| panic!("{pair} ({} bytes) as {encoded}: {e}", pair.len()));
            assert!(token.is_some_and(|t| t.starts_with("Bearer ")), "{pair}");
        }
        let wrong = handshake(unpadded.encode(format!("{user}{i}:{password}x"))).await.expect_err("wrong password");
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong}");
    }
    server.stop().await;
}

/// Guessing is slowed: each failed login for a name waits, longer with each failure, and
/// guesses at one name take turns however many connections make them. Another user's correct
/// login is not slowed meanwhile, and a correct login clears the failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_delayed_for_that_user_only() {
    let (server, _dir) = server_with(&[("analyst", "right"), ("other", "fine")], |c| {
        c.auth_failure_delay = (Duration::from_millis(100), Duration::from_millis(400))
    })
    .await;
    let addr = server.pg_addr;
    // Sequential guesses: 100 + 200 + 400 + 400 + 400 ms at least.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(code(&login(addr, "analyst", "guess").await.err().unwrap()), "28P01");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "5 wrong guesses took only {took:?}");

    // Eight guesses at once take turns: at least 8 x 400 ms, while "other" logs in at once.
    let started = Instant::now();
    let guesses: Vec<_> = (0..8).map(|_| tokio::spawn(async move { login(addr, "analyst", "guess").await.err().map(|e| code(&e)) })).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = Instant::now();
    let c = login(addr, "other", "fine").await.unwrap();
    assert_eq!(select_one(&c).await, 1);
    assert!(other.elapsed() < Duration::from_secs(1), "another user's login took {:?}", other.elapsed());
    for g in guesses {
        assert_eq!(g.await.unwrap().as_deref(), Some("28P01"));
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(3000), "8 parallel guesses took only {took:?}");
    // The right password still gets in (after its turn), and clears the failures.
    let c = login(addr, "analyst", "right").await.unwrap();
    assert_eq!(select_one(&c).await, 1);
    let started = Instant::now();
    assert_eq!(code(&login(addr, "analyst", "typo").await.err().unwrap()), "28P01");
    assert!(started.elapsed() < Duration::from_millis(400), "a first failure after a success waits the first delay only");
    server.stop().await;
}

/// `max_connections` and `max_connections_per_user`: one connection past either gets 53300;
/// closing one makes room; other users and the connections already open keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited_per_user_and_in_total() {
    let (server, _dir) = server_with(&[("analyst", "a"), ("other", "o")], |c| {
        c.max_connections = 4;
        c.max_connections_per_user = 2;
    })
    .await;
    let addr = server.pg_addr;
    let a1 = login(addr, "analyst", "a").await.unwrap();
    let a2 = login(addr, "analyst", "a").await.unwrap();
    let e = login(addr, "analyst", "a").await.err().expect("third connection of analyst");
    assert_eq!(code(&e), "53300", "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("analyst"), "{e:?}");
    let o1 = login_soon(addr, "other", "o").await;
    let o2 = login_soon(addr, "other", "o").await;
    // Four connections are open: the total is reached for everyone.
    let e = login(addr, "other", "o").await.err().expect("past max_connections");
    assert_eq!(code(&e), "53300", "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("too many clients"), "{e:?}");
    for c in [&a1, &a2, &o1, &o2] {
        assert_eq!(select_one(c).await, 1);
    }
    drop(a2);
    let a3 = login_soon(addr, "analyst", "a").await;
    assert_eq!(select_one(&a3).await, 1);
    server.stop().await;
}

/// On a server that started without users, `CREATE USER` makes every new connection log in at
/// once (pgwire and Flight SQL); the session that created the user keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_required_as_soon_as_a_user_exists() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    let server = TestServer::start().await;
    let open = server.client().await;
    assert_eq!(select_one(&open).await, 1);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.flight_addr)).unwrap().connect().await.unwrap();
    FlightSqlServiceClient::new(channel.clone()).execute("SELECT 1".into(), None).await.expect("no users yet: no login");

    open.batch_execute("CREATE USER analyst WITH PASSWORD 'now needed'").await.unwrap();
    let e = tokio_postgres::connect(&format!("host=127.0.0.1 port={} user=bowman dbname=bowman", server.pg_addr.port()), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a login without a password is refused");
    assert!(format!("{e:?}").contains("password"), "{e:?}");
    assert_eq!(code(&login(server.pg_addr, "analyst", "wrong").await.err().unwrap()), "28P01");
    assert_eq!(select_one(&login(server.pg_addr, "analyst", "now needed").await.unwrap()).await, 1);
    let e = FlightSqlServiceClient::new(channel.clone()).execute("SELECT 1".into(), None).await.expect_err("flight asks for a login");
    assert!(e.to_string().contains("Unauthenticated") || e.to_string().contains("log in"), "{e}");
    let mut flight = FlightSqlServiceClient::new(channel);
    flight.handshake("analyst", "now needed").await.unwrap();
    flight.execute("SELECT 1".into(), None).await.unwrap();
    assert_eq!(select_one(&open).await, 1);
    server.stop().await;
}

/// Without users, every listener is held to loopback, /health's too; with users the
/// addresses asked for are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_stay_on_loopback_without_users() {
    let any = |c: &mut bowman_server::Config| {
        c.pg_addr = "0.0.0.0:0".parse().unwrap();
        c.flight_addr = "0.0.0.0:0".parse().unwrap();
        c.http_addr = "0.0.0.0:0".parse().unwrap();
    };
    let (server, _dir) = server_with(&[], any).await;
    for addr in [server.pg_addr, server.flight_addr, server.http_addr] {
        assert!(addr.ip().is_loopback(), "{addr} is not loopback");
    }
    server.stop().await;
    let (server, _dir) = server_with(&[("analyst", "a")], any).await;
    for addr in [server.pg_addr, server.flight_addr, server.http_addr] {
        assert!(addr.ip().is_unspecified(), "{addr}: with users the address asked for is used");
    }
    server.stop().await;
}

// --- secrets at rest and in logs ---

/// Every file under `dir`, with its bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Tables with secret OPTIONS against the real services — a PostgreSQL password (as an option
/// and inside the URL), a MySQL password, an S3 secret key, Redshift's temporary secret key for
/// UNLOAD (PostgreSQL stands in for Redshift and refuses the UNLOAD it receives) — are queried
/// on the bowman binary at BOWMAN_LOG=debug; then no secret is in catalog.db, any file of the
/// data directory, a pg_dump of a PostgreSQL catalog, or the server's log. The data directory
/// is 0700, the catalog and key file 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_encrypted_at_rest_and_never_logged() {
    use bowman_tests::{BinServer, S3Env, connect, mysql_url, pg_url, text_column, unique_name};
    use mysql_async::prelude::Queryable;
    let (Some(pg), Some(my), Some(s3)) = (pg_url(), mysql_url(), S3Env::from_env()) else { return };
    let ns = unique_name("bowman_rest");
    let pgc = bowman_tests::remote::seed_postgres(&pg, &ns).await;
    let mut myc = bowman_tests::remote::seed_mysql(&my, &ns).await;
    let pid = std::process::id();
    let pg_secret = format!("pgPassword{pid}q7");
    let url_secret = format!("pgUrlSecret{pid}k2");
    let my_secret = format!("myPassword{pid}z5");
    let rs_secret = format!("rsTempSecret{pid}w8");
    let my_user = format!("bowman_rest_{pid}");
    myc.query_drop(format!("DROP USER IF EXISTS '{my_user}'@'%'")).await.unwrap();
    myc.query_drop(format!("CREATE USER '{my_user}'@'%' IDENTIFIED BY '{my_secret}'")).await.unwrap();
    myc.query_drop(format!("GRANT ALL ON {ns}.* TO '{my_user}'@'%'")).await.unwrap();
    let my_host = my.split('@').nth(1).and_then(|h| h.split('/').next()).unwrap().to_string();
    let pg_url_with_secret = pg.replacen("postgres://postgres@", &format!("postgres://postgres:{url_secret}@"), 1);
    assert_ne!(pg_url_with_secret, pg);
    let rs_url = pg.replacen("postgres://postgres@", "jdbc:redshift://", 1);
    let secrets = [pg_secret.as_str(), url_secret.as_str(), my_secret.as_str(), rs_secret.as_str(), s3.secret_key.as_str()];
    let statements = |prefix: &str| {
        format!(
            "CREATE TABLE pg_t USING postgres OPTIONS (url '{pg}', dbtable '{ns}.people', user 'postgres', password '{pg_secret}');
             CREATE TABLE pg_u USING postgres OPTIONS (url '{pg_url_with_secret}', dbtable '{ns}.people');
             CREATE TABLE my_t USING mysql OPTIONS (url 'mysql://{my_host}/{ns}', dbtable 'people', user '{my_user}', password '{my_secret}');
             CREATE TABLE rs_t USING redshift OPTIONS (url '{rs_url}', user 'postgres', dbtable '{ns}.people',
               tempdir 's3://{bucket}/rs-tmp/{ns}', temporary_aws_access_key_id 'AKIAREST{pid}', temporary_aws_secret_access_key '{rs_secret}');
             CREATE TABLE s3_t (a INT, b STRING) USING parquet LOCATION '{location}' OPTIONS ({s3opts});",
            bucket = s3.bucket,
            location = s3.unique_prefix(prefix),
            s3opts = s3.options(),
        )
    };
    let exercise = |c: tokio_postgres::Client| async move {
        for t in ["pg_t", "pg_u", "my_t"] {
            let rows = c.simple_query(&format!("SELECT count(*) FROM {t}")).await.unwrap_or_else(|e| panic!("{t}: {e:?}"));
            assert_eq!(text_column(&rows, 0), vec!["5"], "{t}");
        }
        c.batch_execute("INSERT INTO s3_t VALUES (1, 'x'), (2, 'y')").await.unwrap();
        let rows = c.simple_query("SELECT count(*) FROM s3_t").await.unwrap();
        assert_eq!(text_column(&rows, 0), vec!["2"]);
        // The read becomes an UNLOAD carrying the temporary keys; the stand-in refuses it.
        let e = c.simple_query("SELECT count(*) FROM rs_t").await.unwrap_err();
        assert_eq!(code(&e), "42601", "PostgreSQL received the UNLOAD: {e:?}");
        let mut shown = format!("{e:?}");
        for t in ["pg_t", "pg_u", "my_t", "rs_t", "s3_t"] {
            let rows = c.simple_query(&format!("SHOW CREATE TABLE {t}")).await.unwrap();
            shown.push_str(&text_column(&rows, 0).join("\n"));
        }
        shown
    };

    // 1. The embedded SQLite catalog.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("bowman.log");
    let server = BinServer::spawn_logging(&data, &[("BOWMAN_LOG", "debug")], Some(&log));
    let c = connect(server.pg_addr).await;
    c.batch_execute(&statements("rest-sqlite")).await.unwrap();
    let shown = exercise(c).await;
    let mut server = server;
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("catalog.db")), 0o600, "catalog.db");
    assert_eq!(mode(&data.join("secret.key")), 0o600, "secret.key");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("DEBUG"), "the log is at debug level");
    assert!(logged.contains("redshift unload"), "the UNLOAD was sent: {logged}");
    let stored = files_under(&data);
    assert!(stored.iter().any(|(p, _)| p.ends_with("catalog.db")));
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret} shown to the client:\n{shown}");
        assert!(!logged.contains(secret), "{secret} in the debug log:\n{logged}");
        for (path, bytes) in &stored {
            assert!(!contains(bytes, secret), "{secret} in {}", path.display());
        }
    }

    // 2. A shared PostgreSQL catalog, with the key given in BOWMAN_SECRET_KEY.
    let catalog_db = unique_name("bowman_rest_cat");
    pgc.batch_execute(&format!("CREATE DATABASE {catalog_db}")).await.unwrap();
    let catalog_url = format!("{}/{catalog_db}", pg.rsplit_once('/').unwrap().0);
    let key = bowman_catalog::SecretKeys::generate();
    let data2 = dir.path().join("data2");
    let log2 = dir.path().join("bowman2.log");
    let server = BinServer::spawn_logging(
        &data2,
        &[("BOWMAN_LOG", "debug"), ("BOWMAN_CATALOG", catalog_url.as_str()), ("BOWMAN_SECRET_KEY", key.as_str())],
        Some(&log2),
    );
    let c = connect(server.pg_addr).await;
    c.batch_execute(&statements("rest-pg")).await.unwrap();
    let shown = exercise(c).await;
    let mut server = server;
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));
    let dump = std::process::Command::new("pg_dump").arg("--data-only").arg(&catalog_url).output().expect("pg_dump is installed");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains("bowman:encrypted"), "the dump holds the tables' encrypted secrets: {dump}");
    let logged = std::fs::read_to_string(&log2).unwrap();
    let stored = files_under(&data2);
    assert!(!data2.join("secret.key").exists(), "BOWMAN_SECRET_KEY given: no key file");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret} shown to the client:\n{shown}");
        assert!(!dump.contains(secret), "{secret} in the PostgreSQL catalog:\n{dump}");
        assert!(!logged.contains(secret), "{secret} in the debug log:\n{logged}");
        for (path, bytes) in &stored {
            assert!(!contains(bytes, secret), "{secret} in {}", path.display());
        }
    }
    // Without the key, that catalog's secrets cannot be read: the server refuses to start.
    let out = std::process::Command::new(bowman_tests::bowman_bin())
        .args(["serve", "--pg-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data3"))
        .env("BOWMAN_CATALOG", &catalog_url)
        .env_remove("BOWMAN_SECRET_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("secret options"), "{err}");

    pgc.batch_execute(&format!("DROP DATABASE {catalog_db}")).await.unwrap();
    pgc.batch_execute(&format!("DROP SCHEMA {ns} CASCADE")).await.unwrap();
    myc.query_drop(format!("DROP USER '{my_user}'@'%'")).await.unwrap();
    myc.query_drop(format!("DROP DATABASE {ns}")).await.unwrap();
}

/// A catalog written before encryption (secret options as text) still opens: its secrets are
/// encrypted at the first start, SHOW CREATE TABLE still hides them, and the table keeps them.
/// Rotating the key (the new key first in the key file, the old one after it) re-encrypts them
/// with the new key, after which the old key can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_secrets_are_encrypted_and_keys_rotate() {
    use bowman_catalog::{Catalog, CatalogChange, SecretKeys, SqliteStore, TableDef, TableKind};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let legacy = "legacySecretValue-41f3";
    let location = dir.path().join("lake");
    std::fs::create_dir_all(&location).unwrap();
    {
        // What an earlier release wrote: no key, secrets as text.
        let catalog = Catalog::open(Arc::new(SqliteStore::open(&data.join("catalog.db")).unwrap())).await.unwrap();
        let def = TableDef {
            database: "default".into(),
            name: "old".into(),
            kind: TableKind::External,
            format: "parquet".into(),
            location: Some(format!("file://{}", location.display())),
            columns: vec![],
            partition_columns: vec![],
            options: BTreeMap::from([("region".to_string(), "us-east-1".to_string())]),
            secret_options: BTreeMap::from([("secret_access_key".to_string(), legacy.to_string())]),
            comment: None,
            created_at: 0,
            tracked: false,
            live: vec![],
            retired: vec![],
            owner: None,
            data_version: 0,
        };
        catalog.apply(CatalogChange::CreateTable { def, if_not_exists: false }).await.unwrap();
    }
    let db_bytes = || files_under(&data).into_iter().filter(|(p, _)| p.to_string_lossy().contains("catalog.db")).collect::<Vec<_>>();
    assert!(db_bytes().iter().any(|(_, b)| contains(b, legacy)), "the legacy catalog holds the secret as text");

    let server = TestServer::start_in(&data).await;
    let c = server.client().await;
    let rows = c.simple_query("SHOW CREATE TABLE old").await.unwrap();
    let shown = bowman_tests::text_column(&rows, 0).join("\n");
    assert!(shown.contains("region") && !shown.contains(legacy), "{shown}");
    drop(c);
    server.stop().await;
    for (path, bytes) in db_bytes() {
        assert!(!contains(&bytes, legacy), "{legacy} still in {}", path.display());
    }
    let key_file = data.join("secret.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    let reopen = |keys: SecretKeys| {
        let path = data.join("catalog.db");
        async move {
            let catalog = Catalog::open_with_keys(Arc::new(SqliteStore::open(&path).unwrap()), Some(Arc::new(keys))).await?;
            Ok::<_, bowman_catalog::CatalogError>(catalog.snapshot().table("default", "old").unwrap().secret_options.clone())
        }
    };
    let expected = BTreeMap::from([("secret_access_key".to_string(), legacy.to_string())]);
    assert_eq!(reopen(SecretKeys::parse(&old_key).unwrap()).await.unwrap(), expected);

    // Rotation: a new key first, the old one after it; one start re-encrypts.
    let new_key = SecretKeys::generate();
    std::fs::write(&key_file, format!("{new_key}\n{old_key}")).unwrap();
    let server = TestServer::start_in(&data).await;
    server.stop().await;
    assert_eq!(reopen(SecretKeys::parse(&new_key).unwrap()).await.unwrap(), expected, "the new key alone opens them");
    let e = reopen(SecretKeys::parse(&SecretKeys::generate()).unwrap()).await.err().expect("a wrong key is refused");
    assert!(e.to_string().contains("secret options") && !e.to_string().contains(legacy), "{e}");
}
