//! The `bowman` server: configuration, the pgwire and HTTP front ends, and start-up/shutdown.
//!
//! [`Server::start`] opens the catalog, binds every listener (port 0 picks a free port) and
//! returns the bound addresses; [`Server::shutdown`] stops accepting, lets running statements
//! finish (up to the configured timeout), closes idle connections and returns.

pub mod auth;
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
        let catalog = Arc::new(
            Catalog::open(store).await.map_err(|source| StartError::Catalog { at: redact_url(&config.catalog), source })?,
        );
        let engine = Engine::new(catalog.clone(), EngineConfig {
            warehouse: config.warehouse.clone(),
            s3: S3Settings(config.s3.clone()),
            memory_limit: config.memory_limit,
            password_hasher: Some(|p| auth::ScramSecret::from_password(p).to_hash_string()),
        })
            .map_err(|e| StartError::Engine(e.message()))?;
        // Functions built from data (geodata layers) load before the first client connects.
        if let Err(e) = engine.sync_functions().await {
            tracing::error!(error = %e.message(), "cannot load functions");
        }

        let mut pg_bind = config.pg_addr;
        let mut flight_bind = config.flight_addr;
        // Users come from bowman.toml and from CREATE USER (the catalog).
        let has_users = !config.users.is_empty() || !catalog.snapshot().users.is_empty();
        if !has_users {
            if !pg_bind.ip().is_loopback() || !flight_bind.ip().is_loopback() {
                tracing::warn!(requested = %pg_bind, "no users are configured, so Bowman accepts any client without a password and listens on loopback only; add [[users]] to bowman.toml to serve the network");
                pg_bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                flight_bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            } else {
                tracing::info!("no users configured: any local client may connect without a password");
            }
        }
        // Privileges: bowman.toml's users and superusers. (With no users at all the front ends
        // trust every client as the superuser, loopback only, as above.)
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
        let auth = Arc::new(pgwire::Auth {
            users: Arc::new(auth::UserSource::new(config.users.clone(), catalog.clone())),
            enabled: has_users,
        });
        let pg_listener = TcpListener::bind(pg_bind)
            .await
            .map_err(|source| StartError::Bind { addr: pg_bind, flag: "pg-addr", source })?;
        let flight_listener = TcpListener::bind(flight_bind)
            .await
            .map_err(|source| StartError::Bind { addr: flight_bind, flag: "flight-addr", source })?;
        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartError::Bind { addr: config.http_addr, flag: "http-addr", source })?;
        let pg_addr = pg_listener.local_addr().expect("bound");
        let http_addr = http_listener.local_addr().expect("bound");
        let flight_addr = flight_listener.local_addr().expect("bound");
        tracing::info!(catalog = %catalog.store().describe(), warehouse = %config.warehouse, "bowman started");

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_pgwire(pg_listener, engine.clone(), shutdown_rx.clone(), config.shutdown_timeout, tls, auth.clone()));
        tasks.spawn(flight::serve(flight_listener, engine.clone(), auth.users.clone(), has_users, flight_tls, shutdown_rx.clone()));
        tasks.spawn(http::serve(http_listener, catalog, shutdown_rx));
        Ok(Server { pg_addr, flight_addr, http_addr, engine, shutdown_tx, tasks })
    }

    /// Stop accepting, drain connections, and wait for every front end to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn serve_pgwire(
    listener: TcpListener,
    engine: Arc<Engine>,
    mut shutdown: watch::Receiver<bool>,
    grace: std::time::Duration,
    tls: Option<::pgwire::tokio::TlsAcceptor>,
    auth: Arc<pgwire::Auth>,
) {
    let manager = Arc::new(ConnectionManager::new());
    let cancels = Arc::new(pgwire::CancelRegistry::default());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let conn = pgwire::Connection::new(engine.new_session());
                let handlers = Arc::new(pgwire::PgHandlers::new(conn.clone(), manager.clone(), cancels.clone(), &auth));
                let mut conn_shutdown = shutdown.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    tokio::select! {
                        result = ::pgwire::tokio::process_socket(socket, tls, handlers) => {
                            if let Err(e) = result {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                        _ = async {
                            let _ = conn_shutdown.wait_for(|s| *s).await;
                            // Let the running statement finish; then close.
                            while !conn.is_idle() {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            }
                        } => {}
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(remaining = connections.len(), "statements still running after the shutdown timeout; closing their connections");
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_passwords() {
        assert_eq!(super::redact_url("postgres://bob:s3cret@db:5432/cat"), "postgres://bob@db:5432/cat");
        assert_eq!(super::redact_url("sqlite:///x/catalog.db"), "sqlite:///x/catalog.db");
    }
}
