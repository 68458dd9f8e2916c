//! A small connection pool: at most `size` connections to one database, idle ones reused.
//! (tokio-postgres has none of its own; this one also knows Bowman's timeouts and messages.)

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use crate::tls::MakeRustls;

#[derive(Debug)]
pub struct PgPool {
    config: Config,
    /// `None`: plain connections (`sslmode disable`).
    tls: Option<MakeRustls>,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
    connect_timeout: Duration,
}

pub struct PooledClient {
    client: Option<Client>,
    /// Set once the last statement finished cleanly. A client dropped mid-result (a LIMIT met,
    /// a cancel) is closed rather than reused, so the server stops sending the rest.
    reusable: bool,
    pool: Arc<PgPool>,
    _permit: OwnedSemaphorePermit,
}

impl PgPool {
    pub fn new(config: Config, tls: Option<MakeRustls>, size: usize, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(PgPool { config, tls, idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(size)), connect_timeout })
    }

    /// A connection: an idle one, or a new one once fewer than `size` are in use.
    pub async fn get(self: &Arc<Self>) -> Result<PooledClient, ConnectFailure> {
        let permit = tokio::time::timeout(self.connect_timeout * 6, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| ConnectFailure::Timeout("every pooled connection stayed busy".into()))?
            .expect("the pool's semaphore is never closed");
        loop {
            let reused = self.idle.lock().expect("pool").pop();
            match reused {
                Some(c) if !c.is_closed() => return Ok(PooledClient { client: Some(c), reusable: false, pool: self.clone(), _permit: permit }),
                Some(_) => continue,
                None => break,
            }
        }
        let timeout = |_| ConnectFailure::Timeout(format!("no answer within {:?}", self.connect_timeout));
        let client = match &self.tls {
            None => {
                let (client, connection) = tokio::time::timeout(self.connect_timeout, self.config.connect(NoTls))
                    .await
                    .map_err(timeout)?
                    .map_err(ConnectFailure::Postgres)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "remote PostgreSQL connection ended");
                    }
                });
                client
            }
            Some(tls) => {
                let (client, connection) = tokio::time::timeout(self.connect_timeout, self.config.connect(tls.clone()))
                    .await
                    .map_err(timeout)?
                    .map_err(ConnectFailure::Postgres)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "remote PostgreSQL connection ended");
                    }
                });
                client
            }
        };
        Ok(PooledClient { client: Some(client), reusable: false, pool: self.clone(), _permit: permit })
    }
}

impl PgPool {
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Whether the server answers a new connection (outside the pool's limit) and `SELECT 1`
    /// within the connect timeout. `Ok(false)`: no answer in time.
    pub async fn probe(&self) -> Result<bool, tokio_postgres::Error> {
        let run = async {
            let client = match &self.tls {
                None => {
                    let (client, connection) = self.config.connect(NoTls).await?;
                    tokio::spawn(connection);
                    client
                }
                Some(tls) => {
                    let (client, connection) = self.config.connect(tls.clone()).await?;
                    tokio::spawn(connection);
                    client
                }
            };
            client.simple_query("SELECT 1").await.map(|_| ())
        };
        match tokio::time::timeout(self.connect_timeout, run).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }
}

pub enum ConnectFailure {
    Timeout(String),
    Postgres(tokio_postgres::Error),
}

impl PooledClient {
    /// The connection is idle again and may serve the next statement.
    pub fn release(mut self) {
        self.reusable = true;
    }
}

impl Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if self.reusable && !c.is_closed() {
                self.pool.idle.lock().expect("pool").push(c);
            }
        }
    }
}
