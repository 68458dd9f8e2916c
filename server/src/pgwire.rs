//! The PostgreSQL wire protocol front end, on the `pgwire` crate, with Arrow <-> PostgreSQL
//! value encoding from `arrow-pg`.
//!
//! Each connection gets its own [`bowman_sql::Session`]; simple and extended query messages are
//! turned into session calls, results stream batch by batch from DataFusion into DataRow
//! messages (nothing buffers a whole result), and every error carries its SQLSTATE.

use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use bowman_sql::{BowmanError, Output, Prepared, Session, parse_sql};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use futures::{FutureExt, Sink, SinkExt, StreamExt, stream};
use pgwire::api::auth::sasl::SCRAM_SHA_256_METHOD;
use pgwire::api::auth::sasl::scram::{ScramServerAuth, ScramServerAuthWaitingForClientFinal};
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::{PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::messages::copy::CopyData;
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;
use tokio::sync::Mutex;

/// Per-connection state shared by the handlers of one connection.
pub struct Connection {
    session: Mutex<Session>,
    /// Bumped by each CancelRequest for this connection; running statements and streaming
    /// results watch it. (pgwire's own cancel only interrupts a statement until it returns its
    /// row stream, which for a long query is before most of the work.)
    cancels: tokio::sync::watch::Sender<u64>,
    /// The cancel count when the current statement began: any cancel after that ends it, also
    /// one that arrives between the statement's planning and the streaming of its rows.
    statement_start: std::sync::atomic::AtomicU64,
    registered: std::sync::atomic::AtomicBool,
    /// A COPY ... FROM STDIN in progress: where its data goes, and the load consuming it.
    copy_in: Mutex<Option<CopyIn>>,
    /// Progress reports and warnings of the running statement, sent to the client as
    /// NoticeResponse messages.
    progress: Mutex<tokio::sync::mpsc::UnboundedReceiver<bowman_sql::Notice>>,
    /// Names of the prepared statements the client has parsed (for `DEALLOCATE ALL`).
    statements: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Statements running or streaming rows; shutdown waits for this to reach zero.
    active: Arc<AtomicUsize>,
    /// Logged in without a password (the server has no users): runs as the superuser.
    trusted: std::sync::atomic::AtomicBool,
    /// Start-up finished with AuthenticationOk. pgwire keeps reading a connection whose login
    /// failed (it even sends ReadyForQuery after the FATAL error), so every statement path
    /// checks this before it runs anything.
    logged_in: std::sync::atomic::AtomicBool,
    /// Flipped by `pg_terminate_backend`: the connection closes.
    terminated: tokio::sync::watch::Sender<bool>,
}

impl Connection {
    pub fn new(mut session: Session) -> Arc<Self> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        session.set_progress_sink(tx);
        session.set_client(bowman_sql::ClientInfo { protocol: bowman_sql::Protocol::Pgwire, ..Default::default() });
        Arc::new_cyclic(|me: &std::sync::Weak<Connection>| {
            let (cancel, terminate) = (me.clone(), me.clone());
            session.set_controls(bowman_sql::Controls {
                cancel: Box::new(move || cancel.upgrade().iter().for_each(|c| c.cancel())),
                terminate: Box::new(move || terminate.upgrade().iter().for_each(|c| c.terminate())),
            });
            Connection {
                terminated: tokio::sync::watch::Sender::new(false),
                session: Mutex::new(session),
                cancels: tokio::sync::watch::Sender::new(0),
                statement_start: std::sync::atomic::AtomicU64::new(0),
                registered: std::sync::atomic::AtomicBool::new(false),
                copy_in: Mutex::new(None),
                progress: Mutex::new(rx),
                statements: Default::default(),
                active: Arc::new(AtomicUsize::new(0)),
                trusted: std::sync::atomic::AtomicBool::new(false),
                logged_in: std::sync::atomic::AtomicBool::new(false),
            }
        })
    }

    /// Close this connection (`pg_terminate_backend`): its statement is canceled first.
    pub fn terminate(&self) {
        self.cancel();
        self.terminated.send_replace(true);
    }

    /// Resolves once the connection has been terminated.
    pub fn terminated(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.terminated.subscribe();
        async move {
            let _ = rx.wait_for(|t| *t).await;
        }
    }

    /// Run a statement while forwarding its progress reports to the client.
    async fn with_progress<C, T>(&self, client: &mut C, work: impl std::future::Future<Output = T>) -> PgWireResult<T>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut progress = self.progress.lock().await;
        tokio::pin!(work);
        let notice = |n: bowman_sql::Notice| {
            PgWireBackendMessage::NoticeResponse(ErrorInfo::new(n.severity.to_owned(), n.code.to_owned(), n.message).into())
        };
        loop {
            tokio::select! {
                done = &mut work => {
                    // What the statement said just before it finished (a ROLLBACK's warning).
                    while let Ok(n) = progress.try_recv() {
                        client.send(notice(n)).await?;
                    }
                    return Ok(done);
                }
                Some(n) = progress.recv() => client.send(notice(n)).await?,
            }
        }
    }

    /// `DEALLOCATE name | ALL`: forget the client's prepared statements, as PostgreSQL does
    /// (psycopg sends it when its statement cache turns over, and after a ROLLBACK).
    fn deallocate<C>(&self, client: &C, name: Option<&str>) -> Result<(), BowmanError>
    where
        C: ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let mut names = self.statements.lock().expect("statement names");
        match name {
            Some(name) => {
                if !names.remove(name) && client.portal_store().get_statement(name).is_none() {
                    return Err(BowmanError::InvalidStatementName(name.to_string()));
                }
                client.portal_store().rm_statement(name);
            }
            None => {
                for name in std::mem::take(&mut *names) {
                    client.portal_store().rm_statement(&name);
                }
            }
        }
        Ok(())
    }

    /// Stop what this connection is running (a CancelRequest arrived for it).
    pub fn cancel(&self) {
        self.cancels.send_modify(|n| *n += 1);
    }

    /// Resolves once the connection has been canceled since its current statement began.
    fn canceled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.cancels.subscribe();
        let start = self.statement_start.load(Ordering::SeqCst);
        async move {
            loop {
                if *rx.borrow_and_update() != start {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await
                }
            }
        }
    }

    /// Make this connection findable by the CancelRequests for its (pid, secret key).
    fn register<C: ClientInfo>(self: &Arc<Self>, client: &C, registry: &CancelRegistry) {
        if !self.registered.swap(true, Ordering::SeqCst) {
            let (pid, key) = client.pid_and_secret_key();
            registry.insert(pid, key.to_bytes().to_vec(), self);
        }
    }

    /// Run a statement until it finishes or the connection is canceled (57014).
    fn cancelable<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, BowmanError>>,
    ) -> impl std::future::Future<Output = Result<T, BowmanError>> {
        // A cancel that came while the connection was idle is not for this statement.
        self.statement_start.store(*self.cancels.borrow(), Ordering::SeqCst);
        let canceled = self.canceled();
        async move {
            tokio::select! {
                done = work => done,
                _ = canceled => Err(user_cancel()),
            }
        }
    }

    pub fn is_idle(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }
}

struct CopyIn {
    data: tokio::sync::mpsc::Sender<Vec<u8>>,
    load: tokio::task::JoinHandle<Result<usize, BowmanError>>,
}

/// COPY ... FROM STDIN: the data messages feed a load that runs while they arrive.
pub struct CopyFromClient {
    conn: Arc<Connection>,
}

#[async_trait]
impl pgwire::api::copy::CopyHandler for CopyFromClient {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sender = self.conn.copy_in.lock().await.as_ref().map(|c| c.data.clone());
        if let Some(sender) = sender {
            // A closed channel means the load already failed; on_copy_done reports why.
            let _ = sender.send(copy_data.data.to_vec()).await;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: pgwire::messages::copy::CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(CopyIn { data, load }) = self.conn.copy_in.lock().await.take() else {
            return Err(pg_error(BowmanError::Internal("COPY data without a COPY statement".into())));
        };
        drop(data);
        let rows = load.await.map_err(|e| pg_error(BowmanError::Internal(e.to_string())))?.map_err(pg_error)?;
        client
            .send(PgWireBackendMessage::CommandComplete(Tag::new("COPY").with_rows(rows).into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: pgwire::messages::copy::CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(c) = self.conn.copy_in.lock().await.take() {
            // Nothing was committed: the load commits only after the last row.
            c.load.abort();
        }
        pg_error(BowmanError::Canceled(format!("the client failing the COPY: {}", fail.message)))
    }
}

/// Running connections by the (pid, secret key) their clients were given at start-up.
#[derive(Default)]
pub struct CancelRegistry {
    conns: std::sync::Mutex<std::collections::HashMap<(i32, Vec<u8>), std::sync::Weak<Connection>>>,
}

impl CancelRegistry {
    fn insert(&self, pid: i32, key: Vec<u8>, conn: &Arc<Connection>) {
        let mut conns = self.conns.lock().expect("cancel registry");
        conns.retain(|_, c| c.strong_count() > 0);
        conns.insert((pid, key), Arc::downgrade(conn));
    }

    fn get(&self, pid: i32, key: &[u8]) -> Option<Arc<Connection>> {
        self.conns.lock().expect("cancel registry").get(&(pid, key.to_vec())).and_then(|c| c.upgrade())
    }
}

/// Handles CancelRequest: interrupts the statement through pgwire (while it plans) and
/// through the connection (while it runs or streams rows).
pub struct Cancel {
    manager: Arc<ConnectionManager>,
    registry: Arc<CancelRegistry>,
}

impl Cancel {
    pub fn new(manager: Arc<ConnectionManager>, registry: Arc<CancelRegistry>) -> Self {
        Cancel { manager, registry }
    }
}

#[async_trait]
impl CancelHandler for Cancel {
    async fn on_cancel_request(&self, request: pgwire::messages::cancel::CancelRequest) {
        let key = request.secret_key.to_bytes();
        if let Some(conn) = self.registry.get(request.pid, &key) {
            tracing::info!(pid = request.pid, "cancel request");
            conn.cancel();
        }
        self.manager.cancel(request.pid, &request.secret_key).await;
    }
}

/// The receiving end of a channel as a stream.
fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> impl futures::Stream<Item = Vec<u8>> + Send + 'static {
    stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What a CancelRequest does to the statement (57014, "canceling statement due to user request").
fn user_cancel() -> BowmanError {
    BowmanError::Canceled("user request".into())
}

/// A statement's batches until they end or the connection is canceled, which ends them with
/// 57014; dropping the batch stream then stops the query.
fn until_canceled(
    conn: &Arc<Connection>,
    batches: datafusion::execution::SendableRecordBatchStream,
) -> impl futures::Stream<Item = PgWireResult<datafusion::arrow::array::RecordBatch>> + Send + 'static {
    let canceled = Box::pin(conn.canceled());
    stream::unfold((Some(batches), canceled), |(batches, mut canceled)| async move {
        let mut batches = batches?;
        tokio::select! {
            biased;
            _ = &mut canceled => {
                // Stop the query (and end its registry entry) before the client hears of it.
                drop(batches);
                Some((Err(pg_error(user_cancel())), (None, canceled)))
            }
            next = batches.next() => next.map(|b| (b.map_err(|e| pg_error(BowmanError::from(e))), (Some(batches), canceled))),
        }
    })
}

/// Counts a statement as active until dropped (the guard travels inside row streams).
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(counter.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The pgwire handler set of one connection.
pub struct PgHandlers {
    query: Arc<QueryHandler>,
    startup: Arc<Startup>,
    cancel: Arc<Cancel>,
    copy: Arc<CopyFromClient>,
}

/// How pgwire clients prove who they are, and how many may be connected.
pub struct Auth {
    pub users: Arc<crate::auth::UserSource>,
    pub limits: Arc<crate::auth::ConnectionLimits>,
}

impl PgHandlers {
    pub fn new(conn: Arc<Connection>, manager: Arc<ConnectionManager>, registry: Arc<CancelRegistry>, auth: &Auth) -> Self {
        // SCRAM state lives in the handler: one per connection.
        let startup = Startup {
            conn: conn.clone(),
            users: auth.users.clone(),
            limits: auth.limits.clone(),
            manager: manager.clone(),
            state: Mutex::new(LoginState::AwaitingStartup),
            slots: std::sync::Mutex::new(Vec::new()),
        };
        let copy = Arc::new(CopyFromClient { conn: conn.clone() });
        PgHandlers {
            query: Arc::new(QueryHandler {
                parser: Arc::new(BowmanQueryParser { conn: conn.clone() }),
                conn,
                registry: registry.clone(),
            }),
            startup: Arc::new(startup),
            copy,
            cancel: Arc::new(Cancel { manager, registry }),
        }
    }
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.copy.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }
}

/// A second handle on a client's socket, for [`protocol_violation`] (none if the socket cannot
/// be duplicated).
pub(crate) fn spare_handle(socket: &tokio::net::TcpStream) -> Option<tokio::net::TcpStream> {
    use std::os::fd::AsFd;
    let fd = socket.as_fd().try_clone_to_owned().ok()?;
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true).ok()?;
    tokio::net::TcpStream::from_std(std).ok()
}

/// pgwire's frontend decoders panic on some malformed messages (a Bind whose parameter length
/// runs past the message, found by the pgwire_frontend fuzz target), which ends the connection
/// task. Answer the client as PostgreSQL answers a malformed message, FATAL 08P01, through the
/// spare handle (plain-text connections only: a TLS session's bytes are not ours to write),
/// and close the connection. The server and every other connection go on.
pub(crate) async fn protocol_violation(peer: std::net::SocketAddr, spare: Option<tokio::net::TcpStream>) {
    use tokio::io::AsyncWriteExt;
    tracing::warn!(%peer, "malformed message from a client; connection closed with 08P01");
    let Some(mut socket) = spare else { return };
    let mut body = Vec::new();
    for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "08P01"), (b'M', "invalid message format")] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    message.extend(body);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let _ = socket.write_all(&message).await;
        let _ = socket.shutdown().await;
    })
    .await;
}

/// Start-up and authentication of one pgwire connection.
///
/// With users (in bowman.toml or the catalog, looked up at each connection, so a CREATE USER
/// on a server that started without users asks for passwords at once), clients authenticate
/// with SCRAM-SHA-256; without, anyone (on loopback only) gets in without a password. The
/// SCRAM exchange is pgwire's, with what it leaves out: the client-final message must carry
/// the nonce the server issued (RFC 5802), failures name the user of the startup message,
/// guesses are throttled ([`crate::auth::LoginThrottle`]) and connections are counted
/// ([`crate::auth::ConnectionLimits`]).
pub struct Startup {
    conn: Arc<Connection>,
    users: Arc<crate::auth::UserSource>,
    limits: Arc<crate::auth::ConnectionLimits>,
    manager: Arc<ConnectionManager>,
    state: Mutex<LoginState>,
    /// This connection's places under the connection limits, released when it ends.
    slots: std::sync::Mutex<Vec<crate::auth::ConnectionSlot>>,
}

enum LoginState {
    AwaitingStartup,
    /// AuthenticationSASL sent; waiting for the client-first message.
    ClientFirst { user: String },
    /// AuthenticationSASLContinue sent with `nonce`; waiting for the client-final message.
    ClientFinal { user: String, nonce: String, exchange: Box<ScramServerAuthWaitingForClientFinal> },
    Done,
}

/// The value of attribute `name` (`r`, `s`, ...) of a SCRAM message.
fn scram_attribute<'a>(message: &'a str, name: char) -> Option<&'a str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

fn fatal(e: BowmanError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".to_owned(), e.code(), e.message())))
}

impl Startup {
    fn hold(&self, slot: crate::auth::ConnectionSlot) {
        self.slots.lock().expect("connection slots").push(slot);
    }

    /// The client is in: key data, AuthenticationOk, parameters, ReadyForQuery.
    async fn finish<C>(&self, client: &mut C, user: &str) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.hold(self.limits.login(user).map_err(fatal)?);
        // One generator for the process: each connection gets its own pid (pg_stat_activity,
        // pg_cancel_backend); a generator per connection gave every one the same.
        static PIDS: std::sync::LazyLock<RandomPidSecretKeyGenerator> = std::sync::LazyLock::new(Default::default);
        let (pid, secret_key) = PIDS.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.manager.register(pid, secret_key);
        client.session_extensions().insert::<Arc<pgwire::api::ConnectionHandle>>(handle);
        client.session_extensions().insert::<pgwire::api::ConnectionGuard>(guard);
        self.conn.logged_in.store(true, Ordering::SeqCst);
        self.conn.session.lock().await.set_client(bowman_sql::ClientInfo {
            protocol: bowman_sql::Protocol::Pgwire,
            pid: Some(pid),
            addr: Some(client.socket_addr()),
            application_name: client.metadata().get("application_name").cloned(),
        });
        pgwire::api::auth::finish_authentication(client, &DefaultServerParameterProvider::default()).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: pgwire::messages::PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire's decoders of the authentication messages can panic on a malformed one (a
        // SASLInitialResponse whose data length runs past the message, found by the
        // pgwire_frontend fuzz target): answer it as PostgreSQL does, with 08P01, instead of
        // dropping the connection without a word.
        let handled = AssertUnwindSafe(async {
            use pgwire::messages::PgWireFrontendMessage as M;
            use pgwire::messages::startup::Authentication;
            let mut state = self.state.lock().await;
            match (std::mem::replace(&mut *state, LoginState::Done), message) {
                (LoginState::AwaitingStartup, M::Startup(startup)) => {
                    pgwire::api::auth::protocol_negotiation(client, &startup).await?;
                    pgwire::api::auth::save_startup_parameters_to_metadata(client, &startup);
                    self.hold(self.limits.connect().map_err(fatal)?);
                    let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
                    if !self.users.any().await {
                        self.conn.trusted.store(true, Ordering::SeqCst);
                        return self.finish(client, &user).await;
                    }
                    if user.is_empty() {
                        return Err(PgWireError::UserNameRequired);
                    }
                    client.set_state(pgwire::api::PgWireConnectionState::AuthenticationInProgress);
                    client.send(PgWireBackendMessage::Authentication(Authentication::SASL(vec![SCRAM_SHA_256_METHOD.to_owned()]))).await?;
                    *state = LoginState::ClientFirst { user };
                    Ok(())
                }
                (LoginState::ClientFirst { user }, M::PasswordMessageFamily(msg)) => {
                    let first = msg.into_sasl_initial_response()?;
                    if first.auth_method != SCRAM_SHA_256_METHOD {
                        return Err(PgWireError::UnsupportedSASLAuthMethod(first.auth_method));
                    }
                    let data = first.data.as_ref().ok_or_else(|| PgWireError::InvalidScramMessage("empty client-first message".into()))?;
                    let secret = self.users.secret_or_decoy(&user).await;
                    let (server_first, exchange) = ScramServerAuth::new().on_client_first_message(data, secret.scram_password())?;
                    let nonce = scram_attribute(&server_first, 'r')
                        .ok_or_else(|| PgWireError::InvalidScramMessage("server-first message without a nonce".into()))?
                        .to_string();
                    client.send(PgWireBackendMessage::Authentication(Authentication::SASLContinue(server_first.into_bytes().into()))).await?;
                    *state = LoginState::ClientFinal { user, nonce, exchange: Box::new(exchange) };
                    Ok(())
                }
                (LoginState::ClientFinal { user, nonce, exchange }, M::PasswordMessageFamily(msg)) => {
                    let data = msg.into_sasl_response()?.data;
                    // Attempts at one name take turns once it has failed logins.
                    self.users.throttle.turn(&user).await;
                    // RFC 5802: the client-final message must echo the nonce this server issued,
                    // else a proof computed over another exchange's messages would be accepted.
                    let same_nonce = std::str::from_utf8(&data).ok().and_then(|m| scram_attribute(m, 'r')) == Some(nonce.as_str());
                    let verified = if same_nonce { exchange.on_client_final_message(&data).ok() } else { None };
                    let Some(server_final) = verified else {
                        tracing::warn!(user = %user, peer = %client.socket_addr(), nonce_mismatch = !same_nonce, "password authentication failed");
                        self.users.throttle.failed(&user).await;
                        return Err(PgWireError::InvalidPassword(user));
                    };
                    self.users.throttle.succeeded(&user);
                    client.send(PgWireBackendMessage::Authentication(Authentication::SASLFinal(server_final.into_bytes().into()))).await?;
                    self.finish(client, &user).await
                }
                (LoginState::Done, _) => Ok(()),
                (_, _) => Err(PgWireError::InvalidSASLState),
            }
        })
        .catch_unwind()
        .await;
        handled.unwrap_or_else(|_| {
            Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_owned(),
                "08P01".to_owned(),
                "malformed authentication message".to_owned(),
            ))))
        })
    }
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        // Statement text is never logged: it may carry secrets in OPTIONS.
        tracing::debug!(error = %error, "statement failed");
    }
}

/// The ErrorResponse fields for a Bowman error: code, message, and the detail, hint and
/// cursor position where the error has them.
pub fn error_info(e: &BowmanError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_owned(), e.code(), e.message());
    info.position = e.position().map(|p| p.to_string());
    info.detail = e.detail();
    info.hint = e.hint();
    info
}

/// Run the session as the role the client logged in as (the startup message's `user`, which
/// SCRAM checked), or, on a server that trusts its clients (no users), as the superuser.
fn identify<C: ClientInfo>(session: &mut Session, client: &C, conn: &Connection) -> PgWireResult<()> {
    if !conn.logged_in.load(Ordering::SeqCst) {
        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "FATAL".to_owned(),
            "28000".to_owned(),
            "this connection has not logged in".to_owned(),
        ))));
    }
    let trusted = conn.trusted.load(Ordering::SeqCst);
    if session.user().is_none() {
        let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_else(|| "anonymous".to_string());
        if trusted { session.set_trusted_user(&user) } else { session.set_user(&user) }
    }
    Ok(())
}

fn pg_error(e: BowmanError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

pub struct QueryHandler {
    conn: Arc<Connection>,
    parser: Arc<BowmanQueryParser>,
    registry: Arc<CancelRegistry>,
}

async fn report_setting<C>(client: &mut C, name: &str, value: &str) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if let Some(reported) = bowman_sql::reported_name(name) {
        client
            .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(reported.to_string(), value.to_string())))
            .await?;
    }
    Ok(())
}

/// Turn a statement's output into a pgwire response; rows stay a stream.
fn to_response(output: Output, format: &Format, options: Arc<FormatOptions>, conn: &Arc<Connection>) -> PgWireResult<Response> {
    Ok(match output {
        Output::Rows { schema, stream: batches } => {
            let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, Some(options))?);
            let row_fields = fields.clone();
            let guard = ActiveGuard::new(&conn.active);
            let rows = until_canceled(conn, batches)
                .map(move |batch| {
                    let _still_streaming = &guard;
                    let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send> = match batch {
                        Ok(batch) => Box::new(encode_recordbatch(row_fields.clone(), batch)),
                        Err(e) => Box::new(std::iter::once(Err(e))),
                    };
                    stream::iter(rows)
                })
                .flatten();
            Response::Query(QueryResponse::new(fields, rows))
        }
        Output::Command { tag, rows } => {
            let mut t = Tag::new(&tag);
            if tag == "INSERT" {
                t = t.with_oid(0);
            }
            if let Some(n) = rows {
                t = t.with_rows(n);
            }
            Response::Execution(t)
        }
        Output::Set { .. } => Response::Execution(Tag::new("SET")),
        Output::TransactionStart => Response::TransactionStart(Tag::new("BEGIN")),
        Output::TransactionEnd { tag } => Response::TransactionEnd(Tag::new(&tag)),
        Output::CopyIn(_) => {
            return Err(pg_error(BowmanError::NotSupported(
                "COPY FROM STDIN over the extended protocol; send it as a simple query (psql's \\copy does)".into(),
            )));
        }
        Output::CopyOut { format, schema, stream: batches } if format.binary => {
            let columns = schema.fields().len();
            let fields = Arc::new(arrow_schema_to_pg_fields(&schema, &Format::UnifiedBinary, Some(options))?);
            let guard = ActiveGuard::new(&conn.active);
            Response::CopyOut(binary_copy_out(columns, fields, until_canceled(conn, batches), guard))
        }
        Output::CopyOut { format, schema, stream: batches } => {
            let columns = schema.fields().len();
            let guard = ActiveGuard::new(&conn.active);
            let header = format.header_line(&schema).map(|h| Ok(CopyData::new(h.into())));
            let data = stream::iter(header).chain(until_canceled(conn, batches).map(move |batch| {
                let _still_streaming = &guard;
                let batch = batch?;
                format.encode(&batch).map(|bytes| CopyData::new(bytes.into())).map_err(pg_error)
            }));
            Response::CopyOut(CopyResponse::new(0, columns, data))
        }
    })
}

/// `COPY ... TO STDOUT (FORMAT binary)` as PostgreSQL sends it: one CopyData message per row
/// (clients such as psycopg parse one row per message), the first one prefixed with the
/// signature, flags (no OIDs) and an empty header extension, then the trailer (-1); with no
/// rows, the header and the trailer in one message. A row is a DataRow's body: the field count,
/// then each value's length (-1 for NULL) and its binary encoding, the same as binary results.
fn binary_copy_out(
    columns: usize,
    fields: Arc<Vec<FieldInfo>>,
    batches: impl futures::Stream<Item = PgWireResult<datafusion::arrow::array::RecordBatch>> + Send + 'static,
    guard: ActiveGuard,
) -> CopyResponse {
    use bytes::{BufMut, BytesMut};
    const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
    let header = || {
        let mut h = BytesMut::with_capacity(21);
        h.put_slice(SIGNATURE);
        h.put_i32(0);
        h.put_i32(0);
        h
    };
    let header_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = header_sent.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send> = match batch {
                Ok(batch) => Box::new(encode_recordbatch(fields.clone(), batch)),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            stream::iter(rows)
        })
        .flatten()
        .map(move |row| {
            let row = row?;
            let mut out = if sent.swap(true, Ordering::SeqCst) { BytesMut::with_capacity(2 + row.data.len()) } else { header() };
            out.put_i16(row.field_count);
            out.put_slice(&row.data);
            Ok(CopyData::new(out.freeze()))
        });
    let trailer = stream::once(async move {
        let _still_streaming = guard;
        let mut out = if header_sent.load(Ordering::SeqCst) { BytesMut::with_capacity(2) } else { header() };
        out.put_i16(-1);
        Ok(CopyData::new(out.freeze()))
    });
    // Format 0 here so that pgwire does not append a trailer of its own; the response says 1.
    let mut response = CopyResponse::new(0, columns, rows.chain(trailer));
    response.format = 1;
    response
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = ActiveGuard::new(&self.conn.active);
        self.conn.register(client, &self.registry);
        let statements = parse_sql(query).map_err(pg_error)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let mut session = self.conn.session.lock().await;
        identify(&mut session, client, &self.conn)?;
        let mut responses = Vec::with_capacity(statements.len());
        for stmt in statements {
            if let bowman_sql::Statement::Deallocate { name } = &stmt {
                if let Err(e) = self.conn.deallocate(client, name.as_deref()) {
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
            session.set_query_text(query);
            let result = self.conn.with_progress(client, self.conn.cancelable(session.execute(stmt))).await?;
            match result {
                Ok(Output::CopyIn(target)) => {
                    let columns = target.columns.len();
                    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
                    let conn = self.conn.clone();
                    // The load takes the session once this statement returns its response.
                    let load = tokio::spawn(async move {
                        let mut session = conn.session.lock().await;
                        session.copy_in(target, tokio_stream_from(rx)).await
                    });
                    *self.conn.copy_in.lock().await = Some(CopyIn { data: tx, load });
                    responses.push(Response::CopyIn(CopyResponse::new(0, columns, stream::empty())));
                    break;
                }
                Ok(output) => {
                    if let Output::Set { name, value } = &output {
                        report_setting(client, name, value).await?;
                    }
                    responses.push(to_response(output, &Format::UnifiedText, options.clone(), &self.conn)?);
                }
                Err(e) => {
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

pub struct BowmanQueryParser {
    conn: Arc<Connection>,
}

fn pg_param_types(stmt: &Prepared) -> PgWireResult<Vec<Type>> {
    stmt.param_types()
        .iter()
        .map(|t| match t {
            Some(t) => into_pg_type(t),
            None => Ok(Type::UNKNOWN),
        })
        .collect()
}

#[async_trait]
impl QueryParser for BowmanQueryParser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut session = self.conn.session.lock().await;
        identify(&mut session, client, &self.conn)?;
        let prepared = session.prepare(sql).await.map_err(pg_error)?;
        Ok(if prepared.statement.is_some() { Some(prepared) } else { None })
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        pg_param_types(stmt)
    }

    fn get_result_schema(&self, stmt: &Prepared, column_format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match stmt.output_schema() {
            Some(schema) => arrow_schema_to_pg_fields(&schema, column_format.unwrap_or(&Format::UnifiedText), None),
            None => Ok(vec![]),
        }
    }
}

/// Refuse binary array parameters whose header declares more elements than the value holds,
/// before arrow-pg decodes them (see [`bowman_sql::limits::check_binary_array`]). The type is
/// chosen as arrow-pg chooses it: the client's, else the one DataFusion inferred.
pub fn check_array_parameters<S>(portal: &Portal<S>, inferred: &[Option<&DataType>]) -> PgWireResult<()> {
    for (i, value) in portal.parameters.iter().enumerate() {
        let Some(value) = value else { continue };
        let binary = match &portal.parameter_format {
            Format::UnifiedBinary => true,
            Format::UnifiedText => false,
            Format::Individual(codes) => codes.get(i) == Some(&1),
        };
        if !binary {
            continue;
        }
        let is_array = match portal.statement.parameter_types.get(i).cloned().flatten() {
            Some(t) => matches!(t.kind(), postgres_types::Kind::Array(_)),
            None => matches!(
                inferred.get(i).copied().flatten(),
                Some(DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..))
            ),
        };
        if is_array && let Err(message) = bowman_sql::limits::check_binary_array(value) {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "22P03".to_owned(),
                format!("parameter ${}: {message}", i + 1),
            ))));
        }
    }
    Ok(())
}

/// Decode a portal's parameters with the types the client sent, else those DataFusion inferred.
fn portal_params(portal: &Portal<Prepared>) -> PgWireResult<ParamValues> {
    let inferred = portal.statement.statement.param_types();
    let refs: Vec<Option<&DataType>> = inferred.iter().map(|t| t.as_ref()).collect();
    check_array_parameters(portal, &refs)?;
    // arrow-pg 0.16 drops a NULL parameter whose type is unknown (psycopg sends `None` that
    // way), shifting every later parameter. Give such NULLs a type before decoding: the
    // inferred one, else text.
    let hints = &portal.statement.parameter_types;
    let untyped_null = |i: usize| {
        portal.parameters[i].is_none() && hints.get(i).cloned().flatten().is_none_or(|t| t == Type::UNKNOWN)
    };
    if !(0..portal.parameters.len()).any(untyped_null) {
        return deserialize_parameters(portal, &refs);
    }
    let mut types: Vec<Option<Type>> = (0..portal.parameters.len()).map(|i| hints.get(i).cloned().flatten()).collect();
    for (i, slot) in types.iter_mut().enumerate() {
        if untyped_null(i) {
            let t = inferred.get(i).cloned().flatten().map(|t| into_pg_type(&t)).transpose()?.unwrap_or(Type::TEXT);
            *slot = Some(t);
        }
    }
    let mut patched = Portal::default();
    patched.name = portal.name.clone();
    patched.statement = Arc::new(StoredStatement::new(portal.statement.id.clone(), portal.statement.statement.clone(), types));
    patched.parameter_format = portal.parameter_format.clone();
    patched.parameters = portal.parameters.clone();
    patched.result_column_format = portal.result_column_format.clone();
    deserialize_parameters(&patched, &refs)
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = BowmanQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// pgwire's own Parse handling, keeping the names of named statements for DEALLOCATE ALL.
    async fn on_parse<C>(&self, client: &mut C, message: pgwire::messages::extendedquery::Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.clone().unwrap_or_else(|| pgwire::api::DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        if message.name.as_deref().is_some_and(|n| !n.is_empty()) {
            self.conn.statements.lock().expect("statement names").insert(name);
        }
        client
            .send(PgWireBackendMessage::ParseComplete(pgwire::messages::extendedquery::ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// pgwire's own Close handling (psycopg closes statements this way when libpq has
    /// `PQsendClosePrepared`), keeping the statement names in step.
    async fn on_close<C>(&self, client: &mut C, message: pgwire::messages::extendedquery::Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::messages::extendedquery::{TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT};
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                client.portal_store().rm_statement(name);
                self.conn.statements.lock().expect("statement names").remove(name);
            }
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client.send(PgWireBackendMessage::CloseComplete(pgwire::messages::extendedquery::CloseComplete::new())).await?;
        Ok(())
    }

    async fn do_describe_statement<C>(&self, _client: &mut C, target: &StoredStatement<Prepared>) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let server_types = pg_param_types(&target.statement)?;
        let n = server_types.len().max(target.parameter_types.len());
        let param_types = (0..n)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| server_types.get(i).cloned())
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect();
        let fields = match target.statement.output_schema() {
            Some(schema) => arrow_schema_to_pg_fields(&schema, &Format::UnifiedText, None)?,
            None => vec![],
        };
        Ok(DescribeStatementResponse::new(param_types, fields))
    }

    async fn do_describe_portal<C>(&self, _client: &mut C, portal: &Portal<Prepared>) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // A cursor DECLAREd over the extended protocol is a portal of its own (psycopg's
        // server-side cursors describe it by name).
        if let Some(schema) = self.conn.session.lock().await.cursor_schema(&portal.name) {
            return Ok(DescribePortalResponse::new(arrow_schema_to_pg_fields(&schema, &portal.result_column_format, None)?));
        }
        // With parameters bound, `SELECT $1` has a type: describe what execution will send.
        let params = portal_params(portal)?;
        let session = self.conn.session.lock().await;
        let schema = session.bound_schema(&portal.statement.statement, &params).map_err(pg_error)?;
        let fields = match schema {
            Some(schema) => arrow_schema_to_pg_fields(&schema, &portal.result_column_format, None)?,
            None => vec![],
        };
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = ActiveGuard::new(&self.conn.active);
        self.conn.register(client, &self.registry);
        if let Some(bowman_sql::Statement::Deallocate { name }) = &portal.statement.statement.statement {
            self.conn.deallocate(client, name.as_deref()).map_err(pg_error)?;
        }
        let params = portal_params(portal)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let output = {
            let mut session = self.conn.session.lock().await;
            identify(&mut session, client, &self.conn)?;
            let run = self.conn.cancelable(session.execute_prepared(&portal.statement.statement, &params));
            self.conn.with_progress(client, run).await?.map_err(pg_error)?
        };
        if let Output::Set { name, value } = &output {
            report_setting(client, name, value).await?;
        }
        if let Some(bowman_sql::Statement::DeclareCursor { name, .. }) = &portal.statement.statement.statement {
            let mut cursor = Portal::default();
            cursor.name = name.clone();
            cursor.statement = portal.statement.clone();
            cursor.result_column_format = portal.result_column_format.clone();
            client.portal_store().put_portal(Arc::new(cursor));
        }
        to_response(output, &portal.result_column_format, options, &self.conn)
    }
}
