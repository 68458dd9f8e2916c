//! The `bowman` server: configuration, the pgwire and HTTP front ends, and start-up/shutdown.
//!
//! [`Server::start`] opens the catalog, binds every listener (port 0 picks a free port) and
//! returns the bound addresses; [`Server::shutdown`] stops accepting, lets running statements
//! finish (up to the configured timeout), closes idle connections and returns.

pub mod auth;
pub mod compose;
pub mod config;
pub mod flight;
mod http;
pub mod pgwire;

use std::net::SocketAddr;
use std::sync::Arc;

use bowman_catalog::{Catalog, open_store};
use bowman_sql::{Engine, EngineConfig, S3Settings};
use ::pgwire::api::ConnectionManager;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use bowman_sql::StoreCallCounts;
pub use config::{Cli, Command, Config, ServeArgs};

/// A running server.
pub struct Server {
    pub pg_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub engine: Arc<Engine>,
    shutdown_tx: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Accepts connections, answers CancelRequests and `/health`, and catches signals, on
    /// threads of its own: statements run on the runtime that started the server, and however
    /// busy they keep it, a new client, a cancel or an orchestrator is answered.
    control: OwnedRuntime,
    /// Where connections and their statements run: threads with stacks sized for statements at
    /// the nesting limit (see bowman_sql::limits), whatever runtime started the server.
    _work: OwnedRuntime,
}

/// Stack of each thread that plans and runs statements. Planning and expression evaluation
/// recurse once per level of nesting; Bowman refuses statements nested deeper than
/// bowman_sql::limits::MAX_EXPRESSION_DEPTH (54001), and this stack holds that depth with
/// room to spare even in a debug build (pages are only used when touched).
pub const WORKER_STACK_BYTES: usize = 256 * 1024 * 1024;

/// A runtime the server owns; shut down without blocking when the server is dropped (which
/// may happen inside an async context).
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("control runtime runs until drop").handle()
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the catalog at {at}: {source}")]
    Catalog { at: String, source: bowman_catalog::CatalogError },
    #[error("{0}")]
    Engine(String),
    #[error("cannot listen on {addr}: {source}; is another server using that port? (use --{flag} to pick another)")]
    Bind { addr: SocketAddr, flag: &'static str, source: std::io::Error },
}

fn redact_url(url: &str) -> String {
    // postgres://user:secret@host/db -> postgres://user@host/db
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Server {
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let store = open_store(&config.catalog)
            .await
            .map_err(|source| StartError::Catalog { at: redact_url(&config.catalog), source })?;
        let keys = Arc::new(config.secret_keys.load().map_err(StartError::Engine)?);
        let catalog = Arc::new(
            Catalog::open_with_keys(store, Some(keys))
                .await
                .map_err(|source| StartError::Catalog { at: redact_url(&config.catalog), source })?,
        );
        let engine = Engine::new(catalog.clone(), EngineConfig {
            warehouse: config.warehouse.clone(),
            s3: S3Settings(config.s3.clone()),
            memory_limit: config.memory_limit,
            password_hasher: Some(|p| auth::ScramSecret::from_password(p).to_hash_string()),
            compose: {
                let cassandra = config.cassandra.clone();
                bowman_sql::Compose::new(move |files| compose::components(files, &cassandra))
            },
        })
            .map_err(|e| StartError::Engine(e.message()))?;
        engine.set_setting_defaults(config.settings.clone());
        engine.start_sweeper();
        // Functions built from data (geodata layers) load before the first client connects.
        if let Err(e) = engine.sync_functions().await {
            tracing::error!(error = %e.message(), "cannot load functions");
        }

        let mut pg_bind = config.pg_addr;
        let mut flight_bind = config.flight_addr;
        let mut http_bind = config.http_addr;
        // Users come from bowman.toml and from CREATE USER (the catalog).
        let has_users = !config.users.is_empty() || !catalog.snapshot().users.is_empty();
        if !has_users {
            if !pg_bind.ip().is_loopback() || !flight_bind.ip().is_loopback() || !http_bind.ip().is_loopback() {
                tracing::warn!(requested = %pg_bind, "no users are configured, so Bowman accepts any client without a password and listens on loopback only; add [[users]] to bowman.toml to serve the network");
                pg_bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                flight_bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                http_bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            } else {
                tracing::info!("no users configured: any local client may connect without a password");
            }
        }
        // Privileges: bowman.toml's users and superusers. (With no users at all the front ends
        // trust every client as the superuser, loopback only, as above.)
        if let Some(node) = &config.node {
            engine.queries().set_node(node);
        }
        engine.set_config_roles(bowman_sql::ConfigRoles {
            users: config.users.names().cloned().collect(),
            superusers: config.superusers.clone(),
        });
        let tls = match &config.tls {
            Some((cert, key)) => Some(auth::tls_acceptor(cert, key).map_err(StartError::Engine)?),
            None => None,
        };
        let flight_tls = match &config.tls {
            Some((cert, key)) => Some((
                std::fs::read(cert).map_err(|e| StartError::Engine(format!("cannot read {}: {e}", cert.display())))?,
                std::fs::read(key).map_err(|e| StartError::Engine(format!("cannot read {}: {e}", key.display())))?,
            )),
            None => None,
        };
        let throttle = auth::LoginThrottle::new(config.auth_failure_delay.0, config.auth_failure_delay.1);
        let auth = Arc::new(pgwire::Auth {
            users: Arc::new(auth::UserSource::with_throttle(config.users.clone(), catalog.clone(), throttle)),
            limits: Arc::new(auth::ConnectionLimits::new(config.max_connections, config.max_connections_per_user)),
        });
        let pg_listener = TcpListener::bind(pg_bind)
            .await
            .map_err(|source| StartError::Bind { addr: pg_bind, flag: "pg-addr", source })?;
        let flight_listener = TcpListener::bind(flight_bind)
            .await
            .map_err(|source| StartError::Bind { addr: flight_bind, flag: "flight-addr", source })?;
        let http_listener = TcpListener::bind(http_bind)
            .await
            .map_err(|source| StartError::Bind { addr: http_bind, flag: "http-addr", source })?;
        let pg_addr = pg_listener.local_addr().expect("bound");
        let http_addr = http_listener.local_addr().expect("bound");
        let flight_addr = flight_listener.local_addr().expect("bound");
        tracing::info!(catalog = %catalog.store().describe(), warehouse = %config.warehouse, "bowman started");

        let control = OwnedRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("bowman-control")
                .enable_all()
                .build()
                .map_err(|e| StartError::Engine(format!("cannot start the control threads: {e}")))?,
        ));
        // Listeners belong to the runtime whose reactor drives them: move the pgwire and HTTP
        // ones to the control runtime.
        let pg_listener = pg_listener.into_std().map_err(|e| StartError::Engine(format!("pgwire listener: {e}")))?;
        let http_listener = http_listener.into_std().map_err(|e| StartError::Engine(format!("http listener: {e}")))?;
        let flight_listener = flight_listener.into_std().map_err(|e| StartError::Engine(format!("flight listener: {e}")))?;
        let work_runtime = OwnedRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("bowman-worker")
                .thread_stack_size(WORKER_STACK_BYTES)
                .enable_all()
                .build()
                .map_err(|e| StartError::Engine(format!("cannot start the statement threads: {e}")))?,
        ));
        let work = work_runtime.handle().clone();

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let pg = PgFrontEnd { engine: engine.clone(), grace: config.shutdown_timeout, tls, auth: auth.clone(), work: work.clone() };
        let pg_shutdown = shutdown_rx.clone();
        tasks.spawn_on(
            async move {
                match TcpListener::from_std(pg_listener) {
                    Ok(listener) => serve_pgwire(listener, pg, pg_shutdown).await,
                    Err(e) => tracing::error!(error = %e, "cannot serve pgwire"),
                }
            },
            control.handle(),
        );
        let (flight_engine, flight_users, flight_shutdown) = (engine.clone(), auth.users.clone(), shutdown_rx.clone());
        tasks.spawn_on(
            async move {
                match TcpListener::from_std(flight_listener) {
                    Ok(listener) => flight::serve(listener, flight_engine, flight_users, flight_tls, flight_shutdown).await,
                    Err(e) => tracing::error!(error = %e, "cannot serve flight"),
                }
            },
            &work,
        );
        let http_engine = engine.clone();
        tasks.spawn_on(
            async move {
                match TcpListener::from_std(http_listener) {
                    Ok(listener) => http::serve(listener, http_engine, shutdown_rx).await,
                    Err(e) => tracing::error!(error = %e, "cannot serve http"),
                }
            },
            control.handle(),
        );
        Ok(Server { pg_addr, flight_addr, http_addr, engine, shutdown_tx, tasks, control, _work: work_runtime })
    }

    /// Resolves at SIGTERM or Ctrl-C. The signals are caught on the control threads, so a
    /// server whose statements keep every worker busy still hears them.
    pub fn terminated(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.control.handle().spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let _ = tx.send(());
        });
        async move {
            // A dropped sender (no signal handler) never resolves: the server keeps running.
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stop accepting, drain connections, and wait for every front end to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What the pgwire accept loop needs to start connections.
struct PgFrontEnd {
    engine: Arc<Engine>,
    grace: std::time::Duration,
    tls: Option<::pgwire::tokio::TlsAcceptor>,
    auth: Arc<pgwire::Auth>,
    /// Where connections (and so their statements) run.
    work: tokio::runtime::Handle,
}

/// How long a new connection may take to send its first message before it is handed on
/// unread (pgwire then applies its own start-up rules).
const FIRST_MESSAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs on the control runtime: accepts, answers CancelRequests itself, and starts every other
/// connection on the work runtime.
async fn serve_pgwire(listener: TcpListener, front: PgFrontEnd, mut shutdown: watch::Receiver<bool>) {
    let manager = Arc::new(ConnectionManager::new());
    let cancels = Arc::new(pgwire::CancelRegistry::default());
    let cancel = Arc::new(pgwire::Cancel::new(manager.clone(), cancels.clone()));
    let mut connections = JoinSet::new();
    let mut routing = JoinSet::new();
    let (routed_tx, mut routed) = tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let cancel = cancel.clone();
                let routed_tx = routed_tx.clone();
                routing.spawn(async move {
                    if answered_cancel_request(&socket, &cancel).await {
                        return;
                    }
                    match socket.into_std() {
                        Ok(std) => {
                            let _ = routed_tx.send((std, peer));
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "connection lost before start-up"),
                    }
                });
            }
            Some((socket, peer)) = routed.recv() => {
                let engine = front.engine.clone();
                let manager = manager.clone();
                let cancels = cancels.clone();
                let auth = front.auth.clone();
                let tls = front.tls.clone();
                let mut conn_shutdown = shutdown.clone();
                connections.spawn_on(async move {
                    let socket = match tokio::net::TcpStream::from_std(socket) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "cannot take over a connection");
                            return;
                        }
                    };
                    let spare = if tls.is_none() { pgwire::spare_handle(&socket) } else { None };
                    let conn = pgwire::Connection::new(engine.new_session());
                    let handlers = Arc::new(pgwire::PgHandlers::new(conn.clone(), manager, cancels, &auth));
                    tokio::select! {
                        result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                            ::pgwire::tokio::process_socket(socket, tls, handlers),
                        )) => {
                            match result {
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                                Ok(Ok(())) => {}
                                Err(_) => pgwire::protocol_violation(peer, spare).await,
                            }
                        }
                        // pg_terminate_backend: the connection closes.
                        _ = conn.terminated() => {}
                        _ = async {
                            let _ = conn_shutdown.wait_for(|s| *s).await;
                            // Let the running statement finish; then close.
                            while !conn.is_idle() {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            }
                        } => {}
                    }
                }, &front.work);
            }
            Some(_) = routing.join_next(), if !routing.is_empty() => {}
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    routing.abort_all();
    let drained = tokio::time::timeout(front.grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(remaining = connections.len(), "statements still running after the shutdown timeout; closing their connections");
        connections.abort_all();
        // Aborted statements stop at their next yield point (every batch, see bowman_sql's
        // cooperative execution); do not wait forever for one that does not.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async { while connections.join_next().await.is_some() {} }).await;
    }
}

/// If the connection's first message is a CancelRequest, act on it here and report true: a
/// cancel must get through while every worker is busy with the statement it cancels.
async fn answered_cancel_request(socket: &tokio::net::TcpStream, cancel: &pgwire::Cancel) -> bool {
    use ::pgwire::api::cancel::CancelHandler;
    use ::pgwire::messages::Message;
    let first = tokio::time::timeout(FIRST_MESSAGE_WAIT, async {
        let mut head = [0u8; 8];
        loop {
            match socket.peek(&mut head).await {
                Ok(0) | Err(_) => return None,
                Ok(n) if n >= head.len() => return Some(head),
                // Part of the header has arrived: wait for the rest.
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
            }
        }
    })
    .await;
    let Ok(Some(head)) = first else { return false };
    if !::pgwire::messages::cancel::CancelRequest::is_cancel_request_packet(&head) {
        return false;
    }
    let len = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    // 16 bytes in protocol 3.0; 3.2 keys are up to 256 bytes.
    if !(16..=12 + 256).contains(&len) {
        return true; // malformed: close it, as PostgreSQL does
    }
    let mut message = vec![0u8; len as usize];
    // `peek` above took nothing: read the whole message (through a shared reference).
    let read = tokio::time::timeout(FIRST_MESSAGE_WAIT, async {
        let mut filled = 0;
        while filled < message.len() {
            socket.readable().await?;
            match socket.try_read(&mut message[filled..]) {
                Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return true;
    }
    let mut buf = bytes::BytesMut::from(&message[..]);
    match ::pgwire::messages::cancel::CancelRequest::decode(&mut buf, &::pgwire::messages::DecodeContext::default()) {
        Ok(Some(request)) => cancel.on_cancel_request(request).await,
        _ => tracing::debug!("malformed CancelRequest"),
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_passwords() {
        assert_eq!(super::redact_url("postgres://bob:s3cret@db:5432/cat"), "postgres://bob@db:5432/cat");
        assert_eq!(super::redact_url("sqlite:///x/catalog.db"), "sqlite:///x/catalog.db");
    }
}
