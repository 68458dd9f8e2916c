//! `USING redis`: Redis keys as Bowman tables.
//!
//! A table is the set of keys matching a pattern (`key_pattern`, or the glob of `key_parts`),
//! each key's value decoded by `value_format` (hash, string, json, zset, stream) into the
//! declared columns. Reads SCAN the key space (deduplicated; SCAN may return a key twice) and
//! fetch values in pipelined batches while the SCAN goes on; filters that name keys
//! (`key = ...`, `IN (...)`, or equalities on every `key_parts` column) read those keys
//! directly with no SCAN. INSERT writes one MULTI/EXEC pipeline per batch. See docs/redis.md.

pub mod options;
mod sample;
pub mod scan;
pub mod sink;
pub mod table;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::Result;
use datafusion::logical_expr::CreateExternalTable;
use redis::aio::MultiplexedConnection;

pub use options::{Format, REDIS_OPTIONS, RedisOptions};
pub use scan::RedisScanExec;
pub use table::RedisTable;

/// The Redis connector.
#[derive(Debug, Default)]
pub struct RedisConnector;

impl RedisConnector {
    pub fn new() -> Self {
        RedisConnector
    }
}

/// Open a table. Without declared columns (CREATE TABLE t USING redis ...), the columns come
/// from the format and, for hash, json and stream tables, from a sample of the keys.
async fn open(cmd: &CreateExternalTable) -> Result<RedisTable> {
    let name = cmd.name.to_string();
    let o = RedisOptions::parse(&cmd.options, &name)?;
    let schema: Schema = if cmd.schema.fields().is_empty() {
        let sampled = match o.format {
            Format::Hash | Format::Json | Format::Stream => sample::fields(&o, &name).await?,
            Format::String | Format::Zset => vec![],
        };
        table::default_schema(&o, &sampled)
    } else {
        cmd.schema.as_arrow().clone()
    };
    Ok(RedisTable::new(name, o, Arc::new(schema))?)
}

#[async_trait]
impl TableProviderFactory for RedisConnector {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(open(cmd).await?))
    }
}

#[async_trait]
impl Connector for RedisConnector {
    fn names(&self) -> &'static [&'static str] {
        &["redis"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        REDIS_OPTIONS
    }

    fn split_options(&self, options: &BTreeMap<String, String>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        options::split_options(self.options(), options)
    }

    /// The options and columns make sense, and the server answers PING.
    async fn validate(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        let name = cmd.name.to_string();
        let o = RedisOptions::parse(&cmd.options, &name)?;
        let t = RedisTable { name, options: o, schema: Arc::new(Schema::empty()), roles: vec![] };
        let mut conn = connect(&t.options, &t.name).await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(|e| redis_error(e, &t.options, &t.name, true))?;
        Ok(())
    }
}

/// A connection to the table's server, within `connect_timeout` (08001 when it does not come).
pub(crate) async fn connect(o: &RedisOptions, table: &str) -> Result<MultiplexedConnection, ConnectorError> {
    let client = redis::Client::open(o.info.clone()).map_err(|e| redis_error(e, o, table, false))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(o.connect_timeout))
        .set_response_timeout(Some(o.response_timeout));
    // The client's own timeout covers the TCP connect; this one also covers the handshake
    // (AUTH, SELECT) on a server that accepts connections and then says nothing.
    let limit = o.connect_timeout + std::time::Duration::from_millis(500);
    match tokio::time::timeout(limit, client.get_multiplexed_async_connection_with_config(&config)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(redis_error(e, o, table, false)),
        Err(_) => Err(ConnectorError::new(
            ErrorKind::Unreachable,
            format!("cannot reach Redis at {} for table {table}: no answer within {:?}", o.describe, o.connect_timeout),
        )),
    }
}

/// A Redis failure as a Bowman error: 08001 before a connection exists, 08006 when it breaks,
/// 28000 for refused credentials. Never shows the password.
pub(crate) fn redis_error(e: redis::RedisError, o: &RedisOptions, table: &str, connected: bool) -> ConnectorError {
    let text = options::redact(&e.to_string(), &o.secrets());
    let code = e.code().unwrap_or("");
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed || matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM") || text.contains("invalid password") || text.contains("WRONGPASS");
    if auth {
        return ConnectorError::new(ErrorKind::AccessDenied, format!("Redis at {} refused the credentials of table {table}: {text}", o.describe));
    }
    if !connected || e.is_connection_refusal() {
        return ConnectorError::new(ErrorKind::Unreachable, format!("cannot reach Redis at {} for table {table}: {text}", o.describe));
    }
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error() {
        return ConnectorError::new(ErrorKind::ConnectionLost, format!("lost the connection to Redis at {} (table {table}): {text}", o.describe));
    }
    if code == "WRONGTYPE" || text.contains("WRONGTYPE") {
        return ConnectorError::new(ErrorKind::Corrupt, format!("table {table}: a key has another Redis type than the table's value format {}: {text}", o.format.name()))
            .with_sqlstate("42809");
    }
    ConnectorError::new(ErrorKind::Io, format!("Redis at {} (table {table}): {text}", o.describe))
}
