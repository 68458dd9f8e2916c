//! Inputs the fuzz targets (fuzz/fuzz_targets) found that dropped a connection or panicked,
//! replayed against a real server: each must now get a SQLSTATE, and the server must go on
//! answering.

use std::time::Duration;

use bowman_tests::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message: its type byte and body.
async fn read_message(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    stream.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}

/// The fields of an ErrorResponse body, by their one-byte codes.
fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

fn startup(user: &str) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec(); // protocol 3.0
    for (k, v) in [("user", user), ("database", "bowman")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// A SASLInitialResponse whose data length (0x496e7465, from the fuzzer's crash input
/// fuzz/corpus/pgwire_frontend/crash-sasl-initial-data-length) runs past the end of the
/// message. pgwire's decoder panicked on it, which ended the connection task: the client saw
/// the connection drop with no ErrorResponse. PostgreSQL answers 08P01 (protocol violation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sasl_initial_response_gets_08p01_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bowman_tests::config_for(&dir.path().join("data"));
    config.users.insert("analyst", bowman_server::auth::ScramSecret::from_password("correct horse"));
    let server = TestServer::start_with(config).await;

    for _ in 0..2 {
        let mut s = TcpStream::connect(server.pg_addr).await.unwrap();
        s.write_all(&startup("analyst")).await.unwrap();
        // AuthenticationSASL (R, code 10) with the mechanisms.
        let (kind, body) = tokio::time::timeout(Duration::from_secs(5), read_message(&mut s)).await.unwrap().unwrap();
        assert_eq!((kind, &body[..4]), (b'R', &10u32.to_be_bytes()[..]), "{body:?}");
        let mut msg = b"SCRAM-SHA-256\0".to_vec();
        msg.extend_from_slice(&0x496e_7465u32.to_be_bytes());
        msg.extend_from_slice(b"n,,n=,r=abc");
        let mut packet = vec![b'p'];
        packet.extend_from_slice(&((msg.len() + 4) as u32).to_be_bytes());
        packet.extend(msg);
        s.write_all(&packet).await.unwrap();

        let answer = tokio::time::timeout(Duration::from_secs(5), read_message(&mut s)).await.expect("an answer within 5 s");
        let (kind, body) = answer.expect("an ErrorResponse, not a dropped connection");
        assert_eq!(kind, b'E', "{body:?}");
        let fields = error_fields(&body);
        assert!(fields.contains(&(b'C', "08P01".to_string())), "{fields:?}");
        assert!(fields.contains(&(b'S', "FATAL".to_string())), "{fields:?}");
        // Fatal: the connection ends there. (pgwire 0.41.1 sends a ReadyForQuery after any
        // FATAL error while authenticating, a wrong password's 28P01 too, before it closes; that
        // is left to the authentication work of issue 13.)
        let mut after = tokio::time::timeout(Duration::from_secs(5), read_message(&mut s)).await.expect("closed within 5 s");
        if matches!(after, Some((b'Z', _))) {
            after = tokio::time::timeout(Duration::from_secs(5), read_message(&mut s)).await.expect("closed within 5 s");
        }
        assert!(after.is_none(), "after the error: {after:?}");
    }

    // The right password still gets in, and queries run.
    let url = format!("host=127.0.0.1 port={} user=analyst password='correct horse' dbname=bowman", server.pg_addr.port());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let n: i64 = client.query_one("SELECT 41::BIGINT + 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 42);
    server.stop().await;
}

/// A Bind whose parameter length (0x30000000, from the fuzzer's crash input
/// fuzz/corpus/pgwire_frontend/crash-bind-parameter-length) runs past the end of the message.
/// pgwire's decoder panicked on it inside the connection task, and the client saw the
/// connection drop with no answer. PostgreSQL answers a malformed message with FATAL 08P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bind_gets_08p01_and_the_server_stays_up() {
    let server = TestServer::start().await;
    let other = server.client().await;

    for _ in 0..2 {
        let mut s = TcpStream::connect(server.pg_addr).await.unwrap();
        s.write_all(&startup("bowman")).await.unwrap();
        loop {
            let (kind, _) = tokio::time::timeout(Duration::from_secs(5), read_message(&mut s)).await.unwrap().expect("startup answers");
            if kind == b'Z' {
                break;
            }
        }
        let mut body = b"\0\0".to_vec(); // unnamed portal and statement
        body.extend_from_slice(&0u16.to_be_bytes()); // no parameter formats
        body.extend_from_slice(&1u16.to_be_bytes()); // one parameter ...
        body.extend_from_slice(&0x3000_0000u32.to_be_bytes()); // ... longer than the message
        body.extend_from_slice(b"2018-03-05");
        let mut packet = vec![b'B'];
        packet.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        packet.extend(body);
        packet.extend_from_slice(b"S\0\0\0\x04");
        s.write_all(&packet).await.unwrap();

        let answer = tokio::time::timeout(Duration::from_secs(5), read_message(&mut s)).await.expect("an answer within 5 s");
        let (kind, body) = answer.expect("an ErrorResponse, not a dropped connection");
        assert_eq!(kind, b'E', "{body:?}");
        let fields = error_fields(&body);
        assert!(fields.contains(&(b'C', "08P01".to_string())), "{fields:?}");
        assert!(fields.contains(&(b'S', "FATAL".to_string())), "{fields:?}");
        let after = tokio::time::timeout(Duration::from_secs(5), read_message(&mut s)).await.expect("closed within 5 s");
        assert!(after.is_none(), "after the error: {after:?}");

        // Everyone else goes on: a connection open before, and a new one.
        let started = std::time::Instant::now();
        let n: i64 = other.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get(0);
        assert_eq!(n, 1);
        let fresh = server.client().await;
        let n: i64 = fresh.query_one("SELECT 2::BIGINT", &[]).await.unwrap().get(0);
        assert_eq!(n, 2);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }
    server.stop().await;
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A binary `int4[]` parameter of 28 bytes whose header declares 100,000 x 100,000 elements
/// (fuzz/corpus/pgwire_frontend/oom-bind-array-declares-10g-elements). postgres-types reserved
/// room for every declared element before reading one, and the failed 40 GB allocation aborted
/// the whole server. PostgreSQL answers such a value with 22P03 (invalid binary
/// representation); the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_array_parameter_declaring_billions_of_elements_gets_22p03() {
    let server = TestServer::start().await;
    let other = server.client().await;

    let mut s = TcpStream::connect(server.pg_addr).await.unwrap();
    s.write_all(&startup("bowman")).await.unwrap();
    loop {
        let (kind, _) = tokio::time::timeout(Duration::from_secs(5), read_message(&mut s)).await.unwrap().expect("startup answers");
        if kind == b'Z' {
            break;
        }
    }
    let array = |dims: &[i32], elements: &[i32]| {
        let mut v = (dims.len() as i32).to_be_bytes().to_vec();
        v.extend(0i32.to_be_bytes());
        v.extend(23u32.to_be_bytes()); // int4
        for d in dims {
            v.extend(d.to_be_bytes());
            v.extend(1i32.to_be_bytes());
        }
        for e in elements {
            v.extend(4i32.to_be_bytes());
            v.extend(e.to_be_bytes());
        }
        v
    };
    let bind_and_run = |value: Vec<u8>| {
        let mut parse = b"\0SELECT cardinality($1)\0".to_vec();
        parse.extend(1i16.to_be_bytes());
        parse.extend(1007u32.to_be_bytes()); // int4[]
        let mut bind = b"\0\0".to_vec();
        bind.extend(1i16.to_be_bytes());
        bind.extend(1i16.to_be_bytes()); // binary
        bind.extend(1i16.to_be_bytes());
        bind.extend((value.len() as i32).to_be_bytes());
        bind.extend(value);
        bind.extend(0i16.to_be_bytes());
        let mut out = message(b'P', &parse);
        out.extend(message(b'B', &bind));
        out.extend(message(b'E', b"\0\0\0\0\0"));
        out.extend(message(b'S', b""));
        out
    };
    // Until ReadyForQuery: the error's SQLSTATE, if any, and the data rows.
    async fn answers(s: &mut TcpStream) -> (Option<String>, Vec<Vec<u8>>) {
        let (mut code, mut rows) = (None, vec![]);
        loop {
            let (kind, body) = tokio::time::timeout(Duration::from_secs(10), read_message(s))
                .await
                .expect("an answer within 10 s")
                .expect("an answer, not a dropped connection");
            match kind {
                b'E' => code = error_fields(&body).into_iter().find(|(f, _)| *f == b'C').map(|(_, c)| c),
                b'D' => rows.push(body),
                b'Z' => return (code, rows),
                _ => {}
            }
        }
    }

    for _ in 0..2 {
        s.write_all(&bind_and_run(array(&[100_000, 100_000], &[7]))).await.unwrap();
        let (code, rows) = answers(&mut s).await;
        assert_eq!(code.as_deref(), Some("22P03"));
        assert!(rows.is_empty());
        // Another client is answered meanwhile, and the same session goes on.
        let n: i64 = other.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get(0);
        assert_eq!(n, 1);
        s.write_all(&bind_and_run(array(&[3], &[1, 2, 3]))).await.unwrap();
        let (code, rows) = answers(&mut s).await;
        assert_eq!(code, None);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].ends_with(b"3"), "{:?}", rows[0]);
    }
    server.stop().await;
}
