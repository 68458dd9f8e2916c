//! The CQL stand-in for Bowman's tests: a tokio TCP server speaking CQL v4 around the in-memory
//! `kassandra` engine, with the fixes the scylla driver and Bowman's connector need:
//!
//! * a PREPARE whose text has no `?` marker reports no bind variables (kassandra reports one
//!   for a literal partition key such as `WHERE key = 'local'`, and the driver's prepared
//!   `system.local` query then fails to type-check);
//! * a panic inside the engine (its `todo!()`s, e.g. decimal values) answers that one request
//!   with a ServerError instead of killing the connection task;
//! * `system.local` carries real Murmur3 tokens (eight vnodes) so the driver builds a token ring;
//! * `SELECT ... WHERE token(pk...) > ? AND token(pk...) <= ? [LIMIT n]`, which kassandra cannot
//!   parse, is answered here: a full scan through the engine, filtered by the Murmur3 token of
//!   each row's partition key, in one page;
//! * `--query-log FILE` appends every QUERY / PREPARE / EXECUTE / BATCH statement text received,
//!   one a line, so tests can prove which CQL a client sent.
//!
//! Usage: `bowman-cql-test-server --listen 127.0.0.1:PORT [--query-log FILE]`.

use std::collections::HashMap;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use kassandra::KassandraSession;
use kassandra::cql::column::ColumnType;
use kassandra::cql::parser;
use kassandra::cql::value::CqlValue;
use kassandra::error::DbError;
use kassandra::frame::request::batch::BatchStatement;
use kassandra::frame::request::query::Query;
use kassandra::frame::request::{QueryFlags, QueryParameters, Request, RequestOpcode};
use kassandra::frame::response::Response;
use kassandra::frame::response::error::Error;
use kassandra::frame::response::result::{
    ColumnSpec, Prepared, PreparedMetadata, QueryResult, ResultMetadata, Row, Rows, TableSpec,
};
use kassandra::frame::value::FrameValue;
use kassandra::frame::{self, FrameFlags, parse};
use scylla::routing::partitioner::{Murmur3Partitioner, Partitioner};
use tokio::net::{TcpListener, TcpStream};

/// Number of vnode tokens the single node owns.
const VNODES: i64 = 8;

struct Shared {
    session: Mutex<KassandraSession>,
    /// statement id → text, for the query log and for token queries
    prepared: Mutex<HashMap<Vec<u8>, String>>,
    token_prepared: Mutex<HashMap<Vec<u8>, TokenQuery>>,
    log: Option<Mutex<std::fs::File>>,
    next_id: AtomicU64,
}

impl Shared {
    fn session(&self) -> MutexGuard<'_, KassandraSession> {
        // a panic while the engine held the lock leaves the data as it was written so far
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, kind: &str, text: &str) {
        if let Some(log) = &self.log {
            let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
            let one_line = text.replace(['\n', '\r'], " ");
            let _ = writeln!(f, "{kind} {}", one_line.trim());
            let _ = f.flush();
        }
    }
}

fn err(kind: DbError, msg: impl ToString) -> Error {
    Error::new(kind, msg)
}

fn protocol<E: std::fmt::Debug>(e: E) -> Error {
    err(DbError::ProtocolError, format!("malformed frame: {e:?}"))
}

#[derive(Default)]
struct Conn {
    keyspace: Option<String>,
}

fn handle(shared: &Shared, conn: &mut Conn, opcode: RequestOpcode, flags: FrameFlags, body: &Bytes) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handle_inner(shared, conn, opcode, flags, body))) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Response::Error(e),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Response::Error(err(DbError::ServerError, format!("the CQL test server cannot run this request: {msg}")))
        }
    }
}

fn handle_inner(shared: &Shared, conn: &mut Conn, opcode: RequestOpcode, flags: FrameFlags, body: &Bytes) -> Result<Response, Error> {
    let result = match opcode {
        RequestOpcode::Options => return Ok(Response::options()),
        RequestOpcode::Startup | RequestOpcode::Register => return Ok(Response::Ready),
        RequestOpcode::AuthResponse => {
            return Err(err(DbError::ProtocolError, "the CQL test server has no authentication"));
        }
        RequestOpcode::Query => {
            let (rest, text) = parse::long_string(body).map_err(protocol)?;
            shared.log("QUERY", text);
            if let Some(tq) = TokenQuery::parse(text, conn.keyspace.as_deref())? {
                let params = QueryParameters::parse(rest, flags)?;
                let mut session = shared.session();
                tq.run(&mut session, &params.data)?
            } else {
                let Request::Query(q) = Request::deserialize(opcode, body, flags)? else { unreachable!() };
                let mut session = shared.session();
                if let Some(ks) = &conn.keyspace {
                    session.use_keyspace(ks.clone());
                }
                session.process(q)?
            }
        }
        RequestOpcode::Prepare => {
            let (_, text) = parse::long_string(body).map_err(protocol)?;
            shared.log("PREPARE", text);
            let text = text.to_owned();
            let mut session = shared.session();
            if let Some(ks) = &conn.keyspace {
                session.use_keyspace(ks.clone());
            }
            if let Some(tq) = TokenQuery::parse(&text, conn.keyspace.as_deref())? {
                let mut result_metadata = match session.prepare(parser::query(&tq.stripped).map_err(|_| {
                    err(DbError::SyntaxError, format!("Could not parse query: {text}"))
                })?)? {
                    QueryResult::Prepared(p) => p.result_metadata,
                    _ => ResultMetadata::empty(),
                };
                let keep = result_metadata.col_specs.len().saturating_sub(tq.extra);
                result_metadata.col_specs.truncate(keep);
                let spec = TableSpec { ks_name: tq.keyspace.clone(), table_name: tq.table.clone() };
                let col_specs = tq
                    .conditions
                    .iter()
                    .filter(|c| c.value.is_none())
                    .map(|_| ColumnSpec { table_spec: Some(spec.clone()), name: "partition key token".into(), typ: ColumnType::BigInt })
                    .collect();
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed) as u128 | (0xb0u128 << 120);
                let id_bytes = id.to_be_bytes().to_vec();
                shared.prepared.lock().unwrap().insert(id_bytes.clone(), text.clone());
                shared.token_prepared.lock().unwrap().insert(id_bytes, tq);
                QueryResult::Prepared(Prepared {
                    id,
                    prepared_metadata: PreparedMetadata { pk_indexes: vec![], global_spec: Some(spec), col_specs },
                    result_metadata,
                })
            } else {
                let Request::Prepare(qs) = Request::deserialize(opcode, body, flags)? else { unreachable!() };
                let mut res = session.prepare(qs)?;
                if let QueryResult::Prepared(p) = &mut res {
                    if !has_bind_marker(&text) {
                        p.prepared_metadata.col_specs.clear();
                        p.prepared_metadata.pk_indexes.clear();
                    }
                    shared.prepared.lock().unwrap().insert(p.id.to_be_bytes().to_vec(), text.clone());
                }
                res
            }
        }
        RequestOpcode::Execute => {
            let (rest, id) = parse::short_bytes(body).map_err(protocol)?;
            let text = shared.prepared.lock().unwrap().get(id).cloned();
            shared.log("EXECUTE", text.as_deref().unwrap_or("<unknown statement id>"));
            let token = shared.token_prepared.lock().unwrap().get(id).cloned();
            let mut session = shared.session();
            if let Some(tq) = token {
                let params = QueryParameters::parse(rest, flags)?;
                tq.run(&mut session, &params.data)?
            } else {
                let Request::Execute(e) = Request::deserialize(opcode, body, flags)? else { unreachable!() };
                if let Some(ks) = &conn.keyspace {
                    session.use_keyspace(ks.clone());
                }
                session.execute(e)?
            }
        }
        RequestOpcode::Batch => {
            let Request::Batch(b) = Request::deserialize(opcode, body, flags)? else { unreachable!() };
            for s in &b.statements {
                match s {
                    BatchStatement::Query { raw_query, .. } => shared.log("BATCH", raw_query),
                    BatchStatement::Prepared { id, .. } => {
                        let text = shared.prepared.lock().unwrap().get(*id).cloned();
                        shared.log("BATCH", text.as_deref().unwrap_or("<unknown statement id>"))
                    }
                }
            }
            let mut session = shared.session();
            if let Some(ks) = &conn.keyspace {
                session.use_keyspace(ks.clone());
            }
            session.process_batch(b)?
        }
    };
    let mut result = result;
    fix_schema_types(&shared.prepared, opcode, body, &mut result);
    if let QueryResult::SetKeyspace(s) = &result {
        conn.keyspace = Some(s.keyspace_name.clone());
    }
    Ok(Response::Result(result))
}

/// kassandra writes some type names into `system_schema.columns` as no Cassandra does (`bool`,
/// `timyint`), and drivers then drop the whole keyspace's metadata: answer the names Cassandra uses.
fn fix_schema_types(prepared: &Mutex<HashMap<Vec<u8>, String>>, opcode: RequestOpcode, body: &Bytes, result: &mut QueryResult) {
    let QueryResult::Rows(rows) = result else { return };
    let text = match opcode {
        RequestOpcode::Query => parse::long_string(body).map(|(_, t)| t.to_owned()).ok(),
        RequestOpcode::Execute => {
            parse::short_bytes(body).ok().and_then(|(_, id)| prepared.lock().unwrap().get(id).cloned())
        }
        _ => None,
    };
    if !text.is_some_and(|t| t.to_ascii_lowercase().contains("system_schema.columns")) {
        return;
    }
    let Some(i) = rows.metadata.col_specs.iter().position(|c| c.name == "type") else { return };
    for row in &mut rows.rows {
        if let Some(Some(CqlValue::Text(t))) = row.columns.get_mut(i) {
            *t = cassandra_type_name(t);
        }
    }
}

fn cassandra_type_name(t: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "bool" => "boolean",
            "timyint" => "tinyint",
            w => w,
        });
        word.clear();
    };
    for c in t.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Whether a statement text has a `?` or `:name` bind marker outside string literals and
/// quoted names.
fn has_bind_marker(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let (mut in_str, mut in_ident) = (false, false);
    for (i, &ch) in chars.iter().enumerate() {
        match ch {
            '\'' if !in_ident => in_str = !in_str,
            '"' if !in_str => in_ident = !in_ident,
            '?' if !in_str && !in_ident => return true,
            ':' if !in_str && !in_ident && chars.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') => return true,
            _ => {}
        }
    }
    false
}

#[derive(Clone, Debug)]
struct Condition {
    op: &'static str,
    /// None: a `?` bind marker (filled in order)
    value: Option<i64>,
}

/// `SELECT <sel> FROM [ks.]t WHERE token(a, b) > ? AND token(a, b) <= ? [LIMIT n]`
#[derive(Clone, Debug)]
struct TokenQuery {
    keyspace: String,
    table: String,
    pk: Vec<String>,
    conditions: Vec<Condition>,
    limit: Option<usize>,
    /// the query kassandra runs: the selection plus any partition-key columns it lacks
    stripped: String,
    /// how many columns were appended to the selection (dropped again from results)
    extra: usize,
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_lowercase().find(needle)
}

fn unquote(ident: &str) -> String {
    let t = ident.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t[1..t.len() - 1].replace("\"\"", "\"")
    } else {
        t.to_ascii_lowercase()
    }
}

fn lex(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' {
                    if i + 1 < chars.len() && chars[i + 1] == '"' {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
            out.push(chars[start..i].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '-' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '-') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if (c == '<' || c == '>') && i + 1 < chars.len() && chars[i + 1] == '=' {
            out.push(format!("{c}="));
            i += 2;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

impl TokenQuery {
    fn parse(text: &str, keyspace: Option<&str>) -> Result<Option<TokenQuery>, Error> {
        let text = text.trim().trim_end_matches(';');
        let lower = text.to_ascii_lowercase();
        if !lower.starts_with("select") || !lower.contains("token") {
            return Ok(None);
        }
        let Some(w) = find_ci(text, " where ") else { return Ok(None) };
        let (head, tail) = (&text[..w], &text[w + 7..]);
        let toks = lex(tail);
        if toks.first().map(|t| t.to_ascii_lowercase()) != Some("token".into()) {
            return Ok(None);
        }
        let syntax = || err(DbError::SyntaxError, format!("the CQL test server cannot parse this token query: {text}"));
        let Some(f) = find_ci(head, " from ") else { return Err(syntax()) };
        let selection = head[6..f].trim();
        let table_ref = head[f + 6..].trim();
        let (ks, table) = match table_ref.split_once('.') {
            Some((k, t)) => (unquote(k), unquote(t)),
            None => (keyspace.ok_or_else(|| err(DbError::Invalid, "No keyspace has been specified"))?.to_owned(), unquote(table_ref)),
        };
        let mut i = 0;
        let mut pk: Option<Vec<String>> = None;
        let mut conditions = Vec::new();
        let mut limit = None;
        let at = |i: usize| toks.get(i).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
        loop {
            if at(i) != "token" || at(i + 1) != "(" {
                return Err(syntax());
            }
            i += 2;
            let mut cols = Vec::new();
            loop {
                let c = toks.get(i).ok_or_else(syntax)?;
                cols.push(unquote(c));
                i += 1;
                match at(i).as_str() {
                    "," => i += 1,
                    ")" => {
                        i += 1;
                        break;
                    }
                    _ => return Err(syntax()),
                }
            }
            if let Some(p) = &pk
                && *p != cols
            {
                return Err(syntax());
            }
            pk = Some(cols);
            let op = match at(i).as_str() {
                ">" => ">",
                ">=" => ">=",
                "<" => "<",
                "<=" => "<=",
                "=" => "=",
                _ => return Err(syntax()),
            };
            i += 1;
            let value = match at(i).as_str() {
                "?" => None,
                v => Some(v.parse::<i64>().map_err(|_| syntax())?),
            };
            i += 1;
            conditions.push(Condition { op, value });
            match at(i).as_str() {
                "and" => i += 1,
                "limit" => {
                    limit = Some(at(i + 1).parse::<usize>().map_err(|_| syntax())?);
                    i += 2;
                    if i != toks.len() {
                        return Err(syntax());
                    }
                    break;
                }
                "" => break,
                _ => return Err(syntax()),
            }
        }
        let pk = pk.ok_or_else(syntax)?;
        let (stripped, extra) = if selection == "*" {
            (format!("SELECT * FROM {ks}.{table}"), 0)
        } else {
            let mut cols: Vec<String> = selection.split(',').map(|c| c.trim().to_owned()).collect();
            let have: Vec<String> = cols.iter().map(|c| unquote(c)).collect();
            let mut extra = 0;
            for p in &pk {
                if !have.contains(p) {
                    cols.push(p.clone());
                    extra += 1;
                }
            }
            (format!("SELECT {} FROM {ks}.{table}", cols.join(", ")), extra)
        };
        Ok(Some(TokenQuery { keyspace: ks, table, pk, conditions, limit, stripped, extra }))
    }

    fn run(&self, session: &mut KassandraSession, values: &[FrameValue<'_>]) -> Result<QueryResult, Error> {
        let mut bound = values.iter();
        let mut conds = Vec::new();
        for c in &self.conditions {
            let v = match c.value {
                Some(v) => v,
                None => match bound.next() {
                    Some(FrameValue::Some(b)) if b.len() == 8 => i64::from_be_bytes((*b).try_into().unwrap()),
                    _ => return Err(err(DbError::Invalid, "a token bound must be a bigint")),
                },
            };
            conds.push((c.op, v));
        }
        let mut paging_state = None;
        let mut metadata: Option<ResultMetadata> = None;
        let mut out = Vec::new();
        let mut pk_idx: Vec<usize> = Vec::new();
        loop {
            let query = parser::query(&self.stripped)
                .map_err(|_| err(DbError::SyntaxError, format!("Could not parse query: {}", self.stripped)))?;
            let parameters = QueryParameters {
                result_page_size: Some(1000),
                paging_state: paging_state.take(),
                flags: QueryFlags::PAGE_SIZE,
                ..QueryParameters::default()
            };
            let QueryResult::Rows(rows) = session.process(Query { query, raw_query: "", parameters })? else {
                return Err(err(DbError::ServerError, "a scan returned no rows result"));
            };
            if metadata.is_none() {
                pk_idx = self
                    .pk
                    .iter()
                    .map(|p| rows.metadata.col_specs.iter().position(|c| c.name == *p))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err(DbError::Invalid, "token() must name the partition key columns"))?;
            }
            for mut row in rows.rows {
                let t = token_of(&pk_idx.iter().map(|&i| row.columns[i].clone()).collect::<Vec<_>>());
                if conds.iter().all(|(op, v)| match *op {
                    ">" => t > *v,
                    ">=" => t >= *v,
                    "<" => t < *v,
                    "<=" => t <= *v,
                    _ => t == *v,
                }) {
                    let keep = row.columns.len() - self.extra;
                    row.columns.truncate(keep);
                    out.push((t, row));
                }
            }
            paging_state = rows.metadata.paging_state.clone();
            if metadata.is_none() {
                metadata = Some(rows.metadata);
            }
            if paging_state.is_none() {
                break;
            }
        }
        // a real node returns a token range in token order
        out.sort_by_key(|(t, _)| *t);
        let mut rows: Vec<Row> = out.into_iter().map(|(_, r)| r).collect();
        if let Some(l) = self.limit {
            rows.truncate(l);
        }
        let mut metadata = metadata.unwrap_or_default();
        metadata.paging_state = None;
        let keep = metadata.col_specs.len() - self.extra;
        metadata.col_specs.truncate(keep);
        Ok(QueryResult::Rows(Rows { metadata, rows }))
    }
}

/// The serialized form of one value, as it travels in a frame (without its length).
fn value_bytes(v: &CqlValue) -> Vec<u8> {
    let rows = Rows { metadata: ResultMetadata::empty(), rows: vec![Row { columns: vec![Some(v.clone())] }] };
    let mut buf: Vec<u8> = Vec::new();
    rows.serialize(&mut buf);
    // flags, column count, row count, value length
    buf[16..].to_vec()
}

fn token_of(pk: &[Option<CqlValue>]) -> i64 {
    let bytes = if pk.len() == 1 {
        pk[0].as_ref().map(value_bytes).unwrap_or_default()
    } else {
        let mut b = Vec::new();
        for v in pk {
            let vb = v.as_ref().map(value_bytes).unwrap_or_default();
            b.extend_from_slice(&(vb.len() as u16).to_be_bytes());
            b.extend_from_slice(&vb);
            b.push(0);
        }
        b
    };
    Murmur3Partitioner.hash_one(&bytes).value()
}

fn new_session() -> KassandraSession {
    let mut session = KassandraSession::new();
    // eight evenly spread Murmur3 tokens, so a client sees a real ring
    let step = (u64::MAX / VNODES as u64) as i128;
    let tokens: Vec<String> = (0..VNODES as i128).map(|k| (i64::MIN as i128 + step / 2 + k * step).to_string()).collect();
    let mut set = Vec::new();
    set.extend_from_slice(&(tokens.len() as i32).to_be_bytes());
    for t in &tokens {
        set.extend_from_slice(&(t.len() as i32).to_be_bytes());
        set.extend_from_slice(t.as_bytes());
    }
    let text = "INSERT INTO system.local (key, tokens, partitioner) VALUES ('local', ?, 'org.apache.cassandra.dht.Murmur3Partitioner')";
    let query = parser::query(text).expect("the system.local insert parses");
    let parameters = QueryParameters { flags: QueryFlags::VALUES, data: vec![FrameValue::Some(&set)], ..QueryParameters::default() };
    session.process(Query { query, raw_query: text, parameters }).expect("system.local takes its tokens");
    session
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut requests = frame::request_stream(r);
    let mut responses = frame::response_sink(w);
    let mut conn = Conn::default();
    while let Some(item) = requests.next().await {
        let Ok((params, opcode, body)) = item else { break };
        let response = handle(&shared, &mut conn, opcode, params.flags, &body);
        if responses.send((response, params.stream)).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_markers() {
        assert!(!has_bind_marker("SELECT * FROM system.local WHERE key='local'"));
        assert!(!has_bind_marker("SELECT * FROM t WHERE k = 'what?'"));
        assert!(!has_bind_marker("CREATE KEYSPACE k WITH REPLICATION = {'class': 'SimpleStrategy'}"));
        assert!(has_bind_marker("SELECT * FROM t WHERE k = ?"));
        assert!(has_bind_marker("SELECT * FROM t WHERE k = :k"));
    }

    #[test]
    fn token_queries_parse_and_filter() {
        let q = TokenQuery::parse("SELECT v FROM ks.t WHERE token(a, b) > ? AND token(a, b) <= 5 LIMIT 3", None).unwrap().unwrap();
        assert_eq!(q.pk, vec!["a", "b"]);
        assert_eq!(q.limit, Some(3));
        assert_eq!(q.extra, 2);
        assert_eq!(q.stripped, "SELECT v, a, b FROM ks.t");
        assert!(TokenQuery::parse("SELECT v FROM ks.t WHERE k = 1", None).unwrap().is_none());
        assert!(TokenQuery::parse("SELECT v FROM ks.t WHERE token(a) > ? AND v = 1", None).is_err());
        // Cassandra's Murmur3 token of the int 1, as cqlsh shows token(id) for id = 1
        assert_eq!(token_of(&[Some(CqlValue::Int(1))]), -4069959284402364209);
    }

    #[test]
    fn type_names() {
        assert_eq!(cassandra_type_name("map<text, bool>"), "map<text, boolean>");
        assert_eq!(cassandra_type_name("timyint"), "tinyint");
    }
}

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:9042".to_string();
    let mut log = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--query-log" => log = Some(args.next().expect("--query-log FILE")),
            "-h" | "--help" => {
                println!("usage: bowman-cql-test-server --listen 127.0.0.1:PORT [--query-log FILE]");
                return;
            }
            other => {
                eprintln!("unknown argument {other}; usage: bowman-cql-test-server --listen 127.0.0.1:PORT [--query-log FILE]");
                std::process::exit(2);
            }
        }
    }
    let log = log.map(|p| {
        Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&p).unwrap_or_else(|e| panic!("cannot open {p}: {e}")))
    });
    let shared = Arc::new(Shared {
        session: Mutex::new(new_session()),
        prepared: Mutex::new(HashMap::new()),
        token_prepared: Mutex::new(HashMap::new()),
        log,
        next_id: AtomicU64::new(1),
    });
    let listener = TcpListener::bind(&listen).await.unwrap_or_else(|e| panic!("cannot listen on {listen}: {e}"));
    println!("listening on {}", listener.local_addr().unwrap());
    let _ = std::io::stdout().flush();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(serve(stream, shared.clone()));
    }
}
