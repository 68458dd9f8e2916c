//! The lifecycle of every statement: one registry per server ([`QueryRegistry`]) that gives each
//! statement an id, a `tracing` span and an entry that lives from the statement's start until
//! its output stream ends, whatever front end sent it (pgwire's simple and extended query,
//! COPY, Flight SQL, later the job scheduler).
//!
//! The entry starts in [`Session::execute`] / [`Session::execute_prepared`] (and
//! [`Session::ingest`], [`Session::copy_in`]) and ends when the last batch has been handed on,
//! when the statement fails (with its SQLSTATE), or when its output is dropped unfinished (a
//! cancel, a client going away: 57014). Finished entries stay for [`RETAIN_FINISHED`] statements
//! and at most [`RETAIN_FOR`]. `system.queries` and `pg_stat_activity` answer from here, and
//! commit cleanup asks it whether statements older than a commit are still running.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::Stream;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarUDF, Volatility, create_udf};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::session::Session;

/// How many finished statements `system.queries` keeps (the oldest go first).
pub const RETAIN_FINISHED: usize = 1000;
/// How long a finished statement stays in `system.queries` at most.
pub const RETAIN_FOR: Duration = Duration::from_secs(600);
/// The name of the schema that holds `queries`; no database may take it.
pub const SYSTEM_SCHEMA: &str = "system";

/// The front end a session serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    Pgwire,
    Flight,
    /// Statements Bowman runs for itself (embedded sessions, later the job scheduler).
    #[default]
    Internal,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Pgwire => "pgwire",
            Protocol::Flight => "flight",
            Protocol::Internal => "internal",
        }
    }
}

/// Where a statement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    /// Ended by a CancelRequest, `pg_cancel_backend`, `statement_timeout` or a client that
    /// stopped reading (SQLSTATE 57014).
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Who a session talks to: the front end sets it when the client connects.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub protocol: Protocol,
    /// pgwire's process id of the connection (what `pg_cancel_backend` takes).
    pub pid: Option<i32>,
    pub addr: Option<std::net::SocketAddr>,
    pub application_name: Option<String>,
}

/// How the front end stops what a session runs: its running statement, or the connection.
pub struct Controls {
    pub cancel: Box<dyn Fn() + Send + Sync>,
    pub terminate: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct BackendState {
    client: ClientInfo,
    user: Option<String>,
    superuser: bool,
    /// The last statement's (redacted) text and start, shown by an idle pg_stat_activity row.
    last_query: Option<String>,
    last_start: Option<DateTime<Utc>>,
    controls: Option<Arc<Controls>>,
}

/// One session as `pg_stat_activity` shows it.
pub(crate) struct Backend {
    id: u64,
    started: DateTime<Utc>,
    state: Mutex<BackendState>,
}

impl Backend {
    fn state(&self) -> std::sync::MutexGuard<'_, BackendState> {
        self.state.lock().expect("backend state")
    }
}

/// One statement's record.
#[derive(Debug)]
pub(crate) struct Entry {
    id: u64,
    session: u64,
    node: String,
    user: Option<String>,
    protocol: Protocol,
    pid: Option<i32>,
    query: String,
    started: DateTime<Utc>,
    clock: Instant,
    rows: AtomicU64,
    bytes: AtomicU64,
    end: Mutex<Option<End>>,
}

#[derive(Debug, Clone)]
struct End {
    at: Instant,
    duration: Duration,
    status: Status,
    sqlstate: Option<String>,
    error: Option<String>,
}

/// The statements of one server: running ones by id (start order), recently finished ones, and
/// the sessions they belong to.
pub struct QueryRegistry {
    node: RwLock<String>,
    next: AtomicU64,
    next_session: AtomicU64,
    running: Mutex<BTreeMap<u64, Arc<Entry>>>,
    finished: Mutex<VecDeque<Arc<Entry>>>,
    backends: Mutex<BTreeMap<u64, Arc<Backend>>>,
    /// Option names the connectors mark secret (beyond those named like a secret).
    secret_options: Vec<String>,
}

impl std::fmt::Debug for QueryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRegistry").field("node", &*self.node.read().expect("node")).finish_non_exhaustive()
    }
}

/// This machine's name (Linux), else "bowman": the default `node` of system.queries.
fn default_node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "bowman".to_string())
}

impl QueryRegistry {
    pub(crate) fn new(secret_options: Vec<String>) -> Self {
        QueryRegistry {
            node: RwLock::new(default_node()),
            next: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            running: Default::default(),
            finished: Default::default(),
            backends: Default::default(),
            secret_options,
        }
    }

    /// The server's name in `system.queries` (bowman.toml's `node`).
    pub fn set_node(&self, node: &str) {
        *self.node.write().expect("node") = node.to_string();
    }

    /// The id the next statement will get: every statement running now has a smaller one.
    pub(crate) fn next_id(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Whether a statement that started before `id` is still running.
    pub(crate) fn any_running_before(&self, id: u64) -> bool {
        self.running.lock().expect("running statements").keys().next().is_some_and(|first| *first < id)
    }

    /// Sessions of each protocol open now (pgwire: connections; Flight SQL, stateless: the
    /// requests being served).
    pub fn sessions_by_protocol(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::from([(Protocol::Pgwire.as_str(), 0), (Protocol::Flight.as_str(), 0)]);
        for b in self.backends.lock().expect("backends").values() {
            let protocol = b.state().client.protocol;
            if protocol != Protocol::Internal {
                *out.entry(protocol.as_str()).or_default() += 1;
            }
        }
        out
    }

    /// Statements running now.
    pub fn running_count(&self) -> usize {
        self.running.lock().expect("running statements").len()
    }

    fn register_backend(&self) -> Arc<Backend> {
        let id = self.next_session.fetch_add(1, Ordering::SeqCst);
        let backend = Arc::new(Backend { id, started: Utc::now(), state: Default::default() });
        self.backends.lock().expect("backends").insert(id, backend.clone());
        backend
    }

    fn start(self: &Arc<Self>, backend: &Backend, query: String) -> Arc<Entry> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let state = backend.state();
        let entry = Arc::new(Entry {
            id,
            session: backend.id,
            node: self.node.read().expect("node").clone(),
            user: state.user.clone(),
            protocol: state.client.protocol,
            pid: state.client.pid,
            query,
            started: Utc::now(),
            clock: Instant::now(),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            end: Mutex::new(None),
        });
        self.running.lock().expect("running statements").insert(id, entry.clone());
        entry
    }

    fn finish(&self, entry: &Arc<Entry>, status: Status, error: Option<(String, String)>) {
        let duration = entry.clock.elapsed();
        {
            let mut end = entry.end.lock().expect("statement end");
            if end.is_some() {
                return;
            }
            let (sqlstate, error) = match error {
                Some((code, message)) => (Some(code), Some(message)),
                None => (None, None),
            };
            *end = Some(End { at: Instant::now(), duration, status, sqlstate, error });
        }
        self.running.lock().expect("running statements").remove(&entry.id);
        let mut finished = self.finished.lock().expect("finished statements");
        finished.push_back(entry.clone());
        while finished.len() > RETAIN_FINISHED || finished.front().is_some_and(|e| expired(e)) {
            finished.pop_front();
        }
        drop(finished);
        let end = entry.end.lock().expect("statement end").clone().expect("set above");
        crate::metrics::record_statement(
            entry.protocol.as_str(),
            status.as_str(),
            end.sqlstate.as_deref().unwrap_or("00000"),
            duration,
            entry.rows.load(Ordering::Relaxed),
            entry.bytes.load(Ordering::Relaxed),
        );
    }

    /// Running statements first (oldest first), then finished ones (newest first).
    fn entries(&self) -> Vec<Arc<Entry>> {
        let mut out: Vec<Arc<Entry>> = self.running.lock().expect("running statements").values().cloned().collect();
        let finished = self.finished.lock().expect("finished statements");
        out.extend(finished.iter().rev().filter(|e| !expired(e)).cloned());
        out
    }

    /// The statement text with the values of secret options and passwords replaced.
    pub fn redact(&self, sql: &str) -> String {
        redact(sql, |key| bowman_connector::is_secret_option(&[], key) || self.secret_options.iter().any(|s| s.eq_ignore_ascii_case(key)))
    }
}

fn expired(e: &Entry) -> bool {
    e.end.lock().expect("statement end").as_ref().is_some_and(|end| end.at.elapsed() > RETAIN_FOR)
}

/// A session's place in the registry: removed when the session goes.
pub(crate) struct SessionLife {
    registry: Arc<QueryRegistry>,
    backend: Arc<Backend>,
    /// Statements of this session being started or run right now: statements Bowman runs
    /// inside another (ingest's CREATE TABLE, COPY's load) are part of that one.
    depth: Arc<AtomicUsize>,
    /// The client's text of the statement about to run (pgwire's Query message).
    text: Option<String>,
    /// COPY ... FROM STDIN: the statement lasts until the data has been loaded.
    parked: Option<StatementHandle>,
}

impl SessionLife {
    pub(crate) fn new(registry: &Arc<QueryRegistry>) -> Self {
        SessionLife { registry: registry.clone(), backend: registry.register_backend(), depth: Default::default(), text: None, parked: None }
    }
}

impl Drop for SessionLife {
    fn drop(&mut self) {
        self.registry.backends.lock().expect("backends").remove(&self.backend.id);
    }
}

/// Marks a session as inside a statement until dropped.
pub(crate) struct Depth(Arc<AtomicUsize>);

impl Drop for Depth {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One running statement's entry, until finished or dropped (dropped unfinished: cancelled).
/// Statements run inside another have none.
pub(crate) struct StatementHandle {
    live: Option<Live>,
}

struct Live {
    registry: Arc<QueryRegistry>,
    entry: Arc<Entry>,
    span: tracing::Span,
}

impl StatementHandle {
    /// The statement's span (disabled for a statement inside another).
    pub(crate) fn span(&self) -> tracing::Span {
        self.live.as_ref().map(|l| l.span.clone()).unwrap_or_else(tracing::Span::none)
    }

    /// Record a failure before any output.
    pub(crate) fn check<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.fail(e.code(), e.message());
        }
        result
    }

    fn fail(&mut self, code: String, message: String) {
        if let Some(live) = self.live.take() {
            let status = if code == "57014" { Status::Cancelled } else { Status::Failed };
            tracing::debug!(parent: &live.span, sqlstate = %code, "statement failed");
            live.registry.finish(&live.entry, status, Some((code, message)));
        }
    }

    fn succeed(&mut self, rows: Option<u64>) {
        if let Some(live) = self.live.take() {
            if let Some(n) = rows {
                live.entry.rows.store(n, Ordering::Relaxed);
            }
            tracing::debug!(parent: &live.span, rows = live.entry.rows.load(Ordering::Relaxed), "statement finished");
            live.registry.finish(&live.entry, Status::Succeeded, None);
        }
    }

    fn batch(&self, batch: &RecordBatch) {
        if let Some(live) = &self.live {
            live.entry.rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            let bytes: usize = batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum();
            live.entry.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// A count of rows the statement wrote or loaded (COPY FROM, ingest).
    pub(crate) fn finish_count(mut self, result: &Result<usize>) {
        match result {
            Ok(n) => self.succeed(Some(*n as u64)),
            Err(e) => self.fail(e.code(), e.message()),
        }
    }

    /// The statement lasts as long as its output: rows stream through the entry, commands
    /// end it now. COPY FROM STDIN is parked in the session until its data is loaded.
    pub(crate) fn track(mut self, output: Output, parked: &mut Option<StatementHandle>) -> Output {
        match output {
            Output::Rows { schema, stream } => Output::Rows { schema, stream: Box::pin(Tracked { inner: stream, handle: self }) },
            Output::CopyOut { format, schema, stream } => {
                Output::CopyOut { format, schema, stream: Box::pin(Tracked { inner: stream, handle: self }) }
            }
            Output::CopyIn(target) => {
                *parked = Some(self);
                Output::CopyIn(target)
            }
            Output::Command { tag, rows } => {
                self.succeed(rows.map(|n| n as u64));
                Output::Command { tag, rows }
            }
            other => {
                self.succeed(None);
                other
            }
        }
    }
}

impl Drop for StatementHandle {
    fn drop(&mut self) {
        if self.live.is_some() {
            self.fail("57014".into(), "canceling statement: its output was dropped before the end (a cancel or the client going away)".into());
        }
    }
}

/// A statement's rows, counted on their way out; the entry ends with the stream.
struct Tracked {
    inner: SendableRecordBatchStream,
    handle: StatementHandle,
}

impl Stream for Tracked {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let span = this.handle.live.as_ref().map(|l| l.span.clone());
        let _entered = span.as_ref().map(|s| s.enter());
        let polled = this.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => this.handle.batch(batch),
            Poll::Ready(Some(Err(e))) => this.handle.fail(crate::error::datafusion_sqlstate(e).to_string(), error_message(e)),
            Poll::Ready(None) => this.handle.succeed(None),
            Poll::Pending => {}
        }
        polled
    }
}

impl RecordBatchStream for Tracked {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

fn error_message(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::External(inner) => match inner.downcast_ref::<BowmanError>() {
            Some(b) => b.message(),
            None => inner.to_string(),
        },
        other => other.to_string(),
    }
}

impl Session {
    /// Tell the registry who this session serves (front ends call it once, at connect).
    pub fn set_client(&mut self, client: ClientInfo) {
        self.life.backend.state().client = client;
    }

    /// How the registry's `pg_cancel_backend` / `pg_terminate_backend` reach this session.
    pub fn set_controls(&mut self, controls: Controls) {
        self.life.backend.state().controls = Some(Arc::new(controls));
    }

    /// The client's text of the statement [`Session::execute`] runs next (what system.queries
    /// shows, redacted); without it the statement's kind is shown.
    pub fn set_query_text(&mut self, text: &str) {
        self.life.text = Some(text.to_string());
    }

    /// Start a statement's entry, unless it runs inside another statement of this session.
    /// The [`Depth`] marks the session as inside a statement until dropped.
    pub(crate) fn begin_statement(&mut self, text: impl FnOnce() -> String) -> (StatementHandle, Depth) {
        let outer = self.life.depth.fetch_add(1, Ordering::SeqCst) > 0;
        let depth = Depth(self.life.depth.clone());
        let given = self.life.text.take();
        if outer {
            return (StatementHandle { live: None }, depth);
        }
        let query = self.life.registry.redact(&given.unwrap_or_else(text));
        let superuser = self.check(|a| a.superuser());
        {
            let mut state = self.life.backend.state();
            state.user = self.user().map(str::to_string);
            state.superuser = superuser;
            state.last_query = Some(query.clone());
            state.last_start = Some(Utc::now());
        }
        let registry = self.life.registry.clone();
        let entry = registry.start(&self.life.backend, query);
        let span = tracing::info_span!(
            "statement",
            id = entry.id,
            protocol = entry.protocol.as_str(),
            user = entry.user.as_deref().unwrap_or("")
        );
        (StatementHandle { live: Some(Live { registry, entry, span }) }, depth)
    }

    /// The parked entry of a COPY ... FROM STDIN, or a new one for a load started otherwise.
    pub(crate) fn begin_load(&mut self, text: impl FnOnce() -> String) -> (StatementHandle, Depth) {
        match self.life.parked.take() {
            Some(handle) => {
                self.life.depth.fetch_add(1, Ordering::SeqCst);
                (handle, Depth(self.life.depth.clone()))
            }
            None => self.begin_statement(text),
        }
    }

    /// Append `batches` to `database.table` (Flight SQL's bulk ingest; columns matched by
    /// name, missing ones NULL), creating the table first as `mode` says: one statement in
    /// the registry. Returns the rows written.
    pub async fn ingest(
        &mut self,
        database: Option<&str>,
        table: &str,
        mode: crate::ingest::IngestMode,
        batches: SendableRecordBatchStream,
    ) -> Result<usize> {
        let (statement, _inside) = self.begin_statement(|| format!("INGEST INTO {}{table} ({mode:?})", database.map(|d| format!("{d}.")).unwrap_or_default()));
        let span = statement.span();
        let result = tracing::Instrument::instrument(self.ingest_rows(database, table, mode, batches), span).await;
        statement.finish_count(&result);
        result
    }

    /// Load the rows of a `COPY ... FROM STDIN` as they arrive: the end of the COPY statement
    /// [`Session::execute`] started.
    pub async fn copy_in(
        &mut self,
        target: crate::copy::CopyInTarget,
        data: impl futures::Stream<Item = Vec<u8>> + Send + 'static,
    ) -> Result<usize> {
        let (statement, _inside) = self.begin_load(|| format!("COPY {}.{} FROM STDIN", target.database, target.table));
        let span = statement.span();
        let result = tracing::Instrument::instrument(self.copy_in_rows(target, data), span).await;
        statement.finish_count(&result);
        result
    }

    /// Output whose entry ends with it (see [`StatementHandle::track`]).
    pub(crate) fn track(&mut self, handle: StatementHandle, output: Output) -> Output {
        handle.track(output, &mut self.life.parked)
    }
}

/// What `system.queries` shows for a statement whose text the front end did not give: its kind.
pub(crate) fn statement_kind(stmt: &crate::parser::Statement) -> String {
    match stmt {
        crate::parser::Statement::Standard(s) => s.to_string(),
        other => {
            let debug = format!("{other:?}");
            let end = debug.find([' ', '{', '(']).unwrap_or(debug.len());
            debug[..end].to_string()
        }
    }
}

/// Replace the values of secret options (`OPTIONS (secret_access_key '...')`, `key = '...'`,
/// `'key' '...'`), `PASSWORD '...'` literals and passwords inside URLs in `sql`. A string
/// literal is redacted when the name just before it (an identifier, a dotted name or a quoted
/// key, with or without `=`) is a secret. Comments and quoted identifiers are kept as they are.
pub fn redact(sql: &str, is_secret: impl Fn(&str) -> bool) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    // The name just before the current position (cleared by anything but `=`, `.` and space).
    let mut key = String::new();
    let mut after_dot = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
            let end = sql[i..].find('\n').map(|n| i + n).unwrap_or(sql.len());
            out.push_str(&sql[i..end]);
            i = end;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let end = sql[i + 2..].find("*/").map(|n| i + 2 + n + 2).unwrap_or(sql.len());
            out.push_str(&sql[i..end]);
            i = end;
        } else if c == b'\'' || ((c == b'e' || c == b'E') && bytes.get(i + 1) == Some(&b'\'') && !prev_is_word(bytes, i)) {
            let start = if c == b'\'' { i } else { i + 1 };
            let end = string_end(bytes, start);
            let literal = &sql[i..end];
            let body = &sql[start + 1..end.saturating_sub(1).max(start + 1)];
            if !key.is_empty() && is_secret(&key) {
                out.push_str("'********'");
                key.clear();
            } else {
                out.push_str(&mask_url_password(literal));
                // A quoted key: `'secret_access_key' '...'` or `'key' = '...'`.
                key = body.to_string();
            }
            after_dot = false;
            i = end;
        } else if c == b'"' {
            let end = sql[i + 1..].find('"').map(|n| i + 1 + n + 1).unwrap_or(sql.len());
            let name = &sql[i + 1..end.saturating_sub(1).max(i + 1)];
            push_name(&mut key, &mut after_dot, name);
            out.push_str(&sql[i..end]);
            i = end;
        } else if c == b'$' && let Some((tag_end, end)) = dollar_quote(sql, i) {
            if !key.is_empty() && is_secret(&key) {
                out.push_str("'********'");
            } else {
                out.push_str(&sql[i..end]);
            }
            let _ = tag_end;
            key.clear();
            i = end;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let mut end = i;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] >= 0x80) {
                end += 1;
            }
            while !sql.is_char_boundary(end) {
                end += 1;
            }
            push_name(&mut key, &mut after_dot, &sql[i..end]);
            out.push_str(&sql[i..end]);
            i = end;
        } else {
            match c {
                b'.' => after_dot = true,
                b'=' | b' ' | b'\t' | b'\n' | b'\r' => {}
                _ => {
                    key.clear();
                    after_dot = false;
                }
            }
            out.push(c as char);
            i += 1;
        }
    }
    out
}

fn prev_is_word(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

fn push_name(key: &mut String, after_dot: &mut bool, name: &str) {
    if *after_dot && !key.is_empty() {
        key.push('.');
        key.push_str(name);
    } else {
        *key = name.to_string();
    }
    *after_dot = false;
}

/// The end (exclusive) of the string literal whose opening quote is at `start`: `''` and, for
/// `E'...'`, backslash escapes stay inside.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let escapes = start > 0 && (bytes[start - 1] == b'e' || bytes[start - 1] == b'E');
    let mut j = start + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' if escapes => j += 2,
            b'\'' if bytes.get(j + 1) == Some(&b'\'') => j += 2,
            b'\'' => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

/// `$tag$ ... $tag$` at `i`: (end of the opening tag, end of the whole literal).
fn dollar_quote(sql: &str, i: usize) -> Option<(usize, usize)> {
    let rest = &sql[i + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    if !tag.chars().all(|c| c.is_alphanumeric() || c == '_') || tag.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    let open_end = i + 1 + tag_len + 1;
    let close = format!("${tag}$");
    let end = sql[open_end..].find(&close).map(|n| open_end + n + close.len()).unwrap_or(sql.len());
    Some((open_end, end))
}

/// `'postgres://user:pw@host/db'` becomes `'postgres://user:********@host/db'`.
fn mask_url_password(literal: &str) -> String {
    let Some(scheme) = literal.find("://") else { return literal.to_string() };
    let authority_start = scheme + 3;
    let authority_end = literal[authority_start..].find(['/', '\'', '?', ' ']).map(|n| authority_start + n).unwrap_or(literal.len());
    let authority = &literal[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else { return literal.to_string() };
    let Some(colon) = authority[..at].find(':') else { return literal.to_string() };
    format!("{}{}:********{}", &literal[..authority_start], &authority[..colon], &literal[authority_start + at..])
}

// ---------------------------------------------------------------------------------------------
// system.queries, pg_stat_activity and the functions that signal sessions.

/// A table computed from the registry each time it is scanned (a prepared statement run twice
/// sees two moments).
struct LiveTable {
    schema: SchemaRef,
    rows: Box<dyn Fn() -> datafusion::error::Result<RecordBatch> + Send + Sync>,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable").field("schema", &self.schema).finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batch = (self.rows)()?;
        let table = datafusion::datasource::MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn timestamps(values: impl Iterator<Item = Option<DateTime<Utc>>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values.map(|t| t.map(|t| t.timestamp_micros())).collect::<Vec<_>>()).with_timezone("UTC"))
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// Who reads the registry: others' statement text is for superusers (and the same user) only,
/// as in PostgreSQL.
fn may_see(reader: &Backend, user: Option<&str>) -> bool {
    let state = reader.state();
    state.superuser || (user.is_some() && state.user.as_deref() == user)
}

const HIDDEN: &str = "<insufficient privilege>";

fn queries_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("user", DataType::Utf8, true),
        Field::new("protocol", DataType::Utf8, false),
        Field::new("pid", DataType::Int32, true),
        Field::new("query", DataType::Utf8, false),
        Field::new("started", utc(), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("sqlstate", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

fn queries_batch(registry: &QueryRegistry, reader: &Backend) -> datafusion::error::Result<RecordBatch> {
    let entries = registry.entries();
    let ends: Vec<Option<End>> = entries.iter().map(|e| e.end.lock().expect("statement end").clone()).collect();
    let visible: Vec<bool> = entries.iter().map(|e| may_see(reader, e.user.as_deref())).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.id as i64))),
        strings(entries.iter().map(|e| Some(e.node.as_str()))),
        strings(entries.iter().map(|e| e.user.as_deref())),
        strings(entries.iter().map(|e| Some(e.protocol.as_str()))),
        Arc::new(entries.iter().map(|e| e.pid).collect::<Int32Array>()),
        strings(entries.iter().zip(&visible).map(|(e, v)| Some(if *v { e.query.as_str() } else { HIDDEN }))),
        timestamps(entries.iter().map(|e| Some(e.started))),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().zip(&ends).map(|(e, end)| end.as_ref().map(|x| x.duration).unwrap_or_else(|| e.clock.elapsed()).as_millis() as i64),
        )),
        Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.rows.load(Ordering::Relaxed) as i64))),
        Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.bytes.load(Ordering::Relaxed) as i64))),
        strings(ends.iter().map(|end| Some(end.as_ref().map(|x| x.status).unwrap_or(Status::Running).as_str()))),
        strings(ends.iter().map(|end| end.as_ref().and_then(|x| x.sqlstate.as_deref()))),
        strings(ends.iter().zip(&visible).map(|(end, v)| end.as_ref().and_then(|x| x.error.as_deref()).map(|m| if *v { m } else { HIDDEN }))),
    ];
    Ok(RecordBatch::try_new(queries_schema(), columns)?)
}

fn activity_schema() -> SchemaRef {
    let int = |n: &str| Field::new(n, DataType::Int32, true);
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let ts = |n: &str| Field::new(n, utc(), true);
    Arc::new(Schema::new(vec![
        int("datid"),
        text("datname"),
        int("pid"),
        int("leader_pid"),
        int("usesysid"),
        text("usename"),
        text("application_name"),
        text("client_addr"),
        text("client_hostname"),
        int("client_port"),
        ts("backend_start"),
        ts("xact_start"),
        ts("query_start"),
        ts("state_change"),
        text("wait_event_type"),
        text("wait_event"),
        text("state"),
        text("backend_xid"),
        text("backend_xmin"),
        Field::new("query_id", DataType::Int64, true),
        text("query"),
        text("backend_type"),
    ]))
}

/// One row per session (pgwire connection, Flight SQL request), as PostgreSQL's view has them:
/// `active` while one of its statements runs (its text and start), `idle` otherwise (the
/// last statement's).
fn activity_batch(registry: &QueryRegistry, reader: &Backend) -> datafusion::error::Result<RecordBatch> {
    let backends: Vec<Arc<Backend>> = registry.backends.lock().expect("backends").values().cloned().collect();
    let running: Vec<Arc<Entry>> = registry.running.lock().expect("running statements").values().cloned().collect();
    struct Row {
        pid: Option<i32>,
        user: Option<String>,
        app: Option<String>,
        addr: Option<std::net::SocketAddr>,
        started: DateTime<Utc>,
        query_start: Option<DateTime<Utc>>,
        active: bool,
        query: Option<String>,
        protocol: Protocol,
    }
    let rows: Vec<Row> = backends
        .iter()
        .map(|b| {
            let s = b.state();
            let current = running.iter().find(|e| e.session == b.id);
            let (query, query_start) = match current {
                Some(e) => (Some(e.query.clone()), Some(e.started)),
                None => (s.last_query.clone(), s.last_start),
            };
            Row {
                pid: s.client.pid,
                user: s.user.clone(),
                app: s.client.application_name.clone(),
                addr: s.client.addr,
                started: b.started,
                query_start,
                active: current.is_some(),
                query,
                protocol: s.client.protocol,
            }
        })
        .filter(|r| r.protocol != Protocol::Internal || r.query.is_some())
        .collect();
    let n = rows.len();
    let nulls_i32 = || Arc::new(Int32Array::from(vec![None; n])) as ArrayRef;
    let nulls_text = || Arc::new(StringArray::from(vec![None::<&str>; n])) as ArrayRef;
    let addrs: Vec<Option<String>> = rows.iter().map(|r| r.addr.map(|a| a.ip().to_string())).collect();
    let queries: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.query.as_ref().map(|q| if may_see(reader, r.user.as_deref()) { q.clone() } else { HIDDEN.to_string() }))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        nulls_i32(),
        strings(rows.iter().map(|_| Some(crate::engine::CATALOG_NAME))),
        Arc::new(rows.iter().map(|r| r.pid).collect::<Int32Array>()),
        nulls_i32(),
        nulls_i32(),
        strings(rows.iter().map(|r| r.user.as_deref())),
        strings(rows.iter().map(|r| Some(r.app.as_deref().unwrap_or("")))),
        strings(addrs.iter().map(|a| a.as_deref())),
        nulls_text(),
        Arc::new(rows.iter().map(|r| r.addr.map(|a| a.port() as i32)).collect::<Int32Array>()),
        timestamps(rows.iter().map(|r| Some(r.started))),
        timestamps(rows.iter().map(|r| if r.active { r.query_start } else { None })),
        timestamps(rows.iter().map(|r| r.query_start)),
        timestamps(rows.iter().map(|r| r.query_start.or(Some(r.started)))),
        nulls_text(),
        nulls_text(),
        strings(rows.iter().map(|r| Some(if r.active { "active" } else { "idle" }))),
        nulls_text(),
        nulls_text(),
        Arc::new(Int64Array::from(vec![None; n])),
        strings(queries.iter().map(|q| Some(q.as_deref().unwrap_or("")))),
        strings(rows.iter().map(|r| Some(if r.protocol == Protocol::Internal { "background worker" } else { "client backend" }))),
    ];
    Ok(RecordBatch::try_new(activity_schema(), columns)?)
}

/// `system`: Bowman's own tables about the running server (`system.queries`).
#[derive(Debug)]
struct SystemSchema {
    queries: Arc<dyn TableProvider>,
}

#[async_trait]
impl datafusion::catalog::SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        vec!["queries".to_string()]
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        Ok(name.eq_ignore_ascii_case("queries").then(|| self.queries.clone()))
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("queries")
    }
}

/// pg_catalog with `pg_stat_activity` answered from the registry, for one session (what a
/// reader may see depends on who reads).
#[derive(Debug)]
struct WithActivity {
    inner: Arc<dyn datafusion::catalog::SchemaProvider>,
    activity: Arc<dyn TableProvider>,
}

#[async_trait]
impl datafusion::catalog::SchemaProvider for WithActivity {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.push("pg_stat_activity".to_string());
        names
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case("pg_stat_activity") {
            return Ok(Some(self.activity.clone()));
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("pg_stat_activity") || self.inner.table_exist(name)
    }
}

/// Give a session `system.queries`, `pg_stat_activity`, `pg_backend_pid()`,
/// `pg_cancel_backend(pid)` and `pg_terminate_backend(pid)`.
pub(crate) fn install(session: &Session) -> datafusion::error::Result<()> {
    let registry = session.life.registry.clone();
    let reader = session.life.backend.clone();
    let catalog = session
        .ctx
        .catalog(crate::engine::CATALOG_NAME)
        .ok_or_else(|| DataFusionError::Internal("the bowman catalog is not registered".into()))?;
    let (r, b) = (registry.clone(), reader.clone());
    let queries = Arc::new(LiveTable { schema: queries_schema(), rows: Box::new(move || queries_batch(&r, &b)) });
    catalog.register_schema(SYSTEM_SCHEMA, Arc::new(SystemSchema { queries }))?;
    if let Some(pg) = catalog.schema("pg_catalog") {
        let (r, b) = (registry.clone(), reader.clone());
        let activity = Arc::new(LiveTable { schema: activity_schema(), rows: Box::new(move || activity_batch(&r, &b)) });
        catalog.register_schema("pg_catalog", Arc::new(WithActivity { inner: pg, activity }))?;
    }
    let me = reader.clone();
    session.ctx.register_udf(create_udf(
        "pg_backend_pid",
        vec![],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(me.state().client.pid.unwrap_or(0).into()))),
    ));
    session.ctx.register_udf(signal_udf("pg_cancel_backend", registry.clone(), reader.clone(), false));
    session.ctx.register_udf(signal_udf("pg_terminate_backend", registry, reader, true));
    Ok(())
}

fn signal_udf(name: &'static str, registry: Arc<QueryRegistry>, caller: Arc<Backend>, terminate: bool) -> ScalarUDF {
    // An int4 column (pg_stat_activity.pid) or an integer literal (int8 to DataFusion).
    // Volatile: evaluated when the statement runs, never folded while planning.
    let signature = datafusion::logical_expr::Signature::uniform(1, vec![DataType::Int32, DataType::Int64], Volatility::Volatile);
    ScalarUDF::from(datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
        name,
        signature,
        DataType::Boolean,
        Arc::new(move |args: &[ColumnarValue]| {
            let pids = ColumnarValue::values_to_arrays(args)?;
            let pids = datafusion::arrow::compute::cast(&pids[0], &DataType::Int32)?;
            let pids = datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int32Type>(&pids);
            let mut out = Vec::with_capacity(pids.len());
            for pid in pids.iter() {
                out.push(match pid {
                    None => None,
                    Some(pid) => Some(signal(&registry, &caller, pid, terminate).map_err(|e| DataFusionError::External(Box::new(e)))?),
                });
            }
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
        }),
    ))
}

/// Cancel the running statement of (or close) the pgwire connection `pid`. A user may signal
/// their own sessions; superusers any. False when no connection has that pid.
fn signal(registry: &QueryRegistry, caller: &Backend, pid: i32, terminate: bool) -> Result<bool> {
    let target = registry
        .backends
        .lock()
        .expect("backends")
        .values()
        .find(|b| {
            let s = b.state();
            s.client.protocol == Protocol::Pgwire && s.client.pid == Some(pid)
        })
        .cloned();
    let Some(target) = target else { return Ok(false) };
    let (user, controls) = {
        let s = target.state();
        (s.user.clone(), s.controls.clone())
    };
    let (caller_user, superuser) = {
        let s = caller.state();
        (s.user.clone(), s.superuser)
    };
    if !superuser && (user.is_none() || user != caller_user) {
        let what = if terminate { "terminate" } else { "cancel" };
        return Err(BowmanError::PermissionDenied(format!(
            "permission denied to {what} the session of pid {pid}: only its own user ({}) or a superuser may",
            user.as_deref().unwrap_or("no user")
        )));
    }
    let Some(controls) = controls else { return Ok(false) };
    tracing::info!(pid, terminate, by = caller_user.as_deref().unwrap_or(""), "session signalled");
    if terminate { (controls.terminate)() } else { (controls.cancel)() }
    Ok(true)
}

/// `FROM pg_stat_activity` means pg_catalog's (PostgreSQL's search path starts there).
pub(crate) fn qualify_pg_stat_activity(stmt: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, TableFactor, VisitMut, VisitorMut};
    struct Qualify;
    impl VisitorMut for Qualify {
        type Break = ();
        fn pre_visit_table_factor(&mut self, table: &mut TableFactor) -> std::ops::ControlFlow<()> {
            if let TableFactor::Table { name, args: None, .. } = table
                && name.0.len() == 1
                && let ObjectNamePart::Identifier(ident) = &name.0[0]
                && ident.quote_style.is_none()
                && ident.value.eq_ignore_ascii_case("pg_stat_activity")
            {
                *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("pg_catalog")), name.0[0].clone()]);
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Qualify);
}

/// CREATE / DROP DATABASE of `system` would hide (or try to drop) Bowman's own schema.
pub(crate) fn refuse_system_database(name: &str) -> Result<()> {
    if name.eq_ignore_ascii_case(SYSTEM_SCHEMA) {
        return Err(BowmanError::ReservedName(format!(
            "\"{SYSTEM_SCHEMA}\" is Bowman's own schema (system.queries) and cannot be created or dropped as a database; choose another name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: &str) -> bool {
        bowman_connector::is_secret_option(&[], key) || key == "temporary_aws_access_key_id"
    }

    #[test]
    fn secret_options_and_passwords_are_redacted() {
        let sql = "CREATE TABLE t USING parquet LOCATION 's3://b/p' OPTIONS (access_key_id 'AKIA', secret_access_key 'wJalr''x', region = 'us-east-1')";
        let r = redact(sql, secret);
        assert!(!r.contains("wJalr"), "{r}");
        assert!(r.contains("'AKIA'") && r.contains("'us-east-1'") && r.contains("secret_access_key '********'"), "{r}");
        let r = redact("CREATE USER bob PASSWORD 'hunter2'", secret);
        assert_eq!(r, "CREATE USER bob PASSWORD '********'");
        let r = redact("OPTIONS ('fs.s3a.secret.key' = 'abc', \"password\" 'def', temporary_aws_access_key_id E'g\\'h')", secret);
        assert!(!r.contains("abc") && !r.contains("def") && !r.contains("g\\'h"), "{r}");
        let r = redact("OPTIONS (url 'postgres://bob:pw123@db:5432/x')", secret);
        assert_eq!(r, "OPTIONS (url 'postgres://bob:********@db:5432/x')");
        let r = redact("SELECT 'password', 'x' -- password 'y'\n", secret);
        assert_eq!(r, "SELECT 'password', 'x' -- password 'y'\n");
        let r = redact("OPTIONS (token $$abc$$)", secret);
        assert_eq!(r, "OPTIONS (token '********')");
    }

    #[test]
    fn retention_is_bounded() {
        let registry = Arc::new(QueryRegistry::new(vec![]));
        let backend = registry.register_backend();
        for _ in 0..RETAIN_FINISHED + 10 {
            let e = registry.start(&backend, "SELECT 1".into());
            registry.finish(&e, Status::Succeeded, None);
        }
        assert_eq!(registry.entries().len(), RETAIN_FINISHED);
        assert!(!registry.any_running_before(registry.next_id()));
    }
}
